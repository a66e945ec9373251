//! `GET /api/v1/images` and `GET /api/v1/flavours`.

use sqlx::PgPool;

use crate::common::TestApp;

fn names(body: &serde_json::Value) -> Vec<&str> {
    body.as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap()).collect()
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn images_are_those_the_role_may_use(db: PgPool) {
    let app = TestApp::new(db).await;
    let images = app.get_as("alice", "/api/v1/images").await;
    assert_eq!(images.status, 200);
    assert_eq!(names(&images.body), ["Xfce desktop", "Tomography reconstruction", "JupyterLab"]);
    let recon = &images.body[1];
    assert_eq!(recon["kind"], "job");
    assert_eq!(recon["parameter_schema"]["required"], serde_json::json!(["dataset", "algorithm"]));

    sqlx::query("update images set enabled = false where name = 'JupyterLab'").execute(&app.db).await.unwrap();
    sqlx::query("update images set allowed_roles = '{scientist,admin}' where name = 'Tomography reconstruction'")
        .execute(&app.db)
        .await
        .unwrap();
    assert_eq!(names(&app.get_as("alice", "/api/v1/images").await.body), ["Xfce desktop"]);
    assert_eq!(names(&app.get_as("sam", "/api/v1/images").await.body), ["Xfce desktop", "Tomography reconstruction"]);
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn flavours_are_those_the_role_may_use(db: PgPool) {
    let app = TestApp::new(db).await;
    let flavours = app.get_as("alice", "/api/v1/flavours").await;
    assert_eq!(names(&flavours.body), ["small", "medium", "gpu"]);
    assert_eq!(flavours.body[2]["gpus"], 1);
    sqlx::query("update flavours set allowed_roles = '{scientist}' where name = 'gpu'").execute(&app.db).await.unwrap();
    assert_eq!(names(&app.get_as("alice", "/api/v1/flavours").await.body), ["small", "medium"]);
    assert_eq!(names(&app.get_as("sam", "/api/v1/flavours").await.body), ["small", "medium", "gpu"]);
    assert_eq!(app.get("/api/v1/flavours", None).await.status, 401);
}

/// Issue 14, item 11: a database whose demo desktop still runs Openbox and an xterm gets,
/// from its migration, the Xfce desktop `daas dev` gives a new one.
#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn an_old_demo_desktop_migrates_to_xfce(db: PgPool) {
    let app = TestApp::new(db).await;
    let xfce = daas::demo::desktop_command();
    let script = xfce["argv"][2].as_str().unwrap();
    let old = script[..script.find("XDG_CONFIG_DIRS").unwrap()].to_string()
        + "openbox & xterm -geometry 120x36+40+40 & wait $xvnc";
    let set = "update images set local_command = $1 where name = 'Xfce desktop'";
    sqlx::query(set).bind(serde_json::json!({"argv": ["sh", "-c", old]})).execute(&app.db).await.unwrap();
    sqlx::raw_sql(include_str!("../../migrations/20261201140000_xfce_desktop.sql")).execute(&app.db).await.unwrap();
    let command: serde_json::Value = sqlx::query_scalar("select local_command from images where name = 'Xfce desktop'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(command, xfce);
}
