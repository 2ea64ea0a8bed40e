//! Secret keys that may also be given as a file: `client_secret` or
//! `client_secret_file`, `api_token` or `api_token_file`, `secret` or
//! `secret_file`, `store.url` or `store.url_file`. Exactly one of a pair may
//! be set. The file's path takes `${VAR}` and resolves against the config
//! folder; the file is read here, at load time (`config::secret_file`), and
//! its content is taken as is (no `${VAR}` expansion). Errors name the key
//! and the path, never the secret.

use serde_saphyr::Location;

use super::Ctx;
use crate::config::raw::Str;
use crate::config::secret_file::read_secret_file;

/// A secret that was given, and where: the key it came from (`…_file` when
/// read from a file) and that key's location, for later checks on it.
pub(crate) struct Given {
    pub value: String,
    pub key: String,
    pub at: Location,
}

/// `key` (the full key path of the inline form, e.g.
/// `identity_providers[0].config.client_secret`) from `value` or from the
/// file named by `file` (`key` + `_file`). `Ok(None)` when neither is set;
/// `Err(())` when an error was recorded.
pub(super) fn optional(
    cx: &mut Ctx<'_>,
    value: Option<&Str>,
    file: Option<&Str>,
    key: &str,
) -> Result<Option<Given>, ()> {
    let file_key = format!("{key}_file");
    match (value, file) {
        (None, None) => Ok(None),
        (Some(_), Some(f)) => {
            let leaf = key.rsplit('.').next().unwrap_or(key);
            cx.err(
                &f.referenced,
                &file_key,
                format!("`{leaf}` is set too: give either `{leaf}` or `{leaf}_file`, not both"),
            );
            Err(())
        }
        (Some(v), None) => {
            let value = cx.non_empty(v, key).ok_or(())?;
            Ok(Some(Given {
                value,
                key: key.to_string(),
                at: v.referenced,
            }))
        }
        (None, Some(f)) => {
            let path = cx.non_empty(f, &file_key).ok_or(())?;
            let path = cx.path(&path);
            match read_secret_file(&path) {
                Ok(value) => Ok(Some(Given {
                    value,
                    key: file_key,
                    at: f.referenced,
                })),
                Err(e) => {
                    cx.err(&f.referenced, &file_key, e.to_string());
                    Err(())
                }
            }
        }
    }
}

/// Like [`optional`], for a key that must be set one way or the other:
/// neither is reported at `at` (the enclosing map).
pub(super) fn required(
    cx: &mut Ctx<'_>,
    value: Option<&Str>,
    file: Option<&Str>,
    at: &Location,
    key: &str,
) -> Option<Given> {
    match optional(cx, value, file, key) {
        Ok(Some(g)) => Some(g),
        Ok(None) => {
            let leaf = key.rsplit('.').next().unwrap_or(key);
            cx.err(
                at,
                key,
                format!("required key is missing (or set `{leaf}_file`)"),
            );
            None
        }
        Err(()) => None,
    }
}
