//! The flavours page: the list, one form to add or edit a flavour (a refused one comes back
//! as typed, with the refusal's status), enable/disable and delete.

use askama::Template;
use serde::Deserialize;
use uuid::Uuid;

use super::{json, number, refused_page, AdminPage, Refusal};
use crate::admin::flavours::{self, AdminFlavour, FlavourInput};
use crate::admin::images::all_roles;
use crate::audit::Actor;
use crate::error::AppError;
use crate::state::AppState;
use crate::web::page::{render, see_other, Ctx, FormError, PageResult};
use crate::web::{Form, Path, Query};

/// The flavour form as typed, so a refused submission comes back with what was typed.
#[derive(Deserialize)]
pub struct FlavourForm {
    /// The flavour being edited (from the path, not the form); `None` adds one.
    #[serde(skip)]
    pub id: Option<Uuid>,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub cpu_millis: String,
    #[serde(default)]
    pub memory_mib: String,
    #[serde(default)]
    pub gpus: String,
    #[serde(default)]
    pub gpu_type: String,
    #[serde(default)]
    pub disk_gib: String,
    #[serde(default)]
    pub node_selector: String,
    #[serde(default)]
    pub tolerations: String,
    #[serde(default)]
    pub slurm_partition: String,
    #[serde(default)]
    pub slurm_account: String,
    #[serde(default)]
    pub slurm_qos: String,
    #[serde(default)]
    pub slurm_constraint: String,
    /// The roles ticked; none ticked means no role may use it.
    #[serde(default, rename = "allowed_roles")]
    pub roles: Vec<String>,
    /// The box is ticked (`enabled=true`).
    #[serde(default)]
    pub enabled: bool,
}

impl FlavourForm {
    /// An empty form, with the sizes most flavours start from.
    fn blank() -> Self {
        FlavourForm {
            id: None,
            name: String::new(),
            cpu_millis: "2000".into(),
            memory_mib: "4096".into(),
            gpus: "0".into(),
            gpu_type: String::new(),
            disk_gib: "0".into(),
            node_selector: "{}".into(),
            tolerations: "[]".into(),
            slurm_partition: String::new(),
            slurm_account: String::new(),
            slurm_qos: String::new(),
            slurm_constraint: String::new(),
            roles: all_roles(),
            enabled: true,
        }
    }

    fn of(f: &AdminFlavour) -> Self {
        FlavourForm {
            id: Some(f.id),
            name: f.name.clone(),
            cpu_millis: f.cpu_millis.to_string(),
            memory_mib: f.memory_mib.to_string(),
            gpus: f.gpus.to_string(),
            gpu_type: f.gpu_type.clone().unwrap_or_default(),
            disk_gib: f.disk_gib.to_string(),
            node_selector: f.node_selector.to_string(),
            tolerations: f.tolerations.to_string(),
            slurm_partition: f.slurm_partition.clone().unwrap_or_default(),
            slurm_account: f.slurm_account.clone().unwrap_or_default(),
            slurm_qos: f.slurm_qos.clone().unwrap_or_default(),
            slurm_constraint: f.slurm_constraint.clone().unwrap_or_default(),
            roles: f.allowed_roles.clone(),
            enabled: f.enabled,
        }
    }

    /// The input the API takes; each field that is not a number (or not JSON) is a 400
    /// naming it. No role ticked means no role may use it.
    fn input(&self) -> Result<FlavourInput, AppError> {
        let number = |field: &str, text: &str| number(field, text).map(Option::unwrap_or_default);
        Ok(FlavourInput {
            name: self.name.clone(),
            cpu_millis: number("cpu_millis", &self.cpu_millis)?,
            memory_mib: number("memory_mib", &self.memory_mib)?,
            gpus: number("gpus", &self.gpus)?,
            gpu_type: Some(self.gpu_type.clone()),
            disk_gib: number("disk_gib", &self.disk_gib)?,
            node_selector: json("node_selector", &self.node_selector)?.unwrap_or_else(|| serde_json::json!({})),
            tolerations: json("tolerations", &self.tolerations)?.unwrap_or_else(|| serde_json::json!([])),
            // Blank is no setting: the check trims and drops it.
            slurm_partition: Some(self.slurm_partition.clone()),
            slurm_account: Some(self.slurm_account.clone()),
            slurm_qos: Some(self.slurm_qos.clone()),
            slurm_constraint: Some(self.slurm_constraint.clone()),
            allowed_roles: self.roles.clone(),
            enabled: self.enabled,
        })
    }

