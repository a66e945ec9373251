//! The quotas page: one row per quota with what is in use beside each limit, each row its
//! own form; a form for a new override; a refused form comes back as typed.

use askama::Template;
use serde::Deserialize;

use super::{number, refused_page, AdminPage, Refusal};
use crate::admin::quotas;
use crate::audit::Actor;
use crate::error::AppError;
use crate::state::AppState;
use crate::web::page::{render, see_other, Ctx, PageError, PageResult};
use crate::web::Form;

/// The limits a quota row has, in the order the page shows them.
const LIMITS: [(&str, &str); 5] = [
    ("max_sessions", "Sessions"),
    ("max_cpu_millis", "CPU (millicores)"),
    ("max_memory_mib", "Memory (MiB)"),
    ("max_gpus", "GPUs"),
    ("max_gpu_hours_month", "GPU-hours / month"),
];

/// One limit of a row: what is used now beside what may be used (as typed, for a form).
pub struct LimitCell {
    pub name: &'static str,
    pub label: &'static str,
    pub used: String,
    pub value: String,
}

/// A quota as the page shows it: one form per row.
pub struct QuotaLine {
    /// `roles`, `users` or `proposals`, as the API's path names it.
    pub scope: String,
    /// `role`, `user` or `proposal`.
    pub kind: String,
    pub subject: String,
    pub cells: Vec<LimitCell>,
    /// This row's submission was refused (it shows what was typed).
    pub refused: bool,
}

/// The quota form as posted: the limits as typed, in the order of `LIMITS`.
#[derive(Deserialize)]
pub(super) struct QuotaFields {
    #[serde(default)]
    scope: String,
    #[serde(default)]
    subject: String,
    #[serde(default)]
    max_sessions: String,
    #[serde(default)]
    max_cpu_millis: String,
    #[serde(default)]
    max_memory_mib: String,
    #[serde(default)]
    max_gpus: String,
    #[serde(default)]
    max_gpu_hours_month: String,
}

/// The quota form as typed.
pub struct QuotaForm {
    pub scope: String,
    pub subject: String,
    pub values: Vec<String>,
}

impl From<QuotaFields> for QuotaForm {
    fn from(f: QuotaFields) -> Self {
        let values = [f.max_sessions, f.max_cpu_millis, f.max_memory_mib, f.max_gpus, f.max_gpu_hours_month];
        QuotaForm { scope: f.scope.trim().to_owned(), subject: f.subject.trim().to_owned(), values: values.into() }
    }
}

impl QuotaForm {
    /// The limits as the API takes them: empty is no limit (for a user: the role's).
    fn limits(&self) -> Result<quotas::Limits, AppError> {
        let mut numbers = [None; 5];
        for (n, ((field, _), text)) in LIMITS.iter().zip(&self.values).enumerate() {
            numbers[n] = number(field, text)
                .map_err(|_| AppError::invalid(*field, "must be a whole number (leave it empty for no limit)"))?;
        }
        let [max_sessions, max_cpu_millis, max_memory_mib, max_gpus, max_gpu_hours_month] = numbers;
        Ok(quotas::Limits { max_sessions, max_cpu_millis, max_memory_mib, max_gpus, max_gpu_hours_month })
    }

    /// The labelled cells of the "set a quota" form.
    pub fn cells(&self) -> Vec<LimitCell> {
        LIMITS
            .iter()
            .zip(&self.values)
            .map(|((name, label), value)| LimitCell { name, label, used: String::new(), value: value.clone() })
            .collect()
    }
}

#[derive(Template)]
#[template(path = "admin/quotas.html")]
struct QuotasPage {
    ctx: Ctx,
    lines: Vec<QuotaLine>,
    /// The form for a new override (or for a refused one that matched no row).
    entry: QuotaForm,
    error: Option<String>,
}

fn text(limit: Option<i32>) -> String {
    limit.map(|l| l.to_string()).unwrap_or_default()
}

