//! `ProxyHttp` glue, kept thin: `request_filter` runs the access phase (or
//! serves a proxy-owned endpoint) and stores a [`Forward`] in the context;
//! `upstream_peer` and `upstream_request_filter` forward exactly what was
//! authorised; `fail_to_proxy` answers an upstream failure with our own
//! 502/504 (page or JSON, never Pingora's empty one); `logging` counts and
//! writes the access log's request line (`log_line`).

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::prelude::HttpPeer;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{Error, ErrorType, Result};

use crate::metrics::metrics;
use crate::policy::model::App;
use crate::session::cache::ForwardValues;

use super::access::{self, denial_label, deny_reply, Asker, Permit, Verdict};
use super::client;
use super::endpoints;
use super::headers::{self, groups_value, CLAIM_HEADER_PREFIX};
use super::health::{self, Health};
use super::request;
use super::respond::Reply;
use super::state::State;

/// The proxy.
pub struct Portcullis {
    pub state: Arc<State>,
}

/// What was authorised: the app, the exact URI to forward, and who.
pub struct Forward {
    pub app: Arc<App>,
    /// Set when the normalised target differs from what the client sent.
    pub uri: Option<http::Uri>,
    pub permit: Permit,
    /// The authority forwarded as `Host` and `X-Forwarded-Host`: as
    /// received, or without a port the client could not have used
    /// ([`request::RequestInfo::forwarded_authority`]).
    pub authority: String,
    /// `authority` differs from the `Host` received (a port was dropped).
    pub host_rewrite: bool,
    /// Length of the host part of `authority` (the access log's `host`).
    pub host_len: usize,
    pub client_ip: std::net::IpAddr,
}

/// Per-request state.
pub struct Ctx {
    pub forward: Option<Forward>,
    /// `app` label for metrics.
    pub app_label: Option<Arc<App>>,
    pub decision: &'static str,
    pub proxy_owned: bool,
    /// Connect failures so far (failover across an app's upstreams).
    pub connect_failures: usize,
    /// The upstream (index into the app's) last picked.
    pub upstream: Option<usize>,
    /// The upstream that just failed to connect: the retry takes the next.
    pub failed: Option<usize>,
    /// Upstreams this request tried, a bit each (`health::tried_bit`).
    pub tried: u64,
    /// When the request arrived (`request_duration_seconds`).
    pub started: Instant,
    /// The client: the TCP peer, or what a trusted proxy says it saw.
    pub client_ip: std::net::IpAddr,
    /// `X-Request-Id`: a trusted proxy's, else generated. Empty until the
    /// request header is read.
    pub request_id: http::HeaderValue,
    /// The deciding policy: its index in the app's (`app_label`'s) policies.
    pub policy: Option<usize>,
    /// Who a denied request came from (a permit says it in `forward`).
    pub asker: Asker,
}

impl Ctx {
    /// Upstream `i` of `app` failed (a refused connect, or a name that did
    /// not resolve): it leaves the rotation until a health check connects
    /// to it, the failure counts against the failover budget, and the retry
    /// moves past it. True when an upstream is left to try.
    fn upstream_failed(&mut self, health: &Health, app: &App, i: usize) -> bool {
        self.connect_failures += 1;
        self.failed = Some(i);
        if health.mark_down(&app.upstreams[i].authority) {
            tracing::warn!(app.name = %app.name, upstream = %app.upstreams[i].url, "Upstream is down");
        }
        self.connect_failures < app.upstreams.len()
    }
}

#[async_trait]
impl ProxyHttp for Portcullis {
    type CTX = Ctx;

