//! Record serialisation: the exact field set and order of each line type,
//! `null` for what is missing, RFC 3339 times, and hosts and paths that
//! cannot break a line (JSON and text).

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::*;

/// 2023-11-14T22:13:20.042Z
fn ts() -> Ts {
    Ts(SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_042))
}

fn request<'a>() -> Request<'a> {
    Request {
        ts: ts(),
        request_id: "3f2a",
        client_ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7)),
        method: "GET",
        host: Some("app.example.com"),
        path: "/dashboard/42",
        status: Some(200),
        app: Some("grafana"),
        decision: "allow",
        policy: Some("engineers with mfa"),
        email: Some("alice@example.com"),
        sub: Some("00u1"),
        idp: Some("okta"),
        service_token: None,
        upstream: Some("http://127.0.0.1:3000"),
        duration_ms: Millis(Duration::from_micros(1234)),
        bytes_sent: 512,
    }
}

fn json(r: &Record<'_>) -> String {
    serde_json::to_string(r).unwrap()
}

/// The keys of a JSON object line, in the order written.
fn keys(line: &str) -> Vec<String> {
    // serde_json's Map sorts keys: read the order from the text instead,
    // which holds only as long as no value contains `","` + a key.
    let v: Value = serde_json::from_str(line).unwrap();
    let obj = v.as_object().unwrap();
    let mut ks: Vec<(usize, String)> = obj
        .keys()
        .map(|k| {
            let at = line
                .find(&format!("\"{k}\":"))
                .unwrap_or_else(|| panic!("{k} in {line}"));
            (at, k.clone())
        })
        .collect();
    ks.sort();
    ks.into_iter().map(|(_, k)| k).collect()
}

#[test]
fn request_line_has_exactly_the_contract_fields_in_order() {
    let line = json(&Record::Request(request()));
    assert_eq!(
        keys(&line),
        [
            "type",
            "ts",
            "request_id",
            "client_ip",
            "method",
            "host",
            "path",
            "status",
            "app",
            "decision",
            "policy",
            "email",
            "sub",
            "idp",
            "service_token",
            "upstream",
            "duration_ms",
            "bytes_sent"
        ]
    );
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["type"], "request");
    assert_eq!(v["ts"], "2023-11-14T22:13:20.042Z");
    assert_eq!(v["client_ip"], "192.0.2.7");
    assert_eq!(v["status"], 200);
    assert_eq!(v["policy"], "engineers with mfa");
    assert_eq!(v["duration_ms"], 1.234);
    assert_eq!(v["bytes_sent"], 512);
}

#[test]
fn missing_values_are_null_not_left_out() {
    let mut r = request();
    (r.host, r.status, r.app, r.policy) = (None, None, None, None);
    (r.email, r.sub, r.idp, r.upstream) = (None, None, None, None);
    let line = json(&Record::Request(r));
    let v: Value = serde_json::from_str(&line).unwrap();
    for k in [
        "host",
        "status",
        "app",
        "policy",
        "email",
        "sub",
        "idp",
        "service_token",
        "upstream",
    ] {
        assert_eq!(v.get(k), Some(&Value::Null), "{k} in {line}");
    }
    assert_eq!(v.as_object().unwrap().len(), 18);
}

