//! Flavours: the sizes sessions run at (CPU, memory, GPUs), with the Kubernetes node
//! selector and tolerations or the Slurm partition, account, QOS and constraint that place
//! them, and the roles that may use them.

use serde_json::{json, Value};
use uuid::Uuid;

use super::db::flavours as db;
pub use super::db::flavours::{AdminFlavour, FlavourInput};
use super::{check_name, check_non_negative, check_positive, check_roles, name_taken};
use crate::audit::{self, Actor};
use crate::error::{AppError, Result, ResultExt};
use crate::state::AppState;
use crate::web::{AdminUser, Json, Path};

/// A Kubernetes label key: an optional DNS prefix and `/`, then a name of up to 63.
fn is_label_key(key: &str) -> bool {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|part| {
                !part.is_empty()
                    && part.len() <= 63
                    && part.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && !part.starts_with('-')
                    && !part.ends_with('-')
            })
    });
    name_ok && prefix_ok
}

fn is_label_value(value: &str) -> bool {
    value.is_empty()
        || (value.len() <= 63
            && value.starts_with(|c: char| c.is_ascii_alphanumeric())
            && value.ends_with(|c: char| c.is_ascii_alphanumeric())
            && value.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)))
}

fn check_node_selector(selector: &Value) -> Result<(), String> {
    let Some(map) = selector.as_object() else { return Err("must be an object of label names to values".into()) };
    for (key, value) in map {
        if !is_label_key(key) {
            return Err(format!("{key:?} is not a Kubernetes label name"));
        }
        let Some(value) = value.as_str().filter(|v| is_label_value(v)) else {
            return Err(format!("the value of {key:?} must be a Kubernetes label value (a string)"));
        };
        let _ = value;
    }
    Ok(())
}

fn check_tolerations(tolerations: &Value) -> Result<(), String> {
    let Some(list) = tolerations.as_array() else { return Err("must be a list of tolerations".into()) };
    for (n, t) in list.iter().enumerate() {
        let Some(t) = t.as_object() else { return Err(format!("item {n} must be an object")) };
        for key in t.keys() {
            if !["key", "operator", "value", "effect", "tolerationSeconds"].contains(&key.as_str()) {
                return Err(format!("item {n}: unknown field {key:?}"));
            }
        }
        let text = |k: &str| t.get(k).map(|v| v.as_str().ok_or(format!("item {n}: {k} must be a string"))).transpose();
        let key = text("key")?;
        let operator = text("operator")?.unwrap_or("Equal");
        let value = text("value")?;
        let effect = text("effect")?;
        if let Some(key) = key.filter(|k| !k.is_empty()) {
            if !is_label_key(key) {
                return Err(format!("item {n}: {key:?} is not a valid key"));
            }
        }
        match operator {
            "Exists" if value.is_some_and(|v| !v.is_empty()) => {
                return Err(format!("item {n}: operator Exists takes no value"))
            }
            "Exists" => {}
            "Equal" if key.is_none_or(str::is_empty) => return Err(format!("item {n}: operator Equal needs a key")),
            "Equal" => {}
            other => return Err(format!("item {n}: operator {other:?} is not Exists or Equal")),
        }
        if let Some(effect) = effect.filter(|e| !e.is_empty()) {
            if !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&effect) {
                return Err(format!("item {n}: effect {effect:?} is not NoSchedule, PreferNoSchedule or NoExecute"));
            }
        }
        if t.get("tolerationSeconds").is_some_and(|s| !s.is_i64()) {
            return Err(format!("item {n}: tolerationSeconds must be an integer"));
        }
    }
    Ok(())
}

/// A Slurm partition, account or QOS name: letters, digits, `_`, `.` and `-`.
fn is_slurm_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "_.-".contains(c)
}

/// A Slurm constraint's characters: feature names and the operators between them
/// (`&`, `|`, `[]`, `()`, `*` counts, `:` node counts); nothing a shell reads specially.
fn is_slurm_constraint_char(c: char) -> bool {
    is_slurm_name_char(c) || "&|:*()[]".contains(c)
}

/// An optional Slurm setting, trimmed (blank: `None`), of at most 100 characters each
/// `allowed`; `what` says which characters those are, for the message.
fn check_slurm(field: &str, value: Option<String>, allowed: fn(char) -> bool, what: &str) -> Result<Option<String>> {
    let Some(value) = value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()) else { return Ok(None) };
    if let Some(bad) = value.chars().find(|&c| !allowed(c)) {
        return Err(AppError::invalid(field, format!("{bad:?} is not allowed: only {what}")));
    }
    // Every allowed character is ASCII, so bytes are characters.
    if value.len() > 100 {
        return Err(AppError::invalid(field, "must be at most 100 characters"));
    }
    Ok(Some(value))
}

