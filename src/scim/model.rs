//! The SCIM records the store keeps and the changes handlers ask of it:
//! users and groups as stored (client attributes as JSON plus the derived,
//! indexed columns), validated drafts, membership operations, and what a
//! write reports back for the access effects (`effects`).

use serde_json::{Map, Value};

use super::error::ScimError;
use super::filter::Expr;

/// A stored SCIM user.
#[derive(Debug, Clone, PartialEq)]
pub struct UserRecord {
    pub id: String,
    /// The identity provider whose SCIM secret created it.
    pub idp: String,
    pub user_name: String,
    pub external_id: Option<String>,
    pub display_name: Option<String>,
    pub primary_email: Option<String>,
    pub active: bool,
    /// Client attributes as given (canonical names; never `id`, `meta`,
    /// `schemas`, `password` or `groups`).
    pub attrs: Map<String, Value>,
    /// Unix milliseconds.
    pub created_ms: i64,
    pub modified_ms: i64,
    pub version: i64,
}

impl UserRecord {
    /// What links this user to logins.
    pub fn link_keys(&self) -> LinkKeys {
        LinkKeys {
            external_id: self.external_id.clone(),
            user_name: self.user_name.clone(),
            primary_email: self.primary_email.clone(),
        }
    }
}

/// A validated user, ready to store; the derived fields come from `attrs`.
#[derive(Debug, Clone, PartialEq)]
pub struct UserDraft {
    pub attrs: Map<String, Value>,
    pub user_name: String,
    pub external_id: Option<String>,
    pub display_name: Option<String>,
    pub active: bool,
    /// Every `emails[].value`, ASCII-lower-cased, de-duplicated.
    pub emails: Vec<String>,
    /// The primary email (else the first), as given.
    pub primary_email: Option<String>,
}

/// A stored SCIM group.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupRecord {
    pub id: String,
    pub idp: String,
    pub display_name: String,
    pub external_id: Option<String>,
    /// Client attributes except `members` (kept as rows).
    pub attrs: Map<String, Value>,
    pub created_ms: i64,
    pub modified_ms: i64,
    pub version: i64,
    /// Members, when asked for.
    pub members: Option<Vec<MemberRef>>,
}

/// A group member as rendered: the user's id and a display name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRef {
    pub value: String,
    pub display: String,
}

/// A validated group (without members).
#[derive(Debug, Clone, PartialEq)]
pub struct GroupDraft {
    pub attrs: Map<String, Value>,
    pub display_name: String,
    pub external_id: Option<String>,
}

/// A membership change, applied in order inside one transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum MemberOp {
    /// Add these user ids (already members: no-op).
    Add(Vec<String>),
    /// Remove these user ids (not members: no-op).
    Remove(Vec<String>),
    /// Remove the members the filter matches (evaluated against
    /// `{"value": id, "display": …, "type": "User"}`).
    RemoveWhere(Expr),
    RemoveAll,
    /// Make the members exactly these.
    Replace(Vec<String>),
}

/// What links a SCIM user to a login of its IdP: `externalId == sub`, or
/// `userName` / primary email equal to the login's email (ASCII case-insensitive).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LinkKeys {
    pub external_id: Option<String>,
    pub user_name: String,
    pub primary_email: Option<String>,
}

/// A group write: the group after it and whose memberships changed.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupChange {
    pub group: GroupRecord,
    /// Users who became members.
    pub added: Vec<LinkKeys>,
    /// Users who stopped being members.
    pub removed: Vec<LinkKeys>,
    /// Other members, listed when the display name changed (their group
    /// names changed).
    pub others: Vec<LinkKeys>,
}

/// A user write: the user before and after it.
#[derive(Debug, Clone, PartialEq)]
pub struct UserChange {
    pub before: Option<UserRecord>,
    pub after: UserRecord,
    /// False when the write changed nothing (nothing was stored).
    pub changed: bool,
}

/// The result of a SCIM write that can be refused.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome<T> {
    Done(T),
    NotFound,
    /// A uniqueness rule failed on this attribute (`userName`, `displayName`).
    Conflict(&'static str),
    /// The edit function (or a membership check) refused.
    Rejected(ScimError),
}

/// Where a list starts (0-based) and how many it returns at most.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub offset: i64,
    pub limit: i64,
}

/// The SCIM users linked to a login, and their groups.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScimLink {
    /// (user id, active) of every linked SCIM user.
    pub users: Vec<(String, bool)>,
    /// Display names of the groups those users are in.
    pub groups: Vec<String>,
}

/// Edit of a stored user (PUT, PATCH): returns the new draft. Runs inside
/// the write transaction, so concurrent edits never lose an update.
pub type UserEdit<'a> = dyn Fn(&UserRecord) -> Result<UserDraft, ScimError> + Send + Sync + 'a;

/// Edit of a stored group's attributes: the new draft, or `None` to leave
/// them. Runs inside the write transaction.
pub type GroupEdit<'a> =
    dyn Fn(&GroupRecord) -> Result<Option<GroupDraft>, ScimError> + Send + Sync + 'a;

/// A filter the store can run for a list: fields it indexes, `eq`, `co`, `sw`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Query {
    Match {
        field: Field,
        op: MatchOp,
        value: String,
    },
    And(Box<Query>, Box<Query>),
    Or(Box<Query>, Box<Query>),
}

/// Attributes a list filter may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Id,
    /// Users; ASCII case-insensitive.
    UserName,
    /// Case-exact.
    ExternalId,
    /// Users and groups; ASCII case-insensitive.
    DisplayName,
    /// Users: any `emails[].value`; ASCII case-insensitive.
    EmailValue,
    /// Groups: a member's user id.
    MemberValue,
}

impl Field {
    /// Whether values compare ASCII case-insensitively (the query value is
    /// then already lower-cased).
    pub fn folds_case(self) -> bool {
        matches!(
            self,
            Field::UserName | Field::DisplayName | Field::EmailValue
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    Eq,
    Co,
    Sw,
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(_) => 0,
    }
}
