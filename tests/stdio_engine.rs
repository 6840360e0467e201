//! The stdio backend engine (`passgate::gateway::stdio`) with real stdio
//! MCP servers from the registries: `@modelcontextprotocol/server-everything`
//! (npm, tests/js) and `mcp-server-time` (PyPI, tests/py). Children are real
//! processes of this test; they are counted in `/proc`.
//!
//! Run with `cargo test --all-features --test stdio_engine`.

mod support;

use std::{path::PathBuf, sync::Arc, time::Duration};

use passgate::gateway::stdio::{Relayed, StdioBackend, StdioConfig, StdioError, StdioRoute};
use serde_json::{Value, json};
use support::process::{children_of, node, python};
use tokio_util::sync::CancellationToken;

/// Where tests/js's packages are: `PASSGATE_JS_MODULES` or tests/js/node_modules.
fn js_modules() -> PathBuf {
    std::env::var_os("PASSGATE_JS_MODULES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/js/node_modules"))
}

fn everything() -> StdioConfig {
    let script = js_modules().join("@modelcontextprotocol/server-everything/dist/index.js");
    assert!(
        script.exists(),
        "{} is missing: run scripts/install-test-deps.sh",
        script.display()
    );
    config(node(), vec![script.display().to_string(), "stdio".into()])
}

fn time_server() -> StdioConfig {
    config(python(), vec!["-m".into(), "mcp_server_time".into()])
}

fn config(program: PathBuf, args: Vec<String>) -> StdioConfig {
    serde_json::from_value(json!({
        "command": program.display().to_string(),
        "args": args,
        "max_children": 20,
        "idle_timeout_secs": 600,
    }))
    .unwrap()
}

fn route(settings: StdioConfig) -> StdioRoute {
    StdioRoute::resolve(settings, |_| None).unwrap()
}

/// This process's children running `marker` (what the engine started;
/// the two tests run side by side), from /proc.
/// This test process's children running a command that contains `marker`.
fn children_running(marker: &str) -> Vec<u32> {
    children_of(std::process::id(), marker)
}

/// Waits (generously, for a loaded machine) until `check` holds.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..600 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} did not happen within 60 s");
}

fn request(id: u64, method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params})
}

/// Opens a session for `user` and returns its id and the handshake result.
async fn open(backend: &StdioBackend, user: &str) -> (String, Value) {
    let init = request(
        1,
        "initialize",
        json!({
            "protocolVersion": "2025-11-25",
            "capabilities": {"elicitation": {}},
            "clientInfo": {"name": "stdio-engine-test", "version": "1"},
        }),
    );
    let Relayed::Initialized { session_id, answer } =
        backend.relay(user, None, init).await.expect("initialize")
    else {
        panic!("initialize is not answered as a handshake");
    };
    assert_eq!(answer["id"], 1, "{answer}");
    let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    assert!(matches!(
        backend.relay(user, Some(&session_id), note).await,
        Ok(Relayed::Accepted)
    ));
    (session_id, answer["result"].clone())
}

/// Every message of a request, the response last.
async fn messages(backend: &StdioBackend, user: &str, session: &str, msg: Value) -> Vec<Value> {
    let Relayed::Stream(mut stream) = backend.relay(user, Some(session), msg).await.unwrap() else {
        panic!("a request is answered by a stream");
    };
    let mut all = Vec::new();
    while let Some(m) = stream.recv().await {
        let last = m.get("method").is_none();
        all.push(m);
        if last {
            break;
        }
    }
    all
}

