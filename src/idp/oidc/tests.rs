//! Provider against the dev IdP on a free loopback port: discovery, full
//! logins, every ID-token forgery the dev IdP can produce, key rotation,
//! outages, the "Test" button and the Okta groups API.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use super::*;
use crate::idp::dev::{self, DevIdp, DevIdpOptions, DevUser, Tamper};

const REDIRECT: &str = "http://auth.localhost:8080/cdn-cgi/access/callback";
const NONCE: &str = "nonce-0123456789";
/// A valid PKCE verifier (43+ unreserved characters).
const VERIFIER: &str = "verifier-0123456789-0123456789-0123456789-abc";

async fn dev_idp() -> DevIdp {
    let opts = DevIdpOptions::new("127.0.0.1:0".parse().unwrap(), vec![REDIRECT.into()]);
    dev::start(opts).await.expect("dev idp starts")
}

fn config(idp: &DevIdp, kind: IdpKind) -> IdpConfig {
    IdpConfig {
        name: "dev okta".into(),
        kind,
        client_id: idp.client_id().into(),
        client_secret: idp.client_secret().into(),
        issuer: idp.issuer(),
        okta_account: (kind == IdpKind::Okta).then(|| idp.okta_account()),
        authorization_server_id: Some("default".into()),
        api_token: None,
        claims: vec!["department".into()],
        email_claim_name: "email".into(),
        pkce_enabled: false,
        scopes: ["openid", "email", "profile", "groups"]
            .map(String::from)
            .to_vec(),
        scim: None,
    }
}

async fn ready_provider(cfg: IdpConfig) -> Provider {
    let p = Provider::new(cfg).unwrap();
    p.discover().await.expect("discovery succeeds");
    p
}

async fn setup() -> (DevIdp, Provider) {
    let idp = dev_idp().await;
    let p = ready_provider(config(&idp, IdpKind::Okta)).await;
    (idp, p)
}

fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Log in as `user` the way a browser would, and return the code.
async fn login_code(p: &Provider, user: &str, challenge: Option<&str>) -> String {
    let url = p
        .authorize_url(REDIRECT, "state-0123456789", NONCE, challenge)
        .unwrap();
    let http = browser();
    let page = http.get(&url).send().await.unwrap();
    assert_eq!(page.status(), 200, "authorize page");
    assert!(
        page.text().await.unwrap().contains(user),
        "the page lists {user}"
    );
    let (login_url, form) = dev::login_form(&url, user).unwrap();
    let resp = http.post(login_url).form(&form).send().await.unwrap();
    assert_eq!(resp.status(), 302, "login redirects");
    let location = resp.headers()[::http::header::LOCATION]
        .to_str()
        .unwrap()
        .to_string();
    assert!(location.starts_with(REDIRECT), "{location}");
    let location = url::Url::parse(&location).unwrap();
    let param = |k: &str| {
        location
            .query_pairs()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.into_owned())
    };
    assert_eq!(param("state").as_deref(), Some("state-0123456789"));
    param("code").expect("a code in the redirect")
}

async fn login(p: &Provider, user: &str) -> Result<Identity, IdpError> {
    let code = login_code(p, user, None).await;
    p.exchange(&code, REDIRECT, None, NONCE).await
}

fn assert_invalid_token<T: std::fmt::Debug>(r: Result<T, IdpError>) {
    match r {
        Err(IdpError::InvalidToken(_)) => {}
        other => panic!("expected InvalidToken, got {other:?}"),
    }
}

fn assert_rejected<T: std::fmt::Debug>(r: Result<T, IdpError>) {
    match r {
        Err(IdpError::Rejected(_)) => {}
        other => panic!("expected Rejected, got {other:?}"),
    }
}