    pub fn has_role(&self, role: &&str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

#[derive(Template)]
#[template(path = "admin/flavours.html")]
struct FlavoursPage {
    ctx: Ctx,
    flavours: Vec<AdminFlavour>,
    form: FlavourForm,
    error: Option<FormError>,
}

/// The flavours page; after a refused submission its status is the refusal's (400, 404,
/// 409), with the message above the form and the form as it was typed.
async fn flavours_view(state: &AppState, ctx: Ctx, form: FlavourForm, refused: Option<AppError>) -> PageResult {
    let refused = refused.map(Refusal::of).transpose()?;
    let flavours = flavours::all(&state.db).await?;
    refused_page(refused, |error| render(&FlavoursPage { ctx, flavours, form, error }))
}

#[derive(Deserialize)]
pub(super) struct FlavoursQuery {
    /// The flavour to fill the form with.
    edit: Option<Uuid>,
}

pub(super) async fn flavours_page(
    state: AppState,
    AdminPage { ctx, .. }: AdminPage,
    Query(q): Query<FlavoursQuery>,
) -> PageResult {
    let form = match q.edit {
        Some(id) => FlavourForm::of(&flavours::find(&state.db, id).await?),
        None => FlavourForm::blank(),
    };
    flavours_view(&state, ctx, form, None).await
}

pub(super) async fn create_flavour(
    state: AppState,
    AdminPage { ctx, .. }: AdminPage,
    actor: Actor,
    Form(form): Form<FlavourForm>,
) -> PageResult {
    let result = match form.input() {
        Ok(input) => flavours::create(&state, &actor, input).await.map(|_| ()),
        Err(err) => Err(err),
    };
    match result {
        Ok(()) => Ok(see_other("/admin/flavours")),
        Err(err) => flavours_view(&state, ctx, form, Some(err)).await,
    }
}

pub(super) async fn update_flavour(
    state: AppState,
    AdminPage { ctx, .. }: AdminPage,
    actor: Actor,
    Path(id): Path<Uuid>,
    Form(form): Form<FlavourForm>,
) -> PageResult {
    let form = FlavourForm { id: Some(id), ..form };
    let result = match form.input() {
        Ok(input) => flavours::update(&state, &actor, id, input).await.map(|_| ()),
        Err(err) => Err(err),
    };
    match result {
        Ok(()) => Ok(see_other("/admin/flavours")),
        Err(err) => flavours_view(&state, ctx, form, Some(err)).await,
    }
}

pub(super) async fn toggle_flavour(
    state: AppState,
    AdminPage { ctx, .. }: AdminPage,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> PageResult {
    let flavour = flavours::find(&state.db, id).await?;
    let mut input = flavour.to_input();
    input.enabled = !flavour.enabled;
    match flavours::update(&state, &actor, id, input).await {
        Ok(_) => Ok(see_other("/admin/flavours")),
        Err(err) => flavours_view(&state, ctx, FlavourForm::blank(), Some(err)).await,
    }
}

pub(super) async fn delete_flavour(
    state: AppState,
    AdminPage { ctx, .. }: AdminPage,
    actor: Actor,
    Path(id): Path<Uuid>,
) -> PageResult {
    match flavours::delete(&state.db, &actor, id).await {
        Ok(()) => Ok(see_other("/admin/flavours")),
        Err(err) => flavours_view(&state, ctx, FlavourForm::blank(), Some(err)).await,
    }
}
