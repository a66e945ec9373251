//! The objects of a session, built from a `LaunchSpec` by pure functions (no API calls),
//! so they can be snapshot-tested and validated against the Kubernetes schemas.

use std::collections::BTreeMap;

use anyhow::{bail, Context};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use super::args::{DataSource, KubeArgs};
use super::names::{path_segment, KubeHandle};
use crate::runtime::{Kind, LaunchSpec, SESSION_LABEL};

/// Label with the session's kind (desktop, notebook, job).
pub const KIND_LABEL: &str = "daas.io/kind";
/// Annotation with the session's handle, so `list` finds every name again after a restart.
pub const HANDLE_ANNOTATION: &str = "daas.io/handle";
/// Annotation with the owner's username (usernames are not always valid label values).
pub const OWNER_ANNOTATION: &str = "daas.io/owner";
/// `app.kubernetes.io/managed-by` of everything daas creates; the watch selects on it.
pub const MANAGED_BY: &str = "daas";
/// Selector of the pods of every session.
pub const SESSION_PODS: &str = "app.kubernetes.io/managed-by=daas,app.kubernetes.io/name=daas-session";
/// Where the user's home volume is mounted; the images' user has it as $HOME.
pub const HOME: &str = "/home/daas";

/// daas's settings for a notebook's Jupyter server (it renders no token into its pages),
/// the same file as the local runtime's; in the session's Secret, mounted at
/// `JUPYTER_CONFIG_DIR`.
const JUPYTER_SETTINGS: &str = include_str!("../../../../tools/jupyter/jupyter_server_config.py");
const JUPYTER_CONFIG: &str = "jupyter_server_config.py";
const JUPYTER_CONFIG_DIR: &str = "/etc/daas/jupyter";

/// The port a session serves on and its name: VNC for a desktop, HTTP for a notebook or a
/// web app.
pub fn port(kind: Kind) -> Option<(&'static str, u16)> {
    match kind {
        Kind::Desktop => Some(("vnc", 5901)),
        Kind::Notebook => Some(("http", 8888)),
        Kind::WebApp => Some(("http", WEBAPP_PORT)),
        Kind::Job => None,
    }
}

/// Where a web app's image must serve HTTP (`DAAS_PORT`), under `DAAS_BASE_URL`.
const WEBAPP_PORT: u16 = 8080;

/// The session's Pod (desktop, notebook) or Job (job).
#[derive(Clone, Debug)]
pub enum Workload {
    Pod(Box<Pod>),
    Job(Box<Job>),
}

/// Everything a session creates, in the order launch creates it.
#[derive(Clone, Debug)]
pub struct Manifests {
    pub home_claim: PersistentVolumeClaim,
    pub workload: Workload,
    pub secret: Option<Secret>,
    pub service: Option<Service>,
    pub network_policy: NetworkPolicy,
}

/// Builds every object of a session; `owner` is the created workload, which owns the
/// dependents so that deleting it removes them.
pub fn build(
    spec: &LaunchSpec,
    args: &KubeArgs,
    names: &KubeHandle,
    owner: &OwnerReference,
) -> anyhow::Result<Manifests> {
    Ok(Manifests {
        home_claim: home_claim(spec, args, names)?,
        workload: workload(spec, args, names)?,
        secret: secret(spec, names, owner)?,
        service: service(spec, names, owner)?,
        network_policy: network_policy(spec, args, names, owner)?,
    })
}

/// The owner reference the dependents of a workload carry.
pub fn owner_reference(kind: Kind, name: &str, uid: &str) -> OwnerReference {
    let (api_version, kind) = match kind {
        Kind::Job => ("batch/v1", "Job"),
        _ => ("v1", "Pod"),
    };
    OwnerReference {
        api_version: api_version.into(),
        kind: kind.into(),
        name: name.into(),
        uid: uid.into(),
        controller: Some(true),
        // true would need the finalizers subresource in the Role; GC works without it.
        block_owner_deletion: None,
    }
}

