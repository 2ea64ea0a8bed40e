//! SCIM 2.0 over real sockets: the request sequences Okta's provisioning
//! client sends (OKTA-SCIM.md §4.1) and its spec test (§4.2), errors,
//! effects on access (deprovisioning, group changes, `group:` policies),
//! durability across a restart, and concurrent membership changes.
//! See: issue 4.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::harness::*;

pub(crate) const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub(crate) const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub(crate) const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub(crate) const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
pub(crate) const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// A SCIM response: status, JSON body (Null when empty) and headers.
pub(crate) struct Resp {
    pub status: StatusCode,
    pub body: Value,
    pub headers: reqwest::header::HeaderMap,
}

/// Send a SCIM request as Okta does (`User-Agent`, bearer, scim+json).
pub(crate) async fn scim_as(
    env: &Env,
    secret: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Resp {
    let url = env.url("auth.localhost", &format!("/scim/v2{path}"));
    let mut req = env
        .client()
        .request(method, url)
        .header("user-agent", "Okta SCIM Client 1.0.0")
        .header("authorization", format!("Bearer {secret}"))
        .header("accept", "application/scim+json");
    if let Some(b) = body {
        req = req
            .header("content-type", "application/scim+json")
            .body(b.to_string());
    }
    let r = req.send().await.unwrap();
    let status = r.status();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    };
    if !text.is_empty() {
        assert_eq!(
            headers.get("content-type").unwrap(),
            "application/scim+json",
            "{path}"
        );
    }
    Resp {
        status,
        body,
        headers,
    }
}

pub(crate) async fn scim(env: &Env, method: Method, path: &str, body: Option<Value>) -> Resp {
    scim_as(env, SCIM_SECRET, method, path, body).await
}

/// Okta's create-user body.
pub(crate) fn okta_user(user_name: &str, external_id: &str, given: &str, family: &str) -> Value {
    json!({
        "schemas": [USER_SCHEMA],
        "userName": user_name,
        "name": {"givenName": given, "familyName": family},
        "emails": [{"primary": true, "value": user_name, "type": "work"}],
        "displayName": format!("{given} {family}"),
        "locale": "en-US",
        "externalId": external_id,
        "groups": [],
        "password": "1mz050nq",
        "active": true
    })
}

