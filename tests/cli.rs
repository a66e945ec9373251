//! The `daas` binary as an operator uses it: tokens, imports, users, start-up failures, and
//! the development cluster (stop and start keep data; `/readyz` follows the database).

use std::io::{Read, Write};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use sqlx::PgPool;

const DAAS: &str = env!("CARGO_BIN_EXE_daas");

/// The URL of the test's own database: `DATABASE_URL` (the server) with its database name.
fn url_of(db: &PgPool) -> String {
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL");
    let name = db.connect_options().get_database().expect("a database name").to_string();
    let (server, _) = base.rsplit_once('/').expect("a URL with a database");
    format!("{server}/{name}")
}

fn daas(db: &PgPool, args: &[&str]) -> Output {
    Command::new(DAAS).args(args).env("DATABASE_URL", url_of(db)).env_remove("DAAS_LOG").output().unwrap()
}

fn stdout(output: &Output) -> String {
    assert!(output.status.success(), "daas failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout.clone()).unwrap()
}

async fn demo(db: &PgPool) -> tempfile::TempDir {
    let data = tempfile::tempdir().unwrap();
    daas::demo::load_if_empty(db, data.path()).await.unwrap();
    data
}

/// Plain HTTP/1.0 GET on loopback: the status code and body.
fn http_get(port: u16, path: &str, token: Option<&str>) -> (u16, String) {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n{auth}\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    (status, body)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Waits until `check` holds, or panics after `secs`.
fn wait_for(secs: u64, what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < Duration::from_secs(secs), "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A running `daas serve`, killed when dropped, with the folder of its (unused) sessions.
struct Server {
    child: std::process::Child,
    _runtime: Option<tempfile::TempDir>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(url: &str, port: u16) -> Server {
    let runtime = tempfile::tempdir().unwrap();
    let child = Command::new(DAAS)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("DATABASE_URL", url)
        .env("DAAS_SESSIONS_DIR", runtime.path().join("sessions"))
        .env("DAAS_HOMES_DIR", runtime.path().join("homes"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(30, "daas serve", || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    Server { child, _runtime: Some(runtime) }
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn token_create_prints_a_working_token(db: PgPool) {
    let _data = demo(&db).await;
    let token = stdout(&daas(&db, &["token", "create", "--user", "alice", "--expires-in", "1h"])).trim().to_string();
    assert!(token.starts_with("daas_"), "{token}");
    let port = free_port();
    let _server = serve(&url_of(&db), port);
    let (status, body) =
        tokio::task::spawn_blocking(move || http_get(port, "/api/v1/proposals", Some(&token))).await.unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("20180101") && !body.contains("I-20191502"), "{body}");

    let expires: bool = sqlx::query_scalar(
        "select expires_at between now() + interval '59 minutes' and now() + interval '61 minutes' from api_tokens",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert!(expires);
    let unknown = daas(&db, &["token", "create", "--user", "nobody-here"]);
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no user \"nobody-here\""));
}

/// Files as export tools write them (a byte-order mark, CRLF, UTF-16) are imported; a file
/// in another encoding is refused naming the file, the line and what was expected.
#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn import_reads_what_export_tools_write(db: PgPool) {
    let _data = demo(&db).await;
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("export.json");
    let text = "{\"proposals\": [{\"identifier\": \"20240001\", \"title\": \"Welds\", \"beamline\": \"BL11\"}]}\r\n";
    std::fs::write(&json, [b"\xEF\xBB\xBF".as_slice(), text.as_bytes()].concat()).unwrap();
    let imported = stdout(&daas(&db, &["import", "proposals", json.to_str().unwrap()]));
    assert!(imported.starts_with("proposals: 1 created"), "{imported}");
    let csv = dir.path().join("export.csv");
    let text = "proposal\ttitle\tbeamline\r\n20240002\tSoudures \u{e0} chaud\tBL11\r\n";
    std::fs::write(
        &csv,
        [0xFF, 0xFE].into_iter().chain(text.encode_utf16().flat_map(u16::to_le_bytes)).collect::<Vec<u8>>(),
    )
    .unwrap();
    let imported = stdout(&daas(&db, &["import", "proposals", csv.to_str().unwrap()]));
    assert!(imported.starts_with("proposals: 1 created"), "{imported}");
    let title: String =
        sqlx::query_scalar("select title from proposals where identifier = '20240002'").fetch_one(&db).await.unwrap();
    assert_eq!(title, "Soudures \u{e0} chaud");

    let latin1 = dir.path().join("latin1.csv");
    std::fs::write(&latin1, b"proposal,title,beamline\n20240003,Caf\xE9,BL11\n").unwrap();
    let output = daas(&db, &["import", "proposals", latin1.to_str().unwrap()]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("latin1.csv: line 2: encoding: byte 0xE9 at column 13 is not UTF-8")
            && stderr.contains("nothing was imported"),
        "{stderr}"
    );
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn import_twice_then_a_broken_file(db: PgPool) {
    let _data = demo(&db).await;
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("export.csv");
    std::fs::write(
        &good,
        "proposal,title,beamline,member,member_role,experiment,start,end\n\
         20240001,Strain in welded joints,BL11,erin,pi,S1001,2024-02-01,2024-02-03\n",
    )
    .unwrap();
    let good = good.to_str().unwrap();
    let first = stdout(&daas(&db, &["import", "proposals", good]));
    assert!(first.starts_with("proposals: 1 created"), "{first}");
    let second = stdout(&daas(&db, &["import", "proposals", good]));
    assert!(second.starts_with("proposals: 0 created, 0 updated, 1 unchanged; users: 0 created; members: 0 added, 0 changed; experiments: 0 created, 0 updated"), "{second}");

    let bad = dir.path().join("broken.csv");
    std::fs::write(
        &bad,
        "proposal,title,beamline,member,member_role\n20240002,New,BL11,frank,pi\n20240003,Newer,BL11,gina,chief\n",
    )
    .unwrap();
    let before: i64 = sqlx::query_scalar("select count(*) from proposals").fetch_one(&db).await.unwrap();
    let output = daas(&db, &["import", "proposals", bad.to_str().unwrap()]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("line 3: role:") && stderr.contains("nothing was imported"), "{stderr}");
    let after: i64 = sqlx::query_scalar("select count(*) from proposals").fetch_one(&db).await.unwrap();
    assert_eq!(before, after);
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn user_add_set_role_and_disable(db: PgPool) {
    let mut child = Command::new(DAAS)
        .args(["user", "add", "erin", "--name", "Erin Park", "--role", "scientist", "--password"])
        .env("DATABASE_URL", url_of(&db))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"correct horse battery\n").unwrap();
    assert!(child.wait().unwrap().success());
    let (role, hash): (String, String) =
        sqlx::query_as("select role, password_hash from users where username = 'erin'").fetch_one(&db).await.unwrap();
    assert_eq!(role, "scientist");
    assert!(daas::auth::password::verify("correct horse battery", &hash));
    assert!(!daas::auth::password::verify("wrong", &hash));

    stdout(&daas(&db, &["user", "set-role", "erin", "admin"]));
    stdout(&daas(&db, &["user", "disable", "erin"]));
    let (role, enabled): (String, bool) =
        sqlx::query_as("select role, enabled from users where username = 'erin'").fetch_one(&db).await.unwrap();
    assert_eq!((role.as_str(), enabled), ("admin", false));
    assert!(!daas(&db, &["user", "add", "erin"]).status.success(), "a duplicate is refused");
    assert!(!daas(&db, &["user", "add", "Not Valid"]).status.success());
    let audited: i64 = sqlx::query_scalar("select count(*) from audit_events where action like 'user.%'")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(audited, 3);
}

#[test]
fn serve_against_an_unreachable_database_exits_with_one_clear_line() {
    let port = free_port();
    let output = Command::new(DAAS)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("DATABASE_URL", format!("postgres://daas@127.0.0.1:{port}/daas"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("cannot connect to PostgreSQL") && stderr.contains("refused"), "{stderr}");
}

#[test]
fn every_subcommand_documents_its_flags_and_variables() {
    for args in [
        &["serve", "--help"][..],
        &["dev", "--help"],
        &["token", "create", "--help"],
        &["import", "proposals", "--help"],
        &["check", "--help"],
    ] {
        let output = Command::new(DAAS).args(args).output().unwrap();
        let help = String::from_utf8_lossy(&output.stdout);
        assert!(help.contains("DATABASE_URL"), "{args:?}: {help}");
        if args[0] == "check" {
            assert!(help.contains("DAAS_DATA_ROOT") && help.contains("DAAS_EXPERIMENT_STORAGE"), "{help}");
        }
        if args[0] == "serve" {
            for env in [
                "DAAS_LISTEN",
                "DAAS_METRICS_LISTEN",
                "DAAS_DATA_ROOT",
                "DAAS_EXPERIMENT_STORAGE",
                "DAAS_LOG_FORMAT",
                "DAAS_RUNTIME",
                "DAAS_SESSIONS_DIR",
                "DAAS_HOMES_DIR",
                "DAAS_VENV",
                "DAAS_TOOLS_DIR",
                "DAAS_RECONCILE_INTERVAL",
                "DAAS_SESSION_LIFETIME",
                "DAAS_SESSION_IDLE_LIMIT",
                "DAAS_EXPIRY_WARNING",
                "DAAS_STARTUP_TIMEOUT",
                "DAAS_STOP_GRACE",
            ] {
                assert!(help.contains(env), "{env} missing from serve --help");
            }
        }
    }
}

/// The development cluster of `daas dev`: created from nothing under a folder of its own,
/// stopped and started again with its data; a server on it answers `/readyz` 503 while it
/// is down and 200 once it is back, without a restart.
#[test]
fn dev_cluster_keeps_data_and_readyz_follows_it() {
    // Under target/, not /tmp: when the tests run as root, postgres runs as another user
    // that must be able to reach the folder.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let dev_dir = dir.path().join("dev");
    let cluster = |extra: &[&str]| {
        let output = Command::new(DAAS)
            .arg("--dev-dir")
            .arg(&dev_dir)
            .arg("dev-db")
            .args(extra)
            .env_remove("DATABASE_URL")
            .output()
            .unwrap();
        stdout(&output).trim().to_string()
    };
    let url = cluster(&[]);
    assert!(url.starts_with("postgres://daas:") && url.contains("@127.0.0.1:"), "loopback only");
    assert!(url.ends_with("/daas"), "{url}");
    assert!(dev_dir.join("postgres/data/PG_VERSION").exists(), "the cluster lives under --dev-dir");
    let migrate = Command::new(DAAS).arg("migrate").env("DATABASE_URL", &url).output().unwrap();
    stdout(&migrate);

    let port = free_port();
    let _server = serve(&url, port);
    assert_eq!(http_get(port, "/readyz", None).0, 200);

    // Data written before a stop is there after the next start.
    let psql = |sql: &str| {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let pool = PgPool::connect(&url).await.unwrap();
            sqlx::raw_sql(sql).execute(&pool).await.unwrap();
            pool.close().await;
        });
    };
    psql("create table keep_me (x int); insert into keep_me values (42)");
    cluster(&["--stop"]);
    wait_for(20, "/readyz 503", || http_get(port, "/readyz", None).0 == 503);
    assert_eq!(cluster(&[]), url, "the same cluster, port and password");
    wait_for(20, "/readyz 200", || http_get(port, "/readyz", None).0 == 200);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let kept: i32 = rt.block_on(async {
        let pool = PgPool::connect(&url).await.unwrap();
        sqlx::query_scalar("select x from keep_me").fetch_one(&pool).await.unwrap()
    });
    assert_eq!(kept, 42);
    cluster(&["--stop"]);
}

/// Any HTTP/1.0 request on loopback: the status code and the JSON body.
fn http(port: u16, method: &str, path: &str, token: &str, body: Option<serde_json::Value>) -> (u16, serde_json::Value) {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let json = response.split_once("\r\n\r\n").and_then(|(_, b)| serde_json::from_str(b).ok()).unwrap_or_default();
    (status, json)
}

/// Processes (not zombies) of a process group, with their command lines.
fn group(pgid: i64) -> Vec<(i32, String)> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let rest: Vec<&str> = stat[stat.rfind(')')? + 2..].split_whitespace().collect();
            (rest[0] != "Z" && rest[2].parse::<i64>().ok() == Some(pgid)).then_some(())?;
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            Some((pid, String::from_utf8_lossy(&cmdline).replace('\0', " ")))
        })
        .collect()
}

/// Kills the sessions left under a sessions folder when dropped (a failed test must not
/// leave them running: they outlive daas by design).
struct KillSessions(std::path::PathBuf);

impl Drop for KillSessions {
    fn drop(&mut self) {
        daas::runtime::local::kill_all(&self.0);
    }
}

/// `daas serve` with its sessions under `dir` and a quick reconciler.
fn serve_sessions(url: &str, port: u16, dir: &std::path::Path) -> Server {
    let child = Command::new(DAAS)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--reconcile-interval", "300ms"])
        .arg("--sessions-dir")
        .arg(dir.join("sessions"))
        .arg("--homes-dir")
        .arg(dir.join("homes"))
        .arg("--data-root")
        .arg(dir.join("data"))
        // daas's tools (its Jupyter settings, which every notebook gets), wherever the test runs.
        .arg("--tools-dir")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../tools"))
        .env("DATABASE_URL", url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(30, "daas serve", || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    Server { child, _runtime: None }
}

/// Acceptance 3: `kill -9` of daas while three sessions run; started again, it finds the
/// same three running (same processes, none started twice), and can still stop them.
#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn sessions_outlive_a_killed_daas_and_are_adopted(db: PgPool) {
    let _data = demo(&db).await;
    let image: uuid::Uuid = sqlx::query_scalar(
        "insert into images (name, kind, reference, protocol, default_cpu_millis, default_memory_mib, local_command)
         values ('Trivial', 'notebook', 'example/trivial:1', 'http', 100, 64, $1) returning id",
    )
    .bind(serde_json::json!({"argv": ["python3", "-m", "http.server", "--bind", "127.0.0.1", "{port}"]}))
    .fetch_one(&db)
    .await
    .unwrap();
    let flavour: uuid::Uuid =
        sqlx::query_scalar("select id from flavours where name = 'small'").fetch_one(&db).await.unwrap();
    let experiment: uuid::Uuid =
        sqlx::query_scalar("select id from experiments where code = 'S0011'").fetch_one(&db).await.unwrap();
    let token = stdout(&daas(&db, &["token", "create", "--user", "sam"])).trim().to_string();
    let dir = tempfile::tempdir().unwrap();
    let _cleanup = KillSessions(dir.path().join("sessions"));
    let port = free_port();
    let mut server = serve_sessions(&url_of(&db), port, dir.path());

    let body = serde_json::json!({"image": image, "flavour": flavour, "experiment": experiment});
    let ids: Vec<String> = (0..3)
        .map(|_| {
            let (status, session) = http(port, "POST", "/api/v1/sessions", &token, Some(body.clone()));
            assert_eq!(status, 201, "{session}");
            session["id"].as_str().unwrap().to_string()
        })
        .collect();
    let all_running = || {
        ids.iter().all(|id| http(port, "GET", &format!("/api/v1/sessions/{id}"), &token, None).1["state"] == "running")
    };
    wait_for(30, "three running sessions", all_running);
    let handles: Vec<serde_json::Value> =
        sqlx::query_scalar("select runtime_handle from sessions order by id").fetch_all(&db).await.unwrap();
    let pgids: Vec<i64> = handles.iter().map(|h| h["pid"].as_i64().unwrap()).collect();

    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
    for pgid in &pgids {
        assert!(group(*pgid).iter().any(|(_, cmd)| cmd.contains("http.server")), "session {pgid} died with daas");
    }

    let _server = serve_sessions(&url_of(&db), port, dir.path());
    // Let the reconciler run a few passes.
    std::thread::sleep(Duration::from_millis(1500));
    wait_for(10, "the same three running", all_running);
    let after: Vec<serde_json::Value> =
        sqlx::query_scalar("select runtime_handle from sessions order by id").fetch_all(&db).await.unwrap();
    assert_eq!(after, handles, "sessions were started again instead of adopted");
    let servers =
        |pgid: &i64| group(*pgid).into_iter().filter(|(_, cmd)| cmd.starts_with("python3 -m http.server")).count();
    assert_eq!(pgids.iter().map(servers).collect::<Vec<_>>(), [1, 1, 1], "a session runs twice or not at all");
    let count: i64 = sqlx::query_scalar("select count(*) from sessions").fetch_one(&db).await.unwrap();
    assert_eq!(count, 3);
    let folders = std::fs::read_dir(dir.path().join("sessions"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().join("pid").exists())
        .count();
    assert_eq!(folders, 3);

    for id in &ids {
        assert_eq!(http(port, "DELETE", &format!("/api/v1/sessions/{id}"), &token, None).0, 202);
    }
    wait_for(20, "three stopped sessions", || {
        ids.iter().all(|id| http(port, "GET", &format!("/api/v1/sessions/{id}"), &token, None).1["state"] == "stopped")
    });
    for pgid in &pgids {
        assert_eq!(group(*pgid), Vec::new(), "processes remain after the stop");
    }
}

#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn serve_with_the_kubernetes_runtime_and_no_cluster_says_so_in_one_line(db: PgPool) {
    let output = daas(
        &db,
        &["serve", "--listen", "127.0.0.1:0", "--runtime", "kubernetes", "--kube-config", "/nonexistent/kubeconfig"],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    let last = stderr.trim().lines().last().unwrap_or_default();
    assert!(last.starts_with("daas: cannot read the kubeconfig /nonexistent/kubeconfig"), "{stderr}");
}

/// `daas check` lists each stored link that breaks the storage rule, one line with its
/// proposal, experiment, dataset, location and why, and fails; once fixed it passes.
#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn check_reports_links_outside_their_experiments_folder(db: PgPool) {
    let data = demo(&db).await;
    let root = data.path().display().to_string();
    let output = daas(&db, &["check", "--data-root", &root]);
    assert!(output.status.success(), "the demo follows the rule: {}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "");

    // Links made before the rule: BL04's data on a BL11 experiment, a folder that is gone,
    // a link inside the folder leading to another proposal, a URI.
    std::fs::create_dir_all(data.path().join("BL11/20180101/S0012/gone")).unwrap();
    std::os::unix::fs::symlink(
        data.path().join("BL04/I-20191502/S0201/xrd_operando_01"),
        data.path().join("BL11/20180101/S0013/borrowed"),
    )
    .unwrap();
    for (code, name, location) in [
        ("S0011", "stolen", "BL04/I-20191502/S0201/xrd_operando_01"),
        ("S0012", "gone", "BL11/20180101/S0012/not_there"),
        ("S0013", "borrowed", "BL11/20180101/S0013/borrowed"),
        ("S0014", "remote", "s3://bucket/x"),
    ] {
        sqlx::query(
            "insert into datasets (experiment_id, name, location) select id, $2, $3 from experiments where code = $1",
        )
        .bind(code)
        .bind(name)
        .bind(location)
        .execute(&db)
        .await
        .unwrap();
    }
    let output = daas(&db, &["check", "--data-root", &root]);
    assert!(!output.status.success());
    let out = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(
        lines[0].starts_with(r#"proposal 20180101 experiment S0011 dataset "stolen" location "BL04/I-20191502/S0201/xrd_operando_01": must lie in the experiment's storage folder BL11/20180101/S0011/"#),
        "{out}"
    );
    assert!(lines[1].contains(r#"dataset "gone""#) && lines[1].contains("does not exist"), "{out}");
    assert!(lines[2].contains(r#"dataset "borrowed""#) && lines[2].contains("leads out of"), "{out}");
    assert!(lines[3].contains(r#"dataset "remote""#) && lines[3].contains("a URI"), "{out}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("4 dataset link(s) break the storage rule"));

    // Under another layout every demo link breaks it.
    let output = daas(&db, &["check", "--data-root", &root, "--experiment-storage", "{proposal}/{experiment}"]);
    assert_eq!(String::from_utf8_lossy(&output.stdout).lines().count(), 8 + 4);
    sqlx::query("delete from datasets where name in ('stolen', 'gone', 'borrowed', 'remote')")
        .execute(&db)
        .await
        .unwrap();
    stdout(&daas(&db, &["check", "--data-root", &root]));
}

/// A restart is not held up by open event streams (every open desktop tab has one): on
/// SIGTERM they end at once and daas exits, well inside the 20 s grace period.
#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn sigterm_ends_open_event_streams_and_exits_at_once(db: PgPool) {
    let _data = demo(&db).await;
    let token = stdout(&daas(&db, &["token", "create", "--user", "alice"])).trim().to_string();
    let port = free_port();
    let child = Command::new(DAAS)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--runtime", "fake"])
        .env("DATABASE_URL", url_of(&db))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut server = Server { child, _runtime: None };
    wait_for(30, "daas serve", || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok());
    let (image, flavour, experiment): (String, String, String) = sqlx::query_as(
        "select (select id::text from images where name = 'JupyterLab'), (select id::text from flavours where name = 'small'),
                (select id::text from experiments where code = 'S0011')",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    let body = serde_json::json!({"image": image, "flavour": flavour, "experiment": experiment}).to_string();
    let session = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(
            stream,
            "POST /api/v1/sessions HTTP/1.0\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let json = response.split_once("\r\n\r\n").unwrap().1;
        let id = serde_json::from_str::<serde_json::Value>(json).unwrap()["id"].as_str().unwrap().to_string();
        // Five open streams on the running session, as five open tabs would hold.
        (0..5)
            .map(|_| {
                let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
                write!(stream, "GET /api/v1/sessions/{id}/events HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\n\r\n")
                    .unwrap();
                let mut first = [0u8; 64];
                let n = stream.read(&mut first).unwrap();
                assert!(String::from_utf8_lossy(&first[..n]).starts_with("HTTP/1.1 200"));
                stream
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    let term = Instant::now();
    Command::new("kill").args(["-TERM", &server.child.id().to_string()]).status().unwrap();
    wait_for(10, "daas to exit", || server.child.try_wait().unwrap().is_some());
    assert!(term.elapsed() < Duration::from_secs(5), "exited {:?} after SIGTERM", term.elapsed());
    drop(session);
}

/// Under socket activation (systemd's `LISTEN_FDS`) the listening socket outlives daas:
/// what arrives while daas restarts waits in its queue and is answered by the next daas.
#[sqlx::test(migrator = "daas::db::MIGRATOR")]
async fn a_restart_on_a_handed_over_socket_refuses_no_connection(db: PgPool) {
    use command_fds::{CommandFdExt, FdMapping};
    let _data = demo(&db).await;
    // The socket systemd's socket unit would hold.
    let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = socket.local_addr().unwrap().port();
    let start = || {
        let mut command = Command::new(DAAS);
        // A port that is not the socket's: daas must serve on the one handed over.
        command
            .args(["serve", "--runtime", "fake", "--listen", &format!("127.0.0.1:{}", free_port())])
            .env("DATABASE_URL", url_of(&db))
            .env("LISTEN_FDS", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // As systemd hands it over: fd 3.
        let parent_fd = socket.try_clone().unwrap().into();
        command.fd_mappings(vec![FdMapping { parent_fd, child_fd: 3 }]).unwrap();
        Server { child: command.spawn().unwrap(), _runtime: None }
    };
    let mut first = start();
    wait_for(30, "the first daas", || http_get(port, "/readyz", None).0 == 200);
    Command::new("kill").args(["-TERM", &first.child.id().to_string()]).status().unwrap();
    wait_for(10, "the first daas to exit", || first.child.try_wait().unwrap().is_some());
    // No daas runs: the request is queued, not refused, and the next daas answers it.
    let waiting = std::thread::spawn(move || http_get(port, "/readyz", None));
    std::thread::sleep(Duration::from_millis(300));
    let _second = start();
    assert_eq!(waiting.join().unwrap().0, 200, "the request made during the restart was not answered");
}
