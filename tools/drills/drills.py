#!/usr/bin/env python3
"""Fault drills of daas (issue 13): runs daas for real on this machine, with real sessions,
its own PostgreSQL and real faults (kill -9, a stopped database, a full disk, crowds of
connections), and prints one table: drill | measured | expected | ok.

`make drills` runs them all (about 5 minutes on the 2-core development machine);
`--only NAME` runs one. Not part of `make test`: the figures depend on the machine, and the
full disk needs root (a tmpfs). Standard library only, so any Python 3.11 runs it.

Everything a drill starts (daas, sessions, PostgreSQL restarts, tmpfs mounts, databases)
is stopped when it ends, also on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import pwd
import random
import re
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import time
import traceback
import urllib.parse
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIVE = {"requested", "starting", "running", "stopping"}
ENDED = {"stopped", "failed"}


def log(text: str) -> None:
    print(f"  {text}", flush=True)


# ---------------------------------------------------------------------------------------
# HTTP, server-sent events and WebSockets, by hand: the drills count refused connections,
# dead upgrades and half-read answers, which a client library would retry or hide.


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    cookies: dict[str, str]
    body: bytes

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            return None


def _head(data: bytes) -> tuple[int, dict[str, str], dict[str, str]]:
    lines = data.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers: dict[str, str] = {}
    cookies: dict[str, str] = {}
    for line in lines[1:]:
        if ":" not in line:
            continue
        name, value = line.split(":", 1)
        name, value = name.strip().lower(), value.strip()
        if name == "set-cookie":
            pair = value.split(";", 1)[0]
            if "=" in pair:
                k, v = pair.split("=", 1)
                cookies[k.strip()] = v.strip()
        headers[name] = value
    return status, headers, cookies


def _dechunk(body: bytes) -> bytes:
    out, rest = bytearray(), body
    while rest:
        line, _, rest = rest.partition(b"\r\n")
        size = int(line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += rest[:size]
        rest = rest[size + 2:]
    return bytes(out)


async def http(port: int, method: str, path: str, *, headers: dict | None = None, body: bytes | None = None,
               host: str | None = None, timeout: float = 30) -> Answer:
    """One request on a fresh connection (`Connection: close`); connection errors raise."""
    async def go() -> Answer:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            lines = [f"{method} {path} HTTP/1.1", f"Host: {host or f'localhost:{port}'}", "Connection: close"]
            for k, v in (headers or {}).items():
                lines.append(f"{k}: {v}")
            if body is not None:
                lines.append(f"Content-Length: {len(body)}")
            writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + (body or b""))
            await writer.drain()
            raw = await reader.read(-1)
        finally:
            writer.close()
        head, sep, rest = raw.partition(b"\r\n\r\n")
        if not sep:
            raise ConnectionResetError("the answer ended before its headers")
        status, hdrs, cookies = _head(head)
        if hdrs.get("transfer-encoding", "").lower() == "chunked":
            rest = _dechunk(rest)
        return Answer(status, hdrs, cookies, rest)
    return await asyncio.wait_for(go(), timeout)


def outcome_of(err: Exception) -> str:
    if isinstance(err, ConnectionRefusedError):
        return "refused"
    if isinstance(err, (asyncio.TimeoutError, TimeoutError)):
        return "timeout"
    if isinstance(err, (ConnectionResetError, asyncio.IncompleteReadError, BrokenPipeError)):
        return "reset"
    return type(err).__name__


class Closed(Exception):
    pass


class WebSocket:
    """A client WebSocket on an upgraded connection: binary messages as one byte stream."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer
        self.buf = bytearray()

    async def _frame(self) -> tuple[int, bytes]:
        h = await self.reader.readexactly(2)
        op, n = h[0] & 0x0F, h[1] & 0x7F
        if n == 126:
            n = struct.unpack(">H", await self.reader.readexactly(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", await self.reader.readexactly(8))[0]
        mask = await self.reader.readexactly(4) if h[1] & 0x80 else None
        data = await self.reader.readexactly(n)
        if mask:
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        return op, data

    async def read(self, n: int) -> bytes:
        while len(self.buf) < n:
            op, data = await self._frame()
            if op == 8:
                raise Closed()
            if op == 9:
                self.send(data, op=10)
            elif op in (0, 1, 2):
                self.buf += data
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def send(self, data: bytes, op: int = 2) -> None:
        mask = os.urandom(4)
        n = len(data)
        if n < 126:
            head = struct.pack(">BB", 0x80 | op, 0x80 | n)
        elif n < 1 << 16:
            head = struct.pack(">BBH", 0x80 | op, 0x80 | 126, n)
        else:
            head = struct.pack(">BBQ", 0x80 | op, 0x80 | 127, n)
        self.writer.write(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def close(self) -> None:
        try:
            self.send(struct.pack(">H", 1000), op=8)
        except Exception:
            pass
        self.writer.close()


async def upgrade(port: int, path: str, headers: dict, timeout: float):
    """Opens a WebSocket: (status, headers, WebSocket or None)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [f"GET {path} HTTP/1.1", f"Host: localhost:{port}", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
    await writer.drain()
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    status, hdrs, _ = _head(head[:-4])
    if status != 101:
        writer.close()
        return status, hdrs, None
    return status, hdrs, WebSocket(reader, writer)


# ---------------------------------------------------------------------------------------
# What runs: session processes, found from their folders and from /proc.


@dataclass
class Proc:
    pid: int
    ppid: int
    pgid: int
    start: int
    session: str
    cmdline: str


def parse_stat(text: str):
    """(pid, state, ppid, pgrp, start time) of a /proc/<pid>/stat line, or of the copy a
    session's wrapper writes to its folder as `pid`."""
    try:
        pid = int(text.split(None, 1)[0])
        rest = text[text.rindex(")") + 2:].split()
        return pid, rest[0], int(rest[1]), int(rest[2]), int(rest[19])
    except (ValueError, IndexError):
        return None


def proc_stat(pid: int):
    try:
        return parse_stat(Path(f"/proc/{pid}/stat").read_text())
    except OSError:
        return None


def session_procs() -> dict[int, Proc]:
    """Every live process whose environment names a session (`DAAS_SESSION_ID`)."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        sid = next((v[len(b"DAAS_SESSION_ID="):].decode() for v in environ.split(b"\0")
                    if v.startswith(b"DAAS_SESSION_ID=")), None)
        stat = proc_stat(pid)
        if sid is None or stat is None or stat[1] in "ZX":
            continue
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            cmdline = ""
        found[pid] = Proc(pid, stat[2], stat[3], stat[4], sid, cmdline)
    return found


def record_of(folder: Path):
    """(pid, start time) a session's folder records: `pid` (the wrapper's copy of its own
    stat line), else the older `handle.json`; None without either."""
    try:
        stat = parse_stat((folder / "pid").read_text())
        if stat:
            return stat[0], stat[4]
    except OSError:
        pass
    try:
        handle = json.loads((folder / "handle.json").read_text())
        return int(handle["pid"]), int(handle.get("start_time", 0))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def recorded_alive(record) -> bool:
    if not record or record[0] <= 1:
        return False
    stat = proc_stat(record[0])
    return bool(stat) and stat[1] not in "ZX" and (record[1] == 0 or stat[4] == record[1])


def session_groups(sessions_dir: Path, known: set[str]) -> tuple[dict[str, set[int]], dict[int, Proc]]:
    """The process groups of this drill's sessions: session id -> the groups of its process
    trees (one per start; a kernel's own group is inside its notebook's tree), from /proc
    and from the folders' records. A session is this drill's when its id is known (a row,
    a folder) or its processes run from this drill's sessions folder."""
    procs = session_procs()
    by_session: dict[str, list[Proc]] = defaultdict(list)
    for p in procs.values():
        by_session[p.session].append(p)
    groups: dict[str, set[int]] = defaultdict(set)
    for sid, ps in by_session.items():
        if sid not in known and not any(str(sessions_dir) in p.cmdline for p in ps):
            continue
        pids = {p.pid for p in ps}
        for p in ps:
            if p.ppid not in pids:
                groups[sid].add(p.pgid)
    if sessions_dir.is_dir():
        for folder in sessions_dir.iterdir():
            record = record_of(folder)
            if recorded_alive(record):
                groups[folder.name].add(record[0])
    mine = {pid: p for pid, p in procs.items() if p.session in groups}
    return dict(groups), mine


def kill_sessions(sessions_dir: Path, known: set[str]) -> int:
    """Kills every process of this drill's sessions (they outlive daas by design); returns
    how many groups were found. Its own group and init's are never signalled."""
    found = 0
    for _ in range(5):
        groups, procs = session_groups(sessions_dir, known)
        if not groups:
            break
        found = max(found, sum(len(g) for g in groups.values()))
        for pgid in {g for gs in groups.values() for g in gs}:
            if pgid > 1 and pgid != os.getpgrp():
                try:
                    os.killpg(pgid, signal.SIGKILL)
                except OSError:
                    pass
        for pid in procs:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.3)
    # Their cgroups: daas removes them on a stop, which a killed session never had.
    for sid in known | set(groups):
        for base in ("/sys/fs/cgroup/daas", "/sys/fs/cgroup/cpu/daas", "/sys/fs/cgroup/memory/daas",
                     "/sys/fs/cgroup/pids/daas"):
            try:
                os.rmdir(f"{base}/{sid}")
            except OSError:
                pass
    return found


# ---------------------------------------------------------------------------------------
# PostgreSQL: the private cluster of `daas --dev-dir .daas/drills dev-db`, one database
# per drill.


def pg_bin() -> Path:
    """Where devdb.rs finds the server programs: PATH, else the newest Debian version."""
    for d in os.environ.get("PATH", "").split(":"):
        if d and (Path(d) / "pg_ctl").is_file() and (Path(d) / "initdb").is_file():
            return Path(d)
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]))
    if not versions:
        raise RuntimeError("no PostgreSQL server programs")
    return versions[-1].parent


