//! The dev IdP's two fixed RSA signing keys and the signer built from them.
//!
//! DEV-ONLY KEYS. These private keys are public knowledge (they are in this
//! source file): they exist so that `portcullis demo`, tests and benches do
//! not spend seconds generating RSA keys in debug builds. Nothing but the dev
//! IdP may ever trust them. Generated once with `openssl genrsa -traditional
//! 2048`. The second key is what [`super::DevIdp::rotate_key`] switches to.

/// DEV-ONLY RSA key #1 (kid `dev-rsa-1`): never trust it outside the dev IdP.
pub(super) const DEV_KEY_1_PEM: &str = "\
-----BEGIN RSA PRIVATE KEY-----
MIIEogIBAAKCAQEAu2V0sw7Gi1onAkaqOS1Vov4f8mzP4TSWGQOmIXj17OBVvkxD
D4f7Qcdg54ly5Ci+UesUR2up8w5xxZBzk7jQXX29QLpW8nTMhMH3OdA3swMuLwXo
u7/zGXq/gNWWyzmhvLdHOpOFK8jLskyU+6Hdy90BMhY66KHuMnQSofS03LoNWuTI
rYm3lO9CNdaVlw/TvegEM2OZ8G8EvLp17lOji+Qf8T0V0lSNRgqrCIpRS+f4+67g
O60lKxt/+VrnadOMmkB33RdNMWrDWDRqjZ300GuGNSwXYKFLgciOlCa1brrYTxqJ
3F8nqgJh9A0cn4aVISK2delgFIWXaCqaVTIJewIDAQABAoIBAAMx3rRb/AcnKwNI
0iEcatlwn+A04H+aszTLXggAqGyr6TpP0YeqJ7hYEYjEMp9W967gC532GDuKrQAT
XBN4jKQM/zt8+C61AagBW7+/Rk8FrsIvEk5h60XHCAz5vZ+xJIoNM9uSft9sUnCz
o1Yw5pE4FaU72zA/hn1f6Wto1Ezva/z6VUksvpFuE2B6cTrutyoxNut+cxlfNLAd
erRycaR1ZuXwMhQlmNDBCOIgrl4uTzKF68KKVhCDFWoCVgldxBR+Y8p3VXjlyvS+
ss2NGZVOvqq8dMQe1yaMBECfkbhOvTmzoDB9XV6ILKoSEaSkE2+rrCjVmypozFIT
pXPHQmUCgYEA7WgHZt2KrnzoX3NsAgK1pa0d2v57XBKRnSCBWl74bL6mJdwo6kfj
8UoKke0x9DDkxNLxuQW5wwPKS5w17V/73VpyRpl3Oso/buLSTTL8aShNO0HkbjhO
MkCKjK2VPsn4IKmjpn5Ax11niLz62xdsiVfMAkbXxfxpfg4xP3XFLacCgYEAyhK7
IuqLdKaCSk+e88V9JRUIgLUEbOx7WVS+c/7nzozBqgpJ2ZLO+JuBPyCIEXr/Z8AY
Bwz2G97J2upjQ9azlkLWNx3twktK+4bmFDk5YMNU8dNVtJ57dDhKfqwdIJzpObvE
8+JJqsPmTMB9/KHCXZiOZZ2g/NHv/F+A5eBiiA0CgYBhSQf/dzmlVzpCIyJXkJSv
V8msPCyBBnr1UKSxS8mxhk6/pQB/QQZ/kj/SnMijsIWOwoKbt2TwLVVwtorCw1qK
0s2RcMITLV3hKsHTMNmOnh1H8zCQmjIxFZGxJFDMcidj+yA80e/pwrTyq76AmZC4
l2naZP12/ICeT2KPBsvOcQKBgCi+ShkqLWAhypdtImGIakk1yncZCIFl1SEX4ybE
OLz+yHWeiXFjFnQt9oth5c2QfTrQEogpZt4Lt6t6IvWkrqUXaNXIJQ5N3BqHApEF
ULpf6BqyP8+hPMccKnkL/vt6Z9QKNhXuhGf4A9Fp5n0vqF7yyZNXiwQu2DKMlxLC
gVtpAoGAGqksrjbfn7f8K6t7EZSs7U9OhLxi3GbYU67HG4wwKzGH6NgSbUt3yui3
d8nPxVbZ8GtsRkdchbPuLd6CrsVNba045QCupc7yd9xh8c0Eu+oMi+9p6GsCrT7L
lnSs+2gEs3pTaO4rk3vZxaX0salXioNuFMvtkmTlPhg5hL1Lopk=
-----END RSA PRIVATE KEY-----
";

