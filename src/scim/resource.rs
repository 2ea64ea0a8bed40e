//! SCIM resources (RFC 7643) as portcullis keeps them: attribute names made
//! canonical, read-only and write-only attributes dropped (`password` is
//! never stored or echoed), validation of what Okta and other clients send
//! into a [`UserDraft`] / [`GroupDraft`], and rendering with `meta`.

use serde_json::{json, Map, Value};

use super::error::ScimError;
use super::filter::{get_ci, is_urn, strip_prefix_ci};
use super::model::{GroupDraft, GroupRecord, MemberRef, UserDraft, UserRecord};
use super::query::Kind;

pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const ENTERPRISE_SCHEMA: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// Longest `userName` / group `displayName`, in characters.
pub const MAX_NAME_CHARS: usize = 1024;

/// Core User attributes, canonically spelled (names are case-insensitive).
const USER_ATTRS: &[&str] = &[
    "schemas",
    "id",
    "externalId",
    "meta",
    "userName",
    "name",
    "displayName",
    "nickName",
    "profileUrl",
    "title",
    "userType",
    "preferredLanguage",
    "locale",
    "timezone",
    "active",
    "password",
    "emails",
    "phoneNumbers",
    "ims",
    "photos",
    "addresses",
    "groups",
    "entitlements",
    "roles",
    "x509Certificates",
];
const GROUP_ATTRS: &[&str] = &[
    "schemas",
    "id",
    "externalId",
    "meta",
    "displayName",
    "members",
];
const NAME_SUBS: &[&str] = &[
    "formatted",
    "familyName",
    "givenName",
    "middleName",
    "honorificPrefix",
    "honorificSuffix",
];
const MULTI_SUBS: &[&str] = &[
    "value",
    "display",
    "type",
    "primary",
    "$ref",
    "formatted",
    "streetAddress",
    "locality",
    "region",
    "postalCode",
    "country",
];
/// Never stored: set by the server, write-only, or kept elsewhere.
const USER_DROPPED: &[&str] = &["schemas", "id", "meta", "password", "groups"];
const GROUP_DROPPED: &[&str] = &["schemas", "id", "meta", "members"];

fn canonical<'a>(known: &[&'a str], key: &str) -> Option<&'a str> {
    known.iter().copied().find(|k| k.eq_ignore_ascii_case(key))
}

/// The canonical spelling of top-level attribute `key` of `kind`
/// (unknown names and extension URNs other than the enterprise one as given).
pub fn canonical_attr(kind: Kind, key: &str) -> String {
    let known = match kind {
        Kind::User => USER_ATTRS,
        Kind::Group => GROUP_ATTRS,
    };
    if let Some(k) = canonical(known, key) {
        return k.to_string();
    }
    if kind == Kind::User && key.eq_ignore_ascii_case(ENTERPRISE_SCHEMA) {
        return ENTERPRISE_SCHEMA.to_string();
    }
    key.to_string()
}

/// Whether `name` is a core attribute of `kind` (ASCII case-insensitive).
pub fn is_known_attr(kind: Kind, name: &str) -> bool {
    let known = match kind {
        Kind::User => USER_ATTRS,
        Kind::Group => GROUP_ATTRS,
    };
    canonical(known, name).is_some()
}

/// The canonical spelling of sub-attribute `sub` of `attr`.
pub fn canonical_sub(attr: &str, sub: &str) -> String {
    let known = if attr == "name" {
        NAME_SUBS
    } else {
        MULTI_SUBS
    };
    canonical(known, sub).map_or_else(|| sub.to_string(), str::to_string)
}

fn canonical_object(attr: &str, obj: Map<String, Value>) -> Map<String, Value> {
    obj.into_iter()
        .map(|(k, v)| (canonical_sub(attr, &k), v))
        .collect()
}

/// Canonical names for a value stored under top-level `attr`: sub-attributes
/// of `name` and of multi-valued elements. Extensions are kept as given.
pub fn canonical_value(attr: &str, v: Value) -> Value {
    if attr.starts_with("urn:") {
        return v;
    }
    match v {
        Value::Object(o) => Value::Object(canonical_object(attr, o)),
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|i| match i {
                    Value::Object(o) => Value::Object(canonical_object(attr, o)),
                    other => other,
                })
                .collect(),
        ),
        other => other,
    }
}

