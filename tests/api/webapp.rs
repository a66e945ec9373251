//! Web apps (issue 18): a browser tool served on its session's own origin like a notebook,
//! but with no token added, its progress shown while it starts, guests who may only look
//! (the proxy refuses them anything that would change it), and "Use these parameters",
//! which takes what the web app holds to the Launch dialog of the job it names.

use std::time::{Duration, Instant};

use axum::http::Method;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::common::{add_shell_image, events_of, id_of, TestApp};
use crate::notebook::{header, http, http_with, ticket_url};

/// A web app that tells its progress, then answers every GET with what it was sent (path
/// and headers), `api/parameters` with parameters for the reconstruction job, and a POST
/// with what was posted.
const ECHO: &str = r#"
import http.server, json, sys
class H(http.server.BaseHTTPRequestHandler):
    def answer(self, body):
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
    def do_GET(self):
        if self.path.endswith("/api/parameters"):
            return self.answer({"image": "Tomography reconstruction",
                                "parameters": {"dataset": "tooth", "centre": "given", "centre_value": 296.25}})
        self.answer({"path": self.path, "headers": dict(self.headers)})
    def do_POST(self):
        self.answer({"posted": self.path})
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"#;

/// What the echo app writes as its progress before it listens.
const LOADING: &str = "loading the scan: 1.0 of 2.0 GB read, about 3 s left";

