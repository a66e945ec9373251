//! Names of the Kubernetes objects of a session: always valid DNS-1123 labels, derived
//! from the session id or, escaped and hashed, from a username; resolved once at launch
//! and kept in the session's handle.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::runtime::{Handle, Kind};

/// Longest DNS-1123 label (names of services, and what we use for every object).
const MAX_LABEL: usize = 63;

/// Turns `raw` into a valid DNS-1123 label starting with `prefix`: lower-case letters,
/// digits and `-`. Where `raw` had to change (or be cut), a hash of it is appended, so two
/// different inputs never share a name.
pub fn dns_label(prefix: &str, raw: &str) -> String {
    let lowered: String = raw
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '-' => c,
            'A'..='Z' => c.to_ascii_lowercase(),
            _ => '-',
        })
        .collect();
    let cleaned = lowered.trim_matches('-');
    let plain = format!("{prefix}{cleaned}");
    if cleaned == raw && !cleaned.is_empty() && plain.len() <= MAX_LABEL {
        return plain;
    }
    let hash = hex::encode(&Sha256::digest(raw.as_bytes())[..4]);
    // Room for "-" and the 8 hex digits.
    let room = MAX_LABEL - prefix.len() - 9;
    let kept = cleaned[..cleaned.len().min(room)].trim_end_matches('-');
    if kept.is_empty() {
        format!("{prefix}{hash}")
    } else {
        format!("{prefix}{kept}-{hash}")
    }
}

/// Turns a dataset's name into one folder name: letters, digits, `.`, `_` and `-` are
/// kept; where anything else had to change, a hash of the name is appended.
pub fn path_segment(raw: &str) -> String {
    let cleaned: String =
        raw.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '_' }).collect();
    let cleaned = cleaned.trim_start_matches('.');
    if cleaned == raw && !cleaned.is_empty() && cleaned.len() <= 100 {
        return cleaned.to_owned();
    }
    let hash = hex::encode(&Sha256::digest(raw.as_bytes())[..4]);
    let kept = &cleaned[..cleaned.len().min(100)];
    if kept.is_empty() {
        hash
    } else {
        format!("{kept}-{hash}")
    }
}

/// The resolved names of a session's objects, stored as its `Handle`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubeHandle {
    pub namespace: String,
    pub kind: Kind,
    /// The Pod (desktop, notebook) or the Job (job) that owns everything else.
    pub workload: String,
    /// Service and Secret (interactive sessions only).
    pub service: Option<String>,
    pub secret: Option<String>,
    pub network_policy: String,
    /// The owner's home volume; kept after the session.
    pub home_claim: String,
}

impl KubeHandle {
    /// The names of a new session's objects: `daas-<session id>`, and the owner's home.
    pub fn new(namespace: &str, session_id: Uuid, kind: Kind, owner: &str) -> Self {
        let base = format!("daas-{session_id}");
        let interactive = kind != Kind::Job;
        // A web app has no secret: daas adds no token to what it forwards.
        let secret = matches!(kind, Kind::Desktop | Kind::Notebook);
        KubeHandle {
            namespace: namespace.to_owned(),
            kind,
            workload: base.clone(),
            service: interactive.then(|| base.clone()),
            secret: secret.then(|| base.clone()),
            network_policy: base,
            home_claim: dns_label("daas-home-", owner),
        }
    }

    /// As stored in `sessions.runtime_handle`.
    pub fn to_handle(&self) -> Handle {
        Handle(serde_json::to_value(self).expect("a handle serialises"))
    }

    /// Reads a stored handle back.
    pub fn from_handle(handle: &Handle) -> anyhow::Result<Self> {
        serde_json::from_value(handle.0.clone()).map_err(|e| anyhow::anyhow!("not a kubernetes session handle: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid(name: &str) -> bool {
        name.len() <= MAX_LABEL
            && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !name.starts_with('-')
            && !name.ends_with('-')
    }

    #[test]
    fn plain_names_stay_readable() {
        assert_eq!(dns_label("daas-home-", "alice"), "daas-home-alice");
    }

    #[test]
    fn escaped_names_are_valid_and_distinct() {
        let a = dns_label("daas-home-", "Alice.Smith");
        let b = dns_label("daas-home-", "alice-smith");
        assert!(a.starts_with("daas-home-alice-smith-"), "{a}");
        assert_ne!(a, b);
        for raw in ["Alice.Smith", "_", "ü", &"x".repeat(200), "a--", "-a-"] {
            let n = dns_label("daas-home-", raw);
            assert!(valid(&n), "{raw:?} -> {n:?}");
        }
        assert_ne!(dns_label("daas-home-", &"x".repeat(200)), dns_label("daas-home-", &"x".repeat(201)));
    }

    #[test]
    fn dataset_folders_are_one_safe_segment() {
        assert_eq!(path_segment("tomo_scan_001"), "tomo_scan_001");
        for raw in ["Flat Fields", "../x", "a/b", "..", ""] {
            let s = path_segment(raw);
            assert!(!s.contains('/') && !s.starts_with('.') && !s.is_empty(), "{raw:?} -> {s:?}");
        }
        assert_ne!(path_segment("a/b"), path_segment("a_b"));
    }

    #[test]
    fn session_names_are_valid() {
        let h = KubeHandle::new("ns", Uuid::new_v4(), Kind::Desktop, "alice");
        assert!(valid(&h.workload));
        assert_eq!(KubeHandle::from_handle(&h.to_handle()).unwrap(), h);
    }
}
