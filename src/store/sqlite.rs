//! SQLite implementation of [`Store`](super::Store): one file, WAL mode,
//! `synchronous=FULL` so an acknowledged write survives a crash.
//!
//! The schema is built by [`MIGRATIONS`], applied in order under an
//! exclusive write lock; `PRAGMA user_version` records how many ran, so a
//! later release (or the SCIM tables in `scim_sqlite`) appends an entry and
//! older files upgrade on open. Every SQL statement of sessions, markers
//! and seats lives in [`sql`]; the SCIM ones in `scim_sqlite`.
//! Session records and SCIM links are read in place first, without sqlx
//! and on the caller's thread ([`reader`]): `get_session` and `scim_link`
//! (the session-cache miss) fall back to the pool only while the database
//! is locked. The SCIM flows are `directory`'s, over `scim_sqlite`'s SQL.

mod reader;
mod sql;

use std::path::{Path, PathBuf};
use std::str::FromStr as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

use super::{Seat, SessionRecord, SessionStore, StoreError};
use crate::identity::Identity;
use crate::scim::model::ScimLink;
use crate::session::token::now_unix;

/// URL of a private in-memory database (tests).
pub const MEMORY_URL: &str = "sqlite::memory:";

/// Schema migrations, in order. Append only: never edit, reorder or remove
/// an entry that has shipped. Each entry runs in one transaction together
/// with the `user_version` bump.
pub(crate) const MIGRATIONS: &[&str] = &[sql::SCHEMA_V1, super::scim_sqlite::SCHEMA_SCIM_V1];

/// How long SQLite waits for another writer before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections to a file database (one writer at a time; readers in WAL).
/// sqlx pings each connection when it is released, so some are always busy
/// being returned; eight keep one idle for a login or SCIM request. They
/// open on demand: the session-cache miss, which needed one idle at once,
/// reads in place through [`reader`], and opening several connections at
/// the same moment on a new file races their switch to WAL mode.
const MAX_CONNECTIONS: u32 = 8;
/// Housekeeping (purging expired markers and old rows) runs on every
/// `PURGE_EVERY`-th write of a kind, to keep writes cheap.
const PURGE_EVERY: u64 = 64;
/// `use_once` markers are kept this long past their `expires_at`, so clock
/// skew between instances never re-opens a key early.
const USE_ONCE_GRACE_SECS: i64 = 300;
/// Revocations are listed by `revoked_since` for this long.
const REVOCATION_RETENTION_SECS: i64 = 2 * 24 * 3600;
/// Sessions are kept this long after they end (for `get_session` to
/// report them as ended rather than unknown).
const SESSION_RETENTION_SECS: i64 = 7 * 24 * 3600;

/// Where an `sqlite:` URL points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Location {
    Memory,
    File(PathBuf),
}

/// True when `url` is one of the SQLite forms [`SqliteStore::open`] takes.
pub fn is_sqlite_url(url: &str) -> bool {
    url == MEMORY_URL || url.starts_with("sqlite://")
}

/// Parse `sqlite://PATH` or `sqlite::memory:`.
pub(crate) fn parse_url(url: &str) -> Result<Location, StoreError> {
    if url == MEMORY_URL {
        return Ok(Location::Memory);
    }
    match url.strip_prefix("sqlite://") {
        Some(path) if !path.is_empty() && !path.contains('\0') => {
            Ok(Location::File(PathBuf::from(path)))
        }
        _ => Err(StoreError::UnsupportedUrl(super::redact_url(url))),
    }
}

/// The embedded store.
pub struct SqliteStore {
    pool: SqlitePool,
    location: Location,
    /// In-place session reads (file databases only).
    reader: Option<reader::SessionReader>,
    session_writes: AtomicU64,
    use_once_writes: AtomicU64,
    revocation_writes: AtomicU64,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("location", &self.location)
            .finish()
    }
}

