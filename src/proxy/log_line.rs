//! The access log's `request` line for one request, built in the `logging`
//! phase from the per-request state ([`Ctx`]) and the Pingora session:
//! borrowed fields only (names from the compiled policy, the identity from
//! the cached session), so a line costs a serialisation and a copy.

use std::time::{Duration, SystemTime};

use pingora::proxy::Session;

use crate::access_log::record::Request;
use crate::access_log::{AccessLog, Millis, Record, Ts};
use crate::policy::model::App;

use super::access::{Asker, Permit};
use super::request;
use super::service::Ctx;

/// Write the `request` line of a finished request; `took` is its duration.
pub(super) fn request(log: &AccessLog, session: &Session, ctx: &Ctx, took: Duration) {
    let req = session.req_header();
    // A forwarded request carries its normalised authority and target; any
    // other request is read again (it borrows from the request, so the
    // access phase could not keep it without copying).
    let info;
    let (host, path) = match &ctx.forward {
        Some(f) => {
            let host = f.authority.get(..f.host_len);
            // Without a rewrite the request's own path is the normalised one.
            let path = f.uri.as_ref().map_or(req.uri.path(), |u| u.path());
            (host, path)
        }
        None => {
            info = request::read(req, Some(ctx.client_ip)).ok();
            match &info {
                Some(i) => (Some(i.host()), &*i.target.path),
                None => (None, req.uri.path()),
            }
        }
    };
    let app: Option<&App> = match &ctx.forward {
        Some(f) => Some(&f.app),
        None => ctx.app_label.as_deref(),
    };
    let policy = ctx
        .policy
        .and_then(|i| app?.policies.get(i))
        .map(|p| p.name.as_str());
    let (user, service_token) = match ctx.forward.as_ref().map(|f| &f.permit) {
        Some(Permit::User { session, .. }) => (Some(&*session.identity), None),
        Some(Permit::Service { token, .. }) => (None, Some(&**token)),
        Some(Permit::Bypass) => (None, None),
        None => match &ctx.asker {
            Asker::User(s) => (Some(&*s.identity), None),
            Asker::Service(token) => (None, Some(&**token)),
            Asker::Unknown => (None, None),
        },
    };
    let upstream = ctx
        .forward
        .as_ref()
        .zip(ctx.upstream)
        .and_then(|(f, i)| f.app.upstreams.get(i))
        .map(|u| u.url.as_str());
    let now = SystemTime::now();
    log.write(&Record::Request(Request {
        ts: Ts(now.checked_sub(took).unwrap_or(now)),
        request_id: ctx.request_id.to_str().unwrap_or(""),
        client_ip: ctx.client_ip,
        method: req.method.as_str(),
        host,
        path,
        status: session.response_written().map(|r| r.status.as_u16()),
        app: app.map(|a| a.name.as_str()),
        decision: ctx.decision,
        policy,
        email: user.map(|u| u.email.as_str()),
        sub: user.map(|u| u.sub.as_str()),
        idp: user.map(|u| u.idp.as_str()),
        service_token,
        upstream,
        duration_ms: Millis(took),
        bytes_sent: session.body_bytes_sent() as u64,
    }));
}
