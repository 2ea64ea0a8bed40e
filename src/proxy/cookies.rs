//! Reading request cookies and building `Set-Cookie` values for the proxy's
//! cookies (HttpOnly, SameSite=Lax, host-only, Secure on TLS).

use pingora::http::RequestHeader;

/// Every value of cookie `name` the browser sent (there may be several, from
/// different paths), in header order. Finds the `;` separators with memchr
/// and checks UTF-8 only of the values it returns, not of the whole (often
/// long) header.
pub fn values<'a>(req: &'a RequestHeader, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    req.headers
        .get_all(http::header::COOKIE)
        .iter()
        .flat_map(|v| Pairs(v.as_bytes()))
        .filter_map(move |pair| {
            let eq = memchr::memchr(b'=', pair)?;
            let (k, v) = (&pair[..eq], &pair[eq + 1..]);
            if trim(k) != name.as_bytes() {
                return None;
            }
            let v = trim(v);
            let v = v
                .strip_prefix(b"\"")
                .and_then(|v| v.strip_suffix(b"\""))
                .unwrap_or(v);
            std::str::from_utf8(v).ok()
        })
}

/// The `;`-separated pairs of one `Cookie` header value.
struct Pairs<'a>(&'a [u8]);

impl<'a> Iterator for Pairs<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.0.is_empty() {
            return None;
        }
        match memchr::memchr(b';', self.0) {
            Some(i) => {
                let pair = &self.0[..i];
                self.0 = &self.0[i + 1..];
                Some(pair)
            }
            None => Some(std::mem::take(&mut self.0)),
        }
    }
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &b[start..end]
}

/// First value of cookie `name`.
pub fn first<'a>(req: &'a RequestHeader, name: &'a str) -> Option<&'a str> {
    values(req, name).next()
}

/// A `Set-Cookie` header value. `max_age = 0` deletes the cookie.
pub fn set_cookie(name: &str, value: &str, path: &str, max_age: i64, secure: bool) -> String {
    let mut c = cookie::Cookie::new(name, value);
    c.set_path(path.to_string());
    c.set_http_only(true);
    c.set_same_site(cookie::SameSite::Lax);
    c.set_secure(secure);
    c.set_max_age(cookie::time::Duration::seconds(max_age.max(0)));
    c.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cookie_of_a_name_is_returned() {
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        r.append_header("Cookie", "a=1; CF_Authorization=x; b=2")
            .unwrap();
        r.append_header("Cookie", "CF_Authorization=y").unwrap();
        let v: Vec<_> = values(&r, "CF_Authorization").collect();
        assert_eq!(v, ["x", "y"]);
        assert_eq!(first(&r, "b"), Some("2"));
        assert_eq!(first(&r, "CF_Authorization_sso"), None);
    }

    #[test]
    fn odd_separators_whitespace_quotes_and_equals_in_values_are_handled() {
        let mut r = RequestHeader::build("GET", b"/", None).unwrap();
        r.append_header("Cookie", ";; n = \"q\" ;x=a=b;;n=;noval; n=last;")
            .unwrap();
        let v: Vec<_> = values(&r, "n").collect();
        assert_eq!(v, ["q", "", "last"]);
        assert_eq!(first(&r, "x"), Some("a=b"));
        assert_eq!(first(&r, "noval"), None);
    }

    #[test]
    fn set_cookie_carries_the_security_attributes() {
        let s = set_cookie("n", "v", "/admin", 60, true);
        for part in [
            "n=v",
            "HttpOnly",
            "SameSite=Lax",
            "Secure",
            "Path=/admin",
            "Max-Age=60",
        ] {
            assert!(s.contains(part), "{s} lacks {part}");
        }
        assert!(!s.contains("Domain"));
        assert!(!set_cookie("n", "v", "/", 1, false).contains("Secure"));
    }
}
