//! SIGHUP: reload what can change while the proxy runs, and say what cannot.
//!
//! A reload ([`Reloader::reload`]) does three things and returns one
//! [`ReloadOutcome`], which [`report`] logs (the one place a reload is
//! reported):
//!
//! - the policies, through the policy watcher (`PolicyHandle::reload_now`):
//!   counted in `portcullis_policy_reloads_total{result}`, the last good
//!   set kept on failure, as for a file change;
//! - every TLS listener's certificate and key, read again from their files
//!   (`server::tls`): new handshakes get the new pair, open connections
//!   keep theirs, a bad pair keeps the last good one;
//! - the config file, read again: each top-level key whose value changed
//!   since start is named as needing a restart (names only: values may be
//!   secrets), and a file that no longer validates is reported;
//! - the access log file, reopened by its path (after logrotate moved it).
//!
//! [`on_hangup`] installs the SIGHUP handler (only `run` and `demo` do:
//! in-process servers call [`Reloader::reload`] themselves).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::access_log::AccessLog;
use crate::config::{Config, ConfigErrors};
use crate::policy::reload::{PolicyHandle, ReloadNowError};
use crate::server::tls::{CertReload, TlsCerts};

/// The config file as it was read at start: its text is what a reload
/// compares the file with.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    path: PathBuf,
    text: String,
}

impl ConfigFile {
    /// Read the file (an unreadable file is one error, worded as
    /// `config::load_file` words it).
    pub fn read(path: &Path) -> Result<ConfigFile, ConfigErrors> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(ConfigFile {
                path: path.to_path_buf(),
                text,
            }),
            Err(e) => Err(ConfigErrors(vec![crate::config::ConfigError {
                file: path.display().to_string(),
                line: 1,
                col: 1,
                key: "(file)".into(),
                message: format!("cannot read config file: {e}"),
            }])),
        }
    }

    /// Validate the text read (relative paths against the file's folder).
    pub fn load(&self) -> Result<Config, ConfigErrors> {
        let base = self.path.parent().unwrap_or(Path::new("."));
        crate::config::parse_str(
            &self.path.display().to_string(),
            &self.text,
            base,
            &|name| std::env::var(name).ok(),
        )
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// What a reload found in the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigCheck {
    /// No config file to compare (`demo`, in-process servers).
    NotCompared,
    /// Every top-level key as at start.
    Unchanged,
    /// These top-level keys changed (added, removed or edited); they take
    /// effect at the next start.
    NeedsRestart(Vec<String>),
    /// The file cannot be read now.
    Unreadable(String),
    /// The file no longer validates: where (`file:line:col: key`), without
    /// the messages (they may quote values). A restart would fail.
    Invalid(Vec<String>),
}

/// Everything one reload did.
#[derive(Debug)]
pub struct ReloadOutcome {
    pub policies: Result<(), ReloadNowError>,
    /// One entry per TLS listener.
    pub certificates: Vec<CertReload>,
    pub config: ConfigCheck,
    /// Reopening the access log file (`Ok` when off or on stdout).
    pub access_log: Result<(), String>,
}

impl ReloadOutcome {
    /// `success` when the policies and every certificate reloaded and the
    /// config file still validates (keys that need a restart are not a
    /// failure of the reload), else `error`.
    pub fn result(&self) -> &'static str {
        let ok = self.policies.is_ok()
            && self.access_log.is_ok()
            && self.certificates.iter().all(|c| c.result.is_ok())
            && !matches!(
                self.config,
                ConfigCheck::Unreadable(_) | ConfigCheck::Invalid(_)
            );
        if ok {
            "success"
        } else {
            "error"
        }
    }

    /// The top-level keys that changed and need a restart.
    pub fn restart_needed(&self) -> &[String] {
        match &self.config {
            ConfigCheck::NeedsRestart(keys) => keys,
            _ => &[],
        }
    }
}

/// What a reload works on: the live policies, the listeners' certificates,
/// and the config file as read at start.
#[derive(Debug)]
pub struct Reloader {
    policies: Arc<PolicyHandle>,
    certs: TlsCerts,
    config: Option<ConfigFile>,
    access_log: AccessLog,
}

impl Reloader {
    pub fn new(
        policies: Arc<PolicyHandle>,
        certs: TlsCerts,
        config: Option<ConfigFile>,
        access_log: AccessLog,
    ) -> Self {
        Reloader {
            policies,
            certs,
            config,
            access_log,
        }
    }

