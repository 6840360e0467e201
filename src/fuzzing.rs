//! Entry points for the fuzz targets (`fuzz/`) and for the test that
//! replays their corpora on stable Rust (`tests/fuzz_corpus.rs`). Built only
//! with the `fuzzing` feature, never into the release binary.
//!
//! Each [`Target`] feeds bytes to one parser of untrusted input, through the
//! real router where the parser lives in a handler, and checks what must
//! hold for any input: no panic, no 5xx, a well-formed OAuth or JSON-RPC
//! error, no redirect to a URI the client did not register, no access
//! without a token. A broken rule panics, which is what libFuzzer reports.
//!
//! Nothing here signs anyone in: the harness's only fixtures are two
//! configured clients and one stored authorization code (with the account,
//! consent and token family an approval leaves), written to its own
//! throw-away SQLite file.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicU32, Ordering},
    },
};

use axum::{Router, body::Body, extract::ConnectInfo};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use tower::ServiceExt;

use crate::{
    accounts::users,
    app::AppState,
    config::{Config, ConfiguredClient},
    crypto::{self, MasterKey},
    gateway,
    login::cookies,
    mcp,
    oauth::{
        cimd::{CimdFetcher, client_from_document},
        clients,
        codes::{CodeGrant, code_key},
        grants::{self, Grant},
        token::basic_credentials,
    },
    store::{NewItem, Write, now_unix, sqlite::SqliteStore},
};

/// The harness app's public URL.
pub const ORIGIN: &str = "http://localhost:4318";
/// A public client configured in the harness, with a loopback and a web
/// redirect URI.
pub const PUBLIC_CLIENT: &str = "fuzz-public";
/// A confidential client configured in the harness, and its secret.
pub const CONFIDENTIAL_CLIENT: &str = "fuzz-confidential";
pub const CONFIDENTIAL_SECRET: &str = "fuzz-secret";
/// An authorization code stored for [`PUBLIC_CLIENT`], redeemable with
/// [`CODE_VERIFIER`] and redirect URI `http://127.0.0.1/callback`.
pub const CODE: &str = "fuzz-code";
pub const CODE_VERIFIER: &str = "fuzz-verifier-fuzz-verifier-fuzz-verifier-0123";
/// The URL the metadata-document target pretends its document came from.
pub const DOCUMENT_URL: &str = "https://app.example/client.json";

/// One parser of untrusted input. The name is the fuzz target's and its
/// corpus directory's (`fuzz/corpus/<name>/`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// `POST /token`: first line the `Authorization` header (may be empty),
    /// the rest the form body.
    Token,
    /// `GET /authorize?<input>`.
    Authorize,
    /// `POST /register` with the input as JSON.
    Register,
    /// A client metadata document, as fetched from [`DOCUMENT_URL`].
    MetadataDocument,
    /// `POST /enroll/passkey/finish` and `/account/passkeys/finish`: a
    /// WebAuthn registration response.
    PasskeyRegistration,
    /// `POST /login/passkey/finish`: a WebAuthn assertion.
    PasskeyAssertion,
    /// The `Cookie` header of a page request (sessions, ceremony binding).
    Cookies,
    /// The `Authorization` header at the `/mcp` bearer check (JWT header
    /// and all).
    Bearer,
    /// `POST /mcp` past the bearer check: header lines (`name: value`), an
    /// empty line, then the JSON-RPC body.
    Mcp,
    /// The gateway's sealed `Mcp-Session-Id` as a client sends it back
    /// (`gateway::session::open`), and the input as a backend's own id.
    GatewaySession,
}

impl Target {
    pub const ALL: [Target; 10] = [
        Target::Token,
        Target::Authorize,
        Target::Register,
        Target::MetadataDocument,
        Target::PasskeyRegistration,
        Target::PasskeyAssertion,
        Target::Cookies,
        Target::Bearer,
        Target::Mcp,
        Target::GatewaySession,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Target::Token => "token",
            Target::Authorize => "authorize",
            Target::Register => "register",
            Target::MetadataDocument => "metadata_document",
            Target::PasskeyRegistration => "passkey_registration",
            Target::PasskeyAssertion => "passkey_assertion",
            Target::Cookies => "cookies",
            Target::Bearer => "bearer",
            Target::Mcp => "mcp",
            Target::GatewaySession => "gateway_session",
        }
    }

    pub fn from_name(name: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| t.name() == name)
    }
}

