//! The image catalogue: create, edit, disable, and delete when no session refers to it.
//! References are checked as OCI references and a job's parameter schema against the JSON
//! Schema meta-schema before anything is written.

use serde_json::{json, Value};
use sqlx::PgConnection;
use uuid::Uuid;

use super::db::images as db;
pub use super::db::images::{AdminImage, ImageInput};
use super::{check_name, check_non_negative, check_positive, check_roles, name_taken};
use crate::audit::{self, Actor};
use crate::error::{AppError, Result, ResultExt};
use crate::state::AppState;
use crate::web::{AdminUser, Json, Path};

pub(crate) use super::db::all_roles;

/// The input once checked, ready to write.
struct Checked {
    input: ImageInput,
    protocol: String,
}

/// Every check, each naming its field, before anything is written.
fn check(mut input: ImageInput) -> Result<Checked> {
    input.name = check_name("name", &input.name)?;
    let protocol = match input.kind.as_str() {
        "desktop" => "vnc",
        "notebook" | "webapp" => "http",
        "job" => "none",
        other => {
            return Err(AppError::invalid("kind", format!("unknown kind {other:?} (desktop, notebook, job or webapp)")))
        }
    };
    if let Some(given) = &input.protocol {
        if given != protocol {
            return Err(AppError::invalid(
                "protocol",
                format!("a {} image speaks {protocol}, not {given:?}", input.kind),
            ));
        }
    }
    input.reference = input.reference.trim().to_owned();
    super::oci::check_reference(&input.reference).map_err(|m| AppError::invalid("reference", m))?;
    check_positive("default_cpu_millis", input.default_cpu_millis)?;
    check_positive("default_memory_mib", input.default_memory_mib)?;
    check_non_negative("default_gpus", input.default_gpus)?;
    check_non_negative("default_disk_gib", input.default_disk_gib)?;
    if input.description.chars().count() > 2000 {
        return Err(AppError::invalid("description", "must be at most 2000 characters"));
    }
    input.icon = input.icon.map(|i| i.trim().to_owned()).filter(|i| !i.is_empty());
    if input.icon.as_ref().is_some_and(|i| i.len() > 2048) {
        return Err(AppError::invalid("icon", "must be at most 2048 characters"));
    }
    input.allowed_roles = check_roles("allowed_roles", std::mem::take(&mut input.allowed_roles))?;
    input.flavours.sort();
    input.flavours.dedup();
    if let Some(schema) = &input.parameter_schema {
        if input.kind != "job" && input.kind != "webapp" {
            return Err(AppError::invalid("parameter_schema", "only job and web app images have a parameter schema"));
        }
        check_parameter_schema(schema).map_err(|m| AppError::invalid("parameter_schema", m))?;
    }
    if let Some(command) = &input.local_command {
        check_local_command(command).map_err(|m| AppError::invalid("local_command", m))?;
    }
    Ok(Checked { input, protocol: protocol.to_owned() })
}

/// A job's parameter schema must be a JSON Schema (checked against its draft's
/// meta-schema) that compiles, describing an object, since parameters are an object.
pub fn check_parameter_schema(schema: &Value) -> Result<(), String> {
    if !schema.is_object() {
        return Err("must be a JSON Schema object".into());
    }
    if let Err(err) = jsonschema::meta::validate(schema) {
        let at = err.instance_path().to_string();
        let at = if at.is_empty() { String::new() } else { format!(" at {at}") };
        return Err(format!("not a valid JSON Schema{at}: {err}"));
    }
    // The meta-schema does not catch everything (a `$ref` to nowhere, a bad regex).
    jsonschema::validator_for(schema).map_err(|err| format!("not a usable JSON Schema: {err}"))?;
    if schema.get("type").is_some_and(|t| t != "object") {
        return Err("must describe an object (\"type\": \"object\"): job parameters are named".into());
    }
    Ok(())
}

