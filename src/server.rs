//! Assembling and running a proxy: build the shared [`State`] (keys, store,
//! policies, identity providers, background tasks), then a Pingora `Server`
//! with the proxy listeners and the metrics listener ([`build`]), taking
//! them over from a running process in a graceful upgrade.
//! [`ServerHandle`] runs it on its own thread and stops it, for `run`,
//! `demo` and in-process tests. `changes` applies what other instances (and
//! SCIM) changed to this instance's caches; `tls` holds the listeners'
//! reloadable certificates and `reload` what SIGHUP does;
//! `proxy_protocol` serves listeners behind PROXY protocol balancers.

pub mod changes;
pub mod h2;
pub mod handshake_log;
pub mod preflight;
pub mod proxy_protocol;
pub mod reload;
pub mod tls;

use std::sync::Arc;
use std::thread::JoinHandle;

use async_trait::async_trait;
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{RunArgs, Server, ShutdownSignal, ShutdownSignalWatch};
use pingora::services::listening::Service;

use crate::access_log::AccessLog;
use crate::config::{AccessLogTarget, Config};
use crate::idp::oidc::Provider;
use crate::metrics::metrics;
use crate::policy::reload::{spawn_watcher, PolicyHandle};
use crate::proxy::{Portcullis, State};
use crate::server::reload::{ConfigFile, Reloader};
use crate::server::tls::TlsCerts;
use crate::session::keys::KeyRing;
use crate::store::open_store_with;

/// Why the proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    // The messages carry their cause's text, so the causes are not also
    // chained as `source` (an `{:#}` print would say everything twice).
    #[error("signing keys: {0}")]
    Keys(crate::session::keys::KeyError),
    #[error("store: {0}")]
    Store(crate::store::StoreError),
    #[error("policies:\n{0}")]
    Policies(crate::policy::load::PolicyErrors),
    #[error("identity provider {name}: {source}")]
    Idp {
        name: String,
        source: crate::idp::oidc::IdpError,
    },
    #[error("listener {addr}: {message}")]
    Listener { addr: String, message: String },
    #[error("upgrade_sock {path}: {message}")]
    UpgradeSock { path: String, message: String },
    #[error("access log {path}: {message}")]
    AccessLog { path: String, message: String },
}

impl From<crate::session::keys::KeyError> for StartError {
    fn from(e: crate::session::keys::KeyError) -> StartError {
        StartError::Keys(e)
    }
}

impl From<crate::store::StoreError> for StartError {
    fn from(e: crate::store::StoreError) -> StartError {
        StartError::Store(e)
    }
}

impl From<crate::policy::load::PolicyErrors> for StartError {
    fn from(e: crate::policy::load::PolicyErrors) -> StartError {
        StartError::Policies(e)
    }
}

/// Build the state and start its background tasks on the current tokio
/// runtime: IdP discovery/refresh, policy watcher, revocation poller,
/// upstream health checks.
pub async fn build_state(cfg: Config) -> Result<Arc<State>, StartError> {
    let store = open_store_with(&cfg.store, cfg.store_options.pool_size).await?;
    // Fleet mode keeps the signing keys in the database, shared by every
    // instance; otherwise they live in `key_dir`.
    let keys = match store.key_store() {
        Some(ks) => changes::fleet_keys(ks).await?,
        None => KeyRing::load_or_generate(&cfg.key_dir)?,
    };
    let idp_names = cfg.idp_names();
    crate::metrics::init_series(&idp_names);
    let policies = Arc::new(PolicyHandle::load(cfg.policies.clone(), Some(idp_names))?);
    let mut idps = Vec::new();
    for idp in &cfg.identity_providers {
        let p = Provider::new(idp.clone()).map_err(|source| StartError::Idp {
            name: idp.name.clone(),
            source,
        })?;
        let name = idp.name.clone();
        p.set_observer(Arc::new(move |endpoint, took| {
            metrics()
                .idp_request_seconds
                .with_label_values(&[name.as_str(), endpoint])
                .observe(took.as_secs_f64());
        }));
        let p = Arc::new(p);
        p.spawn_refresh();
        idps.push(p);
    }
    let access_log = match &cfg.access_log {
        None => AccessLog::off(),
        Some(c) => AccessLog::open(Some(c)).map_err(|e| StartError::AccessLog {
            path: match &c.target {
                AccessLogTarget::File(p) => p.display().to_string(),
                AccessLogTarget::Stdout => "-".to_string(),
            },
            message: e.to_string(),
        })?,
    };
    let mut state = State::new(cfg, policies.clone(), keys, store, idps);
    state.access_log = access_log.clone();
    let state = Arc::new(state);
    // File changes and SIGHUP (`reload`) both reload through the watcher.
    spawn_watcher(policies, move |r| policy_reloaded(&access_log, r));
    changes::spawn(&state);
    crate::proxy::health::spawn_checker(&state, state.cfg.upstream_health);
    crate::scim::on_start(&state).await;
    Ok(state)
}

