//! The command line as an operator runs it: `check` and `explain` on the
//! shipped example config, and on broken input.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

fn example_cmd() -> Command {
    let mut c = Command::new(BIN);
    c.env("OKTA_CLIENT_SECRET", "example-secret")
        .env("OKTA_API_TOKEN", "example-token")
        .env("PORTCULLIS_SCIM_SECRET", "example-scim-secret-0123456789")
        .env("RUST_LOG", "error");
    c
}

/// `check` on the shipped example prints one row per app with its audience
/// tag and policies, and exits 0. The example's TLS files
/// (`/etc/portcullis/tls.*`) are swapped for a real pair, since `check`
/// reads them.
#[test]
fn check_prints_compiled_table_for_the_example() {
    let dir = tempfile::tempdir().unwrap();
    let pair = rcgen::generate_simple_self_signed(vec!["auth.example.com".into()]).unwrap();
    std::fs::write(dir.path().join("tls.crt"), pair.cert.pem()).unwrap();
    std::fs::write(dir.path().join("tls.key"), pair.signing_key.serialize_pem()).unwrap();
    let conf = std::fs::canonicalize("conf").unwrap();
    let example = std::fs::read_to_string("conf/portcullis.yaml")
        .unwrap()
        .replace(
            "/etc/portcullis/tls.",
            &format!("{}/tls.", dir.path().display()),
        )
        .replace(
            "policies: policies/",
            &format!("policies: {}/policies/", conf.display()),
        );
    let cfg = dir.path().join("portcullis.yaml");
    std::fs::write(&cfg, example).unwrap();
    let out = example_cmd()
        .args(["check", "-c", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("grafana.example.com"), "{stdout}");
    assert!(stdout.contains("engineers [allow]"), "{stdout}");
    assert!(
        stdout.contains(&portcullis::policy::load::default_aud("grafana")),
        "{stdout}"
    );
}

/// `portcullis check` on a config whose only policy file holds `policies`.
fn check_policies(policies: &str) -> std::process::Output {
    check_config_and_policies(
        "listen: [{ addr: 127.0.0.1:0 }]\nauth_domain: auth.example.com\npolicies: policies\n",
        policies,
    )
}

/// `portcullis check` on `config` with one policy file holding `policies`.
fn check_config_and_policies(config: &str, policies: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    std::fs::write(dir.path().join("policies/apps.yaml"), policies).unwrap();
    std::fs::write(dir.path().join("portcullis.yaml"), config).unwrap();
    Command::new(BIN)
        .args(["check", "-c"])
        .arg(dir.path().join("portcullis.yaml"))
        .env("RUST_LOG", "error")
        .output()
        .unwrap()
}

/// `check` reports every error as `file:line:col: key: message` and exits 1.
#[test]
fn check_reports_located_errors_and_exits_1() {
    let out = check_policies(
        "apps:\n  - name: a\n    domain: a.example.com\n    upstream: http://127.0.0.1:1\n    policies:\n      - name: p\n        decision: allow\n        include: [{ groop: x }]\n",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("apps.yaml:8:"), "{stderr}");
    assert!(stderr.contains("groop"), "{stderr}");
}

/// An app or a `login_method` selector naming an identity provider the
/// config does not define fails `check` with its location (the app's would
/// otherwise pass `check` and reloads and only stop `run`; the selector's
/// would never match, and in an `exclude` exclude no one).
#[test]
fn check_refuses_an_unconfigured_identity_provider() {
    let out = check_policies(
        "apps:\n  - name: a\n    domain: a.example.com\n    upstream: http://127.0.0.1:1\n    identity_providers: [nope]\n    policies:\n      - { name: p, decision: allow, include: [{ everyone: true }], exclude: [{ login_method: okta }] }\n",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("apps.yaml:5:26: apps[0].identity_providers[0]: identity provider `nope` is not configured"),
        "{stderr}"
    );
    assert!(
        stderr.contains("apps[0].policies[0].exclude[0].login_method: identity provider `okta` is not configured (configured: none)"),
        "{stderr}"
    );
}

/// A config with an error does not hide the policies' errors: one `check`
/// run reports both, each with its location, and exits 1.
#[test]
fn check_reports_config_and_policy_errors_together() {
    let out = check_config_and_policies(
        "listen: [{ addr: 127.0.0.1:0 }]\nauth_domain: auth.example.com\nthreds: 2\npolicies: policies\n",
        "apps:\n  - name: a\n    domain: a.example.com\n    upstream: http://127.0.0.1:1\n    policies:\n      - { name: p, decision: allow, include: [{ groop: x }] }\n",
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("portcullis.yaml:3:1: threds"), "{stderr}");
    assert!(
        stderr.contains("apps.yaml:6:") && stderr.contains("groop"),
        "{stderr}"
    );
}

/// `check` works offline: an upstream host name is not resolved, so a
/// policy naming a host this machine cannot resolve still checks.
#[test]
fn check_does_not_resolve_upstream_names() {
    let out = check_policies(
        "apps:\n  - name: a\n    domain: a.example.com\n    upstream: http://grafana.no-such-host.invalid:3000\n    policies:\n      - { name: p, decision: allow, include: [{ everyone: true }] }\n",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("http://grafana.no-such-host.invalid:3000"),
        "{stdout}"
    );
}

/// An unset `${VAR}` is an error naming the variable.
#[test]
fn check_names_an_unset_variable() {
    let out = Command::new(BIN)
        .args(["check", "-c", "conf/portcullis.yaml"])
        .env_remove("OKTA_CLIENT_SECRET")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("OKTA_CLIENT_SECRET"));
}

