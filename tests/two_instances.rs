//! The original system lost about one login in ten because its OAuth state
//! lived in one process's memory. Here two `passgate serve` processes share
//! one SQLite file, and every request of 200 complete sign-in flows goes to
//! the other instance than the one before: every flow must succeed.

mod support;

use serde_json::json;
use support::{
    authenticator::SoftAuthenticator,
    process::{Passgate, free_port, invite},
    remote::{RemoteBrowser, call_add, enroll, sign_in},
};

const FLOWS: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_every_piece_of_state() {
    let dir = tempfile::tempdir().unwrap();
    // Both instances are one service: one public URL, one issuer.
    let public = format!("http://localhost:{}", free_port());
    // 200 people sign in within seconds: they come from 200 addresses, as
    // they would through a proxy, so the per-address sign-in limit holds.
    let a = Passgate::start(dir.path(), Some(&public), &["--trust-forwarded-for"]);
    let b = Passgate::start(dir.path(), Some(&public), &["--trust-forwarded-for"]);
    let (a, b) = (a.local(), b.local());

    let device = SoftAuthenticator::new();
    let link = invite(dir.path(), &public, "alice", true);
    let mut first = RemoteBrowser::new(&public);
    enroll(&mut first, &a, &device, &link, "Alice").await;

    let redirect = "http://127.0.0.1:33418/callback";
    let mut client = RemoteBrowser::new(&public);
    let registration = client
        .post_json(
            &b,
            "/register",
            &json!({"client_name": "Two-instance test", "redirect_uris": [redirect]}),
        )
        .await;
    assert!(registration.status.is_success(), "{}", registration.body);
    let client_id = registration.json()["client_id"]
        .as_str()
        .unwrap()
        .to_owned();

    let mut succeeded = 0;
    for flow in 0..FLOWS {
        // Start each flow on the other instance, so both orders happen.
        let (x, y) = if flow % 2 == 0 {
            (a.as_str(), b.as_str())
        } else {
            (b.as_str(), a.as_str())
        };
        let mut browser =
            RemoteBrowser::new(&public).forwarded_for(&format!("198.51.100.{}", flow % 250 + 1));
        let verifier = passgate::crypto::random_token(32);
        let challenge = passgate::crypto::pkce_s256(&verifier);
        let state = format!("flow-{flow}");
        let authorize = format!(
            "/authorize?{}",
            serde_urlencoded::to_string([
                ("response_type", "code"),
                ("client_id", &client_id),
                ("redirect_uri", redirect),
                ("code_challenge", &challenge),
                ("code_challenge_method", "S256"),
                ("state", &state),
                ("resource", &format!("{public}/mcp")),
            ])
            .unwrap()
        );
        // Not signed in yet: /authorize on x, the consent page on y sends us
        // to sign in, whose ceremony starts on x and finishes on y.
        let to_consent = browser.get(x, &authorize).await;
        let consent_url = to_consent.location.clone().expect("redirect to consent");
        let to_login = browser.get(y, &consent_url).await;
        assert!(
            to_login
                .location
                .as_deref()
                .unwrap_or("")
                .starts_with("/login"),
            "flow {flow}: {}",
            to_login.body
        );
        sign_in(&mut browser, (x, y), &device).await;
        let back = approve_pending(&mut browser, &[x, y, x], &consent_url).await;
        assert_eq!(back.get("state"), Some(&state), "flow {flow}");
        assert_eq!(back.get("iss"), Some(&public), "flow {flow}");
        let code = back.get("code").expect("a code");

        let tokens = client
            .post_form(
                y,
                "/token",
                &[
                    ("grant_type", "authorization_code"),
                    ("code", code),
                    ("redirect_uri", redirect),
                    ("code_verifier", &verifier),
                    ("client_id", &client_id),
                    ("resource", &format!("{public}/mcp")),
                ],
            )
            .await;
        assert!(
            tokens.status.is_success(),
            "flow {flow} token: {}",
            tokens.body
        );
        let tokens = tokens.json();
        call_add(x, tokens["access_token"].as_str().unwrap(), flow as i64).await;

        let refreshed = client
            .post_form(
                x,
                "/token",
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", tokens["refresh_token"].as_str().unwrap()),
                    ("client_id", &client_id),
                ],
            )
            .await;
        assert!(
            refreshed.status.is_success(),
            "flow {flow} refresh: {}",
            refreshed.body
        );
        call_add(
            y,
            refreshed.json()["access_token"].as_str().unwrap(),
            flow as i64,
        )
        .await;
        succeeded += 1;
    }
    assert_eq!(succeeded, FLOWS);
}

/// The consent step of a request already started: the page and its
/// approval, or a remembered approval that redirects at once.
async fn approve_pending(
    browser: &mut RemoteBrowser,
    bases: &[&str],
    consent_url: &str,
) -> std::collections::BTreeMap<String, String> {
    let page = browser.get(bases[0], consent_url).await;
    let redirect = if page.status == http::StatusCode::OK {
        let form = [
            ("request", page.field("request")),
            ("csrf", page.field("csrf")),
            ("decision", "approve".to_owned()),
        ];
        let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let reply = browser.post_form(bases[1], "/consent", &form).await;
        assert_eq!(reply.status, http::StatusCode::SEE_OTHER, "{}", reply.body);
        reply.location.unwrap()
    } else {
        assert!(
            page.status.is_redirection(),
            "{} {}",
            page.status,
            page.body
        );
        page.location.unwrap()
    };
    url::Url::parse(&redirect)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}