class Cluster:
    def __init__(self, daas: Path, dev_dir: Path):
        self.daas, self.dev_dir = daas, dev_dir
        self.started_here = "DATABASE_URL" not in os.environ
        url = os.environ.get("DATABASE_URL") or subprocess.run(
            [str(daas), "--dev-dir", str(dev_dir), "dev-db"], check=True, capture_output=True, text=True
        ).stdout.strip()
        self.server = url.rsplit("/", 1)[0]
        self.data = dev_dir / "postgres" / "data"
        self.bin = pg_bin()
        self.stopped = False
        self.databases: set[str] = set()

    def url(self, database: str) -> str:
        return f"{self.server}/{database}"

    def sql(self, database: str, query: str) -> list[list[str]]:
        psql = self.bin / "psql" if (self.bin / "psql").is_file() else "psql"
        out = subprocess.run([str(psql), self.url(database), "-X", "-q", "-A", "-t", "-F", "\t", "-c", query],
                             check=True, capture_output=True, text=True, timeout=60).stdout
        return [line.split("\t") for line in out.splitlines() if line]

    def create(self, name: str) -> str:
        self.sql("postgres", f"drop database if exists {name} with (force)")
        self.sql("postgres", f"create database {name}")
        self.databases.add(name)
        return self.url(name)

    def drop(self, name: str) -> None:
        self.sql("postgres", f"drop database if exists {name} with (force)")
        self.databases.discard(name)

    def ours(self) -> bool:
        """Whether the drills may stop and start it: the dev-dir cluster, not $DATABASE_URL's."""
        port_file = self.dev_dir / "postgres.port"
        return (self.data / "PG_VERSION").exists() and port_file.exists() and \
            self.server.endswith(f":{port_file.read_text().strip()}")

    def pg_ctl(self, *args: str, new_session: bool = False) -> None:
        # initdb and postgres refuse root: run as the cluster's owner, as devdb.rs does.
        owner = pwd.getpwuid(self.data.stat().st_uid).pw_name
        cmd = [str(self.bin / "pg_ctl"), *args]
        if os.geteuid() == 0 and owner != "root":
            cmd = ["runuser", "-u", owner, "--", *cmd]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, start_new_session=new_session, timeout=90)

    def stop_server(self) -> None:
        self.stopped = True
        self.pg_ctl("stop", "-D", str(self.data), "-m", "fast", "-w")

    def start_server(self) -> None:
        log_file = self.data.parent / "postgres.log"
        self.pg_ctl("start", "-D", str(self.data), "-l", str(log_file), "-w", "-t", "60", new_session=True)
        self.stopped = False

    def close(self) -> None:
        if self.stopped:
            try:
                self.start_server()
            except Exception as err:  # noqa: BLE001 - cleanup goes on
                print(f"cannot start PostgreSQL again: {err}", file=sys.stderr)
        for name in list(self.databases):
            try:
                self.drop(name)
            except Exception:  # noqa: BLE001
                pass
        if self.started_here:
            subprocess.run([str(self.daas), "--dev-dir", str(self.dev_dir), "dev-db", "--stop"],
                           stdout=subprocess.DEVNULL)


