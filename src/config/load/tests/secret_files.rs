//! Secrets read from files: `client_secret_file`, `api_token_file`,
//! `scim_config.secret_file`, `store.url_file`. One of each pair, the file
//! read at load time with its trailing newline trimmed, errors that name the
//! key and the path and never the secret.

use std::path::Path;

use super::{env, errors, ok, BASE};
use crate::config::{parse_str, IdpKind};

/// A temporary folder with `files` (name, content) in it.
fn folder(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, content) in files {
        std::fs::write(dir.path().join(name), content).unwrap();
    }
    dir
}

/// An Okta IdP entry with SCIM whose three secrets come from files in `dir`.
fn okta_from_files(dir: &Path) -> String {
    format!(
        "{BASE}identity_providers:
  - name: okta
    type: okta
    config:
      client_id: c
      client_secret_file: {d}/client_secret
      okta_account: https://x.okta.com
      api_token_file: {d}/api_token
    scim_config:
      enabled: true
      secret_file: {d}/scim_secret
store:
  url_file: {d}/store_url
",
        d = dir.display()
    )
}

#[test]
fn each_secret_is_read_from_its_file_with_the_newline_trimmed() {
    let dir = folder(&[
        ("client_secret", "okta-client-secret\n"),
        ("api_token", "00okta-api-token\r\n"),
        ("scim_secret", "scim-secret-from-a-file\n"),
        (
            "store_url",
            "postgres://portcullis:p%40ss%23w0rd@db.internal/portcullis\n",
        ),
    ]);
    let c = ok(&okta_from_files(dir.path()));
    let idp = &c.identity_providers[0];
    assert_eq!(idp.kind, IdpKind::Okta);
    assert_eq!(idp.client_secret, "okta-client-secret");
    assert_eq!(idp.api_token.as_deref(), Some("00okta-api-token"));
    let scim = idp.scim.as_ref().unwrap();
    assert_eq!(scim.secret.as_deref(), Some("scim-secret-from-a-file"));
    assert_eq!(
        c.store,
        "postgres://portcullis:p%40ss%23w0rd@db.internal/portcullis"
    );
}

#[test]
fn a_relative_path_resolves_against_the_config_folder_and_takes_env_vars() {
    let dir = folder(&[("okta-secret-file", "from-the-config-folder\n")]);
    let text = format!(
        "{BASE}identity_providers:
  - name: o
    type: oidc
    config: {{ client_id: c, client_secret_file: '${{SECRET_NAME}}-file', issuer: 'https://i.example.com' }}
"
    );
    let env = |name: &str| match name {
        "SECRET_NAME" => Some("okta-secret".to_string()),
        other => env(other),
    };
    let c = parse_str("portcullis.yaml", &text, dir.path(), &env).unwrap();
    assert_eq!(
        c.identity_providers[0].client_secret,
        "from-the-config-folder"
    );
}

#[test]
fn a_files_content_is_never_expanded() {
    let dir = folder(&[("s", "${OKTA_CLIENT_SECRET}\n")]);
    let c = ok(&format!(
        "{BASE}identity_providers:
  - {{ name: o, type: oidc, config: {{ client_id: c, client_secret_file: '{}/s', issuer: 'https://i.example.com' }} }}
",
        dir.path().display()
    ));
    assert_eq!(
        c.identity_providers[0].client_secret,
        "${OKTA_CLIENT_SECRET}"
    );
}

#[test]
fn both_forms_of_a_secret_are_refused_at_the_file_key() {
    let dir = folder(&[("s", "scim-secret-from-a-file\n")]);
    let d = dir.path().display();
    let text = format!(
        "{BASE}identity_providers:
  - name: okta
    type: okta
    config:
      client_id: c
      client_secret: inline
      client_secret_file: {d}/s
      okta_account: https://x.okta.com
      api_token: inline
      api_token_file: {d}/s
    scim_config:
      secret: inline-scim-secret-0123
      secret_file: {d}/s
store:
  url: sqlite://state.db
  url_file: {d}/s
"
    );
    assert_eq!(
        errors(&text),
        [
            "portcullis.yaml:12:27: identity_providers[0].config.client_secret_file: `client_secret` is set too: give either `client_secret` or `client_secret_file`, not both",
            "portcullis.yaml:15:23: identity_providers[0].config.api_token_file: `api_token` is set too: give either `api_token` or `api_token_file`, not both",
            "portcullis.yaml:18:20: identity_providers[0].scim_config.secret_file: `secret` is set too: give either `secret` or `secret_file`, not both",
            "portcullis.yaml:21:13: store.url_file: `url` is set too: give either `url` or `url_file`, not both",
        ]
    );
}

