//! Fleet mode: three proxies on one PostgreSQL database behind a TCP load
//! balancer of the test's own, which sends each new connection to the
//! instance the test picks. The hops of one login land on different
//! instances; a logout on one is refused by the others within a second;
//! an instance that stops takes nothing with it, and a new one serves the
//! existing sessions at once.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis::demo::echo::{self, Echo};
use portcullis::idp::dev::{self, DevIdp, DevIdpOptions};
use portcullis::server::{build_server, build_state, ServerHandle};
use portcullis::testing::postgres::PgServer;

use crate::harness::{free_port, location, HOSTS, HTML, POLICIES, SCIM_SECRET};

/// A TCP balancer on loopback: each accepted connection is piped to the
/// backend the test set last.
struct Balancer {
    port: u16,
    target: Arc<AtomicUsize>,
}

impl Balancer {
    async fn start(backends: Vec<u16>) -> Balancer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let target = Arc::new(AtomicUsize::new(0));
        let t = target.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let backend = backends[t.load(Ordering::SeqCst) % backends.len()];
                tokio::spawn(async move {
                    if let Ok(mut out) =
                        tokio::net::TcpStream::connect(("127.0.0.1", backend)).await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                    }
                });
            }
        });
        Balancer { port, target }
    }

    /// Send new connections to instance `i`.
    fn to(&self, i: usize) {
        self.target.store(i, Ordering::SeqCst);
    }
}

/// One instance of the fleet.
struct Instance {
    port: u16,
    server: Option<ServerHandle>,
    _dir: tempfile::TempDir,
}

impl Drop for Instance {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            s.stop();
        }
    }
}

/// Three instances, one database, one IdP, one upstream, one balancer.
struct Fleet {
    db: String,
    idp: DevIdp,
    upstream: Echo,
    lb: Balancer,
    lb_port: u16,
    ports: Vec<u16>,
    instances: Vec<Option<Instance>>,
    policies: tempfile::TempDir,
    /// Extra keys of every instance's `store` map.
    extra: String,
}

impl Fleet {
    async fn start(n: usize) -> Fleet {
        let db = PgServer::shared().fresh_database().await;
        Fleet::start_on(db, n, "").await
    }

    /// `n` instances on database `db`; `extra` is added inside the `store`
    /// map (e.g. `, outage_grace: 5s`).
    async fn start_on(db: String, n: usize, extra: &str) -> Fleet {
        let mut fleet = Fleet::prepare(db, n, extra).await;
        for i in 0..n {
            let inst = fleet.instance(fleet.ports[i]).await;
            fleet.instances.push(Some(inst));
        }
        fleet
    }

    /// The database, IdP, upstream and balancer of a fleet of `n`, with no
    /// instance started yet.
    async fn prepare(db: String, n: usize, extra: &str) -> Fleet {
        let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let lb = Balancer::start(ports.clone()).await;
        let lb_port = lb.port;
        let redirect = format!("http://auth.localhost:{lb_port}/cdn-cgi/access/callback");
        let idp = dev::start(DevIdpOptions::new(
            "127.0.0.1:0".parse().unwrap(),
            vec![redirect],
        ))
        .await
        .unwrap();
        let upstream = echo::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let policies = tempfile::tempdir().unwrap();
        let yaml = POLICIES
            .replace("${UPSTREAM}", &format!("http://{}", upstream.addr()))
            .replace("__CI_SECRET_SHA256__", &"0".repeat(64));
        std::fs::write(policies.path().join("main.yaml"), yaml).unwrap();
        Fleet {
            db,
            idp,
            upstream,
            lb,
            lb_port,
            ports,
            instances: Vec::new(),
            policies,
            extra: extra.to_string(),
        }
    }

    /// The config file of an instance listening on `port`.
    fn config(&self, port: u16) -> String {
        format!(
            r#"
listen:
  - addr: 127.0.0.1:{port}
auth_domain: auth.localhost:{lb}
public: {{ port: {lb} }}
threads: 1
store: {{ url: "{db}", pool_size: 4{extra_store} }}
identity_providers:
  - name: okta
    type: okta
    config:
      client_id: {client_id}
      client_secret: {client_secret}
      okta_account: {okta}
      authorization_server_id: default
    scim_config:
      enabled: true
      secret: {SCIM_SECRET}
      user_deprovision: true
policies: {policies}
"#,
            lb = self.lb_port,
            db = self.db,
            client_id = self.idp.client_id(),
            client_secret = self.idp.client_secret(),
            okta = self.idp.okta_account(),
            policies = self.policies.path().display(),
            extra_store = self.extra,
        )
    }

