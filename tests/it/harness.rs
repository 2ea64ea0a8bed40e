//! Builders for an in-process test environment: a dev IdP playing Okta, an
//! echo upstream that records what reached it, and the proxy on free
//! loopback ports; plus a browser-like client (cookie jar, no auto
//! redirects) that resolves `*.localhost` names to the proxy.

use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis::demo::echo::{self, Echo};
use portcullis::idp::dev::{self, DevIdp, DevIdpOptions};
use portcullis::proxy::State;
use portcullis::server::reload::Reloader;
use portcullis::server::{build, build_state, ServerHandle, ServerOptions};

/// A free loopback port (bound, read, released), never one this process
/// handed out before. Tests run in parallel, and a released port could be
/// handed to a second test before the first one's server binds it: one
/// test's requests then reach the other's server (or a port meant to stay
/// dead gets a listener), and a test fails for no fault of the proxy.
pub fn free_port() -> u16 {
    static HANDED_OUT: parking_lot::Mutex<BTreeSet<u16>> = parking_lot::Mutex::new(BTreeSet::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        if HANDED_OUT.lock().insert(port) {
            return port;
        }
    }
}

/// Poll `f` until it is true or the deadline passes.
pub async fn eventually(what: &str, timeout: Duration, mut f: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Default policies for most tests. `${UPSTREAM}` is the echo upstream.
pub const POLICIES: &str = r#"
apps:
  - name: app
    domain: app.localhost
    upstream: ${UPSTREAM}
    policies:
      - name: health
        decision: bypass
        include: [{ everyone: true }]
        require: [{ ip: 10.0.0.0/8 }]
      - name: employees
        decision: allow
        include: [{ email_domain: example.com }, { group: contractors }]
        exclude: [{ email: excluded@example.com }]
  - name: public
    domain: app.localhost
    path: /public
    upstream: ${UPSTREAM}
    policies:
      - name: anyone
        decision: bypass
        include: [{ everyone: true }]
  - name: admin
    domain: app.localhost
    path: /admin
    upstream: ${UPSTREAM}
    policies:
      - name: engineers with mfa
        decision: allow
        include: [{ group: engineering }]
        require: [{ auth_method: mfa }]
  - name: blocked
    domain: blocked.localhost
    upstream: ${UPSTREAM}
    policies:
      - name: block sales
        decision: block
        include: [{ group: sales }]
      - name: allow the rest
        decision: allow
        include: [{ everyone: true }]
  - name: other
    domain: other.localhost
    upstream: ${UPSTREAM}
    policies:
      - name: everyone
        decision: allow
        include: [{ everyone: true }]
  - name: api
    domain: api.localhost
    upstream: ${UPSTREAM}
    policies:
      - name: ci
        decision: service_auth
        include: [{ service_token: ci }]
      - name: sales
        decision: allow
        include: [{ group: sales }]
service_tokens:
  - name: ci
    client_id: ci.access
    # sha256("ci-secret")
    client_secret_sha256: "__CI_SECRET_SHA256__"
"#;

/// Hosts the client resolves to the proxy.
pub const HOSTS: &[&str] = &[
    "auth.localhost",
    "app.localhost",
    "blocked.localhost",
    "other.localhost",
    "api.localhost",
    "nowhere.localhost",
];

/// A running test environment.
pub struct Env {
    pub idp: DevIdp,
    pub upstream: Echo,
    /// The proxy's state, when it runs in this process ([`Env::state`]).
    state: Option<Arc<State>>,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// The self-signed certificate of a TLS env.
    ca_pem: Option<String>,
    pub port: u16,
    pub metrics_port: u16,
    /// The `proxy_protocol` listeners' ports, in the order they were asked
    /// for ([`EnvBuilder::proxy_protocol_listener`]).
    pub pp_ports: Vec<u16>,
    pub dir: tempfile::TempDir,
    /// What SIGHUP runs in `portcullis run` (in-process servers do not
    /// install the handler); `None` for a proxy in its own process.
    reloader: Option<Arc<Reloader>>,
    server: Option<ServerHandle>,
    /// The proxy as a `portcullis run` child ([`EnvBuilder::own_process`]).
    process: Option<crate::process::Running>,
}

/// How to build an [`Env`].
pub struct EnvBuilder {
    port: Option<u16>,
    tls: bool,
    policies: String,
    dir: Option<tempfile::TempDir>,
    idp_extra: String,
    config_extra: String,
    /// `public.scheme` (and the scheme of the redirect URI registered at
    /// the dev IdP), when browsers see another scheme than the listener's.
    public_scheme: Option<&'static str>,
    /// Extra listeners with `proxy_protocol: true`: whether each has TLS.
    pp_listeners: Vec<bool>,
    /// `threads:` of the proxy (1 unless asked).
    threads: usize,
    /// Run the proxy as a `portcullis run` child process.
    own_process: bool,
}

/// The proxy's `threads:` unless a test asks: `PORTCULLIS_IT_THREADS`,
/// else 1 (the whole suite can be run with more: `PORTCULLIS_IT_THREADS=2
/// cargo test --test it`).
fn default_threads() -> usize {
    std::env::var("PORTCULLIS_IT_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

pub fn env() -> EnvBuilder {
    EnvBuilder {
        port: None,
        tls: false,
        public_scheme: None,
        policies: POLICIES.to_string(),
        dir: None,
        idp_extra: String::new(),
        config_extra: String::new(),
        pp_listeners: Vec::new(),
        threads: default_threads(),
        own_process: false,
    }
}

fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

impl EnvBuilder {
    pub fn policies(mut self, yaml: &str) -> Self {
        self.policies = yaml.to_string();
        self
    }

    /// Reuse a data folder (store + keys) from an earlier env: a restart.
    pub fn data_dir(mut self, dir: tempfile::TempDir) -> Self {
        self.dir = Some(dir);
        self
    }

    /// Extra YAML lines inside the IdP's `config:` map.
    pub fn idp_config(mut self, extra: &str) -> Self {
        self.idp_extra = extra.to_string();
        self
    }

    /// Serve the proxy listener over TLS with a fresh self-signed certificate
    /// for every test host.
    /// Extra top-level lines of `portcullis.yaml`.
    pub fn config(mut self, lines: &str) -> Self {
        self.config_extra.push_str(lines);
        self
    }

    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// One more listener, on a free port ([`Env::pp_ports`]), with
    /// `proxy_protocol: true`; with `tls`, it serves the env's self-signed
    /// certificate. The config needs `trusted_proxies` too.
    pub fn proxy_protocol_listener(mut self, tls: bool) -> Self {
        self.pp_listeners.push(tls);
        self
    }

    /// Browsers reach the proxy over https through a balancer that ends
    /// TLS and forwards plain HTTP to the listener: `public: { scheme:
    /// https }`, the redirect URI registered at the dev IdP is `https://`.
    /// Clients still talk plain HTTP to [`Env::url`]; following an
    /// `https://` Location is the test's part of the balancer.
    pub fn behind_tls_balancer(mut self) -> Self {
        self.public_scheme = Some("https");
        self.config_extra.push_str("public: { scheme: https }\n");
        self
    }

    /// `threads:` of the proxy (the harness's default is 1, see
    /// `default_threads`; production's is every core). Tests of concurrent
    /// paths (revocation, reload, SCIM) ask for 2.
    pub fn threads(mut self, n: usize) -> Self {
        self.threads = n;
        self
    }

    /// Run the proxy as the real binary (`portcullis run`) in a child
    /// process, the dev IdP and the upstream staying in this one. Its
    /// metrics are its own: counters read on [`Env::metrics`] move only
    /// by what this test did, while every in-process proxy of the test
    /// binary shares one registry with the tests running beside it.
    /// [`Env::state`] and [`Env::reloader`] are not available.
    pub fn own_process(mut self) -> Self {
        self.own_process = true;
        self
    }

    /// Listen on this port (a restart keeps the auth domain and so the tokens' issuer).
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    pub async fn start(self) -> Env {
        let idps = format!(
            "{}{}",
            okta_idp("      authorization_server_id: default\n      claims: [department]\n      pkce_enabled: true"),
            self.idp_extra
        );
        self.start_with(IdpSetup::new(&idps)).await
    }
}

impl Env {
    async fn wait_ready(&self) {
        let client = reqwest::Client::new();
        let url = format!("http://127.0.0.1:{}/readyz", self.metrics_port);
        eventually(
            "proxy ready",
            Duration::from_secs(20),
            async || matches!(client.get(&url).send().await, Ok(r) if r.status() == 200),
        )
        .await;
        let addr: SocketAddr = format!("127.0.0.1:{}", self.port).parse().unwrap();
        eventually("proxy listening", Duration::from_secs(20), async || {
            tokio::net::TcpStream::connect(addr).await.is_ok()
        })
        .await;
    }

    /// The in-process proxy's state (panics for [`EnvBuilder::own_process`]).
    pub fn state(&self) -> &Arc<State> {
        self.state
            .as_ref()
            .expect("the proxy runs in its own process: no in-process state")
    }

    /// What SIGHUP runs (panics for [`EnvBuilder::own_process`]).
    pub fn reloader(&self) -> &Arc<Reloader> {
        self.reloader
            .as_ref()
            .expect("the proxy runs in its own process: signal it instead")
    }

    /// `<scheme>://<host>:<port><path>`
    pub fn url(&self, host: &str, path: &str) -> String {
        format!("{}://{host}:{}{path}", self.scheme, self.port)
    }

    /// A browser-like client: cookie jar, no automatic redirects, `*.localhost` → proxy.
    pub fn browser(&self) -> reqwest::Client {
        self.client_builder().cookie_store(true).build().unwrap()
    }

    /// A client without cookies.
    pub fn client(&self) -> reqwest::Client {
        self.client_builder().build().unwrap()
    }

    fn client_builder(&self) -> reqwest::ClientBuilder {
        self.client_builder_to(self.port)
    }

    /// A client builder that sends every test host to `127.0.0.1:port`
    /// (a listener, or a balancer in front of one), trusting the env's
    /// certificate.
    pub fn client_builder_to(&self, port: u16) -> reqwest::ClientBuilder {
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut b = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(20));
        if let Some(pem) = &self.ca_pem {
            b = b.add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).unwrap());
        }
        for h in HOSTS {
            b = b.resolve(h, addr);
        }
        b
    }

    /// The self-signed certificate (PEM) of a TLS env.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// Stop the proxy, keeping the data folder (for a restart).
    pub fn stop(mut self) -> tempfile::TempDir {
        if let Some(s) = self.server.take() {
            s.stop();
        }
        drop(self.process.take());
        std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap())
    }

    pub fn data_path(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Metrics text from the metrics listener.
    pub async fn metrics(&self) -> String {
        reqwest::get(format!("http://127.0.0.1:{}/metrics", self.metrics_port))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            s.stop();
        }
    }
}