/// `{"argv": [...], "env": {...}, "cwd": "..."}`: what the local runtime runs.
fn check_local_command(command: &Value) -> Result<(), String> {
    let Some(object) = command.as_object() else { return Err("must be an object with \"argv\"".into()) };
    for key in object.keys() {
        if !["argv", "env", "cwd"].contains(&key.as_str()) {
            return Err(format!("unknown key {key:?} (argv, env, cwd)"));
        }
    }
    let argv = object.get("argv").and_then(Value::as_array).ok_or("needs \"argv\": a list of strings")?;
    if argv.is_empty() || !argv.iter().all(|a| a.as_str().is_some_and(|s| !s.is_empty())) {
        return Err("\"argv\" must be a non-empty list of non-empty strings".into());
    }
    if let Some(env) = object.get("env") {
        let ok = env.as_object().is_some_and(|e| e.values().all(Value::is_string));
        if !ok {
            return Err("\"env\" must map names to strings".into());
        }
    }
    if object.get("cwd").is_some_and(|c| !c.is_string()) {
        return Err("\"cwd\" must be a string".into());
    }
    Ok(())
}

/// Replaces the flavours an image may run on; each must exist.
async fn set_flavours(tx: &mut PgConnection, image: Uuid, flavours: &[Uuid]) -> Result<()> {
    if db::count_flavours(tx, flavours).await? != flavours.len() as i64 {
        return Err(AppError::invalid("flavours", "names a flavour that does not exist"));
    }
    Ok(db::set_flavours(tx, image, flavours).await?)
}

pub(crate) async fn find(db: impl sqlx::PgExecutor<'_>, id: Uuid) -> Result<AdminImage> {
    Ok(db::find(db, id).await?)
}

