//! The desktop relay against a real Xvnc: who may open the WebSocket, and whose keys reach
//! the desktop (seen by what the terminal in it runs), before and after a handover; the
//! Xfce desktop the demo image promises, as its owner.

use std::time::{Duration, Instant};

use axum::http::Method;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::common::id_of;
use crate::common::TestApp;

pub(crate) type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Launches a desktop for `owner` and waits until it runs; returns its id.
pub async fn launch(app: &TestApp, owner: &str, image: &str) -> String {
    let token = app.token(owner).await;
    let body = json!({
        "image": id_of(&app.db, "images", "name", image).await,
        "flavour": id_of(&app.db, "flavours", "name", "small").await,
        "experiment": id_of(&app.db, "experiments", "code", "S0011").await,
    });
    let r = app.request(Method::POST, "/api/v1/sessions", Some(&token), Some(body)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["id"].as_str().unwrap().to_string();
    let start = Instant::now();
    loop {
        let s = app.get(&format!("/api/v1/sessions/{id}"), Some(&token)).await;
        if s.body["state"] == "running" {
            return id;
        }
        assert!(s.body["state"] == "starting" && start.elapsed() < Duration::from_secs(90), "{}", s.text);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Opens the desktop WebSocket; `Err(status)` when refused.
pub async fn open(addr: &str, id: &str, token: Option<&str>, origin: Option<&str>) -> Result<Socket, u16> {
    let origin: Vec<(&str, &str)> = origin.map(|o| ("origin", o)).into_iter().collect();
    open_with(addr, id, token, &origin).await
}

/// `open` with the given headers.
async fn open_with(addr: &str, id: &str, token: Option<&str>, headers: &[(&str, &str)]) -> Result<Socket, u16> {
    let mut request = format!("ws://{addr}/sessions/{id}/desktop/ws").into_client_request().unwrap();
    if let Some(token) = token {
        request.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    for (name, value) in headers {
        let name = axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap();
        request.headers_mut().insert(name, value.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, _)) => Ok(socket),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => Err(response.status().as_u16()),
        Err(err) => panic!("{err}"),
    }
}

/// Reads exactly `n` bytes from the relay.
async fn read(socket: &mut Socket, pending: &mut Vec<u8>, n: usize) -> Vec<u8> {
    while pending.len() < n {
        let message = tokio::time::timeout(Duration::from_secs(20), socket.next()).await.unwrap().unwrap().unwrap();
        if let Message::Binary(bytes) = message {
            pending.extend_from_slice(&bytes);
        }
    }
    pending.drain(..n).collect()
}

/// The RFB client side of the handshake, as noVNC does it: the relay must offer
/// security type None only, then pass the server's init through.
pub(crate) async fn handshake(socket: &mut Socket) -> (u16, u16) {
    let mut pending = Vec::new();
    assert_eq!(read(socket, &mut pending, 12).await, b"RFB 003.008\n");
    socket.send(Message::binary(b"RFB 003.008\n".to_vec())).await.unwrap();
    assert_eq!(read(socket, &mut pending, 2).await, [1, 1], "the browser is offered None only");
    socket.send(Message::binary(vec![1])).await.unwrap();
    assert_eq!(read(socket, &mut pending, 4).await, [0, 0, 0, 0]);
    socket.send(Message::binary(vec![0])).await.unwrap();
    let init = read(socket, &mut pending, 24).await;
    let name_len = u32::from_be_bytes(init[20..24].try_into().unwrap()) as usize;
    let name = read(socket, &mut pending, name_len).await;
    assert_eq!(name, b"daas");
    // As noVNC: the encodings (raw). No update request: these tests never read the screen.
    socket.send(Message::binary(vec![2, 0, 0, 1, 0, 0, 0, 0])).await.unwrap();
    (u16::from_be_bytes([init[0], init[1]]), u16::from_be_bytes([init[2], init[3]]))
}

/// Types `text` and Return: X keysyms are Latin-1 codes for printable characters.
async fn type_line(socket: &mut Socket, text: &str) {
    // Click into the terminal first, so it has the focus.
    let click = [5, 0, 1, 44, 0, 200, 5, 1, 1, 44, 0, 200, 5, 0, 1, 44, 0, 200];
    socket.send(Message::binary(click.to_vec())).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut bytes = Vec::new();
    for keysym in text.bytes().map(u32::from).chain([0xff0d]) {
        for down in [1u8, 0] {
            bytes.extend_from_slice(&[4, down, 0, 0]);
            bytes.extend_from_slice(&keysym.to_be_bytes());
        }
    }
    socket.send(Message::binary(bytes)).await.unwrap();
}

/// Waits up to `secs` for `path` to exist.
async fn appears(path: &std::path::Path, secs: u64) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(secs) {
        if path.exists() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

async fn post(app: &TestApp, token: &str, uri: &str, body: Value) -> crate::common::Response {
    app.request(Method::POST, uri, Some(token), Some(body)).await
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn the_relay_checks_login_membership_and_origin(db: PgPool) {
    let app = TestApp::local(db).await;
    app.start_reconciler();
    let addr = app.serve().await;
    let id = launch(&app, "alice", "Xfce desktop").await;
    let alice = app.token("alice").await;
    let bob = app.token("bob").await;

    assert_eq!(open(&addr, &id, None, None).await.err(), Some(401), "no login");
    assert_eq!(open(&addr, &id, Some("not-a-token"), None).await.err(), Some(401), "a bad token");
    assert_eq!(open(&addr, &id, Some(&bob), None).await.err(), Some(404), "not a member");
    let unknown = uuid::Uuid::new_v4().to_string();
    assert_eq!(open(&addr, &unknown, Some(&alice), None).await.err(), Some(404));
    assert_eq!(open(&addr, &id, Some(&alice), Some("http://evil.example")).await.err(), Some(403), "another site");
    let session_origin = format!("http://{id}.sessions.localhost:8080");
    assert_eq!(open(&addr, &id, Some(&alice), Some(&session_origin)).await.err(), Some(403), "a session origin");
    for site in ["same-site", "cross-site"] {
        let r = open_with(&addr, &id, Some(&alice), &[("sec-fetch-site", site)]).await;
        assert_eq!(r.err(), Some(403), "no Origin, Sec-Fetch-Site: {site}");
    }
    let mut socket = open(&addr, &id, Some(&alice), Some("http://localhost:8080")).await.unwrap();
    assert_eq!(handshake(&mut socket).await, (1600, 900));

    // Someone who may not see the proposal's data cannot be invited, and is told why.
    let r =
        post(&app, &alice, &format!("/api/v1/sessions/{id}/members"), json!({"user": "bob", "role": "guest"})).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.body["error"]["field"], "user");
    let why = r.body["error"]["message"].as_str().unwrap();
    assert!(why.contains("member of proposal 20180101") && why.contains("staff of beamline BL11"), "{why}");
    // A member added through the API may watch, once they accepted: sam, of the beamline.
    let sam = app.token("sam").await;
    let r =
        post(&app, &alice, &format!("/api/v1/sessions/{id}/members"), json!({"user": "sam", "role": "guest"})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(open(&addr, &id, Some(&sam), None).await.err(), Some(404), "an invitee who did not accept");
    assert_eq!(post(&app, &sam, &format!("/api/v1/invitations/{id}/accept"), json!({})).await.status, 200);
    let mut watcher = open(&addr, &id, Some(&sam), None).await.unwrap();
    handshake(&mut watcher).await;
    // Only the owner manages members; bad roles are 400.
    let r = post(&app, &sam, &format!("/api/v1/sessions/{id}/members"), json!({"user": "carol", "role": "user"})).await;
    assert_eq!(r.status, 403);
    let r =
        post(&app, &alice, &format!("/api/v1/sessions/{id}/members"), json!({"user": "carol", "role": "boss"})).await;
    assert_eq!(r.status, 400);
    let r =
        post(&app, &alice, &format!("/api/v1/sessions/{id}/members"), json!({"user": "nobody", "role": "user"})).await;
    assert_eq!(r.status, 400);

    // Stopping the desktop closes the open connections.
    let r = app.request(Method::DELETE, &format!("/api/v1/sessions/{id}"), Some(&alice), None).await;
    assert_eq!(r.status, 202);
    let closed =
        tokio::time::timeout(Duration::from_secs(30), async { while let Some(Ok(_)) = watcher.next().await {} }).await;
    assert!(closed.is_ok(), "the connection stayed open after the stop");
    app.stop_everything().await;
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn only_the_controller_types_and_handover_swaps_roles(db: PgPool) {
    // A stalled relay must fail the test, not hang the run.
    tokio::time::timeout(Duration::from_secs(150), controller_and_handover(db)).await.expect("the test stalled");
}

async fn controller_and_handover(db: PgPool) {
    let app = TestApp::local(db).await;
    app.start_reconciler();
    let addr = app.serve().await;
    let id = launch(&app, "alice", "Xfce desktop").await;
    let home = app.data_path().join("_runtime/homes/alice");
    let alice = app.token("alice").await;
    let sam = app.token("sam").await;
    let carol = app.token("carol").await;
    let members = format!("/api/v1/sessions/{id}/members");
    assert_eq!(post(&app, &alice, &members, json!({"user": "sam", "role": "user"})).await.status, 201);
    assert_eq!(post(&app, &alice, &members, json!({"user": "carol", "role": "guest"})).await.status, 201);
    for invitee in [&sam, &carol] {
        assert_eq!(post(&app, invitee, &format!("/api/v1/invitations/{id}/accept"), json!({})).await.status, 200);
    }

    let mut a = open(&addr, &id, Some(&alice), None).await.unwrap();
    let mut b = open(&addr, &id, Some(&sam), None).await.unwrap();
    let mut c = open(&addr, &id, Some(&carol), None).await.unwrap();
    for s in [&mut a, &mut b, &mut c] {
        handshake(s).await;
    }
    let control = app.get(&format!("/api/v1/sessions/{id}/control"), Some(&sam)).await;
    assert_eq!(control.body["controller"], "alice");
    assert_eq!(control.body["you_control"], false);

    // The terminal starts a moment after Xvnc answers: the owner types until it runs a line.
    let start = Instant::now();
    loop {
        type_line(&mut a, "touch terminal-ready").await;
        if appears(&home.join("terminal-ready"), 3).await {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "the owner's keys never reached the terminal");
    }
    // The guest and the member without control type first; only the owner's line runs.
    type_line(&mut c, "touch guest-typed").await;
    type_line(&mut b, "touch sam-typed-early").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    type_line(&mut a, "touch alice-typed").await;
    let typed = appears(&home.join("alice-typed"), 20).await;
    if !typed {
        let files: Vec<_> =
            std::fs::read_dir(&home).map(|d| d.flatten().map(|e| e.file_name()).collect()).unwrap_or_default();
        let handle = app.state.runtime.list().await.unwrap();
        let logs = app.state.runtime.logs(handle[0].session_id, &handle[0].handle, 50).await.unwrap_or_default();
        panic!("the controller's keys did not reach the desktop; home has {files:?}; log: {logs}");
    }
    assert!(!home.join("guest-typed").exists(), "a guest's keys reached the desktop");
    assert!(!home.join("sam-typed-early").exists(), "keys of a member without control reached the desktop");

    // Hand over to sam: now sam types and alice does not. A guest can never be handed control.
    let control = format!("/api/v1/sessions/{id}/control");
    let r = app.request(Method::PUT, &control, Some(&alice), Some(json!({"user": "carol"}))).await;
    assert_eq!(r.status, 400, "{}", r.text);
    let r = app.request(Method::PUT, &control, Some(&sam), Some(json!({"user": "sam"}))).await;
    assert_eq!(r.status, 403, "only the owner hands over");
    let r = app.request(Method::PUT, &control, Some(&alice), Some(json!({"user": "sam"}))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["controller"], "sam");
    let r = app.get(&control, Some(&sam)).await;
    assert_eq!(r.body["you_control"], true);
    sqlx::query("update sessions set last_activity_at = now() - interval '1 hour' where id = $1::uuid")
        .bind(&id)
        .execute(&app.db)
        .await
        .unwrap();
    // The relays learn of it through the session's events.
    tokio::time::sleep(Duration::from_secs(2)).await;
    type_line(&mut a, "touch alice-typed-after").await;
    type_line(&mut c, "touch guest-typed-after").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    type_line(&mut b, "touch sam-typed").await;
    assert!(appears(&home.join("sam-typed"), 20).await, "the new controller's keys did not reach the desktop");
    assert!(!home.join("alice-typed-after").exists(), "the owner typed without control");
    assert!(!home.join("guest-typed-after").exists(), "a guest's keys reached the desktop");

    // Typing counts as activity.
    let idle: f64 = sqlx::query_scalar(
        "select extract(epoch from now() - last_activity_at)::float8 from sessions where id = $1::uuid",
    )
    .bind(&id)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert!(idle < 30.0, "last activity is {idle} s ago");

    // The owner takes control back.
    let r = app.request(Method::PUT, &control, Some(&alice), Some(json!({"user": "alice"}))).await;
    assert_eq!(r.body["controller"], "alice");
    app.request(Method::DELETE, &format!("/api/v1/sessions/{id}"), Some(&alice), None).await;
    app.stop_everything().await;
}

/// Issue 14, item 11: "Xfce desktop" is an Xfce desktop (window manager, panel, a file
/// manager on the datasets, a terminal), and its shell's prompt names the owner. Seen from
/// inside, as the user would: a line typed into the terminal lists the X server's windows
/// and expands the shell's own prompt into files of the home.
#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn an_xfce_desktop_draws_its_panel_and_prompts_with_the_owners_name(db: PgPool) {
    tokio::time::timeout(Duration::from_secs(240), xfce_desktop(db)).await.expect("the test stalled");
}

async fn xfce_desktop(db: PgPool) {
    let app = TestApp::local(db).await;
    app.start_reconciler();
    let addr = app.serve().await;
    let id = launch(&app, "alice", "Xfce desktop").await;
    let home = app.data_path().join("_runtime/homes/alice");
    let alice = app.token("alice").await;
    let mut socket = open(&addr, &id, Some(&alice), None).await.unwrap();
    handshake(&mut socket).await;
    // Xfce's parts map their windows one after another: look again until all are there.
    let wanted = ["\"xfce4-panel\"", "\"xfwm4\"", "\"xfdesktop\"", "\"data - Thunar\"", "\"xfce4-terminal\""];
    let start = Instant::now();
    let windows = loop {
        type_line(&mut socket, r#"xwininfo -root -tree > windows.txt; echo "${PS1@P}" > prompt.txt"#).await;
        appears(&home.join("prompt.txt"), 3).await;
        let windows = std::fs::read_to_string(home.join("windows.txt")).unwrap_or_default();
        // Generous: beside the rest of the suite on 2 cores, Xfce took over a minute once.
        if wanted.iter().all(|w| windows.contains(w)) || start.elapsed() > Duration::from_secs(150) {
            break windows;
        }
    };
    for window in wanted {
        assert!(windows.contains(window), "no {window} window in {windows}");
    }
    let prompt = std::fs::read_to_string(home.join("prompt.txt")).unwrap();
    assert_eq!(prompt.trim(), "alice@daas-session:~$");
    app.stop_everything().await;
}

/// A VNC server that greets, then refuses every connection with a reason (as TigerVNC does
/// to a burst it blacklists); counts the connections.
async fn refusing_vnc(path: &std::path::Path) -> std::sync::Arc<std::sync::atomic::AtomicUsize> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::UnixListener::bind(path).unwrap();
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = count.clone();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                stream.write_all(b"RFB 003.008\n").await?;
                let mut version = [0u8; 12];
                stream.read_exact(&mut version).await?;
                let reason = b"Too many security failures";
                stream.write_all(&[0]).await?;
                stream.write_all(&(reason.len() as u32).to_be_bytes()).await?;
                stream.write_all(reason).await?;
                std::io::Result::Ok(())
            });
        }
    });
    count
}

/// A desktop that refuses daas's login gets a 503 with `Retry-After` after a few tries,
/// never a 101 with nothing behind it.
#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn a_refused_vnc_login_is_a_503_to_retry_not_a_dead_websocket(db: PgPool) {
    let app = TestApp::new(db).await;
    let socket = app.data_path().join("refusing.sock");
    let connections = refusing_vnc(&socket).await;
    app.fake().start_as(daas::runtime::Observed::Running { endpoint: format!("unix:{}", socket.display()) });
    let id = launch(&app, "alice", "Xfce desktop").await;
    let addr = app.serve().await;
    let token = app.token("alice").await;
    let mut request = format!("ws://{addr}/sessions/{id}/desktop/ws").into_client_request().unwrap();
    request.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    request.headers_mut().insert("origin", "http://localhost:8080".parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 503);
            assert_eq!(response.headers()["retry-after"], "2");
        }
        Ok(_) => panic!("a WebSocket was opened to a desktop that refused daas"),
        Err(err) => panic!("{err}"),
    }
    assert_eq!(connections.load(std::sync::atomic::Ordering::SeqCst), 3, "daas tries the login three times");
}
