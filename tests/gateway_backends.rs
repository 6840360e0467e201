//! passgate as a gateway in front of real MCP servers (docs/gateway.md):
//! FastMCP stateless and with sessions, the official TypeScript SDK's server
//! (sessions, SSE progress, an elicitation) and the Python SDK's `MCPServer`
//! on 2026-07-28, each reached by the official Python SDK client directly and
//! through passgate after a real sign-in. Every backend inspects every
//! request passgate forwards (tests/support/backends.rs) and the test reads
//! what it found. Then the refusals: a token for one route on another,
//! sealed session ids tampered with or presented by another person or on
//! another route, header/body mismatches, and backends that hang, close
//! mid-stream, answer garbage, redirect or are down; and two instances on
//! one store serving one client's alternating requests.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::{
    authenticator::SoftAuthenticator,
    backends::{Backend, Events, Kind, RawMcp, gateway_file, route_token, sdk_transcript},
    process::{Passgate, free_port, invite, person},
    remote::{RemoteBrowser, enroll},
};

/// The static credential the TypeScript backend's route is configured with.
const TS_BACKEND_KEY: &str = "ts-backend-key-4f1d2a9c7e";

fn route_extra(kind: Kind) -> &'static str {
    match kind {
        // Static credential and plain user headers on one route: the
        // backend checks both, and that Authorization still never arrives.
        Kind::TypeScript => {
            "forward_user_headers = true\nheaders = [ { name = \"X-Api-Key\", from_env = \"TS_BACKEND_KEY\" } ]"
        }
        _ => "",
    }
}

