//! The local runtime: each session is a process group on this machine, inside a
//! `bubblewrap` sandbox, on its own loopback port. Everything daas needs to find it again
//! after a restart lives in its folder `<sessions dir>/<id>/` and in the handle.
//!
//! A session's processes are started by a small `sh` wrapper in a process group of its own
//! (so daas exiting or being killed does not touch them); the wrapper applies the limits,
//! runs `bwrap`, and writes the exit code to a file, which is how an exit is known even when
//! daas was not running at the time.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

use super::{Found, Handle, Kind, LaunchSpec, Observed, Runtime, RuntimeResult, SESSION_LABEL};

/// Where the local runtime keeps things and what it runs with.
#[derive(Clone, Debug)]
pub struct LocalConfig {
    /// One folder per session (its label, handle, VNC password, exit code).
    pub sessions_dir: PathBuf,
    /// Per-user homes, kept across sessions; mounted at `/home/<user>`.
    pub homes_dir: PathBuf,
    /// Dataset locations are relative to this folder.
    pub data_root: PathBuf,
    /// The Python environment with `jupyter` (the `{venv}` of image commands).
    pub venv: PathBuf,
    /// Programs shipped with daas (the `{tools}` of image commands), e.g. `tools/recon`.
    pub tools_dir: PathBuf,
    /// How long a stop waits after SIGTERM before SIGKILL.
    pub stop_grace: Duration,
    /// The GPU device files sessions of GPU flavours get (see [`gpu_devices`]); none:
    /// GPU flavours fail at launch.
    pub gpu_devices: Vec<PathBuf>,
}

/// How CPU and memory limits are enforced on this machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Limits {
    /// A cgroup v2 per session below this folder: `cpu.max` and `memory.max`.
    CgroupV2(PathBuf),
    /// No writable cgroup v2 with the cpu and memory controllers: the address space is
    /// limited with `ulimit -v`, CPU time is shared by niceness only.
    Rlimits,
}

impl Limits {
    /// Uses cgroup v2 when `/sys/fs/cgroup` is a v2 hierarchy that delegates `cpu` and
    /// `memory` and daas may create a folder there.
    pub fn detect() -> Self {
        let root = Path::new("/sys/fs/cgroup");
        let controllers = std::fs::read_to_string(root.join("cgroup.subtree_control")).unwrap_or_default();
        let words: Vec<&str> = controllers.split_whitespace().collect();
        if words.contains(&"cpu") && words.contains(&"memory") {
            let dir = root.join("daas");
            if std::fs::create_dir_all(&dir).is_ok()
                && std::fs::write(dir.join("cgroup.subtree_control"), "+cpu +memory").is_ok()
            {
                return Limits::CgroupV2(dir);
            }
        }
        Limits::Rlimits
    }

    /// For the README and the start-up log line.
    pub fn describe(&self) -> String {
        match self {
            Limits::CgroupV2(dir) => format!("cgroup v2 under {} (cpu.max, memory.max)", dir.display()),
            Limits::Rlimits => "rlimits (address space per process; CPU not capped)".into(),
        }
    }
}

/// What `sessions.runtime_handle` holds for a local session.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LocalHandle {
    /// The wrapper's pid, which is also the process group of the session.
    pub pid: i32,
    /// Its start time in clock ticks after boot (`/proc/<pid>/stat`, field 22), so a
    /// recycled pid is never taken for the session.
    pub start_time: u64,
    /// Loopback port (0 for a job).
    pub port: u16,
    pub kind: Kind,
    /// For the notebook probe.
    pub base_url: String,
    /// The cgroup folder, when limits use cgroup v2.
    #[serde(default)]
    pub cgroup: Option<PathBuf>,
}

/// The `local` engine: sessions as sandboxed process groups on this machine.
pub struct LocalRuntime {
    config: LocalConfig,
    limits: Limits,
}

/// Environment variables for a session's command.
type Env = Vec<(String, String)>;

