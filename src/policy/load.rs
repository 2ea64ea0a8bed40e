//! Loading policy YAML: parse (`parse_str`), validate and compile into a
//! `PolicySet`, collecting every problem as `file:line:col: key: message`.
//!
//! All files of a folder are read in lexical order and compiled together:
//! the result is all or nothing. Apps are compiled in `load/app.rs`, their
//! policies and selectors in `load/selector.rs`, service tokens in
//! `load/token.rs`.

mod app;
mod selector;
mod token;

pub use app::default_aud;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_saphyr::Location;

use crate::config::yaml::{self, line_col};
use crate::policy::model::{App, HostPattern, PolicySet};
use crate::policy::raw::RawFile;
use crate::policy::route::Router;

/// One problem found in a policy file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{col}: {key}: {message}")]
pub struct PolicyError {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub key: String,
    pub message: String,
}

/// Every problem found while loading; never empty.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
pub struct PolicyErrors(pub Vec<PolicyError>);

impl PolicyErrors {
    fn whole(file: &str, message: impl Into<String>) -> PolicyErrors {
        PolicyErrors(vec![PolicyError {
            file: file.to_string(),
            line: 1,
            col: 1,
            key: "(file)".to_string(),
            message: message.into(),
        }])
    }
}

/// Where a value sits in a policy file, such as
/// `apps[3].policies[2].include[0].group`: a chain of borrowed parts,
/// formatted only when an error names it. A 1,000-app compile passes some
/// 60,000 of these and formats none when the files are valid.
#[derive(Clone, Copy)]
pub(crate) enum Key<'a> {
    /// A top-level list: `apps`, `service_tokens`.
    Root(&'static str),
    /// `parent.name`
    Field(&'a Key<'a>, &'static str),
    /// `parent[i]`
    Index(&'a Key<'a>, usize),
}

impl<'a> Key<'a> {
    /// `self.name`
    pub(crate) fn field(&'a self, name: &'static str) -> Key<'a> {
        Key::Field(self, name)
    }

    /// `self[i]`
    pub(crate) fn index(&'a self, i: usize) -> Key<'a> {
        Key::Index(self, i)
    }
}

impl fmt::Display for Key<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Root(name) => f.write_str(name),
            Key::Field(parent, name) => write!(f, "{parent}.{name}"),
            Key::Index(parent, i) => write!(f, "{parent}[{i}]"),
        }
    }
}

/// The key of the `apps` list.
const APPS: Key<'static> = Key::Root("apps");

/// Error collector for one file.
pub(crate) struct Cx<'a> {
    pub file: &'a str,
    pub errors: &'a mut Vec<PolicyError>,
    /// The configured identity providers' names, which an app's
    /// `identity_providers` must come from; `None`: not checked (a compile
    /// without a config, in tests and benches).
    pub idps: Option<&'a [String]>,
}

impl Cx<'_> {
    pub(crate) fn err(&mut self, loc: &Location, key: Key<'_>, message: impl Into<String>) {
        let (line, col) = line_col(loc);
        self.errors.push(PolicyError {
            file: self.file.to_string(),
            line,
            col,
            key: key.to_string(),
            message: message.into(),
        });
    }

    /// `file:line:col` of a location.
    pub(crate) fn source(&self, loc: &Location) -> String {
        let (line, col) = line_col(loc);
        format!("{}:{line}:{col}", self.file)
    }

    /// A required key: reports it missing at `at` when absent.
    pub(crate) fn required<'v, T>(
        &mut self,
        v: Option<&'v T>,
        at: &Location,
        key: Key<'_>,
    ) -> Option<&'v T> {
        if v.is_none() {
            self.err(at, key, "required key is missing");
        }
        v
    }

    /// A trimmed, non-empty string.
    pub(crate) fn non_empty(
        &mut self,
        s: &crate::policy::raw::Str,
        key: Key<'_>,
    ) -> Option<String> {
        let v = s.value.trim();
        if v.is_empty() {
            self.err(&s.referenced, key, "must not be empty");
            return None;
        }
        Some(v.to_string())
    }

    /// The name of a configured identity provider (when the compile knows
    /// them), else reported as unknown.
    pub(crate) fn idp_name(&mut self, s: &crate::policy::raw::Str, key: Key<'_>) -> Option<String> {
        let v = self.non_empty(s, key)?;
        match self.idps {
            Some(known) if !known.contains(&v) => {
                let configured = match known {
                    [] => "none".to_string(),
                    k => k.join(", "),
                };
                self.err(
                    &s.referenced,
                    key,
                    format!("identity provider `{v}` is not configured (configured: {configured})"),
                );
                None
            }
            _ => Some(v),
        }
    }
}

