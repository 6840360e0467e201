//! Real MCP clients against a running passgate: the official TypeScript SDK,
//! the official Python SDK, and the conformance suite's authorization-server
//! scenarios. Each one completes the OAuth flow by itself; the test only
//! plays the person in the browser (a signed-in session, approving consent).

mod support;

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::Duration,
};

use support::{
    process::{Passgate, free_port, node, person, python},
    remote::{RemoteBrowser, approve},
};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// A running passgate and a signed-in person's browser.
async fn signed_in_server(extra: &[&str]) -> (tempfile::TempDir, Passgate, RemoteBrowser) {
    let dir = tempfile::tempdir().unwrap();
    let server = Passgate::start(dir.path(), None, extra);
    let browser = person(dir.path(), &server.base, "alice").await;
    (dir, server, browser)
}

fn run_to_end(mut cmd: Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[tokio::test]
async fn typescript_sdk_signs_in_calls_add_and_refreshes() {
    let (_dir, server, browser) = signed_in_server(&[]).await;
    let mut cmd = Command::new(node());
    cmd.arg(format!("{ROOT}/tests/js/ts-client.mjs"))
        .arg(format!("{}/mcp", server.base))
        .arg(browser.cookie_header())
        .current_dir(format!("{ROOT}/tests/js"));
    let stdout = run_to_end(cmd, "the TypeScript SDK client");
    let result: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(result["ok"], true);
}

#[tokio::test]
async fn python_sdk_signs_in_and_calls_add() {
    let (_dir, server, browser) = signed_in_server(&[]).await;
    let mut cmd = Command::new(python());
    cmd.arg(format!("{ROOT}/tests/py/client.py"))
        .arg(format!("{}/mcp", server.base))
        .arg(browser.cookie_header());
    let stdout = run_to_end(cmd, "the Python SDK client");
    let result: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(result["ok"], true);
}

#[tokio::test]
async fn conformance_suite_authorization_server_scenarios_pass() {
    let clients = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        clients.path(),
        r#"[{"client_id":"conformance-client","client_name":"MCP conformance suite","redirect_uris":["http://127.0.0.1:3000/callback"]}]"#,
    )
    .unwrap();
    let clients_path = clients.path().to_str().unwrap().to_owned();
    let (_dir, server, mut browser) = signed_in_server(&["--clients-file", &clients_path]).await;
    let callback_port = free_port();
    let mut child = Command::new(node())
        .arg(format!(
            "{ROOT}/tests/js/node_modules/conformance-next/dist/index.js"
        ))
        .args(["authorization", "--url", &server.base])
        .args(["--client-id", "conformance-client"])
        .args(["--port", &callback_port.to_string()])
        .current_dir(format!("{ROOT}/tests/js"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the conformance suite");

    // The suite prints the authorization URL for a person to open; we are
    // that person. Its lines are read on a thread and passed over a channel.
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut transcript = Vec::new();
    let authorize_prefix = format!("{}/authorize?", server.base);
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| {
                panic!(
                    "the suite never asked for sign-in:\n{}",
                    transcript.join("\n")
                )
            });
        transcript.push(line.clone());
        if line.starts_with(&authorize_prefix) {
            let params = approve(&mut browser, &[&server.base], &line).await;
            // Deliver the redirect to the suite's callback listener.
            let callback = format!(
                "http://127.0.0.1:{callback_port}/callback?{}",
                serde_urlencoded::to_string(&params).unwrap()
            );
            reqwest::get(&callback).await.expect("deliver the callback");
            break;
        }
    }
    let status = child.wait().unwrap();
    transcript.extend(rx.try_iter());
    let transcript = transcript.join("\n");
    assert!(
        status.success(),
        "the conformance suite failed:\n{transcript}"
    );
    assert!(!transcript.contains("FAILURE"), "{transcript}");
}

/// A local passgate configured as `localhost`, reached as `127.0.0.1`:
/// both SDKs stop with passgate's message naming the URL to use, instead of
/// a resource mismatch they cannot explain.
#[test]
fn sdks_reaching_another_loopback_name_are_told_the_mcp_url() {
    let dir = tempfile::tempdir().unwrap();
    let server = Passgate::start(dir.path(), None, &[]);
    let wrong = format!("http://127.0.0.1:{}/mcp", server.port);
    let hint = format!("connect your client to {}/mcp", server.base);
    let mut python_cmd = Command::new(python());
    python_cmd
        .arg(format!("{ROOT}/tests/py/client.py"))
        .arg(&wrong)
        .arg("no-cookie=none");
    let mut node_cmd = Command::new(node());
    node_cmd
        .arg(format!("{ROOT}/tests/js/ts-client.mjs"))
        .arg(&wrong)
        .arg("no-cookie=none")
        .current_dir(format!("{ROOT}/tests/js"));
    for (what, mut cmd) in [("Python SDK", python_cmd), ("TypeScript SDK", node_cmd)] {
        let out = cmd.output().unwrap();
        let all = format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.status.success(), "{what} connected anyway:\n{all}");
        assert!(all.contains(&hint), "{what} does not show the hint:\n{all}");
    }
}
