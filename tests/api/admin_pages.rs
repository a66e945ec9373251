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
    // A bad reference comes back as a 400 with the message on the page and the form as it
    // was typed (issue 14 item 6, for this form); nothing written.
    let mut bad = form;
    bad[1] = ("name", "Broken");
    bad[3] = ("reference", "Not A Reference");
    let r = app.browse(Method::POST, "/admin/images", Some(&admin.cookie), Some(&bad), ORIGIN).await;
    assert_eq!(r.status, 400);
    assert!(r.text.contains("reference: "), "{}", r.text);
    assert!(r.text.contains(r#"name="name" value="Broken""#), "the typed name is lost: {}", r.text);
    assert!(r.text.contains(r#"value="Not A Reference""#), "the typed reference is lost");
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
    std::fs::create_dir_all(app.data.path().join("BL11/20180101/S0011/scan_0007")).unwrap();
    std::fs::write(app.data.path().join("BL11/20180101/S0011/scan_0007/p.h5"), [1u8; 64]).unwrap();
    let sam = app.browser("sam").await;
    let proposal = app.browse(Method::GET, "/proposals/20180101", Some(&sam.cookie), None, &[]).await;
    assert!(proposal.text.contains("/proposals/20180101/experiments/S0011/datasets/new"));
    let alice = app.browser("alice").await;
    let theirs = app.browse(Method::GET, "/proposals/20180101", Some(&alice.cookie), None, &[]).await;
    assert!(!theirs.text.contains("datasets/new"), "alice is offered a link she may not use");

    let uri = "/proposals/20180101/experiments/S0011/datasets/new";
    let page = app.browse(Method::GET, uri, Some(&sam.cookie), None, &[]).await;
    assert_eq!(page.status, 200);
    assert!(page.text.contains(r#"value="BL11/20180101/S0011/""#), "starts at the experiment's folder: {}", page.text);
    let escape = [("_csrf", sam.csrf.as_str()), ("location", "20180101/../../etc"), ("metadata", "{}")];
    let r = app.browse(Method::POST, uri, Some(&sam.cookie), Some(&escape), ORIGIN).await;
    assert_eq!(r.status, 400, "a refusal is not a success");
    assert!(r.text.contains("location: must not contain"), "{}", r.text);
    assert!(
        r.text.contains(r#"data-field="location""#) && r.text.contains(r#"value="20180101/../../etc""#),
        "{}",
        r.text
    );
    let ok = [
        ("_csrf", sam.csrf.as_str()),
        ("location", "BL11/20180101/S0011/scan_0007"),
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
            Some(&[("_csrf", alice.csrf.as_str()), ("location", "BL11/20180101/S0011/scan_0007")]),
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

async fn audit_actions_after(db: &PgPool, last: i64) -> Vec<String> {
    sqlx::query_scalar("select action from audit_events where id > $1 order by id")
        .bind(last)
        .fetch_all(db)
        .await
        .unwrap()
}

async fn last_audit_id(db: &PgPool) -> i64 {
    sqlx::query_scalar("select coalesce(max(id), 0) from audit_events").fetch_one(db).await.unwrap()
}

/// The whole of a table as text, to show that a refused form changed nothing.
async fn table_text(db: &PgPool, table: &str) -> String {
    sqlx::query_scalar(&format!("select coalesce(string_agg(t::text, '|' order by t::text), '') from {table} t"))
        .fetch_one(db)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn flavour_forms_add_edit_disable_and_delete(db: PgPool) {
    let app = TestApp::new(db).await;
    let admin = app.browser("admin").await;
    let csrf = admin.csrf.as_str();
    let post = |uri: String, form: Vec<(&'static str, String)>| {
        let (app, cookie) = (&app, admin.cookie.clone());
        async move {
            let mut fields: Vec<(&str, &str)> = vec![("_csrf", csrf)];
            fields.extend(form.iter().map(|(k, v)| (*k, v.as_str())));
            app.browse(Method::POST, &uri, Some(&cookie), Some(&fields), ORIGIN).await
        }
    };
    let l4 = |cpu: &str, tolerations: &str| {
        vec![
            ("name", "l4".to_string()),
            ("cpu_millis", cpu.to_string()),
            ("memory_mib", "8192".to_string()),
            ("gpus", "1".to_string()),
            ("gpu_type", "nvidia-l4".to_string()),
            ("disk_gib", "20".to_string()),
            ("node_selector", r#"{"gpu": "l4"}"#.to_string()),
            ("tolerations", tolerations.to_string()),
            ("allowed_roles", "scientist".to_string()),
            ("allowed_roles", "admin".to_string()),
            ("enabled", "true".to_string()),
            ("slurm_partition", "gpu".to_string()),
            ("slurm_account", " beamline-ops ".to_string()),
            ("slurm_qos", "".to_string()),
            ("slurm_constraint", "v100&ib".to_string()),
        ]
    };
    let with = |mut form: Vec<(&'static str, String)>, name: &'static str, value: &str| {
        form.retain(|(k, _)| *k != name);
        form.push((name, value.to_string()));
        form
    };
    let tolerations = r#"[{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]"#;

    // Bad values: a 400 naming the field, the form as typed, nothing written.
    let before = (table_text(&app.db, "flavours").await, last_audit_id(&app.db).await);
    for (form, field, typed) in [
        (l4("lots", tolerations), "cpu millis: must be a whole number", "lots"),
        (l4("0", tolerations), "cpu millis: must be more than 0", "0"),
        (l4("4000", "[{\"key\": \"gpu\", \"operator\": \"Sometimes\"}]"), "tolerations: item 0", "Sometimes"),
        (l4("4000", "not json"), "tolerations: is not JSON", "not json"),
        (
            with(l4("4000", tolerations), "slurm_partition", "gpu;x"),
            "slurm partition: &#39;;&#39; is not allowed",
            "gpu;x",
        ),
        (
            with(l4("4000", tolerations), "slurm_constraint", "v100 ib"),
            "slurm constraint: &#39; &#39; is not allowed",
            "v100 ib",
        ),
    ] {
        let r = post("/admin/flavours".into(), form).await;
        assert_eq!(r.status, 400, "{}", r.text);
        assert!(r.text.contains(field), "no {field:?} in {}", r.text);
        assert!(r.text.contains("value=\"l4\"") && r.text.contains(&typed.replace('"', "&#34;")), "{}", r.text);
    }
    assert_eq!((table_text(&app.db, "flavours").await, last_audit_id(&app.db).await), before);

    // Added: one row, one audit event.
    let r = post("/admin/flavours".into(), l4("4000", tolerations)).await;
    assert_eq!(r.status, 303, "{}", r.text);
    let (id, cpu, roles, toleration): (uuid::Uuid, i32, Vec<String>, serde_json::Value) =
        sqlx::query_as("select id, cpu_millis, allowed_roles, tolerations from flavours where name = 'l4'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!((cpu, roles.as_slice()), (4000, ["scientist".to_string(), "admin".to_string()].as_slice()));
    assert_eq!(toleration[0]["operator"], "Exists");
    assert_eq!(audit_actions_after(&app.db, before.1).await, ["flavour.create"]);
    let slurm: (Option<String>, Option<String>, Option<String>, Option<String>) = sqlx::query_as(
        "select slurm_partition, slurm_account, slurm_qos, slurm_constraint from flavours where name = 'l4'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!(slurm, (Some("gpu".into()), Some("beamline-ops".into()), None, Some("v100&ib".into())));
    let page = app.browse(Method::GET, "/admin/flavours", Some(&admin.cookie), None, &[]).await;
    assert!(
        page.text.contains(
            "partition <code>gpu</code><br>account <code>beamline-ops</code><br>constraint <code>v100&#38;ib</code>"
        ),
        "{}",
        page.text
    );
    assert!(page.text.contains("cluster defaults"), "the flavours without Slurm settings: {}", page.text);
    // The same name again: a 409 on the page.
    let r = post("/admin/flavours".into(), l4("4000", tolerations)).await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert!(r.text.contains("the name is already taken"), "{}", r.text);

    // Edited from its form.
    let page = app.browse(Method::GET, &format!("/admin/flavours?edit={id}"), Some(&admin.cookie), None, &[]).await;
    assert_eq!(page.status, 200);
    assert!(page.text.contains(&format!("action=\"/admin/flavours/{id}\"")) && page.text.contains("value=\"4000\""));
    assert!(page.text.contains("name=\"slurm_constraint\" value=\"v100&#38;ib\""), "{}", page.text);
    let last = last_audit_id(&app.db).await;
    let mut changed = l4("6000", tolerations);
    changed[3] = ("gpus", "2".into());
    let r = post(format!("/admin/flavours/{id}"), changed).await;
    assert_eq!(r.status, 303, "{}", r.text);
    let (cpu, gpus): (i32, i32) = sqlx::query_as("select cpu_millis, gpus from flavours where id = $1")
        .bind(id)
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!((cpu, gpus), (6000, 2));
    assert_eq!(audit_actions_after(&app.db, last).await, ["flavour.update"]);
    // A GPU type without GPUs: refused, the flavour as it was.
    let mut bad = l4("6000", tolerations);
    bad[3] = ("gpus", "0".into());
    let r = post(format!("/admin/flavours/{id}"), bad).await;
    assert_eq!(r.status, 400);
    assert!(r.text.contains("gpu type: only a flavour with GPUs has a GPU type"), "{}", r.text);
    let gpus: i32 =
        sqlx::query_scalar("select gpus from flavours where id = $1").bind(id).fetch_one(&app.db).await.unwrap();
    assert_eq!(gpus, 2);

    // Disabled, then deleted; each one event.
    let last = last_audit_id(&app.db).await;
    let r = post(format!("/admin/flavours/{id}/enabled"), vec![]).await;
    assert_eq!(r.status, 303);
    let flavours = app.get_as("alice", "/api/v1/flavours").await;
    assert!(!flavours.text.contains("\"l4\""));
    let r = post(format!("/admin/flavours/{id}/delete"), vec![]).await;
    assert_eq!(r.status, 303);
    assert_eq!(audit_actions_after(&app.db, last).await, ["flavour.disable", "flavour.delete"]);
    // A flavour some session used cannot go: a 409 with the reason, on the page.
    insert_session(
        &app.db,
        "alice",
        "S0011",
        "Xfce desktop",
        "stopped",
        (2000, 0),
        (Some("2026-11-01T00:00:00Z"), Some("2026-11-01T01:00:00Z")),
    )
    .await;
    let small: uuid::Uuid =
        sqlx::query_scalar("select id from flavours where name = 'small'").fetch_one(&app.db).await.unwrap();
    let r = post(format!("/admin/flavours/{small}/delete"), vec![]).await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert!(r.text.contains("disable it instead"), "{}", r.text);
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn quota_forms_set_and_remove_with_the_use_beside(db: PgPool) {
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
    let csrf = admin.csrf.as_str();
    let post = |uri: &'static str, form: Vec<(&'static str, &'static str)>| {
        let (app, cookie) = (&app, admin.cookie.clone());
        async move {
            let mut fields: Vec<(&str, &str)> = vec![("_csrf", csrf)];
            fields.extend(form);
            app.browse(Method::POST, uri, Some(&cookie), Some(&fields), ORIGIN).await
        }
    };
    let alice_quota = || async {
        sqlx::query_as::<_, (Option<i32>, Option<i32>)>(
            "select q.max_sessions, q.max_gpu_hours_month from quotas q join users u on u.id = q.user_id
             where q.scope = 'user' and u.username = 'alice'",
        )
        .fetch_optional(&app.db)
        .await
        .unwrap()
    };

    // Bad values: a 4xx with the message, the values as typed, nothing written.
    let before = (table_text(&app.db, "quotas").await, last_audit_id(&app.db).await);
    for (form, status, message) in [
        (
            vec![("scope", "users"), ("subject", "alice"), ("max_sessions", "-1")],
            400,
            "max sessions: must not be negative",
        ),
        (vec![("scope", "users"), ("subject", "alice"), ("max_gpus", "two")], 400, "max gpus: must be a whole number"),
        (
            vec![("scope", "users"), ("subject", "nobody"), ("max_sessions", "3")],
            404,
            "there is no user &#34;nobody&#34;",
        ),
        (
            vec![("scope", "planets"), ("subject", "mars"), ("max_sessions", "3")],
            404,
            "choose a role, a user or a proposal",
        ),
    ] {
        let typed = form.last().unwrap().1;
        let r = post("/admin/quotas", form).await;
        assert_eq!(r.status, status, "{}", r.text);
        assert!(r.text.contains(message), "no {message:?} in {}", r.text);
        assert!(r.text.contains(&format!("value=\"{typed}\"")), "the typed {typed:?} is gone: {}", r.text);
    }
    // Typed into an existing row: the row keeps what was typed.
    let r = post("/admin/quotas", vec![("scope", "proposals"), ("subject", "20180101"), ("max_sessions", "-4")]).await;
    assert_eq!(r.status, 400);
    assert!(r.text.contains("class=\"refused\"") && r.text.contains("value=\"-4\""), "{}", r.text);
    assert_eq!((table_text(&app.db, "quotas").await, last_audit_id(&app.db).await), before);

    // Set, changed, removed: each one event; the use shows beside the limit.
    let r = post(
        "/admin/quotas",
        vec![("scope", "users"), ("subject", "alice"), ("max_sessions", "4"), ("max_gpu_hours_month", "10")],
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.text);
    assert_eq!(alice_quota().await, Some((Some(4), Some(10))));
    let page = app.browse(Method::GET, "/admin/quotas", Some(&admin.cookie), None, &[]).await;
    let row = page.text.split("data-quota=\"user/alice\"").nth(1).unwrap().split("</tr>").next().unwrap().to_owned();
    assert!(row.contains("1 /") && row.contains("value=\"4\"") && row.contains("value=\"10\""), "{row}");
    let r = post("/admin/quotas", vec![("scope", "users"), ("subject", "alice"), ("max_sessions", "")]).await;
    assert_eq!(r.status, 303);
    assert_eq!(alice_quota().await, Some((None, None)), "an empty field is no limit of its own");
    let r = post("/admin/quotas", vec![("scope", "roles"), ("subject", "user"), ("max_gpu_hours_month", "20")]).await;
    assert_eq!(r.status, 303);
    let r = post("/admin/quotas/delete", vec![("scope", "users"), ("subject", "alice")]).await;
    assert_eq!(r.status, 303);
    assert_eq!(alice_quota().await, None);
    assert_eq!(audit_actions_after(&app.db, before.1).await, ["quota.set", "quota.set", "quota.set", "quota.delete"]);
    // A role's defaults cannot be removed (only emptied): said on the page.
    let last = last_audit_id(&app.db).await;
    let r = post("/admin/quotas/delete", vec![("scope", "roles"), ("subject", "user")]).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(
        r.text.contains("a role&#39;s defaults cannot be removed") || r.text.contains("defaults cannot be removed"),
        "{}",
        r.text
    );
    let r = post("/admin/quotas/delete", vec![("scope", "users"), ("subject", "bob")]).await;
    assert_eq!(r.status, 404, "bob has no override: {}", r.text);
    assert!(audit_actions_after(&app.db, last).await.is_empty());
}

/// Every form on the admin pages, by the route it posts to. The test below fails when a
/// page gains a form that is missing here.
const ADMIN_FORMS: &[&str] = &[
    "/admin/images",
    "/admin/images/{id}",
    "/admin/images/{id}/enabled",
    "/admin/images/{id}/delete",
    "/admin/flavours",
    "/admin/flavours/{id}",
    "/admin/flavours/{id}/enabled",
    "/admin/flavours/{id}/delete",
    "/admin/quotas",
    "/admin/quotas/delete",
    "/admin/sessions/stop",
    "/admin/sessions/{id}/extend",
    "/admin/users/{username}/role",
    "/admin/users/{username}/enabled",
    "/admin/notices",
    "/admin/notices/{id}/delete",
    "/admin/import",
];

/// The routes the POST forms of a page go to, ids and usernames as placeholders.
fn post_actions(html: &str) -> Vec<(String, String)> {
    html.split("<form method=\"post\" action=\"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .filter(|action| action.starts_with("/admin"))
        .map(|action| {
            let template = action
                .split('/')
                .enumerate()
                .map(|(n, part)| {
                    if uuid::Uuid::parse_str(part).is_ok() {
                        "{id}".to_string()
                    } else if n == 3 && action.starts_with("/admin/users/") {
                        "{username}".to_string()
                    } else {
                        part.to_string()
                    }
                })
                .collect::<Vec<_>>()
                .join("/");
            (template, action.to_string())
        })
        .collect()
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn every_admin_form_refuses_users_and_scientists(db: PgPool) {
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
    sqlx::query("insert into notices (message, expires_at) values ('soon', now() + interval '1 hour')")
        .execute(&app.db)
        .await
        .unwrap();
    let small: uuid::Uuid =
        sqlx::query_scalar("select id from flavours where name = 'small'").fetch_one(&app.db).await.unwrap();
    let image: uuid::Uuid =
        sqlx::query_scalar("select id from images where name = 'JupyterLab'").fetch_one(&app.db).await.unwrap();
    let admin = app.browser("admin").await;
    let mut forms = std::collections::BTreeMap::new();
    for page in [
        "/admin/images".to_string(),
        format!("/admin/images?edit={image}"),
        "/admin/flavours".into(),
        format!("/admin/flavours?edit={small}"),
        "/admin/quotas".into(),
        "/admin/sessions".into(),
        "/admin/users".into(),
        "/admin/usage".into(),
        "/admin/audit".into(),
        "/admin/notices".into(),
        "/admin/import".into(),
    ] {
        let r = app.browse(Method::GET, &page, Some(&admin.cookie), None, &[]).await;
        assert_eq!(r.status, 200, "{page}");
        for (template, action) in post_actions(&r.text) {
            forms.entry(template).or_insert(action);
        }
    }
    let found: Vec<&str> = forms.keys().map(String::as_str).collect();
    let mut wanted = ADMIN_FORMS.to_vec();
    wanted.sort();
    assert_eq!(found, wanted, "the admin pages' forms and ADMIN_FORMS differ");

    let tables = ["images", "flavours", "quotas", "users", "sessions", "notices", "proposals"];
    let mut before = Vec::new();
    for t in tables {
        before.push(table_text(&app.db, t).await);
    }
    let last = last_audit_id(&app.db).await;
    for who in ["alice", "sam"] {
        let browser = app.browser(who).await;
        for action in forms.values() {
            let form = [
                ("_csrf", browser.csrf.as_str()),
                ("name", "x"),
                ("cpu_millis", "1000"),
                ("memory_mib", "1024"),
                ("scope", "users"),
                ("subject", "alice"),
                ("max_sessions", "9"),
                ("role", "admin"),
                ("enabled", "false"),
                ("message", "x"),
                ("hours", "4"),
            ];
            let r = app.browse(Method::POST, action, Some(&browser.cookie), Some(&form), ORIGIN).await;
            assert_eq!(r.status, 403, "{who}: {action}: {}", r.text);
        }
    }
    for (t, was) in tables.iter().zip(before) {
        assert_eq!(table_text(&app.db, t).await, was, "a refused form changed {t}");
    }
    assert!(audit_actions_after(&app.db, last).await.is_empty());
}

/// Issue 14 item 8: an admin edits an image from the images page, as flavours are edited;
/// whether it is enabled and the flavours it runs on stay as they were; a refused edit
/// comes back as typed.
#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn an_admin_edits_an_image_and_keeps_its_state_and_flavours(db: PgPool) {
    let app = TestApp::new(db).await;
    let admin = app.browser("admin").await;
    let id: uuid::Uuid = sqlx::query_scalar("update images set enabled = false where name = 'JupyterLab' returning id")
        .fetch_one(&app.db)
        .await
        .unwrap();
    let small: uuid::Uuid =
        sqlx::query_scalar("insert into image_flavours (image_id, flavour_id) select $1, id from flavours where name = 'small' returning flavour_id")
            .bind(id)
            .fetch_one(&app.db)
            .await
            .unwrap();
    let flavours = vec![small];
    let page = app.browse(Method::GET, &format!("/admin/images?edit={id}"), Some(&admin.cookie), None, &[]).await;
    assert!(page.text.contains(&format!(r#"action="/admin/images/{id}""#)), "{}", page.text);
    assert!(page.text.contains(r#"name="name" value="JupyterLab""#) && page.text.contains("Save changes"));
    let form = [
        ("_csrf", admin.csrf.as_str()),
        ("name", "JupyterLab 4"),
        ("kind", "notebook"),
        ("reference", "registry.facility.example/daas/jupyterlab:4.2"),
        ("default_cpu_millis", "1000"),
        ("default_memory_mib", "2048"),
        ("description", "Notebooks, now with 4.2"),
        ("allowed_roles", "scientist"),
        ("local_command", r#"{"argv": ["jupyter", "lab"]}"#),
    ];
    let uri = format!("/admin/images/{id}");
    let r = app.browse(Method::POST, &uri, Some(&admin.cookie), Some(&form), ORIGIN).await;
    assert_eq!(r.status, 303, "{}", r.text);
    let (name, enabled, kept, roles): (String, bool, Vec<uuid::Uuid>, Vec<String>) = sqlx::query_as(
        "select name, enabled, array(select flavour_id from image_flavours where image_id = id), allowed_roles
             from images where id = $1",
    )
    .bind(id)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!((name.as_str(), enabled, kept, roles), ("JupyterLab 4", false, flavours, vec!["scientist".to_string()]));

    let mut bad = form;
    bad[8] = ("local_command", "{not json");
    let r = app.browse(Method::POST, &uri, Some(&admin.cookie), Some(&bad), ORIGIN).await;
    assert_eq!(r.status, 400);
    assert!(r.text.contains("local_command") && r.text.contains("{not json</textarea>"), "{}", r.text);
    assert!(r.text.contains(&format!(r#"action="/admin/images/{id}""#)), "the refused edit became an add");
}
