//! The access log's records: one borrowed struct per line type, written as
//! a JSON object (serde, fields in the order declared, `type` first) or as
//! a text line ([`Record::write_text`]). Pure: no I/O, no clock; nothing
//! here allocates. What a record may hold is fixed by its fields: there is
//! no field for a cookie, a token, a query string or a secret.

use std::fmt;
use std::io::Write as _;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use serde::{Serialize, Serializer};

/// One line of the access log.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record<'a> {
    Request(Request<'a>),
    Login(Login<'a>),
    Logout(Logout<'a>),
    Scim(Scim<'a>),
    Revocation(Revocation<'a>),
    Reload(Reload<'a>),
}

/// A request the proxy answered or forwarded.
#[derive(Debug, Serialize)]
pub struct Request<'a> {
    /// When the request arrived.
    pub ts: Ts,
    pub request_id: &'a str,
    pub client_ip: IpAddr,
    pub method: &'a str,
    /// Lower-case, without port; `None` when the request had no usable host.
    pub host: Option<&'a str>,
    /// The normalised path, never the query.
    pub path: &'a str,
    /// What the client got; `None` when no response was sent (it left).
    pub status: Option<u16>,
    pub app: Option<&'a str>,
    /// The `requests_total{decision}` label.
    pub decision: &'a str,
    /// The deciding policy's name.
    pub policy: Option<&'a str>,
    pub email: Option<&'a str>,
    pub sub: Option<&'a str>,
    pub idp: Option<&'a str>,
    /// The service token's name.
    pub service_token: Option<&'a str>,
    /// The upstream URL as configured, when the request was forwarded.
    pub upstream: Option<&'a str>,
    pub duration_ms: Millis,
    /// Body bytes sent to the client.
    pub bytes_sent: u64,
}

/// A completed login attempt (`logins_total{idp,result}`).
#[derive(Debug, Serialize)]
pub struct Login<'a> {
    pub ts: Ts,
    pub request_id: Option<&'a str>,
    /// A `logins_total` result (`success`, `denied`, `idp_error`, …).
    pub result: &'a str,
    pub idp: &'a str,
    /// Known once the IdP vouched for the user.
    pub email: Option<&'a str>,
    pub sub: Option<&'a str>,
}

/// A session ended by `/logout`.
#[derive(Debug, Serialize)]
pub struct Logout<'a> {
    pub ts: Ts,
    pub request_id: Option<&'a str>,
    pub email: Option<&'a str>,
    pub sub: &'a str,
    pub idp: &'a str,
}

/// A SCIM write (POST, PUT, PATCH, DELETE).
#[derive(Debug, Serialize)]
pub struct Scim<'a> {
    pub ts: Ts,
    pub request_id: Option<&'a str>,
    pub method: &'a str,
    /// The `scim_requests_total{resource}` label (`Users`, `Groups`, …).
    pub resource: &'a str,
    /// The resource's id: from the path, or the created one's.
    pub id: Option<&'a str>,
    pub status: u16,
}

/// Sessions revoked (`sessions_revoked_total{reason}`).
#[derive(Debug, Serialize)]
pub struct Revocation<'a> {
    pub ts: Ts,
    pub request_id: Option<&'a str>,
    pub reason: &'a str,
    pub sub: &'a str,
    pub idp: &'a str,
    /// How many sessions of this user were revoked.
    pub sessions: u64,
}

/// A policy reload (`policy_reloads_total{result}`); no request.
#[derive(Debug, Serialize)]
pub struct Reload<'a> {
    pub ts: Ts,
    pub result: &'a str,
}

/// A wall-clock time, written as RFC 3339 in UTC with milliseconds
/// (`2026-12-07T17:27:20.123Z`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ts(pub SystemTime);

impl fmt::Display for Ts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let since = self
            .0
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let secs = i64::try_from(since.as_secs()).unwrap_or(0);
        let t = time::OffsetDateTime::from_unix_timestamp(secs)
            .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        write!(
            f,
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second(),
            since.subsec_millis()
        )
    }
}

