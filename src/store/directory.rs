//! The SCIM directory, written once for every backend: [`DirectoryStore`]
//! for any [`DirBackend`]. The flows (`flows`) create, modify and delete
//! users and groups and apply membership operations with their net delta;
//! lists read a count and a page; links find the SCIM users of a login.
//!
//! A backend supplies two things: the primitive reads and writes on one of
//! its connections ([`DirConn`], stamped out from the backend's SQL text,
//! a [`DirSql`], by [`dir_conn!`]), and how a SCIM write transaction begins
//! ([`DirBackend`]: SQLite takes the file's write lock, PostgreSQL a
//! fleet-wide advisory lock). Every write runs in one such transaction,
//! committed only when the flow returns [`Outcome::Done`] (or a deleted
//! resource) and rolled back otherwise, so an acknowledged SCIM write is
//! durable and a refused one changed nothing.

mod conn;
mod flows;
mod rows;
mod sql;

use std::collections::BTreeSet;

use async_trait::async_trait;

pub(crate) use conn::{dir_conn, DirConn};
use flows::{create_group, create_user, delete_group, delete_user, modify_group, modify_user};
pub(crate) use rows::{
    group_from_row, linked_users, lower, to_json, user_from_row, GroupRow, UserRow,
};
pub(crate) use sql::{link_groups_sql, Dialect, DirSql, ListSql};

use super::{DirectoryStore, StoreError};
use crate::scim::model::{
    GroupChange, GroupDraft, GroupEdit, GroupRecord, LinkKeys, MemberOp, MemberRef, Outcome, Page,
    Query, ScimLink, UserChange, UserDraft, UserEdit, UserRecord,
};

/// A backend of the SCIM directory: its pool, whose connections are
/// [`DirConn`]s, and how a write transaction begins.
#[async_trait]
pub(crate) trait DirBackend: Send + Sync + 'static {
    type Db: sqlx::Database<Connection: DirConn>;

    fn dir_pool(&self) -> &sqlx::Pool<Self::Db>;

    /// Begin a SCIM write: a transaction that holds the lock under which
    /// SCIM writes run one at a time.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, Self::Db>, StoreError>;

    /// [`DirectoryStore::scim_link`] on the calling thread, for a backend
    /// that can read faster than a hop to another thread (an SQLite file);
    /// `None`: not now, read through the pool.
    fn link_in_place(
        &self,
        _idp: &str,
        _sub: &str,
        _verified_email: Option<&str>,
    ) -> Option<Result<ScimLink, StoreError>> {
        None
    }
}

/// [`DirectoryStore::scim_link`] through a pooled connection.
pub(crate) async fn link_pooled<B: DirBackend>(
    store: &B,
    idp: &str,
    sub: &str,
    verified_email: Option<&str>,
) -> Result<ScimLink, StoreError> {
    let email = verified_email.map(str::to_ascii_lowercase);
    let mut c = store.dir_pool().acquire().await?;
    let rows = c.link_users(idp, sub, email.as_deref()).await?;
    let users = linked_users(rows, sub);
    if users.is_empty() {
        return Ok(ScimLink::default());
    }
    let ids: Vec<String> = users.iter().map(|(id, _)| id.clone()).collect();
    let groups = c.link_groups(&ids).await?;
    Ok(ScimLink { users, groups })
}

/// Commit `tx` when the flow did its write, roll it back otherwise.
async fn settle<DB: sqlx::Database, T>(
    tx: sqlx::Transaction<'static, DB>,
    done: bool,
    out: T,
) -> Result<T, StoreError> {
    if done {
        tx.commit().await?;
    } else {
        tx.rollback().await?;
    }
    Ok(out)
}

#[async_trait]
impl<B: DirBackend> DirectoryStore for B {
    async fn scim_secret_hashes(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.dir_pool().acquire().await?.secret_hashes().await
    }

    async fn scim_seed_secret(&self, idp: &str, sha256: &[u8]) -> Result<bool, StoreError> {
        self.dir_pool()
            .acquire()
            .await?
            .seed_secret(idp, sha256)
            .await
    }

    async fn scim_set_secret(&self, idp: &str, sha256: &[u8]) -> Result<(), StoreError> {
        self.dir_pool()
            .acquire()
            .await?
            .set_secret(idp, sha256)
            .await
    }

