//! Signing in through an upstream OpenID provider, against a real one: the
//! certified `oidc-provider` npm package (tests/js/oidc-provider.mjs),
//! configured like Cognito, and the real passgate binary. Everything goes
//! over HTTP: an MCP client registers, a person is sent to passgate's
//! consent page, signs in upstream, approves, and the client calls `add`
//! with passgate's token and refreshes it. Then the failures: the person
//! cancels upstream; state mismatch, replay and expiry; a misbehaving
//! provider (nonce, issuer, audience, expiry, unknown key, bad signature);
//! a slow and a dead provider; a person outside the allow-list.

mod support;

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use http::StatusCode;
use serde_json::json;
use support::{
    process::{Passgate, free_port, node},
    remote::{McpClient, RemoteBrowser, Reply, call_add},
};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// The `oidc-provider` process.
struct Oidc {
    child: Child,
    issuer: String,
}

impl Oidc {
    fn start(redirect_uris: &[String]) -> Oidc {
        let port = free_port();
        let mut child = Command::new(node())
            .arg(format!("{ROOT}/tests/js/oidc-provider.mjs"))
            .current_dir(format!("{ROOT}/tests/js"))
            .env("PORT", port.to_string())
            .env("REDIRECT_URIS", redirect_uris.join(","))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start node tests/js/oidc-provider.mjs (run npm install in tests/js)");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.contains("listening") {
                    let _ = tx.send(());
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(30))
            .expect("oidc-provider did not start within 30 s");
        Oidc {
            child,
            issuer: format!("http://127.0.0.1:{port}"),
        }
    }

    async fn fault(&self, mode: &str, delay_ms: u64) {
        let r = reqwest::get(format!(
            "{}/_test/fault?mode={mode}&delay={delay_ms}",
            self.issuer
        ))
        .await
        .unwrap();
        assert!(r.status().is_success());
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Oidc {
    fn drop(&mut self) {
        self.stop();
    }
}

fn upstream_args<'a>(issuer: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--upstream-issuer",
        issuer,
        "--upstream-client-id",
        "passgate",
        "--upstream-client-secret",
        "test-secret",
        "--upstream-preset",
        "cognito",
        "--upstream-name",
        "Test IdP",
    ];
    args.extend_from_slice(extra);
    args
}

/// Path and query of a URL, to send it to the instance's local address.
fn path_of(url: &str) -> String {
    let u = url::Url::parse(url).unwrap();
    match u.query() {
        Some(q) => format!("{}?{q}", u.path()),
        None => u.path().to_owned(),
    }
}

