//! The Helm chart, rendered by Helm's own engine (helm-python-sdk) with its default values
//! and with every option on: lint-clean, valid Kubernetes, and a Role granting exactly what
//! the runtime calls.

use std::collections::BTreeSet;

use daas::runtime::kube::{KUBERNETES_VERSION, RBAC_RULES};
use serde_json::Value;

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
