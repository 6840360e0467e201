//! stdio routes through the real `passgate serve`: real stdio MCP servers
//! from the registries (`mcp-server-time` from PyPI, tests/py;
//! `@modelcontextprotocol/server-everything` from npm, tests/js) run by
//! passgate as children, reached by people who signed in with passkeys and
//! an OAuth client (`support/remote.rs`). Children are counted in `/proc`
//! as passgate's own.
//!
//! Run with `cargo test --all-features --test stdio`.

mod support;

use std::{path::PathBuf, time::Duration};

use futures_util::StreamExt;
use serde_json::{Value, json};
use support::{
    authenticator::SoftAuthenticator,
    process::{Passgate, children_of, invite, node, python, zombies_of},
    remote::{McpClient, RemoteBrowser, approve_consent, enroll, sign_in},
};

const PEOPLE: usize = 20;
const CYCLES: usize = 200;
// Longer than a person waits between cycles on a slow machine, so their
// child stays; the test waits it out once at the end.
const IDLE_SECS: u64 = 60;

/// Where tests/js's packages are: `PASSGATE_JS_MODULES` or tests/js/node_modules.
fn js_modules() -> PathBuf {
    std::env::var_os("PASSGATE_JS_MODULES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/js/node_modules"))
}

fn gateway_file(dir: &std::path::Path) -> PathBuf {
    let everything = js_modules().join("@modelcontextprotocol/server-everything/dist/index.js");
    assert!(
        everything.exists(),
        "{} is missing: run scripts/install-test-deps.sh",
        everything.display()
    );
    let toml = format!(
        r#"
[[route]]
name = "time"
stdio = {{ command = {python:?}, args = ["-m", "mcp_server_time", "--local-timezone=UTC"], max_children = {PEOPLE}, idle_timeout_secs = {IDLE_SECS} }}

[[route]]
name = "everything"
stdio = {{ command = {node:?}, args = [{everything:?}, "stdio"], max_children = 5, idle_timeout_secs = 600 }}
"#,
        python = python().display().to_string(),
        node = node().display().to_string(),
        everything = everything.display().to_string(),
    );
    let path = dir.join("gateway.toml");
    std::fs::write(&path, toml).unwrap();
    path
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..900 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} did not happen within 90 s");
}

/// A person: their passkey device.
struct Person {
    device: SoftAuthenticator,
}

/// One MCP session on a route, over plain Streamable HTTP.
struct Session {
    http: reqwest::Client,
    url: String,
    token: String,
    id: String,
}

impl Session {
    async fn open(base: &str, route: &str, token: &str) -> Session {
        let http = reqwest::Client::new();
        let url = format!("{base}/mcp/{route}");
        let response = post(&http, &url, token, None, &initialize()).await;
        assert_eq!(response.status(), 200);
        let id = response
            .headers()
            .get("mcp-session-id")
            .expect("a session id")
            .to_str()
            .unwrap()
            .to_owned();
        let answer: Value = response.json().await.unwrap();
        assert!(answer["result"]["serverInfo"].is_object(), "{answer}");
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let response = post(&http, &url, token, Some(&id), &note).await;
        assert_eq!(response.status(), 202);
        Session {
            http,
            url,
            token: token.to_owned(),
            id,
        }
    }

    async fn send(&self, message: &Value) -> reqwest::Response {
        post(&self.http, &self.url, &self.token, Some(&self.id), message).await
    }

    /// Every message answering `message`, the response last.
    async fn request(&self, message: &Value) -> Vec<Value> {
        let response = self.send(message).await;
        assert_eq!(response.status(), 200);
        let sse = response
            .headers()
            .get("content-type")
            .is_some_and(|v| v.to_str().unwrap().starts_with("text/event-stream"));
        if !sse {
            return vec![response.json().await.unwrap()];
        }
        events(response.text().await.unwrap().as_bytes())
    }
}

fn initialize() -> Value {
    json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {"elicitation": {}},
        "clientInfo": {"name": "passgate-stdio-test", "version": "1"},
    }})
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    session: Option<&str>,
    message: &Value,
) -> reqwest::Response {
    let mut request = http
        .post(url)
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .body(message.to_string());
    if let Some(id) = session {
        request = request.header("mcp-session-id", id);
    }
    request.send().await.unwrap()
}

