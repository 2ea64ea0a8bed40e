//! Deployment as an operator does it: secrets read from files (as container
//! and systemd credentials deliver them) working through the real proxy, and
//! `scripts/install.sh` into a staging folder checked file by file.
//! See: issue 14.

use std::path::Path;

use portcullis::idp::dev::{DEV_API_TOKEN, DEV_CLIENT_SECRET};
use reqwest::StatusCode;

use crate::harness::*;

/// One app on `app.localhost` allowing members of `team-150`, a group only
/// the Okta groups API reports for pat (the ID token carries 100 of 151).
const TEAM_150: &str = r#"
apps:
  - name: team
    domain: app.localhost
    upstream: ${UPSTREAM}
    policies:
      - name: team 150
        decision: allow
        include: [{ group: team-150 }]
"#;

/// Write `content` and a newline (as `echo` does) to `dir/name`.
fn secret_file(dir: &Path, name: &str, content: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("{content}\n")).unwrap();
    path.display().to_string()
}

/// The `okta` IdP entry with its client secret and API token read from
/// the files `client` and `token`.
fn okta_with_files(client: &str, token: &str) -> String {
    format!(
        r#"
  - name: okta
    type: okta
    config:
      client_id: __CLIENT_ID__
      client_secret_file: {client}
      okta_account: __OKTA__
      authorization_server_id: default
      api_token_file: {token}
"#
    )
}

/// The client secret and the Okta API token come from files: the login
/// exchanges its code with the secret read from the file (the dev IdP
/// refuses any other), and the groups API is called with the token read
/// from the other file, so pat's 150th group lets him in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_uses_the_client_secret_and_api_token_read_from_files() {
    let secrets = tempfile::tempdir().unwrap();
    let client = secret_file(secrets.path(), "client_secret", DEV_CLIENT_SECRET);
    let token = secret_file(secrets.path(), "api_token", DEV_API_TOKEN);
    let env = env()
        .policies(TEAM_150)
        .start_with(IdpSetup::new(&okta_with_files(&client, &token)))
        .await;
    let browser = env.browser();
    login_ok(&env, &browser, &env.url("app.localhost", "/"), "00upat").await;
    assert!(env.idp.groups_api_requests() > 0);
}

/// A wrong client secret in the file fails the login at the token exchange
/// (a "Sign-in failed" page, no session): the file's content is what is
/// sent, not some other value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_client_secret_in_the_file_fails_the_login() {
    let secrets = tempfile::tempdir().unwrap();
    let client = secret_file(secrets.path(), "client_secret", "not-the-client-secret");
    let token = secret_file(secrets.path(), "api_token", DEV_API_TOKEN);
    let env = env()
        .policies(TEAM_150)
        .start_with(IdpSetup::new(&okta_with_files(&client, &token)))
        .await;
    let end = fresh_login(&env, "00upat").await;
    assert_eq!(end.response.status(), 400, "trail {:?}", end.trail);
    assert!(
        end.response
            .text()
            .await
            .unwrap()
            .contains("Sign-in failed"),
        "trail {:?}",
        end.trail
    );
    assert_eq!(env.idp.groups_api_requests(), 0);
}

/// `scim_config.secret_file`: Okta's bearer is checked against the secret
/// read from the file (trailing newline trimmed); another bearer is 401.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim_accepts_the_bearer_read_from_secret_file() {
    let secrets = tempfile::tempdir().unwrap();
    let scim_secret = "scim-secret-from-a-file-0123";
    let path = secret_file(secrets.path(), "scim_secret", scim_secret);
    let env = env()
        .idp_config(&format!(
            "    scim_config:\n      enabled: true\n      secret_file: {path}\n"
        ))
        .start()
        .await;
    let users = |bearer: String| {
        env.client()
            .get(env.url("auth.localhost", "/scim/v2/Users"))
            .header("authorization", format!("Bearer {bearer}"))
            .send()
    };
    assert_eq!(
        users(scim_secret.to_string()).await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        users("not-the-scim-secret-0123".to_string())
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
}

// ---- scripts/install.sh ------------------------------------------------------

const BIN: &str = env!("CARGO_BIN_EXE_portcullis");

