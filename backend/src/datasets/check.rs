//! `daas check`: the stored dataset links measured against today's rule (in the
//! experiment's storage folder, there, and no symbolic link leading out), for links made
//! before the rule or before the template or the files changed.

use std::path::Path;

use anyhow::Context;
use sqlx::PgPool;

use super::path::{self, LocationError};
use super::storage::StorageTemplate;

/// One dataset link that breaks the rule, and why.
#[derive(Debug, PartialEq, Eq)]
pub struct Fault {
    pub proposal: String,
    pub experiment: String,
    pub dataset: String,
    pub location: String,
    pub why: String,
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "proposal {} experiment {} dataset {:?} location {:?}: {}",
            self.proposal, self.experiment, self.dataset, self.location, self.why
        )
    }
}

/// Every stored link that breaks the rule, by proposal, experiment and dataset name.
/// Fails only when the data root itself cannot be read.
pub async fn run(db: &PgPool, root: &Path, template: &StorageTemplate) -> anyhow::Result<Vec<Fault>> {
    let rows: Vec<(String, String, String, String, String)> = sqlx::query_as(
        "select p.identifier, e.code, e.beamline, d.name, d.location
         from datasets d join experiments e on e.id = d.experiment_id join proposals p on p.id = e.proposal_id
         order by p.identifier, e.code, d.name",
    )
    .fetch_all(db)
    .await?;
    let mut faults = Vec::new();
    for (proposal, experiment, beamline, dataset, location) in rows {
        let why = if location.contains("://") {
            Some("a URI, not a path below the data root: it cannot be confined to the experiment's folder".to_owned())
        } else {
            match template.folder(&beamline, &proposal, &experiment) {
                Err(why) => Some(why),
                Ok(folder) => {
                    let (root, given) = (root.to_owned(), location.clone());
                    match tokio::task::spawn_blocking(move || path::resolve(&root, &folder, &given)).await? {
                        Ok(_) => None,
                        Err(LocationError::Invalid(why)) => Some(why),
                        Err(LocationError::Root(why)) => {
                            return Err(anyhow::anyhow!(why)).context("the data root cannot be read")
                        }
                    }
                }
            }
        };
        if let Some(why) = why {
            faults.push(Fault { proposal, experiment, dataset, location, why });
        }
    }
    Ok(faults)
}
