//! The Helm chart, rendered by Helm's own engine (helm-python-sdk) with its default values
//! and with every option on: lint-clean, valid Kubernetes, a Role granting exactly what
//! the runtime calls, unprivileged pods, and session pods shut off but from the portal.

use std::collections::BTreeSet;

use daas::runtime::kube::manifests::{self, SESSION_PODS};
use daas::runtime::kube::{KUBERNETES_VERSION, RBAC_RULES};
use daas::runtime::Kind;
use serde_json::{json, Value};

use crate::common::k8s_check;

fn render(values: Option<&str>) -> Vec<Value> {
    let mut args = vec!["chart", KUBERNETES_VERSION, "helm/daas"];
    args.extend(values);
    let (ok, stdout, stderr) = k8s_check(&args, None);
    assert!(ok, "the chart does not render to valid Kubernetes:\n{stderr}");
    serde_json::from_str(&stdout).unwrap()
}

fn find<'a>(objects: &'a [Value], kind: &str) -> &'a Value {
    objects.iter().find(|o| o["kind"] == kind).unwrap_or_else(|| panic!("no {kind} rendered"))
}

#[test]
fn the_chart_renders_valid_kubernetes_with_default_and_full_values() {
    let defaults = render(None);
    let kinds: BTreeSet<&str> = defaults.iter().map(|o| o["kind"].as_str().unwrap()).collect();
    for kind in [
        "ConfigMap",
        "Deployment",
        "Ingress",
        "Job",
        "NetworkPolicy",
        "Role",
        "RoleBinding",
        "Secret",
        "Service",
        "ServiceAccount",
    ] {
        assert!(kinds.contains(kind), "{kind} missing from {kinds:?}");
    }
    let full = render(Some("helm/daas/ci/full-values.yaml"));
    let namespace = find(&full, "Namespace");
    assert_eq!(namespace["metadata"]["name"], "daas-sessions");
    // NFS data volumes need the "baseline" Pod Security level; the rest is "restricted".
    assert_eq!(namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"], "baseline");
    assert_eq!(find(&full, "Role")["metadata"]["namespace"], "daas-sessions");
    assert!(full.iter().all(|o| o["kind"] != "Secret"), "an existing secret is used");
}

#[test]
fn the_chart_role_grants_exactly_what_the_runtime_calls() {
    for values in [None, Some("helm/daas/ci/full-values.yaml")] {
        let objects = render(values);
        let role = find(&objects, "Role");
        let mut granted = BTreeSet::new();
        for rule in role["rules"].as_array().unwrap() {
            for group in rule["apiGroups"].as_array().unwrap() {
                for resource in rule["resources"].as_array().unwrap() {
                    for verb in rule["verbs"].as_array().unwrap() {
                        let entry = (
                            group.as_str().unwrap().to_owned(),
                            resource.as_str().unwrap().to_owned(),
                            verb.as_str().unwrap().to_owned(),
                        );
                        assert!(granted.insert(entry.clone()), "{entry:?} granted twice");
                    }
                }
            }
        }
        let called: BTreeSet<_> = RBAC_RULES
            .iter()
            .flat_map(|(g, r, verbs)| verbs.iter().map(move |v| (g.to_string(), r.to_string(), v.to_string())))
            .collect();
        assert_eq!(granted, called);
        // No cluster-wide grant: a Role in the session namespace, bound to the portal.
        assert!(objects.iter().all(|o| o["kind"] != "ClusterRole" && o["kind"] != "ClusterRoleBinding"));
        let binding = find(&objects, "RoleBinding");
        assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
        assert_eq!(binding["subjects"][0]["name"], find(&objects, "ServiceAccount")["metadata"]["name"]);
    }
}

#[test]
fn the_session_network_policy_admits_the_portals_pods() {
    let objects = render(None);
    let config = &find(&objects, "ConfigMap")["data"];
    let pod_labels = &find(&objects, "Deployment")["spec"]["template"]["metadata"]["labels"];
    let portal_labels = config["DAAS_KUBE_PORTAL_LABELS"].as_str().unwrap();
    for pair in portal_labels.split(',') {
        let (k, v) = pair.split_once('=').unwrap();
        assert_eq!(pod_labels[k], v, "the portal's pods lack {pair}");
    }
    let deployment = find(&objects, "Deployment");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(find(&objects, "Job")["metadata"]["annotations"]["helm.sh/hook"], "pre-install,pre-upgrade");
}

#[test]
fn values_breaking_the_schema_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.yaml");
    std::fs::write(&path, "sessions:\n  data:\n    source: nfs\n").unwrap();
    let (ok, _, stderr) = k8s_check(&["chart", KUBERNETES_VERSION, "helm/daas", path.to_str().unwrap()], None);
    assert!(!ok && stderr.contains("nfsServer"), "{stderr}");
}