pub(crate) async fn create_user(env: &Env, user_name: &str, external_id: &str) -> String {
    let r = scim(
        env,
        Method::POST,
        "/Users",
        Some(okta_user(user_name, external_id, "Test", "User")),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.body["id"].as_str().unwrap().to_string()
}

pub(crate) async fn create_group(env: &Env, name: &str) -> String {
    let r = scim(
        env,
        Method::POST,
        "/Groups",
        Some(json!({"schemas": [GROUP_SCHEMA], "displayName": name, "members": []})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    r.body["id"].as_str().unwrap().to_string()
}

pub(crate) fn patch(ops: Value) -> Value {
    json!({"schemas": [PATCH_SCHEMA], "Operations": ops})
}

pub(crate) fn assert_error(r: &Resp, status: u16) {
    assert_eq!(r.status, status, "{}", r.body);
    assert_eq!(r.body["schemas"], json!([ERROR_SCHEMA]));
    assert_eq!(r.body["status"], json!(status.to_string()));
    assert!(
        !r.body["detail"].as_str().unwrap_or_default().is_empty(),
        "{}",
        r.body
    );
}

pub(crate) fn assert_list(r: &Resp, total: u64) {
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["schemas"], json!([LIST_SCHEMA]));
    assert_eq!(r.body["totalResults"], json!(total), "{}", r.body);
    assert!(
        r.body["startIndex"].is_u64() && r.body["itemsPerPage"].is_u64(),
        "integers: {}",
        r.body
    );
    assert!(r.body["Resources"].is_array());
}

/// Log `user` in at the app and return the session token the upstream saw.
pub(crate) async fn login_token(env: &Env, user: &str) -> (reqwest::Client, String) {
    let browser = env.browser();
    login_ok(env, &browser, &env.url("app.localhost", "/"), user).await;
    let token = env
        .upstream
        .seen()
        .last()
        .and_then(|s| s.header("cf-access-jwt-assertion"))
        .expect("assertion header")
        .to_string();
    (browser, token)
}

pub(crate) async fn with_token(env: &Env, token: &str, path: &str) -> u16 {
    env.client()
        .get(env.url("app.localhost", path))
        .header("cf-access-token", token)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Okta's user lifecycle: lookup by userName (empty), create, read, update
/// with GET then a PUT of the whole user, deactivate with a pathless PATCH,
/// reactivate; `password` is never echoed and list counts are integers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn okta_user_lifecycle() {
    let env = env().scim(true, false, false).start().await;
    let r = scim(
        &env,
        Method::GET,
        "/Users?filter=userName%20eq%20%22test.user%40okta.local%22&startIndex=1&count=100",
        None,
    )
    .await;
    assert_list(&r, 0);
    assert_eq!(
        r.body,
        json!({"schemas": [LIST_SCHEMA], "totalResults": 0, "startIndex": 1, "itemsPerPage": 0, "Resources": []})
    );

    let r = scim(
        &env,
        Method::POST,
        "/Users",
        Some(okta_user(
            "test.user@okta.local",
            "00ujl29u0le5T6Aj10h7",
            "Test",
            "User",
        )),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.body["id"].as_str().expect("id").to_string();
    assert_eq!(r.body["schemas"], json!([USER_SCHEMA]));
    assert_eq!(r.body["userName"], "test.user@okta.local");
    assert_eq!(r.body["active"], true);
    assert_eq!(r.body["externalId"], "00ujl29u0le5T6Aj10h7");
    assert!(
        r.body.get("password").is_none(),
        "password echoed: {}",
        r.body
    );
    let location = format!("http://auth.localhost:{}/scim/v2/Users/{id}", env.port);
    assert_eq!(r.body["meta"]["location"], location);
    assert_eq!(r.headers.get("location").unwrap(), location.as_str());
    assert_eq!(r.body["meta"]["resourceType"], "User");
    assert_eq!(r.body["meta"]["version"], "W/\"1\"");
    assert_eq!(r.headers.get("etag").unwrap(), "W/\"1\"");
    assert!(r.body["meta"]["created"].as_str().unwrap().ends_with('Z'));

    let r = scim(
        &env,
        Method::GET,
        "/Users?filter=userName%20eq%20%22test.user%40okta.local%22&startIndex=1&count=100",
        None,
    )
    .await;
    assert_list(&r, 1);
    assert_eq!(r.body["Resources"][0]["id"], id.as_str());

    // Update: GET, then PUT the whole user back (id, meta, schemas included).
    let mut user = scim(&env, Method::GET, &format!("/Users/{id}"), None)
        .await
        .body;
    user["name"]["givenName"] = json!("Tess");
    user["password"] = json!("n3w-pass");
    let r = scim(&env, Method::PUT, &format!("/Users/{id}"), Some(user)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["name"]["givenName"], "Tess");
    assert_eq!(r.body["id"], id.as_str());
    assert_eq!(r.body["meta"]["version"], "W/\"2\"");
    assert!(r.body.get("password").is_none());

    // Deactivate: pathless replace.
    let r = scim(
        &env,
        Method::PATCH,
        &format!("/Users/{id}"),
        Some(patch(
            json!([{"op": "replace", "value": {"active": false}}]),
        )),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["active"], false);
    assert_eq!(r.body["name"]["givenName"], "Tess", "other attributes kept");
    // Reactivate, and a password sync that must not be stored.
    let r = scim(
        &env,
        Method::PATCH,
        &format!("/Users/{id}"),
        Some(patch(json!([{"op": "replace", "value": {"active": true}}, {"op": "replace", "value": {"password": "x"}}]))),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["active"], true);
    assert!(r.body.get("password").is_none());

    let r = scim(&env, Method::GET, "/Users?startIndex=1&count=100", None).await;
    assert_list(&r, 1);
    assert_eq!(r.body["itemsPerPage"], 1);
}

/// Okta's Push Groups: create (empty), list, membership PATCH (remove by
/// filter + add), full replace, pathless rename with `id`, lookup by name,
/// delete.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn okta_group_push_update_rename_delete() {
    let env = env().scim(false, false, false).start().await;
    let a = create_user(&env, "a@okta.local", "00ua").await;
    let b = create_user(&env, "b@okta.local", "00ub").await;
    let r = scim(
        &env,
        Method::POST,
        "/Groups",
        Some(json!({"schemas": [GROUP_SCHEMA], "displayName": "Test SCIMv2", "members": []})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let gid = r.body["id"].as_str().unwrap().to_string();
    assert_eq!(r.body["displayName"], "Test SCIMv2");
    assert_eq!(r.body["members"], json!([]));
    assert_eq!(r.body["meta"]["resourceType"], "Group");

    let r = scim(&env, Method::GET, "/Groups?startIndex=1&count=100", None).await;
    assert_list(&r, 1);

    let r = scim(
        &env,
        Method::PATCH,
        &format!("/Groups/{gid}"),
        Some(patch(json!([
            {"op": "remove", "path": format!("members[value eq \"{b}\"]")},
            {"op": "add", "path": "members", "value": [{"value": a, "display": "a@okta.local"}]}
        ]))),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body["members"],
        json!([{"value": a, "display": "a@okta.local", "type": "User", "$ref": format!("http://auth.localhost:{}/scim/v2/Users/{a}", env.port)}])
    );

    let r = scim(
        &env,
        Method::PATCH,
        &format!("/Groups/{gid}"),
        Some(patch(json!([{"op": "replace", "path": "members", "value": [{"value": b, "display": "b@okta.local"}]}]))),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["members"].as_array().unwrap().len(), 1);
    assert_eq!(r.body["members"][0]["value"], b.as_str());

    let r = scim(
        &env,
        Method::PATCH,
        &format!("/Groups/{gid}"),
        Some(patch(
            json!([{"op": "replace", "value": {"id": gid, "displayName": "Renamed"}}]),
        )),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["displayName"], "Renamed");
    assert_eq!(r.body["id"], gid.as_str());

    let r = scim(
        &env,
        Method::GET,
        "/Groups?filter=displayName%20eq%20%22Renamed%22",
        None,
    )
    .await;
    assert_list(&r, 1);
    let r = scim(&env, Method::GET, &format!("/Users/{b}"), None).await;
    assert_eq!(r.body["groups"][0]["display"], "Renamed");
    let r = scim(
        &env,
        Method::GET,
        &format!("/Groups/{gid}?excludedAttributes=members"),
        None,
    )
    .await;
    assert!(r.body.get("members").is_none());

    let r = scim(&env, Method::DELETE, &format!("/Groups/{gid}"), None).await;
    assert_eq!(r.status, 204);
    assert_eq!(r.body, Value::Null);
    // RFC 9110 §8.6: a 204 carries no Content-Length.
    assert!(r.headers.get("content-length").is_none(), "{:?}", r.headers);
    assert_error(
        &scim(&env, Method::GET, &format!("/Groups/{gid}"), None).await,
        404,
    );
}

/// The steps of Okta's "SCIM 2.0 Spec Test" (OKTA-SCIM.md §4.2).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn okta_spec_test_steps() {
    let env = env().scim(false, false, false).start().await;
    create_user(&env, "seed.user@okta.local", "00useed").await;
    // 1. Users endpoint.
    let r = scim(&env, Method::GET, "/Users?count=1&startIndex=1", None).await;
    assert_list(&r, 1);
    let first = &r.body["Resources"][0];
    for field in ["id", "userName", "active"] {
        assert!(first.get(field).is_some(), "{field}");
    }
    assert!(first["name"]["familyName"].is_string() && first["name"]["givenName"].is_string());
    assert!(first["emails"][0]["value"].is_string());
    // 2. Get by id.
    let id = first["id"].as_str().unwrap();
    let r = scim(&env, Method::GET, &format!("/Users/{id}"), None).await;
    assert_eq!((r.status.as_u16(), r.body["id"].as_str()), (200, Some(id)));
    // 3 + 5. Unknown userName.
    let r = scim(
        &env,
        Method::GET,
        "/Users?filter=userName%20eq%20%22random.7788%40example.com%22",
        None,
    )
    .await;
    assert_list(&r, 0);
    // 4. Unknown id.
    assert_error(
        &scim(&env, Method::GET, "/Users/010101001010101", None).await,
        404,
    );
    // 6. Create with realistic values.
    let r = scim(
        &env,
        Method::POST,
        "/Users",
        Some(okta_user("Jane.Doe@Example.com", "00ujane", "Jane", "Doe")),
    )
    .await;
    assert_eq!(r.status, 201);
    assert_eq!(r.body["active"], true);
    assert_eq!(r.body["userName"], "Jane.Doe@Example.com");
    assert_eq!(r.body["name"]["familyName"], "Doe");
    let jane = r.body["id"].as_str().unwrap().to_string();
    // 7. Verify.
    let r = scim(&env, Method::GET, &format!("/Users/{jane}"), None).await;
    assert_eq!(r.body["name"]["givenName"], "Jane");
    // 8. Recreate: 409.
    let r = scim(
        &env,
        Method::POST,
        "/Users",
        Some(okta_user("Jane.Doe@Example.com", "00ujane", "Jane", "Doe")),
    )
    .await;
    assert_error(&r, 409);
    assert_eq!(r.body["scimType"], "uniqueness");
    // 9. Case-insensitive userName lookup.
    let r = scim(
        &env,
        Method::GET,
        "/Users?filter=userName%20eq%20%22JANE.DOE%40EXAMPLE.COM%22",
        None,
    )
    .await;
    assert_list(&r, 1);
    // 10. Groups endpoint.
    assert_list(&scim(&env, Method::GET, "/Groups", None).await, 0);
    // 11. 401.
    assert_error(
        &scim_as(&env, "wrong-secret-0123456789", Method::GET, "/Users", None).await,
        401,
    );
    // Discovery.
    let r = scim(&env, Method::GET, "/ServiceProviderConfig", None).await;
    assert_eq!(
        (r.status.as_u16(), &r.body["patch"]["supported"]),
        (200, &json!(true))
    );
    assert_list(&scim(&env, Method::GET, "/ResourceTypes", None).await, 2);
    assert_list(&scim(&env, Method::GET, "/Schemas", None).await, 3);
}

/// A duplicate userName (any case) is 409 `uniqueness`, as is a duplicate
/// group name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_are_409_uniqueness() {
    let env = env().scim(false, false, false).start().await;
    create_user(&env, "dup@okta.local", "00u1").await;
    let r = scim(
        &env,
        Method::POST,
        "/Users",
        Some(okta_user("DUP@okta.local", "00u2", "D", "U")),
    )
    .await;
    assert_error(&r, 409);
    assert_eq!(r.body["scimType"], "uniqueness");
    assert_eq!(r.body["detail"], "User already exists in the database.");
    create_group(&env, "Team").await;
    let r = scim(
        &env,
        Method::POST,
        "/Groups",
        Some(json!({"displayName": "team"})),
    )
    .await;
    assert_error(&r, 409);
}

/// Unknown ids are 404 with an Error document and a detail, for every method.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_ids_are_404() {
    let env = env().scim(false, false, false).start().await;
    for (m, path, body) in [
        (Method::GET, "/Users/nope", None),
        (
            Method::PUT,
            "/Users/nope",
            Some(okta_user("x@y.z", "1", "X", "Y")),
        ),
        (
            Method::PATCH,
            "/Users/nope",
            Some(patch(
                json!([{"op": "replace", "value": {"active": false}}]),
            )),
        ),
        (Method::DELETE, "/Users/nope", None),
        (Method::GET, "/Groups/nope", None),
        (
            Method::PATCH,
            "/Groups/nope",
            Some(patch(
                json!([{"op": "add", "path": "members", "value": []}]),
            )),
        ),
        (Method::DELETE, "/Groups/nope", None),
        (Method::GET, "/Nothing", None),
    ] {
        assert_error(&scim(&env, m, path, body).await, 404);
    }
}

/// A missing, malformed or wrong bearer is 401 with an Error document; the
/// SCIM endpoint is only on the auth domain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bearer_is_401() {
    let env = env().scim(false, false, false).start().await;
    assert_error(
        &scim_as(&env, "not-the-secret-0000000", Method::GET, "/Users", None).await,
        401,
    );
    let url = env.url("auth.localhost", "/scim/v2/Users");
    for auth in [
        None,
        Some("Basic dXNlcjpwYXNz"),
        Some("Bearer"),
        Some(SCIM_SECRET),
    ] {
        let mut req = env.client().get(&url);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401, "{auth:?}");
        assert!(r.headers().get("www-authenticate").is_some());
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["schemas"], json!([ERROR_SCHEMA]));
    }
    // Not on an app host.
    let r = env
        .client()
        .get(env.url("app.localhost", "/scim/v2/Users"))
        .header("authorization", format!("Bearer {SCIM_SECRET}"))
        .send()
        .await
        .unwrap();
    assert_ne!(r.status(), 200);
}

