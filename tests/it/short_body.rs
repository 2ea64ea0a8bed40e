//! A request body shorter than its `content-length` (issue 21): the client
//! sends the head and part of the body, then closes the connection (HTTP/1)
//! or resets the stream or ends it early (HTTP/2). The origin, a recorder
//! that reads each body by its `content-length`, must see the request end
//! in a reset connection: never a complete body, never the next request's
//! bytes on the same connection.

use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::harness::{env, eventually, Env};
use crate::http2::{frame, h2_tls, header_block};

/// How a request ended at the origin.
#[derive(Debug, Clone, Copy, PartialEq)]
enum End {
    /// The whole body, by `content-length` (or a last chunk).
    Complete,
    /// The connection closed (FIN) before the body was whole.
    Eof,
    /// The connection was reset before the body was whole.
    Reset,
}

/// One request as the origin received it, updated as bytes arrive.
#[derive(Debug, Clone)]
struct Got {
    /// Which connection (in accept order).
    conn: usize,
    head: String,
    body: Vec<u8>,
    end: Option<End>,
}

/// An HTTP/1.1 origin that records every request's head and body bytes
/// and how it ended, and answers each complete one with 200.
struct Recorder {
    port: u16,
    got: Arc<Mutex<Vec<Got>>>,
}

impl Recorder {
    async fn start() -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let got: Arc<Mutex<Vec<Got>>> = Arc::default();
        let log = got.clone();
        tokio::spawn(async move {
            let mut conn = 0;
            while let Ok((stream, _)) = listener.accept().await {
                conn += 1;
                tokio::spawn(serve(stream, conn, log.clone()));
            }
        });
        Recorder { port, got }
    }

    /// The request whose request line names `path`.
    fn request(&self, path: &str) -> Option<Got> {
        let line = format!(" {path} HTTP/1.1\r\n");
        self.got
            .lock()
            .iter()
            .find(|g| g.head.contains(&line))
            .cloned()
    }

    async fn wait(&self, path: &str, what: &str, f: impl Fn(&Got) -> bool) -> Got {
        eventually(what, Duration::from_secs(15), async || {
            self.request(path).is_some_and(|g| f(&g))
        })
        .await;
        self.request(path).unwrap()
    }
}

/// Serve one origin connection: request after request, each body read by
/// its `content-length` (or to its last chunk).
async fn serve(mut stream: TcpStream, conn: usize, log: Arc<Mutex<Vec<Got>>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        // One request: its head, then its body.
        let mut index = None;
        let end = loop {
            if let Some(i) = index {
                if let Some(rest) = complete(&buf) {
                    let mut got = log.lock();
                    let g: &mut Got = &mut got[i];
                    g.body = buf[head_len(&buf).unwrap()..buf.len() - rest].to_vec();
                    g.end = Some(End::Complete);
                    buf.drain(..buf.len() - rest);
                    break End::Complete;
                }
            }
            let ended = match stream.read(&mut chunk).await {
                Ok(0) => Some(End::Eof),
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    None
                }
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Some(End::Reset),
                Err(_) => Some(End::Eof),
            };
            let mut got = log.lock();
            if index.is_none() && !buf.is_empty() {
                got.push(Got {
                    conn,
                    head: String::new(),
                    body: Vec::new(),
                    end: None,
                });
                index = Some(got.len() - 1);
            }
            let Some(i) = index else {
                // An idle connection closed: no request.
                if ended.is_some() {
                    return;
                }
                continue;
            };
            if let Some(h) = head_len(&buf) {
                got[i].head = String::from_utf8_lossy(&buf[..h]).into_owned();
                got[i].body = buf[h..].to_vec();
            }
            if let Some(end) = ended {
                got[i].end = Some(end);
                break end;
            }
        };
        if end != End::Complete {
            return;
        }
        let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        if stream.write_all(ok).await.is_err() {
            return;
        }
    }
}

