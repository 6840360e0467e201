//! Complete OAuth flows in-process, with a person signed in by a software
//! passkey: authorize, consent, code, token, MCP call, refresh, revoke; and
//! what happens when codes and refresh tokens are replayed or raced.

mod support;

use std::collections::BTreeMap;

use http::{StatusCode, header};
use passgate::{store::Store, users::Role};
use serde_json::{Value, json};
use support::{
    Browser, ORIGIN, TestApp, TestResponse,
    oauth::{authorize_url, mcp_request, pkce},
};

const REDIRECT: &str = "http://127.0.0.1:33418/callback";

struct Person {
    browser: Browser,
    user_id: String,
}

async fn person(app: &TestApp, name: &str) -> Person {
    let (_, cookie) = support::new_user(app, name, Role::Member).await;
    let user_id = app.signed_in(&cookie).await.unwrap().user_id;
    Person {
        browser: Browser::with_cookie(&cookie),
        user_id,
    }
}

fn query(location: &str) -> BTreeMap<String, String> {
    url::Url::parse(location)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// `/authorize` → consent page → the person's decision; returns the redirect.
async fn decide(
    app: &TestApp,
    who: &mut Person,
    client: &str,
    challenge: &str,
    decision: &str,
) -> TestResponse {
    let start = app
        .get(&authorize_url(client, REDIRECT, challenge, ""))
        .await;
    assert_eq!(start.status, StatusCode::SEE_OTHER, "{}", start.body);
    let consent = start.location().unwrap().to_owned();
    let page = who.browser.get(app, &consent).await;
    if page.status.is_redirection() {
        return page; // approved before
    }
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body.contains("Test &lt;App&gt;"),
        "the client name, escaped"
    );
    assert!(page.body.contains("127.0.0.1:33418"), "the redirect host");
    let csp = page.headers[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap();
    assert!(csp.contains("frame-ancestors 'none'"));
    let field = |name: &str| {
        let marker = format!(r#"name="{name}" value=""#);
        let start = page.body.find(&marker).unwrap() + marker.len();
        page.body[start..start + page.body[start..].find('"').unwrap()].to_owned()
    };
    let form = [
        ("request", field("request")),
        ("csrf", field("csrf")),
        ("decision", decision.to_owned()),
    ];
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    who.browser.post_form(app, "/consent", &form).await
}

async fn code_for(app: &TestApp, who: &mut Person, client: &str) -> (String, String) {
    let (verifier, challenge) = pkce();
    let back = decide(app, who, client, &challenge, "approve").await;
    assert_eq!(back.status, StatusCode::SEE_OTHER, "{}", back.body);
    let q = query(back.location().unwrap());
    assert_eq!(q["state"], "xyz");
    assert_eq!(q["iss"], ORIGIN);
    (q["code"].clone(), verifier)
}

async fn redeem(app: &TestApp, client: &str, code: &str, verifier: &str) -> TestResponse {
    app.post_form(
        "/token",
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", verifier),
            ("client_id", client),
        ],
    )
    .await
}

async fn refresh(app: &TestApp, client: &str, token: &str) -> TestResponse {
    app.post_form(
        "/token",
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", token),
            ("client_id", client),
        ],
    )
    .await
}

async fn add(app: &TestApp, token: &str) -> TestResponse {
    app.send(mcp_request(
        json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add","arguments":{"a":1,"b":2}}}),
        Some(token),
    ))
    .await
}

fn tokens(response: &TestResponse) -> Value {
    assert_eq!(response.status, StatusCode::OK, "{}", response.body);
    assert_eq!(response.headers[header::CACHE_CONTROL], "no-store");
    let body = response.json();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "mcp");
    body
}

/// Moves a used code or refresh token's first use back in time, as if the
/// grace window had passed.
async fn age_redemption(app: &TestApp, pk: &str, sk: &str) {
    let store: &dyn Store = app.store();
    let item = store.get(pk, sk).await.unwrap().unwrap();
    let mut value: Value = item.json().unwrap();
    value["redeemed"]["at"] = json!(value["redeemed"]["at"].as_i64().unwrap() - 3600);
    let new = passgate::store::NewItem::json(pk, sk, &value).unwrap();
    store.replace(new, item.version).await.unwrap();
}

