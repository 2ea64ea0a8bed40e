//! The proxy's JWTs: session tokens (cookie + upstream assertion), one-time
//! transfer tokens, and the login-state token bound to the browser.
//!
//! Every claim set carries `iss`, `aud`, `iat`, `nbf`, `exp` and the custom
//! `type` claim (`typ` in Rust, a [`TokenKind`]), which
//! [`KeyRing::verify`](super::keys::KeyRing::verify) checks so that one kind
//! of token is never accepted as another. Signing and verification, one
//! `mint_*` / `verify_*` pair per kind, live in [`keys`](super::keys).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::rngs::OsRng;
use rand::RngCore;
use serde::{Deserialize, Deserializer, Serialize};
use sha2::{Digest, Sha256};

/// Which of the proxy's own tokens a JWT is: its `type` claim. The names on
/// the wire are the lower-case variant names, as tokens minted before this
/// enum carry them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenKind {
    /// An app session token (the app cookie, `cf-access-token`) and the
    /// assertion forwarded upstream, for a user or a service token.
    App,
    /// The auth-domain session token (the SSO cookie).
    Sso,
    /// The login-state token between `/login` and `/callback`.
    Login,
    /// The one-time transfer token from the auth domain to an app host.
    Transfer,
}

impl TokenKind {
    /// The `type` claim's value.
    pub const fn as_str(self) -> &'static str {
        match self {
            TokenKind::App => "app",
            TokenKind::Sso => "sso",
            TokenKind::Login => "login",
            TokenKind::Transfer => "transfer",
        }
    }
}

impl std::fmt::Display for TokenKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
/// `aud` of the login-state token.
pub const LOGIN_STATE_AUD: &str = "login-state";
/// Lifetime of a transfer token, in seconds.
pub const TRANSFER_TTL_SECS: i64 = 60;
/// Lifetime of a login-state token, in seconds.
pub const LOGIN_STATE_TTL_SECS: i64 = 600;

/// A session token: the app cookie, and the assertion forwarded upstream.
/// Groups and custom claims stay in the server-side session record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionClaims {
    /// The auth domain URL (`scheme://auth_domain`).
    pub iss: String,
    /// The app audience tag; serialized as a one-element array like
    /// Cloudflare Access, a plain string is accepted when reading.
    #[serde(deserialize_with = "one_or_many")]
    pub aud: Vec<String>,
    pub sub: String,
    pub email: String,
    /// Server-side session id.
    pub sid: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    /// Name of the identity provider the user logged in with.
    pub idp: String,
    #[serde(rename = "type")]
    pub typ: TokenKind,
}

impl SessionClaims {
    /// True when `aud` is one of the token's audiences.
    pub fn aud_matches(&self, aud: &str) -> bool {
        self.aud.iter().any(|a| a == aud)
    }
}

/// The assertion forwarded upstream for a service-token request: no user,
/// `common_name` is the client id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceClaims {
    pub iss: String,
    #[serde(deserialize_with = "one_or_many")]
    pub aud: Vec<String>,
    /// Always empty: there is no user.
    pub sub: String,
    /// The service token's client id.
    pub common_name: String,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    #[serde(rename = "type")]
    pub typ: TokenKind,
}

impl ServiceClaims {
    /// True when `aud` is one of the token's audiences.
    pub fn aud_matches(&self, aud: &str) -> bool {
        self.aud.iter().any(|a| a == aud)
    }
}

/// One-time token carrying a session from the auth domain to an app host
/// (`/cdn-cgi/access/authorized?token=`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferClaims {
    pub iss: String,
    /// The app origin, e.g. `http://app.localhost:8080`.
    pub aud: String,
    pub sid: String,
    /// Random id, burned in the store on first use.
    pub jti: String,
    /// Hex SHA-256 of the login-nonce cookie set on the app host.
    pub csrf: String,
    pub redirect_url: String,
    pub iat: i64,
    pub nbf: i64,
    /// `iat` + [`TRANSFER_TTL_SECS`].
    pub exp: i64,
    #[serde(rename = "type")]
    pub typ: TokenKind,
}

/// Login state bound to the browser by a short-lived cookie on the auth
/// domain between `/login` and `/callback`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoginState {
    pub iss: String,
    /// Always [`LOGIN_STATE_AUD`].
    pub aud: String,
    /// OAuth `state`.
    pub state: String,
    /// OIDC `nonce`, checked against the ID token.
    pub nonce: String,
    /// PKCE code verifier, when PKCE is enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pkce_verifier: Option<String>,
    pub redirect_url: String,
    /// Name of the identity provider.
    pub idp: String,
    /// Hex SHA-256 of the login-nonce cookie.
    pub csrf: String,
    pub iat: i64,
    pub nbf: i64,
    /// `iat` + [`LOGIN_STATE_TTL_SECS`].
    pub exp: i64,
    #[serde(rename = "type")]
    pub typ: TokenKind,
}