/// Enters the web app's origin with `portal_cookie` (a ticket from the portal, spent at
/// `/_daas/enter`, which moves on to the app's own page); the origin's cookie.
async fn enter(app: &TestApp, addr: &str, host: &str, portal_cookie: &str, id: &str) -> String {
    let url = ticket_url(app, portal_cookie, id).await;
    let entered = http(addr, "GET", host, &format!("{}?{}", url.path(), url.query().unwrap()), None).await;
    assert_eq!(entered.status, 200, "{}", entered.head);
    assert!(entered.body.contains(&format!("content=\"0; url=/sessions/{id}/\"")), "{}", entered.body);
    header(&entered.head, "set-cookie").unwrap().split(';').next().unwrap().to_string()
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn a_web_app_tells_its_progress_gets_no_token_lets_guests_only_look_and_hands_its_parameters_on(db: PgPool) {
    let app = TestApp::local(db).await;
    app.start_reconciler();
    let addr = app.serve().await;
    let script =
        format!("printf '%s\\n' '{LOADING}' > \"$DAAS_PROGRESS_FILE\"; sleep 4; exec python3 -c '{ECHO}' {{port}}");
    let image = add_shell_image(&app.db, "Echo", "webapp", &script).await;
    let alice = app.token("alice").await;
    let body = json!({
        "image": image,
        "flavour": id_of(&app.db, "flavours", "name", "small").await,
        "experiment": id_of(&app.db, "experiments", "code", "S0011").await,
    });
    let r = app.request(Method::POST, "/api/v1/sessions", Some(&alice), Some(body.clone())).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["id"].as_str().unwrap().to_string();
    assert_eq!(r.body["kind"], "webapp");

    // While it loads, what it reports is the session's progress (and an event).
    let start = Instant::now();
    let mut seen = false;
    loop {
        let s = app.get(&format!("/api/v1/sessions/{id}"), Some(&alice)).await.body;
        seen |= s["state"] == "starting" && s["progress"] == LOADING;
        if s["state"] == "running" {
            break;
        }
        assert!(s["state"] == "starting" && start.elapsed() < Duration::from_secs(60), "{s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen, "the web app's progress never showed");
    let events = events_of(&app.db, &id).await;
    assert!(events.iter().any(|e| e == LOADING), "{events:?}");

    // On its own origin, as its owner: who is asking, the portal, and no token.
    let host = format!("{id}.sessions.localhost:8080");
    let portal = app.browser("alice").await;
    let cookie = enter(&app, &addr, &host, &portal.cookie, &id).await;
    let page = http(&addr, "GET", &host, &format!("/sessions/{id}/"), Some(&cookie)).await;
    assert_eq!(page.status, 200, "{}", page.head);
    let echo: Value = serde_json::from_str(&page.body).unwrap();
    let sent = |name: &str| {
        echo["headers"].as_object().unwrap().iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone())
    };
    assert_eq!(sent("x-daas-user"), Some(json!("alice")));
    assert_eq!(sent("x-daas-name"), Some(json!("Alice%20Martin")));
    assert_eq!(sent("x-daas-role"), Some(json!("owner")));
    assert_eq!(sent("x-daas-portal"), Some(json!("http://localhost:8080")));
    assert_eq!(sent("authorization"), None, "a web app gets no token: {echo}");
    assert!(echo["headers"].to_string().find(&portal.cookie).is_none(), "the portal's cookie reached the app");
    // What the browser claims under daas's names does not reach it.
    let forged =
        http_with(&addr, "GET", &host, &format!("/sessions/{id}/"), Some(&cookie), &[("x-daas-role", "admin")]).await;
    assert!(
        forged.body.contains("\"X-Daas-Role\": \"owner\"") || forged.body.contains("\"x-daas-role\": \"owner\""),
        "{}",
        forged.body
    );
    let origin = format!("http://{host}");
    let posted =
        http_with(&addr, "POST", &host, &format!("/sessions/{id}/api/view"), Some(&cookie), &[("origin", &origin)])
            .await;
    assert_eq!(posted.status, 200, "the owner changes it: {}", posted.body);

    // A guest opens it too, and may look, never change it.
    let r = app
        .request(
            Method::POST,
            &format!("/api/v1/sessions/{id}/members"),
            Some(&alice),
            Some(json!({"user": "carol", "role": "guest"})),
        )
        .await;
    assert_eq!(r.status, 201);
    let carol = app.token("carol").await;
    assert_eq!(
        app.request(Method::POST, &format!("/api/v1/invitations/{id}/accept"), Some(&carol), Some(json!({})))
            .await
            .status,
        200
    );
    let carol_portal = app.browser("carol").await;
    let card = app.browse(Method::GET, "/sessions", Some(&carol_portal.cookie), None, &[]).await;
    assert!(card.text.contains(&format!("href=\"/sessions/{id}/open\">Open Echo</a>")), "{}", card.text);
    let guest = enter(&app, &addr, &host, &carol_portal.cookie, &id).await;
    let looked = http(&addr, "GET", &host, &format!("/sessions/{id}/"), Some(&guest)).await;
    assert_eq!(looked.status, 200);
    assert!(looked.body.contains("guest"), "{}", looked.body);
    for method in ["POST", "PUT", "DELETE"] {
        let r =
            http_with(&addr, method, &host, &format!("/sessions/{id}/api/view"), Some(&guest), &[("origin", &origin)])
                .await;
        assert_eq!(r.status, 403, "a guest's {method}: {}", r.body);
        assert!(r.body.contains("You are watching"), "{}", r.body);
    }

    // "Use these parameters": daas reads them from the app and opens the job's Launch
    // dialog with them; only for those who may do more than watch.
    let r = app.browse(Method::GET, &format!("/sessions/{id}/use-parameters"), Some(&portal.cookie), None, &[]).await;
    assert_eq!(r.status, 303, "{}", r.text);
    let location = r.headers["location"].to_str().unwrap().to_string();
    let recon = id_of(&app.db, "images", "name", "Tomography reconstruction").await;
    let experiment = id_of(&app.db, "experiments", "code", "S0011").await;
    assert!(
        location.starts_with(&format!("/proposals/20180101/launch?image={recon}&experiment={experiment}&")),
        "{location}"
    );
    assert!(location.contains("param.centre=given") && location.contains("param.centre_value=296.25"), "{location}");
    let dialog = app.browse(Method::GET, &location, Some(&portal.cookie), None, &[]).await;
    assert_eq!(dialog.status, 200);
    assert!(dialog.text.contains("value=\"296.25\""), "the Launch dialog is not filled in");
    let r =
        app.browse(Method::GET, &format!("/sessions/{id}/use-parameters"), Some(&carol_portal.cookie), None, &[]).await;
    assert_eq!(r.status, 403);
    let events = events_of(&app.db, &id).await;
    let took =
        "alice took these parameters to Tomography reconstruction: centre given, centre_value 296.25, dataset tooth";
    assert!(events.iter().any(|e| e == took), "{events:?}");

    // Parameters are checked against the image's schema like a job's; desktops take none.
    sqlx::query("update images set parameter_schema = $2 where id = $1")
        .bind(image)
        .bind(json!({"type": "object", "required": ["dataset"], "properties": {"dataset": {"type": "string"}}}))
        .execute(&app.db)
        .await
        .unwrap();
    let r = app.request(Method::POST, "/api/v1/sessions", Some(&alice), Some(body.clone())).await;
    assert_eq!((r.status.as_u16(), r.body["error"]["field"].as_str()), (400, Some("parameters.dataset")), "{}", r.text);
    let mut desktop = body.clone();
    desktop["image"] = json!(id_of(&app.db, "images", "name", "Xfce desktop").await);
    desktop["parameters"] = json!({"dataset": "tooth"});
    let r = app.request(Method::POST, "/api/v1/sessions", Some(&alice), Some(desktop)).await;
    assert_eq!((r.status.as_u16(), r.body["error"]["field"].as_str()), (400, Some("parameters")), "{}", r.text);
    app.stop_everything().await;
}
