//! Passkey accounts end to end, without a browser: the real router
//! in-process, a real SQLite store, and 1Password's software authenticator
//! in place of the browser and device.

mod support;

use http::StatusCode;
use passgate::users::{self, Role};
use serde_json::json;
use support::{Browser, ORIGIN, SoftAuthenticator, TestApp, enroll, sign_in, sign_in_with};

#[tokio::test]
async fn enroll_from_an_invitation() {
    let app = TestApp::new();
    let token = app.invite("alice", Role::Member).await;

    let mut browser = Browser::new();
    let page = browser.get(&app, &format!("/enroll?token={token}")).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("alice"));

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
    assert_eq!(users::credentials(app.store(), &all[0].id).await.unwrap().len(), 1);

    let cookie = browser.session_cookie().expect("signed in after enrolling");
    let me = app.signed_in(&cookie).await.expect("session is live");
    assert_eq!(me.name, "alice");
    let account = browser.get(&app, "/account").await;
    assert_eq!(account.status, StatusCode::OK);
    assert!(account.body.contains("Alice Liddell"));
}

#[tokio::test]
async fn sign_in_usernameless() {
    let app = TestApp::new();
    let (device, _) = support::new_user(&app, "bob", Role::Member).await;
    let cookie = sign_in(&app, &device).await;
    let me = app.signed_in(&cookie).await.expect("signed in");
    assert_eq!(me.name, "bob");
    assert!(!me.is_admin);

    let creds = users::credentials(app.store(), &me.user_id).await.unwrap();
    assert_eq!(creds[0].sign_count, 1);
    assert!(creds[0].last_used_at.is_some());
}
