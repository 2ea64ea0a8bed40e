//! A small upstream that echoes what reached it: the demo app, and the
//! upstream of the integration tests (which read [`Echo::seen`] to assert
//! exactly which path and headers were forwarded).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// One request as the upstream saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query, as received.
    pub uri: String,
    /// Header names lower-cased, in order received.
    pub headers: Vec<(String, String)>,
}

impl Seen {
    /// Every value of a header (case-insensitive name).
    pub fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.header_values(name).into_iter().next()
    }
}

/// A running echo upstream.
pub struct Echo {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: JoinHandle<()>,
}

impl Echo {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every request received so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().clone()
    }

    /// Forget what was seen.
    pub fn clear(&self) {
        self.seen.lock().clear();
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Start the echo upstream on `bind` (`127.0.0.1:0` picks a port).
pub async fn start(bind: SocketAddr) -> std::io::Result<Echo> {
    let listener = TcpListener::bind(bind).await?;
    let addr = listener.local_addr()?;
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let log = seen.clone();
    let task = tokio::spawn(async move {
        let mut conns = tokio::task::JoinSet::new();
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let log = log.clone();
            conns.spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let log = log.clone();
                    async move { Ok::<_, Infallible>(respond(&log, req)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(Echo { addr, seen, task })
}

fn respond(log: &Mutex<Vec<Seen>>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let seen = Seen {
        method: req.method().to_string(),
        uri: req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default(),
        headers: req
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
    };
    let html = req
        .headers()
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    let body = if html { page(&seen) } else { json(&seen) };
    log.lock().push(seen);
    Response::builder()
        .header(
            "content-type",
            if html {
                "text/html; charset=utf-8"
            } else {
                "application/json"
            },
        )
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_default()
}

fn json(seen: &Seen) -> String {
    serde_json::json!({
        "method": seen.method,
        "uri": seen.uri,
        "headers": seen.headers.iter().map(|(k, v)| serde_json::json!([k, v])).collect::<Vec<_>>(),
    })
    .to_string()
}

fn page(seen: &Seen) -> String {
    use crate::proxy::respond::html_escape;
    let pick = |n: &str| html_escape(seen.header(n).unwrap_or("(none)"));
    let rows: String = seen
        .headers
        .iter()
        .map(|(k, v)| {
            let v = match v.get(..40) {
                Some(head) if k == "cf-access-jwt-assertion" && v.len() > 40 => {
                    format!("{head}…")
                }
                _ => v.clone(),
            };
            format!(
                "<tr><td>{}</td><td>{}</td></tr>",
                html_escape(k),
                html_escape(&v)
            )
        })
        .collect();
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>portcullis demo app</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:60em;margin:2em auto;padding:0 1em}}\
         td{{padding:.2em .6em;border-bottom:1px solid #ddd;font-family:monospace}}</style></head><body>\
         <h1>Hello, {email}</h1><p>Groups: {groups}</p><p>{method} {uri}</p>\
         <p><a href=\"/cdn-cgi/access/get-identity\">/cdn-cgi/access/get-identity</a> · \
         <a href=\"/cdn-cgi/access/logout\">Sign out</a></p>\
         <h2>Headers the upstream received</h2><table>{rows}</table></body></html>",
        email = pick("cf-access-authenticated-user-email"),
        groups = pick("x-portcullis-groups"),
        method = html_escape(&seen.method),
        uri = html_escape(&seen.uri),
    )
}
