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

impl Ts {
    /// `YYYY-MM-DDTHH:MM:SS.mmmZ` into a stack buffer: digits written by
    /// hand (every request line has one; `write!` with padding is slower).
    fn rfc3339(self) -> [u8; 24] {
        let since = self
            .0
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let secs = since.as_secs();
        let (days, rem) = (secs / 86_400, secs % 86_400);
        let (y, m, d) = civil_from_days(days);
        let mut b = *b"0000-00-00T00:00:00.000Z";
        let mut put = |at: usize, width: usize, mut n: u64| {
            for i in (at..at + width).rev() {
                b[i] = b'0' + (n % 10) as u8;
                n /= 10;
            }
        };
        put(0, 4, y.min(9999));
        put(5, 2, m);
        put(8, 2, d);
        put(11, 2, rem / 3600);
        put(14, 2, rem / 60 % 60);
        put(17, 2, rem % 60);
        put(20, 3, u64::from(since.subsec_millis()));
        b
    }
}

/// Year, month (1–12) and day (1–31) of a day count since 1970-01-01, in
/// the proleptic Gregorian calendar (H. Hinnant's `civil_from_days`, for
/// days on or after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

impl fmt::Display for Ts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.rfc3339();
        // Only ASCII digits and separators were written.
        f.write_str(std::str::from_utf8(&b).map_err(|_| fmt::Error)?)
    }
}

impl Serialize for Ts {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let b = self.rfc3339();
        s.serialize_str(std::str::from_utf8(&b).map_err(serde::ser::Error::custom)?)
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

impl Request<'_> {
    /// The JSON object of a `request` line, written by hand: the same bytes
    /// serde_json writes for `Record::Request` (a test holds them equal),
    /// in less time. Every request writes one, so keys and punctuation go
    /// out as constants and a value is escaped only when it has a byte that
    /// needs it.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(br#"{"type":"request","ts":""#);
        out.extend_from_slice(&self.ts.rfc3339());
        out.extend_from_slice(br#"","request_id":"#);
        json_str(out, self.request_id);
        out.extend_from_slice(br#","client_ip":""#);
        match self.client_ip {
            IpAddr::V4(v4) => {
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        out.push(b'.');
                    }
                    push_u8(out, octet);
                }
            }
            v6 => {
                let _ = write!(out, "{v6}");
            }
        }
        out.extend_from_slice(br#"","method":"#);
        json_str(out, self.method);
        out.extend_from_slice(br#","host":"#);
        json_opt(out, self.host);
        out.extend_from_slice(br#","path":"#);
        json_str(out, self.path);
        out.extend_from_slice(br#","status":"#);
        match self.status {
            Some(s) => json_num(out, &s),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(br#","app":"#);
        json_opt(out, self.app);
        out.extend_from_slice(br#","decision":"#);
        json_str(out, self.decision);
        out.extend_from_slice(br#","policy":"#);
        json_opt(out, self.policy);
        out.extend_from_slice(br#","email":"#);
        json_opt(out, self.email);
        out.extend_from_slice(br#","sub":"#);
        json_opt(out, self.sub);
        out.extend_from_slice(br#","idp":"#);
        json_opt(out, self.idp);
        out.extend_from_slice(br#","service_token":"#);
        json_opt(out, self.service_token);
        out.extend_from_slice(br#","upstream":"#);
        json_opt(out, self.upstream);
        out.extend_from_slice(br#","duration_ms":"#);
        json_num(out, &self.duration_ms.value());
        out.extend_from_slice(br#","bytes_sent":"#);
        json_num(out, &self.bytes_sent);
        out.push(b'}');
    }
}

/// A JSON string: copied between quotes when no byte needs an escape,
/// else escaped by serde_json.
fn json_str(out: &mut Vec<u8>, s: &str) {
    if needs_escape(s.as_bytes()) {
        json_num(out, s);
    } else {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    }
}

/// Whether `s` has a byte JSON must escape (`"`, `\`, below 0x20),
/// looking at eight bytes at a time (the classic "has a byte less than /
/// equal to" bit tricks, exact for whether any byte matches).
fn needs_escape(s: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH != 0;
    let word_needs = |x: u64| {
        x.wrapping_sub(ONES * 0x20) & !x & HIGH != 0
            || has_zero(x ^ (ONES * u64::from(b'"')))
            || has_zero(x ^ (ONES * u64::from(b'\\')))
    };
    let mut chunks = s.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        if word_needs(u64::from_ne_bytes(word)) {
            return true;
        }
    }
    // The last 0 to 7 bytes as one more word, padded with a plain byte.
    let rest = chunks.remainder();
    let mut word = [b'a'; 8];
    word[..rest.len()].copy_from_slice(rest);
    word_needs(u64::from_ne_bytes(word))
}

/// `n` in decimal (`fmt` would go through a formatter per octet).
fn push_u8(out: &mut Vec<u8>, n: u8) {
    if n >= 100 {
        out.push(b'0' + n / 100);
    }
    if n >= 10 {
        out.push(b'0' + n / 10 % 10);
    }
    out.push(b'0' + n % 10);
}

fn json_opt(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => json_str(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

/// A value as serde_json writes it (numbers: `itoa` / `ryu`).
fn json_num<T: Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    // Writing a number or a string into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, v);
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