/// Malformed JSON, an oversized body, a bad filter and a bad PATCH get 400
/// SCIM errors saying what is wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_are_400() {
    let env = env().scim(false, false, false).start().await;
    let url = env.url("auth.localhost", "/scim/v2/Users");
    let send = |body: Vec<u8>| {
        env.client()
            .post(&url)
            .header("authorization", format!("Bearer {SCIM_SECRET}"))
            .header("content-type", "application/scim+json")
            .body(body)
            .send()
    };
    let r = send(b"{\"userName\": ".to_vec()).await.unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["scimType"], "invalidSyntax");
    assert!(
        body["detail"].as_str().unwrap().contains("not valid JSON"),
        "{body}"
    );
    let big = format!("{{\"userName\": \"{}\"}}", "a".repeat(2 << 20));
    let r = send(big.into_bytes()).await.unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["detail"].as_str().unwrap().contains("larger than"),
        "{body}"
    );
    let r = scim(
        &env,
        Method::GET,
        "/Users?filter=title%20eq%20%22x%22",
        None,
    )
    .await;
    assert_error(&r, 400);
    assert_eq!(r.body["scimType"], "invalidFilter");
    let r = scim(&env, Method::GET, "/Users?filter=userName%20eq", None).await;
    assert_eq!(r.body["scimType"], "invalidFilter");
    let r = scim(&env, Method::POST, "/Users", Some(json!({"name": {}}))).await;
    assert_error(&r, 400);
    assert!(r.body["detail"].as_str().unwrap().contains("userName"));
}

