//! Who the client is, over the wire: behind `trusted_proxies` the client
//! address comes from `X-Forwarded-For` (right-most untrusted) and decides
//! `ip:` selectors and the forwarded `X-Forwarded-For`; from any other peer
//! the header is ignored. Every response carries an `X-Request-Id` (a
//! trusted proxy's, else generated) that the upstream and error pages see.

use crate::harness::{env, HTML};

/// A bypass for one documentation range, a login for everyone else.
const POLICIES: &str = r#"
apps:
  - name: client-ip
    domain: app.localhost
    upstream: ${UPSTREAM}
    policies:
      - name: office
        decision: bypass
        include: [{ ip: 203.0.113.0/24 }]
      - name: staff
        decision: allow
        include: [{ email_domain: example.com }]
"#;

fn is_generated_id(v: &str) -> bool {
    v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_from_a_trusted_peer_is_the_client_address() {
    let env = env()
        .policies(POLICIES)
        .config("trusted_proxies: [127.0.0.0/8]\n")
        .start()
        .await;
    // The client forged an office address in front; the balancer
    // appended the address it saw, which is in the office range.
    let r = env
        .client()
        .get(env.url("app.localhost", "/through"))
        .header("x-forwarded-for", "198.51.100.66, 203.0.113.9")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the office bypass applies");
    let seen = env.upstream.seen();
    let last = seen.last().expect("the upstream saw the request");
    assert_eq!(last.uri, "/through");
    assert_eq!(last.header_values("x-forwarded-for"), vec!["203.0.113.9"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_forwarded_for_behind_a_trusted_peer_is_not_believed() {
    let env = env()
        .policies(POLICIES)
        .config("trusted_proxies: [127.0.0.0/8]\n")
        .start()
        .await;
    // The office address is the forged left-most entry; the balancer saw
    // 198.51.100.66.
    let r = env
        .client()
        .get(env.url("app.localhost", "/forged"))
        .header("x-forwarded-for", "203.0.113.9, 198.51.100.66")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(env.upstream.seen().iter().all(|s| s.uri != "/forged"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_from_an_untrusted_peer_is_ignored() {
    let env = env()
        .policies(POLICIES)
        .config("trusted_proxies: [10.0.0.0/8]\n")
        .start()
        .await;
    let r = env
        .client()
        .get(env.url("app.localhost", "/spoofed"))
        .header("x-forwarded-for", "203.0.113.9")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "loopback is not a trusted proxy here");
    assert!(env.upstream.seen().iter().all(|s| s.uri != "/spoofed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_upstream_gets_the_client_address_not_the_chain() {
    let env = env().start().await;
    // The harness's `public` app bypasses everyone.
    let r = env
        .client()
        .get(env.url("app.localhost", "/public/xff"))
        .header("x-forwarded-for", "203.0.113.9")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = env.upstream.seen();
    let s = seen.iter().find(|s| s.uri == "/public/xff").unwrap();
    assert_eq!(s.header_values("x-forwarded-for"), vec!["127.0.0.1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_has_a_request_id_that_the_upstream_sees_too() {
    let env = env().start().await;
    let r = env
        .client()
        .get(env.url("app.localhost", "/public/rid"))
        .header("x-request-id", "client-chosen-id")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert!(is_generated_id(&id), "a client's own id is replaced: {id}");
    let seen = env.upstream.seen();
    let s = seen.iter().find(|s| s.uri == "/public/rid").unwrap();
    assert_eq!(s.header_values("x-request-id"), vec![id.as_str()]);

    // The proxy's own answers too: JSON 401, and a page that shows it.
    let r = env
        .client()
        .get(env.url("app.localhost", "/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(is_generated_id(
        r.headers()["x-request-id"].to_str().unwrap()
    ));
    let r = env
        .client()
        .get(env.url("nowhere.localhost", "/"))
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    let id = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert!(is_generated_id(&id));
    let body = r.text().await.unwrap();
    assert!(body.contains(&id), "the page shows the request id: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxys_request_id_is_kept() {
    let env = env().config("trusted_proxies: [127.0.0.1]\n").start().await;
    let r = env
        .client()
        .get(env.url("app.localhost", "/public/kept"))
        .header("x-request-id", "lb-7f3a-0001")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "lb-7f3a-0001");
    let seen = env.upstream.seen();
    let s = seen.iter().find(|s| s.uri == "/public/kept").unwrap();
    assert_eq!(s.header_values("x-request-id"), vec!["lb-7f3a-0001"]);
    // One that would break a log line is replaced even from a trusted peer.
    let r = env
        .client()
        .get(env.url("app.localhost", "/public/bad"))
        .header("x-request-id", "a\"b")
        .send()
        .await
        .unwrap();
    assert!(is_generated_id(
        r.headers()["x-request-id"].to_str().unwrap()
    ));
}

/// Client-address headers other than `X-Forwarded-For`, each naming an
/// address inside the harness's `ip: 10.0.0.0/8` bypass, from a peer the
/// config does not trust and from one it does: none makes the bypass apply
/// (only a trusted peer's `X-Forwarded-For` is believed, DESIGN
/// "Operations"). Control: the trusted peer's `X-Forwarded-For` naming the
/// same address does bypass, so the policy is live and the address is in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_ip_headers_cannot_claim_an_ip_bypass() {
    let spoofs: &[(&str, &str)] = &[
        ("x-forwarded-for", "10.1.2.3"),
        ("true-client-ip", "10.1.2.3"),
        ("x-real-ip", "10.1.2.3"),
        ("x-client-ip", "10.1.2.3"),
        ("cf-connecting-ip", "10.1.2.3"),
        ("forwarded", "for=10.1.2.3"),
    ];
    let untrusted = env()
        .config("trusted_proxies: [192.0.2.0/24]\n")
        .start()
        .await;
    let trusted = env()
        .config("trusted_proxies: [127.0.0.0/8]\n")
        .start()
        .await;
    for (env, trusted_peer) in [(&untrusted, false), (&trusted, true)] {
        for (i, (name, value)) in spoofs.iter().enumerate() {
            if trusted_peer && *name == "x-forwarded-for" {
                continue;
            }
            let path = format!("/spoof-{i}");
            let r = env
                .client()
                .get(env.url("app.localhost", &path))
                .header(*name, *value)
                .send()
                .await
                .unwrap();
            assert_eq!(
                r.status(),
                401,
                "{name}: {value} from a peer trusted={trusted_peer} is not the client"
            );
            assert!(env.upstream.seen().iter().all(|s| s.uri != path), "{name}");
        }
    }
    let r = trusted
        .client()
        .get(trusted.url("app.localhost", "/control"))
        .header("x-forwarded-for", "10.1.2.3")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "control: the bypass applies to 10.1.2.3");
    assert!(trusted.upstream.seen().iter().any(|s| s.uri == "/control"));
}
