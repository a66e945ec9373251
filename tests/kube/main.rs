//! Tests of the Kubernetes runtime: its calls against a mocked API server (every call's
//! method, path and body asserted), its manifests (snapshots, Kubernetes schemas) and the
//! Helm chart (rendered by Helm's engine, validated, its Role compared with the code's).

mod chart;
mod common;
mod connect;
mod launch;
mod manifests;
mod watch;
