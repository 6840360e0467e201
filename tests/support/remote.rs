//! A minimal browser over real HTTP, for tests against running passgate
//! processes: keeps cookies, never follows redirects, sends our Origin on
//! posts as a browser would. With the software authenticator it enrolls,
//! signs in and walks the OAuth flow the way a person and a client would.

#![allow(dead_code)]

use std::collections::BTreeMap;

use http::StatusCode;
use serde_json::{Value, json};

use super::authenticator::SoftAuthenticator;

pub struct Reply {
    pub status: StatusCode,
    pub location: Option<String>,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|_| panic!("not JSON ({}): {}", self.status, self.body))
    }

    /// The value of a hidden form field on an HTML page.
    pub fn field(&self, name: &str) -> String {
        let marker = format!(r#"name="{name}" value=""#);
        let start = self
            .body
            .find(&marker)
            .unwrap_or_else(|| panic!("no field {name} in page: {}", self.body))
            + marker.len();
        let end = self.body[start..].find('"').unwrap() + start;
        self.body[start..end].replace("&amp;", "&")
    }
}

#[derive(Clone)]
pub struct RemoteBrowser {
    http: reqwest::Client,
    /// The public origin, sent as `Origin` on posts.
    pub origin: String,
    cookies: BTreeMap<String, String>,
    /// Sent as `X-Forwarded-For`, to stand for a distinct person behind a
    /// proxy (the server must run with `--trust-forwarded-for`).
    forwarded_for: Option<String>,
}

impl RemoteBrowser {
    pub fn new(origin: &str) -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            origin: origin.trim_end_matches('/').to_owned(),
            cookies: BTreeMap::new(),
            forwarded_for: None,
        }
    }

    pub fn forwarded_for(mut self, ip: &str) -> Self {
        self.forwarded_for = Some(ip.to_owned());
        self
    }

    pub fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    async fn send(&mut self, request: reqwest::RequestBuilder) -> Reply {
        let mut request = request;
        if !self.cookies.is_empty() {
            request = request.header("cookie", self.cookie_header());
        }
        if let Some(ip) = &self.forwarded_for {
            request = request.header("x-forwarded-for", ip);
        }
        let response = request.send().await.expect("HTTP request");
        for value in response.headers().get_all("set-cookie") {
            let text = value.to_str().unwrap();
            let pair = text.split(';').next().unwrap();
            if let Some((name, value)) = pair.split_once('=') {
                if value.is_empty() || text.to_ascii_lowercase().contains("max-age=0") {
                    self.cookies.remove(name.trim());
                } else {
                    self.cookies.insert(name.trim().into(), value.into());
                }
            }
        }
        Reply {
            status: response.status(),
            location: response
                .headers()
                .get("location")
                .map(|v| v.to_str().unwrap().to_owned()),
            body: response.text().await.unwrap_or_default(),
        }
    }

    /// `base` is the instance to talk to; it may differ from the origin
    /// when several instances serve one public URL.
    pub async fn get(&mut self, base: &str, path_or_url: &str) -> Reply {
        let url = absolute(base, path_or_url);
        let req = self.http.get(url);
        self.send(req).await
    }

    pub async fn post_json(&mut self, base: &str, path: &str, body: &Value) -> Reply {
        let req = self
            .http
            .post(absolute(base, path))
            .header("origin", &self.origin)
            .json(body);
        self.send(req).await
    }

    pub async fn post_form(&mut self, base: &str, path: &str, form: &[(&str, &str)]) -> Reply {
        let req = self
            .http
            .post(absolute(base, path))
            .header("origin", &self.origin)
            .form(form);
        self.send(req).await
    }
}

fn absolute(base: &str, path_or_url: &str) -> String {
    if path_or_url.starts_with("http://") || path_or_url.starts_with("https://") {
        path_or_url.to_owned()
    } else {
        format!("{}{}", base.trim_end_matches('/'), path_or_url)
    }
}

fn expect_ok(reply: &Reply, what: &str) {
    assert!(
        reply.status.is_success(),
        "{what}: {} {}",
        reply.status,
        reply.body
    );
}

/// Enrolls from an invitation link; the browser ends up signed in.
pub async fn enroll(
    browser: &mut RemoteBrowser,
    base: &str,
    device: &SoftAuthenticator,
    link: &str,
    display_name: &str,
) {
    let token = url::Url::parse(link)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
        .expect("token in invitation link");
    let options = browser
        .post_json(
            base,
            "/enroll/passkey/options",
            &json!({"token": token, "displayName": display_name}),
        )
        .await;
    expect_ok(&options, "enroll options");
    let origin = browser.origin.clone();
    let credential = device.create(&origin, options.json()).await.unwrap();
    let finish = browser
        .post_json(base, "/enroll/passkey/finish", &credential)
        .await;
    expect_ok(&finish, "enroll finish");
}

/// Usernameless passkey sign-in; `bases` may name two instances, in which
/// case the ceremony starts on one and finishes on the other.
pub async fn sign_in(browser: &mut RemoteBrowser, bases: (&str, &str), device: &SoftAuthenticator) {
    let options = browser
        .post_json(bases.0, "/login/passkey/options", &json!({}))
        .await;
    expect_ok(&options, "sign-in options");
    let origin = browser.origin.clone();
    let assertion = device.get(&origin, options.json()).await.unwrap();
    let finish = browser
        .post_json(bases.1, "/login/passkey/finish", &assertion)
        .await;
    expect_ok(&finish, "sign-in finish");
}

/// From `/authorize` to the client's redirect, as a signed-in person who
/// approves the consent page. Requests alternate over `bases`. Returns the
/// query parameters of the redirect.
pub async fn approve(
    browser: &mut RemoteBrowser,
    bases: &[&str],
    authorize_url: &str,
) -> BTreeMap<String, String> {
    let pick = |i: usize| bases[i % bases.len()];
    let reply = browser.get(pick(0), authorize_url).await;
    assert_eq!(
        reply.status,
        StatusCode::SEE_OTHER,
        "authorize: {}",
        reply.body
    );
    let consent = reply.location.unwrap();
    let page = browser.get(pick(1), &consent).await;
    let redirect = if page.status == StatusCode::OK {
        let form = [
            ("request", page.field("request")),
            ("csrf", page.field("csrf")),
            ("decision", "approve".to_owned()),
        ];
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let reply = browser.post_form(pick(2), "/consent", &form).await;
        assert_eq!(
            reply.status,
            StatusCode::SEE_OTHER,
            "consent: {}",
            reply.body
        );
        reply.location.unwrap()
    } else {
        // Approved before: straight back to the client.
        assert!(
            page.status.is_redirection(),
            "consent page: {} {}",
            page.status,
            page.body
        );
        page.location.unwrap()
    };
    url::Url::parse(&redirect)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Calls `add(a, 1)` on a running passgate's `/mcp` with a bearer token and
/// checks the exact sum.
pub async fn call_add(base: &str, token: &str, a: i64) {
    let response = reqwest::Client::new()
        .post(format!("{base}/mcp"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .body(
            json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add","arguments":{"a":a,"b":1}}})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "mcp call with a token");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["result"]["structuredContent"]["result"], a + 1);
}
