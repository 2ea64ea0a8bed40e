//! PostgreSQL implementation of [`Store`](super::Store) for fleet mode: every
//! instance of a fleet opens the same database, which holds sessions,
//! markers, seats, SCIM state, the SCIM secrets and the session signing keys
//! (`keys`).
//!
//! Schema: [`MIGRATIONS`] applied at open in one transaction under an
//! advisory lock, so instances starting together migrate once; a database
//! whose schema is newer than this build is refused.
//!
//! Fan-out: a revocation or a SCIM change writes a row to `changes` and
//! `NOTIFY`s `portcullis_changes` in the same transaction; [`listen`] turns
//! notifications into [`Change`]s for the cache, and `changes_since` lets an
//! instance catch up on what it missed while its listening connection was
//! down. SCIM tables and SQL text live in `scim_postgres`; the SCIM flows
//! are `directory`'s, shared with the SQLite store.

pub(crate) mod keys;
pub(crate) mod listen;
mod sql;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::Connection as _;
use sqlx::PgPool;

use super::{
    Change, ChangeKind, FeedEvent, KeyStore, Seat, SessionRecord, SessionStore, StoreError,
};
use crate::identity::Identity;
use crate::session::token::now_unix;

/// Schema migrations, in order; append only.
pub(crate) const MIGRATIONS: &[&str] = &[sql::SCHEMA_V1, super::scim_postgres::SCHEMA_SCIM_V1];

/// Key of the advisory lock taken while migrating ("portcull" in ASCII).
const MIGRATION_LOCK_KEY: i64 = 0x706f_7274_6375_6c6c;

/// How long a query waits for a pooled connection before the request
/// fails (503) rather than queueing behind a dead database.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long opening the store waits for the first connection at start.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Housekeeping runs on every `PURGE_EVERY`-th write of a kind.
const PURGE_EVERY: u64 = 64;
/// As in the SQLite store: markers outlive their expiry by this much.
const USE_ONCE_GRACE_SECS: i64 = 300;
/// Revocations and change-log rows are kept this long.
const REVOCATION_RETENTION_SECS: i64 = 2 * 24 * 3600;
/// Sessions are kept this long after they end.
const SESSION_RETENTION_SECS: i64 = 7 * 24 * 3600;
/// A catch-up poll re-reads this much of the change log before its
/// cursor: a change is stamped when its row is written and may commit
/// later (a revocation of many sessions, a slow commit). The applier skips
/// what it already applied.
pub(crate) const CATCH_UP_OVERLAP_MS: i64 = 15_000;

/// True for the URL schemes this store opens (ASCII case-insensitive, as
/// URL schemes are).
pub fn is_postgres_url(url: &str) -> bool {
    let lower = url.get(..13).unwrap_or(url).to_ascii_lowercase();
    lower.starts_with("postgres://") || lower.starts_with("postgresql://")
}

/// The fleet-mode store.
pub struct PgStore {
    pool: PgPool,
    session_writes: AtomicU64,
    use_once_writes: AtomicU64,
    revocation_writes: AtomicU64,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connect (a pool of at most `pool_size` connections) and migrate.
    pub async fn open(url: &str, pool_size: u32) -> Result<PgStore, StoreError> {
        let opts: PgConnectOptions = url
            .parse()
            .map_err(|e| StoreError::Data(format!("store url {}: {e}", super::redact_url(url))))?;
        // Notices ("relation … already exists, skipping" at every start)
        // are not the proxy's news: only warnings and errors reach it.
        let opts = opts
            .application_name("portcullis")
            .options([("client_min_messages", "warning")]);
        // One connection first, so that a wrong host, password or database
        // name is reported as such (a pool would only say it timed out).
        let first = tokio::time::timeout(CONNECT_TIMEOUT, sqlx::PgConnection::connect_with(&opts))
            .await
            .map_err(|_| {
                StoreError::Connect(format!(
                    "PostgreSQL at {} did not answer within {}s",
                    super::redact_url(url),
                    CONNECT_TIMEOUT.as_secs()
                ))
            })?
            .map_err(|e| {
                StoreError::Connect(format!(
                    "cannot connect to PostgreSQL at {}: {}",
                    super::redact_url(url),
                    one_line(&e.to_string())
                ))
            })?;
        let _ = first.close().await;
        let pool = PgPoolOptions::new()
            .max_connections(pool_size.max(2))
            .min_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            // A connection that died with the server is found by its
            // first failing query and dropped; with a ping before each
            // use the proxy would pay a round trip per query.
            .test_before_acquire(false)
            .connect_lazy_with(opts);
        let store = PgStore {
            pool,
            session_writes: AtomicU64::new(0),
            use_once_writes: AtomicU64::new(0),
            revocation_writes: AtomicU64::new(0),
        };
        tokio::time::timeout(CONNECT_TIMEOUT, migrate(&store.pool, MIGRATIONS))
            .await
            .map_err(|_| {
                StoreError::Connect(format!(
                    "PostgreSQL at {} did not answer within {}s",
                    super::redact_url(url),
                    CONNECT_TIMEOUT.as_secs()
                ))
            })??;
        tracing::debug!("PostgreSQL store opened");
        Ok(store)
    }