/// `explain` names the app, the deciding policy and the decision.
#[test]
fn explain_shows_the_deciding_policy() {
    let out = example_cmd()
        .args([
            "explain",
            "-c",
            "conf/portcullis.yaml",
            "--url",
            "https://grafana.example.com/dashboards",
            "--email",
            "alice@example.com",
            "--group",
            "engineering",
            "--amr",
            "mfa",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("grafana"), "{stdout}");
    assert!(stdout.contains("engineers"), "{stdout}");
    assert!(stdout.to_lowercase().contains("allow"), "{stdout}");
}

/// `keys rotate` needs the fleet's store: on an SQLite store it says how
/// to rotate there instead, and exits 1.
#[test]
fn keys_rotate_on_an_sqlite_store_explains_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = minimal_config(dir.path(), "127.0.0.1:1", "");
    let out = Command::new(BIN)
        .args(["keys", "rotate", "-c", cfg.to_str().unwrap()])
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("add a new key file there and restart"),
        "{err}"
    );
}

/// `keys rotate` on a PostgreSQL store adds a key that signs a minute
/// later, and `keys list` shows it as published but not yet signing.
#[tokio::test]
async fn keys_rotate_and_list_on_a_fleet_store() {
    let db = portcullis::testing::postgres::PgServer::shared()
        .fresh_database()
        .await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = minimal_config(dir.path(), "127.0.0.1:1", &format!("store: \"{db}\"\n"));
    let run = |args: &[&str]| {
        let mut c = Command::new(BIN);
        c.args(args)
            .args(["-c", cfg.to_str().unwrap()])
            .env("RUST_LOG", "error");
        c.output().unwrap()
    };
    // On a database no instance has used yet, the rotated key is the only
    // one, and it signs (there is nothing else to sign with).
    let out = run(&["keys", "rotate"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("New signing key"), "{stdout}");
    let list = run(&["keys", "list"]);
    let listed = String::from_utf8_lossy(&list.stdout);
    assert!(
        list.status.success(),
        "{}",
        String::from_utf8_lossy(&list.stderr)
    );
    assert!(
        listed.contains("published, signs later") || listed.contains("signing"),
        "{listed}"
    );
}

/// `run` with a PostgreSQL store that cannot be reached exits non-zero
/// within 10 s with one line that names the cause and hides the password.
#[test]
fn run_with_an_unreachable_database_exits_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = minimal_config(
        dir.path(),
        "127.0.0.1:1",
        &format!("store: \"postgres://app:s3cret@127.0.0.1:{port}/db\"\n"),
    );
    let started = std::time::Instant::now();
    let out = Command::new(BIN)
        .args(["run", "-c", cfg.to_str().unwrap()])
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains("cannot connect to PostgreSQL"), "{err}");
    assert!(err.contains("Connection refused"), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
}

/// `dev-idp` (for `scripts/fleet-demo`) is not listed by `--help`, and
/// refuses an address that is not loopback: the dev IdP signs with public
/// keys and logs in anyone who clicks a name.
#[test]
fn dev_idp_is_hidden_and_loopback_only() {
    let help = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("demo"), "{help}");
    assert!(!help.contains("dev-idp"), "{help}");
    for args in [
        ["--listen", "0.0.0.0:0", "--redirect", "http://a/cb"],
        ["--app", "192.0.2.1:0", "--redirect", "http://a/cb"],
    ] {
        let out = Command::new(BIN)
            .arg("dev-idp")
            .args(args)
            .env("RUST_LOG", "error")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains("not a loopback address"), "{stderr}");
    }
}

