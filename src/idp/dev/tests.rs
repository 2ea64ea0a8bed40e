//! The dev IdP's own contract, over plain HTTP: authorize checks, login,
//! token endpoint errors, the groups API, knobs and shutdown.

use openidconnect::reqwest;
use serde_json::Value;

use super::*;

const REDIRECT: &str = "http://app.localhost/cb";

async fn idp() -> DevIdp {
    start(DevIdpOptions::new(
        "127.0.0.1:0".parse().unwrap(),
        vec![REDIRECT.into()],
    ))
    .await
    .unwrap()
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn authorize_url(idp: &DevIdp, redirect: &str, client_id: &str) -> String {
    let mut url = url::Url::parse(&format!("{}/v1/authorize", idp.issuer())).unwrap();
    url.query_pairs_mut()
        .append_pair("client_id", client_id)
        .append_pair("redirect_uri", redirect)
        .append_pair("response_type", "code")
        .append_pair("scope", "openid email groups")
        .append_pair("state", "st<\"x\">")
        .append_pair("nonce", "n1");
    url.to_string()
}

/// Log in as `user` and return the redirect's query as pairs.
async fn login(idp: &DevIdp, user: &str) -> Vec<(String, String)> {
    let (url, form) = login_form(&authorize_url(idp, REDIRECT, DEV_CLIENT_ID), user).unwrap();
    let resp = http().post(url).form(&form).send().await.unwrap();
    assert_eq!(resp.status(), 302);
    let loc = resp.headers()["location"].to_str().unwrap();
    assert!(loc.starts_with(REDIRECT));
    url::Url::parse(loc)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

async fn code_for(idp: &DevIdp, user: &str) -> String {
    let q = login(idp, user).await;
    q.into_iter().find(|(k, _)| k == "code").expect("code").1
}

async fn token(idp: &DevIdp, form: &[(&str, &str)], basic: Option<(&str, &str)>) -> (u16, Value) {
    let mut req = http().post(format!("{}/v1/token", idp.issuer())).form(form);
    if let Some((id, secret)) = basic {
        req = req.basic_auth(id, Some(secret));
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (
        status,
        serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap(),
    )
}

#[tokio::test]
async fn binds_port_zero_and_reports_the_real_port() {
    let idp = idp().await;
    assert_ne!(idp.addr().port(), 0);
    assert_eq!(
        idp.issuer(),
        format!("http://127.0.0.1:{}/oauth2/default", idp.addr().port())
    );
    assert_eq!(
        idp.okta_account(),
        format!("http://127.0.0.1:{}", idp.addr().port())
    );
}

#[tokio::test]
async fn discovery_document_has_okta_shapes() {
    let idp = idp().await;
    let doc: Value = http()
        .get(format!("{}/.well-known/openid-configuration", idp.issuer()))
        .send()
        .await
        .unwrap()
        .json_value()
        .await;
    assert_eq!(doc["issuer"], idp.issuer());
    assert_eq!(doc["jwks_uri"], format!("{}/v1/keys", idp.issuer()));
    assert_eq!(doc["id_token_signing_alg_values_supported"][0], "RS256");
}

#[tokio::test]
async fn authorize_with_an_unregistered_redirect_uri_is_an_error_page() {
    let idp = idp().await;
    let resp = http()
        .get(authorize_url(&idp, "http://evil.example/cb", DEV_CLIENT_ID))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(resp.headers().get("location").is_none());
}

#[tokio::test]
async fn authorize_with_a_redirect_uri_prefix_match_is_refused() {
    let idp = idp().await;
    let resp = http()
        .get(authorize_url(
            &idp,
            &format!("{REDIRECT}/../x"),
            DEV_CLIENT_ID,
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn authorize_with_an_unknown_client_is_an_error_page() {
    let idp = idp().await;
    let resp = http()
        .get(authorize_url(&idp, REDIRECT, "other"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn authorize_page_lists_users_and_escapes_params() {
    let idp = idp().await;
    let page = http()
        .get(authorize_url(&idp, REDIRECT, DEV_CLIENT_ID))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("alice@example.com") && page.contains("00upat"));
    assert!(page.contains("st&lt;&quot;x&quot;&gt;"));
    assert!(!page.contains("st<\"x\">"));
}

#[tokio::test]
async fn login_redirects_with_code_and_state() {
    let idp = idp().await;
    let q = login(&idp, "00ualice").await;
    assert!(q.iter().any(|(k, v)| k == "state" && v == "st<\"x\">"));
    assert!(q.iter().any(|(k, _)| k == "code"));
}

#[tokio::test]
async fn deactivated_user_cannot_log_in() {
    let idp = idp().await;
    assert!(idp.set_user_active("00ubob", false));
    let q = login(&idp, "00ubob").await;
    assert!(q.iter().any(|(k, v)| k == "error" && v == "access_denied"));
}

#[tokio::test]
async fn deactivated_user_cannot_redeem_an_earlier_code() {
    let idp = idp().await;
    let code = code_for(&idp, "00ubob").await;
    idp.set_user_active("00ubob", false);
    let form = [
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("redirect_uri", REDIRECT),
    ];
    let (status, body) = token(&idp, &form, Some((DEV_CLIENT_ID, DEV_CLIENT_SECRET))).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
}

#[tokio::test]
async fn token_accepts_client_secret_post() {
    let idp = idp().await;
    let code = code_for(&idp, "00ualice").await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("redirect_uri", REDIRECT),
        ("client_id", DEV_CLIENT_ID),
        ("client_secret", DEV_CLIENT_SECRET),
    ];
    let (status, body) = token(&idp, &form, None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["id_token"].is_string());
    assert_eq!(body["token_type"], "Bearer");
}

#[tokio::test]
async fn token_with_a_bad_secret_is_invalid_client() {
    let idp = idp().await;
    let code = code_for(&idp, "00ualice").await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("redirect_uri", REDIRECT),
    ];
    let (status, body) = token(&idp, &form, Some((DEV_CLIENT_ID, "nope"))).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
}

#[tokio::test]
async fn token_with_two_client_authentications_is_invalid_request() {
    let idp = idp().await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", "x"),
        ("redirect_uri", REDIRECT),
        ("client_secret", DEV_CLIENT_SECRET),
    ];
    let (status, body) = token(&idp, &form, Some((DEV_CLIENT_ID, DEV_CLIENT_SECRET))).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
}

#[tokio::test]
async fn token_with_another_redirect_uri_is_invalid_grant() {
    let idp = idp().await;
    let code = code_for(&idp, "00ualice").await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("redirect_uri", "http://x/cb"),
    ];
    let (status, body) = token(&idp, &form, Some((DEV_CLIENT_ID, DEV_CLIENT_SECRET))).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
}

#[tokio::test]
async fn code_from_the_org_server_is_not_redeemable_at_the_custom_server() {
    let idp = idp().await;
    let authorize = authorize_url(&idp, REDIRECT, DEV_CLIENT_ID)
        .replace("/oauth2/default/v1/authorize", "/oauth2/v1/authorize");
    let (url, form) = login_form(&authorize, "00ualice").unwrap();
    assert!(url.ends_with("/oauth2/v1/login"), "{url}");
    let resp = http().post(url).form(&form).send().await.unwrap();
    let loc = url::Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap();
    let code = loc
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let form = [
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("redirect_uri", REDIRECT),
    ];
    let (status, _) = token(&idp, &form, Some((DEV_CLIENT_ID, DEV_CLIENT_SECRET))).await;
    assert_eq!(status, 400);
}

#[tokio::test]
async fn groups_api_requires_the_ssws_token() {
    let idp = idp().await;
    let resp = http()
        .get(format!(
            "{}/api/v1/users/00ualice/groups",
            idp.okta_account()
        ))
        .header("authorization", "Bearer dev-api-token")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.json_value().await["errorCode"], "E0000011");
}

#[tokio::test]
async fn groups_api_pages_with_limit_after_and_link_next() {
    let idp = idp().await;
    let resp = http()
        .get(format!(
            "{}/api/v1/users/00upat/groups?limit=100",
            idp.okta_account()
        ))
        .header("authorization", format!("SSWS {DEV_API_TOKEN}"))
        .send()
        .await
        .unwrap();
    let links: Vec<String> = resp
        .headers()
        .get_all("link")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    let page = resp.json_value().await;
    assert_eq!(page.as_array().unwrap().len(), 100);
    assert_eq!(page[0]["profile"]["name"], "everyone");
    let next = links
        .iter()
        .find(|l| l.ends_with("rel=\"next\""))
        .expect("a next link");
    let next_url = next.trim_start_matches('<').split('>').next().unwrap();
    assert!(next_url.contains("after=00g"), "{next_url}");
    let resp = http()
        .get(next_url)
        .header("authorization", format!("SSWS {DEV_API_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert!(!resp
        .headers()
        .get_all("link")
        .iter()
        .any(|v| v.to_str().unwrap().contains("next")));
    assert_eq!(resp.json_value().await.as_array().unwrap().len(), 51);
}

#[tokio::test]
async fn groups_page_max_caps_the_requested_limit() {
    let idp = idp().await;
    idp.set_groups_page_max(40);
    let resp = http()
        .get(format!(
            "{}/api/v1/users/00upat/groups?limit=200",
            idp.okta_account()
        ))
        .header("authorization", format!("SSWS {DEV_API_TOKEN}"))
        .send()
        .await
        .unwrap();
    let next = resp
        .headers()
        .get_all("link")
        .iter()
        .any(|v| v.to_str().unwrap().ends_with("rel=\"next\""));
    assert!(next, "a capped page links to the next one");
    assert_eq!(resp.json_value().await.as_array().unwrap().len(), 40);
}

#[tokio::test]
async fn offline_answers_503_everywhere() {
    let idp = idp().await;
    idp.set_offline(true);
    let resp = http()
        .get(format!("{}/v1/keys", idp.issuer()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    idp.set_offline(false);
    let resp = http()
        .get(format!("{}/v1/keys", idp.issuer()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn rotation_publishes_both_keys_then_only_the_new_one() {
    let idp = idp().await;
    let kids = || async {
        let jwks = http()
            .get(format!("{}/v1/keys", idp.issuer()))
            .send()
            .await
            .unwrap()
            .json_value()
            .await;
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(kids().await, ["dev-rsa-1"]);
    idp.rotate_key();
    assert_eq!(kids().await, ["dev-rsa-2", "dev-rsa-1"]);
    idp.retire_old_key();
    assert_eq!(kids().await, ["dev-rsa-2"]);
}

#[tokio::test]
async fn shutdown_stops_the_listener() {
    let idp = idp().await;
    let url = format!("{}/v1/keys", idp.issuer());
    idp.shutdown();
    tokio::task::yield_now().await;
    let result = reqwest::Client::new().get(url).send().await;
    assert!(result.is_err(), "still serving: {result:?}");
}

#[test]
fn login_form_targets_the_login_endpoint_next_to_authorize() {
    let (url, form) = login_form(
        "http://127.0.0.1:9/oauth2/default/v1/authorize?client_id=c&state=s",
        "u",
    )
    .unwrap();
    assert_eq!(url, "http://127.0.0.1:9/oauth2/default/v1/login");
    assert_eq!(
        form,
        [("client_id", "c"), ("state", "s"), ("user", "u")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
    );
}

/// `reqwest` here has no `json` feature: parse the body by hand.
trait JsonValue {
    async fn json_value(self) -> Value;
}

impl JsonValue for reqwest::Response {
    async fn json_value(self) -> Value {
        serde_json::from_slice(&self.bytes().await.unwrap()).unwrap()
    }
}
