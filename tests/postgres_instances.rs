//! Several `passgate serve` processes on one PostgreSQL database, each with
//! its own data directory, as on several machines (feature `postgres`; the
//! server is a throw-away cluster that `support/postgres.rs` starts):
//! - 200 complete sign-in flows whose requests rotate across three
//!   instances: every one succeeds;
//! - passgate started while the database is away answers `/healthz`, says
//!   it is not ready, answers 503 `temporarily_unavailable`, and starts
//!   serving by itself once the database is there;
//! - the database restarted in the middle of a run of flows: every request
//!   either succeeds or is an honest 503, no flow is left stuck (each one
//!   that failed completes once the database is back, with the same
//!   credentials), and new flows succeed.
#![cfg(feature = "postgres")]

mod support;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use http::StatusCode;
use serde_json::{Value, json};
use support::{
    authenticator::SoftAuthenticator,
    postgres::Cluster,
    process::{Passgate, free_port, invite_with},
    remote::{
        McpClient, RemoteBrowser, Reply, approve, call_add as checked_call, enroll,
        rotating_sign_in_flows,
    },
};

const FLOWS: usize = 200;

/// The arguments that put an instance on `url` with the shared master key.
fn store_args(url: &str, master_key: &str) -> Vec<String> {
    [
        "--store",
        "postgres",
        "--database-url",
        url,
        "--master-key",
        master_key,
        "--database-timeout-secs",
        "5",
    ]
    .map(str::to_owned)
    .to_vec()
}

