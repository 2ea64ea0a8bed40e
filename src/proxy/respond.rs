//! Writing the proxy's own responses: small HTML pages for browsers, JSON
//! errors otherwise, redirects with cookies. Deny reasons never appear in a
//! body.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use pingora::Result;

/// A response the proxy writes itself.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Bytes,
}

impl Reply {
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Bytes>) -> Reply {
        Reply {
            status,
            headers: vec![("content-type", content_type.to_string())],
            body: body.into(),
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
        Reply::new(
            status,
            "text/html; charset=utf-8",
            page_html(title, message, ""),
        )
    }

    /// HTML page with extra trusted markup (forms built by the proxy).
    pub fn page_with(status: u16, title: &str, message: &str, extra_html: &str) -> Reply {
        Reply::new(
            status,
            "text/html; charset=utf-8",
            page_html(title, message, extra_html),
        )
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

    /// Write it; `head` suppresses the body.
    pub async fn send(self, session: &mut Session, head: bool) -> Result<()> {
        let mut h = ResponseHeader::build(self.status, Some(self.headers.len() + 3))?;
        for (k, v) in self.headers {
            h.append_header(k, v)?;
        }
        // RFC 9110 §8.6: no Content-Length on a 204 (SCIM DELETE) or 304.
        if !matches!(self.status, 204 | 304) {
            h.insert_header("content-length", self.body.len().to_string())?;
        }
        h.insert_header("cache-control", "no-store")?;
        h.insert_header("x-content-type-options", "nosniff")?;
        let empty = head || self.body.is_empty();
        session.write_response_header(Box::new(h), empty).await?;
        if !empty {
            session.write_response_body(Some(self.body), true).await?;
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

fn page_html(title: &str, message: &str, extra: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title>\
         <meta name=\"viewport\" content=\"width=device-width\">\
         <style>body{{font-family:system-ui,sans-serif;max-width:36em;margin:4em auto;padding:0 1em;color:#222}}\
         h1{{font-size:1.4em}}button{{font-size:1em;padding:.4em 1em}}</style></head>\
         <body><h1>{t}</h1><p>{m}</p>{extra}</body></html>",
        t = html_escape(title),
        m = html_escape(message),
    )
}
