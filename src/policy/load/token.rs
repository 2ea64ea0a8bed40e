//! Compiling `service_tokens:` entries: unique names and client ids across
//! every file, and a 64-hex-digit SHA-256 of the client secret.

use serde_saphyr::Spanned;

use super::{Cx, Key};
use crate::policy::model::ServiceToken;
use crate::policy::raw::RawServiceToken;

/// The key of the `service_tokens` list.
const TOKENS: Key<'static> = Key::Root("service_tokens");

/// A compiled token and where it was defined, for duplicate messages.
pub(super) struct Defined {
    pub token: ServiceToken,
    pub source: String,
}

/// Compile one file's tokens, appending to `out` (which holds earlier files').
pub(super) fn compile(cx: &mut Cx<'_>, raws: &[Spanned<RawServiceToken>], out: &mut Vec<Defined>) {
    for (i, raw) in raws.iter().enumerate() {
        let key = TOKENS.index(i);
        let at = raw.referenced;
        let t = &raw.value;
        let name = cx
            .required(t.name.as_ref(), &at, key.field("name"))
            .and_then(|s| cx.non_empty(s, key.field("name")));
        let client_id = cx
            .required(t.client_id.as_ref(), &at, key.field("client_id"))
            .and_then(|s| cx.non_empty(s, key.field("client_id")));
        let hash_key = key.field("client_secret_sha256");
        let hash = cx
            .required(t.client_secret_sha256.as_ref(), &at, hash_key)
            .and_then(|s| match parse_sha256(s.value.trim()) {
                Some(h) => Some(h),
                None => {
                    cx.err(
                        &s.referenced,
                        hash_key,
                        "expected the SHA-256 of the client secret as 64 hex digits (e.g. `printf %s \"$SECRET\" | sha256sum`)",
                    );
                    None
                }
            });
        let (Some(name), Some(client_id), Some(hash)) = (name, client_id, hash) else {
            continue;
        };
        if let Some(d) = out.iter().find(|d| *d.token.name == *name) {
            let at = t.name.as_ref().map_or(at, |s| s.referenced);
            cx.err(
                &at,
                key.field("name"),
                format!(
                    "duplicate service token name `{name}` (first defined at {})",
                    d.source
                ),
            );
            continue;
        }
        if let Some(d) = out.iter().find(|d| d.token.client_id == client_id) {
            let at = t.client_id.as_ref().map_or(at, |s| s.referenced);
            cx.err(
                &at,
                key.field("client_id"),
                format!(
                    "client_id is already used by service token `{}` ({})",
                    d.token.name, d.source
                ),
            );
            continue;
        }
        out.push(Defined {
            token: ServiceToken {
                name: name.into(),
                client_id,
                client_secret_sha256: hash,
            },
            source: cx.source(&at),
        });
    }
}

fn parse_sha256(s: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if s.len() != 64 {
        return None;
    }
    hex::decode_to_slice(s, &mut out).ok()?;
    Some(out)
}
