//! `proxy_protocol: true` listeners over real sockets: the PROXY header's
//! source is the client that `ip:` selectors and the forwarded
//! `X-Forwarded-For` see (HTTP/1, and HTTP/2 over TLS); a connection from a
//! peer outside `trusted_proxies`, or without a valid header, is closed
//! unanswered and counted; a real HAProxy (`send-proxy-v2`) in front.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ppp::v2::{Addresses, Builder, Command as PpCommand, Protocol, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::harness::{env, eventually, free_port, metric, Env};

/// Bypass for a documentation range, for HAProxy's test client
/// (127.0.0.2) and for the balancer itself (127.0.0.1, its health checks);
/// a login for everyone else.
const POLICIES: &str = r#"
apps:
  - name: pp
    domain: app.localhost
    upstream: ${UPSTREAM}
    policies:
      - name: office
        decision: bypass
        include: [{ ip: 203.0.113.0/24 }, { ip: 127.0.0.2/32 }]
      - name: balancer
        decision: bypass
        include: [{ ip: 127.0.0.1/32 }]
      - name: staff
        decision: allow
        include: [{ email_domain: example.com }]
"#;

/// The balancer is the test itself, on 127.0.0.1.
const TRUST_LOOPBACK_ONE: &str = "trusted_proxies: [127.0.0.1/32]\n";

const REJECTED: &str = "portcullis_proxy_protocol_rejected_total";

async fn pp_env(tls: bool, config: &str) -> Env {
    env()
        .policies(POLICIES)
        .config(config)
        .proxy_protocol_listener(tls)
        .start()
        .await
}

fn v2_header(command: PpCommand, src: &str, dst: &str) -> Vec<u8> {
    let addrs: Addresses = match command {
        PpCommand::Local => Addresses::Unspecified,
        PpCommand::Proxy => (
            src.parse::<SocketAddr>().unwrap(),
            dst.parse::<SocketAddr>().unwrap(),
        )
            .into(),
    };
    let protocol = match command {
        PpCommand::Local => Protocol::Unspecified,
        PpCommand::Proxy => Protocol::Stream,
    };
    Builder::with_addresses(Version::Two | command, protocol, addrs)
        .build()
        .unwrap()
}

/// Send `prefix` then a `GET path` for app.localhost (with `extra` header
/// lines) on a new connection to `port`; the whole answer (empty when the
/// connection was closed unanswered).
async fn exchange(port: u16, prefix: &[u8], path: &str, extra: &str) -> String {
    let mut out = prefix.to_vec();
    out.extend_from_slice(
        format!("GET {path} HTTP/1.1\r\nHost: app.localhost\r\n{extra}Connection: close\r\n\r\n")
            .as_bytes(),
    );
    send_raw(port, &out).await
}

/// Send `bytes` on a new connection to `port`; everything read until the
/// proxy closes it.
async fn send_raw(port: u16, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    // A refused connection may be closed before all of it is written.
    let _ = s.write_all(bytes).await;
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(15), s.read_to_end(&mut buf)).await;
    read.expect("the proxy answers or closes within 15 s")
        .unwrap_or_default();
    String::from_utf8_lossy(&buf).into_owned()
}

fn status(answer: &str) -> u16 {
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"))
}

/// The `X-Forwarded-For` values the upstream saw for `path`.
fn forwarded_for(env: &Env, path: &str) -> Vec<String> {
    let seen = env.upstream.seen();
    let s = seen
        .iter()
        .find(|s| s.uri == path)
        .unwrap_or_else(|| panic!("the upstream never saw {path}"));
    s.header_values("x-forwarded-for")
        .into_iter()
        .map(str::to_string)
        .collect()
}

fn upstream_never_saw(env: &Env, path: &str) -> bool {
    env.upstream.seen().iter().all(|s| s.uri != path)
}

/// A v1 header's source is the client: the office bypass applies to it and
/// the upstream gets it as `X-Forwarded-For`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_header_source_is_the_client_address() {
    let env = pp_env(false, TRUST_LOOPBACK_ONE).await;
    let header = b"PROXY TCP4 203.0.113.9 127.0.0.1 56324 443\r\n";
    let answer = exchange(env.pp_ports[0], header, "/v1", "").await;
    assert_eq!(status(&answer), 200, "{answer}");
    assert_eq!(forwarded_for(&env, "/v1"), ["203.0.113.9"]);
}

