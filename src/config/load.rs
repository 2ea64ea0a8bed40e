//! Loading the config file: `${ENV}` expansion, YAML parsing with
//! line/column, validation into [`Config`], all errors collected.

use std::path::Path;

use super::raw::RawConfig;
use super::yaml::{self, Problem};
use super::Config;

/// One problem in the config file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{col}: {key}: {message}")]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub key: String,
    pub message: String,
}

/// Every problem found; never empty.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigError {
    fn from_problem(file: &str, p: Problem) -> ConfigError {
        ConfigError {
            file: file.to_string(),
            line: p.line,
            col: p.col,
            key: p.key,
            message: p.message,
        }
    }

    fn whole_file(file: &str, message: String) -> ConfigError {
        ConfigError {
            file: file.to_string(),
            line: 1,
            col: 1,
            key: "(file)".to_string(),
            message,
        }
    }
}

/// Read and validate a config file. Relative paths resolve against its folder.
pub fn load_file(path: &Path) -> Result<Config, ConfigErrors> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError::whole_file(
            &file,
            format!("cannot read config file: {e}"),
        )])
    })?;
    let base_dir = path.parent().unwrap_or(Path::new("."));
    parse_str(&file, &text, base_dir, &|name| std::env::var(name).ok())
}

/// Validate config text. `file` names it in errors, `base_dir` resolves relative paths,
/// `env` looks up `${VAR}` (tests pass a closure, `load_file` uses the process env).
pub fn parse_str(
    file: &str,
    text: &str,
    base_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let raw = match yaml::parse::<serde_saphyr::Spanned<RawConfig>>(text) {
        Ok(Some(raw)) => raw,
        Ok(None) => {
            return Err(ConfigErrors(vec![ConfigError::whole_file(
                file,
                "config file is empty".to_string(),
            )]))
        }
        Err(p) => return Err(ConfigErrors(vec![ConfigError::from_problem(file, p)])),
    };
    let base_dir = absolute(base_dir);
    super::validate::validate(file, &raw, &base_dir, env).map_err(|mut errs| {
        for e in &mut errs {
            if e.file.is_empty() {
                e.file = file.to_string();
            }
        }
        errs.sort_by_key(|e| (e.line, e.col));
        ConfigErrors(errs)
    })
}

/// Where a config file's policies are and which identity providers it
/// names, read leniently (every other key ignored, nothing validated), so
/// that `check` can go on to the policies of a config that has errors and
/// report both in one run. `None` when even these cannot be read.
pub fn policies_hint(path: &Path) -> Option<(std::path::PathBuf, Vec<String>)> {
    #[derive(serde::Deserialize)]
    struct Idp {
        name: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Lenient {
        policies: Option<String>,
        identity_providers: Option<Vec<Idp>>,
    }
    let text = std::fs::read_to_string(path).ok()?;
    let raw: Lenient = yaml::parse(&text).ok()??;
    let policies = super::env::expand(&raw.policies?, &|n| std::env::var(n).ok()).ok()?;
    let base = absolute(path.parent().unwrap_or(Path::new(".")));
    let idps = raw
        .identity_providers
        .unwrap_or_default()
        .into_iter()
        .filter_map(|i| i.name)
        .collect();
    Some((super::validate::resolve(&base, &policies), idps))
}

/// `base` made absolute against the current directory (lexically; the
/// folder need not exist).
fn absolute(base: &Path) -> std::path::PathBuf {
    let base = if base.as_os_str().is_empty() {
        Path::new(".")
    } else {
        base
    };
    std::path::absolute(base).unwrap_or_else(|_| base.to_path_buf())
}

#[cfg(test)]
mod tests;