impl Serialize for Ts {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A duration written as milliseconds with microsecond precision (`1.234`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Millis(pub Duration);

impl Millis {
    fn value(self) -> f64 {
        self.0.as_micros() as f64 / 1000.0
    }
}

impl Serialize for Millis {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.value())
    }
}

impl Record<'_> {
    /// The text form, without the newline: `<ts> <type>`, then for a
    /// request `<client_ip> "<method> <host><path>" <status> <bytes_sent>
    /// <duration_ms>ms`, then `key=value` pairs. A missing value is `-`; a
    /// value with a space, quote, backslash, `=` or control character is
    /// quoted with JSON escapes.
    pub fn write_text(&self, out: &mut Vec<u8>) {
        match self {
            Record::Request(r) => {
                let _ = write!(out, "{} request {} \"", r.ts, r.client_ip);
                escape_into(out, r.method);
                out.push(b' ');
                escape_into(out, r.host.unwrap_or("-"));
                escape_into(out, r.path);
                out.push(b'"');
                match r.status {
                    Some(s) => {
                        let _ = write!(out, " {s}");
                    }
                    None => out.extend_from_slice(b" -"),
                }
                let _ = write!(out, " {} {}ms", r.bytes_sent, r.duration_ms.value());
                pair(out, "request_id", Some(r.request_id));
                pair(out, "app", r.app);
                pair(out, "decision", Some(r.decision));
                pair(out, "policy", r.policy);
                pair(out, "email", r.email);
                pair(out, "sub", r.sub);
                pair(out, "idp", r.idp);
                pair(out, "service_token", r.service_token);
                pair(out, "upstream", r.upstream);
            }
            Record::Login(r) => {
                let _ = write!(out, "{} login", r.ts);
                pair(out, "request_id", r.request_id);
                pair(out, "result", Some(r.result));
                pair(out, "idp", Some(r.idp));
                pair(out, "email", r.email);
                pair(out, "sub", r.sub);
            }
            Record::Logout(r) => {
                let _ = write!(out, "{} logout", r.ts);
                pair(out, "request_id", r.request_id);
                pair(out, "email", r.email);
                pair(out, "sub", Some(r.sub));
                pair(out, "idp", Some(r.idp));
            }
            Record::Scim(r) => {
                let _ = write!(out, "{} scim", r.ts);
                pair(out, "request_id", r.request_id);
                pair(out, "method", Some(r.method));
                pair(out, "resource", Some(r.resource));
                pair(out, "id", r.id);
                let _ = write!(out, " status={}", r.status);
            }
            Record::Revocation(r) => {
                let _ = write!(out, "{} revocation", r.ts);
                pair(out, "request_id", r.request_id);
                pair(out, "reason", Some(r.reason));
                pair(out, "sub", Some(r.sub));
                pair(out, "idp", Some(r.idp));
                let _ = write!(out, " sessions={}", r.sessions);
            }
            Record::Reload(r) => {
                let _ = write!(out, "{} reload", r.ts);
                pair(out, "result", Some(r.result));
            }
        }
    }
}

/// ` key=value`, the value quoted when it must be, `-` when missing.
fn pair(out: &mut Vec<u8>, key: &str, value: Option<&str>) {
    out.push(b' ');
    out.extend_from_slice(key.as_bytes());
    out.push(b'=');
    match value {
        None => out.push(b'-'),
        Some(v) if v.is_empty() || v == "-" || v.bytes().any(needs_quotes) => {
            out.push(b'"');
            escape_into(out, v);
            out.push(b'"');
        }
        Some(v) => out.extend_from_slice(v.as_bytes()),
    }
}

fn needs_quotes(b: u8) -> bool {
    matches!(b, b' ' | b'"' | b'\\' | b'=') || b < 0x20 || b == 0x7f
}

/// `s` with JSON string escapes for `"`, `\` and control characters (one
/// event is one line, whatever a client put in its host or path).
fn escape_into(out: &mut Vec<u8>, s: &str) {
    for &b in s.as_bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b if b < 0x20 || b == 0x7f => {
                let _ = write!(out, "\\u{b:04x}");
            }
            b => out.push(b),
        }
    }
}

#[cfg(test)]
mod tests;
