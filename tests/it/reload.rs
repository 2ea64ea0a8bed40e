//! SIGHUP reloads: a listener's TLS certificate (new handshakes get the new
//! one, open connections stay usable, a bad pair keeps the last good one),
//! the policies (also an edit the file watcher cannot see), and the config
//! keys that need a restart. In process through the reload entry point
//! SIGHUP calls (`Env::reloader`), and once through the real binary with a
//! real `kill -HUP`.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use portcullis::server::reload::{report, ConfigCheck};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::CertificateDer;

use crate::harness::{env, eventually, expand_policies, metric, Env, HOSTS, POLICIES};
use crate::process::{ConfigDir, Running};

/// A new self-signed pair for every test host: (cert PEM, key PEM, cert DER).
fn new_pair() -> (String, String, Vec<u8>) {
    let c =
        rcgen::generate_simple_self_signed(HOSTS.iter().map(|h| h.to_string()).collect::<Vec<_>>())
            .unwrap();
    (
        c.cert.pem(),
        c.signing_key.serialize_pem(),
        c.cert.der().to_vec(),
    )
}

/// The DER of the first certificate in a PEM file.
fn der_in(path: &Path) -> Vec<u8> {
    CertificateDer::from_pem_file(path).unwrap().to_vec()
}

/// A TLS client that accepts any certificate (the test compares what it
/// was served) and reports it, with `*.localhost` sent to `addr`.
fn tls_client(addr: SocketAddr) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .tls_info(true)
        .timeout(Duration::from_secs(20));
    for h in HOSTS {
        b = b.resolve(h, addr);
    }
    b.build().unwrap()
}

/// GET the JWKS (served by the proxy itself) and return the leaf
/// certificate the connection was served.
async fn served_leaf(client: &reqwest::Client, port: u16) -> Vec<u8> {
    let r = client
        .get(format!(
            "https://auth.localhost:{port}/cdn-cgi/access/certs"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|i| i.peer_certificate())
        .expect("the served certificate")
        .to_vec()
}

fn proxy_addr(env: &Env) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], env.port))
}

/// A reload serves the certificate now in the files to new handshakes,
/// while a connection opened before keeps working (with the certificate it
/// was served: it is the same connection).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_serves_a_new_certificate_to_new_handshakes_and_keeps_open_connections() {
    let env = env().tls().start().await;
    let first = der_in(&env.data_path().join("tls.crt"));
    let before = tls_client(proxy_addr(&env));
    assert_eq!(served_leaf(&before, env.port).await, first);

    let (cert, key, der) = new_pair();
    std::fs::write(env.data_path().join("tls.crt"), cert).unwrap();
    std::fs::write(env.data_path().join("tls.key"), key).unwrap();
    let outcome = env.reloader().reload().await;
    report(&outcome);
    assert_eq!(outcome.result(), "success", "{outcome:?}");
    assert!(matches!(outcome.certificates[..], [ref c] if c.result == Ok(true)));

    assert_eq!(
        served_leaf(&tls_client(proxy_addr(&env)), env.port).await,
        der
    );
    assert_eq!(
        served_leaf(&before, env.port).await,
        first,
        "the connection opened before the reload"
    );
}

/// A certificate whose key does not match, then a missing key file: the
/// reload reports the file and new handshakes keep getting the last good
/// certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_certificate_on_reload_keeps_the_last_good_one() {
    let env = env().tls().start().await;
    let good = der_in(&env.data_path().join("tls.crt"));
    let (cert, _, _) = new_pair();
    let (_, other_key, _) = new_pair();
    std::fs::write(env.data_path().join("tls.crt"), cert).unwrap();
    std::fs::write(env.data_path().join("tls.key"), other_key).unwrap();
    let outcome = env.reloader().reload().await;
    report(&outcome);
    assert_eq!(outcome.result(), "error");
    let e = outcome.certificates[0]
        .result
        .as_ref()
        .unwrap_err()
        .to_string();
    assert!(e.contains("does not match") && e.contains("tls.crt"), "{e}");
    assert_eq!(
        served_leaf(&tls_client(proxy_addr(&env)), env.port).await,
        good
    );

    std::fs::remove_file(env.data_path().join("tls.key")).unwrap();
    let outcome = env.reloader().reload().await;
    let e = outcome.certificates[0]
        .result
        .as_ref()
        .unwrap_err()
        .to_string();
    assert!(e.contains("tls.key") && e.contains("No such file"), "{e}");
    assert_eq!(
        served_leaf(&tls_client(proxy_addr(&env)), env.port).await,
        good
    );
}

/// `POLICIES` with the `public` app's bypass turned into an allow of the
/// same length: `/public` then needs a session.
fn public_needs_a_session(policies: &str) -> String {
    let from = "      - name: anyone\n        decision: bypass\n";
    assert!(policies.contains(from), "POLICIES changed shape");
    policies.replace(from, "      - name: anyone\n        decision: allow \n")
}

/// Rewrite `file` in place with `text` of the same length and put its
/// mtime back: the file watcher, which compares size and mtime, sees no
/// change (as after a deploy tool that keeps mtimes).
fn edit_unseen(file: &Path, text: &str) {
    let meta = std::fs::metadata(file).unwrap();
    assert_eq!(meta.len(), text.len() as u64, "the edit must keep the size");
    std::fs::write(file, text).unwrap();
    std::fs::File::options()
        .write(true)
        .open(file)
        .unwrap()
        .set_modified(meta.modified().unwrap())
        .unwrap();
}

