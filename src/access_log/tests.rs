//! The handle: off writes nothing, events carry the request id of the
//! request they happened in, and each format writes one line per event.

use std::path::Path;

use crate::config::{AccessLogConfig, AccessLogFormat, AccessLogTarget};

use super::*;

fn open(path: &Path, format: AccessLogFormat) -> AccessLog {
    AccessLog::open(Some(&AccessLogConfig {
        target: AccessLogTarget::File(path.to_path_buf()),
        format,
    }))
    .unwrap()
}

fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn off_is_a_no_op() {
    let log = AccessLog::open(None).unwrap();
    assert!(!log.is_on());
    log.reload("success");
    log.flush();
    assert!(log.reopen().is_ok());
}

#[tokio::test]
async fn events_carry_the_request_id_of_their_request() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let log = open(&path, AccessLogFormat::Json);
    let id = http::HeaderValue::from_static("req-42");
    in_request(id, async {
        log.login("success", "okta", Some(("alice@example.com", "00u1")));
        log.revocation("scim_deprovision", "okta", "00u1", 2);
    })
    .await;
    log.scim("DELETE", "Users", Some("u-1"), 204);
    log.reload("success");
    log.flush();
    let got = lines(&path);
    assert_eq!(got.len(), 4);
    assert_eq!(got[0]["type"], "login");
    assert_eq!(got[0]["request_id"], "req-42");
    assert_eq!(got[0]["email"], "alice@example.com");
    assert_eq!(got[1]["type"], "revocation");
    assert_eq!(got[1]["request_id"], "req-42");
    assert_eq!(got[1]["sessions"], 2);
    assert_eq!(got[2]["type"], "scim");
    assert_eq!(got[2]["request_id"], serde_json::Value::Null);
    assert_eq!(got[3]["type"], "reload");
    assert!(got[3].get("request_id").is_none());
}

#[test]
fn text_format_writes_one_line_per_event() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("access.log");
    let log = open(&path, AccessLogFormat::Text);
    log.logout("okta", "00u1", Some("alice@example.com"));
    log.reload("error");
    log.flush();
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].ends_with(" logout request_id=- email=alice@example.com sub=00u1 idp=okta"),
        "{text}"
    );
    assert!(lines[1].ends_with(" reload result=error"), "{text}");
}
