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

    /// A browser whose connections leave from `local` (any 127.x.y.z
    /// works on Linux loopback): a distinct address to the server's rate
    /// limits without `--trust-forwarded-for`.
    pub fn bound_to(origin: &str, local: std::net::IpAddr) -> Self {
        let mut browser = Self::new(origin);
        browser.http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .local_address(local)
            .build()
            .unwrap();
        browser
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

/// A public OAuth client registered with passgate (DCR), as an MCP client
/// would be: its half of the authorization code flow. The requests go
/// through whichever [`RemoteBrowser`] stands for the client's machine.
pub struct McpClient {
    pub id: String,
    pub redirect: String,
    /// Sent as `resource` (RFC 8707) when set, as most clients do.
    pub resource: Option<String>,
}

impl McpClient {
    pub async fn register(
        http: &mut RemoteBrowser,
        base: &str,
        name: &str,
        redirect: &str,
        resource: Option<String>,
    ) -> Self {
        let reply = http
            .post_json(
                base,
                "/register",
                &json!({"client_name": name, "redirect_uris": [redirect]}),
            )
            .await;
        assert_eq!(
            reply.status,
            StatusCode::CREATED,
            "registration: {}",
            reply.body
        );
        Self {
            id: reply.json()["client_id"].as_str().unwrap().to_owned(),
            redirect: redirect.to_owned(),
            resource,
        }
    }

    /// A fresh PKCE verifier, and the `/authorize` path that sends a person
    /// to approve this client with its challenge.
    pub fn authorize(&self, state: &str) -> (String, String) {
        let verifier = passgate::crypto::random_token(32);
        let challenge = passgate::crypto::pkce_s256(&verifier);
        let mut query = vec![
            ("response_type", "code"),
            ("client_id", self.id.as_str()),
            ("redirect_uri", self.redirect.as_str()),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
            ("state", state),
        ];
        if let Some(resource) = &self.resource {
            query.push(("resource", resource));
        }
        let path = format!("/authorize?{}", serde_urlencoded::to_string(query).unwrap());
        (verifier, path)
    }

    /// Exchanges an authorization code at `/token`.
    pub async fn redeem(
        &self,
        http: &mut RemoteBrowser,
        base: &str,
        code: &str,
        verifier: &str,
    ) -> Reply {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", self.redirect.as_str()),
            ("code_verifier", verifier),
            ("client_id", self.id.as_str()),
        ];
        if let Some(resource) = &self.resource {
            form.push(("resource", resource));
        }
        http.post_form(base, "/token", &form).await
    }

    /// Rotates a refresh token at `/token`.
    pub async fn refresh(
        &self,
        http: &mut RemoteBrowser,
        base: &str,
        refresh_token: &str,
    ) -> Reply {
        http.post_form(
            base,
            "/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
                ("client_id", self.id.as_str()),
            ],
        )
        .await
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
    approve_consent(browser, (pick(1), pick(2)), &consent).await
}

