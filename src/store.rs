//! Persistent state behind one [`Store`] trait, in two halves:
//! [`SessionStore`] (sessions, single-use markers, seats, revocations and
//! their change feed, fleet signing keys) and [`DirectoryStore`] (see
//! `scim`: users, groups, memberships and the SCIM secrets), whose flows
//! are written once in `directory` over each backend's SQL text.
//! `sqlite` is the embedded default; `postgres` is fleet mode, where every
//! instance shares one database, the session signing keys live there too,
//! and changes reach every instance's cache through [`Change`]s.

mod directory;
pub mod health;
pub mod postgres;
mod scim_postgres;
mod scim_sqlite;
pub mod sqlite;

#[cfg(test)]
pub(crate) mod conformance;

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::identity::Identity;
use crate::scim::model::{
    GroupChange, GroupDraft, GroupEdit, GroupRecord, LinkKeys, MemberOp, MemberRef, Outcome, Page,
    Query, ScimLink, UserChange, UserDraft, UserEdit, UserRecord,
};

/// Store failures. The access phase treats every one as a deny.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed (unreachable, or a query failed). Opaque: ask
    /// [`is_unavailable`](StoreError::is_unavailable) rather than looking
    /// at the backend's own error. Not chained as `source`: the message
    /// already carries it (an `{:#}` print would say it twice).
    #[error("store database error: {0}")]
    Backend(BackendError),
    #[error("store data error: {0}")]
    Data(String),
    #[error("unsupported store url {0:?}: expected sqlite://PATH or postgres://…")]
    UnsupportedUrl(String),
    /// The database could not be reached or refused the login (opening).
    #[error("{0}")]
    Connect(String),
    /// Not tried: the store is known to be unreachable right now.
    #[error("store unreachable")]
    Unavailable,
}

impl StoreError {
    /// True when the database could not be reached (connection refused,
    /// dropped, or no pooled connection in time), as opposed to a query
    /// or data error: the caller answers 503 and may retry.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::Unavailable | StoreError::Connect(_) => true,
            StoreError::Backend(e) => e.is_unavailable(),
            _ => false,
        }
    }
}

/// A backend's own error, classified when it is wrapped; it displays as
/// the backend's error.
#[derive(Debug)]
pub struct BackendError {
    unavailable: bool,
    error: Box<dyn std::error::Error + Send + Sync>,
}

impl BackendError {
    /// See [`StoreError::is_unavailable`].
    pub fn is_unavailable(&self) -> bool {
        self.unavailable
    }
}

impl std::fmt::Display for BackendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

/// No `source`: the backend's message already includes its causes (sqlx
/// formats them in), and a chained print would repeat them.
impl std::error::Error for BackendError {}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> StoreError {
        let unavailable = matches!(
            e,
            sqlx::Error::Io(_)
                | sqlx::Error::PoolTimedOut
                | sqlx::Error::PoolClosed
                | sqlx::Error::Tls(_)
                | sqlx::Error::Protocol(_)
        );
        StoreError::Backend(BackendError {
            unavailable,
            error: Box::new(e),
        })
    }
}

/// Why the store refused a SCIM write on its own account (the SCIM layer
/// turns it into its client error; an edit function's refusal is passed
/// through as it is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// A member to add is not a user of the group's IdP.
    UnknownMember(String),
}

/// A change that every instance must apply to its caches: announced by
/// the instance that wrote it (fleet mode), and listed by
/// [`SessionStore::changes_since`] for instances that missed the announcement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Position in the change log (0 where the store keeps none).
    pub seq: i64,
    /// When the change was written, in ms on the database's clock (0 where
    /// unknown).
    pub at_ms: i64,
    pub kind: ChangeKind,
}

/// What changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeKind {
    /// A session was revoked: refuse it everywhere.
    Revoked { sid: String },
    /// A user's SCIM state changed: evict their cached sessions so the next
    /// request reads the live groups.
    User { idp: String, sub: String },
    /// The signing keys changed: reload them.
    Keys,
}

/// What a store's push feed delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedEvent {
    /// A change, as it was announced.
    Change(Change),
    /// Changes may have been missed (the feed's connection was lost and is
    /// back, or an announcement was not understood): poll
    /// [`SessionStore::changes_since`] now.
    CatchUp,
}

