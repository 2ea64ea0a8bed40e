//! The SCIM write flows, generic over a [`DirConn`] inside the write
//! transaction: they read, check and write, and report an [`Outcome`];
//! the caller commits only on `Done`.

use std::collections::BTreeSet;

use serde_json::json;

use super::DirConn;
use crate::scim::model::{
    now_ms, GroupChange, GroupDraft, GroupEdit, LinkKeys, MemberOp, Outcome, UserChange, UserDraft,
    UserEdit, UserRecord,
};
use crate::store::{Rejection, StoreError};

/// Net membership changes within one transaction.
#[derive(Default)]
pub(crate) struct Delta {
    pub(crate) added: BTreeSet<String>,
    pub(crate) removed: BTreeSet<String>,
}

impl Delta {
    pub(crate) fn add(&mut self, id: &str) {
        if !self.removed.remove(id) {
            self.added.insert(id.to_string());
        }
    }

    pub(crate) fn remove(&mut self, id: &str) {
        if !self.added.remove(id) {
            self.removed.insert(id.to_string());
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }
}

/// Every id must be a user of `idp`; the first that is not is named.
async fn check_users<C: DirConn>(
    c: &mut C,
    idp: &str,
    ids: &[String],
) -> Result<Option<Rejection>, StoreError> {
    for id in ids {
        if c.user_keys(idp, id).await?.is_none() {
            return Ok(Some(Rejection::UnknownMember(id.clone())));
        }
    }
    Ok(None)
}

/// Apply membership operations in order; `Err(Rejection)` refuses the write.
async fn apply_member_ops<C: DirConn>(
    c: &mut C,
    idp: &str,
    group: &str,
    ops: &[MemberOp],
    now: i64,
) -> Result<Result<Delta, Rejection>, StoreError> {
    let mut delta = Delta::default();
    for op in ops {
        match op {
            MemberOp::Add(ids) => {
                if let Some(e) = check_users(c, idp, ids).await? {
                    return Ok(Err(e));
                }
                for id in ids {
                    if c.add_member(group, id, now).await? {
                        delta.add(id);
                    }
                }
            }
            MemberOp::Remove(ids) => {
                for id in ids {
                    if c.remove_member(group, id).await? {
                        delta.remove(id);
                    }
                }
            }
            MemberOp::RemoveWhere(filter) => {
                for m in c.members_of(group).await? {
                    let doc = json!({"value": m.value, "display": m.display, "type": "User"});
                    if filter.matches(&doc) && c.remove_member(group, &m.value).await? {
                        delta.remove(&m.value);
                    }
                }
            }
            MemberOp::RemoveAll => {
                for m in c.members_of(group).await? {
                    if c.remove_member(group, &m.value).await? {
                        delta.remove(&m.value);
                    }
                }
            }
            MemberOp::Replace(ids) => {
                if let Some(e) = check_users(c, idp, ids).await? {
                    return Ok(Err(e));
                }
                for m in c.members_of(group).await? {
                    if !ids.contains(&m.value) && c.remove_member(group, &m.value).await? {
                        delta.remove(&m.value);
                    }
                }
                for id in ids {
                    if c.add_member(group, id, now).await? {
                        delta.add(id);
                    }
                }
            }
        }
    }
    Ok(Ok(delta))
}

async fn keys_of<'a, C: DirConn>(
    c: &mut C,
    idp: &str,
    ids: impl IntoIterator<Item = &'a String> + Send,
) -> Result<Vec<LinkKeys>, StoreError> {
    let mut out = Vec::new();
    for id in ids {
        if let Some(k) = c.user_keys(idp, id).await? {
            out.push(k);
        }
    }
    Ok(out)
}

pub(super) async fn create_user<C: DirConn>(
    c: &mut C,
    idp: &str,
    d: &UserDraft,
) -> Result<Outcome<UserRecord>, StoreError> {
    if c.user_name_taken(idp, &d.user_name, "").await? {
        return Ok(Outcome::Conflict("userName"));
    }
    let id = uuid::Uuid::new_v4().to_string();
    let now = now_ms();
    c.put_user(&id, idp, d, now, now, 1).await?;
    let rec = c
        .user_by_id(idp, &id)
        .await?
        .ok_or_else(|| StoreError::Data("created SCIM user vanished".into()))?;
    Ok(Outcome::Done(rec))
}