#[test]
fn the_portal_and_its_migrations_run_unprivileged() {
    for values in [None, Some("helm/daas/ci/full-values.yaml")] {
        let objects = render(values);
        for kind in ["Deployment", "Job"] {
            let pod = &find(&objects, kind)["spec"]["template"]["spec"];
            let security = &pod["securityContext"];
            assert_eq!(security["runAsNonRoot"], true, "{kind}");
            assert!(security["runAsUser"].as_i64().unwrap() > 0, "{kind}");
            assert_eq!(security["seccompProfile"], json!({"type": "RuntimeDefault"}), "{kind}");
            assert_eq!(pod["enableServiceLinks"], false, "{kind}");
            for host in ["hostNetwork", "hostPID", "hostIPC"] {
                assert!(pod[host].is_null(), "{kind}: {host}");
            }
            let containers: Vec<&Value> = ["initContainers", "containers"]
                .iter()
                .flat_map(|list| pod[*list].as_array().into_iter().flatten())
                .collect();
            assert!(!containers.is_empty());
            for container in containers {
                let security = &container["securityContext"];
                assert_eq!(security["runAsNonRoot"], true, "{kind}");
                assert_eq!(security["allowPrivilegeEscalation"], false, "{kind}");
                assert_eq!(security["privileged"], false, "{kind}");
                assert_eq!(security["readOnlyRootFilesystem"], true, "{kind}");
                assert_eq!(security["capabilities"], json!({"drop": ["ALL"]}), "{kind}");
            }
        }
        // Only the portal talks to the API server; its migrations get no token.
        let deployment = &find(&objects, "Deployment")["spec"]["template"]["spec"];
        assert_eq!(deployment["automountServiceAccountToken"], true);
        assert_eq!(find(&objects, "Job")["spec"]["template"]["spec"]["automountServiceAccountToken"], false);
    }
}

#[test]
fn the_chart_shuts_session_pods_off_but_from_the_portal() {
    for values in [None, Some("helm/daas/ci/full-values.yaml")] {
        let objects = render(values);
        let config = &find(&objects, "ConfigMap")["data"];
        let policy = find(&objects, "NetworkPolicy");
        assert_eq!(policy["metadata"]["namespace"], config["DAAS_KUBE_NAMESPACE"]);
        let spec = &policy["spec"];
        // It selects every session pod the runtime makes.
        let mut selector = Vec::new();
        for (k, v) in spec["podSelector"]["matchLabels"].as_object().unwrap() {
            selector.push(format!("{k}={}", v.as_str().unwrap()));
        }
        selector.sort();
        let mut sessions: Vec<&str> = SESSION_PODS.split(',').collect();
        sessions.sort();
        assert_eq!(selector, sessions);

        assert_eq!(spec["policyTypes"], json!(["Ingress", "Egress"]));
        assert_eq!(spec["egress"], json!([]), "no egress, not even DNS");
        let ingress = spec["ingress"].as_array().unwrap();
        assert_eq!(ingress.len(), 1);
        let ports: Vec<Value> = [Kind::Desktop, Kind::Notebook, Kind::Job]
            .into_iter()
            .filter_map(manifests::port)
            .map(|(_, port)| json!({"protocol": "TCP", "port": port}))
            .collect();
        assert_eq!(ingress[0]["ports"], json!(ports), "the session ports, and only them");
        let from = ingress[0]["from"].as_array().unwrap();
        assert_eq!(from.len(), 1);
        // One peer: the portal's pods (their labels are in the Deployment) in its namespace.
        let portal = &find(&objects, "Deployment")["spec"]["template"]["metadata"]["labels"];
        for (k, v) in from[0]["podSelector"]["matchLabels"].as_object().unwrap() {
            assert_eq!(&portal[k], v, "the portal's pods lack {k}={v}");
        }
        assert_eq!(from[0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"], "daas");
        assert!(from[0]["ipBlock"].is_null());
        // The uids sessions run as are the portal's, not a fixed one.
        assert_eq!(config["DAAS_SESSION_UIDS"], "3000000-3999999");
        assert!(config["DAAS_KUBE_RUN_AS_USER"].is_null());
    }
}
