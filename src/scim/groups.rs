//! `/Groups` and `/Groups/{id}`: list, read, create, replace (PUT), PATCH
//! (attributes in the resource, membership as row changes) and delete,
//! each write followed by its effects.

use serde_json::Value;

use super::effects;
use super::error::ScimError;
use super::list;
use super::model::{GroupChange, GroupRecord, MemberOp, Outcome, Page, Query};
use super::patch;
use super::query::{plan_filter, Kind};
use super::request::{check_version, json_reply, resource_reply};
use super::resource::{group_draft, group_from_body, group_json, project, wants_members};
use super::Cx;
use crate::proxy::respond::Reply;

const DUPLICATE_DETAIL: &str = "Group already exists in the database.";

fn not_found(id: &str) -> ScimError {
    ScimError::not_found(format!("Group {id} not found"))
}

fn with_members(cx: &Cx<'_>) -> bool {
    wants_members(
        cx.params.attributes.as_deref(),
        cx.params.excluded.as_deref(),
    )
}

fn render(cx: &Cx<'_>, g: &GroupRecord) -> Value {
    let mut v = group_json(g, &cx.base);
    project(
        &mut v,
        cx.params.attributes.as_deref(),
        cx.params.excluded.as_deref(),
    );
    v
}

pub async fn list(cx: &Cx<'_>) -> Result<Reply, ScimError> {
    let query = cx
        .params
        .filter
        .as_deref()
        .map(|f| plan_filter(f, Kind::Group))
        .transpose()?;
    let (total, resources) = page(cx, query.as_ref(), cx.params.page()).await?;
    Ok(json_reply(
        200,
        &list::response(total, cx.params.start_index, resources),
    ))
}

/// (total matching, one page rendered) of the groups `query` selects.
pub(super) async fn page(
    cx: &Cx<'_>,
    query: Option<&Query>,
    page: Page,
) -> Result<(i64, Vec<Value>), ScimError> {
    let (total, groups) = cx
        .state
        .store
        .scim_list_groups(cx.idp, query, page, with_members(cx))
        .await
        .map_err(|e| cx.store_failed(e))?;
    Ok((total, groups.iter().map(|g| render(cx, g)).collect()))
}

pub async fn get(cx: &Cx<'_>, id: &str) -> Result<Reply, ScimError> {
    let group = cx
        .state
        .store
        .scim_get_group(cx.idp, id, with_members(cx))
        .await
        .map_err(|e| cx.store_failed(e))?;
    let group = group.ok_or_else(|| not_found(id))?;
    Ok(resource_reply(
        200,
        &render(cx, &group),
        group.version,
        None,
    ))
}

async fn finish(
    cx: &Cx<'_>,
    status: u16,
    outcome: Outcome<GroupChange>,
    id: Option<&str>,
) -> Result<Reply, ScimError> {
    let change = match outcome {
        Outcome::Done(c) => c,
        Outcome::NotFound => return Err(not_found(id.unwrap_or_default())),
        Outcome::Conflict(_) => return Err(ScimError::uniqueness(DUPLICATE_DETAIL)),
        Outcome::Rejected(e) => return Err(e),
    };
    tracing::info!(
        idp = %cx.idp,
        scim.id = %change.group.id,
        added = change.added.len(),
        removed = change.removed.len(),
        "SCIM group written"
    );
    effects::group_written(cx.state, cx.idp, cx.scim, &change)
        .await
        .map_err(|e| cx.effect_failed(e))?;
    let g = &change.group;
    let location = (status == 201).then(|| format!("{}/Groups/{}", cx.base, g.id));
    Ok(resource_reply(status, &render(cx, g), g.version, location))
}

pub async fn create(cx: &Cx<'_>, body: &Value) -> Result<Reply, ScimError> {
    let (draft, members) = group_from_body(body)?;
    let members = members.unwrap_or_default();
    let outcome = cx
        .state
        .store
        .scim_create_group(cx.idp, &draft, &members)
        .await
        .map_err(|e| cx.store_failed(e))?;
    finish(cx, 201, outcome, None).await
}

/// PUT: display name, other attributes and the member list are replaced.
pub async fn replace(cx: &Cx<'_>, id: &str, body: &Value) -> Result<Reply, ScimError> {
    let (draft, members) = group_from_body(body)?;
    let wanted = cx.if_match;
    let edit = move |cur: &GroupRecord| {
        check_version(wanted, cur.version)?;
        Ok(Some(draft.clone()))
    };
    let ops = [MemberOp::Replace(members.unwrap_or_default())];
    let outcome = cx
        .state
        .store
        .scim_modify_group(cx.idp, id, &edit, &ops, with_members(cx))
        .await
        .map_err(|e| cx.store_failed(e))?;
    finish(cx, 200, outcome, Some(id)).await
}

/// PATCH: attribute operations and membership operations, one transaction.
pub async fn patch(cx: &Cx<'_>, id: &str, body: &Value) -> Result<Reply, ScimError> {
    let ops = patch::parse_request(body)?;
    let (attr_ops, member_ops) = patch::split_group_ops(&ops)?;
    let wanted = cx.if_match;
    let edit = move |cur: &GroupRecord| {
        check_version(wanted, cur.version)?;
        if attr_ops.is_empty() {
            return Ok(None);
        }
        group_draft(patch::apply_all(&cur.attrs, &attr_ops, Kind::Group)?).map(Some)
    };
    let outcome = cx
        .state
        .store
        .scim_modify_group(cx.idp, id, &edit, &member_ops, with_members(cx))
        .await
        .map_err(|e| cx.store_failed(e))?;
    finish(cx, 200, outcome, Some(id)).await
}

pub async fn delete(cx: &Cx<'_>, id: &str) -> Result<Reply, ScimError> {
    if cx.if_match.is_some() {
        let cur = cx
            .state
            .store
            .scim_get_group(cx.idp, id, false)
            .await
            .map_err(|e| cx.store_failed(e))?;
        check_version(
            cx.if_match,
            cur.as_ref().ok_or_else(|| not_found(id))?.version,
        )?;
    }
    let change = cx
        .state
        .store
        .scim_delete_group(cx.idp, id)
        .await
        .map_err(|e| cx.store_failed(e))?;
    let change = change.ok_or_else(|| not_found(id))?;
    tracing::info!(idp = %cx.idp, scim.id = %id, members = change.removed.len(), "SCIM group deleted");
    effects::group_written(cx.state, cx.idp, cx.scim, &change)
        .await
        .map_err(|e| cx.effect_failed(e))?;
    Ok(Reply::new(
        204,
        super::error::SCIM_JSON,
        bytes::Bytes::new(),
    ))
}
