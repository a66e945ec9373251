//! The images page: the catalogue, a form to add an image, enable/disable and delete.

use askama::Template;
use serde::Deserialize;
use uuid::Uuid;

use super::{json, message, number, AdminPage};
use crate::admin::images::{self, AdminImage, ImageInput};
use crate::audit::Actor;
use crate::error::AppError;
use crate::state::AppState;
use crate::web::page::{render, see_other, Ctx, PageResult};
use crate::web::{Form, Path};

#[derive(Template)]
#[template(path = "admin/images.html")]
struct ImagesPage {
    ctx: Ctx,
    images: Vec<AdminImage>,
    error: Option<String>,
}

async fn images_view(state: &AppState, ctx: Ctx, error: Option<String>) -> PageResult {
    let images = images::all(&state.db).await?;
    render(&ImagesPage { ctx, images, error })
}

pub(super) async fn images_page(state: AppState, AdminPage { ctx, .. }: AdminPage) -> PageResult {
    images_view(&state, ctx, None).await
}

/// The add-an-image form, as typed: numbers and JSON are checked into `ImageInput`, each
/// refusal naming its field.
#[derive(Deserialize)]
pub(super) struct ImageForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    reference: String,
    #[serde(default)]
    default_cpu_millis: String,
    #[serde(default)]
    default_memory_mib: String,
    #[serde(default)]
    default_gpus: String,
    #[serde(default)]
    default_disk_gib: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    icon: String,
    /// The roles ticked; none ticked is every role.
    #[serde(default)]
    allowed_roles: Vec<String>,
    #[serde(default)]
    parameter_schema: String,
    #[serde(default)]
    local_command: String,
}

impl ImageForm {
    fn input(self) -> Result<ImageInput, AppError> {
        let whole = |field: &str, text: &str, default: i32| number(field, text).map(|n| n.unwrap_or(default));
        Ok(ImageInput {
            default_cpu_millis: whole("default_cpu_millis", &self.default_cpu_millis, 1000)?,
            default_memory_mib: whole("default_memory_mib", &self.default_memory_mib, 2048)?,
            default_gpus: whole("default_gpus", &self.default_gpus, 0)?,
            default_disk_gib: whole("default_disk_gib", &self.default_disk_gib, 0)?,
            parameter_schema: json("parameter_schema", &self.parameter_schema)?,
            local_command: json("local_command", &self.local_command)?,
            name: self.name,
            kind: self.kind.trim().to_owned(),
            reference: self.reference,
            protocol: None,
            enabled: true,
            description: self.description.trim().to_owned(),
            icon: Some(self.icon.trim().to_owned()).filter(|i| !i.is_empty()),
            allowed_roles: if self.allowed_roles.is_empty() { images::all_roles() } else { self.allowed_roles },
            flavours: Vec::new(),
        })
    }
}

pub(super) async fn create_image(
    state: AppState,
    AdminPage { ctx, .. }: AdminPage,
    actor: Actor,
    Form(form): Form<ImageForm>,
) -> PageResult {
    let result = match form.input() {
        Ok(input) => images::create(&state.db, &actor, input).await.map(|_| ()),
        Err(err) => Err(err),
    };
    match result {
        Ok(()) => Ok(see_other("/admin/images")),
        Err(err) => images_view(&state, ctx, Some(message(err)?)).await,
    }
}

pub(super) async fn toggle_image(
    state: AppState,
    AdminPage { ctx, .. }: AdminPage,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> PageResult {
    let image = images::find(&state.db, id).await?;
    let mut input = image.to_input();
    input.enabled = !image.enabled;
    match images::update(&state.db, &actor, id, input).await {
        Ok(_) => Ok(see_other("/admin/images")),
        Err(err) => images_view(&state, ctx, Some(message(err)?)).await,
    }
}

pub(super) async fn delete_image(
    state: AppState,
    AdminPage { ctx, .. }: AdminPage,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> PageResult {
    match images::delete(&state.db, &actor, id).await {
        Ok(()) => Ok(see_other("/admin/images")),
        Err(err) => images_view(&state, ctx, Some(message(err)?)).await,
    }
}