/// The JSON messages of an event stream's `data:` lines.
fn events(text: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(text)
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

/// Enrolls `PEOPLE` people and returns them.
async fn enroll_people(data: &std::path::Path, base: &str) -> Vec<Person> {
    let mut people = Vec::new();
    for i in 0..PEOPLE {
        let link = invite(data, base, &format!("person{i}"), i == 0);
        let device = SoftAuthenticator::new();
        let mut browser = RemoteBrowser::new(base).forwarded_for(&format!("198.51.100.{}", i + 1));
        enroll(&mut browser, base, &device, &link, &format!("Person {i}")).await;
        people.push(Person { device });
    }
    people
}

/// A whole sign-in: a new browser, /authorize for `resource`, the passkey,
/// consent, the code, the token.
async fn sign_in_for(base: &str, client: &McpClient, person: &Person, n: usize) -> String {
    // Each sign-in from its own address, as people are (the limits are
    // per address; the server trusts X-Forwarded-For).
    let mut browser =
        RemoteBrowser::new(base).forwarded_for(&format!("203.0.{}.{}", 113 + n / 250, n % 250 + 1));
    let state = format!("cycle-{n}");
    let (verifier, authorize) = client.authorize(&state);
    let to_consent = browser.get(base, &authorize).await;
    let consent_url = to_consent.location.clone().expect("to consent");
    let to_login = browser.get(base, &consent_url).await;
    assert!(
        to_login
            .location
            .as_deref()
            .unwrap_or("")
            .starts_with("/login"),
        "cycle {n}: {}",
        to_login.body
    );
    sign_in(&mut browser, (base, base), &person.device).await;
    let back = approve_consent(&mut browser, (base, base), &consent_url).await;
    let code = back.get("code").expect("a code");
    let mut http = RemoteBrowser::new(base).forwarded_for(&format!("192.0.2.{}", n % 250 + 1));
    let tokens = client.redeem(&mut http, base, code, &verifier).await;
    assert!(tokens.status.is_success(), "cycle {n}: {}", tokens.body);
    tokens.json()["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn stdio_routes_serve_signed_in_people_one_child_each_and_reap_them_all() {
    let dir = tempfile::tempdir().unwrap();
    let config = gateway_file(dir.path());
    let config = config.to_str().unwrap();
    let server = Passgate::start_logging(
        dir.path(),
        None,
        &["--gateway-config", config, "--trust-forwarded-for"],
        "warn,passgate::gateway=info",
    );
    let base = server.base.clone();
    let pid = server.pid();
    let enrolling = std::time::Instant::now();
    let people = enroll_people(dir.path(), &base).await;
    println!("{PEOPLE} people enrolled in {:?}", enrolling.elapsed());
    let mut http = RemoteBrowser::new(&base);
    let time_client = McpClient::register(
        &mut http,
        &base,
        "stdio test (time)",
        "http://127.0.0.1:33418/callback",
        Some(format!("{base}/mcp/time")),
    )
    .await;

    // 200 sign-in-and-call cycles over 20 people: one child per person,
    // never more, whatever the number of sessions.
    let time_children = || children_of(pid, "mcp_server_time");
    let started = std::time::Instant::now();
    for n in 0..CYCLES {
        if n % 20 == 0 {
            // Printed, never asserted: it depends on the machine's load.
            println!("cycle {n} after {:?}", started.elapsed());
        }
        let token = sign_in_for(&base, &time_client, &people[n % PEOPLE], n).await;
        let session = Session::open(&base, "time", &token).await;
        let answer = session
            .request(
                &json!({"jsonrpc": "2.0", "id": n, "method": "tools/call", "params": {
                    "name": "get_current_time", "arguments": {"timezone": "UTC"},
                }}),
            )
            .await;
        let last = answer.last().unwrap();
        assert_eq!(last["id"], n, "{answer:?}");
        assert!(
            last["result"]["content"][0]["text"]
                .as_str()
                .is_some_and(|t| t.contains("UTC")),
            "cycle {n}: {last}"
        );
        let live = time_children().len();
        assert!(
            live <= (n + 1).min(PEOPLE),
            "cycle {n}: {live} children for {} people",
            (n + 1).min(PEOPLE)
        );
    }
    // A session id is its person's: another person's token with it is 404.
    let alice = sign_in_for(&base, &time_client, &people[0], 1000).await;
    let bob = sign_in_for(&base, &time_client, &people[1], 1001).await;
    let alice_session = Session::open(&base, "time", &alice).await;
    let stolen = Session {
        token: bob,
        ..alice_session
    };
    let response = stolen
        .send(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .await;
    assert_eq!(response.status(), 404);

    // Idle past the timeout: every child is stopped and reaped. A child
    // that has exited is a zombie (with an empty command line) until
    // passgate's wait returns, which on a loaded machine takes a moment:
    // one left for good fails the wait.
    eventually("every idle child stopped and reaped", || {
        time_children().is_empty() && zombies_of(pid) == 0
    })
    .await;
    let log = server.output();
    assert!(log.contains("stopped an idle stdio server"), "{log}");
    for secret in [stolen.token.as_str(), alice.as_str()] {
        assert!(!log.contains(secret), "a token in the log");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn everything_server_through_passgate_progress_elicitation_crash_and_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let config = gateway_file(dir.path());
    let server = Passgate::start_logging(
        dir.path(),
        None,
        &["--gateway-config", config.to_str().unwrap()],
        "warn,passgate::gateway=info",
    );
    let base = server.base.clone();
    let pid = server.pid();
    let link = invite(dir.path(), &base, "alice", true);
    let person = Person {
        device: SoftAuthenticator::new(),
    };
    enroll(
        &mut RemoteBrowser::new(&base),
        &base,
        &person.device,
        &link,
        "Alice",
    )
    .await;
    let mut http = RemoteBrowser::new(&base);
    let client = McpClient::register(
        &mut http,
        &base,
        "stdio test (everything)",
        "http://127.0.0.1:33418/callback",
        Some(format!("{base}/mcp/everything")),
    )
    .await;
    let token = sign_in_for(&base, &client, &person, 0).await;
    // A token for another route does not open this one.
    let session = Session::open(&base, "everything", &token).await;

    let list = session
        .request(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .await;
    let tools = list.last().unwrap()["result"]["tools"]
        .as_array()
        .unwrap()
        .clone();
    assert!(
        tools
            .iter()
            .any(|t| t["name"] == "trigger-long-running-operation"),
        "{tools:?}"
    );

    // Progress: an event stream, the notifications before the result.
    let all = session
        .request(
            &json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
                "name": "trigger-long-running-operation",
                "arguments": {"duration": 1, "steps": 4},
                "_meta": {"progressToken": "p"},
            }}),
        )
        .await;
    let progress = all
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .count();
    assert_eq!(progress, 4, "{all:?}");
    assert_eq!(all.last().unwrap()["id"], 2);

    // Elicitation: the request arrives on the call's stream, the answer is
    // a POST of its own, the result follows on the same stream.
    let response = session
        .send(
            &json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
                "name": "trigger-elicitation-request", "arguments": {},
            }}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let mut stream = response.bytes_stream();
    let mut buffer = Vec::new();
    let mut answered = false;
    let result = 'read: loop {
        let chunk = stream.next().await.expect("the stream goes on").unwrap();
        buffer.extend_from_slice(&chunk);
        while let Some(end) = buffer.windows(2).position(|w| w == b"\n\n") {
            let event: Vec<u8> = buffer.drain(..end + 2).collect();
            for message in events(&event) {
                if message["method"] == "elicitation/create" {
                    let reply = json!({"jsonrpc": "2.0", "id": message["id"], "result": {"action": "decline"}});
                    assert_eq!(session.send(&reply).await.status(), 202);
                    answered = true;
                } else if message.get("method").is_none() {
                    break 'read message;
                }
            }
        }
    };
    assert!(answered, "the server asked");
    assert_eq!(result["id"], 3, "{result}");
    assert!(result.get("result").is_some(), "{result}");

    // The child dies mid-call: a JSON-RPC error, then the next call works
    // on a new child.
    let child = children_of(pid, "server-everything");
    assert_eq!(child.len(), 1);
    let slow = json!({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {
        "name": "trigger-long-running-operation", "arguments": {"duration": 60, "steps": 60},
        "_meta": {"progressToken": "slow"},
    }});
    let response = session.send(&slow).await;
    let mut stream = response.bytes_stream();
    // The first progress event says the call is under way.
    let first = stream.next().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("notifications/progress"));
    std::process::Command::new("kill")
        .args(["-9", &child[0].to_string()])
        .status()
        .unwrap();
    let mut rest = first.to_vec();
    while let Some(chunk) = stream.next().await {
        rest.extend_from_slice(&chunk.unwrap());
    }
    let last = events(&rest).pop().unwrap();
    assert_eq!(last["id"], 4);
    assert_eq!(last["error"]["code"], -32603, "{last}");
    let again = session
        .request(&json!({"jsonrpc": "2.0", "id": 5, "method": "tools/list"}))
        .await;
    assert_eq!(again.last().unwrap()["id"], 5, "{again:?}");
    let now = children_of(pid, "server-everything");
    assert_eq!(now.len(), 1);
    assert_ne!(now, child);
    let log = server.output();
    assert!(log.contains("stdio server exited"), "{log}");
    assert!(!log.contains(&token), "a token in the log");

    // Shutdown stops every child (an orphan would live on under init).
    let mut server = server;
    server.terminate();
    server.wait_exit(Duration::from_secs(60));
    eventually("children stopped on shutdown", || {
        now.iter().all(|pid| {
            // Gone, or a zombie waiting for init: either way not running.
            std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
                stat[stat.rfind(')').unwrap() + 2..].starts_with('Z')
            })
        })
    })
    .await;
}