/// The same with the binary v2 header, IPv6 source included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v2_header_source_is_the_client_address() {
    let env = pp_env(false, TRUST_LOOPBACK_ONE).await;
    let header = v2_header(PpCommand::Proxy, "203.0.113.77:4711", "127.0.0.1:443");
    let answer = exchange(env.pp_ports[0], &header, "/v2", "").await;
    assert_eq!(status(&answer), 200, "{answer}");
    assert_eq!(forwarded_for(&env, "/v2"), ["203.0.113.77"]);
    let header = v2_header(PpCommand::Proxy, "[2001:db8::9]:4711", "[::1]:443");
    let answer = exchange(env.pp_ports[0], &header, "/v2-six", "").await;
    assert_eq!(status(&answer), 401, "2001:db8::9 is not in the office");
    assert!(upstream_never_saw(&env, "/v2-six"));
}

/// The header's source is a hop like any other: its `X-Forwarded-For`
/// counts only when that source is itself a trusted proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_counts_only_when_the_header_source_is_trusted() {
    let env = pp_env(false, "trusted_proxies: [127.0.0.1/32, 10.0.0.0/8]\n").await;
    let xff = "X-Forwarded-For: 203.0.113.9\r\n";
    // An ordinary client forging an office address.
    let header = b"PROXY TCP4 198.51.100.66 127.0.0.1 1 443\r\n";
    let answer = exchange(env.pp_ports[0], header, "/forged", xff).await;
    assert_eq!(status(&answer), 401, "{answer}");
    assert!(upstream_never_saw(&env, "/forged"));
    // A trusted L7 proxy (10.1.2.3) behind the L4 balancer.
    let header = b"PROXY TCP4 10.1.2.3 127.0.0.1 1 443\r\n";
    let answer = exchange(env.pp_ports[0], header, "/chained", xff).await;
    assert_eq!(status(&answer), 200, "{answer}");
    assert_eq!(forwarded_for(&env, "/chained"), ["203.0.113.9"]);
}

/// v2 LOCAL and v1 UNKNOWN (a balancer's own health check) make the
/// balancer, the TCP peer, the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_and_unknown_headers_make_the_peer_the_client() {
    let env = pp_env(false, TRUST_LOOPBACK_ONE).await;
    let local = v2_header(PpCommand::Local, "", "");
    let answer = exchange(env.pp_ports[0], &local, "/local", "").await;
    assert_eq!(status(&answer), 200, "{answer}");
    assert_eq!(forwarded_for(&env, "/local"), ["127.0.0.1"]);
    let answer = exchange(env.pp_ports[0], b"PROXY UNKNOWN\r\n", "/unknown", "").await;
    assert_eq!(status(&answer), 200, "{answer}");
    assert_eq!(forwarded_for(&env, "/unknown"), ["127.0.0.1"]);
}

/// No header, or a malformed one: closed without an HTTP answer, nothing
/// forwarded, counted as `invalid_header`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_without_a_valid_header_is_closed_unanswered() {
    let env = pp_env(false, TRUST_LOOPBACK_ONE).await;
    let before = metric(
        &env.metrics().await,
        REJECTED,
        &[("reason", "invalid_header")],
    );
    let cases: [(&[u8], &str); 3] = [
        (b"", "/no-header"),
        (
            b"PROXY TCP4 not-an-address 127.0.0.1 1 443\r\n",
            "/garbage-v1",
        ),
        (b"\r\n\r\n\0\r\nQUIT\n\x31\x11\0\x0c", "/garbage-v2"),
    ];
    for (prefix, path) in cases {
        let answer = exchange(env.pp_ports[0], prefix, path, "").await;
        assert_eq!(answer, "", "{path}: closed without an answer");
        assert!(upstream_never_saw(&env, path), "{path}");
    }
    let after = metric(
        &env.metrics().await,
        REJECTED,
        &[("reason", "invalid_header")],
    );
    assert_eq!(after - before, 3.0);
}

