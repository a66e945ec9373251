//! The zero-setup PostgreSQL cluster of `daas dev` and `make test`: initialised under
//! `.daas/` from the system's PostgreSQL binaries, listening on loopback only, on a port of
//! its own, with a generated password. Nothing outside its folder is touched.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context};
use rand::distr::{Alphanumeric, SampleString};

/// The name of the database daas uses inside the development cluster.
const DATABASE: &str = "daas";
const SUPERUSER: &str = "daas";

pub struct DevCluster {
    /// `.daas/postgres`: owned by the user postgres runs as.
    root: PathBuf,
    /// `.daas`: the files only daas reads (port, password).
    state: PathBuf,
    bin: PathBuf,
    /// `Some` when we are root and must run postgres as someone else.
    run_as: Option<String>,
}

impl DevCluster {
    pub fn new(dir: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let state = dir.canonicalize()?;
        let run_as = if std::fs::metadata("/proc/self")?.uid() == 0 {
            // initdb refuses to run as root.
            Some(if user_exists("postgres") { "postgres" } else { "nobody" }.to_string())
        } else {
            None
        };
        Ok(Self { root: state.join("postgres"), state, bin: find_bin_dir()?, run_as })
    }

    fn data(&self) -> PathBuf {
        self.root.join("data")
    }

    fn port(&self) -> anyhow::Result<u16> {
        let path = self.state.join("postgres.port");
        if let Ok(text) = std::fs::read_to_string(&path) {
            return text.trim().parse().with_context(|| format!("{} is not a port", path.display()));
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        std::fs::write(&path, port.to_string())?;
        Ok(port)
    }

    fn password(&self) -> anyhow::Result<String> {
        let path = self.state.join("postgres.password");
        if let Ok(text) = std::fs::read_to_string(&path) {
            return Ok(text.trim().to_string());
        }
        let password = Alphanumeric.sample_string(&mut rand::rng(), 32);
        std::fs::write(&path, &password)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        Ok(password)
    }

    /// The connection URL of the `daas` database, starting and creating what is missing.
    pub async fn ensure(&self) -> anyhow::Result<String> {
        let port = self.port()?;
        let password = self.password()?;
        if !self.data().join("PG_VERSION").exists() {
            self.init(port, &password)?;
        }
        if !self.running()? {
            self.start()?;
        }
        let base = format!("postgres://{SUPERUSER}:{password}@127.0.0.1:{port}");
        create_database(&base).await?;
        Ok(format!("{base}/{DATABASE}"))
    }

    fn init(&self, port: u16, password: &str) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.root)?;
        std::fs::set_permissions(&self.root, std::fs::Permissions::from_mode(0o700))?;
        let pwfile = self.root.join("pwfile");
        std::fs::write(&pwfile, password)?;
        self.chown_to_runner(&self.root)?;
        self.chown_to_runner(&pwfile)?;
        let status = self
            .command("initdb")
            .arg("-D")
            .arg(self.data())
            .args(["-U", SUPERUSER, "--auth=scram-sha-256", "--encoding=UTF8", "--no-instructions"])
            .arg(format!("--pwfile={}", pwfile.display()))
            .stdout(Stdio::null())
            .status()
            .context("cannot run initdb")?;
        std::fs::remove_file(&pwfile)?;
        if !status.success() {
            bail!(
                "initdb failed under {}{}",
                self.root.display(),
                self.run_as
                    .as_deref()
                    .map(|u| format!(" (run as `{u}`: every folder above it must be readable by that user)"))
                    .unwrap_or_default()
            );
        }
        let conf = format!(
            "\n# daas development cluster\nport = {port}\nlisten_addresses = '127.0.0.1'\n\
             unix_socket_directories = ''\nmax_connections = 200\nfsync = off\n\
             synchronous_commit = off\nfull_page_writes = off\n"
        );
        let mut file = std::fs::OpenOptions::new().append(true).open(self.data().join("postgresql.conf"))?;
        std::io::Write::write_all(&mut file, conf.as_bytes())?;
        Ok(())
    }

    fn running(&self) -> anyhow::Result<bool> {
        let status = self
            .command("pg_ctl")
            .arg("status")
            .arg("-D")
            .arg(self.data())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .context("cannot run pg_ctl")?;
        Ok(status.success())
    }

    fn start(&self) -> anyhow::Result<()> {
        use std::os::unix::process::CommandExt;
        let log = self.root.join("postgres.log");
        let status = self
            .command("pg_ctl")
            .arg("start")
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "60"])
            .stdout(Stdio::null())
            // Its own process group: the cluster outlives a Ctrl-C of `make dev`, and the
            // next command reuses it.
            .process_group(0)
            .status()
            .context("cannot run pg_ctl")?;
        if !status.success() {
            bail!("the development PostgreSQL did not start; see {}", log.display());
        }
        Ok(())
    }

    pub fn stop(&self) -> anyhow::Result<()> {
        if self.data().join("PG_VERSION").exists() && self.running()? {
            let status = self
                .command("pg_ctl")
                .arg("stop")
                .arg("-D")
                .arg(self.data())
                .args(["-m", "fast", "-w"])
                .stdout(Stdio::null())
                .status()?;
            if !status.success() {
                bail!("pg_ctl stop failed");
            }
        }
        Ok(())
    }

    fn command(&self, program: &str) -> Command {
        let program = self.bin.join(program);
        match &self.run_as {
            Some(user) => {
                let mut cmd = Command::new("runuser");
                cmd.args(["-u", user, "--"]).arg(program);
                cmd
            }
            None => Command::new(program),
        }
    }

    fn chown_to_runner(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(user) = &self.run_as {
            let id = |flag: &str| -> anyhow::Result<u32> {
                let out = Command::new("id").args([flag, user]).output()?;
                Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
            };
            std::os::unix::fs::chown(path, Some(id("-u")?), Some(id("-g")?))?;
        }
        Ok(())
    }
}

fn user_exists(name: &str) -> bool {
    Command::new("id").arg(name).stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// `pg_ctl` from PATH, else the newest `/usr/lib/postgresql/*/bin`.
fn find_bin_dir() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("pg_ctl").is_file() && dir.join("initdb").is_file() {
                return Ok(dir);
            }
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin)| bin.join("pg_ctl").is_file())
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).context(
        "no PostgreSQL server binaries (initdb, pg_ctl) on PATH or in /usr/lib/postgresql/*/bin; \
         install them (`apt-get install postgresql`) or set DATABASE_URL",
    )
}

async fn create_database(base: &str) -> anyhow::Result<()> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&format!("{base}/postgres"))
        .await
        .context("cannot connect to the development PostgreSQL")?;
    let exists: bool = sqlx::query_scalar("select exists (select 1 from pg_database where datname = $1)")
        .bind(DATABASE)
        .fetch_one(&mut conn)
        .await?;
    if !exists {
        sqlx::query(&format!("create database {DATABASE}")).execute(&mut conn).await?;
    }
    Ok(())
}
