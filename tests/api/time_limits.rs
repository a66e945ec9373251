//! How long sessions live (issue 14, items 14 and 15): admins set the lifetime, the idle
//! limit and how much time users may add, per role and per user, in the API and the quotas
//! page; users give their own sessions more time within that limit, from the API and the
//! session page, and the admin's sessions page shows it. The fake runtime: nothing runs.

use axum::http::Method;
use serde_json::{json, Value};
use sqlx::PgPool;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::common::{launch_body, wait_state, TestApp};

fn at(v: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(v.as_str().unwrap(), &Rfc3339).unwrap()
}

async fn launch_desktop(app: &TestApp, token: &str) -> String {
    let body = launch_body(app, "Xfce desktop", "small", "S0011").await;
    let r = app.request(Method::POST, "/api/v1/sessions", Some(token), Some(body)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body["id"].as_str().unwrap().to_string()
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn item_14_admins_set_lifetime_and_idle_limits_per_role_and_per_user(db: PgPool) {
    let app = TestApp::new(db).await;
    let admin = app.token("admin").await;
    let alice = app.token("alice").await;
    let put = |path: &'static str, body: Value| {
        let (app, admin) = (&app, admin.clone());
        async move { app.request(Method::PUT, path, Some(&admin), Some(body)).await }
    };

    // The API: a role's times, a user's own over them; the user sees the result.
    let r =
        put("/api/v1/admin/quotas/roles/user", json!({"max_sessions": 2, "lifetime_minutes": 600, "idle_minutes": 45}))
            .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = put("/api/v1/admin/quotas/users/alice", json!({"lifetime_minutes": 90})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let quota = app.get("/api/v1/quota", Some(&alice)).await.body;
    assert_eq!(quota["limits"]["lifetime_minutes"], 90, "{quota}");
    assert_eq!(quota["limits"]["idle_minutes"], 45, "the role's, where alice has none of her own: {quota}");
    let listed = app.get("/api/v1/admin/quotas", Some(&admin)).await.body;
    let role = listed.as_array().unwrap().iter().find(|q| q["scope"] == "role" && q["subject"] == "user").unwrap();
    assert_eq!((role["lifetime_minutes"].clone(), role["idle_minutes"].clone()), (json!(600), json!(45)));

    // A launch lives as long as the owner's limit says.
    let id = launch_desktop(&app, &alice).await;
    let session = app.get(&format!("/api/v1/sessions/{id}"), Some(&alice)).await.body;
    let life = at(&session["expires_at"]) - at(&session["created_at"]);
    assert!((life - time::Duration::minutes(90)).abs() < time::Duration::seconds(5), "{life}");

    // Refused, with the field named: no time on a proposal, no zero lifetime or idle limit.
    for (path, body, field) in [
        ("/api/v1/admin/quotas/proposals/20180101", json!({"idle_minutes": 30}), "idle_minutes"),
        ("/api/v1/admin/quotas/users/alice", json!({"idle_minutes": 0}), "idle_minutes"),
        ("/api/v1/admin/quotas/roles/user", json!({"lifetime_minutes": -5}), "lifetime_minutes"),
        ("/api/v1/admin/quotas/users/alice", json!({"extension_minutes": -1}), "extension_minutes"),
    ] {
        let r = put(path, body).await;
        assert_eq!(r.status, 400, "{path}: {}", r.text);
        assert!(r.text.contains(field), "{}", r.text);
    }
    assert_eq!(app.get("/api/v1/quota", Some(&alice)).await.body["limits"]["lifetime_minutes"], 90, "nothing changed");

    // The page: the times beside the other limits; a proposal's row has none.
    let browser = app.browser("admin").await;
    let post = |form: Vec<(&'static str, &'static str)>| {
        let (app, cookie, csrf) = (&app, browser.cookie.clone(), browser.csrf.clone());
        async move {
            let mut fields: Vec<(&str, &str)> = vec![("_csrf", &csrf)];
            fields.extend(form);
            app.browse(Method::POST, "/admin/quotas", Some(&cookie), Some(&fields), &[]).await
        }
    };
    let r =
        post(vec![("scope", "users"), ("subject", "alice"), ("idle_minutes", "20"), ("extension_minutes", "0")]).await;
    assert_eq!(r.status, 303, "{}", r.text);
    let quota = app.get("/api/v1/quota", Some(&alice)).await.body;
    assert_eq!(
        (quota["limits"]["idle_minutes"].clone(), quota["limits"]["extension_minutes"].clone()),
        (json!(20), json!(0))
    );
    let page = app.browse(Method::GET, "/admin/quotas", Some(&browser.cookie), None, &[]).await;
    let row = |subject: &str| {
        page.text.split(&format!("data-quota=\"{subject}\"")).nth(1).unwrap().split("</tr>").next().unwrap().to_owned()
    };
    let alice_row = row("user/alice");
    assert!(alice_row.contains(r#"name="idle_minutes" form="#) && alice_row.contains(r#"value="20""#), "{alice_row}");
    assert!(row("proposal/20180101").contains("n/a") && !row("proposal/20180101").contains(r#"name="idle_minutes""#));
    // A refused time keeps what was typed and says why.
    let r =
        post(vec![("scope", "proposals"), ("subject", "20180101"), ("max_sessions", "6"), ("lifetime_minutes", "60")])
            .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains("lifetime minutes: is set per role or per user, not per proposal"), "{}", r.text);
    let r = post(vec![("scope", "users"), ("subject", "alice"), ("idle_minutes", "soon")]).await;
    assert_eq!(r.status, 400);
    assert!(r.text.contains("leave it empty for the default") && r.text.contains(r#"value="soon""#), "{}", r.text);
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn item_15_users_give_their_sessions_more_time_within_the_limit_the_admin_sets(db: PgPool) {
    let app = TestApp::new(db).await;
    let admin = app.token("admin").await;
    let alice = app.token("alice").await;
    let r = app
        .request(
            Method::PUT,
            "/api/v1/admin/quotas/roles/user",
            Some(&admin),
            Some(json!({"max_sessions": 2, "extension_minutes": 90})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let id = launch_desktop(&app, &alice).await;
    let extend = |token: String, minutes: i64| {
        let (app, uri) = (&app, format!("/api/v1/sessions/{id}/extend"));
        async move { app.request(Method::POST, &uri, Some(&token), Some(json!({"minutes": minutes}))).await }
    };
    // Running: its lifetime counts from its start, so its end moved once when it started.
    let running = wait_state(&app, &alice, &id, 30, |s| s["state"] == "running").await;
    let before = at(&running["expires_at"]);

    // The owner adds an hour: the end moves, what is left says so, the session says who.
    let r = extend(alice.clone(), 60).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(at(&r.body["expires_at"]) - before, time::Duration::minutes(60));
    assert_eq!((r.body["extended_minutes"].clone(), r.body["extension_left_minutes"].clone()), (json!(60), json!(30)));
    let events: Vec<String> = sqlx::query_scalar("select message from session_events where session_id = $1::uuid")
        .bind(&id)
        .fetch_all(&app.db)
        .await
        .unwrap();
    assert!(events.iter().any(|m| m.starts_with("Extended by 1 h at alice's request, until ")), "{events:?}");

    // More than is left: refused, saying how much is; nothing moves.
    let r = extend(alice.clone(), 60).await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert!(r.text.contains("at most 30 min more (1 h added so far); an admin can extend it further"), "{}", r.text);
    assert_eq!(extend(alice.clone(), 0).await.status, 400);
    // Not hers: 404; a guest of it: 403.
    let bob = app.token("bob").await;
    assert_eq!(extend(bob.clone(), 10).await.status, 404);
    sqlx::query(
        "insert into session_members (session_id, user_id, role, accepted_at)
         select $1::uuid, id, 'guest', now() from users where username = 'bob'",
    )
    .bind(&id)
    .execute(&app.db)
    .await
    .unwrap();
    assert_eq!(extend(bob, 10).await.status, 403);

    // The page offers what is left, and uses it.
    let browser = app.browser("alice").await;
    let page = app.browse(Method::GET, &format!("/sessions/{id}"), Some(&browser.cookie), None, &[]).await;
    assert!(page.text.contains(r#"<option value="30">30 min (all that is left)</option>"#), "{}", page.text);
    assert!(!page.text.contains(r#"<option value="60">"#), "more than is left is not offered");
    let form = [("_csrf", browser.csrf.as_str()), ("minutes", "30")];
    let r = app.browse(Method::POST, &format!("/sessions/{id}/extend"), Some(&browser.cookie), Some(&form), &[]).await;
    assert_eq!(r.status, 303, "{}", r.text);
    let live = app.browse(Method::GET, &format!("/sessions/{id}/live"), Some(&browser.cookie), None, &[]).await;
    assert!(
        live.text.contains("It has had all the extra time its owner&#39;s quota allows (1 h 30 min)"),
        "{}",
        live.text
    );
    assert!(!live.text.contains("Give it more time"));

    // The admin's sessions page shows it; an admin still extends it further.
    let admin_browser = app.browser("admin").await;
    let list = app.browse(Method::GET, "/admin/sessions", Some(&admin_browser.cookie), None, &[]).await;
    assert!(list.text.contains("(extended by 1 h 30 min at its users&#39; request)"), "{}", list.text);
    let r = app
        .request(
            Method::POST,
            &format!("/api/v1/admin/sessions/{id}/extend"),
            Some(&admin),
            Some(
                json!({"expires_at": (OffsetDateTime::now_utc() + time::Duration::days(3)).format(&Rfc3339).unwrap()}),
            ),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let audit: i64 =
        sqlx::query_scalar("select count(*) from audit_events where action = 'session.extend' and object_id = $1")
            .bind(&id)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(audit, 3, "two by alice, one by the admin");
}

/// A session's lifetime counts from its start: the time it waited in a batch system's queue
/// (or daas's start queue) is added to its end when it starts.
#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn a_wait_in_a_queue_does_not_eat_a_sessions_lifetime(db: PgPool) {
    let app = TestApp::new(db).await;
    app.start_reconciler();
    let alice = app.token("alice").await;
    app.fake().start_as(daas::runtime::Observed::Queued { message: "Slurm: waiting for resources".into() });
    let id = launch_desktop(&app, &alice).await;
    let queued = wait_state(&app, &alice, &id, 30, |s| s["progress"] == "Slurm: waiting for resources").await;
    let planned = at(&queued["expires_at"]);
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let endpoint = daas::runtime::Observed::Running { endpoint: "fake:x".into() };
    app.fake().set(id.parse().unwrap(), endpoint);
    let running = wait_state(&app, &alice, &id, 30, |s| s["state"] == "running").await;
    let moved = at(&running["expires_at"]) - planned;
    // By the wait up to its last observation in the queue (passes are 300 ms apart here).
    assert!(moved >= time::Duration::seconds(2) && moved < time::Duration::seconds(10), "moved by {moved}");
}
