//! Queries on proposals, all behind the one visibility rule (`push_visible`): a user sees
//! the proposals they are a member of, a scientist also those on their beamlines, an admin
//! all. Other domains find an experiment through it (`visible_experiment`,
//! `visible_experiment_by_code`) rather than writing the rule again.

use serde::Serialize;
use sqlx::{PgExecutor, Postgres, QueryBuilder};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::identity::{CurrentUser, Role};

/// Pushes the visibility rule as a condition on the proposal `p`: `user` sees the proposals
/// they are a member of; a scientist also those of the beamlines they are staff of (the
/// proposal's own beamline, or one of its experiments'); an admin sees every proposal.
pub fn push_visible(query: &mut QueryBuilder<'_, Postgres>, user: &CurrentUser) {
    let member = "exists (select 1 from proposal_members m where m.proposal_id = p.id and m.user_id = ";
    match user.role {
        Role::Admin => {
            query.push("true");
        }
        Role::User => {
            query.push(member).push_bind(user.id).push(")");
        }
        Role::Scientist => {
            query
                .push("(")
                .push(member)
                .push_bind(user.id)
                .push(") or exists (select 1 from beamline_staff b where b.user_id = ")
                .push_bind(user.id)
                .push(
                    " and (b.beamline = p.beamline
                       or exists (select 1 from experiments e where e.proposal_id = p.id and e.beamline = b.beamline))))",
                );
        }
    }
}

/// `push_visible` for queries over many proposals (lists, counts): the same rule, written
/// as the set of the proposals the caller sees, which Postgres builds once from the
/// indexes (memberships, the proposals and experiments on the caller's beamlines) rather
/// than testing the rule on every proposal (at 100,000 proposals, a scientist's list took
/// a second). A lookup of one proposal keeps `push_visible`, whose tests stop at that row.
fn push_visible_set(query: &mut QueryBuilder<'_, Postgres>, user: &CurrentUser) {
    match user.role {
        Role::Admin | Role::User => push_visible(query, user),
        Role::Scientist => {
            query
                .push("p.id in (select m.proposal_id from proposal_members m where m.user_id = ")
                .push_bind(user.id)
                .push(
                    " union all select bp.id from proposals bp join beamline_staff b on b.beamline = bp.beamline
                       where b.user_id = ",
                )
                .push_bind(user.id)
                .push(
                    " union all select e.proposal_id from experiments e join beamline_staff b on b.beamline = e.beamline
                       where b.user_id = ",
                )
                .push_bind(user.id)
                .push(")");
        }
    }
}

/// Pushes the columns that depend on the caller, for a proposal `p`: `role` (theirs in the
/// proposal, if any) and `favourite` (starred by them).
fn push_caller_columns(query: &mut QueryBuilder<'_, Postgres>, user: &CurrentUser) {
    query
        .push("(select m.role from proposal_members m where m.proposal_id = p.id and m.user_id = ")
        .push_bind(user.id)
        .push(") as role, exists (select 1 from favourites f where f.proposal_id = p.id and f.user_id = ")
        .push_bind(user.id)
        .push(") as favourite");
}

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

/// The proposals the caller may see, favourites first, then newest identifier first; and
/// how many match in all.
pub async fn list(
    db: impl PgExecutor<'_> + Copy,
    user: &CurrentUser,
    filter: &ListFilter<'_>,
) -> sqlx::Result<(Vec<ProposalSummary>, i64)> {
    let mut items = QueryBuilder::new("select p.identifier, p.title, p.beamline, ");
    push_caller_columns(&mut items, user);
    items.push(
        ", (select count(*) from experiments e where e.proposal_id = p.id) as experiment_count
         from proposals p where ",
    );
    push_filter(&mut items, user, filter);
    items.push(" order by favourite desc, p.identifier desc limit ").push_bind(filter.limit);
    items.push(" offset ").push_bind(filter.offset);
    let items = items.build_query_as().fetch_all(db).await?;

    let mut total = QueryBuilder::new("select count(*) from proposals p where ");
    push_filter(&mut total, user, filter);
    let total = total.build_query_scalar().fetch_one(db).await?;
    Ok((items, total))
}

