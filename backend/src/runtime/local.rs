//! The local runtime: each session is a process group on this machine, inside a
//! `bubblewrap` sandbox. Everything daas needs to find it again after a restart lives in
//! its folder `<sessions dir>/<id>/` and in the handle.
//!
//! Every session is a hostile tenant. When daas runs as root, a session runs as its
//! owner's host uid (never daas's, never root; `setpriv` drops to it inside the sandbox),
//! with no new privileges, no capabilities, its own mount, PID, IPC, UTS, cgroup and
//! network namespaces (no network but its own loopback: not the host's listeners, not the
//! LAN, not another session's abstract sockets), and of the host's files only `/usr`, a
//! few files of `/etc`, daas's tools, its data read-only and its owner's home (0700,
//! `nosuid,nodev`). daas reaches a desktop or notebook only through a Unix socket in
//! the session's folder, which no other session can see. When daas does not run as root,
//! sessions run in an unprivileged user namespace as daas's own uid: the same namespaces,
//! but one user's files are not kept from another's sessions by the host.
//!
//! A session's processes are started by a small `sh` wrapper in a process group of its own
//! (so daas exiting or being killed does not touch them); the wrapper applies the limits,
//! runs `bwrap`, and writes the exit code to a file, which is how an exit is known even when
//! daas was not running at the time.
//!
//! Written ahead: the folder's label and `session.json` (the handle but for the process)
//! are on disk before anything starts, and the wrapper records its own process (`pid`)
//! before it runs anything else, or exits. So whenever daas stops (a crash, a full disk),
//! every process of a session is findable from its folder: a second launch adopts it, the
//! orphan clean-up stops it, and no folder is removed while something of it runs.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

use super::{Found, Handle, Kind, LaunchSpec, Observed, Runtime, RuntimeResult, SESSION_LABEL};

/// Where the local runtime keeps things and what it runs with (also what the Slurm runtime
/// hands its node program in `launch.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct LocalConfig {
    /// One folder per session (its label, handle, process record, VNC password, exit code).
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

/// Processes (and threads) one session may have at once.
const MAX_PROCESSES: u32 = 2048;

/// How CPU, memory and process-count limits are enforced on this machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Limits {
    /// A cgroup v2 per session below this folder: `cpu.max`, `memory.max`, `pids.max`.
    CgroupV2(PathBuf),
    /// cgroup v1: a group per session below `daas/` of the `cpu`, `memory` and `pids`
    /// hierarchies (`cpu.cfs_quota_us`, `memory.limit_in_bytes`, `pids.max`).
    CgroupV1 { cpu: PathBuf, memory: PathBuf, pids: PathBuf },
    /// No writable cgroup: the address space is limited with `ulimit -v` per process and
    /// processes with `ulimit -u` per uid; CPU time is shared by niceness only.
    Rlimits,
    /// A batch system started the session and enforces the flavour's limits itself (the
    /// Slurm runtime's node program: Slurm's cgroups, `--cpus-per-task`, `--mem`).
    Scheduler,
}

impl Limits {
    /// Uses cgroup v2 when `/sys/fs/cgroup` is a v2 hierarchy that delegates `cpu`,
    /// `memory` and `pids` and daas may create a folder there; else the cgroup v1
    /// hierarchies of those controllers where daas may create folders; else rlimits.
    pub fn detect() -> Self {
        let root = Path::new("/sys/fs/cgroup");
        let controllers = std::fs::read_to_string(root.join("cgroup.subtree_control")).unwrap_or_default();
        let words: Vec<&str> = controllers.split_whitespace().collect();
        if ["cpu", "memory", "pids"].iter().all(|c| words.contains(c)) {
            let dir = root.join("daas");
            if std::fs::create_dir_all(&dir).is_ok()
                && std::fs::write(dir.join("cgroup.subtree_control"), "+cpu +memory +pids").is_ok()
            {
                return Limits::CgroupV2(dir);
            }
        }
        let v1 = |controller: &str| {
            let dir = root.join(controller).join("daas");
            (root.join(controller).join("cgroup.procs").exists() && std::fs::create_dir_all(&dir).is_ok())
                .then_some(dir)
        };
        if let (Some(cpu), Some(memory), Some(pids)) = (v1("cpu"), v1("memory"), v1("pids")) {
            return Limits::CgroupV1 { cpu, memory, pids };
        }
        Limits::Rlimits
    }

    /// For the README and the start-up log line.
    pub fn describe(&self) -> String {
        match self {
            Limits::CgroupV2(dir) => format!("cgroup v2 under {} (cpu.max, memory.max, pids.max)", dir.display()),
            Limits::CgroupV1 { cpu, .. } => format!(
                "cgroup v1 under {} of the cpu, memory and pids hierarchies (cfs quota, memory limit, pids.max)",
                cpu.strip_prefix("/sys/fs/cgroup/cpu").unwrap_or(cpu).display()
            ),
            Limits::Rlimits => "rlimits (address space per process, processes per uid; CPU not capped)".into(),
            Limits::Scheduler => "the batch system's (Slurm's cgroups)".into(),
        }
    }
}

/// Whose identity sessions run under, which depends on daas's own privileges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Isolation {
    /// daas is root: each session runs as its owner's host uid.
    PerUser,
    /// daas is not root: sessions run as daas's uid in an unprivileged user namespace.
    SameUid,
}

impl Isolation {
    pub fn detect() -> Self {
        if rustix::process::geteuid().is_root() {
            Isolation::PerUser
        } else {
            Isolation::SameUid
        }
    }

    /// For the start-up log line.
    pub fn describe(self) -> &'static str {
        match self {
            Isolation::PerUser => "each session runs as its owner's host uid in its own namespaces (network included)",
            Isolation::SameUid => {
                "daas is not root: sessions run as daas's uid in an unprivileged user namespace, with their own \
                 network; the host does not keep one user's files from another's sessions (run daas as root for \
                 a uid per user)"
            }
        }
    }
}

/// What `sessions.runtime_handle` holds for a local session. `session.json` in its folder
/// holds it before the start, with `pid` 0 (see [`LocalRuntime::read_handle`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LocalHandle {
    /// The wrapper's pid, which is also the process group of the session; 0 until it runs.
    pub pid: i32,
    /// Its start time in clock ticks after boot (`/proc/<pid>/stat`, field 22), so a
    /// recycled pid is never taken for the session.
    pub start_time: u64,
    /// The Unix socket daas reaches a desktop or notebook through (none for a job).
    #[serde(default)]
    pub socket: Option<PathBuf>,
    pub kind: Kind,
    /// For the notebook probe.
    pub base_url: String,
    /// The session's cgroup folders (one with cgroup v2, one per controller with v1).
    #[serde(default)]
    pub cgroups: Vec<PathBuf>,
}

