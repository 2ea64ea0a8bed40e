//! Facts about the downstream request that the access phase needs, read once:
//! host (lower-cased, port split off), normalised target, browser-ness,
//! client address. Nothing here trusts forwarding headers.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr};

use pingora::http::RequestHeader;

use super::path::{self, PathError, Target};

/// Why a request could not be read (400).
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("missing or invalid Host header")]
    BadHost,
    #[error("absolute-form target disagrees with Host header")]
    HostMismatch,
    #[error("method is not upper-case")]
    BadMethod,
    #[error("scheme is not the connection's own")]
    BadScheme,
    #[error("{0}")]
    Path(#[from] PathError),
}

/// The request as the access phase sees it.
#[derive(Debug)]
pub struct RequestInfo<'a> {
    /// Lower-cased host with port, as received (`app.localhost:8080`);
    /// borrowed unless it had to be lower-cased.
    pub authority: Cow<'a, str>,
    /// Length of the host part of `authority` (without `:port`).
    host_len: usize,
    pub target: Target<'a>,
    /// The upstream request line must be rebuilt from `target` (it was
    /// normalised, or the client sent an absolute-form target).
    pub rewrite: bool,
    pub browser: bool,
    pub client_ip: IpAddr,
    pub method_is_get_or_head: bool,
}

impl RequestInfo<'_> {
    /// Host without port.
    pub fn host(&self) -> &str {
        &self.authority[..self.host_len]
    }

    /// The port of `authority`, if it names one.
    pub fn port(&self) -> Option<u16> {
        self.authority
            .get(self.host_len + 1..)
            .and_then(|p| p.parse().ok())
    }

    /// The authority to forward to the origin (`Host`,
    /// `X-Forwarded-Host`): as received when its port is one the client
    /// could have reached us on (`expected`) or it has none, else the host
    /// alone. Host matching ignores the port, so `app.example.com:1`
    /// routes like `app.example.com`; the origin must not be handed a port
    /// no browser uses to build its links with.
    pub fn forwarded_authority(&self, expected: impl Fn(u16) -> bool) -> &str {
        match self.port() {
            Some(p) if !expected(p) => self.host(),
            _ => &self.authority,
        }
    }
}

/// Read the request header. `client_ip` is the TCP peer.
pub fn read<'a>(
    req: &'a RequestHeader,
    client_ip: Option<IpAddr>,
) -> Result<RequestInfo<'a>, RequestError> {
    let host_header = req
        .headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok());
    // Pingora keeps an absolute-form target verbatim (forwarded as is unless
    // the URI is reset) and leaves only its path in `uri`: read the authority
    // from the raw bytes so it can be checked against Host.
    let raw = req.raw_path();
    let absolute = !raw.starts_with(b"/");
    let raw_authority = if absolute {
        Some(absolute_authority(raw).ok_or(RequestError::BadHost)?)
    } else {
        None
    };
    let uri_authority = req.uri.authority().map(|a| a.as_str()).or(raw_authority);
    let authority = match (uri_authority, host_header) {
        (Some(a), Some(h)) if !a.eq_ignore_ascii_case(h) => return Err(RequestError::HostMismatch),
        (Some(a), _) => a,
        (None, Some(h)) => h,
        (None, None) => return Err(RequestError::BadHost),
    };
    let authority: Cow<'a, str> = if authority.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(authority.to_ascii_lowercase())
    } else {
        Cow::Borrowed(authority)
    };
    let host_len = split_host(&authority).ok_or(RequestError::BadHost)?;
    let raw_target = req.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let target = path::normalize(raw_target)?;
    let get_or_head = req.method == http::Method::GET || req.method == http::Method::HEAD;
    let browser = get_or_head && accepts_html(req);
    // Also rebuild when Pingora kept raw bytes that differ from the URI it
    // parsed (e.g. non-UTF-8): what is forwarded must be what was matched.
    let rewrite = absolute || matches!(target.path, Cow::Owned(_)) || raw != raw_target.as_bytes();
    Ok(RequestInfo {
        authority,
        host_len,
        target,
        rewrite,
        browser,
        client_ip: client_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        method_is_get_or_head: get_or_head,
    })
}

