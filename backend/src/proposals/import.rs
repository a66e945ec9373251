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
//!
//! Files come as a user office's export tools write them: UTF-8 with or without a
//! byte-order mark or UTF-16 with one (`decode`), CRLF or LF line ends, trailing
//! whitespace, and for CSV, Excel's habits: `;` or tab separators, header case, empty
//! trailing columns, blank lines.

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

/// The text of an export file: UTF-8 (a byte-order mark is dropped) or UTF-16 with a
/// byte-order mark (as Windows tools save "Unicode text"). Anything else is refused at the
/// line and column of its first byte that is not UTF-8.
pub fn decode(bytes: &[u8]) -> Result<String, ImportError> {
    let utf16 = match bytes {
        [0xFF, 0xFE, rest @ ..] => Some((rest, u16::from_le_bytes as fn([u8; 2]) -> u16)),
        [0xFE, 0xFF, rest @ ..] => Some((rest, u16::from_be_bytes as fn([u8; 2]) -> u16)),
        _ => None,
    };
    if let Some((rest, unit)) = utf16 {
        let mut text = String::with_capacity(rest.len() / 2);
        for c in char::decode_utf16(rest.chunks(2).map(|pair| unit([pair[0], *pair.get(1).unwrap_or(&0)]))) {
            let Ok(c) = c else {
                return Err(fault(line_at(&text), "encoding", "is not UTF-16: a lone surrogate"));
            };
            text.push(c);
        }
        if rest.len() % 2 == 1 {
            return Err(fault(line_at(&text), "encoding", "is not UTF-16: the file ends in half a character"));
        }
        return Ok(text);
    }
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match std::str::from_utf8(bytes) {
        Ok(text) => Ok(text.to_owned()),
        Err(e) => {
            let before = String::from_utf8_lossy(&bytes[..e.valid_up_to()]);
            let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
            Err(fault(
                line_at(&before),
                "encoding",
                format!(
                    "byte 0x{:02X} at column {column} is not UTF-8: export the file as UTF-8 (Excel: \"CSV UTF-8\") or UTF-16",
                    bytes[e.valid_up_to()]
                ),
            ))
        }
    }
}

/// The line `text` ends on (1-based).
fn line_at(text: &str) -> usize {
    text.matches('\n').count() + 1
}

/// Parses and validates a whole export (`decode`d, or pasted text).
pub fn parse(text: &str, format: Format) -> Result<Vec<Proposal>, ImportError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim().is_empty() {
        return Err(fault(1, "file", "is empty"));
    }
    if let Some(at) = text.find('\0') {
        return Err(fault(
            line_at(&text[..at]),
            "encoding",
            "holds NUL characters: UTF-16 without a byte-order mark? Export the file as UTF-8",
        ));
    }
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
        let message = message.split(" at line ").next().unwrap_or(&message);
        let first = text.trim_start().chars().next().unwrap_or(' ');
        if first != '{' && first != '[' {
            let start: String = text.trim_start().chars().take(20).collect();
            return fault(e.line().max(1), "json", format!("is not JSON: it starts with {start:?}, a JSON export starts with {{ or [ (a CSV file needs the csv format)"));
        }
        fault(e.line().max(1), "json", format!("{message} (column {})", e.column()))
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

/// The CSV columns, and those a file must have.
const CSV_COLUMNS: [&str; 13] = [
    "proposal",
    "title",
    "abstract",
    "beamline",
    "member",
    "member_role",
    "member_name",
    "member_email",
    "member_affiliation",
    "experiment",
    "experiment_beamline",
    "start",
    "end",
];
const CSV_REQUIRED: [&str; 3] = ["proposal", "title", "beamline"];

/// The separator of a CSV export: `,`, or `;` or a tab where the header has more of those
/// (Excel writes `;` where a comma is the decimal separator).
fn csv_separator(text: &str) -> u8 {
    let header = text.lines().next().unwrap_or("");
    [b',', b';', b'\t']
        .into_iter()
        .max_by_key(|&c| (header.bytes().filter(|&b| b == c).count(), c == b','))
        .unwrap_or(b',')
}

