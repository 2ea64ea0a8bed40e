//! Matching one selector against a subject and request, without allocating.
//!
//! Service selectors match only service tokens, identity selectors only
//! users, `everyone` and `ip` any subject. Email selectors never match an
//! address the IdP did not verify.

use std::fmt::Write as _;

use serde_json::Value;

use super::{RequestView, Subject};
use crate::identity::Identity;
use crate::policy::model::Selector;

/// Whether `sel` matches.
pub fn selector_matches(sel: &Selector, subject: &Subject<'_>, req: &RequestView) -> bool {
    match sel {
        Selector::Everyone => true,
        // A v4-mapped v6 peer (dual-stack listener) is compared as v4.
        Selector::Ip(range) => range.contains(req.client_ip),
        Selector::ServiceToken(name) => {
            matches!(subject, Subject::Service(t) if *t.name == **name)
        }
        Selector::AnyValidServiceToken => matches!(subject, Subject::Service(_)),
        _ => match subject {
            Subject::User(id) => user_matches(sel, id),
            Subject::Anonymous | Subject::Service(_) => false,
        },
    }
}

fn user_matches(sel: &Selector, id: &Identity) -> bool {
    match sel {
        Selector::Email(email) => id.email_verified && id.email.eq_ignore_ascii_case(email),
        Selector::EmailDomain(domain) => id.email_verified && at_domain(&id.email, domain),
        Selector::Group(g) => id.groups.contains(*g),
        Selector::AuthMethod(m) => id.amr.iter().any(|a| a == m),
        Selector::LoginMethod(idp) => id.idp == *idp,
        Selector::Claim { name, value } => {
            id.custom.get(name).is_some_and(|v| claim_equals(v, value))
        }
        Selector::Everyone
        | Selector::Ip(_)
        | Selector::ServiceToken(_)
        | Selector::AnyValidServiceToken => false,
    }
}

/// Whether `email` is an address at `domain` (ASCII case-insensitive):
/// exactly one `@`, a non-empty local part, and the rest equal to `domain`.
/// The suffix is compared first, so the usual case, a domain that is not the
/// user's, costs one short compare.
fn at_domain(email: &str, domain: &str) -> bool {
    let (e, d) = (email.as_bytes(), domain.as_bytes());
    let Some(at) = e.len().checked_sub(d.len() + 1) else {
        return false;
    };
    !d.is_empty()
        && e[at] == b'@'
        && e[at + 1..].eq_ignore_ascii_case(d)
        && at > 0
        && !e[..at].contains(&b'@')
        && !d.contains(&b'@')
}

/// A claim equals `want` when it is that string, a number or boolean that
/// renders as it, or an array holding such an element.
fn claim_equals(v: &Value, want: &str) -> bool {
    match v {
        Value::Array(items) => items.iter().any(|i| scalar_equals(i, want)),
        other => scalar_equals(other, want),
    }
}

fn scalar_equals(v: &Value, want: &str) -> bool {
    match v {
        Value::String(s) => s == want,
        Value::Bool(b) => want == if *b { "true" } else { "false" },
        Value::Number(n) => {
            let mut buf = StackStr::new();
            write!(buf, "{n}").is_ok() && buf.as_str() == want
        }
        Value::Null | Value::Array(_) | Value::Object(_) => false,
    }
}

/// A fixed-size buffer for rendering numbers without a heap allocation.
struct StackStr {
    buf: [u8; 48],
    len: usize,
}

impl StackStr {
    fn new() -> Self {
        StackStr {
            buf: [0; 48],
            len: 0,
        }
    }

    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl std::fmt::Write for StackStr {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        if end > self.buf.len() {
            return Err(std::fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}