fn check(mut f: FlavourInput) -> Result<FlavourInput> {
    f.name = check_name("name", &f.name)?;
    check_positive("cpu_millis", f.cpu_millis)?;
    check_positive("memory_mib", f.memory_mib)?;
    check_non_negative("gpus", f.gpus)?;
    check_non_negative("disk_gib", f.disk_gib)?;
    f.gpu_type = f.gpu_type.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty());
    if f.gpus == 0 && f.gpu_type.is_some() {
        return Err(AppError::invalid("gpu_type", "only a flavour with GPUs has a GPU type"));
    }
    if f.gpu_type.as_ref().is_some_and(|t| t.len() > 100) {
        return Err(AppError::invalid("gpu_type", "must be at most 100 characters"));
    }
    check_node_selector(&f.node_selector).map_err(|m| AppError::invalid("node_selector", m))?;
    check_tolerations(&f.tolerations).map_err(|m| AppError::invalid("tolerations", m))?;
    let name = "letters, digits, '_', '.' and '-' (a Slurm name)";
    f.slurm_partition = check_slurm("slurm_partition", f.slurm_partition.take(), is_slurm_name_char, name)?;
    f.slurm_account = check_slurm("slurm_account", f.slurm_account.take(), is_slurm_name_char, name)?;
    f.slurm_qos = check_slurm("slurm_qos", f.slurm_qos.take(), is_slurm_name_char, name)?;
    f.slurm_constraint = check_slurm(
        "slurm_constraint",
        f.slurm_constraint.take(),
        is_slurm_constraint_char,
        "letters, digits, '_', '.', '-' and Slurm's operators '&', '|', ':', '*', '(', ')', '[', ']'",
    )?;
    f.allowed_roles = check_roles("allowed_roles", std::mem::take(&mut f.allowed_roles))?;
    Ok(f)
}

pub(crate) async fn find(db: impl sqlx::PgExecutor<'_>, id: Uuid) -> Result<AdminFlavour> {
    Ok(db::find(db, id).await?)
}

