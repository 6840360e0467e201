//! The gateway on the Lambda build, under `cargo lambda watch`
//! (`support/lambda.rs`, which streams: it relays a function's response
//! stream chunk by chunk) with its state in DynamoDB on moto: passgate
//! forwards `/mcp` to a backend that answers with server-sent events 200 ms
//! apart and checks every request's SigV4 signature the way AWS does
//! (`support/sigv4.rs`). The events must reach the client spread out, as
//! the backend sent them, not all at once when the invocation ends; JSON
//! answers stay JSON. A stdio route stops the Lambda build at start-up.
//!
//! Run with `cargo test --all-features --test lambda_gateway`.

#![cfg(all(feature = "lambda", feature = "dynamodb"))]

mod support;

use std::{
    collections::HashMap,
    convert::Infallible,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{
    body::{Body, Bytes},
    extract::State,
    http::{HeaderMap, Method, Uri},
    response::{IntoResponse, Response},
};
use futures_util::StreamExt;
use passgate::crypto::MasterKey;
use serde_json::{Value, json};
use support::{
    authenticator::SoftAuthenticator,
    lambda,
    moto::{self, REGION},
    remote::{McpClient, RemoteBrowser, approve_consent, enroll, sign_in},
    sigv4::Verifier,
};

const TABLE: &str = "passgate-lambda-gateway";
const EVENTS: usize = 5;
const EVENT_GAP: Duration = Duration::from_millis(200);

#[derive(Clone)]
struct Backend {
    verifier: Arc<Verifier>,
    /// Each request's verification result.
    checked: Arc<Mutex<Vec<Result<(), String>>>>,
}

/// The backend: every request must carry a valid SigV4 signature (else
/// 403, as a Function URL with AWS_IAM auth answers); `tools/call` is
/// answered with progress events 200 ms apart and then the result, any
/// other request with JSON.
async fn backend(
    State(backend): State<Backend>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let verified = backend.verifier.verify(&method, &uri, &headers, &body);
    backend.checked.lock().unwrap().push(verified.clone());
    if let Err(reason) = verified {
        return (http::StatusCode::FORBIDDEN, reason).into_response();
    }
    let message: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let id = message["id"].clone();
    if message["method"] != "tools/call" {
        return axum::Json(json!({"jsonrpc": "2.0", "id": id, "result": {"tools": [
            {"name": "slow", "inputSchema": {"type": "object"}}
        ]}}))
        .into_response();
    }
    let events = futures_util::stream::unfold(0usize, move |i| {
        let id = id.clone();
        async move {
            if i > EVENTS {
                return None;
            }
            if i > 0 {
                tokio::time::sleep(EVENT_GAP).await;
            }
            let message = if i < EVENTS {
                json!({"jsonrpc": "2.0", "method": "notifications/progress",
                       "params": {"progressToken": "t", "progress": i}})
            } else {
                json!({"jsonrpc": "2.0", "id": id, "result": {"content": [{"type": "text", "text": "done"}]}})
            };
            let event = format!("event: message\ndata: {message}\n\n");
            Some((Ok::<_, Infallible>(event), i + 1))
        }
    });
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(events))
        .unwrap()
}

async fn start_backend() -> (String, Backend) {
    let state = Backend {
        verifier: Arc::new(Verifier {
            // moto's credentials, which the function also has.
            secrets: HashMap::from([("testing".to_owned(), "testing".to_owned())]),
            service: "lambda",
            region: REGION,
        }),
        checked: Arc::default(),
    };
    let app = axum::Router::new()
        .fallback(backend)
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/mcp"), state)
}

fn first_admin_link(output: &str, public: &str) -> Option<String> {
    output
        .split_whitespace()
        .find(|word| word.starts_with(public) && word.contains("token="))
        .map(str::to_owned)
}

