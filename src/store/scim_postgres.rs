//! SCIM tables and SQL text of [`PgStore`]: the same tables as the SQLite
//! store's (`scim_sqlite`), in PostgreSQL types, and the statements the
//! flows of `directory` run on them ([`SQL`]). Every write runs in one
//! transaction that first takes a fleet-wide advisory lock, so SCIM writes
//! arriving on different instances apply one at a time, as they do on one
//! SQLite file: concurrent membership changes to one group never lose a
//! member, and a name check never races its insert. Okta provisions at a
//! few requests per second; one writer at a time is not the bottleneck.

use async_trait::async_trait;
use sqlx::{PgConnection, Postgres, Transaction};

use super::directory::{dir_conn, Dialect, DirBackend, DirSql};
use super::postgres::PgStore;
use super::StoreError;

/// Schema: SCIM users, emails, groups, memberships, secrets (sessions are
/// found by email through `sessions.email_lower`).
pub(crate) const SCHEMA_SCIM_V1: &str = r#"
CREATE TABLE scim_secrets (
    idp           TEXT    NOT NULL PRIMARY KEY,
    secret_sha256 BYTEA   NOT NULL,
    updated_at    BIGINT  NOT NULL
);

CREATE TABLE scim_users (
    id                  TEXT    NOT NULL PRIMARY KEY,
    idp                 TEXT    NOT NULL,
    user_name           TEXT    NOT NULL,
    user_name_lower     TEXT    NOT NULL,
    external_id         TEXT,
    display_name        TEXT,
    display_name_lower  TEXT,
    primary_email       TEXT,
    primary_email_lower TEXT,
    active              BOOLEAN NOT NULL,
    resource            TEXT    NOT NULL,
    created_ms          BIGINT  NOT NULL,
    modified_ms         BIGINT  NOT NULL,
    version             BIGINT  NOT NULL
);
CREATE UNIQUE INDEX scim_users_by_name ON scim_users (idp, user_name_lower);
CREATE INDEX scim_users_by_external_id ON scim_users (idp, external_id);
CREATE INDEX scim_users_by_email ON scim_users (idp, primary_email_lower);
CREATE INDEX scim_users_by_created ON scim_users (idp, created_ms, id);

CREATE TABLE scim_user_emails (
    user_id     TEXT NOT NULL REFERENCES scim_users (id) ON DELETE CASCADE,
    value_lower TEXT NOT NULL,
    PRIMARY KEY (user_id, value_lower)
);
CREATE INDEX scim_user_emails_by_value ON scim_user_emails (value_lower);

CREATE TABLE scim_groups (
    id                 TEXT    NOT NULL PRIMARY KEY,
    idp                TEXT    NOT NULL,
    display_name       TEXT    NOT NULL,
    display_name_lower TEXT    NOT NULL,
    external_id        TEXT,
    resource           TEXT    NOT NULL,
    created_ms         BIGINT  NOT NULL,
    modified_ms        BIGINT  NOT NULL,
    version            BIGINT  NOT NULL
);
CREATE UNIQUE INDEX scim_groups_by_name ON scim_groups (idp, display_name_lower);
CREATE INDEX scim_groups_by_created ON scim_groups (idp, created_ms, id);