/// The registered claims [`KeyRing::verify`](super::keys::KeyRing::verify)
/// checks, for each kind of token it verifies.
macro_rules! registered {
    ($($t:ty),*) => {$(
        impl super::keys::Registered for $t {
            fn iat(&self) -> i64 {
                self.iat
            }
            fn nbf(&self) -> i64 {
                self.nbf
            }
            fn exp(&self) -> i64 {
                self.exp
            }
            fn typ(&self) -> TokenKind {
                self.typ
            }
        }
    )*};
}
registered!(SessionClaims, ServiceClaims, TransferClaims, LoginState);

/// Unix seconds from the kernel's coarse clock (`CLOCK_REALTIME_COARSE`):
/// a quarter of the cost of [`now_unix`] on the cached path, and behind the
/// precise clock by at most one scheduler tick (well under a second). Falls
/// back to [`now_unix`] where the coarse clock is unavailable. Callers that
/// must never act past a deadline compare against this value plus one
/// second (see `SessionCache`).
pub fn now_unix_coarse() -> i64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_REALTIME_COARSE) {
        Ok(t) => t.tv_sec(),
        Err(_) => now_unix(),
    }
}

/// Current time in unix seconds.
pub fn now_unix() -> i64 {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        // A clock before 1970 makes every token look expired: fail closed.
        Err(_) => 0,
    }
}

/// `bytes` random bytes from the OS, base64url without padding.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    OsRng.fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(&buf)
}

/// Lowercase hex SHA-256 of `s`.
pub fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// `aud` as a JSON string or an array of strings.
fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => Ok(vec![s]),
        OneOrMany::Many(v) if !v.is_empty() => Ok(v),
        OneOrMany::Many(_) => Err(serde::de::Error::custom("aud is an empty array")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> SessionClaims {
        SessionClaims {
            iss: "http://auth.localhost:8080".into(),
            aud: vec!["a".repeat(64)],
            sub: "00u1".into(),
            email: "alice@example.com".into(),
            sid: "sid1".into(),
            iat: 1,
            nbf: 1,
            exp: 2,
            idp: "okta".into(),
            typ: TokenKind::App,
        }
    }

    #[test]
    fn session_aud_serializes_as_array() {
        let v = serde_json::to_value(session()).unwrap();
        assert_eq!(v["aud"], serde_json::json!(["a".repeat(64)]));
        assert_eq!(v["type"], "app");
    }

    #[test]
    fn token_kinds_keep_their_wire_names() {
        for (kind, wire) in [
            (TokenKind::App, "app"),
            (TokenKind::Sso, "sso"),
            (TokenKind::Login, "login"),
            (TokenKind::Transfer, "transfer"),
        ] {
            assert_eq!(kind.as_str(), wire);
            assert_eq!(serde_json::to_value(kind).unwrap(), wire);
            assert_eq!(
                serde_json::from_value::<TokenKind>(wire.into()).unwrap(),
                kind
            );
        }
        assert!(serde_json::from_value::<TokenKind>("App".into()).is_err());
    }

    #[test]
    fn session_aud_accepts_a_string() {
        let mut v = serde_json::to_value(session()).unwrap();
        v["aud"] = serde_json::json!("x");
        let c: SessionClaims = serde_json::from_value(v).unwrap();
        assert_eq!(c.aud, vec!["x".to_string()]);
        assert!(c.aud_matches("x"));
        assert!(!c.aud_matches("y"));
    }

    #[test]
    fn session_aud_refuses_empty_array_and_numbers() {
        for bad in [serde_json::json!([]), serde_json::json!(5)] {
            let mut v = serde_json::to_value(session()).unwrap();
            v["aud"] = bad;
            assert!(serde_json::from_value::<SessionClaims>(v).is_err());
        }
    }

    #[test]
    fn random_token_is_base64url_of_the_requested_length() {
        let t = random_token(24);
        assert_eq!(t.len(), 32);
        assert!(t
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_ne!(t, random_token(24));
    }

    #[test]
    fn sha256_hex_matches_known_vector() {
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn login_state_omits_absent_pkce_verifier() {
        let s = LoginState {
            iss: "i".into(),
            aud: LOGIN_STATE_AUD.into(),
            state: "s".into(),
            nonce: "n".into(),
            pkce_verifier: None,
            redirect_url: "http://app.localhost/".into(),
            idp: "okta".into(),
            csrf: "c".into(),
            iat: 1,
            nbf: 1,
            exp: 1 + LOGIN_STATE_TTL_SECS,
            typ: TokenKind::Login,
        };
        let v = serde_json::to_value(&s).unwrap();
        assert!(v.get("pkce_verifier").is_none());
        let back: LoginState = serde_json::from_value(v).unwrap();
        assert_eq!(back, s);
    }
}
