//! The front door: local login, cookie flags, CSRF, rate limiting, logout, expiry.

use axum::http::Method;
use sqlx::PgPool;

use crate::common::TestApp;

async fn alice_password(app: &TestApp) -> String {
    let hash = daas::auth::password::hash("alice's long password").unwrap();
    sqlx::query("update users set password_hash = $1 where username = 'alice'")
        .bind(hash)
        .execute(&app.db)
        .await
        .unwrap();
    "alice's long password".into()
}

fn cookie_of(response: &crate::common::Response) -> (String, String) {
    let set = response.headers.get("set-cookie").expect("a session cookie").to_str().unwrap().to_string();
    (set.split(';').next().unwrap().to_string(), set)
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn local_login_sets_a_safe_cookie_and_opens_the_proposals(db: PgPool) {
    let app = TestApp::new(db).await;
    let password = alice_password(&app).await;
    let form = [("username", "alice"), ("password", password.as_str()), ("next", "/proposals/20180101")];
    let response = app.browse(Method::POST, "/login", None, Some(&form), &[]).await;
    assert_eq!(response.status, 303);
    assert_eq!(response.headers["location"], "/proposals/20180101");
    let (cookie, set) = cookie_of(&response);
    for flag in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=43200"] {
        assert!(set.contains(flag), "{flag} missing: {set}");
    }
    assert!(!set.contains("Secure"), "plain http in development");
    let page = app.browse(Method::GET, "/proposals", Some(&cookie), None, &[]).await;
    assert_eq!(page.status, 200);
    assert!(page.text.contains("20180101") && page.text.contains("Alice Martin"));
    assert_eq!(page.headers["cache-control"], "no-store");
    // The session row holds a hash, not the cookie's secret.
    let secret = cookie.split_once('=').unwrap().1;
    let stored: i64 =
        sqlx::query_scalar("select count(*) from browser_sessions where token_hash = sha256($1::text::bytea)")
            .bind(secret)
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(stored, 1);
    let audited: i64 = sqlx::query_scalar("select count(*) from audit_events where action = 'user.login'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(audited, 1);
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn cookies_are_secure_behind_https(db: PgPool) {
    let app = TestApp::with_config(db, |c| c.web.public_url = "https://daas.facility.example".parse().unwrap()).await;
    let password = alice_password(&app).await;
    let form = [("username", "alice"), ("password", password.as_str())];
    let response =
        app.browse(Method::POST, "/login", None, Some(&form), &[("origin", "https://daas.facility.example")]).await;
    assert!(cookie_of(&response).1.contains("; Secure"));
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn state_changes_need_the_csrf_token(db: PgPool) {
    let app = TestApp::new(db).await;
    let browser = app.browser("alice").await;
    let star = |csrf: Option<&'static str>| {
        let mut form = vec![("favourite", "true")];
        if let Some(c) = csrf {
            form.push(("_csrf", c));
        }
        form
    };
    // No token, a wrong token, a token in the wrong header: refused, nothing written.
    for form in [star(None), star(Some("wrong-token-wrong-token-wrong-token-wrong"))] {
        let response =
            app.browse(Method::POST, "/proposals/20180101/favourite", Some(&browser.cookie), Some(&form), &[]).await;
        assert_eq!(response.status, 403, "{}", response.text);
    }
    let json = app
        .browse(Method::DELETE, "/api/v1/tokens/00000000-0000-0000-0000-000000000000", Some(&browser.cookie), None, &[])
        .await;
    assert_eq!(json.status, 403);
    let favourites: i64 = sqlx::query_scalar("select count(*) from favourites").fetch_one(&app.db).await.unwrap();
    assert_eq!(favourites, 0);

    // The right token, as a form field or as htmx's header: accepted.
    let mut form = star(None);
    form.push(("_csrf", browser.csrf.as_str()));
    let response =
        app.browse(Method::POST, "/proposals/20180101/favourite", Some(&browser.cookie), Some(&form), &[]).await;
    assert_eq!(response.status, 303);
    let htmx = app
        .browse(
            Method::POST,
            "/proposals/20180101/favourite",
            Some(&browser.cookie),
            Some(&[("favourite", "false")]),
            &[("x-csrf-token", &browser.csrf), ("hx-request", "true")],
        )
        .await;
    assert_eq!(htmx.status, 200);
    assert!(htmx.text.contains("aria-pressed=\"false\""), "{}", htmx.text);
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn a_post_from_another_site_is_refused(db: PgPool) {
    let app = TestApp::new(db).await;
    let browser = app.browser("alice").await;
    let form = [("favourite", "true"), ("_csrf", browser.csrf.as_str())];
    let response = app
        .browse(
            Method::POST,
            "/proposals/20180101/favourite",
            Some(&browser.cookie),
            Some(&form),
            &[("origin", "https://evil.example")],
        )
        .await;
    assert_eq!(response.status, 403);
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn twenty_wrong_passwords_get_429_without_telling_if_the_account_exists(db: PgPool) {
    let app = TestApp::new(db).await;
    alice_password(&app).await;
    let mut statuses = Vec::new();
    for _ in 0..20 {
        let form = [("username", "alice"), ("password", "wrong password")];
        statuses.push(app.browse(Method::POST, "/login", None, Some(&form), &[]).await.status.as_u16());
    }
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 401).count(), daas::auth::local::MAX_FAILURES_PER_ACCOUNT as usize);
    // Even the right password is refused now.
    let form = [("username", "alice"), ("password", "alice's long password")];
    assert_eq!(app.browse(Method::POST, "/login", None, Some(&form), &[]).await.status, 429);

    // An unknown account and a wrong password read the same.
    let unknown =
        app.browse(Method::POST, "/login", None, Some(&[("username", "nobody"), ("password", "x")]), &[]).await;
    let wrong = app.browse(Method::POST, "/login", None, Some(&[("username", "bob"), ("password", "x")]), &[]).await;
    assert_eq!(
        (unknown.status, wrong.status),
        (axum::http::StatusCode::UNAUTHORIZED, axum::http::StatusCode::UNAUTHORIZED)
    );
    assert!(unknown.text.contains("Unknown username or wrong password."));
    assert_eq!(unknown.text.replace("nobody", "bob"), wrong.text);
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn logout_ends_the_session_for_good(db: PgPool) {
    let app = TestApp::new(db).await;
    let browser = app.browser("alice").await;
    assert_eq!(app.browse(Method::GET, "/proposals", Some(&browser.cookie), None, &[]).await.status, 200);
    let out = app.browse(Method::POST, "/logout", Some(&browser.cookie), Some(&[("_csrf", &browser.csrf)]), &[]).await;
    assert_eq!(out.status, 303);
    assert!(out.headers["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    // The old cookie, replayed, opens nothing.
    let after = app.browse(Method::GET, "/proposals", Some(&browser.cookie), None, &[]).await;
    assert_eq!(after.status, 303);
    assert!(after.headers["location"].to_str().unwrap().starts_with("/login"));
    assert_eq!(app.browse(Method::GET, "/api/v1/me", Some(&browser.cookie), None, &[]).await.status, 401);
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn idle_and_absolute_expiry(db: PgPool) {
    let app = TestApp::new(db).await;
    let idle = app.browser("alice").await;
    sqlx::query("update browser_sessions set last_seen_at = now() - interval '121 minutes'")
        .execute(&app.db)
        .await
        .unwrap();
    assert_eq!(app.browse(Method::GET, "/api/v1/me", Some(&idle.cookie), None, &[]).await.status, 401);

    let old = app.browser("bob").await;
    sqlx::query("update browser_sessions set created_at = now() - interval '13 hours', expires_at = now() - interval '1 hour' where ended_at is null and user_id = (select id from users where username = 'bob')")
        .execute(&app.db)
        .await
        .unwrap();
    assert_eq!(app.browse(Method::GET, "/api/v1/me", Some(&old.cookie), None, &[]).await.status, 401);

    let disabled = app.browser("sam").await;
    daas::auth::users::set_enabled(&app.db, "sam", false).await.unwrap();
    assert_eq!(app.browse(Method::GET, "/api/v1/me", Some(&disabled.cookie), None, &[]).await.status, 401);
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn local_login_can_be_switched_off(db: PgPool) {
    let app = TestApp::with_config(db, |c| c.web.local_login = false).await;
    let page = app.browse(Method::GET, "/login", None, None, &[]).await;
    assert!(!page.text.contains("name=\"password\""));
    let form = [("username", "alice"), ("password", "whatever")];
    assert_eq!(app.browse(Method::POST, "/login", None, Some(&form), &[]).await.status, 404);
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn no_open_redirect_after_login(db: PgPool) {
    let app = TestApp::new(db).await;
    let password = alice_password(&app).await;
    for next in ["//evil.example/x", "https://evil.example", "/\\evil.example", "/\t/evil.example", "/\n/evil.example"]
    {
        let form = [("username", "alice"), ("password", password.as_str()), ("next", next)];
        let response = app.browse(Method::POST, "/login", None, Some(&form), &[]).await;
        assert_eq!(response.headers["location"], "/proposals", "{next}");
    }
}

/// `%09` decodes to a tab, which browsers strip from a `Location`: `/\t/evil.example`
/// would take the visitor to `//evil.example`.
#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn login_next_with_a_tab_stays_on_the_site(db: PgPool) {
    let app = TestApp::new(db).await;
    let alice = app.browser("alice").await;
    for uri in ["/login?next=/%09/evil.example", "/login?next=/%5Cevil.example", "/login?next=%2F%2Fevil.example"] {
        let response = app.browse(Method::GET, uri, Some(&alice.cookie), None, &[]).await;
        assert_eq!(response.status, 303, "{uri}");
        assert_eq!(response.headers["location"], "/proposals", "{uri}");
    }
    // Not logged in: the form carries the safe target, not the given one.
    let page = app.browse(Method::GET, "/login?next=/%09/evil.example", None, None, &[]).await;
    assert_eq!(page.status, 200);
    assert!(page.text.contains(r#"name="next" value="/proposals""#), "{}", page.text);
    assert!(!page.text.contains("evil.example"), "{}", page.text);
    // A local target still works.
    let response = app.browse(Method::GET, "/login?next=/tokens%3Fx%3D1", Some(&alice.cookie), None, &[]).await;
    assert_eq!(response.headers["location"], "/tokens?x=1");
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn every_answer_has_the_security_headers(db: PgPool) {
    let app = TestApp::new(db).await;
    for uri in ["/login", "/api/v1/proposals", "/static/app.css", "/nothing"] {
        let response = app.browse(Method::GET, uri, None, None, &[]).await;
        let csp = response.headers["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("script-src 'self'")
                && !csp.contains("unsafe-inline")
                && csp.contains("frame-ancestors 'none'"),
            "{uri}"
        );
        assert_eq!(response.headers["x-content-type-options"], "nosniff");
        assert_eq!(response.headers["referrer-policy"], "same-origin");
    }
    let htmx = app.browse(Method::GET, "/static/vendor/htmx.min.js", None, None, &[]).await;
    assert_eq!(htmx.status, 200, "npm's htmx is served (run `make deps`)");
}