/// The wrapper run as `sh -c WRAPPER sh <dir> <cgroup> <memory KiB> <argv...>`.
const WRAPPER: &str = r#"dir="$1"; cgroup="$2"; memory_kib="$3"; shift 3
if [ -n "$cgroup" ]; then echo $$ > "$cgroup/cgroup.procs" || exit 125; fi
if [ -n "$memory_kib" ]; then ulimit -v "$memory_kib" || exit 125; fi
"$@"
code=$?
echo "$code" > "$dir/exit-code.tmp" && mv "$dir/exit-code.tmp" "$dir/exit-code"
exit "$code"
"#;

impl LocalRuntime {
    /// Checks the prerequisites (one clear error for the first one missing).
    pub fn new(config: LocalConfig, limits: Limits) -> anyhow::Result<Self> {
        for program in ["bwrap", "sh"] {
            which(program).with_context(|| format!("the local runtime needs `{program}` (run `make deps`)"))?;
        }
        std::fs::create_dir_all(config.sessions_dir.join("logs"))
            .with_context(|| format!("cannot create {}", config.sessions_dir.display()))?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&config.sessions_dir, std::fs::Permissions::from_mode(0o700))?;
        }
        std::fs::create_dir_all(&config.homes_dir)
            .with_context(|| format!("cannot create {}", config.homes_dir.display()))?;
        let config = LocalConfig {
            sessions_dir: absolute(&config.sessions_dir)?,
            homes_dir: absolute(&config.homes_dir)?,
            data_root: absolute(&config.data_root)?,
            venv: absolute(&config.venv)?,
            tools_dir: absolute(&config.tools_dir)?,
            stop_grace: config.stop_grace,
            gpu_devices: config.gpu_devices,
        };
        Ok(Self { config, limits })
    }

    /// How this machine enforces the flavours' limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    fn dir(&self, id: Uuid) -> PathBuf {
        self.config.sessions_dir.join(id.to_string())
    }

    /// The session's output (stdout and stderr), kept after it stops.
    pub fn log_path(&self, id: Uuid) -> PathBuf {
        self.config.sessions_dir.join("logs").join(format!("{id}.log"))
    }

    /// Where a job writes its results, relative to the owner's home.
    pub fn job_output(id: Uuid) -> String {
        format!("jobs/{id}")
    }

    fn read_handle(&self, id: Uuid) -> Option<LocalHandle> {
        let text = std::fs::read_to_string(self.dir(id).join("handle.json")).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// The `bwrap` command line for a session.
    fn sandbox_args(&self, spec: &LaunchSpec, dir: &Path, home: &Path) -> Vec<String> {
        let c = &self.config;
        // The root is a fresh tmpfs: only the system's programs and libraries, the Python
        // environment and daas's tools are visible, read-only, then what is this session's.
        let mut args: Vec<String> = [
            "--unshare-user",
            "--uid",
            "1000",
            "--gid",
            "1000",
            "--die-with-parent",
            "--unshare-pid",
            "--unshare-ipc",
            "--unshare-uts",
            "--cap-drop",
            "ALL",
            "--ro-bind",
            "/usr",
            "/usr",
            "--ro-bind",
            "/etc",
            "/etc",
            "--dev",
            "/dev",
            "--proc",
            "/proc",
            "--tmpfs",
            "/tmp",
            "--dir",
            "/var/tmp",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        for top in ["/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32"] {
            match std::fs::read_link(top) {
                Ok(target) => args.extend(["--symlink".into(), target.display().to_string(), top.into()]),
                Err(_) if Path::new(top).is_dir() => args.extend(["--ro-bind".into(), top.into(), top.into()]),
                Err(_) => {}
            }
        }
        let mut mount = |op: &str, from: &Path, to: &Path| {
            args.extend([op.to_string(), from.display().to_string(), to.display().to_string()]);
        };
        if c.venv.exists() {
            mount("--ro-bind", &c.venv, &c.venv);
            if let Some(python) = python_home(&c.venv).filter(|p| !p.starts_with("/usr")) {
                mount("--ro-bind", &python, &python);
            }
        }
        if c.tools_dir.exists() {
            mount("--ro-bind", &c.tools_dir, &c.tools_dir);
        }
        if spec.resources.gpus > 0 {
            // Every NVIDIA device: the local runtime does not share GPUs out one by one.
            for device in &c.gpu_devices {
                mount("--dev-bind", device, device);
            }
        }
        mount("--bind", home, &PathBuf::from(format!("/home/{}", spec.owner)));
        mount("--ro-bind", &dir.join("share"), Path::new("/session"));
        for dataset in &spec.datasets {
            let source = c.data_root.join(&dataset.location);
            if !dataset.location.contains("://") && source.exists() {
                mount("--ro-bind", &source, &Path::new("/data").join(sanitise(&dataset.name)));
            }
        }
        let home_in = format!("/home/{}", spec.owner);
        let workdir = match spec.kind {
            Kind::Job => format!("{home_in}/{}", Self::job_output(spec.session_id)),
            _ => home_in.clone(),
        };
        args.extend(["--chdir".into(), workdir, "--hostname".into(), "daas-session".into(), "--".into()]);
        args
    }

    /// `{port}`, `{display}`, `{base_url}`, `{home}`, `{output}`, `{venv}`, `{tools}` in the
    /// image's command.
    fn expand(&self, text: &str, spec: &LaunchSpec, port: u16) -> String {
        let home = format!("/home/{}", spec.owner);
        text.replace("{port}", &port.to_string())
            .replace("{display}", &display(port).to_string())
            .replace("{base_url}", &spec.base_url)
            .replace("{output}", &format!("{home}/{}", Self::job_output(spec.session_id)))
            .replace("{home}", &home)
            .replace("{venv}", &self.config.venv.display().to_string())
            .replace("{tools}", &self.config.tools_dir.display().to_string())
    }

    /// The image's `argv` and `env`, expanded.
    fn command_of(&self, spec: &LaunchSpec, port: u16) -> anyhow::Result<(Vec<String>, Env)> {
        let Some(command) = &spec.image.local_command else {
            bail!("the image {:?} has no command for the local runtime", spec.image.name);
        };
        let argv: Vec<String> = command
            .get("argv")
            .and_then(|a| a.as_array())
            .map(|a| a.iter().filter_map(|s| s.as_str()).map(|s| self.expand(s, spec, port)).collect())
            .unwrap_or_default();
        if argv.is_empty() {
            bail!("the image {:?} has an empty local command", spec.image.name);
        }
        let env = command
            .get("env")
            .and_then(|e| e.as_object())
            .map(|e| e.iter().filter_map(|(k, v)| Some((k.clone(), self.expand(v.as_str()?, spec, port)))).collect())
            .unwrap_or_default();
        Ok((argv, env))
    }

    fn cgroup_for(&self, spec: &LaunchSpec) -> anyhow::Result<Option<PathBuf>> {
        let Limits::CgroupV2(root) = &self.limits else { return Ok(None) };
        let dir = root.join(spec.session_id.to_string());
        std::fs::create_dir_all(&dir)?;
        let period = 100_000;
        let quota = i64::from(spec.resources.cpu_millis) * period / 1000;
        std::fs::write(dir.join("cpu.max"), format!("{quota} {period}"))?;
        std::fs::write(dir.join("memory.max"), (i64::from(spec.resources.memory_mib) * 1024 * 1024).to_string())?;
        Ok(Some(dir))
    }
}

/// The NVIDIA device files of this machine (`/dev/nvidia0`, `/dev/nvidiactl`, ...).
pub fn gpu_devices() -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir("/dev") else { return Vec::new() };
    let mut devices: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.starts_with("nvidia")))
        .map(|e| e.path())
        .filter(|p| !p.is_dir())
        .collect();
    devices.sort();
    devices
}

