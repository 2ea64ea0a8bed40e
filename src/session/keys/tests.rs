//! Tests of [`KeyRing`]: persistence, file modes, and every way a token must
//! be refused (the attacks of SECURITY.md rule 8).

use std::os::unix::fs::PermissionsExt as _;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use super::*;
use crate::session::token::{SessionClaims, TokenKind, TransferClaims};

const ISS: &str = "http://auth.localhost:8080";
const AUD_A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const AUD_B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

fn expect_app() -> Expect<'static> {
    Expect {
        iss: ISS,
        aud: Some(AUD_A),
        typ: TokenKind::App,
    }
}

fn session(exp_in: i64) -> SessionClaims {
    let now = now_unix();
    SessionClaims {
        iss: ISS.into(),
        aud: vec![AUD_A.into()],
        sub: "00u1".into(),
        email: "alice@example.com".into(),
        sid: "sid-1".into(),
        iat: now,
        nbf: now,
        exp: now + exp_in,
        idp: "okta".into(),
        typ: TokenKind::App,
    }
}

fn session_json() -> Value {
    serde_json::to_value(session(300)).unwrap()
}

fn rejection(r: Result<SessionClaims, TokenError>) -> Rejection {
    match r {
        Err(TokenError::Invalid(r)) => r,
        other => panic!("expected an invalid-token error, got {other:?}"),
    }
}

/// Replace one part (0 header, 1 payload, 2 signature) of a compact JWT.
fn with_part(token: &str, index: usize, part: &str) -> String {
    let mut parts: Vec<&str> = token.split('.').collect();
    parts[index] = part;
    parts.join(".")
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

#[test]
fn sign_then_verify_round_trips() {
    let ring = KeyRing::generate_ephemeral();
    let claims = session(300);
    let token = ring.sign(&claims).unwrap();
    let back: SessionClaims = ring.verify(&token, &expect_app()).unwrap();
    assert_eq!(back, claims);
}

#[test]
fn header_carries_es256_and_the_signing_kid() {
    let ring = KeyRing::generate_ephemeral();
    let token = ring.sign(&session(300)).unwrap();
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.alg, Algorithm::ES256);
    assert_eq!(header.kid.as_deref(), Some(ring.signing_kid()));
}

#[test]
fn aud_as_plain_string_is_accepted() {
    let ring = KeyRing::generate_ephemeral();
    let mut v = session_json();
    v["aud"] = json!(AUD_A);
    let token = ring.sign(&v).unwrap();
    let back: SessionClaims = ring.verify(&token, &expect_app()).unwrap();
    assert_eq!(back.aud, vec![AUD_A.to_string()]);
}

#[test]
fn expired_token_is_refused_as_expired() {
    let ring = KeyRing::generate_ephemeral();
    let token = ring.sign(&session(-120)).unwrap();
    let r = ring.verify::<SessionClaims>(&token, &expect_app());
    assert!(matches!(r, Err(TokenError::Expired)), "{r:?}");
}

#[test]
fn token_just_past_exp_is_refused_without_leeway() {
    let ring = KeyRing::generate_ephemeral();
    let token = ring.sign(&session(-2)).unwrap();
    let r = ring.verify::<SessionClaims>(&token, &expect_app());
    assert!(matches!(r, Err(TokenError::Expired)), "{r:?}");
}

#[test]
fn token_not_yet_valid_is_refused() {
    let ring = KeyRing::generate_ephemeral();
    let mut v = session_json();
    v["nbf"] = json!(now_unix() + 3600);
    let token = ring.sign(&v).unwrap();
    assert_eq!(
        rejection(ring.verify(&token, &expect_app())),
        Rejection::NotYetValid
    );
}

#[test]
fn tampered_payload_is_refused() {
    let ring = KeyRing::generate_ephemeral();
    let token = ring.sign(&session(300)).unwrap();
    let mut v = session_json();
    v["email"] = json!("mallory@example.com");
    let forged = with_part(&token, 1, &b64(&v));
    assert_eq!(
        rejection(ring.verify(&forged, &expect_app())),
        Rejection::Signature
    );
}

