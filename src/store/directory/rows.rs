//! Rows of the SCIM tables as both backends read them, and the records
//! they make; the linked users of a login among the candidate rows.

use serde_json::{Map, Value};

use crate::scim::model::{GroupRecord, UserRecord};
use crate::store::StoreError;

/// The columns of a [`UserRow`], over alias `u`.
pub(crate) const USER_COLS: &str =
    "u.id, u.idp, u.user_name, u.external_id, u.display_name, u.primary_email, u.active, u.resource, u.created_ms, u.modified_ms, u.version";
/// The columns of a [`GroupRow`], over alias `g`.
pub(crate) const GROUP_COLS: &str = "g.id, g.idp, g.display_name, g.external_id, g.resource, g.created_ms, g.modified_ms, g.version";

pub(crate) type UserRow = (
    String,
    String,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    bool,
    String,
    i64,
    i64,
    i64,
);
pub(crate) type GroupRow = (
    String,
    String,
    String,
    Option<String>,
    String,
    i64,
    i64,
    i64,
);

fn attrs_from(json: &str, what: &str) -> Result<Map<String, Value>, StoreError> {
    match serde_json::from_str::<Value>(json) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(StoreError::Data(format!(
            "stored SCIM {what} is not a JSON object"
        ))),
    }
}

pub(crate) fn user_from_row(r: UserRow) -> Result<UserRecord, StoreError> {
    let (
        id,
        idp,
        user_name,
        external_id,
        display_name,
        primary_email,
        active,
        resource,
        created_ms,
        modified_ms,
        version,
    ) = r;
    Ok(UserRecord {
        attrs: attrs_from(&resource, "user")?,
        id,
        idp,
        user_name,
        external_id,
        display_name,
        primary_email,
        active,
        created_ms,
        modified_ms,
        version,
    })
}

pub(crate) fn group_from_row(r: GroupRow) -> Result<GroupRecord, StoreError> {
    let (id, idp, display_name, external_id, resource, created_ms, modified_ms, version) = r;
    Ok(GroupRecord {
        attrs: attrs_from(&resource, "group")?,
        id,
        idp,
        display_name,
        external_id,
        created_ms,
        modified_ms,
        version,
        members: None,
    })
}

pub(crate) fn to_json(attrs: &Map<String, Value>) -> String {
    Value::Object(attrs.clone()).to_string()
}

pub(crate) fn lower(s: &Option<String>) -> Option<String> {
    s.as_ref().map(|s| s.to_ascii_lowercase())
}

/// The linked users among the `link_users` rows (id, active, externalId):
/// those whose `externalId` is the login's `sub` when there is one, else
/// all (matched by email). Returns (id, active).
pub(crate) fn linked_users(
    rows: Vec<(String, bool, Option<String>)>,
    sub: &str,
) -> Vec<(String, bool)> {
    let by_sub = rows.iter().any(|(_, _, ext)| ext.as_deref() == Some(sub));
    rows.into_iter()
        .filter(|(_, _, ext)| !by_sub || ext.as_deref() == Some(sub))
        .map(|(id, active, _)| (id, active))
        .collect()
}