/// `Accept` header of a browser navigation.
pub const HTML: &str = "text/html,application/xhtml+xml,*/*;q=0.8";

/// A browser's page GET of `url`.
pub async fn html_get(browser: &reqwest::Client, url: &str) -> reqwest::Response {
    browser
        .get(url)
        .header("accept", HTML)
        .send()
        .await
        .unwrap()
}

/// Whether `r` clears a cookie (`Max-Age=0`) whose `Set-Cookie` starts
/// with `prefix` and contains `part`.
pub fn clears_cookie(r: &reqwest::Response, prefix: &str, part: &str) -> bool {
    r.headers().get_all("set-cookie").iter().any(|c| {
        let c = c.to_str().unwrap();
        c.starts_with(prefix) && c.contains("Max-Age=0") && c.contains(part)
    })
}

pub fn location(r: &reqwest::Response) -> String {
    r.headers()
        .get("location")
        .unwrap_or_else(|| panic!("no Location on {}", r.status()))
        .to_str()
        .unwrap()
        .to_string()
}

/// What a login walk ended with.
pub struct LoginEnd {
    pub response: reqwest::Response,
    /// Every URL visited, in order.
    pub trail: Vec<String>,
}

/// Walk a browser login: GET `url`, follow the proxy's redirects, at the IdP
/// pick `user` (as the login page's form would), follow back until a
/// response that is not a redirect (or a redirect off our hosts).
pub async fn browse_login(env: &Env, browser: &reqwest::Client, url: &str, user: &str) -> LoginEnd {
    let mut trail = vec![url.to_string()];
    let mut resp = browser
        .get(url)
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    for _ in 0..12 {
        if !resp.status().is_redirection() {
            break;
        }
        let next = location(&resp);
        trail.push(next.clone());
        let idp_base = format!("http://{}", env.idp.addr());
        if next.starts_with(&idp_base) && next.contains("/v1/authorize") {
            let (login_url, form) = dev::login_form(&next, user).unwrap();
            resp = browser.post(&login_url).form(&form).send().await.unwrap();
        } else if next.starts_with(env.scheme)
            && HOSTS.iter().any(|h| next.contains(&format!("//{h}:")))
        {
            resp = browser
                .get(&next)
                .header("accept", HTML)
                .send()
                .await
                .unwrap();
        } else {
            break;
        }
    }
    LoginEnd {
        response: resp,
        trail,
    }
}