/// The real router on a throw-away SQLite store, with a runtime to drive it
/// from libFuzzer's synchronous callback. Build once per process.
pub struct Harness {
    runtime: tokio::runtime::Runtime,
    state: AppState,
    router: Router,
    mcp: Router,
    dir: PathBuf,
    /// Each request comes from its own address, so rate limits never turn
    /// the interesting paths into 429s.
    next_addr: AtomicU32,
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

impl Harness {
    pub fn new() -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime");
        let dir = std::env::temp_dir().join(format!(
            "passgate-fuzz-{}-{}",
            std::process::id(),
            crypto::random_id()
        ));
        std::fs::create_dir_all(&dir).expect("harness directory");
        let store = SqliteStore::open(&dir.join("passgate.sqlite3")).expect("harness store");
        let mut config = Config::for_public_url(ORIGIN).expect("harness URL");
        config.clients = vec![
            configured(PUBLIC_CLIENT, None),
            configured(CONFIDENTIAL_CLIENT, Some(CONFIDENTIAL_SECRET)),
        ];
        let key = MasterKey::from_secret(&MasterKey::generate_secret()).expect("master key");
        let state = runtime.block_on(async {
            let mut state = AppState::build(config, Arc::new(store), key)
                .await
                .expect("harness state");
            state.cimd = offline_fetcher();
            // The code belongs to a live person with a standing consent
            // and a pending token family, as an approval leaves them, so
            // a redemption passes the access rule and reaches the tokens.
            let user_id = "00000000000000000000000000000000";
            let user = users::new_user(
                user_id.into(),
                "fuzz".into(),
                "Fuzz".into(),
                users::Role::Member,
            );
            let family = Grant {
                family: crypto::random_id(),
                user_id: user_id.into(),
                client_id: PUBLIC_CLIENT.into(),
                client_name: PUBLIC_CLIENT.into(),
                scope: crate::oauth::SCOPE_MCP.into(),
                resource: state.config.mcp_url(),
                created_at: now_unix(),
                redirect_uri: "http://127.0.0.1/callback".into(),
                groups: Vec::new(),
                user_name: String::new(),
                display_name: String::new(),
                account: None,
                last_used_at: None,
            };
            let grant = CodeGrant {
                client_id: PUBLIC_CLIENT.into(),
                client_name: PUBLIC_CLIENT.into(),
                redirect_uri: "http://127.0.0.1/callback".into(),
                redirect_uri_sent: true,
                code_challenge: crypto::pkce_s256(CODE_VERIFIER),
                scope: crate::oauth::SCOPE_MCP.into(),
                resource: state.config.mcp_url(),
                user_id: user_id.into(),
                family: family.family.clone(),
                redeemed: None,
            };
            let lifetime = 365 * 24 * 3600;
            let mut writes = users::new_user_writes(&user).expect("harness user");
            writes.extend(
                grants::pending_writes(&family, now_unix() + lifetime).expect("harness family"),
            );
            writes.push(Write::Insert(
                NewItem::json(code_key(CODE), "code", &grant)
                    .expect("code grant")
                    .expires_in(lifetime),
            ));
            let store = state.store.as_ref();
            store.transact(writes).await.expect("store the code");
            grants::record_consent(store, user_id, PUBLIC_CLIENT, crate::oauth::SCOPE_MCP)
                .await
                .expect("store the consent");
            state
        });
        let mcp = Router::new().route_service(
            "/mcp",
            mcp::service(mcp::Tools::new(), &state.config, state.shutdown.clone()),
        );
        Self {
            router: crate::routes::router(state.clone()),
            mcp,
            state,
            runtime,
            dir,
            next_addr: AtomicU32::new(0),
        }
    }

