//! Rotating a fleet's session signing key (`portcullis keys rotate`): a new
//! key is stored ahead of its time, so every instance publishes it (JWKS,
//! verification) before any instance signs with it, and keys whose tokens
//! can no longer be valid are removed.
//!
//! Key `k` stops signing when the next key's `signs_from` comes; its last
//! token expires at most `session.duration` later (an app token never
//! outlives the auth-domain session it came from), plus the clock leeway.
//! Only then is it removed.

use std::time::Duration;

use super::keys::{KeyError, KeyRing, LEEWAY_SECS};
use crate::store::{KeyStore, StoreError, StoredKey};

/// How far ahead of its first signature a rotated key is stored: every
/// instance re-reads the keys within a second of the announcement, and at
/// the latest 30 s later (`server::changes`).
pub const PUBLISH_AHEAD: Duration = Duration::from_secs(60);

/// Why a rotation failed.
#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("key: {0}")]
    Key(#[from] KeyError),
}

/// What a rotation did.
#[derive(Debug)]
pub struct Rotated {
    /// The new key.
    pub kid: String,
    /// Unix seconds from which it signs.
    pub signs_from: i64,
    /// Keys removed because no token they signed can still be valid.
    pub removed: Vec<String>,
}

/// The keys that may be removed at `now`: those that stopped signing
/// (a later key's `signs_from` has come) more than `max_token_life` plus
/// the leeway ago. Never the key that signs now, nor one still to come.
pub fn retired(keys: &[StoredKey], now: i64, max_token_life: Duration) -> Vec<String> {
    let mut sorted: Vec<&StoredKey> = keys.iter().collect();
    sorted.sort_by_key(|k| (k.signs_from, k.created_at));
    let life = i64::try_from(max_token_life.as_secs()).unwrap_or(i64::MAX);
    let grace = life.saturating_add(LEEWAY_SECS as i64);
    sorted
        .windows(2)
        .filter(|w| w[1].signs_from <= now && now - w[1].signs_from > grace)
        .map(|w| w[0].kid.clone())
        .collect()
}

/// Store a new key that signs from `now + publish_ahead`, then remove the
/// retired keys.
pub async fn rotate(
    ks: &dyn KeyStore,
    now: i64,
    publish_ahead: Duration,
    max_token_life: Duration,
) -> Result<Rotated, RotateError> {
    let ahead = i64::try_from(publish_ahead.as_secs()).unwrap_or(i64::MAX);
    let key = KeyRing::new_stored_key(now.saturating_add(ahead))?;
    ks.add_signing_key(&key, false).await?;
    let mut removed = Vec::new();
    for kid in retired(&ks.signing_keys().await?, now, max_token_life) {
        if ks.remove_signing_key(&kid).await? {
            removed.push(kid);
        }
    }
    Ok(Rotated {
        kid: key.kid,
        signs_from: key.signs_from,
        removed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(kid: &str, signs_from: i64) -> StoredKey {
        StoredKey {
            kid: kid.into(),
            pkcs8_pem: String::new(),
            created_at: signs_from,
            signs_from,
        }
    }

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn the_only_key_is_never_retired() {
        assert!(retired(&[key("a", 0)], 10 * 86_400, DAY).is_empty());
    }

    #[test]
    fn a_superseded_key_is_kept_while_its_tokens_may_live() {
        let keys = [key("a", 0), key("b", 1000)];
        let leeway = LEEWAY_SECS as i64;
        assert!(retired(&keys, 1000 + 86_400 + leeway, DAY).is_empty());
        assert_eq!(retired(&keys, 1000 + 86_400 + leeway + 1, DAY), ["a"]);
    }

    #[test]
    fn a_key_still_to_come_retires_nothing() {
        let keys = [key("a", 0), key("b", 10 * 86_400)];
        assert!(retired(&keys, 5 * 86_400, DAY).is_empty());
    }

    #[test]
    fn only_keys_older_than_the_signer_retire() {
        let keys = [key("c", 3 * 86_400), key("a", 0), key("b", 86_400)];
        assert_eq!(retired(&keys, 3 * 86_400 + 60, DAY), ["a"]);
    }
}