/// A server-side session: created at login, referenced by `sid` from every
/// token minted for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub sid: String,
    /// Identity at login (IdP groups only; SCIM groups are merged live).
    pub identity: Identity,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds; the end of the auth-domain session.
    pub expires_at: i64,
    /// Set by logout or deprovisioning.
    pub revoked: bool,
}

/// A user who has used an app (a "seat").
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Seat {
    pub app: String,
    pub idp: String,
    pub sub: String,
    pub email: String,
    /// Unix seconds of the last login to the app.
    pub last_login: i64,
}

/// Everything the proxy keeps: sessions and their fan-out
/// ([`SessionStore`]) and the SCIM directory ([`DirectoryStore`]). Callers
/// hold an `Arc<dyn Store>`; every type with both halves is one.
pub trait Store: SessionStore + DirectoryStore {}

impl<T: SessionStore + DirectoryStore + ?Sized> Store for T {}

/// Sessions, revocations and their change feed, single-use markers, seats
/// and (fleet mode) the signing keys. Implementations must make every
/// successful write durable before returning.
#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Persist a new session.
    async fn create_session(&self, rec: &SessionRecord) -> Result<(), StoreError>;
    /// Load a session by id (revoked ones too, with `revoked = true`). A
    /// store that can read a row faster on the calling thread than through
    /// a hop to another thread (an SQLite file) does so here, in the first
    /// poll of the returned future.
    async fn get_session(&self, sid: &str) -> Result<Option<SessionRecord>, StoreError>;
    /// Mark a session revoked. Returns whether it existed and was live.
    async fn revoke_session(&self, sid: &str) -> Result<bool, StoreError>;
    /// Revoke every live session of a user of an IdP; returns their sids.
    async fn revoke_user_sessions(&self, idp: &str, sub: &str) -> Result<Vec<String>, StoreError>;
    /// Sids revoked at or after `since` (unix seconds), for cache eviction across instances.
    async fn revoked_since(&self, since: i64) -> Result<Vec<String>, StoreError>;
    /// Tell every instance that a user's SCIM state changed (fleet mode;
    /// a store with one instance has no one to tell).
    async fn announce_user_change(&self, _idp: &str, _sub: &str) -> Result<(), StoreError> {
        Ok(())
    }
    /// A cursor for [`changes_since`](Self::changes_since) at "now".
    async fn change_cursor(&self) -> Result<i64, StoreError> {
        Ok(crate::session::token::now_unix() - 1)
    }
    /// Changes written at or after `cursor` (and possibly a little before
    /// it: applying a change twice is harmless), and the cursor to pass
    /// next time. The cursor's unit is the store's own.
    async fn changes_since(&self, cursor: i64) -> Result<(Vec<Change>, i64), StoreError> {
        let next = crate::session::token::now_unix() - 1;
        let sids = self.revoked_since(cursor).await?;
        let changes = sids
            .into_iter()
            .map(|sid| Change {
                seq: 0,
                at_ms: 0,
                kind: ChangeKind::Revoked { sid },
            })
            .collect();
        Ok((changes, next))
    }
    /// The push feed of changes announced by any instance, for the one
    /// caller that applies them (`None`: the store has none, or it was
    /// taken already; poll [`changes_since`](Self::changes_since)).
    fn subscribe(&self) -> Option<tokio::sync::mpsc::Receiver<FeedEvent>> {
        None
    }
    /// The fleet's signing keys, when the store keeps them (fleet mode).
    fn key_store(&self) -> Option<&dyn KeyStore> {
        None
    }
    /// Mark `key` as used; `true` the first time, `false` if it was already used.
    /// Entries may be forgotten after `expires_at` (unix seconds).
    async fn use_once(&self, key: &str, expires_at: i64) -> Result<bool, StoreError>;
    /// Record (or refresh) a seat.
    async fn upsert_seat(&self, seat: &Seat) -> Result<(), StoreError>;
    /// All seats, ordered by app then email.
    async fn list_seats(&self) -> Result<Vec<Seat>, StoreError>;
    /// Remove every seat of a user. Returns how many were removed.
    async fn remove_seats(&self, idp: &str, sub: &str) -> Result<u64, StoreError>;
}

