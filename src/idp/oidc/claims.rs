//! From verified ID-token claims (JSON) to an [`Identity`]: email (from
//! `email_claim_name`), `email_verified` (rules in the `oidc` module doc),
//! `name`, `groups`, `amr` and the configured custom claims. Any of them with
//! the wrong JSON type fails the login.

use serde_json::{Map, Value};

use super::IdpError;
use crate::config::{IdpConfig, IdpKind};
use crate::identity::{Groups, Identity};

/// Build the identity of a login from its verified claims. Groups are
/// those of the token (Okta API groups replace them later); not normalised.
pub(super) fn identity(cfg: &IdpConfig, claims: &Map<String, Value>) -> Result<Identity, IdpError> {
    let sub = match claims.get("sub") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => return Err(invalid("sub is missing or not a non-empty string")),
    };
    let email_claim = cfg.email_claim_name.as_str();
    let email = match claims.get(email_claim) {
        Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_string(),
        None | Some(Value::Null) => {
            return Err(invalid(&format!(
                "the email claim {email_claim:?} is missing"
            )))
        }
        Some(_) => {
            return Err(invalid(&format!(
                "the email claim {email_claim:?} is not a non-empty string"
            )))
        }
    };
    let verified_claim = match claims.get("email_verified") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => return Err(invalid("email_verified is not a boolean")),
    };
    let okta = cfg.kind == IdpKind::Okta;
    let from_email_claim = email_claim == "email"
        || claims
            .get("email")
            .and_then(Value::as_str)
            .is_some_and(|e| e.trim().eq_ignore_ascii_case(&email));
    let email_verified = if from_email_claim {
        verified_claim.unwrap_or(okta)
    } else {
        okta
    };
    let name = optional_string(claims, "name")?;
    let groups = string_list(claims, "groups")?;
    let amr = string_list(claims, "amr")?;
    let mut custom = Map::new();
    for claim in &cfg.claims {
        match claims.get(claim) {
            None | Some(Value::Null) => {}
            Some(v) => {
                custom.insert(claim.clone(), v.clone());
            }
        }
    }
    Ok(Identity {
        sub,
        email,
        email_verified,
        name,
        idp: cfg.name.clone(),
        idp_type: cfg.kind.as_str().to_string(),
        groups: Groups::from_names(groups),
        amr,
        custom: custom.into(),
    })
}

fn invalid(why: &str) -> IdpError {
    IdpError::InvalidToken(why.to_string())
}

fn optional_string(claims: &Map<String, Value>, name: &str) -> Result<Option<String>, IdpError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(invalid(&format!("{name} is not a string"))),
    }
}

/// A list-of-strings claim; missing or null is the empty list.
fn string_list(claims: &Map<String, Value>, name: &str) -> Result<Vec<String>, IdpError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                _ => Err(invalid(&format!(
                    "{name} holds a value that is not a string"
                ))),
            })
            .collect(),
        Some(_) => Err(invalid(&format!("{name} is not a list of strings"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfg(kind: IdpKind) -> IdpConfig {
        IdpConfig {
            name: "corp".into(),
            kind,
            client_id: "c".into(),
            client_secret: "s".into(),
            issuer: "https://idp.example".into(),
            okta_account: None,
            authorization_server_id: None,
            api_token: None,
            claims: vec!["department".into()],
            email_claim_name: "email".into(),
            pkce_enabled: false,
            scopes: vec!["openid".into()],
            scim: None,
        }
    }

    fn claims(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn reads_email_name_groups_amr_and_custom_claims() {
        let id = identity(
            &cfg(IdpKind::Oidc),
            &claims(json!({
                "sub": "u1", "email": "a@example.com", "email_verified": true, "name": "A",
                "groups": ["eng", "all"], "amr": ["pwd", "mfa"], "department": {"x": 1},
                "other": "ignored"
            })),
        )
        .unwrap();
        assert_eq!(id.sub, "u1");
        assert_eq!(id.email, "a@example.com");
        assert!(id.email_verified);
        assert_eq!(id.name.as_deref(), Some("A"));
        assert_eq!(id.groups, ["all", "eng"]);
        assert_eq!(id.amr, ["pwd", "mfa"]);
        assert_eq!(id.custom.get("department"), Some(&json!({"x": 1})));
        assert!(!id.custom.contains_key("other"));
        assert_eq!((id.idp.as_str(), id.idp_type.as_str()), ("corp", "oidc"));
    }

    #[test]
    fn missing_groups_claim_is_no_groups() {
        let id = identity(
            &cfg(IdpKind::Oidc),
            &claims(json!({"sub": "u", "email": "a@b.c"})),
        )
        .unwrap();
        assert!(id.groups.is_empty());
        assert!(id.amr.is_empty());
    }

    #[test]
    fn groups_claim_with_a_non_string_is_rejected() {
        let err = identity(
            &cfg(IdpKind::Oidc),
            &claims(json!({"sub": "u", "email": "a@b.c", "groups": ["eng", 7]})),
        )
        .unwrap_err();
        assert!(matches!(err, IdpError::InvalidToken(_)));
    }

    #[test]
    fn groups_claim_as_a_string_is_rejected() {
        let err = identity(
            &cfg(IdpKind::Oidc),
            &claims(json!({"sub": "u", "email": "a@b.c", "groups": "eng"})),
        )
        .unwrap_err();
        assert!(matches!(err, IdpError::InvalidToken(_)));
    }

    #[test]
    fn email_verified_of_the_wrong_type_is_rejected() {
        let err = identity(
            &cfg(IdpKind::Okta),
            &claims(json!({"sub": "u", "email": "a@b.c", "email_verified": "true"})),
        )
        .unwrap_err();
        assert!(matches!(err, IdpError::InvalidToken(_)));
    }

    #[test]
    fn missing_email_is_rejected() {
        let err = identity(&cfg(IdpKind::Okta), &claims(json!({"sub": "u"}))).unwrap_err();
        assert_eq!(
            err,
            IdpError::InvalidToken("the email claim \"email\" is missing".into())
        );
    }

    #[test]
    fn missing_email_verified_counts_as_verified_only_for_okta() {
        let c = claims(json!({"sub": "u", "email": "a@b.c"}));
        assert!(identity(&cfg(IdpKind::Okta), &c).unwrap().email_verified);
        assert!(!identity(&cfg(IdpKind::Oidc), &c).unwrap().email_verified);
    }

    #[test]
    fn explicit_email_verified_false_wins_for_okta() {
        let c = claims(json!({"sub": "u", "email": "a@b.c", "email_verified": false}));
        assert!(!identity(&cfg(IdpKind::Okta), &c).unwrap().email_verified);
    }

    #[test]
    fn custom_email_claim_is_not_covered_by_another_emails_verification() {
        let mut oidc = cfg(IdpKind::Oidc);
        oidc.email_claim_name = "upn".into();
        let c = claims(json!({
            "sub": "u", "upn": "boss@corp.example", "email": "me@b.c", "email_verified": true
        }));
        let id = identity(&oidc, &c).unwrap();
        assert_eq!(id.email, "boss@corp.example");
        assert!(!id.email_verified);
    }

    #[test]
    fn custom_email_claim_equal_to_the_verified_email_is_verified() {
        let mut oidc = cfg(IdpKind::Oidc);
        oidc.email_claim_name = "upn".into();
        let c = claims(json!({
            "sub": "u", "upn": "Me@B.c", "email": "me@b.c", "email_verified": true
        }));
        assert!(identity(&oidc, &c).unwrap().email_verified);
    }
}
