//! The desktop relay against websockify and a direct TCP connection.
//!
//! The backend is a VNC server of our own that asks for VNC authentication like Xvnc, then
//! answers a FramebufferUpdateRequest with an endless stream of 64 KiB raw updates and a
//! ClientCutText with the same text as ServerCutText (a 100-byte round trip). The client
//! logs in with the password when it reaches the backend directly or through websockify,
//! and with security type None through daas, which logs in for it.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::{free_port, wait_port, Bench, Latencies, Process, Table, ROOT};

/// The VNC password of the benchmark's desktop (VNC uses 8 characters).
const PASSWORD: &str = "b3nchPwd";
/// Connections of the "many" figures.
const MANY: usize = 200;
/// Connections of the "1,000 desktops" figures (websockify is not run there: it forks a
/// Python process per connection), each sending an input every `TYPING`: 1,000 people at
/// work, 10,000 inputs a second in all.
const THOUSAND: usize = 1000;
const TYPING: Duration = Duration::from_millis(100);
/// Round trips per connection at `THOUSAND`, at `MANY` connections, and at one.
const TRIPS_THOUSAND: usize = 20;
const TRIPS_MANY: usize = 100;
const TRIPS_ONE: usize = 2000;

/// One FramebufferUpdate: a 128x128 raw rectangle at 32 bits per pixel.
fn update() -> Vec<u8> {
    let mut m = vec![0, 0, 0, 1, 0, 0, 0, 0, 0, 128, 0, 128, 0, 0, 0, 0];
    m.resize(16 + 128 * 128 * 4, 0x5a);
    m
}

pub async fn run(bench: &Bench) -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let backend = listener.local_addr()?;
    tokio::spawn(vnc_server(listener));
    let session = bench.add_sessions("desktop", 1, &backend.to_string(), PASSWORD).await?[0];

    let ws_port = free_port()?;
    let websockify = Process::spawn(
        "websockify",
        std::process::Command::new(format!("{ROOT}/.daas/venv/bin/websockify"))
            .arg(format!("127.0.0.1:{ws_port}"))
            .arg(backend.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
    )?;
    wait_port(ws_port).await?;

    let targets = [
        Target::Direct(backend.port()),
        Target::Websockify(ws_port),
        Target::Daas { port: bench.daas_port, session: session.to_string(), token: bench.token.clone() },
    ];
    let idle = [f64::NAN, websockify.memory_mib(), bench.daas.memory_mib()];
    let mut results = Vec::new();
    for target in &targets {
        let one_stream = stream(target, 1, bench.seconds).await?;
        let many_stream = stream(target, MANY, bench.seconds).await?;
        let mut one = round_trips(target, 1, TRIPS_ONE, None, || {}).await?;
        let mut memory = f64::NAN;
        let mut many = round_trips(target, MANY, TRIPS_MANY, None, || {
            memory = match target {
                Target::Direct(_) => f64::NAN,
                Target::Websockify(_) => websockify.memory_mib(),
                Target::Daas { .. } => bench.daas.memory_mib(),
            }
        })
        .await?;
        results.push([
            one_stream,
            many_stream,
            one.percentile_ms(50.0),
            one.percentile_ms(99.0),
            many.percentile_ms(50.0),
            many.percentile_ms(99.0),
            memory,
        ]);
    }
    // 1,000 desktops at once: their input round trips and what each costs daas.
    let mut thousand = [[f64::NAN; 3]; 3];
    for (i, target) in targets.iter().enumerate() {
        if let Target::Websockify(_) = target {
            continue;
        }
        let mut memory = f64::NAN;
        let mut trips = round_trips(target, THOUSAND, TRIPS_THOUSAND, Some(TYPING), || {
            if let Target::Daas { .. } = target {
                memory = bench.daas.memory_mib();
            }
        })
        .await?;
        thousand[i] =
            [trips.percentile_ms(50.0), trips.percentile_ms(99.0), (memory - idle[i]) * 1024.0 / THOUSAND as f64];
    }
    println!("## Desktop: daas's relay against websockify 0.13 (forks per connection) and direct TCP\n");
    let mut table = Table::new(["direct", "websockify", "daas"]);
    let names = [
        "stream MB/s, 1 connection".to_string(),
        format!("stream MB/s, {MANY} connections (sum)"),
        "100 B round trip p50 ms, 1 conn".to_string(),
        "100 B round trip p99 ms, 1 conn".to_string(),
        format!("100 B round trip p50 ms, {MANY} conns"),
        format!("100 B round trip p99 ms, {MANY} conns"),
        format!("memory MiB (PSS), {MANY} conns"),
    ];
    for (i, name) in names.into_iter().enumerate() {
        table.row(name, [results[0][i], results[1][i], results[2][i]]);
    }
    table.row("memory MiB (PSS), idle", idle);
    table.row(format!("100 B round trip p50 ms, {THOUSAND} x 10/s"), thousand.map(|t| t[0]));
    table.row(format!("100 B round trip p99 ms, {THOUSAND} x 10/s"), thousand.map(|t| t[1]));
    table.row(format!("KiB per connection (PSS), {THOUSAND} conns"), thousand.map(|t| t[2]));
    table.print();
    Ok(())
}