/// The installation a virtual environment's interpreter comes from (`home` in
/// `pyvenv.cfg` is its `bin` folder), which the sandbox must see for the venv to work.
fn python_home(venv: &Path) -> Option<PathBuf> {
    let cfg = std::fs::read_to_string(venv.join("pyvenv.cfg")).ok()?;
    let home = cfg.lines().find_map(|l| l.strip_prefix("home")?.trim_start().strip_prefix('=').map(str::trim))?;
    Some(Path::new(home).parent()?.to_owned())
}

/// An X display number derived from the port, so that sessions never share one (X servers
/// also listen on abstract sockets named after the display, which the sandbox shares).
fn display(port: u16) -> u32 {
    u32::from(port)
}

/// A dataset name as a single path component.
fn sanitise(name: &str) -> String {
    let s: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).collect();
    if s.starts_with('.') || s.is_empty() {
        format!("_{s}")
    } else {
        s
    }
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    Ok(if path.is_absolute() { path.to_owned() } else { std::env::current_dir()?.join(path) })
}

/// The full path of a program on `PATH`.
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(program)).find(|p| p.is_file())
}

/// A free loopback port (the session binds it a moment later).
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// `/proc/<pid>/stat`: (state, process group, start time), if the process exists.
fn proc_stat(pid: i32) -> Option<(char, i32, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: parse after the last `)`.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let pgrp = fields.get(2)?.parse().ok()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((state, pgrp, start))
}

