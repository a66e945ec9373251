//! Proposals from the user office: JSON or CSV exports, upserted in one transaction.
//! Every entry is validated before anything is written; the first fault is reported with
//! its line and field, and nothing is written.
//!
//! JSON: `{"proposals": [{"identifier", "title", "abstract", "beamline",
//!   "members": [{"username", "role": "pi"|"member", "name", "email", "affiliation"}],
//!   "experiments": [{"code", "beamline", "start", "end"}]}]}` (or just the array).
//! CSV: a header and one row per member or experiment, with the columns `proposal, title,
//! abstract, beamline, member, member_role, member_name, member_email, member_affiliation,
//! experiment, experiment_beamline, start, end`; proposal columns repeat on every row.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::{Deserialize, Serialize};
use sqlx::PgConnection;
use time::format_description::well_known::Rfc3339;
use time::{Date, OffsetDateTime};
use utoipa::ToSchema;

use crate::auth::users::check_username;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
}

/// What is wrong with a file, and where.
#[derive(Debug, thiserror::Error)]
#[error("line {line}: {field}: {message}")]
pub struct ImportError {
    pub line: usize,
    pub field: String,
    pub message: String,
}

fn fault(line: usize, field: &str, message: impl fmt::Display) -> ImportError {
    ImportError { line, field: field.to_string(), message: message.to_string() }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Proposal {
    pub line: usize,
    pub identifier: String,
    pub title: String,
    pub abstract_: String,
    pub beamline: String,
    pub members: Vec<Member>,
    pub experiments: Vec<Experiment>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub line: usize,
    pub username: String,
    pub role: String,
    pub name: Option<String>,
    pub email: Option<String>,
    pub affiliation: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Experiment {
    pub line: usize,
    pub code: String,
    pub beamline: String,
    pub start: OffsetDateTime,
    pub end: OffsetDateTime,
}

/// Parses and validates a whole export.
pub fn parse(text: &str, format: Format) -> Result<Vec<Proposal>, ImportError> {
    let proposals = match format {
        Format::Json => parse_json(text)?,
        Format::Csv => parse_csv(text)?,
    };
    let mut seen = HashMap::new();
    for p in &proposals {
        if let Some(first) = seen.insert(p.identifier.clone(), p.line) {
            return Err(fault(
                p.line,
                "identifier",
                format!("proposal {} already appears on line {first}", p.identifier),
            ));
        }
        let mut codes = HashMap::new();
        for e in &p.experiments {
            if let Some(first) = codes.insert(e.code.clone(), e.line) {
                return Err(fault(e.line, "code", format!("experiment {} already appears on line {first}", e.code)));
            }
        }
        let mut users = HashMap::new();
        for m in &p.members {
            if let Some(first) = users.insert(m.username.clone(), m.line) {
                return Err(fault(
                    m.line,
                    "username",
                    format!("member {} already appears on line {first}", m.username),
                ));
            }
        }
    }
    Ok(proposals)
}

// ---- JSON --------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonFile {
    proposals: Vec<JsonProposal>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonProposal {
    identifier: String,
    title: String,
    #[serde(default, rename = "abstract")]
    abstract_: String,
    beamline: String,
    #[serde(default)]
    members: Vec<JsonMember>,
    #[serde(default)]
    experiments: Vec<JsonExperiment>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonMember {
    username: String,
    role: String,
    name: Option<String>,
    email: Option<String>,
    affiliation: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonExperiment {
    code: String,
    beamline: Option<String>,
    start: String,
    end: String,
}

/// The line on which each object of a JSON text starts, by its path (`/proposals/1/members/0`).
/// serde reports syntax and type errors at their line; this gives the line of an entry
/// whose values are well-formed but wrong.
fn json_object_lines(text: &str) -> HashMap<String, usize> {
    enum Frame {
        Object { path: String, key: String },
        Array { path: String, index: usize },
    }
    let mut lines = HashMap::new();
    let mut stack: Vec<Frame> = Vec::new();
    let (mut line, mut in_string, mut escaped, mut expect_key) = (1, false, false, false);
    let mut string = String::new();
    for c in text.chars() {
        if c == '\n' {
            line += 1;
        }
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => {
                    in_string = false;
                    if expect_key {
                        if let Some(Frame::Object { key, .. }) = stack.last_mut() {
                            *key = std::mem::take(&mut string);
                        }
                        expect_key = false;
                    }
                }
                (false, c) if expect_key => string.push(c),
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                string.clear();
            }
            '{' | '[' => {
                let path = match stack.last() {
                    Some(Frame::Object { path, key }) => format!("{path}/{key}"),
                    Some(Frame::Array { path, index }) => format!("{path}/{index}"),
                    None => String::new(),
                };
                if c == '{' {
                    lines.insert(path.clone(), line);
                    stack.push(Frame::Object { path, key: String::new() });
                    expect_key = true;
                } else {
                    stack.push(Frame::Array { path, index: 0 });
                }
            }
            ',' => match stack.last_mut() {
                Some(Frame::Array { index, .. }) => *index += 1,
                Some(Frame::Object { .. }) => expect_key = true,
                None => {}
            },
            '}' | ']' => {
                stack.pop();
                expect_key = false;
            }
            _ => {}
        }
    }
    lines
}

fn parse_json(text: &str) -> Result<Vec<Proposal>, ImportError> {
    // Not an untagged enum: serde would then hide the line and the reason of a fault.
    let parsed = if text.trim_start().starts_with('[') {
        serde_json::from_str::<Vec<JsonProposal>>(text)
    } else {
        serde_json::from_str::<JsonFile>(text).map(|f| f.proposals)
    };
    let raw = parsed.map_err(|e| {
        let message = e.to_string();
        // serde_json appends " at line L column C"; keep the message, report the line.
        fault(e.line().max(1), "json", message.split(" at line ").next().unwrap_or(&message))
    })?;
    let lines = json_object_lines(text);
    let root = if text.trim_start().starts_with('[') { "" } else { "/proposals" };
    let line_of = |path: String| lines.get(&path).copied().unwrap_or(1);
    raw.into_iter()
        .enumerate()
        .map(|(i, p)| {
            let at = format!("{root}/{i}");
            let mut proposal =
                proposal(line_of(at.clone()), p.identifier, p.title, p.abstract_, p.beamline, vec![], vec![])?;
            proposal.members = p
                .members
                .into_iter()
                .enumerate()
                .map(|(j, m)| {
                    member(line_of(format!("{at}/members/{j}")), m.username, m.role, m.name, m.email, m.affiliation)
                })
                .collect::<Result<_, _>>()?;
            proposal.experiments = p
                .experiments
                .into_iter()
                .enumerate()
                .map(|(j, e)| {
                    let beamline = e.beamline.unwrap_or_else(|| proposal.beamline.clone());
                    experiment(line_of(format!("{at}/experiments/{j}")), e.code, beamline, &e.start, &e.end)
                })
                .collect::<Result<_, _>>()?;
            Ok(proposal)
        })
        .collect()
}

// ---- CSV ---------------------------------------------------------------------------

#[derive(Deserialize)]
struct CsvRow {
    proposal: String,
    title: String,
    #[serde(default, rename = "abstract")]
    abstract_: String,
    beamline: String,
    #[serde(default)]
    member: String,
    #[serde(default)]
    member_role: String,
    #[serde(default)]
    member_name: String,
    #[serde(default)]
    member_email: String,
    #[serde(default)]
    member_affiliation: String,
    #[serde(default)]
    experiment: String,
    #[serde(default)]
    experiment_beamline: String,
    #[serde(default)]
    start: String,
    #[serde(default)]
    end: String,
}

fn parse_csv(text: &str) -> Result<Vec<Proposal>, ImportError> {
    let mut reader = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(text.as_bytes());
    let headers = reader.headers().map_err(|e| fault(1, "header", e))?.clone();
    let mut order: Vec<String> = Vec::new();
    let mut by_id: BTreeMap<String, Proposal> = BTreeMap::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line() as usize);
            fault(line, "row", e)
        })?;
        let line = record.position().map_or(0, |p| p.line() as usize);
        let row: CsvRow = record.deserialize(Some(&headers)).map_err(|e| match e.kind() {
            csv::ErrorKind::Deserialize { err, .. } => {
                let field = err.field().and_then(|i| headers.get(i as usize)).unwrap_or("row");
                fault(line, field, err.kind())
            }
            _ => fault(line, "row", &e),
        })?;
        let fresh = proposal(line, row.proposal.clone(), row.title, row.abstract_, row.beamline, vec![], vec![])?;
        let entry = match by_id.get_mut(&fresh.identifier) {
            Some(existing) => {
                for (field, a, b) in [
                    ("title", &existing.title, &fresh.title),
                    ("abstract", &existing.abstract_, &fresh.abstract_),
                    ("beamline", &existing.beamline, &fresh.beamline),
                ] {
                    if a != b {
                        return Err(fault(
                            line,
                            field,
                            format!("differs from line {} for proposal {}", existing.line, fresh.identifier),
                        ));
                    }
                }
                existing
            }
            None => {
                order.push(fresh.identifier.clone());
                by_id.entry(fresh.identifier.clone()).or_insert(fresh)
            }
        };
        let some = |s: String| (!s.is_empty()).then_some(s);
        if !row.member.is_empty() {
            entry.members.push(member(
                line,
                row.member,
                row.member_role,
                some(row.member_name),
                some(row.member_email),
                some(row.member_affiliation),
            )?);
        } else if !row.member_role.is_empty() {
            return Err(fault(line, "member", "is empty but member_role is set"));
        }
        if !row.experiment.is_empty() {
            let beamline = some(row.experiment_beamline).unwrap_or_else(|| entry.beamline.clone());
            entry.experiments.push(experiment(line, row.experiment, beamline, &row.start, &row.end)?);
        } else if !row.start.is_empty() || !row.end.is_empty() {
            return Err(fault(line, "experiment", "is empty but start or end is set"));
        }
    }
    Ok(order.into_iter().filter_map(|id| by_id.remove(&id)).collect())
}

