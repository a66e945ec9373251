//! A private one-node Slurm cluster for a test: a munge key and `slurm.conf` written in a
//! temporary folder, `munged`, `slurmctld` and `slurmd` started in the foreground as
//! children of the test (root as `SlurmUser` and `SlurmdUser`, `proctrack/linuxproc`,
//! `task/none`, no accounting, ports of its own), every job cancelled and every daemon
//! stopped when it is dropped. Debian's `slurmctld`, `slurmd`, `slurm-client` and `munge`
//! (`make deps`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub struct Cluster {
    pub dir: tempfile::TempDir,
    /// `SLURM_CONF` for the Slurm commands.
    pub conf: PathBuf,
    munged: Option<Child>,
    controller: Option<Child>,
    node: Option<Child>,
}

/// A free TCP port on loopback (bound, read, released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Cluster {
    /// Starts the cluster and waits until its node is idle: one node of `cpus` CPUs and
    /// 4096 MB per CPU (as many as asked, whatever this machine has), partitions `debug` (the default) and `small`.
    pub fn start(cpus: u32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for sub in ["munge", "state", "spool", "log"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(d.join("munge"), std::fs::Permissions::from_mode(0o700)).unwrap();
        let key: Vec<u8> = (0..1024).map(|_| rand::random::<u8>()).collect();
        std::fs::write(d.join("munge/key"), key).unwrap();
        std::fs::set_permissions(d.join("munge/key"), std::fs::Permissions::from_mode(0o400)).unwrap();
        // As slurmd and slurmctld name this machine: its host name up to the first dot.
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        let host = host.trim().split('.').next().unwrap().to_string();
        let controller_port = free_port();
        let node_port = std::iter::repeat_with(free_port).find(|p| *p != controller_port).unwrap();
        let conf = d.join("slurm.conf");
        let p = |sub: &str| d.join(sub).display().to_string();
        std::fs::write(
            &conf,
            format!(
                "ClusterName=daastest\nSlurmctldHost={host}(127.0.0.1)\nSlurmctldPort={}\nSlurmdPort={}\n\
                 SlurmUser=root\nSlurmdUser=root\nAuthType=auth/munge\nAuthInfo=socket={}\nCredType=cred/munge\n\
                 StateSaveLocation={}\nSlurmdSpoolDir={}\nSlurmctldPidFile={}\nSlurmdPidFile={}\n\
                 SlurmctldLogFile={}\nSlurmdLogFile={}\nProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\n\
                 JobAcctGatherType=jobacct_gather/none\nAccountingStorageType=accounting_storage/none\n\
                 SchedulerType=sched/backfill\nSelectType=select/cons_tres\nSelectTypeParameters=CR_Core_Memory\n\
                 SlurmdParameters=config_overrides\nReturnToService=2\nMinJobAge=300\nKillWait=5\nInactiveLimit=0\n\
                 MpiDefault=none\nSwitchType=switch/none\nSlurmctldTimeout=300\nSlurmdTimeout=300\n\
                 NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory} State=UNKNOWN\n\
                 PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP\n\
                 PartitionName=small Nodes={host} MaxTime=INFINITE State=UP\n",
                controller_port,
                node_port,
                p("munge/socket"),
                p("state"),
                p("spool"),
                p("slurmctld.pid"),
                p("slurmd.pid"),
                p("log/slurmctld.log"),
                p("log/slurmd.log"),
                memory = cpus * 4096,
            ),
        )
        .unwrap();
        let munged = Command::new("munged")
            .args(["--foreground", "--force"])
            .arg(format!("--socket={}", p("munge/socket")))
            .arg(format!("--key-file={}", p("munge/key")))
            .arg(format!("--log-file={}", p("log/munged.log")))
            .arg(format!("--pid-file={}", p("munge/pid")))
            .arg(format!("--seed-file={}", p("munge/seed")))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("munged (run `make deps`)");
        let mut cluster = Cluster { conf, dir, munged: Some(munged), controller: None, node: None };
        let socket = cluster.dir.path().join("munge/socket");
        let start = Instant::now();
        while !socket.exists() {
            assert!(start.elapsed() < Duration::from_secs(10), "munged did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        cluster.start_controller();
        cluster.node = Some(cluster.daemon("slurmd", &[]));
        cluster.wait_until(Duration::from_secs(30), "the node to be idle", |c| {
            c.run("sinfo", &["--noheader", "--format=%t"]).contains("idle")
        });
        cluster
    }

    fn daemon(&self, program: &str, args: &[&str]) -> Child {
        let log = std::fs::File::create(self.dir.path().join(format!("log/{program}.out"))).unwrap();
        Command::new(program)
            .arg("-D")
            .args(args)
            .env("SLURM_CONF", &self.conf)
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("{program} (run `make deps`): {e}"))
    }

    /// Starts `slurmctld` (again), keeping its state (`-R`: recovers the jobs).
    pub fn start_controller(&mut self) {
        self.controller = Some(self.daemon("slurmctld", &["-i", "-R"]));
        self.wait_until(Duration::from_secs(30), "slurmctld to answer", |c| {
            c.command("squeue", &["--noheader"]).status.success()
        });
    }

    /// Stops `slurmctld` (SIGTERM, as an administrator's restart does; it saves its state).
    pub fn stop_controller(&mut self) {
        if let Some(mut child) = self.controller.take() {
            stop(&mut child);
        }
    }

    /// A Slurm command of this cluster; its output, whatever its status.
    pub fn command(&self, program: &str, args: &[&str]) -> Output {
        Command::new(program).args(args).env("SLURM_CONF", &self.conf).output().unwrap()
    }

    /// A Slurm command that must succeed; its standard output.
    pub fn run(&self, program: &str, args: &[&str]) -> String {
        let output = self.command(program, args);
        assert!(output.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The job ids `squeue` lists as pending or running (or ending).
    pub fn active_jobs(&self) -> Vec<u64> {
        self.run("squeue", &["--noheader", "--format=%A"]).lines().filter_map(|l| l.trim().parse().ok()).collect()
    }

    /// `(state, reason)` of a job, from `squeue --states=all`.
    pub fn job(&self, id: u64) -> Option<(String, String)> {
        let text = self.run("squeue", &["--noheader", "--states=all", "--format=%A|%T|%r"]);
        text.lines().find_map(|l| {
            let mut fields = l.trim().split('|');
            (fields.next()?.parse::<u64>().ok()? == id)
                .then(|| (fields.next().unwrap_or("").to_string(), fields.next().unwrap_or("").to_string()))
        })
    }

    /// Waits (blocking the thread: not while the app under test must run on it) until
    /// `done`.
    pub fn wait_until(&self, within: Duration, what: &str, done: impl Fn(&Self) -> bool) {
        let start = Instant::now();
        while !done(self) {
            assert!(start.elapsed() < within, "waited {within:?} for {what}; {}", self.logs());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The daemons' logs, for a failure's message.
    pub fn logs(&self) -> String {
        ["slurmctld.out", "slurmd.out", "slurmctld.log", "slurmd.log"]
            .iter()
            .map(|f| {
                let bytes = std::fs::read(self.dir.path().join("log").join(f)).unwrap_or_default();
                let start = bytes.len().saturating_sub(2000);
                format!("--- {f}\n{}", String::from_utf8_lossy(&bytes[start..]))
            })
            .collect()
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// SIGTERM, then SIGKILL after 10 s.
fn stop(child: &mut Child) {
    if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    let start = Instant::now();
    while child.try_wait().ok().flatten().is_none() {
        if start.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.controller.is_none() {
            self.start_controller();
        }
        // Every job ends before the daemons do: nothing of a test runs on.
        let _ = self.command("scancel", &["--user", "root"]);
        let start = Instant::now();
        while self.command("squeue", &["--noheader", "--format=%A"]).stdout.iter().any(|b| b.is_ascii_digit())
            && start.elapsed() < Duration::from_secs(30)
        {
            std::thread::sleep(Duration::from_millis(200));
        }
        for child in [self.node.take(), self.controller.take(), self.munged.take()].iter_mut().flatten() {
            stop(child);
        }
    }
}
