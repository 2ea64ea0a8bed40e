//! Interned group names and an identity's set of groups.
//!
//! Every group name the process sees (from ID tokens, the Okta API, SCIM and
//! `group:` selectors) is interned once into a [`GroupId`]. An identity keeps
//! its groups as a boxed slice of ids in name order ([`Groups`]): a `group:`
//! selector, compiled to an id, is then an integer scan over a few hundred
//! contiguous bytes instead of string compares over a hundred heap strings,
//! and a cached session holds 4 bytes per group instead of a `String`.
//!
//! Interned names are never freed. They come only from the IdP, the
//! authenticated SCIM client and the policy files, so the table grows with the
//! number of distinct group names ever seen, not with traffic.

use std::collections::HashMap;
use std::fmt;
use std::sync::LazyLock;

use parking_lot::RwLock;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An interned group name. Equal ids mean equal names within this process.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct GroupId(u32);

impl GroupId {
    /// Intern `name` (exact, case-sensitive).
    pub fn intern(name: &str) -> GroupId {
        if let Some(id) = GroupId::lookup(name) {
            return id;
        }
        let mut table = TABLE.write();
        if let Some(&id) = table.ids.get(name) {
            return id;
        }
        let id = GroupId(u32::try_from(table.names.len()).expect("fewer than 2^32 group names"));
        let name: &'static str = Box::leak(name.to_owned().into_boxed_str());
        table.names.push(name);
        table.ids.insert(name, id);
        id
    }

    /// The id of `name` if it was ever interned. A name never interned is in
    /// no identity's groups.
    pub fn lookup(name: &str) -> Option<GroupId> {
        TABLE.read().ids.get(name).copied()
    }

    /// The group's display name.
    pub fn name(self) -> &'static str {
        TABLE.read().names[self.0 as usize]
    }
}

impl fmt::Debug for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.name(), f)
    }
}

impl fmt::Display for GroupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

struct Table {
    ids: HashMap<&'static str, GroupId, foldhash::fast::RandomState>,
    names: Vec<&'static str>,
}

static TABLE: LazyLock<RwLock<Table>> = LazyLock::new(|| {
    RwLock::new(Table {
        ids: HashMap::default(),
        names: Vec::new(),
    })
});

/// A set of groups: sorted by name, without duplicates.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Groups(Box<[GroupId]>);

impl Groups {
    /// The set of `names` (any order, duplicates allowed). The iterator
    /// runs under the name table's read lock, so it must not itself look
    /// up or intern group names.
    pub fn from_names<I, S>(names: I) -> Groups
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let names = names.into_iter();
        // One read lock for the whole list (a session record holds 100+
        // groups); only names never seen go through `intern`'s write path.
        let mut named: Vec<(&'static str, GroupId)> = Vec::with_capacity(names.size_hint().0);
        let mut unseen = Vec::new();
        {
            let table = TABLE.read();
            for n in names {
                match table.ids.get_key_value(n.as_ref()) {
                    Some((&name, &id)) => named.push((name, id)),
                    None => unseen.push(n),
                }
            }
        }
        for n in unseen {
            let id = GroupId::intern(n.as_ref());
            named.push((id.name(), id));
        }
        named.sort_unstable_by(|a, b| a.0.cmp(b.0));
        named.dedup_by(|a, b| a.1 == b.1);
        Groups(named.into_iter().map(|(_, id)| id).collect())
    }

    /// This set with `more` added. Only the new names are interned; the
    /// two sets, both in name order, are then merged (a cache miss with
    /// SCIM on adds a few SCIM groups to 100+ IdP groups).
    pub fn union<I, S>(&self, more: I) -> Groups
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let more = Groups::from_names(more);
        if more.is_empty() {
            return self.clone();
        }
        let table = TABLE.read();
        let name = |id: &GroupId| table.names[id.0 as usize];
        let (mut a, mut b) = (self.0.iter().peekable(), more.0.iter().peekable());
        let mut out = Vec::with_capacity(self.0.len() + more.0.len());
        loop {
            let next = match (a.peek(), b.peek()) {
                (Some(x), Some(y)) => match name(x).cmp(name(y)) {
                    std::cmp::Ordering::Less => a.next(),
                    std::cmp::Ordering::Greater => b.next(),
                    std::cmp::Ordering::Equal => {
                        b.next();
                        a.next()
                    }
                },
                (Some(_), None) => a.next(),
                (None, Some(_)) => b.next(),
                (None, None) => break,
            };
            out.extend(next.copied());
        }
        Groups(out.into_boxed_slice())
    }

    /// Whether the set holds `id`. Allocation-free; the access phase's
    /// `group:` check.
    pub fn contains(&self, id: GroupId) -> bool {
        // Branch-free within a chunk, so the compare vectorises.
        self.0
            .chunks(16)
            .any(|c| c.iter().fold(false, |hit, g| hit | (g.0 == id.0)))
    }

    /// Whether the set holds the group named `name` (exact match).
    pub fn contains_name(&self, name: &str) -> bool {
        GroupId::lookup(name).is_some_and(|id| self.contains(id))
    }

    /// The names, sorted.
    pub fn names(&self) -> Vec<&'static str> {
        let table = TABLE.read();
        self.0.iter().map(|id| table.names[id.0 as usize]).collect()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Heap bytes held (for the memory benchmark).
    pub fn heap_bytes(&self) -> usize {
        std::mem::size_of_val(&*self.0)
    }
}

