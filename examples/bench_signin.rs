//! The server-side cost of a whole OAuth sign-in, for the benchmarks
//! (`bench/run.sh`): against a running `passgate serve`, walks what an MCP
//! client and a person with a passkey do, from discovery to token, with no
//! human think time, and reads the server's CPU time around each round.
//!
//! One flow is eleven requests: the unauthenticated MCP call and its 401,
//! both metadata documents, dynamic registration, `/authorize`, the consent
//! page sending the new browser to sign in, the passkey ceremony (options,
//! finish; the software authenticator of the tests signs in this process),
//! the consent page and its approval, and the token request. Each flow's
//! requests leave from their own loopback address, as different people's
//! would, so the per-address rate limits see one sign-in each. Every answer
//! is checked; the first wrong one stops the run.
//!
//! An example binary, never part of the release `passgate` binary. Prints
//! one JSON object on stdout:
//!
//! ```text
//! cargo run --release --example bench_signin -- \
//!     --base http://localhost:18080 --pid 1234 --invitation <link> --rounds 3 --flows 20
//! ```

#[path = "../tests/support/authenticator.rs"]
mod authenticator;
#[path = "../tests/support/remote.rs"]
mod remote;

use std::{
    net::{IpAddr, Ipv4Addr},
    time::Instant,
};

use clap::Parser;
use http::StatusCode;
use serde_json::{Value, json};

use authenticator::SoftAuthenticator;
use remote::{McpClient, RemoteBrowser, Reply, approve_consent, enroll, sign_in};

#[derive(Parser)]
struct Args {
    /// The server's public URL (`http://localhost:<port>`: WebAuthn refuses
    /// IP origins).
    #[arg(long)]
    base: String,
    /// The server's process id, whose CPU time is read from /proc.
    #[arg(long)]
    pid: u32,
    /// An unused invitation link, for the benchmark person's passkey.
    #[arg(long)]
    invitation: String,
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    #[arg(long, default_value_t = 20)]
    flows: usize,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = Args::parse();
    let base = args.base.trim_end_matches('/').to_owned();
    let device = SoftAuthenticator::new();
    let mut first = RemoteBrowser::bound_to(&base, address(0));
    enroll(&mut first, &base, &device, &args.invitation, "Bench").await;

    let mut cpu_us_per_flow = Vec::new();
    let mut wall_us = Vec::new();
    for round in 0..args.rounds {
        let before = cpu_ns(args.pid);
        for flow in 0..args.flows {
            let started = Instant::now();
            one_flow(&base, &device, 1 + round * args.flows + flow).await;
            wall_us.push(started.elapsed().as_micros() as u64);
        }
        let spent = cpu_ns(args.pid) - before;
        cpu_us_per_flow.push(spent as f64 / 1e3 / args.flows as f64);
    }
    println!(
        "{}",
        json!({
            "flows": args.rounds * args.flows,
            "requests_per_flow": REQUESTS_PER_FLOW,
            "wall_us": wall_us,
            "cpu_us_per_flow_rounds": cpu_us_per_flow,
        })
    );
}

/// 127.0.1.1, 127.0.1.2, ...: one source address per person.
fn address(n: usize) -> IpAddr {
    let n = n as u32;
    IpAddr::V4(Ipv4Addr::new(
        127,
        1 + (n >> 16) as u8,
        (n >> 8) as u8,
        n as u8,
    ))
}

/// The requests of one flow, as listed at the top.
const REQUESTS_PER_FLOW: usize = 11;

/// One flow, as person number `n`.
async fn one_flow(base: &str, device: &SoftAuthenticator, n: usize) {
    let mut browser = RemoteBrowser::bound_to(base, address(n));
    let resource = format!("{base}/mcp");
    let redirect = "http://127.0.0.1:33418/callback";

    let http = reqwest::Client::builder()
        .local_address(address(n))
        .build()
        .unwrap();
    let challenge = http
        .post(&resource)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#)
        .send()
        .await
        .expect("POST /mcp");
    assert_eq!(challenge.status(), StatusCode::UNAUTHORIZED);
    let prm = browser
        .get(base, "/.well-known/oauth-protected-resource/mcp")
        .await;
    check(&prm, StatusCode::OK);
    assert_eq!(prm.json()["resource"], resource);
    let metadata = browser
        .get(base, "/.well-known/oauth-authorization-server")
        .await;
    check(&metadata, StatusCode::OK);
    assert_eq!(metadata.json()["issuer"], base);

    let client = McpClient::register(&mut browser, base, "bench", redirect, Some(resource)).await;
    let (verifier, authorize) = client.authorize("bench");
    let to_consent = browser.get(base, &authorize).await;
    check(&to_consent, StatusCode::SEE_OTHER);
    let consent = to_consent.location.expect("consent URL");
    let to_login = browser.get(base, &consent).await;
    assert!(to_login.status.is_redirection(), "{}", to_login.body);
    sign_in(&mut browser, (base, base), device).await;
    let back = approve_consent(&mut browser, (base, base), &consent).await;
    let code = back.get("code").expect("a code");

    let tokens = client.redeem(&mut browser, base, code, &verifier).await;
    check(&tokens, StatusCode::OK);
    let tokens: Value = tokens.json();
    assert!(
        tokens["access_token"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
    );
}

fn check(reply: &Reply, status: StatusCode) {
    assert_eq!(reply.status, status, "{}", reply.body);
}

/// CPU time of every thread of `pid`, in ns (`/proc/<pid>/task/*/schedstat`).
/// Threads that end between two readings are lost; passgate's do not end.
fn cpu_ns(pid: u32) -> u64 {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("the server's /proc entry");
    tasks
        .filter_map(|task| {
            let path = task.ok()?.path().join("schedstat");
            let text = std::fs::read_to_string(path).ok()?;
            text.split_whitespace().next()?.parse::<u64>().ok()
        })
        .sum()
}
