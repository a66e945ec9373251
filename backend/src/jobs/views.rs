//! What a job's page shows beside any session's: how far it is (its progress lines, with
//! an estimate of the time left), the end of its output, and once it has ended its results
//! from its outputs: `summary.json` (the centre of rotation used and how it was found), the
//! preview slices, for a centre sweep a gallery in which each candidate leads to the
//! Launch dialog filled in for the whole volume at that centre, and every file with its
//! size and a link.

use serde_json::Value;
use time::OffsetDateTime;

use super::outputs::{self, Output};
use crate::sessions::db::Session;
use crate::sessions::lifecycle::observe::job_progress;
use crate::state::AppState;
use crate::web::page::path_segment;

/// A job as its page shows it.
#[derive(Default)]
pub struct JobView {
    /// While it runs and has said how far it is.
    pub progress: Option<Progress>,
    /// The last lines of its output.
    pub output: String,
    /// From `summary.json`, once it has one: e.g. "Centre 295.0 px (Vo's method) · CPU · 4.1 s".
    pub summary: Option<String>,
    pub previews: Vec<Preview>,
    pub files: Vec<FileLine>,
    /// Why no file is listed where that needs saying.
    pub files_note: Option<String>,
}

pub struct Progress {
    pub done: u64,
    pub total: u64,
    /// "120 of 2048 rows · about 3 min to go"
    pub text: String,
}

/// A preview slice, with (in a sweep) the link that reconstructs the volume at its centre.
pub struct Preview {
    pub src: String,
    pub caption: String,
    pub relaunch: Option<(String, String)>,
}

pub struct FileLine {
    pub path: String,
    pub href: String,
    pub size: String,
}

/// The job page's view of `session` (a job), read from its progress, its output and its
/// output folder. What cannot be read (the runtime keeps no log, the outputs are out of
/// reach) is left out, never an error page.
pub async fn view(state: &AppState, session: &Session, parameters: Option<&Value>) -> JobView {
    let mut job = JobView { progress: progress(session, OffsetDateTime::now_utc()), ..JobView::default() };
    if let Ok(handle) = super::db::runtime_handle(&state.db, session.id).await {
        job.output = state.runtime.logs(session.id, &handle, 20).await.unwrap_or_default();
    }
    let Some(homes) = state.runtime.homes().map(std::path::Path::to_path_buf) else {
        job.files_note = Some(format!(
            "The outputs are in the owner's home, {}, where daas cannot read them on this runtime.",
            crate::runtime::job_output(session.id)
        ));
        return job;
    };
    let (owner, id) = (session.owner.clone(), session.id);
    let read = tokio::task::spawn_blocking(move || -> crate::error::Result<(Vec<Output>, Option<Value>)> {
        let Some(dir) = outputs::folder(&homes, &owner, id)? else { return Ok((Vec::new(), None)) };
        let files = outputs::list(&dir)?;
        let summary = outputs::open(&dir, &["summary.json"])?
            .and_then(|f| serde_json::from_reader::<_, Value>(std::io::BufReader::new(f.into_std())).ok());
        Ok((files, summary))
    })
    .await;
    let Ok(Ok((files, summary))) = read else { return job };
    let base = format!("/api/v1/jobs/{}/outputs", session.id);
    let href = |path: &str| format!("{base}/{}", path.split('/').map(path_segment).collect::<Vec<_>>().join("/"));
    if let Some(summary) = &summary {
        job.summary = Some(summary_line(summary));
        job.previews = previews(session, parameters, summary, &href);
    }
    job.files = files
        .iter()
        .map(|f| FileLine { path: f.path.clone(), href: href(&f.path), size: size(f.size_bytes) })
        .collect();
    if job.files.is_empty() && session.state.has_ended() {
        job.files_note = Some("The job wrote no file.".into());
    }
    job
}

