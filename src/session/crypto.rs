//! The crypto backend for jsonwebtoken: ES256 verification — the one
//! operation on the session-cache miss path — goes to ring's P-256 (assembly,
//! several times faster than the pure-Rust curve arithmetic); everything else
//! (signing, other algorithms, JWK helpers) stays with jsonwebtoken's own
//! RustCrypto provider. Installed once, before the first token operation.

use std::sync::Once;

use jsonwebtoken::crypto::{rust_crypto, CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{ErrorKind, Result};
use jsonwebtoken::jwk::{EllipticCurve, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind, EncodingKey};

/// ES256 verification with ring (`ECDSA_P256_SHA256_FIXED`: the JWS
/// `r || s` encoding, RFC 7518 §3.4).
struct RingEs256Verifier {
    /// Uncompressed SEC1 public point.
    point: Vec<u8>,
}

impl signature::Verifier<Vec<u8>> for RingEs256Verifier {
    fn verify(&self, msg: &[u8], sig: &Vec<u8>) -> std::result::Result<(), signature::Error> {
        ring::signature::UnparsedPublicKey::new(
            &ring::signature::ECDSA_P256_SHA256_FIXED,
            &self.point,
        )
        .verify(msg, sig)
        .map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for RingEs256Verifier {
    fn algorithm(&self) -> Algorithm {
        Algorithm::ES256
    }
}

fn new_verifier(alg: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    match (alg, key.kind()) {
        (Algorithm::ES256, DecodingKeyKind::SecretOrDer(point)) => {
            Ok(Box::new(RingEs256Verifier {
                point: point.clone(),
            }))
        }
        (Algorithm::ES256, _) => Err(ErrorKind::InvalidEcdsaKey.into()),
        _ => (rust_crypto::DEFAULT_PROVIDER.verifier_factory)(alg, key),
    }
}

fn new_signer(alg: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
    (rust_crypto::DEFAULT_PROVIDER.signer_factory)(alg, key)
}

fn rsa_from_private(k: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    (rust_crypto::DEFAULT_PROVIDER
        .key_utils
        .rsa_pub_components_from_private_key)(k)
}

fn rsa_from_public(k: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    (rust_crypto::DEFAULT_PROVIDER
        .key_utils
        .rsa_pub_components_from_public_key)(k)
}

fn ec_from_private(k: &[u8], alg: Algorithm) -> Result<(EllipticCurve, Vec<u8>, Vec<u8>)> {
    (rust_crypto::DEFAULT_PROVIDER
        .key_utils
        .ec_pub_components_from_private_key)(k, alg)
}

fn ed_from_private(k: &[u8], curve: &EllipticCurve) -> Result<Vec<u8>> {
    (rust_crypto::DEFAULT_PROVIDER
        .key_utils
        .ed_pub_components_from_private_key)(k, curve)
}

fn digest(data: &[u8], hash: ThumbprintHash) -> Result<Vec<u8>> {
    (rust_crypto::DEFAULT_PROVIDER.key_utils.compute_digest)(data, hash)
}

static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: new_signer,
    verifier_factory: new_verifier,
    key_utils: KeyUtils {
        rsa_pub_components_from_private_key: rsa_from_private,
        rsa_pub_components_from_public_key: rsa_from_public,
        ec_pub_components_from_private_key: ec_from_private,
        ed_pub_components_from_private_key: ed_from_private,
        compute_digest: digest,
    },
};

/// Install the provider process-wide (idempotent). If something already
/// used jsonwebtoken, its default RustCrypto provider stays: slower, equally
/// correct.
pub fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if PROVIDER.install_default().is_err() {
            tracing::debug!("jsonwebtoken crypto provider already set; ES256 stays on RustCrypto");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_verifier_accepts_rust_crypto_signatures_and_rejects_tampering() {
        use p256::ecdsa::signature::Signer;
        use p256::elliptic_curve::Generate as _;
        let sk = p256::ecdsa::SigningKey::generate();
        let point = sk.verifying_key().to_sec1_point(false).as_bytes().to_vec();
        let sig: p256::ecdsa::Signature = sk.sign(b"header.payload");
        let v = RingEs256Verifier { point };
        let good = sig.to_bytes().to_vec();
        assert!(signature::Verifier::verify(&v, b"header.payload", &good).is_ok());
        assert!(signature::Verifier::verify(&v, b"header.payloaX", &good).is_err());
        let mut bad = good.clone();
        bad[10] ^= 1;
        assert!(signature::Verifier::verify(&v, b"header.payload", &bad).is_err());
    }
}