/// `dev-idp` serves the dev IdP's discovery and the demo app on the
/// addresses it prints, and stops with exit 0 on SIGTERM.
#[test]
fn dev_idp_serves_until_sigterm() {
    use std::io::{BufRead, BufReader, Read, Write};
    let mut child = Command::new(BIN)
        .args([
            "dev-idp",
            "--listen",
            "127.0.0.1:0",
            "--app",
            "127.0.0.1:0",
            "--redirect",
            "http://auth.localhost:8080/cdn-cgi/access/callback",
        ])
        .env("RUST_LOG", "error")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut idp = None;
    let mut app = None;
    for line in lines.by_ref().take(4) {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("dev IdP: okta_account http://") {
            idp = rest.split_whitespace().next().map(str::to_string);
        }
        if let Some(rest) = line.strip_prefix("demo app: http://") {
            app = Some(rest.to_string());
        }
    }
    let get = |addr: &str, path: &str| {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    let idp = idp.expect("the IdP's address on stdout");
    let discovery = get(&idp, "/oauth2/default/.well-known/openid-configuration");
    assert!(discovery.starts_with("HTTP/1.1 200"), "{discovery}");
    assert!(
        discovery.contains(&format!("http://{idp}/oauth2/default")),
        "{discovery}"
    );
    let echo = get(&app.expect("the app's address on stdout"), "/hello");
    assert!(
        echo.starts_with("HTTP/1.1 200") && echo.contains("/hello"),
        "{echo}"
    );
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    assert!(child.wait().unwrap().success());
}

/// A config file in `dir` with one listener at `listen`, then `extra`
/// (indented: more keys of the listener; at column 0: top-level keys),
/// and one app.
fn minimal_config(dir: &std::path::Path, listen: &str, extra: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    std::fs::write(
        dir.join("policies/p.yaml"),
        "apps:\n  - name: app\n    domain: app.localhost\n    upstream: http://127.0.0.1:9\n    policies:\n      - { name: all, decision: allow, include: [{ everyone: true }] }\n",
    )
    .unwrap();
    let cfg = dir.join("portcullis.yaml");
    std::fs::write(
        &cfg,
        format!(
            "listen:\n  - addr: {listen}\n{extra}auth_domain: auth.localhost\npolicies: policies\n"
        ),
    )
    .unwrap();
    cfg
}

/// `portcullis run -c cfg`: (exit success, stderr, how long it took).
fn run_briefly(cfg: &std::path::Path) -> (bool, String, std::time::Duration) {
    let started = std::time::Instant::now();
    let mut child = Command::new(BIN)
        .args(["run", "-c", cfg.to_str().unwrap()])
        .env("RUST_LOG", "off")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A run that does not fail keeps running: stop it after 12 s.
    let deadline = started + std::time::Duration::from_secs(12);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    (status.is_some_and(|s| s.success()), err, started.elapsed())
}

/// A listen address already in use: exit non-zero at once, one line
/// naming the address, no backtrace (Pingora alone retried for 30 s,
/// panicked in a thread and kept the process running).
#[test]
fn run_exits_with_one_line_when_the_listen_address_is_in_use() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let cfg = minimal_config(dir.path(), &addr, "");
    let (ok, err, took) = run_briefly(&cfg);
    assert!(!ok, "{err}");
    assert!(took < std::time::Duration::from_secs(10), "{took:?}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.contains(&addr) && err.contains("in use"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// A TLS certificate that does not exist: `run` exits with one line, and
/// `check` says which file and what is wrong.
#[test]
fn a_missing_tls_certificate_fails_run_and_check() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = minimal_config(
        dir.path(),
        &format!("127.0.0.1:{port}"),
        "    tls: { cert: missing.crt, key: missing.key }\n",
    );
    let (ok, err, took) = run_briefly(&cfg);
    assert!(!ok, "{err}");
    assert!(took < std::time::Duration::from_secs(10), "{took:?}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("missing.crt") && err.contains("No such file"),
        "{err}"
    );
    let out = Command::new(BIN)
        .args(["check", "-c", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("listen[0].tls: certificate"), "{stderr}");
    assert!(stderr.contains("missing.crt"), "{stderr}");
}

/// A key that belongs to another certificate: `check` names the mismatch.
#[test]
fn check_reports_a_key_that_does_not_match_its_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let a = rcgen::generate_simple_self_signed(vec!["auth.localhost".into()]).unwrap();
    let b = rcgen::generate_simple_self_signed(vec!["auth.localhost".into()]).unwrap();
    std::fs::write(dir.path().join("tls.crt"), a.cert.pem()).unwrap();
    std::fs::write(dir.path().join("tls.key"), b.signing_key.serialize_pem()).unwrap();
    let cfg = minimal_config(
        dir.path(),
        "127.0.0.1:1",
        "    tls: { cert: tls.crt, key: tls.key }\n",
    );
    let out = Command::new(BIN)
        .args(["check", "-c", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("does not match certificate"), "{stderr}");
}

/// Every subcommand takes its config from `PORTCULLIS_CONFIG` when `-c`
/// is not given, as container users expect.
#[test]
fn the_config_path_comes_from_portcullis_config() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = minimal_config(dir.path(), "127.0.0.1:1", "");
    let out = Command::new(BIN)
        .arg("check")
        .env("PORTCULLIS_CONFIG", &cfg)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("app.localhost"), "{stdout}");
    // Without it, and without -c, the default path is named.
    let out = Command::new(BIN)
        .arg("check")
        .env_remove("PORTCULLIS_CONFIG")
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("conf/portcullis.yaml"), "{stderr}");
}
