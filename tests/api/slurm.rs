//! The Slurm runtime against a real one-node cluster (`cluster::Cluster`): sessions become
//! batch jobs, answer through daas's proxies via their node's relay, wait in the queue with
//! Slurm's reason, survive a daas killed with SIGKILL and a controller that stops, and end
//! `stopped` at their time limit.

use std::time::{Duration, Instant};

use axum::http::Method;
use serde_json::{json, Value};
use sqlx::PgPool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use uuid::Uuid;

use crate::cluster::Cluster;
use crate::common::{add_shell_image, add_trivial_image, id_of, wait_state, TestApp};

/// Launches `image` for `user` on the `small` flavour through the API, on alice's
/// experiment S0011 (bob's S0201); the session's id.
async fn launch(app: &TestApp, user: &str, image: &str) -> String {
    let token = app.token(user).await;
    let experiment = if user == "bob" { "S0201" } else { "S0011" };
    let body = json!({
        "image": id_of(&app.db, "images", "name", image).await,
        "flavour": id_of(&app.db, "flavours", "name", "small").await,
        "experiment": id_of(&app.db, "experiments", "code", experiment).await,
    });
    let kind: String =
        sqlx::query_scalar("select kind from images where name = $1").bind(image).fetch_one(&app.db).await.unwrap();
    let uri = if kind == "job" { "/api/v1/jobs" } else { "/api/v1/sessions" };
    let r = app.request(Method::POST, uri, Some(&token), Some(body)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body["id"].as_str().unwrap().to_string()
}

/// The Slurm job id daas recorded for a session.
async fn job_of(db: &PgPool, id: &str) -> u64 {
    let job: String = sqlx::query_scalar("select runtime_handle->>'job_id' from sessions where id = $1::uuid")
        .bind(id)
        .fetch_one(db)
        .await
        .unwrap();
    job.parse().unwrap()
}

async fn state(app: &TestApp, token: &str, id: &str) -> Value {
    app.get(&format!("/api/v1/sessions/{id}"), Some(token)).await.body
}

async fn events(app: &TestApp, id: &str) -> Vec<String> {
    sqlx::query_scalar("select message from session_events where session_id = $1::uuid order by id")
        .bind(id)
        .fetch_all(&app.db)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn acceptance_1_a_notebook_is_a_slurm_job_that_answers_through_the_proxy_until_deleted(db: PgPool) {
    let cluster = Cluster::start(8);
    let app = TestApp::slurm(db, &cluster, |_| {}).await;
    app.start_reconciler();
    let addr = app.serve().await;
    let alice = app.token("alice").await;
    let id = launch(&app, "alice", "JupyterLab").await;
    let running = wait_state(&app, &alice, &id, 120, |s| s["state"] != "starting").await;
    assert_eq!(running["state"], "running", "{running}\n{}", cluster.logs());

    // One Slurm job, named and commented with the session's id, with none of its secrets
    // anywhere Slurm shows (the job's script and command line, its environment).
    let job = job_of(&app.db, &id).await;
    let shown = cluster.run("scontrol", &["--oneliner", "show", "job", &job.to_string()]);
    assert!(
        shown.contains(&format!("JobName=daas-{id}")) && shown.contains(&format!("Comment=daas.io/session-id={id}")),
        "{shown}"
    );
    assert!(shown.contains("JobState=RUNNING") && shown.contains("NumCPUs=2"), "{shown}");
    let script = cluster.run("scontrol", &["write", "batch_script", &job.to_string(), "-"]);
    let secret: String = sqlx::query_scalar("select secret from sessions where id = $1::uuid")
        .bind(&id)
        .fetch_one(&app.db)
        .await
        .unwrap();
    let launch_file = app.data_path().join(format!("_runtime/sessions/{id}/launch.json"));
    let launch: Value = serde_json::from_slice(&std::fs::read(&launch_file).unwrap()).unwrap();
    for hidden in [secret.as_str(), launch["node_secret"].as_str().unwrap(), launch["relay_key"].as_str().unwrap()] {
        assert!(!shown.contains(hidden) && !script.contains(hidden), "a secret Slurm shows");
    }
    assert!(script.contains(" slurm-node "), "{script}");

    // JupyterLab answers through the notebook proxy (its own origin, entered with a ticket).
    let host = format!("{id}.sessions.localhost:8080");
    let portal = app.browser("alice").await;
    let cookie = crate::notebook::enter(&app, &addr, &host, &portal.cookie, &id).await;
    let lab = crate::notebook::http(&addr, "GET", &host, &format!("/sessions/{id}/lab"), Some(&cookie)).await;
    assert_eq!(lab.status, 200, "{}", lab.head);
    assert!(lab.body.contains("JupyterLab"), "{}", lab.body);

    // Only the node, with the session's node secret, reports where the session listens.
    let report = |session: String, auth: Option<String>, body: Value| {
        let request = axum::http::Request::builder()
            .method("POST")
            .uri(format!("/api/v1/runtime/sessions/{session}/report"))
            .header("content-type", "application/json");
        let request = match auth {
            Some(auth) => request.header("authorization", auth),
            None => request,
        };
        app.raw(request.body(axum::body::Body::from(body.to_string())).unwrap())
    };
    let listening = json!({"event": "listening", "host": "10.9.9.9", "port": 4000});
    assert_eq!(report(id.clone(), None, listening.clone()).await.status, 401);
    let jupyter = Some(format!("Bearer {secret}"));
    assert_eq!(report(id.clone(), jupyter, listening.clone()).await.status, 404, "the Jupyter token");
    let node = format!("Bearer {}", launch["node_secret"].as_str().unwrap());
    let elsewhere = json!({"event": "listening", "host": "evil host; rm", "port": 4000});
    assert_eq!(report(id.clone(), Some(node.clone()), elsewhere).await.status, 400);
    let other = Uuid::new_v4().to_string();
    let r = report(other, Some(node.clone()), listening).await;
    assert_eq!(r.status, 404, "another session's report with this one's secret");

    // An extension raises the job's time limit (at the next pass).
    sqlx::query("update sessions set expires_at = now() + interval '48 hours' where id = $1::uuid")
        .bind(&id)
        .execute(&app.db)
        .await
        .unwrap();
    let start = Instant::now();
    // Waited for here, not with the cluster's (blocking) wait: the reconciler runs on this
    // test's one thread.
    while !cluster
        .run("squeue", &["--noheader", "--format=%l", "--jobs", &job.to_string()])
        .trim()
        .starts_with("2-00:0")
    {
        assert!(start.elapsed() < Duration::from_secs(30), "the time limit was not raised");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // DELETE cancels it: squeue lists it no more.
    let r = app.request(Method::DELETE, &format!("/api/v1/sessions/{id}"), Some(&alice), None).await;
    assert!(r.status.is_success(), "{}", r.text);
    let stopped = wait_state(&app, &alice, &id, 60, |s| s["state"] == "stopped" || s["state"] == "failed").await;
    assert_eq!(stopped["state"], "stopped", "{stopped}");
    assert!(!cluster.active_jobs().contains(&job), "{:?}", cluster.active_jobs());
    assert_eq!(cluster.job(job).map(|j| j.0), Some("CANCELLED".into()));
    assert!(!launch_file.exists(), "the session's folder is removed");
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn acceptance_2_a_desktop_greets_through_the_relay_and_a_job_keeps_its_exit_code_and_log(db: PgPool) {
    let cluster = Cluster::start(8);
    let app = TestApp::slurm(db, &cluster, |_| {}).await;
    app.start_reconciler();
    let addr = app.serve().await;
    let alice = app.token("alice").await;
    add_shell_image(
        &app.db,
        "Exit three",
        "job",
        "echo reading the scan; echo 'error: no beam in the flat field'; exit 3",
    )
    .await;
    add_shell_image(&app.db, "Broken notebook", "notebook", "echo 'cannot find the kernel'; exit 7").await;
    let desktop = launch(&app, "alice", "Xfce desktop").await;
    let job = launch(&app, "alice", "Exit three").await;

    // A session that dies before it reports its port fails at once with its reason, not
    // at the startup timeout (90 s here).
    let broken_id = launch(&app, "bob", "Broken notebook").await;
    let bob = app.token("bob").await;
    let started = Instant::now();
    let broken = wait_state(&app, &bob, &broken_id, 60, |s| s["state"] != "starting").await;
    assert_eq!(broken["state"], "failed", "{broken}");
    assert!(started.elapsed() < Duration::from_secs(45), "it waited for the timeout");
    let reason = events(&app, &broken_id).await.join("\n");
    assert!(reason.contains("exited with code 7") && reason.contains("cannot find the kernel"), "{reason}");
    // One that cannot even be started on its node says why too.
    sqlx::query(
        "insert into images (name, kind, reference, protocol, default_cpu_millis, default_memory_mib)
         values ('Pods only', 'notebook', 'example/pods-only:1', 'http', 100, 64)",
    )
    .execute(&app.db)
    .await
    .unwrap();
    let unstartable = launch(&app, "bob", "Pods only").await;
    let failed = wait_state(&app, &bob, &unstartable, 60, |s| s["state"] != "starting").await;
    assert_eq!(failed["state"], "failed", "{failed}");
    let reason = events(&app, &unstartable).await.join("\n");
    assert!(
        reason.contains("could not start on") && reason.contains("has no command for the local runtime"),
        "{reason}"
    );

    let running = wait_state(&app, &alice, &desktop, 120, |s| s["state"] != "starting").await;
    assert_eq!(running["state"], "running", "{running}\n{}", cluster.logs());
    let mut socket = crate::desktop::open(&addr, &desktop, Some(&alice), None).await.unwrap();
    let (width, height) = crate::desktop::handshake(&mut socket).await;
    assert!(width > 0 && height > 0);

    // The node's relay lets nobody through without the session's relay key.
    let endpoint: String = sqlx::query_scalar("select endpoint from sessions where id = $1::uuid")
        .bind(&desktop)
        .fetch_one(&app.db)
        .await
        .unwrap();
    let (key, address) = endpoint.strip_prefix("relay:").unwrap().split_once('@').unwrap();
    let greeting = |line: String| {
        let address = address.to_string();
        async move {
            let mut tcp = tokio::net::TcpStream::connect(&address).await.unwrap();
            tcp.write_all(line.as_bytes()).await.unwrap();
            let mut buf = [0u8; 12];
            let read = tokio::time::timeout(Duration::from_secs(10), tcp.read_exact(&mut buf)).await.unwrap();
            read.ok().map(|_| buf.to_vec())
        }
    };
    assert_eq!(greeting(format!("{key}\n")).await.as_deref(), Some(&b"RFB 003.008\n"[..]));
    let wrong = format!("{}\n", "x".repeat(key.len()));
    assert_eq!(greeting(wrong).await, None, "the relay passed a connection without the key");

    // A session is a hostile tenant on its node too: a job of another user finds neither
    // the desktop's relay (it has no network) nor its folder's secrets.
    let (host, port) = address.rsplit_once(':').unwrap();
    let launch_json = app.data_path().join(format!("_runtime/sessions/{desktop}/launch.json"));
    let probe = format!(
        "(exec 3<>/dev/tcp/{host}/{port}) 2>/dev/null && echo REACHED-THE-RELAY || echo no-relay; \
         cat {} 2>/dev/null && echo READ-THE-SECRETS || echo no-secrets",
        launch_json.display()
    );
    add_shell_image(&app.db, "Prober", "job", &format!("exec bash -c '{probe}'")).await;
    let prober = launch(&app, "bob", "Prober").await;

    // The job's exit code and its reason, and its whole log, are kept.
    let ended = wait_state(&app, &alice, &job, 120, |s| s["state"] == "failed" || s["state"] == "stopped").await;
    assert_eq!(ended["state"], "failed", "{ended}");
    let r = app.get(&format!("/api/v1/jobs/{job}"), Some(&alice)).await;
    assert_eq!(r.body["exit_code"], 3, "{}", r.text);
    let reason = events(&app, &job).await.join("\n");
    assert!(reason.contains("no beam in the flat field (exit code 3)"), "{reason}");
    let logs = app.get(&format!("/api/v1/jobs/{job}/logs"), Some(&alice)).await;
    assert!(logs.text.contains("reading the scan"), "{}", logs.text);
    assert_eq!(cluster.job(job_of(&app.db, &job).await).map(|j| j.0), Some("FAILED".into()));

    let probed = wait_state(&app, &bob, &prober, 120, |s| s["state"] == "failed" || s["state"] == "stopped").await;
    assert_eq!(probed["state"], "stopped", "{probed}");
    let said = app.get(&format!("/api/v1/jobs/{prober}/logs"), Some(&bob)).await.text;
    assert!(said.contains("no-relay") && said.contains("no-secrets"), "{said}");
    assert!(!said.contains("REACHED") && !said.contains("READ-THE"), "{said}");
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn acceptance_3_a_launch_on_a_full_node_waits_with_slurms_reason_and_can_be_cancelled(db: PgPool) {
    let cluster = Cluster::start(4);
    // A short startup timeout: a wait in Slurm's queue must not count against it.
    let app = TestApp::slurm(db, &cluster, |c| c.sessions.startup_timeout = Duration::from_secs(3)).await;
    app.start_reconciler();
    let alice = app.token("alice").await;
    let blocker =
        cluster.run("sbatch", &["--parsable", "--output=/dev/null", "--cpus-per-task=4", "--wrap", "sleep 600"]);
    let blocker = blocker.trim().to_string();
    cluster.wait_until(Duration::from_secs(30), "the blocker to run", |c| {
        c.job(blocker.parse().unwrap()).is_some_and(|j| j.0 == "RUNNING")
    });
    add_trivial_image(&app.db, "Quick notebook", 0).await;
    // An admin cannot give a flavour a partition the cluster lacks: every launch would fail.
    let admin = app.token("admin").await;
    let flavour = |partition: &str| json!({"name": "l4", "cpu_millis": 1000, "memory_mib": 2048, "gpus": 0, "slurm_partition": partition});
    let refused = app.request(Method::POST, "/api/v1/admin/flavours", Some(&admin), Some(flavour("nosuch"))).await;
    assert_eq!(refused.status, 400, "{}", refused.text);
    assert_eq!(refused.body["error"]["field"], "slurm_partition");
    assert!(refused.text.contains("no partition \\\"nosuch\\\" (it has: debug, small)"), "{}", refused.text);
    let taken = app.request(Method::POST, "/api/v1/admin/flavours", Some(&admin), Some(flavour("small"))).await;
    assert_eq!(taken.status, 201, "{}", taken.text);
    // The flavour's partition is where its job goes (the node is in both).
    sqlx::query("update flavours set slurm_partition = 'small' where name = 'small'").execute(&app.db).await.unwrap();
    let id = launch(&app, "alice", "Quick notebook").await;
    let waiting = wait_state(&app, &alice, &id, 60, |s| {
        s["progress"].as_str().is_some_and(|p| p.contains("waiting for resources"))
    })
    .await;
    assert_eq!(waiting["state"], "starting");
    let job = job_of(&app.db, &id).await;
    assert_eq!(cluster.job(job), Some(("PENDING".into(), "Resources".into())));
    let partition = cluster.run("squeue", &["--noheader", "--format=%P", "--jobs", &job.to_string()]);
    assert_eq!(partition.trim(), "small");
    tokio::time::sleep(Duration::from_secs(6)).await;
    let still = state(&app, &alice, &id).await;
    assert_eq!(still["state"], "starting", "timed out in the queue: {still}");
    assert!(events(&app, &id)
        .await
        .iter()
        .any(|e| e == "Slurm: waiting for resources: the nodes that fit its flavour are busy"));

    let r = app.request(Method::DELETE, &format!("/api/v1/sessions/{id}"), Some(&alice), None).await;
    assert!(r.status.is_success(), "{}", r.text);
    let stopped = wait_state(&app, &alice, &id, 60, |s| s["state"] == "stopped" || s["state"] == "failed").await;
    assert_eq!(stopped["state"], "stopped", "{stopped}");
    assert_eq!(cluster.job(job).map(|j| j.0), Some("CANCELLED".into()));
    cluster.run("scancel", &[&blocker]);
}

/// The test database's URL (`DATABASE_URL` with the database `sqlx::test` made).
fn database_url(db: &PgPool) -> String {
    let mut url: url::Url = std::env::var("DATABASE_URL").unwrap().parse().unwrap();
    url.set_path(db.connect_options().get_database().unwrap());
    url.to_string()
}

/// A `daas serve` process, killed (SIGKILL) when dropped, so that a failing test leaves
/// none behind.
struct Daas(std::process::Child);

impl Daas {
    /// `kill -9`.
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Daas {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `daas serve --runtime slurm` as a process of its own, on `addr`, over the test app's
/// database and folders.
fn daas_serve(app: &TestApp, cluster: &Cluster, db_url: &str, addr: &str) -> Daas {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let data = app.data_path();
    let log = std::fs::OpenOptions::new().create(true).append(true).open(cluster.path().join("log/daas.out")).unwrap();
    std::process::Command::new(env!("CARGO_BIN_EXE_daas"))
        .args(["serve", "--listen", addr, "--runtime", "slurm", "--reconcile-interval", "1s"])
        .arg("--data-root")
        .arg(data)
        .arg("--sessions-dir")
        .arg(data.join("_runtime/sessions"))
        .arg("--homes-dir")
        .arg(data.join("_runtime/homes"))
        .arg("--venv")
        .arg(root.join(".daas/venv").canonicalize().unwrap())
        .arg("--tools-dir")
        .arg(root.join("tools"))
        .arg("--public-url")
        .arg(format!("http://{addr}"))
        .env("DATABASE_URL", db_url)
        .env("SLURM_CONF", &cluster.conf)
        .stdout(std::process::Stdio::from(log.try_clone().unwrap()))
        .stderr(std::process::Stdio::from(log))
        .spawn()
        .map(Daas)
        .unwrap()
}

async fn wait_healthy(addr: &str) {
    let start = Instant::now();
    while !reqwest::get(format!("http://{addr}/healthz")).await.is_ok_and(|r| r.status().is_success()) {
        assert!(start.elapsed() < Duration::from_secs(60), "daas did not start");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every session's `(state, job id)`.
async fn sessions(db: &PgPool) -> Vec<(String, String)> {
    sqlx::query_as("select state::text, coalesce(runtime_handle->>'job_id', '') from sessions order by created_at")
        .fetch_all(db)
        .await
        .unwrap()
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn acceptance_4_a_daas_killed_with_sigkill_adopts_its_jobs_and_a_controller_outage_fails_nothing(db: PgPool) {
    let mut cluster = Cluster::start(8);
    let app = TestApp::slurm(db, &cluster, |_| {}).await;
    add_trivial_image(&app.db, "Quick notebook", 0).await;
    let db_url = database_url(&app.db);
    let addr =
        format!("127.0.0.1:{}", std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port());
    let mut first = daas_serve(&app, &cluster, &db_url, &addr);
    wait_healthy(&addr).await;
    let client = reqwest::Client::new();
    let body = json!({
        "image": id_of(&app.db, "images", "name", "Quick notebook").await,
        "flavour": id_of(&app.db, "flavours", "name", "small").await,
        "experiment": id_of(&app.db, "experiments", "code", "S0011").await,
    });
    sqlx::query("update quotas set max_sessions = 3 where role = 'user'").execute(&app.db).await.unwrap();
    let token = app.token("alice").await;
    for _ in 0..3 {
        let token = token.clone();
        let r = client
            .post(format!("http://{addr}/api/v1/sessions"))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    }
    let all_running = |s: &[(String, String)]| s.len() == 3 && s.iter().all(|(state, _)| state == "running");
    let start = Instant::now();
    while !all_running(&sessions(&app.db).await) {
        assert!(start.elapsed() < Duration::from_secs(120), "{:?}\n{}", sessions(&app.db).await, cluster.logs());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let before = sessions(&app.db).await;

    // SIGKILL: nothing of daas runs on; its sessions do. Meanwhile a job with daas's
    // comment and no session appears (an orphan).
    first.kill();
    let orphan = format!("--comment=daas.io/session-id={}", Uuid::new_v4());
    let orphan = cluster
        .run("sbatch", &["--parsable", "--output=/dev/null", &orphan, "--wrap", "sleep 600"])
        .trim()
        .parse::<u64>()
        .unwrap();
    let mut second = daas_serve(&app, &cluster, &db_url, &addr);
    wait_healthy(&addr).await;
    cluster
        .wait_until(Duration::from_secs(30), "the orphan's end", |c| c.job(orphan).is_some_and(|j| j.0 == "CANCELLED"));
    assert_eq!(sessions(&app.db).await, before, "adopted as they were");
    let mut jobs: Vec<String> = before.iter().map(|(_, job)| job.clone()).collect();
    jobs.sort();
    let mut listed: Vec<String> = cluster.active_jobs().iter().map(u64::to_string).collect();
    listed.sort();
    assert_eq!(listed, jobs, "none duplicated, none lost");

    // The controller stops for 30 s: daas cannot see its jobs, and fails none of them.
    cluster.stop_controller();
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(sessions(&app.db).await, before, "a session changed while the controller was away");
    cluster.start_controller();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(sessions(&app.db).await, before);
    let mut listed: Vec<String> = cluster.active_jobs().iter().map(u64::to_string).collect();
    listed.sort();
    assert_eq!(listed, jobs);
    let log = std::fs::read_to_string(cluster.path().join("log/daas.out")).unwrap();
    assert!(log.contains("reconcile pass failed"), "daas did not notice the outage");

    // Each still answers through the proxy of the daas that adopted it.
    let (state_of_first, _) = &before[0];
    assert_eq!(state_of_first, "running");
    second.kill();
    for id in sqlx::query_scalar::<_, Uuid>("select id from sessions").fetch_all(&app.db).await.unwrap() {
        let handle = daas::runtime::Handle(
            sqlx::query_scalar("select runtime_handle from sessions where id = $1")
                .bind(id)
                .fetch_one(&app.db)
                .await
                .unwrap(),
        );
        app.state.runtime.stop(id, &handle).await.unwrap();
    }
    assert!(cluster.active_jobs().is_empty());
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn acceptance_5_a_session_at_its_time_limit_is_warned_first_and_ends_stopped(db: PgPool) {
    let cluster = Cluster::start(8);
    let app = TestApp::slurm(db, &cluster, |c| c.sessions.warning = Duration::from_secs(60)).await;
    let alice = app.token("alice").await;
    add_shell_image(&app.db, "Long job", "job", "echo working; sleep 600").await;

    // While daas is not watching (no reconciler), Slurm's time limit comes first: Slurm
    // warns (--signal), the node reports it, Slurm ends the job (TIMEOUT), and daas, once it
    // looks again, records a lifetime's end.
    let by_slurm = launch(&app, "alice", "Long job").await;
    wait_state(&app, &alice, &by_slurm, 60, |s| s["state"] == "running").await;
    let job = job_of(&app.db, &by_slurm).await;
    cluster.run("scontrol", &["update", &format!("JobId={job}"), "TimeLimit=1"]);
    let start = Instant::now();
    while !events(&app, &by_slurm).await.iter().any(|e| e.contains("ends this session at its time limit")) {
        assert!(start.elapsed() < Duration::from_secs(120), "no warning: {:?}", events(&app, &by_slurm).await);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    cluster.wait_until(Duration::from_secs(150), "Slurm's TIMEOUT", |c| c.job(job).is_some_and(|j| j.0 == "TIMEOUT"));
    app.start_reconciler();
    let ended = wait_state(&app, &alice, &by_slurm, 30, |s| s["state"] == "stopped" || s["state"] == "failed").await;
    assert_eq!(ended["state"], "stopped", "{ended}");
    let history = events(&app, &by_slurm).await;
    assert_eq!(history.last().map(String::as_str), Some("Stopped: it reached its time limit in Slurm"), "{history:?}");

    // With daas watching, its own expiry comes first: warned, then stopped at the lifetime,
    // the job cancelled in Slurm.
    let by_daas = launch(&app, "alice", "Long job").await;
    wait_state(&app, &alice, &by_daas, 60, |s| s["state"] == "running").await;
    let job = job_of(&app.db, &by_daas).await;
    sqlx::query("update sessions set expires_at = now() + interval '8 seconds' where id = $1::uuid")
        .bind(&by_daas)
        .execute(&app.db)
        .await
        .unwrap();
    let ended = wait_state(&app, &alice, &by_daas, 60, |s| s["state"] == "stopped" || s["state"] == "failed").await;
    assert_eq!(ended["state"], "stopped", "{ended}");
    let history = events(&app, &by_daas).await;
    let warned = history.iter().position(|e| e.starts_with("Warning: stops in")).expect("a warning");
    let stopped = history.iter().position(|e| e.contains("its lifetime has ended")).expect("the lifetime's end");
    assert!(warned < stopped, "{history:?}");
    assert_eq!(cluster.job(job).map(|j| j.0), Some("CANCELLED".into()));
}