/// Every image, enabled or not.
#[utoipa::path(get, path = "/api/v1/admin/images", tag = "admin",
    responses((status = 200, body = Vec<AdminImage>), (status = 403, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_admin_images(state: AppState, _admin: AdminUser) -> Result<Json<Vec<AdminImage>>> {
    Ok(Json(all(&state.db).await?))
}

/// Every image, enabled or not, by kind and name.
pub async fn all(db: &sqlx::PgPool) -> Result<Vec<AdminImage>> {
    Ok(db::all(db).await?)
}

/// One image.
#[utoipa::path(get, path = "/api/v1/admin/images/{id}", tag = "admin",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = AdminImage), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn get_admin_image(state: AppState, _admin: AdminUser, Path(id): Path<Uuid>) -> Result<Json<AdminImage>> {
    Ok(Json(find(&state.db, id).await?))
}

/// Adds an image to the catalogue.
#[utoipa::path(post, path = "/api/v1/admin/images", tag = "admin", request_body = ImageInput,
    responses((status = 201, body = AdminImage), (status = 400, body = crate::error::ErrorBody),
              (status = 409, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_image(
    state: AppState,
    _admin: AdminUser,
    actor: Actor,
    Json(input): Json<ImageInput>,
) -> Result<(axum::http::StatusCode, Json<AdminImage>)> {
    Ok((axum::http::StatusCode::CREATED, Json(create(&state.db, &actor, input).await?)))
}

/// Checks and stores a new image, with its audit event.
pub async fn create(db: &sqlx::PgPool, actor: &Actor, input: ImageInput) -> Result<AdminImage> {
    let Checked { input: i, protocol } = check(input)?;
    let mut tx = db.begin().await?;
    let id =
        db::insert(&mut tx, &i, &protocol).await.on_constraint("images_name_key", |_| name_taken("image", &i.name))?;
    set_flavours(&mut tx, id, &i.flavours).await?;
    audit::record(
        &mut *tx,
        actor,
        "image.create",
        "image",
        &id.to_string(),
        json!({"name": i.name, "kind": i.kind, "reference": i.reference, "enabled": i.enabled}),
    )
    .await?;
    let image = find(&mut *tx, id).await?;
    tx.commit().await?;
    Ok(image)
}

/// Replaces an image's settings (send the whole image; `enabled: false` disables it).
/// Running sessions of a disabled image keep running.
#[utoipa::path(put, path = "/api/v1/admin/images/{id}", tag = "admin", request_body = ImageInput,
    params(("id" = Uuid, Path)),
    responses((status = 200, body = AdminImage), (status = 400, body = crate::error::ErrorBody),
              (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn update_image(
    state: AppState,
    _admin: AdminUser,
    actor: Actor,
    Path(id): Path<Uuid>,
    Json(input): Json<ImageInput>,
) -> Result<Json<AdminImage>> {
    Ok(Json(update(&state.db, &actor, id, input).await?))
}

/// Checks and stores an image's new settings, with its audit event.
pub async fn update(db: &sqlx::PgPool, actor: &Actor, id: Uuid, input: ImageInput) -> Result<AdminImage> {
    let Checked { input: i, protocol } = check(input)?;
    let mut tx = db.begin().await?;
    let before = find(&mut *tx, id).await?;
    if before.kind != i.kind && before.total_sessions > 0 {
        return Err(AppError::invalid("kind", "sessions were launched from this image; its kind cannot change"));
    }
    db::update(&mut tx, id, &i, &protocol).await.on_constraint("images_name_key", |_| name_taken("image", &i.name))?;
    set_flavours(&mut tx, id, &i.flavours).await?;
    let action = match (before.enabled, i.enabled) {
        (true, false) => "image.disable",
        (false, true) => "image.enable",
        _ => "image.update",
    };
    audit::record(
        &mut *tx,
        actor,
        action,
        "image",
        &id.to_string(),
        json!({"name": i.name, "reference": i.reference, "enabled": i.enabled}),
    )
    .await?;
    let image = find(&mut *tx, id).await?;
    tx.commit().await?;
    Ok(image)
}

/// Deletes an image no session ever used (409 otherwise: disable it instead, since
/// sessions and usage refer to it).
#[utoipa::path(delete, path = "/api/v1/admin/images/{id}", tag = "admin",
    params(("id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn delete_image(
    state: AppState,
    _admin: AdminUser,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> Result<axum::http::StatusCode> {
    delete(&state.db, &actor, id).await?;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// Deletes an image no session refers to, with its audit event.
pub async fn delete(db: &sqlx::PgPool, actor: &Actor, id: Uuid) -> Result<()> {
    super::delete_unused(db, actor, super::db::Catalogue::Image, id).await
}

impl AdminImage {
    /// The image as input again, to change one setting and save the rest unchanged.
    pub fn to_input(&self) -> ImageInput {
        ImageInput {
            name: self.name.clone(),
            kind: self.kind.clone(),
            reference: self.reference.clone(),
            protocol: Some(self.protocol.clone()),
            default_cpu_millis: self.default_cpu_millis,
            default_memory_mib: self.default_memory_mib,
            default_gpus: self.default_gpus,
            default_disk_gib: self.default_disk_gib,
            enabled: self.enabled,
            description: self.description.clone(),
            icon: self.icon.clone(),
            allowed_roles: self.allowed_roles.clone(),
            flavours: self.flavours.clone(),
            parameter_schema: self.parameter_schema.clone(),
            local_command: self.local_command.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::check_parameter_schema;

    #[test]
    fn parameter_schemas_are_checked_against_their_meta_schema() {
        assert!(check_parameter_schema(&json!({"type": "object", "properties": {"n": {"type": "integer"}}})).is_ok());
        assert!(check_parameter_schema(&json!({
            "$schema": "http://json-schema.org/draft-07/schema#", "type": "object", "required": ["a"]
        }))
        .is_ok());
        for bad in [
            json!({"type": "objekt"}),
            json!({"type": "object", "required": "a"}),
            json!({"type": "object", "properties": {"s": {"pattern": "("}}}),
            json!({"type": "string"}),
            json!({"$schema": "https://example.com/my-own-draft", "type": "object"}),
            json!({"type": "object", "properties": {"x": {"$ref": "https://example.com/elsewhere.json"}}}),
            json!([1, 2]),
        ] {
            assert!(check_parameter_schema(&bad).is_err(), "{bad} was accepted");
        }
    }
}
