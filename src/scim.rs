//! SCIM 2.0 provisioning (RFC 7643/7644) as Okta's client uses it, served
//! on the auth domain under `scim_path` (default `/scim/v2`).
//!
//! - `auth`: the bearer secret (hashed in the store, constant-time check;
//!   the matching secret says which IdP's users a request touches)
//! - `filter`, `query`: filter parsing / evaluation and list queries
//! - `patch`: PATCH operations applied to a resource, pure
//! - `resource`: validation, canonical names, rendering with `meta`
//! - `list`, `request`, `discovery`: paging, request reading, discovery docs
//! - `routes`: the methods each path serves (405 + `Allow`); `search`:
//!   `POST …/.search` bodies and queries on the root across both types
//! - `users`, `groups`: the endpoints; `effects`: what a write does to
//!   sessions, seats and cached identities; `link`: logins ↔ SCIM users
//! - `model`: the records and changes the store keeps (`store::scim_sqlite`)

pub mod auth;
pub mod discovery;
pub mod effects;
pub mod error;
pub mod filter;
pub mod groups;
pub mod link;
pub mod list;
pub mod model;
pub mod patch;
pub mod query;
pub mod request;
pub mod resource;
pub mod routes;
pub mod search;
pub mod users;

use http::Method;

use crate::config::ScimConfig;
use crate::identity::Identity;
use crate::metrics::metrics;
use crate::proxy::respond::Reply;
use crate::proxy::state::State;
use crate::store::{Store, StoreError};

use error::ScimError;

/// What a SCIM request works with once authenticated.
pub struct Cx<'a> {
    pub state: &'a State,
    /// The IdP whose secret authenticated the request.
    pub idp: &'a str,
    pub scim: &'a ScimConfig,
    /// Absolute SCIM base URL (`https://auth.example.com/scim/v2`).
    pub base: String,
    pub params: list::Params,
    /// `If-Match`: `None` absent or `*`, `Some(None)` unparseable.
    pub if_match: Option<Option<i64>>,
}

impl Cx<'_> {
    /// Log a store failure (nothing was written) and answer 500, or 503
    /// when the database could not be reached (the client retries).
    fn store_failed(&self, e: StoreError) -> ScimError {
        if e.is_unavailable() {
            self.state.store_health.contact_failed();
            return unavailable();
        }
        tracing::warn!(error = %e, idp = %self.idp, "SCIM store operation failed");
        ScimError::internal()
    }

    /// The write is committed but its effect on sessions failed: answer
    /// 500 (503 if the database is unreachable) so the client retries
    /// (effects are idempotent).
    fn effect_failed(&self, e: StoreError) -> ScimError {
        tracing::error!(error = %e, idp = %self.idp, "SCIM write committed but revoking access failed");
        if e.is_unavailable() {
            self.state.store_health.contact_failed();
            return unavailable();
        }
        ScimError::internal()
    }
}

/// 503 while the store is unreachable (fleet mode).
fn unavailable() -> ScimError {
    ScimError::new(
        503,
        None,
        "Service unavailable: the store cannot be reached; retry later",
    )
}

impl Cx<'_> {}

/// Bounded `resource` label.
fn resource_label(rest: &str) -> &'static str {
    let first = rest.trim_start_matches('/').split('/').next().unwrap_or("");
    [
        "Users",
        "Groups",
        "ServiceProviderConfig",
        "ResourceTypes",
        "Schemas",
    ]
    .into_iter()
    .find(|r| r.eq_ignore_ascii_case(first))
    .unwrap_or("other")
}

/// Bounded `method` label.
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        _ => "other",
    }
}

/// Serve a SCIM request (`rest` is the path after the SCIM base path).
pub async fn serve(state: &State, session: &mut pingora::proxy::Session, rest: &str) -> Reply {
    let method = session.req_header().method.clone();
    let reply = match handle(state, session, &method, rest).await {
        Ok(r) => r,
        Err(e) => {
            if e.status >= 500 {
                tracing::warn!(status = e.status, "SCIM request failed");
            } else {
                tracing::debug!(status = e.status, detail = %e.detail, "SCIM request refused");
            }
            e.to_reply()
        }
    };
    let status = reply.status.to_string();
    let (resource, method) = (resource_label(rest), method_label(&method));
    metrics()
        .scim_requests_total
        .with_label_values(&[resource, method, status.as_str()])
        .inc();
    if matches!(method, "POST" | "PUT" | "PATCH" | "DELETE") {
        let id = written_id(rest, &reply);
        state.access_log.scim(method, resource, id, reply.status);
    }
    reply
}

