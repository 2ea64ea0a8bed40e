//! Every SQL statement of [`PgStore`](super::PgStore) outside SCIM, in one
//! place. Times are unix seconds (BIGINT) as in the SQLite store, except
//! the change log, which stamps rows with the database's clock in
//! milliseconds so that instances with skewed clocks agree on "since".

/// Migrations, in order. Append only: never edit, reorder or remove an
/// entry that has shipped. Each runs in the migrating transaction.
pub(crate) const SCHEMA_V1: &str = r#"
CREATE TABLE sessions (
    sid         TEXT   NOT NULL PRIMARY KEY,
    idp         TEXT   NOT NULL,
    sub         TEXT   NOT NULL,
    email_lower TEXT,
    identity    TEXT   NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);
CREATE INDEX sessions_by_user ON sessions (idp, sub);
CREATE INDEX sessions_by_email ON sessions (idp, email_lower);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);

CREATE TABLE revocations (
    sid        TEXT   NOT NULL PRIMARY KEY,
    revoked_at BIGINT NOT NULL
);
CREATE INDEX revocations_by_time ON revocations (revoked_at);

CREATE TABLE use_once (
    key        TEXT   NOT NULL PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
CREATE INDEX use_once_by_expiry ON use_once (expires_at);

CREATE TABLE seats (
    app        TEXT   NOT NULL,
    idp        TEXT   NOT NULL,
    sub        TEXT   NOT NULL,
    email      TEXT   NOT NULL,
    last_login BIGINT NOT NULL,
    PRIMARY KEY (app, idp, sub)
);

CREATE TABLE changes (
    seq   BIGSERIAL NOT NULL PRIMARY KEY,
    at_ms BIGINT    NOT NULL DEFAULT (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT,
    kind  TEXT      NOT NULL,
    sid   TEXT,
    idp   TEXT,
    sub   TEXT
);
CREATE INDEX changes_by_time ON changes (at_ms);

CREATE TABLE signing_keys (
    kid        TEXT   NOT NULL PRIMARY KEY,
    pkcs8_pem  TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    signs_from BIGINT NOT NULL
);
"#;

/// The table that records the schema version (one row).
pub(super) const CREATE_VERSION_TABLE: &str =
    "CREATE TABLE IF NOT EXISTS portcullis_schema (id INT PRIMARY KEY CHECK (id = 1), version INT NOT NULL)";
pub(super) const SELECT_VERSION: &str = "SELECT version FROM portcullis_schema WHERE id = 1";
/// $1 version.
pub(super) const SET_VERSION: &str = "INSERT INTO portcullis_schema (id, version) VALUES (1, $1) \
     ON CONFLICT (id) DO UPDATE SET version = excluded.version";
/// $1 the lock's key: one for every portcullis schema.
pub(super) const MIGRATION_LOCK: &str = "SELECT pg_advisory_xact_lock($1)";

/// $1 sid, $2 idp, $3 sub, $4 lower-cased email, $5 identity JSON,
/// $6 created_at, $7 expires_at, $8 revoked_at.
pub(super) const INSERT_SESSION: &str = "INSERT INTO sessions \
     (sid, idp, sub, email_lower, identity, created_at, expires_at, revoked_at) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

/// $1 sid.
pub(super) const SELECT_SESSION: &str =
    "SELECT identity, created_at, expires_at, revoked_at FROM sessions WHERE sid = $1";

/// $1 sid, $2 now. Returns the session's `expires_at` when newly revoked.
pub(super) const REVOKE_SESSION: &str =
    "UPDATE sessions SET revoked_at = $2 WHERE sid = $1 AND revoked_at IS NULL RETURNING expires_at";

/// $1 idp, $2 sub, $3 now. Returns the sids newly revoked.
pub(super) const REVOKE_USER_SESSIONS: &str = "UPDATE sessions SET revoked_at = $3 \
     WHERE idp = $1 AND sub = $2 AND revoked_at IS NULL RETURNING sid";

/// $1 sid, $2 now.
pub(super) const INSERT_REVOCATION: &str =
    "INSERT INTO revocations (sid, revoked_at) VALUES ($1, $2) \
     ON CONFLICT (sid) DO UPDATE SET revoked_at = excluded.revoked_at";

/// $1 since.
pub(super) const REVOKED_SINCE: &str =
    "SELECT sid FROM revocations WHERE revoked_at >= $1 ORDER BY revoked_at, sid";

/// $1 cutoff.
pub(super) const PURGE_REVOCATIONS: &str = "DELETE FROM revocations WHERE revoked_at < $1";
/// $1 cutoff.
pub(super) const PURGE_SESSIONS: &str = "DELETE FROM sessions WHERE expires_at < $1";
/// $1 cutoff in ms.
pub(super) const PURGE_CHANGES: &str = "DELETE FROM changes WHERE at_ms < $1";

/// $1 key, $2 expires_at. One row affected: first use.
pub(super) const INSERT_USE_ONCE: &str =
    "INSERT INTO use_once (key, expires_at) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING";
/// $1 cutoff.
pub(super) const PURGE_USE_ONCE: &str = "DELETE FROM use_once WHERE expires_at < $1";

/// $1 app, $2 idp, $3 sub, $4 email, $5 last_login.
pub(super) const UPSERT_SEAT: &str = "INSERT INTO seats (app, idp, sub, email, last_login) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (app, idp, sub) \
     DO UPDATE SET email = excluded.email, last_login = excluded.last_login";
pub(super) const LIST_SEATS: &str =
    "SELECT app, idp, sub, email, last_login FROM seats ORDER BY app, email, idp, sub";
/// $1 idp, $2 sub.
pub(super) const REMOVE_SEATS: &str = "DELETE FROM seats WHERE idp = $1 AND sub = $2";

/// Record a change and announce it to every instance, in the writing
/// transaction (PostgreSQL delivers the NOTIFY only if it commits).
/// $1 kind, $2 sid, $3 idp, $4 sub.
pub(super) const ANNOUNCE: &str = "WITH c AS (\
     INSERT INTO changes (kind, sid, idp, sub) VALUES ($1, $2, $3, $4) \
     RETURNING seq, at_ms, kind, sid, idp, sub) \
     SELECT pg_notify('portcullis_changes', \
       json_build_object('seq', seq, 'at', at_ms, 'kind', kind, 'sid', sid, 'idp', idp, 'sub', sub)::text) \
     FROM c";

/// The database's clock, in ms.
pub(super) const NOW_MS: &str = "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT";

/// $1 since (ms). Rows: seq, at_ms, kind, sid, idp, sub.
pub(super) const CHANGES_SINCE: &str =
    "SELECT seq, at_ms, kind, sid, idp, sub FROM changes WHERE at_ms >= $1 ORDER BY seq";

/// Every signing key, oldest first. Rows: kid, pem, created_at, signs_from.
pub(super) const LIST_KEYS: &str =
    "SELECT kid, pkcs8_pem, created_at, signs_from FROM signing_keys ORDER BY signs_from, created_at, kid";
/// $1 kid, $2 pem, $3 created_at, $4 signs_from.
pub(super) const INSERT_KEY: &str =
    "INSERT INTO signing_keys (kid, pkcs8_pem, created_at, signs_from) \
     VALUES ($1, $2, $3, $4) ON CONFLICT (kid) DO NOTHING";
/// $1 kid.
pub(super) const DELETE_KEY: &str = "DELETE FROM signing_keys WHERE kid = $1";
/// Serialises first-key generation across instances starting at once.
pub(super) const KEYS_LOCK: &str = "SELECT pg_advisory_xact_lock($1)";
