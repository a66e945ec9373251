//! Flavours: the sizes sessions run at (CPU, memory, GPUs), with the Kubernetes node
//! selector and tolerations that place them, and the roles that may use them.

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
    Ok((axum::http::StatusCode::CREATED, Json(create(&state.db, &actor, input).await?)))
}

/// Checks and stores a new flavour, with its audit event.
pub async fn create(db: &sqlx::PgPool, actor: &Actor, input: FlavourInput) -> Result<AdminFlavour> {
    let f = check(input)?;
    let mut tx = db.begin().await?;
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
    Ok(Json(update(&state.db, &actor, id, input).await?))
}

/// Checks and stores a flavour's new settings, with its audit event.
pub async fn update(db: &sqlx::PgPool, actor: &Actor, id: Uuid, input: FlavourInput) -> Result<AdminFlavour> {
    let f = check(input)?;
    let mut tx = db.begin().await?;
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
}
