//! The notebook proxy against a real JupyterLab: entering through a one-time ticket, the
//! isolation of the portal's and the session origins' cookies, a kernel run over the
//! proxied WebSocket, a restart of daas that the open notebook survives, answers passed
//! through unchanged and streamed with no token in Jupyter's pages (issue 14, item 13), a
//! session origin that takes changes and WebSockets from its own pages only, the
//! datasets one click from the file browser, and idleness read from what the user does
//! and from Jupyter's own record (item 14).

use std::time::{Duration, Instant};

use axum::http::Method;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

use crate::common::{add_shell_image, TestApp};
use crate::desktop::launch;

pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) head: String,
    pub(crate) body: String,
}

/// A raw HTTP/1.0 request to `addr` with the given `Host` (a session origin or the portal).
pub(crate) async fn http(addr: &str, method: &str, host: &str, path: &str, cookie: Option<&str>) -> Answer {
    http_with(addr, method, host, path, cookie, &[]).await
}

/// `http` with more headers (`Origin`, `Sec-Fetch-Site`).
pub(crate) async fn http_with(
    addr: &str,
    method: &str,
    host: &str,
    path: &str,
    cookie: Option<&str>,
    headers: &[(&str, &str)],
) -> Answer {
    let (status, head, body) = raw(addr, method, host, path, cookie, headers).await;
    Answer { status, head, body: String::from_utf8_lossy(&body).into_owned() }
}

/// `http_with`, answering the status, the head and the body's bytes as they came.
async fn raw(
    addr: &str,
    method: &str,
    host: &str,
    path: &str,
    cookie: Option<&str>,
    headers: &[(&str, &str)],
) -> (u16, String, Vec<u8>) {
    let mut stream = send_request(addr, method, host, path, cookie, headers).await;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), stream.read_to_end(&mut response)).await.unwrap().unwrap();
    let at = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(response.len());
    let head = String::from_utf8_lossy(&response[..at]).into_owned();
    let body = response.get(at + 4..).unwrap_or_default().to_vec();
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, head, body)
}

/// Sends an HTTP/1.0 request; the answer is left to read.
async fn send_request(
    addr: &str,
    method: &str,
    host: &str,
    path: &str,
    cookie: Option<&str>,
    headers: &[(&str, &str)],
) -> tokio::net::TcpStream {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut extra = cookie.map(|c| format!("Cookie: {c}\r\n")).unwrap_or_default();
    for (name, value) in headers {
        extra.push_str(&format!("{name}: {value}\r\n"));
    }
    let request =
        format!("{method} {path} HTTP/1.0\r\nHost: {host}\r\n{extra}Connection: close\r\nContent-Length: 0\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    stream
}

pub(crate) fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| l.split_once(':').filter(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim()))
}

/// Follows the portal's `/sessions/{id}/open` as a logged-in browser; returns the ticket URL.
pub(crate) async fn ticket_url(app: &TestApp, cookie: &str, id: &str) -> url::Url {
    let r = app.browse(Method::GET, &format!("/sessions/{id}/open"), Some(cookie), None, &[]).await;
    assert_eq!(r.status, 303, "{}", r.text);
    url::Url::parse(r.headers["location"].to_str().unwrap()).unwrap()
}

/// Checks what `/_daas/enter` answers a good ticket (a `Strict`, host-only cookie and a page
/// of the session's origin that moves on to the lab) and returns the cookie.
fn entered_cookie(entered: &Answer, id: &str) -> String {
    // A page, not a redirect: a redirect continuing the chain the portal started would not
    // carry the `Strict` cookie.
    assert_eq!(entered.status, 200, "{}", entered.head);
    let refresh = format!("content=\"0; url=/sessions/{id}/lab\"");
    assert!(entered.body.contains("http-equiv=\"refresh\"") && entered.body.contains(&refresh), "{}", entered.body);
    assert_eq!(header(&entered.head, "referrer-policy"), Some("no-referrer"));
    let set_cookie = header(&entered.head, "set-cookie").unwrap().to_string();
    assert!(!set_cookie.to_ascii_lowercase().contains("domain="), "the cookie must be host-only: {set_cookie}");
    assert!(set_cookie.contains("HttpOnly"));
    assert!(set_cookie.contains("SameSite=Strict"), "{set_cookie}");
    set_cookie.split(';').next().unwrap().to_string()
}

