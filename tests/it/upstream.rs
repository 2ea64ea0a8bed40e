//! Upstream failures as clients see them: a refused connect is a 502 and a
//! silent upstream past the app's `read_timeout` a 504, as a page for
//! browsers and JSON otherwise, never Pingora's empty answer with
//! `Server: Pingora`; each counted in `portcullis_upstream_errors_total`.
//! Also the operator metrics that come with them.

use std::time::{Duration, Instant};

use crate::harness::{env, free_port, metric, HTML};

/// Apps on dead and silent upstreams, each under a name of this module's
/// own so that the counters read here move only for these tests.
fn policies(dead: u16, silent: u16) -> String {
    format!(
        r#"
apps:
  - name: upstream-dead
    domain: app.localhost
    upstream: http://127.0.0.1:{dead}
    policies:
      - {{ name: anyone, decision: bypass, include: [{{ everyone: true }}] }}
  - name: upstream-silent
    domain: other.localhost
    upstream: http://127.0.0.1:{silent}
    read_timeout: 1s
    policies:
      - {{ name: anyone, decision: bypass, include: [{{ everyone: true }}] }}
"#
    )
}

/// A TCP server that accepts connections and never answers.
async fn silent_upstream() -> u16 {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
        }
    });
    port
}

/// A refused connect: 502 page for a browser, JSON for an API client, no
/// `Server` header, and one `kind="connect"` count per request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_upstream_is_a_502_page_or_json_and_is_counted() {
    let silent = silent_upstream().await;
    let env = env().policies(&policies(free_port(), silent)).start().await;
    let labels = [("app", "upstream-dead"), ("kind", "connect")];
    let before = metric(
        &env.metrics().await,
        "portcullis_upstream_errors_total",
        &labels,
    );
    let page = env
        .client()
        .get(env.url("app.localhost", "/"))
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 502);
    assert!(
        page.headers().get("server").is_none(),
        "{:?}",
        page.headers()
    );
    let body = page.text().await.unwrap();
    assert!(
        body.contains("<html") && body.contains("not answering"),
        "{body}"
    );
    let api = env
        .client()
        .get(env.url("app.localhost", "/api"))
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 502);
    assert!(api.headers().get("server").is_none());
    let json: serde_json::Value = api.json().await.unwrap();
    assert_eq!(json["error"], "bad_gateway");
    let after = metric(
        &env.metrics().await,
        "portcullis_upstream_errors_total",
        &labels,
    );
    assert_eq!(after - before, 2.0);
}

/// An upstream that accepts and never answers: 504 after the app's
/// `read_timeout` (1 s here, not the 60 s default), counted as `timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_upstream_is_a_504_after_the_apps_read_timeout() {
    let silent = silent_upstream().await;
    let env = env().policies(&policies(free_port(), silent)).start().await;
    let labels = [("app", "upstream-silent"), ("kind", "timeout")];
    let before = metric(
        &env.metrics().await,
        "portcullis_upstream_errors_total",
        &labels,
    );
    let started = Instant::now();
    let r = env
        .client()
        .get(env.url("other.localhost", "/"))
        .send()
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(r.status(), 504);
    assert!(r.headers().get("server").is_none());
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(10),
        "{took:?}"
    );
    let json: serde_json::Value = r.json().await.unwrap();
    assert_eq!(json["error"], "gateway_timeout");
    let after = metric(
        &env.metrics().await,
        "portcullis_upstream_errors_total",
        &labels,
    );
    assert_eq!(after - before, 1.0);
}

/// The metrics operators alert on: the build, the last good config load,
/// and whole-request durations per app.
#[tokio::test]
async fn build_config_and_duration_metrics_are_exported() {
    let env = env().start().await;
    let r = env
        .client()
        .get(env.url("app.localhost", "/public/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = env.metrics().await;
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(
        metric(&text, "portcullis_build_info", &[("version", version)]),
        1.0
    );
    let loaded = metric(
        &text,
        "portcullis_config_last_reload_success_timestamp_seconds",
        &[],
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(loaded > now - 3600.0 && loaded <= now + 1.0, "{loaded}");
    assert!(
        metric(
            &text,
            "portcullis_request_duration_seconds_count",
            &[("app", "public")]
        ) >= 1.0
    );
}

/// CONNECT is refused with the proxy's own 405 (never Pingora's, which
/// says `Server: Pingora`), nothing is tunnelled, and the connection
/// closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_is_refused_with_our_own_405() {
    let env = env().start().await;
    let (status, text) = crate::harness::raw_http(
        &env,
        "CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\nConnection: keep-alive\r\n",
    )
    .await;
    assert_eq!(status, 405, "{text}");
    let lower = text.to_ascii_lowercase();
    assert!(!lower.contains("\r\nserver:"), "{text}");
    assert!(lower.contains("\r\nallow: get"), "{text}");
    assert!(lower.contains("\r\nx-request-id: "), "{text}");
    assert!(env.upstream.seen().is_empty());
}