    /// Feeds `data` to `target`; panics if a rule is broken. Returns the
    /// status of the (last) answer, or `None` when the input never became a
    /// request (not a valid header, say) or the target is not HTTP.
    pub fn run(&self, target: Target, data: &[u8]) -> Option<StatusCode> {
        match target {
            Target::Token => Some(self.token(data)),
            Target::Authorize => self.authorize(data),
            Target::Register => Some(self.register(data)),
            Target::MetadataDocument => {
                metadata_document(data);
                None
            }
            Target::PasskeyRegistration => Some(self.passkey_registration(data)),
            Target::PasskeyAssertion => Some(self.passkey_assertion(data)),
            Target::Cookies => self.cookies(data),
            Target::Bearer => self.bearer(data),
            Target::Mcp => Some(self.mcp(data)),
            Target::GatewaySession => {
                gateway_session(&self.state.master_key, data);
                None
            }
        }
    }

    fn send(&self, router: &Router, mut request: Request<Body>) -> Answer {
        let n = self.next_addr.fetch_add(1, Ordering::Relaxed);
        let ip = Ipv4Addr::from(0x0a00_0000 | (n & 0x00ff_ffff));
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::new(IpAddr::V4(ip), 40000)));
        self.runtime.block_on(async {
            let response = router
                .clone()
                .oneshot(request)
                .await
                .expect("the router is infallible");
            let status = response.status();
            let headers = response.headers().clone();
            let body = response
                .into_body()
                .collect()
                .await
                .expect("a response body")
                .to_bytes()
                .to_vec();
            Answer {
                status,
                headers,
                body,
            }
        })
    }

    fn token(&self, data: &[u8]) -> StatusCode {
        let (authorization, body) = split_line(data);
        let mut request = Request::post("/token")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Ok(value) = HeaderValue::from_bytes(authorization)
            && !authorization.is_empty()
        {
            let headers = HeaderMap::from_iter([(header::AUTHORIZATION, value)]);
            // The Basic parser on its own: a pair of strings or nothing.
            let _ = basic_credentials(&headers);
            request = request.header(
                header::AUTHORIZATION,
                headers[header::AUTHORIZATION].clone(),
            );
        }
        let answer = self.send(
            &self.router,
            request.body(Body::from(body.to_vec())).unwrap(),
        );
        answer.no_server_error("/token");
        assert_eq!(
            answer
                .headers
                .get(header::CACHE_CONTROL)
                .map(|v| v.as_bytes()),
            Some(&b"no-store"[..]),
            "/token answers are never cached"
        );
        let json = answer.json("/token");
        if answer.status.is_success() {
            for field in ["access_token", "refresh_token", "token_type"] {
                assert!(json[field].is_string(), "/token success lacks {field}");
            }
        } else {
            answer.oauth_error("/token", &json);
        }
        answer.status
    }

    fn authorize(&self, data: &[u8]) -> Option<StatusCode> {
        let uri = format!("/authorize?{}", query_escape(data));
        let Ok(request) = Request::get(uri).body(Body::empty()) else {
            // Not a URI: no request line could carry it.
            return None;
        };
        let answer = self.send(&self.router, request);
        answer.no_server_error("/authorize");
        if !answer.status.is_redirection() {
            assert!(
                answer.status.is_client_error(),
                "/authorize answered {} without a redirect",
                answer.status
            );
            return Some(answer.status);
        }
        let location = answer
            .headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .expect("a redirect has a Location");
        if location.starts_with("/consent?request=") {
            return Some(answer.status);
        }
        // Anything else goes back to the client: only to a URI it registered.
        let mut target = url::Url::parse(location).expect("an absolute redirect");
        target.set_query(None);
        let registered = [PUBLIC_CLIENT, CONFIDENTIAL_CLIENT]
            .iter()
            .filter_map(|id| {
                self.state
                    .configured_clients
                    .iter()
                    .find(|c| c.client_id == *id)
            })
            .any(|client| clients::redirect_uri_allowed(client, target.as_str()));
        assert!(registered, "/authorize redirected to {location}");
        Some(answer.status)
    }

    fn register(&self, data: &[u8]) -> StatusCode {
        let request = Request::post("/register")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(data.to_vec()))
            .unwrap();
        let answer = self.send(&self.router, request);
        answer.no_server_error("/register");
        let json = answer.json("/register");
        if answer.status == StatusCode::CREATED {
            let uris = json["redirect_uris"]
                .as_array()
                .expect("a registration lists its redirect URIs");
            assert!(!uris.is_empty(), "a registration without redirect URIs");
            for uri in uris {
                let uri = uri.as_str().expect("redirect URIs are strings");
                assert!(
                    clients::validate_redirect_uri(uri).is_ok(),
                    "registered an invalid redirect URI {uri:?}"
                );
            }
            assert!(
                json["client_id"].is_string(),
                "a registration without client_id"
            );
        } else {
            answer.oauth_error("/register", &json);
        }
        answer.status
    }

    fn passkey_registration(&self, data: &[u8]) -> StatusCode {
        let (cookie, body) = split_line(data);
        let mut status = StatusCode::OK;
        for path in ["/account/passkeys/finish", "/enroll/passkey/finish"] {
            let answer = self.send(&self.router, script_request(path, cookie, body));
            answer.script_error(path);
            status = answer.status;
        }
        status
    }

    fn passkey_assertion(&self, data: &[u8]) -> StatusCode {
        let (cookie, body) = split_line(data);
        let path = "/login/passkey/finish";
        let answer = self.send(&self.router, script_request(path, cookie, body));
        answer.script_error(path);
        answer.status
    }

    fn cookies(&self, data: &[u8]) -> Option<StatusCode> {
        let Ok(value) = HeaderValue::from_bytes(data) else {
            return None;
        };
        let headers = HeaderMap::from_iter([(header::COOKIE, value.clone())]);
        if let Some(found) = cookies::get(&headers, crate::accounts::session::COOKIE) {
            assert!(!found.is_empty(), "an empty cookie value was returned");
        }
        let mut status = None;
        for path in ["/admin", "/consent?request=x", "/login", "/account"] {
            let request = Request::get(path)
                .header(header::COOKIE, value.clone())
                .body(Body::empty())
                .unwrap();
            let answer = self.send(&self.router, request);
            answer.no_server_error(path);
            status = Some(answer.status);
        }
        status
    }

    fn bearer(&self, data: &[u8]) -> Option<StatusCode> {
        let Ok(value) = HeaderValue::from_bytes(data) else {
            return None;
        };
        let request = mcp_request()
            .header(header::AUTHORIZATION, value)
            .body(Body::from(TOOLS_LIST))
            .unwrap();
        let answer = self.send(&self.router, request);
        // No input can be a token this harness signed.
        assert_eq!(
            answer.status,
            StatusCode::UNAUTHORIZED,
            "/mcp let a made-up token through: {}",
            String::from_utf8_lossy(&answer.body)
        );
        assert!(
            answer.headers.contains_key(header::WWW_AUTHENTICATE),
            "a 401 without a challenge"
        );
        // The token on its own, as the bearer check reads it.
        if let Ok(text) = std::str::from_utf8(data) {
            let result = self
                .runtime
                .block_on(crate::oauth::bearer::verify(&self.state, text));
            assert!(result.is_err(), "a made-up token verified");
        }
        Some(answer.status)
    }

    fn mcp(&self, data: &[u8]) -> StatusCode {
        let (head, body) = match find(data, b"\n\n") {
            Some(i) => (&data[..i], &data[i + 2..]),
            None => (&[][..], data),
        };
        let mut request = Request::post("/mcp");
        let mut defaults = true;
        for line in head.split(|b| *b == b'\n') {
            let Some(colon) = line.iter().position(|b| *b == b':') else {
                continue;
            };
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(&line[..colon]),
                HeaderValue::from_bytes(trim(&line[colon + 1..])),
            ) {
                defaults = false;
                request = request.header(name, value);
            }
        }
        if defaults {
            request = request
                .header(header::HOST, "localhost:4318")
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::ACCEPT, "application/json, text/event-stream")
                .header("mcp-protocol-version", "2025-11-25");
        }
        let answer = self.send(&self.mcp, request.body(Body::from(body.to_vec())).unwrap());
        answer.no_server_error("/mcp");
        let is_json = answer
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if is_json && !answer.body.is_empty() {
            let json = answer.json("/mcp");
            assert_eq!(
                json["jsonrpc"], "2.0",
                "/mcp answered JSON that is not JSON-RPC"
            );
        }
        answer.status
    }
}

