//! `/api/v1/admin/...`: who may call it, what every change leaves in the audit log, and
//! each area's rules (images, flavours, quotas, users, sessions, notices, imports).

use axum::http::Method;
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

use daas::runtime::SlurmPlacement;

use crate::common::{add_trivial_image, launch_body, wait_state, TestApp};

/// A session row as the launch code would leave it (times as RFC 3339 text).
pub async fn insert_session(
    db: &PgPool,
    owner: &str,
    experiment: &str,
    image: &str,
    state: &str,
    (cpu_millis, gpus): (i32, i32),
    (started_at, stopped_at): (Option<&str>, Option<&str>),
) -> Uuid {
    sqlx::query_scalar(
        "insert into sessions (owner_id, experiment_id, image_id, flavour_id, kind, state, cpu_millis, memory_mib, gpus,
                               runtime, created_at, started_at, stopped_at, expires_at, failure_reason)
         select u.id, e.id, i.id, f.id, i.kind, $5, $6, 1024, $7, 'local',
                coalesce($8::timestamptz, now()), $8::timestamptz, $9::timestamptz,
                coalesce($8::timestamptz, now()) + interval '1 day',
                case when $5 = 'failed' then 'test' end
         from users u, experiments e, images i, flavours f
         where u.username = $1 and e.code = $2 and i.name = $3 and f.name = $4 returning id",
    )
    .bind(owner)
    .bind(experiment)
    .bind(image)
    .bind("small")
    .bind(state)
    .bind(cpu_millis)
    .bind(gpus)
    .bind(started_at)
    .bind(stopped_at)
    .fetch_one(db)
    .await
    .unwrap()
}

async fn id_of(db: &PgPool, table: &str, name: &str) -> Uuid {
    sqlx::query_scalar(&format!("select id from {table} where name = $1")).bind(name).fetch_one(db).await.unwrap()
}

async fn audit_count(db: &PgPool) -> i64 {
    sqlx::query_scalar("select count(*) from audit_events").fetch_one(db).await.unwrap()
}

/// Every (method, path template) under `/api/v1/admin` in the OpenAPI document.
async fn admin_routes(app: &TestApp) -> Vec<(Method, String)> {
    let doc = app.get("/api/v1/openapi.json", None).await.body;
    let mut routes = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        if !path.starts_with("/api/v1/admin") {
            continue;
        }
        for method in item.as_object().unwrap().keys() {
            routes.push((method.to_uppercase().parse::<Method>().unwrap(), path.clone()));
        }
    }
    routes.sort_by(|a, b| (a.1.as_str(), a.0.as_str()).cmp(&(b.1.as_str(), b.0.as_str())));
    routes
}