/// Assert a login walk ended in a policy denial: a session was handed to
/// the app (`/authorized`), the walk came back to the app's own URL, and
/// that answered the policy's 403 page. The callback answers 403 too (an
/// IdP `access_denied`, a deactivated user), but such a walk never
/// reaches `/authorized`.
pub async fn assert_policy_denied(end: LoginEnd) {
    assert_eq!(end.response.status(), 403, "{:?}", end.trail);
    assert!(
        end.trail
            .iter()
            .any(|u| u.contains("/cdn-cgi/access/authorized?")),
        "no session was handed to the app: {:?}",
        end.trail
    );
    let last = end.trail.last().expect("a trail");
    assert!(
        !last.contains("/cdn-cgi/access/"),
        "ended on a proxy endpoint, not the app: {:?}",
        end.trail
    );
    let page = end.response.text().await.unwrap();
    assert!(
        page.contains("You do not have access to this application."),
        "not the policy's page: {page}"
    );
}

/// A new browser logs in as `user` at `app.localhost/`: where it ends.
pub async fn fresh_login(env: &Env, user: &str) -> LoginEnd {
    browse_login(env, &env.browser(), &env.url("app.localhost", "/"), user).await
}

/// Log in `user` at `url` and expect to land on the upstream (200).
pub async fn login_ok(
    env: &Env,
    browser: &reqwest::Client,
    url: &str,
    user: &str,
) -> reqwest::Response {
    let end = browse_login(env, browser, url, user).await;
    assert_eq!(
        end.response.status(),
        200,
        "login of {user} at {url} ended with {} after {:?}",
        end.response.status(),
        end.trail
    );
    end.response
}

