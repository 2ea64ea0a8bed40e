//! The SCIM bearer secret: hashing (only SHA-256 is stored), generation,
//! the constant-time check that also says which identity provider a request
//! belongs to, and seeding / rotation in the store.

use subtle::ConstantTimeEq;

use crate::config::Config;
use crate::session::token::random_token;
use crate::store::{Store, StoreError};

/// Random bytes in a generated secret (43 base64url characters).
pub const SECRET_BYTES: usize = 32;

/// SHA-256 of a secret.
pub fn hash(secret: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(secret.as_bytes()).into()
}

/// A new random secret.
pub fn generate() -> String {
    random_token(SECRET_BYTES)
}

/// The token of an `Authorization: Bearer <token>` header value.
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The IdP whose stored secret hash equals the hash of `presented`, among
/// the IdPs in `enabled`. Every candidate is compared, in constant time.
pub fn authenticate(
    presented: &str,
    enabled: &[&str],
    stored: &[(String, Vec<u8>)],
) -> Option<String> {
    let digest = hash(presented);
    let mut found = None;
    for (idp, h) in stored {
        let same = bool::from(digest.as_slice().ct_eq(h.as_slice()));
        if same && enabled.contains(&idp.as_str()) {
            found = Some(idp.clone());
        }
    }
    found
}

/// Names of the IdPs with `scim_config.enabled: true`.
pub fn enabled_idps(cfg: &Config) -> Vec<&str> {
    cfg.identity_providers
        .iter()
        .filter(|i| i.scim.as_ref().is_some_and(|s| s.enabled))
        .map(|i| i.name.as_str())
        .collect()
}

/// What seeding found for one IdP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seeded {
    /// The config's secret was stored (first start).
    FromConfig,
    /// A secret was generated and stored; print it once.
    Generated(String),
    /// The store already had one equal to the config's (or none is configured).
    Kept,
    /// The store already had one and the config's value differs: the stored one wins.
    ConfigIgnored,
}

/// Seed the secret of every SCIM-enabled IdP (see DESIGN: the config value
/// seeds the store on first start; afterwards the stored secret wins).
pub async fn seed(store: &dyn Store, cfg: &Config) -> Result<Vec<(String, Seeded)>, StoreError> {
    let mut out = Vec::new();
    for idp in &cfg.identity_providers {
        let Some(scim) = idp.scim.as_ref().filter(|s| s.enabled) else {
            continue;
        };
        let outcome = match &scim.secret {
            Some(secret) => {
                let h = hash(secret);
                if store.scim_seed_secret(&idp.name, &h).await? {
                    Seeded::FromConfig
                } else {
                    let stored = store.scim_secret_hashes().await?;
                    let same = stored.iter().any(|(name, s)| {
                        name == &idp.name && bool::from(s.as_slice().ct_eq(h.as_slice()))
                    });
                    if same {
                        Seeded::Kept
                    } else {
                        Seeded::ConfigIgnored
                    }
                }
            }
            None => {
                let secret = generate();
                if store.scim_seed_secret(&idp.name, &hash(&secret)).await? {
                    Seeded::Generated(secret)
                } else {
                    Seeded::Kept
                }
            }
        };
        out.push((idp.name.clone(), outcome));
    }
    Ok(out)
}