/// `portcullis check` reads the secret files as the proxy would: one that
/// cannot be read is reported with its key, position and path and fails
/// the check; the content of the readable one appears nowhere in the
/// output, in error or not.
#[test]
fn check_reports_an_unreadable_secret_file_and_never_prints_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("policies")).unwrap();
    std::fs::write(
        d.join("policies/apps.yaml"),
        "apps: [{ name: a, domain: a.example.com, upstream: 'http://127.0.0.1:1', policies: [{ name: all, decision: allow, include: [{ everyone: true }] }] }]\n",
    )
    .unwrap();
    secret_file(d, "okta_secret", "hunter2-client-secret");
    let config = |second: &str| {
        format!(
            "listen: [{{ addr: 127.0.0.1:0 }}]
auth_domain: auth.example.com
policies: policies
identity_providers:
  - {{ name: a, type: oidc, config: {{ client_id: c, client_secret_file: okta_secret, issuer: 'https://i.example.com' }} }}
  - {{ name: b, type: oidc, config: {{ client_id: c, client_secret_file: {second}, issuer: 'https://i.example.com' }} }}
"
        )
    };
    let check = |text: String| {
        std::fs::write(d.join("portcullis.yaml"), text).unwrap();
        std::process::Command::new(BIN)
            .args(["check", "-c"])
            .arg(d.join("portcullis.yaml"))
            .env("RUST_LOG", "error")
            .output()
            .unwrap()
    };
    let failed = check(config("okta_secret2"));
    let missing = d.join("okta_secret2");
    let err = String::from_utf8_lossy(&failed.stderr);
    assert!(!failed.status.success());
    assert!(
        err.contains(&format!(
            "portcullis.yaml:6:72: identity_providers[1].config.client_secret_file: cannot read `{}`: ",
            missing.display()
        )),
        "{err}"
    );
    secret_file(d, "okta_secret2", "hunter2-other-secret");
    let passed = check(config("okta_secret2"));
    assert!(
        passed.status.success(),
        "{}",
        String::from_utf8_lossy(&passed.stderr)
    );
    for out in [&failed, &passed] {
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!all.contains("hunter2"), "{all}");
    }
}

/// Run `scripts/install.sh` with `args`; its output, asserting success.
fn install(args: &[&str]) -> String {
    let out = std::process::Command::new("bash")
        .arg("scripts/install.sh")
        .args(args)
        .env_remove("DESTDIR")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "install.sh {args:?}: {text}");
    text
}