    /// Start an instance on `port` (one of the balancer's backends).
    async fn instance(&self, port: u16) -> Instance {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("portcullis.yaml");
        std::fs::write(&path, self.config(port)).unwrap();
        let cfg = portcullis::config::load_file(&path).unwrap_or_else(|e| panic!("config: {e}"));
        let state = build_state(cfg).await.unwrap_or_else(|e| panic!("{e}"));
        let server = ServerHandle::start(build_server(state.clone()).unwrap(), false);
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            assert!(
                Instant::now() < deadline,
                "instance on {port} never listened"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let ready = Instant::now() + Duration::from_secs(20);
        while !state.idps.iter().all(|p| p.is_ready()) {
            assert!(Instant::now() < ready, "instance on {port} never ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Instance {
            port,
            server: Some(server),
            _dir: dir,
        }
    }

    /// A browser through the balancer: cookie jar, no redirects, and a new
    /// connection per request, so each request goes where the balancer
    /// points at the time.
    fn browser(&self) -> reqwest::Client {
        self.browser_with(Arc::new(reqwest::cookie::Jar::default()))
    }

    /// [`browser`](Self::browser) with a cookie jar the test can read.
    fn browser_with(&self, jar: Arc<reqwest::cookie::Jar>) -> reqwest::Client {
        let addr: SocketAddr = format!("127.0.0.1:{}", self.lb_port).parse().unwrap();
        let mut b = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .cookie_provider(jar)
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(20));
        for h in HOSTS {
            b = b.resolve(h, addr);
        }
        b.build().unwrap()
    }

    fn url(&self, host: &str, path: &str) -> String {
        format!("http://{host}:{}{path}", self.lb_port)
    }

    /// GET `url` on instance `i` as a browser page load.
    async fn get_on(&self, i: usize, browser: &reqwest::Client, url: &str) -> reqwest::Response {
        self.lb.to(i);
        browser
            .get(url)
            .header("accept", HTML)
            .send()
            .await
            .unwrap()
    }

    /// Log `user` in at the app, each hop on the next instance (round
    /// robin from `first`); returns the instances that served the hops.
    async fn login_hopping(
        &self,
        browser: &reqwest::Client,
        user: &str,
        first: usize,
    ) -> Vec<usize> {
        self.login_walk(browser, user, first, self.ports.len())
            .await
    }

    /// Log `user` in at the app with every hop on instance `i`.
    async fn login_on(&self, browser: &reqwest::Client, user: &str, i: usize) {
        self.login_walk(browser, user, i, 1).await;
    }

    /// The login walk: hop `k` goes to instance `(first + k) % n` when
    /// `n` is the fleet's size, or stays on `first` when `n` is 1.
    async fn login_walk(
        &self,
        browser: &reqwest::Client,
        user: &str,
        first: usize,
        n: usize,
    ) -> Vec<usize> {
        let at = |hop: usize| if n == 1 { first } else { hop % n };
        let mut hop = first;
        let mut served = vec![at(hop)];
        let mut trail = Vec::new();
        let mut resp = self
            .get_on(at(hop), browser, &self.url("app.localhost", "/"))
            .await;
        let idp_base = format!("http://{}", self.idp.addr());
        for _ in 0..12 {
            if !resp.status().is_redirection() {
                break;
            }
            let next = location(&resp);
            if next.starts_with(&idp_base) {
                let (login_url, form) = dev::login_form(&next, user).unwrap();
                resp = browser.post(&login_url).form(&form).send().await.unwrap();
                continue;
            }
            hop += 1;
            served.push(at(hop));
            trail.push(next.clone());
            resp = self.get_on(at(hop), browser, &next).await;
        }
        let status = resp.status();
        assert_eq!(
            status,
            200,
            "login ended with {status} after {trail:?}: {}",
            resp.text().await.unwrap_or_default()
        );
        served
    }
}

/// The app's status on instance `i` for a request carrying `cookie`.
async fn status_with_cookie(f: &Fleet, i: usize, cookie: &str) -> u16 {
    f.lb.to(i);
    f.browser()
        .get(f.url("app.localhost", "/"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Every one of `instances` refuses the session in `cookie` (401) within
/// 1 s of `since`; until then each may still serve it (200).
async fn refused_within_a_second(f: &Fleet, cookie: &str, instances: &[usize], since: Instant) {
    for &i in instances {
        loop {
            let s = status_with_cookie(f, i, cookie).await;
            if s == 401 {
                break;
            }
            assert_eq!(s, 200);
            assert!(
                since.elapsed() < Duration::from_secs(1),
                "instance {i} still served the revoked session after 1 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// The app's status on instance `i` for this browser.
async fn app_status(f: &Fleet, i: usize, browser: &reqwest::Client) -> u16 {
    f.get_on(i, browser, &f.url("app.localhost", "/"))
        .await
        .status()
        .as_u16()
}

/// Any hop of a login may land on any instance: the login state, the
/// transfer token and the session are in the database, and every instance
/// signs and verifies with the same keys, published in the same JWKS.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_login_hops_across_instances_and_every_instance_serves_it() {
    let f = Fleet::start(3).await;
    let browser = f.browser();
    let served = f.login_hopping(&browser, "00ualice", 0).await;
    let distinct: std::collections::BTreeSet<_> = served.iter().collect();
    assert_eq!(distinct.len(), 3, "hops served by {served:?}");
    for i in 0..3 {
        assert_eq!(app_status(&f, i, &browser).await, 200, "instance {i}");
    }
    let mut jwks = Vec::new();
    for i in 0..3 {
        f.lb.to(i);
        let body = f
            .browser()
            .get(f.url("auth.localhost", "/cdn-cgi/access/certs"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        jwks.push(body);
    }
    assert!(
        jwks.iter().all(|j| j == &jwks[0] && j.contains("\"kid\"")),
        "{jwks:?}"
    );
    assert!(f.upstream.seen().len() >= 4);
}

/// A logout on one instance is refused by every other within 1 s, though
/// they hold the session in their caches.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_logout_on_one_instance_is_refused_by_all_within_a_second() {
    let f = Fleet::start(3).await;
    let jar = Arc::new(reqwest::cookie::Jar::default());
    let browser = f.browser_with(jar.clone());
    f.login_hopping(&browser, "00ualice", 1).await;
    // Warm every instance's cache with the app session.
    for i in 0..3 {
        assert_eq!(app_status(&f, i, &browser).await, 200);
    }
    // Keep a copy of the cookies: logout clears them in the browser.
    let cookie = app_cookie(&f, &jar);
    for i in 0..3 {
        assert_eq!(
            status_with_cookie(&f, i, &cookie).await,
            200,
            "copy works on {i}"
        );
    }
    f.lb.to(2);
    let out = browser
        .post(f.url("app.localhost", "/cdn-cgi/access/logout"))
        .send()
        .await
        .unwrap();
    assert!(out.status().is_success(), "logout: {}", out.status());
    refused_within_a_second(&f, &cookie, &[0, 1], Instant::now()).await;
}

/// The `Cookie` header the browser sends to the app.
fn app_cookie(f: &Fleet, jar: &reqwest::cookie::Jar) -> String {
    use reqwest::cookie::CookieStore as _;
    let url = f.url("app.localhost", "/").parse().unwrap();
    let cookie = jar.cookies(&url).expect("app cookies");
    cookie.to_str().unwrap().to_string()
}

/// An instance that stops takes nothing with it: the others keep serving
/// its sessions, and a new instance serves them at once, without a login.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopped_instance_loses_nothing_and_a_new_one_serves_at_once() {
    let mut f = Fleet::start(2).await;
    let browser = f.browser();
    f.login_on(&browser, "00ualice", 0).await;
    // Instance 0 goes away; instance 1 serves the session.
    drop(f.instances[0].take());
    assert_eq!(app_status(&f, 1, &browser).await, 200);
    // A new instance on instance 0's port serves it at once.
    let again = f.instance(f.ports[0]).await;
    assert_eq!(again.port, f.ports[0]);
    f.instances[0] = Some(again);
    assert_eq!(app_status(&f, 0, &browser).await, 200);
}

/// A SCIM deactivation on one instance revokes the user's session on the
/// others, which held it in their caches, within a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_scim_deactivation_on_one_instance_is_refused_by_the_others() {
    let f = Fleet::start(3).await;
    let jar = Arc::new(reqwest::cookie::Jar::default());
    let browser = f.browser_with(jar.clone());
    f.login_hopping(&browser, "00ualice", 0).await;
    for i in 0..3 {
        assert_eq!(app_status(&f, i, &browser).await, 200);
    }
    let cookie = app_cookie(&f, &jar);
    for i in 0..3 {
        assert_eq!(
            status_with_cookie(&f, i, &cookie).await,
            200,
            "copy works on {i}"
        );
    }
    let scim = f.browser();
    let user = serde_json::json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "alice@example.com",
        "active": true,
        "emails": [{"value": "alice@example.com", "primary": true}],
    });
    f.lb.to(1);
    let created: serde_json::Value = scim
        .post(f.url("auth.localhost", "/scim/v2/Users"))
        .bearer_auth(SCIM_SECRET)
        .json(&user)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().expect("created user id").to_string();
    f.lb.to(2);
    let patch = serde_json::json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "value": {"active": false}}],
    });
    let r = scim
        .patch(f.url("auth.localhost", &format!("/scim/v2/Users/{id}")))
        .bearer_auth(SCIM_SECRET)
        .json(&patch)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    refused_within_a_second(&f, &cookie, &[0, 1], Instant::now()).await;
}

