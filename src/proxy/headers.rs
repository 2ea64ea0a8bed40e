//! Header hygiene on the way upstream (SECURITY.md rule 4): headers named in
//! `Connection` and hop-by-hop headers go first, then every client-supplied
//! copy of an identity or service-token header in any spelling (case, `_` or
//! `.` for `-`), and only then the proxy adds its own.

use pingora::http::RequestHeader;

use crate::config::HeaderNames;

/// Prefix of forwarded custom-claim headers.
pub const CLAIM_HEADER_PREFIX: &str = "x-portcullis-claim-";

/// Hop-by-hop headers removed before forwarding. `upgrade`, `te` and
/// `transfer-encoding` are left to Pingora, which owns framing and upgrades.
const HOP_BY_HOP: &[&str] = &[
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "trailer",
];

/// Headers that must never come from the client, in normalised form,
/// grouped by length: a request header is compared only with the names of
/// its own length, so the list can grow without a cost per request.
#[derive(Debug, Clone)]
pub struct Protected {
    by_len: Vec<Vec<String>>,
}

/// Lower-case, with `_` and `.` folded to `-`.
pub fn normalize_name(name: &str) -> String {
    name.bytes().map(|b| fold(b) as char).collect()
}

impl Protected {
    pub fn new(h: &HeaderNames) -> Protected {
        let mut names: Vec<String> = [
            h.assertion.as_str(),
            h.email.as_str(),
            "cf-access-client-id",
            "cf-access-client-secret",
            "cf-access-token",
            "cf-access-authenticated-user-email",
            "cf-access-jwt-assertion",
            "x-portcullis-groups",
            "x-forwarded-for",
            "x-forwarded-host",
            "x-forwarded-proto",
            "x-real-ip",
            "forwarded",
            // Routing and client-address headers some origins and
            // frameworks trust from their proxy (IIS URL Rewrite, Symfony,
            // Rails): only portcullis decides what was requested, and by
            // whom (SECURITY.md rules 1 and 3).
            "x-original-url",
            "x-original-uri",
            "x-rewrite-url",
            "x-forwarded-uri",
            "x-forwarded-prefix",
            "x-forwarded-port",
            "x-forwarded-scheme",
            "x-forwarded-ssl",
            "x-forwarded-server",
            "x-client-ip",
            "true-client-ip",
            "cf-connecting-ip",
            "x-original-host",
            "x-host",
            "x-forwarded-path",
            "x-envoy-original-path",
            // Identity headers of other proxies (oauth2-proxy, nginx
            // auth_request, Apache, client-certificate offloaders), which
            // apps migrated to portcullis may still trust.
            "x-forwarded-user",
            "x-forwarded-email",
            "x-forwarded-groups",
            "x-forwarded-preferred-username",
            "x-forwarded-access-token",
            "x-auth-request-user",
            "x-auth-request-email",
            "x-auth-request-groups",
            "x-auth-request-preferred-username",
            "x-auth-request-access-token",
            "remote-user",
            "x-remote-user",
            "x-forwarded-client-cert",
            "x-client-cert",
            "ssl-client-cert",
        ]
        .iter()
        .map(|n| normalize_name(n))
        .collect();
        if let Some(g) = &h.groups {
            names.push(normalize_name(g));
        }
        names.sort();
        names.dedup();
        let mut by_len: Vec<Vec<String>> = Vec::new();
        for n in names {
            if by_len.len() <= n.len() {
                by_len.resize(n.len() + 1, Vec::new());
            }
            by_len[n.len()].push(n);
        }
        Protected { by_len }
    }

    /// Whether a header name is protected, comparing in normalised form
    /// without allocating.
    fn is_protected(&self, name: &str) -> bool {
        let n = name.len();
        let b = name.as_bytes();
        let prefix = CLAIM_HEADER_PREFIX.as_bytes();
        (n >= prefix.len()
            && b[..prefix.len()]
                .iter()
                .map(|&c| fold(c))
                .eq(prefix.iter().copied()))
            || self.by_len.get(n).is_some_and(|same| {
                same.iter()
                    .any(|p| b.iter().map(|&c| fold(c)).eq(p.bytes()))
            })
    }

