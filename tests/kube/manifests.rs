//! The manifests daas generates: snapshots for a desktop, a notebook and a GPU job, every
//! one of them (and each data source) valid against the pinned Kubernetes schemas, and the
//! isolation of every session pod asserted on the objects themselves: its owner's uid, no
//! privilege, no token, and a NetworkPolicy admitting only the portal and letting nothing out.

use daas::runtime::kube::manifests::{self, owner_reference, Workload};
use daas::runtime::kube::{KubeArgs, KubeHandle, KUBERNETES_VERSION};
use daas::runtime::{Kind, LaunchSpec};
use serde_json::{json, Value};

use crate::common::*;

/// Every object of a session, as JSON, in the order launch creates them.
fn objects(spec: &LaunchSpec, args: &KubeArgs) -> Vec<Value> {
    let names = KubeHandle::new(NS, spec.session_id, spec.kind, &spec.owner);
    let owner = owner_reference(spec.kind, &names.workload, "00000000-0000-0000-0000-00000000beef");
    let m = manifests::build(spec, args, &names, &owner).unwrap();
    let mut all = vec![serde_json::to_value(&m.home_claim).unwrap()];
    all.push(match &m.workload {
        Workload::Pod(p) => serde_json::to_value(p).unwrap(),
        Workload::Job(j) => serde_json::to_value(j).unwrap(),
    });
    all.extend(m.secret.map(|s| serde_json::to_value(s).unwrap()));
    all.extend(m.service.map(|s| serde_json::to_value(s).unwrap()));
    all.push(serde_json::to_value(&m.network_policy).unwrap());
    all
}

#[test]
fn desktop_manifests() {
    insta::assert_yaml_snapshot!(objects(&desktop(), &args(&[])));
}

#[test]
fn notebook_manifests() {
    insta::assert_yaml_snapshot!(objects(&notebook(), &args(&["--kube-portal-namespace", "daas"])));
}