fn hash(token: &str) -> String {
    passgate::crypto::token_hash(token)
}

#[tokio::test]
async fn full_flow_consent_token_call_refresh_revoke() {
    let app = TestApp::new().await;
    let mut alice = person(&app, "alice").await;
    let client = app.register(REDIRECT).await;
    let (code, verifier) = code_for(&app, &mut alice, &client).await;
    let first = tokens(&redeem(&app, &client, &code, &verifier).await);
    let access = first["access_token"].as_str().unwrap();
    let call = add(&app, access).await;
    assert_eq!(call.status, StatusCode::OK);
    assert_eq!(call.json()["result"]["structuredContent"]["result"], 3);

    // The access token is an RFC 9068 JWT for our audience.
    let claims = passgate::oauth::bearer::verify(&app.state, access)
        .await
        .unwrap();
    assert_eq!(claims.sub, alice.user_id);
    assert_eq!(claims.aud, format!("{ORIGIN}/mcp"));
    assert_eq!(claims.client_id, client);

    let listed = passgate::oauth::grants::list_for_user(app.store(), &alice.user_id)
        .await
        .unwrap();
    assert_eq!(
        listed[0].redirect_uri, REDIRECT,
        "kept to tell installations apart"
    );
    assert_eq!(listed[0].last_used_at, None);
    let second = tokens(&refresh(&app, &client, first["refresh_token"].as_str().unwrap()).await);
    assert_ne!(second["refresh_token"], first["refresh_token"], "rotated");
    let listed = passgate::oauth::grants::list_for_user(app.store(), &alice.user_id)
        .await
        .unwrap();
    assert!(
        listed[0].last_used_at.is_some(),
        "a refresh is recorded as the client's last use"
    );
    assert_eq!(
        add(&app, second["access_token"].as_str().unwrap())
            .await
            .status,
        StatusCode::OK
    );

    // Approved once: the next authorization gets a code again.
    let (_, challenge) = pkce();
    let again = decide(&app, &mut alice, &client, &challenge, "approve").await;
    assert!(query(again.location().unwrap()).contains_key("code"));

    // Revoking the refresh token ends the family: both tokens stop working.
    let revoked = app
        .post_form(
            "/revoke",
            &[
                ("client_id", &client),
                ("token", second["refresh_token"].as_str().unwrap()),
            ],
        )
        .await;
    assert_eq!(revoked.status, StatusCode::OK);
    assert_eq!(
        add(&app, second["access_token"].as_str().unwrap())
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let after = refresh(&app, &client, second["refresh_token"].as_str().unwrap()).await;
    assert_eq!(after.json()["error"], "invalid_grant");
}

#[tokio::test]
async fn an_unused_registration_expires_and_a_used_one_stays() {
    use passgate::oauth::clients::{self, UNUSED_REGISTRATION_TTL_SECS};
    let app = TestApp::new().await;
    let mut alice = person(&app, "alice").await;
    let used = app.register(REDIRECT).await;
    let unused = app.register(REDIRECT).await;
    let expiry = |pk: String, sk: String| {
        let store: &dyn Store = app.store();
        async move { store.get(&pk, &sk).await.unwrap().unwrap().expires_at }
    };
    let both = |id: &str| {
        [
            (format!("client#{id}"), "client".to_owned()),
            ("clients".to_owned(), id.to_owned()),
        ]
    };
    let now = passgate::store::now_unix();
    for id in [&used, &unused] {
        for (pk, sk) in both(id) {
            let at = expiry(pk.clone(), sk).await.expect("expires until used");
            assert!(
                (at - now - UNUSED_REGISTRATION_TTL_SECS).abs() < 60,
                "{pk}: {at}"
            );
        }
    }

    let (code, verifier) = code_for(&app, &mut alice, &used).await;
    tokens(&redeem(&app, &used, &code, &verifier).await);
    for (pk, sk) in both(&used) {
        assert_eq!(
            expiry(pk.clone(), sk).await,
            None,
            "{pk}: permanent once used"
        );
    }
    for (pk, sk) in both(&unused) {
        assert!(
            expiry(pk.clone(), sk).await.is_some(),
            "{pk}: still expiring"
        );
    }
    let mut listed: Vec<String> = clients::registered(app.store())
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.client_id)
        .collect();
    listed.sort();
    let mut expected = vec![used, unused];
    expected.sort();
    assert_eq!(listed, expected);
}