/// Whether the request line of a raw HTTP/1 head has a `#` in its target.
/// Pingora cuts a fragment off while parsing, so [`read`] never sees one;
/// DESIGN makes it a 400 (ambiguous, never guessed). Empty lines before
/// the request line are skipped, as the parser skips them.
pub fn request_line_has_fragment(head: &[u8]) -> bool {
    let start = head
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(head.len());
    let head = &head[start..];
    let line = &head[..memchr::memchr(b'\n', head).unwrap_or(head.len())];
    memchr::memchr(b'#', line).is_some()
}

/// Whether `method` may be forwarded: a registered method or an extension
/// method without lower-case letters. Methods are case-sensitive (RFC 9110
/// §9.1): `get` is not GET, and an origin or framework that folds case
/// would see a method the policy never looked at. The parsers already
/// make it a token.
pub fn method_ok(method: &http::Method) -> bool {
    !method.as_str().bytes().any(|b| b.is_ascii_lowercase())
}

/// Whether the scheme the request names, if it names one (an HTTP/2
/// `:scheme`, an HTTP/1 absolute-form target), is the connection's own:
/// `https` on a TLS listener, `http` on a plain one (case-insensitive).
pub fn scheme_ok(req: &RequestHeader, tls: bool) -> bool {
    let want = if tls { "https" } else { "http" };
    let raw = req.raw_path();
    let named = match req.uri.scheme_str() {
        Some(s) => Some(s),
        None if !raw.starts_with(b"/") => std::str::from_utf8(raw)
            .ok()
            .and_then(|r| r.split_once("://"))
            .map(|(s, _)| s),
        None => None,
    };
    named.is_none_or(|s| s.eq_ignore_ascii_case(want))
}

/// The authority of an absolute-form target (`http://host:port/path`).
fn absolute_authority(raw: &[u8]) -> Option<&str> {
    let s = std::str::from_utf8(raw).ok()?;
    let rest = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"))
        .or_else(|| s.strip_prefix("HTTP://"))
        .or_else(|| s.strip_prefix("HTTPS://"))?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let auth = &rest[..end];
    (!auth.is_empty() && !auth.contains('@')).then_some(auth)
}

/// Validate `host[:port]` and return the length of the host part.
pub fn split_host(authority: &str) -> Option<usize> {
    if authority.is_empty() || authority.len() > 255 {
        return None;
    }
    if authority.starts_with('[') {
        let end = authority.find(']')?;
        let rest = &authority[end + 1..];
        if !(rest.is_empty() || valid_port(rest.strip_prefix(':')?)) {
            return None;
        }
        authority[1..end].parse::<std::net::Ipv6Addr>().ok()?;
        return Some(end + 1);
    }
    let (host, port) = match authority.rfind(':') {
        Some(i) => (&authority[..i], Some(&authority[i + 1..])),
        None => (authority, None),
    };
    if let Some(p) = port {
        if !valid_port(p) {
            return None;
        }
    }
    valid_reg_name(host.as_bytes()).then_some(host.len())
}

/// Letters, digits, `-`, `_` and `.`, not empty, not starting with `.`,
/// no `..`: one pass over the bytes.
fn valid_reg_name(host: &[u8]) -> bool {
    let mut prev = b'.';
    for &b in host {
        let ok = b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || (b == b'.' && prev != b'.');
        if !ok {
            return false;
        }
        prev = b;
    }
    !host.is_empty()
}

fn valid_port(p: &str) -> bool {
    !p.is_empty()
        && p.len() <= 5
        && p.bytes().all(|b| b.is_ascii_digit())
        && p.parse::<u16>().is_ok()
}

/// Whether `req` is a browser request (DESIGN: GET or HEAD whose `Accept`
/// lists `text/html` with q > 0), also for a request [`read`] refused.
pub fn is_browser(req: &RequestHeader) -> bool {
    (req.method == http::Method::GET || req.method == http::Method::HEAD) && accepts_html(req)
}

