//! HTTP/2 clients to the letter (issue 21), over real TLS connections: a
//! hand-framed client for what a well-behaved one cannot send (several
//! `cookie` fields, any `:scheme` or `:method`), and the same requests
//! over HTTP/1 where the rule is shared.

use std::sync::Arc;
use std::time::Duration;

use reqwest::cookie::{CookieStore as _, Jar};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::harness::{env, login_ok, raw_http, Env};

/// How the proxy answered stream 1.
#[derive(Debug, PartialEq)]
pub enum Answer {
    Status(u16),
    /// RST_STREAM with this error code.
    Reset(u32),
    /// GOAWAY with this error code.
    GoAway(u32),
}

/// A TLS connection to the env's listener with ALPN `h2` only.
pub async fn h2_tls(env: &Env) -> TlsStream<TcpStream> {
    h2_tls_to(env.port, env.ca_pem().expect("a TLS env")).await
}

/// A TLS connection to `127.0.0.1:port`, trusting `pem`, ALPN `h2` only.
async fn h2_tls_to(port: u16, pem: &str) -> TlsStream<TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(pem.as_bytes()).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("app.localhost").unwrap(), tcp)
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    tls
}

/// One HTTP/2 frame.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    f.extend_from_slice(&[kind, flags]);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An HPACK integer with an `n`-bit prefix (RFC 7541 §5.1).
fn hpack_int(out: &mut Vec<u8>, first: u8, n: u32, mut v: usize) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(first | v as u8);
        return;
    }
    out.push(first | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

/// A header block of literal fields without indexing, new names, no
/// Huffman: every field goes on the wire exactly as given, in order.
pub fn header_block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0);
        hpack_int(&mut out, 0, 7, name.len());
        out.extend_from_slice(name.as_bytes());
        hpack_int(&mut out, 0, 7, value.len());
        out.extend_from_slice(value.as_bytes());
    }
    out
}

/// HPACK Huffman codes of the digits only (RFC 7541 Appendix B): enough
/// for a `:status` value.
fn huffman_digits(bytes: &[u8]) -> String {
    let bits: Vec<u8> = bytes
        .iter()
        .flat_map(|b| (0..8).rev().map(move |i| (b >> i) & 1))
        .collect();
    let take = |from: usize, n: usize| bits[from..from + n].iter().fold(0u8, |a, b| a << 1 | b);
    let (mut i, mut out) = (0, String::new());
    while i + 5 <= bits.len() {
        let five = take(i, 5);
        if five <= 2 {
            out.push((b'0' + five) as char);
            i += 5;
        } else if i + 6 <= bits.len() && (0x19..=0x1f).contains(&take(i, 6)) {
            out.push((b'3' + take(i, 6) - 0x19) as char);
            i += 6;
        } else {
            break;
        }
    }
    out
}

/// The `:status` of a response header block (the server sends it first).
fn status_of(block: &[u8]) -> u16 {
    let mut block = block;
    // A dynamic table size update may come first.
    while block[0] & 0xe0 == 0x20 {
        block = &block[1..];
    }
    let b = block[0];
    if b & 0x80 != 0 {
        return match b & 0x7f {
            8 => 200,
            9 => 204,
            10 => 206,
            11 => 304,
            12 => 400,
            13 => 404,
            14 => 500,
            i => panic!("not a :status index: {i}"),
        };
    }
    let (huffman, len) = (block[1] & 0x80 != 0, (block[1] & 0x7f) as usize);
    let value = &block[2..2 + len];
    let text = if huffman {
        huffman_digits(value)
    } else {
        String::from_utf8_lossy(value).into_owned()
    };
    text.parse()
        .unwrap_or_else(|_| panic!("no :status in {block:?}"))
}

