//! Issue 15: the tomography reconstruction job on real data, through the portal, on the
//! local runtime with the real program (`tools/recon`): the tooth reconstructed with an
//! automatic centre that agrees with an independent method and a slice that matches an
//! independent reconstruction (`tools/recon/tests/reference.py`), its outputs served to
//! its members only, a centre sweep's gallery leading to a filled-in Launch dialog, and a
//! broken file failing with its reason on the session page.

use std::path::Path;

use axum::http::Method;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::common::{launch_body, wait_state, TestApp};

fn ended(s: &Value) -> bool {
    matches!(s["state"].as_str(), Some("stopped" | "failed"))
}

async fn submit(app: &TestApp, token: &str, parameters: Value) -> String {
    let mut body = launch_body(app, "Tomography reconstruction", "small", "S0011").await;
    body["parameters"] = parameters;
    let r = app.request(Method::POST, "/api/v1/jobs", Some(token), Some(body)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body["id"].as_str().unwrap().to_owned()
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn the_tooth_is_reconstructed_with_its_centre_found_and_its_outputs_are_its_members_only(db: PgPool) {
    let app = TestApp::local(db).await;
    app.start_reconciler();
    let alice = app.token("alice").await;
    let id = submit(&app, &alice, json!({"dataset": "tooth"})).await;
    let done = wait_state(&app, &alice, &id, 240, ended).await;
    let log = app.get(&format!("/api/v1/jobs/{id}/logs"), Some(&alice)).await.text;
    assert_eq!((done["state"].as_str(), done["exit_code"].as_i64()), (Some("stopped"), Some(0)), "{done}\n{log}");
    assert!(log.contains("progress 2/2 rows"), "{log}");
    // Sized to the flavour (small: 4 GiB), not to the machine.
    assert!(log.contains("memory limit 2048 MiB"), "{log}");

    // The outputs, listed with their sizes and read through the API.
    let listed = app.get(&format!("/api/v1/jobs/{id}/outputs"), Some(&alice)).await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    let paths: Vec<&str> = listed.body.as_array().unwrap().iter().map(|o| o["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["preview.png", "summary.json", "volume/slice_00000.tif", "volume/slice_00001.tif"]);
    assert!(listed.body.as_array().unwrap().iter().all(|o| o["size_bytes"].as_u64().unwrap() > 0));
    let summary = app.get(&format!("/api/v1/jobs/{id}/outputs/summary.json"), Some(&alice)).await;
    let summary: Value = serde_json::from_str(&summary.text).unwrap();
    assert_eq!(summary["centre_method"], "vo", "{summary}");
    let centre = summary["centre"].as_f64().unwrap();
    let preview = app.get(&format!("/api/v1/jobs/{id}/outputs/preview.png"), Some(&alice)).await;
    assert_eq!(preview.headers["content-type"], "image/png");
    assert!(preview.headers["content-disposition"].to_str().unwrap().starts_with("inline"));
    let slice = app.get(&format!("/api/v1/jobs/{id}/outputs/volume/slice_00000.tif"), Some(&alice)).await;
    assert_eq!(slice.status, 200);
    assert!(slice.headers["content-disposition"].to_str().unwrap().starts_with("attachment"));

    // Against methods that share no code with the program: the centre by phase correlation
    // of opposite projections, the slice by scikit-image's iradon at that centre.
    let dir = tempfile::tempdir().unwrap();
    let tif = dir.path().join("slice.tif");
    std::fs::write(&tif, &slice.bytes).unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let out = std::process::Command::new(root.join(".daas/venv/bin/python"))
        .arg(root.join("tools/recon/tests/reference.py"))
        .arg(root.join("demo/tomography/tooth.h5"))
        .args(["--centre", &centre.to_string(), "--slice"])
        .arg(&tif)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let reference: Value = serde_json::from_slice(&out.stdout).unwrap();
    let independent = reference["centre"].as_f64().unwrap();
    assert!((centre - independent).abs() < 2.0, "centre {centre}, phase correlation {independent}");
    assert!((286.0..306.0).contains(&centre), "TomoPy's documentation puts it near 296: {centre}");
    assert!(reference["correlation"].as_f64().unwrap() > 0.9, "{reference}");

    // The job's page: the centre it found, the preview, the files.
    let page = app.browser("alice").await;
    let html = app.browse(Method::GET, &format!("/sessions/{id}"), Some(&page.cookie), None, &[]).await.text;
    assert!(html.contains(&format!("Centre of rotation {centre:.2} px (found by Vo&#39;s method)")), "{html}");
    assert!(html.contains(&format!(r#"<img src="/api/v1/jobs/{id}/outputs/preview.png""#)), "{html}");
    assert!(html.contains(&format!(r#"<a href="/api/v1/jobs/{id}/outputs/volume/slice_00001.tif">"#)), "{html}");

    // Nobody else's; nothing outside the folder, however asked; no link followed.
    let bob = app.token("bob").await;
    assert_eq!(app.get(&format!("/api/v1/jobs/{id}/outputs"), Some(&bob)).await.status, 404);
    assert_eq!(app.get(&format!("/api/v1/jobs/{id}/outputs/summary.json"), Some(&bob)).await.status, 404);
    for path in ["..%2F..%2F..%2Fetc%2Fpasswd", "volume/..%2F..%2Fsummary.json", "volume//slice_00000.tif"] {
        let r = app.get(&format!("/api/v1/jobs/{id}/outputs/{path}"), Some(&alice)).await;
        assert_eq!(r.status, 400, "{path}: {}", r.text);
    }
    let folder = app.data_path().join(format!("_runtime/homes/alice/jobs/{id}"));
    std::os::unix::fs::symlink("/etc/passwd", folder.join("passwd.png")).unwrap();
    assert_eq!(app.get(&format!("/api/v1/jobs/{id}/outputs/passwd.png"), Some(&alice)).await.status, 404);
    let listed = app.get(&format!("/api/v1/jobs/{id}/outputs"), Some(&alice)).await.text;
    assert!(!listed.contains("passwd"), "{listed}");
    app.stop_everything().await;
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn a_centre_sweep_shows_a_gallery_that_leads_to_the_full_reconstruction(db: PgPool) {
    let app = TestApp::local(db).await;
    app.start_reconciler();
    let alice = app.token("alice").await;
    let parameters =
        json!({"dataset": "tooth", "centre": "sweep", "sweep_from": 286, "sweep_to": 306, "sweep_step": 2});
    let id = submit(&app, &alice, parameters).await;
    let done = wait_state(&app, &alice, &id, 240, ended).await;
    assert_eq!(done["state"], "stopped", "{done}");
    let page = app.browser("alice").await;
    let html = app.browse(Method::GET, &format!("/sessions/{id}"), Some(&page.cookie), None, &[]).await.text;
    let gallery = html.split(r#"<ul class="gallery" id="previews">"#).nth(1).unwrap().split("</ul>").next().unwrap();
    let captions: Vec<&str> = gallery.split("<figcaption>").skip(1).map(|c| c.split("<br>").next().unwrap()).collect();
    let expected: Vec<String> = (286..=306).step_by(2).map(|c| format!("centre {c}")).collect();
    assert_eq!(captions, expected, "{gallery}");
    // Picking 296 opens the Launch dialog filled in for the volume at that centre.
    let link = gallery
        .split("href=\"")
        .map(|p| p.split('"').next().unwrap().replace("&#38;", "&"))
        .find(|href| href.contains("param.centre_value=296"))
        .unwrap();
    let dialog = app.browse(Method::GET, &link, Some(&page.cookie), None, &[]).await;
    assert_eq!(dialog.status, 200, "{link}");
    assert!(dialog.text.contains(r#"<option selected>given</option>"#), "{}", dialog.text);
    assert!(
        dialog.text.contains(r#"name="param.centre_value" type="number" step="any" value="296""#),
        "{}",
        dialog.text
    );
    assert!(dialog.text.contains("<option selected>tooth</option>"), "{}", dialog.text);
    app.stop_everything().await;
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn a_broken_scan_fails_with_its_reason_on_the_session_page(db: PgPool) {
    let app = TestApp::local(db).await;
    app.start_reconciler();
    let alice = app.token("alice").await;
    // A truncated copy of the tooth, linked as a dataset of S0011 next to the others.
    let location: String = sqlx::query_scalar(
        "select d.location from datasets d join experiments e on e.id = d.experiment_id where e.code = 'S0011' and d.name = 'tooth'",
    )
    .fetch_one(&app.db)
    .await
    .unwrap();
    let broken = Path::new(&location).with_file_name("broken").display().to_string();
    std::fs::create_dir_all(app.data_path().join(&broken)).unwrap();
    let tooth = std::fs::read(app.data_path().join(&location).join("tooth.h5")).unwrap();
    std::fs::write(app.data_path().join(&broken).join("scan.h5"), &tooth[..tooth.len() / 2]).unwrap();
    sqlx::query(
        "insert into datasets (experiment_id, name, location, size_bytes)
         select id, 'broken', $1, 1 from experiments where code = 'S0011'",
    )
    .bind(&broken)
    .execute(&app.db)
    .await
    .unwrap();
    let id = submit(&app, &alice, json!({"dataset": "broken"})).await;
    let done = wait_state(&app, &alice, &id, 120, ended).await;
    assert_eq!(done["state"], "failed", "{done}");
    let reason = done["failure_reason"].as_str().unwrap();
    assert!(
        reason.starts_with(
            "Tomography reconstruction failed: /data/broken/scan.h5: unreadable HDF5 file (truncated or damaged)"
        ) && reason.ends_with("(exit code 2)"),
        "{reason}"
    );
    let page = app.browser("alice").await;
    let html = app.browse(Method::GET, &format!("/sessions/{id}"), Some(&page.cookie), None, &[]).await.text;
    assert!(html.contains("Tomography reconstruction failed: /data/broken/scan.h5: unreadable HDF5 file"), "{html}");
    app.stop_everything().await;
}
