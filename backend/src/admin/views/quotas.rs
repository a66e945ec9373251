//! The quotas page: one row per quota with what is in use beside each limit, each row its
//! own form; a form for a new override; a refused form comes back as typed.

use askama::Template;
use serde::Deserialize;

use super::{number, refused_page, AdminPage, Refusal};
use crate::admin::quotas;
use crate::audit::Actor;
use crate::error::AppError;
use crate::state::AppState;
use crate::web::page::{render, see_other, Ctx, FormError, PageError, PageResult};
use crate::web::Form;

/// The limits a quota row has, in the order the page shows them: what may be held, then
/// the times (a role's or a user's only).
const LIMITS: [(&str, &str); 8] = [
    ("max_sessions", "Sessions"),
    ("max_cpu_millis", "CPU (millicores)"),
    ("max_memory_mib", "Memory (MiB)"),
    ("max_gpus", "GPUs"),
    ("max_gpu_hours_month", "GPU-hours / month"),
    ("lifetime_minutes", "Lifetime (min)"),
    ("idle_minutes", "Idle limit (min)"),
    ("extension_minutes", "Users may extend by (min)"),
];

/// Where the times start in `LIMITS`.
const TIMES: usize = 5;

/// One limit of a row: what is used now beside what may be used (as typed, for a form).
pub struct LimitCell {
    pub name: &'static str,
    pub label: &'static str,
    /// In use now; empty for the times, which bound each session rather than a sum.
    pub used: String,
    pub value: String,
    /// A time: not for proposals, and no value is the server's default.
    pub time: bool,
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
    #[serde(default)]
    lifetime_minutes: String,
    #[serde(default)]
    idle_minutes: String,
    #[serde(default)]
    extension_minutes: String,
}

/// The quota form as typed.
pub struct QuotaForm {
    pub scope: String,
    pub subject: String,
    pub values: Vec<String>,
}

impl From<QuotaFields> for QuotaForm {
    fn from(f: QuotaFields) -> Self {
        let values = [
            f.max_sessions,
            f.max_cpu_millis,
            f.max_memory_mib,
            f.max_gpus,
            f.max_gpu_hours_month,
            f.lifetime_minutes,
            f.idle_minutes,
            f.extension_minutes,
        ];
        QuotaForm { scope: f.scope.trim().to_owned(), subject: f.subject.trim().to_owned(), values: values.into() }
    }
}

impl QuotaForm {
    /// The limits as the API takes them: empty is no limit (for a user: the role's).
    fn limits(&self) -> Result<quotas::Limits, AppError> {
        let mut numbers = [None; LIMITS.len()];
        for (n, ((field, _), text)) in LIMITS.iter().zip(&self.values).enumerate() {
            let empty = if n < TIMES { "no limit" } else { "the default" };
            numbers[n] = number(field, text).map_err(|_| {
                AppError::invalid(*field, format!("must be a whole number (leave it empty for {empty})"))
            })?;
        }
        let [max_sessions, max_cpu_millis, max_memory_mib, max_gpus, max_gpu_hours_month, lifetime_minutes, idle_minutes, extension_minutes] =
            numbers;
        Ok(quotas::Limits {
            max_sessions,
            max_cpu_millis,
            max_memory_mib,
            max_gpus,
            max_gpu_hours_month,
            lifetime_minutes,
            idle_minutes,
            extension_minutes,
        })
    }

    /// The labelled cells of the "set a quota" form.
    pub fn cells(&self) -> Vec<LimitCell> {
        LIMITS
            .iter()
            .zip(&self.values)
            .enumerate()
            .map(|(n, ((name, label), value))| LimitCell {
                name,
                label,
                used: String::new(),
                value: value.clone(),
                time: n >= TIMES,
            })
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
    error: Option<FormError>,
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
                String::new(),
                String::new(),
                String::new(),
            ];
            let values = [
                text(l.max_sessions),
                text(l.max_cpu_millis),
                text(l.max_memory_mib),
                text(l.max_gpus),
                text(l.max_gpu_hours_month),
                text(l.lifetime_minutes),
                text(l.idle_minutes),
                text(l.extension_minutes),
            ];
            QuotaLine {
                scope: format!("{}s", q.scope),
                cells: LIMITS
                    .iter()
                    .zip(used.into_iter().zip(values))
                    .enumerate()
                    .map(|(n, ((name, label), (used, value)))| LimitCell { name, label, used, value, time: n >= TIMES })
                    .collect(),
                kind: q.scope,
                subject: q.subject,
                refused: false,
            }
        })
        .collect();
    let mut entry =
        QuotaForm { scope: "users".into(), subject: String::new(), values: vec![String::new(); LIMITS.len()] };
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
