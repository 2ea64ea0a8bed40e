//! Searches (RFC 7644 §3.4.3, §3.4.2.1): a `POST …/.search` body
//! (`SearchRequest`) read into the same [`Params`] a `GET` list takes, and
//! a query on the server root, which spans users and groups: one list,
//! users first then groups (each in creation order, so pages are stable),
//! a filter attribute that a type does not have matching none of that type.

use serde_json::Value;

use super::error::ScimError;
use super::filter::get_ci;
use super::list::{self, Params, MAX_RESULTS};
use super::model::Page;
use super::query::{plan_at_root, plan_filter, Kind};
use super::request::json_reply;
use super::Cx;
use crate::proxy::respond::Reply;

/// `urn:ietf:params:scim:api:messages:2.0:SearchRequest`
pub const SEARCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";

/// Read a SearchRequest body. `attributes` / `excludedAttributes` are
/// arrays of names (a comma-separated string is taken too); `startIndex`
/// and `count` integers, clamped as in a `GET` list; `sortBy` /
/// `sortOrder` are ignored (sorting is not supported: ServiceProviderConfig
/// says so, and §3.4.2 has unrecognised parameters ignored); other
/// members are ignored.
pub fn parse_request(body: &Value) -> Result<Params, ScimError> {
    let Some(obj) = body.as_object() else {
        return Err(ScimError::invalid_syntax(
            "the search body must be a JSON object (a SearchRequest)",
        ));
    };
    if let Some(schemas) = get_ci(obj, "schemas") {
        let ok = schemas.as_array().is_some_and(|s| {
            s.iter().any(|x| {
                x.as_str()
                    .is_some_and(|x| x.eq_ignore_ascii_case(SEARCH_SCHEMA))
            })
        });
        if !ok {
            return Err(ScimError::invalid_syntax(format!(
                "schemas must contain {SEARCH_SCHEMA}"
            )));
        }
    }
    let mut p = Params {
        start_index: 1,
        count: MAX_RESULTS,
        ..Params::default()
    };
    match get_ci(obj, "filter") {
        None | Some(Value::Null) => {}
        Some(Value::String(f)) if f.trim().is_empty() => {
            return Err(ScimError::invalid_filter("the filter is empty"))
        }
        Some(Value::String(f)) => p.filter = Some(f.clone()),
        Some(_) => return Err(ScimError::invalid_filter("filter must be a string")),
    }
    p.attributes = names(obj, "attributes")?;
    p.excluded = names(obj, "excludedAttributes")?;
    if let Some(n) = integer(obj, "startIndex")? {
        p.start_index = n.max(1);
    }
    if let Some(n) = integer(obj, "count")? {
        p.count = n.clamp(0, MAX_RESULTS);
    }
    Ok(p)
}

/// An attribute list as the comma-separated form `project` reads.
fn names(obj: &serde_json::Map<String, Value>, key: &str) -> Result<Option<String>, ScimError> {
    let bad = || ScimError::invalid_value(format!("{key} must be an array of attribute names"));
    match get_ci(obj, key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Array(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for i in items {
                let name = i.as_str().ok_or_else(bad)?;
                if name.contains(',') {
                    return Err(bad());
                }
                out.push(name);
            }
            Ok(Some(out.join(",")))
        }
        Some(_) => Err(bad()),
    }
}

fn integer(obj: &serde_json::Map<String, Value>, key: &str) -> Result<Option<i64>, ScimError> {
    match get_ci(obj, key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Ok(Some(i)),
            (None, Some(_)) => Ok(Some(i64::MAX)),
            _ => Err(ScimError::invalid_value(format!(
                "{key} must be an integer, got {n}"
            ))),
        },
        Some(other) => Err(ScimError::invalid_value(format!(
            "{key} must be an integer, got {other}"
        ))),
    }
}

/// The groups' part of a root page, given how many users matched in all
/// (`users_total`) and how many the page holds (`users_got`).
pub fn groups_page(page: Page, users_total: i64, users_got: usize) -> Page {
    let got = i64::try_from(users_got).unwrap_or(i64::MAX);
    Page {
        offset: page.offset.saturating_sub(users_total).max(0),
        limit: page.limit.saturating_sub(got).max(0),
    }
}

