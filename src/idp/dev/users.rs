//! Users of the dev IdP and the demo set that `portcullis demo` logs in as.

use serde_json::{json, Map, Value};

/// A user of the dev IdP.
#[derive(Debug, Clone, PartialEq)]
pub struct DevUser {
    /// Okta-style user id; the ID token's `sub`.
    pub id: String,
    pub email: String,
    pub email_verified: bool,
    pub name: String,
    /// Group display names, in the order the groups API returns them.
    pub groups: Vec<String>,
    /// Authentication methods put in `amr` (`pwd`, `mfa`, `otp`, …).
    pub amr: Vec<String>,
    /// Extra ID-token claims (e.g. `department`), added last.
    pub custom: Map<String, Value>,
}

impl DevUser {
    /// A verified user with password login, no groups and no custom claims.
    pub fn new(id: &str, email: &str, name: &str) -> DevUser {
        DevUser {
            id: id.into(),
            email: email.into(),
            email_verified: true,
            name: name.into(),
            groups: Vec::new(),
            amr: vec!["pwd".into()],
            custom: Map::new(),
        }
    }

    /// The demo users:
    ///
    /// | id | email | groups | amr | note |
    /// |---|---|---|---|---|
    /// | `00ualice` | alice@example.com | engineering, everyone | pwd, mfa, otp | `department: engineering` |
    /// | `00ubob` | bob@example.com | sales, everyone | pwd | `department: sales` |
    /// | `00ucarol` | carol@contractor.example.net | contractors | pwd, mfa | `department: external` |
    /// | `00udave` | dave@example.com | engineering | pwd | email **not** verified |
    /// | `00upat` | pat@example.com | everyone, team-001 … team-150 | pwd, mfa | 151 groups: more than the token carries |
    pub fn demo_users() -> Vec<DevUser> {
        let user = |id: &str, email: &str, name: &str, groups: &[&str], amr: &[&str]| DevUser {
            id: id.into(),
            email: email.into(),
            email_verified: true,
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            amr: amr.iter().map(|a| a.to_string()).collect(),
            custom: Map::new(),
        };
        let department = |d: &str| {
            let mut m = Map::new();
            m.insert("department".into(), json!(d));
            m
        };
        let mut alice = user(
            "00ualice",
            "alice@example.com",
            "Alice Anderson",
            &["engineering", "everyone"],
            &["pwd", "mfa", "otp"],
        );
        alice.custom = department("engineering");
        let mut bob = user(
            "00ubob",
            "bob@example.com",
            "Bob Baker",
            &["sales", "everyone"],
            &["pwd"],
        );
        bob.custom = department("sales");
        let mut carol = user(
            "00ucarol",
            "carol@contractor.example.net",
            "Carol Chen (contractor)",
            &["contractors"],
            &["pwd", "mfa"],
        );
        carol.custom = department("external");
        let mut dave = user(
            "00udave",
            "dave@example.com",
            "Dave Doe (unverified email)",
            &["engineering"],
            &["pwd"],
        );
        dave.email_verified = false;
        let mut pat = user(
            "00upat",
            "pat@example.com",
            "Pat Many-Groups",
            &["everyone"],
            &["pwd", "mfa"],
        );
        pat.groups.extend((1..=150).map(|i| format!("team-{i:03}")));
        vec![alice, bob, carol, dave, pat]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_users_have_unique_ids_and_one_has_more_than_150_groups() {
        let users = DevUser::demo_users();
        let mut ids: Vec<_> = users.iter().map(|u| u.id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), users.len());
        assert!(users.iter().any(|u| u.groups.len() > 150));
    }
}