    /// Remove Connection-nominated and hop-by-hop headers, then every
    /// protected header in any spelling. Allocates only when there is
    /// something to remove.
    pub fn strip(&self, req: &mut RequestHeader) {
        let mut doomed: Vec<http::HeaderName> = Vec::new();
        for v in req.headers.get_all(http::header::CONNECTION).iter() {
            for tok in v.as_bytes().split(|&b| b == b',') {
                let tok = tok.trim_ascii();
                if tok.is_empty()
                    || tok.eq_ignore_ascii_case(b"upgrade")
                    || tok.eq_ignore_ascii_case(b"keep-alive")
                    || tok.eq_ignore_ascii_case(b"close")
                {
                    continue;
                }
                if let Ok(name) = http::HeaderName::from_bytes(tok) {
                    doomed.push(name);
                }
            }
        }
        for name in req.headers.keys() {
            if self.is_protected(name.as_str()) {
                doomed.push(name.clone());
            }
        }
        for name in HOP_BY_HOP {
            if req.headers.contains_key(*name) {
                while req.remove_header(*name).is_some() {}
            }
        }
        for name in doomed {
            while req.remove_header(&name).is_some() {}
        }
    }
}

/// One `cookie` header for the origin: an HTTP/2 client may send each
/// cookie as its own `cookie` field, and RFC 9113 §8.2.3 has them joined
/// with `"; "` before they go to an HTTP/1.1 origin (which may read only
/// the first line). Nothing to do for one header or none.
pub fn join_cookies(req: &mut RequestHeader) -> pingora::Result<()> {
    let values = req.headers.get_all(http::header::COOKIE);
    if values.iter().nth(1).is_none() {
        return Ok(());
    }
    let mut joined = Vec::new();
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(v.as_bytes());
    }
    // Valid values joined by "; " are a valid value.
    let joined = http::HeaderValue::from_bytes(&joined)
        .map_err(|e| pingora::Error::because(pingora::ErrorType::InvalidHTTPHeader, "cookie", e))?;
    req.insert_header(http::header::COOKIE, joined)
}

fn fold(b: u8) -> u8 {
    match b {
        b'_' | b'.' => b'-',
        b => b.to_ascii_lowercase(),
    }
}

/// `X-Portcullis-Groups` value: sorted, de-duplicated, comma-separated, with
/// `%` and `,` inside a name percent-encoded. Input must be sorted+deduped.
pub fn groups_value<S: AsRef<str>>(groups: &[S]) -> String {
    let mut out = String::with_capacity(groups.iter().map(|g| g.as_ref().len() + 1).sum());
    for (i, g) in groups.iter().map(AsRef::as_ref).enumerate() {
        if i > 0 {
            out.push(',');
        }
        for c in g.chars() {
            match c {
                '%' => out.push_str("%25"),
                ',' => out.push_str("%2C"),
                c if c.is_control() => {}
                c => out.push(c),
            }
        }
    }
    out
}

/// The `X-Forwarded-For` value of a peer address. IPv4, the usual case, is
/// written digit by digit: `Ipv4Addr`'s `Display` goes through the
/// formatter's padding machinery, about 0.1 µs on every forwarded request.
pub fn ip_value(ip: std::net::IpAddr) -> http::HeaderValue {
    let v4 = match ip {
        std::net::IpAddr::V4(v4) => v4,
        std::net::IpAddr::V6(v6) => {
            return http::HeaderValue::from_str(&v6.to_string())
                .expect("an IPv6 address is a header value")
        }
    };
    let mut buf = [0u8; 15];
    let mut n = 0;
    for (i, octet) in v4.octets().into_iter().enumerate() {
        if i > 0 {
            buf[n] = b'.';
            n += 1;
        }
        if octet >= 100 {
            buf[n] = b'0' + octet / 100;
            n += 1;
        }
        if octet >= 10 {
            buf[n] = b'0' + octet / 10 % 10;
            n += 1;
        }
        buf[n] = b'0' + octet % 10;
        n += 1;
    }
    http::HeaderValue::from_bytes(&buf[..n]).expect("digits and dots are a header value")
}

