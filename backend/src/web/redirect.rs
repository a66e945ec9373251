//! Redirect targets that come from input (`/login?next=`, the stop form's `back`): each is
//! parsed and kept only when it is a path on this site. Browsers strip tabs and newlines
//! from URLs and read `\` as `/`, so `/\t/evil.example` and `/\evil.example` both mean
//! `//evil.example` to them; anything of the kind is refused, not repaired.

use url::Url;

/// The base a target is resolved against; only its origin matters.
const BASE: &str = "http://daas.invalid/";

/// `target` as a same-origin path (with its query and fragment), or `None` when it could
/// lead anywhere else: it must start with one `/`, carry no scheme or host, no backslash,
/// no control character or whitespace, and no control character, backslash or leading
/// `//` once percent-decoded.
pub fn local_path(target: &str) -> Option<String> {
    let bytes = target.as_bytes();
    if bytes.first() != Some(&b'/') || matches!(bytes.get(1), Some(b'/' | b'\\')) {
        return None;
    }
    let decoded = percent_encoding::percent_decode_str(target).collect::<Vec<u8>>();
    // Decoded, a space is harmless (`%20`); controls and backslashes are not, should
    // anything down the line decode the target once more.
    let unsafe_byte = |b: &u8| b.is_ascii_control() || *b == b'\\';
    if bytes.iter().any(|b| unsafe_byte(b) || b.is_ascii_whitespace())
        || decoded.iter().any(unsafe_byte)
        || decoded.starts_with(b"//")
    {
        return None;
    }
    // What a browser would make of it: still on this origin, and what we send is the
    // parser's own spelling (non-ASCII percent-encoded, dot segments resolved).
    let base = Url::parse(BASE).expect("a valid base URL");
    let url = base.join(target).ok()?;
    if url.origin() != base.origin() || url.path().starts_with("//") {
        return None;
    }
    Some(url[url::Position::BeforePath..].to_owned())
}

/// `target` when it is a local path, else `fallback`.
pub fn local_or(target: Option<&str>, fallback: &str) -> String {
    target.and_then(local_path).unwrap_or_else(|| fallback.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_local_paths() {
        for (given, kept) in [
            ("/", "/"),
            ("/proposals", "/proposals"),
            ("/proposals/20180101?tab=data#x", "/proposals/20180101?tab=data#x"),
            ("/sessions/a/../b", "/sessions/b"),
            ("/proposals/I-2019%2F1502", "/proposals/I-2019%2F1502"),
            ("/search?q=a%20b", "/search?q=a%20b"),
            ("/é", "/%C3%A9"),
        ] {
            assert_eq!(local_path(given).as_deref(), Some(kept), "{given:?}");
        }
    }

    #[test]
    fn refuses_anything_that_leaves_the_site() {
        for bad in [
            "",
            "proposals",
            "//evil.example",
            "//evil.example/x",
            "/\\evil.example",
            "\\\\evil.example",
            "/\t/evil.example",
            "/%09/evil.example",
            "/\n/evil.example",
            "/%0a/evil.example",
            "/\r\n/evil.example",
            "/%0d%0aSet-Cookie:x=1",
            "/%2f/evil.example",
            "/%2F%2Fevil.example",
            "/%5cevil.example",
            "/ /evil.example",
            "/\u{0}x",
            "/%00x",
            "/\u{7f}",
            "https://evil.example",
            "javascript:alert(1)",
            " /proposals",
            "http:/evil.example",
            "/x\\y",
        ] {
            assert_eq!(local_path(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn falls_back() {
        assert_eq!(local_or(None, "/proposals"), "/proposals");
        assert_eq!(local_or(Some("//evil.example"), "/proposals"), "/proposals");
        assert_eq!(local_or(Some("/tokens"), "/proposals"), "/tokens");
    }
}