/// The wrapper still runs (and is the process daas started, not a recycled pid).
fn alive(handle: &LocalHandle) -> bool {
    matches!(proc_stat(handle.pid), Some((state, _, start)) if start == handle.start_time && state != 'Z' && state != 'X')
}

/// Whether process group `handle.pid` is still the session's. Linux never gives out a pid
/// still in use as a process group id, so when another process now has that pid (another
/// start time), the session's group ended and the number was recycled: signalling it would
/// hit a stranger (pids wrap at 32768 on many machines).
fn group_is_ours(handle: &LocalHandle) -> bool {
    proc_stat(handle.pid).is_none_or(|(_, _, start)| start == handle.start_time)
}

/// Processes (not zombies) left in the session's process group.
fn session_processes(handle: &LocalHandle) -> Vec<i32> {
    if group_is_ours(handle) {
        group_members(handle.pid)
    } else {
        Vec::new()
    }
}

/// Kills what is left of every session under a sessions folder (for tests and benchmarks
/// that must not leave sessions running; sessions outlive daas by design).
pub fn kill_all(sessions_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(sessions_dir) else { return };
    for entry in entries.flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path().join("handle.json")) else { continue };
        if let Ok(handle) = serde_json::from_str::<LocalHandle>(&text) {
            if group_is_ours(&handle) {
                signal_group(handle.pid, rustix::process::Signal::KILL);
            }
        }
    }
}

/// Processes (not zombies) in a process group.
fn group_members(pgid: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| matches!(proc_stat(*pid), Some((state, pgrp, _)) if pgrp == pgid && state != 'Z' && state != 'X'))
        .collect()
}

/// Signals a session's process group; never init's group, nor daas's own, whatever a
/// handle from the database says (`kill(-1)` would take every process of the machine).
fn signal_group(pgid: i32, signal: rustix::process::Signal) {
    if pgid <= 1 || pgid == rustix::process::getpgrp().as_raw_nonzero().get() {
        tracing::error!(pgid, "refusing to signal this process group: not a session's");
        return;
    }
    if let Some(pid) = rustix::process::Pid::from_raw(pgid) {
        let _ = rustix::process::kill_process_group(pid, signal);
    }
}

