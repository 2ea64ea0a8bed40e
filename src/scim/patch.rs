//! PATCH (RFC 7644 §3.5.2) applied to a resource's attributes, pure:
//! parsing the `PatchOp` body (`op` in any case; `Operations` required),
//! resolving paths (`active`, `name.givenName`, `emails[type eq "work"].value`,
//! extension URNs), and `add` / `remove` / `replace` with and without a
//! path. Group membership operations are split off by [`split_group_ops`]
//! and run as row changes in the store, so concurrent PATCHes lose nothing.

use serde_json::{Map, Value};

use super::error::ScimError;
use super::filter::{self, Expr, PatchPath};
use super::model::MemberOp;
use super::query::Kind;
use super::resource::{self, member_ids, ENTERPRISE_SCHEMA, GROUP_SCHEMA, USER_SCHEMA};

/// `urn:ietf:params:scim:api:messages:2.0:PatchOp`
pub const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
/// Most operations in one PATCH.
pub const MAX_OPERATIONS: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Add,
    Remove,
    Replace,
}

/// One PATCH operation.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchOp {
    pub op: OpKind,
    /// The path as sent.
    pub path: Option<String>,
    pub value: Option<Value>,
}

/// Parse a PatchOp body.
pub fn parse_request(body: &Value) -> Result<Vec<PatchOp>, ScimError> {
    let Some(obj) = body.as_object() else {
        return Err(ScimError::invalid_syntax(
            "the PATCH body must be a JSON object",
        ));
    };
    if let Some(schemas) = filter::get_ci(obj, "schemas") {
        let ok = schemas.as_array().is_some_and(|s| {
            s.iter().any(|x| {
                x.as_str()
                    .is_some_and(|x| x.eq_ignore_ascii_case(PATCH_SCHEMA))
            })
        });
        if !ok {
            return Err(ScimError::invalid_syntax(format!(
                "schemas must contain {PATCH_SCHEMA}"
            )));
        }
    }
    let Some(Value::Array(list)) = filter::get_ci(obj, "Operations") else {
        return Err(ScimError::invalid_syntax(
            "Operations must be an array of operations",
        ));
    };
    if list.is_empty() {
        return Err(ScimError::invalid_syntax("Operations is empty"));
    }
    if list.len() > MAX_OPERATIONS {
        return Err(ScimError::invalid_syntax(format!(
            "more than {MAX_OPERATIONS} Operations"
        )));
    }
    list.iter()
        .enumerate()
        .map(|(i, op)| parse_op(i, op))
        .collect()
}

fn parse_op(i: usize, op: &Value) -> Result<PatchOp, ScimError> {
    let Some(obj) = op.as_object() else {
        return Err(ScimError::invalid_syntax(format!(
            "Operations[{i}] must be an object"
        )));
    };
    let kind = match filter::get_ci(obj, "op")
        .and_then(Value::as_str)
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("add") => OpKind::Add,
        Some("remove") => OpKind::Remove,
        Some("replace") => OpKind::Replace,
        _ => {
            return Err(ScimError::invalid_syntax(format!(
                "Operations[{i}].op must be add, remove or replace"
            )))
        }
    };
    let path = match filter::get_ci(obj, "path") {
        None | Some(Value::Null) => None,
        Some(Value::String(p)) if p.trim().is_empty() => None,
        Some(Value::String(p)) => Some(p.trim().to_string()),
        Some(_) => {
            return Err(ScimError::invalid_path(format!(
                "Operations[{i}].path must be a string"
            )))
        }
    };
    let value = filter::get_ci(obj, "value").cloned();
    if kind != OpKind::Remove && value.is_none() {
        return Err(ScimError::invalid_value(format!(
            "Operations[{i}]: {} needs a value",
            op_name(kind)
        )));
    }
    if path.is_none() && kind == OpKind::Remove {
        return Err(ScimError::no_target(format!(
            "Operations[{i}]: remove needs a path"
        )));
    }
    Ok(PatchOp {
        op: kind,
        path,
        value,
    })
}

fn op_name(k: OpKind) -> &'static str {
    match k {
        OpKind::Add => "add",
        OpKind::Remove => "remove",
        OpKind::Replace => "replace",
    }
}

/// Where an operation lands: top-level `key` (inside extension `ext` when
/// set), optionally filtered elements and a sub-attribute.
#[derive(Debug, Clone, PartialEq)]
struct Target {
    ext: Option<String>,
    key: String,
    filter: Option<Expr>,
    sub: Option<String>,
}