CREATE TABLE scim_members (
    group_id TEXT    NOT NULL REFERENCES scim_groups (id) ON DELETE CASCADE,
    user_id  TEXT    NOT NULL REFERENCES scim_users (id) ON DELETE CASCADE,
    added_ms BIGINT  NOT NULL,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX scim_members_by_user ON scim_members (user_id, group_id);
"#;

/// The statements of the SCIM flows, in PostgreSQL (`$N` placeholders).
pub(crate) const SQL: DirSql = DirSql {
    user_by_id: "SELECT u.id, u.idp, u.user_name, u.external_id, u.display_name, u.primary_email, u.active, \
         u.resource, u.created_ms, u.modified_ms, u.version FROM scim_users u WHERE u.id = $1 AND u.idp = $2",
    group_by_id: "SELECT g.id, g.idp, g.display_name, g.external_id, g.resource, g.created_ms, g.modified_ms, \
         g.version FROM scim_groups g WHERE g.id = $1 AND g.idp = $2",
    members_of: "SELECT u.id, u.user_name FROM scim_members m JOIN scim_users u ON u.id = m.user_id \
         WHERE m.group_id = $1 ORDER BY m.added_ms, u.id",
    user_keys:
        "SELECT user_name, external_id, primary_email FROM scim_users WHERE id = $1 AND idp = $2",
    user_name_taken:
        "SELECT id FROM scim_users WHERE idp = $1 AND user_name_lower = $2 AND id <> $3",
    group_name_taken:
        "SELECT id FROM scim_groups WHERE idp = $1 AND display_name_lower = $2 AND id <> $3",
    put_user: "INSERT INTO scim_users (id, idp, user_name, user_name_lower, external_id, display_name, display_name_lower, \
         primary_email, primary_email_lower, active, resource, created_ms, modified_ms, version) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
         ON CONFLICT (id) DO UPDATE SET user_name = excluded.user_name, user_name_lower = excluded.user_name_lower, \
         external_id = excluded.external_id, display_name = excluded.display_name, \
         display_name_lower = excluded.display_name_lower, primary_email = excluded.primary_email, \
         primary_email_lower = excluded.primary_email_lower, active = excluded.active, resource = excluded.resource, \
         modified_ms = excluded.modified_ms, version = excluded.version",
    delete_emails: "DELETE FROM scim_user_emails WHERE user_id = $1",
    insert_email: "INSERT INTO scim_user_emails (user_id, value_lower) VALUES ($1, $2) \
         ON CONFLICT DO NOTHING",
    insert_group: "INSERT INTO scim_groups (id, idp, display_name, display_name_lower, external_id, resource, \
         created_ms, modified_ms, version) VALUES ($1, $2, $3, $4, $5, $6, $7, $7, 1)",
    update_group: "UPDATE scim_groups SET display_name = $2, display_name_lower = $3, external_id = $4, \
         resource = $5 WHERE id = $1",
    add_member: "INSERT INTO scim_members (group_id, user_id, added_ms) VALUES ($1, $2, $3) \
         ON CONFLICT DO NOTHING",
    remove_member: "DELETE FROM scim_members WHERE group_id = $1 AND user_id = $2",
    bump_group: "UPDATE scim_groups SET version = version + 1, modified_ms = $2 WHERE id = $1",
    bump_groups_of_user: "UPDATE scim_groups SET version = version + 1, modified_ms = $2 \
         WHERE id IN (SELECT group_id FROM scim_members WHERE user_id = $1)",
    delete_user: "DELETE FROM scim_users WHERE id = $1",
    delete_group: "DELETE FROM scim_groups WHERE id = $1",
    user_groups: "SELECT g.id, g.display_name FROM scim_members m JOIN scim_groups g ON g.id = m.group_id \
         WHERE m.user_id = $1 ORDER BY g.display_name_lower, g.id",
    secret_hashes: "SELECT idp, secret_sha256 FROM scim_secrets ORDER BY idp",
    seed_secret: "INSERT INTO scim_secrets (idp, secret_sha256, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (idp) DO NOTHING",
    set_secret: "INSERT INTO scim_secrets (idp, secret_sha256, updated_at) VALUES ($1, $2, $3) \
         ON CONFLICT (idp) DO UPDATE SET secret_sha256 = excluded.secret_sha256, updated_at = excluded.updated_at",
    link_users: "SELECT id, active, external_id FROM scim_users \
         WHERE idp = $1 AND (external_id = $2 OR user_name_lower = $3 OR primary_email_lower = $3) \
         ORDER BY created_ms, id",
    linked_subjects: "SELECT sub FROM sessions WHERE idp = $1 AND sub = $2 AND revoked_at IS NULL \
         UNION SELECT sub FROM sessions WHERE idp = $1 AND revoked_at IS NULL \
           AND email_lower IN (lower($3), lower($4)) \
         UNION SELECT sub FROM seats WHERE idp = $1 AND (sub = $2 OR lower(email) IN (lower($3), lower($4)))",
    // Numbered placeholders, `strpos`, `starts_with`.
    dialect: Dialect {
        placeholder: |n| format!("${n}"),
        contains: |col, p| format!("strpos({col}, {p}) > 0"),
        starts_with: |col, p| format!("starts_with({col}, {p})"),
    },
};

/// Key of the advisory lock every SCIM write holds ("scimwrit").
const SCIM_WRITE_LOCK_KEY: i64 = 0x7363_696d_7772_6974;

dir_conn!(PgConnection, Postgres, SQL);

#[async_trait]
impl DirBackend for PgStore {
    type Db = Postgres;

    fn dir_pool(&self) -> &sqlx::PgPool {
        self.pool()
    }

    async fn begin_write(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        let mut tx = self.pool().begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(SCIM_WRITE_LOCK_KEY)
            .execute(&mut *tx)
            .await?;
        Ok(tx)
    }
}
