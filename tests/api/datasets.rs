//! Linking datasets to experiments (scientists of the beamline and admins only, paths
//! kept inside the experiment's storage folder) and searching them.

use axum::http::Method;
use serde_json::json;
use sqlx::PgPool;

use crate::common::TestApp;

const S0011: &str = "/api/v1/proposals/20180101/experiments/S0011/datasets";

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn a_scientist_links_data_only_on_their_beamline(db: PgPool) {
    let app = TestApp::new(db).await;
    let root = app.data.path();
    std::fs::create_dir_all(root.join("BL11/20180101/S0011/scan_0003/raw")).unwrap();
    std::fs::write(root.join("BL11/20180101/S0011/scan_0003/raw/proj.h5"), vec![7u8; 1000]).unwrap();
    std::fs::write(root.join("BL11/20180101/S0011/scan_0003/notes.txt"), b"hello").unwrap();
    let sam = app.token("sam").await;
    let body =
        json!({"location": "BL11/20180101/S0011/scan_0003", "metadata": {"sample": "coupon D", "energy_kev": 32}});

    let r = app.request(Method::POST, S0011, Some(&sam), Some(body.clone())).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["name"], "scan_0003");
    assert_eq!(r.body["size_bytes"], 1005);
    assert_eq!(r.body["created_by"], "sam");
    assert_eq!(r.body["beamline"], "BL11");
    // Linking the same folder twice is a conflict.
    assert_eq!(app.request(Method::POST, S0011, Some(&sam), Some(body.clone())).await.status, 409);
    // alice sees it on her proposal page.
    let proposal = app.get_as("alice", "/api/v1/proposals/20180101").await;
    assert!(proposal.body["experiments"][0]["datasets"].as_array().unwrap().iter().any(|d| d["name"] == "scan_0003"));

    // alice is the PI but not a scientist: she sees the experiment, so 403.
    let r = app.request(Method::POST, S0011, Some(&app.token("alice").await), Some(body.clone())).await;
    assert_eq!((r.status.as_u16(), r.error_code()), (403, "forbidden"), "{}", r.text);
    // bob is in no way part of 20180101: 404, as if it did not exist.
    let r = app.request(Method::POST, S0011, Some(&app.token("bob").await), Some(body.clone())).await;
    assert_eq!(r.status, 404, "{}", r.text);
    // sam cannot see BL04's proposal at all: 404.
    std::fs::create_dir_all(root.join("BL04/I-20191502/S0201/x")).unwrap();
    let r = app
        .request(
            Method::POST,
            "/api/v1/proposals/I-20191502/experiments/S0201/datasets",
            Some(&sam),
            Some(json!({"location": "BL04/I-20191502/S0201/x"})),
        )
        .await;
    assert_eq!(r.status, 404, "{}", r.text);
    // A scientist of another beamline who can see the proposal (through a member's role)
    // may still not link on BL11.
    sqlx::query("update users set role = 'scientist' where username = 'carol'").execute(&app.db).await.unwrap();
    sqlx::query("insert into beamline_staff (user_id, beamline) select id, 'BL04' from users where username = 'carol'")
        .execute(&app.db)
        .await
        .unwrap();
    let r = app.request(Method::POST, S0011, Some(&app.token("carol").await), Some(body.clone())).await;
    assert_eq!(r.status, 403, "{}", r.text);
    // An admin may link anywhere.
    let r = app
        .request(
            Method::POST,
            "/api/v1/proposals/I-20191502/experiments/S0201/datasets",
            Some(&app.token("admin").await),
            Some(json!({"location": "BL04/I-20191502/S0201/x", "name": "empty run"})),
        )
        .await;
    assert_eq!((r.status.as_u16(), r.body["size_bytes"].as_i64()), (201, Some(0)), "{}", r.text);

    let count: i64 = sqlx::query_scalar("select count(*) from datasets").fetch_one(&app.db).await.unwrap();
    assert_eq!(count, 8 + 2);

    // Unlinking follows the same rule.
    let id =
        app.get_as("sam", "/api/v1/datasets?q=scan_0003").await.body["items"][0]["id"].as_str().unwrap().to_owned();
    let uri = format!("/api/v1/datasets/{id}");
    assert_eq!(app.request(Method::DELETE, &uri, Some(&app.token("alice").await), None).await.status, 403);
    assert_eq!(app.request(Method::DELETE, &uri, Some(&app.token("bob").await), None).await.status, 404);
    assert_eq!(app.request(Method::DELETE, &uri, Some(&sam), None).await.status, 204);
    assert!(root.join("BL11/20180101/S0011/scan_0003/notes.txt").exists(), "unlinking keeps the files");
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn paths_escaping_the_data_root_are_refused(db: PgPool) {
    let app = TestApp::new(db).await;
    let root = app.data.path();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), b"top secret").unwrap();
    std::fs::create_dir_all(root.join("BL11/20180101/S0011/inside")).unwrap();
    std::os::unix::fs::symlink(outside.path(), root.join("BL11/20180101/S0011/way_out")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret"), root.join("BL11/20180101/S0011/inside/leak")).unwrap();
    let sam = app.token("sam").await;
    let outside_path = outside.path().display().to_string();
    for location in [
        "../outside",
        "20180101/../../etc",
        "BL11/20180101/S0011/../../..",
        outside_path.as_str(),
        "/etc/passwd",
        "BL11/20180101/S0011/way_out",
        "BL11/20180101/S0011/way_out/secret",
        "BL11/20180101/S0011/inside",
        "BL11/20180101/S0011/not_there",
        "",
        ".",
    ] {
        let r = app.request(Method::POST, S0011, Some(&sam), Some(json!({"location": location}))).await;
        assert_eq!(r.status, 400, "{location:?}: {}", r.text);
        assert_eq!(r.body["error"]["field"], "location", "{}", r.text);
        assert!(!r.text.contains("top secret"));
    }
    for metadata in [json!([1, 2]), json!("text"), json!({"big": "x".repeat(70_000)})] {
        std::fs::remove_file(root.join("BL11/20180101/S0011/inside/leak")).ok();
        let r = app
            .request(
                Method::POST,
                S0011,
                Some(&sam),
                Some(json!({"location": "BL11/20180101/S0011/inside", "metadata": metadata})),
            )
            .await;
        assert_eq!((r.status.as_u16(), r.body["error"]["field"].as_str()), (400, Some("metadata")), "{}", r.text);
    }
    let count: i64 = sqlx::query_scalar("select count(*) from datasets").fetch_one(&app.db).await.unwrap();
    assert_eq!(count, 8, "a refused link was written");
}