#[tokio::test(flavor = "multi_thread")]
async fn time_server_per_person_children_cap_idle_reaping_and_shutdown() {
    let mut config = time_server();
    config.args.push("--local-timezone=Europe/Paris".into());
    config.max_children = 2;
    let children = || children_running("--local-timezone=Europe/Paris");
    let shutdown = CancellationToken::new();
    let backend = StdioBackend::new("time", route(config), shutdown.clone());

    let (alice, handshake) = open(&backend, "alice").await;
    assert_eq!(handshake["serverInfo"]["name"], "mcp-time", "{handshake}");
    let tools = messages(
        &backend,
        "alice",
        &alice,
        request(2, "tools/list", json!({})),
    )
    .await;
    let names: Vec<&str> = tools[0]["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"get_current_time"), "{names:?}");
    let call = request(
        3,
        "tools/call",
        json!({"name": "get_current_time", "arguments": {"timezone": "UTC"}}),
    );
    let answer = messages(&backend, "alice", &alice, call.clone()).await;
    assert_eq!(answer[0]["id"], 3);
    assert!(
        answer[0]["result"]["content"][0]["text"]
            .as_str()
            .unwrap()
            .contains("UTC"),
        "{answer:?}"
    );
    assert_eq!(children().len(), 1);

    // A second session of alice's shares her child; bob gets his own, and
    // alice's session id means nothing for him.
    let (alice2, again) = open(&backend, "alice").await;
    assert_eq!(again, handshake);
    assert_ne!(alice2, alice);
    assert_eq!(children().len(), 1);
    open(&backend, "bob").await;
    assert_eq!(children().len(), 2);
    assert!(matches!(
        backend.relay("bob", Some(&alice), call.clone()).await,
        Err(StdioError::UnknownSession)
    ));
    assert!(matches!(
        backend.relay("alice", None, call.clone()).await,
        Err(StdioError::UnknownSession)
    ));

    // The cap counts people: a third waits for a child to go.
    assert!(matches!(
        backend
            .relay("carol", None, request(1, "initialize", json!({})))
            .await,
        Err(StdioError::AtCapacity)
    ));
    assert_eq!(children().len(), 2);

    // Shutdown stops and reaps them all.
    shutdown.cancel();
    eventually("children reaped on shutdown", || children().is_empty()).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idle_child_is_reaped_and_its_sessions_end() {
    let mut config = time_server();
    config.args.push("--local-timezone=UTC".into());
    config.idle_timeout_secs = 2;
    let backend = StdioBackend::new("time", route(config), CancellationToken::new());
    let (session, _) = open(&backend, "erin").await;
    let idle_children = || children_running("--local-timezone=UTC");
    assert_eq!(idle_children().len(), 1);
    eventually("the idle child reaped", || idle_children().is_empty()).await;
    let call = request(2, "tools/list", json!({}));
    assert!(matches!(
        backend.relay("erin", Some(&session), call).await,
        Err(StdioError::UnknownSession)
    ));
    // A new session starts a new child.
    let (session, _) = open(&backend, "erin").await;
    let list = messages(
        &backend,
        "erin",
        &session,
        request(3, "tools/list", json!({})),
    )
    .await;
    assert_eq!(list[0]["id"], 3);
    backend.stop_all().await;
    assert!(idle_children().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn everything_server_progress_elicitation_and_a_crash_mid_call() {
    let backend: Arc<StdioBackend> =
        StdioBackend::new("everything", route(everything()), CancellationToken::new());
    let (session, _) = open(&backend, "alice").await;

    // Progress notifications stream before the result.
    let call = json!({
        "jsonrpc": "2.0", "id": 7, "method": "tools/call",
        "params": {
            "name": "trigger-long-running-operation",
            "arguments": {"duration": 1, "steps": 3},
            "_meta": {"progressToken": "p-1"},
        },
    });
    let all = messages(&backend, "alice", &session, call).await;
    let progress: Vec<&Value> = all
        .iter()
        .filter(|m| m["method"] == "notifications/progress")
        .collect();
    assert_eq!(progress.len(), 3, "{all:?}");
    assert!(
        progress
            .iter()
            .all(|p| p["params"]["progressToken"] == "p-1")
    );
    let last = all.last().unwrap();
    assert_eq!(last["id"], 7);
    assert!(last["result"]["content"].is_array(), "{last}");

    // Elicitation: the server asks, the client answers with a response of
    // its own, and the tool's result follows.
    let call = request(
        8,
        "tools/call",
        json!({"name": "trigger-elicitation-request", "arguments": {}}),
    );
    let Relayed::Stream(mut stream) = backend.relay("alice", Some(&session), call).await.unwrap()
    else {
        panic!("a stream");
    };
    let ask = loop {
        let m = stream.recv().await.expect("the elicitation request");
        if m["method"] == "elicitation/create" {
            break m;
        }
    };
    let answer = json!({
        "jsonrpc": "2.0", "id": ask["id"],
        "result": {"action": "decline"},
    });
    assert!(matches!(
        backend.relay("alice", Some(&session), answer).await,
        Ok(Relayed::Accepted)
    ));
    let result = loop {
        let m = stream.recv().await.expect("the tool's result");
        if m.get("method").is_none() {
            break m;
        }
    };
    assert_eq!(result["id"], 8, "{result}");
    assert!(result.get("result").is_some(), "{result}");

    // The child is killed mid-call: the call gets a JSON-RPC error, and the
    // next call works on a restarted child with the handshake replayed.
    let pid = children_running("server-everything")[0];
    let slow = json!({
        "jsonrpc": "2.0", "id": 9, "method": "tools/call",
        "params": {"name": "trigger-long-running-operation", "arguments": {"duration": 30, "steps": 30}},
    });
    let Relayed::Stream(mut stream) = backend.relay("alice", Some(&session), slow).await.unwrap()
    else {
        panic!("a stream");
    };
    std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    let error = loop {
        let m = stream
            .recv()
            .await
            .expect("an answer, not a stream that just ends");
        if m.get("method").is_none() {
            break m;
        }
    };
    assert_eq!(error["id"], 9);
    assert_eq!(error["error"]["code"], -32603, "{error}");
    let list = messages(
        &backend,
        "alice",
        &session,
        request(10, "tools/list", json!({})),
    )
    .await;
    let last = list.last().unwrap();
    assert_eq!(last["id"], 10);
    assert!(last["result"]["tools"].is_array(), "{list:?}");
    let now = children_running("server-everything");
    assert_eq!(now.len(), 1);
    assert_ne!(now[0], pid, "a new child");
    backend.stop_all().await;
    assert!(children_running("server-everything").is_empty());
}
