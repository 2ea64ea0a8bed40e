//! The custom claims of an identity: a few configured ID-token claims, kept
//! as one boxed slice sorted by name.
//!
//! A `serde_json::Map` (a `BTreeMap`) allocates a ~600-byte node even for two
//! claims, and every cached session holds one; this holds exactly what it
//! has. Lookups are by name, over a handful of entries. Stored and shown as a
//! JSON object.

use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// Custom claims by name (unique names, sorted).
#[derive(Clone, Default, PartialEq)]
pub struct Claims(Box<[(Box<str>, Value)]>);

impl Claims {
    /// The value of claim `name`.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.0
            .binary_search_by(|(k, _)| (**k).cmp(name))
            .ok()
            .map(|i| &self.0[i].1)
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Set claim `name` (replacing an earlier value).
    pub fn insert(&mut self, name: impl Into<String>, value: Value) {
        let name: Box<str> = name.into().into_boxed_str();
        let mut v = std::mem::take(&mut self.0).into_vec();
        match v.binary_search_by(|(k, _)| k.cmp(&name)) {
            Ok(i) => v[i].1 = value,
            Err(i) => v.insert(i, (name, value)),
        }
        self.0 = v.into_boxed_slice();
    }

    /// The claims in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.0.iter().map(|(k, v)| (&**k, v))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Map<String, Value>> for Claims {
    fn from(map: Map<String, Value>) -> Claims {
        // A JSON map has unique keys; sorted here whatever its ordering.
        let mut v: Vec<(Box<str>, Value)> = map
            .into_iter()
            .map(|(k, v)| (k.into_boxed_str(), v))
            .collect();
        v.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Claims(v.into_boxed_slice())
    }
}

impl fmt::Debug for Claims {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl Serialize for Claims {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.len()))?;
        for (k, v) in self.iter() {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for Claims {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Claims, D::Error> {
        struct ClaimsVisitor;
        impl<'de> Visitor<'de> for ClaimsVisitor {
            type Value = Claims;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of claims")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Claims, A::Error> {
                let mut map = Map::new();
                while let Some((k, v)) = a.next_entry::<String, Value>()? {
                    map.insert(k, v);
                }
                Ok(Claims::from(map))
            }
        }
        d.deserialize_map(ClaimsVisitor)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn get_finds_each_claim_by_exact_name() {
        let mut c = Claims::default();
        c.insert("level", json!(3));
        c.insert("department", json!("eng"));
        assert_eq!(c.get("department"), Some(&json!("eng")));
        assert_eq!(c.get("level"), Some(&json!(3)));
        assert_eq!(c.get("Department"), None);
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn insert_replaces_an_existing_claim() {
        let mut c = Claims::default();
        c.insert("a", json!(1));
        c.insert("a", json!(2));
        assert_eq!(c.len(), 1);
        assert_eq!(c.get("a"), Some(&json!(2)));
    }

    #[test]
    fn serializes_as_an_object_and_back() {
        let c: Claims = serde_json::from_value(json!({"z": [1], "a": {"x": true}})).unwrap();
        let names: Vec<&str> = c.iter().map(|(k, _)| k).collect();
        assert_eq!(names, ["a", "z"]);
        let back = serde_json::to_value(&c).unwrap();
        assert_eq!(back, json!({"a": {"x": true}, "z": [1]}));
    }

    #[test]
    fn a_non_object_is_refused() {
        assert!(serde_json::from_value::<Claims>(json!(["a"])).is_err());
    }
}
