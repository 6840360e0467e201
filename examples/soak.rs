//! The soak test's traffic (`bench/soak.sh`): for a given time, against a
//! running `passgate serve`, a steady mix of what clients and people do:
//! whole passkey sign-ins through the OAuth flow (each person from their own
//! loopback address), dynamic registrations, tool calls, refresh-token
//! rotations, and bad requests (made-up tokens, malformed forms and JSON,
//! unknown clients, foreign origins, stale passkey answers). Every answer is
//! checked; a wrong one is counted and printed, and the run goes on.
//!
//! Bounded: at most `--rate` flows a second, for `--minutes`, never more
//! than `--max-flows`. Loopback only. An example binary, never part of the
//! release `passgate` binary. Prints one progress line a minute and a JSON
//! summary at the end; exits non-zero if anything failed.

#[path = "../tests/support/authenticator.rs"]
mod authenticator;
#[path = "../tests/support/remote.rs"]
mod remote;

use std::{
    net::{IpAddr, Ipv4Addr},
    sync::Arc,
    time::{Duration, Instant},
};

use clap::Parser;
use http::StatusCode;
use serde_json::{Value, json};

use authenticator::SoftAuthenticator;
use remote::{McpClient, RemoteBrowser, approve_consent, call_add, enroll, sign_in};

#[derive(Parser)]
struct Args {
    /// The server's public URL (`http://localhost:<port>`).
    #[arg(long)]
    base: String,
    /// An unused invitation link, for the soak person's passkey.
    #[arg(long)]
    invitation: String,
    #[arg(long, default_value_t = 30)]
    minutes: u64,
    /// Flows started per second, at most.
    #[arg(long, default_value_t = 2.0)]
    rate: f64,
    #[arg(long, default_value_t = 100_000)]
    max_flows: usize,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = Args::parse();
    let base = args.base.trim_end_matches('/').to_owned();
    let device = Arc::new(SoftAuthenticator::new());
    let mut first = RemoteBrowser::bound_to(&base, address(0));
    enroll(&mut first, &base, &device, &args.invitation, "Soak").await;

    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.minutes * 60);
    let interval = Duration::from_secs_f64(1.0 / args.rate.max(0.01));
    let mut next_report = started + Duration::from_secs(60);
    // Refresh tokens kept by "clients" that stay connected; each flow
    // rotates one of them and keeps the new one.
    let mut sessions: Vec<(McpClient, String)> = Vec::new();
    let (mut flows, mut failures) = (0usize, 0usize);
    let mut client = None;

    while Instant::now() < deadline && flows < args.max_flows {
        let tick = Instant::now();
        flows += 1;
        // A new registration every 20 flows, as new clients arrive.
        if client.is_none() || flows % 20 == 0 {
            let mut http = RemoteBrowser::bound_to(&base, address(flows));
            client = Some(
                McpClient::register(
                    &mut http,
                    &base,
                    "Soak client",
                    "http://127.0.0.1:33418/callback",
                    Some(format!("{base}/mcp")),
                )
                .await,
            );
        }
        let this = client.as_ref().unwrap();
        let flow = {
            let (base, device) = (base.clone(), device.clone());
            let c = McpClient {
                id: this.id.clone(),
                redirect: this.redirect.clone(),
                resource: this.resource.clone(),
            };
            let kept = (flows % 3 == 0 && !sessions.is_empty())
                .then(|| sessions.swap_remove(flows % sessions.len()));
            // Each flow in its own task: a failed check panics there and is
            // counted here, with its message on stderr.
            tokio::spawn(async move { one_flow(&base, &device, c, flows, kept).await })
        };
        match flow.await {
            Ok(kept) => {
                sessions.extend(kept);
                sessions.truncate(50);
            }
            Err(_) => failures += 1,
        }
        if Instant::now() >= next_report {
            eprintln!(
                "soak: {} min, {flows} flows, {failures} failures",
                started.elapsed().as_secs() / 60
            );
            next_report += Duration::from_secs(60);
        }
        if let Some(rest) = interval.checked_sub(tick.elapsed()) {
            tokio::time::sleep(rest).await;
        }
    }
    println!(
        "{}",
        json!({
            "flows": flows,
            "failures": failures,
            "seconds": started.elapsed().as_secs(),
        })
    );
    if failures > 0 {
        std::process::exit(1);
    }
}

