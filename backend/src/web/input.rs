//! Text input is checked once, before any handler runs: a NUL character (PostgreSQL
//! refuses it in `text`) or bytes that are not UTF-8, in the path, a query parameter, a form
//! field, a JSON string or a text body, answer 400 naming the field. A layer rather than
//! each extractor so that handlers reading the raw body (`Bytes`, `RawForm`) are covered
//! too; session origins never get here (their proxy sits outside this layer).

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::error::AppError;
use crate::web::page::PageError;

/// Largest body read for the check: axum's own default limit for `Json`, `Form` and
/// `Bytes`, so nothing a handler would have taken is refused here.
const BODY_LIMIT: usize = 2 * 1024 * 1024;

/// Refuses bad text with a 400 (JSON for the API, a page otherwise).
pub async fn check_text(request: Request, next: Next) -> Response {
    let api = request.uri().path().starts_with("/api/");
    match checked(request).await {
        Ok(request) => next.run(request).await,
        Err(err) if api => err.into_response(),
        Err(err) => PageError(err).into_response(),
    }
}

async fn checked(request: Request) -> Result<Request, AppError> {
    if bad_text(&percent_encoding::percent_decode_str(request.uri().path()).collect::<Vec<u8>>()) {
        return Err(refused("path"));
    }
    if let Some(query) = request.uri().query() {
        check_urlencoded(query.as_bytes())?;
    }
    if request.body().is_end_stream() {
        return Ok(request);
    }
    let content_type =
        request.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    let (parts, body) = request.into_parts();
    let bytes: Bytes = axum::body::to_bytes(body, BODY_LIMIT)
        .await
        .map_err(|_| AppError::invalid("body", format!("must be at most {} MiB", BODY_LIMIT >> 20)))?;
    if content_type.starts_with("application/x-www-form-urlencoded") {
        check_urlencoded(&bytes)?;
    } else {
        check_body(&bytes)?;
    }
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

fn bad_text(bytes: &[u8]) -> bool {
    bytes.contains(&0) || std::str::from_utf8(bytes).is_err()
}

fn refused(field: &str) -> AppError {
    AppError::invalid(field, "must be UTF-8 text without NUL characters")
}

/// `a=1&b=2` as sent in a query string or a form body, each name and value percent-decoded
/// (`+` is a space there, which changes nothing here).
fn check_urlencoded(raw: &[u8]) -> Result<(), AppError> {
    for pair in raw.split(|b| *b == b'&') {
        let mut halves = pair.splitn(2, |b| *b == b'=');
        let name: Vec<u8> = percent_encoding::percent_decode(halves.next().unwrap_or_default()).collect();
        let value: Vec<u8> = percent_encoding::percent_decode(halves.next().unwrap_or_default()).collect();
        if bad_text(&name) {
            return Err(refused("query"));
        }
        if bad_text(&value) {
            return Err(refused(&String::from_utf8_lossy(&name)));
        }
    }
    Ok(())
}

/// Any other body daas takes is text (JSON, CSV): UTF-8, no NUL byte, and no `\u0000` in
/// a JSON string, where the field that holds it is named.
fn check_body(bytes: &[u8]) -> Result<(), AppError> {
    if bad_text(bytes) {
        return Err(refused("body"));
    }
    // Only JSON spells NUL as an escape; the full parse runs only when one is there.
    if !bytes.windows(6).any(|w| w == b"\\u0000") {
        return Ok(());
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(value) => match nul_in(&value, "") {
            Some(field) => Err(refused(if field.is_empty() { "body" } else { &field })),
            None => Ok(()),
        },
        // Not JSON: a literal backslash-u in CSV or text, not a NUL.
        Err(_) => Ok(()),
    }
}

/// The dotted path of the first string (or key) holding a NUL.
fn nul_in(value: &Value, at: &str) -> Option<String> {
    let join = |key: &str| if at.is_empty() { key.to_owned() } else { format!("{at}.{key}") };
    match value {
        Value::String(s) => s.contains('\0').then(|| at.to_owned()),
        Value::Array(items) => items.iter().enumerate().find_map(|(i, v)| nul_in(v, &join(&i.to_string()))),
        Value::Object(map) => {
            map.iter().find_map(
                |(k, v)| {
                    if k.contains('\0') {
                        Some(join(&k.replace('\0', "")))
                    } else {
                        nul_in(v, &join(k))
                    }
                },
            )
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(err: AppError) -> String {
        match err {
            AppError::Invalid { field, .. } => field,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn urlencoded_names_the_field() {
        assert!(check_urlencoded(b"username=alice&password=p%C3%A4ss+word&next=%2F").is_ok());
        assert!(check_urlencoded(b"").is_ok());
        assert!(check_urlencoded(b"flag&=x").is_ok());
        assert_eq!(field(check_urlencoded(b"username=al%00ice").unwrap_err()), "username");
        assert_eq!(field(check_urlencoded(b"a=1&q=%FF").unwrap_err()), "q");
        assert_eq!(field(check_urlencoded(b"q%00=1").unwrap_err()), "query");
        assert_eq!(field(check_urlencoded(b"q=\xff").unwrap_err()), "q");
    }

    #[test]
    fn json_names_the_field() {
        assert!(check_body(br#"{"name": "a", "n": [1, "b"]}"#).is_ok());
        assert!(check_body(br#"{"name": "a\\u0000"}"#).is_ok(), "an escaped backslash, then text");
        assert!(check_body(b"identifier,title\n1,\\u0000\n").is_ok(), "CSV text");
        assert_eq!(field(check_body(br#"{"name": "a\u0000"}"#).unwrap_err()), "name");
        assert_eq!(field(check_body(br#"{"metadata": {"tags": ["x", "\u0000"]}}"#).unwrap_err()), "metadata.tags.1");
        assert_eq!(field(check_body(br#""\u0000""#).unwrap_err()), "body");
        assert_eq!(field(check_body(b"a,b\n\0,c").unwrap_err()), "body");
        assert_eq!(field(check_body(b"{\"a\": \"\xff\"}").unwrap_err()), "body");
    }
}