# ---------------------------------------------------------------------------------------
# One drill's daas: its database, folders, processes and API.


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Sets LISTEN_PID to its own pid, which stays daas's across the exec, and moves the held
# socket to fd 3, as systemd does for a socket unit's service.
TRAMPOLINE = ("import os, sys; fd = int(sys.argv[1]); os.dup2(fd, 3); os.close(fd) if fd != 3 else None; "
              "os.environ['LISTEN_FDS'] = '1'; os.environ['LISTEN_PID'] = str(os.getpid()); "
              "os.execv(sys.argv[2], sys.argv[2:])")


class Drill:
    def __init__(self, name: str, ctx: "Context"):
        self.name, self.ctx = name, ctx
        self.work = ctx.dev_dir / "work" / name
        self.sessions_dir = self.work / "sessions"
        self.database = f"drill_{name}"
        self.port = free_port()
        self.procs: list[subprocess.Popen] = []
        self.mounts: list[Path] = []
        self.passwords: dict[str, str] = {}
        self.tokens: dict[str, str] = {}
        self.logs = 0

    # -- setting up

    def env(self, port: int) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "DATABASE_URL": self.ctx.cluster.url(self.database),
            "DAAS_PUBLIC_URL": f"http://localhost:{port}",
            "DAAS_SESSIONS_DOMAIN": f"sessions.localhost:{port}",
            "DAAS_VENV": str(ROOT / ".daas/venv"),
            "DAAS_TOOLS_DIR": str(ROOT / "tools"),
            "DAAS_SESSIONS_DIR": str(self.sessions_dir),
            "DAAS_HOMES_DIR": str(self.work / "homes"),
            "DAAS_FRONTEND_DIR": str(ROOT / "frontend"),
            "DAAS_DATA_ROOT": str(self.work / "data"),
            "DAAS_LOCAL_LOGIN": "true",
            "DAAS_RECONCILE_INTERVAL": "1s",
            "DAAS_LOG": "warn",
        })
        return env

    def prepare(self) -> None:
        """A clean folder (what an interrupted earlier run left is stopped first) and a
        fresh, migrated database."""
        if self.work.exists():
            for mount in self.mounted_below(self.work):
                kill_sessions(self.sessions_dir, self.known_ids())
                unmount(mount)
            kill_sessions(self.sessions_dir, self.known_ids())
            shutil.rmtree(self.work, ignore_errors=True)
        (self.work / "data").mkdir(parents=True)
        self.ctx.cluster.create(self.database)
        subprocess.run([str(self.ctx.daas), "migrate"], env=self.env(self.port), check=True,
                       stdout=subprocess.DEVNULL)

    @staticmethod
    def mounted_below(path: Path) -> list[Path]:
        mounts = []
        for line in Path("/proc/self/mounts").read_text().splitlines():
            target = Path(line.split()[1].replace("\\040", " "))
            if target.is_relative_to(path.resolve()):
                mounts.append(target)
        return mounts

    def start(self, command: str = "serve", port: int | None = None,
              held: socket.socket | None = None) -> subprocess.Popen:
        """Starts daas (`dev` loads the demo data) in a process group of its own, so a
        kill -9 reaches daas alone, as a crash would."""
        port = port or self.port
        self.logs += 1
        out = open(self.work / f"daas-{self.logs}.log", "wb")
        args = [str(self.ctx.daas), "--dev-dir", str(self.work), command, "--listen", f"127.0.0.1:{port}"]
        env = self.env(port)
        pass_fds: tuple = ()
        if held is not None:
            args = [sys.executable, "-c", TRAMPOLINE, str(held.fileno()), *args]
            pass_fds = (held.fileno(),)
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, pass_fds=pass_fds)
        proc.log_path = out.name  # type: ignore[attr-defined]
        out.close()
        self.procs.append(proc)
        return proc

    async def ready(self, proc: subprocess.Popen, port: int | None = None, timeout: float = 90) -> None:
        port = port or self.port
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise Failure(f"daas exited ({proc.returncode}): {last_line(proc)}")
            try:
                if (await http(port, "GET", "/readyz", timeout=2)).status == 200:
                    return
            except (OSError, asyncio.TimeoutError):
                pass
            await asyncio.sleep(0.1)
        raise Failure(f"daas was not ready within {timeout:.0f} s")

    async def boot(self) -> subprocess.Popen:
        """`daas dev` on a fresh database: demo data, demo passwords, tokens."""
        self.prepare()
        proc = self.start("dev")
        await self.ready(proc)
        for line in (self.work / "demo-logins.txt").read_text().splitlines():
            name, password = line.split()
            self.passwords[name] = password
        return proc

    def token(self, user: str) -> str:
        if user not in self.tokens:
            self.tokens[user] = subprocess.run(
                [str(self.ctx.daas), "token", "create", "--user", user], env=self.env(self.port), check=True,
                capture_output=True, text=True).stdout.strip()
        return self.tokens[user]

    def kill(self, proc: subprocess.Popen, sig=signal.SIGKILL) -> None:
        if proc.poll() is None:
            try:
                os.kill(proc.pid, sig)
            except OSError:
                pass
        if sig == signal.SIGKILL:
            proc.wait()

    def stop(self, proc: subprocess.Popen, grace: float = 25) -> None:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.kill(proc)

    def known_ids(self) -> set[str]:
        ids = set()
        if self.sessions_dir.is_dir():
            ids |= {p.name for p in self.sessions_dir.iterdir() if re.fullmatch(r"[0-9a-f-]{36}", p.name)}
        try:
            ids |= {r[0] for r in self.ctx.cluster.sql(self.database, "select id from sessions")}
        except Exception:  # noqa: BLE001 - the database may be down or gone
            pass
        return ids

    def close(self) -> None:
        for proc in self.procs:
            self.kill(proc)
        kill_sessions(self.sessions_dir, self.known_ids())
        for mount in reversed(self.mounts):
            unmount(mount)
        self.mounts.clear()

    # -- the API

    async def api(self, method: str, path: str, user: str = "admin", body=None, port: int | None = None,
                  timeout: float = 30):
        headers = {"Authorization": f"Bearer {self.token(user)}"}
        data = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            data = json.dumps(body).encode()
        answer = await http(port or self.port, method, path, headers=headers, body=data, timeout=timeout)
        return answer.status, answer.json()

    async def image(self, name: str) -> str:
        status, images = await self.api("GET", "/api/v1/images")
        for image in images or []:
            if image["name"] == name:
                return image["id"]
        raise DrillError(f"no image {name!r} in the catalogue ({status})")

    async def trivial_image(self) -> str:
        """What bench_launch.rs launches: a Python HTTP server, cheap to start by the dozen."""
        status, image = await self.api("POST", "/api/v1/admin/images", body={
            "name": "Trivial", "kind": "notebook", "reference": "example/trivial:1",
            "default_cpu_millis": 100, "default_memory_mib": 64,
            "local_command": {"argv": ["python3", "-m", "http.server", "--bind", "127.0.0.1", "{port}"]},
        })
        if status != 201:
            raise DrillError(f"cannot add the trivial image: {status} {image}")
        return image["id"]

    def ids(self, table: str, column: str, value: str) -> str:
        rows = self.ctx.cluster.sql(self.database, f"select id from {table} where {column} = '{value}'")
        if not rows:
            raise DrillError(f"no {table} with {column} {value}")
        return rows[0][0]

    async def launch(self, image: str, experiment: str, user: str = "admin", flavour: str = "small",
                     port: int | None = None):
        return await self.api("POST", "/api/v1/sessions", user=user, port=port, body={
            "image": image, "flavour": self.ids("flavours", "name", flavour), "experiment": experiment})

    def rows(self) -> dict[str, tuple[str, int | None, str]]:
        """id -> (state, the pid its handle names, failure reason), from PostgreSQL itself."""
        rows = self.ctx.cluster.sql(self.database, "select id, state, coalesce(runtime_handle->>'pid', ''), "
                                    "replace(coalesce(failure_reason, ''), E'\\n', ' ') from sessions")
        return {r[0]: (r[1], int(r[2]) if r[2] else None, r[3] if len(r) > 3 else "") for r in rows}

    async def wait_states(self, ids, done, timeout: float, port: int | None = None, user: str = "admin"):
        """Polls the API until every id is in a state of `done` (or `timeout`); id -> session."""
        deadline = time.monotonic() + timeout
        sessions = {}
        while True:
            try:
                status, listed = await self.api("GET", "/api/v1/sessions?all=true", user=user, port=port)
                if status == 200:
                    sessions = {s["id"]: s for s in listed if s["id"] in ids}
            except (OSError, asyncio.TimeoutError):
                pass
            if len(sessions) == len(ids) and all(s["state"] in done for s in sessions.values()):
                return sessions
            if time.monotonic() > deadline:
                return sessions
            await asyncio.sleep(1)

    def census(self) -> dict:
        """Session processes against the rows and folders: `orphans` (groups no live row
        stands for: the row has ended, or names another process), `duplicates` (live
        sessions with more than one group), `unrecorded` (groups their folder's record
        does not name, or whose session has no live row)."""
        rows = self.rows()
        groups, _ = session_groups(self.sessions_dir, self.known_ids() | set(rows))
        orphans, duplicates, unrecorded = [], [], []
        for sid, pgids in groups.items():
            state, pid, _ = rows.get(sid, ("no row", None, ""))
            record = record_of(self.sessions_dir / sid)
            if state in LIVE and len(pgids) > 1:
                duplicates.append(f"{sid[:8]} ({state}, names pid {pid}) has process groups {sorted(pgids)}")
            for g in pgids:
                if state not in LIVE:
                    orphans.append(f"{sid[:8]} process group {g} runs under a {state} row")
                elif len(pgids) == 1 and state != "starting" and pid != g:
                    orphans.append(f"{sid[:8]} process group {g} runs, its {state} row names pid {pid}")
                if not record or record[0] != g:
                    unrecorded.append(f"{sid[:8]} process group {g}: its folder records "
                                      f"{record[0] if record else 'nothing'} ({state} row)")
                elif state not in LIVE:
                    unrecorded.append(f"{sid[:8]} process group {g}: recorded, but its row is {state}")
        return {"groups": sum(len(g) for g in groups.values()), "orphans": orphans, "duplicates": duplicates,
                "unrecorded": unrecorded}

    def reason(self, text: str | None) -> str:
        """A failure reason's first line, the drill's folders shortened."""
        line = (text or "").splitlines()[0] if text else ""
        line = line.replace(str(self.sessions_dir), "<sessions>")
        return re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}", "<id>", line)[:120]


