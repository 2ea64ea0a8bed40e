//! ES256 signing keys: generated into `key_dir` on first start, loaded on
//! later starts (so sessions survive restarts), served as JWKS.
//!
//! Every `*.pem` file in the folder (PKCS#8, P-256) is a live verification
//! key, so keys can be rotated by adding a new file and removing the old one
//! once its tokens have expired. The newest file (modification time, then
//! name) signs. A key's `kid` is the base64url of the first 16 bytes of the
//! SHA-256 of its uncompressed SEC1 public key.
//!
//! Verification pins the algorithm to ES256, requires a known `kid`, never
//! takes key material from the token (`jku`, `x5u`, `jwk`, `x5c` are
//! ignored), and checks every registered claim for presence and type.
//!
//! The proxy mints and verifies its tokens through one `mint_*` /
//! `verify_*` pair per [`TokenKind`]; the generic [`KeyRing::sign`] and
//! [`KeyRing::verify`] with a hand-built [`Expect`] are for tests and
//! benchmarks.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use p256::ecdsa::SigningKey;
use p256::elliptic_curve::Generate as _;
use p256::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _, LineEnding};
use rand::rngs::OsRng;
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::token::{
    now_unix, LoginState, ServiceClaims, SessionClaims, TokenKind, TransferClaims, LOGIN_STATE_AUD,
};

/// Clock skew tolerated on `nbf` and `iat` (tokens minted by another
/// instance). `exp` is checked without leeway.
pub const LEEWAY_SECS: u64 = 30;

/// Longest token we attempt to verify; session tokens are well under 1 KiB.
pub const MAX_TOKEN_LEN: usize = 8192;

/// Key loading or generation failures; start-up stops on any of them.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key dir {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("key file {path}: not a PKCS#8 PEM P-256 private key: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("key encoding failed: {0}")]
    Encode(String),
}

/// Why a token was refused. The proxy treats every variant as "no session".
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token expired")]
    Expired,
    #[error("invalid token: {0}")]
    Invalid(Rejection),
    #[error("token signing failed: {0}")]
    Sign(String),
}

/// The reason behind [`TokenError::Invalid`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("malformed token")]
    Malformed,
    #[error("algorithm is not ES256")]
    Algorithm,
    #[error("header has no kid")]
    MissingKid,
    #[error("unknown kid")]
    UnknownKid,
    #[error("bad signature")]
    Signature,
    #[error("wrong issuer")]
    Issuer,
    #[error("wrong audience")]
    Audience,
    #[error("wrong token type")]
    Type,
    #[error("not yet valid")]
    NotYetValid,
    #[error("claim {0} missing or of the wrong type")]
    Claim(String),
    #[error("claims do not match the expected shape: {0}")]
    Shape(String),
}

/// What a token must be to pass [`KeyRing::verify`].
#[derive(Debug, Clone, Copy)]
pub struct Expect<'a> {
    /// Exact `iss`.
    pub iss: &'a str,
    /// Required member of `aud` (string or array). `None`: `aud` must be
    /// present, and the caller matches its value (the session cache verifies
    /// a token once for every app and checks `aud` on each use).
    pub aud: Option<&'a str>,
    /// Exact custom `type` claim.
    pub typ: TokenKind,
}

impl<'a> Expect<'a> {
    /// What a token of kind `typ` from `iss` for `aud` must be.
    pub const fn new(iss: &'a str, aud: Option<&'a str>, typ: TokenKind) -> Expect<'a> {
        Expect { iss, aud, typ }
    }
}

/// A verified token's claims, or why it was refused.
pub type Verified<T> = Result<T, TokenError>;

/// One live key.
struct Key {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    /// Base64url affine coordinates, for the JWKS.
    x: String,
    y: String,
}

