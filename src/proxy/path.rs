//! Request-target normalisation: the one canonical path that is both matched
//! against policies and forwarded upstream (SECURITY.md rule 1).
//!
//! Unreserved percent-escapes are decoded, other escapes kept (upper-cased),
//! dot-segments removed, duplicate slashes collapsed. Anything ambiguous —
//! `%2F`, `%5C`, `%00`, a raw backslash, control bytes, raw non-ASCII, invalid
//! or overlong-UTF-8 escapes, a `;` in the path, a `#` anywhere — is rejected.

use std::borrow::Cow;

/// Why a request target could not be normalised (always answered with 400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("request target is not in origin form")]
    NotOriginForm,
    #[error("fragment in request target")]
    Fragment,
    #[error("invalid percent-escape in path")]
    BadEscape,
    #[error("encoded slash, backslash or NUL in path")]
    EncodedSeparator,
    #[error("backslash in path")]
    Backslash,
    #[error("control or non-ASCII byte in request target")]
    BadByte,
    #[error("';' in path")]
    Semicolon,
    #[error("percent-escapes are not valid UTF-8")]
    BadUtf8,
}

/// A normalised request target: path plus the untouched query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target<'a> {
    pub path: Cow<'a, str>,
    pub query: Option<&'a str>,
}

impl Target<'_> {
    /// `path?query`, as forwarded upstream.
    pub fn to_uri_string(&self) -> String {
        match self.query {
            Some(q) => format!("{}?{}", self.path, q),
            None => self.path.to_string(),
        }
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Normalise an origin-form request target (`/path?query`).
pub fn normalize(target: &str) -> Result<Target<'_>, PathError> {
    if !target.starts_with('/') {
        return Err(PathError::NotOriginForm);
    }
    let (raw_path, query) = match target.find('?') {
        Some(i) => (&target[..i], Some(&target[i + 1..])),
        None => (target, None),
    };
    if let Some(q) = query {
        if q.bytes().any(|b| b == b'#' || !(0x20..0x7f).contains(&b)) {
            return Err(if q.contains('#') {
                PathError::Fragment
            } else {
                PathError::BadByte
            });
        }
    }
    let bytes = raw_path.as_bytes();
    let mut clean = true;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'#' => return Err(PathError::Fragment),
            b'\\' => return Err(PathError::Backslash),
            b';' => return Err(PathError::Semicolon),
            0..=0x1f | 0x7f..=0xff => return Err(PathError::BadByte),
            b'%' => clean = false,
            b'/' if i + 1 < bytes.len() && (bytes[i + 1] == b'/' || bytes[i + 1] == b'.') => {
                clean = false
            }
            _ => {}
        }
        i += 1;
    }
    if clean {
        return Ok(Target {
            path: Cow::Borrowed(raw_path),
            query,
        });
    }
    let decoded = decode_unreserved(bytes)?;
    Ok(Target {
        path: Cow::Owned(remove_dot_segments(&decoded)),
        query,
    })
}

/// Decode escapes of unreserved bytes; keep (upper-cased) the others after
/// checking that every run of escaped non-ASCII bytes is valid UTF-8.
fn decode_unreserved(bytes: &[u8]) -> Result<String, PathError> {
    let mut out = String::with_capacity(bytes.len());
    let mut run: Vec<u8> = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            flush_run(&mut run)?;
            out.push(bytes[i] as char);
            i += 1;
            continue;
        }
        let (h, l) = match (bytes.get(i + 1), bytes.get(i + 2)) {
            (Some(&h), Some(&l)) => (h, l),
            _ => return Err(PathError::BadEscape),
        };
        let v = match (hex_val(h), hex_val(l)) {
            (Some(h), Some(l)) => h * 16 + l,
            _ => return Err(PathError::BadEscape),
        };
        match v {
            b'/' | b'\\' | 0 => return Err(PathError::EncodedSeparator),
            b';' => return Err(PathError::Semicolon),
            b'#' => return Err(PathError::Fragment),
            _ => {}
        }
        if is_unreserved(v) {
            flush_run(&mut run)?;
            out.push(v as char);
        } else {
            if v < 0x20 || v == 0x7f {
                return Err(PathError::BadByte);
            }
            if v >= 0x80 {
                run.push(v);
            } else {
                flush_run(&mut run)?;
            }
            out.push('%');
            out.push(h.to_ascii_uppercase() as char);
            out.push(l.to_ascii_uppercase() as char);
        }
        i += 3;
    }
    flush_run(&mut run)?;
    Ok(out)
}

