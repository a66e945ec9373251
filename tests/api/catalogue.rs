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
    assert_eq!(
        names(&images.body),
        ["Xfce desktop", "Tomography reconstruction", "JupyterLab", "Reconstruction studio"],
        "by kind (desktop, job, notebook, webapp), then name"
    );
    let recon = &images.body[1];
    assert_eq!(images.body[3]["kind"], "webapp");
    assert_eq!(images.body[3]["protocol"], "http");
    assert_eq!(recon["kind"], "job");
    assert_eq!(recon["parameter_schema"]["required"], serde_json::json!(["dataset"]));

    sqlx::query("update images set enabled = false where name in ('JupyterLab', 'Reconstruction studio')")
        .execute(&app.db)
        .await
        .unwrap();
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

/// Issue 15: a development database loaded by an older daas gets the real scans and the
/// reconstruction's parameters at the next `daas dev` (`demo::refresh`): the fake files go,
/// S0011 gains the tooth.
#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn an_old_demo_database_gets_the_real_scans_and_the_reconstructions_parameters(db: PgPool) {
    let app = TestApp::new(db).await;
    let folder: String = sqlx::query_scalar("select location from datasets where name = 'tomo_scan_0001'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    let dir = app.data_path().join(&folder);
    std::fs::remove_file(dir.join("scan.h5")).unwrap();
    std::fs::write(dir.join("projections.h5"), vec![7u8; 4096]).unwrap();
    let tooth: String = sqlx::query_scalar("delete from datasets where name = 'tooth' returning location")
        .fetch_one(&app.db)
        .await
        .unwrap();
    std::fs::remove_dir_all(app.data_path().join(&tooth)).unwrap();
    sqlx::query(
        "update images set parameter_schema = '{\"type\": \"object\"}' where name = 'Tomography reconstruction'",
    )
    .execute(&app.db)
    .await
    .unwrap();

    daas::demo::refresh(&app.db, app.data_path()).await.unwrap();
    assert!(!dir.join("projections.h5").exists() && dir.join("scan.h5").is_file());
    assert_eq!(&std::fs::read(dir.join("scan.h5")).unwrap()[..8], b"\x89HDF\r\n\x1a\n", "an HDF5 file");
    let restored: String =
        sqlx::query_scalar("select location from datasets where name = 'tooth'").fetch_one(&app.db).await.unwrap();
    assert_eq!(restored, tooth);
    assert!(app.data_path().join(&tooth).join("tooth.h5").is_file());
    let schema: serde_json::Value =
        sqlx::query_scalar("select parameter_schema from images where name = 'Tomography reconstruction'")
            .fetch_one(&app.db)
            .await
            .unwrap();
    assert_eq!(schema["properties"]["centre"]["enum"], serde_json::json!(["auto", "given", "sweep"]));
    // Twice is the same as once.
    daas::demo::refresh(&app.db, app.data_path()).await.unwrap();
    let count: i64 =
        sqlx::query_scalar("select count(*) from datasets where name = 'tooth'").fetch_one(&app.db).await.unwrap();
    assert_eq!(count, 1);
}