/// Canonicalise a request body's attributes, dropping `dropped` names and
/// `null`s (RFC 7643 §2.5: null means unassigned).
fn canonical_attrs(
    kind: Kind,
    body: &Value,
    dropped: &[&str],
) -> Result<Map<String, Value>, ScimError> {
    let Some(obj) = body.as_object() else {
        return Err(ScimError::invalid_syntax(format!(
            "the {} must be a JSON object",
            kind.name()
        )));
    };
    let mut out = Map::new();
    for (k, v) in obj {
        let key = canonical_attr(kind, k);
        if dropped.contains(&key.as_str()) || v.is_null() {
            continue;
        }
        if out.contains_key(&key) {
            return Err(ScimError::invalid_syntax(format!(
                "attribute `{key}` is given twice"
            )));
        }
        out.insert(key.clone(), canonical_value(&key, v.clone()));
    }
    Ok(out)
}

/// A new user from a POST body: read-only `id`, `meta`, `schemas`,
/// `groups` and the write-only `password` are ignored; no `active` means
/// active (and the user is shown with `active: true`).
pub fn user_from_body(body: &Value) -> Result<UserDraft, ScimError> {
    let mut draft = user_draft(user_attrs(body)?, true)?;
    draft
        .attrs
        .entry("active")
        .or_insert(Value::Bool(draft.active));
    Ok(draft)
}

/// A user body's attributes under their canonical names, without the
/// read-only and write-only ones (validated by [`user_draft`]).
pub fn user_attrs(body: &Value) -> Result<Map<String, Value>, ScimError> {
    canonical_attrs(Kind::User, body, USER_DROPPED)
}

/// Validate user attributes (after a PATCH too) and derive the indexed
/// fields. The deprovisioned state (`UserDraft::active`, stored apart from
/// the attributes) follows an explicit `active` only; `active` stands for
/// a missing (or null) one: `true` for a new user, the current state on an
/// update. So a PUT that leaves `active` out or a PATCH that removes it
/// drops the attribute (it is no longer shown) but never re-activates a
/// deactivated user; only `active: true` does.
pub fn user_draft(mut attrs: Map<String, Value>, active: bool) -> Result<UserDraft, ScimError> {
    for k in USER_DROPPED {
        attrs.remove(*k);
    }
    attrs.retain(|_, v| !v.is_null());
    let user_name = match attrs.get("userName") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(Value::String(_)) | None => {
            return Err(ScimError::invalid_value("userName is required"))
        }
        Some(_) => return Err(ScimError::invalid_value("userName must be a string")),
    };
    if user_name.chars().count() > MAX_NAME_CHARS {
        return Err(ScimError::invalid_value(format!(
            "userName is longer than {MAX_NAME_CHARS} characters"
        )));
    }
    let active = match attrs.get("active") {
        None => active,
        Some(Value::Bool(b)) => *b,
        // Some clients (Azure AD) send "True" / "False".
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => true,
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => false,
        Some(_) => return Err(ScimError::invalid_value("active must be true or false")),
    };
    if attrs.contains_key("active") {
        attrs.insert("active".into(), Value::Bool(active));
    }
    let external_id = optional_string(&attrs, "externalId")?;
    let display_name = optional_string(&attrs, "displayName")?;
    if let Some(name) = attrs.get("name") {
        if !name.is_object() {
            return Err(ScimError::invalid_value("name must be an object"));
        }
    }
    let (emails, primary_email) = emails(&attrs)?;
    Ok(UserDraft {
        attrs,
        user_name,
        external_id,
        display_name,
        active,
        emails,
        primary_email,
    })
}

fn optional_string(attrs: &Map<String, Value>, key: &str) -> Result<Option<String>, ScimError> {
    match attrs.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ScimError::invalid_value(format!("{key} must be a string"))),
    }
}

