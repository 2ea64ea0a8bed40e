//! The fleet's session signing keys in PostgreSQL ([`KeyStore`]): every
//! instance loads the same keys, so every instance publishes the same JWKS
//! and verifies every other instance's tokens. Adding or removing a key is
//! announced like any other change, and instances reload their key ring.

use async_trait::async_trait;

use super::{sql, PgStore};
use crate::store::{KeyStore, StoreError, StoredKey};

/// Key of the advisory lock around key writes ("sigkeys!").
const KEYS_LOCK_KEY: i64 = 0x7369_676b_6579_7321;

#[async_trait]
impl KeyStore for PgStore {
    async fn signing_keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        let rows = sqlx::query_as::<_, (String, String, i64, i64)>(sql::LIST_KEYS)
            .fetch_all(self.pool())
            .await?;
        Ok(rows
            .into_iter()
            .map(|(kid, pkcs8_pem, created_at, signs_from)| StoredKey {
                kid,
                pkcs8_pem,
                created_at,
                signs_from,
            })
            .collect())
    }

    async fn add_signing_key(
        &self,
        key: &StoredKey,
        only_if_empty: bool,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin().await?;
        // Instances starting together on an empty database: one generates.
        sqlx::query(sql::KEYS_LOCK)
            .bind(KEYS_LOCK_KEY)
            .execute(&mut *tx)
            .await?;
        if only_if_empty {
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM signing_keys")
                .fetch_one(&mut *tx)
                .await?;
            if n > 0 {
                return Ok(false);
            }
        }
        let done = sqlx::query(sql::INSERT_KEY)
            .bind(&key.kid)
            .bind(&key.pkcs8_pem)
            .bind(key.created_at)
            .bind(key.signs_from)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 1 {
            PgStore::announce(&mut tx, "keys", None, None).await?;
        }
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn remove_signing_key(&self, kid: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin().await?;
        let done = sqlx::query(sql::DELETE_KEY)
            .bind(kid)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 1 {
            PgStore::announce(&mut tx, "keys", None, None).await?;
        }
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }
}
