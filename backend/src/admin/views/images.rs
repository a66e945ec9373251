//! The images page: the catalogue, one form to add or edit an image (a refused one comes
//! back as typed, with the refusal's status), enable/disable and delete.

use askama::Template;
use serde::Deserialize;
use uuid::Uuid;

use super::{json, number, refused_page, AdminPage, Refusal};
use crate::admin::images::{self, AdminImage, ImageInput};
use crate::audit::Actor;
use crate::error::AppError;
use crate::state::AppState;
use crate::web::page::{render, see_other, Ctx, FormError, PageResult};
use crate::web::{Form, Path, Query};

#[derive(Template)]
#[template(path = "admin/images.html")]
struct ImagesPage {
    ctx: Ctx,
    images: Vec<AdminImage>,
    form: ImageForm,
    error: Option<FormError>,
}

/// The images page; after a refused submission its status is the refusal's, with the
/// message above the form and the form as it was typed.
async fn images_view(state: &AppState, ctx: Ctx, form: ImageForm, refused: Option<AppError>) -> PageResult {
    let refused = refused.map(Refusal::of).transpose()?;
    let images = images::all(&state.db).await?;
    refused_page(refused, |error| render(&ImagesPage { ctx, images, form, error }))
}

#[derive(Deserialize)]
pub(super) struct ImagesQuery {
    /// The image to fill the form with.
    edit: Option<Uuid>,
}

pub(super) async fn images_page(
    state: AppState,
    AdminPage { ctx, .. }: AdminPage,
    Query(q): Query<ImagesQuery>,
) -> PageResult {
    let form = match q.edit {
        Some(id) => ImageForm::of(&images::find(&state.db, id).await?),
        None => ImageForm::blank(),
    };
    images_view(&state, ctx, form, None).await
}

/// The image form (to add one, or edit one), as typed: numbers and JSON are checked into
/// `ImageInput`, each refusal naming its field.
#[derive(Deserialize)]
pub(super) struct ImageForm {
    /// The image being edited (from the path, not the form); `None` adds one.
    #[serde(skip)]
    id: Option<Uuid>,
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
    /// An empty form, with the sizes most images start from.
    fn blank() -> Self {
        ImageForm {
            id: None,
            name: String::new(),
            kind: "desktop".into(),
            reference: String::new(),
            default_cpu_millis: "2000".into(),
            default_memory_mib: "4096".into(),
            default_gpus: "0".into(),
            default_disk_gib: "10".into(),
            description: String::new(),
            icon: String::new(),
            allowed_roles: images::all_roles(),
            parameter_schema: String::new(),
            local_command: String::new(),
        }
    }

    fn of(i: &AdminImage) -> Self {
        let text = |v: &Option<serde_json::Value>| v.as_ref().map(|v| v.to_string()).unwrap_or_default();
        ImageForm {
            id: Some(i.id),
            name: i.name.clone(),
            kind: i.kind.clone(),
            reference: i.reference.clone(),
            default_cpu_millis: i.default_cpu_millis.to_string(),
            default_memory_mib: i.default_memory_mib.to_string(),
            default_gpus: i.default_gpus.to_string(),
            default_disk_gib: i.default_disk_gib.to_string(),
            description: i.description.clone(),
            icon: i.icon.clone().unwrap_or_default(),
            allowed_roles: i.allowed_roles.clone(),
            parameter_schema: text(&i.parameter_schema),
            local_command: text(&i.local_command),
        }
    }

    /// The input the API takes; what the form does not show (enabled, flavours, protocol)
    /// is the caller's to set.
    fn input(&self) -> Result<ImageInput, AppError> {
        let whole = |field: &str, text: &str, default: i32| number(field, text).map(|n| n.unwrap_or(default));
        Ok(ImageInput {
            default_cpu_millis: whole("default_cpu_millis", &self.default_cpu_millis, 1000)?,
            default_memory_mib: whole("default_memory_mib", &self.default_memory_mib, 2048)?,
            default_gpus: whole("default_gpus", &self.default_gpus, 0)?,
            default_disk_gib: whole("default_disk_gib", &self.default_disk_gib, 0)?,
            parameter_schema: json("parameter_schema", &self.parameter_schema)?,
            local_command: json("local_command", &self.local_command)?,
            name: self.name.clone(),
            kind: self.kind.trim().to_owned(),
            reference: self.reference.clone(),
            protocol: None,
            enabled: true,
            description: self.description.trim().to_owned(),
            icon: Some(self.icon.trim().to_owned()).filter(|i| !i.is_empty()),
            allowed_roles: if self.allowed_roles.is_empty() { images::all_roles() } else { self.allowed_roles.clone() },
            flavours: Vec::new(),
        })
    }

    pub fn has_role(&self, role: &&str) -> bool {
        self.allowed_roles.iter().any(|r| r == role)
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
        Err(err) => images_view(&state, ctx, form, Some(err)).await,
    }
}

/// Saves an edited image; whether it is enabled and the flavours it runs on stay as they were.
pub(super) async fn update_image(
    state: AppState,
    AdminPage { ctx, .. }: AdminPage,
    actor: Actor,
    Path(id): Path<Uuid>,
    Form(form): Form<ImageForm>,
) -> PageResult {
    let form = ImageForm { id: Some(id), ..form };
    let image = images::find(&state.db, id).await?;
    let result = match form.input() {
        Ok(input) => {
            let input = ImageInput { enabled: image.enabled, flavours: image.flavours, ..input };
            images::update(&state.db, &actor, id, input).await.map(|_| ())
        }
        Err(err) => Err(err),
    };
    match result {
        Ok(()) => Ok(see_other("/admin/images")),
        Err(err) => images_view(&state, ctx, form, Some(err)).await,
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
        Err(err) => images_view(&state, ctx, ImageForm::blank(), Some(err)).await,
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
        Err(err) => images_view(&state, ctx, ImageForm::blank(), Some(err)).await,
    }
}
