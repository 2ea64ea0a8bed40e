//! SCIM tables and queries of [`SqliteStore`]: users (client attributes as
//! JSON plus indexed columns), their email values, groups, memberships as
//! rows, and the SCIM secrets (SHA-256 only). Every write runs in one
//! `BEGIN IMMEDIATE` transaction committed before it returns, so an
//! acknowledged SCIM write survives a crash and concurrent membership
//! changes to one group never lose a member. The `Store` impl in `sqlite`
//! forwards to the methods here.

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};
use sqlx::{AssertSqlSafe, Sqlite, SqliteConnection, Transaction};

use super::sqlite::SqliteStore;
use super::StoreError;
use crate::scim::error::ScimError;
use crate::scim::model::{
    now_ms, Field, GroupChange, GroupDraft, GroupEdit, GroupRecord, LinkKeys, MatchOp, MemberOp,
    MemberRef, Outcome, Page, Query, ScimLink, UserChange, UserDraft, UserEdit, UserRecord,
};

/// Schema: SCIM users, emails, groups, memberships, secrets; and an index
/// to find sessions by email (deprovisioning a user linked by email). The
/// index expression tolerates a malformed identity (it must never make a
/// session write fail) and is repeated verbatim in
/// [`SqliteStore::scim_linked_subjects`] so SQLite uses it.
pub(crate) const SCHEMA_SCIM_V1: &str = r#"
CREATE TABLE IF NOT EXISTS scim_secrets (
    idp           TEXT    NOT NULL PRIMARY KEY,
    secret_sha256 BLOB    NOT NULL,
    updated_at    INTEGER NOT NULL
) STRICT;

CREATE TABLE IF NOT EXISTS scim_users (
    id                  TEXT    NOT NULL PRIMARY KEY,
    idp                 TEXT    NOT NULL,
    user_name           TEXT    NOT NULL,
    user_name_lower     TEXT    NOT NULL,
    external_id         TEXT,
    display_name        TEXT,
    display_name_lower  TEXT,
    primary_email       TEXT,
    primary_email_lower TEXT,
    active              INTEGER NOT NULL,
    resource            TEXT    NOT NULL,
    created_ms          INTEGER NOT NULL,
    modified_ms         INTEGER NOT NULL,
    version             INTEGER NOT NULL
) STRICT;
CREATE UNIQUE INDEX IF NOT EXISTS scim_users_by_name ON scim_users (idp, user_name_lower);
CREATE INDEX IF NOT EXISTS scim_users_by_external_id ON scim_users (idp, external_id);
CREATE INDEX IF NOT EXISTS scim_users_by_email ON scim_users (idp, primary_email_lower);
CREATE INDEX IF NOT EXISTS scim_users_by_created ON scim_users (idp, created_ms, id);

CREATE TABLE IF NOT EXISTS scim_user_emails (
    user_id     TEXT NOT NULL REFERENCES scim_users (id) ON DELETE CASCADE,
    value_lower TEXT NOT NULL,
    PRIMARY KEY (user_id, value_lower)
) STRICT;
CREATE INDEX IF NOT EXISTS scim_user_emails_by_value ON scim_user_emails (value_lower);

CREATE TABLE IF NOT EXISTS scim_groups (
    id                 TEXT    NOT NULL PRIMARY KEY,
    idp                TEXT    NOT NULL,
    display_name       TEXT    NOT NULL,
    display_name_lower TEXT    NOT NULL,
    external_id        TEXT,
    resource           TEXT    NOT NULL,
    created_ms         INTEGER NOT NULL,
    modified_ms        INTEGER NOT NULL,
    version            INTEGER NOT NULL
) STRICT;
CREATE UNIQUE INDEX IF NOT EXISTS scim_groups_by_name ON scim_groups (idp, display_name_lower);
CREATE INDEX IF NOT EXISTS scim_groups_by_created ON scim_groups (idp, created_ms, id);

