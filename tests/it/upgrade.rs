//! Graceful upgrade with the real binary: a second `portcullis run
//! --upgrade` takes the listening sockets (proxy and metrics) over from the
//! running one on SIGQUIT, while clients keep sending requests, and not one
//! of them fails.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::process::{get, status_of, ConfigDir, Running};

/// Served by the proxy itself (the JWKS), so every answer is the proxy's.
const PATH: &str = "/cdn-cgi/access/certs";
const HOST: &str = "auth.localhost";

const POLICIES: &str = "apps:\n  - name: app\n    domain: app.localhost\n    upstream: http://127.0.0.1:9\n    policies:\n      - { name: all, decision: bypass, include: [{ everyone: true }] }\n";

/// What the client loops saw.
#[derive(Default)]
struct Tally {
    fresh_ok: AtomicU64,
    keepalive_ok: AtomicU64,
    /// Connections the keep-alive client opened.
    keepalive_connections: AtomicU64,
    /// Keep-alive connections the server closed while idle (the old process
    /// stopping), after which the request went out on a new connection.
    idle_closed: AtomicU64,
    failures: Mutex<Vec<String>>,
}

impl Tally {
    fn fail(&self, started: Instant, what: String) {
        self.failures
            .lock()
            .push(format!("{:?}: {what}", started.elapsed()));
    }
}

/// One request on a new connection each time.
fn fresh_loop(addr: SocketAddr, stop: Arc<AtomicBool>, tally: Arc<Tally>, started: Instant) {
    while !stop.load(Ordering::Relaxed) {
        match get(addr, HOST, PATH) {
            Ok((200, _)) => {
                tally.fresh_ok.fetch_add(1, Ordering::Relaxed);
            }
            Ok((status, body)) => tally.fail(started, format!("fresh: {status} {body}")),
            Err(e) => tally.fail(started, format!("fresh: {e}")),
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Read one response (head and `Content-Length` body). `Ok(None)`: the
/// connection ended before any byte of it.
fn read_response(s: &mut TcpStream) -> std::io::Result<Option<String>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = match s.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if buf.is_empty() && e.kind() == std::io::ErrorKind::ConnectionReset => 0,
            Err(e) => return Err(e),
        };
        if n == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("cut off after {} bytes", buf.len()),
                ))
            };
        }
        buf.extend_from_slice(&chunk[..n]);
        if crate::harness::response_complete(&buf) {
            return Ok(Some(String::from_utf8_lossy(&buf).into_owned()));
        }
    }
}