/// The attack of issue 11: sam (BL11) linked a folder of BL04's proposal into his own
/// experiment. The location must lie in the experiment's storage folder, however named.
#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn another_proposals_data_cannot_be_linked(db: PgPool) {
    let app = TestApp::new(db).await;
    let root = app.data.path();
    let sam = app.token("sam").await;
    let theirs = "BL04/I-20191502/S0201/xrd_operando_01";
    assert!(root.join(theirs).is_dir(), "the demo wrote BL04's data in its experiment's folder");
    std::os::unix::fs::symlink(root.join(theirs), root.join("BL11/20180101/S0011/borrowed")).unwrap();
    std::fs::create_dir_all(root.join("BL11/20180101/S0011/scan_0009")).unwrap();
    std::os::unix::fs::symlink(root.join(theirs).join("scan.h5"), root.join("BL11/20180101/S0011/scan_0009/d.h5"))
        .unwrap();
    for (location, why) in [
        (theirs, "must lie in the experiment's storage folder BL11/20180101/S0011/"),
        ("BL11/20180101/S0012/tomo_scan_0010", "must lie in the experiment's storage folder"),
        ("BL11/20180101", "must lie in the experiment's storage folder"),
        ("BL11/20180101/S0011/borrowed", "leads out of the experiment's storage folder"),
        ("BL11/20180101/S0011/scan_0009", "scan_0009/d.h5 is a symbolic link leading out"),
    ] {
        let r = app.request(Method::POST, S0011, Some(&sam), Some(json!({"location": location}))).await;
        assert_eq!(r.status, 400, "{location}: {}", r.text);
        assert_eq!(r.body["error"]["field"], "location", "{}", r.text);
        assert!(r.body["error"]["message"].as_str().unwrap().contains(why), "{location}: {}", r.text);
    }
    // Not even an admin links across proposals; in the right folder it works.
    let admin = app.token("admin").await;
    let r = app.request(Method::POST, S0011, Some(&admin), Some(json!({"location": theirs}))).await;
    assert_eq!(r.status, 400, "{}", r.text);
    let uri = "/api/v1/proposals/I-20191502/experiments/S0201/datasets";
    let r = app.request(Method::POST, uri, Some(&admin), Some(json!({"location": theirs, "name": "again"}))).await;
    assert_eq!(r.status, 409, "already linked there by the demo: {}", r.text);
    // sam cannot see BL04's proposal: 404, not a word about its folder.
    let r = app.request(Method::POST, uri, Some(&sam), Some(json!({"location": theirs}))).await;
    assert_eq!(r.status, 404, "{}", r.text);
    let count: i64 = sqlx::query_scalar("select count(*) from datasets").fetch_one(&app.db).await.unwrap();
    assert_eq!(count, 8, "a refused link was written");
}

