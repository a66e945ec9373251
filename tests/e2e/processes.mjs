// What the harness and the leftovers check read of processes in /proc (proc(5)): which
// processes a folder's sessions and servers left, and how to kill them without hitting
// anyone else's (pids and process group numbers are recycled quickly on this machine).
import { existsSync, readFileSync, readdirSync, readlinkSync, realpathSync, rmdirSync } from "node:fs";
import path from "node:path";

/**
 * A `/proc/<pid>/stat` line, or a session's `pid` file (the wrapper's copy of its own):
 * the pid, the state, the process group and the start time (field 22, clock ticks after
 * boot), or null.
 */
function parseStat(text) {
  // The command name is in parentheses and may hold spaces and `)`: parse after the last `)`.
  const close = text.lastIndexOf(")");
  const fields = text.slice(close + 2).trim().split(" ");
  const pid = Number(text.slice(0, text.indexOf(" ")));
  const stat = { pid, state: fields[0], pgrp: Number(fields[2]), startTime: Number(fields[19]) };
  const numbers = [stat.pid, stat.pgrp, stat.startTime];
  return close > 0 && fields.length >= 20 && numbers.every(Number.isSafeInteger) && pid > 0 ? stat : null;
}

function procStat(pid) {
  try {
    return parseStat(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return null;
  }
}

/** Gone, or dead and not yet reaped (a zombie runs nothing). */
function gone(pid, startTime) {
  const stat = procStat(pid);
  return !stat || stat.startTime !== startTime || stat.state === "Z" || stat.state === "X";
}

export function sleepSync(ms) {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Waits (synchronously: this also runs on `exit`) until the processes are gone; those left. */
function waitGone(processes, ms = 5000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const left = processes.filter((p) => !gone(p.pid, p.startTime));
    if (left.length === 0 || Date.now() > deadline) return left;
    sleepSync(20);
  }
}

const ourGroup = () => procStat("self")?.pgrp;

/** `kill` that says why it failed, but for a process or group that has gone meanwhile. */
function kill(target, what) {
  try {
    process.kill(target, "SIGKILL");
  } catch (e) {
    if (e.code !== "ESRCH") console.error(`# cannot kill ${what}: ${e.message}`);
  }
}

/**
 * The process a session's folder records: `pid` (the wrapper's stat line, written before
 * anything of the session runs), or `handle.json` (`pid`, `start_time`), which a daas
 * before the write-ahead record wrote once the session had started.
 */
function sessionRecord(folder) {
  try {
    const stat = parseStat(readFileSync(path.join(folder, "pid"), "utf8"));
    if (stat) return { pid: stat.pid, startTime: stat.startTime };
  } catch { /* no `pid`: an older daas, or the session never ran */ }
  try {
    const handle = JSON.parse(readFileSync(path.join(folder, "handle.json"), "utf8"));
    if (Number.isSafeInteger(handle.pid) && Number.isSafeInteger(handle.start_time)) {
      return { pid: handle.pid, startTime: handle.start_time };
    }
  } catch { /* neither */ }
  return null;
}

const isSessionId = (name) => /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/.test(name);

/**
 * Kills what is left of the sessions under `dir` (a daas sessions folder): they outlive
 * daas by design, and a test run must not leave them behind. Each session is a process
 * group led by its wrapper, whose pid is the group's number; the group is signalled only
 * while its leader is still the process the record names (same start time): once the
 * leader has gone, the number may be a stranger's. Killing the group kills the sandbox's
 * first process, and with it everything in the session's pid namespace (a Jupyter kernel
 * in a session of its own included). As root, this reaches sessions run under their
 * users' uids. Then removes the sessions' cgroups, which daas removes only when it stops a
 * session itself. Returns the folders of the sessions it killed. The JavaScript twin of
 * `daas::runtime::local::kill_all`.
 */
export function killSessions(dir) {
  const folders = (existsSync(dir) ? readdirSync(dir) : []).filter(isSessionId).map((id) => path.join(dir, id));
  const groups = [];
  const killed = [];
  for (const folder of folders) {
    const record = sessionRecord(folder);
    if (!record || record.pid <= 1 || record.pid === ourGroup()) continue;
    // A zombie leader still holds the number: the group is still the session's.
    if (procStat(record.pid)?.startTime === record.startTime) {
      kill(-record.pid, `the process group of the session in ${folder}`);
      groups.push(record.pid);
      killed.push(folder);
    }
  }
  // Until the groups are empty: their cgroups cannot go before, nor may the folders.
  waitGone(groupMembers(groups));
  for (const folder of folders) removeCgroups(folder);
  return killed;
}

/** Live processes of these process groups. */
function groupMembers(groups) {
  if (groups.length === 0) return [];
  return readdirSync("/proc").filter((n) => /^\d+$/.test(n)).map(procStat)
    .filter((s) => s && groups.includes(s.pgrp) && s.state !== "Z" && s.state !== "X");
}

/** The session's cgroups, from its handle (`session.json`, or an older daas's `handle.json`). */
function removeCgroups(folder) {
  let cgroups = [];
  for (const file of ["session.json", "handle.json"]) {
    try {
      cgroups = JSON.parse(readFileSync(path.join(folder, file), "utf8")).cgroups ?? [];
      break;
    } catch { /* the other one */ }
  }
  // Only a cgroup named after this session: the handle is data, not a list of folders to remove.
  for (const cgroup of cgroups.filter((c) => c.startsWith("/sys/fs/cgroup/") && path.basename(c) === path.basename(folder))) {
    // Busy for a moment while its killed processes exit.
    for (const deadline = Date.now() + 2000; existsSync(cgroup); sleepSync(20)) {
      try {
        rmdirSync(cgroup);
      } catch (e) {
        if (e.code !== "EBUSY" || Date.now() > deadline) {
          console.error(`# cannot remove the cgroup ${cgroup}: ${e.message}`);
          break;
        }
      }
    }
  }
}

/** Octal escapes of mountinfo (`\040` for a space). */
const unescape = (text) => text.replace(/\\([0-7]{3})/g, (_, octal) => String.fromCharCode(parseInt(octal, 8)));

/**
 * `dir` as mountinfo shows it in other mount namespaces: the device of its filesystem and
 * its path from that filesystem's root (what bwrap's binds of it show as their root).
 */
function mountSource(dir) {
  let best = { point: "" };
  for (const line of readFileSync("/proc/self/mountinfo", "utf8").split("\n")) {
    const f = line.split(" ");
    if (f.length < 5) continue;
    const point = unescape(f[4]);
    const inside = point === "/" || dir === point || dir.startsWith(`${point}/`);
    if (inside && point.length >= best.point.length) best = { point, device: f[2], root: unescape(f[3]) };
  }
  return { device: best.device, path: path.join(best.root, path.relative(best.point, dir)) };
}

/** `text` names `dir` or a path below it (not merely a sibling such as `dir-old`). */
function names(text, dir) {
  for (let i = text.indexOf(dir); i >= 0; i = text.indexOf(dir, i + 1)) {
    if (!/[\w.-]/.test(text[i + dir.length] ?? "")) return true;
  }
  return false;
}

/**
 * Live processes (not this one, not zombies) that point into `dir`: by their command
 * line, their working folder, or (for a sandboxed process, whose working folder and
 * command line name only paths inside its sandbox: a session's Xvnc, JupyterLab, kernel)
 * a mount of theirs whose source lies below `dir`. Each with its start time and why.
 */
export function processesUnder(dir) {
  try {
    dir = realpathSync(dir);
  } catch { /* gone: its processes still name it */ }
  const source = mountSource(dir);
  const ourMounts = readlinkSync("/proc/self/ns/mnt");
  const found = [];
  for (const name of readdirSync("/proc").filter((n) => /^\d+$/.test(n))) {
    const pid = Number(name);
    const stat = procStat(pid);
    if (pid === process.pid || !stat || stat.state === "Z" || stat.state === "X") continue;
    const read = (what, how = (p) => readFileSync(p, "utf8")) => {
      try {
        return how(`/proc/${pid}/${what}`);
      } catch {
        return "";
      }
    };
    const args = read("cmdline").split("\0").filter(Boolean);
    const cwd = read("cwd", readlinkSync).replace(/ \(deleted\)$/, "");
    let why = null;
    if (args.some((a) => names(a, dir))) why = "command line";
    else if (cwd === dir || cwd.startsWith(`${dir}/`)) why = `working folder ${cwd}`;
    else if (read("ns/mnt", readlinkSync) !== ourMounts) {
      const mount = read("mountinfo").split("\n").map((l) => l.split(" "))
        .find((f) => f[2] === source.device && names(unescape(f[3] ?? ""), source.path));
      if (mount) why = `mount of ${unescape(mount[3])} on ${unescape(mount[4])}`;
    }
    if (why) found.push({ pid, startTime: stat.startTime, why, args });
  }
  return found;
}

/**
 * Kills, one by one, the processes that point into `dir` (those `filter` keeps), until
 * none is left (a process may start another meanwhile); returns those it killed. Each
 * is checked again just before (same start time), so a recycled pid is left alone.
 */
export function killUnder(dir, filter = () => true) {
  const killed = [];
  for (let round = 0; round < 10; round++) {
    const found = processesUnder(dir).filter(filter);
    if (found.length === 0) break;
    for (const p of found) {
      if (!gone(p.pid, p.startTime)) kill(p.pid, `process ${p.pid} (${p.args.join(" ")})`);
    }
    killed.push(...found);
    waitGone(found);
  }
  return killed;
}