/// 127.1.0.0 and up: one source address per person (the per-address
/// sign-in limits see one sign-in each).
fn address(n: usize) -> IpAddr {
    let n = n as u32;
    IpAddr::V4(Ipv4Addr::new(
        127,
        1 + (n >> 16) as u8,
        (n >> 8) as u8,
        n as u8,
    ))
}

/// One person's sign-in, their client's calls and refresh, bad requests,
/// and the rotation of one kept session. Returns the refresh tokens to
/// keep.
async fn one_flow(
    base: &str,
    device: &SoftAuthenticator,
    client: McpClient,
    n: usize,
    kept: Option<(McpClient, String)>,
) -> Vec<(McpClient, String)> {
    let mut browser = RemoteBrowser::bound_to(base, address(n));
    let (verifier, authorize) = client.authorize(&format!("soak-{n}"));
    let to_consent = browser.get(base, &authorize).await;
    assert_eq!(
        to_consent.status,
        StatusCode::SEE_OTHER,
        "{}",
        to_consent.body
    );
    let consent = to_consent.location.expect("consent URL");
    let to_login = browser.get(base, &consent).await;
    assert!(to_login.status.is_redirection(), "{}", to_login.body);
    sign_in(&mut browser, (base, base), device).await;
    let back = approve_consent(&mut browser, (base, base), &consent).await;
    let code = back.get("code").expect("a code");
    let tokens = client.redeem(&mut browser, base, code, &verifier).await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.body);
    let tokens: Value = tokens.json();
    let access = tokens["access_token"].as_str().unwrap();
    for a in 0..3 {
        call_add(base, access, a).await;
    }
    let refreshed = client
        .refresh(
            &mut browser,
            base,
            tokens["refresh_token"].as_str().unwrap(),
        )
        .await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.body);
    let refreshed = refreshed.json();
    call_add(base, refreshed["access_token"].as_str().unwrap(), 7).await;

    bad_requests(base, &mut browser, &client).await;

    let mut keep = vec![(
        client,
        refreshed["refresh_token"].as_str().unwrap().to_owned(),
    )];
    if let Some((old_client, token)) = kept {
        let rotated = old_client.refresh(&mut browser, base, &token).await;
        assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);
        let rotated = rotated.json();
        call_add(base, rotated["access_token"].as_str().unwrap(), 9).await;
        keep.push((
            old_client,
            rotated["refresh_token"].as_str().unwrap().to_owned(),
        ));
    }
    keep
}

/// Requests a careless or hostile client sends: each gets a 4xx, never a
/// 5xx, and the server keeps serving.
async fn bad_requests(base: &str, browser: &mut RemoteBrowser, client: &McpClient) {
    let http = reqwest::Client::new();
    let mcp = format!("{base}/mcp");
    let made_up = http
        .post(&mcp)
        .bearer_auth("eyJhbGciOiJFUzI1NiIsInR5cCI6ImF0K2p3dCJ9.e30.c2ln")
        .header("content-type", "application/json")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#)
        .send()
        .await
        .expect("POST /mcp");
    assert_eq!(made_up.status(), StatusCode::UNAUTHORIZED);
    let foreign = http
        .post(&mcp)
        .header("origin", "https://evil.example")
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .expect("POST /mcp");
    assert!(foreign.status().is_client_error(), "{}", foreign.status());

    for form in [
        &[("grant_type", "authorization_code"), ("code", "nope")][..],
        &[("grant_type", "refresh_token"), ("refresh_token", "nope")][..],
        &[("grant_type", "password")][..],
    ] {
        let mut form = form.to_vec();
        form.push(("client_id", client.id.as_str()));
        let reply = browser.post_form(base, "/token", &form).await;
        assert!(
            reply.status.is_client_error(),
            "{} {}",
            reply.status,
            reply.body
        );
    }
    let reply = browser
        .post_json(
            base,
            "/register",
            &json!({"redirect_uris": ["javascript:alert(1)"]}),
        )
        .await;
    assert!(reply.status.is_client_error(), "{}", reply.body);
    let reply = browser.get(base, "/authorize?client_id=unknown").await;
    assert!(reply.status.is_client_error(), "{}", reply.body);
    let reply = browser
        .post_json(base, "/login/passkey/finish", &json!({"id": "x"}))
        .await;
    assert!(reply.status.is_client_error(), "{}", reply.body);
}
