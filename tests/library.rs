//! passgate as a library: `examples/notes.rs`, a server of its own built on
//! `passgate::Passgate`, served on a loopback port by this test (the
//! example's own code, included below, so no second build is needed). A person enrolls a
//! passkey and approves two clients' sign-ins (one with the
//! `notes.delete` scope); the official Python MCP SDK calls the tools with
//! the tokens; the tools see who is calling; `delete_note` without the
//! scope answers the spec's 403 `insufficient_scope` challenge.

mod support;

#[path = "../examples/notes.rs"]
mod notes;

use std::{process::Command, time::Duration};

use http::StatusCode;
use serde_json::{Value, json};
use support::{
    authenticator::SoftAuthenticator,
    process::{free_port, invite, python},
    remote::{McpClient, RemoteBrowser, approve, call_tool as call, enroll},
};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const REDIRECT: &str = "http://127.0.0.1:33418/callback";

/// Approves a sign-in of `client` (with `scope`, when given) and returns
/// the access token.
async fn token_for(
    browser: &mut RemoteBrowser,
    base: &str,
    client: &McpClient,
    scope: Option<&str>,
) -> String {
    let (verifier, mut path) = client.authorize("s");
    if let Some(scope) = scope {
        path.push_str(&format!(
            "&{}",
            serde_urlencoded::to_string([("scope", scope)]).unwrap()
        ));
    }
    let back = approve(browser, &[base], &path).await;
    let reply = client.redeem(browser, base, &back["code"], &verifier).await;
    assert_eq!(reply.status, StatusCode::OK, "token: {}", reply.body);
    assert_eq!(reply.json()["scope"], scope.unwrap_or("mcp"));
    reply.json()["access_token"].as_str().unwrap().to_owned()
}

// Two workers: the server answers while this test waits on its clients.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_notes_example_signs_in_and_serves_its_own_tools() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://localhost:{port}");
    let argv = [
        "notes",
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--public-url",
        &base,
        "--data-dir",
        dir.path().to_str().unwrap(),
    ];
    let passgate = passgate::Passgate::from_argv(argv.iter().map(Into::into).collect())
        .await
        .unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let serving = tokio::spawn(notes::with_notes(passgate.shutdown_on(shutdown.clone())).serve());
    let http = reqwest::Client::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !http
        .get(format!("http://127.0.0.1:{port}/readyz"))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the notes server did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Its resource, with the scope its tools need, named as the example says.
    let metadata: Value = http
        .get(format!("{base}/.well-known/oauth-protected-resource/mcp"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(metadata["resource"], format!("{base}/mcp"));
    assert_eq!(metadata["resource_name"], "notes");
    assert_eq!(metadata["scopes_supported"], json!(["mcp", "notes.delete"]));

    let link = invite(dir.path(), &base, "alice", false);
    let mut browser = RemoteBrowser::new(&base);
    enroll(
        &mut browser,
        &base,
        &SoftAuthenticator::new(),
        &link,
        "Alice Example",
    )
    .await;
    let client = McpClient::register(&mut browser, &base, "notes test", REDIRECT, None).await;
    let plain = token_for(&mut browser, &base, &client, None).await;
    let deleting = token_for(&mut browser, &base, &client, Some("mcp notes.delete")).await;

    // Without its scope, delete_note is refused before the tool runs, with
    // the challenge that names every scope it needs.
    let refused = call(&base, &plain, "delete_note", json!({"id": 1})).await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        refused.headers()["www-authenticate"].to_str().unwrap(),
        format!(
            r#"Bearer error="insufficient_scope", scope="mcp notes.delete", resource_metadata="{base}/.well-known/oauth-protected-resource/mcp", error_description="the token lacks a required scope""#
        )
    );
    // The demo's tools are not there: the example replaced them.
    let add = call(&base, &plain, "add", json!({"a": 1, "b": 2})).await;
    let add: Value = add.json().await.unwrap();
    assert!(
        add["error"].is_object() || add["result"]["isError"] == true,
        "{add}"
    );

    // The official Python SDK, as a client with those tokens.
    let mut python = Command::new(python());
    python
        .arg(format!("{ROOT}/tests/py/notes_client.py"))
        .arg(format!("{base}/mcp"))
        .arg(&plain)
        .arg(&deleting);
    let out = tokio::task::spawn_blocking(move || python.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the Python SDK client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr),
    );
    let out: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(
        out["tools"],
        json!(["add_note", "delete_note", "list_notes"])
    );
    assert_eq!(out["added"]["note"]["text"], "buy milk");
    // The tools see who is calling.
    assert_eq!(out["added"]["owner"], "alice");
    assert_eq!(out["listed"]["display_name"], "Alice Example");
    assert_eq!(out["listed"]["notes"][0]["text"], "buy milk");
    assert!(
        out["delete_without_scope"]
            .as_str()
            .unwrap()
            .starts_with("refused"),
        "{out}"
    );
    assert_eq!(out["deleted"]["deleted"], out["added"]["note"]["id"]);
    assert_eq!(out["after"]["notes"], json!([]));

    shutdown.cancel();
    serving.await.unwrap().unwrap();
}
