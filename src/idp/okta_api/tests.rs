//! The groups API client: Link parsing, paging against the dev IdP, and
//! hostile servers (foreign next links, endless paging).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;
use crate::idp::dev::{self, DevIdp, DevIdpOptions, DevUser};

#[test]
fn link_header_with_self_and_next_is_split() {
    let links = parse_link_header(
        r#"<https://x.okta.com/a?limit=2>; rel="self", <https://x.okta.com/a?after=g1&limit=2>; rel="next""#,
    )
    .unwrap();
    assert_eq!(links.len(), 2);
    assert_eq!(links[1].0, "https://x.okta.com/a?after=g1&limit=2");
    assert!(!is_rel_next(links[0].1));
    assert!(is_rel_next(links[1].1));
}

#[test]
fn rel_next_is_found_among_several_relation_types() {
    assert!(is_rel_next(r#"; rel="prefetch next""#));
    assert!(is_rel_next("; rel=next"));
    assert!(!is_rel_next(r#"; title="next"; rel="prev""#));
}

#[test]
fn link_header_without_angle_brackets_is_an_error() {
    assert!(parse_link_header("https://x.okta.com/a; rel=next").is_err());
}

async fn dev_idp() -> DevIdp {
    let opts = DevIdpOptions::new("127.0.0.1:0".parse().unwrap(), vec![]);
    dev::start(opts).await.unwrap()
}

fn client() -> reqwest::Client {
    crate::idp::http::client()
}

#[tokio::test]
async fn fetches_all_151_groups_of_the_demo_user() {
    let idp = dev_idp().await;
    let groups = fetch_user_groups(&client(), &idp.okta_account(), dev::DEV_API_TOKEN, "00upat")
        .await
        .unwrap();
    assert_eq!(groups.len(), 151);
    assert_eq!(groups[1], "team-001");
}

#[tokio::test]
async fn follows_next_links_across_pages() {
    let idp = dev_idp().await;
    let mut user = DevUser::new("00ubig", "big@example.com", "Big");
    user.groups = (0..450).map(|i| format!("g{i}")).collect();
    idp.add_user(user.clone());
    let groups = fetch_user_groups(&client(), &idp.okta_account(), dev::DEV_API_TOKEN, "00ubig")
        .await
        .unwrap();
    assert_eq!(groups, user.groups);
    assert_eq!(idp.groups_api_requests(), 3);
}

#[tokio::test]
async fn wrong_api_token_is_a_groups_api_error() {
    let idp = dev_idp().await;
    let err = fetch_user_groups(&client(), &idp.okta_account(), "nope", "00ualice")
        .await
        .unwrap_err();
    assert!(
        matches!(err, IdpError::GroupsApi(ref m) if m.contains("401")),
        "{err}"
    );
}

#[tokio::test]
async fn unknown_user_is_a_groups_api_error() {
    let idp = dev_idp().await;
    let err = fetch_user_groups(
        &client(),
        &idp.okta_account(),
        dev::DEV_API_TOKEN,
        "00unobody",
    )
    .await
    .unwrap_err();
    assert!(matches!(err, IdpError::GroupsApi(_)));
}

/// A server answering every request with one group and a `Link` header
/// made by `next(n)` (n = requests so far); counts requests.
async fn fake_okta(
    next: impl Fn(usize, &str) -> Option<String> + Send + 'static,
) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let (count, me) = (hits.clone(), base.clone());
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let n = count.fetch_add(1, Ordering::SeqCst) + 1;
            let mut buf = vec![0u8; 8192];
            let mut read = 0;
            while !buf[..read].windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut buf[read..]).await {
                    Ok(0) | Err(_) => break,
                    Ok(k) => read += k,
                }
            }
            let body = r#"[{"id":"00g1","profile":{"name":"g"}}]"#;
            let link = next(n, &me)
                .map(|l| format!("Link: <{l}>; rel=\"next\"\r\n"))
                .unwrap_or_default();
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{link}Connection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(resp.as_bytes()).await;
        }
    });
    (base, hits)
}

#[tokio::test]
async fn next_link_to_another_host_is_not_followed() {
    let (other, other_hits) = fake_okta(|_, _| None).await;
    let (okta, _) = fake_okta(|_, _| None).await;
    // This one points its next link at the other server.
    let (evil, _) =
        fake_okta(move |_, _| Some(format!("{other}/api/v1/users/u/groups?after=x"))).await;
    let err = fetch_user_groups(&client(), &evil, "t", "u")
        .await
        .unwrap_err();
    assert!(
        matches!(err, IdpError::GroupsApi(ref m) if m.contains("origin")),
        "{err}"
    );
    assert_eq!(
        other_hits.load(Ordering::SeqCst),
        0,
        "the foreign host was contacted"
    );
    // Sanity: the same fake without a foreign link is fine.
    assert_eq!(
        fetch_user_groups(&client(), &okta, "t", "u").await.unwrap(),
        ["g"]
    );
}

#[tokio::test]
async fn endless_paging_stops_with_an_error() {
    let (okta, hits) =
        fake_okta(|n, me| Some(format!("{me}/api/v1/users/u/groups?after=page{n}"))).await;
    let err = fetch_user_groups(&client(), &okta, "t", "u")
        .await
        .unwrap_err();
    assert!(
        matches!(err, IdpError::GroupsApi(ref m) if m.contains("pages")),
        "{err}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), MAX_PAGES);
}

#[tokio::test]
async fn next_link_looping_back_is_an_error() {
    let (okta, _) = fake_okta(|_, me| Some(format!("{me}/api/v1/users/u/groups?limit=200"))).await;
    let err = fetch_user_groups(&client(), &okta, "t", "u")
        .await
        .unwrap_err();
    assert!(
        matches!(err, IdpError::GroupsApi(ref m) if m.contains("loops")),
        "{err}"
    );
}