/// A client that announces a body over the limit and waits for
/// `100 Continue` gets the 400 at once, without sending the body.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_body_announced_with_expect_continue_is_refused_without_waiting() {
    let env = env().scim(false, false, false).start().await;
    let head = format!(
        "POST /scim/v2/Users HTTP/1.1\r\nHost: auth.localhost:{}\r\n\
         Authorization: Bearer {SCIM_SECRET}\r\nContent-Type: application/scim+json\r\n\
         Content-Length: {}\r\nExpect: 100-continue\r\n",
        env.port,
        2 << 20
    );
    let started = std::time::Instant::now();
    let (status, text) = raw_http(&env, &head).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("larger than"), "{text}");
    assert!(!text.contains("100 Continue"), "{text}");
    // A refusal that waited for the body would come only when the drain
    // gives up, after its 2 s limit (`DRAIN_TIME` in src/scim/request.rs):
    // that limit, not a guess at this machine's speed, is the bound.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the refusal waited for a body that was never sent: {:?}",
        started.elapsed()
    );
}

/// Open a connection and send a SCIM user creation that announces
/// `Expect: 100-continue` with `framing` (`Content-Length: N` or
/// `Transfer-Encoding: chunked`), then read the interim answer, which must
/// be `100 Continue`. Returns both halves and the text read so far.
async fn post_user_awaiting_continue(
    env: &Env,
    framing: &str,
) -> (OwnedReadHalf, OwnedWriteHalf, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let head = format!(
        "POST /scim/v2/Users HTTP/1.1\r\nHost: auth.localhost:{}\r\n\
         Authorization: Bearer {SCIM_SECRET}\r\nContent-Type: application/scim+json\r\n\
         {framing}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
        env.port
    );
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", env.port))
        .await
        .unwrap();
    let (mut rd, mut wr) = stream.into_split();
    wr.write_all(head.as_bytes()).await.unwrap();
    let mut interim = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), rd.read(&mut interim))
        .await
        .expect("an interim answer before the body is sent")
        .unwrap();
    let interim = String::from_utf8_lossy(&interim[..n]).into_owned();
    assert!(
        interim.starts_with("HTTP/1.1 100 Continue\r\n"),
        "{interim:?}"
    );
    (rd, wr, interim)
}

/// Read the rest of the answer; a reset fails the test.
async fn read_answer(rd: &mut OwnedReadHalf) -> String {
    use tokio::io::AsyncReadExt as _;
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), rd.read_to_end(&mut rest))
        .await
        .expect("the final answer")
        .expect("the answer, not a reset");
    String::from_utf8_lossy(&rest).into_owned()
}