/// DEV-ONLY RSA key #2 (kid `dev-rsa-2`): never trust it outside the dev IdP.
pub(super) const DEV_KEY_2_PEM: &str = "\
-----BEGIN RSA PRIVATE KEY-----
MIIEpAIBAAKCAQEAtIYfwyoCagwrALYB6e0ai0Cnn6VMoRGybfarzk1wC52AtY0C
DRSjQjw3UzjkhtWFHPzKpMqaCaZsCydzGXKlGTZx3z7fmIkbqnfqUzZSRlX5lz6I
j3nwOjnrzkdT8b8fqH/jqKD+0hl7b6bu/XMFuWVviOkhQtxzgvEpe7UQ8gq49FEi
XJZ0O2VkIY91OZyrRn237XN6K1wc9ALaCWzPolG/pHcfX6huYQ9nwLmVXY4GSwTE
eWu23IbyNcSjOQRGNYzWgrMkG4fB7zbtH7HqkGstb3AncrVydxCZqY7II7ayfLC0
53FhCwpkv3gRdJwd2AYxPWxabXDrbH9DNB00yQIDAQABAoIBABVr6wiiNgohKoMu
6zg34hP51p+bomW572CcH6lfSAygzTKoqmsknUuRULFdSW+fQRNTrgpIXmdcamrC
bNFCvkj+dxxviLdANy+52MJfalDysnzvjI3rVtsvSgY+3D0OGcgexkREN9N09vr5
+1ceVzoM9DjHYqKH/WRhkLN0z4TLwZI9CgY2Cyp46Sdd3RXl5yn0RXq5T7Vgz4pu
npZJWUcR67lAh+TpK87MyYvnMjEMNhi8UJeKebg6jcIflXW6NTqCX+KgAZn1Z9oi
yvt1XfaFoI54nyG4pHIDz2k/f6shl0aaNC0+kgxIKd2HgLEJpwsgu2HOCM/8810w
3PkJAecCgYEA/PHkxsKPFAHn2/UFAvX5g2SoIhzVzasISVt64lCcXnx9soP2Eyrd
EpPKfHqvLL30qM8kAFM06dGhucJHBOgpMYUwJoYu9f8OzNuA/a8wuC/sfgi9KP89
WXYwqC6F9Kzf9XI9+Q2kI8WBS8ecGr2yvWS4iVe12R1Wqul5sTEOs+8CgYEAtrRN
9zFTEe2LnH9UaDXEpIKPWctHcO3toQDfDs5k7yrIDzH0EJjlj1Hk0xxdFdemsTw4
8YmQkOZNnwvNpUBY4/UMU5AWSpvPp2NzUNeFnESJ7f32vIPyWcajsFVZ+7rfU+NR
6oI4UBmqOv0GuQkICv8MgTeVW6i8wgpkBiPYCscCgYB4uT62en9tTieKPJwiuKFY
y77PYTHOEnZHBMlWoKCxG/umKwNUTJ3s0urOlINs+FCADTUijpPvkOT+UrIwrlmS
z/2WNW7Oa+h1b8JV0bqP/heCY8tceM2gGB/K9UFr8OKHM/pOFuujQw2dzGw9+xIH
AL5ulpUtRapqsjopjr90swKBgQCiNsW+QmnZ0gmRoi+D8rErysuR0v0UE/tWZpqk
37UX7+j+LMDgd4/hxrkeguFWwkg6thhsw1G6hO/H1Uf5f38sreYKzzQre9lLae35
idET5Hp99m06BQCImue8aJti+BDOv1Z8mq961r6gbwSoBo/Ai6BDneEbJ16n/We/
V9W6AwKBgQCsXS2YhwbTs8n9Ujl4dRwMncD43fDSKi+eh9/PxDZAUPrZiZzO5NCy
8CLgt0rCt5uCKIdP4xSgDj1M2VG6oxrCNcxEmRTvh4EiuvNjtXBQMHlpXFHUUy7L
akfS0+PUi3WGSQchgjeuiEAPrebFmEYAGnUU2+51n+mMnOGU+jNUYA==
-----END RSA PRIVATE KEY-----
";

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

