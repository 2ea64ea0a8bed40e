//! SQL text the flows need from a backend ([`DirSql`]) and what is built
//! from it at run time: list filters and pages ([`ListSql`]) and the link
//! query over a list of users, in a backend's [`Dialect`].

use super::rows::{GROUP_COLS, USER_COLS};
use crate::scim::model::{Field, MatchOp, Query};

/// Display names of the groups of `n` users (bound in order), sorted.
pub(crate) fn link_groups_sql(dialect: &Dialect, n: usize) -> String {
    let placeholders = (1..=n)
        .map(dialect.placeholder)
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "SELECT DISTINCT g.display_name FROM scim_members m JOIN scim_groups g ON g.id = m.group_id \
         WHERE m.user_id IN ({placeholders}) ORDER BY g.display_name"
    )
}

/// How a backend writes what [`where_sql`] needs: bind placeholders
/// (given the bind's 1-based number) and substring tests.
pub(crate) struct Dialect {
    pub placeholder: fn(usize) -> String,
    /// `contains(col, placeholder)`.
    pub contains: fn(&str, &str) -> String,
    /// `starts_with(col, placeholder)`; the value is bound once.
    pub starts_with: fn(&str, &str) -> String,
}

/// `WHERE` text and binds for a list query over alias `u` (users) or `g`
/// (groups), in `dialect`. Values always travel as binds.
pub(crate) fn where_sql(
    q: &Query,
    users: bool,
    dialect: &Dialect,
    sql: &mut String,
    binds: &mut Vec<String>,
) {
    match q {
        Query::And(a, b) | Query::Or(a, b) => {
            sql.push('(');
            where_sql(a, users, dialect, sql, binds);
            sql.push_str(if matches!(q, Query::And(..)) {
                " AND "
            } else {
                " OR "
            });
            where_sql(b, users, dialect, sql, binds);
            sql.push(')');
        }
        Query::Match { field, op, value } => {
            let col = match (field, users) {
                (Field::Id, true) => "u.id",
                (Field::Id, false) => "g.id",
                (Field::ExternalId, true) => "u.external_id",
                (Field::ExternalId, false) => "g.external_id",
                (Field::DisplayName, true) => "u.display_name_lower",
                (Field::DisplayName, false) => "g.display_name_lower",
                (Field::UserName, true) => "u.user_name_lower",
                (Field::EmailValue, true) => "e.value_lower",
                (Field::MemberValue, false) => "m.user_id",
                // Planned away; never matches.
                _ => {
                    sql.push_str("1 = 0");
                    return;
                }
            };
            binds.push(value.clone());
            let p = (dialect.placeholder)(binds.len());
            let cond = match op {
                MatchOp::Eq => format!("{col} = {p}"),
                MatchOp::Co => (dialect.contains)(col, &p),
                MatchOp::Sw => {
                    if p == "?" {
                        // Positional placeholders: the value is bound twice.
                        binds.push(value.clone());
                    }
                    (dialect.starts_with)(col, &p)
                }
            };
            match field {
                Field::EmailValue => sql.push_str(&format!(
                    "EXISTS (SELECT 1 FROM scim_user_emails e WHERE e.user_id = u.id AND {cond})"
                )),
                Field::MemberValue => sql.push_str(&format!(
                    "EXISTS (SELECT 1 FROM scim_members m WHERE m.group_id = g.id AND {cond})"
                )),
                _ => sql.push_str(&cond),
            }
        }
    }
}

/// A list query: the number of users (or groups) of an IdP matching a
/// filter, and one page of them in creation order. The text is built from
/// constants only; values always travel as `binds` (then limit, offset).
pub(crate) struct ListSql {
    pub count: String,
    pub page: String,
    pub binds: Vec<String>,
}

impl ListSql {
    pub(crate) fn new(dialect: &Dialect, users: bool, idp: &str, q: Option<&Query>) -> ListSql {
        let (from, alias, cols) = if users {
            ("scim_users u", "u", USER_COLS)
        } else {
            ("scim_groups g", "g", GROUP_COLS)
        };
        let mut cond = format!("{alias}.idp = {}", (dialect.placeholder)(1));
        let mut binds = vec![idp.to_string()];
        if let Some(q) = q {
            cond.push_str(" AND ");
            where_sql(q, users, dialect, &mut cond, &mut binds);
        }
        let page = format!(
            "SELECT {cols} FROM {from} WHERE {cond} ORDER BY {alias}.created_ms, {alias}.id LIMIT {} OFFSET {}",
            (dialect.placeholder)(binds.len() + 1),
            (dialect.placeholder)(binds.len() + 2),
        );
        ListSql {
            count: format!("SELECT count(*) FROM {from} WHERE {cond}"),
            page,
            binds,
        }
    }
}

/// A backend's SQL text for [`DirConn`]. Placeholders are numbered in the
/// order given with each statement.
pub(crate) struct DirSql {
    /// 1 id, 2 idp. Rows: [`UserRow`].
    pub user_by_id: &'static str,
    /// 1 id, 2 idp. Rows: [`GroupRow`].
    pub group_by_id: &'static str,
    /// 1 group id. Rows: (user id, userName) in the order they were added.
    pub members_of: &'static str,
    /// 1 id, 2 idp. Rows: (userName, externalId, primary email).
    pub user_keys: &'static str,
    /// 1 idp, 2 lower-cased userName, 3 the id to leave out.
    pub user_name_taken: &'static str,
    /// 1 idp, 2 lower-cased displayName, 3 the id to leave out.
    pub group_name_taken: &'static str,
    /// Insert or replace a user: 1 id, 2 idp, 3 userName, 4 its lower
    /// case, 5 externalId, 6 displayName, 7 its lower case, 8 primary
    /// email, 9 its lower case, 10 active, 11 resource JSON, 12 created,
    /// 13 modified, 14 version.
    pub put_user: &'static str,
    /// 1 user id.
    pub delete_emails: &'static str,
    /// 1 user id, 2 lower-cased email; a duplicate is ignored.
    pub insert_email: &'static str,
    /// 1 id, 2 idp, 3 displayName, 4 its lower case, 5 externalId,
    /// 6 resource JSON, 7 created (and modified).
    pub insert_group: &'static str,
    /// 1 id, 2 displayName, 3 its lower case, 4 externalId, 5 resource JSON.
    pub update_group: &'static str,
    /// 1 group id, 2 user id, 3 now; an existing membership is ignored.
    pub add_member: &'static str,
    /// 1 group id, 2 user id.
    pub remove_member: &'static str,
    /// 1 group id, 2 now.
    pub bump_group: &'static str,
    /// The groups of user 1: 2 now.
    pub bump_groups_of_user: &'static str,
    /// 1 id.
    pub delete_user: &'static str,
    /// 1 id.
    pub delete_group: &'static str,
    /// 1 user id. Rows: (group id, displayName) by name.
    pub user_groups: &'static str,
    /// Rows: (idp, secret SHA-256) by idp.
    pub secret_hashes: &'static str,
    /// 1 idp, 2 SHA-256, 3 now (s); an existing secret is kept.
    pub seed_secret: &'static str,
    /// 1 idp, 2 SHA-256, 3 now (s).
    pub set_secret: &'static str,
    /// The users of an IdP a login may link to: 1 idp, 2 sub, 3 the
    /// lower-cased verified email (or NULL). Rows: (id, active, externalId).
    pub link_users: &'static str,
    /// Login subjects of idp 1 from live sessions and seats of a user with
    /// 2 externalId, 3 userName, 4 primary email.
    pub linked_subjects: &'static str,
    /// How list filters and link lists are written.
    pub dialect: Dialect,
}
