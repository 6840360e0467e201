//! The operator commands against a running server's data: listing and
//! revoking clients, rotating signing keys without signing anyone out. The
//! server logs at trace level meanwhile, and no secret of the flow may
//! appear in its log.

mod support;

use std::process::Command;

use serde_json::json;
use support::{
    authenticator::SoftAuthenticator,
    backends::route_token,
    process::{BIN, Passgate, free_port, invite, person},
    remote::{McpClient, RemoteBrowser, approve, call_add, enroll},
};

fn passgate(data_dir: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env("PASSGATE_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "passgate {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn clients_are_listed_and_revoked_and_keys_rotate() {
    let dir = tempfile::tempdir().unwrap();
    // Everything the server logs, at its most verbose, is checked for
    // secrets at the end.
    let server = Passgate::start_logging(dir.path(), None, &[], "trace");
    let base = server.base.clone();
    let mut browser = RemoteBrowser::new(&base);
    // The link is kept: the log is searched for it at the end.
    let link = invite(dir.path(), &base, "alice", false);
    enroll(
        &mut browser,
        &base,
        &SoftAuthenticator::new(),
        &link,
        "alice",
    )
    .await;

    let redirect = "http://127.0.0.1:40000/cb";
    let mut client = RemoteBrowser::new(&base);
    let registered =
        McpClient::register(&mut client, &base, "CLI test client", redirect, None).await;
    let client_id = registered.id.clone();
    let (verifier, url) = registered.authorize("cli");
    let back = approve(&mut browser, &[&base], &url).await;
    let tokens = registered
        .redeem(&mut client, &base, &back["code"], &verifier)
        .await
        .json();

    // A registration nobody has used yet is listed too, with nobody.
    let unused = McpClient::register(&mut client, &base, "Never used", redirect, None)
        .await
        .id;

    // A name far over 30 characters, as real clients have.
    let long_name = "Visual Studio Code - Insiders (remote workspace)";
    let long = McpClient::register(&mut client, &base, long_name, redirect, None)
        .await
        .id;

    let listed = passgate(dir.path(), &["clients", "list"]);
    let line = |id: &str| {
        listed
            .lines()
            .find(|l| l.starts_with(id))
            .unwrap_or_else(|| panic!("{id} not listed:\n{listed}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    let today = passgate::login::ui::date(passgate::store::now_unix());
    assert!(
        line(&client_id).contains(&format!(
            "CLI test client registered 1 1 0 {today} 127.0.0.1:40000 127.0.0.1"
        )),
        "{listed}"
    );
    assert!(
        line(&unused).contains("Never used registered 0 0 0 - 127.0.0.1:40000 127.0.0.1"),
        "{listed}"
    );
    // Every column starts where its header does, whatever the names.
    let lines: Vec<&str> = listed.lines().collect();
    let column = |l: &str, n: usize| {
        let mut seen = 0;
        let mut at = 0;
        let chars: Vec<char> = l.chars().collect();
        for i in 1..chars.len() {
            if chars[i] != ' ' && chars[i - 1] == ' ' && i >= 2 && chars[i - 2] == ' ' {
                seen += 1;
                if seen == n {
                    at = i;
                    break;
                }
            }
        }
        at
    };
    for l in &lines[1..] {
        assert_eq!(column(l, 2), column(lines[0], 2), "KIND column:\n{listed}");
    }
    assert!(listed.contains(long_name), "{listed}");
    passgate(dir.path(), &["clients", "revoke", &long]);

    // Groups and recovery links for an existing account.
    let grouped = passgate(dir.path(), &["users", "groups", "alice", "ops,eng"]);
    assert_eq!(grouped.trim(), "Groups of alice: eng, ops");
    let recovery = passgate(
        dir.path(),
        &["users", "recover", "alice", "--public-url", &base],
    );
    assert!(
        recovery.contains("signs out every other browser"),
        "{recovery}"
    );
    let recovery_link = recovery.lines().last().unwrap().trim().to_owned();
    assert!(
        recovery_link.starts_with(&format!("{base}/recover?token=")),
        "{recovery}"
    );
    let page = reqwest::get(&recovery_link).await.unwrap();
    assert_eq!(page.status(), 200);

    // Rotating keys signs nobody out: the old token still works.
    let rotated = passgate(dir.path(), &["keys", "rotate"]);
    assert!(rotated.contains("New signing key"), "{rotated}");
    let mcp = |token: String| {
        let base = base.clone();
        async move {
            reqwest::Client::new()
                .post(format!("{base}/mcp"))
                .bearer_auth(token)
                .header("content-type", "application/json")
                .header("accept", "application/json, text/event-stream")
                .body(json!({"jsonrpc":"2.0","id":1,"method":"tools/list"}).to_string())
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(
        mcp(tokens["access_token"].as_str().unwrap().into()).await,
        200
    );

    let revoked = passgate(dir.path(), &["clients", "revoke", &client_id]);
    assert!(revoked.contains("Revoked 1"), "{revoked}");
    assert_eq!(
        mcp(tokens["access_token"].as_str().unwrap().into()).await,
        401
    );
    let refresh = registered
        .refresh(
            &mut client,
            &base,
            tokens["refresh_token"].as_str().unwrap(),
        )
        .await;
    assert_eq!(
        refresh.status, 401,
        "the registration is gone: {}",
        refresh.body
    );
    let listed = passgate(dir.path(), &["clients", "list"]);
    assert!(
        !listed.contains(&client_id) && listed.contains(&unused),
        "{listed}"
    );
    passgate(dir.path(), &["clients", "revoke", &unused]);
    let listed = passgate(dir.path(), &["clients", "list"]);
    assert!(listed.contains("No clients"), "{listed}");
    // A registered ID is random base64url and may begin with `-`; the
    // command takes it as the ID, not as an option.
    let hyphen = passgate(dir.path(), &["clients", "revoke", "-2fuTEu1uNleVhEiU2lPSA"]);
    assert!(
        hyphen.contains("of client -2fuTEu1uNleVhEiU2lPSA"),
        "{hyphen}"
    );

    let log = server.output();
    // The start-up banner names the URL to paste into MCP clients.
    assert!(
        log.contains(&format!(
            "MCP server URL (paste this into your MCP client): {base}/mcp"
        )),
        "{log}"
    );
    assert!(
        log.contains("TRACE") && log.contains("path=/token"),
        "the server logged every request at trace level"
    );
    let master_key = std::fs::read_to_string(dir.path().join("master.key")).unwrap();
    let mut secrets = vec![
        ("authorization code", back["code"].clone()),
        ("PKCE verifier", verifier),
        ("invitation link", link),
        ("recovery link", recovery_link),
        ("master key", master_key.trim().to_owned()),
    ];
    for name in ["access_token", "refresh_token"] {
        secrets.push((name, tokens[name].as_str().unwrap().to_owned()));
    }
    for cookie in browser.cookie_header().split("; ") {
        let (name, value) = cookie.split_once('=').unwrap();
        secrets.push(("a cookie", format!("{name}={value}")));
        secrets.push(("a cookie's value", value.to_owned()));
    }
    for (what, secret) in secrets {
        assert!(secret.len() >= 16, "{what} is a real secret");
        assert!(!log.contains(&secret), "{what} appears in the server log");
    }
}

/// An approved code that the client has not redeemed yet is access too:
/// `users disable`, `users delete` and `clients revoke`, each as a real
/// command against a running server's data, end it, and `clients list`
/// and `clients revoke` count it (and an authorization awaiting consent).
#[tokio::test]
async fn cli_actions_end_codes_not_yet_redeemed() {
    let dir = tempfile::tempdir().unwrap();
    let server = Passgate::start(dir.path(), None, &[]);
    let base = server.base.clone();
    let redirect = "http://127.0.0.1:40001/cb";
    let mut http = RemoteBrowser::new(&base);
    let client = McpClient::register(&mut http, &base, "Late codes", redirect, None).await;
    // Each person approves the client; the code stays with the client.
    let late_code = async |name: &str| {
        let mut browser = person(dir.path(), &base, name).await;
        let (verifier, url) = client.authorize(name);
        let back = approve(&mut browser, &[&base], &url).await;
        (back["code"].clone(), verifier, browser)
    };
    let redeems = async |http: &mut RemoteBrowser, (code, verifier): (&str, &str)| {
        client.redeem(http, &base, code, verifier).await.status
    };

    let (code, verifier, _) = late_code("dora").await;
    passgate(dir.path(), &["users", "disable", "dora"]);
    assert_eq!(redeems(&mut http, (&code, &verifier)).await, 400);

    let (code, verifier, _) = late_code("eli").await;
    passgate(dir.path(), &["users", "delete", "eli"]);
    assert_eq!(redeems(&mut http, (&code, &verifier)).await, 400);

    let (code, verifier, mut fay) = late_code("fay").await;
    let (_, url) = client.authorize("waiting");
    let waiting = fay.get(&base, &url).await;
    assert_eq!(waiting.status, 303, "{}", waiting.body);
    let listed = passgate(dir.path(), &["clients", "list"]);
    let line = listed
        .lines()
        .find(|l| l.starts_with(&client.id))
        .unwrap_or_else(|| panic!("not listed:\n{listed}"))
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(line.contains("Late codes registered 1 1 1 "), "{listed}");
    let revoked = passgate(dir.path(), &["clients", "revoke", &client.id]);
    assert!(
        revoked.contains("Revoked 1 sign-in(s) of 1 person(s) and 1 pending authorization(s)"),
        "{revoked}"
    );
    assert_ne!(redeems(&mut http, (&code, &verifier)).await, 200);
    let consent = fay.get(&base, waiting.location.as_deref().unwrap()).await;
    assert_eq!(consent.status, 410, "the waiting authorization ended");
}

/// The standard error of a `serve` that must refuse to start. A server that
/// starts anyway would never exit, so the wait is bounded.
fn serve_refuses(command: &mut Command) -> String {
    let mut child = command
        .env("PASSGATE_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let started_anyway = child.try_wait().unwrap().is_none();
    if started_anyway {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!started_anyway, "passgate started: {stderr}");
    assert!(!out.status.success(), "{stderr}");
    stderr
}

#[test]
fn the_loopback_metadata_setting_is_loud_and_refused_with_https() {
    let dir = tempfile::tempdir().unwrap();
    let stderr = serve_refuses(
        Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(["--public-url", "https://mcp.example.com"])
            .arg("--dev-allow-loopback-cimd")
            .arg("--data-dir")
            .arg(dir.path()),
    );
    assert!(
        stderr.contains("--dev-allow-loopback-cimd") && stderr.contains("https public URL"),
        "{stderr}"
    );
    let server = Passgate::start(dir.path(), None, &["--dev-allow-loopback-cimd"]);
    // Logged before the server listens; its output is read by a thread.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let warned =
        |log: &str| log.contains("WARN") && log.contains("--dev-allow-loopback-cimd is on");
    while !warned(&server.output()) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(warned(&server.output()), "{}", server.output());
}

/// The OpenID provider's settings were `--upstream-*` / `PASSGATE_UPSTREAM_*`:
/// every spelling still reaches the same setting, which refuses an issuer
/// that is not http(s) before anything is contacted.
#[test]
fn the_oidc_issuer_is_read_under_its_old_names_too() {
    let dir = tempfile::tempdir().unwrap();
    let issuer = "ftp://127.0.0.1/idp";
    let spellings: [(&[&str], Option<&str>); 4] = [
        (&["--oidc-issuer", issuer], None),
        (&["--upstream-issuer", issuer], None),
        (&[], Some("PASSGATE_OIDC_ISSUER")),
        (&[], Some("PASSGATE_UPSTREAM_ISSUER")),
    ];
    for (flags, env) in spellings {
        let mut command = Command::new(BIN);
        command
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(["--public-url", "http://127.0.0.1:1"])
            .args(flags)
            .arg("--data-dir")
            .arg(dir.path());
        if let Some(name) = env {
            command.env(name, issuer);
        }
        let stderr = serve_refuses(&mut command);
        assert!(
            stderr.contains("--oidc-issuer must be an https URL"),
            "{flags:?} {env:?}: {stderr}"
        );
    }
}

/// `PASSGATE_RUNTIME=current-thread` serves the same: a passkey sign-in, a
/// client's authorization and a tool call, all on one thread. A value that
/// names no runtime stops start-up, naming the variable and the choices.
#[tokio::test]
async fn the_runtime_is_chosen_by_its_variable() {
    let dir = tempfile::tempdir().unwrap();
    let stderr = serve_refuses(
        Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path())
            .env("PASSGATE_RUNTIME", "one-thread"),
    );
    assert!(
        stderr.contains("PASSGATE_RUNTIME") && stderr.contains("current-thread"),
        "{stderr}"
    );
    let server = Passgate::start_on(
        free_port(),
        dir.path(),
        None,
        &[],
        "warn",
        &[("PASSGATE_RUNTIME", "current-thread")],
    );
    let mut browser = person(dir.path(), &server.base, "alice").await;
    let resource = format!("{}/mcp", server.base);
    let (_, token) = route_token(&mut browser, &server.base, &resource).await;
    call_add(&server.base, &token, 41).await;
}