#[test]
fn tampered_signature_is_refused() {
    let ring = KeyRing::generate_ephemeral();
    let token = ring.sign(&session(300)).unwrap();
    let sig = token.rsplit('.').next().unwrap();
    let mut raw = URL_SAFE_NO_PAD.decode(sig).unwrap();
    raw[10] ^= 0x01;
    let forged = with_part(&token, 2, &URL_SAFE_NO_PAD.encode(raw));
    assert_eq!(
        rejection(ring.verify(&forged, &expect_app())),
        Rejection::Signature
    );
}

#[test]
fn alg_none_token_is_refused() {
    let ring = KeyRing::generate_ephemeral();
    let header = json!({"alg": "none", "typ": "JWT", "kid": ring.signing_kid()});
    for sig in ["", "AAAA"] {
        let token = format!("{}.{}.{sig}", b64(&header), b64(&session_json()));
        let r = ring.verify::<SessionClaims>(&token, &expect_app());
        assert!(matches!(r, Err(TokenError::Invalid(_))), "{r:?}");
    }
}

#[test]
fn hs256_token_keyed_with_the_public_key_is_refused() {
    let ring = KeyRing::generate_ephemeral();
    let key = ring.keys.last().unwrap();
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(ring.signing_kid().to_string());
    // Every public form of the key an attacker could use as an HMAC secret.
    let sec1 = key.decoding.try_get_as_bytes().unwrap().to_vec();
    for secret in [
        sec1,
        ring.jwks_json().as_bytes().to_vec(),
        key.x.as_bytes().to_vec(),
    ] {
        let token = jsonwebtoken::encode(
            &header,
            &session(300),
            &EncodingKey::from_secret(&secret).unwrap(),
        )
        .unwrap();
        assert_eq!(
            rejection(ring.verify(&token, &expect_app())),
            Rejection::Algorithm
        );
    }
}

#[test]
fn token_without_kid_is_refused() {
    let ring = KeyRing::generate_ephemeral();
    let key = ring.keys.last().unwrap();
    let token =
        jsonwebtoken::encode(&Header::new(Algorithm::ES256), &session(300), &key.encoding).unwrap();
    assert_eq!(
        rejection(ring.verify(&token, &expect_app())),
        Rejection::MissingKid
    );
}

#[test]
fn token_with_unknown_kid_is_refused() {
    let ring = KeyRing::generate_ephemeral();
    let other = KeyRing::generate_ephemeral();
    let token = other.sign(&session(300)).unwrap();
    assert_eq!(
        rejection(ring.verify(&token, &expect_app())),
        Rejection::UnknownKid
    );
}

#[test]
fn foreign_key_under_our_kid_fails_the_signature() {
    let ring = KeyRing::generate_ephemeral();
    let other = KeyRing::generate_ephemeral();
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(ring.signing_kid().to_string());
    let token = jsonwebtoken::encode(&header, &session(300), &other.keys[0].encoding).unwrap();
    assert_eq!(
        rejection(ring.verify(&token, &expect_app())),
        Rejection::Signature
    );
}

#[test]
fn key_material_in_the_header_is_never_used() {
    let ring = KeyRing::generate_ephemeral();
    let attacker = KeyRing::generate_ephemeral();
    let jwks: Value = serde_json::from_str(attacker.jwks_json()).unwrap();
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwks["keys"][0].clone()).unwrap();
    for kid in [attacker.signing_kid(), ring.signing_kid()] {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(kid.to_string());
        header.jwk = Some(jwk.clone());
        header.jku = Some("https://evil.example/jwks.json".into());
        header.x5u = Some("https://evil.example/cert.pem".into());
        let token =
            jsonwebtoken::encode(&header, &session(300), &attacker.keys[0].encoding).unwrap();
        assert!(ring.verify::<SessionClaims>(&token, &expect_app()).is_err());
    }
}