class DrillError(Exception):
    """A drill that cannot run here: its row says why."""


class Failure(Exception):
    """daas failed the drill in a way that stops it (it did not start, say): the row says how."""


def last_line(proc: subprocess.Popen) -> str:
    try:
        lines = [l for l in Path(proc.log_path).read_text(errors="replace").splitlines() if l.strip()]  # type: ignore[attr-defined]
        return lines[-1][-200:] if lines else "(no output)"
    except OSError:
        return "(no log)"


def unmount(path: Path) -> None:
    if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


def show(items: list[str], limit: int = 5) -> None:
    for item in items[:limit]:
        log(f"    {item}")
    if len(items) > limit:
        log(f"    ... and {len(items) - limit} more")


# ---------------------------------------------------------------------------------------
# The drills. Each returns (measured, ok); a DrillError becomes "cannot run: why", a
# Failure "failed: how".


@dataclass
class Row:
    drill: str
    measured: str
    expected: str
    ok: str
    seconds: float = 0


async def crash_windows(d: Drill):
    """Bursts of launches, daas killed (-9) at a random moment in each, restarted; then a
    burst of stops with a kill too."""
    proc = await d.boot()
    trivial = await d.trivial_image()
    notebook = await d.image("JupyterLab")
    experiment = d.ids("experiments", "code", "S0201")  # bob's: no proposal quota; admin has none either
    burst = [trivial] * 9 + [notebook]
    # Where the kill lands: when the k-th new session folder appears (the start is under
    # way, nothing runs yet), when the k-th new session process appears (processes run, the
    # record may not be written), or at a random moment.
    moments = ["folder", "process", "time"] * 3
    for n, moment in enumerate(moments):
        random.shuffle(burst)
        before = set(os.listdir(d.sessions_dir)) if d.sessions_dir.is_dir() else set()
        running_before = {p.session for p in session_procs().values()}
        k = random.randint(1, len(burst))
        started = time.monotonic()
        launches = [asyncio.ensure_future(d.launch(image, experiment)) for image in burst]
        if moment == "time":
            await asyncio.sleep(random.uniform(0.05, 1.5))
        while moment != "time" and time.monotonic() - started < 10:
            if moment == "folder":
                seen = len(set(os.listdir(d.sessions_dir)) - before)
            else:
                seen = len({p.session for p in session_procs().values()} - running_before)
            if seen >= k:
                break
            await asyncio.sleep(0.002)
        at = time.monotonic() - started
        d.kill(proc)
        results = await asyncio.gather(*launches, return_exceptions=True)
        ok = [r[1]["id"] for r in results if not isinstance(r, BaseException) and r[0] == 201]
        what = f"session {moment} {k} of {len(burst)} appeared" if moment != "time" else "a random moment"
        log(f"round {n + 1}: killed daas {at:.2f} s into a burst of {len(burst)} launches, when {what} "
            f"({len(ok)} had answered 201)")
        proc = d.start("serve")
        await d.ready(proc)
        await d.wait_states(set(d.rows()), ENDED | {"running"}, timeout=45)
    rows = d.rows()
    states = defaultdict(int)
    for state, _, _ in rows.values():
        states[state] += 1
    log(f"{len(rows)} sessions recorded: " + ", ".join(f"{v} {k}" for k, v in sorted(states.items())))
    # The reconciler's orphan clean-up has a few passes to act.
    deadline = time.monotonic() + 20
    while True:
        census = d.census()
        if (not census["orphans"] and not census["duplicates"]) or time.monotonic() > deadline:
            break
        await asyncio.sleep(2)
    show(census["orphans"])
    show(census["duplicates"])

    # Then stop everything, with a crash in the middle of the stops.
    live = [sid for sid, (state, _, _) in d.rows().items() if state in LIVE]
    stops = [asyncio.ensure_future(d.api("DELETE", f"/api/v1/sessions/{sid}")) for sid in live]
    await asyncio.sleep(random.uniform(0.05, 1.0))
    d.kill(proc)
    await asyncio.gather(*stops, return_exceptions=True)
    proc = d.start("serve")
    await d.ready(proc)
    # Stops the crash interrupted: a client asks again, as a user would.
    for sid, (state, _, _) in d.rows().items():
        if state in LIVE and state != "stopping":
            await d.api("DELETE", f"/api/v1/sessions/{sid}")
    await d.wait_states(set(d.rows()), ENDED, timeout=60)
    after = d.census()
    left = after["orphans"] + [f"{x} (live row)" for x in after["duplicates"]]
    lingering = [sid[:8] for sid, (state, _, _) in d.rows().items() if state in LIVE]
    show(left)
    if lingering:
        log(f"  still live after stop-all: {', '.join(lingering)}")
    measured = (f"orphans {len(census['orphans'])}, duplicates {len(census['duplicates'])} "
                f"({len(moments)} kills in {len(rows)} launches); after stop-all with a kill: "
                f"{after['groups']} groups left, {len(lingering)} rows live")
    ok = not census["orphans"] and not census["duplicates"] and after["groups"] == 0 and not lingering
    return measured, ok


