//! Container image references, checked against the grammar of the distribution project
//! (`distribution/reference`, the one Docker, containerd and Kubernetes share), so a typo
//! in the catalogue is refused on save rather than found by a failed pull at launch.

use std::sync::LazyLock;

use regex::Regex;

/// `name[:tag][@digest]`, with the name `[domain/]path`.
static REFERENCE: LazyLock<Regex> = LazyLock::new(|| {
    // domain-component: a letter or digit, or letters, digits and '-' not at either end.
    let domain_component = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
    let domain_name = format!(r"{domain_component}(?:\.{domain_component})*");
    let ipv6 = r"\[[a-fA-F0-9:]+\]";
    let host = format!(r"(?:{domain_name}|{ipv6})");
    let domain = format!(r"{host}(?::[0-9]+)?");
    // path-component: lower-case alphanumerics joined by '.', '_', '__' or runs of '-'.
    let path_component = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*";
    let tag = r"[\w][\w.-]{0,127}";
    let digest = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}";
    Regex::new(&format!(
        r"^(?P<name>(?:{domain}/)?{path_component}(?:/{path_component})*)(?::(?P<tag>{tag}))?(?:@(?P<digest>{digest}))?$"
    ))
    .expect("the reference grammar compiles")
});

/// Most characters the name part may have (the registry's limit).
const NAME_MAX: usize = 255;

/// Checks an OCI image reference such as `registry.example/daas/desktop:1.0` or
/// `ghcr.io/org/app@sha256:<64 hex>`; the error says what is wrong, for a person.
pub fn check_reference(reference: &str) -> Result<(), String> {
    if reference.is_empty() {
        return Err("must not be empty".into());
    }
    if reference.chars().any(char::is_whitespace) {
        return Err("must not contain white space".into());
    }
    let Some(parts) = REFERENCE.captures(reference) else {
        return Err(format!(
            "{reference:?} is not an image reference: expected [registry[:port]/]path[:tag][@digest], \
             with a lower-case path (letters, digits, '.', '_', '-' between them)"
        ));
    };
    let name = &parts["name"];
    if name.len() > NAME_MAX {
        return Err(format!("the repository name is longer than {NAME_MAX} characters"));
    }
    if let Some(digest) = parts.name("digest") {
        let (algorithm, hex) = digest.as_str().split_once(':').expect("the grammar has a colon");
        let wanted = match algorithm {
            "sha256" => Some(64),
            "sha384" => Some(96),
            "sha512" => Some(128),
            _ => None,
        };
        match wanted {
            Some(len) if hex.len() != len || hex.bytes().any(|b| b.is_ascii_uppercase()) => {
                return Err(format!("a {algorithm} digest is {len} lower-case hexadecimal digits"));
            }
            Some(_) => {}
            None => return Err(format!("unsupported digest algorithm {algorithm:?} (use sha256 or sha512)")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_reference;

    #[test]
    fn accepts_what_registries_accept() {
        let sha = "a".repeat(64);
        for ok in [
            "ubuntu",
            "ubuntu:24.04",
            "library/ubuntu:latest",
            "registry.facility.example/daas/desktop-xfce:1.0",
            "localhost:5000/daas/jupyterlab:4",
            "ghcr.io/some_org/app__x/tool.v2:v1.2.3-rc_1",
            "[::1]:5000/img:tag",
            "192.168.1.10:5000/a/b",
            "Registry.Example/app",
            "UPPER/case",
            &format!("ghcr.io/org/app@sha256:{sha}"),
            &format!("ghcr.io/org/app:1.0@sha256:{sha}"),
        ] {
            assert_eq!(check_reference(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn refuses_what_registries_refuse() {
        let long = format!("a/{}", "b".repeat(260));
        for bad in [
            "",
            "example.com/Upper",
            "app:",
            "app:-tag",
            "app:tag:tag",
            "a//b",
            "-a/b",
            "a/b-",
            "a/.b",
            "a b",
            "https://example.com/app",
            "app@sha256:abc",
            "app@sha256:ABCDEFABCDEFABCDEFABCDEFABCDEFABCDEFABCDEFABCDEFABCDEFABCDEFABCD",
            "app@md5:0123456789abcdef0123456789abcdef",
            "app:a-tag-that-is-longer-than-128-characters-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            &long,
        ] {
            assert!(check_reference(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
