//! The session page's share dialog and "who connected" (its owner and admins): invite a
//! member of the proposal or a scientist of its beamline by name, username or e-mail with a
//! role, change a role, remove someone; and the session's remote-access log. The forms call
//! the same functions as the API (`members::add`, `members::remove`), audit included.

use axum::routing::post;
use axum::Router;
use uuid::Uuid;

use super::access::{self, Access, AccessFilter};
use super::db::{self, Member, ShareCandidate};
use super::members::{self, AddMember};
use crate::audit::Actor;
use crate::auth::identity::CurrentUser;
use crate::error::AppError;
use crate::state::AppState;
use crate::web::page::{human_bytes, see_other, FormError, PageResult, PageUser};
use crate::web::{Form, Path};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/sessions/{id}/members", post(add_from_page))
        .route("/sessions/{id}/members/{username}/remove", post(remove_from_page))
}

/// The roles as the dialog offers them, `(role, words)`.
pub const ROLES: [(&str, &str); 3] =
    [("user", "may control"), ("guest", "may only watch"), ("support", "beamline support")];

/// A member's role as people read it (`may only watch` for `guest`).
pub fn role_words(role: &str) -> &str {
    ROLES.iter().find(|(r, _)| *r == role).map_or(role, |(_, words)| words)
}

/// What the owner (or an admin) sees of a session's sharing.
pub struct Sharing {
    pub members: Vec<Member>,
    pub candidates: Vec<ShareCandidate>,
    /// Who connected, newest first.
    pub access: Vec<AccessLine>,
    /// A refused change, with what was typed.
    pub error: Option<FormError>,
    pub typed_user: String,
    pub typed_role: String,
}

/// One row of "who connected".
pub struct AccessLine {
    /// The session's image and the start of its id ("Xfce desktop 4a1a6538").
    pub session: String,
    pub who: String,
    pub role: String,
    pub kind: String,
    pub from: String,
    pub when: String,
    pub duration: String,
    pub bytes_in: String,
    pub bytes_out: String,
}

impl Sharing {
    /// The session's sharing when `user` manages it (its owner, or an admin); `None` for
    /// anyone else and for a session that has ended (nobody can join it any more; its log
    /// stays in the API and the admins' export).
    pub async fn load(state: &AppState, user: &CurrentUser, s: &db::Session) -> crate::error::Result<Option<Sharing>> {
        let manages = s.role.as_deref() == Some("owner") || user.is_admin();
        if !manages {
            return Ok(None);
        }
        let log = access::search(&state.db, &AccessFilter::of_session(s.id), true, 200).await?;
        Ok(Some(Sharing {
            members: db::members(&state.db, s.id).await?,
            candidates: if s.state.has_ended() { Vec::new() } else { db::share_candidates(&state.db, s.id).await? },
            access: log.into_iter().map(line).collect(),
            error: None,
            typed_user: String::new(),
            typed_role: "guest".into(),
        }))
    }
}

/// An access record as a person reads it.
pub fn line(a: Access) -> AccessLine {
    let at = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    AccessLine {
        session: format!("{} {}", a.image, &a.session.to_string()[..8]),
        who: format!("{} ({})", a.display_name, a.username),
        role: a.role,
        kind: a.kind,
        from: a.remote_addr.unwrap_or_default(),
        when: a.connected_at.format(at).unwrap_or_default(),
        duration: match a.disconnected_at {
            Some(_) => access::duration(a.seconds),
            None => format!("connected now ({})", access::duration(a.seconds)),
        },
        bytes_in: human_bytes(&a.bytes_in),
        bytes_out: human_bytes(&a.bytes_out),
    }
}

/// "Share" on the session page; a refusal comes back on the page, as typed, by its field.
async fn add_from_page(
    state: AppState,
    PageUser { user, ctx }: PageUser,
    actor: Actor,
    Path(id): Path<Uuid>,
    Form(form): Form<AddMember>,
) -> PageResult {
    match members::add(&state, &user, &actor, id, &form).await {
        Ok(_) => Ok(see_other(&format!("/sessions/{id}#share"))),
        Err(err @ (AppError::Invalid { .. } | AppError::Conflict(_) | AppError::Forbidden(_))) => {
            let status = err.status();
            let error = FormError::of(err)?;
            let mut response = super::views::session_page_with(&state, &user, ctx, id, |sharing| {
                sharing.error = Some(error);
                sharing.typed_user = form.user;
                sharing.typed_role = form.role;
            })
            .await?;
            *response.status_mut() = status;
            Ok(response)
        }
        Err(err) => Err(err.into()),
    }
}

/// "Remove" beside a member.
async fn remove_from_page(
    state: AppState,
    PageUser { user, .. }: PageUser,
    actor: Actor,
    Path((id, username)): Path<(Uuid, String)>,
) -> PageResult {
    members::remove(&state, &user, &actor, id, &username).await?;
    Ok(see_other(&format!("/sessions/{id}#share")))
}
