//! The soak test's traffic (`bench/soak.sh`): for a given time, against a
//! running `passgate serve`, a steady mix of what a deployment's people and
//! clients do, with bounded identities, as in real use: a fixed pool of
//! people (one passkey each, from `--invitation`), each on several browsers
//! (one loopback address each, so the per-address limits see a household,
//! not a flood), and a fixed pool of registered clients. Each flow is one
//! browser authorizing one client: a passkey sign-in when the browser has no
//! session, consent, the code redeemed, tool calls, a refresh and a call
//! with the new token; every other visit the person signs out at the end.
//! The client keeps one refresh token per person and revokes the one it
//! replaces (RFC 7009). Besides: a new registration every 20 flows (never
//! used, as clients that give up do), one kept refresh token rotated every
//! third flow, and every flow's bad requests (made-up tokens, malformed
//! forms and JSON, unknown clients, foreign origins, stale passkey
//! answers). Every answer is checked; a wrong one is counted and printed,
//! and the run goes on.
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
    collections::HashMap,
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
    /// Unused invitation links, one per person of the pool.
    #[arg(long, required = true)]
    invitation: Vec<String>,
    #[arg(long, default_value_t = 30)]
    minutes: u64,
    /// Flows started per second, at most.
    #[arg(long, default_value_t = 2.0)]
    rate: f64,
    #[arg(long, default_value_t = 100_000)]
    max_flows: usize,
    /// Browsers (source addresses), shared out among the people. Enough
    /// that each address stays under the per-address limits at `--rate`.
    #[arg(long, default_value_t = 64)]
    browsers: usize,
    /// Registered clients that the people use.
    #[arg(long, default_value_t = 4)]
    clients: usize,
}

/// One browser of one person, and what it keeps between flows.
struct Browser {
    http: RemoteBrowser,
    person: usize,
    signed_in: bool,
    visits: usize,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = Args::parse();
    let base = args.base.trim_end_matches('/').to_owned();
    let devices: Vec<Arc<SoftAuthenticator>> = (0..args.invitation.len())
        .map(|_| Arc::new(SoftAuthenticator::new()))
        .collect();
    let mut browsers: Vec<Browser> = (0..args.browsers.max(1))
        .map(|b| Browser {
            http: RemoteBrowser::bound_to(&base, browser_address(b)),
            person: b % devices.len(),
            signed_in: false,
            visits: 0,
        })
        .collect();
    // Each person enrolls on their first browser, which stays signed in.
    for (person, link) in args.invitation.iter().enumerate() {
        let browser = &mut browsers[person];
        enroll(
            &mut browser.http,
            &base,
            &devices[person],
            link,
            &format!("Soak {person}"),
        )
        .await;
        browser.signed_in = true;
    }
    let mut clients = Vec::new();
    for c in 0..args.clients.max(1) {
        let mut http = RemoteBrowser::bound_to(&base, registration_address(c));
        clients.push(Arc::new(
            McpClient::register(
                &mut http,
                &base,
                &format!("Soak client {c}"),
                "http://127.0.0.1:33418/callback",
                Some(format!("{base}/mcp")),
            )
            .await,
        ));
    }

    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.minutes * 60);
    let interval = Duration::from_secs_f64(1.0 / args.rate.max(0.01));
    let mut next_report = started + Duration::from_secs(60);
    // The refresh token each client keeps for each person.
    let mut kept: HashMap<(usize, usize), String> = HashMap::new();
    let (mut flows, mut failures, mut registrations) = (0usize, 0usize, 0usize);

    while Instant::now() < deadline && flows < args.max_flows {
        let tick = Instant::now();
        flows += 1;
        if flows.is_multiple_of(20) {
            registrations += 1;
            let mut http = RemoteBrowser::bound_to(&base, registration_address(registrations));
            let reply = http
                .post_json(
                    &base,
                    "/register",
                    &json!({"client_name": "Soak passer-by",
                            "redirect_uris": ["http://127.0.0.1:33418/callback"]}),
                )
                .await;
            if reply.status != StatusCode::CREATED {
                eprintln!("registration: {} {}", reply.status, reply.body);
                failures += 1;
            }
        }
        let b = flows % browsers.len();
        let c = (flows / browsers.len()) % clients.len();
        let browser = &mut browsers[b];
        browser.visits += 1;
        let person = browser.person;
        let sign_out = browser.visits.is_multiple_of(2);
        let previous = kept.remove(&(person, c));
        let other = flows
            .is_multiple_of(3)
            .then(|| kept.keys().nth(flows % kept.len().max(1)).copied())
            .flatten()
            .and_then(|slot| Some((slot, kept.remove(&slot)?)));
        let flow = {
            let (base, device, client) =
                (base.clone(), devices[person].clone(), clients[c].clone());
            let other = other
                .clone()
                .map(|((p, oc), token)| ((p, oc), clients[oc].clone(), token));
            let mut http = browser.http.clone();
            let signed_in = browser.signed_in;
            // Each flow in its own task: a failed check panics there and is
            // counted here, with its message on stderr.
            tokio::spawn(async move {
                let outcome = one_flow(
                    &base, &mut http, &device, &client, signed_in, sign_out, flows, previous, other,
                )
                .await;
                (http, outcome)
            })
        };
        match flow.await {
            Ok((http, (refresh, rotated))) => {
                browser.http = http;
                browser.signed_in = !sign_out;
                kept.insert((person, c), refresh);
                if let Some((slot, token)) = rotated {
                    kept.insert(slot, token);
                }
            }
            Err(_) => {
                failures += 1;
                // Start that browser afresh: its cookies may be half-way.
                browser.http = RemoteBrowser::bound_to(&base, browser_address(b));
                browser.signed_in = false;
            }
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
            "registrations": registrations,
            "people": devices.len(),
            "browsers": browsers.len(),
            "clients": clients.len(),
            "seconds": started.elapsed().as_secs(),
        })
    );
    if failures > 0 {
        std::process::exit(1);
    }
}