/// "120 of 2048 rows · about 3 min to go", from the stored progress and the time since the
/// job started (the rate so far).
pub fn progress(session: &Session, now: OffsetDateTime) -> Option<Progress> {
    if session.state.has_ended() {
        return None;
    }
    let line = format!("progress {}", session.progress.as_deref()?);
    let (done, total, unit) = job_progress(&line)?;
    let mut text = format!("{done} of {total} {unit}");
    if let Some(started) = session.started_at.filter(|_| done > 0 && done < total) {
        let spent = (now - started).as_seconds_f64().max(0.0);
        let left = spent * (total - done) as f64 / done as f64;
        text.push_str(&match left {
            s if s < 60.0 => " · less than a minute to go".to_string(),
            s if s < 3600.0 => format!(" · about {} min to go", (s / 60.0).round() as u64),
            s => format!(" · about {:.1} h to go", s / 3600.0),
        });
    }
    Some(Progress { done, total, text })
}

/// "Centre 295.0 px (Vo's method) · CPU · 4.1 s"
fn summary_line(summary: &Value) -> String {
    let method = match summary["centre_method"].as_str() {
        Some("vo") => "found by Vo's method",
        Some("given") => "as given",
        Some("sweep") => "a sweep",
        _ => "",
    };
    let mut parts = Vec::new();
    match summary["centre"].as_f64() {
        Some(c) => parts.push(format!("Centre of rotation {c:.2} px ({method})")),
        None if method == "a sweep" => parts.push("A centre sweep: pick the sharpest slice below".into()),
        None => {}
    }
    if let Some(device) = summary["device"].as_str() {
        parts.push(device.to_uppercase());
    }
    if let Some(s) = summary["seconds"]["total"].as_f64() {
        parts.push(format!("{s:.1} s"));
    }
    parts.join(" · ")
}

/// The middle slice, or one preview per candidate of a sweep with its relaunch link.
fn previews(
    session: &Session,
    parameters: Option<&Value>,
    summary: &Value,
    href: &dyn Fn(&str) -> String,
) -> Vec<Preview> {
    if let Some(sweep) = summary["sweep"].as_array() {
        return sweep
            .iter()
            .filter_map(|c| Some((c["centre"].as_f64()?, c["preview"].as_str()?)))
            .map(|(centre, preview)| Preview {
                src: href(preview),
                caption: format!("centre {centre}"),
                relaunch: Some((
                    relaunch(session, parameters, centre),
                    format!("Reconstruct the volume with centre {centre}"),
                )),
            })
            .collect();
    }
    summary["preview"]
        .as_str()
        .map(|p| Preview { src: href(p), caption: "the middle slice".into(), relaunch: None })
        .into_iter()
        .collect()
}

/// The Launch dialog, filled in as this job was but for the centre: `centre`, given.
fn relaunch(session: &Session, parameters: Option<&Value>, centre: f64) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    query.append_pair("image", &session.image_id.to_string());
    query.append_pair("experiment", &session.experiment_id.to_string());
    query.append_pair("flavour", &session.flavour_id.to_string());
    if let Some(Value::Object(map)) = parameters {
        for (name, value) in map {
            if name.starts_with("sweep_") || name == "centre" || name == "centre_value" {
                continue;
            }
            let text = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            query.append_pair(&format!("param.{name}"), &text);
        }
    }
    query.append_pair("param.centre", "given");
    query.append_pair("param.centre_value", &centre.to_string());
    format!("/proposals/{}/launch?{}", path_segment(&session.proposal), query.finish())
}

/// "1.2 MB", "640 B"
fn size(bytes: u64) -> String {
    match bytes {
        b if b < 1000 => format!("{b} B"),
        b if b < 1_000_000 => format!("{:.1} kB", b as f64 / 1e3),
        b if b < 1_000_000_000 => format!("{:.1} MB", b as f64 / 1e6),
        b => format!("{:.2} GB", b as f64 / 1e9),
    }
}