enum AtProvider {
    SignIn(&'static str),
    Cancel,
}

/// Presses "Sign in with Test IdP" on passgate's sign-in page and goes
/// through the provider's pages; returns the callback URL the provider
/// sends the browser back to (not yet visited).
async fn through_provider(
    pg: &Passgate,
    public: &str,
    browser: &mut RemoteBrowser,
    next: &str,
    action: AtProvider,
) -> String {
    let start = browser
        .post_form(&pg.local(), "/login/upstream", &[("next", next)])
        .await;
    assert_eq!(start.status, StatusCode::SEE_OTHER, "{}", start.body);
    let mut url = start.location.unwrap();
    let issuer = {
        let u = url::Url::parse(&url).unwrap();
        u.origin().ascii_serialization()
    };
    let mut idp = RemoteBrowser::new(&issuer);
    for _ in 0..20 {
        if url.starts_with(public) {
            return url;
        }
        let mut reply: Reply = idp.get(&issuer, &url).await;
        if reply.status == StatusCode::OK && reply.body.contains(r#"name="login""#) {
            let uid = reply
                .body
                .split("/interaction/")
                .nth(1)
                .unwrap()
                .split('/')
                .next()
                .unwrap()
                .to_owned();
            reply = match action {
                AtProvider::SignIn(who) => {
                    idp.post_form(
                        &issuer,
                        &format!("/interaction/{uid}/login"),
                        &[("login", who)],
                    )
                    .await
                }
                AtProvider::Cancel => {
                    idp.post_form(&issuer, &format!("/interaction/{uid}/abort"), &[])
                        .await
                }
            };
        }
        assert!(
            reply.status.is_redirection(),
            "provider: {} {}",
            reply.status,
            reply.body
        );
        url = reply.location.unwrap();
    }
    panic!("the provider never sent the browser back");
}

/// Signs in upstream and visits the callback; returns its reply.
async fn sign_in_upstream(
    pg: &Passgate,
    public: &str,
    browser: &mut RemoteBrowser,
    next: &str,
    action: AtProvider,
) -> Reply {
    let callback = through_provider(pg, public, browser, next, action).await;
    browser.get(&pg.local(), &path_of(&callback)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_client_through_upstream_sign_in_and_every_failure() {
    let dir = tempfile::tempdir().unwrap();
    let public = format!("http://localhost:{}", free_port());
    let mut idp = Oidc::start(&[format!("{public}/upstream/callback")]);
    let issuer = idp.issuer.clone();
    let args = upstream_args(
        &issuer,
        &[
            "--upstream-allowed-domains",
            "example.com",
            "--upstream-admin-emails",
            "alice@example.com",
            "--upstream-timeout-secs",
            "2",
            "--passkeys",
            "false",
        ],
    );
    let pg = Passgate::start(dir.path(), Some(&public), &args);
    let local = pg.local();

    // The sign-in page offers the provider, and no passkeys.
    let mut browser = RemoteBrowser::new(&public);
    let login = browser.get(&local, "/login").await;
    assert_eq!(login.status, StatusCode::OK);
    assert!(
        login.body.contains("Sign in with Test IdP"),
        "{}",
        login.body
    );
    assert!(!login.body.contains("data-passkey"));
    let options = browser
        .post_json(&local, "/login/passkey/options", &json!({}))
        .await;
    assert_eq!(options.status, StatusCode::NOT_FOUND);

    // An MCP client registers and sends the person to /authorize.
    let mut http = RemoteBrowser::new(&public);
    let client = McpClient::register(
        &mut http,
        &local,
        "Upstream test",
        "http://127.0.0.1:33418/callback",
        Some(format!("{public}/mcp")),
    )
    .await;
    let (verifier, authorize) = client.authorize("client-state");
    let to_consent = browser.get(&local, &authorize).await;
    let consent_url = to_consent.location.expect("redirect to consent");
    let to_login = browser.get(&local, &consent_url).await;
    let login_url = to_login.location.expect("redirect to sign-in");
    assert!(login_url.starts_with("/login?next="), "{login_url}");
    let login_page = browser.get(&local, &login_url).await;
    let next = login_page.field("next");
    assert_eq!(next, consent_url);

    // Upstream sign-in, then back to passgate's own consent page.
    let back = sign_in_upstream(
        &pg,
        &public,
        &mut browser,
        &next,
        AtProvider::SignIn("alice"),
    )
    .await;
    assert_eq!(back.status, StatusCode::SEE_OTHER, "{}", back.body);
    assert_eq!(back.location.as_deref(), Some(consent_url.as_str()));
    let page = browser.get(&local, &consent_url).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("Upstream test"));
    assert!(page.body.contains("Alice Example"));
    let form = [
        ("request", page.field("request")),
        ("csrf", page.field("csrf")),
        ("decision", "approve".to_owned()),
    ];
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let decided = browser.post_form(&local, "/consent", &form).await;
    assert_eq!(decided.status, StatusCode::SEE_OTHER, "{}", decided.body);
    let back: std::collections::BTreeMap<String, String> =
        url::Url::parse(&decided.location.unwrap())
            .unwrap()
            .query_pairs()
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
    assert_eq!(back.get("state").map(String::as_str), Some("client-state"));
    let code = back.get("code").expect("a code");

    // passgate's tokens (never the provider's) work on /mcp, and refresh.
    let tokens = client.redeem(&mut http, &local, code, &verifier).await;
    assert!(tokens.status.is_success(), "{}", tokens.body);
    let tokens = tokens.json();
    assert!(tokens.get("id_token").is_none());
    call_add(&local, tokens["access_token"].as_str().unwrap(), 41).await;
    let refreshed = client
        .refresh(&mut http, &local, tokens["refresh_token"].as_str().unwrap())
        .await;
    assert!(refreshed.status.is_success(), "{}", refreshed.body);
    call_add(
        &local,
        refreshed.json()["access_token"].as_str().unwrap(),
        1,
    )
    .await;

    // Signing in again finds the same account.
    let mut again = RemoteBrowser::new(&public);
    let r = sign_in_upstream(
        &pg,
        &public,
        &mut again,
        "/account",
        AtProvider::SignIn("alice"),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let account = again.get(&local, "/account").await;
    assert!(account.body.contains("Alice Example"), "{}", account.body);
    assert!(!account.body.contains("alice-2"));
    let admin = again.get(&local, "/admin").await;
    assert_eq!(admin.status, StatusCode::OK, "{}", admin.body);

    // The person cancels at the provider.
    let mut b = RemoteBrowser::new(&public);
    let r = sign_in_upstream(&pg, &public, &mut b, &consent_url, AtProvider::Cancel).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert!(
        r.body.contains("You cancelled sign-in at Test IdP"),
        "{}",
        r.body
    );
    assert!(r.body.contains("/login?next="));

    // A state passgate never issued.
    let mut b = RemoteBrowser::new(&public);
    let r = b
        .get(&local, "/upstream/callback?code=abc&state=made-up-state")
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    let r = b.get(&local, "/upstream/callback?code=abc").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);

    // A state from another browser (login CSRF): refused.
    let mut attacker = RemoteBrowser::new(&public);
    let callback = through_provider(
        &pg,
        &public,
        &mut attacker,
        "/account",
        AtProvider::SignIn("alice"),
    )
    .await;
    let mut victim = RemoteBrowser::new(&public);
    let r = victim.get(&local, &path_of(&callback)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.body.contains("another browser"));

    // Replay: the callback works once.
    let mut b = RemoteBrowser::new(&public);
    let callback = through_provider(
        &pg,
        &public,
        &mut b,
        "/account",
        AtProvider::SignIn("alice"),
    )
    .await;
    let first = b.get(&local, &path_of(&callback)).await;
    assert_eq!(first.status, StatusCode::SEE_OTHER, "{}", first.body);
    let replay = b.get(&local, &path_of(&callback)).await;
    assert_eq!(replay.status, StatusCode::BAD_REQUEST, "{}", replay.body);

    // Key rotation: an unknown key id makes passgate refetch the JWKS once.
    idp.fault("rotated", 0).await;
    let mut b = RemoteBrowser::new(&public);
    let r = sign_in_upstream(
        &pg,
        &public,
        &mut b,
        "/account",
        AtProvider::SignIn("alice"),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "rotated: {}", r.body);

    // A misbehaving provider: every ID-token fault is refused (the unknown
    // key id without another refetch: they are rate-limited).

    for (mode, status) in [
        ("wrong-nonce", StatusCode::BAD_REQUEST),
        ("wrong-issuer", StatusCode::BAD_GATEWAY),
        ("wrong-audience", StatusCode::BAD_GATEWAY),
        ("expired", StatusCode::BAD_GATEWAY),
        ("unknown-kid", StatusCode::BAD_GATEWAY),
        ("bad-signature", StatusCode::BAD_GATEWAY),
    ] {
        idp.fault(mode, 0).await;
        let mut b = RemoteBrowser::new(&public);
        let r = sign_in_upstream(
            &pg,
            &public,
            &mut b,
            "/account",
            AtProvider::SignIn("alice"),
        )
        .await;
        assert_eq!(r.status, status, "{mode}: {}", r.body);
        assert!(!b.cookie_header().contains("passgate_session"), "{mode}");
    }
    idp.fault("none", 0).await;

    // Outside the allow-list.
    let mut b = RemoteBrowser::new(&public);
    let r = sign_in_upstream(&pg, &public, &mut b, "/account", AtProvider::SignIn("bob")).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert!(r.body.contains("not allowed"), "{}", r.body);

    // Slow provider: the bounded timeout gives a 503 page, promptly.
    idp.fault("none", 5000).await;
    let mut b = RemoteBrowser::new(&public);
    let callback = through_provider(
        &pg,
        &public,
        &mut b,
        "/account",
        AtProvider::SignIn("alice"),
    )
    .await;
    let started = Instant::now();
    let r = b.get(&local, &path_of(&callback)).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    assert!(started.elapsed() < Duration::from_secs(4));
    idp.fault("none", 0).await;

    // Dead provider between its redirect back and the code exchange.
    let mut b = RemoteBrowser::new(&public);
    let callback = through_provider(
        &pg,
        &public,
        &mut b,
        "/account",
        AtProvider::SignIn("alice"),
    )
    .await;
    idp.stop();
    let r = b.get(&local, &path_of(&callback)).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);

    // Nothing secret in the log.
    let log = pg.output();
    assert!(!log.contains(code.as_str()));
    assert!(!log.contains("test-secret"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_state_and_provider_down_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let public = format!("http://localhost:{}", free_port());
    let idp = Oidc::start(&[format!("{public}/upstream/callback")]);
    let args = upstream_args(&idp.issuer, &["--upstream-state-ttl-secs", "1"]);
    let pg = Passgate::start(dir.path(), Some(&public), &args);
    let mut b = RemoteBrowser::new(&public);
    // With passkeys on too, the page offers both.
    let login = b.get(&pg.local(), "/login").await;
    assert!(login.body.contains("data-passkey") && login.body.contains("Sign in with Test IdP"));
    let callback = through_provider(
        &pg,
        &public,
        &mut b,
        "/account",
        AtProvider::SignIn("alice"),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = b.get(&pg.local(), &path_of(&callback)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.body.contains("expired"), "{}", r.body);

    // A provider that is down when passgate starts: passgate serves, and
    // sign-in answers 503 until the provider is back.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let dir2 = tempfile::tempdir().unwrap();
    let public2 = format!("http://localhost:{}", free_port());
    let pg2 = Passgate::start(dir2.path(), Some(&public2), &upstream_args(&dead, &[]));
    let mut b = RemoteBrowser::new(&public2);
    let r = b
        .post_form(&pg2.local(), "/login/upstream", &[("next", "/account")])
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);

    // Starting a sign-in from another site is refused (login CSRF).
    let mut other = RemoteBrowser::new("http://evil.example");
    let r = other
        .post_form(&pg.local(), "/login/upstream", &[("next", "/account")])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
}