/// Pushes what `list` matches: visible to `user`, and the filter's search and beamline.
fn push_filter<'a>(query: &mut QueryBuilder<'a, Postgres>, user: &CurrentUser, filter: &ListFilter<'a>) {
    push_visible_set(query, user);
    if let Some(search) = filter.search {
        let pattern = format!("%{}%", escape_like(search));
        query.push(" and (p.identifier ilike ").push_bind(pattern.clone());
        query.push(" or p.title ilike ").push_bind(pattern.clone());
        query.push(" or p.beamline ilike ").push_bind(pattern).push(")");
    }
    if let Some(beamline) = filter.beamline {
        query.push(" and p.beamline = ").push_bind(beamline);
    }
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
    let mut query = QueryBuilder::new("select p.id, p.identifier, p.title, p.abstract as abstract_, p.beamline, ");
    push_caller_columns(&mut query, user);
    query.push(" from proposals p where p.identifier = ").push_bind(identifier).push(" and ");
    push_visible(&mut query, user);
    query.build_query_as().fetch_optional(db).await
}

/// An experiment and its proposal, as `visible_experiment` finds them.
#[derive(Debug, sqlx::FromRow)]
pub struct VisibleExperiment {
    pub id: Uuid,
    /// e.g. `S0011`.
    pub code: String,
    /// Where the beamtime ran (may differ from the proposal's beamline).
    pub beamline: String,
    pub proposal_id: Uuid,
    /// The proposal's user office identifier.
    pub proposal: String,
}

fn select_experiment<'a>() -> QueryBuilder<'a, Postgres> {
    QueryBuilder::new(
        "select e.id, e.code, e.beamline, p.id as proposal_id, p.identifier as proposal
         from experiments e join proposals p on p.id = e.proposal_id where ",
    )
}

/// The experiment `id`, if `user` may see its proposal (`push_visible`).
pub async fn visible_experiment(
    db: impl PgExecutor<'_>,
    user: &CurrentUser,
    id: Uuid,
) -> sqlx::Result<Option<VisibleExperiment>> {
    let mut query = select_experiment();
    query.push("e.id = ").push_bind(id).push(" and ");
    push_visible(&mut query, user);
    query.build_query_as().fetch_optional(db).await
}

/// The experiment `code` of the proposal `identifier`, if `user` may see the proposal
/// (`push_visible`).
pub async fn visible_experiment_by_code(
    db: impl PgExecutor<'_>,
    user: &CurrentUser,
    identifier: &str,
    code: &str,
) -> sqlx::Result<Option<VisibleExperiment>> {
    let mut query = select_experiment();
    query.push("p.identifier = ").push_bind(identifier);
    query.push(" and e.code = ").push_bind(code).push(" and ");
    push_visible(&mut query, user);
    query.build_query_as().fetch_optional(db).await
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

/// The experiments of a proposal, each with its datasets. No access check: the caller found
/// the proposal through `find_visible`.
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

/// The members of a proposal, PIs first. No access check: the caller found the proposal
/// through `find_visible`.
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
    if user.role == Role::Admin {
        // Every beamline: from one to the next along the index, a dozen reads rather than
        // a pass over every proposal.
        return sqlx::query_scalar(
            "with recursive b as (
                 select min(beamline) as beamline from proposals
                 union all
                 select (select min(p.beamline) from proposals p where p.beamline > b.beamline) from b
                 where b.beamline is not null)
             select beamline from b where beamline is not null order by 1",
        )
        .fetch_all(db)
        .await;
    }
    let mut query = QueryBuilder::new("select distinct p.beamline from proposals p where ");
    push_visible_set(&mut query, user);
    query.push(" order by 1");
    query.build_query_scalar().fetch_all(db).await
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