/// Count and log one policy reload (file change or SIGHUP), in the
/// metrics, the log and the access log.
fn policy_reloaded(access_log: &AccessLog, r: Result<(), &crate::policy::load::PolicyErrors>) {
    let label = if r.is_ok() { "success" } else { "error" };
    metrics()
        .policy_reloads_total
        .with_label_values(&[label])
        .inc();
    access_log.reload(label);
    match r {
        Ok(()) => {
            crate::metrics::config_loaded();
            tracing::info!("Policies reloaded")
        }
        Err(e) => {
            tracing::warn!(errors = %e, "Policy reload failed; keeping the last good policies")
        }
    }
}

/// `/metrics`, `/healthz`, `/readyz` on the metrics listener.
struct MetricsApp {
    state: Arc<State>,
    /// Every proxy listener accepted a connection once: they are bound.
    bound: std::sync::atomic::AtomicBool,
}

impl MetricsApp {
    /// Whether every proxy listener accepts connections; once true, it is
    /// not asked again (Pingora binds once, at start).
    async fn listeners_bound(&self) -> bool {
        use std::sync::atomic::Ordering;
        if self.bound.load(Ordering::Relaxed) {
            return true;
        }
        for l in &self.state.cfg.listen {
            let mut addr = l.addr;
            if addr.ip().is_unspecified() {
                addr.set_ip(match addr {
                    std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                    std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
                });
            }
            let probe = tokio::time::timeout(
                std::time::Duration::from_millis(250),
                tokio::net::TcpStream::connect(addr),
            );
            if !matches!(probe.await, Ok(Ok(_))) {
                return false;
            }
        }
        self.bound.store(true, Ordering::Relaxed);
        true
    }
}

#[async_trait]
impl ServeHttp for MetricsApp {
    async fn response(&self, session: &mut ServerSession) -> http::Response<Vec<u8>> {
        let path = session.req_header().uri.path().to_string();
        let (status, ctype, body) = match path.as_str() {
            "/metrics" => {
                // While the store is unreachable the gauge keeps its last
                // value (and the scrape does not wait for a connection).
                if !self.state.store_health.is_down() {
                    if let Ok(seats) = self.state.store.list_seats().await {
                        metrics().seats.set(seats.len() as i64);
                    }
                }
                (200, "text/plain; version=0.0.4", crate::metrics::render())
            }
            "/healthz" => (200, "text/plain", b"ok\n".to_vec()),
            "/readyz" => {
                let ready = self.state.idps.iter().all(|p| p.is_ready());
                if !self.listeners_bound().await {
                    (503, "text/plain", b"listeners not bound yet\n".to_vec())
                } else if ready {
                    (200, "text/plain", b"ready\n".to_vec())
                } else {
                    (
                        503,
                        "text/plain",
                        b"identity provider discovery pending\n".to_vec(),
                    )
                }
            }
            _ => (404, "text/plain", b"not found\n".to_vec()),
        };
        http::Response::builder()
            .status(status)
            .header("content-type", ctype)
            .header("content-length", body.len())
            .body(body)
            .unwrap_or_default()
    }
}

