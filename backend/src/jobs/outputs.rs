//! A job's outputs (`<owner's home>/jobs/<id>`, written by the job as its owner), listed
//! and served by daas with the session's authorization. The folder and everything in it
//! are the user's to change, while daas reads as root: so no path is followed through a
//! symbolic link, from the homes folder down (cap-std's `Dir`, which also refuses `..` and
//! absolute paths), a link inside the folder is neither listed nor served, and a path with
//! `..`, `.`, an empty or absolute part is refused before anything is opened.

use cap_fs_ext::DirExt;
use cap_std::ambient_authority;
use cap_std::fs::Dir;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::error::{AppError, Result};

/// At most this many files are listed.
const MOST: usize = 10_000;
/// Paths at most this deep.
const DEEPEST: usize = 16;

/// One file of a job's outputs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct Output {
    /// Relative to the job's output folder, `/`-separated, e.g. `volume/slice_00000.tif`.
    pub path: String,
    pub size_bytes: u64,
}

/// The job's output folder, opened without following a link at any step below `homes`;
/// `None` when it is not there (the job wrote nothing yet).
pub fn folder(homes: &std::path::Path, owner: &str, id: Uuid) -> Result<Option<Dir>> {
    let homes = Dir::open_ambient_dir(homes, ambient_authority()).map_err(anyhow::Error::from)?;
    let mut dir = homes;
    for part in [owner, "jobs", &id.to_string()] {
        match dir.open_dir_nofollow(part) {
            Ok(next) => dir = next,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            // A link where a folder should be: as if there were nothing.
            Err(_) => return Ok(None),
        }
    }
    Ok(Some(dir))
}

/// Every regular file below `dir`, sorted by path (links and other special files left
/// out), at most `MOST`.
pub fn list(dir: &Dir) -> Result<Vec<Output>> {
    let mut found = Vec::new();
    walk(dir, "", 0, &mut found)?;
    found.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(found)
}

fn walk(dir: &Dir, prefix: &str, depth: usize, found: &mut Vec<Output>) -> Result<()> {
    for entry in dir.entries().map_err(anyhow::Error::from)? {
        let entry = entry.map_err(anyhow::Error::from)?;
        let Ok(name) = entry.file_name().into_string() else { continue };
        let Ok(kind) = entry.file_type() else { continue };
        let path = format!("{prefix}{name}");
        if kind.is_file() {
            if found.len() >= MOST {
                return Ok(());
            }
            let size_bytes = entry.metadata().map(|m| m.len()).unwrap_or(0);
            found.push(Output { path, size_bytes });
        } else if kind.is_dir() && depth + 1 < DEEPEST {
            if let Ok(sub) = dir.open_dir_nofollow(&name) {
                walk(&sub, &format!("{path}/"), depth + 1, found)?;
            }
        }
    }
    Ok(())
}

/// The parts of a requested path; 400 for `..`, `.`, empty or absolute parts, too deep.
pub fn parts(path: &str) -> Result<Vec<&str>> {
    let parts: Vec<&str> = path.split('/').collect();
    let bad = |p: &&str| p.is_empty() || *p == "." || *p == ".." || p.contains('\\') || p.contains('\0');
    if parts.iter().any(bad) || parts.len() > DEEPEST {
        return Err(AppError::invalid("path", "must be a path inside the job's outputs, without `..`"));
    }
    Ok(parts)
}

/// Opens the regular file at `parts` below `dir`; `None` when there is none (or it is a
/// link, or a folder on the way is one).
pub fn open(dir: &Dir, parts: &[&str]) -> Result<Option<cap_std::fs::File>> {
    let Some((name, folders)) = parts.split_last() else { return Ok(None) };
    let mut here = dir.try_clone().map_err(anyhow::Error::from)?;
    for folder in folders {
        match here.open_dir_nofollow(folder) {
            Ok(next) => here = next,
            Err(_) => return Ok(None),
        }
    }
    match here.symlink_metadata(name) {
        Ok(meta) if meta.is_file() => {}
        _ => return Ok(None),
    }
    // cap-std refuses to follow a link out of `here`, should one appear in between.
    Ok(here.open(name).ok())
}

/// How a file is served: its content type, and whether a browser may show it inline. Only
/// images daas shows on the job page are inline; everything else (HTML or SVG a job wrote
/// included) is a download, never a page of the portal's origin.
pub fn content_type(path: &str) -> (&'static str, bool) {
    match path.rsplit_once('.').map(|(_, ext)| ext.to_ascii_lowercase()).as_deref() {
        Some("png") => ("image/png", true),
        Some("json") => ("application/json", false),
        Some("tif" | "tiff") => ("image/tiff", false),
        Some("h5" | "hdf5" | "nxs") => ("application/x-hdf5", false),
        Some("txt" | "log") => ("text/plain; charset=utf-8", false),
        _ => ("application/octet-stream", false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_with_dots_or_empty_parts_are_refused() {
        assert_eq!(parts("volume/slice_00000.tif").unwrap(), ["volume", "slice_00000.tif"]);
        for bad in ["../x", "a/../../etc/passwd", "/etc/passwd", "a//b", "./a", "", "a/", "a\\..\\b"] {
            assert!(parts(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn links_are_neither_listed_nor_served_and_nothing_escapes() {
        let root = tempfile::tempdir().unwrap();
        let id = Uuid::nil();
        let job = root.path().join("alice/jobs").join(id.to_string());
        std::fs::create_dir_all(job.join("volume")).unwrap();
        std::fs::write(job.join("summary.json"), "{}").unwrap();
        std::fs::write(job.join("volume/slice_00000.tif"), [0u8; 10]).unwrap();
        std::fs::write(root.path().join("secret"), "root's").unwrap();
        std::os::unix::fs::symlink(root.path().join("secret"), job.join("leak")).unwrap();
        std::os::unix::fs::symlink(root.path(), job.join("up")).unwrap();
        let dir = folder(root.path(), "alice", id).unwrap().unwrap();
        let listed = list(&dir).unwrap();
        assert_eq!(
            listed,
            [
                Output { path: "summary.json".into(), size_bytes: 2 },
                Output { path: "volume/slice_00000.tif".into(), size_bytes: 10 }
            ]
        );
        assert!(open(&dir, &["summary.json"]).unwrap().is_some());
        assert!(open(&dir, &["leak"]).unwrap().is_none());
        assert!(open(&dir, &["up", "secret"]).unwrap().is_none());
        // A home whose `jobs` is a link to someone else's: nothing.
        std::fs::create_dir_all(root.path().join("bob")).unwrap();
        std::os::unix::fs::symlink(root.path().join("alice/jobs"), root.path().join("bob/jobs")).unwrap();
        assert!(folder(root.path(), "bob", id).unwrap().is_none());
        assert_eq!(content_type("x.html"), ("application/octet-stream", false));
        assert_eq!(content_type("sweep/centre_296.0.png"), ("image/png", true));
    }
}
