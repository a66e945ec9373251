//! `KubeRuntime::from_args` over real HTTP: a kubeconfig pointing at a small fake API
//! server (axum), and the one-line failures at start-up.

use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::routing::get;
use axum::{Json, Router};
use daas::runtime::kube::KubeRuntime;
use daas::runtime::Runtime;
use serde_json::{json, Value};

use crate::common::*;

type Seen = Arc<Mutex<Vec<String>>>;

/// Lists `items` and keeps watches open; records the Authorization header of each call.
async fn serve(
    State((seen, items)): State<(Seen, Value)>,
    Query(query): Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
) -> axum::response::Response {
    let auth = headers.get("authorization").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    seen.lock().unwrap().push(auth);
    if query.get("watch").map(String::as_str) == Some("true") {
        let body = axum::body::Body::from_stream(futures::stream::pending::<Result<Vec<u8>, std::io::Error>>());
        return axum::response::Response::new(body);
    }
    axum::response::IntoResponse::into_response(Json(list("List", items.as_array().unwrap().clone())))
}

fn kubeconfig(dir: &std::path::Path, server: &str) -> String {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: test\n\
         clusters: [{{name: test, cluster: {{server: '{server}'}}}}]\n\
         users: [{{name: daas, user: {{token: not-a-real-token}}}}]\n\
         contexts: [{{name: test, context: {{cluster: test, user: daas, namespace: {NS}}}}}]\n"
        ),
    )
    .unwrap();
    path.to_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_kubeconfig_connects_and_the_watch_lists_session_pods() {
    let seen: Seen = Arc::default();
    let pod = json!({
        "metadata": {"name": format!("daas-{}", id(7)), "namespace": NS, "labels": {
            "daas.io/session-id": id(7).to_string(), "daas.io/kind": "notebook"}},
    });
    let app = Router::new()
        .route(&format!("/api/v1/namespaces/{NS}/pods"), get(serve))
        .with_state((seen.clone(), json!([pod])))
        .merge(
            Router::new()
                .route(&format!("/api/v1/namespaces/{NS}/events"), get(serve))
                .with_state((seen.clone(), json!([]))),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let dir = tempfile::tempdir().unwrap();

    let rt = KubeRuntime::from_args(&args(&["--kube-config", &kubeconfig(dir.path(), &server)])).await.unwrap();
    let found = rt.list().await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].session_id, id(7));
    let seen = seen.lock().unwrap().clone();
    assert!(seen.len() >= 2, "{seen:?}");
    assert!(seen.iter().all(|a| a == "Bearer not-a-real-token"), "{seen:?}");
}

#[tokio::test]
async fn start_up_fails_with_one_clear_line() {
    let missing = KubeRuntime::from_args(&args(&["--kube-config", "/nonexistent/kubeconfig"])).await;
    let error = format!("{:#}", missing.err().unwrap());
    assert!(error.contains("cannot read the kubeconfig /nonexistent/kubeconfig"), "{error}");

    // Nothing listens there: the watch cannot list.
    let dir = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let server = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let config = kubeconfig(dir.path(), &server);
    let unreachable =
        KubeRuntime::from_args(&args(&["--kube-config", &config, "--kube-request-timeout-seconds", "1"])).await;
    let error = format!("{:#}", unreachable.err().unwrap());
    assert!(error.contains(&format!("cannot watch pods in namespace {NS}")), "{error}");

    let nfs = KubeRuntime::from_args(&args(&["--kube-data-source", "nfs"])).await;
    assert!(format!("{:#}", nfs.err().unwrap()).contains("--kube-data-nfs-server"));
}