impl SqliteStore {
    /// Open (creating the file and its folder if needed) and migrate.
    pub async fn open(url: &str) -> Result<SqliteStore, StoreError> {
        let location = parse_url(url)?;
        let pool = match &location {
            Location::Memory => {
                // Each connection to `:memory:` would be its own database:
                // keep exactly one, forever.
                let opts = SqliteConnectOptions::from_str(MEMORY_URL)?.foreign_keys(true);
                SqlitePoolOptions::new()
                    // No ping before every query: a broken connection fails the
                    // query itself, which the caller treats as a store error.
                    .test_before_acquire(false)
                    .max_connections(1)
                    .min_connections(1)
                    .idle_timeout(None)
                    .max_lifetime(None)
                    .connect_with(opts)
                    .await?
            }
            Location::File(path) => {
                prepare_file(path)?;
                let opts = SqliteConnectOptions::new()
                    .filename(path)
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Full)
                    .foreign_keys(true)
                    .busy_timeout(BUSY_TIMEOUT);
                SqlitePoolOptions::new()
                    // No ping before every query: a broken connection fails the
                    // query itself, which the caller treats as a store error.
                    .test_before_acquire(false)
                    .max_connections(MAX_CONNECTIONS)
                    .min_connections(1)
                    .idle_timeout(None)
                    .connect_with(opts)
                    .await?
            }
        };
        migrate(&pool, MIGRATIONS).await?;
        tracing::debug!(store = ?location, "Store opened");
        let reader = match &location {
            Location::File(path) => Some(reader::SessionReader::new(path)),
            Location::Memory => None,
        };
        Ok(SqliteStore {
            pool,
            location,
            reader,
            session_writes: AtomicU64::new(0),
            use_once_writes: AtomicU64::new(0),
            revocation_writes: AtomicU64::new(0),
        })
    }

    /// The connection pool, for sibling modules adding tables (SCIM).
    pub(crate) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// The schema version (`PRAGMA user_version`).
    pub async fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar::<_, i64>(sql::USER_VERSION)
            .fetch_one(&self.pool)
            .await?)
    }

    /// Close every connection (checkpointing the WAL).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// [`get_session`](SessionStore::get_session) on the calling thread,
    /// without sqlx (a file database that is not locked); `None`: read
    /// through the pool.
    pub(crate) fn get_session_now(
        &self,
        sid: &str,
    ) -> Option<Result<Option<SessionRecord>, StoreError>> {
        self.reader.as_ref()?.get_session(sid)
    }

    /// The session read through the pool.
    pub(crate) async fn get_session_pooled(
        &self,
        sid: &str,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let row = sqlx::query_as::<_, SessionRow>(sql::SELECT_SESSION)
            .bind(sid)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|row| session_record(sid, row)).transpose()
    }

    /// `scim_link` on the calling thread, as
    /// [`get_session_now`](Self::get_session_now); `None`: read through
    /// the pool.
    pub(crate) fn scim_link_now(
        &self,
        idp: &str,
        sub: &str,
        verified_email: Option<&str>,
    ) -> Option<Result<ScimLink, StoreError>> {
        self.reader.as_ref()?.scim_link(idp, sub, verified_email)
    }

    async fn purge_revocations(&self, now: i64) -> Result<(), StoreError> {
        if due(&self.revocation_writes) {
            sqlx::query(sql::PURGE_REVOCATIONS)
                .bind(now - REVOCATION_RETENTION_SECS)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }
}

/// True on every `PURGE_EVERY`-th call.
fn due(counter: &AtomicU64) -> bool {
    counter.fetch_add(1, Ordering::Relaxed) % PURGE_EVERY == PURGE_EVERY - 1
}

/// Create the parent folder (0700) and the database file (0600) so the
/// sessions it holds are private; SQLite gives `-wal`/`-shm` the same mode.
fn prepare_file(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
    let io = |what: &str, e: std::io::Error| {
        StoreError::Data(format!("store file {}: {what}: {e}", path.display()))
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(|e| io("creating the folder", e))?;
    }
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io("creating the file", e)),
    }
}

/// Apply the migrations `user_version` has not seen yet. `BEGIN IMMEDIATE`
/// takes the write lock before reading the version, so two processes
/// opening one file never run a migration twice.
pub(crate) async fn migrate(
    pool: &SqlitePool,
    migrations: &[&'static str],
) -> Result<(), StoreError> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let version = sqlx::query_scalar::<_, i64>(sql::USER_VERSION)
        .fetch_one(&mut *tx)
        .await?;
    let known = i64::try_from(migrations.len()).unwrap_or(i64::MAX);
    if version > known {
        return Err(StoreError::Data(format!(
            "store schema version {version} is newer than this build knows ({known}); refusing to open"
        )));
    }
    let start = usize::try_from(version)
        .map_err(|_| StoreError::Data(format!("store schema version {version} is invalid")))?;
    for (i, migration) in migrations.iter().enumerate().skip(start) {
        sqlx::raw_sql(*migration).execute(&mut *tx).await?;
        // The version is an integer we computed, never input.
        let bump = format!("PRAGMA user_version = {}", i + 1);
        sqlx::raw_sql(sqlx::AssertSqlSafe(bump))
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

/// The columns [`sql::SELECT_SESSION`] returns: identity JSON, created_at,
/// expires_at, revoked_at (both read paths).
type SessionRow = (String, i64, i64, Option<i64>);

/// A session record from its row.
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

#[async_trait]
impl SessionStore for SqliteStore {
    async fn create_session(&self, rec: &SessionRecord) -> Result<(), StoreError> {
        let now = now_unix();
        let revoked_at = rec.revoked.then_some(now);
        sqlx::query(sql::INSERT_SESSION)
            .bind(&rec.sid)
            .bind(&rec.identity.idp)
            .bind(&rec.identity.sub)
            .bind(identity_json(&rec.identity)?)
            .bind(rec.created_at)
            .bind(rec.expires_at)
            .bind(revoked_at)
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

    /// Read in place first (see `reader`): the future completes on its
    /// first poll, on the caller's thread, unless the database is locked.
    async fn get_session(&self, sid: &str) -> Result<Option<SessionRecord>, StoreError> {
        match self.get_session_now(sid) {
            Some(read) => read,
            None => self.get_session_pooled(sid).await,
        }
    }

    async fn revoke_session(&self, sid: &str) -> Result<bool, StoreError> {
        let now = now_unix();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
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
        }
        tx.commit().await?;
        self.purge_revocations(now).await?;
        Ok(expires_at.is_some_and(|e| e > now))
    }

    async fn revoke_user_sessions(&self, idp: &str, sub: &str) -> Result<Vec<String>, StoreError> {
        let now = now_unix();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
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
        }
        tx.commit().await?;
        self.purge_revocations(now).await?;
        sids.sort_unstable();
        Ok(sids)
    }

    async fn revoked_since(&self, since: i64) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar::<_, String>(sql::REVOKED_SINCE)
            .bind(since)
            .fetch_all(&self.pool)
            .await?)
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