impl Key {
    fn new(sk: &SigningKey) -> Result<Key, KeyError> {
        let point = sk.verifying_key().to_sec1_point(false);
        let sec1 = point.as_bytes();
        // Uncompressed SEC1: 0x04 || x (32) || y (32).
        if sec1.len() != 65 {
            return Err(KeyError::Encode(
                "public key is not an uncompressed P-256 point".into(),
            ));
        }
        let digest = Sha256::digest(sec1);
        let der = sk
            .to_pkcs8_der()
            .map_err(|e| KeyError::Encode(e.to_string()))?;
        Ok(Key {
            kid: URL_SAFE_NO_PAD.encode(&digest[..16]),
            encoding: EncodingKey::from_ec_der(der.as_bytes()),
            decoding: DecodingKey::from_ec_der(sec1),
            x: URL_SAFE_NO_PAD.encode(&sec1[1..33]),
            y: URL_SAFE_NO_PAD.encode(&sec1[33..65]),
        })
    }
}

/// The live signing keys, the one that signs, and the precomputed JWKS.
pub struct KeyRing {
    /// Non-empty, oldest first.
    keys: Vec<Key>,
    /// Index of the key that signs: the newest, or in fleet mode the
    /// newest whose `signs_from` has come.
    signer: usize,
    /// Fleet mode: the earliest `signs_from` still to come (unix seconds),
    /// when the ring must be rebuilt to sign with that key.
    next_signer_at: Option<i64>,
    jwks: String,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRing")
            .field(
                "kids",
                &self.keys.iter().map(|k| k.kid.as_str()).collect::<Vec<_>>(),
            )
            .field("signing_kid", &self.signing_kid())
            .finish()
    }
}

impl KeyRing {
    /// Load every `*.pem` key of `dir`, or generate the first one there.
    ///
    /// The folder is created with mode 0700 and a new key file with 0600
    /// (written to a temporary name, synced, then renamed, so a crash never
    /// leaves half a key behind).
    pub fn load_or_generate(dir: &Path) -> Result<KeyRing, KeyError> {
        super::crypto::install();
        let io = |source| KeyError::Io {
            path: dir.to_path_buf(),
            source,
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io)?;
        let meta = fs::metadata(dir).map_err(io)?;
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(key_dir = %dir.display(), "Key dir is accessible by other users; use mode 0700");
        }

        let mut files = pem_files(dir)?;
        if files.is_empty() {
            let path = write_new_key(dir)?;
            tracing::info!(key_file = %path.display(), "Generated a new session signing key");
            files = pem_files(dir)?;
        }
        // Oldest first, so the newest ends last and signs.
        files.sort();
        let mut keys = Vec::with_capacity(files.len());
        for (_, path) in &files {
            let pem = fs::read_to_string(path).map_err(|source| KeyError::Io {
                path: path.clone(),
                source,
            })?;
            let sk = SigningKey::from_pkcs8_pem(&pem).map_err(|e| KeyError::Parse {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            if let Ok(m) = fs::metadata(path) {
                if m.permissions().mode() & 0o077 != 0 {
                    tracing::warn!(key_file = %path.display(), "Key file is readable by other users; use mode 0600");
                }
            }
            keys.push(Key::new(&sk)?);
        }
        // Two files holding the same key would only duplicate JWKS entries.
        let mut seen = std::collections::HashSet::new();
        let mut unique: Vec<Key> = Vec::with_capacity(keys.len());
        for k in keys.into_iter().rev() {
            if seen.insert(k.kid.clone()) {
                unique.push(k);
            }
        }
        unique.reverse();
        Ok(KeyRing::from_keys(unique))
    }

    /// A ring with one fresh in-memory key (tests, benches, `demo`).
    pub fn generate_ephemeral() -> KeyRing {
        super::crypto::install();
        // Only a broken OS random source fails either step.
        let sk = new_signing_key().expect("the OS random source works");
        let key = Key::new(&sk).expect("a fresh P-256 key encodes");
        KeyRing::from_keys(vec![key])
    }

    /// The ring of a fleet's stored keys at `now`: every key is published
    /// and verifies; the newest key whose `signs_from` has come signs (a
    /// rotated key is stored ahead of its time, so every instance publishes
    /// it before any signs with it). Keys must not be empty.
    pub fn from_stored(stored: &[crate::store::StoredKey], now: i64) -> Result<KeyRing, KeyError> {
        super::crypto::install();
        let mut sorted: Vec<&crate::store::StoredKey> = stored.iter().collect();
        sorted.sort_by_key(|k| (k.signs_from, k.created_at));
        let mut keys = Vec::with_capacity(sorted.len());
        let mut signer = None;
        let mut next_signer_at = None;
        for k in sorted {
            // One bad row must not take every instance's keys down: it is
            // skipped (and logged); only a store without a usable key fails.
            let sk = match SigningKey::from_pkcs8_pem(&k.pkcs8_pem) {
                Ok(sk) => sk,
                Err(e) => {
                    tracing::error!(kid = %k.kid, error = %e, "Stored signing key is not a PKCS#8 P-256 key; skipped");
                    continue;
                }
            };
            keys.push(Key::new(&sk)?);
            if k.signs_from <= now {
                signer = Some(keys.len() - 1);
            } else if next_signer_at.is_none() {
                next_signer_at = Some(k.signs_from);
            }
        }
        if keys.is_empty() {
            return Err(KeyError::Encode(
                "the store holds no usable signing key".into(),
            ));
        }
        // Only keys still to come: the oldest signs until its time.
        let mut ring = KeyRing::from_keys(keys);
        ring.signer = signer.unwrap_or(0);
        ring.next_signer_at = next_signer_at;
        Ok(ring)
    }

    /// A new key as a fleet stores it, signing from `signs_from`.
    pub fn new_stored_key(signs_from: i64) -> Result<crate::store::StoredKey, KeyError> {
        super::crypto::install();
        let sk = new_signing_key()?;
        let pem = sk
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| KeyError::Encode(e.to_string()))?;
        Ok(crate::store::StoredKey {
            kid: Key::new(&sk)?.kid,
            pkcs8_pem: pem.to_string(),
            created_at: now_unix(),
            signs_from,
        })
    }

