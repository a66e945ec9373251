//! `/api/v1/beamlines/{beamline}/sessions` and its page: a beamline's staff see and stop
//! the sessions on their beamline's experiments, and to everyone else the routes do not
//! exist (404), while the admin routes keep refusing them.

use axum::http::Method;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::admin::insert_session;
use crate::common::TestApp;

/// Sessions on BL11 (S0011, S0301) and on BL04 (S0201) and BL02 (S0101).
async fn fixture(app: &TestApp) -> (Uuid, Uuid, Uuid, Uuid) {
    let running = (Some("2026-11-01T00:00:00Z"), None);
    let bl11 = insert_session(&app.db, "alice", "S0011", "Xfce desktop", "running", (2000, 0), running).await;
    let bl11_ended = insert_session(
        &app.db,
        "carol",
        "S0301",
        "JupyterLab",
        "stopped",
        (2000, 0),
        (Some("2026-10-01T00:00:00Z"), Some("2026-10-01T02:00:00Z")),
    )
    .await;
    let bl04 = insert_session(&app.db, "bob", "S0201", "JupyterLab", "running", (2000, 0), running).await;
    let bl02 = insert_session(&app.db, "alice", "S0101", "JupyterLab", "running", (2000, 0), running).await;
    (bl11, bl11_ended, bl04, bl02)
}

fn ids(r: &crate::common::Response) -> Vec<String> {
    let mut ids: Vec<String> =
        r.body["items"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_owned()).collect();
    ids.sort();
    ids
}