fn labels(spec: &LaunchSpec, component: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), "daas-session".into()),
        ("app.kubernetes.io/instance".into(), format!("daas-{}", spec.session_id)),
        ("app.kubernetes.io/component".into(), component.into()),
        ("app.kubernetes.io/part-of".into(), "daas".into()),
        ("app.kubernetes.io/managed-by".into(), MANAGED_BY.into()),
        (SESSION_LABEL.into(), spec.session_id.to_string()),
        (KIND_LABEL.into(), spec.kind.as_str().into()),
    ])
}

fn typed<T: DeserializeOwned>(what: &str, value: Value) -> anyhow::Result<T> {
    serde_json::from_value(value).with_context(|| format!("building the {what}"))
}

/// Refuses a path that could leave the data root: absolute, `..`, or a URI.
fn relative_path(what: &str, path: &str) -> anyhow::Result<String> {
    let path = path.trim_matches('/');
    if path.is_empty()
        || path.contains("://")
        || path.split('/').any(|part| part == ".." || part == "." || part.is_empty())
    {
        bail!("{what} `{path}` is not a relative path below the data root");
    }
    Ok(path.to_owned())
}

/// The experiment's folder below the data root (`DAAS_EXPERIMENT_STORAGE`, resolved at
/// launch), checked again: a volume's `subPath` must not climb out.
fn experiment_path(spec: &LaunchSpec) -> anyhow::Result<String> {
    relative_path("experiment folder", &spec.experiment_folder)
}

fn data_volume(args: &KubeArgs) -> Value {
    match args.kube_data_source {
        DataSource::Nfs => json!({"name": "data", "nfs": {
            "server": args.kube_data_nfs_server, "path": args.kube_data_path, "readOnly": true}}),
        DataSource::HostPath => json!({"name": "data", "hostPath": {
            "path": args.kube_data_path, "type": "Directory"}}),
        DataSource::Pvc => json!({"name": "data", "persistentVolumeClaim": {
            "claimName": args.kube_data_claim, "readOnly": true}}),
    }
}

fn resources(spec: &LaunchSpec) -> Value {
    let r = &spec.resources;
    let mut requests = json!({"cpu": format!("{}m", r.cpu_millis), "memory": format!("{}Mi", r.memory_mib)});
    let mut limits = requests.clone();
    if r.disk_gib > 0 {
        requests["ephemeral-storage"] = json!(format!("{}Gi", r.disk_gib));
        limits["ephemeral-storage"] = json!(format!("{}Gi", r.disk_gib));
    }
    if r.gpus > 0 {
        // Extended resources are requested through their limit alone.
        limits["nvidia.com/gpu"] = json!(r.gpus.to_string());
    }
    json!({"requests": requests, "limits": limits})
}