fn configured(id: &str, secret: Option<&str>) -> ConfiguredClient {
    ConfiguredClient {
        client_id: id.into(),
        client_name: Some(format!("Fuzz {id}")),
        redirect_uris: vec![
            "http://127.0.0.1/callback".into(),
            "https://app.example/cb".into(),
        ],
        client_secret: secret.map(str::to_owned),
    }
}

/// The metadata-document fetcher, unable to leave this machine: every fetch
/// goes to a closed loopback port and fails at once.
fn offline_fetcher() -> CimdFetcher {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a loopback port");
    CimdFetcher::customized(move |builder| {
        builder
            .proxy(reqwest::Proxy::all(format!("http://{closed}")).expect("proxy URL"))
            .dns_resolver(Arc::new(NoNames))
    })
}

struct NoNames;

impl reqwest::dns::Resolve for NoNames {
    fn resolve(&self, _: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(async { Err("the fuzz harness resolves no names".into()) })
    }
}

fn metadata_document(data: &[u8]) {
    if let Ok(client) = client_from_document(DOCUMENT_URL, data) {
        assert_eq!(client.client_id, DOCUMENT_URL);
        assert!(!client.redirect_uris.is_empty());
        for uri in &client.redirect_uris {
            assert!(
                clients::validate_redirect_uri(uri).is_ok(),
                "accepted redirect URI {uri:?}"
            );
        }
        assert!(client.client_name.chars().count() <= 200);
    }
}