#[test]
fn a_web_app_serves_http_under_its_base_url_with_its_parameters_and_no_secret() {
    let objects = objects(&webapp(), &args(&[]));
    let kinds: Vec<&str> = objects.iter().map(|o| o["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["PersistentVolumeClaim", "Pod", "Service", "NetworkPolicy"], "no Secret: daas adds no token");
    let container = &objects[1]["spec"]["containers"][0];
    assert!(container.get("command").is_none(), "the image's own command runs");
    assert_eq!(container["ports"][0], json!({"name": "http", "containerPort": 8080, "protocol": "TCP"}));
    let env = |name: &str| {
        container["env"].as_array().unwrap().iter().find(|e| e["name"] == name).map(|e| e["value"].clone())
    };
    assert_eq!(env("DAAS_PORT"), Some(json!("8080")));
    assert_eq!(env("DAAS_BASE_URL"), Some(json!(format!("/sessions/{}/", id(4)))));
    assert_eq!(env("DAAS_PARAMETERS"), Some(json!(r#"{"dataset":"tomo_scan_001"}"#)));
    assert_eq!(objects[2]["spec"]["ports"][0]["port"], 8080);
}

#[test]
fn gpu_job_manifests() {
    let args = args(&[
        "--kube-data-source",
        "nfs",
        "--kube-data-nfs-server",
        "nfs.example.org",
        "--kube-home-storage-class",
        "cephfs",
        "--kube-image-pull-secret",
        "registry",
    ]);
    insta::assert_yaml_snapshot!(objects(&gpu_job(), &args));
}

#[test]
fn every_generated_manifest_is_valid_kubernetes() {
    let mut all = Vec::new();
    for args in [
        args(&[]),
        args(&["--kube-data-source", "nfs", "--kube-data-nfs-server", "nfs.example.org"]),
        args(&[
            "--kube-data-source",
            "pvc",
            "--kube-data-claim",
            "beamline-data",
            "--kube-portal-namespace",
            "daas",
            "--kube-home-storage-class",
            "cephfs",
            "--kube-image-pull-secret",
            "registry",
        ]),
    ] {
        for spec in every_spec() {
            all.extend(objects(&spec, &args));
        }
    }
    let (ok, _, stderr) = k8s_check(&["validate", KUBERNETES_VERSION], Some(&json!(all)));
    assert!(ok, "{stderr}");
    assert!(stderr.contains(&format!("{} objects valid", all.len())), "{stderr}");
}

#[test]
fn the_validator_rejects_an_invalid_manifest() {
    // So that the test above could fail: an unknown field and a wrong type, also in the
    // security context and the network policy.
    let desktop = objects(&desktop(), &args(&[]));
    let mut pod = desktop[1].clone();
    pod["spec"]["containers"][0]["imagePullPolicyy"] = json!("Always");
    let mut service = desktop[3].clone();
    service["spec"]["ports"][0]["port"] = json!("vnc");
    let mut uid = desktop[1].clone();
    uid["spec"]["securityContext"]["runAsUser"] = json!("alice");
    let mut capabilities = desktop[1].clone();
    capabilities["spec"]["containers"][0]["securityContext"]["capabilities"]["drop"] = json!("ALL");
    let mut seccomp = desktop[1].clone();
    seccomp["spec"]["securityContext"]["seccompProfile"]["typ"] = json!("RuntimeDefault");
    let mut egress = desktop[4].clone();
    egress["spec"]["egress"] = json!({"to": []});
    for bad in [pod, service, uid, capabilities, seccomp, egress] {
        let (ok, _, stderr) = k8s_check(&["validate", KUBERNETES_VERSION], Some(&json!([bad])));
        assert!(!ok && stderr.contains("invalid against Kubernetes"), "{stderr}");
    }
}

/// The configurations the isolation tests build every kind of session with.
fn every_args() -> Vec<KubeArgs> {
    vec![
        args(&[]),
        args(&["--kube-data-source", "nfs", "--kube-data-nfs-server", "nfs.example.org"]),
        args(&["--kube-data-source", "pvc", "--kube-data-claim", "beamline-data", "--kube-portal-namespace", "daas"]),
    ]
}

/// Every kind of session, of alice (the fixtures' uid) and of bob (another uid).
fn every_spec() -> Vec<LaunchSpec> {
    let mut all = Vec::new();
    for spec in [desktop(), notebook(), webapp(), gpu_job()] {
        let mut bob = spec.clone();
        bob.owner = "bob".into();
        bob.uid = 3_000_123;
        all.extend([spec, bob]);
    }
    all
}

/// The pod spec of a session's workload: the Pod's, or the Job's template's.
fn pod_spec_of(workload: &Value) -> &Value {
    match workload["kind"].as_str() {
        Some("Pod") => &workload["spec"],
        Some("Job") => &workload["spec"]["template"]["spec"],
        other => panic!("the workload is a {other:?}"),
    }
}

#[test]
fn every_session_pod_runs_as_its_owner_without_privileges() {
    for args in every_args() {
        for spec in every_spec() {
            let objects = objects(&spec, &args);
            let what = format!("{} of {}", spec.kind.as_str(), spec.owner);
            let pod = pod_spec_of(&objects[1]);
            let uid = json!(spec.uid);
            let security = &pod["securityContext"];
            assert_eq!(security["runAsNonRoot"], true, "{what}");
            for field in ["runAsUser", "runAsGroup", "fsGroup"] {
                assert_eq!(security[field], uid, "{what}: {field}");
            }
            assert_eq!(security["seccompProfile"], json!({"type": "RuntimeDefault"}), "{what}");
            assert_eq!(pod["automountServiceAccountToken"], false, "{what}");
            assert_eq!(pod["enableServiceLinks"], false, "{what}");
            for host in ["hostNetwork", "hostPID", "hostIPC", "hostUsers", "serviceAccountName"] {
                assert!(pod[host].is_null(), "{what}: {host} is set");
            }

            let containers: Vec<&Value> = ["initContainers", "containers", "ephemeralContainers"]
                .iter()
                .flat_map(|list| pod[*list].as_array().into_iter().flatten())
                .collect();
            assert!(!containers.is_empty());
            for container in containers {
                let name = format!("{what}: container {}", container["name"]);
                let security = &container["securityContext"];
                assert_eq!(security["allowPrivilegeEscalation"], false, "{name}");
                assert_eq!(security["privileged"], false, "{name}");
                assert_eq!(security["capabilities"], json!({"drop": ["ALL"]}), "{name}: no capability added");
                assert_eq!(security["readOnlyRootFilesystem"], true, "{name}");
                assert_eq!(security["runAsNonRoot"], true, "{name}");
                // A container may not choose another identity than the pod's.
                for field in ["runAsUser", "runAsGroup", "seccompProfile", "procMount", "windowsOptions"] {
                    assert!(security[field].is_null(), "{name}: {field} overrides the pod's");
                }
                // With a read-only root, the places a session may write are its volumes:
                // the home and two emptyDirs; the data and a notebook's Jupyter settings never.
                let mounts = container["volumeMounts"].as_array().unwrap();
                for mount in mounts {
                    match mount["name"].as_str().unwrap() {
                        "data" | "jupyter-config" => assert_eq!(mount["readOnly"], true, "{name}: {mount}"),
                        "home" | "tmp" | "var-tmp" => assert!(mount["subPath"].is_null(), "{name}: {mount}"),
                        other => panic!("{name}: unexpected volume {other}"),
                    }
                }
                let volumes = pod["volumes"].as_array().unwrap();
                for (volume, dir) in [("tmp", "/tmp"), ("var-tmp", "/var/tmp")] {
                    assert!(mounts.iter().any(|m| m["mountPath"] == dir && m["name"] == volume), "{name}: {dir}");
                    let volume = volumes.iter().find(|v| v["name"] == volume).unwrap();
                    assert_eq!(volume["emptyDir"], json!({}), "{name}: {dir} is not an emptyDir");
                }
            }
        }
    }
}

#[test]
fn two_users_sessions_never_share_an_identity() {
    let args = args(&[]);
    let alice = objects(&desktop(), &args);
    let mut spec = desktop();
    spec.owner = "bob".into();
    spec.uid = 3_000_123;
    let bob = objects(&spec, &args);
    let (alice, bob) = (&pod_spec_of(&alice[1])["securityContext"], &pod_spec_of(&bob[1])["securityContext"]);
    assert_eq!(alice["runAsUser"], 3_000_007);
    assert_eq!(bob["runAsUser"], 3_000_123);
    assert_ne!(alice["fsGroup"], bob["fsGroup"]);
}

#[test]
fn every_session_network_policy_admits_only_the_portal_on_its_port_and_lets_nothing_out() {
    for args in every_args() {
        for spec in [desktop(), notebook(), webapp(), gpu_job()] {
            let objects = objects(&spec, &args);
            let what = spec.kind.as_str();
            let policy = objects.last().unwrap();
            assert_eq!(policy["kind"], "NetworkPolicy");
            let policy = &policy["spec"];

            // It selects this session's pods (and only them: the session id is unique).
            let workload = &objects[1];
            let pod_labels = match workload["kind"].as_str() {
                Some("Job") => &workload["spec"]["template"]["metadata"]["labels"],
                _ => &workload["metadata"]["labels"],
            };
            let selector = policy["podSelector"]["matchLabels"].as_object().unwrap();
            assert_eq!(selector.get("daas.io/session-id"), Some(&json!(spec.session_id.to_string())), "{what}");
            for (k, v) in selector {
                assert_eq!(&pod_labels[k], v, "{what}: the policy does not select the pod");
            }

            // Both directions are isolated, and no egress rule opens anything: not even DNS.
            assert_eq!(policy["policyTypes"], json!(["Ingress", "Egress"]), "{what}");
            assert_eq!(policy["egress"], json!([]), "{what}");

            let ingress = policy["ingress"].as_array().unwrap();
            let container = &pod_spec_of(workload)["containers"][0];
            match manifests::port(spec.kind) {
                None => {
                    assert_eq!(spec.kind, Kind::Job);
                    assert!(ingress.is_empty(), "{what}: a job admits nothing");
                    assert!(container["ports"].is_null());
                }
                Some((_, port)) => {
                    assert_eq!(ingress.len(), 1, "{what}");
                    assert_eq!(ingress[0]["ports"], json!([{"protocol": "TCP", "port": port}]), "{what}");
                    assert_eq!(container["ports"][0]["containerPort"], port, "{what}: the policy's port is the pod's");
                    let from = ingress[0]["from"].as_array().unwrap();
                    assert_eq!(from.len(), 1, "{what}: one peer");
                    let peer = &from[0];
                    assert_eq!(peer["podSelector"]["matchLabels"], json!(args.kube_portal_labels.0), "{what}");
                    assert!(peer["ipBlock"].is_null(), "{what}");
                    match &args.kube_portal_namespace {
                        // The same peer: the portal's labels AND its namespace.
                        Some(ns) => assert_eq!(
                            peer["namespaceSelector"],
                            json!({"matchLabels": {"kubernetes.io/metadata.name": ns}}),
                            "{what}"
                        ),
                        // No namespaceSelector: pods of the policy's own namespace only.
                        None => assert!(peer["namespaceSelector"].is_null(), "{what}"),
                    }
                }
            }
        }
    }
}