// helpers added for attacks/operations

/// `yaml` with `${UPSTREAM}` and `__CI_SECRET_SHA256__` filled in, as
/// [`EnvBuilder::start`] does for the first policy file.
pub fn expand_policies(env: &Env, yaml: &str) -> String {
    expand(yaml, env.upstream.addr())
}

/// `${UPSTREAM}` is `http://` + the echo upstream's address,
/// `${UPSTREAM_PORT}` its port alone, `__CI_SECRET_SHA256__` the hash of
/// the test service token's secret.
fn expand(yaml: &str, upstream: SocketAddr) -> String {
    yaml.replace("${UPSTREAM}", &format!("http://{upstream}"))
        .replace("${UPSTREAM_PORT}", &upstream.port().to_string())
        .replace("__CI_SECRET_SHA256__", &sha256_hex("ci-secret"))
}

/// Replace `<data>/policies/main.yaml` with `yaml` (expanded as by
/// [`expand_policies`]). The text goes to a hidden sibling first and is then
/// renamed into place, so the policy watcher never reads half a file.
pub fn write_policies(env: &Env, yaml: &str) {
    let dir = env.data_path().join("policies");
    let tmp = dir.join(".main.yaml.tmp");
    std::fs::write(&tmp, expand_policies(env, yaml)).expect("write policies");
    std::fs::rename(&tmp, dir.join("main.yaml")).expect("rename policies");
}

// helpers added for okta

/// The IdP side of an environment started with [`EnvBuilder::start_with`].
pub struct IdpSetup {
    /// The items of `identity_providers:` (list items indented by two
    /// spaces). `__OKTA__` (the dev IdP's org URL), `__ISSUER__` (its custom
    /// authorization server `default`), `__CLIENT_ID__` and
    /// `__CLIENT_SECRET__` are filled in.
    pub identity_providers: String,
    /// `headers.forward_claims`.
    pub forward_claims: bool,
    /// Take the dev IdP offline before the proxy starts, and wait only for
    /// the proxy's listener, not for `/readyz`.
    pub idp_offline_at_start: bool,
}