/// While PostgreSQL is down: logins and SCIM answer 503 at once, a bypass
/// route keeps working, a cached session is served for `outage_grace` and
/// then refused with 503 (fail closed); when PostgreSQL is back the
/// instance recovers by itself, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_database_outage_serves_cached_sessions_for_the_grace_then_fails_closed_and_recovers() {
    let server = PgServer::start();
    let db = server.fresh_database().await;
    let f = Fleet::start_on(db, 1, ", outage_grace: 6s").await;
    let jar = Arc::new(reqwest::cookie::Jar::default());
    let browser = f.browser_with(jar.clone());
    f.login_hopping(&browser, "00ualice", 0).await;
    let cookie = app_cookie(&f, &jar);
    let with_cookie = || status_with_cookie(&f, 0, &cookie);
    assert_eq!(with_cookie().await, 200);

    server.stop();
    let stopped = Instant::now();
    // The instance notices within a poll or two: logins answer 503 at once.
    let login = f.url("auth.localhost", "/cdn-cgi/access/login?redirect_url=x");
    loop {
        let r = f.browser().get(&login).send().await.unwrap();
        if r.status() == 503 {
            let body = r.text().await.unwrap();
            assert!(body.contains("unavailable"), "{body}");
            break;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(4),
            "login never answered 503"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let noticed = stopped.elapsed();
    // Within the grace: the cached session is served, a bypass route works,
    // SCIM and a session the cache does not hold get 503.
    if noticed < Duration::from_secs(5) {
        assert_eq!(with_cookie().await, 200, "cached session within the grace");
    }
    let public = f
        .browser()
        .get(f.url("app.localhost", "/public/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(public.status(), 200, "bypass route during the outage");
    let scim = f
        .browser()
        .get(f.url("auth.localhost", "/scim/v2/Users"))
        .bearer_auth(SCIM_SECRET)
        .send()
        .await
        .unwrap();
    assert_eq!(scim.status(), 503);
    // Past the grace: fail closed.
    loop {
        let s = with_cookie().await;
        if s == 503 {
            break;
        }
        assert_eq!(s, 200);
        assert!(
            stopped.elapsed() < Duration::from_secs(6 + 3),
            "cached session still served past outage_grace"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The database comes back: the instance recovers by itself.
    server.start_again();
    let back = Instant::now();
    loop {
        if with_cookie().await == 200 {
            break;
        }
        assert!(back.elapsed() < Duration::from_secs(10), "no recovery");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let again = f.browser();
    f.login_hopping(&again, "00ubob", 0).await;
    server.stop();
}

/// The `kid` in the header of the app session token the browser holds.
fn session_kid(f: &Fleet, jar: &reqwest::cookie::Jar) -> String {
    let cookie = app_cookie(f, jar);
    let token = cookie
        .split("; ")
        .find_map(|c| c.strip_prefix("CF_Authorization="))
        .expect("app session cookie");
    jsonwebtoken::decode_header(token)
        .unwrap()
        .kid
        .expect("kid")
}

/// The `kid`s an instance publishes at `/certs`.
async fn published_kids(f: &Fleet, i: usize) -> Vec<String> {
    f.lb.to(i);
    let jwks: serde_json::Value = f
        .browser()
        .get(f.url("auth.localhost", "/cdn-cgi/access/certs"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut kids: Vec<String> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect();
    kids.sort();
    kids
}

/// A rotated key is published by every instance at once and signs only
/// from its time; sessions signed by the old key stay valid.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rotated_key_is_published_everywhere_before_any_instance_signs_with_it() {
    let f = Fleet::start(2).await;
    let jar = Arc::new(reqwest::cookie::Jar::default());
    let before = f.browser_with(jar.clone());
    f.login_hopping(&before, "00ualice", 0).await;
    let old_kid = session_kid(&f, &jar);
    assert_eq!(published_kids(&f, 0).await, vec![old_kid.clone()]);

    let admin = portcullis::store::postgres::PgStore::open(&f.db, 2)
        .await
        .unwrap();
    let now = portcullis::session::token::now_unix();
    let rotated = portcullis::session::rotate::rotate(
        &admin,
        now,
        Duration::from_secs(6),
        Duration::from_secs(86_400),
    )
    .await
    .unwrap();
    let announced = Instant::now();
    let mut both = vec![old_kid.clone(), rotated.kid.clone()];
    both.sort();
    for i in 0..2 {
        while published_kids(&f, i).await != both {
            assert!(
                announced.elapsed() < Duration::from_secs(1),
                "instance {i} did not publish the new key within 1 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // Before its time no instance signs with it.
    if portcullis::session::token::now_unix() < rotated.signs_from {
        let jar2 = Arc::new(reqwest::cookie::Jar::default());
        f.login_hopping(&f.browser_with(jar2.clone()), "00ubob", 1)
            .await;
        if portcullis::session::token::now_unix() < rotated.signs_from {
            assert_eq!(session_kid(&f, &jar2), old_kid);
        }
    }
    // From its time on, every instance signs with it.
    tokio::time::sleep(Duration::from_secs(
        (rotated.signs_from - portcullis::session::token::now_unix()).max(0) as u64 + 2,
    ))
    .await;
    for first in 0..2 {
        let jar3 = Arc::new(reqwest::cookie::Jar::default());
        f.login_hopping(&f.browser_with(jar3.clone()), "00ubob", first)
            .await;
        assert_eq!(session_kid(&f, &jar3), rotated.kid, "login from {first}");
    }
    // The session signed by the old key is still served everywhere.
    for i in 0..2 {
        assert_eq!(app_status(&f, i, &before).await, 200);
    }
}

/// An instance running as its own process (`portcullis run`).
struct Process {
    child: std::process::Child,
    _dir: tempfile::TempDir,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Fleet {
    /// Run `portcullis run` on `port` and wait until it serves.
    async fn process(&self, port: u16) -> Process {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("portcullis.yaml");
        std::fs::write(&path, self.config(port)).unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(["run", "-c", path.to_str().unwrap()])
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            assert!(
                Instant::now() < deadline,
                "process on {port} never listened"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Process { child, _dir: dir }
    }
}

/// kill -9 of an instance loses nothing it acknowledged: a SCIM user it
/// created and the session it issued are there on the other instance, and
/// a new process serves the session at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_an_instance_loses_nothing_it_acknowledged() {
    let db = PgServer::shared().fresh_database().await;
    let f = Fleet::prepare(db, 2, "").await;
    let mut a = f.process(f.ports[0]).await;
    let b = f.process(f.ports[1]).await;
    let jar = Arc::new(reqwest::cookie::Jar::default());
    let browser = f.browser_with(jar.clone());
    // A fresh process discovers the dev IdP first: wait for its redirect
    // to the login, then log in with every hop on process a.
    let deadline = Instant::now() + Duration::from_secs(10);
    while app_status(&f, 0, &browser).await != 302 {
        assert!(
            Instant::now() < deadline,
            "process a never redirected to login"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    f.login_on(&browser, "00ualice", 0).await;
    // A SCIM write acknowledged by a, then kill -9 at once.
    let created = f
        .browser()
        .post(f.url("auth.localhost", "/scim/v2/Users"))
        .bearer_auth(SCIM_SECRET)
        .json(&serde_json::json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "carol@example.com",
            "active": true,
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    a.child.kill().unwrap();
    let _ = a.child.wait();
    let id = created.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    // b has both.
    f.lb.to(1);
    let got = f
        .browser()
        .get(f.url("auth.localhost", &format!("/scim/v2/Users/{id}")))
        .bearer_auth(SCIM_SECRET)
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(app_status(&f, 1, &browser).await, 200);
    // A new process on a's port serves the session on its first request.
    let _a2 = f.process(f.ports[0]).await;
    assert_eq!(app_status(&f, 0, &browser).await, 200);
    drop(b);
}

/// Okta's SCIM writes may arrive on any instance at once: 24 parallel
/// member adds to one group, spread over three instances, all land, and
/// the group's ETag counts every one of them on every instance.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn parallel_scim_member_adds_over_three_instances_all_land() {
    let f = Arc::new(Fleet::start(3).await);
    // A client per instance, straight to its port (the balancer picks per
    // connection, and these run at the same time).
    let direct = |i: usize| {
        let addr: SocketAddr = format!("127.0.0.1:{}", f.ports[i]).parse().unwrap();
        reqwest::Client::builder()
            .resolve("auth.localhost", addr)
            .build()
            .unwrap()
    };
    let scim = |path: &str| f.url("auth.localhost", &format!("/scim/v2{path}"));
    let mut ids = Vec::new();
    for n in 0..24 {
        let r: serde_json::Value = direct(n % 3)
            .post(scim("/Users"))
            .bearer_auth(SCIM_SECRET)
            .json(&serde_json::json!({
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": format!("user{n}@example.com"),
                "active": true,
            }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        ids.push(r["id"].as_str().unwrap().to_string());
    }
    let group: serde_json::Value = direct(0)
        .post(scim("/Groups"))
        .bearer_auth(SCIM_SECRET)
        .json(&serde_json::json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": "engineering-fleet",
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let gid = group["id"].as_str().unwrap().to_string();
    let adds: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(n, id)| {
            let client = direct(n % 3);
            let url = scim(&format!("/Groups/{gid}"));
            let body = serde_json::json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "add", "path": "members", "value": [{"value": id}]}],
            });
            tokio::spawn(async move {
                client
                    .patch(url)
                    .bearer_auth(SCIM_SECRET)
                    .json(&body)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    for a in adds {
        assert_eq!(a.await.unwrap(), 200);
    }
    let mut etags = Vec::new();
    for i in 0..3 {
        let r = direct(i)
            .get(scim(&format!("/Groups/{gid}")))
            .bearer_auth(SCIM_SECRET)
            .send()
            .await
            .unwrap();
        etags.push(r.headers()["etag"].to_str().unwrap().to_string());
        let g: serde_json::Value = r.json().await.unwrap();
        let mut members: Vec<String> = g["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["value"].as_str().unwrap().to_string())
            .collect();
        members.sort();
        let mut want = ids.clone();
        want.sort();
        assert_eq!(members, want, "instance {i}");
    }
    assert!(etags.iter().all(|e| e == &etags[0]), "{etags:?}");
    assert!(
        etags[0].contains("25"),
        "one version step per write: {}",
        etags[0]
    );
}

/// `/get-identity` answers on any instance for a session made on another.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn get_identity_answers_on_every_instance() {
    let f = Fleet::start(3).await;
    let browser = f.browser();
    f.login_hopping(&browser, "00ualice", 2).await;
    for i in 0..3 {
        f.lb.to(i);
        let id: serde_json::Value = browser
            .get(f.url("app.localhost", "/cdn-cgi/access/get-identity"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(id["email"], "alice@example.com", "instance {i}: {id}");
    }
}