CREATE TABLE IF NOT EXISTS scim_members (
    group_id TEXT    NOT NULL REFERENCES scim_groups (id) ON DELETE CASCADE,
    user_id  TEXT    NOT NULL REFERENCES scim_users (id) ON DELETE CASCADE,
    added_ms INTEGER NOT NULL,
    PRIMARY KEY (group_id, user_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS scim_members_by_user ON scim_members (user_id, group_id);

CREATE INDEX IF NOT EXISTS sessions_by_email ON sessions
    (idp, (CASE WHEN json_valid(identity) THEN lower(json_extract(identity, '$.email')) END));
"#;

/// The users of an IdP a login may link to: `?1` idp, `?2` sub, `?3` the
/// lower-cased verified email (or NULL). Rows: (id, active, externalId).
pub(crate) const LINK_USERS: &str = "SELECT id, active, external_id FROM scim_users \
     WHERE idp = ?1 AND (external_id = ?2 OR user_name_lower = ?3 OR primary_email_lower = ?3) \
     ORDER BY created_ms, id";

/// Display names of the groups of `n` users (bound as `?`s), sorted.
pub(crate) fn link_groups_sql(n: usize) -> String {
    let placeholders = vec!["?"; n].join(", ");
    format!(
        "SELECT DISTINCT g.display_name FROM scim_members m JOIN scim_groups g ON g.id = m.group_id \
         WHERE m.user_id IN ({placeholders}) ORDER BY g.display_name"
    )
}

/// The linked users among the [`LINK_USERS`] rows: those whose `externalId`
/// is the login's `sub` when there is one, else all (matched by email).
/// Returns (id, active).
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

pub(crate) const USER_COLS: &str =
    "u.id, u.idp, u.user_name, u.external_id, u.display_name, u.primary_email, u.active, u.resource, u.created_ms, u.modified_ms, u.version";
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

pub(crate) fn attrs_from(json: &str, what: &str) -> Result<Map<String, Value>, StoreError> {
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

async fn user_by_id(
    c: &mut SqliteConnection,
    idp: &str,
    id: &str,
) -> Result<Option<UserRecord>, StoreError> {
    let sql = format!("SELECT {USER_COLS} FROM scim_users u WHERE u.id = ?1 AND u.idp = ?2");
    let row = sqlx::query_as::<_, UserRow>(AssertSqlSafe(sql))
        .bind(id)
        .bind(idp)
        .fetch_optional(&mut *c)
        .await?;
    row.map(user_from_row).transpose()
}

async fn group_by_id(
    c: &mut SqliteConnection,
    idp: &str,
    id: &str,
) -> Result<Option<GroupRecord>, StoreError> {
    let sql = format!("SELECT {GROUP_COLS} FROM scim_groups g WHERE g.id = ?1 AND g.idp = ?2");
    let row = sqlx::query_as::<_, GroupRow>(AssertSqlSafe(sql))
        .bind(id)
        .bind(idp)
        .fetch_optional(&mut *c)
        .await?;
    row.map(group_from_row).transpose()
}

async fn members_of(
    c: &mut SqliteConnection,
    group_id: &str,
) -> Result<Vec<MemberRef>, StoreError> {
    let rows = sqlx::query_as::<_, (String, String)>(
        "SELECT u.id, u.user_name FROM scim_members m JOIN scim_users u ON u.id = m.user_id \
         WHERE m.group_id = ?1 ORDER BY m.added_ms, u.id",
    )
    .bind(group_id)
    .fetch_all(&mut *c)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(value, display)| MemberRef { value, display })
        .collect())
}

async fn user_keys(
    c: &mut SqliteConnection,
    idp: &str,
    id: &str,
) -> Result<Option<LinkKeys>, StoreError> {
    let row = sqlx::query_as::<_, (String, Option<String>, Option<String>)>(
        "SELECT user_name, external_id, primary_email FROM scim_users WHERE id = ?1 AND idp = ?2",
    )
    .bind(id)
    .bind(idp)
    .fetch_optional(&mut *c)
    .await?;
    Ok(row.map(|(user_name, external_id, primary_email)| LinkKeys {
        external_id,
        user_name,
        primary_email,
    }))
}

/// Finds another user of the IdP with this userName (case-insensitive).
const USER_NAME_TAKEN: &str =
    "SELECT id FROM scim_users WHERE idp = ?1 AND user_name_lower = ?2 AND id <> ?3";
/// Finds another group of the IdP with this displayName (case-insensitive).
const GROUP_NAME_TAKEN: &str =
    "SELECT id FROM scim_groups WHERE idp = ?1 AND display_name_lower = ?2 AND id <> ?3";

/// Whether `sql` (one of the `*_NAME_TAKEN` queries) finds a resource other
/// than `except` with this name.
async fn name_taken(
    c: &mut SqliteConnection,
    sql: &'static str,
    idp: &str,
    name: &str,
    except: &str,
) -> Result<bool, StoreError> {
    let hit = sqlx::query_scalar::<_, String>(sql)
        .bind(idp)
        .bind(name.to_ascii_lowercase())
        .bind(except)
        .fetch_optional(&mut *c)
        .await?;
    Ok(hit.is_some())
}

async fn write_emails(
    c: &mut SqliteConnection,
    user_id: &str,
    emails: &[String],
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM scim_user_emails WHERE user_id = ?1")
        .bind(user_id)
        .execute(&mut *c)
        .await?;
    for e in emails {
        sqlx::query(
            "INSERT OR IGNORE INTO scim_user_emails (user_id, value_lower) VALUES (?1, ?2)",
        )
        .bind(user_id)
        .bind(e)
        .execute(&mut *c)
        .await?;
    }
    Ok(())
}

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
async fn check_users(
    c: &mut SqliteConnection,
    idp: &str,
    ids: &[String],
) -> Result<Option<ScimError>, StoreError> {
    for id in ids {
        if user_keys(c, idp, id).await?.is_none() {
            return Ok(Some(ScimError::invalid_value(format!(
                "members: no user with id {id:?}"
            ))));
        }
    }
    Ok(None)
}

async fn add_member(
    c: &mut SqliteConnection,
    group: &str,
    user: &str,
    now: i64,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "INSERT OR IGNORE INTO scim_members (group_id, user_id, added_ms) VALUES (?1, ?2, ?3)",
    )
    .bind(group)
    .bind(user)
    .bind(now)
    .execute(&mut *c)
    .await?;
    Ok(done.rows_affected() == 1)
}

