//! Where an experiment's data lives below the data root: a template such as
//! `{beamline}/{proposal}/{experiment}`, as facilities lay out beamtime folders. A dataset
//! of an experiment must lie in that experiment's folder, so a link never reaches the data
//! of another proposal.

use std::path::{Component, Path, PathBuf};

/// The placeholders a template may use.
const PLACEHOLDERS: [&str; 3] = ["{beamline}", "{proposal}", "{experiment}"];

/// A checked storage template: relative, `/`-separated, no `.` or `..` parts, only the
/// known placeholders, and `{proposal}` among them (else two proposals would share a folder).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageTemplate(String);

impl StorageTemplate {
    pub const DEFAULT: &'static str = "{beamline}/{proposal}/{experiment}";

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The folder (relative to the data root) of one experiment. `beamline` is the
    /// experiment's (the facility's folders follow where the beamtime ran), `proposal` the
    /// user office identifier, `experiment` the experiment code. Refused when a value
    /// would add a `.` or `..` part (identifiers may hold `/` and `.`).
    pub fn folder(&self, beamline: &str, proposal: &str, experiment: &str) -> Result<PathBuf, String> {
        let expanded =
            self.0.replace("{beamline}", beamline).replace("{proposal}", proposal).replace("{experiment}", experiment);
        let mut folder = PathBuf::new();
        for part in expanded.split('/') {
            if part.is_empty() || part == "." || part == ".." || part.contains('\0') || part.contains('\\') {
                return Err(format!(
                    "the storage folder of {proposal}/{experiment} would be {expanded:?}, not a plain path"
                ));
            }
            folder.push(part);
        }
        Ok(folder)
    }
}

impl Default for StorageTemplate {
    fn default() -> Self {
        StorageTemplate(Self::DEFAULT.to_owned())
    }
}

impl std::fmt::Display for StorageTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for StorageTemplate {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let template = s.trim().trim_end_matches('/');
        if template.starts_with('/') {
            return Err("must be relative to the data root, e.g. {beamline}/{proposal}/{experiment}".into());
        }
        if !template.contains("{proposal}") {
            return Err("must contain {proposal}: each proposal's data needs a folder of its own".into());
        }
        let mut rest = template.to_owned();
        for placeholder in PLACEHOLDERS {
            rest = rest.replace(placeholder, "x");
        }
        if rest.contains(['{', '}']) {
            return Err(format!("{template:?}: the placeholders are {}", PLACEHOLDERS.join(", ")));
        }
        let plain = Path::new(&rest).components().all(|c| matches!(c, Component::Normal(_)));
        if !plain || rest.split('/').any(str::is_empty) || rest.contains('\\') {
            return Err(format!("{template:?} must be a plain relative path, without '.', '..' or '//'"));
        }
        Ok(StorageTemplate(template.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_are_checked() {
        for good in ["{beamline}/{proposal}/{experiment}", "{proposal}", "raw/{beamline}/{proposal}-{experiment}/"] {
            assert!(good.parse::<StorageTemplate>().is_ok(), "{good}");
        }
        for bad in [
            "",
            "/data/{proposal}",
            "{beamline}/{experiment}",
            "{proposal}/../x",
            "{proposal}/{user}",
            "a//{proposal}",
            "./{proposal}",
        ] {
            assert!(bad.parse::<StorageTemplate>().is_err(), "{bad}");
        }
    }

    #[test]
    fn folders_are_plain_paths() {
        let t = StorageTemplate::default();
        assert_eq!(t.folder("BL11", "20180101", "S0011").unwrap(), PathBuf::from("BL11/20180101/S0011"));
        assert_eq!(t.folder("BL04", "I-2019/1502", "S1").unwrap(), PathBuf::from("BL04/I-2019/1502/S1"));
        for (beamline, proposal, experiment) in [("BL11", "a/../b", "S1"), ("BL11", "p", ".."), ("BL11", "p/", "S1")] {
            assert!(t.folder(beamline, proposal, experiment).is_err(), "{proposal} {experiment}");
        }
    }
}