/// A client that waits for `100 Continue` before sending a body within the
/// limit is told to go on, and its request is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn body_held_back_for_expect_continue_is_asked_for_and_served() {
    use tokio::io::AsyncWriteExt as _;
    let env = env().scim(false, false, false).start().await;
    let body = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "erin@example.com",
        "active": true
    })
    .to_string();
    let (mut rd, mut wr, interim) =
        post_user_awaiting_continue(&env, &format!("Content-Length: {}", body.len())).await;
    wr.write_all(body.as_bytes()).await.unwrap();
    let rest = read_answer(&mut rd).await;
    assert!(
        rest.contains("HTTP/1.1 201") || interim.contains("HTTP/1.1 201"),
        "{interim}{rest}"
    );
    assert!(rest.contains("erin@example.com"), "{rest}");
}

/// A client told `100 Continue` that then streams a chunked body over the
/// limit has the whole body read (within the drain bound) before the 400:
/// its upload completes and the refusal arrives, rather than a reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_chunked_body_sent_after_continue_is_drained_before_the_400() {
    use tokio::io::AsyncWriteExt as _;
    let env = env().scim(false, false, false).start().await;
    let (mut rd, mut wr, _) = post_user_awaiting_continue(&env, "Transfer-Encoding: chunked").await;
    // 12 MiB: more than the two sockets' buffers hold, so a server that
    // stopped reading and closed would fail this upload.
    let upload = tokio::spawn(async move {
        let chunk = vec![b'a'; 1 << 20];
        for _ in 0..12 {
            wr.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .await?;
            wr.write_all(&chunk).await?;
            wr.write_all(b"\r\n").await?;
        }
        wr.write_all(b"0\r\n\r\n").await?;
        Ok::<_, std::io::Error>(wr)
    });
    let rest = read_answer(&mut rd).await;
    let uploaded = upload.await.unwrap();
    assert!(uploaded.is_ok(), "upload cut off: {uploaded:?}");
    assert!(rest.starts_with("HTTP/1.1 400"), "{rest}");
    assert!(rest.contains("larger than"), "{rest}");
}

/// With `user_deprovision`, a logged-in user deactivated over SCIM is
/// refused on the very next request, and a new login gets the 403 page;
/// with `seat_deprovision` their seat goes too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deactivated_user_is_refused_at_once_and_at_login() {
    let env = env().scim(true, true, false).threads(2).start().await;
    let id = create_user(&env, "bob@example.com", "00ubob").await;
    let (browser, token) = login_token(&env, "00ubob").await;
    assert_eq!(with_token(&env, &token, "/before").await, 200);
    assert!(env
        .state()
        .store
        .list_seats()
        .await
        .unwrap()
        .iter()
        .any(|s| s.sub == "00ubob"));

    let r = scim(
        &env,
        Method::PATCH,
        &format!("/Users/{id}"),
        Some(patch(
            json!([{"op": "replace", "value": {"active": false}}]),
        )),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(with_token(&env, &token, "/after").await, 401);
    let r = browser
        .get(env.url("app.localhost", "/after"))
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 302, "the cookie no longer works");
    assert!(
        !env.state()
            .store
            .list_seats()
            .await
            .unwrap()
            .iter()
            .any(|s| s.sub == "00ubob"),
        "seat removed"
    );

    let end = fresh_login(&env, "00ubob").await;
    assert_eq!(end.response.status(), 403, "{:?}", end.trail);
    let page = end.response.text().await.unwrap();
    assert!(page.contains("deactivated"), "{page}");

    // Reactivated: a new login works again.
    let r = scim(
        &env,
        Method::PATCH,
        &format!("/Users/{id}"),
        Some(patch(
            json!([{"op": "replace", "path": "active", "value": true}]),
        )),
    )
    .await;
    assert_eq!(r.status, 200);
    login_ok(
        &env,
        &env.browser(),
        &env.url("app.localhost", "/"),
        "00ubob",
    )
    .await;
}

/// Whether a login walk's trail went to the IdP's authorize endpoint
/// (a fresh sign-in) and whether it reached `/authorized` (a transfer
/// token was minted).
fn walk_shape(env: &Env, trail: &[String]) -> (bool, bool) {
    let idp = format!("http://{}", env.idp.addr());
    (
        trail
            .iter()
            .any(|u| u.starts_with(&idp) && u.contains("/v1/authorize")),
        trail
            .iter()
            .any(|u| u.contains("/cdn-cgi/access/authorized?")),
    )
}

/// A user deactivated over SCIM cannot reuse the auth-domain (SSO) session
/// to enter another app. `user_deprovision` is off, so the SSO session is
/// not revoked and only the login's own SCIM check stands in the way: the
/// walk is sent to the IdP instead of being handed a transfer token, and
/// the login there ends on the "deactivated" page. Control: before the
/// deactivation the same browser enters a second app on the SSO session
/// alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deactivated_user_cannot_reuse_the_sso_session_for_another_app() {
    let env = env().scim(false, false, false).start().await;
    let id = create_user(&env, "bob@example.com", "00ubob").await;
    let browser = env.browser();
    login_ok(&env, &browser, &env.url("app.localhost", "/"), "00ubob").await;
    let end = browse_login(&env, &browser, &env.url("other.localhost", "/"), "00ubob").await;
    assert_eq!(end.response.status(), 200, "{:?}", end.trail);
    assert_eq!(
        walk_shape(&env, &end.trail),
        (false, true),
        "control: the SSO session alone enters a second app: {:?}",
        end.trail
    );

    let r = scim(
        &env,
        Method::PATCH,
        &format!("/Users/{id}"),
        Some(patch(
            json!([{"op": "replace", "value": {"active": false}}]),
        )),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let forwarded = env.upstream.seen().len();
    let end = browse_login(&env, &browser, &env.url("api.localhost", "/"), "00ubob").await;
    assert_eq!(
        walk_shape(&env, &end.trail),
        (true, false),
        "the SSO session is not reused, the IdP is asked: {:?}",
        end.trail
    );
    assert_eq!(end.response.status(), 403, "{:?}", end.trail);
    let page = end.response.text().await.unwrap();
    assert!(page.contains("deactivated"), "{page}");
    assert_eq!(
        env.upstream.seen().len(),
        forwarded,
        "nothing was forwarded"
    );
}

