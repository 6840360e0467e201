//! Complete OAuth flows in-process, with a person signed in by a software
//! passkey: authorize, consent, code, token, MCP call, refresh, revoke; and
//! what happens when codes and refresh tokens are replayed or raced.

mod support;

use std::collections::BTreeMap;

use http::{StatusCode, header};
use passgate::{accounts::users::Role, store::Store};
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
/// Moves the stored first redemption of a code (field `redeemed`) or of a
/// refresh chain's last rotation (`previous`) an hour into the past.
async fn age_redemption(app: &TestApp, pk: &str, sk: &str) {
    let store: &dyn Store = app.store();
    let item = store.get(pk, sk).await.unwrap().unwrap();
    let mut value: Value = item.json().unwrap();
    let field = if sk == "rt" { "previous" } else { "redeemed" };
    value[field]["at"] = json!(value[field]["at"].as_i64().unwrap() - 3600);
    let new = passgate::store::NewItem::json(pk, sk, &value).unwrap();
    store.replace(new, item.version).await.unwrap();
}

fn hash(token: &str) -> String {
    passgate::crypto::token_hash(token)
}

/// The store key of the refresh chain a refresh token belongs to.
fn chain_key(token: &str) -> String {
    format!("rt-chain#{}", token.split('.').next().unwrap())
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

/// A client that revokes each refresh token it replaces (RFC 7009) leaves
/// nothing of it behind: the record would otherwise stay its 30 days, one
/// per sign-in (the soak run's store grew by them). Another client's
/// revocation changes nothing.
#[tokio::test]
async fn a_revoked_refresh_token_is_forgotten_by_its_own_client_only() {
    let app = TestApp::new().await;
    let mut grace = person(&app, "grace").await;
    let client = app.register(REDIRECT).await;
    let other = app.register(REDIRECT).await;
    let (code, verifier) = code_for(&app, &mut grace, &client).await;
    let issued = tokens(&redeem(&app, &client, &code, &verifier).await);
    let token = issued["refresh_token"].as_str().unwrap();
    let key = chain_key(token);
    let stored = || async { app.store().get(&key, "rt").await.unwrap() };
    assert!(stored().await.is_some(), "the refresh chain is stored");

    for (by, forgotten) in [(&other, false), (&client, true)] {
        let revoked = app
            .post_form("/revoke", &[("client_id", by), ("token", token)])
            .await;
        assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.body);
        assert_eq!(stored().await.is_none(), forgotten, "revoked by {by}");
    }
    let after = refresh(&app, &client, token).await;
    assert_eq!(after.json()["error"], "invalid_grant", "{}", after.body);
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

    age_redemption(&app, &chain_key(&old), "rt").await;
    let late = refresh(&app, &client, &old).await;
    assert_eq!(late.json()["error"], "invalid_grant");
    // The whole family is gone, including the newest refresh token.
    let newest = refresh(&app, &client, a["refresh_token"].as_str().unwrap()).await;
    assert_eq!(newest.json()["error"], "invalid_grant");
}

/// Rotation replaces the family's one chain record instead of leaving a
/// record per used token, and still recognises every older token as a
/// replay: an hour later, the token three rotations back ends the family.
#[tokio::test]
async fn rotation_keeps_one_record_per_family_and_still_catches_old_tokens() {
    let app = TestApp::new().await;
    let mut hana = person(&app, "hana").await;
    let client = app.register(REDIRECT).await;
    let (code, verifier) = code_for(&app, &mut hana, &client).await;
    let first = tokens(&redeem(&app, &client, &code, &verifier).await);
    let mut chain = vec![first["refresh_token"].as_str().unwrap().to_owned()];
    for _ in 0..4 {
        let next = tokens(&refresh(&app, &client, chain.last().unwrap()).await);
        chain.push(next["refresh_token"].as_str().unwrap().to_owned());
    }
    let store: &dyn Store = app.store();
    let key = chain_key(&chain[0]);
    assert!(chain.iter().all(|t| chain_key(t) == key), "one family");
    let record: Value = store
        .get(&key, "rt")
        .await
        .unwrap()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(record["generation"], 4);
    for token in &chain {
        assert!(
            store
                .get(&format!("rt#{}", hash(token)), "rt")
                .await
                .unwrap()
                .is_none()
        );
    }
    // The used code is kept only as long as the code was valid.
    let code_item = store
        .get(&format!("code#{}", hash(&code)), "code")
        .await
        .unwrap()
        .unwrap();
    assert!(
        code_item.expires_at.unwrap()
            <= passgate::store::now_unix() + passgate::oauth::CODE_TTL_SECS
    );

    let old = refresh(&app, &client, &chain[1]).await;
    assert_eq!(old.json()["error"], "invalid_grant", "{}", old.body);
    let newest = refresh(&app, &client, chain.last().unwrap()).await;
    assert_eq!(newest.json()["error"], "invalid_grant", "the family ended");
    assert!(
        store.get(&key, "rt").await.unwrap().is_none(),
        "and its chain with it"
    );
}