/// The `local` engine: sessions as sandboxed process groups on this machine.
pub struct LocalRuntime {
    config: LocalConfig,
    limits: Limits,
    isolation: Isolation,
}

/// Environment variables for a session's command.
type Env = Vec<(String, String)>;

/// Where a desktop or notebook listens inside its sandbox (`{socket}` in image commands);
/// `<session folder>/run/` outside.
const SOCKET_IN: &str = "/run/daas/server.sock";
/// The TCP port of an image command that listens on `{port}` rather than `{socket}`:
/// inside the session's own network namespace, so every session can have the same one.
const SESSION_PORT: u16 = 8888;
/// `~/data`, a link to the datasets (`/data`), so that a file browser rooted at the home
/// (JupyterLab's) reaches them in one click; made at each start where the home has nothing
/// of that name (a user's own `data`, file, folder or link, stays theirs).
const LINK_DATA: &str = r#"[ -e "$HOME/data" ] || [ -L "$HOME/data" ] || ln -s /data "$HOME/data"; "#;
/// The handle written before the start, in the session's folder.
const PLANNED: &str = "session.json";
/// How long a start waits for the wrapper to record its process (it does so at once).
const RECORD_TIMEOUT: Duration = Duration::from_secs(10);

/// The wrapper run as `sh -c WRAPPER sh <dir> <cgroups> <memory KiB> <processes> <argv...>`
/// (as daas: it records its process, enters the cgroups, sets the rlimits, records the exit
/// code). The record comes first and is all or nothing (written, then renamed): without
/// it nothing runs.
const WRAPPER: &str = r#"dir="$1"; cgroups="$2"; memory_kib="$3"; processes="$4"; shift 4
read -r stat < /proc/$$/stat && echo "$stat" > "$dir/pid.tmp" && mv "$dir/pid.tmp" "$dir/pid" ||
  { echo "daas: cannot record the session's process in $dir/pid" >&2; exit 125; }
for cgroup in $cgroups; do echo $$ > "$cgroup/cgroup.procs" || exit 125; done
if [ -n "$memory_kib" ]; then ulimit -v "$memory_kib" || exit 125; fi
if [ -n "$processes" ]; then ulimit -u "$processes" || exit 125; fi
"$@"
code=$?
echo "$code" > "$dir/exit-code.tmp" && mv "$dir/exit-code.tmp" "$dir/exit-code"
exit "$code"
"#;

impl LocalConfig {
    /// Makes the sessions' folder (with `logs/`) and the homes' folder, daas's alone
    /// (sessions see their own folder and home only as bwrap mounts them); the same with
    /// every path absolute.
    pub fn prepare(self) -> anyhow::Result<Self> {
        std::fs::create_dir_all(self.sessions_dir.join("logs"))
            .with_context(|| format!("cannot create {}", self.sessions_dir.display()))?;
        std::fs::create_dir_all(&self.homes_dir)
            .with_context(|| format!("cannot create {}", self.homes_dir.display()))?;
        set_mode(&self.sessions_dir, 0o700)?;
        set_mode(&self.sessions_dir.join("logs"), 0o700)?;
        set_mode(&self.homes_dir, 0o700)?;
        Ok(LocalConfig {
            sessions_dir: absolute(&self.sessions_dir)?,
            homes_dir: absolute(&self.homes_dir)?,
            data_root: absolute(&self.data_root)?,
            venv: absolute(&self.venv)?,
            tools_dir: absolute(&self.tools_dir)?,
            ..self
        })
    }
}

impl LocalRuntime {
    /// Checks the prerequisites (one clear error for the first one missing).
    pub fn new(config: LocalConfig, limits: Limits) -> anyhow::Result<Self> {
        let isolation = Isolation::detect();
        for program in ["bwrap", "sh", "setpriv"] {
            which(program).with_context(|| format!("the local runtime needs `{program}` (run `make deps`)"))?;
        }
        Ok(Self { config: config.prepare()?, limits, isolation })
    }

    /// How this machine enforces the flavours' limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Whose identity sessions run under.
    pub fn isolation(&self) -> Isolation {
        self.isolation
    }

    fn dir(&self, id: Uuid) -> PathBuf {
        self.config.sessions_dir.join(id.to_string())
    }

    /// The session's output (stdout and stderr), kept after it stops.
    pub fn log_path(&self, id: Uuid) -> PathBuf {
        self.config.sessions_dir.join("logs").join(format!("{id}.log"))
    }

    /// The handle written ahead (`session.json`) with the process the wrapper recorded
    /// (`pid`; `pid` 0 when it did not run), or the `handle.json` a daas before the
    /// write-ahead wrote after the start; `None` when the folder holds neither.
    fn read_handle(&self, id: Uuid) -> Option<LocalHandle> {
        handle_in(&self.dir(id))
    }