fn assert_unavailable<T: std::fmt::Debug>(r: Result<T, IdpError>) {
    match r {
        Err(IdpError::Unavailable(_)) => {}
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[test]
fn login_futures_are_send() {
    fn send<T: Send>(_: &T) {}
    let p = Provider::new(IdpConfig {
        name: "x".into(),
        kind: IdpKind::Oidc,
        client_id: "c".into(),
        client_secret: "s".into(),
        issuer: "https://idp.example".into(),
        okta_account: None,
        authorization_server_id: None,
        api_token: None,
        claims: vec![],
        email_claim_name: "email".into(),
        pkce_enabled: false,
        scopes: vec![],
        scim: None,
    })
    .unwrap();
    send(&p.discover());
    send(&p.exchange("c", REDIRECT, None, NONCE));
    send(&p.test_connection(REDIRECT));
}

#[tokio::test]
async fn discovery_makes_the_provider_ready() {
    let idp = dev_idp().await;
    let p = Provider::new(config(&idp, IdpKind::Okta)).unwrap();
    assert!(!p.is_ready());
    p.discover().await.unwrap();
    assert!(p.is_ready());
}

#[tokio::test]
async fn authorize_url_before_discovery_is_unavailable() {
    let idp = dev_idp().await;
    let p = Provider::new(config(&idp, IdpKind::Okta)).unwrap();
    assert_unavailable(p.authorize_url(REDIRECT, "s", "n", None));
}

#[tokio::test]
async fn authorize_url_carries_client_scopes_state_nonce_and_challenge() {
    let (idp, p) = setup().await;
    let url = p.authorize_url(REDIRECT, "st", "nn", Some("chal")).unwrap();
    let url = url::Url::parse(&url).unwrap();
    assert_eq!(
        url.as_str().split('?').next().unwrap(),
        format!("{}/v1/authorize", idp.issuer())
    );
    let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(q["client_id"], idp.client_id());
    assert_eq!(q["redirect_uri"], REDIRECT);
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["scope"], "openid email profile groups");
    assert_eq!(q["state"], "st");
    assert_eq!(q["nonce"], "nn");
    assert_eq!(q["code_challenge"], "chal");
    assert_eq!(q["code_challenge_method"], "S256");
}

#[tokio::test]
async fn code_exchange_builds_the_identity() {
    let (_idp, p) = setup().await;
    let id = login(&p, "00ualice").await.unwrap();
    assert_eq!(id.sub, "00ualice");
    assert_eq!(id.email, "alice@example.com");
    assert!(id.email_verified);
    assert_eq!(id.name.as_deref(), Some("Alice Anderson"));
    assert_eq!(id.idp, "dev okta");
    assert_eq!(id.idp_type, "okta");
    assert_eq!(id.groups, ["engineering", "everyone"]);
    assert_eq!(id.amr, ["pwd", "mfa", "otp"]);
    assert_eq!(
        id.custom.get("department"),
        Some(&serde_json::json!("engineering"))
    );
}

#[tokio::test]
async fn generic_oidc_provider_reports_type_oidc() {
    let idp = dev_idp().await;
    let p = ready_provider(config(&idp, IdpKind::Oidc)).await;
    let id = login(&p, "00ubob").await.unwrap();
    assert_eq!(id.idp_type, "oidc");
    assert_eq!(id.groups, ["everyone", "sales"]);
}

#[tokio::test]
async fn org_authorization_server_works_too() {
    let idp = dev_idp().await;
    let mut cfg = config(&idp, IdpKind::Okta);
    cfg.issuer = idp.okta_account();
    cfg.authorization_server_id = None;
    let p = ready_provider(cfg).await;
    assert_eq!(login(&p, "00ubob").await.unwrap().email, "bob@example.com");
}

#[tokio::test]
async fn unverified_email_is_reported_unverified() {
    let (_idp, p) = setup().await;
    assert!(!login(&p, "00udave").await.unwrap().email_verified);
}

#[tokio::test]
async fn missing_groups_claim_is_no_groups() {
    let idp = dev_idp().await;
    let mut cfg = config(&idp, IdpKind::Okta);
    cfg.scopes = ["openid", "email", "profile"].map(String::from).to_vec();
    let p = ready_provider(cfg).await;
    assert!(login(&p, "00ualice").await.unwrap().groups.is_empty());
}

#[tokio::test]
async fn groups_claim_of_the_wrong_type_fails_the_login() {
    let (idp, p) = setup().await;
    let mut user = DevUser::new("00uodd", "odd@example.com", "Odd");
    user.custom
        .insert("groups".into(), serde_json::json!("admins"));
    idp.add_user(user);
    assert_invalid_token(login(&p, "00uodd").await);
}

#[tokio::test]
async fn code_is_single_use() {
    let (_idp, p) = setup().await;
    let code = login_code(&p, "00ualice", None).await;
    p.exchange(&code, REDIRECT, None, NONCE).await.unwrap();
    assert_rejected(p.exchange(&code, REDIRECT, None, NONCE).await);
}

#[tokio::test]
async fn expired_code_is_rejected() {
    let (idp, p) = setup().await;
    idp.set_code_ttl(Duration::ZERO);
    let code = login_code(&p, "00ualice", None).await;
    assert_rejected(p.exchange(&code, REDIRECT, None, NONCE).await);
}

#[tokio::test]
async fn unknown_code_is_rejected_as_invalid_grant() {
    let (_idp, p) = setup().await;
    let err = p
        .exchange("no-such-code", REDIRECT, None, NONCE)
        .await
        .unwrap_err();
    assert_eq!(err, IdpError::Rejected("invalid_grant".into()));
}

#[tokio::test]
async fn wrong_client_secret_is_rejected() {
    let idp = dev_idp().await;
    let mut cfg = config(&idp, IdpKind::Okta);
    cfg.client_secret = "wrong".into();
    let p = ready_provider(cfg).await;
    let code = login_code(&p, "00ualice", None).await;
    let err = p.exchange(&code, REDIRECT, None, NONCE).await.unwrap_err();
    assert_eq!(err, IdpError::Rejected("invalid_client".into()));
}

#[tokio::test]
async fn pkce_with_the_right_verifier_succeeds() {
    let (_idp, p) = setup().await;
    let challenge = s256(VERIFIER);
    let code = login_code(&p, "00ualice", Some(&challenge)).await;
    p.exchange(&code, REDIRECT, Some(VERIFIER), NONCE)
        .await
        .unwrap();
}

#[tokio::test]
async fn pkce_with_a_wrong_verifier_is_rejected() {
    let (_idp, p) = setup().await;
    let challenge = s256(VERIFIER);
    let code = login_code(&p, "00ualice", Some(&challenge)).await;
    let wrong = "wrong-verifier-0123456789-0123456789-0123456789";
    assert_rejected(p.exchange(&code, REDIRECT, Some(wrong), NONCE).await);
}

#[tokio::test]
async fn pkce_challenge_without_a_verifier_is_rejected() {
    let (_idp, p) = setup().await;
    let code = login_code(&p, "00ualice", Some(&s256(VERIFIER))).await;
    assert_rejected(p.exchange(&code, REDIRECT, None, NONCE).await);
}

fn s256(verifier: &str) -> String {
    use sha2::Digest;
    URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()))
}

