//! Queries on proposals, all behind the one visibility rule: a user sees the proposals
//! they are a member of, a scientist also those on their beamlines, an admin all.

use serde::Serialize;
use sqlx::PgExecutor;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::identity::CurrentUser;

/// SQL condition on a proposal `p` for the caller `$1` (user id) with role `$2`.
pub const VISIBLE: &str = "(
    $2 = 'admin'
    or exists (select 1 from proposal_members m where m.proposal_id = p.id and m.user_id = $1)
    or ($2 = 'scientist' and exists (
        select 1 from beamline_staff b where b.user_id = $1
        and (b.beamline = p.beamline
             or exists (select 1 from experiments e where e.proposal_id = p.id and e.beamline = b.beamline)))))";

#[derive(Serialize, ToSchema, sqlx::FromRow)]
pub struct ProposalSummary {
    /// The user office's identifier, e.g. `20180101`.
    pub identifier: String,
    pub title: String,
    pub beamline: String,
    /// The caller's role in the proposal (`pi`, `member`), if they are in it.
    pub role: Option<String>,
    /// Starred by the caller.
    pub favourite: bool,
    pub experiment_count: i64,
}

pub struct ListFilter<'a> {
    pub search: Option<&'a str>,
    pub beamline: Option<&'a str>,
    pub limit: i64,
    pub offset: i64,
}

/// The proposals the caller may see, favourites first, then newest identifier first.
pub async fn list(
    db: impl PgExecutor<'_> + Copy,
    user: &CurrentUser,
    filter: &ListFilter<'_>,
) -> sqlx::Result<(Vec<ProposalSummary>, i64)> {
    let condition = format!(
        "{VISIBLE}
         and ($3::text is null or p.identifier ilike '%' || $3 || '%' or p.title ilike '%' || $3 || '%'
              or p.beamline ilike '%' || $3 || '%')
         and ($4::text is null or p.beamline = $4)"
    );
    let search = filter.search.map(escape_like);
    let items = sqlx::query_as(&format!(
        "select p.identifier, p.title, p.beamline,
                (select m.role from proposal_members m where m.proposal_id = p.id and m.user_id = $1) as role,
                exists (select 1 from favourites f where f.proposal_id = p.id and f.user_id = $1) as favourite,
                (select count(*) from experiments e where e.proposal_id = p.id) as experiment_count
         from proposals p where {condition}
         order by favourite desc, p.identifier desc
         limit $5 offset $6"
    ))
    .bind(user.id)
    .bind(user.role.as_str())
    .bind(&search)
    .bind(filter.beamline)
    .bind(filter.limit)
    .bind(filter.offset)
    .fetch_all(db)
    .await?;
    let total = sqlx::query_scalar(&format!("select count(*) from proposals p where {condition}"))
        .bind(user.id)
        .bind(user.role.as_str())
        .bind(&search)
        .bind(filter.beamline)
        .fetch_one(db)
        .await?;
    Ok((items, total))
}

/// `%` and `_` in a search are literal characters, not wildcards.
fn escape_like(s: &str) -> String {
    s.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

#[derive(sqlx::FromRow)]
pub struct ProposalRow {
    pub id: Uuid,
    pub identifier: String,
    pub title: String,
    pub abstract_: String,
    pub beamline: String,
    pub role: Option<String>,
    pub favourite: bool,
}

/// One proposal by identifier, if the caller may see it.
pub async fn find_visible(
    db: impl PgExecutor<'_>,
    user: &CurrentUser,
    identifier: &str,
) -> sqlx::Result<Option<ProposalRow>> {
    sqlx::query_as(&format!(
        "select p.id, p.identifier, p.title, p.abstract as abstract_, p.beamline,
                (select m.role from proposal_members m where m.proposal_id = p.id and m.user_id = $1) as role,
                exists (select 1 from favourites f where f.proposal_id = p.id and f.user_id = $1) as favourite
         from proposals p where p.identifier = $3 and {VISIBLE}"
    ))
    .bind(user.id)
    .bind(user.role.as_str())
    .bind(identifier)
    .fetch_optional(db)
    .await
}

#[derive(Serialize, ToSchema, sqlx::FromRow)]
pub struct Experiment {
    pub id: Uuid,
    /// e.g. `S0011`.
    pub code: String,
    pub beamline: String,
    #[serde(with = "time::serde::rfc3339")]
    pub starts_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub ends_at: OffsetDateTime,
    #[sqlx(skip)]
    pub datasets: Vec<Dataset>,
}

#[derive(Serialize, ToSchema, sqlx::FromRow)]
pub struct Dataset {
    pub id: Uuid,
    #[serde(skip)]
    pub experiment_id: Uuid,
    pub name: String,
    /// Path below the data root, or a URI.
    pub location: String,
    pub size_bytes: i64,
    /// Free metadata (sample, energy, detector, ...).
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
}

/// The experiments of a proposal, each with its datasets.
pub async fn experiments(db: impl PgExecutor<'_> + Copy, proposal_id: Uuid) -> sqlx::Result<Vec<Experiment>> {
    let mut experiments: Vec<Experiment> = sqlx::query_as(
        "select id, code, beamline, starts_at, ends_at from experiments where proposal_id = $1 order by starts_at, code",
    )
    .bind(proposal_id)
    .fetch_all(db)
    .await?;
    let datasets: Vec<Dataset> = sqlx::query_as(
        "select d.id, d.experiment_id, d.name, d.location, d.size_bytes, d.metadata
         from datasets d join experiments e on e.id = d.experiment_id
         where e.proposal_id = $1 order by d.name",
    )
    .bind(proposal_id)
    .fetch_all(db)
    .await?;
    for dataset in datasets {
        if let Some(e) = experiments.iter_mut().find(|e| e.id == dataset.experiment_id) {
            e.datasets.push(dataset);
        }
    }
    Ok(experiments)
}

#[derive(Serialize, ToSchema, sqlx::FromRow)]
pub struct Member {
    pub username: String,
    pub display_name: String,
    /// `pi` or `member`.
    pub role: String,
}

pub async fn members(db: impl PgExecutor<'_>, proposal_id: Uuid) -> sqlx::Result<Vec<Member>> {
    sqlx::query_as(
        "select u.username, u.display_name, m.role from proposal_members m join users u on u.id = m.user_id
         where m.proposal_id = $1 order by m.role desc, u.username",
    )
    .bind(proposal_id)
    .fetch_all(db)
    .await
}

/// The beamlines of the proposals the caller may see (for the search filter).
pub async fn visible_beamlines(db: impl PgExecutor<'_>, user: &CurrentUser) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(&format!("select distinct p.beamline from proposals p where {VISIBLE} order by 1"))
        .bind(user.id)
        .bind(user.role.as_str())
        .fetch_all(db)
        .await
}

/// Stars (or unstars) a proposal the caller may see; 404 otherwise.
pub async fn set_favourite(
    db: &sqlx::PgPool,
    user: &CurrentUser,
    identifier: &str,
    favourite: bool,
) -> crate::error::Result<ProposalRow> {
    let proposal = find_visible(db, user, identifier).await?.ok_or(crate::error::AppError::NotFound)?;
    let sql = if favourite {
        "insert into favourites (user_id, proposal_id) values ($1, $2) on conflict do nothing"
    } else {
        "delete from favourites where user_id = $1 and proposal_id = $2"
    };
    sqlx::query(sql).bind(user.id).bind(proposal.id).execute(db).await?;
    Ok(proposal)
}
