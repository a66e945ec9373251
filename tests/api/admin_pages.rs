//! The admin console's pages and the dataset link page: rendered for real, refused to
//! non-admins, and their forms change things as the API does (audit included).

use axum::http::Method;
use sqlx::PgPool;

use crate::admin::insert_session;
use crate::common::TestApp;

/// Forms are posted as a browser on the portal's own page would (no cross-site Origin).
const ORIGIN: &[(&str, &str)] = &[];

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn admin_pages_render_for_admins_only(db: PgPool) {
    let app = TestApp::new(db).await;
    insert_session(
        &app.db,
        "alice",
        "S0011",
        "Xfce desktop",
        "running",
        (2000, 0),
        (Some("2026-11-01T00:00:00Z"), None),
    )
    .await;
    let admin = app.browser("admin").await;
    let alice = app.browser("alice").await;
    let sam = app.browser("sam").await;
    for (path, expect) in [
        ("/admin/images", "Tomography reconstruction"),
        ("/admin/sessions", "Xfce desktop"),
        ("/admin/users", "Sam Keller"),
        ("/admin/usage?by=user", "usage.svg?by=user"),
        ("/admin/audit", "demo.load"),
        ("/admin/notices", "Post a notice"),
        ("/admin/flavours", "nvidia-a100"),
        ("/admin/quotas", "20180101"),
        ("/admin/import", "Preview"),
    ] {
        let page = app.browse(Method::GET, path, Some(&admin.cookie), None, &[]).await;
        assert_eq!(page.status, 200, "{path}: {}", page.text);
        assert!(page.text.contains(expect), "{path} lacks {expect:?}");
        for who in [&alice, &sam] {
            let refused = app.browse(Method::GET, path, Some(&who.cookie), None, &[]).await;
            assert_eq!(refused.status, 403, "{path}");
            assert!(!refused.text.contains(expect), "{path} leaked to a non-admin");
        }
        let anonymous = app.browse(Method::GET, path, None, None, &[]).await;
        assert_eq!(anonymous.status, 303, "{path}");
    }
    // A non-admin's form post changes nothing.
    let id: uuid::Uuid =
        sqlx::query_scalar("select id from images where name = 'JupyterLab'").fetch_one(&app.db).await.unwrap();
    let uri = format!("/admin/images/{id}/enabled");
    let r = app.browse(Method::POST, &uri, Some(&alice.cookie), Some(&[("_csrf", alice.csrf.as_str())]), ORIGIN).await;
    assert_eq!(r.status, 403);
    let enabled: bool =
        sqlx::query_scalar("select enabled from images where id = $1").bind(id).fetch_one(&app.db).await.unwrap();
    assert!(enabled);
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn admin_forms_add_disable_and_stop(db: PgPool) {
    let app = TestApp::new(db).await;
    let admin = app.browser("admin").await;
    let csrf = admin.csrf.as_str();
    let form = [
        ("_csrf", csrf),
        ("name", "Fiji desktop"),
        ("kind", "desktop"),
        ("reference", "registry.example/daas/fiji:2.14"),
        ("default_cpu_millis", "2000"),
        ("default_memory_mib", "4096"),
        ("allowed_roles", "user"),
        ("allowed_roles", "scientist"),
    ];
    let r = app.browse(Method::POST, "/admin/images", Some(&admin.cookie), Some(&form), ORIGIN).await;
    assert_eq!(r.status, 303, "{}", r.text);
    let roles: Vec<String> = sqlx::query_scalar("select allowed_roles from images where name = 'Fiji desktop'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(roles, ["user", "scientist"]);
    // A bad reference comes back as a message on the page, nothing written.
    let mut bad = form;
    bad[1] = ("name", "Broken");
    bad[3] = ("reference", "Not A Reference");
    let r = app.browse(Method::POST, "/admin/images", Some(&admin.cookie), Some(&bad), ORIGIN).await;
    assert_eq!(r.status, 200);
    assert!(r.text.contains("reference: "), "{}", r.text);
    let count: i64 =
        sqlx::query_scalar("select count(*) from images where name = 'Broken'").fetch_one(&app.db).await.unwrap();
    assert_eq!(count, 0);

    let id: uuid::Uuid =
        sqlx::query_scalar("select id from images where name = 'Fiji desktop'").fetch_one(&app.db).await.unwrap();
    let r = app
        .browse(
            Method::POST,
            &format!("/admin/images/{id}/enabled"),
            Some(&admin.cookie),
            Some(&[("_csrf", csrf)]),
            ORIGIN,
        )
        .await;
    assert_eq!(r.status, 303);
    let alice_images = app.get_as("alice", "/api/v1/images").await;
    assert!(!alice_images.text.contains("Fiji desktop"));
    // Without the CSRF token, refused.
    let r =
        app.browse(Method::POST, &format!("/admin/images/{id}/enabled"), Some(&admin.cookie), Some(&[]), ORIGIN).await;
    assert_eq!(r.status, 403);

    let s = insert_session(
        &app.db,
        "bob",
        "S0201",
        "JupyterLab",
        "running",
        (2000, 0),
        (Some("2026-11-01T00:00:00Z"), None),
    )
    .await;
    let ids = s.to_string();
    let r = app
        .browse(
            Method::POST,
            "/admin/sessions/stop",
            Some(&admin.cookie),
            Some(&[("_csrf", csrf), ("ids", ids.as_str())]),
            ORIGIN,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.text.contains("1 session(s) stopping"), "{}", r.text);
    let state: String =
        sqlx::query_scalar("select state from sessions where id = $1").bind(s).fetch_one(&app.db).await.unwrap();
    assert_eq!(state, "stopping");

    let r = app
        .browse(
            Method::POST,
            "/admin/notices",
            Some(&admin.cookie),
            Some(&[("_csrf", csrf), ("message", "Beam off on Monday"), ("level", "warning"), ("hours", "2")]),
            ORIGIN,
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.text);
    let alice = app.browser("alice").await;
    let banner = app.browse(Method::GET, "/notices/banner", Some(&alice.cookie), None, &[]).await;
    assert!(banner.text.contains("Beam off on Monday") && banner.text.contains("banner-warning"), "{}", banner.text);
    assert!(!app.browse(Method::GET, "/notices/banner", None, None, &[]).await.text.contains("Beam off"));

    let actions: Vec<String> =
        sqlx::query_scalar("select action from audit_events where actor_name = 'admin' order by id")
            .fetch_all(&app.db)
            .await
            .unwrap();
    assert_eq!(actions, ["image.create", "image.disable", "session.stop", "notice.create"]);
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn sam_links_a_dataset_from_the_page(db: PgPool) {
    let app = TestApp::new(db).await;
    std::fs::create_dir_all(app.data.path().join("20180101/S0011/scan_0007")).unwrap();
    std::fs::write(app.data.path().join("20180101/S0011/scan_0007/p.h5"), [1u8; 64]).unwrap();
    let sam = app.browser("sam").await;
    let proposal = app.browse(Method::GET, "/proposals/20180101", Some(&sam.cookie), None, &[]).await;
    assert!(proposal.text.contains("/proposals/20180101/experiments/S0011/datasets/new"));
    let alice = app.browser("alice").await;
    let theirs = app.browse(Method::GET, "/proposals/20180101", Some(&alice.cookie), None, &[]).await;
    assert!(!theirs.text.contains("datasets/new"), "alice is offered a link she may not use");

    let uri = "/proposals/20180101/experiments/S0011/datasets/new";
    let page = app.browse(Method::GET, uri, Some(&sam.cookie), None, &[]).await;
    assert_eq!(page.status, 200);
    let escape = [("_csrf", sam.csrf.as_str()), ("location", "20180101/../../etc"), ("metadata", "{}")];
    let r = app.browse(Method::POST, uri, Some(&sam.cookie), Some(&escape), ORIGIN).await;
    assert_eq!(r.status, 200);
    assert!(r.text.contains("location: must not contain"), "{}", r.text);
    let ok = [
        ("_csrf", sam.csrf.as_str()),
        ("location", "20180101/S0011/scan_0007"),
        ("metadata", r#"{"sample": "coupon E"}"#),
    ];
    let r = app.browse(Method::POST, uri, Some(&sam.cookie), Some(&ok), ORIGIN).await;
    assert_eq!(r.status, 303, "{}", r.text);
    let proposal = app.browse(Method::GET, "/proposals/20180101", Some(&alice.cookie), None, &[]).await;
    assert!(proposal.text.contains("scan_0007") && proposal.text.contains("coupon E"));
    let r = app
        .browse(
            Method::POST,
            uri,
            Some(&alice.cookie),
            Some(&[("_csrf", alice.csrf.as_str()), ("location", "20180101/S0011/scan_0007")]),
            ORIGIN,
        )
        .await;
    assert_eq!(r.status, 403);
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn proposals_are_previewed_then_imported_from_the_page(db: PgPool) {
    let app = TestApp::new(db).await;
    let admin = app.browser("admin").await;
    let csv = "proposal,title,beamline,member,member_role\n20261201,Soft matter,BL02,erin,pi\n";
    let count =
        || async { sqlx::query_scalar::<_, i64>("select count(*) from proposals").fetch_one(&app.db).await.unwrap() };
    let before = count().await;
    let preview = [("_csrf", admin.csrf.as_str()), ("format", "csv"), ("text", csv), ("action", "preview")];
    let r = app.browse(Method::POST, "/admin/import", Some(&admin.cookie), Some(&preview), ORIGIN).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.text.contains("Preview: nothing was changed yet") && r.text.contains("proposals: 1 new"), "{}", r.text);
    assert_eq!(count().await, before);
    let apply = [("_csrf", admin.csrf.as_str()), ("format", "csv"), ("text", csv), ("action", "apply")];
    let r = app.browse(Method::POST, "/admin/import", Some(&admin.cookie), Some(&apply), ORIGIN).await;
    assert!(r.text.contains("Imported"), "{}", r.text);
    assert_eq!(count().await, before + 1);
    let bad =
        [("_csrf", admin.csrf.as_str()), ("format", "csv"), ("text", "proposal,title\n1,\n"), ("action", "apply")];
    let r = app.browse(Method::POST, "/admin/import", Some(&admin.cookie), Some(&bad), ORIGIN).await;
    assert!(r.text.contains("role=\"alert\""), "{}", r.text);
    assert_eq!(count().await, before + 1);
}
