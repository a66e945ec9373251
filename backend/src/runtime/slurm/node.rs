//! `daas slurm-node <session folder>`: what a Slurm job runs on its node. It starts the
//! session as the local runtime does (the same sandbox and commands, from `launch.json`),
//! then, for a desktop or notebook:
//!
//! - binds a TCP port itself (port 0, on the address through which the node reaches daas),
//!   so no port is chosen before it is bound and two sessions never race for one;
//! - relays each connection to the session's socket once the connection has sent the
//!   session's relay key (a line): nobody else on the cluster's network gets through;
//! - reports `host:port` to daas (`POST .../report`, the node secret as bearer token), and
//!   tries again every 2 s until daas has it (daas may be restarting).
//!
//! SIGTERM (`scancel`, the end of the job) stops the session's process group as a local
//! stop does; SIGUSR1 (`--signal`, before the time limit) is reported to daas. It exits with
//! the session's exit code, which Slurm records.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream, UnixStream};

use super::{NodeLaunch, LAUNCH};
use crate::runtime::local::{gpu_devices, signal_group, Limits, LocalConfig, LocalRuntime};
use crate::runtime::NodeReport;

/// Runs the session in `dir`; its exit code.
pub async fn run(dir: &Path) -> anyhow::Result<i32> {
    let path = dir.join(LAUNCH);
    let launch: NodeLaunch =
        serde_json::from_slice(&std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?)
            .with_context(|| format!("{} is not a launch description", path.display()))?;
    let stop_grace = launch.folders.stop_grace;
    let config = LocalConfig { gpu_devices: gpu_devices(), ..launch.folders.clone() };
    let runtime = LocalRuntime::new(config, Limits::Scheduler)?;
    let (handle, mut child) = runtime.start(&launch.spec).await.context("cannot start the session")?;
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;

    if let Some(socket) = handle.socket.clone() {
        let ip = address_towards(&launch.report_url).await?;
        let listener = TcpListener::bind((ip, 0)).await.with_context(|| format!("cannot listen on {ip}"))?;
        let port = listener.local_addr()?.port();
        eprintln!("daas: the session's relay listens on {ip} port {port}");
        tokio::spawn(relay(listener, socket, launch.relay_key.clone()));
        let report = NodeReport::Listening { host: ip.to_string(), port };
        tokio::spawn(send(client.clone(), launch.clone(), report));
    }

    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut warning = signal(SignalKind::user_defined1())?;
    // When a stop's grace ends. The group is signalled only from this loop, before the
    // wrapper (whose pid is the group's id) is reaped: its number cannot have been recycled.
    let mut kill_at: Option<tokio::time::Instant> = None;
    let status = loop {
        tokio::select! {
            status = child.wait() => break status?,
            _ = term.recv() => {
                // As a local stop: SIGTERM to the whole group, SIGKILL after the grace.
                signal_group(handle.pid, rustix::process::Signal::TERM);
                kill_at.get_or_insert(tokio::time::Instant::now() + stop_grace);
            }
            _ = tokio::time::sleep_until(kill_at.unwrap_or_else(tokio::time::Instant::now)), if kill_at.is_some() => {
                signal_group(handle.pid, rustix::process::Signal::KILL);
                kill_at = Some(tokio::time::Instant::now() + Duration::from_secs(1));
            }
            _ = warning.recv() => {
                let report = NodeReport::TimeLimit { seconds: launch.warning_seconds };
                tokio::spawn(send(client.clone(), launch.clone(), report));
            }
        }
    };
    use std::os::unix::process::ExitStatusExt;
    Ok(status.code().unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}

/// This node's address on the way to daas (the source address the kernel picks for it):
/// the address daas can reach the node at.
async fn address_towards(url: &str) -> anyhow::Result<IpAddr> {
    let url: url::Url = url.parse().context("the report URL")?;
    let host = url.host_str().context("a report URL without a host")?;
    let port = url.port_or_known_default().unwrap_or(80);
    let daas: SocketAddr = tokio::net::lookup_host((host, port))
        .await
        .with_context(|| format!("cannot resolve {host}"))?
        .next()
        .with_context(|| format!("{host} has no address"))?;
    let any: SocketAddr = if daas.is_ipv4() { "0.0.0.0:0".parse()? } else { "[::]:0".parse()? };
    let socket = std::net::UdpSocket::bind(any)?;
    socket.connect(daas).with_context(|| format!("no route to daas at {daas}"))?;
    Ok(socket.local_addr()?.ip())
}

/// Relays each connection that starts with the line `key` to the session's socket.
async fn relay(listener: TcpListener, socket: PathBuf, key: String) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else { continue };
        let (socket, key) = (socket.clone(), key.clone());
        tokio::spawn(async move {
            if let Err(e) = pass(tcp, &socket, &key).await {
                eprintln!("daas: a connection to the relay was refused or ended: {e:#}");
            }
        });
    }
}

async fn pass(mut tcp: TcpStream, socket: &Path, key: &str) -> anyhow::Result<()> {
    let mut line = vec![0u8; key.len() + 1];
    tokio::time::timeout(Duration::from_secs(5), tcp.read_exact(&mut line))
        .await
        .context("no key within 5 s")?
        .context("no key")?;
    use sha2::{Digest, Sha256};
    anyhow::ensure!(Sha256::digest(&line) == Sha256::digest(format!("{key}\n")), "a wrong key");
    tcp.set_nodelay(true)?;
    let mut session = UnixStream::connect(socket).await.context("the session's socket")?;
    tokio::io::copy_bidirectional(&mut tcp, &mut session).await?;
    Ok(())
}

/// Sends a report until daas has it (every 2 s, at most an hour); a 4xx ends the tries
/// (daas no longer knows the session, or refuses the report).
async fn send(client: reqwest::Client, launch: NodeLaunch, report: NodeReport) {
    for _ in 0..1800 {
        let sent = client
            .post(&launch.report_url)
            .bearer_auth(&launch.node_secret)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(serde_json::to_vec(&report).unwrap_or_default())
            .send()
            .await;
        match sent {
            Ok(answer) if answer.status().is_success() => return,
            Ok(answer) if answer.status().is_client_error() => {
                eprintln!("daas: daas refused the node's report ({})", answer.status());
                return;
            }
            Ok(answer) => eprintln!("daas: daas could not take the node's report yet ({})", answer.status()),
            Err(e) => eprintln!("daas: cannot reach daas for the node's report yet: {e}"),
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}