    /// Fleet mode: when the ring must be rebuilt to sign with a newer key.
    pub fn next_signer_at(&self) -> Option<i64> {
        self.next_signer_at
    }

    fn from_keys(keys: Vec<Key>) -> KeyRing {
        let jwks = serde_json::json!({
            "keys": keys.iter().rev().map(|k| serde_json::json!({
                "kty": "EC",
                "crv": "P-256",
                "x": k.x,
                "y": k.y,
                "kid": k.kid,
                "alg": "ES256",
                "use": "sig",
            })).collect::<Vec<_>>()
        })
        .to_string();
        KeyRing {
            signer: keys.len().saturating_sub(1),
            next_signer_at: None,
            keys,
            jwks,
        }
    }

    /// The JWKS of every live key (signing key first), served at `/certs`.
    pub fn jwks_json(&self) -> &str {
        &self.jwks
    }

    /// `kid` of the key that signs.
    pub fn signing_kid(&self) -> &str {
        self.keys
            .get(self.signer)
            .map(|k| k.kid.as_str())
            .unwrap_or_default()
    }

    /// `kid`s of every live key, oldest first.
    pub fn kids(&self) -> impl Iterator<Item = &str> + '_ {
        self.keys.iter().map(|k| k.kid.as_str())
    }

    /// Sign `claims` with the signing key (ES256, `kid` in the header).
    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String, TokenError> {
        let key = self
            .keys
            .get(self.signer)
            .ok_or_else(|| TokenError::Sign("no signing key".into()))?;
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&header, claims, &key.encoding)
            .map_err(|e| TokenError::Sign(e.to_string()))
    }

    /// Verify `token` and decode its claims. See the module doc for what is
    /// checked; any failure is an error, never a partial result.
    ///
    /// The claims are decoded once, straight into `T` (whose integer times
    /// refuse floats and strings). Only a validly signed token that does
    /// not fit `T` takes the slower [`classify`](Self::classify) path, to
    /// name the claim at fault; that path never accepts.
    pub fn verify<T: DeserializeOwned + Registered>(
        &self,
        token: &str,
        expect: &Expect<'_>,
    ) -> Result<T, TokenError> {
        let (key, v) = self.prepare(token, expect)?;
        let claims = match jsonwebtoken::decode::<T>(token, &key.decoding, &v) {
            Ok(data) => data.claims,
            Err(e) if matches!(e.kind(), ErrorKind::Json(_)) => {
                let why = e.to_string();
                return Err(match Self::classify(token, expect) {
                    Err(e) => e,
                    Ok(()) => TokenError::Invalid(Rejection::Shape(why)),
                });
            }
            Err(e) => return Err(map_jwt_error(e)),
        };
        check_times(claims.iat(), claims.nbf(), claims.exp())?;
        if claims.typ() != expect.typ {
            return Err(TokenError::Invalid(Rejection::Type));
        }
        Ok(claims)
    }

    /// Sign `claims` as a token of `kind`; claims of another kind are
    /// refused (never signed).
    fn mint<T: Serialize + Registered>(
        &self,
        kind: TokenKind,
        claims: &T,
    ) -> Result<String, TokenError> {
        if claims.typ() != kind {
            return Err(TokenError::Sign(format!(
                "claims of type {} minted as {kind}",
                claims.typ()
            )));
        }
        self.sign(claims)
    }

    /// An app session token (the app cookie).
    pub fn mint_app(&self, claims: &SessionClaims) -> Result<String, TokenError> {
        self.mint(TokenKind::App, claims)
    }

    /// The assertion forwarded upstream for a service token (kind `app`).
    pub fn mint_service(&self, claims: &ServiceClaims) -> Result<String, TokenError> {
        self.mint(TokenKind::App, claims)
    }

    /// The auth-domain session token (the SSO cookie).
    pub fn mint_sso(&self, claims: &SessionClaims) -> Result<String, TokenError> {
        self.mint(TokenKind::Sso, claims)
    }

    /// The login-state token.
    pub fn mint_login(&self, claims: &LoginState) -> Result<String, TokenError> {
        self.mint(TokenKind::Login, claims)
    }

    /// A one-time transfer token.
    pub fn mint_transfer(&self, claims: &TransferClaims) -> Result<String, TokenError> {
        self.mint(TokenKind::Transfer, claims)
    }

    /// An app session token issued by `iss`, for `aud` (`None`: any
    /// audience, which the caller then matches; see [`Expect::aud`]).
    pub fn verify_app(&self, token: &str, iss: &str, aud: Option<&str>) -> Verified<SessionClaims> {
        self.verify(token, &Expect::new(iss, aud, TokenKind::App))
    }

    /// An auth-domain session token issued by `iss` for the SSO audience
    /// `aud`.
    pub fn verify_sso(&self, token: &str, iss: &str, aud: &str) -> Verified<SessionClaims> {
        self.verify(token, &Expect::new(iss, Some(aud), TokenKind::Sso))
    }

    /// A login-state token issued by `iss` (its audience is always
    /// [`LOGIN_STATE_AUD`]).
    pub fn verify_login(&self, token: &str, iss: &str) -> Verified<LoginState> {
        let aud = Some(LOGIN_STATE_AUD);
        self.verify(token, &Expect::new(iss, aud, TokenKind::Login))
    }

    /// A transfer token issued by `iss` for the app origin `aud`.
    pub fn verify_transfer(&self, token: &str, iss: &str, aud: &str) -> Verified<TransferClaims> {
        self.verify(token, &Expect::new(iss, Some(aud), TokenKind::Transfer))
    }

    /// The key named by `token`'s header and the validation for `expect`.
    fn prepare(&self, token: &str, expect: &Expect<'_>) -> Result<(&Key, Validation), TokenError> {
        let invalid = |r| Err(TokenError::Invalid(r));
        if token.len() > MAX_TOKEN_LEN {
            return invalid(Rejection::Malformed);
        }
        let header = jsonwebtoken::decode_header(token).map_err(map_jwt_error)?;
        if header.alg != Algorithm::ES256 {
            return invalid(Rejection::Algorithm);
        }
        let Some(kid) = header.kid.as_deref() else {
            return invalid(Rejection::MissingKid);
        };
        let Some(key) = self.keys.iter().find(|k| k.kid == kid) else {
            return invalid(Rejection::UnknownKid);
        };

        let mut v = Validation::new(Algorithm::ES256);
        v.leeway = LEEWAY_SECS;
        v.validate_exp = true;
        v.validate_nbf = true;
        v.validate_aud = expect.aud.is_some();
        v.set_required_spec_claims(&["iss", "aud", "exp", "nbf"]);
        v.set_issuer(&[expect.iss]);
        if let Some(aud) = expect.aud {
            v.set_audience(&[aud]);
        }
        Ok((key, v))
    }

    /// Why a validly signed `token` does not decode as the expected claims:
    /// its registered claims checked one by one on a generic JSON object.
    /// `Ok` when they all pass (the fault is elsewhere in the shape).
    ///
    /// Only reached after [`verify`](Self::verify) checked the signature
    /// (jsonwebtoken decodes the claims only then), so the payload is read
    /// here without checking it again: a refusal costs one ECDSA
    /// verification, as any other.
    fn classify(token: &str, expect: &Expect<'_>) -> Result<(), TokenError> {
        let invalid = |r| Err(TokenError::Invalid(r));
        let claim = |name: &str| TokenError::Invalid(Rejection::Claim(name.to_string()));
        let claims: serde_json::Map<String, serde_json::Value> =
            jsonwebtoken::dangerous::insecure_decode_claims(token).map_err(map_jwt_error)?;
        for name in ["iss", "aud", "exp", "nbf"] {
            if !claims.contains_key(name) {
                return Err(claim(name));
            }
        }
        match claims["iss"].as_str() {
            Some(iss) if iss == expect.iss => {}
            Some(_) => return invalid(Rejection::Issuer),
            None => return Err(claim("iss")),
        }
        let auds: Vec<&str> = match &claims["aud"] {
            serde_json::Value::String(a) => vec![a.as_str()],
            serde_json::Value::Array(all) => all
                .iter()
                .map(|a| a.as_str().ok_or_else(|| claim("aud")))
                .collect::<Result<_, _>>()?,
            _ => return Err(claim("aud")),
        };
        if expect.aud.is_some_and(|aud| !auds.contains(&aud)) {
            return invalid(Rejection::Audience);
        }
        // Registered times must be integers (jsonwebtoken also takes floats).
        let int = |name: &str| {
            claims
                .get(name)
                .and_then(serde_json::Value::as_i64)
                .ok_or_else(|| claim(name))
        };
        check_times(int("iat")?, int("nbf")?, int("exp")?)?;
        match claims.get("type") {
            Some(serde_json::Value::String(t)) if t == expect.typ.as_str() => Ok(()),
            Some(serde_json::Value::String(_)) => invalid(Rejection::Type),
            _ => Err(claim("type")),
        }
    }
}