/// The consent step of a request already started: the page (from `bases.0`)
/// and its approval (posted to `bases.1`), or a remembered approval that
/// redirects at once. Returns the query parameters of the redirect.
pub async fn approve_consent(
    browser: &mut RemoteBrowser,
    bases: (&str, &str),
    consent_url: &str,
) -> BTreeMap<String, String> {
    let page = browser.get(bases.0, consent_url).await;
    let redirect = if page.status == StatusCode::OK {
        let form = [
            ("request", page.field("request")),
            ("csrf", page.field("csrf")),
            ("decision", "approve".to_owned()),
        ];
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let reply = browser.post_form(bases.1, "/consent", &form).await;
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

/// The original system's failure, as a test: `flows` complete sign-ins by
/// an enrolled `device`, each request going to the other of two instances
/// (`bases`) serving one `public` URL than the one before. Each flow is a
/// new browser from its own address (`X-Forwarded-For`, so the instances
/// must trust it): authorize, the consent page sending it to sign in, a
/// passkey ceremony started on one instance and finished on the other,
/// consent, code, token, an MCP call, a refresh and a call with the new
/// token. Panics, naming the flow and the step, on the first thing that
/// goes wrong.
pub async fn alternating_sign_in_flows(
    public: &str,
    bases: (&str, &str),
    device: &SoftAuthenticator,
    flows: usize,
) {
    rotating_sign_in_flows(public, &[bases.0, bases.1], device, flows).await
}

/// As [`alternating_sign_in_flows`] over any number of instances: flow `n`
/// starts on instance `n mod len` and each of its requests goes to the next
/// instance (in turn) after the one before.
pub async fn rotating_sign_in_flows(
    public: &str,
    bases: &[&str],
    device: &SoftAuthenticator,
    flows: usize,
) {
    assert!(bases.len() >= 2, "at least two instances");
    let mut http = RemoteBrowser::new(public);
    let client = McpClient::register(
        &mut http,
        bases[1],
        "Alternating flows",
        "http://127.0.0.1:33418/callback",
        Some(format!("{public}/mcp")),
    )
    .await;

    for flow in 0..flows {
        // Start each flow on another instance, so every order happens.
        let (x, y) = (bases[flow % bases.len()], bases[(flow + 1) % bases.len()]);
        let mut browser = RemoteBrowser::new(public).forwarded_for(&format!(
            "198.51.{}.{}",
            100 + flow / 250,
            flow % 250 + 1
        ));
        let state = format!("flow-{flow}");
        let (verifier, authorize) = client.authorize(&state);
        // Not signed in yet: /authorize on x, the consent page on y sends us
        // to sign in, whose ceremony starts on x and finishes on y.
        let to_consent = browser.get(x, &authorize).await;
        let consent_url = to_consent
            .location
            .clone()
            .unwrap_or_else(|| panic!("flow {flow}: no redirect to consent: {}", to_consent.body));
        let to_login = browser.get(y, &consent_url).await;
        assert!(
            to_login
                .location
                .as_deref()
                .unwrap_or("")
                .starts_with("/login"),
            "flow {flow}: {} {}",
            to_login.status,
            to_login.body
        );
        sign_in(&mut browser, (x, y), device).await;
        let back = approve_consent(&mut browser, (x, y), &consent_url).await;
        assert_eq!(back.get("state"), Some(&state), "flow {flow}");
        assert_eq!(
            back.get("iss").map(String::as_str),
            Some(public),
            "flow {flow}"
        );
        let code = back
            .get("code")
            .unwrap_or_else(|| panic!("flow {flow}: no code in {back:?}"));

        let tokens = client.redeem(&mut http, x, code, &verifier).await;
        expect_ok(&tokens, &format!("flow {flow} token"));
        let tokens = tokens.json();
        call_add(y, tokens["access_token"].as_str().unwrap(), flow as i64).await;

        let refreshed = client
            .refresh(&mut http, y, tokens["refresh_token"].as_str().unwrap())
            .await;
        expect_ok(&refreshed, &format!("flow {flow} refresh"));
        call_add(
            x,
            refreshed.json()["access_token"].as_str().unwrap(),
            flow as i64,
        )
        .await;
    }
}

/// A `tools/call` of `tool` on a running passgate's `/mcp`, as a
/// 2025-11-25 client with a bearer token sends it.
pub async fn call_tool(base: &str, token: &str, tool: &str, arguments: Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("{base}/mcp"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .body(
            json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":tool,"arguments":arguments}})
                .to_string(),
        )
        .send()
        .await
        .unwrap()
}

/// Calls `add(a, 1)` on a running passgate's `/mcp` with a bearer token and
/// checks the exact sum.
pub async fn call_add(base: &str, token: &str, a: i64) {
    let response = call_tool(base, token, "add", json!({"a": a, "b": 1})).await;
    assert_eq!(response.status(), 200, "mcp call with a token");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["result"]["structuredContent"]["result"], a + 1);
}