/// Requests on one keep-alive connection, reconnecting when the server
/// says `Connection: close`, or closes the connection while it is idle
/// between two requests: then the request, which the server never began
/// to answer, goes out again on a new connection, as browsers and curl do
/// (RFC 9112 §9.3.1: a client may retry an idempotent request on a new
/// connection when the old one closed before any response). That retry is
/// counted; any other error is a failure.
fn keepalive_loop(addr: SocketAddr, stop: Arc<AtomicBool>, tally: Arc<Tally>, started: Instant) {
    let request = format!("GET {PATH} HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
    // The connection, and whether it already carried a response.
    let mut conn: Option<(TcpStream, bool)> = None;
    while !stop.load(Ordering::Relaxed) {
        let mut answer = None;
        for _attempt in 0..2 {
            let (mut s, reused) = match conn.take() {
                Some(c) => c,
                None => match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
                    Ok(s) => {
                        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                        tally.keepalive_connections.fetch_add(1, Ordering::Relaxed);
                        (s, false)
                    }
                    Err(e) => {
                        tally.fail(started, format!("keep-alive connect: {e}"));
                        break;
                    }
                },
            };
            let sent = s.write_all(request.as_bytes());
            match sent.and_then(|()| read_response(&mut s)) {
                Ok(Some(text)) => {
                    let close = text
                        .split("\r\n\r\n")
                        .next()
                        .unwrap_or("")
                        .to_ascii_lowercase()
                        .contains("connection: close");
                    if !close {
                        conn = Some((s, true));
                    }
                    answer = Some(text);
                    break;
                }
                // Closed while idle: once, on a connection that served before.
                Ok(None) if reused => {
                    tally.idle_closed.fetch_add(1, Ordering::Relaxed);
                }
                Ok(None) => {
                    tally.fail(
                        started,
                        "keep-alive: closed before any response on a new connection".into(),
                    );
                    break;
                }
                Err(e) if reused && e.kind() == std::io::ErrorKind::BrokenPipe => {
                    tally.idle_closed.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    tally.fail(started, format!("keep-alive: {e}"));
                    break;
                }
            }
        }
        match answer.as_deref().map(|t| (status_of(t), t)) {
            Some((Some(200), _)) => {
                tally.keepalive_ok.fetch_add(1, Ordering::Relaxed);
            }
            Some((_, t)) => tally.fail(started, format!("keep-alive: {t}")),
            None => {}
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Wait until `f` holds, up to `timeout`, checking every 20 ms.
fn until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out waiting for {what}");
}

/// `portcullis run --upgrade` then SIGQUIT to the running process: the new
/// process serves the same proxy and metrics sockets, the old one exits
/// with 0 after its grace period, and the clients that kept sending
/// requests all the way through (a new connection each, and one
/// keep-alive connection) saw no refused connection and no failed request.
#[test]
fn graceful_upgrade_hands_the_sockets_over_without_a_failed_request() {
    let cfg = ConfigDir::new("", "", POLICIES);
    let mut old = Running::start(&cfg.config(), &[]);
    old.wait_ready(cfg.metrics_port, Duration::from_secs(60));

    let started = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let tally = Arc::new(Tally::default());
    let loops: Vec<_> = [fresh_loop as fn(_, _, _, _), keepalive_loop]
        .into_iter()
        .map(|f| {
            let (stop, tally, addr) = (stop.clone(), tally.clone(), cfg.addr());
            std::thread::spawn(move || f(addr, stop, tally, started))
        })
        .collect();
    let progressed = |tally: &Tally| {
        let (f, k) = (
            tally.fresh_ok.load(Ordering::Relaxed),
            tally.keepalive_ok.load(Ordering::Relaxed),
        );
        move |t: &Tally| {
            t.fresh_ok.load(Ordering::Relaxed) >= f + 20
                && t.keepalive_ok.load(Ordering::Relaxed) >= k + 20
        }
    };
    let before = progressed(&tally);
    until(
        "requests through the old process",
        Duration::from_secs(30),
        || before(&tally),
    );

    let mut new = Running::start(&cfg.config(), &["--upgrade"]);
    let sock = cfg.path("portcullis-upgrade.sock");
    until(
        "the new process at the upgrade socket",
        Duration::from_secs(60),
        || {
            assert!(
                new.exited().is_none(),
                "the new process exited:\n{}",
                new.stderr()
            );
            sock.exists()
        },
    );
    old.signal("QUIT");
    let status = old
        .wait_exit(Duration::from_secs(60))
        .unwrap_or_else(|| panic!("the old process did not exit:\n{}", old.stderr()));
    assert!(status.success(), "{status}:\n{}", old.stderr());

    // Only the new process is left to answer.
    let after = progressed(&tally);
    until(
        "requests through the new process",
        Duration::from_secs(30),
        || after(&tally),
    );
    let metrics = SocketAddr::from(([127, 0, 0, 1], cfg.metrics_port));
    assert!(matches!(get(metrics, "127.0.0.1", "/readyz"), Ok((200, _))));
    let (status, body) = get(metrics, "127.0.0.1", "/metrics").unwrap();
    assert_eq!(status, 200);
    assert!(body.contains("portcullis_build_info"), "{body}");
    stop.store(true, Ordering::Relaxed);
    for l in loops {
        l.join().unwrap();
    }

    let failures = tally.failures.lock().clone();
    assert!(
        failures.is_empty(),
        "{} failed requests ({} fresh and {} keep-alive succeeded):\n{}\nold:\n{}\nnew:\n{}",
        failures.len(),
        tally.fresh_ok.load(Ordering::Relaxed),
        tally.keepalive_ok.load(Ordering::Relaxed),
        failures.join("\n"),
        old.stderr(),
        new.stderr()
    );
    assert!(new.exited().is_none(), "{}", new.stderr());
    // The keep-alive client's first connection ended with the old process.
    assert!(tally.keepalive_connections.load(Ordering::Relaxed) >= 2);
    assert!(new.stderr().contains("taken_over=true"), "{}", new.stderr());
    eprintln!(
        "upgrade: {} fresh, {} keep-alive requests on {} connections, {} closed while idle",
        tally.fresh_ok.load(Ordering::Relaxed),
        tally.keepalive_ok.load(Ordering::Relaxed),
        tally.keepalive_connections.load(Ordering::Relaxed),
        tally.idle_closed.load(Ordering::Relaxed)
    );
    new.signal("TERM");
    let status = new
        .wait_exit(Duration::from_secs(30))
        .expect("the new process exits on SIGTERM");
    assert!(status.success(), "{status}");
}

/// The listening sockets are never sent through a folder other users can
/// write (one of them could create the socket first and receive them): with
/// `upgrade_sock` in a world-writable folder, `run --upgrade` refuses to
/// start with a line naming it, and the running process refuses SIGQUIT
/// and keeps serving.
#[test]
fn an_upgrade_socket_in_a_shared_folder_is_refused() {
    use std::os::unix::fs::PermissionsExt as _;
    let cfg = ConfigDir::new("", "upgrade_sock: shared/upgrade.sock\n", POLICIES);
    let shared = cfg.path("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let mut old = Running::start(&cfg.config(), &[]);
    old.wait_ready(cfg.metrics_port, Duration::from_secs(60));

    let out = std::process::Command::new(crate::process::BIN)
        .args(["run", "--upgrade", "-c"])
        .arg(cfg.config())
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("upgrade_sock") && stderr.contains("writable by group or others"),
        "{stderr}"
    );

    old.signal("QUIT");
    until("SIGQUIT refused", Duration::from_secs(30), || {
        old.stderr().contains("SIGQUIT refused")
    });
    std::thread::sleep(Duration::from_millis(500));
    assert!(old.exited().is_none(), "{}", old.stderr());
    assert!(matches!(get(cfg.addr(), HOST, PATH), Ok((200, _))));
    old.signal("TERM");
    assert!(old.wait_exit(Duration::from_secs(30)).is_some());
}