impl fmt::Debug for Groups {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl<S: AsRef<str>> FromIterator<S> for Groups {
    fn from_iter<I: IntoIterator<Item = S>>(names: I) -> Groups {
        Groups::from_names(names)
    }
}

impl<S: AsRef<str>, const N: usize> PartialEq<[S; N]> for Groups {
    fn eq(&self, other: &[S; N]) -> bool {
        self.names()
            .iter()
            .copied()
            .eq(other.iter().map(|s| s.as_ref()))
    }
}

impl PartialEq<Vec<String>> for Groups {
    fn eq(&self, other: &Vec<String>) -> bool {
        self.names()
            .iter()
            .copied()
            .eq(other.iter().map(String::as_str))
    }
}

/// Stored and shown as a list of names.
impl Serialize for Groups {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.names())
    }
}

impl<'de> Deserialize<'de> for Groups {
    /// A list of names. Names are borrowed from the input where it allows
    /// (a stored session's JSON without escapes): a record with 100 groups
    /// is read on a session-cache miss, and 100 throwaway `String`s were a
    /// tenth of that miss.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Groups, D::Error> {
        Vec::<Name<'de>>::deserialize(d)
            .map(|names| Groups::from_names(names.iter().map(|n| &*n.0)))
    }
}

/// One group name while deserializing: borrowed when possible.
struct Name<'de>(std::borrow::Cow<'de, str>);

impl<'de> Deserialize<'de> for Name<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Name<'de>, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Name<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a group name")
            }
            fn visit_borrowed_str<E: serde::de::Error>(self, v: &'de str) -> Result<Name<'de>, E> {
                Ok(Name(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Name<'de>, E> {
                Ok(Name(std::borrow::Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Name<'de>, E> {
                Ok(Name(std::borrow::Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interning_a_name_twice_gives_the_same_id() {
        assert_eq!(GroupId::intern("g-twice"), GroupId::intern("g-twice"));
        assert_ne!(GroupId::intern("g-twice"), GroupId::intern("G-twice"));
    }

    #[test]
    fn a_name_never_interned_is_in_no_set() {
        let g = Groups::from_names(["g-a", "g-b"]);
        assert_eq!(GroupId::lookup("g-never-seen-anywhere"), None);
        assert!(!g.contains_name("g-never-seen-anywhere"));
        assert!(g.contains_name("g-a"));
    }

    #[test]
    fn sets_are_sorted_by_name_and_deduplicated() {
        let g = Groups::from_names(["zeta", "alpha", "zeta", "Mid"]);
        assert_eq!(g, ["Mid", "alpha", "zeta"]);
        assert_eq!(g.len(), 3);
    }

    #[test]
    fn membership_is_exact_and_case_sensitive() {
        let g = Groups::from_names(["Admins", "engineering"]);
        assert!(g.contains(GroupId::intern("Admins")));
        assert!(!g.contains(GroupId::intern("admins")));
        assert!(!g.contains(GroupId::intern("engineer")));
    }

    #[test]
    fn union_equals_the_set_of_both_lists() {
        let lists: [&[&str]; 6] = [
            &[],
            &["u-b"],
            &["u-a", "u-c", "u-e"],
            &["u-b", "u-d", "u-f", "u-g"],
            &["U-Z", "u-a", "u-é", "u-c"],
            &["u-c", "u-c", "u-a"],
        ];
        for x in lists {
            for y in lists {
                let got = Groups::from_names(x).union(y);
                let want = Groups::from_names(x.iter().chain(y));
                assert_eq!(got, want, "{x:?} ∪ {y:?}");
            }
        }
    }

    #[test]
    fn union_adds_names_once() {
        let g = Groups::from_names(["b", "a"]).union(["c", "a"]);
        assert_eq!(g, ["a", "b", "c"]);
    }

    #[test]
    fn serializes_as_a_list_of_names_and_back() {
        let g = Groups::from_names(["x-2", "x-1"]);
        let json = serde_json::to_string(&g).unwrap();
        assert_eq!(json, r#"["x-1","x-2"]"#);
        let back: Groups = serde_json::from_str(&json).unwrap();
        assert_eq!(back, g);
    }

    #[test]
    fn names_with_escapes_and_from_owned_values_deserialize() {
        let g: Groups = serde_json::from_str(r#"["q\"uote", "tab\tx", "plain"]"#).unwrap();
        assert_eq!(g, ["plain", "q\"uote", "tab\tx"]);
        let v = serde_json::json!(["v-1", "v-2"]);
        let g: Groups = serde_json::from_value(v).unwrap();
        assert_eq!(g, ["v-1", "v-2"]);
    }

    #[test]
    fn a_list_with_a_non_string_is_refused() {
        assert!(serde_json::from_str::<Groups>(r#"["a", 1]"#).is_err());
        assert!(serde_json::from_str::<Groups>(r#""a""#).is_err());
    }

    #[test]
    fn a_set_holds_four_bytes_per_group() {
        let g = Groups::from_names((0..100).map(|i| format!("team-{i}")));
        assert_eq!(g.heap_bytes(), 400);
    }
}