/// The id of the resource a write touched: from the path (`/Users/{id}`),
/// else, for a create, from the `Location` of the new resource.
fn written_id<'a>(rest: &'a str, reply: &'a Reply) -> Option<&'a str> {
    let from_path = rest.trim_matches('/').split_once('/').map(|(_, id)| id);
    from_path.filter(|id| !id.is_empty()).or_else(|| {
        reply
            .headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("location"))
            .and_then(|(_, l)| l.rsplit('/').next())
            .filter(|id| !id.is_empty())
    })
}

async fn handle(
    state: &State,
    session: &mut pingora::proxy::Session,
    method: &Method,
    rest: &str,
) -> Result<Reply, ScimError> {
    if state.store_health.is_down() {
        return Err(unavailable());
    }
    let enabled = auth::enabled_idps(&state.cfg);
    if enabled.is_empty() {
        return Err(ScimError::not_found(
            "SCIM provisioning is not enabled (scim_config.enabled) for any identity provider",
        ));
    }
    let req = session.req_header();
    let presented = req
        .headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(auth::bearer)
        .map(str::to_string);
    let query = req.uri.query().map(str::to_string);
    let content_type = req
        .headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let if_match = request::if_match(
        req.headers
            .get(http::header::IF_MATCH)
            .and_then(|v| v.to_str().ok()),
    );
    let Some(presented) = presented else {
        return Err(ScimError::unauthorized());
    };
    let stored = state.store.scim_secret_hashes().await.map_err(|e| {
        tracing::warn!(error = %e, "SCIM secret lookup failed");
        ScimError::internal()
    })?;
    let Some(idp) = auth::authenticate(&presented, &enabled, &stored) else {
        tracing::info!("SCIM request with a wrong bearer secret");
        return Err(ScimError::unauthorized());
    };
    let Some((idp, scim)) = state
        .cfg
        .identity_providers
        .iter()
        .find(|i| i.name == idp)
        .and_then(|i| Some((i.name.as_str(), i.scim.as_ref()?)))
    else {
        return Err(ScimError::unauthorized());
    };
    let path = rest.trim_matches('/');
    let mut parts = path.splitn(2, '/');
    let endpoint = parts.next().unwrap_or("");
    let id = parts.next().filter(|s| !s.is_empty());
    // The method is checked before the body is read or parsed: a write to
    // a read-only document is a 405 whatever it carries (RFC 7644 §3.12).
    let Some(allow) = routes::allowed(endpoint, id) else {
        return Err(ScimError::not_found(format!(
            "no SCIM endpoint at {:?}; use /Users, /Groups, /.search, /ServiceProviderConfig, /ResourceTypes or /Schemas",
            format!("/{path}")
        )));
    };
    if !routes::permits(allow, method) {
        return Err(ScimError::method_not_allowed(method, allow));
    }
    let mut cx = Cx {
        state,
        idp,
        scim,
        base: format!("{}{}", state.auth_origin, state.cfg.scim_path),
        params: list::parse(query.as_deref())?,
        if_match,
    };
    let get = *method == Method::GET || *method == Method::HEAD;
    let body = if [Method::POST, Method::PUT, Method::PATCH].contains(method) {
        let bytes = request::read_body(session).await?;
        Some(request::json_body(content_type.as_deref(), &bytes)?)
    } else {
        None
    };
    let body = || {
        body.as_ref()
            .ok_or_else(|| ScimError::invalid_syntax("a request body is required"))
    };
    let is = |name: &str| endpoint.eq_ignore_ascii_case(name);
    let discovery = ["ServiceProviderConfig", "ResourceTypes", "Schemas"];
    if cx.params.filter.is_some() && discovery.iter().any(|d| is(d)) {
        // RFC 7644 §4: a client must not take a filtered discovery
        // document for a match.
        return Err(ScimError::new(
            403,
            None,
            format!("/{endpoint} cannot be filtered"),
        ));
    }
    if routes::is_search(endpoint, id) {
        // RFC 7644 §3.4.3: the body's parameters, not the query string's.
        cx.params = search::parse_request(body()?)?;
    }
    match id {
        _ if path.is_empty() || is(".search") => search::root(&cx).await,
        _ if is("Users") => match id {
            None if get => users::list(&cx).await,
            Some(_) if routes::is_search(endpoint, id) => users::list(&cx).await,
            None => users::create(&cx, body()?).await,
            Some(id) if get => users::get(&cx, id).await,
            Some(id) if *method == Method::PUT => users::replace(&cx, id, body()?).await,
            Some(id) if *method == Method::PATCH => users::patch(&cx, id, body()?).await,
            Some(id) => users::delete(&cx, id).await,
        },
        _ if is("Groups") => match id {
            None if get => groups::list(&cx).await,
            Some(_) if routes::is_search(endpoint, id) => groups::list(&cx).await,
            None => groups::create(&cx, body()?).await,
            Some(id) if get => groups::get(&cx, id).await,
            Some(id) if *method == Method::PUT => groups::replace(&cx, id, body()?).await,
            Some(id) if *method == Method::PATCH => groups::patch(&cx, id, body()?).await,
            Some(id) => groups::delete(&cx, id).await,
        },
        None if is("ServiceProviderConfig") => Ok(request::json_reply(
            200,
            &discovery::service_provider_config(&cx.base),
        )),
        _ if is("ResourceTypes") || is("Schemas") => {
            let doc = match (is("Schemas"), id) {
                (false, None) => Some(discovery::resource_types(&cx.base)),
                (false, Some(name)) => discovery::resource_type_by_name(&cx.base, name),
                (true, None) => Some(discovery::schemas(&cx.base)),
                (true, Some(urn)) => discovery::schema_by_id(&cx.base, urn),
            };
            doc.map(|d| request::json_reply(200, &d)).ok_or_else(|| {
                ScimError::not_found(format!("no {endpoint} entry {:?}", id.unwrap_or_default()))
            })
        }
        _ if is("Bulk") => Err(ScimError::new(
            501,
            None,
            "Bulk operations are not supported",
        )),
        _ => Err(ScimError::not_found(format!(
            "no SCIM endpoint at {:?}",
            format!("/{path}")
        ))),
    }
}