    /// The listeners' certificate stores (for a listener of one's own).
    pub fn certs(&self) -> &TlsCerts {
        &self.certs
    }

    /// Reload policies and certificates and compare the config file: what
    /// SIGHUP runs. Does not log: pass the outcome to [`report`].
    pub async fn reload(&self) -> ReloadOutcome {
        let policies = self.policies.reload_now().await;
        let certs = self.certs.clone();
        let config = self.config.clone();
        let access_log = self.access_log.clone();
        // File reads and parsing: off the runtime's worker threads.
        let (certificates, config, access_log) = tokio::task::spawn_blocking(move || {
            (
                certs.reload_all(),
                config.as_ref().map_or(ConfigCheck::NotCompared, compare),
                access_log.reopen().map_err(|e| e.to_string()),
            )
        })
        .await
        .unwrap_or_else(|e| {
            (
                Vec::new(),
                ConfigCheck::Unreadable(format!("reload task failed: {e}")),
                Err(format!("reload task failed: {e}")),
            )
        });
        ReloadOutcome {
            policies,
            certificates,
            config,
            access_log,
        }
    }
}

/// Read the config file again and compare it with the text read at start.
fn compare(at_start: &ConfigFile) -> ConfigCheck {
    let now = match ConfigFile::read(&at_start.path) {
        Ok(f) => f,
        Err(e) => return ConfigCheck::Unreadable(e.to_string()),
    };
    if let Err(errs) = now.load() {
        return ConfigCheck::Invalid(
            errs.0
                .iter()
                .map(|e| format!("{}:{}:{}: {}", e.file, e.line, e.col, e.key))
                .collect(),
        );
    }
    match (top_level(&at_start.text), top_level(&now.text)) {
        (Some(before), Some(after)) => {
            let changed = changed_keys(&before, &after);
            if changed.is_empty() {
                ConfigCheck::Unchanged
            } else {
                ConfigCheck::NeedsRestart(changed)
            }
        }
        // Both validated, so both parse; should one not, say so.
        _ => ConfigCheck::Unreadable("cannot compare the config file with the one at start".into()),
    }
}

/// The top-level keys of a config text and their (unexpanded) values.
fn top_level(text: &str) -> Option<BTreeMap<String, serde_json::Value>> {
    crate::config::yaml::parse::<BTreeMap<String, serde_json::Value>>(text)
        .ok()
        .map(Option::unwrap_or_default)
}

/// Keys added, removed or changed, in name order.
fn changed_keys(
    before: &BTreeMap<String, serde_json::Value>,
    after: &BTreeMap<String, serde_json::Value>,
) -> Vec<String> {
    let mut keys: Vec<String> = before
        .keys()
        .chain(after.keys())
        .filter(|k| before.get(*k) != after.get(*k))
        .cloned()
        .collect();
    keys.sort();
    keys.dedup();
    keys
}

/// Log a reload's outcome: the one place a reload is reported.
pub fn report(outcome: &ReloadOutcome) {
    for c in &outcome.certificates {
        match &c.result {
            Ok(true) => tracing::info!(listener = %c.addr, "TLS certificate reloaded"),
            Ok(false) => tracing::debug!(listener = %c.addr, "TLS certificate unchanged"),
            Err(e) => tracing::warn!(
                listener = %c.addr,
                error = %e,
                "TLS certificate reload failed; keeping the current certificate"
            ),
        }
    }
    if let Err(e) = &outcome.access_log {
        tracing::warn!(error = %e, "Cannot reopen the access log file; writing to the one open before");
    }
    // An invalid policy set is logged with its errors by the policy
    // watcher's reporter; only a reload that could not run is told here.
    match &outcome.policies {
        Ok(()) | Err(ReloadNowError::Invalid(_)) => {}
        Err(e) => tracing::warn!(error = %e, "Policy reload failed; keeping the current policies"),
    }
    match &outcome.config {
        ConfigCheck::NotCompared | ConfigCheck::Unchanged => {}
        ConfigCheck::NeedsRestart(keys) => {
            for key in keys {
                tracing::warn!(key = %key, "Config key changed; it needs a restart");
            }
        }
        ConfigCheck::Unreadable(e) => {
            tracing::warn!(error = %e, "Cannot read the config file to compare it")
        }
        ConfigCheck::Invalid(at) => tracing::warn!(
            errors = %at.join(", "),
            "The config file has errors; a restart would fail (run `portcullis check`)"
        ),
    }
    let certificates_ok = outcome
        .certificates
        .iter()
        .filter(|c| c.result.is_ok())
        .count();
    tracing::info!(
        result = outcome.result(),
        policies = if outcome.policies.is_ok() {
            "success"
        } else {
            "error"
        },
        certificates = certificates_ok,
        certificates_failed = outcome.certificates.len() - certificates_ok,
        restart_needed = outcome.restart_needed().len(),
        "Reload done"
    );
}