/// Store a new secret for each SCIM-enabled IdP; returns (IdP, secret).
pub async fn rotate(store: &dyn Store, cfg: &Config) -> Result<Vec<(String, String)>, StoreError> {
    let names = enabled_idps(cfg);
    if names.is_empty() {
        return Err(StoreError::Data(
            "no identity provider has scim_config.enabled: true; nothing to rotate".into(),
        ));
    }
    let mut out = Vec::new();
    for name in names {
        let secret = generate();
        store.scim_set_secret(name, &hash(&secret)).await?;
        out.push((name.to_string(), secret));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_is_case_insensitive_and_needs_a_token() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer   abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("abc"), None);
    }

    #[test]
    fn authenticate_names_the_idp_whose_secret_matches() {
        let stored = vec![
            ("a".to_string(), hash("secret-a").to_vec()),
            ("b".to_string(), hash("secret-b").to_vec()),
        ];
        assert_eq!(
            authenticate("secret-b", &["a", "b"], &stored),
            Some("b".into())
        );
        assert_eq!(
            authenticate("secret-a", &["a", "b"], &stored),
            Some("a".into())
        );
        assert_eq!(authenticate("wrong", &["a", "b"], &stored), None);
    }

    #[test]
    fn authenticate_ignores_idps_without_scim_enabled() {
        let stored = vec![("a".to_string(), hash("secret-a").to_vec())];
        assert_eq!(authenticate("secret-a", &["b"], &stored), None);
    }

    fn config(idps: &str) -> Config {
        let text = format!(
            "listen:\n  - addr: 127.0.0.1:8080\nauth_domain: auth.localhost\npolicies: policies/\nidentity_providers:\n{idps}"
        );
        crate::config::parse_str(
            "portcullis.yaml",
            &text,
            std::path::Path::new("/tmp"),
            &|_| None,
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn idp(name: &str, scim: &str) -> String {
        format!(
            "  - name: {name}\n    type: oidc\n    config:\n      issuer: https://idp.example.com\n      client_id: c\n      client_secret: s\n{scim}"
        )
    }

    async fn store() -> std::sync::Arc<dyn Store> {
        crate::store::open_store(crate::store::sqlite::MEMORY_URL)
            .await
            .unwrap()
    }

    async fn works(store: &dyn Store, cfg: &Config, secret: &str) -> Option<String> {
        authenticate(
            secret,
            &enabled_idps(cfg),
            &store.scim_secret_hashes().await.unwrap(),
        )
    }

    #[tokio::test]
    async fn config_secret_seeds_the_store_once() {
        let s = store().await;
        let cfg = config(&idp(
            "a",
            "    scim_config: { enabled: true, secret: first-secret-0123456789 }\n",
        ));
        assert_eq!(
            seed(s.as_ref(), &cfg).await.unwrap(),
            vec![("a".to_string(), Seeded::FromConfig)]
        );
        assert_eq!(
            works(s.as_ref(), &cfg, "first-secret-0123456789")
                .await
                .as_deref(),
            Some("a")
        );
        assert_eq!(
            seed(s.as_ref(), &cfg).await.unwrap(),
            vec![("a".to_string(), Seeded::Kept)]
        );
    }

    #[tokio::test]
    async fn stored_secret_wins_over_a_changed_config() {
        let s = store().await;
        let cfg = config(&idp(
            "a",
            "    scim_config: { enabled: true, secret: first-secret-0123456789 }\n",
        ));
        seed(s.as_ref(), &cfg).await.unwrap();
        let changed = config(&idp(
            "a",
            "    scim_config: { enabled: true, secret: other-secret-0123456789 }\n",
        ));
        assert_eq!(
            seed(s.as_ref(), &changed).await.unwrap(),
            vec![("a".to_string(), Seeded::ConfigIgnored)]
        );
        assert_eq!(
            works(s.as_ref(), &changed, "other-secret-0123456789").await,
            None
        );
        assert!(works(s.as_ref(), &changed, "first-secret-0123456789")
            .await
            .is_some());
    }

    #[tokio::test]
    async fn without_config_a_secret_is_generated_once() {
        let s = store().await;
        let cfg = config(&idp("a", "    scim_config: { enabled: true }\n"));
        let seeded = seed(s.as_ref(), &cfg).await.unwrap();
        let [(name, Seeded::Generated(secret))] = seeded.as_slice() else {
            panic!("{seeded:?}")
        };
        assert_eq!(name, "a");
        assert_eq!(works(s.as_ref(), &cfg, secret).await.as_deref(), Some("a"));
        assert_eq!(
            seed(s.as_ref(), &cfg).await.unwrap(),
            vec![("a".to_string(), Seeded::Kept)],
            "printed only once"
        );
    }

    #[tokio::test]
    async fn rotation_replaces_each_enabled_idps_secret() {
        let s = store().await;
        let cfg = config(&format!(
            "{}{}{}",
            idp(
                "a",
                "    scim_config: { enabled: true, secret: first-secret-0123456789 }\n"
            ),
            idp(
                "b",
                "    scim_config: { enabled: true, secret: second-secret-012345678 }\n"
            ),
            idp("c", "    scim_config: { enabled: false }\n"),
        ));
        seed(s.as_ref(), &cfg).await.unwrap();
        let rotated = rotate(s.as_ref(), &cfg).await.unwrap();
        assert_eq!(
            rotated.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(
            works(s.as_ref(), &cfg, "first-secret-0123456789").await,
            None
        );
        assert_eq!(
            works(s.as_ref(), &cfg, &rotated[1].1).await.as_deref(),
            Some("b")
        );
        let none = config(&idp("a", ""));
        assert!(rotate(s.as_ref(), &none)
            .await
            .unwrap_err()
            .to_string()
            .contains("scim_config.enabled"));
    }

    #[test]
    fn generated_secrets_are_long_and_distinct() {
        let (a, b) = (generate(), generate());
        assert!(a.len() >= 43 && a != b);
    }
}