/// The pod template shared by a session Pod and a Job's pods.
fn pod_spec(spec: &LaunchSpec, args: &KubeArgs, names: &KubeHandle) -> anyhow::Result<Value> {
    let r = &spec.resources;
    if r.cpu_millis <= 0 || r.memory_mib <= 0 || r.gpus < 0 || r.disk_gib < 0 {
        bail!("the flavour's resources must be positive");
    }
    let mut node_selector = r.node_selector.clone();
    if let (true, Some(gpu_type)) = (r.gpus > 0, &r.gpu_type) {
        // The label of NVIDIA's GPU feature discovery; a flavour may set its own.
        node_selector.entry("nvidia.com/gpu.product".into()).or_insert_with(|| gpu_type.clone());
    }
    let mut mounts = vec![
        json!({"name": "data", "mountPath": "/data", "subPath": experiment_path(spec)?, "readOnly": true}),
        json!({"name": "home", "mountPath": HOME}),
        json!({"name": "tmp", "mountPath": "/tmp"}),
        json!({"name": "var-tmp", "mountPath": "/var/tmp"}),
    ];
    let mut seen = std::collections::BTreeSet::new();
    for dataset in &spec.datasets {
        let dir = path_segment(&dataset.name);
        if !seen.insert(dir.clone()) {
            bail!("two datasets would be mounted at /datasets/{dir}");
        }
        mounts.push(json!({
            "name": "data",
            "mountPath": format!("/datasets/{dir}"),
            "subPath": relative_path("dataset location", &dataset.location)?,
            "readOnly": true,
        }));
    }
    let mut env = vec![
        json!({"name": "DAAS_SESSION_ID", "value": spec.session_id.to_string()}),
        json!({"name": "DAAS_MEMORY_MIB", "value": spec.resources.memory_mib.to_string()}),
        json!({"name": "DAAS_PROPOSAL", "value": spec.proposal}),
        json!({"name": "DAAS_EXPERIMENT", "value": spec.experiment}),
        json!({"name": "HOME", "value": HOME}),
    ];
    let mut container = json!({
        "name": "session",
        "image": spec.image.reference,
        "imagePullPolicy": args.kube_image_pull_policy,
        "resources": resources(spec),
        "volumeMounts": mounts,
        "securityContext": container_security_context(),
    });
    match spec.kind {
        Kind::Desktop => {
            env.push(secret_env("VNC_PASSWORD", names, "password"));
        }
        Kind::Notebook => {
            // daas's Jupyter settings (pages render no token; the token is checked against
            // its hash, and the token itself never enters the pod), from the Secret,
            // whatever the image holds.
            env.push(json!({"name": "JUPYTER_CONFIG_PATH", "value": JUPYTER_CONFIG_DIR}));
            env.push(json!({"name": "DAAS_TOKEN_HASH_FILE", "value": format!("{JUPYTER_CONFIG_DIR}/{TOKEN_HASH}")}));
            if let Some(mounts) = container["volumeMounts"].as_array_mut() {
                mounts.push(json!({"name": "jupyter-config", "mountPath": JUPYTER_CONFIG_DIR, "readOnly": true}));
            }
            container["command"] = json!([
                "jupyter",
                "lab",
                "--no-browser",
                "--ServerApp.ip=0.0.0.0",
                "--ServerApp.port=8888",
                format!("--ServerApp.base_url={}", spec.base_url),
            ]);
        }
        // The image's own command, told where to serve and on what.
        Kind::WebApp => {
            env.push(json!({"name": "DAAS_PORT", "value": WEBAPP_PORT.to_string()}));
            env.push(json!({"name": "DAAS_BASE_URL", "value": spec.base_url}));
            if let Some(parameters) = &spec.parameters {
                env.push(json!({"name": "DAAS_PARAMETERS", "value": parameters.to_string()}));
            }
        }
        Kind::Job => {
            if let Some(parameters) = &spec.parameters {
                env.push(json!({"name": "DAAS_PARAMETERS", "value": parameters.to_string()}));
            }
        }
    }
    if let Some((name, port)) = port(spec.kind) {
        container["ports"] = json!([{"name": name, "containerPort": port, "protocol": "TCP"}]);
        container["readinessProbe"] = json!({
            "tcpSocket": {"port": name}, "periodSeconds": 2, "failureThreshold": 3});
    }
    container["env"] = json!(env);
    let mut pod = json!({
        "restartPolicy": "Never",
        "automountServiceAccountToken": false,
        "enableServiceLinks": false,
        // The owner's own uid, group and volume group: one user's files are never another's,
        // and a uid no image or node account uses (the configured range) is no one else.
        "securityContext": {
            "runAsNonRoot": true,
            "runAsUser": spec.uid,
            "runAsGroup": spec.uid,
            "fsGroup": spec.uid,
            // A large home is not re-chowned file by file at every start.
            "fsGroupChangePolicy": "OnRootMismatch",
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [
            data_volume(args),
            {"name": "home", "persistentVolumeClaim": {"claimName": names.home_claim}},
            // /tmp and /var/tmp, the only places of a read-only root a session writes to;
            // counted in the pod's ephemeral-storage limit.
            {"name": "tmp", "emptyDir": {}},
            {"name": "var-tmp", "emptyDir": {}},
        ],
    });
    if let (Kind::Notebook, Some(secret), Some(volumes)) = (spec.kind, &names.secret, pod["volumes"].as_array_mut()) {
        volumes.push(json!({"name": "jupyter-config", "secret": {"secretName": secret, "items": [
            {"key": JUPYTER_CONFIG, "path": JUPYTER_CONFIG}, {"key": TOKEN_HASH, "path": TOKEN_HASH}]}}));
    }
    if !node_selector.is_empty() {
        pod["nodeSelector"] = json!(node_selector);
    }
    if !r.tolerations.is_empty() {
        // Checked here so a malformed flavour fails the launch, not the API call.
        let tolerations: Vec<k8s_openapi::api::core::v1::Toleration> =
            typed("flavour's tolerations", json!(r.tolerations))?;
        pod["tolerations"] = json!(tolerations);
    }
    if let Some(pull_secret) = &args.kube_image_pull_secret {
        pod["imagePullSecrets"] = json!([{"name": pull_secret}]);
    }
    Ok(pod)
}

/// What every container of a session runs with (an init container too, should one come).
///
/// The root filesystem is read-only: the image's files belong to its build user, not to
/// the session's uid, so the only places a session could write there are the world-writable
/// /tmp and /var/tmp, which are emptyDirs instead: nothing an image can do as an unknown
/// uid is lost, and what a session writes is on a volume it was given, not in the image.
fn container_security_context() -> Value {
    json!({
        "runAsNonRoot": true,
        "privileged": false,
        "allowPrivilegeEscalation": false,
        "readOnlyRootFilesystem": true,
        "capabilities": {"drop": ["ALL"]},
    })
}

fn secret_env(var: &str, names: &KubeHandle, key: &str) -> Value {
    json!({"name": var, "valueFrom": {"secretKeyRef": {"name": names.secret, "key": key}}})
}

fn metadata(spec: &LaunchSpec, name: &str, component: &str, owner: Option<&OwnerReference>) -> Value {
    let mut meta = json!({"name": name, "labels": labels(spec, component)});
    if let Some(owner) = owner {
        meta["ownerReferences"] = json!([owner]);
    }
    meta
}

/// The Pod (desktop, notebook) or the Job (job) of a session.
pub fn workload(spec: &LaunchSpec, args: &KubeArgs, names: &KubeHandle) -> anyhow::Result<Workload> {
    let pod_spec = pod_spec(spec, args, names)?;
    let mut meta = metadata(spec, &names.workload, spec.kind.as_str(), None);
    meta["annotations"] = json!({
        HANDLE_ANNOTATION: serde_json::to_string(names)?,
        OWNER_ANNOTATION: spec.owner,
        "daas.io/image": spec.image.name,
    });
    Ok(match spec.kind {
        Kind::Job => Workload::Job(Box::new(typed(
            "job",
            json!({
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": meta,
                "spec": {
                    // A failed reconstruction is reported, not retried behind the user's back.
                    "backoffLimit": 0,
                    "template": {"metadata": {"labels": meta["labels"], "annotations": meta["annotations"]}, "spec": pod_spec},
                },
            }),
        )?)),
        _ => Workload::Pod(Box::new(typed(
            "pod",
            json!({
                "apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": pod_spec,
            }),
        )?)),
    })
}

/// The Secret's key for what a notebook's server checks daas's token against (mounted,
/// so a rotation reaches the running server when the kubelet next syncs the volume).
pub const TOKEN_HASH: &str = "token.sha256";

/// The Secret's data that holds a session's `secret`: a desktop's VNC password, or the
/// hash of a notebook's token (`runtime::token_hash`).
pub fn secret_data(kind: Kind, secret: &str) -> Value {
    match kind {
        Kind::Desktop => json!({"password": secret}),
        _ => json!({TOKEN_HASH: crate::runtime::token_hash(secret)}),
    }
}

/// The Secret with the VNC password, or the notebook's token hash and Jupyter settings
/// (interactive sessions).
pub fn secret(spec: &LaunchSpec, names: &KubeHandle, owner: &OwnerReference) -> anyhow::Result<Option<Secret>> {
    let Some(name) = &names.secret else {
        return Ok(None);
    };
    let mut string_data = secret_data(spec.kind, &spec.secret);
    if spec.kind == Kind::Notebook {
        string_data[JUPYTER_CONFIG] = json!(JUPYTER_SETTINGS);
    }
    typed(
        "secret",
        json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": metadata(spec, name, "secret", Some(owner)),
            "type": "Opaque",
            "stringData": string_data,
        }),
    )
    .map(Some)
}