/// SIGHUP reloads the policies even when the file watcher sees no change:
/// `/public` stays a bypass for several polls after the edit, then needs a
/// session once the reload ran, and the reload is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_applies_a_policy_edit_the_file_watcher_cannot_see() {
    let env = env().start().await;
    let client = env.client();
    let public = env.url("app.localhost", "/public/x");
    assert_eq!(client.get(&public).send().await.unwrap().status(), 200);
    let file = env.data_path().join("policies/main.yaml");
    edit_unseen(
        &file,
        &public_needs_a_session(&expand_policies(&env, POLICIES)),
    );
    tokio::time::sleep(portcullis::policy::reload::POLL_INTERVAL * 4).await;
    assert_eq!(
        client.get(&public).send().await.unwrap().status(),
        200,
        "the watcher saw the edit: this test proves nothing"
    );
    let before = metric(
        &env.metrics().await,
        "portcullis_policy_reloads_total",
        &[("result", "success")],
    );

    let outcome = env.reloader().reload().await;
    report(&outcome);
    assert!(outcome.policies.is_ok(), "{outcome:?}");
    assert_eq!(outcome.config, ConfigCheck::NotCompared);
    assert_eq!(client.get(&public).send().await.unwrap().status(), 401);
    let after = metric(
        &env.metrics().await,
        "portcullis_policy_reloads_total",
        &[("result", "success")],
    );
    assert!(after > before, "{before} -> {after}");
}

/// A policy file that no longer compiles: the reload reports an error and
/// the last good policies stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_of_a_broken_policy_file_keeps_the_last_good_policies() {
    let env = env().start().await;
    let client = env.client();
    let public = env.url("app.localhost", "/public/x");
    let file = env.data_path().join("policies/main.yaml");
    let text = expand_policies(&env, POLICIES);
    let broken = text.replacen("apps:", "appz:", 1);
    edit_unseen(&file, &broken);
    let outcome = env.reloader().reload().await;
    report(&outcome);
    assert_eq!(outcome.result(), "error");
    assert!(outcome.policies.is_err());
    assert_eq!(client.get(&public).send().await.unwrap().status(), 200);
}

/// The real binary on `kill -HUP`: a new certificate for new handshakes, a
/// policy edit the watcher cannot see applied, each other changed
/// top-level key logged by name (never its value) as needing a restart,
/// and the process keeps running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_hup_reloads_certificates_and_policies_and_names_keys_needing_a_restart() {
    let policies = "apps:\n  - name: app\n    domain: app.localhost\n    upstream: http://127.0.0.1:9\n    policies:\n      - { name: all, decision: bypass, include: [{ everyone: true }] }\n";
    let cfg = ConfigDir::new(
        "    tls: { cert: tls.crt, key: tls.key }\n",
        "session: { cookie_name: Before }\n",
        policies,
    );
    let (cert, key, first) = new_pair();
    std::fs::write(cfg.path("tls.crt"), cert).unwrap();
    std::fs::write(cfg.path("tls.key"), key).unwrap();
    let mut proxy = Running::start(&cfg.config(), &[]);
    proxy.wait_ready(cfg.metrics_port, Duration::from_secs(60));
    let client = || tls_client(cfg.addr());
    assert_eq!(served_leaf(&client(), cfg.port).await, first);
    let status_at = |host: &'static str| {
        let c = client();
        let url = format!("https://{host}:{}/", cfg.port);
        async move { c.get(url).send().await.unwrap().status().as_u16() }
    };
    assert_eq!(status_at("api.localhost").await, 404);

    let (cert, key, second) = new_pair();
    std::fs::write(cfg.path("tls.crt"), cert).unwrap();
    std::fs::write(cfg.path("tls.key"), key).unwrap();
    edit_unseen(
        &cfg.path("policies/apps.yaml"),
        &policies.replace("app.localhost", "api.localhost"),
    );
    let text = std::fs::read_to_string(cfg.config()).unwrap();
    std::fs::write(
        cfg.config(),
        text.replace("threads: 1", "threads: 2")
            .replace("cookie_name: Before", "cookie_name: SecretValue"),
    )
    .unwrap();
    proxy.signal("HUP");

    eventually("the new certificate", Duration::from_secs(30), async || {
        served_leaf(&client(), cfg.port).await == second
    })
    .await;
    // Bypass to an upstream nothing listens on: the app exists now.
    assert_eq!(status_at("api.localhost").await, 502);
    assert_eq!(status_at("app.localhost").await, 404);
    eventually("the reload reported", Duration::from_secs(30), async || {
        proxy.stderr().contains("Reload done")
    })
    .await;
    assert!(proxy.exited().is_none(), "SIGHUP ended the process");
    let log = proxy.stderr();
    let restart: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("it needs a restart"))
        .collect();
    assert_eq!(restart.len(), 2, "{log}");
    assert!(restart.iter().any(|l| l.contains("key=session")), "{log}");
    assert!(restart.iter().any(|l| l.contains("key=threads")), "{log}");
    assert!(!log.contains("SecretValue"), "{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("Reload done") && l.contains("result=\"success\"")),
        "{log}"
    );
    proxy.signal("TERM");
    let status = proxy
        .wait_exit(Duration::from_secs(30))
        .expect("exits on SIGTERM");
    assert!(status.success(), "{status}");
}