    /// The connection pool, for the sibling modules (SCIM, keys, listen).
    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The schema version recorded in the database.
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        let v: i32 = sqlx::query_scalar(sql::SELECT_VERSION)
            .fetch_one(&self.pool)
            .await?;
        Ok(i64::from(v))
    }

    /// Close every connection.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Record `kind` in the change log and notify every instance, inside
    /// the caller's transaction.
    async fn announce(
        c: &mut sqlx::PgConnection,
        kind: &str,
        sid: Option<&str>,
        user: Option<(&str, &str)>,
    ) -> Result<(), StoreError> {
        sqlx::query(sql::ANNOUNCE)
            .bind(kind)
            .bind(sid)
            .bind(user.map(|u| u.0))
            .bind(user.map(|u| u.1))
            .execute(&mut *c)
            .await?;
        Ok(())
    }

    /// Every `PURGE_EVERY`-th announcing write: drop revocations and
    /// change-log rows past their retention.
    /// The write before it is committed: a failed purge is logged, not
    /// reported as the write's failure (it is retried on a later write).
    async fn purge_revocations(&self, now: i64) {
        if !due(&self.revocation_writes) {
            return;
        }
        let cutoff = now - REVOCATION_RETENTION_SECS;
        let purged = async {
            sqlx::query(sql::PURGE_REVOCATIONS)
                .bind(cutoff)
                .execute(&self.pool)
                .await?;
            sqlx::query(sql::PURGE_CHANGES)
                .bind(cutoff.saturating_mul(1000))
                .execute(&self.pool)
                .await
        }
        .await;
        if let Err(e) = purged {
            tracing::warn!(error = %e, "Purging old revocations failed; retried later");
        }
    }
}

/// `s` on one line (a server's message may hold several).
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// True when `e` means the connection itself failed (so a fresh one may
/// work), not the query.
fn connection_lost(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Io(_) | sqlx::Error::Protocol(_))
}

/// True on every `PURGE_EVERY`-th call.
fn due(counter: &AtomicU64) -> bool {
    counter.fetch_add(1, Ordering::Relaxed) % PURGE_EVERY == PURGE_EVERY - 1
}