pub(super) async fn modify_user<C: DirConn>(
    c: &mut C,
    idp: &str,
    id: &str,
    edit: &UserEdit<'_>,
) -> Result<Outcome<UserChange>, StoreError> {
    let Some(before) = c.user_by_id(idp, id).await? else {
        return Ok(Outcome::NotFound);
    };
    let draft = match edit(&before) {
        Ok(d) => d,
        Err(e) => return Ok(Outcome::Rejected(e)),
    };
    if draft.attrs == before.attrs {
        return Ok(Outcome::Done(UserChange {
            after: before.clone(),
            before: Some(before),
            changed: false,
        }));
    }
    if c.user_name_taken(idp, &draft.user_name, id).await? {
        return Ok(Outcome::Conflict("userName"));
    }
    c.put_user(
        id,
        idp,
        &draft,
        before.created_ms,
        now_ms().max(before.modified_ms),
        before.version + 1,
    )
    .await?;
    let after = c
        .user_by_id(idp, id)
        .await?
        .ok_or_else(|| StoreError::Data("updated SCIM user vanished".into()))?;
    Ok(Outcome::Done(UserChange {
        before: Some(before),
        after,
        changed: true,
    }))
}

pub(super) async fn delete_user<C: DirConn>(
    c: &mut C,
    idp: &str,
    id: &str,
) -> Result<Option<UserRecord>, StoreError> {
    let Some(rec) = c.user_by_id(idp, id).await? else {
        return Ok(None);
    };
    c.bump_groups_of_user(id, now_ms()).await?;
    c.delete_user(id).await?;
    Ok(Some(rec))
}

pub(super) async fn create_group<C: DirConn>(
    c: &mut C,
    idp: &str,
    d: &GroupDraft,
    members: &[String],
) -> Result<Outcome<GroupChange>, StoreError> {
    if c.group_name_taken(idp, &d.display_name, "").await? {
        return Ok(Outcome::Conflict("displayName"));
    }
    let id = uuid::Uuid::new_v4().to_string();
    let now = now_ms();
    c.insert_group(&id, idp, d, now).await?;
    let add = [MemberOp::Add(members.to_vec())];
    let delta = match apply_member_ops(c, idp, &id, &add, now).await? {
        Ok(d) => d,
        Err(r) => return Ok(Outcome::Rejected(r.into())),
    };
    let mut group = c
        .group_by_id(idp, &id)
        .await?
        .ok_or_else(|| StoreError::Data("created SCIM group vanished".into()))?;
    group.members = Some(c.members_of(&id).await?);
    let added = keys_of(c, idp, &delta.added).await?;
    Ok(Outcome::Done(GroupChange {
        group,
        added,
        removed: Vec::new(),
        others: Vec::new(),
    }))
}

pub(super) async fn modify_group<C: DirConn>(
    c: &mut C,
    idp: &str,
    id: &str,
    edit: &GroupEdit<'_>,
    ops: &[MemberOp],
    with_members: bool,
) -> Result<Outcome<GroupChange>, StoreError> {
    let Some(before) = c.group_by_id(idp, id).await? else {
        return Ok(Outcome::NotFound);
    };
    let draft = match edit(&before) {
        Ok(d) => d.filter(|d| d.attrs != before.attrs),
        Err(e) => return Ok(Outcome::Rejected(e)),
    };
    let now = now_ms().max(before.modified_ms);
    let mut renamed = false;
    if let Some(d) = &draft {
        if c.group_name_taken(idp, &d.display_name, id).await? {
            return Ok(Outcome::Conflict("displayName"));
        }
        renamed = d.display_name != before.display_name;
        c.update_group(id, d).await?;
    }
    let delta = match apply_member_ops(c, idp, id, ops, now).await? {
        Ok(d) => d,
        Err(r) => return Ok(Outcome::Rejected(r.into())),
    };
    if draft.is_some() || !delta.is_empty() {
        c.bump_group(id, now).await?;
    }
    let mut group = c
        .group_by_id(idp, id)
        .await?
        .ok_or_else(|| StoreError::Data("updated SCIM group vanished".into()))?;
    let members = c.members_of(id).await?;
    let added = keys_of(c, idp, &delta.added).await?;
    let removed = keys_of(c, idp, &delta.removed).await?;
    let others = if renamed {
        let ids: Vec<String> = members
            .iter()
            .map(|m| m.value.clone())
            .filter(|v| !delta.added.contains(v))
            .collect();
        keys_of(c, idp, &ids).await?
    } else {
        Vec::new()
    };
    if with_members {
        group.members = Some(members);
    }
    Ok(Outcome::Done(GroupChange {
        group,
        added,
        removed,
        others,
    }))
}

pub(super) async fn delete_group<C: DirConn>(
    c: &mut C,
    idp: &str,
    id: &str,
) -> Result<Option<GroupChange>, StoreError> {
    let Some(group) = c.group_by_id(idp, id).await? else {
        return Ok(None);
    };
    let ids: Vec<String> = c
        .members_of(id)
        .await?
        .into_iter()
        .map(|m| m.value)
        .collect();
    let removed = keys_of(c, idp, &ids).await?;
    c.delete_group(id).await?;
    Ok(Some(GroupChange {
        group,
        added: Vec::new(),
        removed,
        others: Vec::new(),
    }))
}