/// A small stand-in for the binary, for the tests that only look at where
/// files land (the real one is hundreds of MB with debug info).
fn stand_in_binary(dir: &Path) -> String {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("portcullis");
    std::fs::write(&path, "#!/bin/sh\necho stand-in\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.display().to_string()
}

/// The permission bits of `path` (which must exist).
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// `scripts/install.sh --destdir` (as a package build, or the Dockerfile
/// with its own root) lays out the binary, `/etc/portcullis` (config and
/// policies readable by the service's group only, the secrets' env file by
/// root only), the state folder (the service's alone) and the systemd unit
/// pointing at the installed binary.
#[test]
fn install_script_lays_out_binary_config_state_and_unit_with_their_modes() {
    let dest = tempfile::tempdir().unwrap();
    let d = dest.path();
    let build = tempfile::tempdir().unwrap();
    let bin = stand_in_binary(build.path());
    install(&["--destdir", d.to_str().unwrap(), "--bin", &bin]);
    let expected: &[(&str, u32)] = &[
        ("usr/local/bin/portcullis", 0o755),
        ("etc/portcullis", 0o750),
        ("etc/portcullis/portcullis.yaml", 0o640),
        ("etc/portcullis/portcullis.yaml.example", 0o644),
        ("etc/portcullis/policies", 0o750),
        ("etc/portcullis/policies/example.yaml", 0o640),
        ("etc/portcullis/env", 0o600),
        ("var/lib/portcullis", 0o700),
        ("etc/systemd/system/portcullis.service", 0o644),
    ];
    for (path, want) in expected {
        assert_eq!(mode(&d.join(path)), *want, "mode of {path}");
    }
    let read = |p: &str| std::fs::read(d.join(p)).unwrap();
    assert_eq!(
        read("usr/local/bin/portcullis"),
        std::fs::read(&bin).unwrap()
    );
    assert_eq!(
        read("etc/portcullis/portcullis.yaml"),
        std::fs::read("conf/portcullis.yaml").unwrap()
    );
    let unit = String::from_utf8(read("etc/systemd/system/portcullis.service")).unwrap();
    assert!(
        unit.contains(
            "\nExecStart=/usr/local/bin/portcullis run -c /etc/portcullis/portcullis.yaml\n"
        ),
        "{unit}"
    );
}

/// A second run (a new build) replaces the binary, and keeps what the
/// operator edited: `portcullis.yaml`, the policies and the env file. A
/// run with another prefix points the unit's `ExecStart` there.
#[test]
fn install_script_run_again_replaces_the_binary_and_keeps_the_operators_files() {
    let dest = tempfile::tempdir().unwrap();
    let d = dest.path().to_str().unwrap();
    let build = tempfile::tempdir().unwrap();
    let bin = stand_in_binary(build.path());
    install(&["--destdir", d, "--bin", &bin]);
    let edited = [
        "etc/portcullis/portcullis.yaml",
        "etc/portcullis/policies/example.yaml",
        "etc/portcullis/env",
    ];
    for p in edited {
        std::fs::write(dest.path().join(p), format!("# edited {p}\n")).unwrap();
    }
    std::fs::write(&bin, "#!/bin/sh\necho new build\n").unwrap();
    let out = install(&["--destdir", d, "--bin", &bin]);
    assert!(out.contains("kept"), "{out}");
    for p in edited {
        assert_eq!(
            std::fs::read_to_string(dest.path().join(p)).unwrap(),
            format!("# edited {p}\n"),
            "{p} was overwritten"
        );
    }
    assert_eq!(
        std::fs::read_to_string(dest.path().join("usr/local/bin/portcullis")).unwrap(),
        "#!/bin/sh\necho new build\n"
    );
    install(&["--destdir", d, "--bin", &bin, "--prefix", "/opt/portcullis"]);
    assert_eq!(
        mode(&dest.path().join("opt/portcullis/bin/portcullis")),
        0o755
    );
    let unit =
        std::fs::read_to_string(dest.path().join("etc/systemd/system/portcullis.service")).unwrap();
    assert!(
        unit.contains(
            "\nExecStart=/opt/portcullis/bin/portcullis run -c /etc/portcullis/portcullis.yaml\n"
        ),
        "{unit}"
    );
}

/// The installed binary passes `portcullis check` on the installed example
/// config and policies, as an operator's first step after installing. Only
/// the TLS files are put in place first (with the staging folder in their
/// path), since `check` reads them, and the secrets the example names as
/// `${VAR}` are set.
#[test]
fn installed_binary_checks_the_installed_example_config() {
    let dest = tempfile::tempdir().unwrap();
    let d = dest.path();
    install(&["--destdir", d.to_str().unwrap(), "--bin", BIN]);
    let etc = d.join("etc/portcullis");
    let pair = rcgen::generate_simple_self_signed(vec!["auth.example.com".into()]).unwrap();
    std::fs::write(etc.join("tls.crt"), pair.cert.pem()).unwrap();
    std::fs::write(etc.join("tls.key"), pair.signing_key.serialize_pem()).unwrap();
    let config = std::fs::read_to_string(etc.join("portcullis.yaml"))
        .unwrap()
        .replace("/etc/portcullis/", &format!("{}/", etc.display()));
    std::fs::write(etc.join("staged.yaml"), config).unwrap();
    let out = std::process::Command::new(d.join("usr/local/bin/portcullis"))
        .args(["check", "-c"])
        .arg(etc.join("staged.yaml"))
        .env("OKTA_CLIENT_SECRET", "example-secret")
        .env("OKTA_API_TOKEN", "example-token")
        .env("PORTCULLIS_SCIM_SECRET", "example-scim-secret-0123456789")
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("grafana.example.com"), "{stdout}");
}

/// Without a binary to install the script stops before touching anything,
/// with a line saying what is missing.
#[test]
fn install_script_without_a_binary_fails_and_installs_nothing() {
    let dest = tempfile::tempdir().unwrap();
    let out = std::process::Command::new("bash")
        .args(["scripts/install.sh", "--destdir"])
        .arg(dest.path())
        .args(["--bin", "/nonexistent/portcullis"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no executable portcullis binary at /nonexistent/portcullis"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(dest.path()).unwrap().count(), 0);
}