fn sorted(ids: &[Uuid]) -> Vec<String> {
    let mut ids: Vec<String> = ids.iter().map(Uuid::to_string).collect();
    ids.sort();
    ids
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn staff_see_their_beamline_only_and_others_get_404(db: PgPool) {
    let app = TestApp::new(db).await;
    let (bl11, bl11_ended, bl04, _) = fixture(&app).await;
    let sam = app.token("sam").await;
    let get = |uri: &'static str, token: Option<String>| {
        let app = &app;
        async move { app.get(uri, token.as_deref()).await }
    };
    let r = get("/api/v1/beamlines/BL11/sessions", Some(sam.clone())).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(ids(&r), sorted(&[bl11, bl11_ended]));
    assert_eq!(r.body["total"], 2);
    // The admin list's filters, within the beamline.
    assert_eq!(ids(&get("/api/v1/beamlines/BL11/sessions?state=active", Some(sam.clone())).await), sorted(&[bl11]));
    assert_eq!(ids(&get("/api/v1/beamlines/BL11/sessions?user=carol", Some(sam.clone())).await), sorted(&[bl11_ended]));
    assert_eq!(ids(&get("/api/v1/beamlines/BL11/sessions?user=bob", Some(sam.clone())).await), Vec::<String>::new());
    assert_eq!(get("/api/v1/beamlines/BL11/sessions?state=sleeping", Some(sam.clone())).await.status, 400);

    // Another beamline, a user, a beamline that does not exist: all 404, the same answer.
    let alice = app.token("alice").await;
    for (uri, token) in [
        ("/api/v1/beamlines/BL04/sessions", &sam),
        ("/api/v1/beamlines/BL11/sessions", &alice),
        ("/api/v1/beamlines/BL99/sessions", &sam),
    ] {
        let r = app.get(uri, Some(token)).await;
        assert_eq!(r.status, 404, "{uri}: {}", r.text);
        assert!(!r.text.contains(&bl11.to_string()) && !r.text.contains(&bl04.to_string()));
    }
    assert_eq!(get("/api/v1/beamlines/BL11/sessions", None).await.status, 401);
    // An admin sees any beamline's list; the admin routes still refuse sam.
    let admin = app.token("admin").await;
    assert_eq!(ids(&app.get("/api/v1/beamlines/BL04/sessions", Some(&admin)).await), sorted(&[bl04]));
    assert_eq!(app.get("/api/v1/admin/sessions?beamline=BL11", Some(&sam)).await.status, 403);
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn staff_stop_through_the_stopping_contract_with_one_audit_event(db: PgPool) {
    let app = TestApp::new(db).await;
    let (bl11, bl11_ended, bl04, bl02) = fixture(&app).await;
    let sam = app.token("sam").await;
    let last: i64 =
        sqlx::query_scalar("select coalesce(max(id), 0) from audit_events").fetch_one(&app.db).await.unwrap();
    let state = |id: Uuid| {
        let db = &app.db;
        async move {
            sqlx::query_as::<_, (String, i64)>(
                "select state, (select count(*) from session_events e where e.session_id = s.id and e.state = 'stopping')
                 from sessions s where id = $1",
            )
            .bind(id)
            .fetch_one(db)
            .await
            .unwrap()
        }
    };

    // Another beamline's session, alone or among his own: 404, nothing stops.
    for body in [json!({"ids": [bl04]}), json!({"ids": [bl11, bl02]})] {
        let r = app.request(Method::POST, "/api/v1/beamlines/BL11/sessions/stop", Some(&sam), Some(body)).await;
        assert_eq!(r.status, 404, "{}", r.text);
    }
    let r = app.request(Method::POST, &format!("/api/v1/beamlines/BL11/sessions/{bl04}/stop"), Some(&sam), None).await;
    assert_eq!(r.status, 404);
    let r = app.request(Method::POST, &format!("/api/v1/beamlines/BL04/sessions/{bl04}/stop"), Some(&sam), None).await;
    assert_eq!(r.status, 404);
    let alice = app.token("alice").await;
    let r =
        app.request(Method::POST, &format!("/api/v1/beamlines/BL11/sessions/{bl11}/stop"), Some(&alice), None).await;
    assert_eq!(r.status, 404, "alice is not BL11's staff");
    let r =
        app.request(Method::POST, "/api/v1/beamlines/BL11/sessions/stop", Some(&sam), Some(json!({"ids": []}))).await;
    assert_eq!((r.status.as_u16(), r.body["error"]["field"].as_str()), (400, Some("ids")));
    for id in [bl11, bl04, bl02] {
        assert_eq!(state(id).await, ("running".to_string(), 0));
    }

    // His own beamline's: `stopping` with its event, one audit event; an ended one unchanged.
    let r = app
        .request(
            Method::POST,
            "/api/v1/beamlines/BL11/sessions/stop",
            Some(&sam),
            Some(json!({"ids": [bl11, bl11_ended]})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!((&r.body["stopping"], &r.body["unchanged"]), (&json!([bl11]), &json!([bl11_ended])));
    assert_eq!(state(bl11).await, ("stopping".to_string(), 1));
    let message: String =
        sqlx::query_scalar("select message from session_events where session_id = $1 and state = 'stopping'")
            .bind(bl11)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(message, "Stop requested by sam, staff of beamline BL11");
    let events: Vec<(String, Option<String>, Option<String>, serde_json::Value)> =
        sqlx::query_as("select action, actor_name, object_id, details from audit_events where id > $1 order by id")
            .bind(last)
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!((events[0].0.as_str(), events[0].1.as_deref()), ("session.stop", Some("sam")));
    assert_eq!(events[0].2.as_deref(), Some(bl11.to_string().as_str()));
    assert_eq!(events[0].3, json!({"from": "running", "by": "beamline", "beamline": "BL11"}));
    // Again: already stopping, nothing more written.
    let r = app.request(Method::POST, &format!("/api/v1/beamlines/BL11/sessions/{bl11}/stop"), Some(&sam), None).await;
    assert_eq!((r.status.as_u16(), &r.body["unchanged"]), (200, &json!([bl11])));
    let count: i64 = sqlx::query_scalar("select count(*) from audit_events where id > $1")
        .bind(last)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(count, 1);
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn the_beamline_page_lists_and_stops_for_its_staff(db: PgPool) {
    let app = TestApp::new(db).await;
    let (bl11, _, bl04, _) = fixture(&app).await;
    let sam = app.browser("sam").await;
    let alice = app.browser("alice").await;

    // The navigation links a scientist to his beamline's sessions, and nobody else.
    let proposals = app.browse(Method::GET, "/proposals", Some(&sam.cookie), None, &[]).await;
    assert!(proposals.text.contains("href=\"/beamlines/BL11/sessions\""), "{}", proposals.text);
    for who in [&alice, &app.browser("admin").await] {
        let page = app.browse(Method::GET, "/proposals", Some(&who.cookie), None, &[]).await;
        assert!(!page.text.contains("/beamlines/"), "{}", page.text);
    }

    let page = app.browse(Method::GET, "/beamlines/BL11/sessions", Some(&sam.cookie), None, &[]).await;
    assert_eq!(page.status, 200, "{}", page.text);
    assert!(page.text.contains(&format!("data-session=\"{bl11}\"")));
    assert!(!page.text.contains(&bl04.to_string()), "another beamline's session is listed");
    assert!(!page.text.contains("/extend"), "staff are offered an extend they may not use");
    assert!(page.text.contains("action=\"/beamlines/BL11/sessions/stop\""));
    // A beamline filter in the URL does not widen the scope.
    let page = app.browse(Method::GET, "/beamlines/BL11/sessions?beamline=BL04", Some(&sam.cookie), None, &[]).await;
    assert!(page.text.contains(&bl11.to_string()) && !page.text.contains(&bl04.to_string()));
    for (who, uri) in [(&sam, "/beamlines/BL04/sessions"), (&alice, "/beamlines/BL11/sessions")] {
        let r = app.browse(Method::GET, uri, Some(&who.cookie), None, &[]).await;
        assert_eq!(r.status, 404, "{uri}");
        assert!(!r.text.contains(&bl11.to_string()) && !r.text.contains(&bl04.to_string()));
    }
    assert_eq!(app.browse(Method::GET, "/admin/sessions", Some(&sam.cookie), None, &[]).await.status, 403);

    // Stopping from the page: his beamline's session stops; another's is a 404.
    let other = bl04.to_string();
    let r = app
        .browse(
            Method::POST,
            "/beamlines/BL11/sessions/stop",
            Some(&sam.cookie),
            Some(&[("_csrf", sam.csrf.as_str()), ("ids", other.as_str())]),
            &[],
        )
        .await;
    assert_eq!(r.status, 404);
    let r = app
        .browse(
            Method::POST,
            "/beamlines/BL11/sessions/stop",
            Some(&alice.cookie),
            Some(&[("_csrf", alice.csrf.as_str()), ("ids", other.as_str())]),
            &[],
        )
        .await;
    assert_eq!(r.status, 404);
    let mine = bl11.to_string();
    let r = app
        .browse(Method::POST, "/beamlines/BL11/sessions/stop", Some(&sam.cookie), Some(&[("ids", mine.as_str())]), &[])
        .await;
    assert_eq!(r.status, 403, "a form without the CSRF token");
    let r = app
        .browse(
            Method::POST,
            "/beamlines/BL11/sessions/stop",
            Some(&sam.cookie),
            Some(&[("_csrf", sam.csrf.as_str()), ("ids", mine.as_str())]),
            &[],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.text.contains("1 session(s) stopping"), "{}", r.text);
    let states: Vec<String> = sqlx::query_scalar("select state from sessions where id = any($1) order by id = $2 desc")
        .bind([bl11, bl04])
        .bind(bl11)
        .fetch_all(&app.db)
        .await
        .unwrap();
    assert_eq!(states, ["stopping", "running"]);
    let stops: i64 =
        sqlx::query_scalar("select count(*) from audit_events where action = 'session.stop' and actor_name = 'sam'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(stops, 1);
}
