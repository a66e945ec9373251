//! The mocked API server (kube-rs controller-rs's ApiServerVerifier pattern) and fixtures.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use clap::Parser;
use daas::runtime::kube::{KubeArgs, KubeRuntime, RBAC_RULES};
use daas::runtime::{DatasetMount, ImageSpec, Kind, LaunchSpec, Resources};
use http::{Method, Request, Response};
use kube::client::Body;
use serde_json::{json, Value};
use tower_test::mock::{Handle, SendResponse};
use uuid::Uuid;

pub const NS: &str = "sessions";
/// How long a scenario waits for a call before failing the test.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    kube: KubeArgs,
}

/// The runtime's configuration in tests: quick retries, otherwise the defaults.
pub fn args(extra: &[&str]) -> KubeArgs {
    let mut argv = vec!["daas"];
    for (flag, value) in [("--kube-namespace", NS), ("--kube-backoff-ms", "1"), ("--kube-request-timeout-seconds", "2")]
    {
        if !extra.contains(&flag) {
            argv.extend([flag, value]);
        }
    }
    argv.extend_from_slice(extra);
    Cli::parse_from(argv).kube
}

/// A runtime over a mocked API server.
pub fn runtime(args: KubeArgs) -> (KubeRuntime, ApiServer) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, NS);
    (KubeRuntime::new(client, args), ApiServer { handle, held: Vec::new(), watches: Vec::new() })
}

pub struct ApiServer {
    handle: Handle<Request<Body>, Response<Body>>,
    /// Watches left open (never answered) so the watcher waits instead of retrying.
    held: Vec<(String, SendResponse<Response<Body>>)>,
    /// The paths watched so far.
    watches: Vec<String>,
}

/// One call the runtime made.
pub struct Call {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub body: Value,
    send: SendResponse<Response<Body>>,
}

