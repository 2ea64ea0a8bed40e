//! Turning a parsed list filter into a [`Query`] the store can run on its
//! indexed columns. Supported: `eq`, `co`, `sw` on `id`, `externalId`,
//! `displayName`, and for users `userName` and `emails.value` (also written
//! `emails[value …]` or `emails`), for groups `members.value` (`eq` only);
//! combined with `and` / `or` and parentheses. Anything else is
//! `invalidFilter`, never "return everything".

use super::error::ScimError;
use super::filter::{AttrPath, CompareOp, Expr, Literal};
use super::model::{Field, MatchOp, Query};

/// Which endpoint is being listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    User,
    Group,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::User => "User",
            Kind::Group => "Group",
        }
    }
}

/// Parse and plan `filter` for `kind`.
pub fn plan_filter(filter: &str, kind: Kind) -> Result<Query, ScimError> {
    let expr = super::filter::parse(filter)
        .map_err(|e| ScimError::invalid_filter(format!("filter: {e}")))?;
    plan(&expr, kind)
}

/// Plan a parsed filter.
pub fn plan(expr: &Expr, kind: Kind) -> Result<Query, ScimError> {
    match expr {
        Expr::And(a, b) => Ok(Query::And(
            Box::new(plan(a, kind)?),
            Box::new(plan(b, kind)?),
        )),
        Expr::Or(a, b) => Ok(Query::Or(
            Box::new(plan(a, kind)?),
            Box::new(plan(b, kind)?),
        )),
        Expr::Compare { path, op, value } => compare(path, None, *op, value, kind),
        Expr::ValuePath { path, filter } => match &**filter {
            Expr::Compare {
                path: inner,
                op,
                value,
            } if inner.uri.is_none() && inner.sub.is_none() => {
                compare(path, Some(&inner.name), *op, value, kind)
            }
            other => plan_value_path(path, other, kind),
        },
        Expr::Not(_) => Err(unsupported("`not`")),
        Expr::Present(p) => Err(unsupported(&format!("`{} pr`", p.dotted()))),
    }
}

/// Plan a filter given on the server root for one resource type: a
/// comparison on an attribute `kind` does not have (or a URN of another
/// type) matches nothing there, so `Ok(None)` means "none of this type".
/// Anything else is planned (and refused) as for the type's own list.
pub fn plan_at_root(expr: &Expr, kind: Kind) -> Result<Option<Query>, ScimError> {
    let applies = |path: &AttrPath| {
        let core = format!("urn:ietf:params:scim:schemas:core:2.0:{}", kind.name());
        path.uri
            .as_deref()
            .is_none_or(|u| u.eq_ignore_ascii_case(&core))
            && super::resource::is_known_attr(kind, &path.name)
    };
    match expr {
        Expr::And(a, b) => Ok(match (plan_at_root(a, kind)?, plan_at_root(b, kind)?) {
            (Some(a), Some(b)) => Some(Query::And(Box::new(a), Box::new(b))),
            _ => None,
        }),
        Expr::Or(a, b) => Ok(match (plan_at_root(a, kind)?, plan_at_root(b, kind)?) {
            (Some(a), Some(b)) => Some(Query::Or(Box::new(a), Box::new(b))),
            (a, b) => a.or(b),
        }),
        Expr::Compare { path, .. } | Expr::ValuePath { path, .. } if !applies(path) => Ok(None),
        other => plan(other, kind).map(Some),
    }
}

/// `emails[value eq "a" or value eq "b"]`: distribute over and/or.
fn plan_value_path(path: &AttrPath, inner: &Expr, kind: Kind) -> Result<Query, ScimError> {
    match inner {
        Expr::And(a, b) => Ok(Query::And(
            Box::new(plan_value_path(path, a, kind)?),
            Box::new(plan_value_path(path, b, kind)?),
        )),
        Expr::Or(a, b) => Ok(Query::Or(
            Box::new(plan_value_path(path, a, kind)?),
            Box::new(plan_value_path(path, b, kind)?),
        )),
        Expr::Compare { path: p, op, value } if p.uri.is_none() && p.sub.is_none() => {
            compare(path, Some(&p.name), *op, value, kind)
        }
        _ => Err(unsupported(&format!(
            "this filter inside `{}[…]`",
            path.name
        ))),
    }
}

fn unsupported(what: &str) -> ScimError {
    ScimError::invalid_filter(format!(
        "filter: {what} is not supported; use eq, co or sw on userName, externalId, displayName, emails.value, id (members.value for groups), with and/or"
    ))
}