fn parse_csv(text: &str) -> Result<Vec<Proposal>, ImportError> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(csv_separator(text))
        .trim(csv::Trim::All)
        .flexible(true)
        .from_reader(text.as_bytes());
    let headers = reader.headers().map_err(|e| fault(1, "header", e))?;
    let headers: csv::StringRecord = headers.iter().map(str::to_lowercase).collect();
    for (i, name) in headers.iter().enumerate() {
        // An empty name is an empty trailing column, as spreadsheets write them.
        if !name.is_empty() && !CSV_COLUMNS.contains(&name) {
            return Err(fault(
                1,
                "header",
                format!("column {} {name:?} is not one of {}", i + 1, CSV_COLUMNS.join(", ")),
            ));
        }
        if !name.is_empty() && headers.iter().take(i).any(|h| h == name) {
            return Err(fault(1, "header", format!("column {name:?} appears twice")));
        }
    }
    if let Some(missing) = CSV_REQUIRED.iter().find(|c| !headers.iter().any(|h| h == **c)) {
        return Err(fault(
            1,
            "header",
            format!(
                "lacks the column {missing:?} (has {})",
                headers.iter().filter(|h| !h.is_empty()).collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    let mut order: Vec<String> = Vec::new();
    let mut by_id: BTreeMap<String, Proposal> = BTreeMap::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line() as usize);
            fault(line, "row", e)
        })?;
        let line = record.position().map_or(0, |p| p.line() as usize);
        if record.iter().all(str::is_empty) {
            continue;
        }
        if let Some(extra) = record.iter().skip(headers.len()).position(|f| !f.is_empty()) {
            return Err(fault(
                line,
                "row",
                format!("field {} has no column: the header names {}", headers.len() + extra + 1, headers.len()),
            ));
        }
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

    const JSON_EXPORT: &str = "{\"proposals\": [\r\n  {\"identifier\": \"20240001\", \"title\": \"Caf\u{e9} \u{2013} welds\", \"beamline\": \"BL11\",\r\n   \"members\": [{\"username\": \"erin\", \"role\": \"pi\"}]}  \r\n]}  \r\n\r\n";

    fn utf16(text: &str, bytes: fn(u16) -> [u8; 2], bom: [u8; 2]) -> Vec<u8> {
        bom.into_iter().chain(text.encode_utf16().flat_map(bytes)).collect()
    }

    #[test]
    fn json_with_a_byte_order_mark_crlf_and_trailing_whitespace_is_read() {
        let file = [b"\xEF\xBB\xBF".as_slice(), JSON_EXPORT.as_bytes()].concat();
        let proposals = parse(&decode(&file).unwrap(), Format::Json).unwrap();
        assert_eq!((proposals[0].title.as_str(), proposals[0].members[0].line), ("Caf\u{e9} \u{2013} welds", 3));
        // Pasted into the console with its mark.
        assert_eq!(parse(&format!("\u{feff}{JSON_EXPORT}"), Format::Json).unwrap(), proposals);
    }

    #[test]
    fn utf16_with_a_byte_order_mark_is_read() {
        for file in
            [utf16(JSON_EXPORT, u16::to_le_bytes, [0xFF, 0xFE]), utf16(JSON_EXPORT, u16::to_be_bytes, [0xFE, 0xFF])]
        {
            assert_eq!(decode(&file).unwrap(), JSON_EXPORT);
        }
    }

    #[test]
    fn csv_as_spreadsheets_write_it_is_read() {
        // Excel's "CSV UTF-8" in a locale with a decimal comma: a mark, `;`, CRLF, its own
        // header case, empty trailing columns, a blank last line.
        let text = "\u{feff}Proposal;Title;Beamline;Member;Member_Role;\r\n\
                    20240001;Welds, in situ ;BL11;erin;PI;\r\n\
                    20240001;Welds, in situ;BL11;frank;member;;\r\n\
                    ;;;;;\r\n  \r\n";
        let proposals = parse(text, Format::Csv).unwrap();
        assert_eq!(proposals.len(), 1, "{proposals:?}");
        assert_eq!((proposals[0].title.as_str(), proposals[0].members.len()), ("Welds, in situ", 2));
        let tabs = "proposal\ttitle\tbeamline\n20240001\tWelds\tBL11\n";
        assert_eq!(parse(tabs, Format::Csv).unwrap()[0].title, "Welds");
    }

    #[test]
    fn refusals_name_line_field_and_what_was_expected() {
        let odd = [0xFF, 0xFE, b'[', 0, b']'];
        let cases: [(&[u8], Format, usize, &str, &str); 10] = [
            (
                b"proposal,title,beamline\n2018,Caf\xE9,BL1\n",
                Format::Csv,
                2,
                "encoding",
                "byte 0xE9 at column 9 is not UTF-8",
            ),
            (&odd, Format::Json, 1, "encoding", "half a character"),
            (b"[\0{\0\n\0", Format::Json, 1, "encoding", "UTF-16 without a byte-order mark"),
            (b" \r\n\t", Format::Json, 1, "file", "is empty"),
            (
                b"\xEF\xBB\xBFproposal,title,beamline\n",
                Format::Json,
                1,
                "json",
                "is not JSON: it starts with \"proposal,title,beaml\"",
            ),
            (
                b"{\"proposals\": [\n{\"identifier\": \"1\" \"title\": \"x\"}]}",
                Format::Json,
                2,
                "json",
                "expected `,` or `}` (column 20)",
            ),
            (
                b"proposal,title,beamline,member_rol\n",
                Format::Csv,
                1,
                "header",
                "column 4 \"member_rol\" is not one of proposal, title",
            ),
            (
                b"proposal,beamline\n1,BL1\n",
                Format::Csv,
                1,
                "header",
                "lacks the column \"title\" (has proposal, beamline)",
            ),
            (b"proposal,title,beamline,title\n", Format::Csv, 1, "header", "column \"title\" appears twice"),
            (
                b"proposal,title,beamline\n1,x,BL1,,oops\n",
                Format::Csv,
                2,
                "row",
                "field 5 has no column: the header names 3",
            ),
        ];
        for (file, format, line, field, message) in cases {
            let err = decode(file).and_then(|text| parse(&text, format)).unwrap_err();
            assert_eq!((err.line, err.field.as_str()), (line, field), "{err}");
            assert!(err.message.contains(message), "{err}");
        }
    }
}