/// A dead or stuck function fails the test within a minute instead of
/// hanging it: the whole exchange, streamed body included, has that long.
async fn post(token: &str, url: &str, message: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(url)
        .timeout(std::time::Duration::from_secs(60))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .body(message.to_string())
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn lambda_streams_a_signed_backends_events_as_they_come() {
    let moto = moto::Moto::start();
    moto.dynamo_store(TABLE).await;
    let (backend_url, backend) = start_backend().await;
    let mut lambda = lambda::Lambda::start();
    let public = lambda.base_url();
    lambda.start_function([
        ("AWS_ENDPOINT_URL", moto.endpoint()),
        ("AWS_REGION", REGION.into()),
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
        ("PASSGATE_STORE", "dynamodb".into()),
        ("PASSGATE_DYNAMODB_TABLE", TABLE.into()),
        ("PASSGATE_MASTER_KEY", MasterKey::generate_secret()),
        ("PASSGATE_PUBLIC_URL", public.clone()),
        ("PASSGATE_BACKEND", backend_url),
        ("PASSGATE_BACKEND_SIGV4_SERVICE", "lambda".into()),
        ("PASSGATE_BACKEND_SIGV4_REGION", REGION.into()),
    ]);

    // A person signs in; their client gets a token for /mcp.
    let link = first_admin_link(&lambda.function_output(), &public)
        .unwrap_or_else(|| panic!("no first-admin link\n{}", lambda.output()));
    let device = SoftAuthenticator::new();
    let mut browser = RemoteBrowser::new(&public);
    enroll(&mut browser, &public, &device, &link, "Alice").await;
    let mut http = RemoteBrowser::new(&public);
    let client = McpClient::register(
        &mut http,
        &public,
        "lambda gateway test",
        "http://127.0.0.1:33418/callback",
        Some(format!("{public}/mcp")),
    )
    .await;
    let (verifier, authorize) = client.authorize("s");
    let consent = browser.get(&public, &authorize).await.location.unwrap();
    sign_in(&mut browser, (&public, &public), &device).await;
    let back = approve_consent(&mut browser, (&public, &public), &consent).await;
    let tokens = client
        .redeem(&mut http, &public, &back["code"], &verifier)
        .await;
    let token = tokens.json()["access_token"].as_str().unwrap().to_owned();
    let mcp = format!("{public}/mcp");

    // JSON stays JSON.
    let response = post(
        &token,
        &mcp,
        &json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}),
    )
    .await;
    assert_eq!(response.status(), 200, "{}", lambda.output());
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json")
    );
    let list: Value = response.json().await.unwrap();
    assert_eq!(list["result"]["tools"][0]["name"], "slow", "{list}");

    // The event stream arrives event by event.
    let call = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                      "params": {"name": "slow", "arguments": {}, "_meta": {"progressToken": "t"}}});
    let sent = Instant::now();
    let response = post(&token, &mcp, &call).await;
    assert_eq!(response.status(), 200, "{}", lambda.output());
    let mut stream = response.bytes_stream();
    let mut buffer = Vec::new();
    let mut arrivals = Vec::new();
    while let Some(chunk) = stream.next().await {
        buffer.extend_from_slice(&chunk.unwrap());
        let now = sent.elapsed();
        while let Some(end) = buffer.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = buffer.drain(..end + 2).collect();
            if String::from_utf8_lossy(&event).contains("data: ") {
                arrivals.push(now);
            }
        }
    }
    assert_eq!(
        arrivals.len(),
        EVENTS + 1,
        "{}",
        String::from_utf8_lossy(&buffer)
    );
    // Printed, not asserted beyond the spread: it depends on the load.
    println!("event arrivals after the request (Lambda build): {arrivals:?}");
    let spread = arrivals[EVENTS] - arrivals[0];
    // Sent 5 x 200 ms apart; buffered, they would all arrive together.
    assert!(
        spread >= EVENT_GAP * (EVENTS as u32) / 2,
        "events arrived within {spread:?} of each other: buffered, not streamed ({arrivals:?})"
    );
    let distinct = arrivals
        .windows(2)
        .filter(|w| w[1] - w[0] >= EVENT_GAP / 2)
        .count();
    assert!(distinct >= EVENTS - 2, "{arrivals:?}");

    // Every request the backend received was signed for it.
    let checked = backend.checked.lock().unwrap().clone();
    assert_eq!(checked.len(), 2);
    assert!(checked.iter().all(Result::is_ok), "{checked:?}");
}

#[test]
fn the_lambda_build_refuses_stdio_routes_at_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gateway.toml");
    std::fs::write(
        &file,
        "[[route]]\nname = \"time\"\nstdio = { command = \"uvx\", args = [\"mcp-server-time\"] }\n",
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_passgate"))
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9")
        .env(
            "PASSGATE_PUBLIC_URL",
            "https://abc.lambda-url.eu-west-1.on.aws",
        )
        .env("PASSGATE_GATEWAY_CONFIG", &file)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        err.contains("gateway route \"time\" runs a command (stdio)"),
        "{err}"
    );
    assert!(err.contains("passgate serve"), "{err}");
}
