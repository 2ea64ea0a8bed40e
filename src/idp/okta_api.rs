//! Okta's groups API: every group of a user, for users whose ID token cannot
//! carry them all (Okta's groups claim stops at 100).
//!
//! `GET {okta_account}/api/v1/users/{id}/groups?limit=200` with
//! `Authorization: SSWS <api token>`, following `Link: <…>; rel="next"` only
//! while it stays on the origin of `okta_account`. A link to another origin,
//! too many pages or any malformed answer fails the whole fetch: a partial
//! group list could dodge a `block` policy on a group from a later page.

use openidconnect::reqwest;
use percent_encoding::{utf8_percent_encode, AsciiSet, CONTROLS};
use serde::Deserialize;
use url::Url;

use super::http::{read_body, HttpError};
use super::IdpError;

/// Groups per page (Okta's maximum for this endpoint).
const PAGE_SIZE: u32 = 200;
/// Pages followed at most: 10 000 groups. More is an error, not a cut-off.
pub const MAX_PAGES: usize = 50;

/// Bytes escaped in the user-id path segment.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'\\')
    .add(b'`')
    .add(b'{')
    .add(b'}');

#[derive(Deserialize)]
struct Group {
    profile: GroupProfile,
}

#[derive(Deserialize)]
struct GroupProfile {
    name: String,
}

/// Fetch the display names of all groups of `user_id` (the ID token's `sub`).
pub async fn fetch_user_groups(
    http: &reqwest::Client,
    okta_account: &str,
    api_token: &str,
    user_id: &str,
) -> Result<Vec<String>, IdpError> {
    if user_id.is_empty() {
        return Err(IdpError::GroupsApi("empty user id".into()));
    }
    let base = Url::parse(okta_account)
        .map_err(|e| IdpError::GroupsApi(format!("invalid okta_account url: {e}")))?;
    let origin = base.origin();
    let first = format!(
        "{}/api/v1/users/{}/groups?limit={PAGE_SIZE}",
        okta_account.trim_end_matches('/'),
        utf8_percent_encode(user_id, SEGMENT)
    );
    let mut next = Some(
        Url::parse(&first).map_err(|e| IdpError::GroupsApi(format!("invalid groups url: {e}")))?,
    );
    let mut seen: Vec<Url> = Vec::new();
    let mut groups = Vec::new();
    while let Some(url) = next.take() {
        if seen.len() == MAX_PAGES {
            return Err(IdpError::GroupsApi(format!(
                "more than {MAX_PAGES} pages of groups"
            )));
        }
        if seen.contains(&url) {
            return Err(IdpError::GroupsApi(
                "paging loops back to a seen page".into(),
            ));
        }
        let resp = http
            .get(url.clone())
            .header(http::header::AUTHORIZATION, format!("SSWS {api_token}"))
            .header(http::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| IdpError::GroupsApi(format!("request failed: {e}")))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(IdpError::GroupsApi(match status.as_u16() {
                401 | 403 => format!("http status {status} (check api_token)"),
                404 => format!("http status {status} (unknown user)"),
                _ => format!("http status {status}"),
            }));
        }
        next = next_link(resp.headers(), &url)?;
        if let Some(link) = &next {
            if link.origin() != origin {
                return Err(IdpError::GroupsApi(format!(
                    "next page link leaves the okta_account origin ({})",
                    link.origin().ascii_serialization()
                )));
            }
        }
        let body = read_body(resp).await.map_err(|e| match e {
            HttpError::TooLarge => IdpError::GroupsApi("groups page too large".into()),
            other => IdpError::GroupsApi(other.to_string()),
        })?;
        let page: Vec<Group> = serde_json::from_slice(&body)
            .map_err(|e| IdpError::GroupsApi(format!("malformed groups page: {e}")))?;
        groups.extend(page.into_iter().map(|g| g.profile.name));
        seen.push(url);
    }
    Ok(groups)
}

/// The `rel="next"` target among the `Link` headers, resolved against the
/// page's URL. Several headers and comma-separated links are both accepted.
fn next_link(headers: &http::HeaderMap, page: &Url) -> Result<Option<Url>, IdpError> {
    for value in headers.get_all(http::header::LINK) {
        let value = value
            .to_str()
            .map_err(|_| IdpError::GroupsApi("non-ascii link header".into()))?;
        for (target, params) in parse_link_header(value)? {
            if is_rel_next(params) {
                return page
                    .join(target)
                    .map(Some)
                    .map_err(|e| IdpError::GroupsApi(format!("invalid next link: {e}")));
            }
        }
    }
    Ok(None)
}

/// Split one `Link` header value into `(target, params)` pairs
/// (RFC 8288: `<uri>; param=value; …, <uri>; …`).
fn parse_link_header(value: &str) -> Result<Vec<(&str, &str)>, IdpError> {
    let bad = || IdpError::GroupsApi("malformed link header".into());
    let mut out = Vec::new();
    let mut rest = value.trim_start();
    while !rest.is_empty() {
        let inner = rest.strip_prefix('<').ok_or_else(bad)?;
        let close = inner.find('>').ok_or_else(bad)?;
        let target = &inner[..close];
        let after = &inner[close + 1..];
        // Params run to the next comma outside quotes.
        let mut in_quotes = false;
        let mut end = after.len();
        for (i, c) in after.char_indices() {
            match c {
                '"' => in_quotes = !in_quotes,
                ',' if !in_quotes => {
                    end = i;
                    break;
                }
                _ => {}
            }
        }
        out.push((target, &after[..end]));
        rest = after[end..].trim_start_matches(',').trim_start();
    }
    Ok(out)
}

/// True when the link params carry `rel="next"` (or `rel=next`, or `next`
/// among several space-separated relation types).
fn is_rel_next(params: &str) -> bool {
    params.split(';').any(|p| {
        let Some((name, value)) = p.split_once('=') else {
            return false;
        };
        name.trim().eq_ignore_ascii_case("rel")
            && value
                .trim()
                .trim_matches('"')
                .split_ascii_whitespace()
                .any(|r| r.eq_ignore_ascii_case("next"))
    })
}

#[cfg(test)]
mod tests;