// ---- validation shared by both formats ----------------------------------------------

fn check_code(line: usize, field: &str, value: &str, max: usize, extra: &str) -> Result<(), ImportError> {
    let ok = !value.is_empty()
        && value.len() <= max
        && value.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && value.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c) || extra.contains(c));
    if ok {
        Ok(())
    } else {
        Err(fault(
            line,
            field,
            format!(
                "{value:?} is not valid: use up to {max} letters, digits, '.', '_' or '-'{}",
                if extra.is_empty() { "" } else { " or '/'" }
            ),
        ))
    }
}

fn proposal(
    line: usize,
    identifier: String,
    title: String,
    abstract_: String,
    beamline: String,
    members: Vec<Member>,
    experiments: Vec<Experiment>,
) -> Result<Proposal, ImportError> {
    let identifier = identifier.trim().to_string();
    check_code(line, "identifier", &identifier, 64, "/")?;
    let title = title.trim().to_string();
    if title.is_empty() || title.chars().count() > 1000 {
        return Err(fault(line, "title", "must be 1 to 1000 characters"));
    }
    check_code(line, "beamline", beamline.trim(), 32, "")?;
    Ok(Proposal {
        line,
        identifier,
        title,
        abstract_: abstract_.trim().to_string(),
        beamline: beamline.trim().to_string(),
        members,
        experiments,
    })
}