#[tokio::test]
async fn denying_consent_goes_back_with_access_denied() {
    let app = TestApp::new().await;
    let mut bob = person(&app, "bob").await;
    let client = app.register(REDIRECT).await;
    let (_, challenge) = pkce();
    let back = decide(&app, &mut bob, &client, &challenge, "deny").await;
    let q = query(back.location().unwrap());
    assert_eq!(q["error"], "access_denied");
    assert_eq!(q["state"], "xyz");
    assert_eq!(q["iss"], ORIGIN);
    assert!(!q.contains_key("code"));
}

#[tokio::test]
async fn consent_without_the_csrf_token_is_refused() {
    let app = TestApp::new().await;
    let mut carol = person(&app, "carol").await;
    let client = app.register(REDIRECT).await;
    let (_, challenge) = pkce();
    let start = app
        .get(&authorize_url(&client, REDIRECT, &challenge, ""))
        .await;
    let consent = start.location().unwrap().to_owned();
    let request_id = consent.split("request=").nth(1).unwrap().to_owned();
    let forged = carol
        .browser
        .post_form(
            &app,
            "/consent",
            &[
                ("request", &request_id),
                ("csrf", "guess"),
                ("decision", "approve"),
            ],
        )
        .await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    // The request survives a forged post: the real page still works.
    let page = carol.browser.get(&app, &consent).await;
    assert_eq!(page.status, StatusCode::OK);
}

#[tokio::test]
async fn code_checks_verifier_redirect_and_client() {
    let app = TestApp::new().await;
    let mut dave = person(&app, "dave").await;
    let client = app.register(REDIRECT).await;
    let other = app.register(REDIRECT).await;
    let (code, verifier) = code_for(&app, &mut dave, &client).await;

    let wrong_verifier = redeem(&app, &client, &code, &pkce().0).await;
    assert_eq!(wrong_verifier.json()["error"], "invalid_grant");
    let wrong_client = redeem(&app, &other, &code, &verifier).await;
    assert_eq!(wrong_client.json()["error"], "invalid_grant");
    let wrong_redirect = app
        .post_form(
            "/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", "http://127.0.0.1:33418/other"),
                ("code_verifier", &verifier),
                ("client_id", &client),
            ],
        )
        .await;
    assert_eq!(wrong_redirect.json()["error"], "invalid_grant");
    // None of those used the code up.
    tokens(&redeem(&app, &client, &code, &verifier).await);
}

