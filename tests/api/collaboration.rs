//! Working together in a session (issue 17): the share dialog and who may be invited,
//! asking for and answering control of a desktop, and, against a real Xvnc and a real
//! Jupyter, what removing a member does at once (their connections close, the session's
//! secret is replaced) and the remote-access log with its CSV.

use std::time::{Duration, Instant};

use axum::http::Method;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio_tungstenite::tungstenite::Message;

use crate::common::{events_of, launch_body, wait_state, TestApp};
use crate::desktop::{handshake, launch, open};

async fn post(app: &TestApp, user: &str, uri: &str, body: Value) -> crate::common::Response {
    app.request(Method::POST, uri, Some(&app.token(user).await), Some(body)).await
}

/// alice's desktop on the fake runtime, running; its id.
async fn alices_desktop(app: &TestApp) -> String {
    let alice = app.token("alice").await;
    let body = launch_body(app, "Xfce desktop", "small", "S0011").await;
    let r = app.request(Method::POST, "/api/v1/sessions", Some(&alice), Some(body)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["id"].as_str().unwrap().to_string();
    wait_state(app, &alice, &id, 10, |s| s["state"] == "running").await;
    id
}

/// `user` joins the session `id` as `role` (alice invites, they accept).
async fn join(app: &TestApp, id: &str, user: &str, role: &str) {
    let r = post(app, "alice", &format!("/api/v1/sessions/{id}/members"), json!({"user": user, "role": role})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(post(app, user, &format!("/api/v1/invitations/{id}/accept"), json!({})).await.status, 200);
}

async fn secret_of(db: &PgPool, id: &str) -> String {
    sqlx::query_scalar("select secret from sessions where id = $1::uuid").bind(id).fetch_one(db).await.unwrap()
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn the_share_dialog_invites_only_who_may_see_the_data_and_removal_replaces_the_secret(db: PgPool) {
    let app = TestApp::new(db).await;
    app.start_reconciler();
    let id = alices_desktop(&app).await;
    let alice = app.browser("alice").await;
    let page = format!("/sessions/{id}");

    // The dialog offers the proposal's members and the beamline's scientists by name, and
    // nobody else (bob and dave are on other proposals).
    let r = app.browse(Method::GET, &page, Some(&alice.cookie), None, &[]).await;
    assert_eq!(r.status, 200);
    assert!(r.text.contains("id=\"share-heading\""), "{}", r.text);
    let people = r.text.split("<datalist id=\"share-people\">").nth(1).unwrap().split("</datalist>").next().unwrap();
    assert!(people.contains("value=\"carol\">Carol Okafor · proposal member"), "{people}");
    assert!(people.contains("value=\"sam\">Sam Keller · beamline staff"), "{people}");
    assert!(!people.contains("bob") && !people.contains("dave") && !people.contains("alice"), "{people}");

    // Someone the user office never put on the proposal is refused with the reason, on the
    // page, by the field, with what was typed.
    let share = |user: &'static str, role: &'static str| {
        let (app, alice, uri) = (&app, &alice, format!("/sessions/{id}/members"));
        async move {
            let form = [("_csrf", alice.csrf.as_str()), ("user", user), ("role", role)];
            app.browse(Method::POST, &uri, Some(&alice.cookie), Some(&form), &[]).await
        }
    };
    let r = share("bob", "guest").await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("data-field=\"user\""), "{}", r.text);
    assert!(r.text.contains("bob is neither a member of proposal 20180101 nor staff of beamline BL11"), "{}", r.text);
    assert!(r.text.contains("name=\"user\" list=\"share-people\" required autocomplete=\"off\" value=\"bob\""));
    let r = share("nobody@example.org", "guest").await;
    assert_eq!(r.status, 400);
    assert!(r.text.contains("nobody has the e-mail address nobody@example.org"), "{}", r.text);
    assert!(
        app.get(&format!("/api/v1/sessions/{id}/members"), Some(&app.token("alice").await))
            .await
            .body
            .as_array()
            .unwrap()
            .len()
            == 1,
        "a refusal wrote nothing"
    );

    // carol by her e-mail address (any case), as a member who may control.
    let r = share("Carol.Okafor@uni-example.edu", "user").await;
    assert_eq!(r.status, 303, "{}", r.text);
    let members = app.get(&format!("/api/v1/sessions/{id}/members"), Some(&app.token("alice").await)).await.body;
    assert_eq!(members[1]["username"], "carol");
    assert_eq!((members[1]["role"].as_str(), members[1]["status"].as_str()), (Some("user"), Some("invited")));
    // She finds it under My sessions, accepts, and it is hers to open: "shared by alice".
    let carol_page = app.browser("carol").await;
    let cards = app.browse(Method::GET, "/sessions", Some(&carol_page.cookie), None, &[]).await;
    assert!(cards.text.contains("alice invites you: <strong>may control</strong>"), "{}", cards.text);
    assert_eq!(post(&app, "carol", &format!("/api/v1/invitations/{id}/accept"), json!({})).await.status, 200);
    let cards = app.browse(Method::GET, "/sessions", Some(&carol_page.cookie), None, &[]).await;
    assert!(cards.text.contains("shared by alice"), "{}", cards.text);
    // A member does not manage the sharing, nor read who connected.
    let r = app.browse(Method::GET, &page, Some(&carol_page.cookie), None, &[]).await;
    assert_eq!(r.status, 200);
    assert!(!r.text.contains("share-heading"));
    assert_eq!(app.get(&format!("/api/v1/sessions/{id}/access"), Some(&app.token("carol").await)).await.status, 403);
    assert_eq!(app.get(&format!("/api/v1/sessions/{id}/access"), Some(&app.token("bob").await)).await.status, 404);

    // A person is found by their name too (any case), as the list shows it.
    assert_eq!(share("sam keller", "guest").await.status, 303);
    let r = app
        .request(Method::DELETE, &format!("/api/v1/sessions/{id}/members/sam"), Some(&app.token("alice").await), None)
        .await;
    assert_eq!(r.status, 204);
    let r = share("Nobody Atall", "guest").await;
    assert!(r.text.contains("nobody has the username or name Nobody Atall"), "{}", r.text);

    // A role changes in place.
    assert_eq!(share("carol", "guest").await.status, 303);
    let members = app.get(&format!("/api/v1/sessions/{id}/members"), Some(&app.token("alice").await)).await.body;
    assert_eq!((members[1]["role"].as_str(), members[1]["status"].as_str()), (Some("guest"), Some("accepted")));

    // An invitation withdrawn before it was accepted: nobody was inside, nothing to replace.
    assert_eq!(share("sam", "support").await.status, 303);
    let remove = |who: &str| format!("/sessions/{id}/members/{who}/remove");
    let csrf = [("_csrf", alice.csrf.as_str())];
    assert_eq!(app.browse(Method::POST, &remove("sam"), Some(&alice.cookie), Some(&csrf), &[]).await.status, 303);
    assert!(app.fake().rotated().is_empty());

    // carol was inside: removing her replaces the secret she could have read there.
    let before = secret_of(&app.db, &id).await;
    assert_eq!(app.browse(Method::POST, &remove("carol"), Some(&alice.cookie), Some(&csrf), &[]).await.status, 303);
    let after = secret_of(&app.db, &id).await;
    assert_ne!(before, after);
    assert_eq!(app.fake().rotated(), vec![(id.parse().unwrap(), after)]);
    let events = events_of(&app.db, &id).await;
    assert!(events.iter().any(|e| e == "sam's invitation was withdrawn"), "{events:?}");
    assert!(events.iter().any(|e| e == "carol was removed"), "{events:?}");
    assert!(events.iter().any(|e| e == "its secret was replaced"), "{events:?}");
    assert_eq!(app.get(&format!("/api/v1/sessions/{id}"), Some(&app.token("carol").await)).await.status, 404);
    // Only the owner (or an admin) removes; the owner cannot be.
    let r = app
        .request(Method::DELETE, &format!("/api/v1/sessions/{id}/members/alice"), Some(&app.token("alice").await), None)
        .await;
    assert_eq!(r.status, 404);
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn a_member_asks_for_control_and_whoever_holds_it_answers(db: PgPool) {
    let app = TestApp::new(db).await;
    app.start_reconciler();
    let id = alices_desktop(&app).await;
    join(&app, &id, "carol", "user").await;
    join(&app, &id, "sam", "guest").await;
    let control = format!("/api/v1/sessions/{id}/control");
    let request = format!("{control}/request");
    let answer = format!("{control}/answer");
    let get = |user: &'static str| {
        let app = &app;
        let control = control.clone();
        async move { app.get(&control, Some(&app.token(user).await)).await.body }
    };

    let c = get("carol").await;
    assert_eq!((c["may_request"].as_bool(), c["requested_by"].is_null()), (Some(true), true), "{c}");
    let s = get("sam").await;
    assert_eq!((s["may_request"].as_bool(), s["role"].as_str()), (Some(false), Some("guest")), "{s}");
    // A guest only watches; the owner takes control back without asking.
    assert_eq!(post(&app, "sam", &request, json!({})).await.status, 403);
    assert_eq!(post(&app, "alice", &request, json!({})).await.status, 409);
    assert_eq!(post(&app, "alice", &answer, json!({"accept": true})).await.status, 409, "nobody asks yet");

    let r = post(&app, "carol", &request, json!({})).await;
    assert_eq!((r.status.as_u16(), r.body["requested_by"].as_str()), (200, Some("carol")), "{}", r.text);
    let a = get("alice").await;
    assert_eq!((a["may_answer"].as_bool(), a["requested_by"].as_str()), (Some(true), Some("carol")), "{a}");
    assert_eq!(get("carol").await["may_answer"], false, "who asks does not answer");
    assert_eq!(post(&app, "sam", &answer, json!({"accept": true})).await.status, 403);
    assert_eq!(post(&app, "carol", &answer, json!({"accept": true})).await.status, 403);

    // Declined: nothing changes hands.
    let r = post(&app, "alice", &answer, json!({"accept": false})).await;
    assert_eq!((r.body["controller"].as_str(), r.body["requested_by"].is_null()), (Some("alice"), true), "{}", r.text);
    // Asked again and accepted: carol controls, and then she answers requests herself.
    post(&app, "carol", &request, json!({})).await;
    let r = post(&app, "alice", &answer, json!({"accept": true})).await;
    assert_eq!(r.body["controller"], "carol", "{}", r.text);
    let c = get("carol").await;
    assert_eq!((c["you_control"].as_bool(), c["may_request"].as_bool()), (Some(true), Some(false)), "{c}");
    assert_eq!(post(&app, "carol", &request, json!({})).await.status, 409, "she controls already");
    // The owner takes it back at any time.
    let r = app.request(Method::PUT, &control, Some(&app.token("alice").await), Some(json!({"user": "alice"}))).await;
    assert_eq!(r.body["controller"], "alice", "{}", r.text);
    // A request dies with its member's removal.
    post(&app, "carol", &request, json!({})).await;
    let r = app
        .request(Method::DELETE, &format!("/api/v1/sessions/{id}/members/carol"), Some(&app.token("alice").await), None)
        .await;
    assert_eq!(r.status, 204);
    assert!(get("alice").await["requested_by"].is_null());
    let events = events_of(&app.db, &id).await;
    for line in [
        "carol asks for control of the desktop",
        "alice declined carol's request for control",
        "carol controls the desktop",
        "alice controls the desktop",
    ] {
        assert!(events.iter().any(|e| e == line), "no event {line:?}: {events:?}");
    }
}

/// Waits up to `within` for the WebSocket to be closed by the server.
async fn closes(socket: &mut crate::desktop::Socket, within: Duration) -> bool {
    tokio::time::timeout(within, async {
        loop {
            match socket.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await
    .is_ok()
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn removing_a_watcher_closes_their_desktop_at_once_and_the_log_lists_every_connection(db: PgPool) {
    tokio::time::timeout(Duration::from_secs(150), removal_on_a_real_desktop(db)).await.expect("the test stalled");
}

async fn removal_on_a_real_desktop(db: PgPool) {
    let app = TestApp::local(db).await;
    app.start_reconciler();
    let addr = app.serve().await;
    let id = launch(&app, "alice", "Xfce desktop").await;
    join(&app, &id, "carol", "guest").await;
    let (alice, carol) = (app.token("alice").await, app.token("carol").await);

    let mut a = open(&addr, &id, Some(&alice), None).await.unwrap();
    let mut c = open(&addr, &id, Some(&carol), None).await.unwrap();
    handshake(&mut a).await;
    handshake(&mut c).await;
    // Both are connected now, each with their role.
    let control = app.get(&format!("/api/v1/sessions/{id}/control"), Some(&alice)).await.body;
    let connected: Vec<(&str, &str)> = control["connected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["username"].as_str().unwrap(), v["role"].as_str().unwrap()))
        .collect();
    assert_eq!(connected, [("alice", "owner"), ("carol", "guest")], "{control}");

    // Removed while connected: her WebSocket closes within a second; alice's stays.
    let password_file = app.data_path().join(format!("_runtime/sessions/{id}/share/vncpasswd"));
    let (old_secret, old_file) = (secret_of(&app.db, &id).await, std::fs::read(&password_file).unwrap());
    let removed = Instant::now();
    let r = app.request(Method::DELETE, &format!("/api/v1/sessions/{id}/members/carol"), Some(&alice), None).await;
    assert_eq!(r.status, 204);
    assert!(closes(&mut c, Duration::from_secs(1)).await, "carol's desktop stayed open after her removal");
    eprintln!("carol's WebSocket closed {} ms after the removal", removed.elapsed().as_millis());
    a.send(Message::binary(vec![3, 1, 0, 0, 0, 0, 0, 16, 0, 16])).await.unwrap();
    assert!(!closes(&mut a, Duration::from_millis(300)).await, "alice's connection closed too");
    assert_eq!(open(&addr, &id, Some(&carol), None).await.err(), Some(404));

    // The VNC password she could have read inside (/session/vncpasswd) no longer logs in;
    // the new one does, and the relay uses it.
    let new_secret = secret_of(&app.db, &id).await;
    assert_ne!(old_secret, new_secret);
    assert_ne!(std::fs::read(&password_file).unwrap(), old_file);
    let endpoint: String = sqlx::query_scalar("select endpoint from sessions where id = $1::uuid")
        .bind(&id)
        .fetch_one(&app.db)
        .await
        .unwrap();
    let mut stream = daas::proxy::upstream::connect(&endpoint).await.unwrap();
    assert!(daas::proxy::rfb::login(&mut stream, &old_secret).await.is_err(), "the old VNC password still logs in");
    let mut stream = daas::proxy::upstream::connect(&endpoint).await.unwrap();
    daas::proxy::rfb::login(&mut stream, &new_secret).await.unwrap();
    let mut again = open(&addr, &id, Some(&alice), None).await.unwrap();
    handshake(&mut again).await;
    for mut socket in [a, again] {
        socket.close(None).await.unwrap();
        while socket.next().await.is_some() {}
    }

    // The log: every connection, closed, with its duration and the bytes each way; the
    // CSV holds the same rows.
    let start = Instant::now();
    let log = loop {
        let log = app.get(&format!("/api/v1/sessions/{id}/access"), Some(&alice)).await.body;
        if log.as_array().unwrap().iter().all(|a| !a["disconnected_at"].is_null()) {
            break log;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "connections still open: {log}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let rows = log.as_array().unwrap();
    let who: Vec<(&str, &str)> =
        rows.iter().map(|a| (a["username"].as_str().unwrap(), a["role"].as_str().unwrap())).collect();
    assert_eq!(who, [("alice", "owner"), ("carol", "guest"), ("alice", "owner")], "newest first: {log}");
    for a in rows {
        assert_eq!(a["kind"], "desktop");
        assert!(a["seconds"].as_f64().unwrap() > 0.0 && a["bytes_out"].as_i64().unwrap() > 0, "{a}");
        assert!(a["bytes_in"].as_i64().unwrap() > 0, "{a}");
    }
    let csv = app.get(&format!("/api/v1/sessions/{id}/access.csv"), Some(&alice)).await;
    assert_eq!(csv.status, 200);
    let mut lines = csv.text.lines();
    assert_eq!(
        lines.next(),
        Some("id,session,user,name,role,kind,from,connected_at,disconnected_at,seconds,bytes_in,bytes_out")
    );
    let csv_rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(csv_rows.len(), 3, "{}", csv.text);
    for (row, a) in csv_rows.iter().zip(rows.iter().rev()) {
        assert_eq!(row[0], a["id"].to_string(), "oldest first");
        assert_eq!((row[2], row[4]), (a["username"].as_str().unwrap(), a["role"].as_str().unwrap()));
        assert_eq!(row[9], format!("{:.0}", a["seconds"].as_f64().unwrap()));
        assert_eq!((row[10], row[11]), (a["bytes_in"].to_string().as_str(), a["bytes_out"].to_string().as_str()));
    }
    // Admins read all of it, filtered by session or person.
    let admin = app.token("admin").await;
    let all = app.get(&format!("/api/v1/admin/access?session={id}"), Some(&admin)).await.body;
    assert_eq!(all, log);
    let carols = app.get("/api/v1/admin/access?user=carol", Some(&admin)).await.body;
    assert_eq!(carols.as_array().unwrap().len(), 1);
    assert_eq!(carols[0]["image"], "Xfce desktop");
    // By a part of the name, and from a day.
    let today = time::OffsetDateTime::now_utc().date();
    let by_name = app.get(&format!("/api/v1/admin/access?user=okafor&from={today}"), Some(&admin)).await.body;
    assert_eq!(by_name, carols);
    let tomorrow = today.next_day().unwrap();
    assert_eq!(app.get(&format!("/api/v1/admin/access?from={tomorrow}"), Some(&admin)).await.body, json!([]));
    assert_eq!(app.get("/api/v1/admin/access.csv?user=carol", Some(&admin)).await.text.lines().count(), 2);
    assert_eq!(app.get("/api/v1/admin/access", Some(&alice)).await.status, 403);
    assert_eq!(app.get("/api/v1/admin/access?from=yesterday", Some(&admin)).await.status, 400);
    app.stop_everything().await;
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn a_removed_member_leaves_the_notebook_at_once_and_never_held_its_token(db: PgPool) {
    tokio::time::timeout(Duration::from_secs(150), removal_in_a_real_notebook(db)).await.expect("the test stalled");
}

async fn removal_in_a_real_notebook(db: PgPool) {
    let app = TestApp::local(db).await;
    app.start_reconciler();
    let addr = app.serve().await;
    let id = launch(&app, "alice", "JupyterLab").await;
    join(&app, &id, "carol", "user").await;
    let host = format!("{id}.sessions.localhost:8080");
    let carol_browser = app.browser("carol").await;
    let carol = crate::notebook::enter(&app, &addr, &host, &carol_browser.cookie, &id).await;
    let alice_browser = app.browser("alice").await;
    let alice = crate::notebook::enter(&app, &addr, &host, &alice_browser.cookie, &id).await;

    // Jupyter knows each member by the name daas gives it.
    let me = crate::notebook::http(&addr, "GET", &host, &format!("/sessions/{id}/api/me"), Some(&carol)).await;
    let me: Value = serde_json::from_str(&me.body).unwrap();
    assert_eq!(
        (me["identity"]["username"].as_str(), me["identity"]["name"].as_str()),
        (Some("carol"), Some("Carol Okafor")),
        "{me}"
    );

    // Inside, a member's code finds no token: only its hash.
    let kernel =
        crate::notebook::http(&addr, "POST", &host, &format!("/sessions/{id}/api/kernels"), Some(&carol)).await;
    let kernel: Value = serde_json::from_str(&kernel.body).unwrap();
    let channels = format!("/sessions/{id}/api/kernels/{}/channels", kernel["id"].as_str().unwrap());
    let secret = secret_of(&app.db, &id).await;
    let code = format!(
        "import os; '%s %s %s' % (any('{secret}' in v for v in os.environ.values()), 'JUPYTER_TOKEN' in os.environ, \
         open('/session/token.sha256').read().strip())"
    );
    let seen = crate::notebook::run(&addr, &host, &channels, &carol, &code).await;
    assert_eq!(seen, format!("'False False {}'", daas::runtime::token_hash(&secret)));

    // Removed while her kernel's WebSocket is open: it closes within a second, and the
    // hash inside is of a new token.
    let mut socket = crate::notebook::channels(&addr, &host, &channels, &carol).await;
    let removed = Instant::now();
    let r = app
        .request(Method::DELETE, &format!("/api/v1/sessions/{id}/members/carol"), Some(&app.token("alice").await), None)
        .await;
    assert_eq!(r.status, 204);
    assert!(closes(&mut socket, Duration::from_secs(1)).await, "carol's notebook WebSocket stayed open");
    eprintln!("carol's kernel WebSocket closed {} ms after the removal", removed.elapsed().as_millis());
    let new_secret = secret_of(&app.db, &id).await;
    assert_ne!(new_secret, secret);
    let hash_file = app.data_path().join(format!("_runtime/sessions/{id}/share/token.sha256"));
    assert_eq!(std::fs::read_to_string(&hash_file).unwrap(), daas::runtime::token_hash(&new_secret));
    let refused = crate::notebook::http(&addr, "GET", &host, &format!("/sessions/{id}/api/me"), Some(&carol)).await;
    assert_eq!(refused.status, 401, "{}", refused.head);
    // The owner goes on working, with the new token.
    let me = crate::notebook::http(&addr, "GET", &host, &format!("/sessions/{id}/api/me"), Some(&alice)).await;
    assert_eq!(me.status, 200, "{}", me.body);
    let result = crate::notebook::run(&addr, &host, &channels, &alice, "6 * 7").await;
    assert_eq!(result, "42");
    app.stop_everything().await;
}