/// Send one request on stream 1 of a fresh h2 connection with exactly
/// these fields (pseudo-headers included, in order, repeated names kept
/// apart) and no body; return how the proxy answered it.
pub async fn h2_raw(env: &Env, fields: &[(&str, &str)]) -> Answer {
    let mut tls = h2_tls(env).await;
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(4, 0, 0, &[]));
    // END_STREAM | END_HEADERS
    out.extend(frame(1, 0x5, 1, &header_block(fields)));
    tls.write_all(&out).await.unwrap();
    let read = async {
        loop {
            let mut head = [0u8; 9];
            tls.read_exact(&mut head).await.expect("a frame");
            let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let (kind, flags) = (head[3], head[4]);
            let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
            let mut payload = vec![0u8; len];
            tls.read_exact(&mut payload).await.unwrap();
            match (kind, stream) {
                (4, 0) if flags & 1 == 0 => tls.write_all(&frame(4, 1, 0, &[])).await.unwrap(),
                (1, 1) => return Answer::Status(status_of(&payload)),
                (3, 1) => {
                    return Answer::Reset(u32::from_be_bytes(payload[..4].try_into().unwrap()))
                }
                (7, 0) => {
                    return Answer::GoAway(u32::from_be_bytes(payload[4..8].try_into().unwrap()))
                }
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(15), read)
        .await
        .expect("an answer to stream 1")
}

/// The usual pseudo-headers of a GET of `path` at `app.localhost`.
fn get(env: &Env, path: &'static str) -> Vec<(&'static str, String)> {
    vec![
        (":method", "GET".into()),
        (":scheme", "https".into()),
        (":authority", format!("app.localhost:{}", env.port)),
        (":path", path.into()),
    ]
}

async fn send(env: &Env, fields: &[(&'static str, String)]) -> Answer {
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    h2_raw(env, &fields).await
}

fn seen_at(env: &Env, path: &str) -> Option<portcullis::demo::echo::Seen> {
    env.upstream.seen().into_iter().find(|s| s.uri == path)
}

/// RFC 9113 §8.2.3: cookies sent as separate `cookie` fields reach the
/// HTTP/1.1 origin as one `cookie` header joined with "; ", in order, and
/// the session cookie still counts when it is one of several.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_cookie_fields_reach_the_origin_joined_in_one_header() {
    let env = env().tls().start().await;
    let jar = Arc::new(Jar::default());
    let browser = env
        .client_builder_to(env.port)
        .cookie_provider(jar.clone())
        .build()
        .unwrap();
    login_ok(&env, &browser, &env.url("app.localhost", "/"), "00ualice").await;
    let url = env.url("app.localhost", "/cookies");
    let from_jar = jar.cookies(&url.parse().unwrap()).expect("session cookie");
    let mut cookies = vec!["theme=dark".to_string()];
    cookies.extend(from_jar.to_str().unwrap().split("; ").map(String::from));
    cookies.push("lang=en".to_string());
    let mut fields = get(&env, "/cookies");
    fields.extend(cookies.iter().map(|c| ("cookie", c.clone())));
    assert_eq!(send(&env, &fields).await, Answer::Status(200));
    let seen = seen_at(&env, "/cookies").expect("forwarded");
    assert_eq!(seen.header_values("cookie"), [cookies.join("; ").as_str()]);
}

/// `:method get` is not GET (methods are case-sensitive): 400 over h2,
/// and `get` on an HTTP/1 request line too; an upper-case extension
/// method is still forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lower_case_methods_are_refused_on_both_protocols() {
    let env = env().tls().start().await;
    let mut fields = get(&env, "/public/lower");
    fields[0].1 = "get".into();
    assert_eq!(send(&env, &fields).await, Answer::Status(400));
    let mut fields = get(&env, "/public/ext");
    fields[0].1 = "PURGE".into();
    assert_eq!(send(&env, &fields).await, Answer::Status(200));
    assert!(seen_at(&env, "/public/ext").is_some());
    let plain = crate::harness::env().start().await;
    let (status, _) = raw_http(
        &plain,
        &format!(
            "get /public/lower HTTP/1.1\r\nHost: app.localhost:{}\r\n",
            plain.port
        ),
    )
    .await;
    assert_eq!(status, 400);
    assert!(seen_at(&env, "/public/lower").is_none());
    assert!(seen_at(&plain, "/public/lower").is_none());
}

/// A `:scheme` other than the connection's own (`https` on TLS) is 400,
/// as is an HTTP/1 absolute-form target naming `https` on a plain listener.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheme_other_than_the_connections_own_is_refused_on_both_protocols() {
    let env = env().tls().start().await;
    for scheme in ["javascript", "http"] {
        let mut fields = get(&env, "/public/scheme");
        fields[1].1 = scheme.into();
        assert_eq!(send(&env, &fields).await, Answer::Status(400), "{scheme}");
    }
    assert!(seen_at(&env, "/public/scheme").is_none());
    assert_eq!(
        send(&env, &get(&env, "/public/https")).await,
        Answer::Status(200)
    );
    let plain = crate::harness::env().start().await;
    let port = plain.port;
    let (status, _) = raw_http(
        &plain,
        &format!("GET https://app.localhost:{port}/public/scheme HTTP/1.1\r\nHost: app.localhost:{port}\r\n"),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = raw_http(
        &plain,
        &format!("GET http://app.localhost:{port}/public/http HTTP/1.1\r\nHost: app.localhost:{port}\r\n"),
    )
    .await;
    assert_eq!(status, 200);
}

/// RFC 9113 §8.3.1: `:path` holds no fragment. A `#` in it is 400 (the
/// patched `h2` marks what `http`'s URI parser cut off), as it is on an
/// HTTP/1 request line, and nothing is forwarded: before the patch,
/// `/public/frag#/../admin` reached the origin as `/public/frag`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fragment_in_path_is_refused_on_both_protocols() {
    let env = env().tls().start().await;
    for path in [
        "/public/frag#/../admin",
        "/public/frag#",
        "/public/frag?q=1#x",
    ] {
        let mut fields = get(&env, "/");
        fields[3].1 = path.into();
        assert_eq!(send(&env, &fields).await, Answer::Status(400), "{path}");
    }
    assert_eq!(
        send(&env, &get(&env, "/public/nofrag")).await,
        Answer::Status(200)
    );
    assert!(seen_at(&env, "/public/nofrag").is_some());
    assert!(
        env.upstream
            .seen()
            .iter()
            .all(|s| !s.uri.starts_with("/public/frag")),
        "{:?}",
        env.upstream.seen()
    );
    let plain = crate::harness::env().start().await;
    let port = plain.port;
    let (status, _) = raw_http(
        &plain,
        &format!("GET /public/frag#/../admin HTTP/1.1\r\nHost: app.localhost:{port}\r\n"),
    )
    .await;
    assert_eq!(status, 400);
    assert!(plain.upstream.seen().is_empty());
}