/// How [`build`] makes the server.
#[derive(Debug, Default)]
pub struct ServerOptions {
    /// Take the listening sockets over from the running process (graceful
    /// upgrade): wait at `upgrade_sock` for them (Pingora gives up after
    /// about 5 s) instead of binding.
    pub upgrade: bool,
    /// The config file as read at start, which a reload compares the file
    /// with (`None`: not compared).
    pub config_file: Option<ConfigFile>,
}

/// A server ready to run, and what reloads it.
pub struct Built {
    pub server: Server,
    /// Reloads policies and certificates: SIGHUP's work
    /// ([`reload::on_hangup`]), or a test's.
    pub reloader: Arc<Reloader>,
}

/// Build the Pingora server for a state (no upgrade, nothing to compare a
/// reload with).
pub fn build_server(state: Arc<State>) -> Result<Server, StartError> {
    build(state, ServerOptions::default()).map(|b| b.server)
}

/// Build the Pingora server for a state: the proxy listeners (each TLS one
/// serving a reloadable certificate) and the metrics listener. With
/// `opts.upgrade` this blocks until the old process has sent its
/// listening sockets.
pub fn build(state: Arc<State>, opts: ServerOptions) -> Result<Built, StartError> {
    let cfg = &state.cfg;
    let conf = ServerConf {
        threads: cfg.threads,
        grace_period_seconds: Some(cfg.grace_period_seconds),
        graceful_shutdown_timeout_seconds: Some(1),
        upgrade_sock: cfg.upgrade_sock.to_string_lossy().into_owned(),
        ..ServerConf::default()
    };
    // Fail here, with the listener named, rather than in Pingora's thread.
    let certs = TlsCerts::load(&cfg.listen).map_err(|(addr, e)| StartError::Listener {
        addr: addr.to_string(),
        message: e.to_string(),
    })?;
    if opts.upgrade {
        // The addresses are the old process's until it hands them over;
        // the new process creates the socket, so its folder must be ours.
        preflight::check_upgrade_dir(&cfg.upgrade_sock).map_err(|message| {
            StartError::UpgradeSock {
                path: cfg.upgrade_sock.display().to_string(),
                message,
            }
        })?;
    } else {
        preflight::check_bind_all(cfg.listen.iter().map(|l| l.addr).chain(cfg.metrics)).map_err(
            |(addr, e)| StartError::Listener {
                addr: addr.to_string(),
                message: format!("cannot listen: {e}"),
            },
        )?;
    }
    let opt = Opt {
        upgrade: opts.upgrade,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(Some(opt), conf);
    server.bootstrap();
    let mut proxy = pingora::proxy::http_proxy_service_with_name(
        &server.configuration,
        Portcullis {
            state: state.clone(),
        },
        "portcullis",
    );
    if let Some(app) = proxy.app_logic_mut() {
        app.server_options = Some(http_server_options());
        app.h2_options = Some(h2::options());
    }
    // `proxy_protocol` listeners: a service each, around one app.
    let mut pp_app = None;
    for l in &cfg.listen {
        let addr = l.addr.to_string();
        if l.proxy_protocol {
            let app = pp_app.get_or_insert_with(|| {
                let mut app = pingora::proxy::http_proxy(
                    &server.configuration,
                    Portcullis {
                        state: state.clone(),
                    },
                );
                app.server_options = Some(http_server_options());
                app.h2_options = Some(h2::options());
                Arc::new(app)
            });
            // The same reloadable certificate store as a plain TLS
            // listener's: a SIGHUP reload covers this listener too.
            let tls = certs.get(l.addr).map(|cert| cert.tls_settings());
            let trusted = cfg.trusted_proxies.clone().into();
            server.add_service(proxy_protocol::service(&addr, app.clone(), trusted, tls));
            continue;
        }
        match certs.get(l.addr) {
            None => proxy.add_tcp(&addr),
            // Browsers and API clients negotiate HTTP/2 over TLS (ALPN
            // h2, then http/1.1), as they do with Cloudflare; plain-text
            // listeners stay HTTP/1.1 (no h2c).
            Some(cert) => proxy.add_tls_with_settings(&addr, None, cert.tls_settings()),
        }
    }
    server.add_service(proxy);
    if let Some(addr) = cfg.metrics {
        let mut svc = Service::new(
            "metrics".to_string(),
            MetricsApp {
                state: state.clone(),
                bound: std::sync::atomic::AtomicBool::new(false),
            },
        );
        svc.add_tcp(&addr.to_string());
        server.add_service(svc);
    }
    let reloader = Arc::new(Reloader::new(
        state.policies.clone(),
        certs,
        opts.config_file,
        state.access_log.clone(),
    ));
    Ok(Built { server, reloader })
}

/// HTTP options of the proxy app on every listener. CONNECT reaches the
/// access phase, which refuses it with our own 405; nothing is ever
/// tunnelled (`Portcullis::access`).
fn http_server_options() -> pingora::apps::HttpServerOptions {
    let mut opts = pingora::apps::HttpServerOptions::default();
    opts.allow_connect_method_proxying = true;
    opts
}

struct NotifyShutdown(Arc<tokio::sync::Notify>);

#[async_trait]
impl ShutdownSignalWatch for NotifyShutdown {
    async fn recv(&self) -> ShutdownSignal {
        self.0.notified().await;
        ShutdownSignal::FastShutdown
    }
}

/// Pingora's Unix signals (SIGQUIT: graceful upgrade, SIGTERM: graceful
/// stop, SIGINT: fast stop), except that the listening sockets are only
/// sent when the folder of `upgrade_sock` is still private
/// ([`preflight::check_upgrade_dir`]); otherwise SIGQUIT is refused and
/// the process keeps serving.
struct UnixSignals {
    upgrade_sock: std::path::PathBuf,
}

#[async_trait]
impl ShutdownSignalWatch for UnixSignals {
    async fn recv(&self) -> ShutdownSignal {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut quit), Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::quit()),
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("Cannot listen for SIGQUIT, SIGTERM or SIGINT; stopping");
            return ShutdownSignal::FastShutdown;
        };
        loop {
            tokio::select! {
                _ = quit.recv() => match preflight::check_upgrade_dir(&self.upgrade_sock) {
                    Ok(()) => {
                        tracing::info!(upgrade_sock = %self.upgrade_sock.display(), "SIGQUIT: handing the listening sockets to the new process");
                        return ShutdownSignal::GracefulUpgrade;
                    }
                    Err(e) => tracing::error!(error = %e, "SIGQUIT refused: the listening sockets are not sent through a folder others can write; still serving (SIGTERM stops)"),
                },
                _ = term.recv() => return ShutdownSignal::GracefulTerminate,
                _ = int.recv() => return ShutdownSignal::FastShutdown,
            }
        }
    }
}

/// A server running on its own thread.
pub struct ServerHandle {
    notify: Arc<tokio::sync::Notify>,
    thread: Option<JoinHandle<()>>,
}

impl ServerHandle {
    /// Start `server` on a new thread; it stops on [`ServerHandle::stop`] or,
    /// with `unix_signals`, on SIGINT / SIGTERM, and hands its listening
    /// sockets over and stops on SIGQUIT (graceful upgrade).
    pub fn start(server: Server, unix_signals: bool) -> ServerHandle {
        let notify = Arc::new(tokio::sync::Notify::new());
        let n = notify.clone();
        let upgrade_sock = std::path::PathBuf::from(&server.configuration.upgrade_sock);
        let thread = std::thread::spawn(move || {
            let shutdown_signal: Box<dyn ShutdownSignalWatch> = if unix_signals {
                Box::new(UnixSignals { upgrade_sock })
            } else {
                Box::new(NotifyShutdown(n))
            };
            server.run(RunArgs { shutdown_signal });
        });
        ServerHandle {
            notify,
            thread: Some(thread),
        }
    }

    /// Ask the server to stop and wait for it.
    pub fn stop(mut self) {
        self.notify.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }

    /// Wait until the server exits by itself (signals).
    pub fn wait(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.notify.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