/// The SCIM directory (see `crate::scim`): users, groups, memberships and
/// the SCIM secrets. Every write is one transaction, durable before it
/// returns, and changes nothing when it does not return `Done`; users and
/// groups belong to one IdP. Implemented once for every backend in
/// `directory`.
#[async_trait]
pub trait DirectoryStore: Send + Sync + 'static {
    /// Every stored SCIM secret hash: (IdP name, SHA-256 of the secret).
    async fn scim_secret_hashes(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError>;
    /// Store the hash if the IdP has none yet; `true` when it was stored.
    async fn scim_seed_secret(&self, idp: &str, sha256: &[u8]) -> Result<bool, StoreError>;
    /// Replace (or set) the IdP's secret hash.
    async fn scim_set_secret(&self, idp: &str, sha256: &[u8]) -> Result<(), StoreError>;
    /// Create a user; `Conflict("userName")` when the IdP has one of that
    /// name (ASCII case-insensitive).
    async fn scim_create_user(
        &self,
        idp: &str,
        draft: &UserDraft,
    ) -> Result<Outcome<UserRecord>, StoreError>;
    async fn scim_get_user(&self, idp: &str, id: &str) -> Result<Option<UserRecord>, StoreError>;
    /// Replace a user with what `edit` makes of it, atomically.
    async fn scim_modify_user(
        &self,
        idp: &str,
        id: &str,
        edit: &UserEdit<'_>,
    ) -> Result<Outcome<UserChange>, StoreError>;
    /// Delete a user (and its memberships); returns it as it was.
    async fn scim_delete_user(&self, idp: &str, id: &str)
        -> Result<Option<UserRecord>, StoreError>;
    /// (total matching, one page) ordered by creation time, then id.
    async fn scim_list_users(
        &self,
        idp: &str,
        query: Option<&Query>,
        page: Page,
    ) -> Result<(i64, Vec<UserRecord>), StoreError>;
    /// Groups a user is in (id, display name).
    async fn scim_user_groups(&self, user_id: &str) -> Result<Vec<MemberRef>, StoreError>;
    /// Create a group with members (users of the same IdP).
    async fn scim_create_group(
        &self,
        idp: &str,
        draft: &GroupDraft,
        members: &[String],
    ) -> Result<Outcome<GroupChange>, StoreError>;
    async fn scim_get_group(
        &self,
        idp: &str,
        id: &str,
        with_members: bool,
    ) -> Result<Option<GroupRecord>, StoreError>;
    /// Edit a group's attributes and apply membership operations in one transaction.
    async fn scim_modify_group(
        &self,
        idp: &str,
        id: &str,
        edit: &GroupEdit<'_>,
        members: &[MemberOp],
        with_members: bool,
    ) -> Result<Outcome<GroupChange>, StoreError>;
    /// Delete a group; returns it and its former members.
    async fn scim_delete_group(
        &self,
        idp: &str,
        id: &str,
    ) -> Result<Option<GroupChange>, StoreError>;
    async fn scim_list_groups(
        &self,
        idp: &str,
        query: Option<&Query>,
        page: Page,
        with_members: bool,
    ) -> Result<(i64, Vec<GroupRecord>), StoreError>;
    /// The SCIM users of `idp` linked to a login (`externalId == sub`, else
    /// userName / primary email == the verified email) and their groups.
    /// Read in place, on the calling thread, where the store can (an SQLite
    /// file), as [`SessionStore::get_session`].
    async fn scim_link(
        &self,
        idp: &str,
        sub: &str,
        verified_email: Option<&str>,
    ) -> Result<ScimLink, StoreError>;
    /// Login subjects of `idp` (from live sessions and seats) linked to these users.
    async fn scim_linked_subjects(
        &self,
        idp: &str,
        keys: &[LinkKeys],
    ) -> Result<Vec<String>, StoreError>;
}

/// A signing key as the fleet keeps it.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredKey {
    pub kid: String,
    /// PKCS#8 PEM of the private key.
    pub pkcs8_pem: String,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds from which the key may sign; it is published (JWKS,
    /// verification) as soon as it is stored.
    pub signs_from: i64,
}

impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredKey")
            .field("kid", &self.kid)
            .field("created_at", &self.created_at)
            .field("signs_from", &self.signs_from)
            .finish_non_exhaustive()
    }
}

