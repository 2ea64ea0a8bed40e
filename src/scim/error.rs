//! SCIM errors (RFC 7644 §3.12): an HTTP status, an optional `scimType`
//! and a human-readable `detail`, rendered as the SCIM Error schema with
//! `status` as a JSON string.

use crate::proxy::respond::Reply;
use crate::store::Rejection;

/// `urn:ietf:params:scim:api:messages:2.0:Error`
pub const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// Media type of every SCIM response.
pub const SCIM_JSON: &str = "application/scim+json";

/// A SCIM protocol error answered to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("scim error {status}: {detail}")]
pub struct ScimError {
    pub status: u16,
    /// RFC 7644 `scimType` (`invalidFilter`, `uniqueness`, …).
    pub scim_type: Option<&'static str>,
    pub detail: String,
    /// The `Allow` header of a 405 (RFC 9110 §15.5.6).
    pub allow: Option<&'static str>,
}

impl From<Rejection> for ScimError {
    fn from(r: Rejection) -> ScimError {
        match r {
            Rejection::UnknownMember(id) => {
                ScimError::invalid_value(format!("members: no user with id {id:?}"))
            }
        }
    }
}

impl ScimError {
    pub fn new(
        status: u16,
        scim_type: Option<&'static str>,
        detail: impl Into<String>,
    ) -> ScimError {
        ScimError {
            status,
            scim_type,
            detail: detail.into(),
            allow: None,
        }
    }

    /// 405 with the methods the path serves in `Allow`.
    pub fn method_not_allowed(method: &http::Method, allow: &'static str) -> ScimError {
        ScimError {
            allow: Some(allow),
            ..ScimError::new(
                405,
                None,
                format!("{method} is not supported here; allowed: {allow}"),
            )
        }
    }

    /// 400 `invalidValue`: a required attribute is missing or a value has the wrong type.
    pub fn invalid_value(detail: impl Into<String>) -> ScimError {
        ScimError::new(400, Some("invalidValue"), detail)
    }

    /// 400 `invalidSyntax`: the body is not JSON or not the expected shape.
    pub fn invalid_syntax(detail: impl Into<String>) -> ScimError {
        ScimError::new(400, Some("invalidSyntax"), detail)
    }

    /// 400 `invalidFilter`: a filter that does not parse or is not supported.
    pub fn invalid_filter(detail: impl Into<String>) -> ScimError {
        ScimError::new(400, Some("invalidFilter"), detail)
    }

    /// 400 `invalidPath`: a PATCH path that does not parse or name a known attribute.
    pub fn invalid_path(detail: impl Into<String>) -> ScimError {
        ScimError::new(400, Some("invalidPath"), detail)
    }

    /// 400 `noTarget`: a PATCH path that selects nothing.
    pub fn no_target(detail: impl Into<String>) -> ScimError {
        ScimError::new(400, Some("noTarget"), detail)
    }

    /// 400 `mutability`: an attempt to change a read-only attribute.
    pub fn mutability(detail: impl Into<String>) -> ScimError {
        ScimError::new(400, Some("mutability"), detail)
    }

    /// 409 `uniqueness`.
    pub fn uniqueness(detail: impl Into<String>) -> ScimError {
        ScimError::new(409, Some("uniqueness"), detail)
    }

    /// 404 with a non-empty detail (Okta's spec test checks it).
    pub fn not_found(detail: impl Into<String>) -> ScimError {
        ScimError::new(404, None, detail)
    }

    /// 401: missing or wrong bearer secret.
    pub fn unauthorized() -> ScimError {
        ScimError::new(
            401,
            None,
            "Authorization failed: send Authorization: Bearer <SCIM secret>",
        )
    }

    /// 412: `If-Match` names another version.
    pub fn precondition_failed(detail: impl Into<String>) -> ScimError {
        ScimError::new(412, None, detail)
    }

    /// 500: the store failed; the write did not happen.
    pub fn internal() -> ScimError {
        ScimError::new(500, None, "Internal error: the request was not completed")
    }

    /// The SCIM Error document.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "schemas": [ERROR_SCHEMA],
            "status": self.status.to_string(),
            "detail": self.detail,
        });
        if let Some(t) = self.scim_type {
            v["scimType"] = serde_json::Value::String(t.to_string());
        }
        v
    }

    /// The error as a response.
    pub fn to_reply(&self) -> Reply {
        let mut reply = Reply::new(self.status, SCIM_JSON, self.to_json().to_string());
        if let Some(allow) = self.allow {
            reply = reply.with_header("allow", allow.to_string());
        }
        if self.status == 401 {
            reply.with_header("www-authenticate", "Bearer realm=\"scim\"".to_string())
        } else {
            reply
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_document_has_string_status_and_scim_type() {
        let e = ScimError::uniqueness("User already exists in the database.");
        assert_eq!(
            e.to_json(),
            serde_json::json!({
                "schemas": [ERROR_SCHEMA],
                "status": "409",
                "scimType": "uniqueness",
                "detail": "User already exists in the database.",
            })
        );
    }

    #[test]
    fn method_not_allowed_names_the_allowed_methods() {
        let e = ScimError::method_not_allowed(&http::Method::PUT, "GET, HEAD");
        assert_eq!(e.to_json()["status"], "405");
        let r = e.to_reply();
        assert!(r
            .headers
            .iter()
            .any(|(k, v)| *k == "allow" && v == "GET, HEAD"));
    }

    #[test]
    fn not_found_has_no_scim_type() {
        let v = ScimError::not_found("User 1 not found").to_json();
        assert!(v.get("scimType").is_none());
        assert_eq!(v["status"], "404");
    }

    #[test]
    fn unauthorized_reply_names_bearer_scheme() {
        let r = ScimError::unauthorized().to_reply();
        assert_eq!(r.status, 401);
        assert!(r
            .headers
            .iter()
            .any(|(k, v)| *k == "www-authenticate" && v.starts_with("Bearer")));
        assert!(r
            .headers
            .iter()
            .any(|(k, v)| *k == "content-type" && v == SCIM_JSON));
    }
}