fn refs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_on_one_database_share_every_piece_of_state() {
    let cluster = support::postgres::shared();
    let db = cluster.new_database();
    let url = cluster.url(&db);
    let key = passgate::crypto::MasterKey::generate_secret();
    let store = store_args(&url, &key);
    let mut serve = store.clone();
    serve.push("--trust-forwarded-for".into());
    let (store, args) = (refs(&store), refs(&serve));
    // One public URL, three machines: each its own data directory.
    let public = format!("http://localhost:{}", free_port());
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let instances: Vec<Passgate> = dirs
        .iter()
        .map(|d| Passgate::start(d.path(), Some(&public), &args))
        .collect();
    let bases: Vec<String> = instances.iter().map(Passgate::local).collect();
    let bases: Vec<&str> = bases.iter().map(String::as_str).collect();

    let device = SoftAuthenticator::new();
    let link = invite_with(dirs[2].path(), &public, "alice", true, &store);
    let mut first = RemoteBrowser::new(&public);
    enroll(&mut first, bases[0], &device, &link, "Alice").await;

    rotating_sign_in_flows(&public, &bases, &device, FLOWS).await;

    // An authenticated tools/call costs one round trip to the database: one
    // statement, the grant's point read (the pool's connection check
    // sends nothing; statements are prepared once per connection).
    let mut http = RemoteBrowser::new(&public);
    let client = McpClient::register(
        &mut http,
        bases[0],
        "Round trips",
        "http://127.0.0.1:33418/callback",
        Some(format!("{public}/mcp")),
    )
    .await;
    let (verifier, authorize) = client.authorize("rt");
    let back = approve(&mut first, &bases, &authorize).await;
    let tokens = client
        .redeem(&mut http, bases[1], &back["code"], &verifier)
        .await;
    let access = tokens.json()["access_token"].as_str().unwrap().to_owned();
    checked_call(bases[2], &access, 1).await; // prepares the statement, fills the memo
    cluster.psql(&db, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements");
    cluster.psql(&db, "SELECT pg_stat_statements_reset()");
    const CALLS: i64 = 20;
    for i in 0..CALLS {
        checked_call(bases[2], &access, i).await;
    }
    let statements: Vec<String> = cluster
        .psql(
            &db,
            "SELECT calls || ' ' || regexp_replace(query, '\\s+', ' ', 'g') FROM pg_stat_statements
             WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
               AND query NOT LIKE '%pg_stat_statements%'",
        )
        .lines()
        .map(str::to_owned)
        .collect();
    let grant_reads: i64 = statements
        .iter()
        .filter(|s| s.contains("SELECT value, version, expires_at FROM passgate_items"))
        .map(|s| s.split(' ').next().unwrap().parse::<i64>().unwrap())
        .sum();
    // The minutely purge may run meanwhile; it is not part of a call.
    let all: i64 = statements
        .iter()
        .filter(|s| !s.contains("DELETE FROM passgate_items i USING"))
        .map(|s| s.split(' ').next().unwrap().parse::<i64>().unwrap())
        .sum();
    assert_eq!(
        grant_reads, CALLS,
        "one point read per call: {statements:#?}"
    );
    assert_eq!(all, CALLS, "nothing else: {statements:#?}");
    // Nothing of it is in any data directory: no SQLite file was made.
    for dir in &dirs {
        assert!(!dir.path().join("passgate.sqlite3").exists());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn database_away_at_start_and_restarted_mid_run() {
    let cluster = Cluster::start(None);
    // The cluster trusts loopback, so the password is never checked; it is
    // here to show that it never reaches a log.
    let url = cluster
        .url("postgres")
        .replace("passgate@", "passgate:hunter2-db-password@");
    let key = passgate::crypto::MasterKey::generate_secret();
    let store = store_args(&url, &key);
    let mut serve = store.clone();
    serve.push("--trust-forwarded-for".into());
    let (store, args) = (refs(&store), refs(&serve));
    let public = format!("http://localhost:{}", free_port());
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());

    // 1. The database is away when the first instance starts.
    cluster.stop_server();
    let a = Passgate::start_alive(dir_a.path(), Some(&public), &args);
    let http = reqwest::Client::new();
    let get = |path: &str| http.get(format!("{}{path}", a.local())).send();
    assert_eq!(get("/healthz").await.unwrap().status(), 200);
    assert_eq!(get("/readyz").await.unwrap().status(), 503);
    let authorize = get("/authorize?client_id=x").await.unwrap();
    assert_eq!(authorize.status(), 503, "no 500 while starting");
    let token = http
        .post(format!("{}/token", a.local()))
        .form(&[("grant_type", "authorization_code"), ("code", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(token.status(), 503);
    let body: Value = token.json().await.unwrap();
    assert_eq!(body["error"], "temporarily_unavailable", "{body}");

    // ... and serves by itself once it is there.
    cluster.start_server();
    let ready = Instant::now() + Duration::from_secs(90);
    loop {
        if get("/readyz").await.unwrap().status() == 200 {
            break;
        }
        assert!(
            Instant::now() < ready,
            "not ready after the database came back:\n{}",
            a.output()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let b = Passgate::start(dir_b.path(), Some(&public), &args);
    let bases = [a.local(), b.local()];

    // One person (and passkey) per worker: one passkey used twice at the
    // same moment is refused, rightly.
    let mut devices = Vec::new();
    for (i, name) in ["alice", "bob", "carol"].into_iter().enumerate() {
        let device = SoftAuthenticator::new();
        let link = invite_with(dir_b.path(), &public, name, i == 0, &store);
        let mut browser = RemoteBrowser::new(&public);
        enroll(&mut browser, &bases[i % 2], &device, &link, name).await;
        devices.push(device);
    }
    let mut http_client = RemoteBrowser::new(&public);
    let client = Arc::new(
        McpClient::register(
            &mut http_client,
            &bases[1],
            "Restart test",
            "http://127.0.0.1:33418/callback",
            Some(format!("{public}/mcp")),
        )
        .await,
    );

    // 2. Flows run on three workers while the database restarts.
    let run = Arc::new(Run {
        public: public.clone(),
        bases: bases.clone(),
        client,
        stop: AtomicBool::new(false),
        completed: AtomicUsize::new(0),
        next: AtomicUsize::new(0),
    });
    let workers: Vec<_> = devices
        .into_iter()
        .map(|device| {
            let run = run.clone();
            tokio::spawn(async move { run.work(&device).await })
        })
        .collect();
    wait_for_count(&run.completed, 6, Duration::from_secs(120)).await;
    cluster.stop_server();
    // The outage lasts a few seconds; the workers keep sending requests.
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.start_server();
    let after_restart = run.completed.load(Ordering::SeqCst);
    wait_for_count(&run.completed, after_restart + 9, Duration::from_secs(180)).await;
    run.stop.store(true, Ordering::SeqCst);
    let mut outages = Vec::new();
    for worker in workers {
        outages.extend(worker.await.expect("worker panicked"));
    }
    assert!(
        !outages.is_empty(),
        "the restart hit no request: the test did not test anything"
    );
    let steps: Vec<&str> = outages.iter().map(|o| o.0).collect();
    eprintln!(
        "{} flows completed; {} requests hit the outage, at: {steps:?}",
        run.completed.load(Ordering::SeqCst),
        outages.len(),
    );
    assert!(
        a.output().contains("the store is unreachable"),
        "the wait at start is logged:\n{}",
        a.output()
    );
    for instance in [&a, &b] {
        let log = instance.output();
        assert!(!log.contains("hunter2"), "the password was logged:\n{log}");
    }
}

async fn wait_for_count(counter: &AtomicUsize, target: usize, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while counter.load(Ordering::SeqCst) < target {
        assert!(
            Instant::now() < deadline,
            "only {} of {target} flows completed in {timeout:?}",
            counter.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

struct Run {
    public: String,
    bases: [String; 2],
    client: Arc<McpClient>,
    stop: AtomicBool,
    completed: AtomicUsize,
    next: AtomicUsize,
}

/// A request that got an honest 503 (the step it was).
#[derive(Debug)]
struct Outage(&'static str);

/// Where one flow is: what it has obtained so far. A step that failed is
/// tried again from here, as a real browser or client would: the browser
/// part starts again at `/authorize`, the client keeps its code or tokens.
#[derive(Default)]
struct Flow {
    code: Option<(String, String)>,
    tokens: Option<(String, String)>,
    called: bool,
    refreshed: bool,
    called_again: bool,
}

impl Run {
    /// Runs flows until told to stop; returns the outages it met. A flow
    /// that met one is continued until it completes (the database comes
    /// back), so none is left stuck.
    async fn work(&self, device: &SoftAuthenticator) -> Vec<Outage> {
        let mut outages = Vec::new();
        while !self.stop.load(Ordering::SeqCst) {
            let n = self.next.fetch_add(1, Ordering::SeqCst);
            let ip = format!("198.51.{}.{}", 100 + n / 250, n % 250 + 1);
            let mut browser = RemoteBrowser::new(&self.public).forwarded_for(&ip);
            let mut http = RemoteBrowser::new(&self.public);
            let mut flow = Flow::default();
            let deadline = Instant::now() + Duration::from_secs(120);
            loop {
                match self
                    .advance(n, device, &mut flow, &mut browser, &mut http)
                    .await
                {
                    Ok(()) => break,
                    Err(outage) => {
                        assert!(
                            Instant::now() < deadline,
                            "flow {n} stuck at {outage:?} for two minutes"
                        );
                        outages.push(outage);
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
            self.completed.fetch_add(1, Ordering::SeqCst);
        }
        outages
    }

    async fn advance(
        &self,
        n: usize,
        device: &SoftAuthenticator,
        flow: &mut Flow,
        browser: &mut RemoteBrowser,
        http: &mut RemoteBrowser,
    ) -> Result<(), Outage> {
        let x = self.bases[n % 2].as_str();
        let y = self.bases[(n + 1) % 2].as_str();
        if flow.code.is_none() {
            flow.code = Some(self.browser_part(n, device, browser, x, y).await?);
        }
        let (code, verifier) = flow.code.clone().unwrap();
        if flow.tokens.is_none() {
            let reply = self.client.redeem(http, x, &code, &verifier).await;
            honest(&reply, "token (code)", StatusCode::OK)?;
            flow.tokens = Some(tokens(&reply));
        }
        let (access, refresh) = flow.tokens.clone().unwrap();
        if !flow.called {
            call_add(y, &access, n as i64).await?;
            flow.called = true;
        }
        if !flow.refreshed {
            let reply = self.client.refresh(http, y, &refresh).await;
            honest(&reply, "token (refresh)", StatusCode::OK)?;
            flow.tokens = Some(tokens(&reply));
            flow.refreshed = true;
        }
        if !flow.called_again {
            let (access, _) = flow.tokens.clone().unwrap();
            call_add(x, &access, n as i64).await?;
            flow.called_again = true;
        }
        Ok(())
    }

    /// `/authorize` to the redirect with a code, signing in on the way:
    /// returns the code and its PKCE verifier.
    async fn browser_part(
        &self,
        n: usize,
        device: &SoftAuthenticator,
        browser: &mut RemoteBrowser,
        x: &str,
        y: &str,
    ) -> Result<(String, String), Outage> {
        let state = format!("flow-{n}");
        let (verifier, authorize) = self.client.authorize(&state);
        let reply = browser.get(x, &authorize).await;
        honest(&reply, "authorize", StatusCode::SEE_OTHER)?;
        let consent_url = reply.location.unwrap();
        let mut page = browser.get(y, &consent_url).await;
        honest_any(
            &page,
            "consent page",
            &[StatusCode::OK, StatusCode::SEE_OTHER],
        )?;
        if page.status == StatusCode::SEE_OTHER
            && page.location.as_deref().unwrap_or("").starts_with("/login")
        {
            let options = browser
                .post_json(x, "/login/passkey/options", &json!({}))
                .await;
            honest(&options, "sign-in options", StatusCode::OK)?;
            let origin = browser.origin.clone();
            let assertion = device.get(&origin, options.json()).await.unwrap();
            let finish = browser
                .post_json(y, "/login/passkey/finish", &assertion)
                .await;
            honest(&finish, "sign-in finish", StatusCode::OK)?;
            page = browser.get(x, &consent_url).await;
            honest_any(
                &page,
                "consent page",
                &[StatusCode::OK, StatusCode::SEE_OTHER],
            )?;
        }
        let redirect = if page.status == StatusCode::OK {
            let form = [
                ("request", page.field("request")),
                ("csrf", page.field("csrf")),
                ("decision", "approve".to_owned()),
            ];
            let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let reply = browser.post_form(y, "/consent", &form).await;
            honest(&reply, "consent", StatusCode::SEE_OTHER)?;
            reply.location.unwrap()
        } else {
            page.location.unwrap()
        };
        let query: std::collections::BTreeMap<String, String> = url::Url::parse(&redirect)
            .unwrap_or_else(|_| panic!("flow {n}: redirect to {redirect}"))
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        assert_eq!(query.get("state"), Some(&state), "flow {n}: {query:?}");
        let code = query
            .get("code")
            .unwrap_or_else(|| panic!("flow {n}: no code in {query:?}"));
        Ok((code.clone(), verifier))
    }
}

fn tokens(reply: &Reply) -> (String, String) {
    let body = reply.json();
    (
        body["access_token"].as_str().unwrap().to_owned(),
        body["refresh_token"].as_str().unwrap().to_owned(),
    )
}

fn honest(reply: &Reply, step: &'static str, expected: StatusCode) -> Result<(), Outage> {
    honest_any(reply, step, &[expected])
}

/// The expected answer, or a 503 that says the storage is unavailable
/// (`temporarily_unavailable` for OAuth); anything else fails the test.
fn honest_any(reply: &Reply, step: &'static str, expected: &[StatusCode]) -> Result<(), Outage> {
    if expected.contains(&reply.status) {
        return Ok(());
    }
    assert_eq!(
        reply.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{step}: neither success nor 503: {}",
        reply.body
    );
    let says_so = reply.body.contains("temporarily_unavailable")
        || reply.body.contains("storage is busy or unreachable");
    assert!(
        says_so,
        "{step}: a 503 that does not say why: {}",
        reply.body
    );
    if step.starts_with("token") {
        assert!(
            reply.body.contains("\"temporarily_unavailable\""),
            "{step}: {}",
            reply.body
        );
    }
    Err(Outage(step))
}

/// `add(a, 1)` on `/mcp`: the exact sum, or an honest 503.
async fn call_add(base: &str, token: &str, a: i64) -> Result<(), Outage> {
    let response = reqwest::Client::new()
        .post(format!("{base}/mcp"))
        .bearer_auth(token)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .body(
            json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add","arguments":{"a":a,"b":1}}})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    if response.status() == StatusCode::SERVICE_UNAVAILABLE {
        let body = response.text().await.unwrap_or_default();
        assert!(body.contains("storage is busy"), "mcp 503: {body}");
        return Err(Outage("mcp call"));
    }
    assert_eq!(response.status(), 200, "mcp call");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["result"]["structuredContent"]["result"], a + 1);
    Ok(())
}
