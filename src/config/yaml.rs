//! YAML parsing shared by the config and policy loaders: serde-saphyr with the
//! key path of the failing node (serde_path_to_error), its errors turned into
//! located problems, and "did you mean" suggestions for near-miss keys.

use serde::de::DeserializeOwned;
use serde_path_to_error::Segment;
use serde_saphyr::{Error as YamlError, Location};

/// One located problem, before it becomes a `ConfigError` or `PolicyError`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    pub line: usize,
    pub col: usize,
    pub key: String,
    pub message: String,
}

/// Line and column (1-based) of a span; `(1, 1)` when unknown.
pub(crate) fn line_col(loc: &Location) -> (usize, usize) {
    let (line, col) = (loc.line() as usize, loc.column() as usize);
    if line == 0 {
        (1, 1)
    } else {
        (line, col.max(1))
    }
}

/// Parse one YAML (or JSON) document into `T`. An empty document (nothing
/// but whitespace and comments) is `Ok(None)`.
///
/// The first pass runs without path tracking (serde_path_to_error's key
/// capture was ~85 % of a 1,000-app policy compile); only a document that
/// fails is parsed again with it, to name the failing key.
pub(crate) fn parse<T: DeserializeOwned>(text: &str) -> Result<Option<T>, Problem> {
    match serde_saphyr::from_str::<Option<T>>(text) {
        Ok(v) => Ok(v),
        Err(_) => parse_tracked(text),
    }
}

/// [`parse`] with the key path of the failing node.
fn parse_tracked<T: DeserializeOwned>(text: &str) -> Result<Option<T>, Problem> {
    let mut path = String::new();
    let res: Result<Option<T>, YamlError> = serde_saphyr::with_deserializer_from_str(text, |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            path = key_path(e.path());
            e.into_inner()
        })
    });
    res.map_err(|e| problem(e.without_snippet(), path))
}

/// Render a serde path as `apps[0].policies[1].include[0]`, dropping the
/// `value` segments that `Spanned<T>` wrappers add. A real key named `value`
/// (always itself `Spanned`) shows up as `value.value` and keeps one.
fn key_path(path: &serde_path_to_error::Path) -> String {
    let segs: Vec<&Segment> = path.iter().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < segs.len() {
        match segs[i] {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } if key == "value" => {
                let next_is_value =
                    matches!(segs.get(i + 1), Some(Segment::Map { key }) if key == "value");
                if next_is_value {
                    push_key(&mut out, key);
                    i += 1;
                }
            }
            Segment::Map { key } => push_key(&mut out, key),
            Segment::Enum { variant } => push_key(&mut out, variant),
            Segment::Unknown => {}
        }
        i += 1;
    }
    out
}

fn push_key(out: &mut String, key: &str) {
    if !out.is_empty() {
        out.push('.');
    }
    out.push_str(key);
}

fn join_key(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn problem(err: &YamlError, path: String) -> Problem {
    let (line, col) = err.location().map(|l| line_col(&l)).unwrap_or((1, 1));
    let (key, message) = match err {
        YamlError::SerdeUnknownField {
            field, expected, ..
        } => (path, unknown("key", field, expected)),
        YamlError::SerdeUnknownVariant {
            variant, expected, ..
        } => (path, unknown("value", variant, expected)),
        YamlError::SerdeMissingField { field, .. } => (
            join_key(&path, field),
            "required key is missing".to_string(),
        ),
        YamlError::SerdeInvalidType {
            unexpected,
            expected,
            ..
        } => (path, format!("expected {expected}, found {unexpected}")),
        YamlError::DuplicateMappingKey { key: Some(k), .. } => {
            (join_key(&path, k), "duplicate key".to_string())
        }
        YamlError::ExpectedMappingEndAfterEnumVariantValue { .. } => (
            path,
            "expected a map with exactly one key (one selector per list item)".to_string(),
        ),
        other => (path, strip_location(&other.to_string())),
    };
    let key = if key.is_empty() {
        "(document)".to_string()
    } else {
        key
    };
    Problem {
        line,
        col,
        key,
        message,
    }
}

/// serde-saphyr appends " at line N, column M"; the location is ours to print.
fn strip_location(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

fn unknown(what: &str, word: &str, expected: &[&str]) -> String {
    match suggest(word, expected) {
        Some(s) => format!("unknown {what} `{word}`, did you mean `{s}`?"),
        None if expected.is_empty() => format!("unknown {what} `{word}`"),
        None => format!(
            "unknown {what} `{word}`, expected one of: {}",
            expected.join(", ")
        ),
    }
}

/// The closest candidate within a small edit distance (optimal string
/// alignment, `strsim`: insertions, deletions, substitutions, adjacent
/// swaps).
pub(crate) fn suggest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    let max = if word.chars().count() >= 5 { 2 } else { 1 };
    candidates
        .iter()
        .map(|c| (strsim::osa_distance(&word.to_ascii_lowercase(), c), *c))
        .filter(|(d, _)| *d <= max)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Doc {
        name: serde_saphyr::Spanned<String>,
        #[serde(default)]
        items: Vec<Item>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Item {
        value: serde_saphyr::Spanned<u32>,
    }

    fn err(text: &str) -> Problem {
        parse::<Doc>(text).expect_err("must fail")
    }

    #[test]
    fn suggests_a_transposed_key() {
        assert_eq!(suggest("emial", &["email", "group"]), Some("email"));
        assert_eq!(suggest("colour", &["email", "group"]), None);
    }

    #[test]
    fn unknown_key_names_path_and_suggestion() {
        let p = err("name: x\nitems:\n  - valeu: 1\n");
        assert_eq!((p.line, p.col), (3, 5));
        assert_eq!(p.key, "items[0].valeu");
        assert_eq!(p.message, "unknown key `valeu`, did you mean `value`?");
    }

    #[test]
    fn unknown_key_without_near_miss_lists_keys() {
        let p = err("name: x\nzzz: 1\n");
        assert_eq!(p.key, "zzz");
        assert_eq!(p.message, "unknown key `zzz`, expected one of: name, items");
    }

    #[test]
    fn missing_key_is_named() {
        let p = err("items: []\n");
        assert_eq!(p.key, "name");
        assert_eq!(p.message, "required key is missing");
    }

    #[test]
    fn real_value_key_is_kept_in_path() {
        let p = err("name: x\nitems:\n  - value: nope\n");
        assert_eq!(p.key, "items[0].value");
        assert_eq!((p.line, p.col), (3, 12));
    }

    #[test]
    fn syntax_error_has_location_without_suffix() {
        let p = err("name: [x\n");
        assert_eq!(p.line, 1);
        assert!(!p.message.contains(" at line "), "{}", p.message);
    }

    #[test]
    fn empty_document_is_none() {
        assert!(parse::<Doc>("# nothing\n").expect("parses").is_none());
    }
}
