//! Backends with their own OAuth sign-in: a second passgate, with its own
//! passkey users, is the OAuth-protected MCP server behind the first one's
//! gateway route (`[route.oauth]`). People sign in to the first with a
//! passkey, connect their account at the second from the account page (its
//! `/authorize`, their passkey there, its consent, back to the first), and
//! their calls then reach the second as its own user, with the tokens the
//! first keeps sealed. Both are real `passgate serve` processes.

mod support;

use std::path::Path;

use http::StatusCode;
use passgate::{
    accounts::backend_tokens,
    crypto::MasterKey,
    oauth::grants,
    store::{Store, now_unix, sqlite::SqliteStore},
};
use serde_json::{Value, json};
use support::{
    backends::{gateway_file, route_token},
    process::{BIN, Passgate, free_port, person},
    remote::{McpClient, RemoteBrowser, approve},
};

/// `tools/call` of `tool` on a route, as an MCP client with passgate's token.
async fn call(url: &str, token: &str, tool: &str) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .body(
            json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": tool, "arguments": {}}})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|_| json!({"raw": text}));
    (status, body)
}

/// `calls` concurrent `whoami` calls, alternating between two people's
/// tokens: each must reach the backend as that person's account there.
async fn interleaved(route: &str, people: [(&String, &str); 2], calls: usize) {
    let answers = (0..calls).map(|i| call(route, people[i % 2].0, "whoami"));
    for (i, (status, answer)) in futures_util::future::join_all(answers)
        .await
        .into_iter()
        .enumerate()
    {
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(backend_user(&answer), people[i % 2].1, "{answer}");
    }
}

/// The account the backend passgate saw for a call (its `whoami`).
fn backend_user(answer: &Value) -> String {
    answer["result"]["structuredContent"]["user_name"]
        .as_str()
        .unwrap_or_else(|| panic!("no backend identity in {answer}"))
        .to_owned()
}

/// The first passgate's store and master key, opened beside it (SQLite
/// takes several processes), to look at and age the tokens it keeps.
fn gateway_store(dir: &Path) -> (SqliteStore, MasterKey) {
    let store = SqliteStore::open(&dir.join("passgate.sqlite3")).unwrap();
    let secret = std::fs::read_to_string(dir.join("master.key")).unwrap();
    (store, MasterKey::from_secret(secret.trim()).unwrap())
}

/// Ages a person's backend access token so that its next use refreshes it.
async fn expire(dir: &Path, user_id: &str) -> u64 {
    let (store, key) = gateway_store(dir);
    let stored = backend_tokens::get(&store, &key, user_id, "/mcp/b")
        .await
        .unwrap()
        .expect("connected");
    let mut aged = stored.tokens.clone();
    aged.expires_at = Some(now_unix() - 10);
    backend_tokens::replace(&store, &key, user_id, "/mcp/b", &stored, &aged)
        .await
        .unwrap();
    stored.version + 1
}

async fn stored_version(dir: &Path, user_id: &str) -> Option<(u64, String)> {
    let (store, key) = gateway_store(dir);
    backend_tokens::get(&store, &key, user_id, "/mcp/b")
        .await
        .unwrap()
        .map(|s| (s.version, s.tokens.access_token))
}

