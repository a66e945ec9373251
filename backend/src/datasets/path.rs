//! Checking a dataset's location: a path below the data root that exists, stays inside
//! the root once every symbolic link is resolved, and holds no link leading out; and its
//! size, from a walk of the folder.

use std::path::{Component, Path};

/// Most entries one dataset may hold before the walk gives up (keeps a request bounded).
const MAX_ENTRIES: usize = 1_000_000;

/// Why a location is refused, for the caller.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum LocationError {
    #[error("{0}")]
    Invalid(String),
    /// The data root itself is missing: the server's fault, not the caller's.
    #[error("the data root is not reachable: {0}")]
    Root(String),
}

/// A checked location: the path relative to the data root with links resolved, and the
/// size in bytes of what is there (files only; links are not followed).
#[derive(Debug, PartialEq, Eq)]
pub struct Resolved {
    pub relative: String,
    pub size_bytes: u64,
}

fn invalid(message: impl Into<String>) -> LocationError {
    LocationError::Invalid(message.into())
}

/// Checks `location` (relative to `root`) and measures it. Blocking: run it off the
/// async threads.
pub fn resolve(root: &Path, location: &str) -> Result<Resolved, LocationError> {
    let location = location.trim().trim_end_matches('/');
    if location.is_empty() {
        return Err(invalid("must name a folder or file below the data root"));
    }
    if location.len() > 4096 || location.contains('\0') {
        return Err(invalid("is not a usable path"));
    }
    let given = Path::new(location);
    if given.is_absolute() {
        return Err(invalid("must be relative to the data root, e.g. 20180101/S0011/scan_0001"));
    }
    if given.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(invalid("must not contain '..'"));
    }
    let root = root.canonicalize().map_err(|e| LocationError::Root(e.to_string()))?;
    let full = root.join(given).canonicalize().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => invalid(format!("{location} does not exist under the data root")),
        _ => invalid(format!("{location} cannot be read: {e}")),
    })?;
    // canonicalize resolved every link on the way; what it found must still be inside.
    if !full.starts_with(&root) {
        return Err(invalid(format!("{location} leads out of the data root (through a symbolic link)")));
    }
    if full == root {
        return Err(invalid("must name a folder or file below the data root, not the root itself"));
    }
    let relative = full
        .strip_prefix(&root)
        .expect("checked above")
        .to_str()
        .ok_or_else(|| invalid("the path is not valid UTF-8"))?
        .to_owned();
    let size_bytes = measure(&root, &full)?;
    Ok(Resolved { relative, size_bytes })
}

/// Sums file sizes under `start`, refusing links whose target is outside `root` (a session
/// mounting the dataset would otherwise reach them).
fn measure(root: &Path, start: &Path) -> Result<u64, LocationError> {
    let mut size = 0u64;
    let mut entries = 0usize;
    let mut stack = vec![start.to_path_buf()];
    while let Some(path) = stack.pop() {
        entries += 1;
        if entries > MAX_ENTRIES {
            return Err(invalid(format!("holds more than {MAX_ENTRIES} entries; link a smaller folder")));
        }
        let meta = std::fs::symlink_metadata(&path)
            .map_err(|e| invalid(format!("cannot read {}: {e}", shown(root, &path))))?;
        if meta.file_type().is_symlink() {
            match path.canonicalize() {
                Ok(target) if target.starts_with(root) => {}
                // A dangling link reaches nothing; harmless.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                _ => {
                    return Err(invalid(format!(
                        "{} is a symbolic link leading out of the data root",
                        shown(root, &path)
                    )))
                }
            }
        } else if meta.is_dir() {
            let dir =
                std::fs::read_dir(&path).map_err(|e| invalid(format!("cannot read {}: {e}", shown(root, &path))))?;
            for entry in dir {
                let entry = entry.map_err(|e| invalid(format!("cannot read {}: {e}", shown(root, &path))))?;
                stack.push(entry.path());
            }
        } else {
            size += meta.len();
        }
    }
    Ok(size)
}

fn shown(root: &Path, path: &Path) -> String {
    path.strip_prefix(root).unwrap_or(path).display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_and_refuses_escapes() {
        let outside = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("p/S1/scan");
        std::fs::create_dir_all(data.join("sub")).unwrap();
        std::fs::write(data.join("a.h5"), [0u8; 100]).unwrap();
        std::fs::write(data.join("sub/b.h5"), [0u8; 23]).unwrap();
        std::fs::write(outside.path().join("secret"), b"x").unwrap();

        let ok = resolve(root.path(), "p/S1/scan/").unwrap();
        assert_eq!(ok, Resolved { relative: "p/S1/scan".into(), size_bytes: 123 });
        assert_eq!(resolve(root.path(), "p/./S1/scan").unwrap().relative, "p/S1/scan");

        for bad in ["", "/etc", "../x", "p/../../x", "p/S1/nothing", "."] {
            assert!(matches!(resolve(root.path(), bad), Err(LocationError::Invalid(_))), "{bad:?}");
        }
        // A link to a folder outside, named directly or found inside the dataset.
        std::os::unix::fs::symlink(outside.path(), root.path().join("p/out")).unwrap();
        assert!(resolve(root.path(), "p/out").is_err());
        std::os::unix::fs::symlink(outside.path().join("secret"), data.join("sub/leak")).unwrap();
        let err = resolve(root.path(), "p/S1/scan").unwrap_err();
        assert!(err.to_string().contains("sub/leak"), "{err}");
        // A link that stays inside is fine and is not counted twice.
        std::fs::remove_file(data.join("sub/leak")).unwrap();
        std::os::unix::fs::symlink(data.join("a.h5"), data.join("sub/alias")).unwrap();
        assert_eq!(resolve(root.path(), "p/S1/scan").unwrap().size_bytes, 123);
    }
}