/// Every email value (lower-cased, de-duplicated) and the primary one.
fn emails(attrs: &Map<String, Value>) -> Result<(Vec<String>, Option<String>), ScimError> {
    let Some(list) = attrs.get("emails") else {
        return Ok((Vec::new(), None));
    };
    let Some(items) = list.as_array() else {
        return Err(ScimError::invalid_value("emails must be an array"));
    };
    let mut all: Vec<String> = Vec::new();
    let mut primary = None;
    let mut first = None;
    for (i, item) in items.iter().enumerate() {
        let value = match item.as_object().and_then(|o| o.get("value")) {
            Some(Value::String(s)) => s,
            _ => {
                return Err(ScimError::invalid_value(format!(
                    "emails[{i}].value must be a string"
                )))
            }
        };
        let lower = value.to_ascii_lowercase();
        if !all.contains(&lower) {
            all.push(lower);
        }
        first.get_or_insert_with(|| value.clone());
        if primary.is_none() && item.get("primary").is_some_and(is_true) {
            primary = Some(value.clone());
        }
    }
    Ok((all, primary.or(first)))
}

fn is_true(v: &Value) -> bool {
    matches!(v, Value::Bool(true)) || v.as_str().is_some_and(|s| s.eq_ignore_ascii_case("true"))
}

/// A group from a POST or PUT body, and the member ids it lists.
pub fn group_from_body(body: &Value) -> Result<(GroupDraft, Option<Vec<String>>), ScimError> {
    let attrs = canonical_attrs(Kind::Group, body, GROUP_DROPPED)?;
    let members = match body.as_object().and_then(|o| get_ci(o, "members")) {
        None | Some(Value::Null) => None,
        Some(v) => Some(member_ids(v)?),
    };
    Ok((group_draft(attrs)?, members))
}

/// Validate group attributes.
pub fn group_draft(mut attrs: Map<String, Value>) -> Result<GroupDraft, ScimError> {
    for k in GROUP_DROPPED {
        attrs.remove(*k);
    }
    attrs.retain(|_, v| !v.is_null());
    let display_name = match attrs.get("displayName") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(Value::String(_)) | None => {
            return Err(ScimError::invalid_value("displayName is required"))
        }
        Some(_) => return Err(ScimError::invalid_value("displayName must be a string")),
    };
    if display_name.chars().count() > MAX_NAME_CHARS {
        return Err(ScimError::invalid_value(format!(
            "displayName is longer than {MAX_NAME_CHARS} characters"
        )));
    }
    let external_id = optional_string(&attrs, "externalId")?;
    Ok(GroupDraft {
        attrs,
        display_name,
        external_id,
    })
}

/// User ids from a `members` value: `[{"value": id, "display": …}, …]` (a
/// single object is taken as a one-element list). Only users can be members.
pub fn member_ids(v: &Value) -> Result<Vec<String>, ScimError> {
    let items: Vec<&Value> = match v {
        Value::Array(items) => items.iter().collect(),
        Value::Object(_) => vec![v],
        _ => {
            return Err(ScimError::invalid_value(
                "members must be an array of {\"value\": \"<user id>\"}",
            ))
        }
    };
    let mut ids = Vec::with_capacity(items.len());
    for (i, item) in items.into_iter().enumerate() {
        let Some(obj) = item.as_object() else {
            return Err(ScimError::invalid_value(format!(
                "members[{i}] must be an object"
            )));
        };
        let Some(Value::String(id)) = get_ci(obj, "value") else {
            return Err(ScimError::invalid_value(format!(
                "members[{i}].value must be a user id"
            )));
        };
        if let Some(t) = get_ci(obj, "type").and_then(Value::as_str) {
            if !t.eq_ignore_ascii_case("User") {
                return Err(ScimError::invalid_value(format!(
                    "members[{i}]: only users can be members (type {t:?}; nested groups are not supported)"
                )));
            }
        }
        if !ids.contains(id) {
            ids.push(id.clone());
        }
    }
    Ok(ids)
}

