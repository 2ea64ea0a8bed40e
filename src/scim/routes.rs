//! Which methods each SCIM path serves (RFC 7644 §3.2, §3.4.3, §4): the
//! table behind `405 Method Not Allowed` and its `Allow` header, consulted
//! before a request body is read.

use http::Method;

/// The methods `endpoint` (first path segment after the SCIM base) and
/// `id` (the rest, if any) serve, as an `Allow` header value; `None` for a
/// path that is no SCIM endpoint (404). Names are case-insensitive.
pub fn allowed(endpoint: &str, id: Option<&str>) -> Option<&'static str> {
    let is = |name: &str| endpoint.eq_ignore_ascii_case(name);
    let search = |id: Option<&str>| id.is_some_and(|i| i.eq_ignore_ascii_case(".search"));
    if endpoint.is_empty() {
        // RFC 7644 §3.4.2.1: a query on the server root spans every type.
        return Some("GET, HEAD");
    }
    if is(".search") && id.is_none() {
        return Some("POST");
    }
    if is("Users") || is("Groups") {
        return Some(match id {
            None => "GET, HEAD, POST",
            Some(_) if search(id) => "POST",
            Some(_) => "GET, HEAD, PUT, PATCH, DELETE",
        });
    }
    // Discovery documents (and anything below them) are read-only.
    if is("ServiceProviderConfig") || is("ResourceTypes") || is("Schemas") {
        return Some("GET, HEAD");
    }
    if is("Bulk") && id.is_none() {
        return Some("POST");
    }
    None
}

/// Whether `method` is in an `Allow` list from [`allowed`].
pub fn permits(allow: &str, method: &Method) -> bool {
    allow.split(", ").any(|m| m == method.as_str())
}

/// Whether the path is a `.search` (root or per resource type).
pub fn is_search(endpoint: &str, id: Option<&str>) -> bool {
    match id {
        None => endpoint.eq_ignore_ascii_case(".search"),
        Some(id) => id.eq_ignore_ascii_case(".search"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_documents_allow_only_reads_below_them_too() {
        for e in ["ServiceProviderConfig", "resourcetypes", "Schemas"] {
            for id in [None, Some("User"), Some("a/b")] {
                let allow = allowed(e, id).unwrap();
                assert_eq!(allow, "GET, HEAD");
                for m in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
                    assert!(!permits(allow, &m), "{e} {id:?} {m}");
                }
                assert!(permits(allow, &Method::GET));
            }
        }
    }

    #[test]
    fn search_is_post_only_on_root_users_and_groups() {
        for (e, id) in [
            (".search", None),
            ("Users", Some(".search")),
            ("Groups", Some(".SEARCH")),
        ] {
            assert_eq!(allowed(e, id), Some("POST"), "{e} {id:?}");
            assert!(is_search(e, id));
        }
        assert!(!is_search("Users", Some("123")));
        assert_eq!(allowed("", None), Some("GET, HEAD"));
    }

    #[test]
    fn resources_and_unknown_paths() {
        assert_eq!(allowed("Users", None), Some("GET, HEAD, POST"));
        assert_eq!(
            allowed("Groups", Some("g1")),
            Some("GET, HEAD, PUT, PATCH, DELETE")
        );
        assert_eq!(allowed("Bulk", None), Some("POST"));
        assert_eq!(allowed("Nope", None), None);
        assert_eq!(allowed(".search", Some("x")), None);
    }
}