/// A PATCH whose second operation fails (`id` is read-only) is refused as
/// a whole: the first operation's change is not stored. Control: the first
/// operation alone is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patch_with_a_failing_operation_changes_nothing() {
    let env = env().scim(false, false, false).start().await;
    let id = create_user(&env, "bob@example.com", "00ubob").await;
    let user = format!("/Users/{id}");
    let title = json!({"op": "replace", "path": "title", "value": "Boss"});
    let r = scim(
        &env,
        Method::PATCH,
        &user,
        Some(patch(
            json!([title.clone(), {"op": "replace", "path": "id", "value": "other"}]),
        )),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let r = scim(&env, Method::GET, &user, None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.get("title").is_none(), "nothing stored: {}", r.body);
    let r = scim(&env, Method::PATCH, &user, Some(patch(json!([title])))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = scim(&env, Method::GET, &user, None).await;
    assert_eq!(r.body["title"], json!("Boss"), "control: {}", r.body);
}

/// A deactivated user stays deactivated when an update leaves `active`
/// out: a PATCH that removes it, a PATCH that sets it to null and a PUT
/// without it all drop the attribute but keep the user deprovisioned, and
/// a login is still refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn update_without_active_never_reactivates_a_user() {
    let env = env().scim(true, false, false).start().await;
    let id = create_user(&env, "bob@example.com", "00ubob").await;
    let user = format!("/Users/{id}");
    let r = scim(
        &env,
        Method::PATCH,
        &user,
        Some(patch(
            json!([{"op": "replace", "value": {"active": false}}]),
        )),
    )
    .await;
    assert_eq!(r.body["active"], json!(false));
    for ops in [
        json!([{"op": "remove", "path": "active"}]),
        json!([{"op": "replace", "path": "active", "value": null}]),
    ] {
        let r = scim(&env, Method::PATCH, &user, Some(patch(ops.clone()))).await;
        assert_eq!(
            (r.status.as_u16(), r.body.get("active")),
            (200, None),
            "{ops}: the attribute is gone, the state stays"
        );
    }
    let r = scim(
        &env,
        Method::PUT,
        &user,
        Some(json!({"userName": "bob@example.com", "name": {"givenName": "Bob"}})),
    )
    .await;
    assert_eq!((r.status.as_u16(), r.body.get("active")), (200, None));
    let end = fresh_login(&env, "00ubob").await;
    assert_eq!(end.response.status(), 403, "{:?}", end.trail);
    let page = end.response.text().await.unwrap();
    assert!(
        page.contains("deactivated"),
        "refused as deactivated: {page}"
    );
}

/// Discovery documents refuse a filter (RFC 7644 §4), lists refuse an
/// empty one instead of listing everything, and attribute names that are
/// not ASCII get an answer rather than a dropped connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_query_parameters_get_scim_errors() {
    let env = env().scim(false, false, false).start().await;
    create_user(&env, "bob@example.com", "00ubob").await;
    for path in ["/ServiceProviderConfig", "/Schemas", "/ResourceTypes"] {
        let r = scim(
            &env,
            Method::GET,
            &format!("{path}?filter=id%20eq%20%22x%22"),
            None,
        )
        .await;
        assert_error(&r, 403);
    }
    for q in ["filter=", "filter=%20%20&count=0"] {
        let r = scim(&env, Method::GET, &format!("/Users?{q}"), None).await;
        assert_error(&r, 400);
        assert_eq!(r.body["scimType"], "invalidFilter", "{q}");
    }
    let r = scim(
        &env,
        Method::GET,
        "/Users?excludedAttributes=urn%C3%A9",
        None,
    )
    .await;
    assert_list(&r, 1);
    let r = scim(&env, Method::GET, "/Users?attributes=abc%C3%A9", None).await;
    assert_list(&r, 1);
}

/// Deleting a user linked only by email also revokes its sessions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_user_linked_by_email_revokes_sessions() {
    let env = env().scim(true, false, false).start().await;
    let r = scim(&env, Method::POST, "/Users", Some(json!({"userName": "Alice@Example.com", "emails": [{"value": "alice@example.com", "primary": true}]}))).await;
    let id = r.body["id"].as_str().unwrap().to_string();
    let (_, token) = login_token(&env, "00ualice").await;
    assert_eq!(with_token(&env, &token, "/").await, 200);
    assert_eq!(
        scim(&env, Method::DELETE, &format!("/Users/{id}"), None)
            .await
            .status,
        204
    );
    assert_eq!(with_token(&env, &token, "/").await, 401);
}

