//! Syntax checks for host names, `host[:port]` values, URL path prefixes,
//! cookie and header names; shared by the config and policy validators.

/// A DNS host name: dot-separated labels of `a-z`, `0-9`, `-` (1–63 chars,
/// no leading or trailing `-`), at most 253 chars, no trailing dot.
/// Expects lower case; callers lower-case first.
pub fn is_valid_hostname(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

/// Validate and lower-case `host[:port]` (a DNS name or IPv4 address).
pub fn parse_host_port(value: &str) -> Result<String, String> {
    let v = value.trim().to_ascii_lowercase();
    if v.contains("://") {
        return Err(format!(
            "`{value}` is a URL; expected a host name with an optional port, e.g. `auth.example.com`"
        ));
    }
    let (host, port) = match v.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (v.as_str(), None),
    };
    if let Some(p) = port {
        match p.parse::<u16>() {
            Ok(n) if n > 0 => {}
            _ => return Err(format!("invalid port `{p}` in `{value}`")),
        }
    }
    let is_ipv4 = host.parse::<std::net::Ipv4Addr>().is_ok();
    if !is_ipv4 && !is_valid_hostname(host) {
        return Err(format!(
            "invalid host `{value}`: expected a host name with an optional port, e.g. `auth.example.com` or `auth.localhost:8080`"
        ));
    }
    Ok(v)
}

/// A path prefix such as `/cdn-cgi/access`: starts with `/`, no trailing
/// `/`, no empty, `.` or `..` segments, only unreserved characters.
pub fn check_path_prefix(value: &str) -> Result<(), String> {
    if !value.starts_with('/') || value.len() < 2 {
        return Err(format!(
            "`{value}` must start with `/` and name at least one segment"
        ));
    }
    if value.ends_with('/') {
        return Err(format!("`{value}` must not end with `/`"));
    }
    for seg in value[1..].split('/') {
        if seg.is_empty() || seg == "." || seg == ".." {
            return Err(format!("`{value}` has an empty, `.` or `..` segment"));
        }
        if !seg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
        {
            return Err(format!(
                "`{value}` may only contain letters, digits, `-`, `.`, `_`, `~` and `/`"
            ));
        }
    }
    Ok(())
}

/// A cookie name (RFC 6265 token).
pub fn check_cookie_name(value: &str) -> Result<(), String> {
    let ok = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "invalid cookie name `{value}`: use letters, digits and `-`, `_`, `.`"
        ))
    }
}

/// An HTTP header name (RFC 9110 token).
pub fn check_header_name(value: &str) -> Result<(), String> {
    match http::HeaderName::from_bytes(value.as_bytes()) {
        Ok(_) => Ok(()),
        Err(_) => Err(format!("invalid header name `{value}`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_accepts_names_ips_and_ports() {
        assert_eq!(
            parse_host_port("Auth.Example.COM").unwrap(),
            "auth.example.com"
        );
        assert_eq!(
            parse_host_port("auth.localhost:8080").unwrap(),
            "auth.localhost:8080"
        );
        assert_eq!(parse_host_port("127.0.0.1:9000").unwrap(), "127.0.0.1:9000");
    }

    #[test]
    fn host_port_rejects_urls_paths_and_bad_ports() {
        let cases = [
            ("https://auth.example.com", "`https://auth.example.com` is a URL; expected a host name with an optional port, e.g. `auth.example.com`"),
            ("auth.example.com:0", "invalid port `0` in `auth.example.com:0`"),
            ("auth.example.com:99999", "invalid port `99999` in `auth.example.com:99999`"),
            ("auth.example.com/x", "invalid host `auth.example.com/x`: expected a host name with an optional port, e.g. `auth.example.com` or `auth.localhost:8080`"),
            ("-bad.example.com", "invalid host `-bad.example.com`: expected a host name with an optional port, e.g. `auth.example.com` or `auth.localhost:8080`"),
        ];
        for (input, msg) in cases {
            assert_eq!(parse_host_port(input).unwrap_err(), msg, "{input}");
        }
    }

    #[test]
    fn path_prefix_rules() {
        assert!(check_path_prefix("/cdn-cgi/access").is_ok());
        assert!(check_path_prefix("/").is_err());
        assert!(check_path_prefix("/a/").is_err());
        assert!(check_path_prefix("/a//b").is_err());
        assert!(check_path_prefix("/a/../b").is_err());
        assert!(check_path_prefix("/a%2f").is_err());
        assert!(check_path_prefix("scim").is_err());
    }

    #[test]
    fn cookie_and_header_names() {
        assert!(check_cookie_name("CF_Authorization").is_ok());
        assert!(check_cookie_name("bad name").is_err());
        assert!(check_cookie_name("a;b").is_err());
        assert!(check_header_name("X-Portcullis-Groups").is_ok());
        assert!(check_header_name("X Groups").is_err());
    }
}