#[test]
fn app_a_token_is_refused_for_app_b() {
    let ring = KeyRing::generate_ephemeral();
    let token = ring.sign(&session(300)).unwrap();
    let expect_b = Expect {
        iss: ISS,
        aud: Some(AUD_B),
        typ: TokenKind::App,
    };
    assert_eq!(
        rejection(ring.verify(&token, &expect_b)),
        Rejection::Audience
    );
}

#[test]
fn any_audience_mode_accepts_the_token_and_returns_its_aud() {
    let ring = KeyRing::generate_ephemeral();
    let token = ring.sign(&session(300)).unwrap();
    let any = Expect {
        iss: ISS,
        aud: None,
        typ: TokenKind::App,
    };
    let claims: SessionClaims = ring.verify(&token, &any).unwrap();
    assert!(claims.aud_matches(AUD_A));
    assert!(!claims.aud_matches(AUD_B));
}

#[test]
fn any_audience_mode_still_requires_an_aud_claim() {
    let ring = KeyRing::generate_ephemeral();
    let mut v = session_json();
    v.as_object_mut().unwrap().remove("aud");
    let token = ring.sign(&v).unwrap();
    let any = Expect {
        iss: ISS,
        aud: None,
        typ: TokenKind::App,
    };
    assert_eq!(
        rejection(ring.verify(&token, &any)),
        Rejection::Claim("aud".into())
    );
}

#[test]
fn wrong_issuer_is_refused() {
    let ring = KeyRing::generate_ephemeral();
    let token = ring.sign(&session(300)).unwrap();
    let expect = Expect {
        iss: "http://evil.localhost:8080",
        aud: Some(AUD_A),
        typ: TokenKind::App,
    };
    assert_eq!(rejection(ring.verify(&token, &expect)), Rejection::Issuer);
}

#[test]
fn transfer_token_is_refused_as_a_session() {
    let ring = KeyRing::generate_ephemeral();
    let now = now_unix();
    let transfer = TransferClaims {
        iss: ISS.into(),
        aud: AUD_A.into(),
        sid: "sid-1".into(),
        jti: "j".into(),
        csrf: "c".into(),
        redirect_url: "http://app.localhost:8080/".into(),
        iat: now,
        nbf: now,
        exp: now + 60,
        typ: TokenKind::Transfer,
    };
    let token = ring.sign(&transfer).unwrap();
    let r = ring.verify::<SessionClaims>(&token, &expect_app());
    assert_eq!(rejection(r), Rejection::Type);
}

#[test]
fn exp_as_string_is_refused() {
    let ring = KeyRing::generate_ephemeral();
    let mut v = session_json();
    v["exp"] = json!((now_unix() + 300).to_string());
    let token = ring.sign(&v).unwrap();
    assert_eq!(
        rejection(ring.verify(&token, &expect_app())),
        Rejection::Claim("exp".into())
    );
}

#[test]
fn float_times_are_refused() {
    let ring = KeyRing::generate_ephemeral();
    let mut v = session_json();
    v["iat"] = json!(now_unix() as f64 + 0.5);
    let token = ring.sign(&v).unwrap();
    assert_eq!(
        rejection(ring.verify(&token, &expect_app())),
        Rejection::Claim("iat".into())
    );
}

#[test]
fn missing_required_claims_are_refused() {
    let ring = KeyRing::generate_ephemeral();
    for claim in ["iss", "aud", "exp", "iat", "nbf", "type"] {
        let mut v = session_json();
        v.as_object_mut().unwrap().remove(claim);
        let token = ring.sign(&v).unwrap();
        let r = rejection(ring.verify(&token, &expect_app()));
        assert_eq!(r, Rejection::Claim(claim.into()), "without {claim}");
    }
}

#[test]
fn aud_of_the_wrong_type_is_refused() {
    let ring = KeyRing::generate_ephemeral();
    let mut v = session_json();
    v["aud"] = json!(42);
    let token = ring.sign(&v).unwrap();
    assert_eq!(
        rejection(ring.verify(&token, &expect_app())),
        Rejection::Claim("aud".into())
    );
}