#[cfg(test)]
mod tests {
    #[test]
    fn several_cookie_headers_become_one_joined_by_semicolon_space() {
        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.append_header("cookie", "a=1").unwrap();
        req.append_header("x-other", "x").unwrap();
        req.append_header("cookie", "b=2; c=3").unwrap();
        super::join_cookies(&mut req).unwrap();
        let all: Vec<_> = req.headers.get_all("cookie").iter().collect();
        assert_eq!(all, ["a=1; b=2; c=3"]);
        let mut one = RequestHeader::build("GET", b"/", None).unwrap();
        one.append_header("cookie", "a=1").unwrap();
        super::join_cookies(&mut one).unwrap();
        assert_eq!(one.headers.get_all("cookie").iter().count(), 1);
    }

    use super::*;

    #[test]
    fn ip_values_are_what_display_writes() {
        let ips = [
            "0.0.0.0",
            "1.2.3.4",
            "9.10.99.100",
            "10.0.0.1",
            "127.0.0.1",
            "192.168.100.7",
            "199.250.255.1",
            "255.255.255.255",
            "::1",
            "2001:db8::7",
            "::ffff:10.1.2.3",
        ];
        for ip in ips {
            let ip: std::net::IpAddr = ip.parse().unwrap();
            assert_eq!(ip_value(ip).to_str().unwrap(), ip.to_string(), "{ip}");
        }
        for a in (0..=255u8).step_by(7) {
            let ip = std::net::IpAddr::from([a, 255 - a, a / 3, 100]);
            assert_eq!(ip_value(ip).to_str().unwrap(), ip.to_string());
        }
    }

    fn names() -> HeaderNames {
        HeaderNames {
            assertion: "Cf-Access-Jwt-Assertion".into(),
            email: "Cf-Access-Authenticated-User-Email".into(),
            groups: Some("X-Portcullis-Groups".into()),
            forward_claims: true,
        }
    }

    #[test]
    fn identity_headers_are_stripped_in_every_spelling() {
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        for n in [
            "cf-access-authenticated-user-email",
            "CF_ACCESS_AUTHENTICATED_USER_EMAIL",
            "Cf.Access.Jwt.Assertion",
            "x_portcullis_groups",
            "X-Portcullis-Claim-Department",
            "CF-Access-Client-Secret",
        ] {
            r.append_header(n.to_string(), "forged").unwrap();
            r.append_header(n.to_string(), "forged2").unwrap();
        }
        r.append_header("Accept", "x").unwrap();
        Protected::new(&names()).strip(&mut r);
        let left: Vec<_> = r.headers.keys().map(|k| k.as_str().to_string()).collect();
        assert_eq!(left, ["accept"]);
    }

    #[test]
    fn connection_nominated_headers_are_removed() {
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        r.append_header("Connection", "x-keep-me-not, Upgrade")
            .unwrap();
        r.append_header("X-Keep-Me-Not", "1").unwrap();
        r.append_header("Keep-Alive", "5").unwrap();
        Protected::new(&names()).strip(&mut r);
        assert!(r.headers.get("x-keep-me-not").is_none());
        assert!(r.headers.get("keep-alive").is_none());
    }

    #[test]
    fn groups_header_escapes_separators() {
        let g = vec!["a,b".to_string(), "eng".to_string(), "x%y".to_string()];
        assert_eq!(groups_value(&g), "a%2Cb,eng,x%25y");
    }
}