async fn remove_member(
    c: &mut SqliteConnection,
    group: &str,
    user: &str,
) -> Result<bool, StoreError> {
    let done = sqlx::query("DELETE FROM scim_members WHERE group_id = ?1 AND user_id = ?2")
        .bind(group)
        .bind(user)
        .execute(&mut *c)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Apply membership operations in order; `Err(ScimError)` refuses the write.
async fn apply_member_ops(
    c: &mut SqliteConnection,
    idp: &str,
    group: &str,
    ops: &[MemberOp],
    now: i64,
) -> Result<Result<Delta, ScimError>, StoreError> {
    let mut delta = Delta::default();
    for op in ops {
        match op {
            MemberOp::Add(ids) => {
                if let Some(e) = check_users(c, idp, ids).await? {
                    return Ok(Err(e));
                }
                for id in ids {
                    if add_member(c, group, id, now).await? {
                        delta.add(id);
                    }
                }
            }
            MemberOp::Remove(ids) => {
                for id in ids {
                    if remove_member(c, group, id).await? {
                        delta.remove(id);
                    }
                }
            }
            MemberOp::RemoveWhere(filter) => {
                for m in members_of(c, group).await? {
                    let doc = json!({"value": m.value, "display": m.display, "type": "User"});
                    if filter.matches(&doc) && remove_member(c, group, &m.value).await? {
                        delta.remove(&m.value);
                    }
                }
            }
            MemberOp::RemoveAll => {
                for m in members_of(c, group).await? {
                    if remove_member(c, group, &m.value).await? {
                        delta.remove(&m.value);
                    }
                }
            }
            MemberOp::Replace(ids) => {
                if let Some(e) = check_users(c, idp, ids).await? {
                    return Ok(Err(e));
                }
                for m in members_of(c, group).await? {
                    if !ids.contains(&m.value) && remove_member(c, group, &m.value).await? {
                        delta.remove(&m.value);
                    }
                }
                for id in ids {
                    if add_member(c, group, id, now).await? {
                        delta.add(id);
                    }
                }
            }
        }
    }
    Ok(Ok(delta))
}

async fn keys_of(
    c: &mut SqliteConnection,
    idp: &str,
    ids: impl IntoIterator<Item = &String>,
) -> Result<Vec<LinkKeys>, StoreError> {
    let mut out = Vec::new();
    for id in ids {
        if let Some(k) = user_keys(c, idp, id).await? {
            out.push(k);
        }
    }
    Ok(out)
}

async fn bump_group(c: &mut SqliteConnection, id: &str, now: i64) -> Result<(), StoreError> {
    sqlx::query("UPDATE scim_groups SET version = version + 1, modified_ms = ?2 WHERE id = ?1")
        .bind(id)
        .bind(now)
        .execute(&mut *c)
        .await?;
    Ok(())
}

/// The number of rows of `from` (a table and its alias) matching `cond`
/// (with `binds` for its `?`s), and one page of `cols` in creation order;
/// no rows are read for a page of `limit <= 0`. `from`, `cols` and `cond`
/// are built from constants only; values always travel as binds.
async fn count_and_page<R>(
    c: &mut SqliteConnection,
    from: &str,
    alias: &str,
    cols: &str,
    cond: &str,
    binds: &[String],
    page: Page,
) -> Result<(i64, Vec<R>), StoreError>
where
    R: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow> + Send + Unpin,
{
    let count_sql = format!("SELECT count(*) FROM {from} WHERE {cond}");
    let mut count = sqlx::query_scalar::<_, i64>(AssertSqlSafe(count_sql));
    for b in binds {
        count = count.bind(b.clone());
    }
    let total = count.fetch_one(&mut *c).await?;
    if page.limit <= 0 {
        return Ok((total, Vec::new()));
    }
    let sql = format!(
        "SELECT {cols} FROM {from} WHERE {cond} ORDER BY {alias}.created_ms, {alias}.id LIMIT ? OFFSET ?"
    );
    let mut rows = sqlx::query_as::<_, R>(AssertSqlSafe(sql));
    for b in binds {
        rows = rows.bind(b.clone());
    }
    let rows = rows
        .bind(page.limit)
        .bind(page.offset)
        .fetch_all(&mut *c)
        .await?;
    Ok((total, rows))
}

/// How a backend writes what [`where_sql`] needs: bind placeholders
/// (given the bind's 1-based number) and substring tests.
pub(crate) struct Dialect {
    pub placeholder: fn(usize) -> String,
    /// `contains(col, placeholder)`.
    pub contains: fn(&str, &str) -> String,
    /// `starts_with(col, placeholder)`; the value is bound once.
    pub starts_with: fn(&str, &str) -> String,
}

/// SQLite: `?` placeholders, `instr`, `substr`.
const SQLITE: Dialect = Dialect {
    placeholder: |_| "?".to_string(),
    contains: |col, p| format!("instr({col}, {p}) > 0"),
    starts_with: |col, p| format!("substr({col}, 1, length({p})) = {p}"),
};

/// `WHERE` text and binds for a list query over alias `u` (users) or `g`
/// (groups), in `dialect`. Values always travel as binds.
pub(crate) fn where_sql(
    q: &Query,
    users: bool,
    dialect: &Dialect,
    sql: &mut String,
    binds: &mut Vec<String>,
) {
    match q {
        Query::And(a, b) | Query::Or(a, b) => {
            sql.push('(');
            where_sql(a, users, dialect, sql, binds);
            sql.push_str(if matches!(q, Query::And(..)) {
                " AND "
            } else {
                " OR "
            });
            where_sql(b, users, dialect, sql, binds);
            sql.push(')');
        }
        Query::Match { field, op, value } => {
            let col = match (field, users) {
                (Field::Id, true) => "u.id",
                (Field::Id, false) => "g.id",
                (Field::ExternalId, true) => "u.external_id",
                (Field::ExternalId, false) => "g.external_id",
                (Field::DisplayName, true) => "u.display_name_lower",
                (Field::DisplayName, false) => "g.display_name_lower",
                (Field::UserName, true) => "u.user_name_lower",
                (Field::EmailValue, true) => "e.value_lower",
                (Field::MemberValue, false) => "m.user_id",
                // Planned away; never matches.
                _ => {
                    sql.push_str("1 = 0");
                    return;
                }
            };
            binds.push(value.clone());
            let p = (dialect.placeholder)(binds.len());
            let cond = match op {
                MatchOp::Eq => format!("{col} = {p}"),
                MatchOp::Co => (dialect.contains)(col, &p),
                MatchOp::Sw => {
                    if p == "?" {
                        // Positional placeholders: the value is bound twice.
                        binds.push(value.clone());
                    }
                    (dialect.starts_with)(col, &p)
                }
            };
            match field {
                Field::EmailValue => sql.push_str(&format!(
                    "EXISTS (SELECT 1 FROM scim_user_emails e WHERE e.user_id = u.id AND {cond})"
                )),
                Field::MemberValue => sql.push_str(&format!(
                    "EXISTS (SELECT 1 FROM scim_members m WHERE m.group_id = g.id AND {cond})"
                )),
                _ => sql.push_str(&cond),
            }
        }
    }
}

impl SqliteStore {
    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        Ok(self.pool().begin_with("BEGIN IMMEDIATE").await?)
    }

    pub(crate) async fn scim_secret_hashes(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        Ok(sqlx::query_as::<_, (String, Vec<u8>)>(
            "SELECT idp, secret_sha256 FROM scim_secrets ORDER BY idp",
        )
        .fetch_all(self.pool())
        .await?)
    }

    pub(crate) async fn scim_seed_secret(
        &self,
        idp: &str,
        sha256: &[u8],
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO scim_secrets (idp, secret_sha256, updated_at) VALUES (?1, ?2, ?3) ON CONFLICT (idp) DO NOTHING",
        )
        .bind(idp)
        .bind(sha256)
        .bind(now_ms() / 1000)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub(crate) async fn scim_set_secret(&self, idp: &str, sha256: &[u8]) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO scim_secrets (idp, secret_sha256, updated_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (idp) DO UPDATE SET secret_sha256 = excluded.secret_sha256, updated_at = excluded.updated_at",
        )
        .bind(idp)
        .bind(sha256)
        .bind(now_ms() / 1000)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn insert_or_update_user(
        c: &mut SqliteConnection,
        id: &str,
        idp: &str,
        d: &UserDraft,
        created_ms: i64,
        now: i64,
        version: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO scim_users (id, idp, user_name, user_name_lower, external_id, display_name, display_name_lower, \
             primary_email, primary_email_lower, active, resource, created_ms, modified_ms, version) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14) \
             ON CONFLICT (id) DO UPDATE SET user_name = excluded.user_name, user_name_lower = excluded.user_name_lower, \
             external_id = excluded.external_id, display_name = excluded.display_name, \
             display_name_lower = excluded.display_name_lower, primary_email = excluded.primary_email, \
             primary_email_lower = excluded.primary_email_lower, active = excluded.active, resource = excluded.resource, \
             modified_ms = excluded.modified_ms, version = excluded.version",
        )
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
        .execute(&mut *c)
        .await?;
        write_emails(c, id, &d.emails).await
    }

    pub(crate) async fn scim_create_user(
        &self,
        idp: &str,
        d: &UserDraft,
    ) -> Result<Outcome<UserRecord>, StoreError> {
        let mut tx = self.begin_write().await?;
        if name_taken(&mut tx, USER_NAME_TAKEN, idp, &d.user_name, "").await? {
            return Ok(Outcome::Conflict("userName"));
        }
        let id = uuid::Uuid::new_v4().to_string();
        let now = now_ms();
        Self::insert_or_update_user(&mut tx, &id, idp, d, now, now, 1).await?;
        let rec = user_by_id(&mut tx, idp, &id)
            .await?
            .ok_or_else(|| StoreError::Data("created SCIM user vanished".into()))?;
        tx.commit().await?;
        Ok(Outcome::Done(rec))
    }

    pub(crate) async fn scim_get_user(
        &self,
        idp: &str,
        id: &str,
    ) -> Result<Option<UserRecord>, StoreError> {
        let mut c = self.pool().acquire().await?;
        user_by_id(&mut c, idp, id).await
    }

    pub(crate) async fn scim_modify_user(
        &self,
        idp: &str,
        id: &str,
        edit: &UserEdit<'_>,
    ) -> Result<Outcome<UserChange>, StoreError> {
        let mut tx = self.begin_write().await?;
        let Some(before) = user_by_id(&mut tx, idp, id).await? else {
            return Ok(Outcome::NotFound);
        };
        let draft = match edit(&before) {
            Ok(d) => d,
            Err(e) => return Ok(Outcome::Rejected(e)),
        };
        if draft.attrs == before.attrs {
            tx.commit().await?;
            return Ok(Outcome::Done(UserChange {
                after: before.clone(),
                before: Some(before),
                changed: false,
            }));
        }
        if name_taken(&mut tx, USER_NAME_TAKEN, idp, &draft.user_name, id).await? {
            return Ok(Outcome::Conflict("userName"));
        }
        Self::insert_or_update_user(
            &mut tx,
            id,
            idp,
            &draft,
            before.created_ms,
            now_ms().max(before.modified_ms),
            before.version + 1,
        )
        .await?;
        let after = user_by_id(&mut tx, idp, id)
            .await?
            .ok_or_else(|| StoreError::Data("updated SCIM user vanished".into()))?;
        tx.commit().await?;
        Ok(Outcome::Done(UserChange {
            before: Some(before),
            after,
            changed: true,
        }))
    }

    pub(crate) async fn scim_delete_user(
        &self,
        idp: &str,
        id: &str,
    ) -> Result<Option<UserRecord>, StoreError> {
        let mut tx = self.begin_write().await?;
        let Some(rec) = user_by_id(&mut tx, idp, id).await? else {
            return Ok(None);
        };
        let now = now_ms();
        sqlx::query(
            "UPDATE scim_groups SET version = version + 1, modified_ms = ?2 \
             WHERE id IN (SELECT group_id FROM scim_members WHERE user_id = ?1)",
        )
        .bind(id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM scim_users WHERE id = ?1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(rec))
    }

    pub(crate) async fn scim_list_users(
        &self,
        idp: &str,
        q: Option<&Query>,
        page: Page,
    ) -> Result<(i64, Vec<UserRecord>), StoreError> {
        let mut cond = String::from("u.idp = ?");
        let mut binds = vec![idp.to_string()];
        if let Some(q) = q {
            cond.push_str(" AND ");
            where_sql(q, true, &SQLITE, &mut cond, &mut binds);
        }
        let mut c = self.pool().acquire().await?;
        let (total, rows) =
            count_and_page::<UserRow>(&mut c, "scim_users u", "u", USER_COLS, &cond, &binds, page)
                .await?;
        let users = rows
            .into_iter()
            .map(user_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        Ok((total, users))
    }

    pub(crate) async fn scim_user_groups(
        &self,
        user_id: &str,
    ) -> Result<Vec<MemberRef>, StoreError> {
        let rows = sqlx::query_as::<_, (String, String)>(
            "SELECT g.id, g.display_name FROM scim_members m JOIN scim_groups g ON g.id = m.group_id \
             WHERE m.user_id = ?1 ORDER BY g.display_name_lower, g.id",
        )
        .bind(user_id)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|(value, display)| MemberRef { value, display })
            .collect())
    }

    pub(crate) async fn scim_create_group(
        &self,
        idp: &str,
        d: &GroupDraft,
        members: &[String],
    ) -> Result<Outcome<GroupChange>, StoreError> {
        let mut tx = self.begin_write().await?;
        if name_taken(&mut tx, GROUP_NAME_TAKEN, idp, &d.display_name, "").await? {
            return Ok(Outcome::Conflict("displayName"));
        }
        let id = uuid::Uuid::new_v4().to_string();
        let now = now_ms();
        sqlx::query(
            "INSERT INTO scim_groups (id, idp, display_name, display_name_lower, external_id, resource, created_ms, modified_ms, version) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, 1)",
        )
        .bind(&id)
        .bind(idp)
        .bind(&d.display_name)
        .bind(d.display_name.to_ascii_lowercase())
        .bind(&d.external_id)
        .bind(to_json(&d.attrs))
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let delta =
            match apply_member_ops(&mut tx, idp, &id, &[MemberOp::Add(members.to_vec())], now)
                .await?
            {
                Ok(d) => d,
                Err(e) => return Ok(Outcome::Rejected(e)),
            };
        let mut group = group_by_id(&mut tx, idp, &id)
            .await?
            .ok_or_else(|| StoreError::Data("created SCIM group vanished".into()))?;
        group.members = Some(members_of(&mut tx, &id).await?);
        let added = keys_of(&mut tx, idp, &delta.added).await?;
        tx.commit().await?;
        Ok(Outcome::Done(GroupChange {
            group,
            added,
            removed: Vec::new(),
            others: Vec::new(),
        }))
    }

    pub(crate) async fn scim_get_group(
        &self,
        idp: &str,
        id: &str,
        with_members: bool,
    ) -> Result<Option<GroupRecord>, StoreError> {
        let mut c = self.pool().acquire().await?;
        let Some(mut g) = group_by_id(&mut c, idp, id).await? else {
            return Ok(None);
        };
        if with_members {
            g.members = Some(members_of(&mut c, id).await?);
        }
        Ok(Some(g))
    }

    pub(crate) async fn scim_modify_group(
        &self,
        idp: &str,
        id: &str,
        edit: &GroupEdit<'_>,
        ops: &[MemberOp],
        with_members: bool,
    ) -> Result<Outcome<GroupChange>, StoreError> {
        let mut tx = self.begin_write().await?;
        let Some(before) = group_by_id(&mut tx, idp, id).await? else {
            return Ok(Outcome::NotFound);
        };
        let draft = match edit(&before) {
            Ok(d) => d.filter(|d| d.attrs != before.attrs),
            Err(e) => return Ok(Outcome::Rejected(e)),
        };
        let now = now_ms().max(before.modified_ms);
        let mut renamed = false;
        if let Some(d) = &draft {
            if name_taken(&mut tx, GROUP_NAME_TAKEN, idp, &d.display_name, id).await? {
                return Ok(Outcome::Conflict("displayName"));
            }
            renamed = d.display_name != before.display_name;
            sqlx::query(
                "UPDATE scim_groups SET display_name = ?2, display_name_lower = ?3, external_id = ?4, resource = ?5 WHERE id = ?1",
            )
            .bind(id)
            .bind(&d.display_name)
            .bind(d.display_name.to_ascii_lowercase())
            .bind(&d.external_id)
            .bind(to_json(&d.attrs))
            .execute(&mut *tx)
            .await?;
        }
        let delta = match apply_member_ops(&mut tx, idp, id, ops, now).await? {
            Ok(d) => d,
            Err(e) => return Ok(Outcome::Rejected(e)),
        };
        if draft.is_some() || !delta.is_empty() {
            bump_group(&mut tx, id, now).await?;
        }
        let mut group = group_by_id(&mut tx, idp, id)
            .await?
            .ok_or_else(|| StoreError::Data("updated SCIM group vanished".into()))?;
        let members = members_of(&mut tx, id).await?;
        let added = keys_of(&mut tx, idp, &delta.added).await?;
        let removed = keys_of(&mut tx, idp, &delta.removed).await?;
        let others = if renamed {
            let ids: Vec<String> = members
                .iter()
                .map(|m| m.value.clone())
                .filter(|v| !delta.added.contains(v))
                .collect();
            keys_of(&mut tx, idp, &ids).await?
        } else {
            Vec::new()
        };
        tx.commit().await?;
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

    pub(crate) async fn scim_delete_group(
        &self,
        idp: &str,
        id: &str,
    ) -> Result<Option<GroupChange>, StoreError> {
        let mut tx = self.begin_write().await?;
        let Some(group) = group_by_id(&mut tx, idp, id).await? else {
            return Ok(None);
        };
        let ids: Vec<String> = members_of(&mut tx, id)
            .await?
            .into_iter()
            .map(|m| m.value)
            .collect();
        let removed = keys_of(&mut tx, idp, &ids).await?;
        sqlx::query("DELETE FROM scim_groups WHERE id = ?1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(GroupChange {
            group,
            added: Vec::new(),
            removed,
            others: Vec::new(),
        }))
    }

    pub(crate) async fn scim_list_groups(
        &self,
        idp: &str,
        q: Option<&Query>,
        page: Page,
        with_members: bool,
    ) -> Result<(i64, Vec<GroupRecord>), StoreError> {
        let mut cond = String::from("g.idp = ?");
        let mut binds = vec![idp.to_string()];
        if let Some(q) = q {
            cond.push_str(" AND ");
            where_sql(q, false, &SQLITE, &mut cond, &mut binds);
        }
        let mut c = self.pool().acquire().await?;
        let (total, rows) = count_and_page::<GroupRow>(
            &mut c,
            "scim_groups g",
            "g",
            GROUP_COLS,
            &cond,
            &binds,
            page,
        )
        .await?;
        let mut groups = rows
            .into_iter()
            .map(group_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        if with_members {
            for g in &mut groups {
                g.members = Some(members_of(&mut c, &g.id).await?);
            }
        }
        Ok((total, groups))
    }

    pub(crate) async fn scim_link(
        &self,
        idp: &str,
        sub: &str,
        verified_email: Option<&str>,
    ) -> Result<ScimLink, StoreError> {
        let email = verified_email.map(str::to_ascii_lowercase);
        let rows = sqlx::query_as::<_, (String, bool, Option<String>)>(LINK_USERS)
            .bind(idp)
            .bind(sub)
            .bind(email)
            .fetch_all(self.pool())
            .await?;
        let users = linked_users(rows, sub);
        if users.is_empty() {
            return Ok(ScimLink::default());
        }
        let sql = link_groups_sql(users.len());
        let mut q = sqlx::query_scalar::<_, String>(AssertSqlSafe(sql));
        for (id, _) in &users {
            q = q.bind(id.clone());
        }
        let groups = q.fetch_all(self.pool()).await?;
        Ok(ScimLink { users, groups })
    }

    pub(crate) async fn scim_linked_subjects(
        &self,
        idp: &str,
        keys: &[LinkKeys],
    ) -> Result<Vec<String>, StoreError> {
        let mut subs = BTreeSet::new();
        for k in keys {
            let found = sqlx::query_scalar::<_, String>(
                "SELECT sub FROM sessions WHERE idp = ?1 AND sub = ?2 AND revoked_at IS NULL \
                 UNION SELECT sub FROM sessions WHERE idp = ?1 AND revoked_at IS NULL \
                   AND (CASE WHEN json_valid(identity) THEN lower(json_extract(identity, '$.email')) END) IN (lower(?3), lower(?4)) \
                 UNION SELECT sub FROM seats WHERE idp = ?1 AND (sub = ?2 OR lower(email) IN (lower(?3), lower(?4)))",
            )
            .bind(idp)
            .bind(&k.external_id)
            .bind(&k.user_name)
            .bind(&k.primary_email)
            .fetch_all(self.pool())
            .await?;
            subs.extend(found);
        }
        Ok(subs.into_iter().collect())
    }
}

#[cfg(test)]
mod tests;
