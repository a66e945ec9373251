//! Configuration of the Kubernetes runtime: one clap group, every flag with its
//! `DAAS_KUBE_*` variable, flattened into `daas serve` when `--runtime kubernetes`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

/// Where the Kubernetes runtime runs sessions and how it builds them. The uid a session
/// runs as is not set here: it is its owner's (`DAAS_SESSION_UIDS`).
#[derive(Args, Debug, Clone)]
pub struct KubeArgs {
    /// Namespace the session pods, services, secrets and home volumes live in.
    #[arg(long, env = "DAAS_KUBE_NAMESPACE", default_value = "daas-sessions")]
    pub kube_namespace: String,
    /// Kubeconfig file to use; when unset, the in-cluster service account (or
    /// $KUBECONFIG / ~/.kube/config outside a cluster).
    #[arg(long, env = "DAAS_KUBE_CONFIG")]
    pub kube_config: Option<PathBuf>,
    /// Context of the kubeconfig to use; its current context when unset.
    #[arg(long, env = "DAAS_KUBE_CONTEXT")]
    pub kube_context: Option<String>,
    /// Kind of volume the datasets are read from: an NFS export, a folder on every node
    /// (hostPath) or an existing PersistentVolumeClaim.
    #[arg(long, env = "DAAS_KUBE_DATA_SOURCE", value_enum, default_value_t = DataSource::HostPath)]
    pub kube_data_source: DataSource,
    /// The data root: the NFS export path or the node's folder (nfs, host-path).
    #[arg(long, env = "DAAS_KUBE_DATA_PATH", default_value = "/data")]
    pub kube_data_path: String,
    /// NFS server of the data root (nfs).
    #[arg(long, env = "DAAS_KUBE_DATA_NFS_SERVER")]
    pub kube_data_nfs_server: Option<String>,
    /// Existing PersistentVolumeClaim holding the data root (pvc).
    #[arg(long, env = "DAAS_KUBE_DATA_CLAIM")]
    pub kube_data_claim: Option<String>,
    /// Storage class of the per-user home volumes; the cluster's default when unset.
    #[arg(long, env = "DAAS_KUBE_HOME_STORAGE_CLASS")]
    pub kube_home_storage_class: Option<String>,
    /// Size of a new home volume (a Kubernetes quantity).
    #[arg(long, env = "DAAS_KUBE_HOME_SIZE", default_value = "10Gi")]
    pub kube_home_size: String,
    /// Access mode of the home volumes: ReadWriteMany lets one user run sessions on two
    /// nodes at once, where the storage class supports it.
    #[arg(long, env = "DAAS_KUBE_HOME_ACCESS_MODE", default_value = "ReadWriteOnce")]
    pub kube_home_access_mode: String,
    /// Labels of the portal's pods (`k=v,k=v`): the only pods the sessions' NetworkPolicy
    /// admits.
    #[arg(long, env = "DAAS_KUBE_PORTAL_LABELS", default_value = "app.kubernetes.io/name=daas,app.kubernetes.io/component=portal", value_parser = parse_labels)]
    pub kube_portal_labels: Labels,
    /// Namespace of the portal's pods, when it is not the session namespace.
    #[arg(long, env = "DAAS_KUBE_PORTAL_NAMESPACE")]
    pub kube_portal_namespace: Option<String>,
    /// imagePullPolicy of the session containers.
    #[arg(long, env = "DAAS_KUBE_IMAGE_PULL_POLICY", default_value = "IfNotPresent", value_parser = ["Always", "IfNotPresent", "Never"])]
    pub kube_image_pull_policy: String,
    /// Secret (in the session namespace) to pull session images with.
    #[arg(long, env = "DAAS_KUBE_IMAGE_PULL_SECRET")]
    pub kube_image_pull_secret: Option<String>,
    /// Seconds one call to the API server may take before it is retried.
    #[arg(long, env = "DAAS_KUBE_REQUEST_TIMEOUT_SECONDS", default_value_t = 10)]
    pub kube_request_timeout_seconds: u64,
    /// Attempts of a call that fails with a timeout, a 429 or a 5xx (with exponential
    /// backoff) before the operation fails.
    #[arg(long, env = "DAAS_KUBE_ATTEMPTS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub kube_attempts: u32,
    /// First backoff between attempts, in milliseconds; doubles each time.
    #[arg(long, env = "DAAS_KUBE_BACKOFF_MS", default_value_t = 200)]
    pub kube_backoff_ms: u64,
    /// Seconds a session may stay pending (scheduling, pulling its image) before it fails.
    #[arg(long, env = "DAAS_KUBE_START_TIMEOUT_SECONDS", default_value_t = 600)]
    pub kube_start_timeout_seconds: u64,
}

/// Kind of volume the data root comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum DataSource {
    Nfs,
    HostPath,
    Pvc,
}

/// Labels parsed from `k=v,k=v`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Labels(pub BTreeMap<String, String>);

fn parse_labels(s: &str) -> Result<Labels, String> {
    let mut labels = BTreeMap::new();
    for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').ok_or_else(|| format!("`{pair}` is not key=value"))?;
        labels.insert(k.trim().to_owned(), v.trim().to_owned());
    }
    if labels.is_empty() {
        return Err("at least one label is needed".into());
    }
    Ok(Labels(labels))
}

impl KubeArgs {
    /// The timeout of one call to the API server.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.kube_request_timeout_seconds)
    }

    /// How long a session may stay pending.
    pub fn start_timeout(&self) -> Duration {
        Duration::from_secs(self.kube_start_timeout_seconds)
    }

    /// Checks what clap cannot: that the data source has what it needs.
    pub fn validate(&self) -> anyhow::Result<()> {
        match self.kube_data_source {
            DataSource::Nfs if self.kube_data_nfs_server.is_none() => {
                anyhow::bail!("--kube-data-source nfs needs --kube-data-nfs-server")
            }
            DataSource::Pvc if self.kube_data_claim.is_none() => {
                anyhow::bail!("--kube-data-source pvc needs --kube-data-claim")
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        kube: KubeArgs,
    }

    #[test]
    fn defaults_parse_and_validate() {
        let cli = Cli::try_parse_from(["daas"]).unwrap();
        cli.kube.validate().unwrap();
        assert_eq!(cli.kube.kube_portal_labels.0["app.kubernetes.io/component"], "portal");
    }

    #[test]
    fn nfs_without_server_is_refused() {
        let cli = Cli::try_parse_from(["daas", "--kube-data-source", "nfs"]).unwrap();
        assert!(cli.kube.validate().unwrap_err().to_string().contains("nfs-server"));
        assert!(Cli::try_parse_from(["daas", "--kube-portal-labels", "nolabel"]).is_err());
    }
}
