//! Every session is a hostile tenant: from inside a real session of bob (a job whose
//! command is the attack, `attack.py`), each attack a security review made against daas is
//! tried on a real desktop, a real notebook and the home of alice, and on PostgreSQL and
//! daas. Each must fail; the test fails on any that works.

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use axum::http::Method;
use serde_json::{json, Value};

use crate::common::TestApp;
use crate::common::{launch_body, wait_state};

const ATTACK: &str = include_str!("attack.py");

/// Launches `image` for `token` on `experiment` and waits until it runs (or has ended, for
/// a job); returns its id and the session as the API shows it.
async fn launch(app: &TestApp, token: &str, image: &str, experiment: &str, job: bool) -> (String, Value) {
    let mut body = launch_body(app, image, "small", experiment).await;
    let uri = if job {
        body["parameters"] = json!({});
        "/api/v1/jobs"
    } else {
        "/api/v1/sessions"
    };
    let r = app.request(Method::POST, uri, Some(token), Some(body)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.body["id"].as_str().unwrap().to_string();
    let settled =
        |s: &Value| if job { s["state"] == "stopped" || s["state"] == "failed" } else { s["state"] != "starting" };
    let session = wait_state(app, token, &id, 120, settled).await;
    (id, session)
}

async fn endpoint_of(app: &TestApp, id: &str) -> (String, String) {
    sqlx::query_as("select endpoint, secret from sessions where id = $1::uuid")
        .bind(id)
        .fetch_one(&app.db)
        .await
        .unwrap()
}

async fn host_uid(app: &TestApp, user: &str) -> u32 {
    let uid: i32 = sqlx::query_scalar("select host_uid from users where username = $1")
        .bind(user)
        .fetch_one(&app.db)
        .await
        .unwrap();
    uid as u32
}

/// Every file and folder below `dir` (links not followed) with its owner.
fn owners(dir: &std::path::Path) -> Vec<(std::path::PathBuf, u32)> {
    // Alice's notebook writes and removes files meanwhile: what vanishes is skipped.
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return found };
    for entry in entries.flatten() {
        let Ok(metadata) = std::fs::symlink_metadata(entry.path()) else { continue };
        if metadata.is_dir() {
            found.extend(owners(&entry.path()));
        }
        found.push((entry.path(), metadata.uid()));
    }
    found
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn a_hostile_session_reaches_no_other_session_nor_daas_nor_the_host(db: sqlx::PgPool) {
    let app = TestApp::local(db).await;
    app.start_reconciler();
    let daas = app.serve().await;
    let alice = app.token("alice").await;
    let bob = app.token("bob").await;

    // The victim: alice's desktop and notebook, running, and a file in her home.
    let (desktop, s) = launch(&app, &alice, "Xfce desktop", "S0011", false).await;
    assert_eq!(s["state"], "running", "{s}");
    let (notebook, s) = launch(&app, &alice, "JupyterLab", "S0011", false).await;
    assert_eq!(s["state"], "running", "{s}");
    let (desktop_endpoint, _) = endpoint_of(&app, &desktop).await;
    let (notebook_endpoint, notebook_token) = endpoint_of(&app, &notebook).await;
    let homes = app.data_path().join("_runtime/homes");
    let alice_home = homes.join("alice");
    std::fs::write(alice_home.join("secret.txt"), "alice's results").unwrap();
    let alice_uid = host_uid(&app, "alice").await;
    std::os::unix::fs::chown(alice_home.join("secret.txt"), Some(alice_uid), Some(alice_uid)).unwrap();

    // The attacker: bob, who knows more than a removed member of alice's sessions could
    // have learnt (the notebook's token, which never enters the session; the sockets'
    // paths), and daas's own addresses.
    let database = url::Url::parse(&std::env::var("DATABASE_URL").unwrap()).unwrap();
    let targets = json!({
        "me": "bob",
        "paths": {
            "victim desktop socket": desktop_endpoint.strip_prefix("unix:").unwrap(),
            "victim notebook socket": notebook_endpoint.strip_prefix("unix:").unwrap(),
            "victim home": alice_home,
            "victim secret": alice_home.join("secret.txt"),
        },
        "ports": {
            "postgres": database.port().unwrap_or(5432),
            "daas": daas.rsplit_once(':').unwrap().1.parse::<u16>().unwrap(),
        },
        "notebook token": notebook_token,
    });
    sqlx::query(
        "insert into images (name, kind, reference, protocol, default_cpu_millis, default_memory_mib, local_command)
         values ('Attack', 'job', 'example/attack:1', 'none', 500, 512, $1)",
    )
    .bind(json!({"argv": ["python3", "-c", ATTACK, targets.to_string()]}))
    .execute(&app.db)
    .await
    .unwrap();

    let (attack, s) = launch(&app, &bob, "Attack", "S0201", true).await;
    let log = app.get(&format!("/api/v1/jobs/{attack}/logs"), Some(&bob)).await.text;
    eprintln!("the attack's log:\n{log}");
    assert_eq!(s["state"], "stopped", "{s}\n{log}");
    assert!(log.contains("\ndone"), "the attack did not run to its end:\n{log}");
    let pwned: Vec<&str> = log.lines().filter(|l| l.starts_with("PWNED")).collect();
    assert!(pwned.is_empty(), "attacks that worked:\n{}\n\nwhole log:\n{log}", pwned.join("\n"));
    for name in [
        "x11 '\\x00/tmp/.X11-unix/X1'",
        "reach victim desktop socket",
        "reach victim notebook socket",
        "reach victim home",
        "reach victim secret",
        "list other homes",
        "tcp postgres",
        "tcp daas",
        "tcp notebook port 8888",
        "the LAN",
        "read /etc/shadow",
        "read /etc/ssl/private",
        "host accounts in /etc/passwd",
        "setuid(0)",
    ] {
        assert!(log.contains(&format!("blocked {name}: ")), "no attempt at {name:?}:\n{log}");
    }

    // On the host, what bob's session made is bob's: a setuid bit set inside gives at most
    // bob's own uid, never root's, and only bob can reach it.
    let bob_uid = host_uid(&app, "bob").await;
    assert!(alice_uid >= 1000 && bob_uid >= 1000 && alice_uid != bob_uid, "{alice_uid} {bob_uid}");
    let bob_home = homes.join("bob");
    let suid = std::fs::metadata(bob_home.join("suid-shell")).unwrap();
    assert_eq!((suid.uid(), suid.gid()), (bob_uid, bob_uid));
    let job_dir = std::fs::metadata(bob_home.join(format!("jobs-before/{attack}"))).unwrap();
    assert_eq!(job_dir.uid(), bob_uid, "the job's output folder is not bob's");
    for (home, uid) in [(&bob_home, bob_uid), (&alice_home, alice_uid)] {
        let m = std::fs::metadata(home).unwrap();
        assert_eq!((m.uid(), m.permissions().mode() & 0o777), (uid, 0o700), "{}", home.display());
    }

    // bob's `~/jobs` now points at alice's home: the next launch must not follow it.
    let (second, s) = launch(&app, &bob, "Attack", "S0201", true).await;
    assert_eq!(s["state"], "failed", "{s}");
    // Whatever alice's sessions wrote meanwhile, all of her home is hers alone.
    assert!(!alice_home.join(&second).exists());
    for (path, uid) in owners(&alice_home) {
        assert_eq!(uid, alice_uid, "{} in alice's home is not hers", path.display());
    }
    assert!(std::fs::symlink_metadata(bob_home.join("jobs")).unwrap().file_type().is_symlink());

    // And alice's sessions still answer daas.
    assert!(daas::proxy::upstream::connect(&desktop_endpoint).await.is_ok());
    assert!(daas::proxy::upstream::connect(&notebook_endpoint).await.is_ok());
    app.stop_everything().await;
}