/// RFC 3339 UTC with milliseconds.
pub fn timestamp(ms: i64) -> String {
    let nanos = i128::from(ms) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Weak ETag of a version: `W/"3"`.
pub fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

fn meta(
    resource_type: &str,
    created_ms: i64,
    modified_ms: i64,
    version: i64,
    location: String,
) -> Value {
    json!({
        "resourceType": resource_type,
        "created": timestamp(created_ms),
        "lastModified": timestamp(modified_ms),
        "location": location,
        "version": etag(version),
    })
}

/// The user as returned: schemas, id, attributes, groups, meta. `base` is
/// the absolute SCIM base URL.
pub fn user_json(u: &UserRecord, groups: &[MemberRef], base: &str) -> Value {
    let mut schemas = vec![Value::String(USER_SCHEMA.into())];
    schemas.extend(
        u.attrs
            .keys()
            .filter(|k| k.starts_with("urn:"))
            .map(|k| Value::String(k.clone())),
    );
    let mut out = Map::new();
    out.insert("schemas".into(), Value::Array(schemas));
    out.insert("id".into(), Value::String(u.id.clone()));
    for (k, v) in &u.attrs {
        out.insert(k.clone(), v.clone());
    }
    out.insert(
        "groups".into(),
        Value::Array(
            groups
                .iter()
                .map(|g| json!({"value": g.value, "display": g.display, "$ref": format!("{base}/Groups/{}", g.value)}))
                .collect(),
        ),
    );
    out.insert(
        "meta".into(),
        meta(
            "User",
            u.created_ms,
            u.modified_ms,
            u.version,
            format!("{base}/Users/{}", u.id),
        ),
    );
    Value::Object(out)
}

/// The group as returned; `members` when they were loaded.
pub fn group_json(g: &GroupRecord, base: &str) -> Value {
    let mut out = Map::new();
    out.insert("schemas".into(), json!([GROUP_SCHEMA]));
    out.insert("id".into(), Value::String(g.id.clone()));
    for (k, v) in &g.attrs {
        out.insert(k.clone(), v.clone());
    }
    if let Some(members) = &g.members {
        out.insert(
            "members".into(),
            Value::Array(
                members
                    .iter()
                    .map(|m| json!({"value": m.value, "display": m.display, "type": "User", "$ref": format!("{base}/Users/{}", m.value)}))
                    .collect(),
            ),
        );
    }
    out.insert(
        "meta".into(),
        meta(
            "Group",
            g.created_ms,
            g.modified_ms,
            g.version,
            format!("{base}/Groups/{}", g.id),
        ),
    );
    Value::Object(out)
}

/// Apply `attributes` / `excludedAttributes` (comma-separated, top-level
/// names; `id`, `schemas` and `meta` always stay).
pub fn project(v: &mut Value, attributes: Option<&str>, excluded: Option<&str>) {
    let Some(obj) = v.as_object_mut() else { return };
    let names = |list: &str| -> Vec<String> {
        list.split(',')
            .map(|a| {
                let a = a.trim();
                // `urn:…:User:name.givenName` → `name`
                let a = if is_urn(a) && !a.eq_ignore_ascii_case(ENTERPRISE_SCHEMA) {
                    [USER_SCHEMA, GROUP_SCHEMA]
                        .iter()
                        .find_map(|s| strip_prefix_ci(a, s)?.strip_prefix(':'))
                        .filter(|rest| !rest.is_empty())
                        .unwrap_or(a)
                } else {
                    a
                };
                a.split('.').next().unwrap_or(a).to_ascii_lowercase()
            })
            .filter(|a| !a.is_empty())
            .collect()
    };
    let always = |k: &str| ["id", "schemas", "meta"].contains(&k);
    if let Some(list) = attributes {
        let keep = names(list);
        obj.retain(|k, _| always(k) || keep.contains(&k.to_ascii_lowercase()));
    }
    if let Some(list) = excluded {
        let drop = names(list);
        obj.retain(|k, _| always(k) || !drop.contains(&k.to_ascii_lowercase()));
    }
}

/// Whether a list should load members (not when `excludedAttributes`
/// names them, or `attributes` leaves them out).
pub fn wants_members(attributes: Option<&str>, excluded: Option<&str>) -> bool {
    let mut v = json!({"members": []});
    project(&mut v, attributes, excluded);
    v.get("members").is_some()
}

#[cfg(test)]
mod tests;