/// With `group_member_deprovision`, adding a logged-in user to a group
/// revokes their sessions: the next request must re-authenticate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_membership_change_forces_reauth() {
    let env = env().scim(false, false, true).threads(2).start().await;
    let uid = create_user(&env, "alice@example.com", "00ualice").await;
    let gid = create_group(&env, "reviewers").await;
    let (_, token) = login_token(&env, "00ualice").await;
    assert_eq!(with_token(&env, &token, "/").await, 200);
    let r = scim(
        &env,
        Method::PATCH,
        &format!("/Groups/{gid}"),
        Some(patch(
            json!([{"op": "add", "path": "members", "value": [{"value": uid}]}]),
        )),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(with_token(&env, &token, "/").await, 401);
    // A new session sees the SCIM group.
    let browser = env.browser();
    login_ok(&env, &browser, &env.url("app.localhost", "/"), "00ualice").await;
    let r = browser
        .get(env.url("app.localhost", "/cdn-cgi/access/get-identity"))
        .send()
        .await
        .unwrap();
    let id: Value = r.json().await.unwrap();
    assert!(
        id["groups"]
            .as_array()
            .unwrap()
            .contains(&json!("reviewers")),
        "{id}"
    );
}

/// `portcullis_sessions_revoked_total{reason}` of a scrape.
fn revoked(text: &str, reason: &str) -> f64 {
    metric(
        text,
        "portcullis_sessions_revoked_total",
        &[("reason", reason)],
    )
}

