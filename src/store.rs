//! Persistent state behind one [`Store`] trait: sessions, single-use markers,
//! seats, and (see `scim`) users, groups, memberships and the SCIM secret.
//! `sqlite` is the embedded default.

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
    #[error("store database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("store data error: {0}")]
    Data(String),
    #[error("unsupported store url {0:?}: expected sqlite://PATH")]
    UnsupportedUrl(String),
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

/// The storage contract. Implementations must make every successful write
/// durable before returning.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Persist a new session.
    async fn create_session(&self, rec: &SessionRecord) -> Result<(), StoreError>;
    /// Load a session by id (revoked ones too, with `revoked = true`).
    async fn get_session(&self, sid: &str) -> Result<Option<SessionRecord>, StoreError>;
    /// [`get_session`](Self::get_session) on the calling thread, for stores
    /// that can read a row faster than a hop to another thread (an SQLite
    /// file). `None`: not available now, use `get_session`.
    fn get_session_now(&self, _sid: &str) -> Option<Result<Option<SessionRecord>, StoreError>> {
        None
    }
    /// [`scim_link`](Self::scim_link) on the calling thread, as
    /// [`get_session_now`](Self::get_session_now). `None`: use `scim_link`.
    fn scim_link_now(
        &self,
        _idp: &str,
        _sub: &str,
        _verified_email: Option<&str>,
    ) -> Option<Result<ScimLink, StoreError>> {
        None
    }
    /// Mark a session revoked. Returns whether it existed and was live.
    async fn revoke_session(&self, sid: &str) -> Result<bool, StoreError>;
    /// Revoke every live session of a user of an IdP; returns their sids.
    async fn revoke_user_sessions(&self, idp: &str, sub: &str) -> Result<Vec<String>, StoreError>;
    /// Sids revoked at or after `since` (unix seconds), for cache eviction across instances.
    async fn revoked_since(&self, since: i64) -> Result<Vec<String>, StoreError>;
    /// Mark `key` as used; `true` the first time, `false` if it was already used.
    /// Entries may be forgotten after `expires_at` (unix seconds).
    async fn use_once(&self, key: &str, expires_at: i64) -> Result<bool, StoreError>;
    /// Record (or refresh) a seat.
    async fn upsert_seat(&self, seat: &Seat) -> Result<(), StoreError>;
    /// All seats, ordered by app then email.
    async fn list_seats(&self) -> Result<Vec<Seat>, StoreError>;
    /// Remove every seat of a user. Returns how many were removed.
    async fn remove_seats(&self, idp: &str, sub: &str) -> Result<u64, StoreError>;

    // SCIM (see `crate::scim`). Every write is one transaction, durable
    // before it returns; users and groups belong to one IdP.

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

/// Open the store named by `url`: `sqlite://PATH` (absolute or relative to
/// the working folder) or `sqlite::memory:` (tests). Anything else,
/// `postgres://…` included for now, is [`StoreError::UnsupportedUrl`].
pub async fn open_store(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if sqlite::is_sqlite_url(url) {
        let store = sqlite::SqliteStore::open(url).await?;
        return Ok(Arc::new(store));
    }
    Err(StoreError::UnsupportedUrl(redact_url(url)))
}

/// `url` with any password replaced, for error messages and logs.
pub(crate) fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            // Setting a password fails only for URLs that cannot have one.
            if u.set_password(Some("***")).is_err() {
                return "<url>".to_string();
            }
            u.to_string()
        }
        Ok(_) => url.to_string(),
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
    async fn postgres_url_is_unsupported_and_redacted() {
        let err = open_store("postgres://app:s3cret@db/portcullis")
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
        assert_eq!(redact_url("sqlite:///var/x.db"), "sqlite:///var/x.db");
        assert_eq!(redact_url("mysql"), "<url>");
    }
}
