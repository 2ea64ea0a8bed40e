//! SCIM to the letter (issue 18), over real sockets: writes to discovery
//! documents are 405 with `Allow`, `POST …/.search` on the root, `/Users`
//! and `/Groups`, PATCH `remove` drops attributes (and removing `active`
//! never reactivates a user), ServiceProviderConfig's claims checked
//! against behaviour, and our own RFC 7643/7644 check list, each check
//! named by its section.

use reqwest::Method;
use serde_json::{json, Value};

use crate::harness::*;
use crate::scim::*;

const SEARCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";
const SPC_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";

fn search(body: Value) -> Value {
    let mut b = json!({"schemas": [SEARCH_SCHEMA]});
    if let (Some(b), Some(extra)) = (b.as_object_mut(), body.as_object()) {
        b.extend(extra.clone());
    }
    b
}

/// The `userName`s (users) and `displayName`s (groups) of a list, in order.
fn names(r: &Resp) -> Vec<String> {
    r.body["Resources"]
        .as_array()
        .unwrap_or_else(|| panic!("{}", r.body))
        .iter()
        .map(|x| {
            x.get("userName")
                .or_else(|| x.get("displayName"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

/// A SCIM request with a raw body and extra headers.
async fn raw(
    env: &Env,
    method: Method,
    path: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = env
        .client()
        .request(
            method,
            env.url("auth.localhost", &format!("/scim/v2{path}")),
        )
        .header("authorization", format!("Bearer {SCIM_SECRET}"))
        .header("content-type", "application/scim+json")
        .body(body.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

/// RFC 7644 §3.12 / RFC 9110 §15.5.6: POST, PUT, PATCH and DELETE on the
/// discovery documents and anything below them are 405 with `Allow: GET,
/// HEAD` and a SCIM error, whatever the body (none, `{}`, not JSON) or the
/// query string carries; GET still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_documents_refuse_writes_with_405_and_allow() {
    let env = env().scim(false, false, false).start().await;
    for path in [
        "/ServiceProviderConfig",
        "/ResourceTypes",
        "/Schemas",
        "/ResourceTypes/User",
        "/Schemas/urn:ietf:params:scim:schemas:core:2.0:User",
        "/ServiceProviderConfig/anything",
        "/Schemas?filter=id%20eq%20%22x%22",
    ] {
        for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            for body in ["", "{}", "not json"] {
                let r = raw(&env, method.clone(), path, body, &[]).await;
                assert_eq!(r.status(), 405, "{method} {path} {body:?}");
                assert_eq!(r.headers()["allow"], "GET, HEAD", "{method} {path}");
                let v: Value = r.json().await.unwrap();
                assert_eq!(v["schemas"], json!([ERROR_SCHEMA]), "{v}");
                assert_eq!(v["status"], "405", "{v}");
                assert!(v["detail"].as_str().unwrap().contains("GET"), "{v}");
            }
        }
    }
    for path in ["/ServiceProviderConfig", "/ResourceTypes/User", "/Schemas"] {
        assert_eq!(
            scim(&env, Method::GET, path, None).await.status,
            200,
            "{path}"
        );
    }
    // The other paths name their own methods.
    let r = raw(&env, Method::GET, "/Users/.search", "", &[]).await;
    assert_eq!(
        (r.status().as_u16(), &r.headers()["allow"]),
        (405, &"POST".parse().unwrap())
    );
    let r = raw(&env, Method::POST, "/Users/some-id", "{}", &[]).await;
    assert_eq!(r.headers()["allow"], "GET, HEAD, PUT, PATCH, DELETE");
}

/// RFC 7644 §3.4.3: `POST /Users/.search` and `/Groups/.search` take
/// `filter`, `attributes`, `excludedAttributes`, `startIndex`, `count`
/// from the body (not the query string); `sortBy` is ignored, since
/// ServiceProviderConfig says sorting is not supported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_on_users_and_groups_filters_pages_and_projects() {
    let env = env().scim(false, false, false).start().await;
    for (u, x) in [
        ("alice@example.com", "00ua"),
        ("bob@example.com", "00ub"),
        ("carol@example.com", "00uc"),
    ] {
        create_user(&env, u, x).await;
    }
    create_group(&env, "Eng").await;
    create_group(&env, "Sales").await;

    let r = scim(
        &env,
        Method::POST,
        "/Users/.search?filter=userName%20eq%20%22bob%40example.com%22",
        Some(search(
            json!({"filter": "userName sw \"A\"", "attributes": ["userName"]}),
        )),
    )
    .await;
    assert_list(&r, 1);
    let alice = &r.body["Resources"][0];
    assert_eq!(alice["userName"], "alice@example.com");
    assert!(
        alice.get("emails").is_none() && alice.get("name").is_none(),
        "{alice}"
    );
    assert!(alice["id"].is_string() && alice["meta"].is_object());

    let r = scim(
        &env,
        Method::POST,
        "/Users/.search",
        Some(search(json!({"startIndex": 2, "count": 1}))),
    )
    .await;
    assert_list(&r, 3);
    assert_eq!(
        (&r.body["startIndex"], &r.body["itemsPerPage"]),
        (&json!(2), &json!(1))
    );
    assert_eq!(names(&r), ["bob@example.com"]);

    let r = scim(
        &env,
        Method::POST,
        "/Users/.search",
        Some(search(json!({"excludedAttributes": ["emails", "name"]}))),
    )
    .await;
    assert_list(&r, 3);
    for u in r.body["Resources"].as_array().unwrap() {
        assert!(
            u.get("emails").is_none() && u.get("name").is_none() && u["userName"].is_string(),
            "{u}"
        );
    }

    let unsorted = names(
        &scim(
            &env,
            Method::POST,
            "/Users/.search",
            Some(search(json!({}))),
        )
        .await,
    );
    let r = scim(
        &env,
        Method::POST,
        "/Users/.search",
        Some(search(
            json!({"sortBy": "userName", "sortOrder": "descending"}),
        )),
    )
    .await;
    assert_eq!(names(&r), unsorted, "sortBy is ignored");

    let r = scim(
        &env,
        Method::POST,
        "/Groups/.search",
        Some(search(
            json!({"filter": "displayName eq \"eng\"", "excludedAttributes": ["members"]}),
        )),
    )
    .await;
    assert_list(&r, 1);
    assert_eq!(names(&r), ["Eng"]);
    assert!(r.body["Resources"][0].get("members").is_none());

    for (body, scim_type) in [
        (json!({"filter": "title eq \"x\""}), "invalidFilter"),
        (json!({"filter": ""}), "invalidFilter"),
        (json!({"count": "ten"}), "invalidValue"),
        (json!({"schemas": ["urn:x"]}), "invalidSyntax"),
    ] {
        let r = scim(&env, Method::POST, "/Users/.search", Some(body.clone())).await;
        assert_error(&r, 400);
        assert_eq!(r.body["scimType"], scim_type, "{body}");
    }
}

/// RFC 7644 §3.4.3 and §3.4.2.1: a search on the root (`POST /.search`,
/// or `GET /`) spans users and groups, users first, paged as one list; a
/// filter attribute only one type has matches none of the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_search_spans_users_and_groups() {
    let env = env().scim(false, false, false).start().await;
    for (u, x) in [
        ("alice@example.com", "00ua"),
        ("bob@example.com", "00ub"),
        ("carol@example.com", "00uc"),
    ] {
        create_user(&env, u, x).await;
    }
    create_group(&env, "Eng").await;
    create_group(&env, "Sales").await;

    let r = scim(&env, Method::POST, "/.search", Some(search(json!({})))).await;
    assert_list(&r, 5);
    assert_eq!(
        names(&r),
        [
            "alice@example.com",
            "bob@example.com",
            "carol@example.com",
            "Eng",
            "Sales"
        ]
    );
    let types: Vec<&Value> = r.body["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| &x["meta"]["resourceType"])
        .collect();
    assert_eq!(
        types,
        [
            &json!("User"),
            &json!("User"),
            &json!("User"),
            &json!("Group"),
            &json!("Group")
        ]
    );

    let r = scim(
        &env,
        Method::POST,
        "/.search",
        Some(search(json!({"startIndex": 3, "count": 2}))),
    )
    .await;
    assert_list(&r, 5);
    assert_eq!(names(&r), ["carol@example.com", "Eng"]);
    let r = scim(
        &env,
        Method::POST,
        "/.search",
        Some(search(json!({"startIndex": 5, "count": 9}))),
    )
    .await;
    assert_eq!(names(&r), ["Sales"]);
    let r = scim(
        &env,
        Method::POST,
        "/.search",
        Some(search(json!({"count": 0}))),
    )
    .await;
    assert_list(&r, 5);
    assert_eq!(r.body["itemsPerPage"], 0);

    let r = scim(
        &env,
        Method::POST,
        "/.search",
        Some(search(
            json!({"filter": "displayName eq \"sales\" or userName eq \"BOB@example.com\""}),
        )),
    )
    .await;
    assert_list(&r, 2);
    assert_eq!(names(&r), ["bob@example.com", "Sales"]);
    let r = scim(
        &env,
        Method::POST,
        "/.search",
        Some(search(json!({"filter": "userName sw \"a\""}))),
    )
    .await;
    assert_eq!(names(&r), ["alice@example.com"]);
    let r = scim(
        &env,
        Method::GET,
        "/?filter=displayName%20sw%20%22E%22",
        None,
    )
    .await;
    assert_list(&r, 1);
    assert_eq!(names(&r), ["Eng"]);

    let r = scim(
        &env,
        Method::POST,
        "/.search",
        Some(search(json!({"filter": "nickName eq \"x\""}))),
    )
    .await;
    assert_error(&r, 400);
    assert_eq!(r.body["scimType"], "invalidFilter");
    let r = scim(
        &env,
        Method::POST,
        "/.search",
        Some(search(json!({"filter": "nosuch eq \"x\""}))),
    )
    .await;
    assert_error(&r, 400);
    assert_eq!(r.body["scimType"], "invalidFilter");
}

/// RFC 7644 §3.5.2.2: a PATCH `remove` of an attribute (whole, a
/// sub-attribute, filtered values) removes it: the response and a later
/// GET no longer show it; on a group too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_remove_drops_the_attribute_from_response_and_get() {
    let env = env().scim(false, false, false).start().await;
    let mut body = okta_user("dora@example.com", "00ud", "Dora", "Explorer");
    body["title"] = json!("Engineer");
    body["nickName"] = json!("D");
    body["emails"] = json!([
        {"value": "dora@example.com", "type": "work", "primary": true},
        {"value": "dora@home.example", "type": "home"}
    ]);
    let r = scim(&env, Method::POST, "/Users", Some(body)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let user = format!("/Users/{}", r.body["id"].as_str().unwrap());
    let r = scim(
        &env,
        Method::PATCH,
        &user,
        Some(patch(json!([
            {"op": "remove", "path": "title"},
            {"op": "Remove", "path": "NICKNAME"},
            {"op": "remove", "path": "name.givenName"},
            {"op": "remove", "path": "emails[type eq \"home\"]"},
        ]))),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    for v in [r.body, scim(&env, Method::GET, &user, None).await.body] {
        assert!(
            v.get("title").is_none() && v.get("nickName").is_none(),
            "{v}"
        );
        assert_eq!(v["name"], json!({"familyName": "Explorer"}), "{v}");
        assert_eq!(v["emails"].as_array().unwrap().len(), 1, "{v}");
        assert_eq!(v["userName"], "dora@example.com");
        assert_eq!(v["active"], true, "untouched");
    }

    let r = scim(
        &env,
        Method::POST,
        "/Groups",
        Some(json!({"schemas": [GROUP_SCHEMA], "displayName": "Ops", "externalId": "ext-1"})),
    )
    .await;
    let group = format!("/Groups/{}", r.body["id"].as_str().unwrap());
    let r = scim(
        &env,
        Method::PATCH,
        &group,
        Some(patch(json!([{"op": "remove", "path": "externalId"}]))),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.get("externalId").is_none(), "{}", r.body);
    let r = scim(&env, Method::GET, &group, None).await;
    assert!(r.body.get("externalId").is_none(), "{}", r.body);
}

/// The deprovisioned state is kept apart from `active`: a PATCH `remove`
/// of `active` on a deactivated user drops the attribute but never
/// reactivates it (its revoked session stays revoked, a new login is
/// refused); on an active user it does not deactivate either. Only an
/// explicit `active: true` reactivates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_active_never_reactivates_and_sessions_stay_revoked() {
    let env = env().scim(true, false, false).start().await;
    let id = create_user(&env, "bob@example.com", "00ubob").await;
    let user = format!("/Users/{id}");
    let (_browser, token) = login_token(&env, "00ubob").await;
    assert_eq!(with_token(&env, &token, "/before").await, 200);
    let r = scim(
        &env,
        Method::PATCH,
        &user,
        Some(patch(
            json!([{"op": "replace", "value": {"active": false}}]),
        )),
    )
    .await;
    assert_eq!((r.status.as_u16(), &r.body["active"]), (200, &json!(false)));
    assert_eq!(with_token(&env, &token, "/deactivated").await, 401);

    let r = scim(
        &env,
        Method::PATCH,
        &user,
        Some(patch(json!([{"op": "remove", "path": "active"}]))),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.get("active").is_none(), "{}", r.body);
    assert!(scim(&env, Method::GET, &user, None)
        .await
        .body
        .get("active")
        .is_none());
    assert_eq!(
        with_token(&env, &token, "/removed").await,
        401,
        "still revoked"
    );
    let end = fresh_login(&env, "00ubob").await;
    assert_eq!(
        end.response.status(),
        403,
        "still deprovisioned: {:?}",
        end.trail
    );

    // An active user whose `active` is removed stays active.
    let alice = create_user(&env, "alice@example.com", "00ualice").await;
    let r = scim(
        &env,
        Method::PATCH,
        &format!("/Users/{alice}"),
        Some(patch(json!([{"op": "remove", "path": "active"}]))),
    )
    .await;
    assert!(r.body.get("active").is_none(), "{}", r.body);
    let (_b, alice_token) = login_token(&env, "00ualice").await;
    assert_eq!(with_token(&env, &alice_token, "/x").await, 200);

    // Only an explicit `active: true` lets bob in again.
    let r = scim(
        &env,
        Method::PATCH,
        &user,
        Some(patch(
            json!([{"op": "add", "path": "active", "value": true}]),
        )),
    )
    .await;
    assert_eq!(r.body["active"], true, "{}", r.body);
    login_ok(
        &env,
        &env.browser(),
        &env.url("app.localhost", "/"),
        "00ubob",
    )
    .await;
}

/// Each ServiceProviderConfig claim (RFC 7643 §5) checked against what the
/// server does: patch, bulk, filter (with maxResults), sort, etag,
/// changePassword and the authentication scheme.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_provider_config_claims_match_behaviour() {
    let env = env().scim(false, false, false).start().await;
    let spc = scim(&env, Method::GET, "/ServiceProviderConfig", None)
        .await
        .body;
    assert_eq!(spc["schemas"], json!([SPC_SCHEMA]));
    let id = create_user(&env, "alice@example.com", "00ua").await;
    let user = format!("/Users/{id}");

    // patch
    let r = scim(
        &env,
        Method::PATCH,
        &user,
        Some(patch(
            json!([{"op": "replace", "path": "title", "value": "CTO"}]),
        )),
    )
    .await;
    if spc["patch"]["supported"] == true {
        assert_eq!((r.status.as_u16(), &r.body["title"]), (200, &json!("CTO")));
    } else {
        assert_eq!(r.status, 501);
    }

    // bulk
    let r = scim(
        &env,
        Method::POST,
        "/Bulk",
        Some(json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": []})),
    )
    .await;
    assert_eq!(spc["bulk"]["supported"], false);
    assert_eq!(
        (
            &spc["bulk"]["maxOperations"],
            &spc["bulk"]["maxPayloadSize"]
        ),
        (&json!(0), &json!(0))
    );
    assert_error(&r, 501);

    // filter, and maxResults: more than that many users exist, and no page
    // (GET or .search, whatever count asks) holds more.
    assert_eq!(spc["filter"]["supported"], true);
    let r = scim(
        &env,
        Method::GET,
        "/Users?filter=userName%20eq%20%22ALICE%40example.com%22",
        None,
    )
    .await;
    assert_list(&r, 1);
    let max = spc["filter"]["maxResults"].as_u64().unwrap();
    let idp = env.state().cfg.identity_providers[0].name.clone();
    for i in 0..max {
        let d = portcullis::scim::resource::user_from_body(
            &json!({"userName": format!("u{i}@example.com")}),
        )
        .unwrap();
        env.state().store.scim_create_user(&idp, &d).await.unwrap();
    }
    let asked = max + 5;
    let r = scim(&env, Method::GET, &format!("/Users?count={asked}"), None).await;
    assert_list(&r, max + 1);
    assert_eq!(r.body["itemsPerPage"], json!(max));
    let r = scim(
        &env,
        Method::POST,
        "/.search",
        Some(search(json!({"count": asked}))),
    )
    .await;
    assert_list(&r, max + 1);
    assert_eq!(r.body["itemsPerPage"], json!(max));

    // sort
    let page = |q: &'static str| {
        let env = &env;
        async move { names(&scim(env, Method::GET, &format!("/Users?count=20{q}"), None).await) }
    };
    let plain = page("").await;
    let sorted = page("&sortBy=userName&sortOrder=descending").await;
    if spc["sort"]["supported"] == true {
        let mut want = plain.clone();
        want.sort();
        want.reverse();
        assert_eq!(sorted, want);
    } else {
        assert_eq!(
            sorted, plain,
            "sortBy is ignored when sorting is not supported"
        );
    }

    // etag
    let r = scim(&env, Method::GET, &user, None).await;
    let version = r.body["meta"]["version"].as_str().unwrap().to_string();
    if spc["etag"]["supported"] == true {
        assert_eq!(r.headers["etag"], version.as_str());
        let body = patch(json!([{"op": "replace", "path": "title", "value": "CEO"}])).to_string();
        let stale = raw(
            &env,
            Method::PATCH,
            &user,
            &body,
            &[("if-match", "W/\"0\"")],
        )
        .await;
        assert_eq!(stale.status(), 412);
        let fresh = raw(
            &env,
            Method::PATCH,
            &user,
            &body,
            &[("if-match", version.as_str())],
        )
        .await;
        assert_eq!(fresh.status(), 200);
    } else {
        assert!(r.headers.get("etag").is_none());
    }

    // changePassword: not supported, so a password change changes nothing.
    assert_eq!(spc["changePassword"]["supported"], false);
    let before = scim(&env, Method::GET, &user, None).await.body;
    let r = scim(
        &env,
        Method::PATCH,
        &user,
        Some(patch(
            json!([{"op": "replace", "path": "password", "value": "n3w-Secret!"}]),
        )),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.get("password").is_none());
    assert_eq!(
        r.body["meta"]["version"], before["meta"]["version"],
        "nothing changed"
    );

    // authenticationSchemes: a bearer token, nothing else.
    assert_eq!(spc["authenticationSchemes"][0]["type"], "oauthbearertoken");
    let r = env
        .client()
        .get(env.url("auth.localhost", "/scim/v2/Users"))
        .basic_auth("okta", Some(SCIM_SECRET))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

/// Failing checks, each named by its RFC section.
#[derive(Default)]
struct Checks {
    run: usize,
    failed: Vec<String>,
}

impl Checks {
    fn check(&mut self, section: &str, what: &str, ok: bool, seen: impl std::fmt::Display) {
        self.run += 1;
        if !ok {
            self.failed.push(format!("{section} {what}: got {seen}"));
        }
    }

    fn status(&mut self, section: &str, what: &str, r: &Resp, want: u16) {
        self.check(
            section,
            what,
            r.status == want,
            format_args!("{} {}", r.status, r.body),
        );
    }
}

fn is_error(r: &Resp, status: u16) -> bool {
    r.status == status
        && r.body["schemas"] == json!([ERROR_SCHEMA])
        && r.body["status"] == json!(status.to_string())
        && r.body["detail"].as_str().is_some_and(|d| !d.is_empty())
}

/// Our RFC 7643/7644 check list against the real proxy; every failing
/// check is reported with its section.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc_7643_7644_check_list_passes() {
    let env = env().scim(false, false, false).start().await;
    let mut c = Checks::default();

    // RFC 7644 §2: authentication.
    let r = scim_as(&env, "wrong-secret-0123456789", Method::GET, "/Users", None).await;
    c.check(
        "RFC 7644 §2",
        "a wrong bearer token is 401 with a SCIM error",
        is_error(&r, 401),
        &r.body,
    );

    // RFC 7644 §3.3 / RFC 7643 §3.1: creation.
    let mut body = okta_user("Erin@Example.com", "00ue", "Erin", "Doe");
    body["id"] = json!("client-chosen");
    let r = scim(&env, Method::POST, "/Users", Some(body.clone())).await;
    c.status("RFC 7644 §3.3", "POST /Users is 201", &r, 201);
    let id = r.body["id"].as_str().unwrap_or_default().to_string();
    c.check(
        "RFC 7643 §3.1",
        "id is assigned by the server",
        !id.is_empty() && id != "client-chosen",
        &r.body["id"],
    );
    let loc = r
        .headers
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    c.check(
        "RFC 7644 §3.3",
        "Location equals meta.location",
        !loc.is_empty() && r.body["meta"]["location"] == json!(loc),
        &loc,
    );
    c.check(
        "RFC 7644 §3.3",
        "ETag on the created resource",
        r.headers.get("etag").is_some(),
        format_args!("{:?}", r.headers),
    );
    let meta = &r.body["meta"];
    c.check(
        "RFC 7643 §3.1",
        "meta has resourceType, created, lastModified, location, version",
        meta["resourceType"] == "User"
            && ["created", "lastModified", "location", "version"]
                .iter()
                .all(|k| meta[*k].is_string()),
        meta,
    );
    c.check(
        "RFC 7643 §4.1",
        "password is never returned",
        r.body.get("password").is_none(),
        &r.body,
    );
    c.check(
        "RFC 7643 §3",
        "schemas lists the core User schema",
        r.body["schemas"]
            .as_array()
            .is_some_and(|s| s.contains(&json!(USER_SCHEMA))),
        &r.body["schemas"],
    );
    let user = format!("/Users/{id}");
    let mut dup = body.clone();
    dup["userName"] = json!("erin@EXAMPLE.com");
    let r = scim(&env, Method::POST, "/Users", Some(dup)).await;
    c.check(
        "RFC 7644 §3.3 / RFC 7643 §4.1.1",
        "a userName differing in case is 409 uniqueness",
        is_error(&r, 409) && r.body["scimType"] == "uniqueness",
        &r.body,
    );
    let r = scim(
        &env,
        Method::POST,
        "/Users",
        Some(json!({"schemas": [USER_SCHEMA]})),
    )
    .await;
    c.check(
        "RFC 7644 §3.12",
        "a missing required attribute is 400 invalidValue",
        is_error(&r, 400) && r.body["scimType"] == "invalidValue",
        &r.body,
    );
    let r = raw(&env, Method::POST, "/Users", "{not json", &[]).await;
    c.check(
        "RFC 7644 §3.12",
        "a body that is not JSON is 400",
        r.status() == 400,
        r.status(),
    );

    // RFC 7644 §3.4.1: retrieval.
    let r = scim(&env, Method::GET, &user, None).await;
    c.status("RFC 7644 §3.4.1", "GET /Users/{id} is 200", &r, 200);
    c.check(
        "RFC 7644 §3.14",
        "ETag equals meta.version",
        r.headers.get("etag").and_then(|v| v.to_str().ok()) == r.body["meta"]["version"].as_str(),
        &r.body["meta"],
    );
    let r = scim(&env, Method::GET, "/Users/no-such-id", None).await;
    c.check(
        "RFC 7644 §3.12",
        "an unknown id is 404 with a SCIM error",
        is_error(&r, 404),
        &r.body,
    );
    let r = scim(
        &env,
        Method::GET,
        &format!("{user}?attributes=userName"),
        None,
    )
    .await;
    c.check(
        "RFC 7644 §3.9",
        "attributes= returns those plus id, schemas, meta",
        r.body["userName"].is_string()
            && r.body.get("emails").is_none()
            && r.body["id"].is_string(),
        &r.body,
    );
    let r = scim(
        &env,
        Method::GET,
        &format!("{user}?excludedAttributes=emails"),
        None,
    )
    .await;
    c.check(
        "RFC 7644 §3.9",
        "excludedAttributes= drops them",
        r.body.get("emails").is_none() && r.body["userName"].is_string(),
        &r.body,
    );

    // RFC 7644 §3.4.2: lists.
    let gid = create_group(&env, "Readers").await;
    let r = scim(&env, Method::GET, "/Users", None).await;
    c.check(
        "RFC 7644 §3.4.2",
        "a list is a ListResponse with integer counts",
        r.body["schemas"] == json!([LIST_SCHEMA])
            && r.body["totalResults"] == 1
            && r.body["itemsPerPage"] == 1
            && r.body["startIndex"] == 1,
        &r.body,
    );
    let r = scim(
        &env,
        Method::GET,
        "/Users?filter=userName%20eq%20%22ERIN%40example.com%22",
        None,
    )
    .await;
    c.check(
        "RFC 7644 §3.4.2.2",
        "userName eq is case-insensitive (caseExact false)",
        r.body["totalResults"] == 1,
        &r.body,
    );
    let r = scim(
        &env,
        Method::GET,
        "/Users?filter=userName%20eq%20%22nobody%22",
        None,
    )
    .await;
    c.check(
        "RFC 7644 §3.4.2",
        "no match is 200 with totalResults 0",
        r.status == 200 && r.body["totalResults"] == 0 && r.body["Resources"] == json!([]),
        &r.body,
    );
    let r = scim(
        &env,
        Method::GET,
        "/Users?filter=userName%20xx%20%22a%22",
        None,
    )
    .await;
    c.check(
        "RFC 7644 §3.4.2.2",
        "a filter that does not parse is 400 invalidFilter",
        is_error(&r, 400) && r.body["scimType"] == "invalidFilter",
        &r.body,
    );
    let r = scim(&env, Method::GET, "/Users?startIndex=0&count=-1", None).await;
    c.check(
        "RFC 7644 §3.4.2.4",
        "startIndex < 1 is 1, a negative count is 0",
        r.body["startIndex"] == 1 && r.body["itemsPerPage"] == 0 && r.body["totalResults"] == 1,
        &r.body,
    );
    let r = scim(&env, Method::GET, "/Users?startIndex=2", None).await;
    c.check(
        "RFC 7644 §3.4.2.4",
        "a startIndex past the end is an empty page",
        r.body["itemsPerPage"] == 0 && r.body["totalResults"] == 1,
        &r.body,
    );
    let r = scim(&env, Method::GET, "/?count=10", None).await;
    c.check(
        "RFC 7644 §3.4.2.1",
        "a query on the root spans users and groups",
        r.body["totalResults"] == 2,
        &r.body,
    );
    let r = scim(
        &env,
        Method::GET,
        "/Groups?filter=displayName%20eq%20%22readers%22",
        None,
    )
    .await;
    c.check(
        "RFC 7644 §3.4.2.2",
        "groups filter by displayName",
        r.body["totalResults"] == 1,
        &r.body,
    );

    // RFC 7644 §3.4.3: searches.
    let r = scim(
        &env,
        Method::POST,
        "/.search",
        Some(search(
            json!({"filter": "displayName eq \"Readers\" or userName eq \"erin@example.com\""}),
        )),
    )
    .await;
    c.check(
        "RFC 7644 §3.4.3",
        "POST /.search spans both types",
        r.status == 200 && r.body["totalResults"] == 2,
        &r.body,
    );
    let r = scim(
        &env,
        Method::POST,
        "/Users/.search",
        Some(search(json!({"attributes": ["userName"], "count": 1}))),
    )
    .await;
    c.check(
        "RFC 7644 §3.4.3",
        "POST /Users/.search with attributes and count",
        r.status == 200
            && r.body["itemsPerPage"] == 1
            && r.body["Resources"][0].get("emails").is_none(),
        &r.body,
    );
    let r = scim(
        &env,
        Method::POST,
        "/Groups/.search",
        Some(search(json!({"filter": "displayName sw \"Read\""}))),
    )
    .await;
    c.check(
        "RFC 7644 §3.4.3",
        "POST /Groups/.search with a filter",
        r.status == 200 && r.body["totalResults"] == 1,
        &r.body,
    );

    // RFC 7644 §3.5.1: PUT replaces.
    let mut put = body.clone();
    put["title"] = json!("Boss");
    put.as_object_mut().unwrap().remove("locale");
    let r = scim(&env, Method::PUT, &user, Some(put)).await;
    c.check(
        "RFC 7644 §3.5.1",
        "PUT replaces: new attributes set, left-out ones gone",
        r.status == 200 && r.body["title"] == "Boss" && r.body.get("locale").is_none(),
        &r.body,
    );
    let r = scim(
        &env,
        Method::PUT,
        &user,
        Some(json!({"userName": "erin@example.com", "id": "other", "title": null})),
    )
    .await;
    c.check(
        "RFC 7643 §2.5 / RFC 7644 §3.5.1",
        "PUT ignores a read-only id; null unassigns",
        r.body["id"] == json!(id) && r.body.get("title").is_none(),
        &r.body,
    );

    // RFC 7644 §3.5.2: PATCH.
    let r = scim(
        &env,
        Method::PATCH,
        &user,
        Some(patch(
            json!([{"op": "add", "path": "nickName", "value": "E"}]),
        )),
    )
    .await;
    c.check(
        "RFC 7644 §3.5.2.1",
        "add sets an attribute",
        r.status == 200 && r.body["nickName"] == "E",
        &r.body,
    );
    let r = scim(
        &env,
        Method::PATCH,
        &user,
        Some(patch(
            json!([{"op": "replace", "value": {"displayName": "Erin D"}}]),
        )),
    )
    .await;
    c.check(
        "RFC 7644 §3.5.2.3",
        "a pathless replace sets each key",
        r.body["displayName"] == "Erin D",
        &r.body,
    );
    let r = scim(
        &env,
        Method::PATCH,
        &user,
        Some(patch(json!([{"op": "remove", "path": "nickName"}]))),
    )
    .await;
    let later = scim(&env, Method::GET, &user, None).await;
    c.check(
        "RFC 7644 §3.5.2.2",
        "remove removes the attribute (response and GET)",
        r.body.get("nickName").is_none() && later.body.get("nickName").is_none(),
        &r.body,
    );
    let r = scim(
        &env,
        Method::PATCH,
        &user,
        Some(patch(json!([{"op": "remove"}]))),
    )
    .await;
    c.check(
        "RFC 7644 §3.5.2.2",
        "remove without a path is 400 noTarget",
        is_error(&r, 400) && r.body["scimType"] == "noTarget",
        &r.body,
    );
    let r = scim(
        &env,
        Method::PATCH,
        &user,
        Some(patch(
            json!([{"op": "replace", "path": "groups", "value": []}]),
        )),
    )
    .await;
    c.check(
        "RFC 7643 §4.1.2",
        "groups on a user is read-only: 400 mutability",
        is_error(&r, 400) && r.body["scimType"] == "mutability",
        &r.body,
    );
    let r = scim(
        &env,
        Method::PATCH,
        &user,
        Some(patch(
            json!([{"op": "replace", "path": "emails[type eq \"nope\"].value", "value": "x@y"}]),
        )),
    )
    .await;
    c.check(
        "RFC 7644 §3.5.2.3",
        "a value filter matching nothing is 400 noTarget",
        is_error(&r, 400) && r.body["scimType"] == "noTarget",
        &r.body,
    );
    let r = scim(
        &env,
        Method::PATCH,
        &user,
        Some(patch(
            json!([{"op": "replace", "path": "name[", "value": 1}]),
        )),
    )
    .await;
    c.check(
        "RFC 7644 §3.5.2",
        "a path that does not parse is 400 invalidPath",
        is_error(&r, 400) && r.body["scimType"] == "invalidPath",
        &r.body,
    );
    let r = scim(
        &env,
        Method::PATCH,
        &format!("/Groups/{gid}"),
        Some(patch(
            json!([{"op": "add", "path": "members", "value": [{"value": id}]}]),
        )),
    )
    .await;
    c.check(
        "RFC 7643 §4.2",
        "group members carry value and type",
        r.status == 200
            && r.body["members"][0]["value"] == json!(id)
            && r.body["members"][0]["type"] == "User",
        &r.body,
    );
    let r = scim(&env, Method::GET, &user, None).await;
    c.check(
        "RFC 7643 §4.1.2",
        "a user lists its groups",
        r.body["groups"][0]["value"] == json!(gid),
        &r.body["groups"],
    );

    // RFC 7644 §3.14: versions.
    let r = raw(
        &env,
        Method::PUT,
        &user,
        &json!({"userName": "erin@example.com"}).to_string(),
        &[("if-match", "W/\"999\"")],
    )
    .await;
    c.check(
        "RFC 7644 §3.14",
        "If-Match naming another version is 412",
        r.status() == 412,
        r.status(),
    );

    // RFC 7644 §3.7, §3.12: bulk is not supported.
    let r = scim(&env, Method::POST, "/Bulk", Some(json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], "Operations": []}))).await;
    c.check(
        "RFC 7644 §3.7 / §3.12",
        "Bulk, not supported, is 501",
        is_error(&r, 501),
        &r.body,
    );

    // RFC 7644 §4: discovery.
    let r = scim(&env, Method::GET, "/ServiceProviderConfig", None).await;
    c.check(
        "RFC 7644 §4 / RFC 7643 §5",
        "ServiceProviderConfig has its schema",
        r.body["schemas"] == json!([SPC_SCHEMA]),
        &r.body,
    );
    let r = scim(&env, Method::GET, "/ResourceTypes", None).await;
    c.check(
        "RFC 7644 §4 / RFC 7643 §6",
        "ResourceTypes lists User and Group",
        r.body["totalResults"] == 2,
        &r.body,
    );
    let r = scim(&env, Method::GET, "/Schemas", None).await;
    let ids: Vec<&str> = r.body["Resources"]
        .as_array()
        .map(|a| a.iter().filter_map(|s| s["id"].as_str()).collect())
        .unwrap_or_default();
    c.check(
        "RFC 7644 §4 / RFC 7643 §7",
        "Schemas describe User and Group",
        ids.contains(&USER_SCHEMA) && ids.contains(&GROUP_SCHEMA),
        format_args!("{ids:?}"),
    );
    let r = scim(&env, Method::GET, "/Schemas?filter=id%20eq%20%22x%22", None).await;
    c.check(
        "RFC 7644 §4",
        "a filtered discovery request is 403",
        is_error(&r, 403),
        &r.body,
    );
    for path in ["/ServiceProviderConfig", "/ResourceTypes", "/Schemas"] {
        let r = raw(&env, Method::PUT, path, "{}", &[]).await;
        let allow = r
            .headers()
            .get("allow")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        c.check(
            "RFC 7644 §3.12",
            &format!("PUT {path} is 405 with Allow"),
            r.status() == 405 && allow == "GET, HEAD",
            format_args!("{} {allow:?}", r.status()),
        );
    }

    // RFC 7644 §3.8: media type.
    let r = scim(&env, Method::GET, "/Groups", None).await;
    c.check(
        "RFC 7644 §3.8",
        "responses are application/scim+json",
        r.headers["content-type"] == "application/scim+json",
        format_args!("{:?}", r.headers["content-type"]),
    );

    // RFC 7644 §3.6: deletion.
    let r = scim(&env, Method::DELETE, &format!("/Groups/{gid}"), None).await;
    c.status("RFC 7644 §3.6", "DELETE is 204", &r, 204);
    let r = scim(&env, Method::DELETE, &user, None).await;
    c.status("RFC 7644 §3.6", "DELETE /Users/{id} is 204", &r, 204);
    let r = scim(&env, Method::GET, &user, None).await;
    c.check(
        "RFC 7644 §3.6",
        "a deleted resource is 404",
        is_error(&r, 404),
        &r.body,
    );
    let r = scim(&env, Method::DELETE, &user, None).await;
    c.check(
        "RFC 7644 §3.6",
        "deleting it again is 404",
        is_error(&r, 404),
        &r.body,
    );

    eprintln!("SCIM RFC checks: {} run, {} failed", c.run, c.failed.len());
    assert!(
        c.failed.is_empty(),
        "{} of {} RFC checks failed:\n{}",
        c.failed.len(),
        c.run,
        c.failed.join("\n")
    );
}