/// Whether a user who just authenticated at the IdP may get a session: a
/// user deactivated over SCIM may not (nor anyone while the store fails).
pub async fn login_allowed(
    state: &State,
    identity: &Identity,
) -> Result<bool, crate::store::StoreError> {
    link::try_login_allowed(state.store.as_ref(), identity).await
}

/// Start-up work for SCIM: seed each SCIM-enabled IdP's secret (DESIGN:
/// the config value seeds the store on first start; the stored one wins
/// afterwards; without either, one is generated and printed once).
pub async fn on_start(state: &State) {
    match auth::seed(state.store.as_ref(), &state.cfg).await {
        Ok(seeded) => {
            for (idp, outcome) in seeded {
                match outcome {
                    auth::Seeded::FromConfig => {
                        tracing::info!(idp = %idp, "SCIM secret stored from the config")
                    }
                    auth::Seeded::Kept => {}
                    auth::Seeded::ConfigIgnored => tracing::warn!(
                        idp = %idp,
                        "scim_config.secret differs from the stored SCIM secret (rotated with `portcullis scim rotate-secret`?); the stored one is used"
                    ),
                    auth::Seeded::Generated(secret) => {
                        println!(
                            "SCIM secret for identity provider {idp:?} (shown once; enter it as the API Token in Okta): {secret}"
                        );
                        tracing::info!(idp = %idp, "SCIM secret generated and printed to stdout");
                    }
                }
            }
        }
        Err(e) => {
            tracing::error!(error = %e, "SCIM secret could not be seeded; SCIM requests will be refused")
        }
    }
}

/// `portcullis scim rotate-secret`: store a new secret (hashed) for every
/// SCIM-enabled IdP and return it: the bare secret when one IdP has SCIM,
/// otherwise one `<idp name>: <secret>` line per IdP.
pub async fn rotate_secret(cfg: &crate::config::Config) -> Result<String, StoreError> {
    let store = crate::store::open_store(&cfg.store).await?;
    let rotated = auth::rotate(store.as_ref(), cfg).await?;
    Ok(match rotated.as_slice() {
        [(_, secret)] => secret.clone(),
        many => many
            .iter()
            .map(|(idp, s)| format!("{idp}: {s}"))
            .collect::<Vec<_>>()
            .join("\n"),
    })
}

/// The identity merged with the user's live SCIM group memberships. A
/// store failure leaves the IdP groups only (logged); use
/// [`link::try_live_identity`] to fail the request instead.
pub async fn live_identity(store: &dyn Store, mut identity: Identity) -> Identity {
    match link::scim_groups(store, &identity).await {
        Ok(groups) => link::merge_groups(&mut identity, groups),
        Err(e) => tracing::warn!(
            error = %e,
            idp = %identity.idp,
            "SCIM groups could not be read; using the IdP's groups only"
        ),
    }
    identity
}
