//! The primitive operations of the SCIM flows on one connection
//! ([`DirConn`]), and [`dir_conn!`], which implements them for a backend's
//! connection type from its SQL text: the bodies are written once.

use async_trait::async_trait;

use crate::scim::model::{
    GroupDraft, GroupRecord, LinkKeys, MemberRef, Page, Query, UserDraft, UserRecord,
};
use crate::store::StoreError;

/// The primitive reads and writes of the SCIM flows, on one connection
/// (inside the write transaction, or pooled for a read).
#[async_trait]
pub(crate) trait DirConn: Send {
    async fn user_by_id(&mut self, idp: &str, id: &str) -> Result<Option<UserRecord>, StoreError>;
    async fn group_by_id(&mut self, idp: &str, id: &str)
        -> Result<Option<GroupRecord>, StoreError>;
    async fn members_of(&mut self, group_id: &str) -> Result<Vec<MemberRef>, StoreError>;
    async fn user_keys(&mut self, idp: &str, id: &str) -> Result<Option<LinkKeys>, StoreError>;
    /// Whether another user than `except` of the IdP has this userName
    /// (ASCII case-insensitive).
    async fn user_name_taken(
        &mut self,
        idp: &str,
        name: &str,
        except: &str,
    ) -> Result<bool, StoreError>;
    /// Whether another group than `except` of the IdP has this displayName.
    async fn group_name_taken(
        &mut self,
        idp: &str,
        name: &str,
        except: &str,
    ) -> Result<bool, StoreError>;
    /// Insert or replace a user and its email values.
    async fn put_user(
        &mut self,
        id: &str,
        idp: &str,
        d: &UserDraft,
        created_ms: i64,
        now: i64,
        version: i64,
    ) -> Result<(), StoreError>;
    async fn insert_group(
        &mut self,
        id: &str,
        idp: &str,
        d: &GroupDraft,
        now: i64,
    ) -> Result<(), StoreError>;
    async fn update_group(&mut self, id: &str, d: &GroupDraft) -> Result<(), StoreError>;
    /// `true` when the user was not a member yet.
    async fn add_member(&mut self, group: &str, user: &str, now: i64) -> Result<bool, StoreError>;
    /// `true` when the user was a member.
    async fn remove_member(&mut self, group: &str, user: &str) -> Result<bool, StoreError>;
    /// Bump a group's version and modification time.
    async fn bump_group(&mut self, id: &str, now: i64) -> Result<(), StoreError>;
    /// Bump the version and modification time of every group of a user.
    async fn bump_groups_of_user(&mut self, user_id: &str, now: i64) -> Result<(), StoreError>;
    /// Delete a user (its emails and memberships go with it).
    async fn delete_user(&mut self, id: &str) -> Result<(), StoreError>;
    /// Delete a group (its memberships go with it).
    async fn delete_group(&mut self, id: &str) -> Result<(), StoreError>;
    /// The number of users matching, and one page of them.
    async fn list_users(
        &mut self,
        idp: &str,
        q: Option<&Query>,
        page: Page,
    ) -> Result<(i64, Vec<UserRecord>), StoreError>;
    /// The number of groups matching, and one page of them (no members).
    async fn list_groups(
        &mut self,
        idp: &str,
        q: Option<&Query>,
        page: Page,
    ) -> Result<(i64, Vec<GroupRecord>), StoreError>;
    async fn user_groups(&mut self, user_id: &str) -> Result<Vec<MemberRef>, StoreError>;
    async fn secret_hashes(&mut self) -> Result<Vec<(String, Vec<u8>)>, StoreError>;
    async fn seed_secret(&mut self, idp: &str, sha256: &[u8]) -> Result<bool, StoreError>;
    async fn set_secret(&mut self, idp: &str, sha256: &[u8]) -> Result<(), StoreError>;
    /// Rows (id, active, externalId) of the users a login may link to.
    async fn link_users(
        &mut self,
        idp: &str,
        sub: &str,
        email_lower: Option<&str>,
    ) -> Result<Vec<(String, bool, Option<String>)>, StoreError>;
    /// Display names of the groups of these users, sorted.
    async fn link_groups(&mut self, user_ids: &[String]) -> Result<Vec<String>, StoreError>;
    async fn linked_subjects(&mut self, idp: &str, k: &LinkKeys)
        -> Result<Vec<String>, StoreError>;
}