#[test]
fn missing_app_claim_is_refused() {
    let ring = KeyRing::generate_ephemeral();
    let mut v = session_json();
    v.as_object_mut().unwrap().remove("sid");
    let token = ring.sign(&v).unwrap();
    assert!(matches!(
        rejection(ring.verify(&token, &expect_app())),
        Rejection::Shape(_)
    ));
}

/// Claims whose JSON names one member twice (a generic JSON object would
/// keep the last; the claims struct refuses the duplicate).
struct Duplicated(Value, &'static str, Value);

impl serde::Serialize for Duplicated {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let obj = self.0.as_object().unwrap();
        let mut m = s.serialize_map(Some(obj.len() + 1))?;
        for (k, v) in obj {
            m.serialize_entry(k, v)?;
        }
        m.serialize_entry(self.1, &self.2)?;
        m.end()
    }
}

#[test]
fn duplicated_claim_is_refused_even_though_each_value_is_valid() {
    let ring = KeyRing::generate_ephemeral();
    let token = ring
        .sign(&Duplicated(session_json(), "sid", json!("sid-2")))
        .unwrap();
    assert!(matches!(
        rejection(ring.verify(&token, &expect_app())),
        Rejection::Shape(_)
    ));
}

#[test]
fn garbage_is_refused_as_malformed() {
    let ring = KeyRing::generate_ephemeral();
    for t in [
        "",
        "abc",
        "a.b.c",
        "a.b.c.d",
        &"x".repeat(MAX_TOKEN_LEN + 1),
    ] {
        assert_eq!(
            rejection(ring.verify(t, &expect_app())),
            Rejection::Malformed,
            "{t:.20}"
        );
    }
}

#[test]
fn jwks_lists_the_key_as_es256() {
    let ring = KeyRing::generate_ephemeral();
    let v: Value = serde_json::from_str(ring.jwks_json()).unwrap();
    let k = &v["keys"][0];
    assert_eq!(v["keys"].as_array().unwrap().len(), 1);
    assert_eq!(k["kty"], "EC");
    assert_eq!(k["crv"], "P-256");
    assert_eq!(k["alg"], "ES256");
    assert_eq!(k["use"], "sig");
    assert_eq!(k["kid"], ring.signing_kid());
    assert_eq!(
        URL_SAFE_NO_PAD
            .decode(k["x"].as_str().unwrap())
            .unwrap()
            .len(),
        32
    );
    assert_eq!(
        URL_SAFE_NO_PAD
            .decode(k["y"].as_str().unwrap())
            .unwrap()
            .len(),
        32
    );
}

#[test]
fn jwks_verifies_a_token_independently() {
    let ring = KeyRing::generate_ephemeral();
    let token = ring.sign(&session(300)).unwrap();
    let v: Value = serde_json::from_str(ring.jwks_json()).unwrap();
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(v["keys"][0].clone()).unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
    let mut validation = jsonwebtoken::Validation::new(Algorithm::ES256);
    validation.set_audience(&[AUD_A]);
    let data = jsonwebtoken::decode::<Value>(&token, &key, &validation).unwrap();
    assert_eq!(data.claims["email"], "alice@example.com");
}

#[test]
fn keys_persist_across_loads() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let first = KeyRing::load_or_generate(&keys).unwrap();
    let token = first.sign(&session(300)).unwrap();
    let second = KeyRing::load_or_generate(&keys).unwrap();
    assert_eq!(first.signing_kid(), second.signing_kid());
    let back: SessionClaims = second.verify(&token, &expect_app()).unwrap();
    assert_eq!(back.sid, "sid-1");
    assert_eq!(pem_files(&keys).unwrap().len(), 1);
}

#[test]
fn key_file_is_0600_and_dir_is_0700() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("nested").join("keys");
    KeyRing::load_or_generate(&keys).unwrap();
    let dir_mode = std::fs::metadata(&keys).unwrap().permissions().mode() & 0o777;
    assert_eq!(dir_mode, 0o700);
    let files = pem_files(&keys).unwrap();
    assert_eq!(files.len(), 1);
    let file_mode = std::fs::metadata(&files[0].1).unwrap().permissions().mode() & 0o777;
    assert_eq!(file_mode, 0o600);
    let leftovers = std::fs::read_dir(&keys).unwrap().count();
    assert_eq!(leftovers, 1, "no temporary file left behind");
}

