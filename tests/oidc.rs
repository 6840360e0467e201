//! Signing in through an upstream OpenID provider, against a real one: the
//! certified `oidc-provider` npm package (tests/js/oidc-provider.mjs),
//! configured like Cognito, and the real passgate binary. Everything goes
//! over HTTP: an MCP client registers, a person is sent to passgate's
//! consent page, signs in upstream, approves, and the client calls `add`
//! with passgate's token and refreshes it. Then the failures: the person
//! cancels upstream; state mismatch, replay and expiry; a misbehaving
//! provider (nonce, issuer, audience, expiry, unknown key, bad signature);
//! a slow and a dead provider; a person outside the allow-list. Then
//! RFC 9207 `iss` with and without the provider advertising it, two tabs in
//! one browser, how allow-lists combine, naming and administrators of
//! accounts from an Entra-like provider, and start-up refusing
//! configurations that cannot work.

mod support;

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use http::StatusCode;
use serde_json::json;
use support::{
    process::{BIN, Passgate, free_port, node},
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
        Self::start_with(redirect_uris, &[])
    }

    /// With extra environment for the harness (`ISS_AUTH_RESP=off`).
    fn start_with(redirect_uris: &[String], env: &[(&str, &str)]) -> Oidc {
        let port = free_port();
        let mut child = Command::new(node())
            .arg(format!("{ROOT}/tests/js/oidc-provider.mjs"))
            .current_dir(format!("{ROOT}/tests/js"))
            .env("PORT", port.to_string())
            .env("REDIRECT_URIS", redirect_uris.join(","))
            .envs(env.iter().copied())
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
        "--oidc-issuer",
        issuer,
        "--oidc-client-id",
        "passgate",
        "--oidc-client-secret",
        "test-secret",
        "--oidc-preset",
        "cognito",
        "--oidc-name",
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

/// The callback URL with its `iss` parameter removed, or set to `iss`.
fn with_iss(callback: &str, iss: Option<&str>) -> String {
    let mut url = url::Url::parse(callback).unwrap();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != "iss")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    {
        let mut q = url.query_pairs_mut();
        q.clear();
        for (k, v) in &pairs {
            q.append_pair(k, v);
        }
        if let Some(iss) = iss {
            q.append_pair("iss", iss);
        }
    }
    url.into()
}