    fn new_ctx(&self) -> Ctx {
        Ctx {
            forward: None,
            app_label: None,
            decision: "error",
            proxy_owned: false,
            connect_failures: 0,
            upstream: None,
            failed: None,
            tried: 0,
            started: Instant::now(),
            client_ip: std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            request_id: http::HeaderValue::from_static(""),
            policy: None,
            asker: Asker::Unknown,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let started = Instant::now();
        let state = &*self.state;
        let req = session.req_header();
        let head = req.method == http::Method::HEAD;
        let peer = session
            .client_addr()
            .and_then(|a| a.as_inet())
            .map_or(ctx.client_ip, |a| a.ip());
        let trusted = &state.cfg.trusted_proxies;
        let peer_trusted = client::is_trusted(trusted, peer);
        ctx.client_ip = client::client_ip(peer, &req.headers, trusted);
        ctx.request_id = client::request_id(&req.headers, peer_trusted);
        let reply = self.access(session, ctx).await;
        metrics()
            .access_phase_seconds
            .observe(started.elapsed().as_secs_f64());
        match reply {
            None => Ok(false),
            Some(reply) => {
                reply.send(session, head, &ctx.request_id).await?;
                Ok(true)
            }
        }
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        // Fail closed: without a permit nothing is forwarded.
        let app = ctx
            .forward
            .as_ref()
            .map(|f| f.app.clone())
            .ok_or_else(|| Error::explain(ErrorType::HTTPStatus(403), "no access permit"))?;
        loop {
            let i = self
                .state
                .pick_upstream(&app, ctx.failed.take(), ctx.tried)
                .ok_or_else(|| Error::explain(ErrorType::HTTPStatus(502), "no upstream to try"))?;
            ctx.upstream = Some(i);
            ctx.tried |= health::tried_bit(i);
            let up = &app.upstreams[i];
            let addr = match up.addr {
                Some(addr) => addr,
                None => match self.state.resolver.resolve(&up.authority).await {
                    Ok(addr) => addr,
                    // A name that does not resolve counts as a refused
                    // connect: the next upstream is tried, each once.
                    Err(e) => {
                        tracing::warn!(app.name = %app.name, error = %e, "Upstream name did not resolve");
                        if !ctx.upstream_failed(&self.state.health, &app, i) {
                            return Err(Error::explain(
                                ErrorType::HTTPStatus(502),
                                "no upstream name resolved",
                            ));
                        }
                        continue;
                    }
                },
            };
            let mut peer = HttpPeer::new(addr, up.tls, up.host.clone());
            // A blackholed upstream costs this long, not the kernel's
            // minutes of SYN retries; the failover then moves on.
            let timeout = app
                .connect_timeout
                .unwrap_or(self.state.cfg.upstream_health.timeout);
            peer.options.connection_timeout = Some(timeout);
            peer.options.total_connection_timeout = Some(timeout.saturating_mul(2));
            let read = app
                .read_timeout
                .unwrap_or(crate::policy::model::DEFAULT_READ_TIMEOUT);
            peer.options.read_timeout = Some(read);
            peer.options.write_timeout = Some(read);
            peer.options.upstream_tcp_sock_tweak_hook = Some(reset_on_close());
            return Ok(Box::new(peer));
        }
    }

    /// Passive health check: a connection failure is retried on the app's
    /// next upstream (round-robin), once per upstream. Nothing was sent yet,
    /// so the retry cannot duplicate a request.
    fn fail_to_connect(
        &self,
        _session: &mut Session,
        peer: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        // Only connect failures count: a retry Pingora makes on its own
        // (a pooled connection the upstream had closed) must not use up
        // the failover to the next upstream.
        let (Some(app), Some(i)) = (ctx.forward.as_ref().map(|f| f.app.clone()), ctx.upstream)
        else {
            return e;
        };
        if ctx.upstream_failed(&self.state.health, &app, i) {
            tracing::warn!(app.name = %app.name, upstream = %peer._address, "Upstream connect failed; trying the next one");
            e.set_retry(true);
        }
        e
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        let fwd = ctx
            .forward
            .as_ref()
            .ok_or_else(|| Error::explain(ErrorType::HTTPStatus(403), "no access permit"))?;
        let state = &*self.state;
        state.protected.strip(upstream);
        headers::join_cookies(upstream)?;
        if let Some(uri) = &fwd.uri {
            upstream.set_uri(uri.clone());
        }
        // An absolute-form request may come without Host; the upstream
        // gets the authority that was decided on (RFC 9112 §3.2.2). A port
        // the client could not have used is dropped (over HTTP/2 Pingora
        // made `Host` from `:authority`, and follows a new one).
        if fwd.host_rewrite || !upstream.headers.contains_key(http::header::HOST) {
            upstream.insert_header(http::header::HOST, fwd.authority.as_str())?;
        }
        let names = &state.upstream_headers;
        upstream.insert_header(client::X_FORWARDED_FOR, headers::ip_value(fwd.client_ip))?;
        upstream.insert_header(client::REQUEST_ID, ctx.request_id.clone())?;
        upstream.insert_header(
            "x-forwarded-proto",
            http::HeaderValue::from_static(state.scheme()),
        )?;
        upstream.insert_header("x-forwarded-host", fwd.authority.as_str())?;
        match &fwd.permit {
            Permit::Bypass => {}
            Permit::Service { assertion, .. } => {
                upstream.insert_header(names.assertion.clone(), &**assertion)?;
            }
            Permit::User {
                candidate,
                session: cached,
            } => {
                let token = access::candidate_tokens(state, session.req_header())
                    .get(*candidate)
                    .copied()
                    .flatten()
                    .ok_or_else(|| {
                        Error::explain(ErrorType::HTTPStatus(403), "session token vanished")
                    })?;
                upstream.insert_header(names.assertion.clone(), token)?;
                let values = cached.forward.get_or_init(|| {
                    forward_values(&cached.identity, state.cfg.headers.forward_claims)
                });
                if let Some(email) = &values.email {
                    upstream.insert_header(names.email.clone(), email.clone())?;
                }
                if let (Some(name), Some(groups)) = (&names.groups, &values.groups) {
                    upstream.insert_header(name.clone(), groups.clone())?;
                }
                for (name, value) in &values.claims {
                    upstream.insert_header(name.clone(), value.clone())?;
                }
            }
        }
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        // The id the proxy logs and forwarded, whatever the upstream says.
        resp.insert_header(client::REQUEST_ID, ctx.request_id.clone())
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        resp: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let Some(fwd) = &ctx.forward {
            fwd.app
                .counters
                .inc_upstream_response(&fwd.app.name, resp.status.as_u16());
        }
        Ok(())
    }

    /// An error before or while proxying: our own answer instead of
    /// Pingora's empty one with `Server: Pingora`. Upstream connect
    /// failures and refusals are 502, timeouts 504, each counted in
    /// `portcullis_upstream_errors_total`; a response already under way is
    /// cut, as it must be.
    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        let (code, kind) = failure_status(e);
        if let Some(kind) = kind {
            let app = ctx.forward.as_ref().map_or("none", |f| f.app.name.as_str());
            crate::metrics::upstream_error(app, kind);
            tracing::warn!(app.name = %app, kind, error = %e, "Upstream failed");
        }
        if code > 0 && session.response_written().is_none() {
            let req = session.req_header();
            let browser = request::is_browser(req);
            let head = req.method == http::Method::HEAD;
            let reply = match code {
                502 => Reply::error(
                    browser,
                    502,
                    "bad_gateway",
                    "Application unavailable",
                    "The application behind this address is not answering. Try again in a moment.",
                ),
                504 => Reply::error(
                    browser,
                    504,
                    "gateway_timeout",
                    "Application too slow",
                    "The application behind this address did not answer in time. Try again in a moment.",
                ),
                400 => bad_target(browser),
                _ => Reply::error(
                    browser,
                    code,
                    "error",
                    "Something went wrong",
                    "The request could not be completed.",
                ),
            };
            if ctx.request_id.is_empty() {
                // Failed before the access phase read the request.
                ctx.request_id = client::new_request_id();
            }
            if let Err(err) = reply.send(session, head, &ctx.request_id).await {
                tracing::debug!(error = %err, "Error response not sent");
            }
        }
        FailToProxy {
            error_code: code,
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Ctx) {
        let elapsed = ctx.started.elapsed();
        if self.state.access_log.is_on() {
            super::log_line::request(&self.state.access_log, session, ctx, elapsed);
        }
        let took = elapsed.as_secs_f64();
        match (&ctx.app_label, ctx.proxy_owned) {
            (Some(app), false) => {
                app.counters.inc_request(&app.name, ctx.decision);
                app.counters.observe_duration(&app.name, took);
            }
            (_, proxy_owned) => {
                let label = if proxy_owned { "_proxy" } else { "none" };
                let m = metrics();
                m.requests_total
                    .with_label_values(&[label, ctx.decision])
                    .inc();
                m.request_duration_seconds
                    .with_label_values(&[label])
                    .observe(took);
            }
        }
    }
}

impl Portcullis {
    /// The access phase. `None`: forward (ctx.forward is set). `Some`: answer.
    async fn access(&self, session: &mut Session, ctx: &mut Ctx) -> Option<Reply> {
        let state = &*self.state;
        if session.req_header().method == http::Method::CONNECT {
            // Pingora would answer this itself (405 with `Server: Pingora`);
            // it is let through to here only to be refused in our words.
            // The connection closes: what follows a CONNECT is not HTTP.
            ctx.decision = "bad_request";
            session.set_keepalive(None);
            return Some(Reply::json_error(405, "method_not_allowed").with_header(
                "allow",
                "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS".into(),
            ));
        }
        let scim_rest = {
            let req = session.req_header();
            // HTTP/1: the raw request line. HTTP/2: the mark our patched
            // `h2` leaves where the URI lost a `#` from `:path` (vendor/h2).
            let fragment = req.extensions.get::<h2::ext::PathFragment>().is_some()
                || session.as_downstream().as_http1().is_some_and(|h1| {
                    request::request_line_has_fragment(&h1.get_headers_raw_bytes())
                });
            let tls = session.digest().is_some_and(|d| d.ssl_digest.is_some());
            let read = if fragment {
                Err(super::path::PathError::Fragment.into())
            } else if !request::method_ok(&req.method) {
                Err(request::RequestError::BadMethod)
            } else if !request::scheme_ok(req, tls) {
                Err(request::RequestError::BadScheme)
            } else {
                request::read(req, Some(ctx.client_ip))
            };
            let info = match read {
                Ok(i) => i,
                Err(e) => {
                    tracing::debug!(error = %e, "Bad request target");
                    ctx.decision = "bad_request";
                    return Some(bad_target(request::is_browser(req)));
                }
            };
            let path: &str = &info.target.path;
            let prefix = state.prefix();
            if let Some(rest) = path.strip_prefix(prefix).filter(|r| r.starts_with('/')) {
                ctx.proxy_owned = true;
                ctx.decision = "proxy";
                let rest = rest.to_string();
                let serve = endpoints::serve(state, req, &info, &rest);
                return Some(crate::access_log::in_request(ctx.request_id.clone(), serve).await);
            }
            let scim = &state.cfg.scim_path;
            if info.host() == state.auth_host
                && (path == scim.as_str()
                    || path
                        .strip_prefix(scim.as_str())
                        .is_some_and(|r| r.starts_with('/')))
            {
                Some(path[scim.len()..].to_string())
            } else {
                let verdict = access::decide(state, &info, req).await;
                return match verdict {
                    Verdict::Permit {
                        app,
                        permit,
                        policy,
                    } => {
                        ctx.policy = Some(policy);
                        ctx.decision = match permit {
                            Permit::Bypass => "bypass",
                            Permit::Service { .. } => "service_auth",
                            Permit::User { .. } => "allow",
                        };
                        let uri = match info.rewrite {
                            false => None,
                            true => match info.target.to_uri_string().parse::<http::Uri>() {
                                Ok(u) => Some(u),
                                Err(_) => {
                                    ctx.decision = "bad_request";
                                    return Some(bad_target(info.browser));
                                }
                            },
                        };
                        ctx.app_label = Some(app.clone());
                        let arrived_on = session
                            .server_addr()
                            .and_then(|a| a.as_inet())
                            .map(|a| a.port());
                        let authority = info
                            .forwarded_authority(|p| state.cfg.host_port_expected(p, arrived_on));
                        ctx.forward = Some(Forward {
                            app,
                            uri,
                            permit,
                            host_rewrite: authority.len() != info.authority.len(),
                            authority: authority.to_string(),
                            host_len: info.host().len(),
                            client_ip: info.client_ip,
                        });
                        None
                    }
                    Verdict::Deny {
                        app,
                        denial,
                        policy,
                        asker,
                    } => {
                        ctx.decision = denial_label(denial);
                        ctx.policy = policy;
                        ctx.asker = asker;
                        if denial != access::Denial::Unauthenticated
                            && denial != access::Denial::NoApp
                        {
                            tracing::info!(
                                app.name = app.as_ref().map(|a| a.name.as_str()).unwrap_or("none"),
                                client.ip = %info.client_ip,
                                decision = ctx.decision,
                                "Request denied"
                            );
                        }
                        let reply = deny_reply(state, &info, app.as_deref(), denial);
                        ctx.app_label = app;
                        Some(reply)
                    }
                };
            }
        };
        let rest = scim_rest?;
        ctx.proxy_owned = true;
        ctx.decision = "proxy";
        let serve = crate::scim::serve(state, session, &rest);
        Some(crate::access_log::in_request(ctx.request_id.clone(), serve).await)
    }
}

/// What Pingora calls on an upstream socket before it connects.
type SocketHook = Arc<dyn Fn(&tokio::net::TcpSocket) -> Result<()> + Send + Sync>;

/// A hook for every new upstream connection: `SO_LINGER` 0, so that
/// closing it resets it (RST) instead of ending it (FIN). The proxy closes
/// an upstream connection in the middle of a request only when the client
/// failed to send the whole body it declared (closed, reset the stream,
/// ended it early); with a FIN the origin would see a short body followed
/// by an orderly end, which an origin that does not hold the body to its
/// `content-length` could take for the whole request. A reset makes its
/// next read fail. After a complete exchange (idle pool, shutdown) the
/// reset costs nothing: no data is in flight, and no TIME_WAIT is left.
fn reset_on_close() -> SocketHook {
    static HOOK: std::sync::OnceLock<SocketHook> = std::sync::OnceLock::new();
    HOOK.get_or_init(|| {
        Arc::new(|socket: &tokio::net::TcpSocket| {
            socket
                .set_zero_linger()
                .map_err(|e| Error::because(ErrorType::SocketError, "SO_LINGER 0", e))
        })
    })
    .clone()
}

/// The status for an error Pingora hands to `fail_to_proxy`, and the
/// `upstream_errors_total` kind when the upstream failed. 0: the client is
/// gone, nothing to answer.
fn failure_status(e: &Error) -> (u16, Option<&'static str>) {
    use pingora::ErrorSource;
    match e.etype() {
        ErrorType::HTTPStatus(code) => (*code, (*code == 502).then_some("connect")),
        ErrorType::ConnectTimedout => (504, Some("connect_timeout")),
        ErrorType::ReadTimedout | ErrorType::WriteTimedout => match e.esource() {
            ErrorSource::Upstream => (504, Some("timeout")),
            _ => (0, None),
        },
        ErrorType::ConnectRefused
        | ErrorType::ConnectNoRoute
        | ErrorType::ConnectError
        | ErrorType::ConnectProxyFailure
        | ErrorType::BindError
        | ErrorType::TLSHandshakeFailure
        | ErrorType::TLSHandshakeTimedout
        | ErrorType::InvalidCert
        | ErrorType::HandshakeError => (502, Some("connect")),
        _ => match e.esource() {
            ErrorSource::Upstream => (502, Some(upstream_kind(e))),
            ErrorSource::Downstream => match e.etype() {
                ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed => {
                    (0, None)
                }
                _ => (400, None),
            },
            ErrorSource::Internal | ErrorSource::Unset => (500, None),
        },
    }
}

/// `closed` when the upstream hung up, `protocol` for anything else it did.
fn upstream_kind(e: &Error) -> &'static str {
    match e.etype() {
        ErrorType::ConnectionClosed | ErrorType::ReadError | ErrorType::WriteError => "closed",
        _ => "protocol",
    }
}

/// 400 for a request target that cannot be routed safely (ambiguous or
/// unparsable path): a page for a browser, JSON otherwise.
fn bad_target(browser: bool) -> Reply {
    Reply::error(
        browser,
        400,
        "bad_request",
        "Bad request",
        "The address of this request is not valid.",
    )
}

/// Upstream header values of an identity, built once per cached session
/// (`headers.forward_claims` adds the custom claims). A value that is not a
/// valid header value (control bytes) is left out.
pub fn forward_values(id: &crate::identity::Identity, forward_claims: bool) -> ForwardValues {
    let claims = if forward_claims {
        id.custom
            .iter()
            .filter_map(|(k, v)| {
                let value = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                let name = http::HeaderName::from_bytes(
                    format!("{CLAIM_HEADER_PREFIX}{}", k.to_ascii_lowercase()).as_bytes(),
                )
                .ok()?;
                Some((name, http::HeaderValue::from_str(&value).ok()?))
            })
            .collect()
    } else {
        Vec::new()
    };
    ForwardValues {
        email: http::HeaderValue::from_str(&id.email).ok(),
        groups: http::HeaderValue::from_str(&groups_value(&id.groups.names())).ok(),
        claims,
    }
}