#[tokio::test]
async fn a_replayed_code_gets_the_same_answer_then_revokes_after_the_grace_window() {
    let app = TestApp::new().await;
    let mut erin = person(&app, "erin").await;
    let client = app.register(REDIRECT).await;
    let (code, verifier) = code_for(&app, &mut erin, &client).await;
    let first = tokens(&redeem(&app, &client, &code, &verifier).await);
    // ChatGPT posts the same code twice: the same answer, no damage.
    let second = tokens(&redeem(&app, &client, &code, &verifier).await);
    assert_eq!(first, second);
    assert_eq!(
        add(&app, first["access_token"].as_str().unwrap())
            .await
            .status,
        StatusCode::OK
    );

    // After the grace window, a replay is theft: the family is revoked.
    age_redemption(&app, &format!("code#{}", hash(&code)), "code").await;
    let late = redeem(&app, &client, &code, &verifier).await;
    assert_eq!(late.status, StatusCode::BAD_REQUEST);
    assert_eq!(late.json()["error"], "invalid_grant");
    assert_eq!(
        add(&app, first["access_token"].as_str().unwrap())
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let r = refresh(&app, &client, first["refresh_token"].as_str().unwrap()).await;
    assert_eq!(r.json()["error"], "invalid_grant");
}

#[tokio::test]
async fn refresh_reuse_inside_grace_is_tolerated_and_after_it_revokes() {
    let app = TestApp::new().await;
    let mut frank = person(&app, "frank").await;
    let client = app.register(REDIRECT).await;
    let (code, verifier) = code_for(&app, &mut frank, &client).await;
    let issued = tokens(&redeem(&app, &client, &code, &verifier).await);
    let old = issued["refresh_token"].as_str().unwrap().to_owned();
    let a = tokens(&refresh(&app, &client, &old).await);
    let b = tokens(&refresh(&app, &client, &old).await);
    assert_eq!(a, b, "a repeated refresh gets the same answer");

    age_redemption(&app, &format!("rt#{}", hash(&old)), "rt").await;
    let late = refresh(&app, &client, &old).await;
    assert_eq!(late.json()["error"], "invalid_grant");
    // The whole family is gone, including the newest refresh token.
    let newest = refresh(&app, &client, a["refresh_token"].as_str().unwrap()).await;
    assert_eq!(newest.json()["error"], "invalid_grant");
}

/// 50 refreshes of one refresh token at once: one rotation wins, the others
/// get its answer inside the grace window; one family, never two.
async fn fifty_simultaneous_refreshes_make_one_new_token_and_one_family(app: TestApp) {
    let app = std::sync::Arc::new(app);
    let mut gina = person(&app, "gina").await;
    let client = app.register(REDIRECT).await;
    let (code, verifier) = code_for(&app, &mut gina, &client).await;
    let issued = tokens(&redeem(&app, &client, &code, &verifier).await);
    let old = issued["refresh_token"].as_str().unwrap().to_owned();

    let handles: Vec<_> = (0..50)
        .map(|_| {
            let (app, client, old) = (app.clone(), client.clone(), old.clone());
            tokio::spawn(async move { refresh(&app, &client, &old).await })
        })
        .collect();
    let mut answers = Vec::new();
    for h in handles {
        answers.push(tokens(&h.await.unwrap()));
    }
    let distinct: std::collections::HashSet<String> = answers
        .iter()
        .map(|a| a["refresh_token"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(distinct.len(), 1, "exactly one new refresh token");
    let grants = passgate::oauth::grants::list_for_user(app.store(), &gina.user_id)
        .await
        .unwrap();
    assert_eq!(grants.len(), 1, "exactly one family");
}

/// 50 redemptions of one code at once: the code is taken once, and every
/// answer is the one token issued for it.
async fn fifty_simultaneous_redemptions_of_one_code_make_one_token(app: TestApp) {
    let app = std::sync::Arc::new(app);
    let mut hank = person(&app, "hank").await;
    let client = app.register(REDIRECT).await;
    let (code, verifier) = code_for(&app, &mut hank, &client).await;
    let handles: Vec<_> = (0..50)
        .map(|_| {
            let (app, client, code, verifier) =
                (app.clone(), client.clone(), code.clone(), verifier.clone());
            tokio::spawn(async move { redeem(&app, &client, &code, &verifier).await })
        })
        .collect();
    let mut access = std::collections::HashSet::new();
    for h in handles {
        access.insert(
            tokens(&h.await.unwrap())["access_token"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    assert_eq!(access.len(), 1, "exactly one token");
    let grants = passgate::oauth::grants::list_for_user(app.store(), &hank.user_id)
        .await
        .unwrap();
    assert_eq!(grants.len(), 1, "exactly one family");
}

/// The races above on each store backend: SQLite here, DynamoDB (on moto)
/// with the `dynamodb` feature.
mod races {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sqlite_refreshes() {
        fifty_simultaneous_refreshes_make_one_new_token_and_one_family(TestApp::new().await).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn sqlite_redemptions() {
        fifty_simultaneous_redemptions_of_one_code_make_one_token(TestApp::new().await).await;
    }

    #[cfg(feature = "dynamodb")]
    async fn on_dynamodb() -> TestApp {
        let moto = support::moto::Moto::start();
        let store = moto.dynamo_store("passgate-races").await;
        TestApp::with_store(std::sync::Arc::new(store), moto).await
    }

    #[cfg(feature = "dynamodb")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn dynamodb_refreshes() {
        fifty_simultaneous_refreshes_make_one_new_token_and_one_family(on_dynamodb().await).await;
    }

    #[cfg(feature = "dynamodb")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn dynamodb_redemptions() {
        fifty_simultaneous_redemptions_of_one_code_make_one_token(on_dynamodb().await).await;
    }
}

#[tokio::test]
async fn a_disabled_persons_tokens_stop_working() {
    let app = TestApp::new().await;
    let mut ivy = person(&app, "ivy").await;
    let client = app.register(REDIRECT).await;
    let (code, verifier) = code_for(&app, &mut ivy, &client).await;
    let issued = tokens(&redeem(&app, &client, &code, &verifier).await);
    passgate::users::set_disabled(app.store(), &ivy.user_id, true)
        .await
        .unwrap();
    assert_eq!(
        add(&app, issued["access_token"].as_str().unwrap())
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let r = refresh(&app, &client, issued["refresh_token"].as_str().unwrap()).await;
    assert_eq!(r.json()["error"], "invalid_grant");
}

#[tokio::test]
async fn metadata_document_clients_on_private_addresses_are_refused() {
    let app = TestApp::new().await;
    let (_, challenge) = pkce();
    for client_id in [
        "https://127.0.0.1/client.json",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/client.json",
        "https://10.0.0.1/client.json",
        "http://example.com/client.json",
        "https://localhost/client.json",
    ] {
        let response = app
            .get(&authorize_url(
                client_id,
                "https://app.example/cb",
                &challenge,
                "",
            ))
            .await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{client_id}");
        assert!(
            response.location().is_none(),
            "never a redirect for {client_id}"
        );
    }
    // A token request naming such a client is refused too.
    let token = app
        .post_form(
            "/token",
            &[
                ("grant_type", "refresh_token"),
                ("client_id", "https://127.0.0.1/c.json"),
                ("refresh_token", "x"),
            ],
        )
        .await;
    assert_eq!(token.json()["error"], "invalid_client");
}

/// `/authorize` → consent (page or remembered) → the redirect back, for any
/// redirect URI; `None` when a consent page was shown and approved, the
/// redirect when a remembered approval answered without a page.
async fn authorize_to(
    app: &TestApp,
    who: &mut Person,
    client: &str,
    redirect: &str,
    challenge: &str,
) -> (bool, BTreeMap<String, String>) {
    let start = app
        .get(&authorize_url(client, redirect, challenge, ""))
        .await;
    assert_eq!(start.status, StatusCode::SEE_OTHER, "{}", start.body);
    let page = who.browser.get(app, start.location().unwrap()).await;
    if page.status.is_redirection() {
        return (false, query(page.location().unwrap()));
    }
    (true, query(&approve_form(app, who, &page).await))
}

/// RFC 8252 §8.6: any program on the device can present a public native
/// client's id and listen on a loopback port (or claim its private-use
/// scheme), so a remembered approval never issues a code there without the
/// page. An https redirect names who gets the code, so it may.
#[tokio::test]
async fn a_remembered_approval_skips_the_page_only_for_https_redirects() {
    let app = TestApp::new().await;
    let mut ivy = person(&app, "ivy").await;
    for redirect in [
        "http://127.0.0.1:33418/callback",
        "http://localhost:6274/oauth/callback",
        "cursor://anysphere.cursor-retrieval/oauth/callback",
    ] {
        let client = app.register(redirect).await;
        let (_, challenge) = pkce();
        let (page, first) = authorize_to(&app, &mut ivy, &client, redirect, &challenge).await;
        assert!(page && first.contains_key("code"), "{redirect}: first time");
        // Again, on the same port and on another (any loopback port is the
        // client's): the page every time.
        let other_port = redirect.replace("33418", "40001");
        for again in [redirect, other_port.as_str()] {
            let (page, back) = authorize_to(&app, &mut ivy, &client, again, &challenge).await;
            assert!(page, "{again}: the page again");
            assert!(back.contains_key("code"));
        }
    }
    let web = "https://app.example/cb";
    let client = app.register(web).await;
    let (_, challenge) = pkce();
    let (page, _) = authorize_to(&app, &mut ivy, &client, web, &challenge).await;
    assert!(page, "first time");
    let (page, back) = authorize_to(&app, &mut ivy, &client, web, &challenge).await;
    assert!(!page, "remembered");
    assert!(back.contains_key("code"));
}

/// RFC 7636 §4.1: a verifier is 43 to 128 unreserved characters. A request
/// whose challenge was made from a malformed one gets no tokens for it.
#[tokio::test]
async fn code_verifiers_outside_rfc7636_are_refused() {
    let app = TestApp::new().await;
    let mut jan = person(&app, "jan").await;
    let client = app.register(REDIRECT).await;
    for verifier in [
        "abc".to_owned(),
        format!("{}+/=", "a".repeat(40)),
        "a".repeat(129),
        format!("{} ", "a".repeat(42)),
    ] {
        let challenge = passgate::crypto::pkce_s256(&verifier);
        let (_, back) = authorize_to(&app, &mut jan, &client, REDIRECT, &challenge).await;
        let response = redeem(&app, &client, &back["code"], &verifier).await;
        assert_eq!(
            response.status,
            StatusCode::BAD_REQUEST,
            "{verifier:?}: {}",
            response.body
        );
        assert_eq!(response.json()["error"], "invalid_request", "{verifier:?}");
    }
    // The bounds themselves are fine.
    for verifier in ["a".repeat(43), format!("{}-._~", "Z9".repeat(62))] {
        let challenge = passgate::crypto::pkce_s256(&verifier);
        let (_, back) = authorize_to(&app, &mut jan, &client, REDIRECT, &challenge).await;
        tokens(&redeem(&app, &client, &back["code"], &verifier).await);
    }
}

/// RFC 6749 §4.1.3: `redirect_uri` is required at the token endpoint when
/// the authorization request had one (real clients and the conformance
/// suite send it); a request that relied on the single registered URI may
/// leave it out at both ends.
#[tokio::test]
async fn redirect_uri_is_required_at_token_when_authorize_had_one() {
    let app = TestApp::new().await;
    let mut kim = person(&app, "kim").await;
    let client = app.register(REDIRECT).await;
    let (code, verifier) = code_for(&app, &mut kim, &client).await;
    let without = app
        .post_form(
            "/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("code_verifier", &verifier),
                ("client_id", &client),
            ],
        )
        .await;
    assert_eq!(without.status, StatusCode::BAD_REQUEST, "{}", without.body);
    assert_eq!(without.json()["error"], "invalid_request");
    // That did not use the code up.
    tokens(&redeem(&app, &client, &code, &verifier).await);

    let (verifier, challenge) = pkce();
    let url = authorize_url(&client, REDIRECT, &challenge, "");
    let no_redirect: String = url
        .split('&')
        .filter(|p| !p.starts_with("redirect_uri="))
        .collect::<Vec<_>>()
        .join("&");
    let start = app.get(&no_redirect).await;
    assert_eq!(start.status, StatusCode::SEE_OTHER, "{}", start.body);
    let back = approve_page(&app, &mut kim, start.location().unwrap()).await;
    let code = query(&back)["code"].clone();
    let issued = app
        .post_form(
            "/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("code_verifier", &verifier),
                ("client_id", &client),
            ],
        )
        .await;
    tokens(&issued);
}

/// Approves the consent page at `consent`; returns the redirect back.
async fn approve_page(app: &TestApp, who: &mut Person, consent: &str) -> String {
    let page = who.browser.get(app, consent).await;
    approve_form(app, who, &page).await
}

/// Submits "Allow" on a consent page; returns the redirect back.
async fn approve_form(app: &TestApp, who: &mut Person, page: &TestResponse) -> String {
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let field = |name: &str| {
        let marker = format!(r#"name="{name}" value=""#);
        let start = page.body.find(&marker).unwrap() + marker.len();
        page.body[start..start + page.body[start..].find('"').unwrap()].to_owned()
    };
    let form = [
        ("request", field("request")),
        ("csrf", field("csrf")),
        ("decision", "approve".to_owned()),
    ];
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let back = who.browser.post_form(app, "/consent", &form).await;
    assert_eq!(back.status, StatusCode::SEE_OTHER, "{}", back.body);
    back.location().unwrap().to_owned()
}