/// The id the first passgate's session cookie belongs to, from `whoami` on
/// its own demo tools.
async fn own_user_id(base: &str, browser: &mut RemoteBrowser) -> String {
    let (_, token) = route_token(browser, base, &format!("{base}/mcp")).await;
    let (_, answer) = call(&format!("{base}/mcp"), &token, "whoami").await;
    answer["result"]["structuredContent"]["user_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The account page's Connect button for `resource`: where it sends the
/// browser (the backend's sign-in).
async fn press_connect(browser: &mut RemoteBrowser, gateway: &str, resource: &str) -> String {
    let page = browser.get(gateway, "/account").await;
    assert_eq!(page.status, StatusCode::OK);
    let csrf = page.field("csrf");
    let start = browser
        .post_form(
            gateway,
            "/account/backends/connect",
            &[("csrf", &csrf), ("resource", resource)],
        )
        .await;
    assert_eq!(start.status, StatusCode::SEE_OTHER, "{}", start.body);
    start.location.expect("to the backend's sign-in")
}

/// From the account page's Connect button to the callback: the person
/// signs in at the backend (already, in `at_backend`) and approves there.
async fn connect(
    gateway: &str,
    at_gateway: &mut RemoteBrowser,
    backend: &str,
    at_backend: &mut RemoteBrowser,
) {
    let page = at_gateway.get(gateway, "/account").await;
    assert!(page.body.contains(r#"id="connect-mcp-b""#), "{}", page.body);
    let authorize = press_connect(at_gateway, gateway, "/mcp/b").await;
    assert!(
        authorize.starts_with(&format!("{backend}/authorize?")),
        "{authorize}"
    );
    let query: std::collections::BTreeMap<String, String> = url::Url::parse(&authorize)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    assert_eq!(query["resource"], format!("{backend}/mcp"));
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(
        query["redirect_uri"],
        format!("{gateway}/account/backends/callback")
    );
    let back = approve(at_backend, &[backend], &authorize).await;
    assert_eq!(back["iss"], backend);
    let callback = format!(
        "/account/backends/callback?code={}&state={}&iss={}",
        back["code"], back["state"], back["iss"]
    );
    let done = at_gateway.get(gateway, &callback).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(
        done.location.as_deref(),
        Some("/account?notice=backend-connected")
    );
    // The callback works once.
    let again = at_gateway.get(gateway, &callback).await;
    assert_eq!(again.status, StatusCode::GONE, "{}", again.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_connect_their_own_account_at_a_backend_with_its_own_sign_in() {
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (port_a, port_b) = (free_port(), free_port());
    let (base_a, base_b) = (
        format!("http://localhost:{port_a}"),
        format!("http://localhost:{port_b}"),
    );
    let mut backend = Passgate::start_on(port_b, dir_b.path(), None, &[], "warn", &[]);
    let file = gateway_file(
        dir_a.path(),
        &[("b", format!("{base_b}/mcp"), "[route.oauth]")],
    );
    let gateway = Passgate::start_on(
        port_a,
        dir_a.path(),
        None,
        &["--gateway-config", file.to_str().unwrap()],
        "info",
        &[],
    );
    let route = format!("{base_a}/mcp/b");

    // Two people, each with an account at both.
    let mut ann = person(dir_a.path(), &base_a, "ann").await;
    let mut ann_b = person(dir_b.path(), &base_b, "ann-at-b").await;
    let mut ben = person(dir_a.path(), &base_a, "ben").await;
    let mut ben_b = person(dir_b.path(), &base_b, "ben-at-b").await;
    let ann_id = own_user_id(&base_a, &mut ann).await;
    let ben_id = own_user_id(&base_a, &mut ben).await;
    let (_, ann_token) = route_token(&mut ann, &base_a, &route).await;
    let (_, ben_token) = route_token(&mut ben, &base_a, &route).await;

    // Not connected yet: the client is told where to connect.
    let (status, answer) = call(&route, &ann_token, "whoami").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["error"]["code"], -32042, "{answer}");
    assert_eq!(
        answer["error"]["data"]["elicitations"][0]["url"],
        format!("{base_a}/account#connect-mcp-b")
    );
    let page = ann.get(&base_a, "/account").await;
    assert!(
        page.body.contains("Your accounts at MCP servers") && page.body.contains("Not connected")
    );
    // Approving a client for the route says so too, before the first call.
    let client = McpClient::register(
        &mut ann,
        &base_a,
        "Setup check",
        "http://127.0.0.1:33418/callback",
        Some(route.clone()),
    )
    .await;
    let (_, authorize) = client.authorize("setup");
    let to_consent = ann.get(&base_a, &authorize).await;
    let consent = ann.get(&base_a, &to_consent.location.unwrap()).await;
    assert!(
        consent.body.contains("data-setup-needed")
            && consent.body.contains("/account#connect-mcp-b"),
        "{}",
        consent.body
    );

    connect(&base_a, &mut ann, &base_b, &mut ann_b).await;
    connect(&base_a, &mut ben, &base_b, &mut ben_b).await;
    let page = ann.get(&base_a, "/account").await;
    assert!(
        page.body.contains("Disconnect your account at"),
        "{}",
        page.body
    );

    // Each reaches the backend as their own account there, also when their
    // calls interleave.
    interleaved(
        &route,
        [(&ann_token, "ann-at-b"), (&ben_token, "ben-at-b")],
        12,
    )
    .await;

    // Expired: concurrent calls refresh once, each still as its person.
    let aged = expire(dir_a.path(), &ann_id).await;
    let ben_aged = expire(dir_a.path(), &ben_id).await;
    let (before, _) = stored_version(dir_a.path(), &ann_id).await.unwrap();
    assert_eq!(before, aged);
    interleaved(
        &route,
        [(&ann_token, "ann-at-b"), (&ben_token, "ben-at-b")],
        10,
    )
    .await;
    assert_eq!(
        stored_version(dir_a.path(), &ann_id).await.unwrap().0,
        aged + 1,
        "one refresh for five concurrent calls"
    );
    assert_eq!(
        stored_version(dir_a.path(), &ben_id).await.unwrap().0,
        ben_aged + 1
    );

    // The backend's authorization server away: the tokens are kept, the
    // call is a 502, and it works again once the server is back.
    backend.kill_hard();
    let before = stored_version(dir_a.path(), &ann_id).await;
    expire(dir_a.path(), &ann_id).await;
    let (status, answer) = call(&route, &ann_token, "whoami").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{answer}");
    let kept = stored_version(dir_a.path(), &ann_id).await;
    assert!(kept.is_some(), "a transient failure keeps the tokens");
    assert_eq!(kept.unwrap().1, before.unwrap().1);
    backend = Passgate::start_on(port_b, dir_b.path(), None, &[], "warn", &[]);
    let (status, answer) = call(&route, &ann_token, "whoami").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(backend_user(&answer), "ann-at-b");

    // Ben disconnects on the first passgate's account page: his tokens are
    // gone there, revoked at the backend's server, and he is asked to
    // connect again.
    let (_, answer) = call(&route, &ben_token, "whoami").await;
    let ben_at_b = answer["result"]["structuredContent"]["user_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let backend_store = SqliteStore::open(&dir_b.path().join("passgate.sqlite3")).unwrap();
    assert_eq!(
        grants::list_for_user(&backend_store, &ben_at_b)
            .await
            .unwrap()
            .len(),
        1
    );
    let page = ben.get(&base_a, "/account").await;
    let csrf = page.field("csrf");
    let done = ben
        .post_form(
            &base_a,
            "/account/backends/disconnect",
            &[("csrf", &csrf), ("resource", "/mcp/b")],
        )
        .await;
    assert_eq!(
        done.location.as_deref(),
        Some("/account?notice=backend-disconnected")
    );
    assert!(stored_version(dir_a.path(), &ben_id).await.is_none());
    assert!(
        grants::list_for_user(&backend_store, &ben_at_b)
            .await
            .unwrap()
            .is_empty(),
        "revoked at the backend's authorization server: {}",
        gateway.output()
    );
    let (_, answer) = call(&route, &ben_token, "whoami").await;
    assert_eq!(answer["error"]["code"], -32042, "{answer}");

    // The backend ends passgate's access (its operator revokes the client):
    // the next call is refused there, the refresh too, and Ann is asked to
    // connect again; nothing loops.
    let (store, _) = gateway_store(dir_a.path());
    let store: &dyn Store = &store;
    let registration: Value = store
        .get_json("backend-client#/mcp/b", "client")
        .await
        .unwrap()
        .expect("a dynamic registration, shared through the store");
    let client_id = registration["client_id"].as_str().unwrap();
    let revoked = std::process::Command::new(BIN)
        .args(["clients", "revoke", client_id, "--data-dir"])
        .arg(dir_b.path())
        .env("PASSGATE_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        revoked.status.success(),
        "{}",
        String::from_utf8_lossy(&revoked.stderr)
    );
    let (status, answer) = call(&route, &ann_token, "whoami").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(answer["error"]["code"], -32042, "{answer}");
    assert!(stored_version(dir_a.path(), &ann_id).await.is_none());

    // No backend token, refresh token or code appears in the gateway's log.
    let log = gateway.output();
    assert!(log.contains("connected a backend account"), "{log}");
    for secret in ["access_token", "refresh_token"] {
        assert!(!log.contains(&format!("\"{secret}\":")), "{log}");
    }
    drop(backend);
}

/// The two other ways passgate is a backend server's client: by its own
/// client metadata document (the backend's server fetches it; both run with
/// the development setting that allows loopback documents), and as a client
/// the backend's operator registered ahead of time (`oauth.client_id`, with
/// its secret from the environment). Neither registers dynamically.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_document_and_preregistered_clients_connect_too() {
    let (dir_a, dir_doc, dir_pre) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let (port_a, port_doc, port_pre) = (free_port(), free_port(), free_port());
    let base_a = format!("http://localhost:{port_a}");
    let (base_doc, base_pre) = (
        format!("http://localhost:{port_doc}"),
        format!("http://localhost:{port_pre}"),
    );
    let _doc = Passgate::start_on(
        port_doc,
        dir_doc.path(),
        None,
        &["--dev-allow-loopback-cimd"],
        "warn",
        &[],
    );
    let clients = dir_pre.path().join("clients.json");
    std::fs::write(
        &clients,
        json!([{
            "client_id": "passgate-gateway",
            "client_name": "The gateway",
            "redirect_uris": [format!("{base_a}/account/backends/callback")],
            "client_secret": "gateway-secret-value",
        }])
        .to_string(),
    )
    .unwrap();
    let _pre = Passgate::start_on(
        port_pre,
        dir_pre.path(),
        None,
        &["--clients-file", clients.to_str().unwrap()],
        "warn",
        &[],
    );
    let file = dir_a.path().join("gateway.toml");
    std::fs::write(
        &file,
        format!(
            "[[route]]\nname = \"b\"\nurl = \"{base_doc}/mcp\"\n[route.oauth]\n\n\
             [[route]]\nname = \"pre\"\nurl = \"{base_pre}/mcp\"\n[route.oauth]\nclient_id = \"passgate-gateway\"\nclient_secret_from_env = \"PRE_SECRET\"\n"
        ),
    )
    .unwrap();
    let gateway = Passgate::start_on(
        port_a,
        dir_a.path(),
        None,
        &[
            "--gateway-config",
            file.to_str().unwrap(),
            "--dev-allow-loopback-cimd",
        ],
        "info",
        &[("PRE_SECRET", "gateway-secret-value")],
    );

    // The document the backend's server fetches.
    let document: Value = reqwest::get(format!("{base_a}/oauth/backend-client.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        document["client_id"],
        format!("{base_a}/oauth/backend-client.json")
    );
    assert_eq!(
        document["redirect_uris"],
        json!([format!("{base_a}/account/backends/callback")])
    );

    let mut ann = person(dir_a.path(), &base_a, "ann").await;
    let mut ann_doc = person(dir_doc.path(), &base_doc, "ann-at-doc").await;
    let mut ann_pre = person(dir_pre.path(), &base_pre, "ann-at-pre").await;

    // By the metadata document: the client id is its URL.
    connect(&base_a, &mut ann, &base_doc, &mut ann_doc).await;
    let (_, token) = route_token(&mut ann, &base_a, &format!("{base_a}/mcp/b")).await;
    let (status, answer) = call(&format!("{base_a}/mcp/b"), &token, "whoami").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(backend_user(&answer), "ann-at-doc");
    assert_eq!(
        answer["result"]["structuredContent"]["client_id"],
        format!("{base_a}/oauth/backend-client.json")
    );

    // As the pre-registered client, with its secret.
    let authorize = press_connect(&mut ann, &base_a, "/mcp/pre").await;
    assert!(
        authorize.contains("client_id=passgate-gateway"),
        "{authorize}"
    );
    let back = approve(&mut ann_pre, &[&base_pre], &authorize).await;
    let done = ann
        .get(
            &base_a,
            &format!(
                "/account/backends/callback?code={}&state={}&iss={}",
                back["code"], back["state"], back["iss"]
            ),
        )
        .await;
    assert_eq!(
        done.location.as_deref(),
        Some("/account?notice=backend-connected"),
        "{}",
        done.body
    );
    let (_, token) = route_token(&mut ann, &base_a, &format!("{base_a}/mcp/pre")).await;
    let (status, answer) = call(&format!("{base_a}/mcp/pre"), &token, "whoami").await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(backend_user(&answer), "ann-at-pre");
    assert_eq!(
        answer["result"]["structuredContent"]["client_id"],
        "passgate-gateway"
    );

    // A sign-in answer naming another server is refused (RFC 9207).
    let authorize = press_connect(&mut ann, &base_a, "/mcp/pre").await;
    let back = approve(&mut ann_pre, &[&base_pre], &authorize).await;
    let forged = ann
        .get(
            &base_a,
            &format!(
                "/account/backends/callback?code={}&state={}&iss={base_doc}",
                back["code"], back["state"]
            ),
        )
        .await;
    assert_eq!(forged.status, StatusCode::BAD_REQUEST, "{}", forged.body);
    assert!(forged.body.contains("iss mismatch"), "{}", forged.body);

    // Disabling the person deletes every backend connection they had.
    let ann_id = own_user_id(&base_a, &mut ann).await;
    let (store, _) = gateway_store(dir_a.path());
    assert_eq!(
        backend_tokens::list(&store, &ann_id).await.unwrap().len(),
        2
    );
    let disabled = std::process::Command::new(BIN)
        .args(["users", "disable", "ann", "--data-dir"])
        .arg(dir_a.path())
        .env("PASSGATE_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        disabled.status.success(),
        "{}",
        String::from_utf8_lossy(&disabled.stderr)
    );
    assert!(
        backend_tokens::list(&store, &ann_id)
            .await
            .unwrap()
            .is_empty()
    );

    let log = gateway.output();
    assert!(
        !log.contains("gateway-secret-value"),
        "the client secret is never logged"
    );
    let (store, _) = gateway_store(dir_a.path());
    let store: &dyn Store = &store;
    assert!(
        store
            .get("backend-client#/mcp/b", "client")
            .await
            .unwrap()
            .is_none()
            && store
                .get("backend-client#/mcp/pre", "client")
                .await
                .unwrap()
                .is_none(),
        "no dynamic registration was made"
    );
}

/// FastMCP's own authorization server in front of a FastMCP server (the MCP
/// Python SDK's endpoints; dynamic registration is its only way in), killed
/// on drop.
struct FastMcpOAuth {
    child: std::process::Child,
    base: String,
}

impl FastMcpOAuth {
    async fn start() -> Self {
        let port = free_port();
        let child = std::process::Command::new(support::process::python())
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/py/oauth_backend.py"
            ))
            .args(["--port", &port.to_string()])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("start tests/py/oauth_backend.py");
        let base = format!("http://127.0.0.1:{port}");
        let metadata = format!("{base}/.well-known/oauth-protected-resource/mcp");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !reqwest::get(&metadata)
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the FastMCP OAuth backend did not start"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        Self { child, base }
    }
}

impl Drop for FastMcpOAuth {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The backend's view of a call: the client and access token (hashed) it
/// carried.
fn token_seen(answer: &Value) -> (String, String) {
    let seen = &answer["result"]["structuredContent"];
    let (Some(client), Some(token)) = (seen["client_id"].as_str(), seen["token"].as_str()) else {
        panic!("no token_seen result in {answer}");
    };
    (client.to_owned(), token.to_owned())
}

/// A backend whose authorization server only takes dynamic registration
/// (FastMCP's): passgate registers once for everyone, each person connects
/// and gets tokens of their own, an expired one is refreshed, and when the
/// server forgets every token the person is asked to connect again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fastmcp_server_with_its_own_oauth_is_reached_with_each_persons_token() {
    let fastmcp = FastMcpOAuth::start().await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://localhost:{port}");
    let file = gateway_file(
        dir.path(),
        &[("b", format!("{}/mcp", fastmcp.base), "[route.oauth]")],
    );
    let _gateway = Passgate::start_on(
        port,
        dir.path(),
        None,
        &["--gateway-config", file.to_str().unwrap()],
        "warn",
        &[],
    );
    let route = format!("{base}/mcp/b");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    let mut seen = Vec::new();
    let mut people = Vec::new();
    for name in ["ann", "ben"] {
        let mut browser = person(dir.path(), &base, name).await;
        let user_id = own_user_id(&base, &mut browser).await;
        let (_, token) = route_token(&mut browser, &base, &route).await;
        let (_, answer) = call(&route, &token, "token_seen").await;
        assert_eq!(answer["error"]["code"], -32042, "{answer}");
        // Connect: FastMCP's server approves by itself and sends the
        // browser straight back.
        let authorize = press_connect(&mut browser, &base, "/mcp/b").await;
        let back = http.get(&authorize).send().await.unwrap();
        assert!(
            back.status().is_redirection(),
            "{}",
            back.text().await.unwrap()
        );
        let callback = back.headers()["location"].to_str().unwrap().to_owned();
        assert!(
            callback.starts_with(&format!("{base}/account/backends/callback?")),
            "{callback}"
        );
        let done = browser.get(&base, &callback).await;
        assert_eq!(
            done.location.as_deref(),
            Some("/account?notice=backend-connected"),
            "{}",
            done.body
        );
        let (status, answer) = call(&route, &token, "token_seen").await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        seen.push(token_seen(&answer));
        people.push((user_id, token));
    }
    assert_eq!(seen[0].0, seen[1].0, "one registration serves everyone");
    assert_ne!(seen[0].1, seen[1].1, "each person has tokens of their own");

    // Expired: refreshed with FastMCP's server, a new access token.
    let (ann_id, ann_token) = &people[0];
    expire(dir.path(), ann_id).await;
    let (_, answer) = call(&route, ann_token, "token_seen").await;
    let refreshed = token_seen(&answer);
    assert_eq!(refreshed.0, seen[0].0);
    assert_ne!(refreshed.1, seen[0].1, "a refreshed access token");
    let (_, answer) = call(&route, &people[1].1, "token_seen").await;
    assert_eq!(
        token_seen(&answer),
        seen[1],
        "the other person's tokens are untouched"
    );

    // The server forgets every token: the backend refuses, the refresh
    // too, and each person is asked to connect again.
    let forgotten: Value = http
        .post(format!("{}/_revoke_all", fastmcp.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(forgotten["forgotten"].as_u64().unwrap() >= 4, "{forgotten}");
    for (user_id, token) in &people {
        let (status, answer) = call(&route, token, "token_seen").await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["error"]["code"], -32042, "{answer}");
        assert!(stored_version(dir.path(), user_id).await.is_none());
    }
}