/// Install the SIGHUP handler now, so that from here on SIGHUP no longer
/// ends the process. Call inside a tokio runtime; hand the result to
/// [`on_hangup`] once there is something to reload (signals received in
/// between are kept).
pub fn hangup_signal() -> std::io::Result<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
}

/// Reload and report on every SIGHUP (several received during one reload
/// make one more reload), on the current runtime.
pub fn on_hangup(
    mut hangup: tokio::signal::unix::Signal,
    reloader: Arc<Reloader>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            tracing::info!("SIGHUP received: reloading policies and TLS certificates");
            report(&reloader.reload().await);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(text: &str) -> BTreeMap<String, serde_json::Value> {
        top_level(text).expect("parses")
    }

    #[test]
    fn changed_added_and_removed_keys_are_named_once_in_order() {
        let before = keys("threads: 2\nauth_domain: a.example.com\nstore: sqlite://x.db\nmetrics: { listen: 127.0.0.1:1 }\n");
        let after = keys("auth_domain: a.example.com\nthreads: 3\nmetrics: { listen: 127.0.0.1:2 }\nkey_dir: k\n");
        assert_eq!(
            changed_keys(&before, &after),
            ["key_dir", "metrics", "store", "threads"]
        );
    }

    #[test]
    fn formatting_and_comments_are_not_changes() {
        let before = keys("session: { duration: 1h }\n");
        let after = keys("# a comment\nsession:\n  duration: 1h\n");
        assert!(changed_keys(&before, &after).is_empty());
    }

    #[test]
    fn an_outcome_with_a_failed_certificate_is_an_error() {
        let ok = ReloadOutcome {
            policies: Ok(()),
            certificates: vec![CertReload {
                addr: "127.0.0.1:1".parse().unwrap(),
                result: Ok(true),
            }],
            config: ConfigCheck::NeedsRestart(vec!["threads".into()]),
            access_log: Ok(()),
        };
        assert_eq!(ok.result(), "success");
        assert_eq!(ok.restart_needed(), ["threads"]);
        let failed = ReloadOutcome {
            certificates: vec![CertReload {
                addr: "127.0.0.1:1".parse().unwrap(),
                result: Err(crate::server::preflight::TlsFileError::Cert {
                    path: "c.pem".into(),
                    reason: "gone".into(),
                }),
            }],
            ..ok
        };
        assert_eq!(failed.result(), "error");
    }

    #[test]
    fn an_outcome_whose_access_log_did_not_reopen_is_an_error() {
        let outcome = ReloadOutcome {
            policies: Ok(()),
            certificates: Vec::new(),
            config: ConfigCheck::Unchanged,
            access_log: Err("Permission denied".into()),
        };
        assert_eq!(outcome.result(), "error");
    }

    #[test]
    fn an_invalid_config_file_names_places_not_values() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("portcullis.yaml");
        std::fs::write(
            &path,
            "listen: [{ addr: 127.0.0.1:1 }]\nauth_domain: a.example.com\npolicies: p\n",
        )
        .unwrap();
        let start = ConfigFile::read(&path).unwrap();
        assert_eq!(compare(&start), ConfigCheck::Unchanged);
        std::fs::write(&path, "listen: [{ addr: 127.0.0.1:1 }]\nauth_domain: a.example.com\npolicies: p\nthreads: 0\nsession: { cookie_name: 'sekrit value' }\n").unwrap();
        match compare(&start) {
            ConfigCheck::Invalid(at) => {
                let text = at.join(", ");
                assert!(text.contains(":4:10: threads"), "{text}");
                assert!(text.contains("session.cookie_name"), "{text}");
                assert!(!text.contains("sekrit"), "{text}");
            }
            other => panic!("{other:?}"),
        }
        std::fs::write(&path, "listen: [{ addr: 127.0.0.1:1 }]\nauth_domain: b.example.com\npolicies: p\nthreads: 2\n").unwrap();
        assert_eq!(
            compare(&start),
            ConfigCheck::NeedsRestart(vec!["auth_domain".into(), "threads".into()])
        );
    }
}