/// A concrete URI for a template, with plausible values for its parameters.
fn fill(template: &str, id: Uuid) -> String {
    template
        .replace("{id}", &id.to_string())
        .replace("{username}", "alice")
        .replace("{scope}", "users")
        .replace("{subject}", "alice")
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn every_admin_route_refuses_users_and_scientists(db: PgPool) {
    let app = TestApp::new(db).await;
    let routes = admin_routes(&app).await;
    assert!(routes.len() >= 30, "the OpenAPI document lists only {} admin routes", routes.len());
    let image = id_of(&app.db, "images", "Xfce desktop").await;
    let before = audit_count(&app.db).await;
    let alice = app.token("alice").await;
    let sam = app.token("sam").await;
    for (method, template) in &routes {
        let uri = fill(template, image);
        let body = (*method != Method::GET && *method != Method::DELETE).then(|| json!({}));
        for (who, token) in [("alice", &alice), ("sam", &sam)] {
            let r = app.request(method.clone(), &uri, Some(token), body.clone()).await;
            assert_eq!(r.status, 403, "{who}: {method} {uri}: {}", r.text);
            assert_eq!(r.error_code(), "forbidden");
        }
        let r = app.request(method.clone(), &uri, None, body.clone()).await;
        assert_eq!(r.status, 401, "anonymous: {method} {uri}: {}", r.text);
    }
    assert_eq!(audit_count(&app.db).await, before, "a refused request left an audit event");
    let enabled: bool =
        sqlx::query_scalar("select enabled from images where id = $1").bind(image).fetch_one(&app.db).await.unwrap();
    assert!(enabled);
}

fn image_body(name: &str) -> Value {
    json!({
        "name": name, "kind": "job", "reference": "ghcr.io/facility/recon:2.1",
        "default_cpu_millis": 4000, "default_memory_mib": 8192, "default_gpus": 1,
        "parameter_schema": {"type": "object", "properties": {"iterations": {"type": "integer", "minimum": 1}}},
        "local_command": {"argv": ["python3", "-m", "recon"]}
    })
}

fn flavour_body(name: &str) -> Value {
    json!({"name": name, "cpu_millis": 1000, "memory_mib": 2048, "gpus": 1, "gpu_type": "nvidia-l4",
           "node_selector": {"gpu": "l4"}, "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]})
}

/// One request of the audit table.
struct Change {
    method: Method,
    /// The route as the OpenAPI document names it.
    template: &'static str,
    uri: String,
    body: Option<Value>,
    status: u16,
    /// The action of the one audit event it must leave; `None`: it must leave none.
    action: Option<&'static str>,
}

fn change(
    method: Method,
    template: &'static str,
    uri: String,
    body: Option<Value>,
    status: u16,
    action: Option<&'static str>,
) -> Change {
    Change { method, template, uri, body, status, action }
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn every_admin_change_leaves_exactly_one_audit_event(db: PgPool) {
    let app = TestApp::new(db).await;
    let db = &app.db;
    let admin = app.token("admin").await;
    let xfce = id_of(db, "images", "Xfce desktop").await;
    let small = id_of(db, "flavours", "small").await;
    let scratch_image: Uuid = sqlx::query_scalar(
        "insert into images (name, kind, reference, protocol, default_cpu_millis, default_memory_mib)
         values ('scratch', 'desktop', 'x/y:1', 'vnc', 1000, 1024) returning id",
    )
    .fetch_one(db)
    .await
    .unwrap();
    let scratch_flavour: Uuid =
        sqlx::query_scalar("insert into flavours (name, cpu_millis, memory_mib) values ('scratch', 1, 1) returning id")
            .fetch_one(db)
            .await
            .unwrap();
    let notice: Uuid = sqlx::query_scalar(
        "insert into notices (message, expires_at) values ('old news', now() + interval '1 hour') returning id",
    )
    .fetch_one(db)
    .await
    .unwrap();
    let alice = daas::auth::users::find(db, "alice").await.unwrap();
    let (token, _) = daas::auth::tokens::create(db, alice, "script", None).await.unwrap();
    let running = insert_session(
        db,
        "alice",
        "S0011",
        "Xfce desktop",
        "running",
        (2000, 0),
        (Some("2026-11-01T00:00:00Z"), None),
    )
    .await;
    let starting =
        insert_session(db, "carol", "S0011", "JupyterLab", "starting", (2000, 0), (Some("2026-11-01T00:00:00Z"), None))
            .await;
    std::fs::create_dir_all(app.data.path().join("BL11/20180101/S0011/extra")).unwrap();
    let dataset = id_of(db, "datasets", "tomo_scan_0031").await;
    let import = json!({"proposals": [{"identifier": "20261121", "title": "New", "beamline": "BL11",
                                       "members": [{"username": "erin", "role": "pi"}]}]});
    let later = (time::OffsetDateTime::now_utc() + time::Duration::days(2))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();

    use Method as M;
    let table = vec![
        change(
            M::POST,
            "/api/v1/admin/images",
            "/api/v1/admin/images".into(),
            Some(image_body("Recon 2")),
            201,
            Some("image.create"),
        ),
        change(
            M::POST,
            "/api/v1/admin/images",
            "/api/v1/admin/images".into(),
            Some(
                json!({"name": "bad", "kind": "desktop", "reference": "Bad Ref", "default_cpu_millis": 1, "default_memory_mib": 1}),
            ),
            400,
            None,
        ),
        change(
            M::PUT,
            "/api/v1/admin/images/{id}",
            format!("/api/v1/admin/images/{xfce}"),
            Some(
                json!({"name": "Xfce desktop", "kind": "desktop", "reference": "registry.facility.example/daas/desktop-xfce:1.1",
                           "default_cpu_millis": 2000, "default_memory_mib": 4096, "enabled": false}),
            ),
            200,
            Some("image.disable"),
        ),
        change(
            M::DELETE,
            "/api/v1/admin/images/{id}",
            format!("/api/v1/admin/images/{scratch_image}"),
            None,
            204,
            Some("image.delete"),
        ),
        change(M::DELETE, "/api/v1/admin/images/{id}", format!("/api/v1/admin/images/{xfce}"), None, 409, None),
        change(
            M::POST,
            "/api/v1/admin/flavours",
            "/api/v1/admin/flavours".into(),
            Some(flavour_body("l4")),
            201,
            Some("flavour.create"),
        ),
        change(
            M::PUT,
            "/api/v1/admin/flavours/{id}",
            format!("/api/v1/admin/flavours/{small}"),
            Some(json!({"name": "small", "cpu_millis": 1000, "memory_mib": 2048})),
            200,
            Some("flavour.update"),
        ),
        change(
            M::DELETE,
            "/api/v1/admin/flavours/{id}",
            format!("/api/v1/admin/flavours/{scratch_flavour}"),
            None,
            204,
            Some("flavour.delete"),
        ),
        change(
            M::PUT,
            "/api/v1/admin/quotas/{scope}/{subject}",
            "/api/v1/admin/quotas/roles/user".into(),
            Some(json!({"max_sessions": 3, "max_gpus": 1})),
            200,
            Some("quota.set"),
        ),
        change(
            M::PUT,
            "/api/v1/admin/quotas/{scope}/{subject}",
            "/api/v1/admin/quotas/users/alice".into(),
            Some(json!({"max_sessions": 5})),
            200,
            Some("quota.set"),
        ),
        change(
            M::PUT,
            "/api/v1/admin/quotas/{scope}/{subject}",
            "/api/v1/admin/quotas/users/alice".into(),
            Some(json!({"max_sessions": -1})),
            400,
            None,
        ),
        change(
            M::DELETE,
            "/api/v1/admin/quotas/{scope}/{subject}",
            "/api/v1/admin/quotas/proposals/20180101".into(),
            None,
            204,
            Some("quota.delete"),
        ),
        change(
            M::PUT,
            "/api/v1/admin/users/{username}/role",
            "/api/v1/admin/users/bob/role".into(),
            Some(json!({"role": "scientist"})),
            200,
            Some("user.set_role"),
        ),
        change(
            M::PUT,
            "/api/v1/admin/users/{username}/role",
            "/api/v1/admin/users/admin/role".into(),
            Some(json!({"role": "user"})),
            409,
            None,
        ),
        change(
            M::PUT,
            "/api/v1/admin/users/{username}/enabled",
            "/api/v1/admin/users/dave/enabled".into(),
            Some(json!({"enabled": false})),
            200,
            Some("user.disable"),
        ),
        change(
            M::PUT,
            "/api/v1/admin/users/{username}/beamlines",
            "/api/v1/admin/users/bob/beamlines".into(),
            Some(json!({"beamlines": ["BL04", "BL02"]})),
            200,
            Some("user.set_beamlines"),
        ),
        change(
            M::DELETE,
            "/api/v1/admin/users/{username}/tokens/{id}",
            format!("/api/v1/admin/users/alice/tokens/{token}"),
            None,
            204,
            Some("token.revoke"),
        ),
        change(
            M::POST,
            "/api/v1/admin/sessions/{id}/extend",
            format!("/api/v1/admin/sessions/{running}/extend"),
            Some(json!({"expires_at": later})),
            200,
            Some("session.extend"),
        ),
        change(
            M::POST,
            "/api/v1/admin/sessions/{id}/extend",
            format!("/api/v1/admin/sessions/{running}/extend"),
            Some(json!({"expires_at": "2020-01-01T00:00:00Z"})),
            400,
            None,
        ),
        change(
            M::POST,
            "/api/v1/admin/sessions/{id}/stop",
            format!("/api/v1/admin/sessions/{running}/stop"),
            None,
            200,
            Some("session.stop"),
        ),
        change(
            M::POST,
            "/api/v1/admin/sessions/stop",
            "/api/v1/admin/sessions/stop".into(),
            Some(json!({"ids": [starting]})),
            200,
            Some("session.stop"),
        ),
        change(
            M::POST,
            "/api/v1/admin/sessions/stop",
            "/api/v1/admin/sessions/stop".into(),
            Some(json!({"ids": [running]})),
            200,
            None,
        ),
        change(
            M::POST,
            "/api/v1/admin/notices",
            "/api/v1/admin/notices".into(),
            Some(json!({"message": "Maintenance on Tuesday", "level": "warning", "expires_at": later})),
            201,
            Some("notice.create"),
        ),
        change(
            M::DELETE,
            "/api/v1/admin/notices/{id}",
            format!("/api/v1/admin/notices/{notice}"),
            None,
            204,
            Some("notice.delete"),
        ),
        change(
            M::POST,
            "/api/v1/admin/proposals/import/preview",
            "/api/v1/admin/proposals/import/preview".into(),
            Some(import.clone()),
            200,
            None,
        ),
        change(
            M::POST,
            "/api/v1/admin/proposals/import",
            "/api/v1/admin/proposals/import".into(),
            Some(import),
            200,
            Some("proposal.import"),
        ),
        change(
            M::POST,
            "/api/v1/proposals/{id}/experiments/{code}/datasets",
            "/api/v1/proposals/20180101/experiments/S0011/datasets".into(),
            Some(json!({"location": "BL11/20180101/S0011/extra"})),
            201,
            Some("dataset.link"),
        ),
        change(
            M::DELETE,
            "/api/v1/datasets/{id}",
            format!("/api/v1/datasets/{dataset}"),
            None,
            204,
            Some("dataset.unlink"),
        ),
    ];

    // The table covers every route of the admin API that changes something (a preview
    // changes nothing, and must leave no event).
    for (method, template) in admin_routes(&app).await {
        if method != Method::GET {
            let changes = !template.ends_with("/preview");
            assert!(
                table.iter().any(|c| c.method == method && c.template == template && c.action.is_some() == changes),
                "no successful request to {method} {template} in the table"
            );
        }
    }

    for c in &table {
        let last: i64 =
            sqlx::query_scalar("select coalesce(max(id), 0) from audit_events").fetch_one(db).await.unwrap();
        let r = app.request(c.method.clone(), &c.uri, Some(&admin), c.body.clone()).await;
        assert_eq!(r.status.as_u16(), c.status, "{} {}: {}", c.method, c.uri, r.text);
        let events: Vec<(String, Option<String>, Option<String>)> =
            sqlx::query_as("select action, actor_name, request_id from audit_events where id > $1 order by id")
                .bind(last)
                .fetch_all(db)
                .await
                .unwrap();
        match c.action {
            Some(action) => {
                assert_eq!(events.len(), 1, "{} {}: {events:?}", c.method, c.uri);
                assert_eq!(events[0].0, action, "{} {}", c.method, c.uri);
                assert_eq!(events[0].1.as_deref(), Some("admin"));
                assert!(events[0].2.is_some(), "the event carries the request id");
            }
            None => assert!(events.is_empty(), "{} {} left {events:?}", c.method, c.uri),
        }
    }
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn images_are_validated_and_disabled_ones_cannot_be_chosen(db: PgPool) {
    let app = TestApp::new(db).await;
    let admin = app.token("admin").await;
    let post = |body: Value| {
        let (app, admin) = (&app, &admin);
        async move { app.request(Method::POST, "/api/v1/admin/images", Some(admin), Some(body)).await }
    };
    for (field, value, wanted) in [
        ("reference", json!("registry.example/Upper/case:1"), "reference"),
        ("reference", json!("app@sha256:1234"), "reference"),
        ("parameter_schema", json!({"type": "objekt"}), "parameter_schema"),
        ("parameter_schema", json!({"type": "object", "properties": {"n": {"minimum": "one"}}}), "parameter_schema"),
        (
            "parameter_schema",
            json!({"type": "object", "properties": {"s": {"type": "string", "pattern": "("}}}),
            "parameter_schema",
        ),
        ("parameter_schema", json!({"type": "array"}), "parameter_schema"),
        ("kind", json!("vm"), "kind"),
        ("protocol", json!("vnc"), "protocol"),
        ("allowed_roles", json!(["user", "guest"]), "allowed_roles"),
        ("default_memory_mib", json!(0), "default_memory_mib"),
        ("local_command", json!({"argv": []}), "local_command"),
        ("flavours", json!([Uuid::new_v4()]), "flavours"),
    ] {
        let mut body = image_body("Recon 2");
        body[field] = value.clone();
        let r = post(body).await;
        assert_eq!(r.status, 400, "{field} = {value}: {}", r.text);
        assert_eq!(r.body["error"]["field"], wanted, "{}", r.text);
    }
    let mut desktop = image_body("Desk");
    desktop["kind"] = json!("desktop");
    let r = post(desktop).await;
    assert_eq!((r.status.as_u16(), r.body["error"]["field"].as_str()), (400, Some("parameter_schema")), "{}", r.text);
    let count: i64 = sqlx::query_scalar("select count(*) from images").fetch_one(&app.db).await.unwrap();
    assert_eq!(count, 4, "a refused image was written");

    let created = post(image_body("Recon 2")).await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.body["protocol"], "none");
    assert_eq!(post(image_body("Recon 2")).await.status, 409);
    let names = |body: &Value| {
        body.as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
    };
    assert!(names(&app.get_as("alice", "/api/v1/images").await.body).contains(&"Recon 2".to_string()));

    let id = created.body["id"].as_str().unwrap();
    let mut body = image_body("Recon 2");
    body["enabled"] = json!(false);
    let r = app.request(Method::PUT, &format!("/api/v1/admin/images/{id}"), Some(&admin), Some(body)).await;
    assert_eq!((r.status.as_u16(), &r.body["enabled"]), (200, &json!(false)), "{}", r.text);
    assert!(!names(&app.get_as("alice", "/api/v1/images").await.body).contains(&"Recon 2".to_string()));
    let all = app.request(Method::GET, "/api/v1/admin/images", Some(&admin), None).await;
    assert!(names(&all.body).contains(&"Recon 2".to_string()), "the admin still sees it");

    // In use: deleting is refused, the image stays.
    insert_session(
        &app.db,
        "alice",
        "S0011",
        "Recon 2",
        "stopped",
        (1000, 0),
        (Some("2026-01-01T00:00:00Z"), Some("2026-01-01T01:00:00Z")),
    )
    .await;
    let r = app.request(Method::DELETE, &format!("/api/v1/admin/images/{id}"), Some(&admin), None).await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert_eq!(
        app.request(Method::GET, &format!("/api/v1/admin/images/{id}"), Some(&admin), None).await.body
            ["total_sessions"],
        1
    );
    let missing = Uuid::new_v4();
    assert_eq!(
        app.request(Method::DELETE, &format!("/api/v1/admin/images/{missing}"), Some(&admin), None).await.status,
        404
    );
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn flavours_are_validated(db: PgPool) {
    let app = TestApp::new(db).await;
    let admin = app.token("admin").await;
    for (field, value) in [
        ("gpu_type", json!("nvidia-l4")),
        ("node_selector", json!({"bad key!": "x"})),
        ("tolerations", json!([{"key": "gpu", "operator": "Sometimes"}])),
        ("cpu_millis", json!(0)),
    ] {
        let mut body = flavour_body("f");
        body[field] = value;
        if field == "gpu_type" {
            body["gpus"] = json!(0);
        }
        let r = app.request(Method::POST, "/api/v1/admin/flavours", Some(&admin), Some(body)).await;
        assert_eq!((r.status.as_u16(), r.body["error"]["field"].as_str()), (400, Some(field)), "{}", r.text);
    }
    let r = app.request(Method::POST, "/api/v1/admin/flavours", Some(&admin), Some(flavour_body("l4"))).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["tolerations"][0]["operator"], "Exists");
    let flavours = app.get_as("alice", "/api/v1/flavours").await;
    assert!(flavours.text.contains("\"l4\""));
}

/// `flavour_body(name)` with the Slurm settings in `slurm` (an object) added.
fn slurm_flavour_body(name: &str, slurm: Value) -> Value {
    let mut body = flavour_body(name);
    body.as_object_mut().unwrap().extend(slurm.as_object().unwrap().clone());
    body
}

/// The admin's list of flavours, for comparing before and after.
async fn admin_flavours(app: &TestApp, admin: &str) -> Value {
    let r = app.request(Method::GET, "/api/v1/admin/flavours", Some(admin), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn flavours_keep_their_slurm_placement_and_refuse_one_not_in_slurms_syntax(db: PgPool) {
    let app = TestApp::new(db).await;
    let admin = app.token("admin").await;
    let typed = json!({"slurm_partition": " gpu ", "slurm_account": "beamline-ops", "slurm_qos": "normal.2",
                       "slurm_constraint": "[rack1|rack2]&(v100*2|a100):4"});
    let r =
        app.request(Method::POST, "/api/v1/admin/flavours", Some(&admin), Some(slurm_flavour_body("l4", typed))).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["id"].as_str().unwrap().to_string();
    let stored = json!({"slurm_partition": "gpu", "slurm_account": "beamline-ops", "slurm_qos": "normal.2",
                        "slurm_constraint": "[rack1|rack2]&(v100*2|a100):4"});
    let slurm_of = |f: &Value| {
        json!({"slurm_partition": f["slurm_partition"], "slurm_account": f["slurm_account"],
               "slurm_qos": f["slurm_qos"], "slurm_constraint": f["slurm_constraint"]})
    };
    assert_eq!(slurm_of(&r.body), stored, "the answer to the create");
    let listed = admin_flavours(&app, &admin).await;
    let l4 = listed.as_array().unwrap().iter().find(|f| f["id"] == id.as_str()).unwrap();
    assert_eq!(slurm_of(l4), stored, "read back");

    // Bad values, on a create and on an update: a 400 naming the field, nothing written.
    let before = (admin_flavours(&app, &admin).await, audit_count(&app.db).await);
    for (field, value) in [
        ("slurm_partition", "gpu;reboot".to_string()),
        ("slurm_partition", "p".repeat(101)),
        ("slurm_account", "beamline ops".to_string()),
        ("slurm_qos", "$(id)".to_string()),
        ("slurm_constraint", "v100&`id`".to_string()),
        ("slurm_constraint", "v100,ib".to_string()),
    ] {
        for (method, uri, name) in [
            (Method::POST, "/api/v1/admin/flavours".to_string(), "l4-new"),
            (Method::PUT, format!("/api/v1/admin/flavours/{id}"), "l4"),
        ] {
            let body = slurm_flavour_body(name, json!({ field: value }));
            let r = app.request(method.clone(), &uri, Some(&admin), Some(body)).await;
            assert_eq!(
                (r.status.as_u16(), r.body["error"]["field"].as_str()),
                (400, Some(field)),
                "{method} {field} = {value:?}: {}",
                r.text
            );
        }
    }
    assert_eq!((admin_flavours(&app, &admin).await, audit_count(&app.db).await), before);
    // The table holds the same line for whatever writes past the API.
    for (column, value) in [("slurm_qos", "a b"), ("slurm_constraint", "v100;id"), ("slurm_account", "")] {
        let sql = format!("update flavours set {column} = $1 where name = 'l4'");
        let refused = sqlx::query(&sql).bind(value).execute(&app.db).await;
        assert!(refused.is_err(), "the database took {column} = {value:?}");
    }

    // Blank or left out: no setting (the cluster's default).
    let body = slurm_flavour_body("l4", json!({"slurm_partition": "  ", "slurm_qos": ""}));
    let r = app.request(Method::PUT, &format!("/api/v1/admin/flavours/{id}"), Some(&admin), Some(body)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let none = json!({"slurm_partition": null, "slurm_account": null, "slurm_qos": null, "slurm_constraint": null});
    assert_eq!(slurm_of(&r.body), none);

    // The OpenAPI document describes them, on what is sent and what comes back.
    let doc = app.get("/api/v1/openapi.json", None).await.body;
    for schema in ["FlavourInput", "AdminFlavour"] {
        for field in ["slurm_partition", "slurm_account", "slurm_qos", "slurm_constraint"] {
            let property = &doc["components"]["schemas"][schema]["properties"][field];
            assert!(
                property["description"].as_str().is_some_and(|d| d.contains("Slurm")),
                "{schema}.{field}: {property}"
            );
        }
    }
}

/// What an admin sets for Slurm reaches the runtime with the launch of a session on the
/// flavour.
#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn a_launch_carries_its_flavours_slurm_placement(db: PgPool) {
    let app = TestApp::new(db).await;
    let admin = app.token("admin").await;
    let flavour = json!({"name": "slurm-short", "cpu_millis": 1000, "memory_mib": 1024,
                         "slurm_partition": "short", "slurm_account": "s0011", "slurm_qos": "interactive",
                         "slurm_constraint": "ib&[rack1|rack2]"});
    let r = app.request(Method::POST, "/api/v1/admin/flavours", Some(&admin), Some(flavour)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    add_trivial_image(&app.db, "Trivial", 0).await;
    let alice = app.token("alice").await;
    let body = launch_body(&app, "Trivial", "slurm-short", "S0011").await;
    let r = app.request(Method::POST, "/api/v1/sessions", Some(&alice), Some(body)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["id"].as_str().unwrap().to_string();
    wait_state(&app, &alice, &id, 10, |s: &Value| s["state"] == "running").await;
    let launched = app.fake().launched();
    let spec = launched.iter().find(|s| s.session_id.to_string() == id).expect("the session was never launched");
    assert_eq!(
        spec.resources.slurm,
        SlurmPlacement {
            partition: Some("short".into()),
            account: Some("s0011".into()),
            qos: Some("interactive".into()),
            constraint: Some("ib&[rack1|rack2]".into()),
        }
    );
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn quotas_show_current_use(db: PgPool) {
    let app = TestApp::new(db).await;
    insert_session(
        &app.db,
        "alice",
        "S0011",
        "Tomography reconstruction",
        "running",
        (8000, 1),
        (Some("2026-11-01T00:00:00Z"), None),
    )
    .await;
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
    let admin = app.token("admin").await;
    let r =
        app.request(Method::PUT, "/api/v1/admin/quotas/users/alice", Some(&admin), Some(json!({"max_gpus": 2}))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let quotas = app.request(Method::GET, "/api/v1/admin/quotas", Some(&admin), None).await;
    let find = |scope: &str, subject: &str| {
        quotas
            .body
            .as_array()
            .unwrap()
            .iter()
            .find(|q| q["scope"] == scope && q["subject"] == subject)
            .cloned()
            .unwrap()
    };
    let alice = find("user", "alice");
    assert_eq!((alice["max_gpus"].as_i64(), alice["max_sessions"].as_i64()), (Some(2), None));
    assert_eq!(alice["in_use"]["sessions"], 1);
    assert_eq!(alice["in_use"]["cpu_millis"], 8000);
    assert_eq!(alice["in_use"]["gpus"], 1);
    assert!(alice["in_use"]["gpu_hours_month"].as_f64().unwrap() > 0.0);
    let proposal = find("proposal", "20180101");
    assert_eq!((proposal["max_sessions"].as_i64(), proposal["in_use"]["sessions"].as_i64()), (Some(6), Some(1)));
    let users = find("role", "user");
    assert_eq!(users["in_use"]["gpus"], 1);
    assert_eq!(find("role", "admin")["in_use"]["sessions"], 0);
    let r = app.request(Method::PUT, "/api/v1/admin/quotas/users/nobody", Some(&admin), Some(json!({}))).await;
    assert_eq!(r.status, 404);
    let r = app.request(Method::PUT, "/api/v1/admin/quotas/planets/mars", Some(&admin), Some(json!({}))).await;
    assert_eq!(r.status, 404);
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn disabling_a_user_stops_their_tokens_at_once(db: PgPool) {
    let app = TestApp::new(db).await;
    let admin = app.token("admin").await;
    let carol = app.token("carol").await;
    assert_eq!(app.get("/api/v1/me", Some(&carol)).await.status, 200);
    let r = app
        .request(Method::PUT, "/api/v1/admin/users/carol/enabled", Some(&admin), Some(json!({"enabled": false})))
        .await;
    assert_eq!((r.status.as_u16(), &r.body["enabled"]), (200, &json!(false)), "{}", r.text);
    assert_eq!(app.get("/api/v1/me", Some(&carol)).await.status, 401);
    let r = app
        .request(Method::PUT, "/api/v1/admin/users/carol/enabled", Some(&admin), Some(json!({"enabled": true})))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(app.get("/api/v1/me", Some(&carol)).await.status, 200);

    let r = app
        .request(Method::PUT, "/api/v1/admin/users/admin/enabled", Some(&admin), Some(json!({"enabled": false})))
        .await;
    assert_eq!(r.status, 409, "{}", r.text);
    let r =
        app.request(Method::PUT, "/api/v1/admin/users/bob/role", Some(&admin), Some(json!({"role": "wizard"}))).await;
    assert_eq!(r.status, 400, "{}", r.text);
    let r =
        app.request(Method::PUT, "/api/v1/admin/users/nobody/role", Some(&admin), Some(json!({"role": "user"}))).await;
    assert_eq!(r.status, 404);

    let list = app.request(Method::GET, "/api/v1/admin/users?q=KEL", Some(&admin), None).await;
    assert_eq!(list.body["total"], 1, "{}", list.text);
    assert_eq!(list.body["items"][0]["username"], "sam");
    assert_eq!(list.body["items"][0]["beamlines"], json!(["BL11"]));
    let list = app.request(Method::GET, "/api/v1/admin/users?role=admin", Some(&admin), None).await;
    assert_eq!(list.body["items"][0]["username"], "admin");
    assert_eq!(app.request(Method::GET, "/api/v1/admin/users?role=god", Some(&admin), None).await.status, 400);

    insert_session(
        &app.db,
        "carol",
        "S0011",
        "Xfce desktop",
        "running",
        (2000, 0),
        (Some("2026-11-01T00:00:00Z"), None),
    )
    .await;
    let detail = app.request(Method::GET, "/api/v1/admin/users/carol", Some(&admin), None).await;
    assert_eq!(detail.status, 200, "{}", detail.text);
    assert_eq!(detail.body["sessions"][0]["experiment"], "S0011");
    assert_eq!(detail.body["tokens"][0]["name"], "test");
    assert!(!detail.text.contains("token_hash") && !detail.text.contains(&carol));
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn sessions_are_filtered_stopped_and_extended(db: PgPool) {
    let app = TestApp::new(db).await;
    let admin = app.token("admin").await;
    let a = insert_session(
        &app.db,
        "alice",
        "S0011",
        "Xfce desktop",
        "running",
        (2000, 0),
        (Some("2026-11-01T00:00:00Z"), None),
    )
    .await;
    let b = insert_session(
        &app.db,
        "bob",
        "S0201",
        "JupyterLab",
        "running",
        (2000, 0),
        (Some("2026-11-02T00:00:00Z"), None),
    )
    .await;
    let c = insert_session(
        &app.db,
        "alice",
        "S0101",
        "JupyterLab",
        "stopped",
        (2000, 0),
        (Some("2026-10-01T00:00:00Z"), Some("2026-10-01T01:00:00Z")),
    )
    .await;
    let ids = |r: &crate::common::Response| -> Vec<String> {
        r.body["items"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_owned()).collect()
    };
    let get = |q: &'static str| {
        let (app, admin) = (&app, &admin);
        async move { app.request(Method::GET, &format!("/api/v1/admin/sessions{q}"), Some(admin), None).await }
    };
    assert_eq!(get("").await.body["total"], 3);
    assert_eq!(ids(&get("?user=alice").await), [a.to_string(), c.to_string()]);
    assert_eq!(ids(&get("?state=active&beamline=BL04").await), [b.to_string()]);
    assert_eq!(ids(&get("?proposal=20190315").await), [c.to_string()]);
    assert_eq!(ids(&get("?image=JupyterLab&state=running").await), [b.to_string()]);
    assert_eq!(get("?state=sleeping").await.status, 400);

    let r = app.request(Method::POST, "/api/v1/admin/sessions/stop", Some(&admin), Some(json!({"ids": [a, c]}))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["stopping"], json!([a]));
    assert_eq!(r.body["unchanged"], json!([c]));
    let (state, events): (String, i64) = sqlx::query_as(
        "select state, (select count(*) from session_events e where e.session_id = s.id and e.state = 'stopping')
         from sessions s where id = $1",
    )
    .bind(a)
    .fetch_one(&app.db)
    .await
    .unwrap();
    assert_eq!((state.as_str(), events), ("stopping", 1));
    // One unknown id: nothing at all is stopped.
    let r = app
        .request(Method::POST, "/api/v1/admin/sessions/stop", Some(&admin), Some(json!({"ids": [b, Uuid::new_v4()]})))
        .await;
    assert_eq!(r.status, 404);
    let state: String =
        sqlx::query_scalar("select state from sessions where id = $1").bind(b).fetch_one(&app.db).await.unwrap();
    assert_eq!(state, "running");
    assert_eq!(
        app.request(Method::POST, "/api/v1/admin/sessions/stop", Some(&admin), Some(json!({"ids": []}))).await.status,
        400
    );

    let r = app
        .request(
            Method::POST,
            &format!("/api/v1/admin/sessions/{b}/extend"),
            Some(&admin),
            Some(json!({"expires_at": "2100-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!((r.status.as_u16(), r.body["error"]["field"].as_str()), (400, Some("expires_at")), "{}", r.text);
    let r = app.request(Method::POST, &format!("/api/v1/admin/sessions/{c}/extend"), Some(&admin),
        Some(json!({"expires_at": (time::OffsetDateTime::now_utc() + time::Duration::hours(3)).format(&time::format_description::well_known::Rfc3339).unwrap()}))).await;
    assert_eq!(r.status, 409, "{}", r.text);
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn notices_show_until_they_expire(db: PgPool) {
    let app = TestApp::new(db).await;
    let admin = app.token("admin").await;
    sqlx::query("insert into notices (message, starts_at, expires_at) values ('gone', now() - interval '2 hours', now() - interval '1 hour')")
        .execute(&app.db)
        .await
        .unwrap();
    let soon = (time::OffsetDateTime::now_utc() + time::Duration::hours(1))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let r = app
        .request(
            Method::POST,
            "/api/v1/admin/notices",
            Some(&admin),
            Some(json!({"message": "Beam down until 14:00", "level": "outage", "expires_at": soon})),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let notices = app.get_as("alice", "/api/v1/notices").await;
    assert_eq!(notices.status, 200);
    let messages: Vec<&str> = notices.body.as_array().unwrap().iter().map(|n| n["message"].as_str().unwrap()).collect();
    assert_eq!(messages, ["Beam down until 14:00"]);
    assert_eq!(app.get("/api/v1/notices", None).await.status, 401);
    for body in [
        json!({"message": "", "expires_at": soon}),
        json!({"message": "x", "level": "panic", "expires_at": soon}),
        json!({"message": "x", "expires_at": "2020-01-01T00:00:00Z"}),
    ] {
        let r = app.request(Method::POST, "/api/v1/admin/notices", Some(&admin), Some(body)).await;
        assert_eq!(r.status, 400, "{}", r.text);
    }
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn import_preview_changes_nothing_and_apply_does(db: PgPool) {
    let app = TestApp::new(db).await;
    let admin = app.token("admin").await;
    let csv = "proposal,title,beamline,member,member_role,experiment,start,end\n\
               20261121,Crystals,BL04,erin,pi,S0900,2026-12-01,2026-12-02\n\
               20180101,test 1_D,BL11,bob,member,,,\n";
    let send = |uri: &'static str, body: &'static str| {
        let (app, admin) = (&app, &admin);
        async move {
            let request = axum::http::Request::builder()
                .method(Method::POST)
                .uri(uri)
                .header("authorization", format!("Bearer {admin}"))
                .header("content-type", "text/csv")
                .body(axum::body::Body::from(body))
                .unwrap();
            app.raw(request).await
        }
    };
    let proposals =
        || async { sqlx::query_scalar::<_, i64>("select count(*) from proposals").fetch_one(&app.db).await.unwrap() };
    let before = proposals().await;
    let preview = send("/api/v1/admin/proposals/import/preview", csv).await;
    assert_eq!(preview.status, 200, "{}", preview.text);
    assert_eq!(preview.body["applied"], false);
    assert_eq!(preview.body["summary"]["proposals_created"], 1);
    assert_eq!(preview.body["summary"]["members_added"], 2);
    assert_eq!(preview.body["summary"]["users_created"], 1);
    assert_eq!(proposals().await, before, "a preview wrote");
    let applied = send("/api/v1/admin/proposals/import", csv).await;
    assert_eq!((applied.body["applied"].as_bool(), &applied.body["summary"]), (Some(true), &preview.body["summary"]));
    assert_eq!(proposals().await, before + 1);
    let again = send("/api/v1/admin/proposals/import/preview", csv).await;
    assert_eq!(again.body["summary"]["proposals_unchanged"], 2, "{}", again.text);

    let bad = send("/api/v1/admin/proposals/import", "proposal,title,beamline\n20261122,,BL04\n").await;
    assert_eq!(bad.status, 400, "{}", bad.text);
    assert_eq!(bad.body["error"]["field"], "title");
    assert!(bad.body["error"]["message"].as_str().unwrap().contains("line 2"), "{}", bad.text);
    let r = app.request(Method::POST, "/api/v1/admin/proposals/import?format=xml", Some(&admin), Some(json!({}))).await;
    assert_eq!((r.status.as_u16(), r.body["error"]["field"].as_str()), (400, Some("format")));
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn the_audit_log_is_searched_and_exported(db: PgPool) {
    let app = TestApp::new(db).await;
    let admin = app.token("admin").await;
    let soon = (time::OffsetDateTime::now_utc() + time::Duration::hours(1))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let r = app
        .request(
            Method::POST,
            "/api/v1/admin/notices",
            Some(&admin),
            Some(json!({"message": "a, \"quoted\" note", "expires_at": soon})),
        )
        .await;
    let id = r.body["id"].as_str().unwrap().to_owned();
    let get = |q: String| {
        let (app, admin) = (&app, &admin);
        async move { app.request(Method::GET, &format!("/api/v1/admin/audit{q}"), Some(admin), None).await }
    };
    let all = get(String::new()).await;
    assert_eq!(all.status, 200, "{}", all.text);
    assert_eq!(all.body["items"][0]["action"], "notice.create", "newest first");
    let by_action = get("?action=notice".into()).await;
    assert_eq!(by_action.body["total"], 1);
    assert_eq!(get("?action=notic".into()).await.body["total"], 0, "a prefix is whole words");
    assert_eq!(get("?actor=admin".into()).await.body["total"], 1);
    assert_eq!(get("?actor=cli".into()).await.body["items"][0]["action"], "demo.load");
    assert_eq!(get(format!("?object_type=notice&object_id={id}")).await.body["total"], 1);
    assert_eq!(get("?from=2100-01-01T00:00:00Z".into()).await.body["total"], 0);
    assert_eq!(get("?to=2100-01-01T00:00:00Z".into()).await.body["total"], 2);
    assert_eq!(get("?from=yesterday".into()).await.body["error"]["field"], "from");

    let csv = app.request(Method::GET, "/api/v1/admin/audit.csv?action=notice.create", Some(&admin), None).await;
    assert_eq!(csv.status, 200);
    assert!(csv.headers["content-type"].to_str().unwrap().starts_with("text/csv"));
    let mut reader = csv::Reader::from_reader(csv.text.as_bytes());
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 1);
    assert_eq!(&rows[0][3], "notice.create");
    let details: Value = serde_json::from_str(&rows[0][6]).unwrap();
    assert_eq!(details["message"], "a, \"quoted\" note");

    // Never editable, not even by the database owner through daas's connection.
    assert!(sqlx::query("update audit_events set action = 'x.y'").execute(&app.db).await.is_err());
}