#[tokio::test]
async fn wrong_nonce_is_an_invalid_token() {
    let (_idp, p) = setup().await;
    let code = login_code(&p, "00ualice", None).await;
    assert_invalid_token(p.exchange(&code, REDIRECT, None, "another-nonce").await);
}

async fn tampered_login(tamper: Tamper) -> Result<Identity, IdpError> {
    let (idp, p) = setup().await;
    idp.set_next_id_token_tamper(tamper);
    login(&p, "00ualice").await
}

#[tokio::test]
async fn token_for_another_audience_is_invalid() {
    assert_invalid_token(tampered_login(Tamper::WrongAudience).await);
}

#[tokio::test]
async fn token_from_another_issuer_is_invalid() {
    assert_invalid_token(tampered_login(Tamper::WrongIssuer).await);
}

#[tokio::test]
async fn expired_token_is_invalid() {
    assert_invalid_token(tampered_login(Tamper::Expired).await);
}

#[tokio::test]
async fn token_with_a_bad_signature_is_invalid() {
    assert_invalid_token(tampered_login(Tamper::BadSignature).await);
}

#[tokio::test]
async fn token_with_a_wrong_nonce_is_invalid() {
    assert_invalid_token(tampered_login(Tamper::WrongNonce).await);
}

#[tokio::test]
async fn unsigned_token_is_invalid() {
    assert_invalid_token(tampered_login(Tamper::NoneAlg).await);
}

