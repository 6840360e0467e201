//! Passkey accounts end to end, without a browser: the real router
//! in-process, a real SQLite store, and 1Password's software authenticator
//! in place of the browser and device.

mod support;

use http::StatusCode;
use passgate::{
    accounts::invitations,
    accounts::users::{self, Role},
    config::Config,
    crypto,
    login::cli,
    oauth::grants::{self, Grant},
    ratelimit::LimitedAction,
    store::now_unix,
};
use serde_json::{Value, json};
use support::{
    Browser, FlowError, ORIGIN, SoftAuthenticator, TestApp, enroll, sign_in, sign_in_with,
    without_user_verification,
};

async fn csrf(app: &TestApp, cookie: &str) -> String {
    app.signed_in(cookie).await.expect("signed in").csrf
}

fn server_status(result: Result<support::TestResponse, FlowError>) -> StatusCode {
    match result {
        Ok(r) => panic!("expected a refusal, got {} {}", r.status, r.body),
        Err(e) => e
            .status()
            .unwrap_or_else(|| panic!("device refused: {e:?}")),
    }
}

async fn grant_for(app: &TestApp, user_id: &str, client_id: &str, family: &str) {
    let grant = Grant {
        family: family.into(),
        user_id: user_id.into(),
        client_id: client_id.into(),
        client_name: format!("Client {client_id}"),
        scope: "mcp".into(),
        resource: format!("{ORIGIN}/mcp"),
        created_at: now_unix(),
        redirect_uri: "http://127.0.0.1:33418/callback".into(),
        groups: Vec::new(),
        user_name: String::new(),
        display_name: String::new(),
        account: None,
        last_used_at: None,
    };
    app.store()
        .transact(grants::create_writes(&grant).unwrap())
        .await
        .unwrap();
}

#[tokio::test]
async fn enroll_from_an_invitation() {
    let app = TestApp::new().await;
    let token = app.invite("alice", Role::Member).await;

    let mut browser = Browser::new();
    let page = browser.get(&app, &format!("/enroll?token={token}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("alice"));
    assert!(page.body.contains("/assets/passkeys.js"));

    let device = SoftAuthenticator::new();
    let done = enroll(&app, &mut browser, &device, &token, "Alice Liddell")
        .await
        .expect("enrollment succeeds");
    assert_eq!(done.json()["redirect"], "/account?notice=welcome");

    let all = users::list(app.store()).await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].name, "alice");
    assert_eq!(all[0].display_name, "Alice Liddell");
    assert_eq!(all[0].role, Role::Member);
    assert_eq!(users::user_handle(&all[0].id).map(|h| h.len()), Some(16));
    let creds = users::credentials(app.store(), &all[0].id).await.unwrap();
    assert_eq!(creds.len(), 1);

    let cookie = browser.session_cookie().expect("signed in after enrolling");
    assert!(
        cookie.starts_with("passgate_session="),
        "http://localhost uses the plain name"
    );
    let me = app.signed_in(&cookie).await.expect("session is live");
    assert_eq!(me.name, "alice");
    let account = browser.get(&app, "/account?notice=welcome").await;
    assert_eq!(account.status, StatusCode::OK);
    assert!(account.body.contains("Alice Liddell"));
    assert!(account.body.contains("Your account is ready"));
    assert!(account.body.contains("Your only passkey cannot be deleted"));
}

#[tokio::test]
async fn creation_options_follow_the_passkey_policy() {
    let app = TestApp::new().await;
    let token = app.invite("carol", Role::Member).await;
    let mut browser = Browser::new();
    let options = browser
        .post_json(
            &app,
            "/enroll/passkey/options",
            &json!({ "token": token, "displayName": "Carol" }),
        )
        .await;
    assert_eq!(options.status, StatusCode::OK);
    let set_cookie = options.headers["set-cookie"].to_str().unwrap();
    assert!(set_cookie.starts_with("passgate_ceremony="));
    assert!(set_cookie.contains("HttpOnly"));
    let pk = &options.json()["publicKey"];
    assert_eq!(pk["rp"]["id"], "localhost");
    assert_eq!(pk["authenticatorSelection"]["residentKey"], "required");
    assert_eq!(pk["authenticatorSelection"]["userVerification"], "required");
    assert_eq!(pk["extensions"]["enforceCredentialProtectionPolicy"], false);
    assert_eq!(pk["user"]["name"], "carol");
    // The ceremony is stored, to be taken once, and expires within 5 minutes.
    let challenge = pk["challenge"].as_str().unwrap();
    assert!(!challenge.is_empty());
}

#[tokio::test]
async fn sign_in_usernameless() {
    let app = TestApp::new().await;
    let (device, _) = support::new_user(&app, "bob", Role::Member).await;

    let mut browser = Browser::new();
    let options = browser
        .post_json(
            &app,
            "/login/passkey/options",
            &json!({ "next": "/authorize?x=1" }),
        )
        .await;
    assert_eq!(options.status, StatusCode::OK);
    let pk = &options.json()["publicKey"];
    assert_eq!(pk["userVerification"], "required");
    assert!(
        pk.get("allowCredentials")
            .is_none_or(|a| a.as_array().is_some_and(|a| a.is_empty())),
        "usernameless: no credential list"
    );
    let assertion = device.get(ORIGIN, options.json()).await.unwrap();
    let done = browser
        .post_json(&app, "/login/passkey/finish", &assertion)
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert_eq!(done.json()["redirect"], "/authorize?x=1");
    let set_cookie = done.headers["set-cookie"].to_str().unwrap();
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/"] {
        assert!(set_cookie.contains(attr), "{set_cookie}");
    }

    let cookie = browser.session_cookie().unwrap();
    let me = app.signed_in(&cookie).await.expect("signed in");
    assert_eq!(me.name, "bob");
    assert!(!me.is_admin);
    let creds = users::credentials(app.store(), &me.user_id).await.unwrap();
    assert_eq!(creds[0].sign_count, 1, "sign counter recorded");
    assert!(creds[0].last_used_at.is_some());

    // The helper other tests use.
    let cookie = sign_in(&app, &device).await;
    assert_eq!(app.signed_in(&cookie).await.unwrap().name, "bob");
}