async def viewers(d: Drill, n: int = 300):
    """One desktop, `n` WebSockets opened at once through the relay, each through the RFB
    handshake to a first framebuffer update; a 503 is tried again after its Retry-After,
    as desktop.js does (5 tries)."""
    await d.boot()
    desktop = await d.image("Xfce desktop")
    experiment = d.ids("experiments", "code", "S0201")
    status, session = await d.launch(desktop, experiment)
    if status != 201:
        raise DrillError(f"the desktop launch answered {status}: {session}")
    sid = session["id"]
    got = await d.wait_states({sid}, ENDED | {"running"}, timeout=120)
    if got.get(sid, {}).get("state") != "running":
        raise DrillError(f"the desktop did not run: {got.get(sid, {}).get('failure_reason')}")
    path = f"/sessions/{sid}/desktop/ws"
    headers = {"Authorization": f"Bearer {d.token('admin')}", "Origin": f"http://localhost:{d.port}"}
    open_sockets: list[WebSocket] = []

    async def view():
        """One try: (outcome, Retry-After)."""
        try:
            status, hdrs, ws = await upgrade(d.port, path, headers, timeout=30)
        except Exception as err:  # noqa: BLE001 - counted by kind
            return outcome_of(err), None
        if ws is None:
            return f"http {status}", hdrs.get("retry-after")
        # daas itself speaks first (version, security) after the upgrade; the desktop's
        # first word is the ServerInit it relays. A 101 closed or stalled before that is
        # dead: the browser sees a connection and never a desktop.
        desktop_spoke = False
        try:
            async def handshake():
                nonlocal desktop_spoke
                version = await ws.read(12)
                if not version.startswith(b"RFB "):
                    return "not RFB"
                ws.send(b"RFB 003.008\n")
                count = (await ws.read(1))[0]
                if count == 0:
                    return "refused by the relay"
                types = await ws.read(count)
                if 1 not in types:
                    return f"security types {list(types)}"
                ws.send(b"\x01")
                if await ws.read(4) != b"\0\0\0\0":
                    return "security failed"
                ws.send(b"\x01")
                init = await ws.read(24)
                desktop_spoke = True
                width, height = struct.unpack(">HH", init[:4])
                await ws.read(struct.unpack(">I", init[20:24])[0])
                # A small region: 300 full screens at once would measure the copying.
                ws.send(struct.pack(">BBHHHH", 3, 0, 0, 0, min(width, 32), min(height, 32)))
                while True:
                    kind = (await ws.read(1))[0]
                    if kind == 0:
                        return "update"
                    if kind == 2:  # Bell
                        continue
                    if kind == 3:  # ServerCutText
                        await ws.read(3)
                        await ws.read(struct.unpack(">I", await ws.read(4))[0])
                        continue
                    return "init"
            outcome = await asyncio.wait_for(handshake(), 30)
            if outcome in ("update", "init"):
                open_sockets.append(ws)
            else:
                ws.close()
            return outcome, None
        except (Closed, asyncio.IncompleteReadError, ConnectionError):
            ws.close()
            return ("closed after the ServerInit" if desktop_spoke else "dead 101"), None
        except asyncio.TimeoutError:
            if desktop_spoke:  # in, without an update yet: working, as far as this drill asks
                open_sockets.append(ws)
                return "init", None
            ws.close()
            return "dead 101 (stalled)", None

    # Wait until the desktop lets one viewer in (Xvnc may still be starting its X server).
    deadline = time.monotonic() + 60
    while True:
        outcome, _ = await view()
        if outcome in ("update", "init") or time.monotonic() > deadline:
            break
        await asyncio.sleep(1)
    for ws in open_sockets:
        ws.close()
    open_sockets.clear()
    if outcome not in ("update", "init"):
        raise DrillError(f"not even one viewer got in ({outcome})")

    async def viewer():
        tries = []
        for _ in range(5):
            outcome, retry_after = await view()
            tries.append((outcome, retry_after))
            if outcome != "http 503":
                break
            await asyncio.sleep(float(retry_after or 2))
        return tries

    started = time.monotonic()
    results = await asyncio.gather(*(viewer() for _ in range(n)))
    took = time.monotonic() - started
    for ws in open_sockets:
        ws.close()
    first = defaultdict(int)
    final = defaultdict(int)
    for tries in results:
        first[tries[0][0]] += 1
        final[tries[-1][0]] += 1
    working = final.get("update", 0) + final.get("init", 0)
    all_tries = [t for tries in results for t in tries]
    dead = sum(1 for o, _ in all_tries if o.startswith("dead 101"))
    busy = sum(1 for o, _ in all_tries if o == "http 503")
    busy_without = sum(1 for o, r in all_tries if o == "http 503" and not r)
    retried = [tries for tries in results if tries[0][0] == "http 503"]
    retried_ok = sum(1 for tries in retried if tries[-1][0] in ("update", "init"))
    log(f"first try: {dict(first)}")
    log(f"after retries (up to 5 tries): {dict(final)}, all done in {took:.1f} s")
    measured = (f"{working}/{n} working ({final.get('update', 0)} to a framebuffer update); "
                f"503s {busy}{f' ({busy_without} without Retry-After)' if busy_without else ''}, "
                f"{retried_ok}/{len(retried)} viewers worked on retry; dead 101s {dead}")
    others = {k: v for k, v in final.items() if k not in ("update", "init") and not k.startswith("dead 101")}
    if others:
        measured += "; failed: " + ", ".join(f"{v} {k}" for k, v in others.items())
    return measured, working == n and dead == 0 and busy_without == 0