/// A token whose tag does not verify is not passgate's: refused, and it
/// cannot end anyone's family by naming it.
#[tokio::test]
async fn a_forged_chain_token_is_refused_and_ends_nothing() {
    let app = TestApp::new().await;
    let mut ines = person(&app, "ines").await;
    let client = app.register(REDIRECT).await;
    let (code, verifier) = code_for(&app, &mut ines, &client).await;
    let first = tokens(&redeem(&app, &client, &code, &verifier).await);
    let live = first["refresh_token"].as_str().unwrap();
    let parts: Vec<&str> = live.split('.').collect();
    assert_eq!(parts.len(), 3, "family.generation.tag");
    let tag = passgate::crypto::random_token(32);
    for forged in [
        format!("{}.{}.{tag}", parts[0], parts[1]),
        format!("{}.7.{}", parts[0], parts[2]),
    ] {
        let r = refresh(&app, &client, &forged).await;
        assert_eq!(r.json()["error"], "invalid_grant", "{}", r.body);
        let revoked = app
            .post_form("/revoke", &[("client_id", &client), ("token", &forged)])
            .await;
        assert_eq!(revoked.status, StatusCode::OK);
    }
    let r = refresh(&app, &client, live).await;
    assert_eq!(r.status, StatusCode::OK, "the family lives: {}", r.body);
}

