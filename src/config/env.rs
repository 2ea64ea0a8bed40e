//! `${VAR}` expansion in config string values. Expansion runs on parsed
//! string values, never on the YAML text, so a secret containing `#` or `: `
//! cannot change the document's structure. `$${` is a literal `${`.

/// Why a string could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    #[error("environment variable `{0}` is not set")]
    Unset(String),
    #[error("unterminated `${{` (expected `${{NAME}}`)")]
    Unterminated,
    #[error("invalid variable name `{0}` in `${{…}}` (letters, digits and `_`, not starting with a digit)")]
    BadName(String),
}

/// Replace every `${NAME}` in `s` with `env(NAME)`.
pub fn expand(s: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, EnvError> {
    if !s.contains('$') {
        return Ok(s.to_string());
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${") {
            let end = after.find('}').ok_or(EnvError::Unterminated)?;
            let name = &after[..end];
            if !valid_name(name) {
                return Err(EnvError::BadName(name.to_string()));
            }
            let value = env(name).ok_or_else(|| EnvError::Unset(name.to_string()))?;
            out.push_str(&value);
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "SECRET" => Some("s3cr#t: x".to_string()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn expands_variables_anywhere_in_the_string() {
        assert_eq!(expand("a-${SECRET}-b", &env).unwrap(), "a-s3cr#t: x-b");
        assert_eq!(expand("${EMPTY}${SECRET}", &env).unwrap(), "s3cr#t: x");
    }

    #[test]
    fn unset_variable_is_an_error_naming_it() {
        let e = expand("${NOPE}", &env).unwrap_err();
        assert_eq!(e.to_string(), "environment variable `NOPE` is not set");
    }

    #[test]
    fn double_dollar_brace_is_literal() {
        assert_eq!(expand("$${SECRET}", &env).unwrap(), "${SECRET}");
    }

    #[test]
    fn lone_dollar_is_literal() {
        assert_eq!(expand("pa$$word$", &env).unwrap(), "pa$$word$");
    }

    #[test]
    fn unterminated_and_bad_names_are_errors() {
        assert_eq!(expand("${SECRET", &env), Err(EnvError::Unterminated));
        assert_eq!(
            expand("${1X}", &env),
            Err(EnvError::BadName("1X".to_string()))
        );
    }
}