    /// The `bwrap` command line for a session, up to its command.
    ///
    /// As root, bwrap makes the sandbox with root's rights (so it reaches whatever it
    /// mounts, wherever daas's folders are), keeps only the capabilities to change uid,
    /// and `setpriv` (util-linux) then becomes the session's uid for good: no supplementary
    /// groups, no capabilities (bounding set emptied), `no_new_privs`. bwrap's own
    /// `--uid` is no use here: run as root, its user namespace maps the uid inside to root
    /// outside. As another user, bwrap makes an unprivileged user namespace (`--uid`
    /// inside, daas's uid outside) and refuses nested ones.
    fn sandbox_args(&self, spec: &LaunchSpec, dir: &Path, home: &Path) -> Vec<String> {
        let c = &self.config;
        let uid = spec.uid.to_string();
        let mut args: Vec<String> = match self.isolation {
            // DAC_READ_SEARCH: to `--chdir` into the home, which is the user's alone.
            Isolation::PerUser => ["--cap-drop".to_string(), "ALL".into()]
                .into_iter()
                .chain(
                    ["SETUID", "SETGID", "SETPCAP", "DAC_READ_SEARCH"]
                        .into_iter()
                        .flat_map(|cap| ["--cap-add".to_string(), format!("CAP_{cap}")]),
                )
                .collect(),
            Isolation::SameUid => {
                ["--unshare-user", "--uid", &uid, "--gid", &uid, "--disable-userns", "--cap-drop", "ALL"]
                    .map(String::from)
                    .to_vec()
            }
        };
        // The root is a fresh tmpfs: only the system's programs and libraries, a few files
        // of /etc, the Python environment and daas's tools are visible, read-only, then
        // what is this session's. bwrap mounts every bind `nosuid` (and `nodev`, but for
        // --dev-bind), so a setuid bit set in the home means nothing.
        args.extend(
            [
                "--die-with-parent",
                "--unshare-pid",
                "--unshare-ipc",
                "--unshare-uts",
                "--unshare-net",
                "--unshare-cgroup-try",
                "--dev",
                "/dev",
                // POSIX shared memory and semaphores (Python's multiprocessing, joblib) for
                // the session's uid; private, and charged to the session's memory.
                "--perms",
                "1777",
                "--tmpfs",
                "/dev/shm",
                "--proc",
                "/proc",
                "--perms",
                "1777",
                "--tmpfs",
                "/tmp",
            ]
            .map(String::from),
        );
        let mut root = Root { args, made: Default::default(), mounted: Default::default() };
        root.mount("--ro-bind", Path::new("/usr"), Path::new("/usr"));
        root.dir(Path::new("/var/tmp"), "1777");
        for top in ["/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32"] {
            match std::fs::read_link(top) {
                Ok(target) => root.args.extend(["--symlink".into(), target.display().to_string(), top.into()]),
                Err(_) if Path::new(top).is_dir() => root.mount("--ro-bind", Path::new(top), Path::new(top)),
                Err(_) => {}
            }
        }
        for file in ETC {
            let path = Path::new("/etc").join(file);
            if path.exists() {
                root.mount("--ro-bind", &path, &path);
            }
        }
        // The session's own account files: its user, root and nobody, nothing of the host's.
        for file in ["passwd", "group", "hosts", "hostname"] {
            root.mount("--ro-bind", &dir.join("etc").join(file), &Path::new("/etc").join(file));
        }
        if c.venv.exists() {
            root.mount("--ro-bind", &c.venv, &c.venv);
            if let Some(python) = python_home(&c.venv).filter(|p| !p.starts_with("/usr")) {
                root.mount("--ro-bind", &python, &python);
            }
        }
        if c.tools_dir.exists() {
            root.mount("--ro-bind", &c.tools_dir, &c.tools_dir);
        }
        if spec.resources.gpus > 0 {
            // Every NVIDIA device: the local runtime does not share GPUs out one by one.
            for device in &c.gpu_devices {
                root.mount("--dev-bind", device, device);
            }
        }
        root.mount("--bind", home, &PathBuf::from(format!("/home/{}", spec.owner)));
        root.mount("--ro-bind", &dir.join("share"), Path::new("/session"));
        if spec.kind != Kind::Job {
            root.mount("--bind", &dir.join("run"), Path::new(SOCKET_IN).parent().expect("a folder"));
        }
        // Always there, so that the file manager, `~/data` and scripts find the datasets'
        // folder even when the experiment has none.
        root.dir(Path::new("/data"), "0755");
        for dataset in &spec.datasets {
            let source = c.data_root.join(&dataset.location);
            if !dataset.location.contains("://") && source.exists() {
                root.mount("--ro-bind", &source, &Path::new("/data").join(sanitise(&dataset.name)));
            }
        }
        let mut args = root.args;
        args.extend([
            "--chdir".into(),
            format!("/home/{}", spec.owner),
            "--hostname".into(),
            HOSTNAME.into(),
            "--".into(),
        ]);
        if self.isolation == Isolation::PerUser {
            args.extend([
                "setpriv".into(),
                format!("--reuid={uid}"),
                format!("--regid={uid}"),
                "--clear-groups".into(),
                "--no-new-privs".into(),
                "--inh-caps=-all".into(),
                "--bounding-set=-all".into(),
                "--".into(),
            ]);
        }
        args
    }

    /// `{socket}`, `{port}`, `{display}`, `{base_url}`, `{home}`, `{output}`, `{venv}`,
    /// `{tools}` in the image's command.
    fn expand(&self, text: &str, spec: &LaunchSpec) -> String {
        let home = format!("/home/{}", spec.owner);
        text.replace("{socket}", SOCKET_IN)
            .replace("{port}", &SESSION_PORT.to_string())
            // The session's network namespace has its own abstract sockets: no other X
            // server can be on its display.
            .replace("{display}", "1")
            .replace("{base_url}", &spec.base_url)
            .replace("{output}", &format!("{home}/{}", super::job_output(spec.session_id)))
            .replace("{home}", &home)
            .replace("{venv}", &self.config.venv.display().to_string())
            .replace("{tools}", &self.config.tools_dir.display().to_string())
    }

