//! Server-rendered pages: one layout, one stylesheet, a strict
//! Content-Security-Policy, and no framing. Pages are small strings built
//! with [`escape`]d values; there is no template engine because there is
//! almost nothing to template.

use axum::response::{Html, IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

/// The stylesheet, served at `/assets/style.css` and cached by browsers.
pub const STYLESHEET: &str = include_str!("../../assets/style.css");
/// The only script: WebAuthn ceremonies, served at `/assets/passkeys.js`.
pub const PASSKEYS_JS: &str = include_str!("../../assets/passkeys.js");

/// Escapes text for HTML element content and double-quoted attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// A page ready to be sent.
pub struct Page {
    pub status: StatusCode,
    pub title: String,
    /// Already-escaped HTML for the `<main>` element.
    pub body: String,
    /// Include the passkey script.
    pub with_script: bool,
    /// Origins a form on this page may navigate to after submission, beyond
    /// our own (the consent page redirects to the client's redirect URI, and
    /// browsers apply `form-action` to that redirect).
    pub form_targets: Vec<String>,
}

impl Page {
    pub fn new(title: impl Into<String>, body: impl Into<String>) -> Self {
        Self {
            status: StatusCode::OK,
            title: title.into(),
            body: body.into(),
            with_script: false,
            form_targets: Vec::new(),
        }
    }

    pub fn status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    pub fn with_script(mut self) -> Self {
        self.with_script = true;
        self
    }

    pub fn form_target(mut self, origin: impl Into<String>) -> Self {
        self.form_targets.push(origin.into());
        self
    }

    fn content_security_policy(&self) -> String {
        let mut form_action = String::from("'self'");
        for origin in &self.form_targets {
            // Origins are built by us from parsed URLs; refuse anything that
            // could break out of the directive.
            if !origin.contains([';', ',', ' ', '\'']) {
                form_action.push(' ');
                form_action.push_str(origin);
            }
        }
        format!(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action {form_action}; frame-ancestors 'none'; base-uri 'none'"
        )
    }
}

impl IntoResponse for Page {
    fn into_response(self) -> Response {
        let script = if self.with_script {
            r#"<script src="/assets/passkeys.js" defer></script>"#
        } else {
            ""
        };
        let html = format!(
            r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{title} · passgate</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/assets/style.css">
{script}
</head>
<body>
<header class="brand"><a href="/account"><span class="logo" aria-hidden="true">◆</span> passgate</a></header>
<main>
{body}
</main>
</body>
</html>"#,
            title = escape(&self.title),
            body = self.body,
        );
        let csp = self.content_security_policy();
        let mut response = (self.status, Html(html)).into_response();
        let headers = response.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&csp) {
            headers.insert(header::CONTENT_SECURITY_POLICY, v);
        }
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        response
    }
}

/// An error page: what went wrong and what to do next.
pub fn error_page(status: StatusCode, what: &str, next: &str) -> Page {
    let title = match status.as_u16() {
        400..=499 => "This request cannot continue",
        _ => "passgate could not finish this",
    };
    Page::new(
        title,
        format!(
            r#"<section class="card">
<h1>{title}</h1>
<p class="lead">{what}</p>
<p>{next}</p>
</section>"#,
            title = escape(title),
            what = escape(what),
            next = escape(next),
        ),
    )
    .status(status)
}

/// Static assets with long-lived caching; the names change with the content
/// only across releases, so a day is a safe lifetime.
pub async fn stylesheet() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        STYLESHEET,
    )
}

pub async fn passkeys_js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=86400"),
        ],
        PASSKEYS_JS,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_covers_markup_and_quotes() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn csp_lists_form_targets_and_forbids_framing() {
        let page = Page::new("t", "").form_target("http://127.0.0.1:3000");
        let csp = page.content_security_policy();
        assert!(csp.contains("form-action 'self' http://127.0.0.1:3000;"));
        assert!(csp.contains("frame-ancestors 'none'"));
        let evil = Page::new("t", "").form_target("https://a.example; script-src *");
        assert!(!evil.content_security_policy().contains("a.example"));
    }
}