#[tokio::test]
async fn token_signed_hs256_with_the_client_secret_is_invalid() {
    assert_invalid_token(tampered_login(Tamper::Hs256ClientSecret).await);
}

#[tokio::test]
async fn token_without_kid_is_accepted_when_the_jwks_has_one_key() {
    tampered_login(Tamper::NoKid).await.unwrap();
}

#[tokio::test]
async fn token_without_kid_is_refused_when_the_jwks_has_two_keys() {
    let idp = dev_idp().await;
    idp.rotate_key();
    let p = ready_provider(config(&idp, IdpKind::Okta)).await;
    idp.set_next_id_token_tamper(Tamper::NoKid);
    assert_invalid_token(login(&p, "00ualice").await);
}

#[tokio::test]
async fn key_rotation_is_picked_up_without_restart() {
    let (idp, p) = setup().await;
    login(&p, "00ualice").await.unwrap();
    idp.rotate_key();
    idp.retire_old_key();
    assert_eq!(idp.active_kid(), "dev-rsa-2");
    login(&p, "00ualice").await.unwrap();
    login(&p, "00ubob").await.unwrap();
}

#[tokio::test]
async fn unknown_kid_refetches_the_jwks_at_most_once_per_minute() {
    let (idp, p) = setup().await;
    idp.rotate_key();
    idp.retire_old_key();
    login(&p, "00ualice").await.unwrap(); // refetch: now knows only dev-rsa-2
    idp.rotate_key(); // back to dev-rsa-1, unknown to the provider again
    assert_invalid_token(login(&p, "00ualice").await);
}

#[tokio::test]
async fn offline_idp_makes_discovery_unavailable() {
    let idp = dev_idp().await;
    idp.set_offline(true);
    let p = Provider::new(config(&idp, IdpKind::Okta)).unwrap();
    assert_unavailable(p.discover().await);
    assert!(!p.is_ready());
}

#[tokio::test]
async fn offline_idp_makes_the_exchange_unavailable_but_keeps_the_provider_ready() {
    let (idp, p) = setup().await;
    let code = login_code(&p, "00ualice", None).await;
    idp.set_offline(true);
    assert_unavailable(p.exchange(&code, REDIRECT, None, NONCE).await);
    assert_unavailable(p.discover().await);
    assert!(p.is_ready());
}

#[tokio::test]
async fn ensure_reachable_trusts_a_fresh_contact_without_a_request() {
    let (idp, p) = setup().await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    p.set_observer(Arc::new(move |endpoint, _| sink.lock().push(endpoint)));
    p.freeze_last_contact();
    idp.set_offline(true);
    p.ensure_reachable().await.unwrap();
    p.ensure_reachable().await.unwrap();
    assert!(seen.lock().is_empty(), "no probe: {:?}", seen.lock());
}

#[tokio::test]
async fn ensure_reachable_reports_an_outage_once_the_last_contact_is_stale() {
    let (idp, p) = setup().await;
    idp.set_offline(true);
    p.age_last_contact(REACHABLE_TTL);
    assert_unavailable(p.ensure_reachable().await);
    assert!(p.is_ready(), "an outage keeps the last discovery");
}