/// The RBAC rule a call needs: (apiGroup, resource, verb).
fn needs(method: &Method, path: &str, query: &str) -> (String, String, String) {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (group, rest) = match parts.as_slice() {
        ["api", "v1", rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => panic!("not a Kubernetes API path: {path}"),
    };
    let ["namespaces", ns, rest @ ..] = rest else { panic!("a call outside a namespace: {path}") };
    assert_eq!(*ns, NS, "a call outside the session namespace: {path}");
    let (resource, named) = match rest {
        [resource] => (resource.to_string(), false),
        [resource, _name] => (resource.to_string(), true),
        [resource, _name, sub] => (format!("{resource}/{sub}"), true),
        _ => panic!("unexpected path {path}"),
    };
    let verb = match (method.as_str(), named) {
        ("GET", true) => "get",
        ("GET", false) if query.contains("watch=true") => "watch",
        ("GET", false) => "list",
        ("POST", false) => "create",
        ("DELETE", true) => "delete",
        ("PUT", true) => "update",
        ("PATCH", true) => "patch",
        _ => panic!("unexpected {method} {path}"),
    };
    (group.into(), resource, verb.into())
}

/// Asserts that RBAC_RULES (and so the chart's Role) grants the call; returns its verb.
fn allowed(method: &Method, path: &str, query: &str) -> String {
    let (group, resource, verb) = needs(method, path, query);
    assert!(
        RBAC_RULES.iter().any(|(g, r, verbs)| *g == group && *r == resource && verbs.contains(&verb.as_str())),
        "{method} {path} needs `{verb}` on `{group}/{resource}`, which RBAC_RULES lacks"
    );
    verb
}

impl ApiServer {
    /// The next call, failing the test when none comes in time. Each call is checked
    /// against the RBAC rules the chart grants. Watches are held open, never answered, so
    /// the watcher waits instead of retrying; they do not count as calls here.
    pub async fn next(&mut self) -> Call {
        loop {
            let (request, send) = tokio::time::timeout(CALL_TIMEOUT, self.handle.next_request())
                .await
                .expect("the runtime made no further call to the API server")
                .expect("the runtime's client is gone");
            let method = request.method().clone();
            let path = request.uri().path().to_owned();
            let query = request.uri().query().unwrap_or_default().to_owned();
            let bytes = request.into_body().collect_bytes().await.unwrap();
            let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
            let verb = allowed(&method, &path, &query);
            if verb == "watch" {
                self.watches.push(path.clone());
                self.held.push((path, send));
                continue;
            }
            return Call { method, path, query, body, send };
        }
    }

    /// The next call, asserting its method and path (without the query).
    pub async fn expect(&mut self, method: Method, path: &str) -> Call {
        let call = self.next().await;
        assert_eq!((&call.method, call.path.as_str()), (&method, path), "unexpected call (query {})", call.query);
        call
    }

    /// Serves the watcher's first listings (pods and events, in either order) and keeps
    /// its watches open.
    pub async fn serve_watch(&mut self, pods: Vec<Value>, events: Vec<Value>) {
        let mut pods = Some(pods);
        let mut events = Some(events);
        for _ in 0..2 {
            let call = self.next().await;
            assert_eq!(call.method, Method::GET);
            assert!(!call.query.contains("watch=true"), "a watch before the listing: {}", call.query);
            if call.path == format!("/api/v1/namespaces/{NS}/pods") {
                assert!(
                    call.query.contains("labelSelector=app.kubernetes.io%2Fmanaged-by%3Ddaas"),
                    "the pod watch selects daas's pods: {}",
                    call.query
                );
                call.respond(200, list("PodList", pods.take().expect("pods listed twice")));
            } else {
                assert_eq!(call.path, format!("/api/v1/namespaces/{NS}/events"));
                assert!(call.query.contains("fieldSelector=involvedObject.kind%3DPod"), "{}", call.query);
                call.respond(200, list("EventList", events.take().expect("events listed twice")));
            }
        }
    }

    /// Asserts that the watcher watches pods and events (after its listings).
    pub async fn assert_watching(&mut self) {
        let deadline = tokio::time::Instant::now() + CALL_TIMEOUT;
        while self.watches.len() < 2 {
            match tokio::time::timeout_at(deadline, self.handle.next_request()).await {
                Ok(Some((request, send))) => {
                    let query = request.uri().query().unwrap_or_default();
                    let verb = allowed(request.method(), request.uri().path(), query);
                    assert_eq!(verb, "watch", "expected a watch, got {} {}", request.method(), request.uri());
                    self.watches.push(request.uri().path().to_owned());
                    self.held.push((request.uri().path().to_owned(), send));
                }
                _ => panic!("the watcher did not open its watches"),
            }
        }
        let mut first: Vec<_> = self.watches[..2].to_vec();
        first.sort();
        assert_eq!(first, [format!("/api/v1/namespaces/{NS}/events"), format!("/api/v1/namespaces/{NS}/pods")]);
    }

    /// Answers the open watch of `path` with these watch events (one JSON per line); the
    /// stream then ends, and the watcher opens a new watch (held like the others).
    pub fn answer_watch(&mut self, path: &str, events: &[Value]) {
        let at = self.held.iter().position(|(p, _)| p == path).unwrap_or_else(|| panic!("no open watch of {path}"));
        let (_, send) = self.held.remove(at);
        let lines: String = events.iter().map(|e| format!("{e}\n")).collect();
        let response = Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(Body::from(lines.into_bytes()))
            .unwrap();
        send.send_response(response);
    }

    /// Asserts that the runtime makes no further call (but re-opened watches).
    pub async fn done(mut self) {
        while let Ok(Some((request, send))) =
            tokio::time::timeout(Duration::from_millis(200), self.handle.next_request()).await
        {
            let query = request.uri().query().unwrap_or_default();
            if allowed(request.method(), request.uri().path(), query) != "watch" {
                panic!("unexpected call {} {}", request.method(), request.uri());
            }
            self.held.push((request.uri().path().to_owned(), send));
        }
    }
}

impl Call {
    /// Never answers (while the returned sender lives).
    pub fn unanswered(self) -> SendResponse<Response<Body>> {
        self.send
    }

    pub fn respond(self, status: u16, body: Value) {
        let response = Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(&body).unwrap()))
            .unwrap();
        self.send.send_response(response);
    }

    pub fn respond_text(self, text: &str) {
        let response = Response::builder()
            .status(200)
            .header("content-type", "text/plain")
            .body(Body::from(text.as_bytes().to_vec()))
            .unwrap();
        self.send.send_response(response);
    }

    /// Answers a create with the object as the API server stores it (with a uid).
    pub fn created(self, uid: &str) {
        let mut object = self.body.clone();
        object["metadata"]["uid"] = json!(uid);
        object["metadata"]["namespace"] = json!(NS);
        object["metadata"]["creationTimestamp"] = json!("2026-11-21T10:00:00Z");
        self.respond(201, object);
    }

    /// Answers with a Kubernetes Status error.
    pub fn status(self, code: u16, reason: &str) {
        self.respond(
            code,
            json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": format!("{reason} (test)"), "reason": reason, "code": code,
            }),
        );
    }
}

