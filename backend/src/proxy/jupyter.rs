//! Whether a notebook's user is at work, from Jupyter's own record rather than from the
//! bytes the proxy relays (issue 14, item 14). Bytes lie both ways: an open tab answers
//! the WebSocket pings every 30 s and polls the kernels, sessions and files every few
//! seconds, so a forgotten tab kept a GPU busy forever; while a kernel computing for an
//! hour with no tab open sends nothing, and was stopped as idle.
//!
//! So the proxy notes only what a person does (`is_user_action`: a change — saving,
//! starting a kernel, renaming — or a page they open), and once a minute daas reads every
//! running notebook's kernels and terminals (`GET {base}api/kernels`, `api/terminals`, the
//! REST API of jupyter_server 2): a kernel that is busy is work now; otherwise the latest
//! `last_activity` of a kernel or terminal is when work was last done (`last_work`).
//! jupyter_server moves a kernel's `last_activity` on the kernel's messages except its
//! housekeeping (`untracked_message_types`: kernel info, comm info, debug, status of
//! those), so running a cell, its output and a widget moved count; a reconnecting tab does
//! not. The server's own `/api/status` `last_activity` is not used: it includes the API
//! requests of the tab's polling.

use axum::body::Body;
use axum::http::header::AUTHORIZATION;
use axum::http::{Method, Request};
use http_body_util::BodyExt;
use serde::Deserialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// A kernel as `GET /api/kernels` lists it (the fields daas reads).
#[derive(Debug, Deserialize)]
pub struct Kernel {
    /// `starting`, `idle`, `busy`, `dead`...
    pub execution_state: String,
    /// When jupyter_server last saw the kernel work (RFC 3339, UTC).
    pub last_activity: String,
}

/// A terminal as `GET /api/terminals` lists it.
#[derive(Debug, Deserialize)]
pub struct Terminal {
    /// When it last had input or output (RFC 3339, UTC).
    pub last_activity: Option<String>,
}

/// When Jupyter last saw work: `now` while a kernel is busy, else the latest `last_activity`
/// of its kernels and terminals; `None` when it has neither (or none says when).
pub fn last_work(kernels: &[Kernel], terminals: &[Terminal], now: OffsetDateTime) -> Option<OffsetDateTime> {
    if kernels.iter().any(|k| k.execution_state == "busy") {
        return Some(now);
    }
    let times = kernels
        .iter()
        .map(|k| Some(k.last_activity.as_str()))
        .chain(terminals.iter().map(|t| t.last_activity.as_deref()));
    times.flatten().filter_map(|t| OffsetDateTime::parse(t, &Rfc3339).ok()).map(|t| t.min(now)).max()
}

/// Whether a request through the proxy is a person at work: anything that changes
/// something (every method but GET, HEAD and OPTIONS), or a page they open (a navigation,
/// as the browser says in `Sec-Fetch-Mode`). Not the tab's own polling, and not the
/// WebSockets' traffic (kernels at work are read from Jupyter, `last_work`).
pub fn is_user_action<B>(request: &Request<B>) -> bool {
    !matches!(*request.method(), Method::GET | Method::HEAD | Method::OPTIONS)
        || request.headers().get("sec-fetch-mode").is_some_and(|m| m == "navigate")
}

/// `GET {base_url}api/{what}` of a notebook through `client`, its JSON.
pub(super) async fn get<T: serde::de::DeserializeOwned>(
    client: &hyper_util::client::legacy::Client<super::upstream::Connector, Body>,
    authority: &str,
    authorization: &axum::http::HeaderValue,
    path: &str,
) -> anyhow::Result<T> {
    let request = Request::get(format!("http://{authority}{path}"))
        .header(AUTHORIZATION, authorization.clone())
        .body(Body::empty())?;
    let response = client.request(request).await?;
    anyhow::ensure!(response.status().is_success(), "{path} answered {}", response.status());
    let body = response.into_body().collect().await?.to_bytes();
    Ok(serde_json::from_slice(&body)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel(state: &str, at: &str) -> Kernel {
        Kernel { execution_state: state.into(), last_activity: at.into() }
    }

    #[test]
    fn item_14_a_busy_kernel_is_work_now_and_an_idle_one_since_it_last_worked() {
        let now = OffsetDateTime::parse("2026-11-30T12:00:00Z", &Rfc3339).unwrap();
        let at = |t: &str| Some(OffsetDateTime::parse(t, &Rfc3339).unwrap());
        // A kernel computing for an hour with no tab open: at work now.
        let busy = [kernel("idle", "2026-11-30T09:00:00.000000Z"), kernel("busy", "2026-11-30T11:00:00.000000Z")];
        assert_eq!(last_work(&busy, &[], now), Some(now));
        // A forgotten tab with idle kernels: work ended when the kernels last worked,
        // whatever the tab still polls.
        let idle = [kernel("idle", "2026-11-30T09:00:00.123456Z"), kernel("idle", "2026-11-30T09:30:00Z")];
        assert_eq!(last_work(&idle, &[], now), at("2026-11-30T09:30:00Z"));
        // A terminal typed in later counts; nothing at all says nothing.
        let typed = [Terminal { last_activity: Some("2026-11-30T10:15:00Z".into()) }, Terminal { last_activity: None }];
        assert_eq!(last_work(&idle, &typed, now), at("2026-11-30T10:15:00Z"));
        assert_eq!(last_work(&[], &[], now), None);
        // A clock ahead of daas's does not move activity into the future.
        assert_eq!(last_work(&[kernel("idle", "2026-11-30T13:00:00Z")], &[], now), Some(now));
    }

    #[test]
    fn item_14_only_what_a_person_does_is_activity_not_the_tabs_polling() {
        let request = |method: Method, navigate: bool| {
            let mut r = Request::builder().method(method).uri("/sessions/x/api/kernels");
            if navigate {
                r = r.header("sec-fetch-mode", "navigate");
            }
            r.body(()).unwrap()
        };
        assert!(!is_user_action(&request(Method::GET, false)), "a poll");
        assert!(is_user_action(&request(Method::GET, true)), "a page opened");
        assert!(is_user_action(&request(Method::PUT, false)), "a save");
        assert!(is_user_action(&request(Method::POST, false)), "a new kernel");
        assert!(!is_user_action(&request(Method::HEAD, false)));
    }
}