/// How the client reaches the backend.
enum Target {
    Direct(u16),
    Websockify(u16),
    Daas { port: u16, session: String, token: String },
}

/// A connection as the client sees it: bytes, over TCP or WebSocket binary messages.
enum Link {
    Tcp(TcpStream),
    Ws(Box<WebSocketStream<TcpStream>>),
}

struct Client {
    link: Link,
    pending: Vec<u8>,
    buffer: Vec<u8>,
}

impl Client {
    /// Connects and goes through the RFB handshake up to the ServerInit.
    async fn connect(target: &Target) -> anyhow::Result<Self> {
        let (port, request) = match target {
            Target::Direct(port) => (*port, None),
            Target::Websockify(port) => (*port, Some(format!("ws://127.0.0.1:{port}/").into_client_request()?)),
            Target::Daas { port, session, token } => {
                let mut request =
                    format!("ws://127.0.0.1:{port}/sessions/{session}/desktop/ws").into_client_request()?;
                request.headers_mut().insert("authorization", format!("Bearer {token}").parse()?);
                (*port, Some(request))
            }
        };
        let stream = TcpStream::connect(("127.0.0.1", port)).await?;
        stream.set_nodelay(true)?;
        let link = match request {
            None => Link::Tcp(stream),
            Some(request) => Link::Ws(Box::new(tokio_tungstenite::client_async(request, stream).await?.0)),
        };
        let mut client = Self { link, pending: Vec::new(), buffer: vec![0; 256 * 1024] };
        client.handshake().await?;
        Ok(client)
    }

    async fn handshake(&mut self) -> anyhow::Result<()> {
        self.take(12).await?;
        self.send(daas::proxy::rfb::VERSION).await?;
        let count = self.take(1).await?[0] as usize;
        let types = self.take(count).await?;
        if types.contains(&2) {
            self.send(&[2]).await?;
            let challenge: [u8; 16] = self.take(16).await?.try_into().unwrap();
            self.send(&daas::proxy::rfb::answer(&challenge, PASSWORD)).await?;
        } else {
            anyhow::ensure!(types.contains(&1), "no security type the client knows: {types:?}");
            self.send(&[1]).await?;
        }
        anyhow::ensure!(self.take(4).await? == [0, 0, 0, 0], "the login was refused");
        self.send(&[1]).await?; // ClientInit, shared
        let init = self.take(24).await?;
        let name = u32::from_be_bytes(init[20..24].try_into().unwrap()) as usize;
        self.take(name).await?;
        Ok(())
    }

    async fn send(&mut self, data: &[u8]) -> anyhow::Result<()> {
        match &mut self.link {
            Link::Tcp(s) => s.write_all(data).await?,
            Link::Ws(ws) => ws.send(Message::binary(data.to_vec())).await?,
        }
        Ok(())
    }

    /// Whatever arrives next (appended to `pending` if `keep`); its length.
    async fn receive(&mut self, keep: bool) -> anyhow::Result<usize> {
        let n = match &mut self.link {
            Link::Tcp(s) => {
                let n = s.read(&mut self.buffer).await?;
                if keep {
                    self.pending.extend_from_slice(&self.buffer[..n]);
                }
                n
            }
            Link::Ws(ws) => loop {
                match ws.next().await.ok_or_else(|| anyhow::anyhow!("closed"))?? {
                    Message::Binary(data) => {
                        if keep {
                            self.pending.extend_from_slice(&data);
                        }
                        break data.len();
                    }
                    Message::Close(_) => anyhow::bail!("closed"),
                    _ => {}
                }
            },
        };
        anyhow::ensure!(n > 0, "closed");
        Ok(n)
    }

    async fn take(&mut self, n: usize) -> anyhow::Result<Vec<u8>> {
        while self.pending.len() < n {
            self.receive(true).await?;
        }
        Ok(self.pending.drain(..n).collect())
    }
}