/// Enters a session's origin as a browser does (a ticket from the portal, spent at
/// `/_daas/enter`); the origin's cookie.
pub(crate) async fn enter(app: &TestApp, addr: &str, host: &str, portal_cookie: &str, id: &str) -> String {
    let url = ticket_url(app, portal_cookie, id).await;
    let entered = http(addr, "GET", host, &format!("{}?{}", url.path(), url.query().unwrap()), None).await;
    entered_cookie(&entered, id)
}

/// Opens a WebSocket through a session origin; `Err(status)` when refused.
async fn ws(addr: &str, host: &str, path: &str, cookie: &str, headers: &[(&str, &str)]) -> Result<(), u16> {
    let mut request = format!("ws://{addr}{path}").into_client_request().unwrap();
    request.headers_mut().insert("host", host.parse().unwrap());
    request.headers_mut().insert("cookie", cookie.parse().unwrap());
    for (name, value) in headers {
        let name = axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap();
        request.headers_mut().insert(name, value.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok(_) => Ok(()),
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => Err(response.status().as_u16()),
        Err(err) => panic!("{err}"),
    }
}

/// A local app serving alice's running notebook, entered: `(app, address, session id,
/// session origin's host, the origin's cookie)`.
async fn alices_notebook(db: PgPool) -> (TestApp, String, String, String, String) {
    let app = TestApp::local(db).await;
    app.start_reconciler();
    let addr = app.serve().await;
    let id = launch(&app, "alice", "JupyterLab").await;
    let host = format!("{id}.sessions.localhost:8080");
    let portal = app.browser("alice").await;
    let cookie = enter(&app, &addr, &host, &portal.cookie, &id).await;
    (app, addr, id, host, cookie)
}

/// Seconds since the session's last noted activity.
async fn idle_seconds(db: &PgPool, id: &str) -> f64 {
    sqlx::query_scalar("select extract(epoch from now() - last_activity_at)::float8 from sessions where id = $1::uuid")
        .bind(id)
        .fetch_one(db)
        .await
        .unwrap()
}

pub(crate) type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A kernel's channels over the proxied WebSocket, as the session's own page opens them.
pub(crate) async fn channels(addr: &str, host: &str, path: &str, cookie: &str) -> Socket {
    let mut request = format!("ws://{addr}{path}").into_client_request().unwrap();
    request.headers_mut().insert("host", host.parse().unwrap());
    request.headers_mut().insert("cookie", cookie.parse().unwrap());
    request.headers_mut().insert("origin", format!("http://{host}").parse().unwrap());
    tokio_tungstenite::connect_async(request).await.unwrap().0
}

/// Sends `code` to run; its message id.
async fn execute(socket: &mut Socket, code: &str) -> String {
    let msg_id = uuid::Uuid::new_v4().to_string();
    let message = json!({
        "header": {"msg_id": msg_id, "username": "test", "session": uuid::Uuid::new_v4().to_string(),
                   "msg_type": "execute_request", "version": "5.3", "date": "2026-11-21T00:00:00Z"},
        "parent_header": {}, "metadata": {}, "channel": "shell", "buffers": [],
        "content": {"code": code, "silent": false, "store_history": false, "user_expressions": {},
                    "allow_stdin": false, "stop_on_error": true},
    });
    socket.send(Message::text(message.to_string())).await.unwrap();
    msg_id
}

/// Runs `code` in a kernel over the proxied WebSocket and returns its `text/plain` result.
pub(crate) async fn run(addr: &str, host: &str, path: &str, cookie: &str, code: &str) -> String {
    let mut socket = channels(addr, host, path, cookie).await;
    let msg_id = execute(&mut socket, code).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let next = tokio::time::timeout(left, socket.next()).await.expect("no result in time").unwrap().unwrap();
        let Message::Text(text) = next else { continue };
        let reply: Value = serde_json::from_str(&text).unwrap();
        if reply["msg_type"] == "execute_result" && reply["parent_header"]["msg_id"] == msg_id {
            return reply["content"]["data"]["text/plain"].as_str().unwrap().to_string();
        }
    }
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn a_notebook_lives_on_its_own_origin_and_survives_a_restart(db: PgPool) {
    let app = TestApp::local(db).await;
    app.start_reconciler();
    let addr = app.serve().await;
    let id = launch(&app, "alice", "JupyterLab").await;
    let other = launch(&app, "alice", "JupyterLab").await;
    let host = format!("{id}.sessions.localhost:8080");
    let other_host = format!("{other}.sessions.localhost:8080");
    let api = format!("/sessions/{id}/api/status");
    let portal = app.browser("alice").await;

    // Nobody enters without a ticket, and the portal's cookie is no key to a session origin;
    // a person who tries is told so and shown the way back (issue 14 item 4).
    let refused = http(&addr, "GET", &host, &api, None).await;
    assert_eq!(refused.status, 401);
    assert!(refused.head.to_lowercase().contains("content-type: text/html"), "{}", refused.head);
    assert!(
        refused
            .body
            .contains(&format!(r#"<a href="http://localhost:8080/sessions/{id}">Back to the session in daas</a>"#)),
        "{}",
        refused.body
    );
    assert_eq!(http(&addr, "GET", &host, &api, Some(&portal.cookie)).await.status, 401);
    // Another user, or a guest, gets no ticket.
    let bob = app.browser("bob").await;
    let r = app.browse(Method::GET, &format!("/sessions/{id}/open"), Some(&bob.cookie), None, &[]).await;
    assert_eq!(r.status, 404);

    let url = ticket_url(&app, &portal.cookie, &id).await;
    assert_eq!(url.host_str(), Some(format!("{id}.sessions.localhost").as_str()));
    let spend = format!("{}?{}", url.path(), url.query().unwrap());
    // A ticket is for its own session's origin only, and for one use.
    assert_eq!(http(&addr, "GET", &other_host, &spend, None).await.status, 403);
    let url = ticket_url(&app, &portal.cookie, &id).await;
    let spend = format!("{}?{}", url.path(), url.query().unwrap());
    let cookie = entered_cookie(&http(&addr, "GET", &host, &spend, None).await, &id);
    assert_eq!(http(&addr, "GET", &host, &spend, None).await.status, 403, "a ticket works once");

    // Jupyter answers through the proxy, which adds the token; the page never sees it.
    // Starting a kernel is activity (checked below).
    sqlx::query("update sessions set last_activity_at = now() - interval '1 hour' where id = $1::uuid")
        .bind(&id)
        .execute(&app.db)
        .await
        .unwrap();
    let status = http(&addr, "GET", &host, &api, Some(&cookie)).await;
    assert_eq!(status.status, 200, "{}", status.body);
    let secret: String = sqlx::query_scalar("select secret from sessions where id = $1::uuid")
        .bind(&id)
        .fetch_one(&app.db)
        .await
        .unwrap();
    let lab = http(&addr, "GET", &host, &format!("/sessions/{id}/lab"), Some(&cookie)).await;
    assert_eq!(lab.status, 200);
    assert!(!lab.body.contains(&secret) && !lab.head.contains(&secret), "the Jupyter token reached the browser");

    // The session cookie opens neither the other session's origin nor the portal, under
    // any name.
    let other_api = format!("/sessions/{other}/api/status");
    assert_eq!(http(&addr, "GET", &other_host, &other_api, Some(&cookie)).await.status, 401);
    let value = cookie.split_once('=').unwrap().1;
    assert_eq!(http(&addr, "GET", "localhost:8080", "/api/v1/me", Some(&cookie)).await.status, 401);
    let renamed = format!("daas_session={value}");
    assert_eq!(http(&addr, "GET", "localhost:8080", "/api/v1/me", Some(&renamed)).await.status, 401);
    assert_eq!(http(&addr, "GET", "localhost:8080", "/api/v1/me", Some(&portal.cookie)).await.status, 200);

    // A kernel runs code over the proxied WebSocket.
    let kernel = http(&addr, "POST", &host, &format!("/sessions/{id}/api/kernels"), Some(&cookie)).await;
    assert_eq!(kernel.status, 201, "{}", kernel.body);
    let kernel: Value = serde_json::from_str(&kernel.body).unwrap();
    let channels = format!("/sessions/{id}/api/kernels/{}/channels", kernel["id"].as_str().unwrap());
    assert_eq!(run(&addr, &host, &channels, &cookie, "1+1").await, "2");
    let mut idle = f64::MAX;
    for _ in 0..50 {
        idle = idle_seconds(&app.db, &id).await;
        if idle < 60.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(idle < 60.0, "the proxy recorded no activity: idle for {idle} s");

    // A new daas process over the same database: the browser reconnects with its cookie
    // and the kernel is still there.
    let restarted = daas::AppState::new(app.db.clone(), app.state.config.clone(), app.state.runtime.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr2 = listener.local_addr().unwrap().to_string();
    let background = daas::background::start(&restarted, daas::background::Reconciler::Leave);
    let router = daas::app(restarted, &background);
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    assert_eq!(http(&addr2, "GET", &host, &api, Some(&cookie)).await.status, 200);
    assert_eq!(run(&addr2, &host, &channels, &cookie, "40+2").await, "42");

    // Once stopped, the origin answers 404 and keeps no route.
    let alice = app.token("alice").await;
    app.request(Method::DELETE, &format!("/api/v1/sessions/{id}"), Some(&alice), None).await;
    app.request(Method::DELETE, &format!("/api/v1/sessions/{other}"), Some(&alice), None).await;
    let start = Instant::now();
    loop {
        let r = http(&addr, "GET", &host, &api, Some(&cookie)).await;
        if r.status == 404 {
            assert!(r.body.contains("This notebook is not running") && r.body.contains("My sessions"), "{}", r.body);
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "still proxied after the stop: {}", r.status);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    app.stop_everything().await;
}

/// Issue 14, item 13: the proxy passes every answer through as it comes, byte for byte and
/// whatever its size (it once read HTML whole, up to 8 MiB, and re-encoded it as UTF-8 to
/// blank the token), and Jupyter, configured by daas, renders no token into its pages.
#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn item_13_files_pass_byte_for_byte_and_no_page_carries_the_token(db: PgPool) {
    use sha2::{Digest, Sha256};

    let (app, addr, id, host, cookie) = alices_notebook(db).await;

    // Files of the home, which Jupyter serves under /files/ as text/html: a 12 MiB report
    // and a page in windows-1252 (not UTF-8).
    let mut report = b"<!doctype html>\n<html><body>\n".to_vec();
    while report.len() < 12 << 20 {
        report.extend_from_slice(format!("<p>row {}</p>\n", report.len()).as_bytes());
    }
    let legacy =
        b"<html><head><meta charset=\"windows-1252\"></head><body>Caf\xe9 \x93cr\xe8me\x94 \x80 5</body></html>\n";
    let home = app.data_path().join("_runtime/homes/alice");
    for (name, bytes) in [("report.html", report.as_slice()), ("legacy.html", legacy.as_slice())] {
        std::fs::write(home.join(name), bytes).unwrap();
        let path = format!("/sessions/{id}/files/{name}");
        let (status, head, body) = raw(&addr, "GET", &host, &path, Some(&cookie), &[]).await;
        assert_eq!(status, 200, "{name}: {head}");
        assert!(header(&head, "content-type").is_some_and(|t| t.starts_with("text/html")), "{name}: {head}");
        assert_eq!(
            Sha256::digest(&body),
            Sha256::digest(bytes),
            "{name} changed on its way: {} bytes came of {}",
            body.len(),
            bytes.len()
        );
    }

    // The lab, and a page of jupyter_server's own (a 404, which would carry the token as
    // `data-jupyter-api-token`), hold the secret nowhere.
    let secret: String = sqlx::query_scalar("select secret from sessions where id = $1::uuid")
        .bind(&id)
        .fetch_one(&app.db)
        .await
        .unwrap();
    let lab = http(&addr, "GET", &host, &format!("/sessions/{id}/lab"), Some(&cookie)).await;
    assert_eq!(lab.status, 200, "{}", lab.head);
    assert!(lab.body.contains("\"token\": \"\""), "JupyterLab's page_config has a token: {}", lab.body);
    let missing = http(&addr, "GET", &host, &format!("/sessions/{id}/files/missing.html"), Some(&cookie)).await;
    assert_eq!(missing.status, 404, "{}", missing.head);
    for page in [&lab, &missing] {
        assert!(!page.body.contains(&secret) && !page.head.contains(&secret), "the Jupyter token reached the browser");
    }

    // What JupyterLab asks at start, with no token of its own: the proxy's is enough.
    let own = [("Origin", format!("http://{host}"))];
    let own: Vec<(&str, &str)> = own.iter().map(|(n, v)| (*n, v.as_str())).collect();
    for (method, path, expected) in [
        ("GET", "api/contents?content=1", 200),
        ("GET", "api/kernelspecs", 200),
        ("GET", "lab/api/settings", 200),
        ("GET", "api/me", 200),
        ("POST", "api/contents", 201),
    ] {
        let r = http_with(&addr, method, &host, &format!("/sessions/{id}/{path}"), Some(&cookie), &own).await;
        assert_eq!(r.status, expected, "{method} {path}: {}", r.body);
        assert!(!r.body.contains(&secret) && !r.head.contains(&secret), "{method} {path} answered the token");
    }

    app.request(Method::DELETE, &format!("/api/v1/sessions/{id}"), Some(&app.token("alice").await), None).await;
    app.stop_everything().await;
}

/// Issue 14, item 13: an HTML answer is streamed, not read whole first: what the notebook
/// has sent reaches the browser while the rest has not come (here, never comes).
#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn item_13_an_html_answer_is_streamed_as_it_comes(db: PgPool) {
    let app = TestApp::local(db).await;
    // A server that sends the head and a first part of every answer, then nothing more.
    let server = "import socket, sys, threading, time
def answer(c):
    c.recv(65536)
    part = b'<p>first part</p>'
    c.sendall(b'HTTP/1.1 200 OK\\r\\nContent-Type: text/html\\r\\nTransfer-Encoding: chunked\\r\\n\\r\\n'
              + b'%x\\r\\n' % len(part) + part + b'\\r\\n')
    time.sleep(3600)
listener = socket.create_server(('127.0.0.1', int(sys.argv[1])))
while True:
    threading.Thread(target=answer, args=(listener.accept()[0],), daemon=True).start()
";
    add_shell_image(&app.db, "Stalling", "notebook", &format!("exec python3 -c \"{server}\" {{port}}")).await;
    app.start_reconciler();
    let addr = app.serve().await;
    let id = launch(&app, "alice", "Stalling").await;
    let host = format!("{id}.sessions.localhost:8080");
    let portal = app.browser("alice").await;
    let cookie = enter(&app, &addr, &host, &portal.cookie, &id).await;

    let mut stream = send_request(&addr, "GET", &host, &format!("/sessions/{id}/page.html"), Some(&cookie), &[]).await;
    let mut seen = Vec::new();
    let read = async {
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(&seen).contains("<p>first part</p>") {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "the answer ended: {}", String::from_utf8_lossy(&seen));
            seen.extend_from_slice(&buf[..n]);
        }
    };
    let streamed = tokio::time::timeout(Duration::from_secs(20), read).await.is_ok();
    assert!(streamed, "the first part did not come through: {}", String::from_utf8_lossy(&seen));

    app.request(Method::DELETE, &format!("/api/v1/sessions/{id}"), Some(&app.token("alice").await), None).await;
    app.stop_everything().await;
}

/// Attack 4 of issue 11 without a browser: daas adds Jupyter's token to every request,
/// which switches off Jupyter's own cross-site checks, and all session origins are one
/// site, so daas itself must refuse what a page of another origin asks of this one.
#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn a_session_origin_takes_changes_only_from_its_own_pages(db: PgPool) {
    let app = TestApp::local(db).await;
    app.start_reconciler();
    let addr = app.serve().await;
    let id = launch(&app, "alice", "JupyterLab").await;
    let host = format!("{id}.sessions.localhost:8080");
    let own = format!("http://{host}");
    let own = own.as_str();
    let neighbour = format!("http://{}.sessions.localhost:8080", uuid::Uuid::new_v4());
    let neighbour = neighbour.as_str();
    let portal = app.browser("alice").await;
    let cookie = enter(&app, &addr, &host, &portal.cookie, &id).await;
    let terminals = format!("/sessions/{id}/api/terminals");

    // Changes asked by a page of another origin (another notebook, the portal, an opaque
    // origin) or, without `Origin`, of another site, never reach Jupyter.
    let refused: [&[(&str, &str)]; 6] = [
        &[("Origin", neighbour)],
        &[("Origin", "http://localhost:8080")],
        &[("Origin", "null")],
        &[("Origin", "https://evil.example")],
        &[("Sec-Fetch-Site", "same-site")],
        &[("Sec-Fetch-Site", "cross-site")],
    ];
    for headers in refused {
        for method in ["POST", "PUT", "PATCH", "DELETE"] {
            let r = http_with(&addr, method, &host, &terminals, Some(&cookie), headers).await;
            assert_eq!(r.status, 403, "{method} {headers:?}: {}", r.body);
            assert!(r.body.contains("another site"), "{}", r.body);
        }
    }
    let list = http_with(&addr, "GET", &host, &terminals, Some(&cookie), &[("Origin", neighbour)]).await;
    assert_eq!(list.status, 200, "reading is not refused: {}", list.body);
    assert_eq!(serde_json::from_str::<Value>(&list.body).unwrap(), json!([]), "a terminal was created");

    // Its own pages may: with `Origin`, or a browser's `Sec-Fetch-Site` alone.
    let made = http_with(&addr, "POST", &host, &terminals, Some(&cookie), &[("Origin", own)]).await;
    assert_eq!(made.status, 200, "{}", made.body);
    let name = serde_json::from_str::<Value>(&made.body).unwrap()["name"].as_str().unwrap().to_string();
    let same = [("Sec-Fetch-Site", "same-origin")];
    let made = http_with(&addr, "POST", &host, &terminals, Some(&cookie), &same).await;
    assert_eq!(made.status, 200, "{}", made.body);
    let list = http(&addr, "GET", &host, &terminals, Some(&cookie)).await;
    assert_eq!(serde_json::from_str::<Value>(&list.body).unwrap().as_array().unwrap().len(), 2, "{}", list.body);

    // Every WebSocket upgrade is checked the same way, whatever its path.
    let socket = format!("/sessions/{id}/terminals/websocket/{name}");
    for headers in refused {
        assert_eq!(ws(&addr, &host, &socket, &cookie, headers).await, Err(403), "{headers:?}");
    }
    assert_eq!(ws(&addr, &host, &socket, &cookie, &[("Origin", own)]).await, Ok(()));

    app.request(Method::DELETE, &format!("/api/v1/sessions/{id}"), Some(&app.token("alice").await), None).await;
    app.stop_everything().await;
}

/// A folder's entries through Jupyter's contents API, as "type name".
async fn listing(addr: &str, host: &str, cookie: &str, uri: String) -> Vec<String> {
    let r = http(addr, "GET", host, &uri, Some(cookie)).await;
    assert_eq!(r.status, 200, "{uri}: {}", r.body);
    let folder: Value = serde_json::from_str(&r.body).unwrap();
    let entries = folder["content"].as_array().unwrap();
    entries.iter().map(|e| format!("{} {}", e["type"].as_str().unwrap(), e["name"].as_str().unwrap())).collect()
}

/// Issue 14, item 12: JupyterLab's file browser shows the home, and in it `data`, the
/// experiment's datasets (mounted at `/data`); a user's own `data` is left alone.
#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn the_datasets_are_one_click_from_the_notebooks_home(db: PgPool) {
    let (app, addr, id, host, cookie) = alices_notebook(db).await;
    let listing = |path: &str| listing(&addr, &host, &cookie, format!("/sessions/{id}/api/contents/{path}"));
    assert!(listing("").await.contains(&"directory data".to_string()), "no data in the home");
    let data = listing("data").await;
    for dataset in ["directory tomo_scan_0001", "directory tomo_scan_0002"] {
        assert!(data.contains(&dataset.to_string()), "{dataset} missing from {data:?}");
    }
    let alice = app.token("alice").await;
    app.request(Method::DELETE, &format!("/api/v1/sessions/{id}"), Some(&alice), None).await;

    // A user's own `data` stays theirs.
    let home = app.data_path().join("_runtime/homes/alice");
    std::fs::remove_file(home.join("data")).unwrap();
    std::fs::write(home.join("data"), "mine").unwrap();
    launch(&app, "alice", "JupyterLab").await;
    assert_eq!(std::fs::read_to_string(home.join("data")).unwrap(), "mine");
    app.stop_everything().await;
}

/// Issue 14, item 14: idle means the user is not working. A forgotten tab (its polls of
/// the kernels, sessions and files; its WebSocket's pings) is not activity; a kernel busy
/// with no tab open is, read from Jupyter's own record.
#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn item_14_a_forgotten_tab_is_not_activity_and_a_kernel_at_work_without_a_tab_is(db: PgPool) {
    let (app, addr, id, host, cookie) = alices_notebook(db).await;
    let idle_for = || idle_seconds(&app.db, &id);
    let an_hour_ago = || async {
        sqlx::query("update sessions set last_activity_at = now() - interval '1 hour' where id = $1::uuid")
            .bind(&id)
            .execute(&app.db)
            .await
            .unwrap();
    };
    let kernel = http(&addr, "POST", &host, &format!("/sessions/{id}/api/kernels"), Some(&cookie)).await;
    assert_eq!(kernel.status, 201, "{}", kernel.body);
    let kernel: Value = serde_json::from_str(&kernel.body).unwrap();
    let path = format!("/sessions/{id}/api/kernels/{}/channels", kernel["id"].as_str().unwrap());

    // The tab left open: its polls and its WebSocket's pings, for a while. (The proxy notes
    // a session's activity at most once per 5 s: the kernel's start is older by then.)
    tokio::time::sleep(Duration::from_millis(3500)).await;
    an_hour_ago().await;
    let mut socket = channels(&addr, &host, &path, &cookie).await;
    for _ in 0..3 {
        socket.send(Message::Ping(b"still here".to_vec().into())).await.unwrap();
        for poll in ["api/kernels", "api/sessions", "api/terminals", "api/contents?content=1"] {
            let r = http(&addr, "GET", &host, &format!("/sessions/{id}/{poll}"), Some(&cookie)).await;
            assert_eq!(r.status, 200, "{poll}: {}", r.body);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let idle = idle_for().await;
    assert!(idle > 3500.0, "the tab's polling and pings counted as work: idle for {idle} s");
    // Opening a page is the user at work.
    let lab = http_with(
        &addr,
        "GET",
        &host,
        &format!("/sessions/{id}/lab"),
        Some(&cookie),
        &[("sec-fetch-mode", "navigate")],
    )
    .await;
    assert_eq!(lab.status, 200);
    let mut idle = f64::MAX;
    for _ in 0..30 {
        idle = idle_for().await;
        if idle < 60.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(idle < 60.0, "opening JupyterLab was not activity: idle for {idle} s");

    // A computation started, then the tab closed: the kernel is busy, which is work.
    execute(&mut socket, "import time; time.sleep(60)").await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let next = tokio::time::timeout(left, socket.next()).await.expect("never busy").unwrap().unwrap();
        let Message::Text(text) = next else { continue };
        let message: Value = serde_json::from_str(&text).unwrap();
        if message["msg_type"] == "status" && message["content"]["execution_state"] == "busy" {
            break;
        }
    }
    drop(socket);
    an_hour_ago().await;
    app.notebooks().read_jupyter().await;
    let idle = idle_for().await;
    assert!(idle < 10.0, "a busy kernel without a tab was not work: idle for {idle} s");
    app.stop_everything().await;
}