async def launch_rush(d: Drill, n: int = 30, limit: float = 300):
    """`n` JupyterLab launches at once; all should reach running, paced by daas."""
    await d.boot()
    notebook = await d.image("JupyterLab")
    experiment = d.ids("experiments", "code", "S0201")
    started = time.monotonic()
    results = await asyncio.gather(*(d.launch(notebook, experiment) for _ in range(n)), return_exceptions=True)
    ids = {r[1]["id"] for r in results if not isinstance(r, BaseException) and r[0] == 201}
    refused = [r if isinstance(r, BaseException) else r[0] for r in results
               if isinstance(r, BaseException) or r[0] != 201]
    if refused:
        log(f"launches refused: {refused[:3]}")
    queued: set[str] = set()
    running_at: dict[str, float] = {}
    sessions: dict = {}
    while time.monotonic() - started < limit:
        try:
            status, listed = await d.api("GET", "/api/v1/sessions?all=true")
        except (OSError, asyncio.TimeoutError):
            await asyncio.sleep(1)
            continue
        sessions = {s["id"]: s for s in listed or [] if s["id"] in ids}
        for s in sessions.values():
            if s.get("progress") and "queued" in s["progress"] and "ahead" in s["progress"]:
                queued.add(s["progress"])
            if s["state"] == "running" and s["id"] not in running_at:
                running_at[s["id"]] = time.monotonic() - started
        if all(s["state"] in ENDED | {"running"} for s in sessions.values()) and len(sessions) == len(ids):
            break
        await asyncio.sleep(1)
    failed = [s for s in sessions.values() if s["state"] == "failed"]
    reasons = defaultdict(int)
    for s in failed:
        reasons[d.reason(s.get("failure_reason"))] += 1
    for reason, count in reasons.items():
        log(f"{count} failed: {reason}")
    examples = sorted(queued, key=lambda q: -len(q))[:2]
    log(f"\"queued: N ahead\" progress seen: {len(queued)} distinct{(' e.g. ' + repr(examples[0])) if examples else ''}")
    last = max(running_at.values()) if running_at else None
    pending = len(ids) - len(running_at) - len(failed)
    measured = f"{len(running_at)}/{n} running"
    if running_at:
        measured += f", the last after {last:.0f} s"
    if failed:
        measured += f"; {len(failed)} failed"
    if pending:
        measured += f"; {pending} still starting after {limit:.0f} s"
    if refused:
        measured += f"; {len(refused)} launches refused"
    measured += "; queued progress " + ("shown" if queued else "not shown")
    # Stopped here, not left to load the next drill.
    await asyncio.gather(*(d.api("DELETE", f"/api/v1/sessions/{sid}") for sid in ids), return_exceptions=True)
    await d.wait_states(ids, ENDED, timeout=60)
    return measured, len(running_at) == n


async def restart_streams(d: Drill, streams: int = 50):
    """50 event streams open, a client opening a fresh connection for /readyz again and
    again, and `daas serve` restarted: with the listening socket held by the drill (as a
    systemd socket unit would) and passed to each daas, and with a plain --listen restart."""
    proc = await d.boot()
    trivial = await d.trivial_image()
    experiment = d.ids("experiments", "code", "S0201")
    status, session = await d.launch(trivial, experiment)
    if status != 201:
        raise DrillError(f"the launch answered {status}")
    sid = session["id"]
    await d.wait_states({sid}, ENDED | {"running"}, timeout=60)
    d.stop(proc)
    results = {}
    for variant in ("held socket", "plain --listen"):
        results[variant] = await restart_once(d, sid, variant, streams)
    held, plain = results["held socket"], results["plain --listen"]
    measured = f"held socket: {held[0]}; plain --listen: {plain[0]}"
    return measured, held[1]