/// `Accept` lists `text/html` with q > 0.
pub(crate) fn accepts_html(req: &RequestHeader) -> bool {
    req.headers
        .get_all(http::header::ACCEPT)
        .iter()
        // Most API clients never mention text/html: skip the item parse.
        .filter(|v| mentions_text_html(v.as_bytes()))
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';');
            let media = parts.next().unwrap_or("").trim();
            if !media.eq_ignore_ascii_case("text/html") {
                return false;
            }
            parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .all(|q| q.trim().parse::<f32>().map(|q| q > 0.0).unwrap_or(false))
        })
}

/// Whether `text/html` (any case) occurs anywhere in `v`: a necessary
/// condition for [`accepts_html`], found with one `memchr` pass over `/`.
fn mentions_text_html(v: &[u8]) -> bool {
    memchr::memchr_iter(b'/', v).any(|i| {
        i >= 4
            && v[i - 4..i].eq_ignore_ascii_case(b"text")
            && v.get(i + 1..i + 5)
                .is_some_and(|h| h.eq_ignore_ascii_case(b"html"))
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn lower_case_methods_are_refused_and_upper_case_extensions_pass() {
        for (m, ok) in [
            ("GET", true),
            ("PROPFIND", true),
            ("get", false),
            ("Post", false),
        ] {
            let m = http::Method::from_bytes(m.as_bytes()).unwrap();
            assert_eq!(super::method_ok(&m), ok, "{m}");
        }
    }

    #[test]
    fn a_named_scheme_must_be_the_connections_own() {
        use pingora::http::RequestHeader;
        let h2 = |scheme: &str| {
            let mut r = RequestHeader::build("GET", b"/", None).unwrap();
            r.set_uri(format!("{scheme}://app.localhost/x").parse().unwrap());
            r
        };
        assert!(super::scheme_ok(&h2("https"), true));
        assert!(!super::scheme_ok(&h2("http"), true));
        assert!(!super::scheme_ok(&h2("javascript"), true));
        assert!(super::scheme_ok(&h2("http"), false));
        let origin = RequestHeader::build("GET", b"/x", None).unwrap();
        assert!(super::scheme_ok(&origin, true));
        let absolute = RequestHeader::build("GET", b"https://app.localhost/x", None).unwrap();
        assert!(super::scheme_ok(&absolute, true));
        assert!(!super::scheme_ok(&absolute, false));
    }

    use super::*;

    #[test]
    fn a_port_not_expected_is_dropped_from_the_forwarded_authority() {
        let expected = |p: u16| p == 8443;
        for (host, forwarded) in [
            ("app.example.com:1", "app.example.com"),
            ("app.example.com:8443", "app.example.com:8443"),
            ("app.example.com", "app.example.com"),
            ("[::1]:1", "[::1]"),
            ("[::1]:8443", "[::1]:8443"),
        ] {
            let r = req("/", &[("host", host)]);
            let info = read(&r, None).unwrap();
            assert_eq!(info.forwarded_authority(expected), forwarded, "{host}");
        }
    }

    fn req(uri: &str, headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("GET", uri.as_bytes(), None).unwrap();
        for (k, v) in headers {
            r.append_header(k.to_string(), *v).unwrap();
        }
        r
    }

    #[test]
    fn host_is_lower_cased_and_port_split() {
        let r = req("/x", &[("Host", "App.Example.COM:8443")]);
        let info = read(&r, None).unwrap();
        assert_eq!(info.host(), "app.example.com");
        assert_eq!(info.authority, "app.example.com:8443");
    }

    #[test]
    fn missing_host_is_rejected() {
        let r = req("/x", &[]);
        assert!(matches!(read(&r, None), Err(RequestError::BadHost)));
    }

    #[test]
    fn host_with_path_characters_is_rejected() {
        for h in ["a/b", "a@b", "a b", "", "x:99999", "x:"] {
            let r = req("/x", &[("Host", h)]);
            assert!(read(&r, None).is_err(), "{h}");
        }
    }

    #[test]
    fn absolute_form_must_agree_with_host() {
        let r = req("http://evil.com/x", &[("Host", "app.example.com")]);
        assert!(matches!(read(&r, None), Err(RequestError::HostMismatch)));
    }

    #[test]
    fn browser_needs_text_html_with_positive_q() {
        let r = req("/", &[("Host", "a"), ("Accept", "text/html,*/*")]);
        assert!(read(&r, None).unwrap().browser);
        let r = req("/", &[("Host", "a"), ("Accept", "text/html;q=0")]);
        assert!(!read(&r, None).unwrap().browser);
        let r = req("/", &[("Host", "a"), ("Accept", "application/json")]);
        assert!(!read(&r, None).unwrap().browser);
    }

    #[test]
    fn host_with_empty_labels_is_rejected() {
        for h in [".a", "a..b", "..", ".", "a.b..", "a..:80"] {
            assert_eq!(split_host(h), None, "{h}");
        }
        for (h, len) in [("a.b", 3), ("a_b-c.d", 7), ("a.b.", 4), ("x1:8080", 2)] {
            assert_eq!(split_host(h), Some(len), "{h}");
        }
    }

    #[test]
    fn browser_accept_is_matched_in_any_case_and_position() {
        for accept in [
            "TEXT/HTML",
            "application/json, Text/Html;q=0.5",
            "*/*;q=0.1,text/html",
        ] {
            let r = req("/", &[("Host", "a"), ("Accept", accept)]);
            assert!(read(&r, None).unwrap().browser, "{accept}");
        }
        for accept in [
            "text/htm",
            "application/xhtml+xml",
            "text/plain, html/text",
            "/html",
        ] {
            let r = req("/", &[("Host", "a"), ("Accept", accept)]);
            assert!(!read(&r, None).unwrap().browser, "{accept}");
        }
    }

    #[test]
    fn text_html_is_found_only_as_a_media_type_substring() {
        assert!(mentions_text_html(b"text/html"));
        assert!(mentions_text_html(b"a/b, TeXt/HtMl"));
        assert!(!mentions_text_html(b"text/htm"));
        assert!(!mentions_text_html(b"/html"));
        assert!(!mentions_text_html(b"text/"));
        assert!(!mentions_text_html(b""));
    }

    #[test]
    fn absolute_form_authority_is_checked_against_host() {
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        r.set_raw_path(b"http://other.localhost:8080/x").unwrap();
        r.append_header("Host", "app.localhost:8080").unwrap();
        assert!(matches!(read(&r, None), Err(RequestError::HostMismatch)));
    }

    #[test]
    fn absolute_form_for_the_same_host_is_rewritten_to_origin_form() {
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        r.set_raw_path(b"http://app.localhost:8080/x?y=1").unwrap();
        r.append_header("Host", "app.localhost:8080").unwrap();
        let info = read(&r, None).unwrap();
        assert!(info.rewrite);
        assert_eq!(info.target.to_uri_string(), "/x?y=1");
    }

    #[test]
    fn clean_origin_form_is_not_rewritten() {
        let r = req("/x?y=1", &[("Host", "a")]);
        assert!(!read(&r, None).unwrap().rewrite);
    }

    #[test]
    fn ipv6_literal_host_is_accepted() {
        let r = req("/", &[("Host", "[::1]:8080")]);
        assert_eq!(read(&r, None).unwrap().host(), "[::1]");
    }

    #[test]
    fn fragment_is_found_in_the_request_line_only() {
        assert!(request_line_has_fragment(
            b"GET /a#b HTTP/1.1\r\nHost: x\r\n\r\n"
        ));
        assert!(request_line_has_fragment(b"GET /a?q#b HTTP/1.1\r\n"));
        assert!(!request_line_has_fragment(
            b"GET /a HTTP/1.1\r\nX-Note: #1\r\n\r\n"
        ));
        assert!(request_line_has_fragment(
            b"\r\n\r\nGET /a#b HTTP/1.1\r\n\r\n"
        ));
        assert!(!request_line_has_fragment(
            b"\r\nGET /a HTTP/1.1\r\nX: #\r\n"
        ));
    }
}