#[test]
fn unusable_files_are_errors_naming_the_key_and_the_path_never_the_content() {
    let dir = folder(&[
        ("empty", "\n"),
        ("two-lines", "hunter2\nhunter3\n"),
        ("short", "hunter2\n"),
        ("bad-url", "postgres://u:hunter2@/p\n"),
    ]);
    let d = dir.path().display();
    let text = format!(
        "{BASE}identity_providers:
  - name: okta
    type: okta
    config:
      client_id: c
      client_secret_file: {d}/missing
      okta_account: https://x.okta.com
      api_token_file: {d}/empty
    scim_config:
      secret_file: {d}/short
  - name: other
    type: okta
    config:
      client_id: c
      client_secret_file: {d}/two-lines
      okta_account: https://x.okta.com
store:
  url_file: {d}/bad-url
"
    );
    let errs = errors(&text);
    let missing_err = std::fs::File::open(dir.path().join("missing")).unwrap_err();
    assert_eq!(
        errs,
        [
            format!("portcullis.yaml:11:27: identity_providers[0].config.client_secret_file: cannot read `{d}/missing`: {missing_err}"),
            format!("portcullis.yaml:13:23: identity_providers[0].config.api_token_file: `{d}/empty` is empty"),
            "portcullis.yaml:15:20: identity_providers[0].scim_config.secret_file: too short: use at least 16 characters (or omit it to generate one)".to_string(),
            format!("portcullis.yaml:20:27: identity_providers[1].config.client_secret_file: `{d}/two-lines` holds more than one line: it must hold the secret alone"),
            "portcullis.yaml:23:13: store.url_file: invalid PostgreSQL URL (empty host): expected `postgres://USER:PASSWORD@HOST:PORT/DATABASE`".to_string(),
        ]
    );
    for e in &errs {
        assert!(!e.contains("hunter"), "{e}");
    }
}

#[test]
fn a_secret_given_neither_way_is_missing_and_names_both_keys() {
    let errs = errors(&format!(
        "{BASE}identity_providers:
  - {{ name: o, type: oidc, config: {{ client_id: c, issuer: 'https://i.example.com' }} }}
"
    ));
    assert_eq!(
        errs,
        ["portcullis.yaml:7:36: identity_providers[0].config.client_secret: required key is missing (or set `client_secret_file`)"]
    );
}

#[test]
fn api_token_file_is_only_for_okta() {
    let dir = folder(&[("t", "token\n")]);
    let errs = errors(&format!(
        "{BASE}identity_providers:
  - {{ name: o, type: oidc, config: {{ client_id: c, client_secret: s, api_token_file: '{}/t', issuer: 'https://i.example.com' }} }}
",
        dir.path().display()
    ));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].ends_with(
            "identity_providers[0].config.api_token_file: `api_token_file` is only for type `okta`"
        ),
        "{}",
        errs[0]
    );
}

#[test]
fn a_scim_secret_from_a_file_must_differ_from_another_providers() {
    let dir = folder(&[("s", "scim-secret-0123456789\n")]);
    let errs = errors(&format!(
        "{BASE}identity_providers:
  - {{ name: one, type: oidc, config: {{ client_id: a, client_secret: b, issuer: 'https://i.example.com' }}, scim_config: {{ enabled: true, secret: '${{PORTCULLIS_SCIM_SECRET}}' }} }}
  - {{ name: two, type: oidc, config: {{ client_id: a, client_secret: b, issuer: 'https://i.example.com' }}, scim_config: {{ enabled: true, secret_file: '{}/s' }} }}
",
        dir.path().display()
    ));
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert!(
        errs[0].ends_with("identity_providers[1].scim_config.secret_file: same SCIM secret as identity provider `one`: each provider needs its own"),
        "{}",
        errs[0]
    );
}
