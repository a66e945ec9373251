//! The manifests daas generates: snapshots for a desktop, a notebook and a GPU job, and
//! every one of them (and each data source) valid against the pinned Kubernetes schemas.

use daas::runtime::kube::manifests::{self, owner_reference, Workload};
use daas::runtime::kube::{KubeArgs, KubeHandle, KUBERNETES_VERSION};
use daas::runtime::LaunchSpec;
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
        for spec in [desktop(), notebook(), gpu_job()] {
            all.extend(objects(&spec, &args));
        }
    }
    let (ok, _, stderr) = k8s_check(&["validate", KUBERNETES_VERSION], Some(&json!(all)));
    assert!(ok, "{stderr}");
    assert!(stderr.contains(&format!("{} objects valid", all.len())), "{stderr}");
}

#[test]
fn the_validator_rejects_an_invalid_manifest() {
    // So that the test above could fail: an unknown field and a wrong type.
    let mut pod = objects(&desktop(), &args(&[]))[1].clone();
    pod["spec"]["containers"][0]["imagePullPolicyy"] = json!("Always");
    let mut service = objects(&desktop(), &args(&[]))[3].clone();
    service["spec"]["ports"][0]["port"] = json!("vnc");
    for bad in [pod, service] {
        let (ok, _, stderr) = k8s_check(&["validate", KUBERNETES_VERSION], Some(&json!([bad])));
        assert!(!ok && stderr.contains("invalid against Kubernetes"), "{stderr}");
    }
}