fn member(
    line: usize,
    username: String,
    role: String,
    name: Option<String>,
    email: Option<String>,
    affiliation: Option<String>,
) -> Result<Member, ImportError> {
    let username = username.trim().to_string();
    check_username(&username).map_err(|e| fault(line, "username", e))?;
    let role = role.trim().to_lowercase();
    if role != "pi" && role != "member" {
        return Err(fault(line, "role", format!("{role:?} is not `pi` or `member`")));
    }
    if let Some(email) = &email {
        let ok = email
            .split_once('@')
            .is_some_and(|(a, b)| !a.is_empty() && !b.is_empty() && !email.contains(char::is_whitespace));
        if !ok {
            return Err(fault(line, "email", format!("{email:?} is not an email address")));
        }
    }
    Ok(Member { line, username, role, name, email, affiliation })
}

fn experiment(line: usize, code: String, beamline: String, start: &str, end: &str) -> Result<Experiment, ImportError> {
    let code = code.trim().to_string();
    check_code(line, "code", &code, 64, "")?;
    check_code(line, "beamline", beamline.trim(), 32, "")?;
    let start = parse_time(start).map_err(|m| fault(line, "start", m))?;
    let end = parse_time(end).map_err(|m| fault(line, "end", m))?;
    if end < start {
        return Err(fault(line, "end", format!("experiment {code} ends before it starts")));
    }
    Ok(Experiment { line, code, beamline: beamline.trim().to_string(), start, end })
}