pub fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": kind, "metadata": {"resourceVersion": "100"}, "items": items})
}

pub fn id(n: u8) -> Uuid {
    Uuid::parse_str(&format!("00000000-0000-4000-8000-0000000000{n:02}")).unwrap()
}

fn spec(n: u8, kind: Kind, image: &str, resources: Resources) -> LaunchSpec {
    LaunchSpec {
        session_id: id(n),
        kind,
        owner: "alice".into(),
        uid: 3_000_007,
        image: ImageSpec {
            name: image.into(),
            reference: format!("registry.example.org/daas/{image}:1.0"),
            local_command: None,
        },
        resources,
        proposal: "20180101".into(),
        experiment: "S0011".into(),
        experiment_folder: "BL11/20180101/S0011".into(),
        datasets: vec![
            DatasetMount { name: "tomo_scan_001".into(), location: "BL11/20180101/S0011/tomo_scan_001".into() },
            DatasetMount { name: "Flat Fields".into(), location: "BL11/20180101/S0011/flats".into() },
        ],
        secret: "test-secret-not-real".into(),
        base_url: format!("/sessions/{}/", id(n)),
        parameters: None,
        expires_at: None,
    }
}

pub fn desktop() -> LaunchSpec {
    spec(
        1,
        Kind::Desktop,
        "desktop",
        Resources { cpu_millis: 2000, memory_mib: 4096, disk_gib: 10, ..Default::default() },
    )
}

pub fn notebook() -> LaunchSpec {
    spec(2, Kind::Notebook, "notebook", Resources { cpu_millis: 1000, memory_mib: 2048, ..Default::default() })
}

/// The reconstruction studio: a web app, serving HTTP under its base URL.
pub fn webapp() -> LaunchSpec {
    let mut s =
        spec(4, Kind::WebApp, "recon-studio", Resources { cpu_millis: 2000, memory_mib: 8192, ..Default::default() });
    s.parameters = Some(json!({"dataset": "tomo_scan_001"}));
    s
}

pub fn gpu_job() -> LaunchSpec {
    let mut s = spec(
        3,
        Kind::Job,
        "tomo-recon",
        Resources {
            cpu_millis: 8000,
            memory_mib: 32768,
            gpus: 1,
            gpu_type: Some("NVIDIA-A100-SXM4-40GB".into()),
            disk_gib: 50,
            node_selector: BTreeMap::from([("node-role.example.org/gpu".into(), "true".into())]),
            tolerations: vec![json!({"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"})],
            slurm: Default::default(),
        },
    );
    s.parameters = Some(json!({"algorithm": "gridrec", "center": 1024.5}));
    s
}

/// Runs `scripts/k8s-check.py` from the tools' virtualenv (scripts/install-deps.sh).
pub fn k8s_check(args: &[&str], stdin: Option<&Value>) -> (bool, String, String) {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let python = format!("{root}/.daas/venv/bin/python");
    assert!(std::path::Path::new(&python).exists(), "{python} is missing: run scripts/install-deps.sh (make deps)");
    let mut child = Command::new(python)
        .arg(format!("{root}/scripts/k8s-check.py"))
        .args(args)
        .current_dir(root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input = stdin.map(|v| serde_json::to_vec(v).unwrap()).unwrap_or_default();
    {
        use std::io::Write;
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(&input).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
