//! Every SQL statement of [`SqliteStore`](super::SqliteStore), in one place.
//! Times are unix seconds (INTEGER); a session's identity is JSON (TEXT).

/// Version 1: sessions, revocations, single-use markers, seats.
pub(super) const SCHEMA_V1: &str = r#"
CREATE TABLE IF NOT EXISTS sessions (
    sid        TEXT    NOT NULL PRIMARY KEY,
    idp        TEXT    NOT NULL,
    sub        TEXT    NOT NULL,
    identity   TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER
) STRICT;
CREATE INDEX IF NOT EXISTS sessions_by_user ON sessions (idp, sub);
CREATE INDEX IF NOT EXISTS sessions_by_expiry ON sessions (expires_at);

CREATE TABLE IF NOT EXISTS revocations (
    sid        TEXT    NOT NULL PRIMARY KEY,
    revoked_at INTEGER NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS revocations_by_time ON revocations (revoked_at);

CREATE TABLE IF NOT EXISTS use_once (
    key        TEXT    NOT NULL PRIMARY KEY,
    expires_at INTEGER NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS use_once_by_expiry ON use_once (expires_at);

CREATE TABLE IF NOT EXISTS seats (
    app        TEXT    NOT NULL,
    idp        TEXT    NOT NULL,
    sub        TEXT    NOT NULL,
    email      TEXT    NOT NULL,
    last_login INTEGER NOT NULL,
    PRIMARY KEY (app, idp, sub)
) STRICT;
"#;

pub(super) const USER_VERSION: &str = "PRAGMA user_version";

/// ?1 sid, ?2 idp, ?3 sub, ?4 identity JSON, ?5 created_at, ?6 expires_at, ?7 revoked_at.
pub(super) const INSERT_SESSION: &str =
    "INSERT INTO sessions (sid, idp, sub, identity, created_at, expires_at, revoked_at) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)";

/// ?1 sid.
pub(super) const SELECT_SESSION: &str =
    "SELECT identity, created_at, expires_at, revoked_at FROM sessions WHERE sid = ?1";

/// ?1 sid, ?2 now. Returns the session's `expires_at` when it was newly revoked.
pub(super) const REVOKE_SESSION: &str =
    "UPDATE sessions SET revoked_at = ?2 WHERE sid = ?1 AND revoked_at IS NULL RETURNING expires_at";

/// ?1 idp, ?2 sub, ?3 now. Returns the sids newly revoked.
pub(super) const REVOKE_USER_SESSIONS: &str =
    "UPDATE sessions SET revoked_at = ?3 WHERE idp = ?1 AND sub = ?2 AND revoked_at IS NULL RETURNING sid";

/// ?1 sid, ?2 now.
pub(super) const INSERT_REVOCATION: &str =
    "INSERT INTO revocations (sid, revoked_at) VALUES (?1, ?2) \
     ON CONFLICT (sid) DO UPDATE SET revoked_at = excluded.revoked_at";

/// ?1 since.
pub(super) const REVOKED_SINCE: &str =
    "SELECT sid FROM revocations WHERE revoked_at >= ?1 ORDER BY revoked_at, sid";

/// ?1 cutoff.
pub(super) const PURGE_REVOCATIONS: &str = "DELETE FROM revocations WHERE revoked_at < ?1";

/// ?1 cutoff.
pub(super) const PURGE_SESSIONS: &str = "DELETE FROM sessions WHERE expires_at < ?1";

/// ?1 key, ?2 expires_at. One row affected: first use.
pub(super) const INSERT_USE_ONCE: &str =
    "INSERT INTO use_once (key, expires_at) VALUES (?1, ?2) ON CONFLICT (key) DO NOTHING";

/// ?1 cutoff.
pub(super) const PURGE_USE_ONCE: &str = "DELETE FROM use_once WHERE expires_at < ?1";

/// ?1 app, ?2 idp, ?3 sub, ?4 email, ?5 last_login.
pub(super) const UPSERT_SEAT: &str = "INSERT INTO seats (app, idp, sub, email, last_login) VALUES (?1, ?2, ?3, ?4, ?5) \
     ON CONFLICT (app, idp, sub) DO UPDATE SET email = excluded.email, last_login = excluded.last_login";

pub(super) const LIST_SEATS: &str =
    "SELECT app, idp, sub, email, last_login FROM seats ORDER BY app, email, idp, sub";

/// ?1 idp, ?2 sub.
pub(super) const REMOVE_SEATS: &str = "DELETE FROM seats WHERE idp = ?1 AND sub = ?2";