/// What a path means for `kind`: `Ok(None)` for attributes that are
/// silently ignored (`password`).
fn resolve(
    path: &str,
    kind: Kind,
    attrs: &Map<String, Value>,
) -> Result<Option<Target>, ScimError> {
    // A whole extension object: `urn:…:enterprise:2.0:User`.
    let is_ext_key = path.eq_ignore_ascii_case(ENTERPRISE_SCHEMA)
        || (filter::is_urn(path) && attrs.keys().any(|k| k.eq_ignore_ascii_case(path)));
    if is_ext_key {
        let key = attrs
            .keys()
            .find(|k| k.eq_ignore_ascii_case(path))
            .cloned()
            .unwrap_or_else(|| resource::canonical_attr(kind, path));
        return Ok(Some(Target {
            ext: None,
            key,
            filter: None,
            sub: None,
        }));
    }
    let parsed: PatchPath = filter::parse_path(path)
        .map_err(|e| ScimError::invalid_path(format!("path {path:?}: {e}")))?;
    let core = match kind {
        Kind::User => USER_SCHEMA,
        Kind::Group => GROUP_SCHEMA,
    };
    let (ext, key) = match &parsed.attr.uri {
        Some(uri) if !uri.eq_ignore_ascii_case(core) => {
            let ext = attrs
                .keys()
                .find(|k| k.eq_ignore_ascii_case(uri))
                .cloned()
                .unwrap_or_else(|| resource::canonical_attr(kind, uri));
            let key = attrs
                .get(&ext)
                .and_then(Value::as_object)
                .and_then(|o| {
                    o.keys()
                        .find(|k| k.eq_ignore_ascii_case(&parsed.attr.name))
                        .cloned()
                })
                .unwrap_or_else(|| parsed.attr.name.clone());
            (Some(ext), key)
        }
        _ => (None, resource::canonical_attr(kind, &parsed.attr.name)),
    };
    if ext.is_none() {
        match key.as_str() {
            "password" => return Ok(None),
            "id" | "meta" | "schemas" => {
                return Err(ScimError::mutability(format!("{key} is read-only")))
            }
            "groups" if kind == Kind::User => {
                return Err(ScimError::mutability(
                    "groups is read-only: change memberships on the group",
                ))
            }
            _ => {}
        }
    }
    let sub = parsed.attr.sub.as_deref().map(|s| {
        if ext.is_some() {
            s.to_string()
        } else {
            resource::canonical_sub(&key, s)
        }
    });
    Ok(Some(Target {
        ext,
        key,
        filter: parsed.filter,
        sub,
    }))
}

/// Apply `ops` in order to `attrs` (a copy: on error nothing is kept).
pub fn apply_all(
    attrs: &Map<String, Value>,
    ops: &[PatchOp],
    kind: Kind,
) -> Result<Map<String, Value>, ScimError> {
    let mut out = attrs.clone();
    for op in ops {
        apply(&mut out, op, kind)?;
    }
    Ok(out)
}

fn apply(attrs: &mut Map<String, Value>, op: &PatchOp, kind: Kind) -> Result<(), ScimError> {
    match &op.path {
        Some(path) => {
            let Some(target) = resolve(path, kind, attrs)? else {
                return Ok(());
            };
            apply_target(attrs, op.op, &target, op.value.as_ref())
        }
        None => {
            // Pathless add / replace: each key of the value object is a path.
            let Some(Value::Object(fields)) = &op.value else {
                return Err(ScimError::invalid_value(format!(
                    "{} without a path needs an object value",
                    op_name(op.op)
                )));
            };
            for (k, v) in fields {
                if ["id", "meta", "schemas"]
                    .iter()
                    .any(|r| r.eq_ignore_ascii_case(k))
                {
                    // Okta sends `{"id": …, "displayName": …}` to rename a group.
                    continue;
                }
                let Some(target) = resolve(k, kind, attrs)? else {
                    continue;
                };
                apply_target(attrs, op.op, &target, Some(v))?;
            }
            Ok(())
        }
    }
}

/// The object holding the target attribute (an extension object is
/// created for add / replace).
fn holder<'a>(
    attrs: &'a mut Map<String, Value>,
    t: &Target,
    create: bool,
) -> Result<Option<&'a mut Map<String, Value>>, ScimError> {
    let Some(ext) = &t.ext else {
        return Ok(Some(attrs));
    };
    if !attrs.contains_key(ext) {
        if !create {
            return Ok(None);
        }
        attrs.insert(ext.clone(), Value::Object(Map::new()));
    }
    match attrs.get_mut(ext) {
        Some(Value::Object(o)) => Ok(Some(o)),
        _ => Err(ScimError::invalid_path(format!("{ext} is not an object"))),
    }
}