/// SCIM revocations are counted by reason and by session, in a proxy of
/// its own (metrics are per process, so nothing else moves them):
/// deactivating a user with two live sessions adds exactly 2 to
/// `scim_deprovision`, a membership change of a user with one adds
/// exactly 1 to `scim_group_change`, and a change that finds no live
/// session adds nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim_revocations_are_counted_by_reason_and_session() {
    let env = env().scim(true, false, true).own_process().start().await;
    let bob = create_user(&env, "bob@example.com", "00ubob").await;
    let alice = create_user(&env, "alice@example.com", "00ualice").await;
    let gid = create_group(&env, "reviewers").await;
    for _ in 0..2 {
        login_ok(
            &env,
            &env.browser(),
            &env.url("app.localhost", "/"),
            "00ubob",
        )
        .await;
    }
    let (_, alice_token) = login_token(&env, "00ualice").await;
    let m0 = env.metrics().await;

    let deactivate = patch(json!([{"op": "replace", "value": {"active": false}}]));
    let r = scim(
        &env,
        Method::PATCH,
        &format!("/Users/{bob}"),
        Some(deactivate),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let m1 = env.metrics().await;
    assert_eq!(
        revoked(&m1, "scim_deprovision") - revoked(&m0, "scim_deprovision"),
        2.0
    );
    assert_eq!(
        revoked(&m1, "scim_group_change"),
        revoked(&m0, "scim_group_change")
    );

    let add =
        |uid: &str| patch(json!([{"op": "add", "path": "members", "value": [{"value": uid}]}]));
    let r = scim(
        &env,
        Method::PATCH,
        &format!("/Groups/{gid}"),
        Some(add(&alice)),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(with_token(&env, &alice_token, "/").await, 401);
    let m2 = env.metrics().await;
    assert_eq!(
        revoked(&m2, "scim_group_change") - revoked(&m1, "scim_group_change"),
        1.0
    );
    assert_eq!(
        revoked(&m2, "scim_deprovision"),
        revoked(&m1, "scim_deprovision")
    );

    // Nothing live is left to revoke: the counters stay.
    let remove = patch(json!([{"op": "remove", "path": format!("members[value eq \"{alice}\"]")}]));
    let r = scim(&env, Method::PATCH, &format!("/Groups/{gid}"), Some(remove)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = scim(&env, Method::DELETE, &format!("/Users/{bob}"), None).await;
    assert_eq!(r.status, 204, "{}", r.body);
    let m3 = env.metrics().await;
    for reason in ["scim_deprovision", "scim_group_change", "logout"] {
        assert_eq!(revoked(&m3, reason), revoked(&m2, reason), "{reason}");
    }
}

const SCIM_GROUP_POLICY: &str = r#"
apps:
  - name: app
    domain: app.localhost
    upstream: ${UPSTREAM}
    policies:
      - name: scim reviewers
        decision: allow
        include: [{ group: scim-reviewers }]
"#;

/// A group only SCIM knows grants access through a `group:` policy, and
/// the change shows on the next request of an existing session (no reauth
/// without `group_member_deprovision`); removal takes it away again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim_group_grants_access_via_policy() {
    let env = env()
        .policies(SCIM_GROUP_POLICY)
        .scim(false, false, false)
        .start()
        .await;
    let browser = env.browser();
    let end = browse_login(&env, &browser, &env.url("app.localhost", "/"), "00ucarol").await;
    assert_policy_denied(end).await;
    let uid = create_user(&env, "carol@contractor.example.net", "00ucarol").await;
    let r = scim(
        &env,
        Method::POST,
        "/Groups",
        Some(json!({"schemas": [GROUP_SCHEMA], "displayName": "scim-reviewers", "members": [{"value": uid}]})),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let gid = r.body["id"].as_str().unwrap().to_string();
    let r = browser
        .get(env.url("app.localhost", "/"))
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the same session now passes");
    let seen = env.upstream.seen();
    let groups = seen
        .last()
        .unwrap()
        .header("x-portcullis-groups")
        .unwrap()
        .to_string();
    assert!(groups.split(',').any(|g| g == "scim-reviewers"), "{groups}");
    let r = scim(
        &env,
        Method::PATCH,
        &format!("/Groups/{gid}"),
        Some(patch(
            json!([{"op": "remove", "path": format!("members[value eq \"{uid}\"]")}]),
        )),
    )
    .await;
    assert_eq!(r.status, 200);
    let r = browser
        .get(env.url("app.localhost", "/"))
        .header("accept", HTML)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

/// Every acknowledged write is there after the proxy stops and restarts on
/// the same data folder; the secret still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_every_acknowledged_write() {
    let env1 = env().scim(false, false, false).start().await;
    let port = env1.port;
    let mut users = Vec::new();
    for i in 0..5 {
        users.push(create_user(&env1, &format!("u{i}@okta.local"), &format!("00u{i}")).await);
    }
    let gid = create_group(&env1, "durable").await;
    let add = json!([{"op": "add", "path": "members", "value": users.iter().map(|u| json!({"value": u})).collect::<Vec<_>>()}]);
    assert_eq!(
        scim(
            &env1,
            Method::PATCH,
            &format!("/Groups/{gid}"),
            Some(patch(add))
        )
        .await
        .status,
        200
    );
    let off = json!([{"op": "replace", "value": {"active": false}}]);
    assert_eq!(
        scim(
            &env1,
            Method::PATCH,
            &format!("/Users/{}", users[0]),
            Some(patch(off))
        )
        .await
        .status,
        200
    );
    assert_eq!(
        scim(&env1, Method::DELETE, &format!("/Users/{}", users[4]), None)
            .await
            .status,
        204
    );
    let rename = json!([{"op": "replace", "value": {"displayName": "durable-2"}}]);
    assert_eq!(
        scim(
            &env1,
            Method::PATCH,
            &format!("/Groups/{gid}"),
            Some(patch(rename))
        )
        .await
        .status,
        200
    );
    let before = scim(&env1, Method::GET, &format!("/Groups/{gid}"), None)
        .await
        .body;
    let dir = env1.stop();

    let env2 = env()
        .port(port)
        .data_dir(dir)
        .scim(false, false, false)
        .start()
        .await;
    assert_list(&scim(&env2, Method::GET, "/Users", None).await, 4);
    assert_eq!(
        scim(&env2, Method::GET, &format!("/Users/{}", users[0]), None)
            .await
            .body["active"],
        false
    );
    assert_eq!(
        scim(&env2, Method::GET, &format!("/Users/{}", users[4]), None)
            .await
            .status,
        404
    );
    let after = scim(&env2, Method::GET, &format!("/Groups/{gid}"), None)
        .await
        .body;
    assert_eq!(after, before);
    assert_eq!(after["members"].as_array().unwrap().len(), 4);
}

/// Twenty concurrent PATCHes, each adding one member to the same group,
/// all land.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_patch_adds_all_land() {
    let env = env().scim(false, false, false).threads(2).start().await;
    let mut users = Vec::new();
    for i in 0..20 {
        users.push(create_user(&env, &format!("c{i}@okta.local"), &format!("00uc{i}")).await);
    }
    let gid = create_group(&env, "crowd").await;
    let env_ref = &env;
    let tasks = users.iter().map(|u| {
        let body = patch(json!([
            {"op": "replace", "value": {"id": gid, "displayName": "crowd"}},
            {"op": "add", "path": "members", "value": [{"value": u}]}
        ]));
        let path = format!("/Groups/{gid}");
        async move { scim(env_ref, Method::PATCH, &path, Some(body)).await }
    });
    for r in futures_join_all(tasks).await {
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let r = scim(&env, Method::GET, &format!("/Groups/{gid}"), None).await;
    let mut got: Vec<String> = r.body["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["value"].as_str().unwrap().to_string())
        .collect();
    got.sort();
    users.sort();
    assert_eq!(got, users);
}

/// Run futures concurrently on this task (no extra crate).
async fn futures_join_all<F: std::future::Future>(
    futs: impl IntoIterator<Item = F>,
) -> Vec<F::Output> {
    let set: Vec<_> = futs.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = set.iter().map(|_| None).collect();
    let mut set: Vec<Option<std::pin::Pin<Box<F>>>> = set.into_iter().map(Some).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, slot) in set.iter_mut().enumerate() {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => {
                        out[i] = Some(v);
                        *slot = None;
                    }
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().map(|o| o.expect("completed")).collect()
}

/// `scim rotate-secret` replaces the stored secret: the old one stops
/// working at once, the new one works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_secret_replaces_the_old_one() {
    let env = env().scim(false, false, false).start().await;
    assert_eq!(scim(&env, Method::GET, "/Users", None).await.status, 200);
    let new = portcullis::scim::rotate_secret(&env.state().cfg)
        .await
        .unwrap();
    assert!(new.len() >= 43 && new != SCIM_SECRET);
    assert_error(&scim(&env, Method::GET, "/Users", None).await, 401);
    assert_eq!(
        scim_as(&env, &new, Method::GET, "/Users", None)
            .await
            .status,
        200
    );
}

/// SCIM requests are counted by resource, method and status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim_requests_are_counted() {
    let env = env().scim(false, false, false).start().await;
    scim(&env, Method::GET, "/Groups", None).await;
    scim_as(&env, "wrong-wrong-wrong-wrong", Method::GET, "/Users", None).await;
    let m = env.metrics().await;
    assert!(
        m.contains(
            r#"portcullis_scim_requests_total{method="GET",resource="Groups",status="200"}"#
        ),
        "{m}"
    );
    assert!(
        m.contains(r#"portcullis_scim_requests_total{method="GET",resource="Users",status="401"}"#)
    );
}