/// Where a fleet keeps its session signing keys (private keys included).
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// Every stored key, oldest first.
    async fn signing_keys(&self) -> Result<Vec<StoredKey>, StoreError>;
    /// Store `key` if no key exists yet (`only_if_empty`) or always, and
    /// announce the change; `true` when it was stored.
    async fn add_signing_key(
        &self,
        key: &StoredKey,
        only_if_empty: bool,
    ) -> Result<bool, StoreError>;
    /// Remove a key (retired after its tokens expired); `true` if it existed.
    async fn remove_signing_key(&self, kid: &str) -> Result<bool, StoreError>;
}

/// Default PostgreSQL pool size when the caller has no setting.
pub const DEFAULT_POOL_SIZE: u32 = 16;

/// Open the store named by `url`: `sqlite://PATH` (absolute or relative to
/// the working folder), `sqlite::memory:` (tests), or `postgres://…`
/// (fleet mode, [`DEFAULT_POOL_SIZE`] connections).
pub async fn open_store(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    open_store_with(url, DEFAULT_POOL_SIZE).await
}

/// [`open_store`] with a PostgreSQL pool of at most `pool_size` connections.
pub async fn open_store_with(url: &str, pool_size: u32) -> Result<Arc<dyn Store>, StoreError> {
    if sqlite::is_sqlite_url(url) {
        let store = sqlite::SqliteStore::open(url).await?;
        return Ok(Arc::new(store));
    }
    if postgres::is_postgres_url(url) {
        let store = postgres::PgStore::open(url, pool_size).await?;
        return Ok(Arc::new(store));
    }
    Err(StoreError::UnsupportedUrl(redact_url(url)))
}

/// Query parameters of a database URL that hold secrets.
const SECRET_PARAMS: [&str; 3] = ["password", "sslpassword", "passfile"];

/// `url` with any password replaced (the user part's and those of the
/// query, `?password=…`), for error messages and logs.
pub(crate) fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            // Setting a password fails only for URLs that cannot have one.
            if u.password().is_some() && u.set_password(Some("***")).is_err() {
                return "<url>".to_string();
            }
            let secret = |k: &str| SECRET_PARAMS.iter().any(|s| k.eq_ignore_ascii_case(s));
            if u.query_pairs().any(|(k, _)| secret(&k)) {
                let pairs: Vec<(String, String)> = u
                    .query_pairs()
                    .map(|(k, v)| {
                        let v = if secret(&k) {
                            "***".to_string()
                        } else {
                            v.into_owned()
                        };
                        (k.into_owned(), v)
                    })
                    .collect();
                u.query_pairs_mut().clear().extend_pairs(pairs);
            }
            u.to_string()
        }
        // Unparseable: it could still hold a secret, so show only its scheme.
        Err(_) => match url.split_once(':') {
            Some((scheme, _))
                if scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '+') =>
            {
                format!("{scheme}:…")
            }
            _ => "<url>".to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unknown_scheme_is_unsupported_and_redacted() {
        let err = open_store("mysql://app:s3cret@db/portcullis")
            .await
            .map(|_| ())
            .unwrap_err();
        assert!(matches!(err, StoreError::UnsupportedUrl(_)), "{err}");
        assert!(!err.to_string().contains("s3cret"), "{err}");
    }

    #[tokio::test]
    async fn empty_sqlite_path_is_unsupported() {
        let err = open_store("sqlite://").await.map(|_| ()).unwrap_err();
        assert!(matches!(err, StoreError::UnsupportedUrl(_)), "{err}");
    }

    #[tokio::test]
    async fn memory_url_opens_a_working_store() {
        let store = open_store(sqlite::MEMORY_URL).await.unwrap();
        assert!(store.use_once("k", i64::MAX).await.unwrap());
        assert!(!store.use_once("k", i64::MAX).await.unwrap());
    }

    #[test]
    fn redact_url_hides_passwords_only() {
        assert_eq!(redact_url("postgres://u:p@h/db"), "postgres://u:***@h/db");
        assert_eq!(
            redact_url("postgres://u@h/db?sslmode=require&password=s3cret"),
            "postgres://u@h/db?sslmode=require&password=***"
        );
        assert_eq!(redact_url("sqlite:///var/x.db"), "sqlite:///var/x.db");
        assert_eq!(redact_url("mysql"), "<url>");
    }
}