fn find_key(obj: &Map<String, Value>, key: &str) -> String {
    obj.keys()
        .find(|k| k.eq_ignore_ascii_case(key))
        .cloned()
        .unwrap_or_else(|| key.to_string())
}

fn apply_target(
    attrs: &mut Map<String, Value>,
    op: OpKind,
    t: &Target,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    let value = value.map(|v| {
        if t.ext.is_none() {
            resource::canonical_value(&t.key, v.clone())
        } else {
            v.clone()
        }
    });
    let Some(obj) = holder(attrs, t, op != OpKind::Remove)? else {
        return Ok(());
    };
    let key = find_key(obj, &t.key);
    let shown = match &t.sub {
        Some(s) => format!("{}.{s}", t.key),
        None => t.key.clone(),
    };
    match (&t.filter, &t.sub) {
        (None, None) => whole(obj, &key, op, value),
        (None, Some(sub)) => {
            let sub_key_of = |o: &Map<String, Value>| find_key(o, sub);
            match (op, obj.get_mut(&key)) {
                (OpKind::Remove, Some(Value::Object(o))) => {
                    let k = sub_key_of(o);
                    o.remove(&k);
                }
                (OpKind::Remove, Some(Value::Array(items))) => {
                    for item in items.iter_mut() {
                        if let Value::Object(o) = item {
                            let k = sub_key_of(o);
                            o.remove(&k);
                        }
                    }
                }
                (OpKind::Remove, _) => {}
                (_, None) => {
                    obj.insert(key.clone(), Value::Object(Map::new()));
                    if let Some(Value::Object(o)) = obj.get_mut(&key) {
                        set(o, sub.clone(), value);
                    }
                }
                (_, Some(Value::Object(o))) => {
                    let k = sub_key_of(o);
                    set(o, k, value);
                }
                (_, Some(_)) => {
                    return Err(ScimError::invalid_path(format!(
                        "{shown}: {} is not a complex attribute",
                        t.key
                    )));
                }
            }
            drop_empty(obj, &key);
            Ok(())
        }
        (Some(f), sub) => {
            let items = match obj.get_mut(&key) {
                Some(Value::Array(items)) => items,
                _ if op == OpKind::Remove => return Ok(()),
                _ => {
                    return Err(ScimError::no_target(format!(
                        "{shown}: {} has no values to filter",
                        t.key
                    )))
                }
            };
            let hits: Vec<usize> = (0..items.len()).filter(|&i| f.matches(&items[i])).collect();
            if hits.is_empty() {
                if op == OpKind::Remove {
                    return Ok(());
                }
                return Err(ScimError::no_target(format!(
                    "{shown}: the filter matches no value"
                )));
            }
            match (op, sub) {
                (OpKind::Remove, None) => {
                    let mut i = 0;
                    items.retain(|_| {
                        let keep = !hits.contains(&i);
                        i += 1;
                        keep
                    });
                }
                (OpKind::Remove, Some(sub)) => {
                    for &i in &hits {
                        if let Value::Object(o) = &mut items[i] {
                            let k = find_key(o, sub);
                            o.remove(&k);
                        }
                    }
                }
                (_, Some(sub)) => {
                    for &i in &hits {
                        if let Value::Object(o) = &mut items[i] {
                            let k = find_key(o, sub);
                            set(o, k, value.clone());
                        }
                    }
                }
                (OpKind::Add, None) => {
                    let Some(Value::Object(patch)) = &value else {
                        return Err(ScimError::invalid_value(format!(
                            "{shown}: add to filtered values needs an object value"
                        )));
                    };
                    for &i in &hits {
                        if let Value::Object(o) = &mut items[i] {
                            merge(o, patch);
                        }
                    }
                }
                (_, None) => {
                    for &i in &hits {
                        items[i] = value.clone().unwrap_or(Value::Null);
                    }
                    items.retain(|v| !v.is_null());
                }
            }
            drop_empty(obj, &key);
            Ok(())
        }
    }
}