fn compare(
    path: &AttrPath,
    inner_sub: Option<&str>,
    op: CompareOp,
    value: &Literal,
    kind: Kind,
) -> Result<Query, ScimError> {
    if let Some(uri) = &path.uri {
        let core = format!("urn:ietf:params:scim:schemas:core:2.0:{}", kind.name());
        if !uri.eq_ignore_ascii_case(&core) {
            return Err(unsupported(&format!("attribute `{uri}:{}`", path.dotted())));
        }
    }
    let sub = match (path.sub.as_deref(), inner_sub) {
        (Some(_), Some(_)) => return Err(unsupported(&format!("`{}`", path.dotted()))),
        (s, None) => s,
        (None, s) => s,
    };
    let name = path.name.to_ascii_lowercase();
    let sub = sub.map(str::to_ascii_lowercase);
    let field = match (kind, name.as_str(), sub.as_deref()) {
        (_, "id", None) => Field::Id,
        (_, "externalid", None) => Field::ExternalId,
        (_, "displayname", None) => Field::DisplayName,
        (Kind::User, "username", None) => Field::UserName,
        (Kind::User, "emails", None | Some("value")) => Field::EmailValue,
        (Kind::Group, "members", None | Some("value")) if op == CompareOp::Eq => Field::MemberValue,
        _ => {
            let shown = match &sub {
                Some(s) => format!("{}.{s}", path.name),
                None => path.name.clone(),
            };
            return Err(unsupported(&format!("`{shown} {}`", op.as_str())));
        }
    };
    let op = match op {
        CompareOp::Eq => MatchOp::Eq,
        CompareOp::Co => MatchOp::Co,
        CompareOp::Sw => MatchOp::Sw,
        other => return Err(unsupported(&format!("operator `{}`", other.as_str()))),
    };
    let Literal::Str(value) = value else {
        return Err(ScimError::invalid_filter(format!(
            "filter: `{}` compares with a string; quote the value",
            path.dotted()
        )));
    };
    let value = if field.folds_case() {
        value.to_ascii_lowercase()
    } else {
        value.clone()
    };
    Ok(Query::Match { field, op, value })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(field: Field, op: MatchOp, value: &str) -> Query {
        Query::Match {
            field,
            op,
            value: value.into(),
        }
    }

    #[test]
    fn user_name_eq_is_lower_cased() {
        assert_eq!(
            plan_filter(r#"userName eq "Test.User@Okta.local""#, Kind::User).unwrap(),
            m(Field::UserName, MatchOp::Eq, "test.user@okta.local")
        );
    }

    #[test]
    fn external_id_keeps_case() {
        assert_eq!(
            plan_filter(r#"externalId eq "00uAbC""#, Kind::User).unwrap(),
            m(Field::ExternalId, MatchOp::Eq, "00uAbC")
        );
    }

    #[test]
    fn email_forms_plan_alike() {
        let want = m(Field::EmailValue, MatchOp::Eq, "a@b.c");
        for f in [
            r#"emails.value eq "A@b.c""#,
            r#"emails[value eq "a@B.c"]"#,
            r#"emails eq "a@b.c""#,
        ] {
            assert_eq!(plan_filter(f, Kind::User).unwrap(), want, "{f}");
        }
    }

    #[test]
    fn and_or_and_sw_co_plan() {
        let q = plan_filter(
            r#"(userName sw "a" or displayName co "B") and id eq "X""#,
            Kind::User,
        )
        .unwrap();
        assert_eq!(
            q,
            Query::And(
                Box::new(Query::Or(
                    Box::new(m(Field::UserName, MatchOp::Sw, "a")),
                    Box::new(m(Field::DisplayName, MatchOp::Co, "b"))
                )),
                Box::new(m(Field::Id, MatchOp::Eq, "X"))
            )
        );
    }

    #[test]
    fn core_urn_prefix_is_accepted_for_its_own_kind_only() {
        assert!(plan_filter(
            r#"urn:ietf:params:scim:schemas:core:2.0:User:userName eq "a""#,
            Kind::User
        )
        .is_ok());
        assert!(plan_filter(
            r#"urn:ietf:params:scim:schemas:core:2.0:Group:displayName eq "a""#,
            Kind::User
        )
        .is_err());
    }

    #[test]
    fn group_display_name_and_member_value_plan() {
        assert_eq!(
            plan_filter(r#"displayName eq "Test SCIMv2""#, Kind::Group).unwrap(),
            m(Field::DisplayName, MatchOp::Eq, "test scimv2")
        );
        assert_eq!(
            plan_filter(r#"members[value eq "u1"]"#, Kind::Group).unwrap(),
            m(Field::MemberValue, MatchOp::Eq, "u1")
        );
    }

    #[test]
    fn root_filters_match_nothing_of_a_type_without_the_attribute() {
        let e = |f: &str| crate::scim::filter::parse(f).unwrap();
        let f = e(r#"userName eq "a" or displayName eq "G""#);
        assert_eq!(
            plan_at_root(&f, Kind::Group).unwrap(),
            Some(m(Field::DisplayName, MatchOp::Eq, "g"))
        );
        assert!(matches!(
            plan_at_root(&f, Kind::User).unwrap(),
            Some(Query::Or(..))
        ));
        let f = e(r#"userName eq "a" and id eq "x""#);
        assert_eq!(plan_at_root(&f, Kind::Group).unwrap(), None);
        let f = e(r#"urn:ietf:params:scim:schemas:core:2.0:Group:displayName eq "a""#);
        assert_eq!(plan_at_root(&f, Kind::User).unwrap(), None);
        assert!(plan_at_root(&f, Kind::Group).unwrap().is_some());
        // Known to the type but not filterable: still refused.
        let f = e(r#"title eq "a""#);
        assert_eq!(plan_at_root(&f, Kind::User).unwrap_err().status, 400);
        assert_eq!(plan_at_root(&f, Kind::Group).unwrap(), None);
    }

    #[test]
    fn unsupported_filters_are_invalid_filter() {
        for (f, kind) in [
            (r#"userName ne "a""#, Kind::User),
            (r#"userName ew "a""#, Kind::User),
            (r#"title eq "a""#, Kind::User),
            (r#"not (userName eq "a")"#, Kind::User),
            ("userName pr", Kind::User),
            ("active eq true", Kind::User),
            (r#"userName eq "a" and"#, Kind::User),
            (r#"userName eq "a""#, Kind::Group),
            (r#"members co "a""#, Kind::Group),
            (r#"emails[type eq "work"]"#, Kind::User),
            ("userName eq 5", Kind::User),
            (r#"urn:x:y:userName eq "a""#, Kind::User),
        ] {
            let e = plan_filter(f, kind).expect_err(f);
            assert_eq!((e.status, e.scim_type), (400, Some("invalidFilter")), "{f}");
            assert!(!e.detail.is_empty());
        }
    }
}