/// 127.1.0.0 and up: one source address per browser.
fn browser_address(n: usize) -> IpAddr {
    numbered(1, n)
}

/// 127.2.0.0 and up, 16 of them in turn: where registrations come from
/// (each stays under the per-address registration limit).
fn registration_address(n: usize) -> IpAddr {
    numbered(2, n % 16)
}

fn numbered(block: u8, n: usize) -> IpAddr {
    let n = n as u32;
    IpAddr::V4(Ipv4Addr::new(127, block, (n >> 8) as u8, n as u8))
}

type Slot = (usize, usize);

/// One browser's authorization of one client, the client's calls and
/// refresh, bad requests, the rotation of another kept refresh token and,
/// when `sign_out`, signing out. Returns the refresh token the client keeps
/// now, and the other one rotated.
#[allow(clippy::too_many_arguments)]
async fn one_flow(
    base: &str,
    browser: &mut RemoteBrowser,
    device: &SoftAuthenticator,
    client: &McpClient,
    signed_in: bool,
    sign_out: bool,
    n: usize,
    previous: Option<String>,
    other: Option<(Slot, Arc<McpClient>, String)>,
) -> (String, Option<(Slot, String)>) {
    let (verifier, authorize) = client.authorize(&format!("soak-{n}"));
    let to_consent = browser.get(base, &authorize).await;
    assert_eq!(
        to_consent.status,
        StatusCode::SEE_OTHER,
        "{}",
        to_consent.body
    );
    let consent = to_consent.location.expect("consent URL");
    if !signed_in {
        let to_login = browser.get(base, &consent).await;
        assert!(to_login.status.is_redirection(), "{}", to_login.body);
        sign_in(browser, (base, base), device).await;
    }
    let back = approve_consent(browser, (base, base), &consent).await;
    let code = back.get("code").expect("a code");
    let tokens = client.redeem(browser, base, code, &verifier).await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.body);
    let tokens: Value = tokens.json();
    let access = tokens["access_token"].as_str().unwrap();
    for a in 0..3 {
        call_add(base, access, a).await;
    }
    let refreshed = client
        .refresh(browser, base, tokens["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.body);
    let refreshed = refreshed.json();
    call_add(base, refreshed["access_token"].as_str().unwrap(), 7).await;
    if let Some(old) = previous {
        let reply = browser
            .post_form(
                base,
                "/revoke",
                &[
                    ("token", old.as_str()),
                    ("token_type_hint", "refresh_token"),
                    ("client_id", client.id.as_str()),
                ],
            )
            .await;
        assert_eq!(reply.status, StatusCode::OK, "revoke: {}", reply.body);
    }

    bad_requests(base, browser, client).await;

    let rotated = match other {
        Some((slot, other_client, token)) => {
            let rotated = other_client.refresh(browser, base, &token).await;
            assert_eq!(rotated.status, StatusCode::OK, "{}", rotated.body);
            let rotated = rotated.json();
            call_add(base, rotated["access_token"].as_str().unwrap(), 9).await;
            Some((slot, rotated["refresh_token"].as_str().unwrap().to_owned()))
        }
        None => None,
    };
    if sign_out {
        let account = browser.get(base, "/account").await;
        assert_eq!(account.status, StatusCode::OK, "{}", account.body);
        let csrf = account.field("csrf");
        let reply = browser
            .post_form(base, "/logout", &[("csrf", csrf.as_str())])
            .await;
        assert_eq!(reply.status, StatusCode::OK, "logout: {}", reply.body);
    }
    (
        refreshed["refresh_token"].as_str().unwrap().to_owned(),
        rotated,
    )
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
