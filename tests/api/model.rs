//! The schema refuses bad rows by itself, even past a bug in daas.

use sqlx::PgPool;

use crate::common::TestApp;

async fn refused(db: &PgPool, sql: &str) -> String {
    match sqlx::query(sql).execute(db).await {
        Ok(_) => panic!("accepted: {sql}"),
        Err(sqlx::Error::Database(e)) => e.constraint().map(str::to_string).unwrap_or_else(|| e.message().to_string()),
        Err(e) => panic!("{e}"),
    }
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn constraints_refuse_bad_rows(db: PgPool) {
    let app = TestApp::new(db).await;
    let db = &app.db;
    refused(db, "update users set role = 'root' where username = 'alice'").await;
    refused(db, "insert into users (username, display_name) values ('Alice Smith', 'x')").await;
    refused(db, "update proposal_members set role = 'owner'").await;
    refused(db, "update experiments set ends_at = starts_at - interval '1 day'").await;
    refused(db, "update images set protocol = 'http' where kind = 'desktop'").await;
    refused(db, "insert into quotas (scope, role, user_id) select 'role', 'user', id from users limit 1").await;
    refused(db, "insert into quotas (scope, role) values ('role', 'user')").await;
    refused(db, "update datasets set location = '../../etc'").await;
    refused(db, "update datasets set metadata = '[1, 2]'").await;
    refused(db, "insert into favourites (user_id, proposal_id) values (gen_random_uuid(), gen_random_uuid())").await;
    refused(db, "update flavours set gpu_type = 'a100' where gpus = 0").await;
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn sessions_states_are_checked(db: PgPool) {
    let app = TestApp::new(db).await;
    let insert = "insert into sessions (owner_id, experiment_id, image_id, flavour_id, kind, state, cpu_millis, memory_mib, runtime, expires_at{extra})
         select u.id, e.id, i.id, f.id, 'desktop', '{state}', 1000, 1024, 'local', now() + interval '1 hour'{values}
         from users u, experiments e, images i, flavours f
         where u.username = 'alice' and e.code = 'S0011' and i.kind = 'desktop' and f.name = 'small'";
    let sql = |state: &str, extra: &str, values: &str| {
        insert.replace("{state}", state).replace("{extra}", extra).replace("{values}", values)
    };
    refused(&app.db, &sql("sleeping", "", "")).await;
    refused(&app.db, &sql("failed", ", stopped_at", ", now()")).await; // failed needs a reason
    refused(&app.db, &sql("running", "", "")).await; // running needs started_at
    sqlx::query(&sql("running", ", started_at", ", now()")).execute(&app.db).await.unwrap();
    sqlx::query(&sql("failed", ", stopped_at, failure_reason", ", now(), 'exit code 1'"))
        .execute(&app.db)
        .await
        .unwrap();
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn the_audit_log_is_append_only(db: PgPool) {
    let app = TestApp::new(db).await;
    let count: i64 = sqlx::query_scalar("select count(*) from audit_events").fetch_one(&app.db).await.unwrap();
    assert!(count >= 1, "the demo load is audited");
    let err = refused(&app.db, "update audit_events set action = 'x.y'").await;
    assert!(err.contains("append-only"), "{err}");
    refused(&app.db, "delete from audit_events").await;
}

/// What a refused row becomes when a handler lets it through: a 409 or 400 that names no
/// constraint (the schema's names are daas's business, not the caller's).
#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn a_refused_row_answers_without_the_schemas_names(db: PgPool) {
    use axum::response::IntoResponse;
    use http_body_util::BodyExt;
    let app = TestApp::new(db).await;
    for (sql, status) in [
        ("insert into users (username, display_name) select username, 'x' from users limit 1", 409),
        ("insert into favourites (user_id, proposal_id) values (gen_random_uuid(), gen_random_uuid())", 409),
        ("update users set role = 'root' where username = 'alice'", 400),
    ] {
        let err = sqlx::query(sql).execute(&app.db).await.unwrap_err();
        let response = daas::error::AppError::from(err).into_response();
        assert_eq!(response.status().as_u16(), status, "{sql}");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&body);
        for name in ["users_username_key", "favourites_", "users_role_check", "_fkey", "_key", "_check"] {
            assert!(!text.contains(name), "{sql}: {text}");
        }
    }
}