/// The policy files behind `path`: the file itself, or the `*.yaml` and
/// `*.yml` files of a folder in lexical order (hidden files skipped).
pub fn policy_files(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    if !std::fs::metadata(path)?.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path)? {
        let p = entry?.path();
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let yaml = name.ends_with(".yaml") || name.ends_with(".yml");
        if yaml && !name.starts_with('.') && p.is_file() {
            files.push(p);
        }
    }
    files.sort();
    Ok(files)
}

/// Parsed policy files kept between reloads: by file name, with the text
/// each was parsed from. Parsing is about 95 % of a compile (serde-saphyr
/// reads about 10 MB/s), so a reload parses again only the files whose text
/// changed; the compile and the cross-file checks always run over every
/// file, so the result is the same as a compile from scratch.
#[derive(Default)]
pub struct ParsedFiles {
    files: HashMap<String, (String, Arc<RawFile>)>,
}

impl fmt::Debug for ParsedFiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParsedFiles")
            .field("files", &self.files.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Load a policy file or a folder of `*.yaml`/`*.yml` files (lexical
/// order). `idps`: the configured identity providers' names, which every
/// app's `identity_providers` must come from (`None`: not checked).
pub fn load_path(path: &Path, idps: Option<&[String]>) -> Result<PolicySet, PolicyErrors> {
    load_path_cached(path, &mut ParsedFiles::default(), idps)
}

/// [`load_path`], parsing only the files `cache` does not hold with the
/// same text, and keeping what it parsed there.
pub fn load_path_cached(
    path: &Path,
    cache: &mut ParsedFiles,
    idps: Option<&[String]>,
) -> Result<PolicySet, PolicyErrors> {
    let shown = path.display().to_string();
    let files = policy_files(path)
        .map_err(|e| PolicyErrors::whole(&shown, format!("cannot read policies: {e}")))?;
    if files.is_empty() {
        return Err(PolicyErrors::whole(
            &shown,
            "no policy files (*.yaml, *.yml) in this folder",
        ));
    }
    let mut sources = Vec::with_capacity(files.len());
    let mut errors = Vec::new();
    for f in files {
        let name = f.display().to_string();
        match std::fs::read_to_string(&f) {
            Ok(text) => sources.push((name, text)),
            Err(e) => {
                errors.extend(PolicyErrors::whole(&name, format!("cannot read policy file: {e}")).0)
            }
        }
    }
    if !errors.is_empty() {
        return Err(PolicyErrors(errors));
    }
    compile(&sources, cache, idps)
}

/// Compile policy files given as `(file name, text)` pairs, in order.
pub fn compile_sources(sources: &[(String, String)]) -> Result<PolicySet, PolicyErrors> {
    compile_sources_cached(sources, &mut ParsedFiles::default())
}

/// [`compile_sources`], reusing the parse of every file whose name and
/// text `cache` holds; afterwards `cache` holds exactly the files of
/// `sources` that parsed.
pub fn compile_sources_cached(
    sources: &[(String, String)],
    cache: &mut ParsedFiles,
) -> Result<PolicySet, PolicyErrors> {
    compile(sources, cache, None)
}

fn compile(
    sources: &[(String, String)],
    cache: &mut ParsedFiles,
    idps: Option<&[String]>,
) -> Result<PolicySet, PolicyErrors> {
    let mut errors: Vec<PolicyError> = Vec::new();
    let mut parsed: Vec<(&str, Arc<RawFile>)> = Vec::new();
    for (file, text) in sources {
        if let Some((seen, raw)) = cache.files.get(file.as_str()) {
            if seen == text {
                parsed.push((file, raw.clone()));
                continue;
            }
        }
        cache.files.remove(file.as_str());
        match yaml::parse::<RawFile>(text) {
            Ok(Some(raw)) => {
                let raw = Arc::new(raw);
                cache
                    .files
                    .insert(file.clone(), (text.clone(), raw.clone()));
                parsed.push((file, raw));
            }
            Ok(None) => errors.extend(PolicyErrors::whole(file, "policy file is empty").0),
            Err(p) => errors.push(PolicyError {
                file: file.clone(),
                line: p.line,
                col: p.col,
                key: p.key,
                message: p.message,
            }),
        }
    }

    let names: std::collections::HashSet<&str> = sources.iter().map(|(f, _)| f.as_str()).collect();
    cache.files.retain(|f, _| names.contains(f.as_str()));

    let mut tokens = Vec::new();
    for (file, raw) in &parsed {
        let mut cx = Cx {
            file,
            errors: &mut errors,
            idps,
        };
        token::compile(
            &mut cx,
            raw.service_tokens.as_deref().unwrap_or_default(),
            &mut tokens,
        );
    }
    let token_names: Vec<&str> = tokens.iter().map(|t| &*t.token.name).collect();

    let mut apps: Vec<Compiled<'_>> = Vec::new();
    for (file, raw) in &parsed {
        let mut cx = Cx {
            file,
            errors: &mut errors,
            idps,
        };
        for (index, a) in raw.apps.as_deref().unwrap_or_default().iter().enumerate() {
            if let Some(app) = app::compile(&mut cx, a, APPS.index(index), &token_names) {
                apps.push(Compiled {
                    app,
                    loc: a.referenced,
                    file,
                    index,
                });
            }
        }
    }
    cross_check(&apps, &mut errors);
    if errors.is_empty() && apps.is_empty() {
        let file = sources.first().map_or("(policies)", |(f, _)| f.as_str());
        errors.extend(PolicyErrors::whole(file, "no apps defined: every request would get 404").0);
    }
    if !errors.is_empty() {
        sort_by_file_order(&mut errors, sources);
        return Err(PolicyErrors(errors));
    }
    let apps: Vec<Arc<App>> = apps.into_iter().map(|c| Arc::new(c.app)).collect();
    let router = Router::build(&apps);
    Ok(PolicySet {
        apps,
        service_tokens: tokens.into_iter().map(|t| t.token).collect(),
        router,
    })
}

/// A compiled app with where it came from, for the cross-file checks.
struct Compiled<'f> {
    app: App,
    loc: Location,
    file: &'f str,
    index: usize,
}

/// Duplicate app names, audiences, and host + path pairs across all files.
fn cross_check(apps: &[Compiled<'_>], errors: &mut Vec<PolicyError>) {
    // The first app of each name and audience, and the apps of each route
    // (host, ASCII-lower-cased path): one pass, not a scan of every earlier
    // app per app (1,000 apps were half a million compares per reload).
    let mut by_name: HashMap<&str, &App> = HashMap::with_capacity(apps.len());
    let mut by_aud: HashMap<&str, &App> = HashMap::with_capacity(apps.len());
    let mut by_route: HashMap<(&HostPattern, String), Vec<&App>> =
        HashMap::with_capacity(apps.len());
    for c in apps {
        let (app, key) = (&c.app, APPS.index(c.index));
        let mut cx = Cx {
            file: c.file,
            errors,
            idps: None,
        };
        if let Some(first) = by_name.get(app.name.as_str()) {
            cx.err(
                &c.loc,
                key.field("name"),
                format!(
                    "duplicate app name `{}` (first defined at {})",
                    app.name, first.source
                ),
            );
        } else if let Some(first) = by_aud.get(app.aud.as_str()) {
            cx.err(
                &c.loc,
                key.field("aud"),
                format!(
                    "audience tag `{}` is already used by app `{}` ({})",
                    app.aud, first.name, first.source
                ),
            );
        }
        // Apps whose paths differ only in case share a list; the exact rule
        // (case matters unless either app ignores it) picks among them.
        let same_route = |a: &&&App| {
            if a.case_insensitive_paths || app.case_insensitive_paths {
                a.path.eq_ignore_ascii_case(&app.path)
            } else {
                a.path == app.path
            }
        };
        let route = by_route
            .entry((&app.host, app.path.to_ascii_lowercase()))
            .or_default();
        if let Some(first) = route.iter().find(same_route) {
            cx.err(
                &c.loc,
                key.field("domain"),
                format!(
                    "same domain and path ({} {}) as app `{}` ({})",
                    app.host.as_written(),
                    app.path,
                    first.name,
                    first.source
                ),
            );
        }
        route.push(app);
        by_name.entry(app.name.as_str()).or_insert(app);
        by_aud.entry(app.aud.as_str()).or_insert(app);
    }
}

/// Errors grouped by file (in load order), then by line and column.
fn sort_by_file_order(errors: &mut [PolicyError], sources: &[(String, String)]) {
    let rank = |f: &str| {
        sources
            .iter()
            .position(|(n, _)| n == f)
            .unwrap_or(usize::MAX)
    };
    errors.sort_by_key(|e| (rank(&e.file), e.line, e.col));
}

#[cfg(test)]
mod tests;