async fn quotas_view(state: &AppState, ctx: Ctx, submitted: Option<QuotaForm>, refused: Option<Refusal>) -> PageResult {
    let mut lines: Vec<QuotaLine> = quotas::all(&state.db)
        .await?
        .into_iter()
        .map(|q| {
            let (l, u) = (&q.limits, &q.in_use);
            let used = [
                u.sessions.to_string(),
                u.cpu_millis.to_string(),
                u.memory_mib.to_string(),
                u.gpus.to_string(),
                crate::quotas::hours(u.gpu_hours_month),
            ];
            let values = [
                text(l.max_sessions),
                text(l.max_cpu_millis),
                text(l.max_memory_mib),
                text(l.max_gpus),
                text(l.max_gpu_hours_month),
            ];
            QuotaLine {
                scope: format!("{}s", q.scope),
                cells: LIMITS
                    .iter()
                    .zip(used.into_iter().zip(values))
                    .map(|((name, label), (used, value))| LimitCell { name, label, used, value })
                    .collect(),
                kind: q.scope,
                subject: q.subject,
                refused: false,
            }
        })
        .collect();
    let mut entry = QuotaForm { scope: "users".into(), subject: String::new(), values: vec![String::new(); 5] };
    if let Some(submitted) = submitted {
        match lines.iter_mut().find(|l| l.scope == submitted.scope && l.subject == submitted.subject) {
            Some(line) => {
                line.refused = true;
                for (cell, value) in line.cells.iter_mut().zip(submitted.values) {
                    cell.value = value;
                }
            }
            None => entry = submitted,
        }
    }
    refused_page(refused, |error| render(&QuotasPage { ctx, lines, entry, error }))
}

pub(super) async fn quotas_page(state: AppState, AdminPage { ctx, .. }: AdminPage) -> PageResult {
    quotas_view(&state, ctx, None, None).await
}

/// Why a quota form was refused. A 404 from the quota functions means that the role, user
/// or proposal typed does not exist (or, to remove, has no quota of its own): a mistake in
/// the form, said on the page.
fn quota_refusal(err: AppError, form: &QuotaForm, removing: bool) -> Result<Refusal, PageError> {
    let AppError::NotFound = err else { return Refusal::of(err) };
    let subject = &form.subject;
    Ok(Refusal::not_found(match form.scope.as_str() {
        "users" | "proposals" if removing => {
            format!("{} {subject:?} has no quota of its own to remove", form.scope.trim_end_matches('s'))
        }
        "roles" => format!("there is no role {subject:?} (user, scientist or admin)"),
        "users" => format!("there is no user {subject:?}"),
        "proposals" => format!("there is no proposal {subject:?}"),
        _ => "choose a role, a user or a proposal".into(),
    }))
}

pub(super) async fn set_quota(
    state: AppState,
    AdminPage { ctx, .. }: AdminPage,
    actor: Actor,
    Form(form): Form<QuotaFields>,
) -> PageResult {
    let form = QuotaForm::from(form);
    let result = match form.limits() {
        Ok(limits) => quotas::set(&state.db, &actor, &form.scope, &form.subject, limits).await.map(|_| ()),
        Err(err) => Err(err),
    };
    match result {
        Ok(()) => Ok(see_other("/admin/quotas")),
        Err(err) => {
            let refusal = quota_refusal(err, &form, false)?;
            quotas_view(&state, ctx, Some(form), Some(refusal)).await
        }
    }
}

pub(super) async fn delete_quota(
    state: AppState,
    AdminPage { ctx, .. }: AdminPage,
    actor: Actor,
    Form(form): Form<QuotaFields>,
) -> PageResult {
    let form = QuotaForm::from(form);
    match quotas::remove(&state.db, &actor, &form.scope, &form.subject).await {
        Ok(()) => Ok(see_other("/admin/quotas")),
        Err(err) => {
            let refusal = quota_refusal(err, &form, true)?;
            quotas_view(&state, ctx, None, Some(refusal)).await
        }
    }
}
