//! Checking a dataset's location: a path in its experiment's storage folder (below the
//! data root) that exists, stays inside that folder once every symbolic link is resolved,
//! and holds no link leading out of it; and its size, from a walk of the folder.

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

/// Checks `location` (relative to `root`) against the experiment's storage `folder` (also
/// relative to `root`) and measures it. Blocking: run it off the async threads.
pub fn resolve(root: &Path, folder: &Path, location: &str) -> Result<Resolved, LocationError> {
    let location = location.trim().trim_end_matches('/');
    if location.is_empty() {
        return Err(invalid("must name a folder or file below the data root"));
    }
    if location.len() > 4096 || location.contains('\0') {
        return Err(invalid("is not a usable path"));
    }
    let given = Path::new(location);
    if given.is_absolute() {
        return Err(invalid("must be relative to the data root, e.g. BL11/20180101/S0011/scan_0001"));
    }
    if given.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(invalid("must not contain '..'"));
    }
    // As written (`.` parts dropped), the location must name something in the folder.
    let written: std::path::PathBuf = given.components().filter(|c| !matches!(c, Component::CurDir)).collect();
    if !written.starts_with(folder) {
        return Err(invalid(format!(
            "must lie in the experiment's storage folder {}/, e.g. {}/scan_0001",
            folder.display(),
            folder.display()
        )));
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
    // The folder itself may be a link the facility laid out; where it really is counts.
    let confine = root.join(folder).canonicalize().map_err(|e| invalid(format!("{}: {e}", folder.display())))?;
    if !confine.starts_with(&root) {
        return Err(invalid(format!("the storage folder {} leads out of the data root", folder.display())));
    }
    if !full.starts_with(&confine) {
        return Err(invalid(format!(
            "{location} leads out of the experiment's storage folder {}/ (through a symbolic link)",
            folder.display()
        )));
    }
    let relative = full
        .strip_prefix(&root)
        .expect("checked above")
        .to_str()
        .ok_or_else(|| invalid("the path is not valid UTF-8"))?
        .to_owned();
    let size_bytes = measure(&root, &confine, &full)?;
    Ok(Resolved { relative, size_bytes })
}

/// Sums file sizes under `start`, refusing links whose target is outside `confine` (a
/// session mounting the dataset would otherwise reach them); `root` only shortens messages.
fn measure(root: &Path, confine: &Path, start: &Path) -> Result<u64, LocationError> {
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
                Ok(target) if target.starts_with(confine) => {}
                // A dangling link reaches nothing; harmless.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                _ => {
                    return Err(invalid(format!(
                        "{} is a symbolic link leading out of the experiment's storage folder",
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
        let folder = Path::new("BL1/p/S1");
        let data = root.path().join("BL1/p/S1/scan");
        std::fs::create_dir_all(data.join("sub")).unwrap();
        std::fs::write(data.join("a.h5"), [0u8; 100]).unwrap();
        std::fs::write(data.join("sub/b.h5"), [0u8; 23]).unwrap();
        std::fs::write(outside.path().join("secret"), b"x").unwrap();

        let ok = resolve(root.path(), folder, "BL1/p/S1/scan/").unwrap();
        assert_eq!(ok, Resolved { relative: "BL1/p/S1/scan".into(), size_bytes: 123 });
        assert_eq!(resolve(root.path(), folder, "BL1/./p/S1/scan").unwrap().relative, "BL1/p/S1/scan");
        assert_eq!(resolve(root.path(), folder, "BL1/p/S1").unwrap().size_bytes, 123, "the whole experiment");

        for bad in ["", "/etc", "../x", "BL1/p/../../x", "BL1/p/S1/nothing", ".", "BL1/p", "BL1/p/S10"] {
            assert!(matches!(resolve(root.path(), folder, bad), Err(LocationError::Invalid(_))), "{bad:?}");
        }
        // A link to a folder outside, named directly or found inside the dataset.
        std::os::unix::fs::symlink(outside.path(), data.join("out")).unwrap();
        assert!(resolve(root.path(), folder, "BL1/p/S1/scan/out").is_err());
        std::fs::remove_file(data.join("out")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), data.join("sub/leak")).unwrap();
        let err = resolve(root.path(), folder, "BL1/p/S1/scan").unwrap_err();
        assert!(err.to_string().contains("sub/leak"), "{err}");
        // A link that stays inside is fine and is not counted twice.
        std::fs::remove_file(data.join("sub/leak")).unwrap();
        std::os::unix::fs::symlink(data.join("a.h5"), data.join("sub/alias")).unwrap();
        assert_eq!(resolve(root.path(), folder, "BL1/p/S1/scan").unwrap().size_bytes, 123);
    }

    /// Another proposal's data stays out, however it is reached: named directly, through a
    /// link in this experiment's folder, or through a link inside the dataset.
    #[test]
    fn another_proposals_folder_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let mine = Path::new("BL11/20180101/S0011");
        std::fs::create_dir_all(root.path().join(mine)).unwrap();
        let theirs = root.path().join("BL04/I-20191502/S0201/xrd");
        std::fs::create_dir_all(&theirs).unwrap();
        std::fs::write(theirs.join("f"), b"x").unwrap();
        let err = resolve(root.path(), mine, "BL04/I-20191502/S0201/xrd").unwrap_err();
        assert!(err.to_string().contains("storage folder BL11/20180101/S0011/"), "{err}");
        std::os::unix::fs::symlink(&theirs, root.path().join(mine).join("borrowed")).unwrap();
        let err = resolve(root.path(), mine, "BL11/20180101/S0011/borrowed").unwrap_err();
        assert!(err.to_string().contains("leads out of the experiment's storage folder"), "{err}");
        std::fs::create_dir(root.path().join(mine).join("scan")).unwrap();
        std::os::unix::fs::symlink(theirs.join("f"), root.path().join(mine).join("scan/f")).unwrap();
        let err = resolve(root.path(), mine, "BL11/20180101/S0011/scan").unwrap_err();
        assert!(err.to_string().contains("scan/f"), "{err}");
    }
}
