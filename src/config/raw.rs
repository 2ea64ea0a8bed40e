//! Raw serde schema of the config file (`deny_unknown_fields`).
//!
//! Every key is optional here, even the required ones, so that the validate
//! pass (`config::validate`) can report all missing keys at once. Values that
//! need checking are `Spanned` so their errors carry a line and column.
//! `${VAR}` expansion happens in the validate pass, on string values only.
//! Each secret key has a `…_file` twin naming a file that holds the value
//! (`config::validate::secret`).

use serde::Deserialize;
use serde_saphyr::Spanned;

/// Type alias for a located string.
pub type Str = Spanned<String>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub listen: Option<Spanned<Vec<Spanned<RawListener>>>>,
    #[serde(default)]
    pub auth_domain: Option<Str>,
    #[serde(default)]
    pub threads: Option<Spanned<u64>>,
    #[serde(default)]
    pub metrics: Option<Spanned<RawMetrics>>,
    #[serde(default)]
    pub store: Option<Spanned<RawStore>>,
    #[serde(default)]
    pub key_dir: Option<Str>,
    #[serde(default)]
    pub session: Option<RawSession>,
    #[serde(default)]
    pub identity_providers: Option<Vec<Spanned<RawIdp>>>,
    #[serde(default)]
    pub policies: Option<Str>,
    #[serde(default)]
    pub endpoint_prefix: Option<Str>,
    #[serde(default)]
    pub scim_path: Option<Str>,
    #[serde(default)]
    pub headers: Option<Spanned<RawHeaders>>,
    #[serde(default)]
    pub cache: Option<RawCache>,
    #[serde(default)]
    pub grace_period_seconds: Option<Spanned<u64>>,
    #[serde(default)]
    pub upstream_health: Option<RawUpstreamHealth>,
    #[serde(default)]
    pub public: Option<Spanned<RawPublic>>,
    #[serde(default)]
    pub trusted_proxies: Option<Spanned<Vec<Str>>>,
    pub upgrade_sock: Option<Str>,
    #[serde(default)]
    pub access_log: Option<Spanned<RawAccessLog>>,
}

/// `access_log`: `{ path, format }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAccessLog {
    #[serde(default)]
    pub path: Option<Str>,
    #[serde(default)]
    pub format: Option<Str>,
}

/// `store`: a URL (`sqlite://…`, `postgres://…`), or a map with `url` and
/// the fleet-mode settings.
///
/// Not `#[serde(untagged)]`: serde buffers untagged input, which loses the
/// `Spanned` locations inside the map and turns an unknown key into "data
/// did not match any variant". This visitor hands a map straight to
/// [`RawStoreMap`], so its keys keep their line, column and near-miss hint.
#[derive(Debug)]
pub enum RawStore {
    Url(String),
    Map(Box<RawStoreMap>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStoreMap {
    #[serde(default)]
    pub url: Option<Str>,
    /// A file holding the URL (it may hold a password), instead of `url`.
    #[serde(default)]
    pub url_file: Option<Str>,
    #[serde(default)]
    pub pool_size: Option<Spanned<u64>>,
    #[serde(default)]
    pub outage_grace: Option<Str>,
}

impl<'de> Deserialize<'de> for RawStore {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RawStore;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(
                    "a store URL or a map with `url` (or `url_file`), `pool_size`, `outage_grace`",
                )
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<RawStore, E> {
                Ok(RawStore::Url(v.to_string()))
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<RawStore, A::Error> {
                RawStoreMap::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(|m| RawStore::Map(Box::new(m)))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// `public`: the scheme and port browsers see when a load balancer sits in
/// front of the proxy.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPublic {
    #[serde(default)]
    pub scheme: Option<Str>,
    #[serde(default)]
    pub port: Option<Spanned<u64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstreamHealth {
    #[serde(default)]
    pub interval: Option<Str>,
    #[serde(default)]
    pub timeout: Option<Str>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    #[serde(default)]
    pub addr: Option<Str>,
    #[serde(default)]
    pub tls: Option<Spanned<RawTls>>,
    #[serde(default)]
    pub proxy_protocol: Option<Spanned<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    #[serde(default)]
    pub cert: Option<Str>,
    #[serde(default)]
    pub key: Option<Str>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    #[serde(default)]
    pub listen: Option<Str>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSession {
    #[serde(default)]
    pub cookie_name: Option<Str>,
    #[serde(default)]
    pub duration: Option<Str>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHeaders {
    #[serde(default)]
    pub assertion: Option<Str>,
    #[serde(default)]
    pub email: Option<Str>,
    /// Absent: default name. `false` or `null`: off. A string: that name.
    #[serde(default, deserialize_with = "present")]
    pub groups: Option<Spanned<RawSwitchName>>,
    #[serde(default)]
    pub forward_claims: Option<bool>,
}

/// A header name, or `true` (default name), or `false` / `null` (off).
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawSwitchName {
    Name(String),
    Flag(bool),
    Null(()),
}

/// Deserialize a present key (even `null`) as `Some`, so `null` and absent differ.
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCache {
    #[serde(default)]
    pub max_entries: Option<Spanned<u64>>,
    #[serde(default)]
    pub ttl: Option<Str>,
}

/// One `identity_providers` entry in Cloudflare's API shape.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIdp {
    #[serde(default)]
    pub name: Option<Str>,
    #[serde(default, rename = "type")]
    pub kind: Option<Spanned<RawIdpKind>>,
    #[serde(default)]
    pub config: Option<Spanned<RawIdpSettings>>,
    #[serde(default)]
    pub scim_config: Option<Spanned<RawScim>>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawIdpKind {
    Okta,
    Oidc,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIdpSettings {
    #[serde(default)]
    pub client_id: Option<Str>,
    #[serde(default)]
    pub client_secret: Option<Str>,
    /// A file holding the client secret, instead of `client_secret`.
    #[serde(default)]
    pub client_secret_file: Option<Str>,
    #[serde(default)]
    pub okta_account: Option<Str>,
    #[serde(default)]
    pub authorization_server_id: Option<Str>,
    #[serde(default)]
    pub api_token: Option<Str>,
    /// A file holding the Okta API token, instead of `api_token`.
    #[serde(default)]
    pub api_token_file: Option<Str>,
    #[serde(default)]
    pub issuer: Option<Str>,
    #[serde(default)]
    pub claims: Option<Vec<Str>>,
    #[serde(default)]
    pub email_claim_name: Option<Str>,
    #[serde(default)]
    pub pkce_enabled: Option<bool>,
    #[serde(default)]
    pub scopes: Option<Spanned<Vec<Str>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScim {
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub secret: Option<Str>,
    /// A file holding the SCIM secret, instead of `secret`.
    #[serde(default)]
    pub secret_file: Option<Str>,
    #[serde(default)]
    pub user_deprovision: Option<bool>,
    #[serde(default)]
    pub seat_deprovision: Option<bool>,
    #[serde(default)]
    pub group_member_deprovision: Option<bool>,
}