async def restart_once(d: Drill, sid: str, variant: str, streams: int):
    port = free_port()
    held = None
    if variant == "held socket":
        held = socket.socket()
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        held.bind(("127.0.0.1", port))
        held.listen(1024)
    try:
        old = d.start("serve", port=port, held=held)
        try:
            await d.ready(old, port=port, timeout=60)
        except Failure as err:
            d.kill(old)
            return f"not taken ({err})", False
        token = d.token("admin")
        ends: list[float] = []
        opened = asyncio.Event()
        count = [0]

        async def stream():
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write((f"GET /api/v1/sessions/{sid}/events HTTP/1.1\r\nHost: localhost:{port}\r\n"
                              f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n").encode())
                seen = b""
                while b"event: session" not in seen:
                    chunk = await reader.read(4096)
                    if not chunk:
                        return
                    seen += chunk
                count[0] += 1
                if count[0] == streams:
                    opened.set()
                while await reader.read(4096):
                    pass
                ends.append(time.monotonic())
                writer.close()
            except OSError:
                ends.append(time.monotonic())

        tasks = [asyncio.ensure_future(stream()) for _ in range(streams)]
        samples: list[tuple[float, float, str]] = []
        stop = asyncio.Event()

        async def hammer():
            while not stop.is_set():
                at = time.monotonic()
                try:
                    answer = await http(port, "GET", "/readyz", timeout=5)
                    outcome = "ok" if answer.status == 200 else f"http {answer.status}"
                except Exception as err:  # noqa: BLE001 - counted by kind
                    outcome = outcome_of(err)
                samples.append((at, time.monotonic(), outcome))
                await asyncio.sleep(0.005)

        hammering = asyncio.ensure_future(hammer())
        try:
            try:
                await asyncio.wait_for(opened.wait(), 30)
            except asyncio.TimeoutError:
                return f"only {count[0]} of {streams} event streams opened", False
            await asyncio.sleep(2)
            term = time.monotonic()
            old.send_signal(signal.SIGTERM)
            if held is None:
                # What a service manager does without socket activation: stop, then start.
                while old.poll() is None and time.monotonic() - term < 30:
                    await asyncio.sleep(0.01)
            new = d.start("serve", port=port, held=held)
            exited = None
            while time.monotonic() - term < 40:
                if old.poll() is not None and exited is None:
                    exited = time.monotonic() - term
                if new.poll() is not None:
                    break
                if exited is not None and any(done > term + exited and o == "ok" for _, done, o in samples[-20:]):
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(2)
        finally:
            stop.set()
            await hammering
            for task in tasks:
                task.cancel()
        if new.poll() is not None:
            return f"the new daas exited: {last_line(new)}", False
        d.stop(new)
        d.kill(old)
        window = [(at, done, o) for at, done, o in samples if done >= term]
        outcomes = defaultdict(int)
        for _, _, o in window:
            outcomes[o] += 1
        refused = outcomes.get("refused", 0)
        failed = sum(v for k, v in outcomes.items() if k != "ok")
        # Answers as the client saw them: a request held in the backlog counts until answered.
        answered = [term] + sorted(done for _, done, o in window if o == "ok")
        gap = max(b - a for a, b in zip(answered, answered[1:])) if len(answered) > 1 else float("nan")
        slowest = max((done - at for at, done, o in window if o == "ok"), default=0)
        closed_soon = sum(1 for t in ends if 0 <= t - term < 2)
        log(f"{variant}: requests {dict(outcomes)}; old daas exited {exited or 0:.1f} s after SIGTERM; "
            f"{closed_soon}/{streams} streams closed within 2 s; longest time without an answer {gap:.2f} s, "
            f"slowest answer {slowest:.2f} s")
        measured = f"{refused} refused, {failed - refused} other failures, answering again within {gap:.1f} s"
        return measured, failed == 0
    finally:
        if held is not None:
            held.close()


async def database_down(d: Drill, outage: float = 60):
    """A running notebook; a browser's requests through the proxy every 200 ms; PostgreSQL
    stopped for `outage` seconds, then started."""
    if not d.ctx.cluster.ours():
        raise DrillError("DATABASE_URL is not the drills' own cluster: it is not ours to stop")
    proc = await d.boot()
    notebook = await d.image("JupyterLab")
    experiment = d.ids("experiments", "code", "S0011")  # alice's proposal
    status, session = await d.launch(notebook, experiment, user="alice")
    if status != 201:
        raise DrillError(f"the notebook launch answered {status}: {session}")
    sid = session["id"]
    got = await d.wait_states({sid}, ENDED | {"running"}, timeout=120, user="alice")
    if got.get(sid, {}).get("state") != "running":
        raise DrillError(f"the notebook did not run: {got.get(sid, {}).get('failure_reason')}")
    # In as a browser is: the portal's login, the ticket, the session origin's cookie.
    form = urllib.parse.urlencode({"username": "alice", "password": d.passwords["alice"], "next": "/"}).encode()
    login = await http(d.port, "POST", "/login", body=form,
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    portal = login.cookies.get("daas_session")
    if not portal:
        raise DrillError(f"the login answered {login.status} without a cookie")
    opened = await http(d.port, "GET", f"/sessions/{sid}/open", headers={"Cookie": f"daas_session={portal}"})
    target = urllib.parse.urlsplit(opened.headers.get("location", ""))
    origin = f"{sid}.sessions.localhost:{d.port}"
    entered = await http(d.port, "GET", f"{target.path}?{target.query}", host=origin)
    cookie = entered.cookies.get("daas_notebook")
    if not cookie:
        raise DrillError(f"the notebook origin answered {entered.status} without a cookie")

    async def request():
        try:
            answer = await http(d.port, "GET", f"/sessions/{sid}/api/status", host=origin,
                                headers={"Cookie": f"daas_notebook={cookie}"}, timeout=10)
            return "ok" if answer.status == 200 else f"http {answer.status}"
        except Exception as err:  # noqa: BLE001 - counted by kind
            return outcome_of(err)

    deadline = time.monotonic() + 60
    while await request() != "ok":
        if time.monotonic() > deadline:
            raise DrillError("the notebook does not answer through the proxy")
        await asyncio.sleep(0.5)

    samples: list[tuple[float, float, str]] = []
    stop = asyncio.Event()

    async def browser():
        while not stop.is_set():
            at = time.monotonic()
            outcome = await request()
            samples.append((at, time.monotonic() - at, outcome))
            await asyncio.sleep(max(0, 0.2 - (time.monotonic() - at)))

    client = asyncio.ensure_future(browser())
    await asyncio.sleep(10)
    down = time.monotonic()
    await asyncio.to_thread(d.ctx.cluster.stop_server)
    await asyncio.sleep(outage)
    up = time.monotonic()
    await asyncio.to_thread(d.ctx.cluster.start_server)
    await asyncio.sleep(15)
    stop.set()
    await client
    phases = {"before": [], "down": [], "after": []}
    for at, took, outcome in samples:
        phase = "before" if at < down else "down" if at < up else "after"
        phases[phase].append((at, took, outcome))
    for name, items in phases.items():
        counts = defaultdict(int)
        for _, _, o in items:
            counts[o] += 1
        slow = sum(1 for _, took, _ in items if took > 2)
        log(f"{name}: {dict(counts)}{f', {slow} took over 2 s' if slow else ''}")
    failures = [(at, took, o) for at, took, o in samples if o != "ok"]
    # The client waits for each answer: a slow failure hides the ones a browser's parallel
    # requests would have met meanwhile, so the time span says more than the count.
    first = (f", failing from {failures[0][0] - down:.1f} s to {failures[-1][0] + failures[-1][1] - down:.1f} s "
             f"into the outage" if failures else "")
    d.stop(proc)
    measured = f"{len(failures)} of {len(samples)} notebook requests failed{first}"
    return measured, not failures


async def full_disk(d: Drill, size_mib: int = 16):
    """The sessions folder on a small tmpfs, filled a little more before each launch, so
    each launch meets the full disk at another step; then every session process must be
    findable from a record."""
    if os.geteuid() != 0:
        raise DrillError("needs root (a tmpfs mount)")
    d.prepare()
    d.sessions_dir.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mib}m,mode=0700", "drills", str(d.sessions_dir)],
                      capture_output=True).returncode != 0:
        raise DrillError("cannot mount a tmpfs")
    d.mounts.append(d.sessions_dir)
    proc = d.start("dev")
    await d.ready(proc)
    trivial = await d.trivial_image()
    experiment = d.ids("experiments", "code", "S0201")
    filler = d.sessions_dir / "filler"

    def fill(free_target: int) -> int:
        st = os.statvfs(d.sessions_dir)
        free = st.f_bavail * st.f_frsize
        size = filler.stat().st_size if filler.exists() else 0
        size = max(0, size + free - free_target)
        with open(filler, "ab") as f:
            f.truncate(size)
            if size:
                os.posix_fallocate(f.fileno(), 0, size)
        st = os.statvfs(d.sessions_dir)
        return st.f_bavail * st.f_frsize

    outcomes, seen = [], {}
    for target_kib in (256, 128, 96, 64, 48, 40, 32, 28, 24, 20, 16, 12, 8, 4, 0):
        free = fill(target_kib * 1024)
        try:
            status, session = await d.launch(trivial, experiment)
        except (OSError, asyncio.TimeoutError) as err:
            outcomes.append(f"{free // 1024} KiB free: {outcome_of(err)}")
            continue
        if status != 201:
            outcomes.append(f"{free // 1024} KiB free: launch answered {status}")
            continue
        sid = session["id"]
        got = (await d.wait_states({sid}, ENDED | {"running"}, timeout=20)).get(sid, {})
        seen[sid] = got.get("state")
        reason = d.reason(got.get("failure_reason"))
        outcomes.append(f"{free // 1024} KiB free: {got.get('state', '?')}{': ' + reason if reason else ''}")
    for line in outcomes:
        log(line)
    _, listed = await d.api("GET", "/api/v1/sessions?all=true")
    for s in listed or []:
        if s["state"] != seen.get(s["id"], s["state"]):
            log(f"{s['id'][:8]}, {seen[s['id']]} after 20 s, is now {s['state']}: "
                f"{d.reason(s.get('failure_reason')) or s.get('progress')}")
    await asyncio.sleep(5)  # reconciler passes on the full disk
    full = d.census()
    # Room again: the orphan clean-up must not lose track of what still runs.
    filler.unlink(missing_ok=True)
    await asyncio.sleep(5)
    freed = d.census()
    show(full["unrecorded"])
    show([x for x in freed["unrecorded"] if x not in full["unrecorded"]])
    failed = sum(1 for o in outcomes if "failed" in o or "answered" in o)
    measured = (f"{len(full['unrecorded'])} without a record on the full disk, {len(freed['unrecorded'])} "
                f"once freed ({failed} of {len(outcomes)} launches failed, {full['groups']} groups running)")
    d.stop(proc)
    return measured, not full["unrecorded"] and not freed["unrecorded"]


DRILLS = {
    "crash": ("crash windows", crash_windows, "orphans 0, duplicates 0"),
    "viewers": ("300 viewers at once", viewers, "300 working (or 503s that work on retry), 0 dead 101s"),
    "launches": ("30 notebook launches at once", launch_rush, "30/30 running"),
    "restart": ("restart with 50 open streams", restart_streams, "held socket: 0 refused, 0 failed"),
    "database": ("PostgreSQL down 60 s", database_down, "0 notebook requests failed"),
    "disk": ("full disk during launch", full_disk, "0 processes without a record"),
}


@dataclass
class Context:
    daas: Path
    dev_dir: Path
    cluster: Cluster = field(init=False)


async def run_drill(ctx: Context, key: str) -> Row:
    title, fn, expected = DRILLS[key]
    print(f"== {title}", flush=True)
    d = Drill(key, ctx)
    started = time.monotonic()
    try:
        measured, ok = await fn(d)
        row = Row(title, measured, expected, "yes" if ok else "NO")
    except DrillError as err:
        row = Row(title, f"cannot run: {err}", expected, "n/a")
    except Failure as err:
        row = Row(title, f"failed: {err}", expected, "NO")
    except asyncio.CancelledError:
        raise
    except Exception as err:  # noqa: BLE001 - one drill's failure is its row, the others run
        traceback.print_exc()
        row = Row(title, f"drill failed: {type(err).__name__}: {err}", expected, "NO")
    finally:
        d.close()
        try:
            if ctx.cluster.stopped:
                ctx.cluster.start_server()
            ctx.cluster.drop(d.database)
        except Exception as err:  # noqa: BLE001
            print(f"  cannot drop {d.database}: {err}", file=sys.stderr)
    row.seconds = time.monotonic() - started
    print(f"   {row.drill} | {row.measured} | {row.expected} | {row.ok}  ({row.seconds:.0f} s)", flush=True)
    return row


def table(rows: list[Row]) -> str:
    """A Markdown table, long cells wrapped onto continuation lines to fit a terminal."""
    fields, widths = ("drill", "measured", "expected", "ok"), (30, 64, 34, 3)
    header = Row(*fields)
    cells = [[textwrap.wrap(getattr(r, f), w) or [""] for f, w in zip(fields, widths)] for r in [header, *rows]]
    cols = [max(len(line) for row in cells for line in row[i]) for i in range(len(fields))]
    out = []
    for n, row in enumerate(cells):
        for k in range(max(len(c) for c in row)):
            out.append("| " + " | ".join((c[k] if k < len(c) else "").ljust(w) for c, w in zip(row, cols)) + " |")
        if n == 0:
            out.append("|" + "|".join("-" * (w + 2) for w in cols) + "|")
    return "\n".join(out)


async def main(args) -> int:
    # 300 viewers are 600 descriptors in daas and 300 here; children inherit the limit.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    ctx = Context(args.daas.resolve(), args.dev_dir.resolve())
    ctx.cluster = Cluster(ctx.daas, ctx.dev_dir)
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    rows = []
    started = time.monotonic()
    try:
        for key in args.only or list(DRILLS):
            rows.append(await run_drill(ctx, key))
    finally:
        ctx.cluster.close()
        if rows:
            built = time.strftime("%Y-%m-%d %H:%M", time.localtime(ctx.daas.stat().st_mtime))
            print(f"\nfault drills: {time.monotonic() - started:.0f} s, {ctx.daas} built {built}\n{table(rows)}",
                  flush=True)
    return 0 if all(r.ok == "yes" for r in rows) else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", choices=list(DRILLS),
                        help="run this drill only (repeatable): " + ", ".join(DRILLS))
    parser.add_argument("--daas", type=Path, default=ROOT / "target/debug/daas", help="the daas binary")
    parser.add_argument("--dev-dir", type=Path, default=ROOT / ".daas/drills",
                        help="the drills' PostgreSQL cluster and work folders")
    try:
        sys.exit(asyncio.run(main(parser.parse_args())))
    except KeyboardInterrupt:
        print("interrupted: what the drills started is stopped", file=sys.stderr)
        sys.exit(130)
    except asyncio.CancelledError:  # SIGTERM
        print("terminated: what the drills started is stopped", file=sys.stderr)
        sys.exit(143)