/// RFC 3339 (`2018-01-15T08:00:00Z`) or a plain date (`2018-01-15`, midnight UTC).
fn parse_time(s: &str) -> Result<OffsetDateTime, String> {
    let s = s.trim();
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(t);
    }
    Date::parse(s, time::macros::format_description!("[year]-[month]-[day]"))
        .map(|d| d.midnight().assume_utc())
        .map_err(|_| format!("{s:?} is not a date (YYYY-MM-DD) or an RFC 3339 time"))
}

// ---- writing -----------------------------------------------------------------------

/// What an import did (or, in a dry run, would do).
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Summary {
    pub proposals_created: u64,
    pub proposals_updated: u64,
    pub proposals_unchanged: u64,
    pub users_created: u64,
    pub members_added: u64,
    pub members_changed: u64,
    pub experiments_created: u64,
    pub experiments_updated: u64,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "proposals: {} created, {} updated, {} unchanged; users: {} created; members: {} added, {} changed; experiments: {} created, {} updated",
            self.proposals_created, self.proposals_updated, self.proposals_unchanged, self.users_created,
            self.members_added, self.members_changed, self.experiments_created, self.experiments_updated
        )
    }
}

/// Upserts the proposals inside the caller's transaction. Rows that already say the same
/// are not touched, so a second import of one file changes nothing (not even timestamps).
pub async fn apply(tx: &mut PgConnection, proposals: &[Proposal]) -> sqlx::Result<Summary> {
    let mut summary = Summary::default();
    for p in proposals {
        // xmax = 0 tells an insert from an update in `on conflict ... do update`.
        let row: Option<(uuid::Uuid, bool)> = sqlx::query_as(
            "insert into proposals (identifier, title, abstract, beamline) values ($1, $2, $3, $4)
             on conflict (identifier) do update set title = excluded.title, abstract = excluded.abstract,
                 beamline = excluded.beamline, updated_at = now()
             where (proposals.title, proposals.abstract, proposals.beamline)
                   is distinct from (excluded.title, excluded.abstract, excluded.beamline)
             returning id, (xmax = 0) as inserted",
        )
        .bind(&p.identifier)
        .bind(&p.title)
        .bind(&p.abstract_)
        .bind(&p.beamline)
        .fetch_optional(&mut *tx)
        .await?;
        let proposal_id = match row {
            Some((id, true)) => {
                summary.proposals_created += 1;
                id
            }
            Some((id, false)) => {
                summary.proposals_updated += 1;
                id
            }
            None => {
                summary.proposals_unchanged += 1;
                sqlx::query_scalar("select id from proposals where identifier = $1")
                    .bind(&p.identifier)
                    .fetch_one(&mut *tx)
                    .await?
            }
        };
        for m in &p.members {
            let created: Option<uuid::Uuid> = sqlx::query_scalar(
                "insert into users (username, display_name, email, affiliation) values ($1, $2, $3, $4)
                 on conflict (username) do nothing returning id",
            )
            .bind(&m.username)
            .bind(m.name.as_deref().unwrap_or(&m.username))
            .bind(&m.email)
            .bind(&m.affiliation)
            .fetch_optional(&mut *tx)
            .await?;
            summary.users_created += u64::from(created.is_some());
            let change: Option<bool> = sqlx::query_scalar(
                "insert into proposal_members (proposal_id, user_id, role)
                 select $1, id, $3 from users where username = $2
                 on conflict (proposal_id, user_id) do update set role = excluded.role
                 where proposal_members.role <> excluded.role
                 returning (xmax = 0)",
            )
            .bind(proposal_id)
            .bind(&m.username)
            .bind(&m.role)
            .fetch_optional(&mut *tx)
            .await?;
            match change {
                Some(true) => summary.members_added += 1,
                Some(false) => summary.members_changed += 1,
                None => {}
            }
        }
        for e in &p.experiments {
            let change: Option<bool> = sqlx::query_scalar(
                "insert into experiments (proposal_id, code, beamline, starts_at, ends_at) values ($1, $2, $3, $4, $5)
                 on conflict (proposal_id, code) do update set beamline = excluded.beamline,
                     starts_at = excluded.starts_at, ends_at = excluded.ends_at
                 where (experiments.beamline, experiments.starts_at, experiments.ends_at)
                       is distinct from (excluded.beamline, excluded.starts_at, excluded.ends_at)
                 returning (xmax = 0)",
            )
            .bind(proposal_id)
            .bind(&e.code)
            .bind(&e.beamline)
            .bind(e.start)
            .bind(e.end)
            .fetch_optional(&mut *tx)
            .await?;
            match change {
                Some(true) => summary.experiments_created += 1,
                Some(false) => summary.experiments_updated += 1,
                None => {}
            }
        }
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_field_errors_name_the_line() {
        let text = r#"{"proposals": [
  {"identifier": "1", "title": "a", "beamline": "BL1"},
  {"identifier": "2", "title": "b", "beamline": "BL1",
   "members": [{"username": "x", "role": "boss"}]}
]}"#;
        let err = parse(text, Format::Json).unwrap_err();
        assert_eq!((err.line, err.field.as_str()), (4, "role"), "{err}");
    }

    #[test]
    fn json_syntax_errors_name_the_line() {
        let err = parse("{\"proposals\": [\n{\"identifier\": 1}]}", Format::Json).unwrap_err();
        assert_eq!(err.line, 2, "{err}");
    }

    #[test]
    fn csv_rows_group_by_proposal() {
        let text = "proposal,title,beamline,member,member_role,experiment,start,end\n\
                    20180101,test,BL11,alice,pi,S0011,2018-01-01,2018-01-03\n\
                    20180101,test,BL11,bob,member,,,\n";
        let proposals = parse(text, Format::Csv).unwrap();
        assert_eq!(proposals.len(), 1);
        assert_eq!(proposals[0].members.len(), 2);
        assert_eq!(proposals[0].experiments[0].beamline, "BL11");
    }

    #[test]
    fn csv_errors_name_line_and_column() {
        let text = "proposal,title,beamline,experiment,start,end\n20180101,test,BL11,S1,2018-01-05,2018-01-01\n";
        let err = parse(text, Format::Csv).unwrap_err();
        assert_eq!((err.line, err.field.as_str()), (2, "end"), "{err}");
        let text = "proposal,title,beamline\n20180101,test,BL11\n20180101,other,BL11\n";
        let err = parse(text, Format::Csv).unwrap_err();
        assert_eq!((err.line, err.field.as_str()), (3, "title"), "{err}");
    }
}