/// One `type: okta` entry named `okta` with the dev IdP's org URL and client,
/// plus `config_lines` (YAML lines inside `config:`, indented by six spaces).
pub fn okta_idp(config_lines: &str) -> String {
    format!(
        r#"
  - name: okta
    type: okta
    config:
      client_id: __CLIENT_ID__
      client_secret: __CLIENT_SECRET__
      okta_account: __OKTA__
{config_lines}
"#
    )
}

impl IdpSetup {
    /// `identity_providers` as given, claims forwarded, the dev IdP online.
    pub fn new(identity_providers: &str) -> IdpSetup {
        IdpSetup {
            identity_providers: identity_providers.to_string(),
            forward_claims: true,
            idp_offline_at_start: false,
        }
    }
}

impl EnvBuilder {
    /// Like [`EnvBuilder::start`], with the `identity_providers` block,
    /// `headers.forward_claims` and the dev IdP's state at start taken from
    /// `setup` (`idp_config` is not used).
    pub async fn start_with(self, setup: IdpSetup) -> Env {
        let port = self.port.unwrap_or_else(free_port);
        let metrics_port = free_port();
        let scheme = if self.tls { "https" } else { "http" };
        let public_scheme = self.public_scheme.unwrap_or(scheme);
        let redirect = format!("{public_scheme}://auth.localhost:{port}/cdn-cgi/access/callback");
        let idp = dev::start(DevIdpOptions::new(
            "127.0.0.1:0".parse().unwrap(),
            vec![redirect],
        ))
        .await
        .expect("dev idp");
        if setup.idp_offline_at_start {
            idp.set_offline(true);
        }
        let upstream = echo::start("127.0.0.1:0".parse().unwrap())
            .await
            .expect("upstream");
        let dir = self
            .dir
            .unwrap_or_else(|| tempfile::tempdir().expect("tempdir"));
        let policies_dir = dir.path().join("policies");
        std::fs::create_dir_all(&policies_dir).unwrap();
        let policies = expand(&self.policies, upstream.addr());
        std::fs::write(policies_dir.join("main.yaml"), policies).unwrap();
        let idps = setup
            .identity_providers
            .replace("__OKTA__", &idp.okta_account())
            .replace("__ISSUER__", &idp.issuer())
            .replace("__CLIENT_ID__", idp.client_id())
            .replace("__CLIENT_SECRET__", idp.client_secret());
        let mut ca_pem = None;
        let cert_line = if self.tls || self.pp_listeners.contains(&true) {
            let cert = rcgen::generate_simple_self_signed(
                HOSTS.iter().map(|h| h.to_string()).collect::<Vec<_>>(),
            )
            .expect("self-signed certificate");
            std::fs::write(dir.path().join("tls.crt"), cert.cert.pem()).unwrap();
            std::fs::write(dir.path().join("tls.key"), cert.signing_key.serialize_pem()).unwrap();
            ca_pem = Some(cert.cert.pem());
            format!(
                "    tls: {{ cert: {0}/tls.crt, key: {0}/tls.key }}\n",
                dir.path().display()
            )
        } else {
            String::new()
        };
        let tls_line = if self.tls { cert_line.as_str() } else { "" };
        let pp_ports: Vec<u16> = self.pp_listeners.iter().map(|_| free_port()).collect();
        let pp_lines: String = self
            .pp_listeners
            .iter()
            .zip(&pp_ports)
            .map(|(tls, p)| {
                let tls = if *tls { cert_line.as_str() } else { "" };
                format!("  - addr: 127.0.0.1:{p}\n    proxy_protocol: true\n{tls}")
            })
            .collect();
        let config = format!(
            r#"
listen:
  - addr: 127.0.0.1:{port}
{tls_line}{pp_lines}auth_domain: auth.localhost:{port}
threads: {threads}
metrics: {{ listen: "127.0.0.1:{metrics_port}" }}
store: sqlite://{data}/state.db
key_dir: {data}/keys
headers: {{ forward_claims: {forward} }}
identity_providers:
{idps}
policies: {data}/policies
{extra}"#,
            data = dir.path().display(),
            forward = setup.forward_claims,
            extra = self.config_extra,
            threads = self.threads,
        );
        let cfg_path = dir.path().join("portcullis.yaml");
        std::fs::write(&cfg_path, &config).unwrap();
        if self.own_process {
            let env = Env {
                idp,
                upstream,
                state: None,
                scheme,
                ca_pem,
                port,
                metrics_port,
                pp_ports,
                dir,
                reloader: None,
                server: None,
                process: Some(crate::process::Running::start(&cfg_path, &[])),
            };
            env.wait_ready().await;
            return env;
        }
        let cfg =
            portcullis::config::load_file(&cfg_path).unwrap_or_else(|e| panic!("config: {e}"));
        let state = build_state(cfg)
            .await
            .unwrap_or_else(|e| panic!("state: {e}"));
        let built = build(state.clone(), ServerOptions::default()).expect("server");
        let reloader = built.reloader.clone();
        let handle = ServerHandle::start(built.server, false);
        let env = Env {
            idp,
            upstream,
            state: Some(state),
            scheme,
            ca_pem,
            port,
            metrics_port,
            pp_ports,
            dir,
            reloader: Some(reloader),
            server: Some(handle),
            process: None,
        };
        if setup.idp_offline_at_start {
            for port in [env.metrics_port, env.port] {
                let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
                eventually("proxy listening", Duration::from_secs(20), async || {
                    tokio::net::TcpStream::connect(addr).await.is_ok()
                })
                .await;
            }
        } else {
            env.wait_ready().await;
        }
        env
    }
}