    async fn scim_create_user(
        &self,
        idp: &str,
        draft: &UserDraft,
    ) -> Result<Outcome<UserRecord>, StoreError> {
        let mut tx = self.begin_write().await?;
        let out = create_user(&mut *tx, idp, draft).await?;
        let done = matches!(out, Outcome::Done(_));
        settle(tx, done, out).await
    }

    async fn scim_get_user(&self, idp: &str, id: &str) -> Result<Option<UserRecord>, StoreError> {
        self.dir_pool().acquire().await?.user_by_id(idp, id).await
    }

    async fn scim_modify_user(
        &self,
        idp: &str,
        id: &str,
        edit: &UserEdit<'_>,
    ) -> Result<Outcome<UserChange>, StoreError> {
        let mut tx = self.begin_write().await?;
        let out = modify_user(&mut *tx, idp, id, edit).await?;
        let done = matches!(out, Outcome::Done(_));
        settle(tx, done, out).await
    }

    async fn scim_delete_user(
        &self,
        idp: &str,
        id: &str,
    ) -> Result<Option<UserRecord>, StoreError> {
        let mut tx = self.begin_write().await?;
        let out = delete_user(&mut *tx, idp, id).await?;
        settle(tx, out.is_some(), out).await
    }

    async fn scim_list_users(
        &self,
        idp: &str,
        query: Option<&Query>,
        page: Page,
    ) -> Result<(i64, Vec<UserRecord>), StoreError> {
        let mut c = self.dir_pool().acquire().await?;
        c.list_users(idp, query, page).await
    }

    async fn scim_user_groups(&self, user_id: &str) -> Result<Vec<MemberRef>, StoreError> {
        self.dir_pool().acquire().await?.user_groups(user_id).await
    }

    async fn scim_create_group(
        &self,
        idp: &str,
        draft: &GroupDraft,
        members: &[String],
    ) -> Result<Outcome<GroupChange>, StoreError> {
        let mut tx = self.begin_write().await?;
        let out = create_group(&mut *tx, idp, draft, members).await?;
        let done = matches!(out, Outcome::Done(_));
        settle(tx, done, out).await
    }

    async fn scim_get_group(
        &self,
        idp: &str,
        id: &str,
        with_members: bool,
    ) -> Result<Option<GroupRecord>, StoreError> {
        let mut c = self.dir_pool().acquire().await?;
        let Some(mut g) = c.group_by_id(idp, id).await? else {
            return Ok(None);
        };
        if with_members {
            g.members = Some(c.members_of(id).await?);
        }
        Ok(Some(g))
    }

    async fn scim_modify_group(
        &self,
        idp: &str,
        id: &str,
        edit: &GroupEdit<'_>,
        members: &[MemberOp],
        with_members: bool,
    ) -> Result<Outcome<GroupChange>, StoreError> {
        let mut tx = self.begin_write().await?;
        let out = modify_group(&mut *tx, idp, id, edit, members, with_members).await?;
        let done = matches!(out, Outcome::Done(_));
        settle(tx, done, out).await
    }

    async fn scim_delete_group(
        &self,
        idp: &str,
        id: &str,
    ) -> Result<Option<GroupChange>, StoreError> {
        let mut tx = self.begin_write().await?;
        let out = delete_group(&mut *tx, idp, id).await?;
        settle(tx, out.is_some(), out).await
    }

    async fn scim_list_groups(
        &self,
        idp: &str,
        query: Option<&Query>,
        page: Page,
        with_members: bool,
    ) -> Result<(i64, Vec<GroupRecord>), StoreError> {
        let mut c = self.dir_pool().acquire().await?;
        let (total, mut groups) = c.list_groups(idp, query, page).await?;
        if with_members {
            for g in &mut groups {
                g.members = Some(c.members_of(&g.id).await?);
            }
        }
        Ok((total, groups))
    }

    async fn scim_link(
        &self,
        idp: &str,
        sub: &str,
        verified_email: Option<&str>,
    ) -> Result<ScimLink, StoreError> {
        match self.link_in_place(idp, sub, verified_email) {
            Some(read) => read,
            None => link_pooled(self, idp, sub, verified_email).await,
        }
    }

    async fn scim_linked_subjects(
        &self,
        idp: &str,
        keys: &[LinkKeys],
    ) -> Result<Vec<String>, StoreError> {
        let mut c = self.dir_pool().acquire().await?;
        let mut subs = BTreeSet::new();
        for k in keys {
            subs.extend(c.linked_subjects(idp, k).await?);
        }
        Ok(subs.into_iter().collect())
    }
}