/// The length of the head (blank line included), once it is all there.
fn head_len(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

/// When `buf` holds a whole request: how many bytes follow it.
fn complete(buf: &[u8]) -> Option<usize> {
    let h = head_len(buf)?;
    let head = String::from_utf8_lossy(&buf[..h]).to_ascii_lowercase();
    let body = &buf[h..];
    if let Some(len) = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        return (body.len() >= len).then(|| body.len() - len);
    }
    if head.contains("transfer-encoding: chunked") {
        let end = body.windows(5).position(|w| w == b"0\r\n\r\n")?;
        return Some(body.len() - end - 5);
    }
    Some(body.len())
}

fn policies(port: u16) -> String {
    format!(
        r#"
apps:
  - name: short
    domain: app.localhost
    upstream: http://127.0.0.1:{port}
    policies:
      - {{ name: anyone, decision: bypass, include: [{{ everyone: true }}] }}
"#
    )
}

/// The origin saw `path` end before its body was whole, in a reset
/// connection; then a complete request goes through on a connection of
/// its own, with exactly its own body.
async fn origin_saw_a_reset_then_a_clean_request(up: &Recorder, env: &Env, path: &str) {
    let cut = up
        .wait(path, "the short request to end", |g| g.end.is_some())
        .await;
    assert_eq!(cut.end, Some(End::Reset), "{cut:?}");
    assert_eq!(cut.body, b"hello", "{cut:?}");
    let next = format!("{path}-next");
    let r = env
        .client()
        .post(env.url("app.localhost", &next))
        .body("world")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let next = up.request(&next).expect("the next request");
    assert_eq!(
        (next.end, next.body.as_slice()),
        (Some(End::Complete), &b"world"[..])
    );
    assert_ne!(next.conn, cut.conn, "{next:?} on the connection of {cut:?}");
}

/// HTTP/1: head and 5 of 10 declared bytes, then the client closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http1_body_cut_short_resets_the_origin_connection() {
    let up = Recorder::start().await;
    let env = env().policies(&policies(up.port)).start().await;
    let mut client = TcpStream::connect(("127.0.0.1", env.port)).await.unwrap();
    let head = format!(
        "POST /short-h1 HTTP/1.1\r\nHost: app.localhost:{}\r\nContent-Length: 10\r\n\r\nhello",
        env.port
    );
    client.write_all(head.as_bytes()).await.unwrap();
    up.wait("/short-h1", "5 body bytes at the origin", |g| {
        g.body == b"hello"
    })
    .await;
    drop(client);
    origin_saw_a_reset_then_a_clean_request(&up, &env, "/short-h1").await;
}

/// HTTP/2: HEADERS (`content-length: 10`) and a DATA frame of 5 bytes,
/// then `then` (a RST_STREAM, or an empty DATA frame that ends the stream).
async fn h2_short_body(path: &str, then: Vec<u8>) {
    let up = Recorder::start().await;
    let env = env().tls().policies(&policies(up.port)).start().await;
    let mut tls = h2_tls(&env).await;
    let authority = format!("app.localhost:{}", env.port);
    let fields = [
        (":method", "POST"),
        (":scheme", "https"),
        (":authority", authority.as_str()),
        (":path", path),
        ("content-length", "10"),
    ];
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(4, 0, 0, &[]));
    // END_HEADERS, then DATA without END_STREAM.
    out.extend(frame(1, 0x4, 1, &header_block(&fields)));
    out.extend(frame(0, 0, 1, b"hello"));
    tls.write_all(&out).await.unwrap();
    up.wait(path, "5 body bytes at the origin", |g| g.body == b"hello")
        .await;
    tls.write_all(&then).await.unwrap();
    origin_saw_a_reset_then_a_clean_request(&up, &env, path).await;
    drop(tls);
}

/// HTTP/2: the client resets the stream (CANCEL) after 5 of 10 bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_body_reset_short_resets_the_origin_connection() {
    // RST_STREAM, CANCEL (0x8)
    h2_short_body("/short-h2-reset", frame(3, 0, 1, &8u32.to_be_bytes())).await;
}

/// HTTP/2: the client ends the stream after 5 of 10 bytes (a malformed
/// request, RFC 9113 §8.1.1: the `h2` crate resets the stream).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_body_ended_short_resets_the_origin_connection() {
    // DATA, END_STREAM, empty
    h2_short_body("/short-h2-end", frame(0, 0x1, 1, &[])).await;
}