/// Apply the migrations the database has not seen, in one transaction
/// under an advisory lock: instances starting at once wait for each other,
/// and a failed migration leaves the schema as it was.
pub(crate) async fn migrate(pool: &PgPool, migrations: &[&'static str]) -> Result<(), StoreError> {
    let mut tx = pool.begin().await?;
    sqlx::query(sql::MIGRATION_LOCK)
        .bind(MIGRATION_LOCK_KEY)
        .execute(&mut *tx)
        .await?;
    sqlx::raw_sql(sql::CREATE_VERSION_TABLE)
        .execute(&mut *tx)
        .await?;
    let version: i64 = sqlx::query_scalar::<_, i32>(sql::SELECT_VERSION)
        .fetch_optional(&mut *tx)
        .await?
        .map_or(0, i64::from);
    let known = i64::try_from(migrations.len()).unwrap_or(i64::MAX);
    if version > known {
        return Err(StoreError::Data(format!(
            "store schema version {version} is newer than this build knows ({known}); \
             refusing to open (upgrade portcullis)"
        )));
    }
    let start = usize::try_from(version)
        .map_err(|_| StoreError::Data(format!("store schema version {version} is invalid")))?;
    for (i, migration) in migrations.iter().enumerate().skip(start) {
        sqlx::raw_sql(*migration).execute(&mut *tx).await?;
        let v = i32::try_from(i + 1).unwrap_or(i32::MAX);
        sqlx::query(sql::SET_VERSION)
            .bind(v)
            .execute(&mut *tx)
            .await?;
        tracing::info!(version = i + 1, "Store schema migrated");
    }
    tx.commit().await?;
    Ok(())
}

fn identity_json(identity: &Identity) -> Result<String, StoreError> {
    serde_json::to_string(identity)
        .map_err(|e| StoreError::Data(format!("session identity does not serialize: {e}")))
}

type SessionRow = (String, i64, i64, Option<i64>);

fn session_record(sid: &str, row: SessionRow) -> Result<SessionRecord, StoreError> {
    let (identity, created_at, expires_at, revoked_at) = row;
    let identity: Identity = serde_json::from_str(&identity)
        .map_err(|e| StoreError::Data(format!("stored session identity is not valid: {e}")))?;
    Ok(SessionRecord {
        sid: sid.to_string(),
        identity,
        created_at,
        expires_at,
        revoked: revoked_at.is_some(),
    })
}

/// A change-log row: seq, at_ms, kind, sid, idp, sub.
pub(crate) type ChangeRow = (
    i64,
    i64,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// The [`Change`] a change-log row (or a notification) describes; `None`
/// for a kind this build does not know (a newer instance's).
pub(crate) fn change_from(
    seq: i64,
    at_ms: i64,
    kind: &str,
    sid: Option<String>,
    idp: Option<String>,
    sub: Option<String>,
) -> Option<Change> {
    let kind = match (kind, sid, idp, sub) {
        ("revoked", Some(sid), _, _) => ChangeKind::Revoked { sid },
        ("user", _, Some(idp), Some(sub)) => ChangeKind::User { idp, sub },
        ("keys", _, _, _) => ChangeKind::Keys,
        _ => return None,
    };
    Some(Change { seq, at_ms, kind })
}

#[async_trait]
impl SessionStore for PgStore {
    async fn create_session(&self, rec: &SessionRecord) -> Result<(), StoreError> {
        let now = now_unix();
        sqlx::query(sql::INSERT_SESSION)
            .bind(&rec.sid)
            .bind(&rec.identity.idp)
            .bind(&rec.identity.sub)
            .bind(rec.identity.email.to_ascii_lowercase())
            .bind(identity_json(&rec.identity)?)
            .bind(rec.created_at)
            .bind(rec.expires_at)
            .bind(rec.revoked.then_some(now))
            .execute(&self.pool)
            .await?;
        if due(&self.session_writes) {
            sqlx::query(sql::PURGE_SESSIONS)
                .bind(now - SESSION_RETENTION_SECS)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    async fn get_session(&self, sid: &str) -> Result<Option<SessionRecord>, StoreError> {
        let read = || {
            sqlx::query_as::<_, SessionRow>(sql::SELECT_SESSION)
                .bind(sid)
                .fetch_optional(&self.pool)
        };
        // Pooled connections are not pinged before use: one that died with
        // a database restart fails its first query. A read is safe to try
        // once more, on a fresh connection.
        let row = match read().await {
            Err(e) if connection_lost(&e) => read().await?,
            r => r?,
        };
        row.map(|row| session_record(sid, row)).transpose()
    }

    async fn revoke_session(&self, sid: &str) -> Result<bool, StoreError> {
        let now = now_unix();
        let mut tx = self.pool.begin().await?;
        let expires_at = sqlx::query_scalar::<_, i64>(sql::REVOKE_SESSION)
            .bind(sid)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
        if expires_at.is_some() {
            sqlx::query(sql::INSERT_REVOCATION)
                .bind(sid)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            Self::announce(&mut tx, "revoked", Some(sid), None).await?;
        }
        tx.commit().await?;
        self.purge_revocations(now).await;
        Ok(expires_at.is_some_and(|e| e > now))
    }

    async fn revoke_user_sessions(&self, idp: &str, sub: &str) -> Result<Vec<String>, StoreError> {
        let now = now_unix();
        let mut tx = self.pool.begin().await?;
        let mut sids = sqlx::query_scalar::<_, String>(sql::REVOKE_USER_SESSIONS)
            .bind(idp)
            .bind(sub)
            .bind(now)
            .fetch_all(&mut *tx)
            .await?;
        for sid in &sids {
            sqlx::query(sql::INSERT_REVOCATION)
                .bind(sid)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            Self::announce(&mut tx, "revoked", Some(sid), None).await?;
        }
        tx.commit().await?;
        self.purge_revocations(now).await;
        sids.sort_unstable();
        Ok(sids)
    }

    async fn revoked_since(&self, since: i64) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar::<_, String>(sql::REVOKED_SINCE)
            .bind(since)
            .fetch_all(&self.pool)
            .await?)
    }

    async fn announce_user_change(&self, idp: &str, sub: &str) -> Result<(), StoreError> {
        let mut c = self.pool.acquire().await?;
        Self::announce(&mut c, "user", None, Some((idp, sub))).await?;
        drop(c);
        self.purge_revocations(now_unix()).await;
        Ok(())
    }

    async fn change_cursor(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar::<_, i64>(sql::NOW_MS)
            .fetch_one(&self.pool)
            .await?)
    }

    async fn changes_since(&self, cursor: i64) -> Result<(Vec<Change>, i64), StoreError> {
        let mut c = self.pool.acquire().await?;
        // Read the clock first: a row stamped after it is read again next time.
        let now: i64 = sqlx::query_scalar(sql::NOW_MS).fetch_one(&mut *c).await?;
        let rows = sqlx::query_as::<_, ChangeRow>(sql::CHANGES_SINCE)
            .bind(cursor - CATCH_UP_OVERLAP_MS)
            .fetch_all(&mut *c)
            .await?;
        let changes = rows
            .into_iter()
            .filter_map(|(seq, at, kind, sid, idp, sub)| change_from(seq, at, &kind, sid, idp, sub))
            .collect();
        Ok((changes, now))
    }

    fn subscribe(&self) -> Option<tokio::sync::mpsc::Receiver<FeedEvent>> {
        Some(listen::spawn(self.pool.clone()))
    }

    fn key_store(&self) -> Option<&dyn KeyStore> {
        Some(self)
    }

    async fn use_once(&self, key: &str, expires_at: i64) -> Result<bool, StoreError> {
        let done = sqlx::query(sql::INSERT_USE_ONCE)
            .bind(key)
            .bind(expires_at)
            .execute(&self.pool)
            .await?;
        if due(&self.use_once_writes) {
            sqlx::query(sql::PURGE_USE_ONCE)
                .bind(now_unix() - USE_ONCE_GRACE_SECS)
                .execute(&self.pool)
                .await?;
        }
        Ok(done.rows_affected() == 1)
    }

    async fn upsert_seat(&self, seat: &Seat) -> Result<(), StoreError> {
        sqlx::query(sql::UPSERT_SEAT)
            .bind(&seat.app)
            .bind(&seat.idp)
            .bind(&seat.sub)
            .bind(&seat.email)
            .bind(seat.last_login)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn list_seats(&self) -> Result<Vec<Seat>, StoreError> {
        let rows = sqlx::query_as::<_, (String, String, String, String, i64)>(sql::LIST_SEATS)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .into_iter()
            .map(|(app, idp, sub, email, last_login)| Seat {
                app,
                idp,
                sub,
                email,
                last_login,
            })
            .collect())
    }

    async fn remove_seats(&self, idp: &str, sub: &str) -> Result<u64, StoreError> {
        let done = sqlx::query(sql::REMOVE_SEATS)
            .bind(idp)
            .bind(sub)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}

#[cfg(test)]
mod tests;