/// `DAAS_EXPERIMENT_STORAGE` sets the layout; the demo data follows it.
#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn the_storage_template_is_configurable(db: PgPool) {
    let app = TestApp::with_config(db, |c| c.experiment_storage = "raw/{proposal}-{experiment}".parse().unwrap()).await;
    let root = app.data.path();
    assert!(root.join("raw/20180101-S0011/tomo_scan_0001").is_dir());
    let stored: String = sqlx::query_scalar("select location from datasets where name = 'tomo_scan_0001'")
        .fetch_one(&app.db)
        .await
        .unwrap();
    assert_eq!(stored, "raw/20180101-S0011/tomo_scan_0001");
    std::fs::create_dir_all(root.join("raw/20180101-S0011/scan_0004")).unwrap();
    std::fs::create_dir_all(root.join("BL11/20180101/S0011/scan_0004")).unwrap();
    let sam = app.token("sam").await;
    let r =
        app.request(Method::POST, S0011, Some(&sam), Some(json!({"location": "BL11/20180101/S0011/scan_0004"}))).await;
    assert_eq!(r.status, 400, "the default layout no longer applies: {}", r.text);
    assert!(r.text.contains("raw/20180101-S0011/"), "{}", r.text);
    let r =
        app.request(Method::POST, S0011, Some(&sam), Some(json!({"location": "raw/20180101-S0011/scan_0004"}))).await;
    assert_eq!(r.status, 201, "{}", r.text);
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn datasets_are_searched_by_metadata_within_what_the_caller_sees(db: PgPool) {
    let app = TestApp::new(db).await;
    let names = |r: &crate::common::Response| -> Vec<String> {
        r.body["items"].as_array().unwrap().iter().map(|d| d["name"].as_str().unwrap().to_owned()).collect()
    };
    let metadata = |m: serde_json::Value| format!("/api/v1/datasets?metadata={}", urlencode(&m.to_string()));
    let r = app.get_as("sam", &metadata(json!({"beamline": "APS 2-BM", "rows": 2}))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(names(&r), ["tooth"]);
    let simulated = names(&app.get_as("sam", &metadata(json!({"simulated": true, "centre_px": 131.5}))).await);
    assert_eq!(simulated.len(), 6, "{simulated:?}");
    assert!(!simulated.contains(&"tooth".to_owned()) && !simulated.contains(&"xrd_operando_01".to_owned()));
    let sample = json!({"sample": "phantom (stands for coupon A under 250 N)"});
    assert_eq!(names(&app.get_as("sam", &metadata(sample)).await), ["tomo_scan_0002"]);
    assert_eq!(
        names(&app.get_as("sam", "/api/v1/datasets?experiment=S0012").await),
        ["flat_and_dark", "tomo_scan_0010"]
    );
    assert_eq!(app.get_as("sam", "/api/v1/datasets?beamline=BL11").await.body["total"], 7);
    // sam (BL11) does not see BL04's data; admin and its PI do.
    assert_eq!(app.get_as("sam", "/api/v1/datasets?proposal=I-20191502").await.body["total"], 0);
    assert_eq!(names(&app.get_as("admin", "/api/v1/datasets?proposal=I-20191502").await), ["xrd_operando_01"]);
    assert_eq!(names(&app.get_as("bob", "/api/v1/datasets").await), ["xrd_operando_01"]);
    let bad = app.get_as("sam", "/api/v1/datasets?metadata=notjson").await;
    assert_eq!((bad.status.as_u16(), bad.body["error"]["field"].as_str()), (400, Some("metadata")));
    assert_eq!(app.get("/api/v1/datasets", None).await.status, 401);
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