#[test]
fn odd_hosts_and_paths_stay_on_one_line_and_round_trip() {
    let host = "a\"b\\c\nd\u{1}é";
    let path = "/x\r\ny\t\"z\"/\u{7f}";
    let mut r = request();
    (r.host, r.path) = (Some(host), path);
    let line = json(&Record::Request(r));
    assert!(!line.contains('\n') && !line.contains('\r'), "{line}");
    let v: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(v["host"], host);
    assert_eq!(v["path"], path);

    let mut r = request();
    (r.host, r.path) = (Some(host), path);
    let mut text = Vec::new();
    Record::Request(r).write_text(&mut text);
    let text = String::from_utf8(text).unwrap();
    assert!(!text.contains('\n') && !text.contains('\r'), "{text}");
    assert!(
        text.contains(r#""GET a\"b\\c\nd\u0001é/x\r\ny\t\"z\"/\u007f""#),
        "{text}"
    );
}

#[test]
fn other_line_types_have_their_fields() {
    let cases: [(Record<'_>, &[&str]); 5] = [
        (
            Record::Login(Login {
                ts: ts(),
                request_id: Some("r1"),
                result: "success",
                idp: "okta",
                email: Some("alice@example.com"),
                sub: Some("00u1"),
            }),
            &["type", "ts", "request_id", "result", "idp", "email", "sub"],
        ),
        (
            Record::Logout(Logout {
                ts: ts(),
                request_id: Some("r1"),
                email: None,
                sub: "00u1",
                idp: "okta",
            }),
            &["type", "ts", "request_id", "email", "sub", "idp"],
        ),
        (
            Record::Scim(Scim {
                ts: ts(),
                request_id: Some("r1"),
                method: "PATCH",
                resource: "Users",
                id: Some("u-1"),
                status: 200,
            }),
            &[
                "type",
                "ts",
                "request_id",
                "method",
                "resource",
                "id",
                "status",
            ],
        ),
        (
            Record::Revocation(Revocation {
                ts: ts(),
                request_id: None,
                reason: "scim_deprovision",
                sub: "00u1",
                idp: "okta",
                sessions: 2,
            }),
            &[
                "type",
                "ts",
                "request_id",
                "reason",
                "sub",
                "idp",
                "sessions",
            ],
        ),
        (
            Record::Reload(Reload {
                ts: ts(),
                result: "error",
            }),
            &["type", "ts", "result"],
        ),
    ];
    for (rec, want) in cases {
        let line = json(&rec);
        assert_eq!(keys(&line), want, "{line}");
    }
    let line = json(&Record::Revocation(Revocation {
        ts: ts(),
        request_id: None,
        reason: "logout",
        sub: "s",
        idp: "i",
        sessions: 1,
    }));
    assert!(
        line.starts_with(
            r#"{"type":"revocation","ts":"2023-11-14T22:13:20.042Z","request_id":null,"#
        ),
        "{line}"
    );
}

#[test]
fn text_request_line_reads_like_a_combined_log() {
    let mut text = Vec::new();
    Record::Request(request()).write_text(&mut text);
    assert_eq!(
        String::from_utf8(text).unwrap(),
        "2023-11-14T22:13:20.042Z request 192.0.2.7 \"GET app.example.com/dashboard/42\" 200 512 1.234ms \
         request_id=3f2a app=grafana decision=allow policy=\"engineers with mfa\" email=alice@example.com \
         sub=00u1 idp=okta service_token=- upstream=http://127.0.0.1:3000"
    );
}

#[test]
fn text_lines_of_other_types() {
    let mut text = Vec::new();
    Record::Scim(Scim {
        ts: ts(),
        request_id: None,
        method: "POST",
        resource: "Users",
        id: Some("a=b c"),
        status: 201,
    })
    .write_text(&mut text);
    assert_eq!(
        String::from_utf8(text).unwrap(),
        "2023-11-14T22:13:20.042Z scim request_id=- method=POST resource=Users id=\"a=b c\" status=201"
    );
    let mut text = Vec::new();
    Record::Reload(Reload {
        ts: ts(),
        result: "success",
    })
    .write_text(&mut text);
    assert_eq!(
        String::from_utf8(text).unwrap(),
        "2023-11-14T22:13:20.042Z reload result=success"
    );
}

#[test]
fn times_are_utc_with_milliseconds() {
    assert_eq!(
        Ts(SystemTime::UNIX_EPOCH).to_string(),
        "1970-01-01T00:00:00.000Z"
    );
    let leap_day = SystemTime::UNIX_EPOCH
        + Duration::from_secs(1_709_251_199)
        + Duration::from_micros(999_999);
    assert_eq!(Ts(leap_day).to_string(), "2024-02-29T23:59:59.999Z");
}

/// The hand-written calendar against the `time` crate, a day and an hour
/// apart over 150 years (leap years and 2000 included).
#[test]
fn times_agree_with_the_time_crate() {
    let mut secs: u64 = 0;
    while secs < 150 * 366 * 86_400 {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
        let want = time::OffsetDateTime::from_unix_timestamp(secs as i64).unwrap();
        let want = format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.000Z",
            want.year(),
            u8::from(want.month()),
            want.day(),
            want.hour(),
            want.minute(),
            want.second()
        );
        assert_eq!(Ts(t).to_string(), want);
        secs += 86_400 + 3_607;
    }
}

/// The hand-written `request` line is byte for byte what serde_json writes,
/// for plain values, values that need escapes, missing values, IPv6, and
/// numbers at their extremes.
#[test]
fn hand_written_request_json_equals_serde_json() {
    let odd = [
        "",
        "plain",
        "quo\"te",
        "back\\slash",
        "new\nline",
        "\u{1}\u{1f}\u{7f}",
        "é ü 日本",
        "tab\there",
    ];
    let mut cases = Vec::new();
    for (i, s) in odd.iter().enumerate() {
        let mut r = request();
        r.request_id = s;
        r.host = Some(s);
        r.path = s;
        r.policy = Some(s);
        r.email = Some(s);
        r.upstream = Some(s);
        r.service_token = (i % 2 == 0).then_some(*s);
        if i % 3 == 0 {
            (r.status, r.app, r.sub, r.idp) = (None, None, None, None);
        }
        cases.push(r);
    }
    for ip in ["0.0.0.0", "255.255.255.255", "10.0.9.100", "::ffff:1.2.3.4"] {
        let mut r = request();
        r.client_ip = ip.parse().unwrap();
        cases.push(r);
    }
    let mut r = request();
    r.client_ip = "2001:db8::1".parse().unwrap();
    r.status = Some(u16::MAX);
    r.bytes_sent = u64::MAX;
    r.duration_ms = Millis(Duration::from_secs(86_400 * 365) + Duration::from_micros(1));
    cases.push(r);
    let mut r = request();
    r.duration_ms = Millis(Duration::ZERO);
    r.ts = Ts(SystemTime::UNIX_EPOCH);
    cases.push(r);
    for r in cases {
        let mut hand = Vec::new();
        r.write_json(&mut hand);
        let hand = String::from_utf8(hand).unwrap();
        assert_eq!(hand, json(&Record::Request(r)));
    }
}

/// The eight-bytes-at-a-time escape check finds a byte that needs an
/// escape at every position of strings of every length up to 40, and
/// passes plain text (non-ASCII included).
#[test]
fn escape_check_finds_every_byte_at_every_position() {
    let alphabet = b"az AZ09/~.-\x7f%";
    for len in 0..40 {
        let plain: Vec<u8> = (0..len).map(|i| alphabet[i % alphabet.len()]).collect();
        assert!(!needs_escape(&plain), "{plain:?}");
        assert!(!needs_escape("é日本語 ü".repeat(len).as_bytes()));
        for at in 0..len {
            for bad in [b'"', b'\\', 0x00, 0x01, 0x1f, b'\n'] {
                let mut s = plain.clone();
                s[at] = bad;
                assert!(needs_escape(&s), "{bad:#x} at {at} of {len}");
            }
        }
    }
}