    /// The image's `argv` and `env`, expanded, and wrapped in what the session does first
    /// (as the user, inside the sandbox: daas never follows a path in a home with its own
    /// privileges): `~/data` (see [`LINK_DATA`]); a job makes its output folder; a desktop or
    /// notebook whose command listens on `{port}` rather than `{socket}` gets `socat`
    /// relaying the socket to that port.
    fn command_of(&self, spec: &LaunchSpec) -> anyhow::Result<(Vec<String>, Env)> {
        let Some(command) = &spec.image.local_command else {
            bail!("the image {:?} has no command for the local runtime", spec.image.name);
        };
        let raw: Vec<&str> = command
            .get("argv")
            .and_then(|a| a.as_array())
            .map(|a| a.iter().filter_map(|s| s.as_str()).collect())
            .unwrap_or_default();
        if raw.is_empty() {
            bail!("the image {:?} has an empty local command", spec.image.name);
        }
        let argv: Vec<String> = raw.iter().map(|s| self.expand(s, spec)).collect();
        let mut env: Env = command
            .get("env")
            .and_then(|e| e.as_object())
            .map(|e| e.iter().filter_map(|(k, v)| Some((k.clone(), self.expand(v.as_str()?, spec)))).collect())
            .unwrap_or_default();
        if spec.kind == Kind::Notebook {
            // daas's Jupyter settings, whatever the command: the server renders no token into
            // its pages (the proxy adds it to every request and never rewrites a body).
            let settings = self.config.tools_dir.join("jupyter");
            if !settings.join("jupyter_server_config.py").is_file() {
                bail!("daas's Jupyter settings are missing: no jupyter_server_config.py in {}", settings.display());
            }
            env.push(("JUPYTER_CONFIG_PATH".into(), settings.display().to_string()));
            env.push(("DAAS_TOKEN_HASH_FILE".into(), format!("/session/{TOKEN_HASH}")));
        }
        if spec.kind != Kind::Job {
            // Where it may tell how far its start is (`LocalRuntime::observe` reads it).
            let run = Path::new(SOCKET_IN).parent().expect("a folder");
            env.push(("DAAS_PROGRESS_FILE".into(), run.join(PROGRESS).display().to_string()));
        }
        let (script, args) = match spec.kind {
            Kind::Job => (
                r#"mkdir -p "$1" && cd "$1" && shift && exec "$@""#.to_string(),
                vec![format!("/home/{}/{}", spec.owner, super::job_output(spec.session_id))],
            ),
            _ if command.to_string().contains("{socket}") => (r#"exec "$@""#.to_string(), Vec::new()),
            _ => (
                format!(
                    r#"socat UNIX-LISTEN:{SOCKET_IN},fork,mode=600 TCP:127.0.0.1:{SESSION_PORT} 2>/dev/null & exec "$@""#
                ),
                Vec::new(),
            ),
        };
        let prefix = ["sh".to_string(), "-c".into(), format!("{LINK_DATA}{script}"), "sh".into()];
        Ok((prefix.into_iter().chain(args).chain(argv).collect(), env))
    }

    /// The session's own `/etc/passwd`, `group`, `hosts` and `hostname`: its user (with
    /// the owner's name and uid), root and nobody.
    fn write_etc(&self, spec: &LaunchSpec, dir: &Path) -> anyhow::Result<()> {
        let etc = dir.join("etc");
        std::fs::create_dir_all(&etc).with_context(|| format!("cannot create {}", etc.display()))?;
        let (user, uid) = (&spec.owner, spec.uid);
        let files = [
            (
                "passwd",
                format!(
                    "root:x:0:0:root:/root:/usr/sbin/nologin\n{user}:x:{uid}:{uid}:{user}:/home/{user}:/bin/bash\n\
                     nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
                ),
            ),
            ("group", format!("root:x:0:\n{user}:x:{uid}:\nnogroup:x:65534:\n")),
            ("hosts", format!("127.0.0.1 localhost {HOSTNAME}\n::1 localhost ip6-localhost ip6-loopback\n")),
            ("hostname", format!("{HOSTNAME}\n")),
        ];
        for (name, text) in files {
            write(&etc.join(name), text)?;
        }
        Ok(())
    }

    /// The owner's home, `<homes dir>/<owner>`: made at the first launch, theirs alone
    /// (0700, owned by `uid` when sessions have uids of their own). A home made before
    /// sessions had their own uids is handed over whole, by `chown -R`, which never
    /// follows the symbolic links a user may have put there.
    fn home(&self, spec: &LaunchSpec, uid: Option<u32>) -> anyhow::Result<PathBuf> {
        use std::os::unix::fs::MetadataExt;
        let home = self.config.homes_dir.join(&spec.owner);
        let metadata = match std::fs::symlink_metadata(&home) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir(&home).with_context(|| format!("cannot create {}", home.display()))?;
                std::fs::symlink_metadata(&home)?
            }
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", home.display())),
        };
        if !metadata.is_dir() {
            bail!("the home {} is not a folder", home.display());
        }
        if let Some(uid) = uid.filter(|uid| metadata.uid() != *uid) {
            let status = std::process::Command::new("chown")
                .args(["-R", "-P", &format!("{uid}:{uid}"), "--"])
                .arg(&home)
                .status()
                .context("cannot run chown")?;
            anyhow::ensure!(status.success(), "cannot give the home {} to uid {uid}", home.display());
        }
        set_mode(&home, 0o700)?;
        Ok(home)
    }

    /// Writes the session's folder, the handle first, then starts the wrapper and waits for
    /// its record of its process; returns the handle and the wrapper, which the caller
    /// reaps. On an error nothing of the session runs; the caller removes what was written.
    /// (The Slurm runtime's node program starts its session with this too.)
    pub async fn start(&self, spec: &LaunchSpec) -> anyhow::Result<(LocalHandle, tokio::process::Child)> {
        let id = spec.session_id;
        let dir = self.dir(id);
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        set_mode(&dir, 0o700)?;
        // The label first, so the orphan clean-up finds even a folder this start left half-made.
        write(&dir.join(SESSION_LABEL.replace('/', "_")), id.to_string())?;
        let socket =
            (spec.kind != Kind::Job).then(|| dir.join("run").join(Path::new(SOCKET_IN).file_name().expect("a name")));
        let cgroups = self.cgroup_dirs(id);
        let planned =
            LocalHandle { pid: 0, start_time: 0, socket, kind: spec.kind, base_url: spec.base_url.clone(), cgroups };
        write(&dir.join(PLANNED), serde_json::to_vec(&planned)?)?;

        let share = dir.join("share");
        std::fs::create_dir_all(&share).with_context(|| format!("cannot create {}", share.display()))?;
        let owner = (self.isolation == Isolation::PerUser).then_some(spec.uid);
        let home = self.home(spec, owner)?;
        self.write_etc(spec, &dir)?;
        match spec.kind {
            Kind::Desktop | Kind::Notebook => {
                let (name, contents) = secret_file(spec.kind, &spec.secret);
                write(&share.join(name), contents)?;
            }
            Kind::Job | Kind::WebApp => write(
                &share.join("parameters.json"),
                serde_json::to_vec_pretty(spec.parameters.as_ref().unwrap_or(&serde_json::json!({})))?,
            )?,
        }
        // `share` is readable by the session's group alone, root's otherwise.
        for entry in std::fs::read_dir(&share).with_context(|| format!("cannot read {}", share.display()))? {
            give(&entry?.path(), owner.map(|uid| (0, uid)), 0o640)?;
        }
        give(&share, owner.map(|uid| (0, uid)), 0o750)?;
        if let Some(run) = planned.socket.as_deref().and_then(Path::parent) {
            std::fs::create_dir_all(run).with_context(|| format!("cannot create {}", run.display()))?;
            give(run, owner.map(|uid| (uid, uid)), 0o700)?;
        }
        let (argv, env) = self.command_of(spec)?;
        self.make_cgroups(spec, &planned.cgroups)?;
        // Without cgroups, rlimits stand in for them.
        let (memory_kib, processes) = match self.limits {
            Limits::Rlimits => ((i64::from(spec.resources.memory_mib) * 1024).to_string(), MAX_PROCESSES.to_string()),
            _ => (String::new(), String::new()),
        };
        // Only daas reads the output: it may show the server's URL with its token.
        use std::os::unix::fs::OpenOptionsExt;
        let log_path = self.log_path(id);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&log_path)
            .with_context(|| format!("cannot open the session's log {}", log_path.display()))?;
        let mut command = tokio::process::Command::new("sh");
        command
            .arg("-c")
            .arg(WRAPPER)
            .arg("sh")
            .arg(&dir)
            .arg(planned.cgroups.iter().map(|c| c.display().to_string()).collect::<Vec<_>>().join(" "))
            .arg(memory_kib)
            .arg(processes)
            .args(["nice", "-n", "5"]);
        command
            .arg("bwrap")
            .args(self.sandbox_args(spec, &dir, &home))
            .args(&argv)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()))
            .env("HOME", format!("/home/{}", spec.owner))
            .env("USER", &spec.owner)
            .env("LOGNAME", &spec.owner)
            .env("LANG", "C.UTF-8")
            .env("DAAS_SESSION_ID", id.to_string())
            // The memory the session may hold (its flavour's), for programs that size their
            // work to it (the reconstruction job); the sandbox hides its cgroup.
            .env("DAAS_MEMORY_MIB", spec.resources.memory_mib.to_string())
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().context("cannot share the session's log")?))
            .stderr(Stdio::from(log))
            // Its own process group: daas stopping (or crashing) leaves it running, and
            // a stop reaches all of it at once.
            .process_group(0)
            .kill_on_drop(false);
        let mut child = command.spawn().context("cannot start the session's wrapper (sh)")?;
        let pid = child.id().context("the session's wrapper exited at once")? as i32;
        // Until daas reaps the child its pid cannot be recycled: signalling its group is safe.
        let record = dir.join("pid");
        let deadline = tokio::time::Instant::now() + RECORD_TIMEOUT;
        let handle = loop {
            let recorded = std::fs::read_to_string(&record).ok().as_deref().and_then(parse_stat);
            if let Some(stat) = recorded.filter(|s| s.pid == pid) {
                break LocalHandle { pid, start_time: stat.start_time, ..planned };
            }
            if let Some(status) = child.try_wait()? {
                let output = match tail(&log_path, 5) {
                    t if t.is_empty() => format!("no output in {} (is its disk full?)", log_path.display()),
                    t => t,
                };
                bail!(
                    "the session's wrapper ended before it recorded its process in {} ({status}): {output}",
                    record.display()
                );
            }
            if tokio::time::Instant::now() > deadline {
                signal_group(pid, rustix::process::Signal::KILL);
                let _ = child.wait().await;
                bail!(
                    "the session's wrapper did not record its process in {} within {} s",
                    record.display(),
                    RECORD_TIMEOUT.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        Ok((handle, child))
    }

    /// The session's cgroup folders (none with rlimits), before they are made.
    fn cgroup_dirs(&self, id: Uuid) -> Vec<PathBuf> {
        let id = id.to_string();
        match &self.limits {
            Limits::CgroupV2(root) => vec![root.join(&id)],
            Limits::CgroupV1 { cpu, memory, pids } => vec![cpu.join(&id), memory.join(&id), pids.join(&id)],
            Limits::Rlimits | Limits::Scheduler => Vec::new(),
        }
    }

    /// Makes the session's cgroups (`dirs`, from [`Self::cgroup_dirs`]) and sets its limits.
    fn make_cgroups(&self, spec: &LaunchSpec, dirs: &[PathBuf]) -> anyhow::Result<()> {
        let period = 100_000;
        let quota = i64::from(spec.resources.cpu_millis) * period / 1000;
        let memory = (i64::from(spec.resources.memory_mib) * 1024 * 1024).to_string();
        let settings: Vec<Vec<(&str, String)>> = match &self.limits {
            Limits::CgroupV2(_) => vec![vec![
                ("cpu.max", format!("{quota} {period}")),
                ("memory.max", memory),
                ("pids.max", MAX_PROCESSES.to_string()),
            ]],
            Limits::CgroupV1 { .. } => vec![
                vec![("cpu.cfs_period_us", period.to_string()), ("cpu.cfs_quota_us", quota.to_string())],
                vec![("memory.limit_in_bytes", memory)],
                vec![("pids.max", MAX_PROCESSES.to_string())],
            ],
            Limits::Rlimits | Limits::Scheduler => Vec::new(),
        };
        for (dir, settings) in dirs.iter().zip(settings) {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create the cgroup {}", dir.display()))?;
            for (file, value) in settings {
                std::fs::write(dir.join(file), value)
                    .with_context(|| format!("cannot set {file} of {}", dir.display()))?;
            }
        }
        Ok(())
    }
}

/// The sandbox's root as bwrap arguments. bwrap makes the folders a mount needs with mode
/// 0700 (its owner's alone: root's, where daas is root), so every folder on the way to a
/// mount is made first, readable by all.
struct Root {
    args: Vec<String>,
    /// Folders made so far.
    made: std::collections::BTreeSet<PathBuf>,
    /// What is mounted so far: nothing is made below it.
    mounted: std::collections::BTreeSet<PathBuf>,
}

impl Root {
    /// Makes `path` (and the folders on its way) with `mode`, unless it is made already
    /// or lies in something mounted.
    fn dir(&mut self, path: &Path, mode: &str) {
        if path == Path::new("/") || self.made.contains(path) || path.ancestors().any(|p| self.mounted.contains(p)) {
            return;
        }
        if let Some(parent) = path.parent() {
            self.dir(parent, "0755");
        }
        self.args.extend(["--perms".into(), mode.into(), "--dir".into(), path.display().to_string()]);
        self.made.insert(path.to_owned());
    }

    fn mount(&mut self, op: &str, from: &Path, to: &Path) {
        if let Some(parent) = to.parent() {
            self.dir(parent, "0755");
        }
        self.args.extend([op.to_string(), from.display().to_string(), to.display().to_string()]);
        self.mounted.insert(to.to_owned());
    }
}

/// The files of the host's `/etc` a session sees (read-only): what programs, libraries,
/// fonts, the desktop (Xfce's defaults are in `xdg`) and TLS clients need. Not the host's
/// accounts (`passwd`, `group`, `shadow`: the session gets its own), not its keys
/// (`ssl/private`), not its services' configuration.
const ETC: &[&str] = &[
    "alternatives",
    "bash.bashrc",
    "ca-certificates",
    "ca-certificates.conf",
    "debian_version",
    "fonts",
    "gai.conf",
    "gtk-3.0",
    "host.conf",
    "inputrc",
    // The JRE's settings (ImageJ's), which its files in /usr link to.
    "java-17-openjdk",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "locale.alias",
    "localtime",
    "magic",
    "magic.mime",
    "mime.types",
    "nsswitch.conf",
    "os-release",
    "profile",
    "profile.d",
    "protocols",
    "python3",
    "python3.11",
    "services",
    "ssl/certs",
    "ssl/openssl.cnf",
    "terminfo",
    "timezone",
    "X11",
    "xdg",
];

/// The sandbox's host name.
const HOSTNAME: &str = "daas-session";

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

/// The handle in a session's folder (see [`LocalRuntime::read_handle`]).
fn handle_in(dir: &Path) -> Option<LocalHandle> {
    let Ok(planned) = std::fs::read(dir.join(PLANNED)) else {
        return serde_json::from_slice(&std::fs::read(dir.join("handle.json")).ok()?).ok();
    };
    let mut handle: LocalHandle = serde_json::from_slice(&planned).ok()?;
    if let Some(stat) = std::fs::read_to_string(dir.join("pid")).ok().as_deref().and_then(parse_stat) {
        (handle.pid, handle.start_time) = (stat.pid, stat.start_time);
    }
    Some(handle)
}

/// What a session starting may write to tell how far it is (`$DAAS_PROGRESS_FILE`, in
/// `/run/daas`): one line, replaced as it goes.
const PROGRESS: &str = "progress";
/// A report older than this is not taken as progress any more (the session may be stuck).
const PROGRESS_FRESH: Duration = Duration::from_secs(30);

/// The line a starting session last wrote to its progress file, if it wrote one lately:
/// its first line, printable characters only, at most 200 of them.
fn reported_progress(path: &Path) -> Option<String> {
    use std::io::Read as _;
    let fresh = std::fs::metadata(path).ok()?.modified().ok()?.elapsed().is_ok_and(|age| age < PROGRESS_FRESH);
    if !fresh {
        return None;
    }
    let mut text = String::new();
    std::fs::File::open(path).ok()?.take(4096).read_to_string(&mut text).ok()?;
    let line: String = text.lines().next()?.chars().filter(|c| !c.is_control()).take(200).collect();
    let line = line.trim();
    (!line.is_empty()).then(|| line.to_owned())
}

/// Where a desktop's or notebook's secret lies in its `share` folder (`/session` inside),
/// and what it holds: the VNC password file, or the token's hash (`super::token_hash`).
fn secret_file(kind: Kind, secret: &str) -> (&'static str, Vec<u8>) {
    match kind {
        Kind::Desktop => ("vncpasswd", super::vnc::password_file(secret).to_vec()),
        _ => (TOKEN_HASH, super::token_hash(secret).into_bytes()),
    }
}

/// The notebook's token hash in `/session` (`DAAS_TOKEN_HASH_FILE`).
const TOKEN_HASH: &str = "token.sha256";

/// Replaces the secret of the desktop or notebook whose folder is `dir` while it runs:
/// written beside the old file with its owner and mode, then renamed over it, so the
/// server (TigerVNC reads its password file at each login, daas's Jupyter settings the hash
/// at each request) never reads half a file. Shared by the local and Slurm runtimes.
pub(crate) fn rotate_secret_in(dir: &Path, kind: Kind, secret: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let (name, contents) = secret_file(kind, secret);
    let path = dir.join("share").join(name);
    let old = std::fs::metadata(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let next = path.with_extension("next");
    write(&next, contents)?;
    give(&next, Some((old.uid(), old.gid())), old.mode() & 0o7777)?;
    std::fs::rename(&next, &path).with_context(|| format!("cannot replace {}", path.display()))
}

/// Writes a file daas makes, the error naming it.
pub(crate) fn write(path: &Path, contents: impl AsRef<[u8]>) -> anyhow::Result<()> {
    std::fs::write(path, contents).with_context(|| format!("cannot write {}", path.display()))
}

pub(crate) fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set the mode of {}", path.display()))
}

/// Gives a file daas made to `(uid, gid)` (when sessions have uids of their own) with
/// `mode`.
fn give(path: &Path, owner: Option<(u32, u32)>, mode: u32) -> anyhow::Result<()> {
    if let Some((uid, gid)) = owner {
        std::os::unix::fs::lchown(path, Some(uid), Some(gid))
            .with_context(|| format!("cannot give {} to uid {uid}", path.display()))?;
    }
    set_mode(path, mode)
}

/// What daas reads of a process in `/proc/<pid>/stat` (proc(5)).
struct Stat {
    pid: i32,
    state: char,
    pgrp: i32,
    /// Clock ticks after boot (field 22).
    start_time: u64,
}

/// Parses a `/proc/<pid>/stat` line (also the wrapper's copy of its own, `pid`).
fn parse_stat(text: &str) -> Option<Stat> {
    let pid = text.split_whitespace().next()?.parse().ok()?;
    // The command name is in parentheses and may hold spaces: parse after the last `)`.
    let rest = text.get(text.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    let pgrp = fields.get(2)?.parse().ok()?;
    let start_time = fields.get(19)?.parse().ok()?;
    Some(Stat { pid, state, pgrp, start_time })
}

/// `/proc/<pid>/stat`: (state, process group, start time), if the process exists.
fn proc_stat(pid: i32) -> Option<(char, i32, u64)> {
    let stat = parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)?;
    Some((stat.state, stat.pgrp, stat.start_time))
}

/// The wrapper still runs (and is the process daas started, not a recycled pid).
fn alive(handle: &LocalHandle) -> bool {
    handle.pid > 1
        && matches!(proc_stat(handle.pid), Some((state, _, start)) if start == handle.start_time && state != 'Z' && state != 'X')
}

/// Whether process group `handle.pid` is still the session's. Linux never gives out a pid
/// still in use as a process group id, so when another process now has that pid (another
/// start time), the session's group ended and the number was recycled: signalling it would
/// hit a stranger (pids wrap at 32768 on many machines).
fn group_is_ours(handle: &LocalHandle) -> bool {
    proc_stat(handle.pid).is_none_or(|(_, _, start)| start == handle.start_time)
}

/// Processes (not zombies) left in the session's process group (none when it never ran).
fn session_processes(handle: &LocalHandle) -> Vec<i32> {
    if handle.pid > 1 && group_is_ours(handle) {
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
        let Some(handle) = handle_in(&entry.path()) else { continue };
        if !session_processes(&handle).is_empty() {
            signal_group(handle.pid, rustix::process::Signal::KILL);
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while !session_processes(&handle).is_empty() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        for cgroup in &handle.cgroups {
            let _ = std::fs::remove_dir(cgroup);
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
pub(crate) fn signal_group(pgid: i32, signal: rustix::process::Signal) {
    if pgid <= 1 || pgid == rustix::process::getpgrp().as_raw_nonzero().get() {
        tracing::error!(pgid, "refusing to signal this process group: not a session's");
        return;
    }
    if let Some(pid) = rustix::process::Pid::from_raw(pgid) {
        let _ = rustix::process::kill_process_group(pid, signal);
    }
}

/// Whether the kernel killed a process of the session for its cgroup's memory limit
/// (`oom_kill` in cgroup v2's `memory.events`, v1's `memory.oom_control`).
fn oom_killed(handle: &LocalHandle) -> bool {
    handle.cgroups.iter().any(|cgroup| {
        ["memory.events", "memory.oom_control"].iter().any(|file| {
            std::fs::read_to_string(cgroup.join(file)).is_ok_and(|text| {
                text.lines().any(|l| l.strip_prefix("oom_kill ").is_some_and(|n| n.trim().parse().unwrap_or(0) > 0))
            })
        })
    })
}

/// How a session's end reads, from the exit code its wrapper recorded (`None`: none was),
/// whether the kernel killed it for memory, and its output. A signal's cause is outside the
/// session's output (which then often shows the server's own reaction to the signal,
/// reading like the cause): only an exit of its own quotes it.
pub(crate) fn exit_message(code: Option<i32>, oom: bool, log: &Path) -> String {
    match code {
        Some(c) if c > 128 && oom => {
            format!("was killed for using more memory than its flavour allows (signal {})", c - 128)
        }
        Some(c) if c > 128 => format!("was killed by {}", signal_name(c - 128)),
        Some(c) => match tail(log, 10) {
            last if last.is_empty() => format!("exited with code {c}"),
            last => format!("exited with code {c}; its last output:\n{last}"),
        },
        None if oom => "was killed for using more memory than its flavour allows".into(),
        None => "was killed outside daas (no exit code recorded)".into(),
    }
}

/// `SIGKILL` for 9 and the like (signal(7)); `signal N` for the others.
fn signal_name(signal: i32) -> String {
    match signal {
        1 => "SIGHUP".into(),
        2 => "SIGINT".into(),
        6 => "SIGABRT".into(),
        9 => "SIGKILL".into(),
        11 => "SIGSEGV".into(),
        15 => "SIGTERM".into(),
        n => format!("signal {n}"),
    }
}

/// The last `lines` lines of a file, lossily decoded.
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    let Ok(bytes) = std::fs::read(path) else { return String::new() };
    let start = bytes.len().saturating_sub(64 * 1024);
    let text = String::from_utf8_lossy(&bytes[start..]);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn handle_of(value: &Handle) -> anyhow::Result<LocalHandle> {
    serde_json::from_value(value.0.clone()).context("not a local runtime handle")
}

/// Does something answer on the socket the way the session's server should?
async fn probe(handle: &LocalHandle) -> bool {
    let Some(socket) = &handle.socket else { return handle.kind == Kind::Job };
    let connect = tokio::net::UnixStream::connect(socket);
    let Ok(Ok(stream)) = tokio::time::timeout(Duration::from_secs(1), connect).await else { return false };
    answers(handle.kind, &handle.base_url, stream).await
}

/// Does the server on the other end of `stream` answer the way a session of `kind` should
/// (a desktop: an RFB greeting; a notebook or web app: any HTTP answer under its base URL)?
pub(crate) async fn answers<S>(kind: Kind, base_url: &str, mut stream: S) -> bool
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut buf = [0u8; 12];
    match kind {
        // An RFB server speaks first: "RFB 003.008\n".
        Kind::Desktop => {
            matches!(tokio::time::timeout(Duration::from_secs(1), stream.read_exact(&mut buf)).await, Ok(Ok(_)))
                && buf.starts_with(b"RFB ")
        }
        // Any HTTP answer under the base URL means the server is up. Read the whole answer,
        // so the server does not log a broken pipe.
        Kind::Notebook | Kind::WebApp => {
            let path = if kind == Kind::Notebook { "api" } else { "" };
            let request = format!("GET {base_url}{path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
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

    fn homes(&self) -> Option<&Path> {
        Some(&self.config.homes_dir)
    }

    async fn rotate_secret(&self, session_id: Uuid, _handle: &Handle, kind: Kind, secret: &str) -> RuntimeResult<bool> {
        rotate_secret_in(&self.dir(session_id), kind, secret)?;
        Ok(true)
    }

    async fn launch(&self, spec: &LaunchSpec) -> RuntimeResult<Handle> {
        let id = spec.session_id;
        // A start daas was in when it stopped, or a second launch of one id: adopt it.
        if let Some(handle) = self.read_handle(id).filter(alive) {
            return Ok(Handle(serde_json::to_value(handle)?));
        }
        // What an earlier try left ends first: no stale `ready` or exit code is taken for
        // this start's, and no process of it runs on unseen.
        self.stop(id, &Handle(serde_json::Value::Null)).await?;
        // Fail at once rather than run a GPU flavour without its GPU.
        if spec.resources.gpus > 0 && self.config.gpu_devices.is_empty() {
            bail!("the flavour asks for {} GPU(s) and this machine has none", spec.resources.gpus);
        }
        match self.start(spec).await {
            Ok((handle, mut child)) => {
                // Reap it when it ends while daas runs (after a restart, init does).
                tokio::spawn(async move {
                    let _ = child.wait().await;
                });
                Ok(Handle(serde_json::to_value(handle)?))
            }
            Err(err) => {
                // Nothing of it runs (a failed start kills what it started): a full disk
                // leaves no half-made folder behind.
                if let Err(e) = self.stop(id, &Handle(serde_json::Value::Null)).await {
                    tracing::warn!(session.id = %id, error = format!("{e:#}"), "cannot clean up after a failed start");
                }
                Err(err)
            }
        }
    }

    async fn observe(&self, session_id: Uuid, handle: &Handle) -> RuntimeResult<Observed> {
        let handle = handle_of(handle)?;
        let dir = self.dir(session_id);
        if !alive(&handle) {
            let code = std::fs::read_to_string(dir.join("exit-code")).ok().and_then(|c| c.trim().parse::<i32>().ok());
            if code.is_none() && !dir.exists() && session_processes(&handle).is_empty() {
                return Ok(Observed::Gone);
            }
            let message = exit_message(code, oom_killed(&handle), &self.log_path(session_id));
            return Ok(Observed::Exited { exit_code: code, message });
        }
        // Probe until it first answers; after that the process being alive is enough (a
        // probe every pass would fill the session's log with connections).
        let ready = dir.join("ready");
        let answered = ready.exists();
        if answered || probe(&handle).await {
            if !answered {
                let _ = std::fs::write(&ready, b"");
            }
            let endpoint = handle.socket.as_ref().map(|s| format!("unix:{}", s.display())).unwrap_or_default();
            return Ok(Observed::Running { endpoint });
        }
        if let Some(message) = reported_progress(&dir.join("run").join(PROGRESS)) {
            return Ok(Observed::Loading { message });
        }
        let message = match handle.kind {
            Kind::Desktop => "waiting for the desktop to answer",
            Kind::Notebook => "waiting for the notebook server to answer",
            Kind::WebApp => "waiting for the web app to answer",
            Kind::Job => "the job is at work",
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
            for cgroup in &handle.cgroups {
                let _ = std::fs::remove_dir(cgroup);
            }
        }
        // Nothing of it runs any more, which is what a stop is for: a folder that cannot be
        // removed (a read-only or broken disk) is the administrator's to see, not a session
        // left `stopping` and counted against its owner's quota.
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => {
                tracing::warn!(session.id = %session_id, error = %e, folder = %dir.display(), "cannot remove a stopped session's folder");
                Ok(())
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime(root: &Path) -> LocalRuntime {
        let config = LocalConfig {
            sessions_dir: root.join("sessions"),
            homes_dir: root.join("homes"),
            data_root: root.join("data"),
            venv: root.join("venv"),
            tools_dir: root.join("tools"),
            stop_grace: Duration::from_secs(1),
            gpu_devices: Vec::new(),
        };
        LocalRuntime::new(config, Limits::Rlimits).unwrap()
    }

    fn spec(kind: Kind) -> LaunchSpec {
        LaunchSpec {
            session_id: Uuid::nil(),
            kind,
            owner: "alice".into(),
            uid: 3_000_000,
            image: super::super::ImageSpec { name: "x".into(), reference: "x".into(), local_command: None },
            resources: Default::default(),
            proposal: "20180101".into(),
            experiment: "S0011".into(),
            experiment_folder: "BL11/20180101/S0011".into(),
            datasets: Vec::new(),
            secret: "s".into(),
            base_url: "/".into(),
            parameters: None,
            expires_at: None,
        }
    }

    /// The wrapper records its process before it runs anything, and runs nothing when the
    /// record cannot be written (here the disk is full: `/dev/full`).
    #[test]
    fn the_wrapper_runs_nothing_without_the_record_of_its_process() {
        let dir = tempfile::tempdir().unwrap();
        let run = |dir: &Path| {
            std::process::Command::new("sh")
                .args(["-c", WRAPPER, "sh"])
                .arg(dir)
                .args(["", "", ""])
                .args(["touch", &dir.join("ran").display().to_string()])
                .output()
                .unwrap()
        };
        let done = run(dir.path());
        assert!(done.status.success(), "{done:?}");
        let stat = parse_stat(&std::fs::read_to_string(dir.path().join("pid")).unwrap()).unwrap();
        assert!(stat.pid > 1 && stat.start_time > 0);
        assert!(dir.path().join("ran").exists());

        let full = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/dev/full", full.path().join("pid.tmp")).unwrap();
        let refused = run(full.path());
        assert_eq!(refused.status.code(), Some(125), "{refused:?}");
        assert!(
            String::from_utf8_lossy(&refused.stderr).contains("cannot record the session's process"),
            "{refused:?}"
        );
        assert!(!full.path().join("pid").exists() && !full.path().join("ran").exists());
    }

    /// bwrap makes the folders on the way to a mount 0700: the sandbox makes each one
    /// itself, 0755, before anything is mounted below it.
    #[test]
    fn every_folder_on_the_way_to_a_mount_is_made_readable_first() {
        let root = tempfile::tempdir().unwrap();
        let runtime = runtime(root.path());
        let dir = root.path().join("sessions/x");
        let args = runtime.sandbox_args(&spec(Kind::Notebook), &dir, &root.path().join("homes/alice"));
        let (mut made, mut mounted) = (vec![PathBuf::from("/")], Vec::<PathBuf>::new());
        let mut i = 0;
        while i < args.len() && args[i] != "--" {
            let op = args[i].as_str();
            let (target, n) = match op {
                "--bind" | "--ro-bind" | "--dev-bind" | "--symlink" => (Some(PathBuf::from(&args[i + 2])), 3),
                "--dir" | "--dev" | "--proc" | "--tmpfs" => (Some(PathBuf::from(&args[i + 1])), 2),
                "--perms" | "--uid" | "--gid" | "--cap-add" | "--cap-drop" | "--chdir" | "--hostname" => (None, 2),
                _ => (None, 1),
            };
            if let Some(target) = target {
                let parent = target.parent().unwrap();
                assert!(
                    made.iter().any(|m| m == parent) || mounted.iter().any(|m| parent.starts_with(m)),
                    "{} is mounted before {} is made",
                    target.display(),
                    parent.display()
                );
                if op == "--dir" {
                    assert_eq!(args[i - 2], "--perms", "{} is made without its mode", target.display());
                    made.push(target);
                } else if op.ends_with("bind") || op == "--symlink" {
                    mounted.push(target);
                } else {
                    made.push(target);
                }
            }
            i += n;
        }
        assert!(args.contains(&"--unshare-net".to_string()));
        assert!(!args.windows(2).any(|w| w[0] == "--ro-bind" && w[1] == "/etc"), "the host's /etc is mounted whole");
    }
}