/// A refresh token stored the way passgate stored them before chains still
/// refreshes, once, and is replaced by the first token of a chain.
#[tokio::test]
async fn a_refresh_token_from_before_chains_still_refreshes_into_a_chain() {
    let app = TestApp::new().await;
    let mut jun = person(&app, "jun").await;
    let client = app.register(REDIRECT).await;
    let (code, verifier) = code_for(&app, &mut jun, &client).await;
    let first = tokens(&redeem(&app, &client, &code, &verifier).await);
    let store: &dyn Store = app.store();
    // The family as it was before chains: its token stored under its hash.
    let key = chain_key(first["refresh_token"].as_str().unwrap());
    let chain: Value = store
        .get(&key, "rt")
        .await
        .unwrap()
        .unwrap()
        .json()
        .unwrap();
    store.delete(&key, "rt").await.unwrap();
    let legacy = passgate::crypto::random_token(32);
    let record = json!({
        "family": chain["family"], "client_id": chain["client_id"], "user_id": chain["user_id"],
        "scope": chain["scope"], "resource": chain["resource"],
    });
    let item = passgate::store::NewItem::json(format!("rt#{}", hash(&legacy)), "rt", &record)
        .unwrap()
        .expires_in(3600);
    store
        .transact(vec![passgate::store::Write::Insert(item)])
        .await
        .unwrap();

    let next = tokens(&refresh(&app, &client, &legacy).await);
    let chained = next["refresh_token"].as_str().unwrap();
    assert_eq!(chain_key(chained), key);
    let again = tokens(&refresh(&app, &client, &legacy).await);
    assert_eq!(
        again, next,
        "a repeat inside the grace window gets the same answer"
    );
    let r = refresh(&app, &client, chained).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
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
    passgate::accounts::users::set_disabled(app.store(), &ivy.user_id, true)
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

/// The grant a code's redemption activates carries the account as it is
/// then, not as it was at approval: route policies and identity headers
/// read it on every call.
#[tokio::test]
async fn the_grant_carries_the_account_as_it_is_at_redemption() {
    use passgate::{
        accounts::users,
        oauth::grants,
        store::{NewItem, keys::Partition},
    };
    let app = TestApp::new().await;
    let store: &dyn Store = app.store();
    let client = app.register(REDIRECT).await;
    let profile_of = |grant: &grants::Grant| {
        let account = grant
            .account
            .clone()
            .expect("the grant carries the account");
        (account.role, account.email, grant.groups.clone())
    };

    // Changed through `users`: the pending family is rewritten at once.
    let mut jo = person(&app, "jo").await;
    let (code, verifier) = code_for(&app, &mut jo, &client).await;
    users::set_role(store, &jo.user_id, Role::Admin)
        .await
        .unwrap();
    users::set_email(store, &jo.user_id, Some("jo@example.com".into()))
        .await
        .unwrap();
    users::set_groups(store, &jo.user_id, vec!["ops".into()])
        .await
        .unwrap();
    let pending = grants::list_for_user(store, &jo.user_id).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(
        profile_of(&pending[0]),
        (
            "admin".into(),
            Some("jo@example.com".into()),
            vec!["ops".to_owned()]
        )
    );
    tokens(&redeem(&app, &client, &code, &verifier).await);
    let live = grants::get(store, &pending[0].family)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(profile_of(&live), profile_of(&pending[0]));
    // An upstream sign-in sets the email and groups each time: unchanged,
    // they write nothing.
    let jo_pk = Partition::User(&jo.user_id).key();
    let versions = || async {
        let profile = store.get(&jo_pk, "profile").await.unwrap().unwrap();
        let (_, grant) = grants::get_item(store, &live.family)
            .await
            .unwrap()
            .unwrap();
        (profile.version, grant.version)
    };
    let before = versions().await;
    users::set_email(store, &jo.user_id, Some("jo@example.com".into()))
        .await
        .unwrap();
    users::set_groups(store, &jo.user_id, vec!["ops".into()])
        .await
        .unwrap();
    assert_eq!(versions().await, before);
    users::set_groups(store, &jo.user_id, vec![]).await.unwrap();
    let after = versions().await;
    assert!(
        after.0 != before.0 && after.1 != before.1,
        "a change writes both"
    );

    // Changed where the rewrite has not reached the family (a change racing
    // the approval, written straight to the account): redemption itself
    // takes the account afresh.
    let mut kim = person(&app, "kim").await;
    let (code, verifier) = code_for(&app, &mut kim, &client).await;
    let pk = Partition::User(&kim.user_id).key();
    let item = store.get(&pk, "profile").await.unwrap().unwrap();
    let mut profile: Value = item.json().unwrap();
    assert_eq!(profile["role"], "member");
    profile["role"] = json!("admin");
    profile["email"] = json!("kim@example.com");
    profile["groups"] = json!(["research"]);
    store
        .replace(
            NewItem::json(&pk, "profile", &profile).unwrap(),
            item.version,
        )
        .await
        .unwrap();
    let [approved] = &grants::list_for_user(store, &kim.user_id).await.unwrap()[..] else {
        panic!("one family per approval");
    };
    assert_eq!(profile_of(approved), ("member".into(), None, vec![]));
    let issued = tokens(&redeem(&app, &client, &code, &verifier).await);
    let live = grants::get(store, &approved.family).await.unwrap().unwrap();
    assert_eq!(
        profile_of(&live),
        (
            "admin".into(),
            Some("kim@example.com".into()),
            vec!["research".to_owned()]
        )
    );
    let listed = grants::list_for_user(store, &kim.user_id).await.unwrap();
    assert_eq!(
        profile_of(&listed[0]),
        profile_of(&live),
        "the listing copy too"
    );
    assert_eq!(
        add(&app, issued["access_token"].as_str().unwrap())
            .await
            .status,
        StatusCode::OK
    );
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

/// The access rule as a table: every action that ends access, against
/// every credential a person can hold, on SQLite and on DynamoDB. The
/// credentials are made on one instance, the action runs on another (same
/// store, its own memory) and the credentials are tried again on the first,
/// whose memo has already verified the access token: what ends must end
/// everywhere, at once, and what the action does not name must keep working.
mod access_table {
    use std::sync::Arc;

    use passgate::{
        accounts::users,
        config::{Config, ConfiguredClient},
        login::cli as users_cli,
        oauth::cli as clients_cli,
    };

    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Action {
        SignOut,
        RemovePasskey,
        Disconnect,
        ClientsRevoke,
        DisableOnAdminPage,
        DisableWithCli,
        DeleteOnAdminPage,
        DeleteWithCli,
    }

    /// What still works after an action (`true`) or has ended (`false`).
    #[derive(Debug, PartialEq, Eq)]
    struct Outcome {
        /// An authorization awaiting consent can still yield a code.
        pending: bool,
        /// An approved code not yet redeemed.
        code: bool,
        access_token: bool,
        refresh_token: bool,
        /// The browser session the person signed in with passkey 1.
        session: bool,
        /// The same person's access token for another client.
        other_client: bool,
    }

    const fn outcome(
        pending: bool,
        code: bool,
        access_token: bool,
        refresh_token: bool,
        session: bool,
        other_client: bool,
    ) -> Outcome {
        Outcome {
            pending,
            code,
            access_token,
            refresh_token,
            session,
            other_client,
        }
    }

    /// The table.
    const TABLE: [(Action, Outcome); 8] = [
        // Signing out ends that browser's session; applications keep
        // their access (the signed-out page says so).
        (
            Action::SignOut,
            outcome(true, true, true, true, false, true),
        ),
        // Deleting a passkey signs out the browsers it signed in; the
        // account and its applications stay.
        (
            Action::RemovePasskey,
            outcome(true, true, true, true, false, true),
        ),
        // Disconnecting a client ends its code and tokens; a new request
        // from it must be approved again (the pending check approves).
        (
            Action::Disconnect,
            outcome(true, false, false, false, true, true),
        ),
        // The operator revoking a client ends everything of that client,
        // pending authorizations included, for everyone.
        (
            Action::ClientsRevoke,
            outcome(false, false, false, false, true, true),
        ),
        // Disabling or deleting a person ends everything they hold.
        (
            Action::DisableOnAdminPage,
            outcome(false, false, false, false, false, false),
        ),
        (
            Action::DisableWithCli,
            outcome(false, false, false, false, false, false),
        ),
        (
            Action::DeleteOnAdminPage,
            outcome(false, false, false, false, false, false),
        ),
        (
            Action::DeleteWithCli,
            outcome(false, false, false, false, false, false),
        ),
    ];

    const OTHER_CLIENT: &str = "table-other-client";

    fn client_for(action: Action) -> String {
        format!("table-client-{action:?}").to_lowercase()
    }

    /// One configured client per row (revoking one must not touch the
    /// others), plus the control client.
    fn config() -> Config {
        let mut config = Config::for_public_url(ORIGIN).unwrap();
        let ids = TABLE
            .iter()
            .map(|(action, _)| client_for(*action))
            .chain([OTHER_CLIENT.to_owned()]);
        for client_id in ids {
            config.clients.push(ConfiguredClient {
                client_id,
                client_name: Some("Test <App>".into()),
                redirect_uris: vec![REDIRECT.into()],
                client_secret: None,
            });
        }
        config
    }

    /// Everything one person holds before the action.
    struct Holder {
        name: String,
        user_id: String,
        second_device: support::SoftAuthenticator,
        first_passkey: String,
        /// Signed in with the first passkey: the session under test.
        session: String,
        /// Signed in with the second passkey: where the person acts from.
        acting: String,
        pending: String,
        code: (String, String),
        tokens: Value,
        other_tokens: Value,
    }

    async fn csrf_of(app: &TestApp, cookie: &str) -> String {
        app.signed_in(cookie).await.expect("signed in").csrf
    }

    /// `/authorize` for `client`; returns the pending request's id.
    async fn start(app: &TestApp, client: &str, challenge: &str) -> String {
        let start = app
            .get(&authorize_url(client, REDIRECT, challenge, ""))
            .await;
        assert_eq!(start.status, StatusCode::SEE_OTHER, "{}", start.body);
        start
            .location()
            .unwrap()
            .strip_prefix("/consent?request=")
            .unwrap()
            .to_owned()
    }

    /// Approves pending request `id` in `cookie`'s session; the code, if
    /// that worked.
    async fn approve(app: &TestApp, cookie: &str, id: &str) -> Option<String> {
        let csrf = app.signed_in(cookie).await?.csrf;
        let back = Browser::with_cookie(cookie)
            .post_form(
                app,
                "/consent",
                &[("request", id), ("csrf", &csrf), ("decision", "approve")],
            )
            .await;
        let location = back.location().filter(|l| l.starts_with(REDIRECT))?;
        query(location).get("code").cloned()
    }

    async fn code(app: &TestApp, cookie: &str, client: &str) -> (String, String) {
        let (verifier, challenge) = pkce();
        let id = start(app, client, &challenge).await;
        (approve(app, cookie, &id).await.expect("a code"), verifier)
    }

    async fn hold(app: &TestApp, name: &str, client: &str) -> Holder {
        let (first_device, enrolled) = support::new_user(app, name, Role::Member).await;
        let user_id = app.signed_in(&enrolled).await.unwrap().user_id;
        let first_passkey = users::credentials(app.store(), &user_id).await.unwrap()[0]
            .id
            .clone();
        // A second passkey, added from the account page.
        let second_device = support::SoftAuthenticator::new();
        let csrf = csrf_of(app, &enrolled).await;
        let csrf_header = [("x-csrf-token", csrf.as_str())];
        let mut browser = Browser::with_cookie(&enrolled);
        let options = browser
            .post_json_with(app, "/account/passkeys/options", &json!({}), &csrf_header)
            .await;
        assert_eq!(options.status, StatusCode::OK, "{}", options.body);
        let created = second_device.create(ORIGIN, options.json()).await.unwrap();
        let added = browser
            .post_json_with(app, "/account/passkeys/finish", &created, &csrf_header)
            .await;
        assert_eq!(added.status, StatusCode::OK, "{}", added.body);

        let session = support::sign_in(app, &first_device).await;
        let acting = support::sign_in(app, &second_device).await;
        let (token_code, verifier) = code(app, &session, client).await;
        let issued = tokens(&redeem(app, client, &token_code, &verifier).await);
        let (other_code, other_verifier) = code(app, &session, OTHER_CLIENT).await;
        let other_tokens = tokens(&redeem(app, OTHER_CLIENT, &other_code, &other_verifier).await);
        let code = code(app, &session, client).await;
        let (_, challenge) = pkce();
        let pending = start(app, client, &challenge).await;
        Holder {
            name: name.to_owned(),
            user_id,
            second_device,
            first_passkey,
            session,
            acting,
            pending,
            code,
            tokens: issued,
            other_tokens,
        }
    }

    /// Runs the action; what it reported, if that was wrong.
    async fn act(
        app: &TestApp,
        admin: &str,
        action: Action,
        who: &Holder,
        client: &str,
    ) -> Option<String> {
        let post = |cookie: &str, path: &'static str, fields: Vec<(&'static str, String)>| {
            let cookie = cookie.to_owned();
            async move {
                let mut fields = fields;
                fields.push(("csrf", csrf_of(app, &cookie).await));
                let fields: Vec<(&str, &str)> =
                    fields.iter().map(|(k, v)| (*k, v.as_str())).collect();
                let r = Browser::with_cookie(&cookie)
                    .post_form(app, path, &fields)
                    .await;
                assert!(
                    r.status == StatusCode::SEE_OTHER || r.status == StatusCode::OK,
                    "{path}: {} {}",
                    r.status,
                    r.body
                );
            }
        };
        let store = app.store();
        match action {
            Action::SignOut => post(&who.session, "/logout", vec![]).await,
            Action::RemovePasskey => {
                post(
                    &who.acting,
                    "/account/passkeys/delete",
                    vec![("id", who.first_passkey.clone())],
                )
                .await
            }
            Action::Disconnect => {
                post(
                    &who.acting,
                    "/account/clients/revoke",
                    vec![("client_id", client.to_owned())],
                )
                .await
            }
            Action::ClientsRevoke => {
                let said = clients_cli::revoke_client(store, client).await.unwrap();
                // The token family and the unredeemed code's, of one person,
                // and the authorization awaiting consent.
                let truth = "Revoked 2 sign-in(s) of 1 person(s) and 1 pending authorization(s)";
                if !said.contains(truth) {
                    return Some(said);
                }
            }
            Action::DisableOnAdminPage => {
                post(
                    admin,
                    "/admin/users/disable",
                    vec![("user_id", who.user_id.clone())],
                )
                .await
            }
            Action::DisableWithCli => {
                users_cli::disable(store, &who.name).await.unwrap();
            }
            Action::DeleteOnAdminPage => {
                post(
                    admin,
                    "/admin/users/delete",
                    vec![("user_id", who.user_id.clone())],
                )
                .await
            }
            Action::DeleteWithCli => {
                users_cli::delete(store, &who.name).await.unwrap();
            }
        }
        None
    }

    async fn works(app: &TestApp, who: &Holder, client: &str) -> Outcome {
        let session = app.signed_in(&who.session).await.is_some();
        let (code, verifier) = &who.code;
        let code = redeem(app, client, code, verifier).await.status == StatusCode::OK;
        let token = |t: &Value| t["access_token"].as_str().unwrap().to_owned();
        let access_token = add(app, &token(&who.tokens)).await.status == StatusCode::OK;
        let other_client = add(app, &token(&who.other_tokens)).await.status == StatusCode::OK;
        let refresh_token = refresh(app, client, who.tokens["refresh_token"].as_str().unwrap())
            .await
            .status
            == StatusCode::OK;
        // The pending request, approved in a live session: the one under
        // test, or a new sign-in with the remaining passkey if it can.
        let live = if session {
            Some(who.session.clone())
        } else {
            let mut browser = Browser::new();
            support::sign_in_with(app, &mut browser, &who.second_device)
                .await
                .ok()
                .and_then(|_| browser.session_cookie())
        };
        let pending = match live {
            Some(cookie) => approve(app, &cookie, &who.pending).await.is_some(),
            None => false,
        };
        Outcome {
            pending,
            code,
            access_token,
            refresh_token,
            session,
            other_client,
        }
    }

    async fn run(here: TestApp) {
        let there = here.another_instance().await;
        let (_, admin) = support::new_user(&there, "table-admin", Role::Admin).await;
        let mut failures = Vec::new();
        for (action, expected) in TABLE {
            let client = client_for(action);
            let name = format!("p-{action:?}").to_lowercase();
            let who = hold(&here, &name, &client).await;
            // Everything works before, and the access token is in `here`'s
            // memo of verified tokens.
            assert_eq!(
                add(&here, who.tokens["access_token"].as_str().unwrap())
                    .await
                    .status,
                StatusCode::OK
            );
            if let Some(said) = act(&there, &admin, action, &who, &client).await {
                failures.push(format!("{action:?} reported: {said}"));
            }
            let got = works(&here, &who, &client).await;
            if got != expected {
                failures.push(format!(
                    "{action:?}:\n  expected {expected:?}\n  got      {got:?}"
                ));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    #[tokio::test]
    async fn on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            passgate::store::sqlite::SqliteStore::open(&dir.path().join("p.sqlite3")).unwrap();
        run(TestApp::with_store_and_config(Arc::new(store), dir, config()).await).await;
    }

    #[cfg(feature = "dynamodb")]
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_dynamodb() {
        let moto = support::moto::Moto::start();
        let store = moto.dynamo_store("passgate-access-table").await;
        run(TestApp::with_store_and_config(Arc::new(store), moto, config()).await).await;
    }
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

/// Each protected resource is its own audience (RFC 8707): a token names
/// one resource, the one the client asked for (the first, `/mcp`, when it
/// names none), and no other resource accepts it, memo or not; each
/// resource has its own metadata, named in its own challenge.
#[tokio::test]
async fn each_protected_resource_accepts_only_tokens_for_itself() {
    use passgate::{
        mcp::{ProtectedMcp, Tools},
        oauth::resource::Resource,
    };
    let app = TestApp::with_endpoints(|state| {
        let second = Resource::new(&state.config, "/mcp/second", "second").unwrap();
        vec![
            ProtectedMcp::demo(&state.config, state.shutdown.clone()),
            ProtectedMcp::rmcp(second, Tools::new(), &state.config, state.shutdown.clone()),
        ]
    })
    .await;
    let second_url = format!("{ORIGIN}/mcp/second");
    let call = |path: &'static str, token: String| {
        let mut request = mcp_request(
            json!({"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add","arguments":{"a":1,"b":2}}}),
            Some(&token),
        );
        *request.uri_mut() = path.parse().unwrap();
        app.send(request)
    };

    let metadata = app
        .get("/.well-known/oauth-protected-resource/mcp/second")
        .await;
    assert_eq!(metadata.status, StatusCode::OK);
    assert_eq!(metadata.json()["resource"], second_url);
    assert_eq!(metadata.json()["resource_name"], "second");
    let mut anonymous = mcp_request(json!({"jsonrpc":"2.0","id":1,"method":"ping"}), None);
    *anonymous.uri_mut() = "/mcp/second".parse().unwrap();
    let challenge = app.send(anonymous).await;
    assert_eq!(challenge.status, StatusCode::UNAUTHORIZED);
    assert!(
        challenge.headers[header::WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .contains(&format!(
                r#"resource_metadata="{ORIGIN}/.well-known/oauth-protected-resource/mcp/second""#
            ))
    );

    let mut alice = person(&app, "alice").await;
    let client = app.register(REDIRECT).await;
    // No resource named: the token is for /mcp.
    let (code, verifier) = code_for(&app, &mut alice, &client).await;
    let for_mcp = tokens(&redeem(&app, &client, &code, &verifier).await)["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(call("/mcp", for_mcp.clone()).await.status, StatusCode::OK);
    // Verified (and memoized) for /mcp, still refused at /mcp/second.
    let refused = call("/mcp/second", for_mcp.clone()).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(invalid_audience(&refused), "{:?}", refused.headers);

    // Naming the second resource gets a token for it alone.
    let (verifier, challenge) = pkce();
    let extra = format!(
        "&resource={}",
        url::form_urlencoded::byte_serialize(second_url.as_bytes()).collect::<String>()
    );
    let start = app
        .get(&authorize_url(&client, REDIRECT, &challenge, &extra))
        .await;
    let back = alice.browser.get(&app, start.location().unwrap()).await;
    let back = if back.status.is_redirection() {
        back.location().unwrap().to_owned()
    } else {
        approve_form(&app, &mut alice, &back).await
    };
    let code = query(&back)["code"].clone();
    // The code is for the second resource: redeeming it for /mcp fails.
    let wrong = app
        .post_form(
            "/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", &verifier),
                ("client_id", &client),
                ("resource", &format!("{ORIGIN}/mcp")),
            ],
        )
        .await;
    assert_eq!(wrong.json()["error"], "invalid_target", "{}", wrong.body);
    let issued = tokens(&redeem(&app, &client, &code, &verifier).await);
    let for_second = issued["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        call("/mcp/second", for_second.clone()).await.status,
        StatusCode::OK
    );
    let refused = call("/mcp", for_second).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    assert!(invalid_audience(&refused), "{:?}", refused.headers);
    // Refreshed, the token stays for the second resource.
    let refreshed =
        tokens(&refresh(&app, &client, issued["refresh_token"].as_str().unwrap()).await);
    let refreshed = refreshed["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        call("/mcp/second", refreshed.clone()).await.status,
        StatusCode::OK
    );
    assert_eq!(
        call("/mcp", refreshed).await.status,
        StatusCode::UNAUTHORIZED
    );

    // Two resources at once cannot be one token's audience.
    let (_, challenge) = pkce();
    let both = format!(
        "{extra}&resource={}",
        url::form_urlencoded::byte_serialize(format!("{ORIGIN}/mcp").as_bytes())
            .collect::<String>()
    );
    let refused = app
        .get(&authorize_url(&client, REDIRECT, &challenge, &both))
        .await;
    let location = refused.location().unwrap_or_default();
    assert_eq!(
        query(location)["error"],
        "invalid_target",
        "{}",
        refused.body
    );
}

fn invalid_audience(response: &TestResponse) -> bool {
    response.headers[header::WWW_AUTHENTICATE]
        .to_str()
        .unwrap()
        .contains("another audience")
}
