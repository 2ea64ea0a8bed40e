//! Raw serde schema of a policy file (`deny_unknown_fields`). Required keys
//! are optional here so the compile pass (`policy::load`) reports all that
//! are missing; values that need checking are `Spanned` for their location.

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

/// A located string.
pub type Str = Spanned<String>;

/// One policy file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawFile {
    #[serde(default)]
    pub apps: Option<Vec<Spanned<RawApp>>>,
    #[serde(default)]
    pub service_tokens: Option<Vec<Spanned<RawServiceToken>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApp {
    #[serde(default)]
    pub name: Option<Str>,
    #[serde(default)]
    pub domain: Option<Str>,
    #[serde(default)]
    pub path: Option<Str>,
    #[serde(default)]
    pub upstream: Option<Spanned<OneOrMany>>,
    #[serde(default)]
    pub session_duration: Option<Str>,
    #[serde(default)]
    pub connect_timeout: Option<Str>,
    #[serde(default)]
    pub read_timeout: Option<Str>,
    #[serde(default)]
    pub case_insensitive_paths: Option<bool>,
    #[serde(default)]
    pub aud: Option<Str>,
    #[serde(default)]
    pub identity_providers: Option<Spanned<Vec<Str>>>,
    #[serde(default)]
    pub policies: Option<Spanned<Vec<Spanned<RawPolicy>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    #[serde(default)]
    pub name: Option<Str>,
    #[serde(default)]
    pub decision: Option<Spanned<RawDecision>>,
    #[serde(default)]
    pub include: Option<Spanned<Vec<Spanned<RawSelector>>>>,
    #[serde(default)]
    pub require: Option<Vec<Spanned<RawSelector>>>,
    #[serde(default)]
    pub exclude: Option<Vec<Spanned<RawSelector>>>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawDecision {
    Allow,
    Block,
    Bypass,
    ServiceAuth,
}

/// A selector: a map with exactly one key.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawSelector {
    Everyone(Spanned<bool>),
    Email(Str),
    EmailDomain(Str),
    Group(Str),
    Ip(Str),
    ServiceToken(Str),
    AnyValidServiceToken(Spanned<bool>),
    AuthMethod(Str),
    LoginMethod(Str),
    Claim(RawClaim),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawClaim {
    #[serde(default)]
    pub name: Option<Str>,
    #[serde(default)]
    pub value: Option<Str>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawServiceToken {
    #[serde(default)]
    pub name: Option<Str>,
    #[serde(default)]
    pub client_id: Option<Str>,
    #[serde(default)]
    pub client_secret_sha256: Option<Str>,
}

/// A string or a list of strings. List items keep their location; a single
/// string has [`Location::UNKNOWN`] (use the enclosing span).
#[derive(Debug)]
pub struct OneOrMany(pub Vec<Str>);

impl<'de> Deserialize<'de> for OneOrMany {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OneOrMany;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string or a list of strings")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<OneOrMany, E> {
                Ok(OneOrMany(vec![Spanned::new(
                    v.to_string(),
                    Location::UNKNOWN,
                    Location::UNKNOWN,
                )]))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<OneOrMany, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<Str>()? {
                    out.push(s);
                }
                Ok(OneOrMany(out))
            }
        }
        d.deserialize_any(V)
    }
}