impl Env {
    /// Status of `/readyz` on the metrics listener.
    pub async fn readyz(&self) -> u16 {
        reqwest::get(format!("http://127.0.0.1:{}/readyz", self.metrics_port))
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

// helpers added for scim

/// The SCIM bearer secret [`EnvBuilder::scim`] configures.
pub const SCIM_SECRET: &str = "scim-test-secret-0123456789";

impl EnvBuilder {
    /// Enable SCIM on the IdP with [`SCIM_SECRET`] and these
    /// `scim_config` flags.
    pub fn scim(
        self,
        user_deprovision: bool,
        seat_deprovision: bool,
        group_member_deprovision: bool,
    ) -> Self {
        // The `idp_config` lines land right after the IdP's `config:` map;
        // at this indentation `scim_config` is the IdP entry's own key.
        let extra = format!(
            "{}    scim_config:\n      enabled: true\n      secret: {SCIM_SECRET}\n      user_deprovision: {user_deprovision}\n      seat_deprovision: {seat_deprovision}\n      group_member_deprovision: {group_member_deprovision}\n",
            self.idp_extra
        );
        self.idp_config(&extra)
    }
}

/// A raw HTTP/1.1 exchange over a new TCP connection: `head` is sent as is
/// (request line and headers, CRLF-terminated, without the blank line).
/// Returns the status and the whole response text.
pub async fn raw_http(env: &Env, head: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", env.port))
        .await
        .unwrap();
    let mut req = head.to_string();
    if !head.to_ascii_lowercase().contains("\r\nconnection:") {
        req.push_str("Connection: close\r\n");
    }
    req.push_str("\r\n");
    tokio::io::AsyncWriteExt::write_all(&mut stream, req.as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = async {
        let mut chunk = [0u8; 8192];
        loop {
            let n = tokio::io::AsyncReadExt::read(&mut stream, &mut chunk)
                .await
                .unwrap_or(0);
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
            if response_complete(&buf) {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(15), read)
        .await
        .unwrap_or_else(|_| panic!("no complete response to {head:?}"));
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?} for {head:?}"));
    (status, text)
}

/// Whether `buf` holds a whole response (by Content-Length or chunked end).
pub fn response_complete(buf: &[u8]) -> bool {
    let text = String::from_utf8_lossy(buf);
    let Some(end) = text.find("\r\n\r\n") else {
        return false;
    };
    let head = text[..end].to_ascii_lowercase();
    let body = &buf[end + 4..];
    if let Some(len) = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        return body.len() >= len;
    }
    if head.contains("transfer-encoding: chunked") {
        return body.ends_with(b"0\r\n\r\n");
    }
    false
}

/// The sum of every sample of `name` (exact metric name) whose labels include
/// all of `labels`; 0 when there is none (a counter never incremented).
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (n, label_text) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.strip_suffix('}')?),
                None => (series, ""),
            };
            if n != name {
                return None;
            }
            let all = labels
                .iter()
                .all(|(k, v)| label_text.split(',').any(|p| p == format!("{k}=\"{v}\"")));
            all.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}
