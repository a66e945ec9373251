//! The notebook proxy against configurable-http-proxy (JupyterHub's proxy) and a direct
//! connection, with 10, 10,000 and 100,000 routes known (`BENCH_ROUTES`, comma-separated).
//!
//! The backend stands in for Jupyter under each session's base URL: `…/small` answers a
//! 16-byte JSON, `…/1mib` 1 MiB, `…/ws` echoes WebSocket messages. Each client connection
//! goes through the routes in turn (every route is warmed once before the clock starts),
//! so a proxy that slows down with many routes shows it. Through daas each route is a
//! running session with its own origin and a cookie got through the real ticket flow.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::ws::{Message as AxumMessage, WebSocket, WebSocketUpgrade};
use axum::routing::get;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use uuid::Uuid;

use crate::{free_port, wait_port, Bench, Latencies, Process, Table, ROOT};

/// Client connections at once, for every figure here.
const CONNECTIONS: usize = 16;
/// The Jupyter token of the benchmark's notebooks (daas adds it; the backend ignores it).
const SECRET: &str = "bench-notebook-token";
/// configurable-http-proxy's API token.
const CHP_TOKEN: &str = "bench-chp-token";

pub async fn run(bench: &Bench) -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let backend = listener.local_addr()?;
    let big = Bytes::from(vec![b'x'; 1 << 20]);
    let app = axum::Router::new()
        .route(
            "/sessions/{id}/small",
            get(|| async { ([("content-type", "application/json")], "{\"status\":\"ok\"}") }),
        )
        .route("/sessions/{id}/1mib", get(move || async move { ([("content-type", "application/octet-stream")], big) }))
        .route("/sessions/{id}/ws", get(|ws: WebSocketUpgrade| async { ws.on_upgrade(echo) }));
    tokio::spawn(async move { axum::serve(listener, app).await });

    let (chp_port, api_port) = (free_port()?, free_port()?);
    let chp = Process::spawn(
        "configurable-http-proxy",
        std::process::Command::new("node")
            .arg(format!("{ROOT}/tests/bench/node_modules/configurable-http-proxy/bin/configurable-http-proxy"))
            .args(["--ip", "127.0.0.1", "--port", &chp_port.to_string()])
            .args(["--api-ip", "127.0.0.1", "--api-port", &api_port.to_string(), "--log-level", "error"])
            .env("CONFIGPROXY_AUTH_TOKEN", CHP_TOKEN)
            .stdout(std::process::Stdio::null()),
    )?;
    wait_port(chp_port).await?;
    wait_port(api_port).await?;

    let mut sessions: Vec<(Uuid, String)> = Vec::new();
    // Route lookup must not grow with the routes: the same figures at each count.
    let counts = std::env::var("BENCH_ROUTES").unwrap_or_else(|_| "10,10000,100000".into());
    let counts: Vec<usize> = counts.split(',').map(str::parse).collect::<Result<_, _>>()?;
    for total in counts {
        let new = bench.add_sessions("notebook", total - sessions.len(), &backend.to_string(), SECRET).await?;
        add_chp_routes(api_port, &new, backend).await?;
        let cookies = daas_cookies(bench, &new).await?;
        sessions.extend(new.into_iter().zip(cookies));
        let routes = |target: &str| -> Arc<Vec<Route>> {
            Arc::new(
                sessions
                    .iter()
                    .map(|(id, cookie)| match target {
                        "direct" => Route { id: *id, host: backend.to_string(), cookie: None },
                        "chp" => Route { id: *id, host: format!("127.0.0.1:{chp_port}"), cookie: None },
                        _ => Route {
                            id: *id,
                            host: format!("{id}.sessions.localhost:8080"),
                            cookie: Some(cookie.clone()),
                        },
                    })
                    .collect(),
            )
        };
        let targets = [
            (backend, routes("direct")),
            (SocketAddr::from(([127, 0, 0, 1], chp_port)), routes("chp")),
            (SocketAddr::from(([127, 0, 0, 1], bench.daas_port)), routes("daas")),
        ];
        let mut results = Vec::new();
        for (addr, routes) in &targets {
            // Within the proxies' route caches' lifetime (30 s for daas) of what follows.
            warm(*addr, routes).await?;
            let mut figures = Vec::new();
            for what in ["small", "1mib"] {
                let (rate, mut latencies) = http_load(*addr, routes, what, bench.seconds).await?;
                figures.extend([rate, latencies.percentile_ms(99.0)]);
            }
            let (rate, mut latencies) = ws_load(*addr, routes, bench.seconds).await?;
            figures.extend([rate, latencies.percentile_ms(99.0)]);
            results.push(figures);
        }
        println!(
            "## Notebook: daas's proxy against configurable-http-proxy 5.3 and direct, {total} routes, \
             {CONNECTIONS} connections\n"
        );
        let mut table = Table::new(["direct", "CHP", "daas"]);
        let names = [
            "small GET requests/s",
            "small GET p99 ms",
            "1 MiB GET requests/s",
            "1 MiB GET p99 ms",
            "WebSocket echo messages/s",
            "WebSocket echo p99 ms",
        ];
        for (i, name) in names.into_iter().enumerate() {
            table.row(name, [results[0][i], results[1][i], results[2][i]]);
        }
        table.row("memory MiB (PSS)", [f64::NAN, chp.memory_mib(), bench.daas.memory_mib()]);
        table.print();
    }
    Ok(())
}

