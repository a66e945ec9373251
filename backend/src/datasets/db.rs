//! Queries on datasets. Reading goes through the proposals' visibility rule
//! (`proposals::db::push_visible`): a dataset is seen by whoever sees its proposal. Whether
//! the caller may link or unlink is the handlers' check (`beamlines::db::is_staff`).

use serde::Serialize;
use serde_json::Value;
use sqlx::{PgConnection, PgExecutor, Postgres, QueryBuilder};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::auth::identity::CurrentUser;
use crate::proposals::db::push_visible;

/// The unique constraint on `(experiment_id, location)`: one link per folder and experiment.
pub const LINKED_ONCE: &str = "datasets_experiment_id_location_key";

/// A linked dataset as the API shows it, with its proposal and experiment.
#[derive(Serialize, ToSchema, sqlx::FromRow)]
pub struct DatasetRow {
    pub id: Uuid,
    pub name: String,
    /// Path below the data root.
    pub location: String,
    pub size_bytes: i64,
    #[schema(value_type = Object)]
    pub metadata: Value,
    pub proposal: String,
    pub experiment: String,
    pub beamline: String,
    /// Who linked it.
    pub created_by: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

const SELECT: &str = "select d.id, d.name, d.location, d.size_bytes, d.metadata, p.identifier as proposal,
        e.code as experiment, e.beamline, u.username as created_by, d.created_at
    from datasets d join experiments e on e.id = d.experiment_id join proposals p on p.id = e.proposal_id
         left join users u on u.id = d.created_by";

/// One dataset by id, whoever may see it: for the caller who just linked it.
pub async fn find(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<DatasetRow> {
    let mut query = QueryBuilder::new(SELECT);
    query.push(" where d.id = ").push_bind(id);
    query.build_query_as().fetch_one(db).await
}

/// A link to store: what `insert` writes.
pub struct NewDataset<'a> {
    pub experiment_id: Uuid,
    pub name: &'a str,
    /// Path below the data root.
    pub location: &'a str,
    pub size_bytes: i64,
    pub metadata: &'a Value,
    pub created_by: Uuid,
}

/// Stores a link and returns its id; a second link of the same location to the same
/// experiment violates `LINKED_ONCE`.
pub async fn insert(db: impl PgExecutor<'_>, new: &NewDataset<'_>) -> sqlx::Result<Uuid> {
    sqlx::query_scalar(
        "insert into datasets (experiment_id, name, location, size_bytes, metadata, created_by)
         values ($1, $2, $3, $4, $5, $6) returning id",
    )
    .bind(new.experiment_id)
    .bind(new.name)
    .bind(new.location)
    .bind(new.size_bytes)
    .bind(new.metadata)
    .bind(new.created_by)
    .fetch_one(db)
    .await
}

/// The beamline and location of the dataset `id`, its row locked until the transaction
/// ends, if `user` may see its proposal.
pub async fn lock_visible(
    conn: &mut PgConnection,
    user: &CurrentUser,
    id: Uuid,
) -> sqlx::Result<Option<(String, String)>> {
    let mut query = QueryBuilder::new(
        "select e.beamline, d.location from datasets d join experiments e on e.id = d.experiment_id
         join proposals p on p.id = e.proposal_id where d.id = ",
    );
    query.push_bind(id).push(" and ");
    push_visible(&mut query, user);
    query.push(" for update of d");
    query.build_query_as().fetch_optional(conn).await
}

/// Removes a dataset's link (the files stay where they are).
pub async fn delete(db: impl PgExecutor<'_>, id: Uuid) -> sqlx::Result<()> {
    sqlx::query("delete from datasets where id = $1").bind(id).execute(db).await?;
    Ok(())
}

/// What `search` matches; `None` matches anything.
pub struct SearchFilter<'a> {
    /// Proposal identifier.
    pub proposal: Option<&'a str>,
    /// Experiment code.
    pub experiment: Option<&'a str>,
    pub beamline: Option<&'a str>,
    /// A JSON object the metadata must contain.
    pub metadata: Option<&'a Value>,
    /// An `ilike` pattern on the name or the location.
    pub name_like: Option<&'a str>,
    pub limit: i64,
    pub offset: i64,
}

/// The datasets of the proposals `user` may see that match `filter`, by proposal,
/// experiment and name; and how many match in all.
pub async fn search(
    db: impl PgExecutor<'_> + Copy,
    user: &CurrentUser,
    filter: &SearchFilter<'_>,
) -> sqlx::Result<(Vec<DatasetRow>, i64)> {
    let mut items = QueryBuilder::new(SELECT);
    items.push(" where ");
    push_search(&mut items, user, filter);
    items.push(" order by p.identifier, e.code, d.name limit ").push_bind(filter.limit);
    items.push(" offset ").push_bind(filter.offset);
    let items = items.build_query_as().fetch_all(db).await?;

    let mut total = QueryBuilder::new(
        "select count(*) from datasets d join experiments e on e.id = d.experiment_id
         join proposals p on p.id = e.proposal_id where ",
    );
    push_search(&mut total, user, filter);
    let total = total.build_query_scalar().fetch_one(db).await?;
    Ok((items, total))
}

/// Pushes what `search` matches, as a condition on `d`, `e` and `p`.
fn push_search<'a>(query: &mut QueryBuilder<'a, Postgres>, user: &CurrentUser, filter: &SearchFilter<'a>) {
    push_visible(query, user);
    if let Some(proposal) = filter.proposal {
        query.push(" and p.identifier = ").push_bind(proposal);
    }
    if let Some(experiment) = filter.experiment {
        query.push(" and e.code = ").push_bind(experiment);
    }
    if let Some(beamline) = filter.beamline {
        query.push(" and e.beamline = ").push_bind(beamline);
    }
    if let Some(metadata) = filter.metadata {
        query.push(" and d.metadata @> ").push_bind(metadata);
    }
    if let Some(pattern) = filter.name_like {
        query.push(" and (d.name ilike ").push_bind(pattern);
        query.push(" or d.location ilike ").push_bind(pattern).push(")");
    }
}
