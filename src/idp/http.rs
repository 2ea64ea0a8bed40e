//! The HTTP client shared by the OIDC client and the Okta API: openidconnect's
//! re-exported reqwest with redirects off (openidconnect's advice against
//! SSRF) and bounded time and body size, plus the adapter that lets
//! openidconnect's request builders use it.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use openidconnect::reqwest;
use openidconnect::{AsyncHttpClient, HttpRequest, HttpResponse};

/// Whole-request timeout for every IdP call.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Connect timeout, shorter so that an unreachable IdP fails fast.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest response body read from an IdP (discovery, JWKS, token, a page
/// of 200 groups): anything bigger is an error, not a memory spike.
pub(crate) const MAX_BODY: usize = 4 * 1024 * 1024;

/// Build the client: no redirects, timeouts, rustls.
pub(crate) fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(REQUEST_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .user_agent(concat!("portcullis/", env!("CARGO_PKG_VERSION")))
        .build()
        // Only fails when the TLS backend cannot initialise, which is a
        // broken build rather than a runtime condition.
        .expect("the http client builds")
}

/// A failed HTTP exchange with the IdP, as openidconnect sees it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum HttpError {
    #[error("request failed: {0}")]
    Transport(#[source] reqwest::Error),
    /// A non-success status whose body is not an OAuth error document: 5xx,
    /// an HTML error page, an empty 401.
    #[error("unexpected http status {0}")]
    Status(u16),
    #[error("response body larger than {MAX_BODY} bytes")]
    TooLarge,
}

/// Read a response body, refusing more than [`MAX_BODY`] bytes.
pub(crate) async fn read_body(mut resp: reqwest::Response) -> Result<Vec<u8>, HttpError> {
    if resp.content_length().is_some_and(|n| n > MAX_BODY as u64) {
        return Err(HttpError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(HttpError::Transport)? {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(HttpError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Send an openidconnect request with `http`.
///
/// Unlike openidconnect's own reqwest adapter, a non-success response whose
/// body is not a JSON object with an `error` member becomes
/// [`HttpError::Status`]. openidconnect would report it as a parse error,
/// indistinguishable from a malformed *successful* token response; this way
/// a parse error always means "the IdP said 200 and sent garbage".
pub(crate) async fn send(
    http: &reqwest::Client,
    request: HttpRequest,
) -> Result<HttpResponse, HttpError> {
    let request = reqwest::Request::try_from(request).map_err(HttpError::Transport)?;
    let resp = http.execute(request).await.map_err(HttpError::Transport)?;
    let status = resp.status();
    let version = resp.version();
    let headers = resp.headers().clone();
    let body = read_body(resp).await?;
    if !status.is_success() && (status.is_server_error() || !is_oauth_error(&body)) {
        return Err(HttpError::Status(status.as_u16()));
    }
    let mut out = HttpResponse::new(body);
    *out.status_mut() = status;
    *out.version_mut() = version;
    *out.headers_mut() = headers;
    Ok(out)
}

/// [`send`] as an openidconnect HTTP client. It owns its (cheaply cloned)
/// client: a borrowed one makes openidconnect's futures lose `Send` to a
/// higher-ranked lifetime error, and the proxy needs `Send` futures.
pub(crate) struct OidcHttp(pub reqwest::Client);

impl<'c> AsyncHttpClient<'c> for OidcHttp {
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(send(&self.0, request))
    }
}

/// True when `body` is a JSON object carrying a string `error` member.
fn is_oauth_error(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error").map(serde_json::Value::is_string))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oauth_error_bodies_are_recognised() {
        assert!(is_oauth_error(br#"{"error":"invalid_grant"}"#));
        assert!(!is_oauth_error(b"<html>502 Bad Gateway</html>"));
        assert!(!is_oauth_error(br#"{"error":5}"#));
        assert!(!is_oauth_error(b""));
    }
}