/// MB/s of the backend's update stream, summed over `connections`, after a warm-up.
async fn stream(target: &Target, connections: usize, seconds: Duration) -> anyhow::Result<f64> {
    let mut clients = Vec::new();
    for _ in 0..connections {
        clients.push(Client::connect(target).await?);
    }
    let start = Instant::now() + Duration::from_millis(500);
    let end = start + seconds;
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            tokio::spawn(async move {
                client.send(&[3, 0, 0, 0, 0, 0, 4, 0, 3, 0]).await?; // FramebufferUpdateRequest
                let mut bytes = 0u64;
                loop {
                    // Counted, not kept: the client's copies would weigh on the figure.
                    let n = client.receive(false).await?;
                    let now = Instant::now();
                    if now >= end {
                        return anyhow::Ok(bytes);
                    }
                    if now >= start {
                        bytes += n as u64;
                    }
                }
            })
        })
        .collect();
    let mut total = 0;
    for task in tasks {
        total += task.await??;
    }
    Ok(total as f64 / seconds.as_secs_f64() / 1e6)
}

/// Latencies of 100-byte round trips (ClientCutText out, ServerCutText back), `trips` per
/// connection on `connections` at once, each connection's next sent at once (`every`
/// `None`: the relay saturated) or this long after the last was sent (a person typing);
/// `while_open` runs once all have finished, before any connection closes.
async fn round_trips(
    target: &Target,
    connections: usize,
    trips: usize,
    every: Option<Duration>,
    while_open: impl FnOnce(),
) -> anyhow::Result<Latencies> {
    let mut clients = Vec::new();
    for _ in 0..connections {
        clients.push(Client::connect(target).await?);
    }
    let mut message = vec![6, 0, 0, 0, 0, 0, 0, 92];
    message.resize(100, b'x');
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut client| {
            let message = message.clone();
            tokio::spawn(async move {
                let mut latencies = Latencies::default();
                // Spread over the period, as people's keys are.
                if let Some(every) = every {
                    tokio::time::sleep(every.mul_f64(rand::random::<f64>())).await;
                }
                for i in 0..trips + 10 {
                    let sent = Instant::now();
                    client.send(&message).await?;
                    let echo = client.take(100).await?;
                    anyhow::ensure!(echo[0] == 3 && echo[8..] == message[8..], "not the echo");
                    // The first ten warm the path up.
                    if i >= 10 {
                        latencies.push(sent.elapsed());
                    }
                    if let Some(every) = every {
                        tokio::time::sleep_until((sent + every).into()).await;
                    }
                }
                anyhow::Ok((latencies, client))
            })
        })
        .collect();
    let mut all = Latencies::default();
    let mut open = Vec::new();
    for task in tasks {
        let (latencies, client) = task.await??;
        all.extend(latencies);
        open.push(client);
    }
    while_open();
    anyhow::ensure!(all.count() == connections * trips);
    Ok(all)
}

/// The backend: a VNC server asking for VNC authentication.
async fn vnc_server(listener: TcpListener) {
    let update: &'static [u8] = update().leak();
    while let Ok((socket, _)) = listener.accept().await {
        tokio::spawn(async move {
            if let Err(err) = vnc_session(socket, update).await {
                tracing::debug!(error = %err, "bench VNC connection ended");
            }
        });
    }
}

async fn vnc_session(mut s: TcpStream, update: &'static [u8]) -> anyhow::Result<()> {
    s.set_nodelay(true)?;
    s.write_all(daas::proxy::rfb::VERSION).await?;
    let mut version = [0u8; 12];
    s.read_exact(&mut version).await?;
    s.write_all(&[1, 2]).await?;
    anyhow::ensure!(s.read_u8().await? == 2, "not VNC authentication");
    let challenge: [u8; 16] = rand::random();
    s.write_all(&challenge).await?;
    let mut response = [0u8; 16];
    s.read_exact(&mut response).await?;
    if response != daas::proxy::rfb::answer(&challenge, PASSWORD) {
        s.write_u32(1).await?;
        anyhow::bail!("wrong password");
    }
    s.write_u32(0).await?;
    s.read_u8().await?; // ClientInit
    let mut init = vec![4, 0, 3, 0, 32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0, 0, 0, 0, 5];
    init.extend_from_slice(b"bench");
    s.write_all(&init).await?;
    loop {
        match s.read_u8().await? {
            3 => {
                let mut rest = [0u8; 9];
                s.read_exact(&mut rest).await?;
                loop {
                    s.write_all(update).await?;
                }
            }
            6 => {
                let mut head = [0u8; 7];
                s.read_exact(&mut head).await?;
                let mut text = vec![0u8; u32::from_be_bytes(head[3..7].try_into().unwrap()) as usize];
                s.read_exact(&mut text).await?;
                let mut echo = vec![3, 0, 0, 0];
                echo.extend_from_slice(&head[3..7]);
                echo.extend_from_slice(&text);
                s.write_all(&echo).await?;
            }
            other => anyhow::bail!("unexpected message {other}"),
        }
    }
}