/// Host matching ignores the port, so `app.localhost:1` routes like
/// `app.localhost`; the origin gets the host without a port no client can
/// have used to reach the proxy (neither the listener's nor `public.port`),
/// in `Host` and `X-Forwarded-Host`, over HTTP/2 (`:authority`) and
/// HTTP/1 (`Host`) alike. The listener's own port is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_port_no_client_could_use_is_not_forwarded_on_both_protocols() {
    let env = env().tls().start().await;
    let port = env.port;
    let mut fields = get(&env, "/public/odd-port-h2");
    fields[2].1 = "app.localhost:1".into();
    assert_eq!(send(&env, &fields).await, Answer::Status(200));
    assert_eq!(
        send(&env, &get(&env, "/public/own-port-h2")).await,
        Answer::Status(200)
    );
    let plain = crate::harness::env().start().await;
    let pport = plain.port;
    for (host, path) in [
        ("app.localhost:1".to_string(), "/public/odd-port-h1"),
        (format!("app.localhost:{pport}"), "/public/own-port-h1"),
        ("app.localhost".to_string(), "/public/no-port-h1"),
    ] {
        let (status, _) =
            raw_http(&plain, &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n")).await;
        assert_eq!(status, 200, "{host}");
    }
    let host = |env: &Env, path: &str| {
        let seen = seen_at(env, path).expect(path);
        (
            seen.header_values("host").join(","),
            seen.header_values("x-forwarded-host").join(","),
        )
    };
    let bare = ("app.localhost".to_string(), "app.localhost".to_string());
    assert_eq!(host(&env, "/public/odd-port-h2"), bare);
    let own = format!("app.localhost:{port}");
    assert_eq!(host(&env, "/public/own-port-h2"), (own.clone(), own));
    assert_eq!(host(&plain, "/public/odd-port-h1"), bare);
    let own = format!("app.localhost:{pport}");
    assert_eq!(host(&plain, "/public/own-port-h1"), (own.clone(), own));
    assert_eq!(host(&plain, "/public/no-port-h1"), bare);
}