fn flush_run(run: &mut Vec<u8>) -> Result<(), PathError> {
    if !run.is_empty() {
        std::str::from_utf8(run).map_err(|_| PathError::BadUtf8)?;
        run.clear();
    }
    Ok(())
}

/// RFC 3986 §5.2.4 dot-segment removal, with empty segments (`//`) collapsed.
/// Never climbs above `/`.
fn remove_dot_segments(path: &str) -> String {
    let mut segs: Vec<&str> = Vec::new();
    let trailing = path.ends_with('/') || path.ends_with("/.") || path.ends_with("/..");
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                segs.pop();
            }
            s => segs.push(s),
        }
    }
    let mut out = String::with_capacity(path.len());
    for s in &segs {
        out.push('/');
        out.push_str(s);
    }
    if out.is_empty() || (trailing && !out.ends_with('/')) {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(t: &str) -> Result<String, PathError> {
        normalize(t).map(|t| t.to_uri_string())
    }

    #[test]
    fn clean_paths_are_borrowed_unchanged() {
        let t = normalize("/app/x?a=1").unwrap();
        assert!(matches!(t.path, Cow::Borrowed("/app/x")));
        assert_eq!(t.query, Some("a=1"));
    }

    #[test]
    fn dot_segments_are_removed() {
        assert_eq!(norm("/admin/../x").unwrap(), "/x");
        assert_eq!(norm("/a/./b/").unwrap(), "/a/b/");
        assert_eq!(norm("/../../etc").unwrap(), "/etc");
        assert_eq!(norm("/a/..").unwrap(), "/");
    }

    #[test]
    fn duplicate_slashes_collapse() {
        assert_eq!(norm("//admin").unwrap(), "/admin");
        assert_eq!(norm("/a//b///c").unwrap(), "/a/b/c");
    }

    #[test]
    fn unreserved_escapes_are_decoded() {
        assert_eq!(norm("/%61dmin").unwrap(), "/admin");
        assert_eq!(norm("/%2e%2e/admin").unwrap(), "/admin");
        assert_eq!(norm("/x/%2E%2E/admin").unwrap(), "/admin");
    }

    #[test]
    fn reserved_escapes_are_kept_upper_cased() {
        assert_eq!(norm("/a%20b").unwrap(), "/a%20b");
        assert_eq!(norm("/caf%c3%a9").unwrap(), "/caf%C3%A9");
    }

    #[test]
    fn ambiguous_targets_are_rejected() {
        assert_eq!(norm("/a%2Fb"), Err(PathError::EncodedSeparator));
        assert_eq!(norm("/a%2fb"), Err(PathError::EncodedSeparator));
        assert_eq!(norm("/a%5Cb"), Err(PathError::EncodedSeparator));
        assert_eq!(norm("/a%00"), Err(PathError::EncodedSeparator));
        assert_eq!(norm("/a\\b"), Err(PathError::Backslash));
        assert_eq!(norm("/admin;x=1"), Err(PathError::Semicolon));
        assert_eq!(norm("/admin%3bx"), Err(PathError::Semicolon));
        assert_eq!(norm("/a#b"), Err(PathError::Fragment));
        assert_eq!(norm("/a%23b"), Err(PathError::Fragment));
        assert_eq!(norm("/a%zz"), Err(PathError::BadEscape));
        assert_eq!(norm("/a%4"), Err(PathError::BadEscape));
        assert_eq!(norm("/a%0a"), Err(PathError::BadByte));
        assert_eq!(norm("/a\u{1}"), Err(PathError::BadByte));
        assert_eq!(norm("/é"), Err(PathError::BadByte));
        assert_eq!(norm("*"), Err(PathError::NotOriginForm));
        assert_eq!(norm("http://x/"), Err(PathError::NotOriginForm));
    }

    #[test]
    fn overlong_utf8_escapes_are_rejected() {
        assert_eq!(norm("/%c0%ae%c0%ae/admin"), Err(PathError::BadUtf8));
        assert_eq!(norm("/%ff"), Err(PathError::BadUtf8));
    }

    #[test]
    fn query_is_never_normalised_or_matched() {
        let t = normalize("/x?next=/../admin//%2F").unwrap();
        assert_eq!(t.path, "/x");
        assert_eq!(t.query, Some("next=/../admin//%2F"));
    }

    #[test]
    fn fragment_in_query_is_rejected() {
        assert_eq!(norm("/x?a#b"), Err(PathError::Fragment));
    }
}
