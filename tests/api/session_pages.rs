//! The sessions pages: the Launch dialog (with job parameters from the image's schema and
//! the quota left), My sessions, a session's page, stopping from the page. The reconciler
//! does not run here, so nothing is started: these tests are about what the pages write.

use axum::http::Method;
use sqlx::PgPool;
use uuid::Uuid;

use crate::common::TestApp;

/// Makes `username` the owner member of a session a test inserted by hand.
async fn own(db: &PgPool, id: Uuid, username: &str) {
    sqlx::query(
        "insert into session_members (session_id, user_id, role, accepted_at)
         select $1, id, 'owner', now() from users where username = $2",
    )
    .bind(id)
    .bind(username)
    .execute(db)
    .await
    .unwrap();
}

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
    assert!(job.text.contains(r#"name="param.iterations" type="number" step="1" value="100""#), "{}", job.text);
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
    assert!(response.text.contains(">iterations: must be a whole number"), "{}", response.text);

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
    assert!(
        cards.text.contains(r#"data-follow="/api/v1/sessions/changes" data-refresh="/sessions/cards""#),
        "the cards follow the sessions"
    );
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
    let events = app.browse(Method::GET, &format!("/sessions/{id}/live"), Some(&alice.cookie), None, &[]).await;
    assert!(events.text.contains("Launch cancelled by alice"), "{}", events.text);
}

/// Issue 14 items 1 and 3: the session page's changing part is served on its own and
/// follows the session's event stream; a finished job, a cancelled launch and a failure read
/// differently; a job's page shows its parameters.
#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn a_finished_job_a_cancelled_launch_and_a_failure_read_differently(db: PgPool) {
    use daas::runtime::Observed;
    use serde_json::{json, Value};

    use crate::common::{add_shell_image, launch_body, wait_state};
    let app = TestApp::with_config(db, |config| config.sessions.max_starting = 1).await;
    app.start_reconciler();
    sqlx::query("update quotas set max_sessions = 10").execute(&app.db).await.unwrap();
    add_shell_image(&app.db, "Reconstruction", "job", "true").await;
    let alice = app.token("alice").await;
    let browser = app.browser("alice").await;
    let fake = app.fake();
    let submit = |parameters: Value| {
        let (app, alice) = (&app, &alice);
        async move {
            let mut body = launch_body(app, "Reconstruction", "small", "S0011").await;
            body["parameters"] = parameters;
            let r = app.request(Method::POST, "/api/v1/jobs", Some(alice), Some(body)).await;
            assert_eq!(r.status, 201, "{}", r.text);
            r.body["id"].as_str().unwrap().to_string()
        }
    };
    let page = |id: String| {
        let (app, cookie) = (&app, &browser.cookie);
        async move { app.browse(Method::GET, &format!("/sessions/{id}"), Some(cookie), None, &[]).await.text }
    };

    fake.start_as(Observed::Exited { exit_code: Some(0), message: "exited with code 0".into() });
    let finished = submit(json!({"algorithm": "FBP", "centre": 1024.25})).await;
    wait_state(&app, &alice, &finished, 10, |s: &Value| s["state"] == "stopped").await;
    let text = page(finished.clone()).await;
    assert!(text.contains(r#"<span class="badge state done">finished</span>"#), "{text}");
    assert!(text.contains("<dt>algorithm</dt><dd><code>&#34;FBP&#34;</code></dd>"), "parameters: {text}");
    assert!(text.contains("<dt>centre</dt><dd><code>1024.25</code></dd>"), "parameters: {text}");
    assert!(!text.contains("data-follow"), "an ended session's page follows nothing");

    fake.start_as(Observed::Exited { exit_code: Some(2), message: "exited with code 2".into() });
    let failed = submit(json!({})).await;
    wait_state(&app, &alice, &failed, 10, |s: &Value| s["state"] == "failed").await;
    assert!(page(failed).await.contains(r#"<span class="badge state bad">failed</span>"#));

    // One start at a time: the second waits, and is cancelled before it starts.
    fake.start_as(Observed::Pending { message: "waiting".into() });
    let starting = submit(json!({})).await;
    let queued = submit(json!({})).await;
    wait_state(&app, &alice, &queued, 10, |s: &Value| s["progress"] == "queued: next to start").await;
    let live = app.browse(Method::GET, &format!("/sessions/{queued}/live"), Some(&browser.cookie), None, &[]).await;
    assert!(live.text.trim_start().starts_with(r#"<div id="live" data-follow="/api/v1/sessions/"#), "{}", live.text);
    assert!(live.text.contains("queued: next to start") && live.text.contains("Cancel launch"), "{}", live.text);
    let cancel = app.request(Method::DELETE, &format!("/api/v1/sessions/{queued}"), Some(&alice), None).await;
    assert_eq!(cancel.status, 202);
    let text = page(queued).await;
    assert!(text.contains(r#"<span class="badge state off">cancelled</span>"#), "{text}");
    assert!(text.contains("Stopped before it started"), "{text}");
    let stop = app.request(Method::DELETE, &format!("/api/v1/sessions/{starting}"), Some(&alice), None).await;
    assert_eq!(stop.status, 202);
    wait_state(&app, &alice, &starting, 10, |s: &Value| s["state"] == "stopped").await;
    assert!(page(starting).await.contains(r#"<span class="badge state off">stopped</span>"#));
}

/// Issue 14 item 4: the desktop page of a desktop that ended leads to the session's page,
/// which says how it ended (another user's is a 404 page, as every session not theirs).
#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn an_ended_desktops_page_leads_to_its_session_page(db: PgPool) {
    let app = TestApp::new(db).await;
    let when = (Some("2026-01-31T22:00:00Z"), Some("2026-02-01T03:00:00Z"));
    let id = crate::admin::insert_session(&app.db, "alice", "S0011", "Xfce desktop", "stopped", (2000, 0), when).await;
    own(&app.db, id, "alice").await;
    let alice = app.browser("alice").await;
    let r = app.browse(Method::GET, &format!("/sessions/{id}/desktop"), Some(&alice.cookie), None, &[]).await;
    assert_eq!(r.status, 303);
    assert_eq!(r.headers["location"], format!("/sessions/{id}").as_str());
    let bob = app.browser("bob").await;
    let r = app.browse(Method::GET, &format!("/sessions/{id}/desktop"), Some(&bob.cookie), None, &[]).await;
    assert_eq!(r.status, 404);
}

/// Issue 14 item 5: My sessions shows the live sessions apart from those ended in the last
/// day, each with when it started and ended, and a member may hide an ended one.
#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn my_sessions_groups_ended_cards_with_their_dates_and_hides_one_on_request(db: PgPool) {
    let app = TestApp::new(db).await;
    let ended = crate::admin::insert_session(
        &app.db,
        "alice",
        "S0011",
        "Xfce desktop",
        "stopped",
        (2000, 0),
        (Some("2026-11-30T08:00:00Z"), Some("2026-11-30T09:00:00Z")),
    )
    .await;
    // Ended an hour ago, after two hours, whenever the test runs.
    let started: String = sqlx::query_scalar(
        "update sessions set started_at = now() - interval '3 hours', stopped_at = now() - interval '1 hour'
         where id = $1 returning to_char(started_at at time zone 'UTC', 'YYYY-MM-DD HH24:MI')",
    )
    .bind(ended)
    .fetch_one(&app.db)
    .await
    .unwrap();
    own(&app.db, ended, "alice").await;
    let live = crate::admin::insert_session(
        &app.db,
        "alice",
        "S0011",
        "JupyterLab",
        "running",
        (2000, 0),
        (Some("2026-11-30T09:30:00Z"), None),
    )
    .await;
    own(&app.db, live, "alice").await;
    let alice = app.browser("alice").await;
    let page = app.browse(Method::GET, "/sessions", Some(&alice.cookie), None, &[]).await.text;
    let (live_part, ended_part) = page.split_once("Ended in the last day").expect("an ended group");
    assert!(live_part.contains("<h2 class=\"card-group\">Live</h2>") && live_part.contains("JupyterLab"), "{page}");
    assert!(live_part.contains("started 2026-11-30 09:30 UTC"), "{page}");
    assert!(ended_part.contains("Xfce desktop"), "{page}");
    assert!(ended_part.contains(&format!("started {started} UTC, ended ")), "{page}");
    assert!(!live_part.contains("/hide"), "a live session cannot be hidden");

    let hide = |id: Uuid| {
        let (app, alice) = (&app, &alice);
        async move {
            let form = [("_csrf", alice.csrf.as_str())];
            app.browse(Method::POST, &format!("/sessions/{id}/hide"), Some(&alice.cookie), Some(&form), &[]).await
        }
    };
    assert_eq!(hide(live).await.status, 404, "a live session was hidden");
    assert_eq!(hide(ended).await.status, 303);
    let page = app.browse(Method::GET, "/sessions", Some(&alice.cookie), None, &[]).await.text;
    assert!(!page.contains("Xfce desktop") && !page.contains("Ended in the last day"), "{page}");
    assert!(page.contains("JupyterLab"));
    // Hidden for alice only: the admin still sees it.
    let admin = app.token("admin").await;
    let listed = app.request(Method::GET, "/api/v1/admin/sessions?user=alice", Some(&admin), None).await;
    assert_eq!(listed.body["total"], 2, "{}", listed.text);
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

/// Issue 14 item 7: a job's `dataset` parameter is a choice among the experiments'
/// datasets (the page offers the chosen experiment's), and a parameter the schema ties to
/// another's value (iterations, for SIRT only) says so, for the page to hide it otherwise.
#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn a_jobs_dataset_is_chosen_from_the_experiments_and_iterations_wait_for_sirt(db: PgPool) {
    let app = TestApp::new(db).await;
    let sam = app.browser("sam").await;
    let image = id_of(&app.db, "select id from images where kind = 'job'").await;
    let experiment = id_of(&app.db, "select id from experiments where code = 'S0011'").await;
    let uri = format!("/proposals/20180101/launch?image={image}");
    let page = app.browse(Method::GET, &uri, Some(&sam.cookie), None, &[]).await.text;
    let select = r#"<select id="param-dataset" name="param.dataset" data-datasets-of="experiment" required>"#;
    assert!(page.contains(select), "{page}");
    let group = format!(r#"<optgroup label="S0011" data-experiment="{experiment}">"#);
    let (_, in_group) = page.split_once(&group).expect("the experiment's datasets");
    let in_group = in_group.split("</optgroup>").next().unwrap();
    assert!(in_group.contains("<option>tomo_scan_0001</option>"), "{in_group}");
    assert!(!page.contains(r#"name="param.dataset" value="#), "still a free-text box");
    assert!(
        page.contains(r#"<div class="field" data-when="param.algorithm" data-when-values="sirt">"#),
        "iterations are not tied to SIRT: {page}"
    );
}

/// Issue 14, item 1: the pages that show many sessions follow them from one stream each:
/// My sessions the caller's own, the admin's list every session, a beamline's list its
/// own; each page redraws its part from a fragment when told.
#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn item_1_lists_of_sessions_follow_them_from_one_stream(db: PgPool) {
    use crate::common::launch_body;
    use std::time::Duration;
    let app = TestApp::new(db).await;
    let (alice, bob, sam, admin) =
        (app.token("alice").await, app.token("bob").await, app.token("sam").await, app.token("admin").await);
    let mut mine = app.stream("/api/v1/sessions/changes", &alice, None).await;
    let mut all = app.stream("/api/v1/sessions/changes?all=true", &admin, None).await;
    let mut staff = app.stream("/api/v1/sessions/changes?beamline=BL11", &sam, None).await;
    let launch = |token: String, experiment: &'static str| {
        let app = &app;
        async move {
            let body = launch_body(app, "Xfce desktop", "small", experiment).await;
            let r = app.request(Method::POST, "/api/v1/sessions", Some(&token), Some(body)).await;
            assert_eq!(r.status, 201, "{}", r.text);
            r.body["id"].as_str().unwrap().to_owned()
        }
    };
    // Bob's session on another beamline: the admin hears of it, alice and BL11's staff not.
    let bobs: String = sqlx::query_scalar(
        "select e.code from experiments e join proposal_members m on m.proposal_id = e.proposal_id
         join users u on u.id = m.user_id where u.username = 'bob' and e.beamline <> 'BL11' limit 1",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    let experiment: &'static str = Box::leak(bobs.into_boxed_str());
    let id = launch(bob.clone(), experiment).await;
    assert_eq!(all.next_event(Duration::from_secs(5)).await.unwrap()["session"], id.as_str());
    // Alice's, on BL11: all three hear of it.
    let id = launch(alice.clone(), "S0011").await;
    for stream in [&mut mine, &mut all, &mut staff] {
        let mut seen = Vec::new();
        while let Some(event) = stream.next_event(Duration::from_secs(5)).await {
            seen.push(event["session"].as_str().unwrap_or("").to_owned());
            if seen.last().unwrap() == &id {
                break;
            }
        }
        assert_eq!(seen.last(), Some(&id), "{seen:?}");
    }
    assert!(mine.next_event(Duration::from_millis(500)).await.is_none_or(|e| e["session"] == id.as_str()));
    // Only admins follow everything; only a beamline's staff follow it.
    assert_eq!(app.get("/api/v1/sessions/changes?all=true", Some(&alice)).await.status, 403);
    assert_eq!(app.get("/api/v1/sessions/changes?beamline=BL11", Some(&bob)).await.status, 404);

    // The pages say what they follow, and their parts redraw alone.
    let browser = app.browser("alice").await;
    let page = app.browse(Method::GET, "/sessions", Some(&browser.cookie), None, &[]).await;
    assert!(
        page.text.contains(r#"data-follow="/api/v1/sessions/changes" data-refresh="/sessions/cards""#),
        "{}",
        page.text
    );
    let admin_browser = app.browser("admin").await;
    let page = app.browse(Method::GET, "/admin/sessions?user=alice", Some(&admin_browser.cookie), None, &[]).await;
    assert!(page.text.contains(r#"data-follow="/api/v1/sessions/changes?all=true""#), "{}", page.text);
    assert!(page.text.contains("data-refresh=\"/admin/sessions/list?state=&#38;user=alice&#38;"), "{}", page.text);
    let part = app.browse(Method::GET, "/admin/sessions/list?user=alice", Some(&admin_browser.cookie), None, &[]).await;
    assert_eq!(part.status, 200);
    assert!(part.text.starts_with("<div id=\"session-list\"") && part.text.contains(&id), "{}", part.text);
    let sam_browser = app.browser("sam").await;
    let part = app.browse(Method::GET, "/beamlines/BL11/sessions/list", Some(&sam_browser.cookie), None, &[]).await;
    assert!(part.text.contains(&id) && part.text.contains("/api/v1/sessions/changes?beamline=BL11"), "{}", part.text);
    let refused = app.browse(Method::GET, "/beamlines/BL11/sessions/list", Some(&browser.cookie), None, &[]).await;
    assert_eq!(refused.status, 404);
}

/// Issue 14, item 6: a refused form comes back as typed, with its status and the message
/// tied to the field it names (`data-field`, which app.js places by the field with
/// `aria-describedby`): the Launch dialog's job parameters, a token, a notice.
#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn item_6_refused_forms_keep_what_was_typed_and_name_the_field(db: PgPool) {
    let app = TestApp::new(db).await;
    let alice = app.browser("alice").await;
    let image = id_of(&app.db, "select id from images where kind = 'job'").await;
    let flavour = id_of(&app.db, "select id from flavours where name = 'medium'").await;
    let experiment = id_of(&app.db, "select id from experiments where code = 'S0011'").await;
    let dataset: String = sqlx::query_scalar(
        "select d.name from datasets d join experiments e on e.id = d.experiment_id where e.code = 'S0011' order by d.name desc limit 1",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    let form = [
        ("_csrf", alice.csrf.as_str()),
        ("image", &image),
        ("flavour", &flavour),
        ("experiment", &experiment),
        ("param.dataset", &dataset),
        ("param.algorithm", "sirt"),
        ("param.iterations", "9999"),
    ];
    let r = app.browse(Method::POST, "/proposals/20180101/launch", Some(&alice.cookie), Some(&form), &[]).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.text.contains(r#"id="form-error" data-field="param.iterations""#), "{}", r.text);
    for kept in [
        r#"name="param.iterations" type="number" step="1" value="9999""#.to_owned(),
        "<option selected>sirt</option>".to_owned(),
        format!(r#"<option value="{flavour}" selected>medium"#),
        format!(r#"<option value="{experiment}" selected>S0011"#),
        format!("<option selected>{dataset}</option>"),
    ] {
        assert!(r.text.contains(&kept), "lost {kept}: {}", r.text);
    }
    let count: i64 = sqlx::query_scalar("select count(*) from sessions").fetch_one(&app.db).await.unwrap();
    assert_eq!(count, 0, "nothing launched");

    // A token with a bad expiry; a notice shown for no time.
    let token = [("_csrf", alice.csrf.as_str()), ("name", "laptop scripts"), ("expires_in_days", "soon")];
    let r = app.browse(Method::POST, "/tokens", Some(&alice.cookie), Some(&token), &[]).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(
        r.text.contains(r#"data-field="expires_in_days""#) && r.text.contains(r#"value="laptop scripts""#),
        "{}",
        r.text
    );
    let admin = app.browser("admin").await;
    let notice =
        [("_csrf", admin.csrf.as_str()), ("message", "Beam down until 14:00"), ("level", "outage"), ("hours", "0")];
    let r = app.browse(Method::POST, "/admin/notices", Some(&admin.cookie), Some(&notice), &[]).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(
        r.text.contains(r#"data-field="hours""#) && r.text.contains(r#"value="Beam down until 14:00""#),
        "{}",
        r.text
    );
    assert!(r.text.contains(r#"<option value="outage" selected>"#) && r.text.contains(r#"value="0""#), "{}", r.text);
}