async fn echo(mut socket: WebSocket) {
    while let Some(Ok(message)) = socket.recv().await {
        if matches!(message, AxumMessage::Binary(_) | AxumMessage::Text(_)) && socket.send(message).await.is_err() {
            return;
        }
    }
}

/// One route as the client addresses it.
struct Route {
    id: Uuid,
    host: String,
    cookie: Option<String>,
}

/// `/sessions/{id}` → the backend, through configurable-http-proxy's REST API.
async fn add_chp_routes(api_port: u16, ids: &[Uuid], backend: SocketAddr) -> anyhow::Result<()> {
    let body = Bytes::from(serde_json::json!({ "target": format!("http://{backend}") }).to_string());
    let chunks: Vec<Vec<Uuid>> = ids.chunks(ids.len().div_ceil(8)).map(<[Uuid]>::to_vec).collect();
    let tasks: Vec<_> = chunks
        .into_iter()
        .map(|chunk| {
            let body = body.clone();
            tokio::spawn(async move {
                let mut send = connect(SocketAddr::from(([127, 0, 0, 1], api_port))).await?;
                for id in chunk {
                    let request = hyper::Request::post(format!("/api/routes/sessions/{id}"))
                        .header("host", format!("127.0.0.1:{api_port}"))
                        .header("authorization", format!("token {CHP_TOKEN}"))
                        .header("content-type", "application/json")
                        .body(Full::new(body.clone()))?;
                    let response = send.send_request(request).await?;
                    anyhow::ensure!(response.status() == 201, "configurable-http-proxy answered {}", response.status());
                    response.into_body().collect().await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    Ok(())
}

/// alice's cookies for the sessions' origins, the way a browser gets them: the portal's
/// `/sessions/{id}/open` gives a ticket, the session's origin turns it into a cookie.
async fn daas_cookies(bench: &Bench, ids: &[Uuid]) -> anyhow::Result<Vec<String>> {
    let alice = daas::auth::users::find(&bench.db, "alice").await?;
    let config = daas::state::Config::default();
    let portal = daas::auth::sessions::create(&bench.db, &config, alice, None, None).await?;
    let portal = Arc::new(portal.to_str()?.split(';').next().unwrap_or_default().to_string());
    let addr = SocketAddr::from(([127, 0, 0, 1], bench.daas_port));
    let chunks: Vec<Vec<Uuid>> = ids.chunks(ids.len().div_ceil(8)).map(<[Uuid]>::to_vec).collect();
    let tasks: Vec<_> = chunks
        .into_iter()
        .map(|chunk| {
            let portal = portal.clone();
            tokio::spawn(async move {
                // One kept-alive connection per task: 20,000 fresh ones would leave as many
                // sockets in TIME_WAIT and use up the loopback's ephemeral ports.
                let mut send = connect(addr).await?;
                let mut cookies = Vec::new();
                for id in chunk {
                    let open = redirect(&mut send, "localhost:8080", &format!("/sessions/{id}/open"), &portal).await?;
                    let ticket = url::Url::parse(open.headers()["location"].to_str()?)?;
                    let enter = format!("{}?{}", ticket.path(), ticket.query().unwrap_or_default());
                    let host = format!("{}:{}", ticket.host_str().unwrap_or_default(), ticket.port().unwrap_or(80));
                    let entered = redirect(&mut send, &host, &enter, "").await?;
                    let cookie = entered.headers()["set-cookie"].to_str()?;
                    cookies.push(cookie.split(';').next().unwrap_or_default().to_string());
                }
                anyhow::Ok(cookies)
            })
        })
        .collect();
    let mut cookies = Vec::new();
    for task in tasks {
        cookies.extend(task.await??);
    }
    Ok(cookies)
}

/// A GET that must answer 303 (or the ticket page's 200); its body is read so the
/// connection can go on.
async fn redirect(
    send: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    host: &str,
    path: &str,
    cookie: &str,
) -> anyhow::Result<hyper::Response<Bytes>> {
    let request = hyper::Request::get(path).header("host", host).header("cookie", cookie).body(Empty::new())?;
    let response = send.send_request(request).await?;
    // The ticket's page answers 200 (its cookie, then a refresh to the lab).
    anyhow::ensure!(matches!(response.status().as_u16(), 200 | 303), "{path} answered {}", response.status());
    let (parts, body) = response.into_parts();
    Ok(hyper::Response::from_parts(parts, body.collect().await?.to_bytes()))
}

async fn connect<B>(addr: SocketAddr) -> anyhow::Result<hyper::client::conn::http1::SendRequest<B>>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (send, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(send)
}

/// A small GET on every route, spread over the connections (routes and cookies cached, as
/// in use).
async fn warm(addr: SocketAddr, routes: &Arc<Vec<Route>>) -> anyhow::Result<()> {
    let passes = routes.len().div_ceil(CONNECTIONS);
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|worker| {
            let routes = routes.clone();
            tokio::spawn(async move {
                let mut send = connect(addr).await?;
                for i in 0..passes {
                    fetch(&mut send, &routes[(worker + i * CONNECTIONS) % routes.len()], "small").await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    Ok(())
}

/// One GET on a kept-alive connection, the body read to its end.
async fn fetch(
    send: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
    route: &Route,
    what: &str,
) -> anyhow::Result<()> {
    let mut request = hyper::Request::get(format!("/sessions/{}/{what}", route.id)).header("host", &route.host);
    if let Some(cookie) = &route.cookie {
        request = request.header("cookie", cookie);
    }
    let response = send.send_request(request.body(Empty::new())?).await?;
    anyhow::ensure!(response.status() == 200, "{what} answered {}", response.status());
    let mut body = response.into_body();
    while let Some(frame) = body.frame().await {
        frame?;
    }
    Ok(())
}

/// Requests per second and the latencies of GETs on `CONNECTIONS` kept-alive connections,
/// each going through the routes in turn, for `seconds`.
async fn http_load(
    addr: SocketAddr,
    routes: &Arc<Vec<Route>>,
    what: &'static str,
    seconds: Duration,
) -> anyhow::Result<(f64, Latencies)> {
    let end = Instant::now() + seconds;
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|worker| {
            let routes = routes.clone();
            tokio::spawn(async move {
                let mut send = connect(addr).await?;
                let mut latencies = Latencies::default();
                let mut i = worker;
                while Instant::now() < end {
                    let started = Instant::now();
                    fetch(&mut send, &routes[i % routes.len()], what).await?;
                    latencies.push(started.elapsed());
                    i += CONNECTIONS;
                }
                anyhow::Ok(latencies)
            })
        })
        .collect();
    collect(tasks, seconds).await
}

/// Messages per second and the round trips of 100-byte WebSocket messages echoed by the
/// backend, on `CONNECTIONS` connections, each to a route of its own.
async fn ws_load(addr: SocketAddr, routes: &Arc<Vec<Route>>, seconds: Duration) -> anyhow::Result<(f64, Latencies)> {
    let mut sockets = Vec::new();
    for worker in 0..CONNECTIONS {
        let route = &routes[worker % routes.len()];
        let mut request = format!("ws://{}/sessions/{}/ws", route.host, route.id).into_client_request()?;
        if let Some(cookie) = &route.cookie {
            request.headers_mut().insert("cookie", cookie.parse()?);
        }
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        sockets.push(tokio_tungstenite::client_async(request, stream).await?.0);
    }
    let end = Instant::now() + seconds;
    let tasks: Vec<_> = sockets
        .into_iter()
        .map(|mut socket| {
            tokio::spawn(async move {
                let message = Bytes::from(vec![b'x'; 100]);
                let mut latencies = Latencies::default();
                while Instant::now() < end {
                    let started = Instant::now();
                    socket.send(Message::Binary(message.clone())).await?;
                    loop {
                        match socket.next().await.ok_or_else(|| anyhow::anyhow!("closed"))?? {
                            Message::Binary(echo) if echo == message => break,
                            Message::Ping(_) | Message::Pong(_) => {}
                            other => anyhow::bail!("not the echo: {other:?}"),
                        }
                    }
                    latencies.push(started.elapsed());
                }
                socket.close(None).await.ok();
                anyhow::Ok(latencies)
            })
        })
        .collect();
    collect(tasks, seconds).await
}

async fn collect(
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<Latencies>>>,
    seconds: Duration,
) -> anyhow::Result<(f64, Latencies)> {
    let mut all = Latencies::default();
    for task in tasks {
        all.extend(task.await??);
    }
    Ok((all.count() as f64 / seconds.as_secs_f64(), all))
}