/// The settings the proxy's first SETTINGS frame advertises, by id.
async fn server_settings(env: &Env) -> Vec<(u16, u32)> {
    let mut tls = h2_tls(env).await;
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(4, 0, 0, &[]));
    tls.write_all(&out).await.unwrap();
    let read = async {
        loop {
            let mut head = [0u8; 9];
            tls.read_exact(&mut head).await.expect("a frame");
            let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let mut payload = vec![0u8; len];
            tls.read_exact(&mut payload).await.unwrap();
            if head[3] == 4 && head[4] & 1 == 0 {
                return payload
                    .chunks(6)
                    .map(|c| {
                        (
                            u16::from_be_bytes([c[0], c[1]]),
                            u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
                        )
                    })
                    .collect();
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(15), read)
        .await
        .expect("the server's SETTINGS")
}

/// A TLS listener advertises the HTTP/2 limits of portcullis's own
/// configuration (`server::h2`), not whatever the libraries default to:
/// concurrent streams and header list size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_listeners_advertise_the_configured_http2_limits() {
    use portcullis::server::h2;
    let env = env().tls().start().await;
    let settings = server_settings(&env).await;
    let get = |id: u16| settings.iter().find(|(i, _)| *i == id).map(|(_, v)| *v);
    // SETTINGS_MAX_CONCURRENT_STREAMS, SETTINGS_MAX_HEADER_LIST_SIZE
    assert_eq!(get(0x3), Some(h2::MAX_CONCURRENT_STREAMS), "{settings:?}");
    assert_eq!(get(0x6), Some(h2::MAX_HEADER_LIST_SIZE), "{settings:?}");
}

/// The real binary: a TLS connection that negotiates h2 and closes right
/// after the handshake is counted in
/// `portcullis_downstream_handshake_errors_total{kind="h2"}`, a TCP
/// connection closed before TLS in `{kind="tls"}`, and neither leaves an
/// ERROR line (Pingora's `H2 handshake error`, `Downstream handshake
/// error`) in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_connection_closed_after_the_handshake_is_counted_not_logged_as_error() {
    use crate::process::{ConfigDir, Running};
    let policies = "apps:\n  - name: app\n    domain: app.localhost\n    upstream: http://127.0.0.1:9\n    policies:\n      - { name: all, decision: bypass, include: [{ everyone: true }] }\n";
    let cfg = ConfigDir::new("    tls: { cert: tls.crt, key: tls.key }\n", "", policies);
    let cert = rcgen::generate_simple_self_signed(vec!["app.localhost".to_string()]).unwrap();
    std::fs::write(cfg.path("tls.crt"), cert.cert.pem()).unwrap();
    std::fs::write(cfg.path("tls.key"), cert.signing_key.serialize_pem()).unwrap();
    let mut proxy = Running::start(&cfg.config(), &[]);
    proxy.wait_ready(cfg.metrics_port, Duration::from_secs(60));
    for _ in 0..3 {
        let mut tls = h2_tls_to(cfg.port, &cert.cert.pem()).await;
        tls.shutdown().await.unwrap();
        drop(tls);
    }
    // A balancer's TCP check: connect, close, no TLS.
    drop(TcpStream::connect(("127.0.0.1", cfg.port)).await.unwrap());
    let metrics = format!("http://127.0.0.1:{}/metrics", cfg.metrics_port);
    crate::harness::eventually("both kinds counted", Duration::from_secs(20), async || {
        let text = reqwest::get(&metrics).await.unwrap().text().await.unwrap();
        let count = |kind| {
            crate::harness::metric(
                &text,
                "portcullis_downstream_handshake_errors_total",
                &[("kind", kind)],
            )
        };
        count("h2") >= 3.0 && count("tls") >= 1.0
    })
    .await;
    let log = proxy.stderr();
    assert!(!log.contains("H2 handshake error"), "{log}");
    assert!(!log.contains("ERROR"), "{log}");
}

/// What the proxy sent back on one h2 connection.
#[derive(Debug, Default)]
struct Replies {
    /// Payloads of the PING ACKs, in order.
    ping_acks: Vec<[u8; 8]>,
    settings_acks: usize,
    /// The error code of a GOAWAY.
    goaway: Option<u32>,
    /// The `:status` of stream 1, when it was answered.
    status: Option<u16>,
}