fn start_backend(kind: Kind, issuer: &str) -> Backend {
    match kind {
        Kind::TypeScript => Backend::start(
            kind,
            issuer,
            &[&format!("X-Api-Key={TS_BACKEND_KEY}")],
            true,
        ),
        _ => Backend::start(kind, issuer, &[], false),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_backends_answer_through_passgate_as_directly_and_see_no_client_credential() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let public = format!("http://localhost:{port}");
    let backends: Vec<Backend> = std::thread::scope(|scope| {
        let handles: Vec<_> = Kind::ALL
            .into_iter()
            .map(|kind| {
                let public = &public;
                scope.spawn(move || start_backend(kind, public))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let routes: Vec<_> = backends
        .iter()
        .map(|b| (b.kind.route(), b.gateway_url(), route_extra(b.kind)))
        .collect();
    let config = gateway_file(dir.path(), &routes);
    let server = Passgate::start_on(
        port,
        dir.path(),
        None,
        &["--gateway-config", config.to_str().unwrap()],
        "info",
        &[("TS_BACKEND_KEY", TS_BACKEND_KEY)],
    );
    let mut alice = person(dir.path(), &public, "alice").await;

    let mut secrets = vec![TS_BACKEND_KEY.to_owned()];
    let mut tokens = std::collections::HashMap::new();
    for backend in &backends {
        let route = format!("{public}/mcp/{}", backend.kind.route());
        let (client_id, token) = route_token(&mut alice, &public, &route).await;
        secrets.push(token.clone());
        let mode = backend.kind.client_mode();
        let (direct_url, token_for_client) = (backend.direct_url(), token.clone());
        let (mut direct, mut through) = tokio::task::spawn_blocking(move || {
            (
                sdk_transcript(&direct_url, mode, None),
                sdk_transcript(&route, mode, Some(&token_for_client)),
            )
        })
        .await
        .unwrap();
        let kind = backend.kind;
        assert_eq!(direct["whoami"], json!({"anonymous": true}), "{kind:?}");
        let who = through["whoami"].take();
        direct["whoami"].take();
        assert_eq!(
            direct, through,
            "{kind:?} answers differently through passgate"
        );
        // What each backend exercises, so that equality means something.
        assert_eq!(
            through["add"]["structured"],
            json!({"result": 42}),
            "{kind:?}"
        );
        if matches!(kind, Kind::FastMcpSessions | Kind::TypeScript) {
            assert_eq!(through["protocol_version"], "2025-11-25", "{kind:?}");
            // One backend session across calls: the sealed id comes back.
            assert_eq!(
                through["count"],
                json!([{"result": 1}, {"result": 2}, {"result": 3}]),
                "{kind:?}"
            );
        }
        if kind == Kind::PythonModern {
            assert_eq!(through["protocol_version"], "2026-07-28");
        }
        if kind != Kind::FastMcpStateless {
            assert_eq!(
                through["progress"]["notifications"],
                json!([
                    [1.0, 3.0, "step 1"],
                    [2.0, 3.0, "step 2"],
                    [3.0, 3.0, "step 3"]
                ]),
                "{kind:?}: progress notifications"
            );
            assert_eq!(
                through["greet"]["text"],
                json!(["Hello, Ada!"]),
                "{kind:?}: the elicitation round trip"
            );
            assert_eq!(through["elicitations"], json!(["What is your name?"]));
        }
        // The identity the backend verified is alice's, for this client and
        // this backend.
        assert_eq!(who["iss"], public.as_str(), "{kind:?}: {who}");
        assert_eq!(who["aud"], backend.gateway_url(), "{kind:?}: {who}");
        assert_eq!(who["client_id"], client_id.as_str(), "{kind:?}: {who}");
        assert_eq!(who["name"], "alice", "{kind:?}: {who}");
        assert!(who["sub"].as_str().is_some_and(|s| !s.is_empty()), "{who}");
        assert_eq!(who["groups"], json!([]), "{kind:?}: {who}");
        tokens.insert(kind, token);
    }
    for backend in &backends {
        backend.assert_clean().await;
    }

    // A token is for its own route only: 401, and the challenge names the
    // route's own metadata, which names the route as the resource.
    let http = reqwest::Client::new();
    let fastmcp = format!("{public}/mcp/{}", Kind::FastMcpStateless.route());
    let before = backends[0].report().await.requests;
    let wrong = RawMcp::new(&tokens[&Kind::TypeScript])
        .post(
            &fastmcp,
            &json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401, "a token for another route");
    let challenge = wrong.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    let metadata_url = format!(
        "{public}/.well-known/oauth-protected-resource/mcp/{}",
        Kind::FastMcpStateless.route()
    );
    assert!(
        challenge.contains(&format!("resource_metadata=\"{metadata_url}\"")),
        "{challenge}"
    );
    let metadata: Value = http
        .get(&metadata_url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(metadata["resource"], fastmcp.as_str());
    assert_eq!(
        backends[0].report().await.requests,
        before,
        "a refused request reached the backend"
    );

    sealed_sessions_are_refused_when_tampered_or_misplaced(dir.path(), &public, &backends, &tokens)
        .await;
    for backend in &backends {
        backend.assert_clean().await;
    }

    // Nothing secret in passgate's log: no token, no static credential, no
    // client-planted value; and the calls were logged.
    let log = server.output();
    for secret in &secrets {
        assert!(!log.contains(secret.as_str()), "a secret in passgate's log");
    }
    assert!(
        !log.contains("planted-by-client"),
        "a planted value in the log:\n{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("typescript") && l.contains("tools/call") && l.contains("greet")),
        "no log line for the forwarded call:\n{log}"
    );
}

/// The TypeScript backend's sessions through passgate: the client holds a
/// sealed id, never the backend's; a tampered id, another person's use of
/// it, and its use on another route are refused (404) and never reach a
/// backend.
async fn sealed_sessions_are_refused_when_tampered_or_misplaced(
    dir: &std::path::Path,
    public: &str,
    backends: &[Backend],
    tokens: &std::collections::HashMap<Kind, String>,
) {
    let backend = |kind: Kind| backends.iter().find(|b| b.kind == kind).unwrap();
    let ts = backend(Kind::TypeScript);
    let ts_route = format!("{public}/mcp/{}", Kind::TypeScript.route());
    let mut alice = RawMcp::new(&tokens[&Kind::TypeScript]);
    alice.initialize(&ts_route).await;
    let sealed = alice
        .session
        .clone()
        .expect("a session id through passgate");
    let report: Value = reqwest::get(format!("http://127.0.0.1:{}/_report", ts.direct_port))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let issued: Vec<&str> = report["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert!(!issued.is_empty());
    assert!(
        !issued.iter().any(|id| sealed.contains(id)),
        "the backend's session id reached the client"
    );
    let counted = alice.call(&ts_route, 1, "count", json!({})).await;
    assert_eq!(
        counted["result"]["structuredContent"]["result"], 1,
        "{counted}"
    );

    let count = json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"count","arguments":{}}});
    let refused = |what: &'static str, response: reqwest::Response| async move {
        assert_eq!(response.status(), 404, "{what}");
        // passgate's own answer (the backend's request count, checked
        // below, shows it was not asked).
        assert_jsonrpc_error(&response.text().await.unwrap(), what);
    };

    // Tampered: one character of the sealed id changed.
    let before = ts.report().await.requests;
    let mut tampered = RawMcp::new(&tokens[&Kind::TypeScript]);
    let mut chars: Vec<char> = sealed.chars().collect();
    let middle = chars.len() / 2;
    chars[middle] = if chars[middle] == 'A' { 'B' } else { 'A' };
    tampered.session = Some(chars.into_iter().collect());
    refused(
        "a tampered session id",
        tampered.post(&ts_route, &count).send().await.unwrap(),
    )
    .await;
    let mut garbage = RawMcp::new(&tokens[&Kind::TypeScript]);
    garbage.session = Some("not-a-sealed-id".into());
    refused(
        "a made-up session id",
        garbage.post(&ts_route, &count).send().await.unwrap(),
    )
    .await;

    // Another person, with their own valid token for the same route.
    let mut bob_browser = person(dir, public, "bob").await;
    let (_, bob_token) = route_token(&mut bob_browser, public, &ts_route).await;
    let mut bob = RawMcp::new(&bob_token);
    bob.session = Some(sealed.clone());
    refused(
        "another person's session id",
        bob.post(&ts_route, &count).send().await.unwrap(),
    )
    .await;
    assert_eq!(
        ts.report().await.requests,
        before,
        "a refused session id was forwarded"
    );

    // Another route, with alice's valid token for that route.
    let other = backend(Kind::FastMcpSessions);
    let other_route = format!("{public}/mcp/{}", Kind::FastMcpSessions.route());
    let other_before = other.report().await.requests;
    let mut misplaced = RawMcp::new(&tokens[&Kind::FastMcpSessions]);
    misplaced.session = Some(sealed.clone());
    refused(
        "a session id of another route",
        misplaced.post(&other_route, &count).send().await.unwrap(),
    )
    .await;
    assert_eq!(other.report().await.requests, other_before);

    // The real session still works afterwards.
    let counted = alice.call(&ts_route, 3, "count", json!({})).await;
    assert_eq!(
        counted["result"]["structuredContent"]["result"], 2,
        "{counted}"
    );
}

/// A backend that misbehaves in one way per path, on a raw socket so that
/// anything (even not-HTTP) can be answered.
async fn misbehaving_backend() -> (u16, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                // Enough to see the request line and the end of the headers.
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&request).into_owned();
                let path = head.split_whitespace().nth(1).unwrap_or("").to_owned();
                match path.as_str() {
                    "/hang" => tokio::time::sleep(Duration::from_secs(3600)).await,
                    "/garbage" => {
                        let _ = socket.write_all(b"this is not HTTP at all\r\n\r\n").await;
                    }
                    "/redirect" => {
                        let _ = socket
                            .write_all(
                                b"HTTP/1.1 307 Temporary Redirect\r\nlocation: http://127.0.0.1:9/stolen\r\ncontent-length: 0\r\n\r\n",
                            )
                            .await;
                    }
                    "/midstream" => {
                        let event = "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progressToken\":1,\"progress\":1}}\n\n";
                        let chunk = format!("{:x}\r\n{event}\r\n", event.len());
                        let _ = socket
                            .write_all(
                                format!("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n{chunk}").as_bytes(),
                            )
                            .await;
                        // Then the connection drops without the last chunk.
                    }
                    _ => {
                        let _ = socket
                            .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
                            .await;
                    }
                }
            });
        }
    });
    (port, task)
}