/// `passgate serve` that must refuse to start; returns what it printed.
fn serve_refuses(data_dir: &std::path::Path, public: &str, args: &[&str]) -> String {
    let mut child = Command::new(BIN)
        .arg("serve")
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .args(["--public-url", public])
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env("PASSGATE_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("passgate serve {args:?} kept running");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!status.success(), "passgate serve {args:?} started: {text}");
    text
}

/// Runs a `passgate users ...` command; returns (success, output).
fn users_command(
    data_dir: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (bool, String) {
    let out = Command::new(BIN)
        .arg("users")
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env("PASSGATE_LOG", "warn")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// The first line of the server's log that `matches`, waiting for the
/// log reader to catch up (the line is written before the reply is sent).
fn log_line(pg: &Passgate, matches: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = pg.output();
        if let Some(line) = log.lines().find(|l| matches(l)) {
            return line.to_owned();
        }
        assert!(Instant::now() < deadline, "no such line in the log:\n{log}");
        std::thread::sleep(Duration::from_millis(20));
    }
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
            "--oidc-allowed-domains",
            "example.com",
            "--oidc-admin-emails",
            "alice@example.com",
            "--oidc-timeout-secs",
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
        // Only Google's issuer has a documented scheme-less `iss`.
        ("schemeless-issuer", StatusCode::BAD_GATEWAY),
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
    assert!(
        r.body
            .contains("your email address bob@other.example is not among the addresses allowed"),
        "{}",
        r.body
    );

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
    // The page offers to start signing in again, back to where it led.
    assert!(
        r.body
            .contains(r#"href="/login?next=%2Faccount">Try again"#),
        "{}",
        r.body
    );
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
    assert!(r.body.contains("/login?next=%2Faccount"), "{}", r.body);

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
    let args = upstream_args(&idp.issuer, &["--oidc-state-ttl-secs", "1"]);
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

    // The provider answers and contradicts the configuration: passgate
    // says what is wrong and does not start; the secret is never printed.
    let dir3 = tempfile::tempdir().unwrap();
    let slash = format!("{}/", idp.issuer);
    let out = serve_refuses(dir3.path(), &public, &upstream_args(&slash, &[]));
    assert!(
        out.contains(&format!(
            "Remove the trailing slash: --oidc-issuer {}",
            idp.issuer
        )),
        "{out}"
    );
    assert!(!out.contains("test-secret"), "{out}");
    let wrong = idp.issuer.replace("127.0.0.1", "localhost");
    let out = serve_refuses(dir3.path(), &public, &upstream_args(&wrong, &[]));
    assert!(
        out.contains(&format!("calls itself {}", idp.issuer)),
        "{out}"
    );
    let nowhere = format!("{}/realms/none", idp.issuer);
    let out = serve_refuses(dir3.path(), &public, &upstream_args(&nowhere, &[]));
    assert!(
        out.contains("There is no OpenID discovery document"),
        "{out}"
    );
    // Under the flags' old names (hidden aliases), which still work.
    let no_secret = [
        "--upstream-issuer",
        idp.issuer.as_str(),
        "--upstream-client-id",
        "passgate",
    ];
    let out = serve_refuses(dir3.path(), &public, &no_secret);
    assert!(out.contains("set --oidc-client-secret"), "{out}");
    // `serve --help` lists the secret's flag, never its value, whether the
    // variable has its name or its old one.
    for variable in [
        "PASSGATE_OIDC_CLIENT_SECRET",
        "PASSGATE_UPSTREAM_CLIENT_SECRET",
    ] {
        let help = Command::new(BIN)
            .args(["serve", "--help"])
            .env(variable, "help-secret-value")
            .output()
            .unwrap();
        let help = String::from_utf8_lossy(&help.stdout);
        assert!(help.contains("--oidc-client-secret"), "{help}");
        assert!(help.contains("PASSGATE_OIDC_CLIENT_SECRET"), "{help}");
        assert!(!help.contains("help-secret-value"), "{variable}: {help}");
    }

    // Starting a sign-in from another site is refused (login CSRF).
    let mut other = RemoteBrowser::new("http://evil.example");
    let r = other
        .post_form(&pg.local(), "/login/upstream", &[("next", "/account")])
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
}

/// RFC 9207 against a provider that advertises `iss` in authorization
/// responses and one that does not; and two sign-ins started in two tabs of
/// one browser, both completed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_issuer_is_checked_and_two_tabs_both_sign_in() {
    let public = format!("http://localhost:{}", free_port());
    let public_off = format!("http://localhost:{}", free_port());
    let idp = Oidc::start(&[format!("{public}/upstream/callback")]);
    let idp_off = Oidc::start_with(
        &[format!("{public_off}/upstream/callback")],
        &[("ISS_AUTH_RESP", "off")],
    );
    let (dir, dir_off) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let pg = Passgate::start(dir.path(), Some(&public), &upstream_args(&idp.issuer, &[]));
    let pg_off = Passgate::start(
        dir_off.path(),
        Some(&public_off),
        &upstream_args(&idp_off.issuer, &[]),
    );

    // Advertised: the provider's own `iss` passes; removed or replaced, the
    // answer is refused and nobody is signed in.
    let discovery: serde_json::Value =
        reqwest::get(format!("{}/.well-known/openid-configuration", idp.issuer))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(
        discovery["authorization_response_iss_parameter_supported"],
        true
    );
    for (iss, refused) in [
        (None, true),
        (Some("http://evil.example"), true),
        (Some(idp.issuer.as_str()), false),
    ] {
        let mut b = RemoteBrowser::new(&public);
        let callback = through_provider(
            &pg,
            &public,
            &mut b,
            "/account",
            AtProvider::SignIn("alice"),
        )
        .await;
        let sent = url::Url::parse(&callback).unwrap();
        assert!(
            sent.query_pairs()
                .any(|(k, v)| k == "iss" && v == idp.issuer)
        );
        let r = b
            .get(&pg.local(), &path_of(&with_iss(&callback, iss)))
            .await;
        if refused {
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{iss:?}: {}", r.body);
            assert!(r.body.contains("(iss"), "{}", r.body);
            assert!(!b.cookie_header().contains("passgate_session"));
        } else {
            assert_eq!(r.status, StatusCode::SEE_OTHER, "{iss:?}: {}", r.body);
        }
    }
    // A cancelled sign-in whose answer lost its `iss` is refused too.
    let mut b = RemoteBrowser::new(&public);
    let callback = through_provider(&pg, &public, &mut b, "/account", AtProvider::Cancel).await;
    let r = b
        .get(&pg.local(), &path_of(&with_iss(&callback, None)))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);

    // Not advertised: no `iss` is fine, but one that is present must match.
    let discovery: serde_json::Value = reqwest::get(format!(
        "{}/.well-known/openid-configuration",
        idp_off.issuer
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert!(
        discovery
            .get("authorization_response_iss_parameter_supported")
            .is_none()
    );
    for (iss, status) in [
        (Some("http://evil.example"), StatusCode::BAD_REQUEST),
        (None, StatusCode::SEE_OTHER),
        (Some(idp_off.issuer.as_str()), StatusCode::SEE_OTHER),
    ] {
        let mut b = RemoteBrowser::new(&public_off);
        let callback = through_provider(
            &pg_off,
            &public_off,
            &mut b,
            "/account",
            AtProvider::SignIn("alice"),
        )
        .await;
        assert!(!callback.contains("iss="), "{callback}");
        let r = b
            .get(&pg_off.local(), &path_of(&with_iss(&callback, iss)))
            .await;
        assert_eq!(r.status, status, "{iss:?}: {}", r.body);
    }

    // Two tabs: the second press of "Sign in with" does not unbind the first.
    let mut b = RemoteBrowser::new(&public);
    let first = through_provider(
        &pg,
        &public,
        &mut b,
        "/account",
        AtProvider::SignIn("alice"),
    )
    .await;
    let second = through_provider(
        &pg,
        &public,
        &mut b,
        "/consent?x=1",
        AtProvider::SignIn("alice"),
    )
    .await;
    let r = b.get(&pg.local(), &path_of(&first)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "first tab: {}", r.body);
    assert_eq!(r.location.as_deref(), Some("/account"));
    let r = b.get(&pg.local(), &path_of(&second)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "second tab: {}", r.body);
    assert_eq!(r.location.as_deref(), Some("/consent?x=1"));
    // Another browser still cannot finish this browser's attempt.
    let third = through_provider(
        &pg,
        &public,
        &mut b,
        "/account",
        AtProvider::SignIn("alice"),
    )
    .await;
    let mut other = RemoteBrowser::new(&public);
    let r = other.get(&pg.local(), &path_of(&third)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.body.contains("another browser"), "{}", r.body);
}

/// Allow-lists combine (an address rule and a group rule both apply), each
/// refusal says and logs why; Entra-like accounts get real names; the
/// operator makes and unmakes administrators with passkeys off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_lists_combine_and_administrators_work_with_every_provider() {
    let public = format!("http://localhost:{}", free_port());
    let idp = Oidc::start(&[format!("{public}/upstream/callback")]);
    let dir = tempfile::tempdir().unwrap();
    let lists = [
        "--oidc-allowed-groups",
        "staff",
        "--oidc-allowed-domains",
        "example.com",
        "--passkeys",
        "false",
    ];
    let pg = Passgate::start_logging(
        dir.path(),
        Some(&public),
        &upstream_args(&idp.issuer, &lists),
        "info",
    );
    // With passkeys off and no administrator, start-up says how to get one.
    log_line(&pg, |l| l.contains("passgate has no administrator yet"));
    log_line(&pg, |l| l.contains("run `passgate users promote <name>`"));

    for (who, reason) in [
        (
            "carol",
            "did not mark your email address carol@example.com as verified",
        ),
        ("dave", "lists you in none of the groups allowed here"),
        (
            "bob",
            "bob@other.example is not among the addresses allowed here, and Test IdP lists you in none of the groups",
        ),
    ] {
        let mut b = RemoteBrowser::new(&public);
        let r = sign_in_upstream(&pg, &public, &mut b, "/account", AtProvider::SignIn(who)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{who}: {}", r.body);
        assert!(r.body.contains(reason), "{who}: {}", r.body);
        // Only the rules that failed are named.
        assert_eq!(
            r.body.contains("none of the groups"),
            who != "carol",
            "{who}: {}",
            r.body
        );
        assert_eq!(
            r.body.contains("addresses allowed") || r.body.contains("verified"),
            who != "dave",
            "{who}: {}",
            r.body
        );
        assert!(!b.cookie_header().contains("passgate_session"), "{who}");
        let line = log_line(&pg, |l| {
            l.contains("refused by the allow-list") && l.contains(&format!("subject={who}"))
        });
        assert!(
            line.contains(reason.split(", and").next().unwrap()),
            "{line}"
        );
    }
    // Both rules hold: in.
    let mut alice = RemoteBrowser::new(&public);
    let r = sign_in_upstream(
        &pg,
        &public,
        &mut alice,
        "/account",
        AtProvider::SignIn("alice"),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(
        alice.get(&pg.local(), "/admin").await.status,
        StatusCode::FORBIDDEN
    );
    // An invitation would lead to a passkey page that is not offered.
    let (ok, out) = users_command(
        dir.path(),
        &["invite", "zed", "--admin"],
        &[("PASSGATE_PASSKEYS", "false")],
    );
    assert!(!ok && out.contains("passgate users promote"), "{out}");
    drop(pg);

    // Groups only, as with Entra ID: no email_verified, names from
    // preferred_username, or the name when nothing else is sent.
    let pg = Passgate::start(
        dir.path(),
        Some(&public),
        &upstream_args(
            &idp.issuer,
            &["--oidc-allowed-groups", "staff", "--passkeys", "false"],
        ),
    );
    let mut erin = RemoteBrowser::new(&public);
    let r = sign_in_upstream(
        &pg,
        &public,
        &mut erin,
        "/account",
        AtProvider::SignIn("erin"),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    // The provider's groups are the account's, shown on its page.
    let account = erin.get(&pg.local(), "/account").await;
    assert!(
        account.body.contains(r#"<span class="tag">staff</span>"#),
        "{}",
        account.body
    );
    let mut frank = RemoteBrowser::new(&public);
    let r = sign_in_upstream(
        &pg,
        &public,
        &mut frank,
        "/account",
        AtProvider::SignIn("frank"),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let (ok, list) = users_command(dir.path(), &["list"], &[]);
    assert!(ok, "{list}");
    for name in ["alice ", "erin.e ", "frank-only-name "] {
        assert!(list.lines().any(|l| l.starts_with(name)), "{name}: {list}");
    }
    assert!(!list.contains("user"), "{list}");

    // Promote and demote, effective at once in live sessions.
    assert_eq!(
        erin.get(&pg.local(), "/admin").await.status,
        StatusCode::FORBIDDEN
    );
    let (ok, out) = users_command(dir.path(), &["promote", "erin.e"], &[]);
    assert!(
        ok && out.contains("erin.e is now an administrator"),
        "{out}"
    );
    let admin = erin.get(&pg.local(), "/admin").await;
    assert_eq!(admin.status, StatusCode::OK, "{}", admin.body);
    // No invitations without passkeys: the page says how people arrive.
    assert!(
        !admin.body.contains("Create invitation link"),
        "{}",
        admin.body
    );
    assert!(
        admin.body.contains("signing in with Test IdP"),
        "{}",
        admin.body
    );
    // Nor recovery links: they add a passkey. Groups can still be set.
    assert!(
        !admin.body.contains("Recovery link") && admin.body.contains("Save groups"),
        "{}",
        admin.body
    );
    let csrf = admin.field("csrf");
    let r = erin
        .post_form(
            &pg.local(),
            "/admin/users/recover",
            &[("csrf", &csrf), ("user_id", "whoever")],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    let r = erin
        .post_form(
            &pg.local(),
            "/admin/invite",
            &[("csrf", &csrf), ("name", "zed"), ("role", "admin")],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    // A link made anyway (the CLI without --passkeys false) explains.
    let (ok, out) = users_command(dir.path(), &["invite", "zed"], &[]);
    assert!(ok, "{out}");
    let link = out.lines().last().unwrap().trim().to_owned();
    let r = erin.get(&pg.local(), &path_of(&link)).await;
    assert_eq!(r.status, StatusCode::GONE, "{}", r.body);
    assert!(
        r.body.contains("Sign in with Test IdP instead"),
        "{}",
        r.body
    );
    let (ok, out) = users_command(dir.path(), &["demote", "erin.e"], &[]);
    assert!(!ok && out.contains("only active administrator"), "{out}");
    let (ok, out) = users_command(dir.path(), &["promote", "frank-only-name"], &[]);
    assert!(ok, "{out}");
    let (ok, out) = users_command(dir.path(), &["demote", "erin.e"], &[]);
    assert!(ok && out.contains("erin.e is now a member"), "{out}");
    assert_eq!(
        erin.get(&pg.local(), "/admin").await.status,
        StatusCode::FORBIDDEN
    );
    let (ok, out) = users_command(dir.path(), &["promote", "nobody"], &[]);
    assert!(!ok && out.contains("no user named"), "{out}");
    drop(pg);

    // Added to --oidc-admin-emails after the first sign-in: made an
    // administrator at the next one. Removed again: stays one (documented).
    let admin_list = [
        "--oidc-admin-emails",
        "alice@example.com",
        "--passkeys",
        "false",
    ];
    let pg = Passgate::start(
        dir.path(),
        Some(&public),
        &upstream_args(&idp.issuer, &admin_list),
    );
    // An administrator exists now: no banner.
    assert!(
        !pg.output().contains("no administrator yet"),
        "{}",
        pg.output()
    );
    let mut alice = RemoteBrowser::new(&public);
    let r = sign_in_upstream(
        &pg,
        &public,
        &mut alice,
        "/account",
        AtProvider::SignIn("alice"),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(
        alice.get(&pg.local(), "/admin").await.status,
        StatusCode::OK
    );
    // An unverified email in the list makes nobody an administrator.
    drop(pg);
    let pg = Passgate::start(
        dir.path(),
        Some(&public),
        &upstream_args(
            &idp.issuer,
            &[
                "--oidc-admin-emails",
                "erin@contoso.example",
                "--passkeys",
                "false",
            ],
        ),
    );
    let r = sign_in_upstream(
        &pg,
        &public,
        &mut erin,
        "/account",
        AtProvider::SignIn("erin"),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(
        erin.get(&pg.local(), "/admin").await.status,
        StatusCode::FORBIDDEN
    );
    let r = sign_in_upstream(
        &pg,
        &public,
        &mut alice,
        "/account",
        AtProvider::SignIn("alice"),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(
        alice.get(&pg.local(), "/admin").await.status,
        StatusCode::OK
    );
    drop(pg);

    // Entra's way: a group in --oidc-admin-groups (no verified email).
    let pg = Passgate::start(
        dir.path(),
        Some(&public),
        &upstream_args(
            &idp.issuer,
            &["--oidc-admin-groups", "staff", "--passkeys", "false"],
        ),
    );
    let r = sign_in_upstream(
        &pg,
        &public,
        &mut erin,
        "/account",
        AtProvider::SignIn("erin"),
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(erin.get(&pg.local(), "/admin").await.status, StatusCode::OK);
    drop(pg);

    // Someone with an account, refused later: the log names the account.
    let pg = Passgate::start_logging(
        dir.path(),
        Some(&public),
        &upstream_args(&idp.issuer, &["--oidc-allowed-groups", "auditors"]),
        "info",
    );
    let mut b = RemoteBrowser::new(&public);
    let r = sign_in_upstream(
        &pg,
        &public,
        &mut b,
        "/account",
        AtProvider::SignIn("alice"),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let line = log_line(&pg, |l| l.contains("refused by the allow-list"));
    for part in [
        "subject=alice",
        "account=alice",
        "email=alice@example.com",
        "email_verified=true",
    ] {
        assert!(line.contains(part), "{part}: {line}");
    }
    assert!(!line.contains("eyJ"), "a token in the log: {line}");
}