/// Operation on a whole attribute.
fn whole(
    obj: &mut Map<String, Value>,
    key: &str,
    op: OpKind,
    value: Option<Value>,
) -> Result<(), ScimError> {
    match (op, obj.get_mut(key), value) {
        (OpKind::Remove, Some(Value::Array(items)), Some(v)) => {
            // Remove the listed values (by equality or by their `value`).
            let gone: Vec<Value> = match v {
                Value::Array(a) => a,
                other => vec![other],
            };
            let same = |a: &Value, b: &Value| {
                a == b || (a.get("value").is_some() && a.get("value") == b.get("value"))
            };
            items.retain(|item| !gone.iter().any(|g| same(item, g)));
            drop_empty(obj, key);
        }
        (OpKind::Remove, _, _) => {
            obj.remove(key);
        }
        (OpKind::Add, Some(Value::Array(items)), Some(v)) => {
            let new: Vec<Value> = match v {
                Value::Array(a) => a,
                other => vec![other],
            };
            for n in new {
                if !items.contains(&n) {
                    items.push(n);
                }
            }
        }
        (_, Some(Value::Object(existing)), Some(Value::Object(patch))) => merge(existing, &patch),
        (_, _, v) => set(obj, key.to_string(), v),
    }
    Ok(())
}

/// Set `key` (a `null` value unassigns it).
fn set(obj: &mut Map<String, Value>, key: String, value: Option<Value>) {
    match value {
        None | Some(Value::Null) => {
            obj.remove(&key);
        }
        Some(v) => {
            obj.insert(key, v);
        }
    }
}

/// Sub-attributes of `patch` replace or add to `into`; others stay.
fn merge(into: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (k, v) in patch {
        let key = find_key(into, k);
        set(into, key, Some(v.clone()));
    }
}

/// Remove an attribute left as an empty array or object.
fn drop_empty(obj: &mut Map<String, Value>, key: &str) {
    let empty = match obj.get(key) {
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::Object(o)) => o.is_empty(),
        _ => false,
    };
    if empty {
        obj.remove(key);
    }
}

/// Split a group PATCH into attribute operations and membership operations.
pub fn split_group_ops(ops: &[PatchOp]) -> Result<(Vec<PatchOp>, Vec<MemberOp>), ScimError> {
    let mut attr_ops = Vec::new();
    let mut member_ops = Vec::new();
    for op in ops {
        match &op.path {
            Some(path) if is_members_path(path) => member_ops.push(member_op(op, path)?),
            Some(_) => attr_ops.push(op.clone()),
            None => {
                let Some(Value::Object(fields)) = &op.value else {
                    return Err(ScimError::invalid_value(format!(
                        "{} without a path needs an object value",
                        op_name(op.op)
                    )));
                };
                let mut rest = Map::new();
                for (k, v) in fields {
                    if k.eq_ignore_ascii_case("members") {
                        let ids = member_ids(v)?;
                        member_ops.push(match op.op {
                            OpKind::Add => MemberOp::Add(ids),
                            _ => MemberOp::Replace(ids),
                        });
                    } else {
                        rest.insert(k.clone(), v.clone());
                    }
                }
                if !rest.is_empty() {
                    attr_ops.push(PatchOp {
                        op: op.op,
                        path: None,
                        value: Some(Value::Object(rest)),
                    });
                }
            }
        }
    }
    Ok((attr_ops, member_ops))
}

fn is_members_path(path: &str) -> bool {
    filter::parse_path(path).is_ok_and(|p| {
        p.attr.name.eq_ignore_ascii_case("members")
            && p.attr
                .uri
                .as_deref()
                .is_none_or(|u| u.eq_ignore_ascii_case(GROUP_SCHEMA))
    })
}

fn member_op(op: &PatchOp, path: &str) -> Result<MemberOp, ScimError> {
    let parsed = filter::parse_path(path)
        .map_err(|e| ScimError::invalid_path(format!("path {path:?}: {e}")))?;
    let unsupported = || {
        ScimError::invalid_path(format!(
            "path {path:?}: members supports add / replace of `members` and remove of `members` or `members[value eq \"<id>\"]`"
        ))
    };
    if parsed.attr.sub.is_some() {
        return Err(unsupported());
    }
    let value = || op.value.as_ref().filter(|v| !v.is_null());
    match (op.op, parsed.filter) {
        (OpKind::Add, None) => {
            Ok(MemberOp::Add(member_ids(value().ok_or_else(|| {
                ScimError::invalid_value("add members needs a value")
            })?)?))
        }
        (OpKind::Replace, None) => Ok(MemberOp::Replace(match value() {
            Some(v) => member_ids(v)?,
            None => Vec::new(),
        })),
        (OpKind::Remove, None) => Ok(match value() {
            Some(v) => MemberOp::Remove(member_ids(v)?),
            None => MemberOp::RemoveAll,
        }),
        (OpKind::Remove, Some(f)) => Ok(MemberOp::RemoveWhere(f)),
        _ => Err(unsupported()),
    }
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
