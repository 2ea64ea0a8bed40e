//! Reading a SCIM request: the headers that matter, the body (bounded),
//! its JSON, and `If-Match`; and writing SCIM responses.

use bytes::{Bytes, BytesMut};
use serde_json::Value;

use super::error::{ScimError, SCIM_JSON};
use crate::proxy::respond::Reply;

/// Largest request body accepted.
pub const MAX_BODY: usize = 1 << 20;

/// Most bytes of a refused body read and thrown away before the refusal is
/// sent, and how long that may take.
const DRAIN_MAX: usize = 16 * MAX_BODY;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(2);

/// Read the whole body, refusing more than [`MAX_BODY`] bytes.
///
/// A refused body is first read to its end (at most [`DRAIN_MAX`] bytes,
/// for at most [`DRAIN_TIME`]): a server that answers and closes while the
/// client is still sending makes the kernel reset the connection, and the
/// client then sees the reset instead of the 400.
pub async fn read_body(session: &mut pingora::proxy::Session) -> Result<Bytes, ScimError> {
    let too_large =
        || ScimError::invalid_syntax(format!("the request body is larger than {MAX_BODY} bytes"));
    let unreadable = || ScimError::invalid_syntax("the request body could not be read");
    let held_back = expects_continue(session);
    let declared = session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY as u64) {
        drain(session, 0, held_back).await;
        return Err(too_large());
    }
    if held_back {
        // The client holds the body back until told to send it (curl
        // waits a second, then sends anyway); Pingora does not answer
        // `Expect` by itself.
        if let Err(e) = session.write_continue_response().await {
            tracing::debug!(error = %e, "100 Continue could not be sent");
            return Err(unreadable());
        }
    }
    let mut buf = BytesMut::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                if buf.len() + chunk.len() > MAX_BODY {
                    let read = buf.len() + chunk.len();
                    drop(buf);
                    // The body is on its way (after `100 Continue` if it
                    // was asked for): read the rest of it.
                    drain(session, read, false).await;
                    return Err(too_large());
                }
                buf.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(buf.freeze()),
            Err(e) => {
                tracing::debug!(error = %e, "SCIM request body could not be read");
                return Err(unreadable());
            }
        }
    }
}

/// Read and discard the rest of a refused body, within the drain bounds;
/// `read` bytes of it were read already. A client that still holds its
/// body back (`held_back`: it waits for `100 Continue`, which was not sent)
/// has sent nothing and gets the answer at once. Past
/// either bound the connection is closed after the answer (otherwise
/// Pingora would go on draining it, without a bound, to reuse it).
async fn drain(session: &mut pingora::proxy::Session, mut read: usize, held_back: bool) {
    if held_back {
        session.set_keepalive(None);
        return;
    }
    let rest = async {
        while read <= DRAIN_MAX {
            match session.read_request_body().await {
                Ok(Some(chunk)) => read += chunk.len(),
                Ok(None) => return true,
                Err(_) => return false,
            }
        }
        false
    };
    let done = tokio::time::timeout(DRAIN_TIME, rest)
        .await
        .unwrap_or(false);
    if !done {
        session.set_keepalive(None);
    }
}

/// Whether the client sent `Expect: 100-continue` (RFC 9110 §10.1.1).
fn expects_continue(session: &pingora::proxy::Session) -> bool {
    session
        .req_header()
        .headers
        .get(http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

/// Whether a `Content-Type` is JSON: `application/scim+json`,
/// `application/json` or `text/json` (parameters ignored), or absent.
pub fn is_json_type(content_type: Option<&str>) -> bool {
    let Some(ct) = content_type else { return true };
    let mime = ct.split(';').next().unwrap_or("").trim();
    ["application/scim+json", "application/json", "text/json"]
        .iter()
        .any(|m| m.eq_ignore_ascii_case(mime))
}

/// The body as JSON, checked against its content type.
pub fn json_body(content_type: Option<&str>, body: &[u8]) -> Result<Value, ScimError> {
    if !is_json_type(content_type) {
        return Err(ScimError::new(
            415,
            None,
            "Content-Type must be application/scim+json or application/json",
        ));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ScimError::invalid_syntax(
            "the request body is empty; send a JSON object",
        ));
    }
    serde_json::from_slice(body)
        .map_err(|e| ScimError::invalid_syntax(format!("the request body is not valid JSON: {e}")))
}

/// The version an `If-Match` header asks for: `None` for absent or `*`.
/// A value that is not one of our ETags can never match.
pub fn if_match(header: Option<&str>) -> Option<Option<i64>> {
    let h = header?.trim();
    if h == "*" {
        return None;
    }
    let tag = h.strip_prefix("W/").unwrap_or(h).trim_matches('"');
    Some(tag.parse::<i64>().ok())
}

/// Refuse the write when `If-Match` names another version.
pub fn check_version(wanted: Option<Option<i64>>, current: i64) -> Result<(), ScimError> {
    match wanted {
        None => Ok(()),
        Some(Some(v)) if v == current => Ok(()),
        Some(_) => Err(ScimError::precondition_failed(format!(
            "If-Match does not match the current version {}",
            super::resource::etag(current)
        ))),
    }
}

/// A SCIM JSON response.
pub fn json_reply(status: u16, v: &Value) -> Reply {
    Reply::new(status, SCIM_JSON, v.to_string())
}

/// A resource response with its ETag (and Location on 201).
pub fn resource_reply(status: u16, v: &Value, version: i64, location: Option<String>) -> Reply {
    let mut r = json_reply(status, v).with_header("etag", super::resource::etag(version));
    if let Some(l) = location {
        r = r.with_header("location", l);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types_are_accepted() {
        for ct in [
            None,
            Some("application/scim+json"),
            Some("application/json; charset=utf-8"),
            Some("TEXT/JSON"),
        ] {
            assert!(is_json_type(ct), "{ct:?}");
        }
        assert!(!is_json_type(Some("application/x-www-form-urlencoded")));
    }

    #[test]
    fn malformed_json_is_invalid_syntax_naming_the_position() {
        let e = json_body(Some("application/scim+json"), b"{\"userName\": }").unwrap_err();
        assert_eq!((e.status, e.scim_type), (400, Some("invalidSyntax")));
        assert!(e.detail.contains("line 1"), "{}", e.detail);
    }

    #[test]
    fn empty_body_and_wrong_type_are_refused() {
        assert_eq!(json_body(None, b"  ").unwrap_err().status, 400);
        assert_eq!(
            json_body(Some("text/plain"), b"{}").unwrap_err().status,
            415
        );
    }

    #[test]
    fn if_match_parses_weak_and_strong_tags() {
        assert_eq!(if_match(None), None);
        assert_eq!(if_match(Some("*")), None);
        assert_eq!(if_match(Some("W/\"3\"")), Some(Some(3)));
        assert_eq!(if_match(Some("\"4\"")), Some(Some(4)));
        assert_eq!(if_match(Some("junk")), Some(None));
    }

    #[test]
    fn check_version_refuses_other_versions_with_412() {
        assert!(check_version(None, 5).is_ok());
        assert!(check_version(Some(Some(5)), 5).is_ok());
        assert_eq!(check_version(Some(Some(4)), 5).unwrap_err().status, 412);
        assert_eq!(check_version(Some(None), 5).unwrap_err().status, 412);
    }
}