/// The key ring a running proxy uses, replaceable while it runs (fleet
/// mode reloads it when a key is added or removed, or when a rotated key's
/// time to sign comes). Each call works on one ring.
pub struct LiveKeys(arc_swap::ArcSwap<KeyRing>);

impl std::fmt::Debug for LiveKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.load().fmt(f)
    }
}

impl LiveKeys {
    pub fn new(ring: KeyRing) -> LiveKeys {
        LiveKeys(arc_swap::ArcSwap::from_pointee(ring))
    }

    /// The current ring.
    pub fn ring(&self) -> std::sync::Arc<KeyRing> {
        self.0.load_full()
    }

    /// The current ring, for one call (`keys.current().mint_app(…)`);
    /// cheaper than [`ring`](Self::ring), not to be held across an
    /// `.await`.
    pub fn current(&self) -> arc_swap::Guard<std::sync::Arc<KeyRing>> {
        self.0.load()
    }

    /// Replace the ring.
    pub fn replace(&self, ring: KeyRing) {
        self.0.store(std::sync::Arc::new(ring));
    }

    /// [`KeyRing::sign`] with the current ring.
    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String, TokenError> {
        self.0.load().sign(claims)
    }

    /// [`KeyRing::verify`] with the current ring.
    pub fn verify<T: DeserializeOwned + Registered>(
        &self,
        token: &str,
        expect: &Expect<'_>,
    ) -> Result<T, TokenError> {
        self.0.load().verify(token, expect)
    }