/// Nothing a client makes up opens as a session (the harness's master key
/// is new in every process, so no stored input was sealed under it), and
/// any backend id passgate agrees to seal opens again only for its own
/// route and account.
fn gateway_session(key: &MasterKey, data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    assert_eq!(
        gateway::session::open(key, "/mcp/a", "u1", &text),
        None,
        "a made-up session id opened"
    );
    if let Some(sealed) = gateway::session::seal(key, "/mcp/a", "u1", &text) {
        assert_eq!(
            gateway::session::open(key, "/mcp/a", "u1", &sealed).as_deref(),
            Some(&*text)
        );
        assert_eq!(gateway::session::open(key, "/mcp/b", "u1", &sealed), None);
        assert_eq!(gateway::session::open(key, "/mcp/a", "u2", &sealed), None);
    }
}

const TOOLS_LIST: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;

fn mcp_request() -> http::request::Builder {
    Request::post("/mcp")
        .header(header::HOST, "localhost:4318")
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
}

/// A passkey-script request from our own origin, with the input's first
/// line as its `Cookie` header.
fn script_request(path: &str, cookie: &[u8], body: &[u8]) -> Request<Body> {
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(path)
        .header(header::ORIGIN, ORIGIN)
        .header(header::CONTENT_TYPE, "application/json");
    if let Ok(value) = HeaderValue::from_bytes(cookie)
        && !cookie.is_empty()
    {
        request = request.header(header::COOKIE, value);
    }
    request.body(Body::from(body.to_vec())).unwrap()
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Answer {
    fn no_server_error(&self, what: &str) {
        assert!(
            !self.status.is_server_error(),
            "{what} answered {}: {}",
            self.status,
            String::from_utf8_lossy(&self.body)
        );
    }

    fn json(&self, what: &str) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| {
            panic!(
                "{what} answered {} with a body that is not JSON: {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// An RFC 6749 §5.2 error: a client-error status and an `error` code.
    fn oauth_error(&self, what: &str, json: &serde_json::Value) {
        assert!(
            self.status.is_client_error(),
            "{what} answered {}",
            self.status
        );
        let code = json["error"].as_str().unwrap_or_default();
        assert!(
            !code.is_empty() && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
            "{what} error without a well-formed code: {json}"
        );
    }

    /// The passkey script's errors: a client-error status and a message.
    fn script_error(&self, what: &str) {
        self.no_server_error(what);
        assert!(
            !self.status.is_success(),
            "{what} accepted a response to a ceremony the harness never started"
        );
        if self.status.is_client_error() {
            let json = self.json(what);
            assert!(
                json["error"].is_string(),
                "{what} error without a message: {json}"
            );
        }
    }
}

fn split_line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&[][..], data),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &bytes[start..end]
}

/// The input as a query string: bytes a URI cannot carry are
/// percent-encoded, every other byte (`&`, `=`, `%`, `+` included) is kept,
/// so the fuzzer controls the parameter structure.
fn query_escape(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len());
    for &b in data {
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
