//! Writing the proxy's own responses: small HTML pages for browsers, JSON
//! errors otherwise, redirects with cookies. Deny reasons never appear in a
//! body.

use bytes::Bytes;
use http::HeaderValue;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::Result;

/// A response the proxy writes itself.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Body,
}

/// A reply's body: bytes, or a page rendered when it is sent (it shows the
/// request id, known only then).
#[derive(Debug)]
pub enum Body {
    Bytes(Bytes),
    Page {
        title: String,
        message: String,
        /// Trusted markup built by the proxy (forms), not escaped.
        extra: String,
    },
}

impl Reply {
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Bytes>) -> Reply {
        Reply {
            status,
            headers: vec![("content-type", content_type.to_string())],
            body: Body::Bytes(body.into()),
        }
    }

    /// `{"error": code}` JSON.
    pub fn json_error(status: u16, code: &str) -> Reply {
        Reply::new(
            status,
            "application/json",
            serde_json::json!({ "error": code }).to_string(),
        )
    }

    /// A JSON document.
    pub fn json(status: u16, value: &serde_json::Value) -> Reply {
        Reply::new(status, "application/json", value.to_string())
    }

    /// A small HTML page; `title` and `message` are escaped.
    pub fn page(status: u16, title: &str, message: &str) -> Reply {
        Reply::page_with(status, title, message, "")
    }

    /// HTML page with extra trusted markup (forms built by the proxy).
    pub fn page_with(status: u16, title: &str, message: &str, extra_html: &str) -> Reply {
        Reply {
            status,
            headers: vec![("content-type", "text/html; charset=utf-8".to_string())],
            body: Body::Page {
                title: title.to_string(),
                message: message.to_string(),
                extra: extra_html.to_string(),
            },
        }
    }

    /// 302 to `location`.
    pub fn redirect(location: &str) -> Reply {
        let mut r = Reply::new(302, "text/html; charset=utf-8", Bytes::new());
        r.headers.push(("location", location.to_string()));
        r
    }

    pub fn with_cookie(mut self, set_cookie: String) -> Reply {
        self.headers.push(("set-cookie", set_cookie));
        self
    }

    pub fn with_header(mut self, name: &'static str, value: String) -> Reply {
        self.headers.push((name, value));
        self
    }

    /// Error reply for a browser (HTML) or an API client (JSON).
    pub fn error(browser: bool, status: u16, code: &str, title: &str, message: &str) -> Reply {
        if browser {
            Reply::page(status, title, message)
        } else {
            Reply::json_error(status, code)
        }
    }

    /// The body as it will be sent, pages rendered with `request_id`.
    pub fn body_bytes(&self, request_id: &HeaderValue) -> Bytes {
        match &self.body {
            Body::Bytes(b) => b.clone(),
            Body::Page {
                title,
                message,
                extra,
            } => {
                let id = std::str::from_utf8(request_id.as_bytes()).unwrap_or("");
                page_html(title, message, extra, id).into()
            }
        }
    }

    /// Write it with its `X-Request-Id`; `head` suppresses the body.
    pub async fn send(
        self,
        session: &mut Session,
        head: bool,
        request_id: &HeaderValue,
    ) -> Result<()> {
        let body = self.body_bytes(request_id);
        let mut h = ResponseHeader::build(self.status, Some(self.headers.len() + 4))?;
        for (k, v) in self.headers {
            h.append_header(k, v)?;
        }
        // RFC 9110 §8.6: no Content-Length on a 204 (SCIM DELETE) or 304.
        if !matches!(self.status, 204 | 304) {
            h.insert_header("content-length", body.len().to_string())?;
        }
        h.insert_header("cache-control", "no-store")?;
        h.insert_header("x-content-type-options", "nosniff")?;
        h.insert_header(super::client::REQUEST_ID, request_id.clone())?;
        let empty = head || body.is_empty();
        session.write_response_header(Box::new(h), empty).await?;
        if !empty {
            session.write_response_body(Some(body), true).await?;
        }
        Ok(())
    }
}

/// Escape text for HTML element content and attribute values.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn page_html(title: &str, message: &str, extra: &str, request_id: &str) -> String {
    let id = if request_id.is_empty() {
        String::new()
    } else {
        format!(
            "<p class=\"rid\">Request ID: <code>{}</code></p>",
            html_escape(request_id)
        )
    };
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title>\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <style>body{{font-family:system-ui,sans-serif;max-width:36em;margin:4em auto;padding:0 1em;color:#222}}\
         h1{{font-size:1.4em}}button{{font-size:1em;padding:.4em 1em}}.rid{{color:#666;font-size:.85em}}</style></head>\
         <body><h1>{t}</h1><p>{m}</p>{extra}{id}</body></html>",
        t = html_escape(title),
        m = html_escape(message),
    )
}