fn assert_jsonrpc_error(body: &str, what: &str) -> Value {
    let value: Value =
        serde_json::from_str(body).unwrap_or_else(|_| panic!("{what}: not JSON: {body}"));
    assert_eq!(value["jsonrpc"], "2.0", "{what}: {body}");
    assert!(value["error"]["code"].is_i64(), "{what}: {body}");
    value
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaving_backends_and_bad_requests_get_clean_errors() {
    let (bad_port, _task) = misbehaving_backend().await;
    let down_port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let public = format!("http://localhost:{port}");
    let route = |path: &str| format!("http://127.0.0.1:{bad_port}/{path}");
    let config = gateway_file(
        dir.path(),
        &[
            ("hang", route("hang"), "timeout_secs = 2"),
            ("garbage", route("garbage"), ""),
            ("redirect", route("redirect"), ""),
            ("midstream", route("midstream"), ""),
            ("down", format!("http://127.0.0.1:{down_port}/mcp"), ""),
        ],
    );
    let server = Passgate::start_on_alive(
        port,
        dir.path(),
        &["--gateway-config", config.to_str().unwrap()],
        "info",
    );
    // Readiness covers the backends: some are down or broken.
    let ready = reqwest::get(format!("{public}/readyz")).await.unwrap();
    assert_eq!(ready.status(), 503, "/readyz with backends down");
    let mut alice = person(dir.path(), &public, "alice").await;
    let list = json!({"jsonrpc":"2.0","id":7,"method":"tools/list"});

    let mut tokens = Vec::new();
    for (name, status) in [
        ("hang", 504),
        ("garbage", 502),
        ("redirect", 502),
        ("down", 502),
    ] {
        let url = format!("{public}/mcp/{name}");
        let (_, token) = route_token(&mut alice, &public, &url).await;
        let started = std::time::Instant::now();
        let response = RawMcp::new(&token).post(&url, &list).send().await.unwrap();
        assert_eq!(response.status(), status, "{name}");
        assert!(
            response.headers().get("location").is_none(),
            "{name}: a redirect passed"
        );
        let body = response.text().await.unwrap();
        let error = assert_jsonrpc_error(&body, name);
        assert_eq!(
            error["id"], 7,
            "{name}: the error answers the request: {body}"
        );
        assert!(!body.contains("stolen"), "{name}: {body}");
        if name == "hang" {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the timeout did not apply"
            );
        }
        tokens.push(token);
    }

    // Closed mid-stream: the event that arrived is delivered, then the
    // stream ends; nothing hangs.
    let url = format!("{public}/mcp/midstream");
    let (_, token) = route_token(&mut alice, &public, &url).await;
    let response = RawMcp::new(&token).post(&url, &list).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-accel-buffering"], "no");
    let mut events = Events::new(response);
    let first = events.next_message().await;
    assert_eq!(first["method"], "notifications/progress");
    let rest = tokio::time::timeout(Duration::from_secs(30), events.remaining())
        .await
        .expect("the cut stream never ended");
    assert_eq!(rest, 0, "no made-up message after the cut");
    tokens.push(token);

    // 2026-07-28 header/body mismatches are refused before forwarding: the
    // hanging backend would otherwise make this a 504.
    let hang = format!("{public}/mcp/hang");
    let modern = |name_header: &str, method_header: &str, header_version: &str| {
        RawMcp::new(&tokens[0])
            .post_as(
                &hang,
                &json!({"jsonrpc":"2.0","id":9,"method":"tools/call","params":{
                    "name":"delete_everything","arguments":{},
                    "_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}),
                header_version,
            )
            .header("mcp-method", method_header)
            .header("mcp-name", name_header)
    };
    for (what, request) in [
        (
            "Mcp-Name of another tool",
            modern("add", "tools/call", "2026-07-28"),
        ),
        (
            "Mcp-Method of another method",
            modern("delete_everything", "tools/list", "2026-07-28"),
        ),
        (
            "MCP-Protocol-Version not the body's",
            modern("delete_everything", "tools/call", "2025-11-25"),
        ),
    ] {
        let response = request
            .timeout(Duration::from_secs(20))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(response.status(), 400, "{what}");
        let body = response.text().await.unwrap();
        let error = assert_jsonrpc_error(&body, what);
        assert_eq!(error["error"]["code"], -32020, "{what}: {body}");
        assert_eq!(
            error["id"], 9,
            "{what}: the refusal answers the request: {body}"
        );
    }

    // passgate is well and wrote no secret.
    let health = reqwest::get(format!("{public}/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    let log = server.output();
    assert!(!log.contains("panicked"), "{log}");
    for token in &tokens {
        assert!(!log.contains(token.as_str()), "a token in passgate's log");
    }
}

/// 200 flows of one client over two instances on one SQLite store: each
/// flow signs in (requests alternating, as in tests/two_instances.rs), then
/// opens a session with the TypeScript backend through one instance, counts
/// on the other, and answers the backend's elicitation on the other
/// instance than the one whose stream asked: 0 failures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_one_store_forward_sessions_and_elicitations() {
    const FLOWS: usize = 200;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let public = format!("http://localhost:{port}");
    let backend = Backend::start(Kind::TypeScript, &public, &[], false);
    let config = gateway_file(dir.path(), &[("ts", backend.gateway_url(), "")]);
    let args = [
        "--gateway-config",
        config.to_str().unwrap(),
        "--trust-forwarded-for",
    ];
    // The public URL is instance a's own address (the backend fetches the
    // JWKS there); b serves the same public URL from another port.
    let a = Passgate::start_on(port, dir.path(), None, &args, "warn", &[]);
    let b = Passgate::start(dir.path(), Some(&public), &args);
    let (a, b) = (a.local(), b.local());
    let device = SoftAuthenticator::new();
    let link = invite(dir.path(), &public, "alice", false);
    let mut first = RemoteBrowser::new(&public);
    enroll(&mut first, &a, &device, &link, "alice").await;

    let route = format!("{public}/mcp/ts");
    let mut http = RemoteBrowser::new(&public);
    let client = support::remote::McpClient::register(
        &mut http,
        &b,
        "Alternating gateway flows",
        "http://127.0.0.1:33418/callback",
        Some(route.clone()),
    )
    .await;
    for flow in 0..FLOWS {
        let (x, y) = if flow % 2 == 0 { (&a, &b) } else { (&b, &a) };
        let mut browser = RemoteBrowser::new(&public).forwarded_for(&format!(
            "198.51.{}.{}",
            100 + flow / 250,
            flow % 250 + 1
        ));
        support::remote::sign_in(&mut browser, (x, y), &device).await;
        let state = format!("flow-{flow}");
        let (verifier, authorize) = client.authorize(&state);
        let back = support::remote::approve(&mut browser, &[y, x], &authorize).await;
        assert_eq!(back.get("state"), Some(&state), "flow {flow}");
        let tokens = client.redeem(&mut http, x, &back["code"], &verifier).await;
        assert!(tokens.status.is_success(), "flow {flow}: {}", tokens.body);
        let token = tokens.json()["access_token"].as_str().unwrap().to_owned();

        let on = |base: &str| route.replacen(&public, base, 1);
        let mut mcp = RawMcp::new(&token);
        mcp.initialize(&on(x)).await;
        for (n, base) in [x, y, x].into_iter().enumerate() {
            let counted = mcp.call(&on(base), 10 + n as u64, "count", json!({})).await;
            assert_eq!(
                counted["result"]["structuredContent"]["result"],
                n + 1,
                "flow {flow}: count through {base}: {counted}"
            );
        }
        elicitation_across_instances(&mcp, &on(y), &on(x), flow).await;
    }
    backend.assert_clean().await;
}

/// `greet` on `asking`'s stream; the elicitation's answer posted to
/// `answering`; the result back on the first stream.
async fn elicitation_across_instances(mcp: &RawMcp, asking: &str, answering: &str, flow: usize) {
    let response = mcp
        .post(
            asking,
            &json!({"jsonrpc":"2.0","id":20,"method":"tools/call","params":{"name":"greet","arguments":{}}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "flow {flow}: greet");
    let mut events = Events::new(response);
    let request = events.next_message().await;
    assert_eq!(
        request["method"], "elicitation/create",
        "flow {flow}: {request}"
    );
    let answer = mcp
        .post(
            answering,
            &json!({"jsonrpc":"2.0","id":request["id"],"result":{"action":"accept","content":{"name":"Ada"}}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        answer.status(),
        202,
        "flow {flow}: the elicitation's answer"
    );
    let result = events.next_message().await;
    assert_eq!(result["id"], 20, "flow {flow}: {result}");
    assert_eq!(
        result["result"]["structuredContent"]["result"], "Hello, Ada!",
        "flow {flow}: {result}"
    );
}

/// JSON-RPC 2.0: an error answers its request, with the request's id,
/// whenever the id could be read; an SDK matches answers by id and would
/// wait for an answer with `null` until its own timeout.
#[tokio::test]
async fn gateway_errors_carry_the_request_id() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let public = format!("http://localhost:{port}");
    let down = format!("http://127.0.0.1:{}/mcp", free_port());
    let config = gateway_file(dir.path(), &[("down", down, "")]);
    let _server = Passgate::start_on_alive(
        port,
        dir.path(),
        &["--gateway-config", config.to_str().unwrap()],
        "warn",
    );
    let mut alice = person(dir.path(), &public, "alice").await;
    let url = format!("{public}/mcp/down");
    let (_, token) = route_token(&mut alice, &public, &url).await;
    for id in [json!(7), json!("call-7")] {
        let response = RawMcp::new(&token)
            .post(
                &url,
                &json!({"jsonrpc":"2.0","id":id,"method":"tools/list"}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 502);
        let body = response.text().await.unwrap();
        let error = assert_jsonrpc_error(&body, "down");
        assert_eq!(
            error["id"], id,
            "the error does not answer the request: {body}"
        );
    }
}
