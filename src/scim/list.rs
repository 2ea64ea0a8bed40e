//! List requests (RFC 7644 §3.4.2): the `filter`, `startIndex`, `count`,
//! `attributes` and `excludedAttributes` query parameters, and the
//! `ListResponse` document with integer counts.

use serde_json::{json, Value};

use super::error::ScimError;
use super::model::Page;

/// `urn:ietf:params:scim:api:messages:2.0:ListResponse`
pub const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
/// Most resources in one page (advertised as `filter.maxResults`), also
/// the page size when `count` is absent.
pub const MAX_RESULTS: i64 = 1000;

/// Query parameters of a SCIM request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Params {
    pub filter: Option<String>,
    /// 1-based.
    pub start_index: i64,
    pub count: i64,
    pub attributes: Option<String>,
    pub excluded: Option<String>,
}

impl Params {
    pub fn page(&self) -> Page {
        Page {
            offset: self.start_index - 1,
            limit: self.count,
        }
    }
}

/// Parse the query string (`+` and `%20` both mean a space). Unknown
/// parameters are ignored; the first of a repeated one counts.
pub fn parse(query: Option<&str>) -> Result<Params, ScimError> {
    let mut p = Params {
        start_index: 1,
        count: MAX_RESULTS,
        ..Params::default()
    };
    let mut seen: Vec<String> = Vec::new();
    for (k, v) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let key = k.to_ascii_lowercase();
        if seen.contains(&key) {
            continue;
        }
        seen.push(key.clone());
        match key.as_str() {
            // An empty filter is refused, never read as "everything"
            // (OKTA-SCIM.md §4.3).
            "filter" if v.trim().is_empty() => {
                return Err(ScimError::invalid_filter("the filter is empty"))
            }
            "filter" => p.filter = Some(v.into_owned()),
            "startindex" => p.start_index = integer("startIndex", &v)?.max(1),
            "count" => p.count = integer("count", &v)?.clamp(0, MAX_RESULTS),
            "attributes" => p.attributes = Some(v.into_owned()),
            "excludedattributes" => p.excluded = Some(v.into_owned()),
            _ => {}
        }
    }
    Ok(p)
}

fn integer(name: &str, v: &str) -> Result<i64, ScimError> {
    let v = v.trim();
    match v.parse::<i64>() {
        Ok(n) => Ok(n),
        // Larger than i64: as large (or small) as allowed.
        Err(_)
            if !v.is_empty()
                && v.trim_start_matches('-')
                    .bytes()
                    .all(|b| b.is_ascii_digit()) =>
        {
            Ok(if v.starts_with('-') {
                i64::MIN
            } else {
                i64::MAX
            })
        }
        Err(_) => Err(ScimError::invalid_value(format!(
            "{name} must be an integer, got {v:?}"
        ))),
    }
}

/// The ListResponse document.
pub fn response(total: i64, start_index: i64, resources: Vec<Value>) -> Value {
    json!({
        "schemas": [LIST_SCHEMA],
        "totalResults": total,
        "startIndex": start_index,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn okta_lookup_query_parses() {
        let p = parse(Some(
            "filter=userName%20eq%20%22test.user%40okta.local%22&startIndex=1&count=100",
        ))
        .unwrap();
        assert_eq!(
            p.filter.as_deref(),
            Some(r#"userName eq "test.user@okta.local""#)
        );
        assert_eq!((p.start_index, p.count), (1, 100));
        assert_eq!(
            p.page(),
            Page {
                offset: 0,
                limit: 100
            }
        );
    }

    #[test]
    fn empty_filter_is_invalid_filter() {
        for q in ["filter=", "filter=%20%20", "filter=+&count=0"] {
            let e = parse(Some(q)).unwrap_err();
            assert_eq!((e.status, e.scim_type), (400, Some("invalidFilter")), "{q}");
        }
    }

    #[test]
    fn plus_means_space() {
        let p = parse(Some("filter=displayName+eq+%22a%22")).unwrap();
        assert_eq!(p.filter.as_deref(), Some(r#"displayName eq "a""#));
    }

    #[test]
    fn defaults_and_clamping() {
        let p = parse(None).unwrap();
        assert_eq!((p.start_index, p.count, p.filter), (1, MAX_RESULTS, None));
        let p = parse(Some("startIndex=0&count=-5")).unwrap();
        assert_eq!((p.start_index, p.count), (1, 0));
        let p = parse(Some("startIndex=-9&count=100000")).unwrap();
        assert_eq!((p.start_index, p.count), (1, MAX_RESULTS));
        let p = parse(Some("startIndex=99999999999999999999999")).unwrap();
        assert_eq!(p.start_index, i64::MAX);
    }

    #[test]
    fn non_integer_paging_is_invalid_value() {
        let e = parse(Some("count=ten")).unwrap_err();
        assert_eq!((e.status, e.scim_type), (400, Some("invalidValue")));
        assert!(e.detail.contains("count"));
    }

    #[test]
    fn parameter_names_are_case_insensitive() {
        let p = parse(Some("STARTINDEX=3&Count=2&excludedAttributes=members")).unwrap();
        assert_eq!((p.start_index, p.count), (3, 2));
        assert_eq!(p.excluded.as_deref(), Some("members"));
    }

    #[test]
    fn list_response_counts_are_integers() {
        let v = response(0, 1, vec![]);
        assert_eq!(
            v,
            json!({"schemas": [LIST_SCHEMA], "totalResults": 0, "startIndex": 1, "itemsPerPage": 0, "Resources": []})
        );
    }
}