/// The ClusterIP Service the portal's proxy reaches the session through.
pub fn service(spec: &LaunchSpec, names: &KubeHandle, owner: &OwnerReference) -> anyhow::Result<Option<Service>> {
    let (Some(name), Some((port_name, port))) = (&names.service, port(spec.kind)) else {
        return Ok(None);
    };
    typed(
        "service",
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": metadata(spec, name, "service", Some(owner)),
            "spec": {
                "type": "ClusterIP",
                "selector": {SESSION_LABEL: spec.session_id.to_string()},
                "ports": [{"name": port_name, "port": port, "targetPort": port_name, "protocol": "TCP"}],
            },
        }),
    )
    .map(Some)
}

/// Admits only the portal's pods, on the session's port (a job admits nothing), and lets
/// nothing out: no egress rule, not even DNS, so a session reaches no other pod, no
/// service, no API server, no node and no outside host. Replies to the portal still flow
/// (policies are stateful). Outbound access for images that need it (pip) is an image
/// setting daas does not have yet; it would add DNS and public addresses here, never the
/// cluster's.
pub fn network_policy(
    spec: &LaunchSpec,
    args: &KubeArgs,
    names: &KubeHandle,
    owner: &OwnerReference,
) -> anyhow::Result<NetworkPolicy> {
    let ingress = match port(spec.kind) {
        None => json!([]),
        Some((_, port)) => {
            let mut peer = json!({"podSelector": {"matchLabels": args.kube_portal_labels.0}});
            if let Some(ns) = &args.kube_portal_namespace {
                peer["namespaceSelector"] = json!({"matchLabels": {"kubernetes.io/metadata.name": ns}});
            }
            json!([{"from": [peer], "ports": [{"protocol": "TCP", "port": port}]}])
        }
    };
    typed(
        "network policy",
        json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "NetworkPolicy",
            "metadata": metadata(spec, &names.network_policy, "network-policy", Some(owner)),
            "spec": {
                "podSelector": {"matchLabels": {SESSION_LABEL: spec.session_id.to_string()}},
                "policyTypes": ["Ingress", "Egress"],
                "ingress": ingress,
                "egress": [],
            },
        }),
    )
}

/// The owner's home volume: created on first use, never owned by a session.
pub fn home_claim(spec: &LaunchSpec, args: &KubeArgs, names: &KubeHandle) -> anyhow::Result<PersistentVolumeClaim> {
    let mut claim_spec = json!({
        "accessModes": [args.kube_home_access_mode],
        "resources": {"requests": {"storage": args.kube_home_size}},
    });
    if let Some(class) = &args.kube_home_storage_class {
        claim_spec["storageClassName"] = json!(class);
    }
    typed(
        "home volume claim",
        json!({
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {
                "name": names.home_claim,
                "labels": {
                    "app.kubernetes.io/name": "daas-home",
                    "app.kubernetes.io/part-of": "daas",
                    "app.kubernetes.io/managed-by": MANAGED_BY,
                },
                "annotations": {OWNER_ANNOTATION: spec.owner},
            },
            "spec": claim_spec,
        }),
    )
}
