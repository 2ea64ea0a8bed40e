//! Validation of `access_log` (`{ path, format }`): `path` is required,
//! `"-"` means standard output and anything else a file (relative to the
//! config folder); `format` is `json` (default) or `text`.

use serde_saphyr::Spanned;

use super::Ctx;
use crate::config::raw::RawAccessLog;
use crate::config::{AccessLogConfig, AccessLogFormat, AccessLogTarget};

/// Validate `access_log`. `None` when absent (no access log) or when an
/// error was recorded.
pub(super) fn access_log(
    cx: &mut Ctx<'_>,
    raw: Option<&Spanned<RawAccessLog>>,
) -> Option<AccessLogConfig> {
    let raw = raw?;
    let target = cx
        .required(raw.value.path.as_ref(), &raw.referenced, "access_log.path")
        .and_then(|s| cx.non_empty(s, "access_log.path"))
        .map(|p| match p.trim() {
            "-" => AccessLogTarget::Stdout,
            _ => AccessLogTarget::File(cx.path(&p)),
        });
    let format = match &raw.value.format {
        None => Some(AccessLogFormat::Json),
        Some(s) => cx
            .string(s, "access_log.format")
            .and_then(|v| match v.trim() {
                "json" => Some(AccessLogFormat::Json),
                "text" => Some(AccessLogFormat::Text),
                other => {
                    cx.err(
                        &s.referenced,
                        "access_log.format",
                        format!("unknown format `{other}`: expected `json` or `text`"),
                    );
                    None
                }
            }),
    };
    Some(AccessLogConfig {
        target: target?,
        format: format?,
    })
}