/// Write the preface and `frames` on a fresh h2 connection in one go, then
/// read until stream 1 is answered (`status`) or the proxy closes the
/// connection; panics if neither happens within 15 s.
async fn replies_to(env: &Env, frames: &[Vec<u8>]) -> Replies {
    let mut tls = h2_tls(env).await;
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frames.concat());
    tls.write_all(&out).await.unwrap();
    let mut r = Replies::default();
    let read = async {
        loop {
            let mut head = [0u8; 9];
            if tls.read_exact(&mut head).await.is_err() {
                return r; // closed
            }
            let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let (kind, flags) = (head[3], head[4]);
            let stream = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
            let mut payload = vec![0u8; len];
            if tls.read_exact(&mut payload).await.is_err() {
                return r;
            }
            match (kind, stream) {
                (4, 0) if flags & 1 == 0 => {
                    // The proxy's SETTINGS; a write after it closed may fail.
                    let _ = tls.write_all(&frame(4, 1, 0, &[])).await;
                }
                (4, 0) => r.settings_acks += 1,
                (6, 0) if flags & 1 == 1 => r.ping_acks.push(payload[..8].try_into().unwrap()),
                (7, 0) => r.goaway = Some(u32::from_be_bytes(payload[4..8].try_into().unwrap())),
                (1, 1) => {
                    r.status = Some(status_of(&payload));
                    return r;
                }
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(15), read)
        .await
        .expect("stream 1 answered or the connection closed")
}

fn ping(n: usize) -> Vec<u8> {
    frame(6, 0, 0, &(n as u64).to_be_bytes())
}

/// A client's PINGs and SETTINGS at a normal rate, up to the limit of one
/// window (`server::h2::MAX_CONTROL_FRAMES`, its first SETTINGS included),
/// are each acknowledged, and the connection goes on to answer a request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_and_settings_up_to_the_limit_are_answered() {
    use portcullis::server::h2::MAX_CONTROL_FRAMES;
    let env = env().tls().start().await;
    // The preface's SETTINGS, one more, and PINGs up to the limit.
    let mut frames = vec![frame(4, 0, 0, &[]), frame(4, 0, 0, &[])];
    frames.extend((0..MAX_CONTROL_FRAMES - 2).map(ping));
    let fields = get(&env, "/");
    let fields: Vec<(&str, &str)> = fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
    frames.push(frame(1, 0x5, 1, &header_block(&fields)));
    let r = replies_to(&env, &frames).await;
    assert_eq!(r.goaway, None, "{r:?}");
    assert!(r.status.is_some(), "{r:?}");
    assert_eq!(r.settings_acks, 2, "{r:?}");
    let expected: Vec<[u8; 8]> = (0..MAX_CONTROL_FRAMES - 2)
        .map(|n| (n as u64).to_be_bytes())
        .collect();
    assert_eq!(r.ping_acks, expected);
}

/// One PING more than the limit within the window (CVE-2019-9512) is a
/// flood: the proxy answers with `GOAWAY ENHANCE_YOUR_CALM` and closes the
/// connection, whatever else the client asked on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_flood_gets_goaway_enhance_your_calm_and_the_connection_closes() {
    use portcullis::server::h2::MAX_CONTROL_FRAMES;
    let env = env().tls().start().await;
    let mut frames = vec![frame(4, 0, 0, &[])];
    frames.extend((0..MAX_CONTROL_FRAMES).map(ping));
    let r = replies_to(&env, &frames).await;
    assert_eq!(r.goaway, Some(0xb), "{r:?}"); // ENHANCE_YOUR_CALM
    assert_eq!(r.status, None, "{r:?}");
    assert!(r.ping_acks.len() < MAX_CONTROL_FRAMES, "{r:?}");
}

/// The same for SETTINGS frames (CVE-2019-9515), which count with PINGs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settings_flood_gets_goaway_enhance_your_calm_and_the_connection_closes() {
    use portcullis::server::h2::MAX_CONTROL_FRAMES;
    let env = env().tls().start().await;
    let frames: Vec<Vec<u8>> = (0..=MAX_CONTROL_FRAMES)
        .map(|_| frame(4, 0, 0, &[]))
        .collect();
    let r = replies_to(&env, &frames).await;
    assert_eq!(r.goaway, Some(0xb), "{r:?}");
    assert!(r.settings_acks < MAX_CONTROL_FRAMES + 1, "{r:?}");
}