/// Every flavour, enabled or not.
#[utoipa::path(get, path = "/api/v1/admin/flavours", tag = "admin",
    responses((status = 200, body = Vec<AdminFlavour>), (status = 403, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_admin_flavours(state: AppState, _admin: AdminUser) -> Result<Json<Vec<AdminFlavour>>> {
    Ok(Json(all(&state.db).await?))
}

/// Every flavour, smallest first.
pub async fn all(db: &sqlx::PgPool) -> Result<Vec<AdminFlavour>> {
    Ok(db::all(db).await?)
}

/// Adds a flavour.
#[utoipa::path(post, path = "/api/v1/admin/flavours", tag = "admin", request_body = FlavourInput,
    responses((status = 201, body = AdminFlavour), (status = 400, body = crate::error::ErrorBody),
              (status = 409, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_flavour(
    state: AppState,
    _admin: AdminUser,
    actor: Actor,
    Json(input): Json<FlavourInput>,
) -> Result<(axum::http::StatusCode, Json<AdminFlavour>)> {
    Ok((axum::http::StatusCode::CREATED, Json(create(&state, &actor, input).await?)))
}

/// Asks the runtime whether it can place the flavour's sessions where it says (the Slurm
/// runtime: whether the cluster has its partition); a 400 naming the field when not.
async fn placeable(state: &AppState, f: &FlavourInput) -> Result<()> {
    let placement = crate::runtime::SlurmPlacement {
        partition: f.slurm_partition.clone(),
        account: f.slurm_account.clone(),
        qos: f.slurm_qos.clone(),
        constraint: f.slurm_constraint.clone(),
    };
    state.runtime.check_placement(&placement).await.map_err(|(field, message)| AppError::invalid(field, message))
}

/// Checks and stores a new flavour, with its audit event.
pub async fn create(state: &AppState, actor: &Actor, input: FlavourInput) -> Result<AdminFlavour> {
    let f = check(input)?;
    placeable(state, &f).await?;
    let mut tx = state.db.begin().await?;
    let id = db::insert(&mut tx, &f).await.on_constraint("flavours_name_key", |_| name_taken("flavour", &f.name))?;
    audit::record(
        &mut *tx,
        actor,
        "flavour.create",
        "flavour",
        &id.to_string(),
        json!({"name": f.name, "cpu_millis": f.cpu_millis, "memory_mib": f.memory_mib, "gpus": f.gpus}),
    )
    .await?;
    let flavour = find(&mut *tx, id).await?;
    tx.commit().await?;
    Ok(flavour)
}

/// Replaces a flavour's settings; sessions already running keep what they were given.
#[utoipa::path(put, path = "/api/v1/admin/flavours/{id}", tag = "admin", request_body = FlavourInput,
    params(("id" = Uuid, Path)),
    responses((status = 200, body = AdminFlavour), (status = 400, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn update_flavour(
    state: AppState,
    _admin: AdminUser,
    actor: Actor,
    Path(id): Path<Uuid>,
    Json(input): Json<FlavourInput>,
) -> Result<Json<AdminFlavour>> {
    Ok(Json(update(&state, &actor, id, input).await?))
}

/// Checks and stores a flavour's new settings, with its audit event.
pub async fn update(state: &AppState, actor: &Actor, id: Uuid, input: FlavourInput) -> Result<AdminFlavour> {
    let f = check(input)?;
    placeable(state, &f).await?;
    let mut tx = state.db.begin().await?;
    let was_enabled = db::lock_enabled(&mut tx, id).await?.ok_or(AppError::NotFound)?;
    db::update(&mut tx, id, &f).await.on_constraint("flavours_name_key", |_| name_taken("flavour", &f.name))?;
    let action = match (was_enabled, f.enabled) {
        (true, false) => "flavour.disable",
        (false, true) => "flavour.enable",
        _ => "flavour.update",
    };
    audit::record(
        &mut *tx,
        actor,
        action,
        "flavour",
        &id.to_string(),
        json!({"name": f.name, "cpu_millis": f.cpu_millis, "memory_mib": f.memory_mib, "gpus": f.gpus, "enabled": f.enabled}),
    )
    .await?;
    let flavour = find(&mut *tx, id).await?;
    tx.commit().await?;
    Ok(flavour)
}

/// Deletes a flavour no session ever used (409 otherwise: disable it instead).
#[utoipa::path(delete, path = "/api/v1/admin/flavours/{id}", tag = "admin",
    params(("id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete_flavour(
    state: AppState,
    _admin: AdminUser,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> Result<axum::http::StatusCode> {
    delete(&state.db, &actor, id).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// Deletes a flavour no session refers to, with its audit event.
pub async fn delete(db: &sqlx::PgPool, actor: &Actor, id: Uuid) -> Result<()> {
    super::delete_unused(db, actor, super::db::Catalogue::Flavour, id).await
}

impl AdminFlavour {
    /// The Slurm settings it has, as `(what, value)`: for its row on the flavours page.
    pub fn slurm_placement(&self) -> Vec<(&'static str, &str)> {
        [
            ("partition", &self.slurm_partition),
            ("account", &self.slurm_account),
            ("QOS", &self.slurm_qos),
            ("constraint", &self.slurm_constraint),
        ]
        .into_iter()
        .filter_map(|(what, value)| Some((what, value.as_deref()?)))
        .collect()
    }

    /// The flavour as input again, to change one setting and save the rest unchanged.
    pub fn to_input(&self) -> FlavourInput {
        FlavourInput {
            name: self.name.clone(),
            cpu_millis: self.cpu_millis,
            memory_mib: self.memory_mib,
            gpus: self.gpus,
            gpu_type: self.gpu_type.clone(),
            disk_gib: self.disk_gib,
            node_selector: self.node_selector.clone(),
            tolerations: self.tolerations.clone(),
            slurm_partition: self.slurm_partition.clone(),
            slurm_account: self.slurm_account.clone(),
            slurm_qos: self.slurm_qos.clone(),
            slurm_constraint: self.slurm_constraint.clone(),
            allowed_roles: self.allowed_roles.clone(),
            enabled: self.enabled,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_selectors_and_tolerations_follow_kubernetes() {
        assert!(check_node_selector(&json!({"nvidia.com/gpu.present": "true", "zone": ""})).is_ok());
        assert!(check_node_selector(&json!({"bad key!": "x"})).is_err());
        assert!(check_node_selector(&json!({"a": 1})).is_err());
        assert!(check_node_selector(&json!(["a"])).is_err());
        assert!(check_tolerations(&json!([{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]))
            .is_ok());
        assert!(check_tolerations(
            &json!([{"key": "k", "value": "v", "effect": "NoExecute", "tolerationSeconds": 60}])
        )
        .is_ok());
        assert!(check_tolerations(&json!([{"key": "k", "operator": "Exists", "value": "v"}])).is_err());
        assert!(check_tolerations(&json!([{"operator": "Equal", "value": "v"}])).is_err());
        assert!(check_tolerations(&json!([{"key": "k", "effect": "Sometimes"}])).is_err());
        assert!(check_tolerations(&json!([{"key": "k", "colour": "red"}])).is_err());
    }

    #[test]
    fn slurm_settings_are_trimmed_and_hold_no_shell_characters() {
        let name = |v: &str| check_slurm("slurm_qos", Some(v.into()), is_slurm_name_char, "names");
        let constraint =
            |v: &str| check_slurm("slurm_constraint", Some(v.into()), is_slurm_constraint_char, "features");
        assert_eq!(name(" gpu.long-2_x ").unwrap().as_deref(), Some("gpu.long-2_x"));
        assert_eq!(name("  ").unwrap(), None);
        assert_eq!(check_slurm("slurm_qos", None, is_slurm_name_char, "names").unwrap(), None);
        assert_eq!(
            constraint("[rack1|rack2]&(v100*2|a100):4").unwrap().as_deref(),
            Some("[rack1|rack2]&(v100*2|a100):4")
        );
        for bad in ["gpu&ib", "a b", "a;b", "$(id)", "a,b", "é"] {
            assert!(name(bad).is_err(), "{bad:?} passed as a name");
        }
        for bad in ["a b", "a;b", "$(id)", "`id`", "a'b", "a\"b", "a>b", "a\nb"] {
            assert!(constraint(bad).is_err(), "{bad:?} passed as a constraint");
        }
        assert!(name(&"p".repeat(100)).is_ok());
        assert!(name(&"p".repeat(101)).is_err());
    }
}