/// A query on the root (`GET /` or `POST /.search`).
pub async fn root(cx: &Cx<'_>) -> Result<Reply, ScimError> {
    // Outer `None`: the filter names an attribute this type lacks.
    let (users_q, groups_q) = match cx.params.filter.as_deref() {
        None => (Some(None), Some(None)),
        Some(f) => {
            let expr = super::filter::parse(f)
                .map_err(|e| ScimError::invalid_filter(format!("filter: {e}")))?;
            let u = plan_at_root(&expr, Kind::User)?;
            let g = plan_at_root(&expr, Kind::Group)?;
            if u.is_none() && g.is_none() {
                // No type has every attribute: the user plan names why.
                plan_filter(f, Kind::User)?;
                plan_filter(f, Kind::Group)?;
            }
            (u.map(Some), g.map(Some))
        }
    };
    let page = cx.params.page();
    let (mut total, mut resources) = (0, Vec::new());
    if let Some(q) = users_q {
        let (t, r) = super::users::page(cx, q.as_ref(), page).await?;
        (total, resources) = (t, r);
    }
    if let Some(q) = groups_q {
        let (t, r) =
            super::groups::page(cx, q.as_ref(), groups_page(page, total, resources.len())).await?;
        total += t;
        resources.extend(r);
    }
    Ok(json_reply(
        200,
        &list::response(total, cx.params.start_index, resources),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn search_request_reads_every_parameter() {
        let p = parse_request(&json!({
            "schemas": [SEARCH_SCHEMA],
            "attributes": ["displayName", "userName"],
            "excludedAttributes": "emails",
            "filter": "userName sw \"a\"",
            "startIndex": 3,
            "count": 2,
            "sortBy": "userName",
            "sortOrder": "descending",
        }))
        .unwrap();
        assert_eq!(p.attributes.as_deref(), Some("displayName,userName"));
        assert_eq!(p.excluded.as_deref(), Some("emails"));
        assert_eq!(p.filter.as_deref(), Some("userName sw \"a\""));
        assert_eq!((p.start_index, p.count), (3, 2));
    }

    #[test]
    fn search_request_defaults_and_clamps_like_a_list() {
        let p = parse_request(&json!({})).unwrap();
        assert_eq!((p.start_index, p.count, p.filter), (1, MAX_RESULTS, None));
        let e = parse_request(&json!({"count": 1.5})).unwrap_err();
        assert_eq!((e.status, e.scim_type), (400, Some("invalidValue")));
        let p = parse_request(&json!({"startIndex": -4, "count": u64::MAX})).unwrap();
        assert_eq!((p.start_index, p.count), (1, MAX_RESULTS));
    }

    #[test]
    fn bad_search_requests_are_refused_with_their_scim_type() {
        for (body, t) in [
            (json!([]), "invalidSyntax"),
            (json!({"schemas": ["urn:x"]}), "invalidSyntax"),
            (json!({"filter": ""}), "invalidFilter"),
            (json!({"filter": 5}), "invalidFilter"),
            (json!({"count": "ten"}), "invalidValue"),
            (json!({"attributes": [1]}), "invalidValue"),
            (json!({"attributes": ["a,b"]}), "invalidValue"),
        ] {
            let e = parse_request(&body).expect_err(&body.to_string());
            assert_eq!((e.status, e.scim_type), (400, Some(t)), "{body}");
        }
    }

    #[test]
    fn root_pages_run_from_users_into_groups() {
        let page = Page {
            offset: 0,
            limit: 10,
        };
        assert_eq!(
            groups_page(page, 3, 3),
            Page {
                offset: 0,
                limit: 7
            }
        );
        let page = Page {
            offset: 5,
            limit: 2,
        };
        assert_eq!(
            groups_page(page, 3, 0),
            Page {
                offset: 2,
                limit: 2
            }
        );
        let page = Page {
            offset: 2,
            limit: 2,
        };
        assert_eq!(
            groups_page(page, 3, 1),
            Page {
                offset: 0,
                limit: 1
            }
        );
        let page = Page {
            offset: 0,
            limit: 2,
        };
        assert_eq!(
            groups_page(page, 9, 2),
            Page {
                offset: 0,
                limit: 0
            }
        );
    }
}
