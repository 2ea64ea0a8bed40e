//! The access log (`access_log:` in the config; DESIGN.md "Operations"):
//! one line per request the proxy answers or forwards, and per login,
//! logout, SCIM write, revocation and policy reload, as JSON or text.
//!
//! - `record`: the line types and how they are written (pure)
//! - `writer`: the queue and the thread that writes it out
//! - here: [`AccessLog`], the handle the proxy holds (off when not
//!   configured), one method per event type, and the request id of the
//!   request being served ([`in_request`]), which the events raised deep in
//!   the login, logout and SCIM code carry.
//!
//! A request never waits for the log: a line is serialised into a buffer
//! the thread reuses, then copied into the queue. What the proxy writes is
//! only what the record types hold: never a cookie, token, query string or
//! secret.

pub mod record;
pub mod writer;

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::SystemTime;

use crate::config::{AccessLogConfig, AccessLogFormat};
use crate::metrics::metrics;

pub use record::{Millis, Record, Ts};

/// `access_log_dropped_total{reason}` when the queue was full.
pub const DROPPED_QUEUE_FULL: &str = "queue_full";
/// `access_log_dropped_total{reason}` when writing failed.
pub const DROPPED_WRITE_ERROR: &str = "write_error";

/// The access log of a running proxy; cheap to clone. [`AccessLog::off`]
/// (no `access_log` configured) makes every method a no-op.
#[derive(Clone, Default)]
pub struct AccessLog {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    format: AccessLogFormat,
    sink: writer::Sink,
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            None => f.write_str("AccessLog(off)"),
            Some(i) => write!(f, "AccessLog({:?})", i.format),
        }
    }
}

thread_local! {
    /// The line being built, reused: serialising allocates only when a
    /// line is longer than any before on this thread.
    static LINE: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(1024));
}

tokio::task_local! {
    /// The id of the request whose handling raised an event.
    static REQUEST_ID: http::HeaderValue;
}

/// Run `f` (the handling of one proxy-owned or SCIM request) with `id` as
/// the request id of the events it logs.
pub async fn in_request<F: Future>(id: http::HeaderValue, f: F) -> F::Output {
    REQUEST_ID.scope(id, f).await
}

/// The request id set by [`in_request`] around the current task, if any.
fn current_request_id() -> Option<http::HeaderValue> {
    REQUEST_ID.try_with(|id| id.clone()).ok()
}

impl AccessLog {
    /// No access log.
    pub fn off() -> AccessLog {
        AccessLog { inner: None }
    }

    /// The access log `cfg` asks for (`None`: off). A file that cannot be
    /// opened for appending is an error (start-up fails, naming it).
    pub fn open(cfg: Option<&AccessLogConfig>) -> io::Result<AccessLog> {
        let Some(cfg) = cfg else {
            return Ok(AccessLog::off());
        };
        let m = &metrics().access_log_dropped_total;
        let sink = writer::Sink::open(
            &cfg.target,
            m.with_label_values(&[DROPPED_QUEUE_FULL]),
            m.with_label_values(&[DROPPED_WRITE_ERROR]),
        )?;
        Ok(AccessLog {
            inner: Some(Arc::new(Inner {
                format: cfg.format,
                sink,
            })),
        })
    }

    /// Whether lines are written (callers skip building a record if not).
    #[inline]
    pub fn is_on(&self) -> bool {
        self.inner.is_some()
    }

    /// Write one record.
    pub fn write(&self, rec: &Record<'_>) {
        let Some(inner) = &self.inner else { return };
        LINE.with_borrow_mut(|buf| {
            buf.clear();
            match (inner.format, rec) {
                // The line every request writes, by hand (same bytes).
                (AccessLogFormat::Json, Record::Request(r)) => r.write_json(buf),
                (AccessLogFormat::Json, _) => {
                    if let Err(e) = serde_json::to_writer(&mut *buf, rec) {
                        // Unreachable for these records (string keys, no maps).
                        tracing::warn!(error = %e, "Access log line not serialised");
                        return;
                    }
                }
                (AccessLogFormat::Text, _) => rec.write_text(buf),
            }
            buf.push(b'\n');
            inner.sink.push(buf);
            if buf.capacity() > 64 << 10 {
                buf.shrink_to(1024);
            }
        });
    }

    /// A completed login attempt; `user` is `(email, sub)` once the IdP
    /// vouched for one. Where `logins_total` is counted.
    pub fn login(&self, result: &str, idp: &str, user: Option<(&str, &str)>) {
        if !self.is_on() {
            return;
        }
        let id = current_request_id();
        self.write(&Record::Login(record::Login {
            ts: Ts(SystemTime::now()),
            request_id: id.as_ref().and_then(|v| v.to_str().ok()),
            result,
            idp,
            email: user.map(|u| u.0),
            sub: user.map(|u| u.1),
        }));
    }

    /// A session ended by `/logout`.
    pub fn logout(&self, idp: &str, sub: &str, email: Option<&str>) {
        if !self.is_on() {
            return;
        }
        let id = current_request_id();
        self.write(&Record::Logout(record::Logout {
            ts: Ts(SystemTime::now()),
            request_id: id.as_ref().and_then(|v| v.to_str().ok()),
            email,
            sub,
            idp,
        }));
    }

    /// A SCIM write (`method` is POST, PUT, PATCH or DELETE).
    pub fn scim(&self, method: &str, resource: &str, id: Option<&str>, status: u16) {
        if !self.is_on() {
            return;
        }
        let rid = current_request_id();
        self.write(&Record::Scim(record::Scim {
            ts: Ts(SystemTime::now()),
            request_id: rid.as_ref().and_then(|v| v.to_str().ok()),
            method,
            resource,
            id,
            status,
        }));
    }

    /// `sessions` sessions of `sub` (at `idp`) revoked for `reason` (a
    /// `sessions_revoked_total` reason). Where that metric is counted.
    pub fn revocation(&self, reason: &str, idp: &str, sub: &str, sessions: u64) {
        if !self.is_on() {
            return;
        }
        let id = current_request_id();
        self.write(&Record::Revocation(record::Revocation {
            ts: Ts(SystemTime::now()),
            request_id: id.as_ref().and_then(|v| v.to_str().ok()),
            reason,
            sub,
            idp,
            sessions,
        }));
    }

    /// A policy reload finished: `result` is `success` or `error` (the
    /// `policy_reloads_total` label). Call it wherever that is counted.
    pub fn reload(&self, result: &str) {
        if !self.is_on() {
            return;
        }
        self.write(&Record::Reload(record::Reload {
            ts: Ts(SystemTime::now()),
            result,
        }));
    }

    /// Reopen the log file by its path, for log rotation (logrotate moves
    /// the file, then signals the proxy). SIGHUP calls this once it is
    /// wired to the access log. No-op when off or on standard output.
    pub fn reopen(&self) -> io::Result<()> {
        match &self.inner {
            Some(i) => i.sink.reopen(),
            None => Ok(()),
        }
    }

    /// Write every queued line now (at shutdown; tests).
    pub fn flush(&self) {
        if let Some(i) = &self.inner {
            i.sink.flush();
        }
    }
}

#[cfg(test)]
mod tests;
