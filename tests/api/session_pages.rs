//! The sessions pages: the Launch dialog (with job parameters from the image's schema and
//! the quota left), My sessions, a session's page, stopping from the page. The reconciler
//! does not run here, so nothing is started: these tests are about what the pages write.

use axum::http::Method;
use sqlx::PgPool;
use uuid::Uuid;

use crate::common::TestApp;

async fn id_of(db: &PgPool, sql: &str) -> String {
    sqlx::query_scalar::<_, Uuid>(sql).fetch_one(db).await.unwrap().to_string()
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn the_launch_dialog_offers_what_the_role_may_use_and_the_quota_left(db: PgPool) {
    let app = TestApp::new(db).await;
    let alice = app.browser("alice").await;
    let page = app.browse(Method::GET, "/proposals/20180101/launch", Some(&alice.cookie), None, &[]).await;
    assert_eq!(page.status, 200);
    for text in [
        "Xfce desktop (desktop)",
        "JupyterLab (notebook)",
        "Tomography reconstruction (job)",
        "Sessions: 0 of 2 in use",
        "GPUs: 0 of 1 in use",
    ] {
        assert!(page.text.contains(text), "{text} missing");
    }
    let recon = id_of(&app.db, "select id from images where kind = 'job'").await;
    let job = app
        .browse(Method::GET, &format!("/proposals/20180101/launch?image={recon}"), Some(&alice.cookie), None, &[])
        .await;
    assert!(
        job.text.contains("<option selected>fbp</option>") && job.text.contains("<option>sirt</option>"),
        "{}",
        job.text
    );
    assert!(job.text.contains(r#"name="param.iterations" type="number" step="1" value="50""#));
    assert!(job.text.contains("S0011: ") && job.text.contains("gpu: 8 CPUs · 32 GiB memory · 1 GPU (nvidia-a100)"));
    // Not alice's proposal: 404.
    assert_eq!(
        app.browse(Method::GET, "/proposals/I-20191502/launch", Some(&alice.cookie), None, &[]).await.status,
        404
    );
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn launching_from_the_page_until_the_quota_says_no(db: PgPool) {
    let app = TestApp::new(db).await;
    let alice = app.browser("alice").await;
    let image = id_of(&app.db, "select id from images where kind = 'desktop'").await;
    let flavour = id_of(&app.db, "select id from flavours where name = 'small'").await;
    let experiment = id_of(&app.db, "select id from experiments where code = 'S0011'").await;
    let form = [("_csrf", alice.csrf.as_str()), ("image", &image), ("flavour", &flavour), ("experiment", &experiment)];
    for _ in 0..2 {
        let response =
            app.browse(Method::POST, "/proposals/20180101/launch", Some(&alice.cookie), Some(&form), &[]).await;
        assert_eq!(response.status, 303, "{}", response.text);
        assert!(response.headers["location"].to_str().unwrap().starts_with("/sessions/"));
    }
    let third = app.browse(Method::POST, "/proposals/20180101/launch", Some(&alice.cookie), Some(&form), &[]).await;
    assert_eq!(third.status, 409);
    assert!(third.text.contains("over quota: 2 of 2 sessions in use"), "{}", third.text);
    let count: i64 = sqlx::query_scalar("select count(*) from sessions").fetch_one(&app.db).await.unwrap();
    assert_eq!(count, 2);

    // An experiment of another proposal, smuggled into this proposal's form.
    let foreign = id_of(&app.db, "select id from experiments where code = 'S0201'").await;
    sqlx::query("update sessions set state = 'stopped', stopped_at = now()").execute(&app.db).await.unwrap();
    let form = [("_csrf", alice.csrf.as_str()), ("image", &image), ("flavour", &flavour), ("experiment", &foreign)];
    let response = app.browse(Method::POST, "/proposals/20180101/launch", Some(&alice.cookie), Some(&form), &[]).await;
    assert_eq!(response.status, 400);
    assert!(response.text.contains("not an experiment of this proposal"));
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn a_job_from_the_form_gets_typed_parameters(db: PgPool) {
    let app = TestApp::new(db).await;
    let sam = app.browser("sam").await;
    let image = id_of(&app.db, "select id from images where kind = 'job'").await;
    let flavour = id_of(&app.db, "select id from flavours where name = 'gpu'").await;
    let experiment = id_of(&app.db, "select id from experiments where code = 'S0011'").await;
    let base = [
        ("_csrf", sam.csrf.as_str()),
        ("image", image.as_str()),
        ("flavour", flavour.as_str()),
        ("experiment", experiment.as_str()),
    ];
    let with =
        |extra: &[(&'static str, &'static str)]| base.iter().copied().chain(extra.iter().copied()).collect::<Vec<_>>();
    let bad = with(&[("param.dataset", "tomo_scan_0001"), ("param.algorithm", "sirt"), ("param.iterations", "many")]);
    let response = app.browse(Method::POST, "/proposals/20180101/launch", Some(&sam.cookie), Some(&bad), &[]).await;
    assert_eq!(response.status, 400);
    assert!(response.text.contains("parameters.iterations: must be a whole number"), "{}", response.text);

    let good = with(&[
        ("param.dataset", "tomo_scan_0001"),
        ("param.algorithm", "sirt"),
        ("param.iterations", "20"),
        ("param.center", ""),
    ]);
    let response = app.browse(Method::POST, "/proposals/20180101/launch", Some(&sam.cookie), Some(&good), &[]).await;
    assert_eq!(response.status, 303, "{}", response.text);
    let parameters: serde_json::Value =
        sqlx::query_scalar("select parameters from jobs").fetch_one(&app.db).await.unwrap();
    assert_eq!(parameters, serde_json::json!({"dataset": "tomo_scan_0001", "algorithm": "sirt", "iterations": 20}));
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn my_sessions_shows_cards_and_stops_mine_only(db: PgPool) {
    let app = TestApp::new(db).await;
    app.fake().start_as(daas::runtime::Observed::Pending { message: "waiting".into() });
    let alice = app.browser("alice").await;
    let image = id_of(&app.db, "select id from images where kind = 'notebook'").await;
    let flavour = id_of(&app.db, "select id from flavours where name = 'small'").await;
    let experiment = id_of(&app.db, "select id from experiments where code = 'S0012'").await;
    let form = [("_csrf", alice.csrf.as_str()), ("image", &image), ("flavour", &flavour), ("experiment", &experiment)];
    let launched = app.browse(Method::POST, "/proposals/20180101/launch", Some(&alice.cookie), Some(&form), &[]).await;
    let page_url = launched.headers["location"].to_str().unwrap().to_string();
    let id = page_url.trim_start_matches("/sessions/").to_string();

    let cards = app.browse(Method::GET, "/sessions", Some(&alice.cookie), None, &[]).await;
    assert!(
        cards.text.contains("JupyterLab")
            && cards.text.contains("20180101 / S0012")
            && cards.text.contains(">starting<"),
        "{}",
        cards.text
    );
    assert!(cards.text.contains(r#"hx-get="/sessions/cards" hx-trigger="every 3s""#), "the cards refresh themselves");
    let detail = app.browse(Method::GET, &page_url, Some(&alice.cookie), None, &[]).await;
    assert_eq!(detail.status, 200);
    assert!(detail.text.contains("Cancel launch"));

    // bob neither sees nor stops it.
    let bob = app.browser("bob").await;
    assert_eq!(app.browse(Method::GET, &page_url, Some(&bob.cookie), None, &[]).await.status, 404);
    let bob_stop = app
        .browse(Method::POST, &format!("/sessions/{id}/stop"), Some(&bob.cookie), Some(&[("_csrf", &bob.csrf)]), &[])
        .await;
    assert_eq!(bob_stop.status, 404);
    assert!(!app.browse(Method::GET, "/sessions", Some(&bob.cookie), None, &[]).await.text.contains("JupyterLab"));

    let stop = app
        .browse(
            Method::POST,
            &format!("/sessions/{id}/stop"),
            Some(&alice.cookie),
            // A tab that browsers strip would make this `//evil.example`.
            Some(&[("_csrf", &alice.csrf), ("back", "/\t/evil.example")]),
            &[],
        )
        .await;
    assert_eq!(stop.status, 303);
    assert_eq!(stop.headers["location"], "/sessions", "the stop form's `back` stays on the site");
    let state: String = sqlx::query_scalar("select state from sessions").fetch_one(&app.db).await.unwrap();
    assert_eq!(state, "stopping");
    let events = app.browse(Method::GET, &format!("/sessions/{id}/events-list"), Some(&alice.cookie), None, &[]).await;
    assert!(events.text.contains("Launch cancelled by alice"), "{}", events.text);
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn the_desktop_page_names_its_session_and_has_stop_and_a_way_back(db: PgPool) {
    let app = TestApp::new(db).await;
    let alice = app.browser("alice").await;
    let image = id_of(&app.db, "select id from images where kind = 'desktop'").await;
    let flavour = id_of(&app.db, "select id from flavours where name = 'small'").await;
    let experiment = id_of(&app.db, "select id from experiments where code = 'S0011'").await;
    let form = [("_csrf", alice.csrf.as_str()), ("image", &image), ("flavour", &flavour), ("experiment", &experiment)];
    let launched = app.browse(Method::POST, "/proposals/20180101/launch", Some(&alice.cookie), Some(&form), &[]).await;
    let id = launched.headers["location"].to_str().unwrap().trim_start_matches("/sessions/").to_string();

    let page = app.browse(Method::GET, &format!("/sessions/{id}/desktop"), Some(&alice.cookie), None, &[]).await;
    assert_eq!(page.status, 200);
    for text in [
        "<title>Xfce desktop".to_string(),
        "Xfce desktop on 20180101 / S0011</h1>".to_string(),
        format!(r#"<a href="/sessions/{id}">Xfce desktop</a>"#),
        format!(r#"action="/sessions/{id}/stop""#),
        format!(r#"name="back" value="/sessions/{id}""#),
    ] {
        assert!(page.text.contains(&text), "{text} missing from {}", page.text);
    }
    let bob = app.browser("bob").await;
    assert_eq!(
        app.browse(Method::GET, &format!("/sessions/{id}/desktop"), Some(&bob.cookie), None, &[]).await.status,
        404
    );
}