#[tokio::test]
async fn ensure_reachable_recovers_when_the_idp_is_back() {
    let (idp, p) = setup().await;
    idp.set_offline(true);
    p.age_last_contact(REACHABLE_TTL);
    assert_unavailable(p.ensure_reachable().await);
    // The failure stands for `UNREACHABLE_TTL` (held fresh here, however
    // slow the machine), then the next login start probes again.
    p.freeze_last_contact();
    idp.set_offline(false);
    assert_unavailable(p.ensure_reachable().await);
    p.age_last_contact(FROZEN_FOR + UNREACHABLE_TTL);
    p.ensure_reachable().await.unwrap();
}

#[tokio::test]
async fn failed_token_exchange_marks_the_idp_unreachable() {
    let (idp, p) = setup().await;
    let code = login_code(&p, "00ualice", None).await;
    idp.set_offline(true);
    assert_unavailable(p.exchange(&code, REDIRECT, None, NONCE).await);
    p.freeze_last_contact();
    idp.set_offline(false);
    assert_unavailable(p.ensure_reachable().await);
}

#[tokio::test]
async fn stopped_idp_makes_discovery_unavailable() {
    let idp = dev_idp().await;
    let cfg = config(&idp, IdpKind::Okta);
    idp.shutdown();
    assert_unavailable(Provider::new(cfg).unwrap().discover().await);
}

#[tokio::test]
async fn refresh_task_retries_until_the_idp_comes_back() {
    let idp = dev_idp().await;
    idp.set_offline(true);
    let p = Arc::new(Provider::new(config(&idp, IdpKind::Okta)).unwrap());
    p.spawn_refresh();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!p.is_ready());
    idp.set_offline(false);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !p.is_ready() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not ready within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn test_connection_passes_every_step_with_the_right_secret() {
    let idp = dev_idp().await;
    let p = Provider::new(config(&idp, IdpKind::Okta)).unwrap();
    let steps = p.test_connection(REDIRECT).await;
    let names: Vec<_> = steps.iter().map(|s| s.name).collect();
    assert_eq!(names, ["discovery", "jwks", "client credentials"]);
    assert!(steps.iter().all(|s| s.result.is_ok()), "{steps:?}");
    assert_eq!(steps[1].result.as_deref(), Ok("1 signing keys"));
}

#[tokio::test]
async fn test_connection_fails_at_client_credentials_with_a_wrong_secret() {
    let idp = dev_idp().await;
    let mut cfg = config(&idp, IdpKind::Okta);
    cfg.client_secret = "wrong".into();
    let steps = Provider::new(cfg).unwrap().test_connection(REDIRECT).await;
    assert_eq!(steps.len(), 3);
    assert!(steps[0].result.is_ok() && steps[1].result.is_ok());
    assert_eq!(steps[2].name, "client credentials");
    let err = steps[2].result.as_ref().unwrap_err();
    assert!(err.contains("invalid_client"), "{err}");
}

#[tokio::test]
async fn test_connection_stops_at_discovery_when_offline() {
    let idp = dev_idp().await;
    idp.set_offline(true);
    let steps = Provider::new(config(&idp, IdpKind::Okta))
        .unwrap()
        .test_connection(REDIRECT)
        .await;
    assert_eq!(steps.len(), 1);
    assert_eq!(steps[0].name, "discovery");
    assert!(steps[0].result.is_err());
}

#[tokio::test]
async fn api_token_replaces_token_groups_with_all_okta_groups() {
    let idp = dev_idp().await;
    let mut cfg = config(&idp, IdpKind::Okta);
    cfg.api_token = Some(dev::DEV_API_TOKEN.into());
    let p = ready_provider(cfg).await;
    let id = login(&p, "00upat").await.unwrap();
    assert_eq!(id.groups.len(), 151);
    assert!(id.in_group("team-150"));
    assert_eq!(idp.groups_api_requests(), 1);
}