/// One dev signing key: its `kid`, the private key and its public JWK.
pub(super) struct SigningKey {
    pub kid: &'static str,
    key: EncodingKey,
    /// `{"kty":"RSA","alg":"RS256","use":"sig","kid":…,"n":…,"e":…}`
    pub jwk: Value,
}

impl SigningKey {
    /// Load one of the fixed keys. Panics only if the constants are broken,
    /// which every test run would show.
    pub fn load(kid: &'static str, pem: &str) -> SigningKey {
        let key = EncodingKey::from_rsa_pem(pem.as_bytes()).expect("dev key pem parses");
        let public =
            Jwk::from_encoding_key(&key, Algorithm::RS256).expect("dev key has an rsa jwk");
        let AlgorithmParameters::RSA(rsa) = public.algorithm else {
            unreachable!("an rsa pem gives an rsa jwk")
        };
        let jwk = json!({
            "kty": "RSA",
            "alg": "RS256",
            "use": "sig",
            "kid": kid,
            "n": rsa.n,
            "e": rsa.e,
        });
        SigningKey { kid, key, jwk }
    }

    /// The two fixed keys, `dev-rsa-1` first.
    pub fn fixed() -> [SigningKey; 2] {
        [
            SigningKey::load("dev-rsa-1", DEV_KEY_1_PEM),
            SigningKey::load("dev-rsa-2", DEV_KEY_2_PEM),
        ]
    }

    /// A compact RS256 JWS over `claims`, with `kid` in the header unless
    /// `with_kid` is false.
    pub fn sign(&self, claims: &Value, with_kid: bool) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = with_kid.then(|| self.kid.to_string());
        jsonwebtoken::encode(&header, claims, &self.key).expect("rs256 signing with a valid key")
    }
}

/// An unsigned token (`alg: none`, empty signature), for the tamper knob.
pub(super) fn unsigned(claims: &Value, kid: &str) -> String {
    let header = json!({ "alg": "none", "typ": "JWT", "kid": kid });
    format!("{}.{}.", b64_json(&header), b64_json(claims))
}

/// An HS256 token keyed with `secret` (the client secret: the classic
/// algorithm-confusion forgery), for the tamper knob.
pub(super) fn hs256(claims: &Value, kid: &str, secret: &str) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(kid.to_string());
    let key = EncodingKey::from_secret(secret.as_bytes()).expect("any bytes make an hmac key");
    jsonwebtoken::encode(&header, claims, &key).expect("hs256 signing")
}

/// Flip one bit of the signature of a compact JWS.
pub(super) fn corrupt_signature(token: &str) -> String {
    let (signing_input, sig) = token.rsplit_once('.').expect("a compact jws has dots");
    let mut bytes = URL_SAFE_NO_PAD
        .decode(sig)
        .expect("the signature is base64url");
    if let Some(b) = bytes.get_mut(0) {
        *b ^= 0x01;
    }
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(bytes))
}

fn b64_json(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).expect("json serialises"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{DecodingKey, Validation};

    fn verify(token: &str, key: &SigningKey) -> jsonwebtoken::errors::Result<Value> {
        let n = key.jwk["n"].as_str().unwrap();
        let e = key.jwk["e"].as_str().unwrap();
        let dk = DecodingKey::from_rsa_components(n, e).unwrap();
        let mut v = Validation::new(Algorithm::RS256);
        v.required_spec_claims.clear();
        v.validate_exp = false;
        v.validate_aud = false;
        jsonwebtoken::decode::<Value>(token, &dk, &v).map(|d| d.claims)
    }

    #[test]
    fn published_jwk_verifies_tokens_signed_by_its_key() {
        let [k1, k2] = SigningKey::fixed();
        let claims = json!({"sub": "x"});
        assert_eq!(verify(&k1.sign(&claims, true), &k1).unwrap(), claims);
        assert!(verify(&k1.sign(&claims, true), &k2).is_err());
    }

    #[test]
    fn corrupted_signature_no_longer_verifies() {
        let [k1, _] = SigningKey::fixed();
        let token = corrupt_signature(&k1.sign(&json!({"sub": "x"}), true));
        assert!(verify(&token, &k1).is_err());
    }
}