    /// [`KeyRing::jwks_json`] of the current ring.
    pub fn jwks_json(&self) -> String {
        self.0.load().jwks_json().to_string()
    }
}

/// The registered claims every proxy-signed token carries, which
/// [`KeyRing::verify`] checks after decoding.
pub trait Registered {
    fn iat(&self) -> i64;
    fn nbf(&self) -> i64;
    fn exp(&self) -> i64;
    /// The `type` claim: which kind of proxy token this is.
    fn typ(&self) -> TokenKind;
}

/// `exp` in the future (no leeway), `iat` and `nbf` not ahead of now by
/// more than the leeway.
fn check_times(iat: i64, nbf: i64, exp: i64) -> Result<(), TokenError> {
    let now = now_unix();
    let leeway = LEEWAY_SECS as i64;
    if exp <= now {
        return Err(TokenError::Expired);
    }
    if iat > now + leeway || nbf > now + leeway {
        return Err(TokenError::Invalid(Rejection::NotYetValid));
    }
    Ok(())
}

fn map_jwt_error(e: jsonwebtoken::errors::Error) -> TokenError {
    let r = match e.into_kind() {
        ErrorKind::ExpiredSignature => return TokenError::Expired,
        ErrorKind::InvalidSignature | ErrorKind::InvalidEcdsaKey => Rejection::Signature,
        ErrorKind::InvalidAlgorithm
        | ErrorKind::MissingAlgorithm
        | ErrorKind::UnsupportedAlgorithm
        | ErrorKind::InvalidAlgorithmName => Rejection::Algorithm,
        ErrorKind::MissingRequiredClaim(c) | ErrorKind::InvalidClaimFormat(c) => {
            Rejection::Claim(c)
        }
        ErrorKind::InvalidIssuer => Rejection::Issuer,
        ErrorKind::InvalidAudience => Rejection::Audience,
        ErrorKind::ImmatureSignature => Rejection::NotYetValid,
        _ => Rejection::Malformed,
    };
    TokenError::Invalid(r)
}

