//! `/api/v1/invitations`: being added to someone's session needs the invitee's acceptance.
//! Until then the session does not exist for them beyond the invitation: no session, no
//! ticket to its notebook, no control; strangers have no invitation to answer.

use axum::http::Method;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::common::id_of;
use crate::common::TestApp;

/// Launches a notebook for `owner` without waiting for it (no reconciler: it stays
/// `requested`); returns its id.
async fn launch_requested(app: &TestApp, owner: &str) -> String {
    let body = json!({
        "image": id_of(&app.db, "images", "name", "JupyterLab").await,
        "flavour": id_of(&app.db, "flavours", "name", "small").await,
        "experiment": id_of(&app.db, "experiments", "code", "S0011").await,
    });
    let r = app.request(Method::POST, "/api/v1/sessions", Some(&app.token(owner).await), Some(body)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body["id"].as_str().unwrap().to_string()
}

async fn post(app: &TestApp, user: &str, uri: &str, body: Value) -> crate::common::Response {
    app.request(Method::POST, uri, Some(&app.token(user).await), Some(body)).await
}

fn statuses(members: &Value) -> Vec<(String, String)> {
    members
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["username"].as_str().unwrap().to_string(), m["status"].as_str().unwrap().to_string()))
        .collect()
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn an_invitee_gets_nothing_of_the_session_until_accepting(db: PgPool) {
    let app = TestApp::new(db).await;
    app.start_reconciler();
    let id = crate::desktop::launch(&app, "alice", "JupyterLab").await;
    let members = format!("/api/v1/sessions/{id}/members");
    let r = post(&app, "alice", &members, json!({"user": "carol", "role": "user"})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["status"], "invited");

    // The invitee sees the invitation...
    let invitations = app.get_as("carol", "/api/v1/invitations").await;
    assert_eq!(invitations.status, 200);
    let list = invitations.body.as_array().unwrap();
    assert_eq!(list.len(), 1, "{}", invitations.text);
    assert_eq!((list[0]["session"].as_str(), list[0]["owner"].as_str()), (Some(id.as_str()), Some("alice")));
    assert_eq!((list[0]["role"].as_str(), list[0]["kind"].as_str()), (Some("user"), Some("notebook")));
    assert_eq!(app.get_as("alice", "/api/v1/invitations").await.body, json!([]));
    // ...and nothing else of the session: it is 404, as for a stranger.
    for uri in [
        format!("/api/v1/sessions/{id}"),
        members.clone(),
        format!("/api/v1/sessions/{id}/control"),
        format!("/api/v1/sessions/{id}/events"),
    ] {
        assert_eq!(app.get_as("carol", &uri).await.status, 404, "{uri}");
    }
    assert_eq!(app.get_as("carol", "/api/v1/sessions").await.body, json!([]));
    let r = app.request(Method::DELETE, &format!("/api/v1/sessions/{id}"), Some(&app.token("carol").await), None).await;
    assert_eq!(r.status, 404, "an invitee stopped the session");
    let carol = app.browser("carol").await;
    let r = app.browse(Method::GET, &format!("/sessions/{id}/open"), Some(&carol.cookie), None, &[]).await;
    assert_eq!(r.status, 404, "an invitee got a ticket to the notebook");
    let r = app.browse(Method::GET, &format!("/sessions/{id}"), Some(&carol.cookie), None, &[]).await;
    assert_eq!(r.status, 404);
    // Nobody hands control to an invitee.
    let control = format!("/api/v1/sessions/{id}/control");
    let r = app.request(Method::PUT, &control, Some(&app.token("alice").await), Some(json!({"user": "carol"}))).await;
    assert_eq!(r.status, 400, "{}", r.text);

    // The owner and admins see who has not accepted yet.
    for viewer in ["alice", "admin"] {
        let r = app.get_as(viewer, &members).await;
        assert_eq!(statuses(&r.body), [("alice".into(), "accepted".into()), ("carol".into(), "invited".into())]);
    }

    // Accepted: a member with the role offered, who gets a ticket and may be handed control.
    let r = post(&app, "carol", &format!("/api/v1/invitations/{id}/accept"), json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!((r.body["id"].as_str(), r.body["role"].as_str()), (Some(id.as_str()), Some("user")));
    assert_eq!(app.get_as("carol", "/api/v1/invitations").await.body, json!([]));
    assert_eq!(app.get_as("carol", &format!("/api/v1/sessions/{id}")).await.status, 200);
    assert_eq!(app.get_as("carol", "/api/v1/sessions").await.body.as_array().unwrap().len(), 1);
    let r = app.browse(Method::GET, &format!("/sessions/{id}/open"), Some(&carol.cookie), None, &[]).await;
    assert_eq!(r.status, 303, "{}", r.text);
    assert!(r.headers["location"].to_str().unwrap().contains("/_daas/enter?ticket="));
    let r = app.request(Method::PUT, &control, Some(&app.token("alice").await), Some(json!({"user": "carol"}))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(statuses(&app.get_as("alice", &members).await.body)[1], ("carol".into(), "accepted".into()));
    // Accepting again changes nothing; there is no invitation left to decline.
    assert_eq!(post(&app, "carol", &format!("/api/v1/invitations/{id}/accept"), json!({})).await.status, 200);
    assert_eq!(post(&app, "carol", &format!("/api/v1/invitations/{id}/decline"), json!({})).await.status, 404);
    // A change of role is no new invitation.
    let r = post(&app, "alice", &members, json!({"user": "carol", "role": "guest"})).await;
    assert_eq!(r.body["status"], "accepted", "{}", r.text);

    let events: Vec<String> = sqlx::query_scalar(
        "select message from session_events where session_id = $1::uuid and message like 'carol%' order by id",
    )
    .bind(&id)
    .fetch_all(&app.db)
    .await
    .unwrap();
    assert_eq!(
        events,
        [
            "carol invited: may control",
            "carol accepted and joined: may control",
            "carol controls the desktop",
            "carol's role is now: may only watch"
        ]
    );
    app.request(Method::DELETE, &format!("/api/v1/sessions/{id}"), Some(&app.token("alice").await), None).await;
    app.stop_everything().await;
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn declining_removes_the_invitation_and_strangers_have_none(db: PgPool) {
    let app = TestApp::new(db).await;
    let doc = app.get("/api/v1/openapi.json", None).await.body;
    assert!(doc["paths"]["/api/v1/invitations"]["get"].is_object(), "invitations missing from the OpenAPI document");
    for action in ["accept", "decline"] {
        assert!(doc["paths"][format!("/api/v1/invitations/{{id}}/{action}")]["post"].is_object(), "{action}");
    }
    let id = launch_requested(&app, "alice").await;
    let members = format!("/api/v1/sessions/{id}/members");
    let accept = format!("/api/v1/invitations/{id}/accept");
    let decline = format!("/api/v1/invitations/{id}/decline");
    assert_eq!(post(&app, "alice", &members, json!({"user": "carol", "role": "guest"})).await.status, 201);

    // Strangers, and sessions that do not exist: 404, like anything not theirs.
    for (user, uri) in [("bob", &accept), ("bob", &decline)] {
        assert_eq!(post(&app, user, uri, json!({})).await.status, 404, "{user} {uri}");
    }
    let unknown = uuid::Uuid::new_v4();
    assert_eq!(post(&app, "carol", &format!("/api/v1/invitations/{unknown}/accept"), json!({})).await.status, 404);
    assert_eq!(post(&app, "alice", &decline, json!({})).await.status, 404, "the owner has no invitation");
    assert_eq!(app.get_as("bob", "/api/v1/invitations").await.body, json!([]));
    assert_eq!(app.get("/api/v1/invitations", None).await.status, 401);

    // Declined: the row is gone (the owner sees it), and there is nothing left to accept.
    assert_eq!(post(&app, "carol", &decline, json!({})).await.status, 204);
    assert_eq!(statuses(&app.get_as("alice", &members).await.body), [("alice".into(), "accepted".into())]);
    assert_eq!(app.get_as("carol", "/api/v1/invitations").await.body, json!([]));
    assert_eq!(post(&app, "carol", &accept, json!({})).await.status, 404);
    assert_eq!(post(&app, "carol", &decline, json!({})).await.status, 404);
    let audit: i64 = sqlx::query_scalar("select count(*) from audit_events where action = 'session.member.decline'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(audit, 1);

    // Invited again, from My sessions: the invitation with Accept and Decline buttons.
    let r = post(&app, "alice", &members, json!({"user": "carol", "role": "user"})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let carol = app.browser("carol").await;
    let page = app.browse(Method::GET, "/sessions", Some(&carol.cookie), None, &[]).await;
    assert_eq!(page.status, 200);
    assert!(
        page.text.contains("Invitations") && page.text.contains("invites you: <strong>may control</strong>"),
        "{}",
        page.text
    );
    assert!(page.text.contains(&format!("action=\"/sessions/{id}/accept\"")), "{}", page.text);
    assert!(page.text.contains(&format!("action=\"/sessions/{id}/decline\"")), "{}", page.text);
    assert!(!page.text.contains(&format!("href=\"/sessions/{id}\"")), "an invitee's card links to the session");
    // The buttons are forms with the CSRF token, like every change, and from the portal's
    // own pages only: a session origin is the portal's site in production.
    let r = app.browse(Method::POST, &format!("/sessions/{id}/accept"), Some(&carol.cookie), Some(&[]), &[]).await;
    assert_eq!(r.status, 403, "accepted without the CSRF token");
    let form = [("_csrf", carol.csrf.as_str())];
    for headers in [[("origin", "http://x.sessions.localhost:8080")], [("sec-fetch-site", "same-site")]] {
        let r = app
            .browse(Method::POST, &format!("/sessions/{id}/accept"), Some(&carol.cookie), Some(&form), &headers)
            .await;
        assert_eq!(r.status, 403, "accepted from another origin: {headers:?}");
    }
    let r = app.browse(Method::POST, &format!("/sessions/{id}/accept"), Some(&carol.cookie), Some(&form), &[]).await;
    assert_eq!(r.status, 303, "{}", r.text);
    let page = app.browse(Method::GET, "/sessions/cards", Some(&carol.cookie), None, &[]).await;
    assert!(
        !page.text.contains("Invitations") && page.text.contains(&format!("href=\"/sessions/{id}\"")),
        "{}",
        page.text
    );

    // An invitation to a session that has ended is not shown and cannot be accepted.
    assert_eq!(post(&app, "alice", &members, json!({"user": "sam", "role": "user"})).await.status, 201);
    sqlx::query("update sessions set state = 'stopped', stopped_at = now() where id = $1::uuid")
        .bind(&id)
        .execute(&app.db)
        .await
        .unwrap();
    assert_eq!(app.get_as("sam", "/api/v1/invitations").await.body, json!([]));
    assert_eq!(post(&app, "sam", &accept, json!({})).await.status, 409);
    assert_eq!(post(&app, "sam", &decline, json!({})).await.status, 204);
}

/// A guest cannot enter a notebook (Jupyter has no read-only mode), so the pages offer
/// them no "Open notebook" that would only answer 403.
#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn a_guest_is_not_offered_the_notebook(db: PgPool) {
    let app = TestApp::new(db).await;
    let id = launch_requested(&app, "alice").await;
    sqlx::query("update sessions set state = 'running', started_at = now() where id = $1::uuid")
        .bind(&id)
        .execute(&app.db)
        .await
        .unwrap();
    let members = format!("/api/v1/sessions/{id}/members");
    assert_eq!(post(&app, "alice", &members, json!({"user": "carol", "role": "guest"})).await.status, 201);
    assert_eq!(post(&app, "carol", &format!("/api/v1/invitations/{id}/accept"), json!({})).await.status, 200);
    for (user, offered) in [("alice", true), ("carol", false)] {
        let browser = app.browser(user).await;
        for page in [format!("/sessions/{id}"), "/sessions/cards".to_string()] {
            let r = app.browse(Method::GET, &page, Some(&browser.cookie), None, &[]).await;
            assert_eq!(r.status, 200, "{user} {page}: {}", r.text);
            assert_eq!(r.text.contains(&format!("/sessions/{id}/open")), offered, "{user} {page}: {}", r.text);
        }
    }
}