#[tokio::test]
async fn without_api_token_the_token_carries_at_most_100_groups() {
    let (_idp, p) = setup().await;
    assert_eq!(login(&p, "00upat").await.unwrap().groups.len(), 100);
}

#[tokio::test]
async fn groups_api_failure_fails_the_login() {
    let idp = dev_idp().await;
    let mut cfg = config(&idp, IdpKind::Okta);
    cfg.api_token = Some("not-the-token".into());
    let p = ready_provider(cfg).await;
    match login(&p, "00ualice").await {
        Err(IdpError::GroupsApi(_)) => {}
        other => panic!("expected GroupsApi, got {other:?}"),
    }
}

#[tokio::test]
async fn observer_sees_each_endpoint() {
    let idp = dev_idp().await;
    let mut cfg = config(&idp, IdpKind::Okta);
    cfg.api_token = Some(dev::DEV_API_TOKEN.into());
    let p = Provider::new(cfg).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    p.set_observer(Arc::new(move |endpoint, _| sink.lock().push(endpoint)));
    p.discover().await.unwrap();
    login(&p, "00ualice").await.unwrap();
    assert_eq!(*seen.lock(), ["discovery", "jwks", "token", "groups"]);
}

#[test]
fn userinfo_about_another_subject_is_refused() {
    let mut claims = serde_json::json!({"sub": "00ualice"});
    let info = serde_json::json!({"sub": "00ubob", "email": "bob@example.com"});
    let err = super::merge_userinfo(
        claims.as_object_mut().unwrap(),
        info.as_object().unwrap().clone(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("userinfo sub"), "{err}");
}

#[test]
fn id_token_claims_stand_over_userinfo() {
    let mut claims = serde_json::json!({"sub": "00ualice", "name": "From Token"});
    let info =
        serde_json::json!({"sub": "00ualice", "name": "From Userinfo", "email": "a@example.com"});
    super::merge_userinfo(
        claims.as_object_mut().unwrap(),
        info.as_object().unwrap().clone(),
    )
    .unwrap();
    assert_eq!(claims["name"], "From Token");
    assert_eq!(claims["email"], "a@example.com");
}

#[test]
fn default_scopes_the_server_does_not_list_are_not_asked_for() {
    let default: Vec<String> = crate::config::validate::DEFAULT_SCOPES
        .iter()
        .map(|s| s.to_string())
        .collect();
    let keycloak = ["openid", "email", "profile", "roles"];
    assert_eq!(
        super::requested_scopes(&default, Some(&keycloak)),
        ["email", "profile"]
    );
    assert_eq!(
        super::requested_scopes(&default, None),
        ["email", "profile", "groups"]
    );
}

#[test]
fn configured_scopes_are_sent_as_written() {
    let configured = vec!["openid".to_string(), "groups".to_string()];
    assert_eq!(
        super::requested_scopes(&configured, Some(&["openid"])),
        ["groups"]
    );
}

#[test]
fn the_secret_goes_in_the_body_only_when_basic_is_not_offered() {
    use openidconnect::core::CoreClientAuthMethod::{ClientSecretBasic, ClientSecretPost};
    assert!(!super::secret_in_body(None));
    assert!(!super::secret_in_body(Some(&vec![
        ClientSecretBasic,
        ClientSecretPost
    ])));
    assert!(super::secret_in_body(Some(&vec![ClientSecretPost])));
}

#[test]
fn authentication_claims_never_come_from_userinfo() {
    let mut claims = serde_json::json!({"sub": "00ualice"});
    let info = serde_json::json!({"sub": "00ualice", "amr": ["mfa"], "acr": "2", "groups": ["g"]});
    super::merge_userinfo(
        claims.as_object_mut().unwrap(),
        info.as_object().unwrap().clone(),
    )
    .unwrap();
    assert!(claims.get("amr").is_none());
    assert!(claims.get("acr").is_none());
    assert_eq!(claims["groups"], serde_json::json!(["g"]));
}
