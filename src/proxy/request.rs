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
    pub browser: bool,
    pub client_ip: IpAddr,
    pub method_is_get_or_head: bool,
}

impl RequestInfo<'_> {
    /// Host without port.
    pub fn host(&self) -> &str {
        &self.authority[..self.host_len]
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
    let authority = match (req.uri.authority(), host_header) {
        (Some(a), Some(h)) if !a.as_str().eq_ignore_ascii_case(h) => {
            return Err(RequestError::HostMismatch)
        }
        (Some(a), _) => a.as_str(),
        (None, Some(h)) => h,
        (None, None) => return Err(RequestError::BadHost),
    };
    let authority: Cow<'a, str> = if authority.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(authority.to_ascii_lowercase())
    } else {
        Cow::Borrowed(authority)
    };
    let host_len = split_host(&authority).ok_or(RequestError::BadHost)?;
    let raw_target = req
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let target = path::normalize(raw_target)?;
    let get_or_head = req.method == http::Method::GET || req.method == http::Method::HEAD;
    let browser = get_or_head && accepts_html(req);
    Ok(RequestInfo {
        authority,
        host_len,
        target,
        browser,
        client_ip: client_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        method_is_get_or_head: get_or_head,
    })
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
    let ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
        && !host.starts_with('.')
        && !host.contains("..");
    ok.then_some(host.len())
}

fn valid_port(p: &str) -> bool {
    !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) && p.parse::<u16>().is_ok()
}

/// A browser request: `Accept` lists `text/html` with q > 0.
fn accepts_html(req: &RequestHeader) -> bool {
    req.headers
        .get_all(http::header::ACCEPT)
        .iter()
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn ipv6_literal_host_is_accepted() {
        let r = req("/", &[("Host", "[::1]:8080")]);
        assert_eq!(read(&r, None).unwrap().host(), "[::1]");
    }
}