/// The last `lines` lines of a file, lossily decoded.
fn tail(path: &Path, lines: usize) -> String {
    let Ok(bytes) = std::fs::read(path) else { return String::new() };
    let start = bytes.len().saturating_sub(64 * 1024);
    let text = String::from_utf8_lossy(&bytes[start..]);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn handle_of(value: &Handle) -> anyhow::Result<LocalHandle> {
    serde_json::from_value(value.0.clone()).context("not a local runtime handle")
}

/// Does something answer on the port the way the session's server should?
async fn probe(handle: &LocalHandle) -> bool {
    let connect = tokio::net::TcpStream::connect(("127.0.0.1", handle.port));
    let Ok(Ok(mut stream)) = tokio::time::timeout(Duration::from_secs(1), connect).await else { return false };
    let mut buf = [0u8; 12];
    match handle.kind {
        // An RFB server speaks first: "RFB 003.008\n".
        Kind::Desktop => {
            matches!(tokio::time::timeout(Duration::from_secs(1), stream.read_exact(&mut buf)).await, Ok(Ok(_)))
                && buf.starts_with(b"RFB ")
        }
        // Any HTTP answer under the base URL means the server is up. Read the whole answer,
        // so the server does not log a broken pipe.
        Kind::Notebook => {
            let request = format!("GET {}api HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n", handle.base_url);
            if stream.write_all(request.as_bytes()).await.is_err() {
                return false;
            }
            let mut answer = Vec::new();
            let _ =
                tokio::time::timeout(Duration::from_secs(2), (&mut stream).take(64 * 1024).read_to_end(&mut answer))
                    .await;
            answer.starts_with(b"HTTP/1.")
        }
        Kind::Job => true,
    }
}

#[async_trait::async_trait]
impl Runtime for LocalRuntime {
    fn name(&self) -> &'static str {
        "local"
    }

    async fn launch(&self, spec: &LaunchSpec) -> RuntimeResult<Handle> {
        let id = spec.session_id;
        if let Some(handle) = self.read_handle(id).filter(alive) {
            return Ok(Handle(serde_json::to_value(handle)?));
        }
        // Fail at once rather than run a GPU flavour without its GPU.
        if spec.resources.gpus > 0 && self.config.gpu_devices.is_empty() {
            bail!("the flavour asks for {} GPU(s) and this machine has none", spec.resources.gpus);
        }
        let dir = self.dir(id);
        let share = dir.join("share");
        std::fs::create_dir_all(&share).with_context(|| format!("cannot create {}", share.display()))?;
        std::fs::write(dir.join(SESSION_LABEL.replace('/', "_")), id.to_string())?;
        let _ = std::fs::remove_file(dir.join("exit-code"));
        let home = self.config.homes_dir.join(&spec.owner);
        std::fs::create_dir_all(&home)?;
        if spec.kind == Kind::Job {
            std::fs::create_dir_all(home.join(Self::job_output(id)))?;
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        match spec.kind {
            Kind::Desktop => std::fs::write(share.join("vncpasswd"), super::vnc::password_file(&spec.secret))?,
            Kind::Job => std::fs::write(
                share.join("parameters.json"),
                serde_json::to_vec_pretty(spec.parameters.as_ref().unwrap_or(&serde_json::json!({})))?,
            )?,
            Kind::Notebook => {}
        }
        let port = if spec.kind == Kind::Job { 0 } else { free_port()? };
        let (argv, env) = self.command_of(spec, port)?;
        let cgroup = self.cgroup_for(spec)?;
        let memory_kib = match cgroup {
            Some(_) => String::new(),
            None => (i64::from(spec.resources.memory_mib) * 1024).to_string(),
        };
        // Only daas reads the output: it may show the server's URL with its token.
        use std::os::unix::fs::OpenOptionsExt;
        let log = std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(self.log_path(id))?;
        let mut command = tokio::process::Command::new("sh");
        command
            .arg("-c")
            .arg(WRAPPER)
            .arg("sh")
            .arg(&dir)
            .arg(cgroup.as_ref().map(|c| c.display().to_string()).unwrap_or_default())
            .arg(memory_kib)
            .arg("nice")
            .arg("-n")
            .arg("5")
            .arg("bwrap")
            .args(self.sandbox_args(spec, &dir, &home))
            .args(&argv)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()))
            .env("HOME", format!("/home/{}", spec.owner))
            .env("USER", &spec.owner)
            .env("LANG", "C.UTF-8")
            .env("DAAS_SESSION_ID", id.to_string())
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            // Its own process group: daas stopping (or crashing) leaves it running, and
            // a stop reaches all of it at once.
            .process_group(0)
            .kill_on_drop(false);
        if spec.kind == Kind::Notebook {
            // In the environment, not on the command line, where any local user could read it.
            command.env("JUPYTER_TOKEN", &spec.secret);
        }
        let mut child = command.spawn().context("cannot start the session's processes")?;
        let pid = child.id().context("the session exited at once")? as i32;
        let start_time = proc_stat(pid).map(|s| s.2).unwrap_or_default();
        // Reap it when it ends while daas runs (after a restart, init does).
        tokio::spawn(async move {
            let _ = child.wait().await;
        });
        let handle = LocalHandle { pid, start_time, port, kind: spec.kind, base_url: spec.base_url.clone(), cgroup };
        std::fs::write(dir.join("handle.json"), serde_json::to_vec(&handle)?)?;
        Ok(Handle(serde_json::to_value(handle)?))
    }

    async fn observe(&self, session_id: Uuid, handle: &Handle) -> RuntimeResult<Observed> {
        let handle = handle_of(handle)?;
        let dir = self.dir(session_id);
        if !alive(&handle) {
            let code = std::fs::read_to_string(dir.join("exit-code")).ok().and_then(|c| c.trim().parse::<i32>().ok());
            if code.is_none() && !dir.exists() && session_processes(&handle).is_empty() {
                return Ok(Observed::Gone);
            }
            let last = tail(&self.log_path(session_id), 10);
            let what = match code {
                Some(c) if c > 128 => format!("was killed (signal {}, exit code {c})", c - 128),
                Some(c) => format!("exited with code {c}"),
                None => "was killed outside daas (no exit code recorded)".to_string(),
            };
            let message = if last.is_empty() { what } else { format!("{what}; last output:\n{last}") };
            return Ok(Observed::Exited { exit_code: code, message });
        }
        // Probe until it first answers; after that the process being alive is enough (a
        // probe every pass would fill the session's log with connections).
        let ready = dir.join("ready");
        if ready.exists() || probe(&handle).await {
            let _ = std::fs::write(&ready, b"");
            let endpoint = if handle.port == 0 { String::new() } else { format!("127.0.0.1:{}", handle.port) };
            return Ok(Observed::Running { endpoint });
        }
        let message = match handle.kind {
            Kind::Desktop => "waiting for the desktop to answer on its port",
            Kind::Notebook => "waiting for JupyterLab to answer on its port",
            Kind::Job => "running",
        };
        Ok(Observed::Pending { message: message.into() })
    }

    async fn stop(&self, session_id: Uuid, handle: &Handle) -> RuntimeResult<()> {
        let dir = self.dir(session_id);
        let handle = handle_of(handle).ok().or_else(|| self.read_handle(session_id));
        if let Some(handle) = &handle {
            // The group outlives the wrapper when only the wrapper was killed: signal
            // the group whenever anything is left in it, not only when the wrapper lives.
            if alive(handle) || !session_processes(handle).is_empty() {
                signal_group(handle.pid, rustix::process::Signal::TERM);
                let deadline = tokio::time::Instant::now() + self.config.stop_grace;
                while !session_processes(handle).is_empty() && tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
                while !session_processes(handle).is_empty() {
                    if tokio::time::Instant::now() > deadline {
                        bail!("processes of session {session_id} survive SIGKILL");
                    }
                    signal_group(handle.pid, rustix::process::Signal::KILL);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            if let Some(cgroup) = &handle.cgroup {
                let _ = std::fs::remove_dir(cgroup);
            }
        }
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("cannot remove {}", dir.display())),
        }
    }

    async fn list(&self) -> RuntimeResult<Vec<Found>> {
        let label = SESSION_LABEL.replace('/', "_");
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&self.config.sessions_dir)? {
            let path = entry?.path();
            let Ok(text) = std::fs::read_to_string(path.join(&label)) else { continue };
            let Ok(session_id) = text.trim().parse::<Uuid>() else { continue };
            let handle = self.read_handle(session_id).map(serde_json::to_value).transpose()?;
            found.push(Found { session_id, handle: Handle(handle.unwrap_or(serde_json::Value::Null)) });
        }
        Ok(found)
    }

    async fn logs(&self, session_id: Uuid, _handle: &Handle, lines: usize) -> RuntimeResult<String> {
        Ok(tail(&self.log_path(session_id), lines))
    }
}