/// `(modified, path)` of every regular `*.pem` file in `dir`.
fn pem_files(dir: &Path) -> Result<Vec<(SystemTime, PathBuf)>, KeyError> {
    let io = |source| KeyError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("pem") {
            continue;
        }
        let meta = fs::metadata(&path).map_err(|source| KeyError::Io {
            path: path.clone(),
            source,
        })?;
        if !meta.is_file() {
            continue;
        }
        out.push((meta.modified().unwrap_or(SystemTime::UNIX_EPOCH), path));
    }
    Ok(out)
}

/// A fresh P-256 key from the OS random source.
fn new_signing_key() -> Result<SigningKey, KeyError> {
    SigningKey::try_generate().map_err(|e| KeyError::Encode(format!("key generation failed: {e}")))
}

/// Generate a key and write it to `dir` as `key-<unix>-<random>.pem`, 0600.
fn write_new_key(dir: &Path) -> Result<PathBuf, KeyError> {
    let sk = new_signing_key()?;
    let pem = sk
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| KeyError::Encode(e.to_string()))?;
    let mut suffix = [0u8; 4];
    rand::RngCore::fill_bytes(&mut OsRng, &mut suffix);
    let name = format!("key-{}-{}.pem", now_unix(), hex::encode(suffix));
    let path = dir.join(&name);
    let tmp = dir.join(format!(".{name}.tmp"));
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| KeyError::Io { path: p, source }
    };
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io(&tmp))?;
    let written = f.write_all(pem.as_bytes()).and_then(|()| f.sync_all());
    drop(f);
    if let Err(source) = written {
        let _ = fs::remove_file(&tmp);
        return Err(KeyError::Io { path: tmp, source });
    }
    fs::rename(&tmp, &path).map_err(io(&path))?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))?;
    Ok(path)
}

#[cfg(test)]
mod tests;