#[tokio::test]
async fn sign_in_refuses_a_non_local_next() {
    let app = TestApp::new().await;
    let (device, _) = support::new_user(&app, "dave", Role::Member).await;
    let mut browser = Browser::new();
    let options = browser
        .post_json(
            &app,
            "/login/passkey/options",
            &json!({ "next": "https://evil.example/" }),
        )
        .await;
    let assertion = device.get(ORIGIN, options.json()).await.unwrap();
    let done = browser
        .post_json(&app, "/login/passkey/finish", &assertion)
        .await;
    assert_eq!(done.json()["redirect"], "/account");

    let page = Browser::new().get(&app, "/login?next=//evil.example").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains(r#"data-next="/account""#));
    assert!(page.body.contains(r#"autocomplete="username webauthn""#));
}

#[tokio::test]
async fn replayed_assertion_is_refused() {
    let app = TestApp::new().await;
    let (device, _) = support::new_user(&app, "erin", Role::Member).await;
    let mut browser = Browser::new();
    let options = browser
        .post_json(&app, "/login/passkey/options", &json!({}))
        .await;
    let assertion = device.get(ORIGIN, options.json()).await.unwrap();
    let first = browser
        .post_json(&app, "/login/passkey/finish", &assertion)
        .await;
    assert_eq!(first.status, StatusCode::OK);
    let replay = browser
        .post_json(&app, "/login/passkey/finish", &assertion)
        .await;
    assert_eq!(replay.status, StatusCode::GONE, "{}", replay.body);
    let mut other = Browser::new();
    let replay = other
        .post_json(&app, "/login/passkey/finish", &assertion)
        .await;
    assert_ne!(replay.status, StatusCode::OK);
    assert!(other.session_cookie().is_none());
}

#[tokio::test]
async fn assertion_from_another_browser_is_refused() {
    let app = TestApp::new().await;
    let (device, _) = support::new_user(&app, "fay", Role::Member).await;
    // An attacker starts a ceremony and signs it, then makes a victim's
    // browser post it: the ceremony is bound to the attacker's browser.
    let mut attacker = Browser::new();
    let options = attacker
        .post_json(&app, "/login/passkey/options", &json!({}))
        .await;
    let assertion = device.get(ORIGIN, options.json()).await.unwrap();
    let mut victim = Browser::new();
    victim
        .post_json(&app, "/login/passkey/options", &json!({}))
        .await;
    let posted = victim
        .post_json(&app, "/login/passkey/finish", &assertion)
        .await;
    assert_eq!(posted.status, StatusCode::FORBIDDEN, "{}", posted.body);
    assert!(victim.session_cookie().is_none());
}

#[tokio::test]
async fn wrong_origin_is_refused() {
    let app = TestApp::new().await;
    let (device, _) = support::new_user(&app, "gus", Role::Member).await;

    // A page of another origin cannot call the JSON endpoints.
    let mut evil = Browser::new();
    evil.origin = "http://evil.localhost:4318".into();
    let r = evil
        .post_json(&app, "/login/passkey/options", &json!({}))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("passgate page")
    );

    // A passkey answer signed for another origin (same RP id, other port).
    let mut browser = Browser::new();
    let options = browser
        .post_json(&app, "/login/passkey/options", &json!({}))
        .await;
    let assertion = device
        .get("http://localhost:9999", options.json())
        .await
        .unwrap();
    let r = browser
        .post_json(&app, "/login/passkey/finish", &assertion)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("different web address")
    );
    assert!(browser.session_cookie().is_none());

    // The same for registration: nothing is created.
    let token = app.invite("hal", Role::Member).await;
    let mut browser = Browser::new();
    let options = browser
        .post_json(&app, "/enroll/passkey/options", &json!({ "token": token }))
        .await;
    let cred = SoftAuthenticator::new()
        .create("http://localhost:9999", options.json())
        .await
        .unwrap();
    let r = browser
        .post_json(&app, "/enroll/passkey/finish", &cred)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert!(
        users::find_by_name(app.store(), "hal")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn user_not_verified_is_refused() {
    let app = TestApp::new().await;
    let (device, _) = support::new_user(&app, "ivy", Role::Member).await;
    let mut browser = Browser::new();
    let options = browser
        .post_json(&app, "/login/passkey/options", &json!({}))
        .await;
    let assertion = device
        .get(ORIGIN, without_user_verification(options.json()))
        .await
        .unwrap();
    let r = browser
        .post_json(&app, "/login/passkey/finish", &assertion)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap()
            .contains("confirm it was you")
    );
    assert!(browser.session_cookie().is_none());

    // Enrollment without user verification creates nothing.
    let token = app.invite("jay", Role::Member).await;
    let mut browser = Browser::new();
    let options = browser
        .post_json(&app, "/enroll/passkey/options", &json!({ "token": token }))
        .await;
    let cred = SoftAuthenticator::new()
        .create(ORIGIN, without_user_verification(options.json()))
        .await
        .unwrap();
    let r = browser
        .post_json(&app, "/enroll/passkey/finish", &cred)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert!(
        users::find_by_name(app.store(), "jay")
            .await
            .unwrap()
            .is_none()
    );
    // The invitation is still usable.
    let device = SoftAuthenticator::new();
    enroll(&app, &mut Browser::new(), &device, &token, "Jay")
        .await
        .expect("a proper passkey still enrolls");
}

#[tokio::test]
async fn sign_counter_going_backwards_is_refused() {
    let app = TestApp::new().await;
    let (device, _) = support::new_user(&app, "kim", Role::Member).await;
    sign_in(&app, &device).await;
    let cloned = device.snapshot().await;
    sign_in(&app, &device).await;
    // The clone is one use behind: its next counter repeats a seen value.
    device.restore(cloned).await;
    let r = sign_in_with(&app, &mut Browser::new(), &device).await;
    assert_eq!(server_status(r), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn forged_expired_and_reused_invitations_are_refused() {
    let app = TestApp::new().await;

    // Forged.
    let mut browser = Browser::new();
    let page = browser.get(&app, "/enroll?token=not-a-real-token").await;
    assert_eq!(page.status, StatusCode::GONE);
    assert!(page.body.contains("not valid"));
    let r = browser
        .post_json(
            &app,
            "/enroll/passkey/options",
            &json!({ "token": "forged" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::GONE);
    let r = browser.get(&app, "/enroll").await;
    assert_eq!(r.status, StatusCode::GONE);

    // Expired.
    let token = app.invite_for("lee", Role::Member, 1).await;
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let r = browser.get(&app, &format!("/enroll?token={token}")).await;
    assert_eq!(r.status, StatusCode::GONE);
    let r = enroll(
        &app,
        &mut Browser::new(),
        &SoftAuthenticator::new(),
        &token,
        "Lee",
    )
    .await;
    assert_eq!(server_status(r), StatusCode::GONE);

    // Reused.
    let token = app.invite("mae", Role::Member).await;
    enroll(
        &app,
        &mut Browser::new(),
        &SoftAuthenticator::new(),
        &token,
        "Mae",
    )
    .await
    .expect("first use works");
    let r = enroll(
        &app,
        &mut Browser::new(),
        &SoftAuthenticator::new(),
        &token,
        "Mae 2",
    )
    .await;
    assert_eq!(server_status(r), StatusCode::GONE);
    assert_eq!(users::list(app.store()).await.unwrap().len(), 1);
}

#[tokio::test]
async fn an_invitation_used_in_two_browsers_at_once_yields_one_account() {
    let app = TestApp::new().await;
    let token = app.invite("ned", Role::Member).await;
    let (mut a, mut b) = (Browser::new(), Browser::new());
    let (da, db) = (SoftAuthenticator::new(), SoftAuthenticator::new());
    let body = json!({ "token": token });
    let oa = a.post_json(&app, "/enroll/passkey/options", &body).await;
    let ob = b.post_json(&app, "/enroll/passkey/options", &body).await;
    let ca = da.create(ORIGIN, oa.json()).await.unwrap();
    let cb = db.create(ORIGIN, ob.json()).await.unwrap();
    let ra = a.post_json(&app, "/enroll/passkey/finish", &ca).await;
    let rb = b.post_json(&app, "/enroll/passkey/finish", &cb).await;
    assert_eq!(ra.status, StatusCode::OK);
    assert_eq!(rb.status, StatusCode::GONE, "{}", rb.body);
    assert_eq!(users::list(app.store()).await.unwrap().len(), 1);
    assert!(b.session_cookie().is_none());
}

#[tokio::test]
async fn deleted_user_cannot_sign_in() {
    let app = TestApp::new().await;
    let (admin_device, admin_cookie) = support::new_user(&app, "root", Role::Admin).await;
    let (device, cookie) = support::new_user(&app, "olga", Role::Member).await;
    let olga = app.signed_in(&cookie).await.unwrap();
    grant_for(&app, &olga.user_id, "client-1", "fam-1").await;

    let mut admin = Browser::with_cookie(&admin_cookie);
    let token = csrf(&app, &admin_cookie).await;
    let r = admin
        .post_form(
            &app,
            "/admin/users/delete",
            &[("csrf", &token), ("user_id", &olga.user_id)],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(
        users::get(app.store(), &olga.user_id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        users::credentials(app.store(), &olga.user_id)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(app.signed_in(&cookie).await.is_none(), "sessions ended");
    assert!(grants::get(app.store(), "fam-1").await.unwrap().is_none());

    let r = sign_in_with(&app, &mut Browser::new(), &device).await;
    assert_eq!(server_status(r), StatusCode::FORBIDDEN);
    // The name is free again for a new invitation.
    app.invite("olga", Role::Member).await;
    // The admin is unaffected.
    sign_in(&app, &admin_device).await;
}

#[tokio::test]
async fn disabled_user_loses_grants_sessions_and_sign_in() {
    let app = TestApp::new().await;
    let (_, admin_cookie) = support::new_user(&app, "root", Role::Admin).await;
    let (device, cookie) = support::new_user(&app, "pia", Role::Member).await;
    let pia = app.signed_in(&cookie).await.unwrap();
    grant_for(&app, &pia.user_id, "client-a", "fam-a").await;
    grant_for(&app, &pia.user_id, "client-b", "fam-b").await;
    assert_eq!(
        grants::list_for_user(app.store(), &pia.user_id)
            .await
            .unwrap()
            .len(),
        2
    );

    let mut admin = Browser::with_cookie(&admin_cookie);
    let token = csrf(&app, &admin_cookie).await;
    let r = admin
        .post_form(
            &app,
            "/admin/users/disable",
            &[("csrf", &token), ("user_id", &pia.user_id)],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);

    assert!(
        grants::list_for_user(app.store(), &pia.user_id)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(grants::get(app.store(), "fam-a").await.unwrap().is_none());
    assert!(grants::get(app.store(), "fam-b").await.unwrap().is_none());
    assert!(app.signed_in(&cookie).await.is_none(), "sessions ended");
    let r = Browser::with_cookie(&cookie).get(&app, "/account").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location(), Some("/login?next=%2Faccount"));

    let r = sign_in_with(&app, &mut Browser::new(), &device).await;
    match r {
        Err(FlowError::Server(r)) => {
            assert_eq!(r.status, StatusCode::FORBIDDEN);
            assert!(r.json()["error"].as_str().unwrap().contains("disabled"));
        }
        other => panic!("expected refusal, got {other:?}"),
    }

    // Enabled again, the passkey works.
    let r = admin
        .post_form(
            &app,
            "/admin/users/enable",
            &[("csrf", &token), ("user_id", &pia.user_id)],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    sign_in(&app, &device).await;
}

#[tokio::test]
async fn passkeys_can_be_added_renamed_and_deleted_but_not_the_last() {
    let app = TestApp::new().await;
    let (device, cookie) = support::new_user(&app, "quinn", Role::Member).await;
    let me = app.signed_in(&cookie).await.unwrap();
    let mut browser = Browser::with_cookie(&cookie);
    let first = users::credentials(app.store(), &me.user_id).await.unwrap()[0]
        .id
        .clone();

    // The last passkey cannot be deleted.
    let r = browser
        .post_form(
            &app,
            "/account/passkeys/delete",
            &[("csrf", &me.csrf), ("id", &first)],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("only passkey"));

    // Add a second passkey from another device.
    let laptop = SoftAuthenticator::new();
    let csrf_header = [("x-csrf-token", me.csrf.as_str())];
    let options = browser
        .post_json_with(
            &app,
            "/account/passkeys/options",
            &json!({ "label": "Laptop" }),
            &csrf_header,
        )
        .await;
    assert_eq!(options.status, StatusCode::OK, "{}", options.body);
    let exclude = options.json()["publicKey"]["excludeCredentials"].clone();
    assert_eq!(
        exclude.as_array().map(Vec::len),
        Some(1),
        "existing passkey excluded"
    );
    let cred = laptop.create(ORIGIN, options.json()).await.unwrap();
    let r = browser
        .post_json_with(&app, "/account/passkeys/finish", &cred, &csrf_header)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let mut creds = users::credentials(app.store(), &me.user_id).await.unwrap();
    assert_eq!(creds.len(), 2);
    // Both were made within a second; put the original first.
    creds.sort_by_key(|c| c.id != first);
    assert_eq!(creds[1].name, "Laptop");
    let laptop_cookie = sign_in(&app, &laptop).await;
    let on_laptop = app.signed_in(&laptop_cookie).await.unwrap();
    assert_eq!(on_laptop.name, "quinn");

    // Rename.
    let r = browser
        .post_form(
            &app,
            "/account/passkeys/rename",
            &[
                ("csrf", &me.csrf),
                ("id", &creds[1].id),
                ("name", "Work laptop"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let page = browser.get(&app, "/account").await;
    assert!(page.body.contains("Work laptop"));

    // Delete the first; the browser signed in with it is signed out, the
    // laptop's session stays, and the second passkey is then the last.
    let r = browser
        .post_form(
            &app,
            "/account/passkeys/delete",
            &[("csrf", &me.csrf), ("id", &first)],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert!(app.signed_in(&cookie).await.is_none(), "signed in with it");
    assert!(app.signed_in(&laptop_cookie).await.is_some());
    let r = Browser::with_cookie(&laptop_cookie)
        .post_form(
            &app,
            "/account/passkeys/delete",
            &[("csrf", &on_laptop.csrf), ("id", &creds[1].id)],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        users::credentials(app.store(), &me.user_id)
            .await
            .unwrap()
            .len(),
        1
    );
    // The deleted passkey no longer signs in.
    let r = sign_in_with(&app, &mut Browser::new(), &device).await;
    assert_eq!(server_status(r), StatusCode::FORBIDDEN);

    // Someone else's passkey cannot be touched.
    let (_, other_cookie) = support::new_user(&app, "rex", Role::Member).await;
    let other = app.signed_in(&other_cookie).await.unwrap();
    let r = Browser::with_cookie(&other_cookie)
        .post_form(
            &app,
            "/account/passkeys/rename",
            &[
                ("csrf", &other.csrf),
                ("id", &creds[1].id),
                ("name", "mine"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn account_page_lists_connected_clients_and_revokes_them() {
    let app = TestApp::new().await;
    let (_, cookie) = support::new_user(&app, "sam", Role::Member).await;
    let me = app.signed_in(&cookie).await.unwrap();
    grant_for(&app, &me.user_id, "https://claude.example/client", "f1").await;
    grant_for(&app, &me.user_id, "https://claude.example/client", "f2").await;
    grant_for(&app, &me.user_id, "vscode", "f3").await;
    let mut browser = Browser::with_cookie(&cookie);
    let page = browser.get(&app, "/account").await;
    assert!(page.body.contains("Client https://claude.example/client"));
    assert!(page.body.contains("2 sign-ins"));
    assert!(page.body.contains("Client vscode"));

    let r = browser
        .post_form(
            &app,
            "/account/clients/revoke",
            &[
                ("csrf", &me.csrf),
                ("client_id", "https://claude.example/client"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let left = grants::list_for_user(app.store(), &me.user_id)
        .await
        .unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].client_id, "vscode");
}

#[tokio::test]
async fn missing_csrf_is_forbidden() {
    let app = TestApp::new().await;
    let (_, cookie) = support::new_user(&app, "tess", Role::Admin).await;
    let me = app.signed_in(&cookie).await.unwrap();
    let mut browser = Browser::with_cookie(&cookie);
    let cred = users::credentials(app.store(), &me.user_id).await.unwrap()[0]
        .id
        .clone();

    for (path, fields) in [
        (
            "/account/passkeys/rename",
            vec![("id", cred.as_str()), ("name", "x")],
        ),
        ("/account/passkeys/delete", vec![("id", cred.as_str())]),
        ("/account/clients/revoke", vec![("client_id", "c")]),
        ("/admin/invite", vec![("name", "uma"), ("role", "member")]),
        ("/admin/users/disable", vec![("user_id", "00")]),
        ("/logout", vec![]),
    ] {
        let r = browser.post_form(&app, path, &fields).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path}: {}", r.body);
        let mut wrong = fields.clone();
        wrong.push(("csrf", "wrong"));
        let r = browser.post_form(&app, path, &wrong).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path} with a wrong token");
    }
    let r = browser
        .post_json(&app, "/account/passkeys/options", &json!({}))
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(app.signed_in(&cookie).await.is_some(), "still signed in");
    assert!(
        users::find_by_name(app.store(), "uma")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn forms_without_a_session_lead_to_sign_in_and_change_nothing() {
    let app = TestApp::new().await;
    let (_, cookie) = support::new_user(&app, "ulf", Role::Admin).await;
    let me = app.signed_in(&cookie).await.unwrap();
    grant_for(&app, &me.user_id, "claude", "f1").await;
    // The session is gone (expired, or signed out in another tab); the page
    // was still open with its token.
    let mut stale = Browser::new();
    for (path, fields, back_to) in [
        (
            "/account/clients/revoke",
            vec![("csrf", me.csrf.as_str()), ("client_id", "claude")],
            "/account",
        ),
        (
            "/admin/invite",
            vec![
                ("csrf", me.csrf.as_str()),
                ("name", "wes"),
                ("role", "admin"),
            ],
            "/admin",
        ),
    ] {
        let r = stale.post_form(&app, path, &fields).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{path}: {}", r.body);
        assert_eq!(
            r.location(),
            Some(format!("/login?next=%2F{}", &back_to[1..]).as_str()),
            "{path}"
        );
    }
    assert_eq!(
        grants::list_for_user(app.store(), &me.user_id)
            .await
            .unwrap()
            .len(),
        1,
        "the client is still connected"
    );
    assert!(
        users::find_by_name(app.store(), "wes")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn unreadable_forms_get_an_error_page() {
    let app = TestApp::new().await;
    let (_, cookie) = support::new_user(&app, "vic", Role::Member).await;
    let mut browser = Browser::with_cookie(&cookie);
    // The consent form lacks its fields; a page form arrives as JSON.
    let r = browser
        .post_form(&app, "/consent", &[("decision", "approve")])
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.body.contains("could not read this form"), "{}", r.body);
    assert!(r.body.contains("<h1"), "a page, not plain text: {}", r.body);
    let r = browser
        .post_json(
            &app,
            "/account/clients/revoke",
            &json!({ "client_id": "x" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.body.contains("could not read this form"), "{}", r.body);
}

#[tokio::test]
async fn sign_out_ends_the_session() {
    let app = TestApp::new().await;
    let (_, cookie) = support::new_user(&app, "val", Role::Member).await;
    let me = app.signed_in(&cookie).await.unwrap();
    let mut browser = Browser::with_cookie(&cookie);
    let r = browser
        .post_form(&app, "/logout", &[("csrf", &me.csrf)])
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(browser.session_cookie().is_none(), "cookie cleared");
    assert!(
        app.signed_in(&cookie).await.is_none(),
        "session ended server-side"
    );
}

#[tokio::test]
async fn sign_in_attempts_are_rate_limited() {
    let app = TestApp::new().await;
    let mut browser = Browser::new();
    let mut statuses = Vec::new();
    for _ in 0..LimitedAction::SignIn.max() {
        let r = browser
            .post_json(&app, "/login/passkey/options", &json!({}))
            .await;
        statuses.push(r.status);
    }
    assert!(
        statuses[..statuses.len() - 1]
            .iter()
            .all(|s| *s == StatusCode::OK)
    );
    let last = browser
        .post_json(&app, "/login/passkey/options", &json!({}))
        .await;
    assert_eq!(last.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(last.json()["next"].as_str().unwrap().contains("Wait"));

    // Enrollment with one invitation is limited too.
    let token = app.invite("wes", Role::Member).await;
    let mut saw_limit = false;
    for _ in 0..=LimitedAction::EnrollInvitation.max() {
        let r = Browser::new()
            .post_json(&app, "/enroll/passkey/options", &json!({ "token": token }))
            .await;
        saw_limit |= r.status == StatusCode::TOO_MANY_REQUESTS;
    }
    assert!(saw_limit);
}

/// Signs in with `device` from address `from` (behind a trusted proxy),
/// optionally forging the assertion's signature; returns the finish status.
async fn sign_in_from(
    app: &TestApp,
    device: &SoftAuthenticator,
    from: &str,
    forge: bool,
) -> StatusCode {
    let mut browser = Browser::new();
    let xff = [("x-forwarded-for", from)];
    let options = browser
        .post_json_with(app, "/login/passkey/options", &json!({}), &xff)
        .await;
    if options.status != StatusCode::OK {
        return options.status;
    }
    let mut assertion = device.get(ORIGIN, options.json()).await.unwrap();
    if forge {
        // Someone without the passkey: its id and user handle, any signature.
        assertion["response"]["signature"] = json!(crypto::random_token(64));
    }
    browser
        .post_json_with(app, "/login/passkey/finish", &assertion, &xff)
        .await
        .status
}

#[tokio::test]
async fn failed_sign_ins_slow_the_sender_not_the_passkey_owner() {
    let mut config = Config::for_public_url(ORIGIN).unwrap();
    config.trust_forwarded_for = true;
    let app = TestApp::with_config(config).await;
    let (device, _) = support::new_user(&app, "xia", Role::Member).await;
    let (owner, attacker) = ("198.51.100.7", "203.0.113.66");
    // Successful sign-ins do not count.
    for _ in 0..LimitedAction::SignInFailure.max() + 2 {
        assert_eq!(
            sign_in_from(&app, &device, owner, false).await,
            StatusCode::OK
        );
    }
    // Forged assertions naming xia's passkey fail, and then their sender
    // must wait...
    for _ in 0..LimitedAction::SignInFailure.max() {
        assert_eq!(
            sign_in_from(&app, &device, attacker, true).await,
            StatusCode::FORBIDDEN
        );
    }
    assert_eq!(
        sign_in_from(&app, &device, attacker, true).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        sign_in_from(&app, &device, attacker, false).await,
        StatusCode::TOO_MANY_REQUESTS,
        "even with a good passkey, from that address"
    );
    // ...while xia, elsewhere, signs in as usual.
    assert_eq!(
        sign_in_from(&app, &device, owner, false).await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn admin_page_invites_and_is_for_admins_only() {
    let app = TestApp::new().await;
    let (_, admin_cookie) = support::new_user(&app, "root", Role::Admin).await;
    let (_, member_cookie) = support::new_user(&app, "yan", Role::Member).await;

    let r = Browser::with_cookie(&member_cookie)
        .get(&app, "/admin")
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = Browser::new().get(&app, "/admin").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);

    let mut admin = Browser::with_cookie(&admin_cookie);
    let page = admin.get(&app, "/admin").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("yan"));
    let token = csrf(&app, &admin_cookie).await;
    let r = admin
        .post_form(
            &app,
            "/admin/invite",
            &[("csrf", &token), ("name", "zoe"), ("role", "admin")],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let link = r
        .body
        .split("value=\"")
        .find_map(|s| s.split('"').next().filter(|v| v.contains("/enroll?token=")))
        .expect("link shown")
        .to_owned();
    assert!(link.starts_with(&format!("{ORIGIN}/enroll?token=")));
    let device = SoftAuthenticator::new();
    enroll(
        &app,
        &mut Browser::new(),
        &device,
        &support::app::token_of(&link),
        "Zoë",
    )
    .await
    .expect("invited admin enrolls");
    let zoe = users::find_by_name(app.store(), "zoe")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(zoe.role, Role::Admin);
    assert_eq!(zoe.display_name, "Zoë");

    // An admin cannot disable themselves; names must be free.
    let root = app.signed_in(&admin_cookie).await.unwrap();
    let r = admin
        .post_form(
            &app,
            "/admin/users/disable",
            &[("csrf", &token), ("user_id", &root.user_id)],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = admin
        .post_form(
            &app,
            "/admin/invite",
            &[("csrf", &token), ("name", "yan"), ("role", "member")],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = admin
        .post_form(
            &app,
            "/admin/invite",
            &[("csrf", &token), ("name", "two words"), ("role", "member")],
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn first_admin_invitation_is_made_once() {
    let app = TestApp::new().await;
    let config = app.state.config.clone();
    let banner = cli::first_admin_banner(app.store(), &config)
        .await
        .unwrap()
        .expect("a banner with a link");
    let link = banner
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with(ORIGIN))
        .expect("link line")
        .to_owned();
    // A restart does not print another.
    assert!(
        cli::first_admin_banner(app.store(), &config)
            .await
            .unwrap()
            .is_none()
    );
    assert!(matches!(
        invitations::ensure_first_admin(app.store(), ORIGIN, 3600)
            .await
            .unwrap(),
        invitations::FirstAdmin::Pending { .. }
    ));

    let device = SoftAuthenticator::new();
    enroll(
        &app,
        &mut Browser::new(),
        &device,
        &support::app::token_of(&link),
        "The Admin",
    )
    .await
    .expect("first admin enrolls");
    let admin = users::find_by_name(app.store(), "admin")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(admin.role, Role::Admin);
    assert!(matches!(
        invitations::ensure_first_admin(app.store(), ORIGIN, 3600)
            .await
            .unwrap(),
        invitations::FirstAdmin::NotNeeded
    ));
}

#[tokio::test]
async fn cli_invites_lists_disables_and_deletes() {
    let app = TestApp::new().await;
    let out = cli::invite(app.store(), ORIGIN, "amy", true, 48, true)
        .await
        .unwrap();
    let link = out.lines().last().unwrap();
    assert!(
        link.starts_with(&format!("{ORIGIN}/enroll?token=")),
        "{out}"
    );
    let device = SoftAuthenticator::new();
    enroll(
        &app,
        &mut Browser::new(),
        &device,
        &support::app::token_of(link),
        "Amy",
    )
    .await
    .unwrap();
    let list = cli::list(app.store()).await.unwrap();
    assert!(
        list.contains("amy") && list.contains("admin") && list.contains("active"),
        "{list}"
    );

    let amy = users::find_by_name(app.store(), "amy")
        .await
        .unwrap()
        .unwrap();
    grant_for(&app, &amy.id, "c", "fam-cli").await;
    cli::disable(app.store(), "amy").await.unwrap();
    assert!(grants::get(app.store(), "fam-cli").await.unwrap().is_none());
    assert!(cli::list(app.store()).await.unwrap().contains("disabled"));
    cli::delete(app.store(), "amy").await.unwrap();
    assert!(users::list(app.store()).await.unwrap().is_empty());
    assert!(cli::disable(app.store(), "nobody").await.is_err());
}

#[tokio::test]
async fn pages_use_the_strict_layout() {
    let app = TestApp::new().await;
    let r = Browser::new().get(&app, "/login").await;
    let csp = r.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'"));
    assert!(!r.body.contains("<script>"), "no inline script");
    assert!(!r.body.contains("style="), "no inline style");
    let js = Browser::new().get(&app, "/assets/passkeys.js").await;
    assert_eq!(js.status, StatusCode::OK);
    assert!(js.body.contains("navigator.credentials"));
    let css = Browser::new().get(&app, "/assets/style.css").await;
    assert_eq!(css.status, StatusCode::OK);
    // An unknown address is a page of the product, not an empty answer.
    let missing = Browser::new().get(&app, "/no/such/page").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.body.contains("There is no page at this address"));
    assert!(missing.headers["content-security-policy"].to_str().is_ok());
}

#[tokio::test]
async fn json_endpoints_want_json() {
    let app = TestApp::new().await;
    let request = http::Request::builder()
        .method("POST")
        .uri("/login/passkey/options")
        .header("origin", ORIGIN)
        .header("content-type", "text/plain")
        .body(axum::body::Body::from("{}"))
        .unwrap();
    let r = app.send(request).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = Browser::new()
        .post_json(&app, "/login/passkey/finish", &Value::Null)
        .await;
    assert_ne!(r.status, StatusCode::OK);
}

/// Issue 16: a new passkey made for a sign-in challenge (the client mixed up
/// two requests) is the client's mistake: a 400 that says so, never a 500
/// that reads like stored data gone bad. The sign-in ceremony is used up.
#[tokio::test]
async fn a_new_passkey_answering_a_sign_in_challenge_is_a_client_mistake() {
    let app = TestApp::new().await;
    let (_, cookie) = support::new_user(&app, "wanda", Role::Member).await;
    let me = app.signed_in(&cookie).await.unwrap();
    let csrf_header = [("x-csrf-token", me.csrf.as_str())];
    let token = app.invite("xena", Role::Member).await;

    for (path, options_path, options_body) in [
        (
            "/account/passkeys/finish",
            "/account/passkeys/options",
            json!({ "label": "Mixed up" }),
        ),
        (
            "/enroll/passkey/finish",
            "/enroll/passkey/options",
            json!({ "token": token, "displayName": "Xena" }),
        ),
    ] {
        let mut browser = Browser::with_cookie(&cookie);
        let sign_in_options = browser
            .post_json(&app, "/login/passkey/options", &json!({}))
            .await;
        assert_eq!(sign_in_options.status, StatusCode::OK);
        let sign_in_challenge = sign_in_options.json()["publicKey"]["challenge"].clone();
        let creation = browser
            .post_json_with(&app, options_path, &options_body, &csrf_header)
            .await;
        assert_eq!(creation.status, StatusCode::OK, "{}", creation.body);
        let mut options = creation.json();
        options["publicKey"]["challenge"] = sign_in_challenge;
        let credential = SoftAuthenticator::new()
            .create(ORIGIN, options)
            .await
            .unwrap();
        let r = browser
            .post_json_with(&app, path, &credential, &csrf_header)
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}: {}", r.body);
        assert!(
            r.json()["error"]
                .as_str()
                .unwrap()
                .contains("another kind of request"),
            "{path}: {}",
            r.body
        );
        // The same answer again finds nothing: the ceremony was taken once.
        let again = browser
            .post_json_with(&app, path, &credential, &csrf_header)
            .await;
        assert_eq!(again.status, StatusCode::GONE, "{path}: {}", again.body);
    }
    assert!(
        users::find_by_name(app.store(), "xena")
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        users::credentials(app.store(), &me.user_id)
            .await
            .unwrap()
            .len(),
        1
    );
}

/// The one-time link shown on a page of the admin area.
fn link_in(body: &str, marker: &str) -> String {
    body.split("value=\"")
        .find_map(|s| s.split('"').next().filter(|v| v.contains(marker)))
        .unwrap_or_else(|| panic!("no {marker} link in {body}"))
        .to_owned()
}

#[tokio::test]
async fn a_recovery_link_adds_a_passkey_ends_other_sessions_and_keeps_the_rest() {
    let app = TestApp::new().await;
    let (_, admin_cookie) = support::new_user(&app, "root", Role::Admin).await;
    let (lost_device, first_session) = support::new_user(&app, "yan", Role::Member).await;
    let second_session = sign_in(&app, &lost_device).await;
    let yan = app.signed_in(&first_session).await.unwrap();
    grant_for(&app, &yan.user_id, "vscode", "f-yan").await;
    users::set_groups(app.store(), &yan.user_id, vec!["eng".into()])
        .await
        .unwrap();

    // Only administrators make recovery links.
    let member_csrf = csrf(&app, &first_session).await;
    let r = Browser::with_cookie(&first_session)
        .post_form(
            &app,
            "/admin/users/recover",
            &[("csrf", &member_csrf), ("user_id", &yan.user_id)],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    let mut admin = Browser::with_cookie(&admin_cookie);
    let admin_csrf = csrf(&app, &admin_cookie).await;
    let made = admin
        .post_form(
            &app,
            "/admin/users/recover",
            &[("csrf", &admin_csrf), ("user_id", &yan.user_id)],
        )
        .await;
    assert_eq!(made.status, StatusCode::OK, "{}", made.body);
    assert!(made.body.contains("signs out every other browser"));
    let link = link_in(&made.body, "/recover?token=");
    assert!(link.starts_with(&format!("{ORIGIN}/recover?token=")));
    let token = support::app::token_of(&link);
    // Only the hash is stored.
    let stored = app
        .store()
        .get(
            &format!("recover#{}", passgate::crypto::token_hash(&token)),
            "recover",
        )
        .await
        .unwrap();
    assert!(
        stored.is_some()
            && !stored
                .unwrap()
                .value
                .windows(token.len())
                .any(|w| w == token.as_bytes())
    );

    // The page says what using it ends and keeps.
    let mut browser = Browser::new();
    let page = browser.get(&app, &format!("/recover?token={token}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("<strong>yan</strong>"));
    assert!(
        page.body
            .contains("<strong>It ends</strong> every other browser session")
    );
    assert!(page.body.contains("<strong>It keeps</strong> the account's other passkeys, its connected applications and its groups"));
    assert!(page.body.contains(r#"data-passkey="recover""#));

    let new_device = SoftAuthenticator::new();
    let options = browser
        .post_json(
            &app,
            "/recover/passkey/options",
            &json!({ "token": token, "label": "new phone" }),
        )
        .await;
    assert_eq!(options.status, StatusCode::OK, "{}", options.body);
    assert_eq!(options.json()["publicKey"]["user"]["name"], "yan");
    let credential = new_device.create(ORIGIN, options.json()).await.unwrap();
    let done = browser
        .post_json(&app, "/recover/passkey/finish", &credential)
        .await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert_eq!(done.json()["redirect"], "/account?notice=recovered");

    // Signed in here, signed out everywhere else.
    let cookie = browser.session_cookie().expect("signed in");
    assert_eq!(app.signed_in(&cookie).await.unwrap().user_id, yan.user_id);
    assert!(app.signed_in(&first_session).await.is_none());
    assert!(app.signed_in(&second_session).await.is_none());
    // Kept: the old passkey, the connected client, the groups.
    let creds = users::credentials(app.store(), &yan.user_id).await.unwrap();
    assert_eq!(creds.len(), 2);
    // Both were made within a second, so their order is not fixed.
    assert!(creds.iter().any(|c| c.name == "new phone"), "{creds:?}");
    assert!(grants::get(app.store(), "f-yan").await.unwrap().is_some());
    let user = users::get(app.store(), &yan.user_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(user.groups, ["eng"]);
    // The new passkey signs in.
    sign_in(&app, &new_device).await;

    // Single use: the link is gone.
    let again = Browser::new()
        .post_json(&app, "/recover/passkey/options", &json!({ "token": token }))
        .await;
    assert_eq!(again.status, StatusCode::GONE);
    let page = Browser::new()
        .get(&app, &format!("/recover?token={token}"))
        .await;
    assert_eq!(page.status, StatusCode::GONE);

    // Expired links are refused, and disabled accounts get none.
    let short = passgate::login::recovery::create(app.store(), ORIGIN, "yan", 3600, None)
        .await
        .unwrap();
    let expired_token = support::app::token_of(&short.link);
    let pk = format!("recover#{}", passgate::crypto::token_hash(&expired_token));
    let item = app.store().get(&pk, "recover").await.unwrap().unwrap();
    app.store()
        .put(passgate::store::NewItem::new(pk, "recover", item.value).expires_at(now_unix() - 1))
        .await
        .unwrap();
    let expired = Browser::new()
        .post_json(
            &app,
            "/recover/passkey/options",
            &json!({ "token": expired_token }),
        )
        .await;
    assert_eq!(expired.status, StatusCode::GONE);
    users::set_disabled(app.store(), &yan.user_id, true)
        .await
        .unwrap();
    assert!(
        passgate::login::recovery::create(app.store(), ORIGIN, "yan", 3600, None)
            .await
            .is_err()
    );
    let r = cli::recover(app.store(), ORIGIN, "yan", 24).await;
    assert!(format!("{:#}", r.unwrap_err()).contains("disabled"));
}

#[tokio::test]
async fn administrators_set_groups_that_the_account_page_and_grants_show() {
    let app = TestApp::new().await;
    let (_, admin_cookie) = support::new_user(&app, "root", Role::Admin).await;
    let (_, cookie) = support::new_user(&app, "yan", Role::Member).await;
    let yan = app.signed_in(&cookie).await.unwrap();
    grant_for(&app, &yan.user_id, "vscode", "f-groups").await;

    let member_csrf = csrf(&app, &cookie).await;
    let r = Browser::with_cookie(&cookie)
        .post_form(
            &app,
            "/admin/users/groups",
            &[
                ("csrf", &member_csrf),
                ("user_id", &yan.user_id),
                ("groups", "admins"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    let mut admin = Browser::with_cookie(&admin_cookie);
    let token = csrf(&app, &admin_cookie).await;
    let setter = admin.clone();
    let set = |groups: &'static str| {
        let (token, id) = (token.clone(), yan.user_id.clone());
        let mut admin = setter.clone();
        let app = &app;
        async move {
            admin
                .post_form(
                    app,
                    "/admin/users/groups",
                    &[("csrf", &token), ("user_id", &id), ("groups", groups)],
                )
                .await
        }
    };
    let r = set("ops, eng").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location(), Some("/admin?notice=groups-saved"));
    let user = users::get(app.store(), &yan.user_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(user.groups, ["eng", "ops"]);
    let grant = grants::get(app.store(), "f-groups").await.unwrap().unwrap();
    assert_eq!(grant.groups, ["eng", "ops"], "live grants carry the groups");
    let page = admin.get(&app, "/admin").await;
    assert!(page.body.contains(r#"value="eng, ops""#), "{}", page.body);
    let account = Browser::with_cookie(&cookie).get(&app, "/account").await;
    assert!(account.body.contains("data-groups"));
    assert!(
        account
            .body
            .contains(r#"<span class="tag">eng</span> <span class="tag">ops</span>"#)
    );

    let bad = set("two words").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("cannot be a group"));
    let cleared = set("").await;
    assert_eq!(cleared.status, StatusCode::SEE_OTHER);
    let account = Browser::with_cookie(&cookie).get(&app, "/account").await;
    assert!(!account.body.contains("data-groups"));
    assert!(
        grants::get(app.store(), "f-groups")
            .await
            .unwrap()
            .unwrap()
            .groups
            .is_empty()
    );

    // From the command line too.
    let out = cli::groups(app.store(), "yan", "research,eng")
        .await
        .unwrap();
    assert_eq!(out, "Groups of yan: eng, research");
    let out = cli::groups(app.store(), "yan", "").await.unwrap();
    assert_eq!(out, "yan is in no groups.");
}

#[tokio::test]
async fn the_account_page_says_how_to_connect() {
    let app = TestApp::new().await;
    let (_, cookie) = support::new_user(&app, "sam", Role::Member).await;
    let page = Browser::with_cookie(&cookie).get(&app, "/account").await;
    let mcp_url = format!("{ORIGIN}/mcp");
    assert!(page.body.contains(&format!(
        r#"<input type="text" id="mcp-url" readonly value="{mcp_url}""#
    )));
    assert!(page.body.contains(r#"data-copy="mcp-url""#));
    for client in [
        "Claude (web and desktop)",
        "ChatGPT",
        "VS Code",
        "Claude Code",
        "Cursor",
    ] {
        assert!(
            page.body.contains(&format!("<summary>{client}</summary>")),
            "{client}"
        );
    }
    assert!(page.body.contains(&format!(
        "claude mcp add --transport http passgate {mcp_url}"
    )));
    assert!(page.body.contains("needs passgate on a public https URL"));
}

#[tokio::test]
async fn same_named_installations_are_grouped_and_told_apart() {
    let app = TestApp::new().await;
    let (_, cookie) = support::new_user(&app, "sam", Role::Member).await;
    let me = app.signed_in(&cookie).await.unwrap();
    let mut ids = Vec::new();
    for (port, agent) in [(3334, "node"), (5599, "mcp-remote/0.1.37")] {
        let redirect = format!("http://localhost:{port}/oauth/callback");
        let request = http::Request::post("/register")
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::USER_AGENT, agent)
            .body(axum::body::Body::from(
                json!({"client_name": "MCP CLI Proxy", "redirect_uris": [redirect]}).to_string(),
            ))
            .unwrap();
        let registered = app.send(request).await;
        assert_eq!(registered.status, StatusCode::CREATED);
        let id = registered.json()["client_id"].as_str().unwrap().to_owned();
        let grant = Grant {
            family: format!("f-{port}"),
            user_id: me.user_id.clone(),
            client_id: id.clone(),
            client_name: "MCP CLI Proxy".into(),
            scope: "mcp".into(),
            resource: format!("{ORIGIN}/mcp"),
            created_at: now_unix(),
            redirect_uri: redirect,
            groups: Vec::new(),
            user_name: String::new(),
            display_name: String::new(),
            account: None,
            last_used_at: None,
        };
        app.store()
            .transact(grants::create_writes(&grant).unwrap())
            .await
            .unwrap();
        ids.push(id);
    }
    let page = Browser::with_cookie(&cookie).get(&app, "/account").await;
    assert_eq!(page.body.matches("data-client-group").count(), 1);
    assert!(page.body.contains("2 installations"));
    for (id, (port, agent)) in ids
        .iter()
        .zip([(3334, "node"), (5599, "mcp-remote/0.1.37")])
    {
        assert!(page.body.contains(&format!("localhost:{port}")), "{port}");
        // In-process requests have no peer address: the agent tells them apart.
        assert!(
            page.body.contains(&format!("from {agent}</small>")),
            "{agent}"
        );
        assert!(page.body.contains(&format!(
            "aria-label=\"Disconnect MCP CLI Proxy ({})\"",
            &id[..8]
        )));
    }
}