#[test]
fn rotation_keeps_old_keys_live_and_newest_signs() {
    let dir = tempfile::tempdir().unwrap();
    let old_ring = KeyRing::load_or_generate(dir.path()).unwrap();
    let old_token = old_ring.sign(&session(300)).unwrap();
    let new_path = write_new_key(dir.path()).unwrap();
    let later = SystemTime::now() + std::time::Duration::from_secs(5);
    std::fs::File::options()
        .write(true)
        .open(&new_path)
        .unwrap()
        .set_modified(later)
        .unwrap();

    let ring = KeyRing::load_or_generate(dir.path()).unwrap();
    assert_eq!(ring.kids().count(), 2);
    assert_ne!(ring.signing_kid(), old_ring.signing_kid());
    let jwks: Value = serde_json::from_str(ring.jwks_json()).unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2);
    assert_eq!(jwks["keys"][0]["kid"], ring.signing_kid());
    ring.verify::<SessionClaims>(&old_token, &expect_app())
        .unwrap();
    let new_token = ring.sign(&session(300)).unwrap();
    assert!(old_ring
        .verify::<SessionClaims>(&new_token, &expect_app())
        .is_err());
}

#[test]
fn corrupt_key_file_stops_loading() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.pem"),
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let err = KeyRing::load_or_generate(dir.path()).unwrap_err();
    assert!(matches!(err, KeyError::Parse { .. }), "{err}");
    assert!(err.to_string().contains("bad.pem"));
}

#[test]
fn non_pem_files_are_ignored() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("README"), "not a key").unwrap();
    let ring = KeyRing::load_or_generate(dir.path()).unwrap();
    assert_eq!(ring.kids().count(), 1);
}

#[test]
fn each_kind_mints_and_verifies_as_itself_only() {
    let ring = KeyRing::generate_ephemeral();
    let app = session(300);
    let sso = SessionClaims {
        typ: TokenKind::Sso,
        ..session(300)
    };
    let app_token = ring.mint_app(&app).unwrap();
    let sso_token = ring.mint_sso(&sso).unwrap();
    assert_eq!(ring.verify_app(&app_token, ISS, Some(AUD_A)).unwrap(), app);
    assert_eq!(ring.verify_app(&app_token, ISS, None).unwrap(), app);
    assert_eq!(ring.verify_sso(&sso_token, ISS, AUD_A).unwrap(), sso);
    assert_eq!(
        rejection(ring.verify_app(&sso_token, ISS, None)),
        Rejection::Type
    );
    assert_eq!(
        rejection(ring.verify_sso(&app_token, ISS, AUD_A)),
        Rejection::Type
    );
    let r = ring.verify_transfer(&app_token, ISS, AUD_A);
    assert!(
        matches!(r, Err(TokenError::Invalid(Rejection::Type))),
        "{r:?}"
    );
}

#[test]
fn claims_of_one_kind_are_never_minted_as_another() {
    let ring = KeyRing::generate_ephemeral();
    let sso = SessionClaims {
        typ: TokenKind::Sso,
        ..session(300)
    };
    assert!(matches!(ring.mint_app(&sso), Err(TokenError::Sign(_))));
    assert!(matches!(
        ring.mint_sso(&session(300)),
        Err(TokenError::Sign(_))
    ));
}

#[test]
fn type_claim_on_the_wire_is_the_kind_name() {
    let ring = KeyRing::generate_ephemeral();
    let token = ring.mint_app(&session(300)).unwrap();
    let claims: Value = jsonwebtoken::dangerous::insecure_decode_claims(&token).unwrap();
    assert_eq!(claims["type"], "app");
    // A token as minted before TokenKind (the claims as plain JSON).
    let mut v = session_json();
    v["type"] = json!("sso");
    let old = ring.sign(&v).unwrap();
    assert_eq!(
        ring.verify_sso(&old, ISS, AUD_A).unwrap().typ,
        TokenKind::Sso
    );
}
