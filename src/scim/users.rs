//! `/Users` and `/Users/{id}`: list with filter and paging, read, create,
//! replace (PUT), PATCH and delete, each write followed by its effects.

use serde_json::Value;

use super::effects;
use super::error::ScimError;
use super::list;
use super::model::{Outcome, Page, Query, UserRecord};
use super::patch;
use super::query::{plan_filter, Kind};
use super::request::{check_version, json_reply, resource_reply};
use super::resource::{project, user_attrs, user_draft, user_from_body, user_json};
use super::Cx;
use crate::proxy::respond::Reply;

/// Okta's wording for a duplicate userName.
pub const DUPLICATE_DETAIL: &str = "User already exists in the database.";

fn not_found(id: &str) -> ScimError {
    ScimError::not_found(format!("User {id} not found"))
}

async fn render(cx: &Cx<'_>, u: &UserRecord) -> Result<Value, ScimError> {
    let groups = cx
        .state
        .store
        .scim_user_groups(&u.id)
        .await
        .map_err(|e| cx.store_failed(e))?;
    let mut v = user_json(u, &groups, &cx.base);
    project(
        &mut v,
        cx.params.attributes.as_deref(),
        cx.params.excluded.as_deref(),
    );
    Ok(v)
}

fn location(cx: &Cx<'_>, u: &UserRecord) -> String {
    format!("{}/Users/{}", cx.base, u.id)
}

pub async fn list(cx: &Cx<'_>) -> Result<Reply, ScimError> {
    let query = cx
        .params
        .filter
        .as_deref()
        .map(|f| plan_filter(f, Kind::User))
        .transpose()?;
    let (total, resources) = page(cx, query.as_ref(), cx.params.page()).await?;
    Ok(json_reply(
        200,
        &list::response(total, cx.params.start_index, resources),
    ))
}

/// (total matching, one page rendered) of the users `query` selects.
pub(super) async fn page(
    cx: &Cx<'_>,
    query: Option<&Query>,
    page: Page,
) -> Result<(i64, Vec<Value>), ScimError> {
    let (total, users) = cx
        .state
        .store
        .scim_list_users(cx.idp, query, page)
        .await
        .map_err(|e| cx.store_failed(e))?;
    let mut resources = Vec::with_capacity(users.len());
    for u in &users {
        resources.push(render(cx, u).await?);
    }
    Ok((total, resources))
}

pub async fn get(cx: &Cx<'_>, id: &str) -> Result<Reply, ScimError> {
    let user = cx
        .state
        .store
        .scim_get_user(cx.idp, id)
        .await
        .map_err(|e| cx.store_failed(e))?;
    let user = user.ok_or_else(|| not_found(id))?;
    Ok(resource_reply(
        200,
        &render(cx, &user).await?,
        user.version,
        None,
    ))
}

pub async fn create(cx: &Cx<'_>, body: &Value) -> Result<Reply, ScimError> {
    let draft = user_from_body(body)?;
    let user = match cx
        .state
        .store
        .scim_create_user(cx.idp, &draft)
        .await
        .map_err(|e| cx.store_failed(e))?
    {
        Outcome::Done(u) => u,
        Outcome::Conflict(_) => return Err(ScimError::uniqueness(DUPLICATE_DETAIL)),
        Outcome::Rejected(e) => return Err(e),
        Outcome::NotFound => return Err(ScimError::internal()),
    };
    tracing::info!(idp = %cx.idp, scim.id = %user.id, active = user.active, "SCIM user created");
    effects::user_written(cx.state, cx.idp, cx.scim, None, &user)
        .await
        .map_err(|e| cx.effect_failed(e))?;
    Ok(resource_reply(
        201,
        &render(cx, &user).await?,
        user.version,
        Some(location(cx, &user)),
    ))
}

/// PUT: the body replaces every attribute (read-only ones ignored).
pub async fn replace(cx: &Cx<'_>, id: &str, body: &Value) -> Result<Reply, ScimError> {
    let attrs = user_attrs(body)?;
    // Refuse a bad body before the write transaction opens.
    user_draft(attrs.clone(), true)?;
    let wanted = cx.if_match;
    let edit = move |cur: &UserRecord| {
        check_version(wanted, cur.version)?;
        user_draft(attrs.clone(), cur.active)
    };
    write(cx, id, &edit).await
}

/// PATCH: operations applied to the stored attributes.
pub async fn patch(cx: &Cx<'_>, id: &str, body: &Value) -> Result<Reply, ScimError> {
    let ops = patch::parse_request(body)?;
    let wanted = cx.if_match;
    let edit = move |cur: &UserRecord| {
        check_version(wanted, cur.version)?;
        user_draft(patch::apply_all(&cur.attrs, &ops, Kind::User)?, cur.active)
    };
    write(cx, id, &edit).await
}

async fn write(
    cx: &Cx<'_>,
    id: &str,
    edit: &super::model::UserEdit<'_>,
) -> Result<Reply, ScimError> {
    let change = match cx
        .state
        .store
        .scim_modify_user(cx.idp, id, edit)
        .await
        .map_err(|e| cx.store_failed(e))?
    {
        Outcome::Done(c) => c,
        Outcome::NotFound => return Err(not_found(id)),
        Outcome::Conflict(_) => return Err(ScimError::uniqueness(DUPLICATE_DETAIL)),
        Outcome::Rejected(e) => return Err(e),
    };
    if change.changed {
        let was = change.before.as_ref().map(|b| b.active);
        tracing::info!(idp = %cx.idp, scim.id = %id, active = change.after.active, was_active = ?was, "SCIM user updated");
    }
    effects::user_written(
        cx.state,
        cx.idp,
        cx.scim,
        change.before.as_ref(),
        &change.after,
    )
    .await
    .map_err(|e| cx.effect_failed(e))?;
    Ok(resource_reply(
        200,
        &render(cx, &change.after).await?,
        change.after.version,
        None,
    ))
}

/// DELETE. The user's sessions are revoked before the delete commits, and
/// again after it (logins made in between): should the first revocation
/// fail, the client gets a 500 and its retry finds the user still there.
pub async fn delete(cx: &Cx<'_>, id: &str) -> Result<Reply, ScimError> {
    let cur = cx
        .state
        .store
        .scim_get_user(cx.idp, id)
        .await
        .map_err(|e| cx.store_failed(e))?;
    let cur = cur.ok_or_else(|| not_found(id))?;
    check_version(cx.if_match, cur.version)?;
    effects::user_deleted(cx.state, cx.idp, cx.scim, &cur)
        .await
        .map_err(|e| cx.effect_failed(e))?;
    let user = cx
        .state
        .store
        .scim_delete_user(cx.idp, id)
        .await
        .map_err(|e| cx.store_failed(e))?;
    let user = user.ok_or_else(|| not_found(id))?;
    tracing::info!(idp = %cx.idp, scim.id = %id, "SCIM user deleted");
    effects::user_deleted(cx.state, cx.idp, cx.scim, &user)
        .await
        .map_err(|e| cx.effect_failed(e))?;
    Ok(Reply::new(
        204,
        super::error::SCIM_JSON,
        bytes::Bytes::new(),
    ))
}