/// A valid header from a peer outside `trusted_proxies` is not read: the
/// connection is closed unanswered and counted as `untrusted_peer`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_outside_trusted_proxies_is_closed_unanswered() {
    let env = pp_env(false, "trusted_proxies: [10.0.0.0/8]\n").await;
    let before = metric(
        &env.metrics().await,
        REJECTED,
        &[("reason", "untrusted_peer")],
    );
    let header = b"PROXY TCP4 203.0.113.9 127.0.0.1 56324 443\r\n";
    let answer = exchange(env.pp_ports[0], header, "/untrusted", "").await;
    assert_eq!(answer, "");
    assert!(upstream_never_saw(&env, "/untrusted"));
    let after = metric(
        &env.metrics().await,
        REJECTED,
        &[("reason", "untrusted_peer")],
    );
    assert_eq!(after - before, 1.0);
    // The ordinary listener beside it is unaffected.
    let r = env
        .client()
        .get(env.url("app.localhost", "/plain"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// A balancer of the test's own on 127.0.0.1 that puts `header` in front
/// of every connection it passes to `target`, as an L4 load balancer does.
async fn header_relay(target: u16, header: Vec<u8>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            let header = header.clone();
            tokio::spawn(async move {
                let Ok(mut server) = TcpStream::connect(("127.0.0.1", target)).await else {
                    return;
                };
                if server.write_all(&header).await.is_ok() {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    port
}

/// TLS after the header: the client's TLS goes through the balancer to the
/// listener, HTTP/2 is negotiated, and every stream of the connection has
/// the header's source as its client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_over_tls_after_a_header_sees_the_header_source() {
    let env = pp_env(true, TRUST_LOOPBACK_ONE).await;
    let header = v2_header(PpCommand::Proxy, "203.0.113.10:4711", "127.0.0.1:443");
    let relay = header_relay(env.pp_ports[0], header).await;
    let client = env.client_builder_to(relay).build().unwrap();
    for path in ["/h2-first", "/h2-second"] {
        let r = client
            .get(format!("https://app.localhost:{relay}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.version(), reqwest::Version::HTTP_2);
        assert_eq!(forwarded_for(&env, path), ["203.0.113.10"]);
    }
}

/// HAProxy (Debian's package) on free loopback ports, stopped on drop.
struct Haproxy {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    /// Start HAProxy with `frontends_backends` (config sections after
    /// `global`/`defaults`; TCP mode) and wait until `ports` accept.
    async fn start(sections: &str, ports: &[u16]) -> Haproxy {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("haproxy.cfg");
        std::fs::write(
            &cfg,
            format!(
                "global\n    maxconn 64\ndefaults\n    mode tcp\n    timeout connect 5s\n    timeout client 30s\n    timeout server 30s\n{sections}"
            ),
        )
        .unwrap();
        let child = Command::new("haproxy")
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("haproxy is installed (scripts/ensure-deps.sh installs it)");
        let hp = Haproxy { child, _dir: dir };
        for port in ports {
            eventually("haproxy listening", Duration::from_secs(10), async || {
                TcpStream::connect(("127.0.0.1", *port)).await.is_ok()
            })
            .await;
        }
        hp
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real HAProxy with `send-proxy-v2` in front, from a client on
/// 127.0.0.2 (HAProxy itself, on 127.0.0.1, is the trusted proxy): plain
/// HTTP, TLS passed through to a TLS listener (HTTP/2), and HAProxy making
/// the TLS connection itself (`ssl verify none`). Each time the proxy sees
/// 127.0.0.2: the office bypass applies and the upstream gets it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_send_proxy_v2_in_front_gives_the_client_address() {
    let env = env()
        .policies(POLICIES)
        .config(TRUST_LOOPBACK_ONE)
        .proxy_protocol_listener(false)
        .proxy_protocol_listener(true)
        .start()
        .await;
    let (plain, tls) = (env.pp_ports[0], env.pp_ports[1]);
    let (fe_plain, fe_pass, fe_ssl) = (free_port(), free_port(), free_port());
    let _hp = Haproxy::start(
        &format!(
            "\
frontend plain
    bind 127.0.0.1:{fe_plain}
    default_backend plain
backend plain
    server portcullis 127.0.0.1:{plain} send-proxy-v2
frontend passthrough
    bind 127.0.0.1:{fe_pass}
    default_backend passthrough
backend passthrough
    server portcullis 127.0.0.1:{tls} send-proxy-v2
frontend reencrypt
    bind 127.0.0.1:{fe_ssl}
    default_backend reencrypt
backend reencrypt
    server portcullis 127.0.0.1:{tls} send-proxy-v2 ssl verify none
"
        ),
        &[fe_plain, fe_pass, fe_ssl],
    )
    .await;
    let from_two = |port| {
        env.client_builder_to(port)
            .local_address("127.0.0.2".parse::<std::net::IpAddr>().unwrap())
            .build()
            .unwrap()
    };
    let cases = [
        (fe_plain, "http", "/hp-plain", reqwest::Version::HTTP_11),
        (
            fe_pass,
            "https",
            "/hp-passthrough",
            reqwest::Version::HTTP_2,
        ),
        // HAProxy's TLS to the listener; the client speaks plain HTTP/1.1.
        (fe_ssl, "http", "/hp-reencrypt", reqwest::Version::HTTP_11),
    ];
    for (port, scheme, path, version) in cases {
        let r = from_two(port)
            .get(format!("{scheme}://app.localhost:{port}{path}"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{path}: {e:?}"));
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.version(), version, "{path}");
        assert_eq!(forwarded_for(&env, path), ["127.0.0.2"], "{path}");
    }
}

/// SIGHUP's certificate reload covers a TLS listener with
/// `proxy_protocol`: new handshakes after the header get the new
/// certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_serves_the_new_certificate_after_the_header() {
    use rustls::pki_types::pem::PemObject as _;
    let env = pp_env(true, TRUST_LOOPBACK_ONE).await;
    let header = v2_header(PpCommand::Proxy, "203.0.113.10:4711", "127.0.0.1:443");
    let relay = header_relay(env.pp_ports[0], header).await;
    let served = async || {
        // A new connection (and handshake) each time.
        let client = env
            .client_builder_to(relay)
            .danger_accept_invalid_certs(true)
            .tls_info(true)
            .build()
            .unwrap();
        let r = client
            .get(format!("https://app.localhost:{relay}/reloaded"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.extensions()
            .get::<reqwest::tls::TlsInfo>()
            .and_then(|i| i.peer_certificate())
            .expect("the served certificate")
            .to_vec()
    };
    let crt = env.data_path().join("tls.crt");
    let first = rustls::pki_types::CertificateDer::from_pem_file(&crt).unwrap();
    assert_eq!(served().await, first.to_vec());
    let new = rcgen::generate_simple_self_signed(vec!["app.localhost".to_string()]).unwrap();
    std::fs::write(&crt, new.cert.pem()).unwrap();
    std::fs::write(
        env.data_path().join("tls.key"),
        new.signing_key.serialize_pem(),
    )
    .unwrap();
    let outcome = env.reloader().reload().await;
    assert_eq!(outcome.result(), "success", "{outcome:?}");
    assert_eq!(served().await, new.cert.der().to_vec());
}

/// The proxy app behind a `proxy_protocol` listener is configured like the
/// others: CONNECT gets the proxy's own 405, never Pingora's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_after_a_header_gets_our_own_405() {
    let env = pp_env(false, TRUST_LOOPBACK_ONE).await;
    let answer = send_raw(
        env.pp_ports[0],
        b"PROXY TCP4 203.0.113.9 127.0.0.1 1 443\r\nCONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n",
    )
    .await;
    assert_eq!(status(&answer), 405, "{answer}");
    let lower = answer.to_ascii_lowercase();
    assert!(!lower.contains("\r\nserver:"), "{answer}");
    assert!(lower.contains("\r\nx-request-id: "), "{answer}");
    assert!(env.upstream.seen().is_empty());
}