/// Implements [`DirConn`] for a backend's connection type `$conn` (of
/// `sqlx` database `$db`) running the statements of `$sql`, a [`DirSql`](super::DirSql).
/// The bodies are the same for every backend; only the SQL text differs.
macro_rules! dir_conn {
    ($conn:ty, $db:ty, $sql:expr) => {
        const _: () = {
            use $crate::scim::model::{
                GroupDraft, GroupRecord, LinkKeys, MemberRef, Page, Query, UserDraft, UserRecord,
            };
            use $crate::store::directory::{
                group_from_row, link_groups_sql, lower, to_json, user_from_row, DirConn, GroupRow,
                ListSql, UserRow,
            };
            use $crate::store::StoreError;

            /// The row count and one page of a list (no rows for a page
            /// of `limit <= 0`).
            async fn count_and_page<R>(
                c: &mut $conn,
                l: &ListSql,
                page: Page,
            ) -> Result<(i64, Vec<R>), StoreError>
            where
                R: for<'r> sqlx::FromRow<'r, <$db as sqlx::Database>::Row> + Send + Unpin,
            {
                let mut count = sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(l.count.clone()));
                for b in &l.binds {
                    count = count.bind(b.clone());
                }
                let total = count.fetch_one(&mut *c).await?;
                if page.limit <= 0 {
                    return Ok((total, Vec::new()));
                }
                let mut rows = sqlx::query_as::<_, R>(sqlx::AssertSqlSafe(l.page.clone()));
                for b in &l.binds {
                    rows = rows.bind(b.clone());
                }
                let rows = rows
                    .bind(page.limit)
                    .bind(page.offset)
                    .fetch_all(&mut *c)
                    .await?;
                Ok((total, rows))
            }

            fn refs(rows: Vec<(String, String)>) -> Vec<MemberRef> {
                rows.into_iter()
                    .map(|(value, display)| MemberRef { value, display })
                    .collect()
            }

            #[async_trait::async_trait]
            impl DirConn for $conn {
                async fn user_by_id(
                    &mut self,
                    idp: &str,
                    id: &str,
                ) -> Result<Option<UserRecord>, StoreError> {
                    let row = sqlx::query_as::<_, UserRow>($sql.user_by_id)
                        .bind(id)
                        .bind(idp)
                        .fetch_optional(&mut *self)
                        .await?;
                    row.map(user_from_row).transpose()
                }

                async fn group_by_id(
                    &mut self,
                    idp: &str,
                    id: &str,
                ) -> Result<Option<GroupRecord>, StoreError> {
                    let row = sqlx::query_as::<_, GroupRow>($sql.group_by_id)
                        .bind(id)
                        .bind(idp)
                        .fetch_optional(&mut *self)
                        .await?;
                    row.map(group_from_row).transpose()
                }

                async fn members_of(
                    &mut self,
                    group_id: &str,
                ) -> Result<Vec<MemberRef>, StoreError> {
                    let rows = sqlx::query_as::<_, (String, String)>($sql.members_of)
                        .bind(group_id)
                        .fetch_all(&mut *self)
                        .await?;
                    Ok(refs(rows))
                }

                async fn user_keys(
                    &mut self,
                    idp: &str,
                    id: &str,
                ) -> Result<Option<LinkKeys>, StoreError> {
                    let row = sqlx::query_as::<_, (String, Option<String>, Option<String>)>(
                        $sql.user_keys,
                    )
                    .bind(id)
                    .bind(idp)
                    .fetch_optional(&mut *self)
                    .await?;
                    Ok(row.map(|(user_name, external_id, primary_email)| LinkKeys {
                        external_id,
                        user_name,
                        primary_email,
                    }))
                }

                async fn user_name_taken(
                    &mut self,
                    idp: &str,
                    name: &str,
                    except: &str,
                ) -> Result<bool, StoreError> {
                    let hit = sqlx::query_scalar::<_, String>($sql.user_name_taken)
                        .bind(idp)
                        .bind(name.to_ascii_lowercase())
                        .bind(except)
                        .fetch_optional(&mut *self)
                        .await?;
                    Ok(hit.is_some())
                }

                async fn group_name_taken(
                    &mut self,
                    idp: &str,
                    name: &str,
                    except: &str,
                ) -> Result<bool, StoreError> {
                    let hit = sqlx::query_scalar::<_, String>($sql.group_name_taken)
                        .bind(idp)
                        .bind(name.to_ascii_lowercase())
                        .bind(except)
                        .fetch_optional(&mut *self)
                        .await?;
                    Ok(hit.is_some())
                }

                async fn put_user(
                    &mut self,
                    id: &str,
                    idp: &str,
                    d: &UserDraft,
                    created_ms: i64,
                    now: i64,
                    version: i64,
                ) -> Result<(), StoreError> {
                    sqlx::query($sql.put_user)
                        .bind(id)
                        .bind(idp)
                        .bind(&d.user_name)
                        .bind(d.user_name.to_ascii_lowercase())
                        .bind(&d.external_id)
                        .bind(&d.display_name)
                        .bind(lower(&d.display_name))
                        .bind(&d.primary_email)
                        .bind(lower(&d.primary_email))
                        .bind(d.active)
                        .bind(to_json(&d.attrs))
                        .bind(created_ms)
                        .bind(now)
                        .bind(version)
                        .execute(&mut *self)
                        .await?;
                    sqlx::query($sql.delete_emails)
                        .bind(id)
                        .execute(&mut *self)
                        .await?;
                    for e in &d.emails {
                        sqlx::query($sql.insert_email)
                            .bind(id)
                            .bind(e)
                            .execute(&mut *self)
                            .await?;
                    }
                    Ok(())
                }

                async fn insert_group(
                    &mut self,
                    id: &str,
                    idp: &str,
                    d: &GroupDraft,
                    now: i64,
                ) -> Result<(), StoreError> {
                    sqlx::query($sql.insert_group)
                        .bind(id)
                        .bind(idp)
                        .bind(&d.display_name)
                        .bind(d.display_name.to_ascii_lowercase())
                        .bind(&d.external_id)
                        .bind(to_json(&d.attrs))
                        .bind(now)
                        .execute(&mut *self)
                        .await?;
                    Ok(())
                }

                async fn update_group(
                    &mut self,
                    id: &str,
                    d: &GroupDraft,
                ) -> Result<(), StoreError> {
                    sqlx::query($sql.update_group)
                        .bind(id)
                        .bind(&d.display_name)
                        .bind(d.display_name.to_ascii_lowercase())
                        .bind(&d.external_id)
                        .bind(to_json(&d.attrs))
                        .execute(&mut *self)
                        .await?;
                    Ok(())
                }

                async fn add_member(
                    &mut self,
                    group: &str,
                    user: &str,
                    now: i64,
                ) -> Result<bool, StoreError> {
                    let done = sqlx::query($sql.add_member)
                        .bind(group)
                        .bind(user)
                        .bind(now)
                        .execute(&mut *self)
                        .await?;
                    Ok(done.rows_affected() == 1)
                }

                async fn remove_member(
                    &mut self,
                    group: &str,
                    user: &str,
                ) -> Result<bool, StoreError> {
                    let done = sqlx::query($sql.remove_member)
                        .bind(group)
                        .bind(user)
                        .execute(&mut *self)
                        .await?;
                    Ok(done.rows_affected() == 1)
                }

                async fn bump_group(&mut self, id: &str, now: i64) -> Result<(), StoreError> {
                    sqlx::query($sql.bump_group)
                        .bind(id)
                        .bind(now)
                        .execute(&mut *self)
                        .await?;
                    Ok(())
                }

                async fn bump_groups_of_user(
                    &mut self,
                    user_id: &str,
                    now: i64,
                ) -> Result<(), StoreError> {
                    sqlx::query($sql.bump_groups_of_user)
                        .bind(user_id)
                        .bind(now)
                        .execute(&mut *self)
                        .await?;
                    Ok(())
                }

                async fn delete_user(&mut self, id: &str) -> Result<(), StoreError> {
                    sqlx::query($sql.delete_user)
                        .bind(id)
                        .execute(&mut *self)
                        .await?;
                    Ok(())
                }

                async fn delete_group(&mut self, id: &str) -> Result<(), StoreError> {
                    sqlx::query($sql.delete_group)
                        .bind(id)
                        .execute(&mut *self)
                        .await?;
                    Ok(())
                }

                async fn list_users(
                    &mut self,
                    idp: &str,
                    q: Option<&Query>,
                    page: Page,
                ) -> Result<(i64, Vec<UserRecord>), StoreError> {
                    let l = ListSql::new(&$sql.dialect, true, idp, q);
                    let (total, rows) = count_and_page::<UserRow>(self, &l, page).await?;
                    let users = rows
                        .into_iter()
                        .map(user_from_row)
                        .collect::<Result<Vec<_>, _>>()?;
                    Ok((total, users))
                }

                async fn list_groups(
                    &mut self,
                    idp: &str,
                    q: Option<&Query>,
                    page: Page,
                ) -> Result<(i64, Vec<GroupRecord>), StoreError> {
                    let l = ListSql::new(&$sql.dialect, false, idp, q);
                    let (total, rows) = count_and_page::<GroupRow>(self, &l, page).await?;
                    let groups = rows
                        .into_iter()
                        .map(group_from_row)
                        .collect::<Result<Vec<_>, _>>()?;
                    Ok((total, groups))
                }

                async fn user_groups(
                    &mut self,
                    user_id: &str,
                ) -> Result<Vec<MemberRef>, StoreError> {
                    let rows = sqlx::query_as::<_, (String, String)>($sql.user_groups)
                        .bind(user_id)
                        .fetch_all(&mut *self)
                        .await?;
                    Ok(refs(rows))
                }

                async fn secret_hashes(&mut self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
                    Ok(sqlx::query_as::<_, (String, Vec<u8>)>($sql.secret_hashes)
                        .fetch_all(&mut *self)
                        .await?)
                }

                async fn seed_secret(
                    &mut self,
                    idp: &str,
                    sha256: &[u8],
                ) -> Result<bool, StoreError> {
                    let done = sqlx::query($sql.seed_secret)
                        .bind(idp)
                        .bind(sha256)
                        .bind($crate::scim::model::now_ms() / 1000)
                        .execute(&mut *self)
                        .await?;
                    Ok(done.rows_affected() == 1)
                }

                async fn set_secret(&mut self, idp: &str, sha256: &[u8]) -> Result<(), StoreError> {
                    sqlx::query($sql.set_secret)
                        .bind(idp)
                        .bind(sha256)
                        .bind($crate::scim::model::now_ms() / 1000)
                        .execute(&mut *self)
                        .await?;
                    Ok(())
                }

                async fn link_users(
                    &mut self,
                    idp: &str,
                    sub: &str,
                    email_lower: Option<&str>,
                ) -> Result<Vec<(String, bool, Option<String>)>, StoreError> {
                    Ok(
                        sqlx::query_as::<_, (String, bool, Option<String>)>($sql.link_users)
                            .bind(idp)
                            .bind(sub)
                            .bind(email_lower)
                            .fetch_all(&mut *self)
                            .await?,
                    )
                }

                async fn link_groups(
                    &mut self,
                    user_ids: &[String],
                ) -> Result<Vec<String>, StoreError> {
                    let sql = link_groups_sql(&$sql.dialect, user_ids.len());
                    let mut q = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql));
                    for id in user_ids {
                        q = q.bind(id.clone());
                    }
                    Ok(q.fetch_all(&mut *self).await?)
                }

                async fn linked_subjects(
                    &mut self,
                    idp: &str,
                    k: &LinkKeys,
                ) -> Result<Vec<String>, StoreError> {
                    Ok(sqlx::query_scalar::<_, String>($sql.linked_subjects)
                        .bind(idp)
                        .bind(&k.external_id)
                        .bind(&k.user_name)
                        .bind(&k.primary_email)
                        .fetch_all(&mut *self)
                        .await?)
                }
            }
        };
    };
}
pub(crate) use dir_conn;
