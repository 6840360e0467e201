//! Shared test helpers: the app in-process ([`app`]), a software passkey
//! authenticator ([`authenticator`]), and the enroll and sign-in flows
//! below, so any test can get a signed-in person in two lines:
//!
//! ```ignore
//! let (device, cookie) = support::new_user(&app, "alice", Role::Member).await;
//! let me = app.signed_in(&cookie).await.unwrap();
//! ```
#![allow(dead_code)]

pub mod app;
pub mod authenticator;
pub mod backends;
pub mod lambda;
pub mod moto;
pub mod oauth;
pub mod postgres;
pub mod process;
pub mod remote;
#[cfg(feature = "aws")]
pub mod sigv4;

use passgate::accounts::users::Role;
use serde_json::{Value, json};

pub use app::{Browser, ORIGIN, TestApp, TestResponse};
pub use authenticator::SoftAuthenticator;

/// What went wrong in a flow: the device refused, or the server answered
/// with an error.
#[derive(Debug)]
pub enum FlowError {
    Device(String),
    Server(Box<TestResponse>),
}

impl FlowError {
    pub fn status(&self) -> Option<http::StatusCode> {
        match self {
            FlowError::Server(r) => Some(r.status),
            FlowError::Device(_) => None,
        }
    }
}

fn ok(response: TestResponse) -> Result<TestResponse, FlowError> {
    if response.status.is_success() {
        Ok(response)
    } else {
        Err(FlowError::Server(Box::new(response)))
    }
}

/// Enrolls from invitation `token` with `device`, in `browser` (which ends
/// up signed in). Returns the finish response (`{"redirect": ...}`).
pub async fn enroll(
    app: &TestApp,
    browser: &mut Browser,
    device: &SoftAuthenticator,
    token: &str,
    display_name: &str,
) -> Result<TestResponse, FlowError> {
    let options = ok(browser
        .post_json(
            app,
            "/enroll/passkey/options",
            &json!({ "token": token, "displayName": display_name }),
        )
        .await)?;
    let credential = device
        .create(ORIGIN, options.json())
        .await
        .map_err(FlowError::Device)?;
    ok(browser
        .post_json(app, "/enroll/passkey/finish", &credential)
        .await)
}

/// Signs in with `device` in `browser`, usernameless.
pub async fn sign_in_with(
    app: &TestApp,
    browser: &mut Browser,
    device: &SoftAuthenticator,
) -> Result<TestResponse, FlowError> {
    let options = ok(browser
        .post_json(app, "/login/passkey/options", &json!({}))
        .await)?;
    let assertion = device
        .get(ORIGIN, options.json())
        .await
        .map_err(FlowError::Device)?;
    ok(browser
        .post_json(app, "/login/passkey/finish", &assertion)
        .await)
}

/// Signs in with `device` in a fresh browser and returns the session cookie
/// (`name=value`, ready for a `Cookie` header).
pub async fn sign_in(app: &TestApp, device: &SoftAuthenticator) -> String {
    let mut browser = Browser::new();
    sign_in_with(app, &mut browser, device)
        .await
        .expect("sign-in succeeds");
    browser.session_cookie().expect("session cookie")
}

/// Invites and enrolls `name`; returns their device and session cookie.
pub async fn new_user(app: &TestApp, name: &str, role: Role) -> (SoftAuthenticator, String) {
    let token = app.invite(name, role).await;
    let device = SoftAuthenticator::new();
    let mut browser = Browser::new();
    enroll(app, &mut browser, &device, &token, name)
        .await
        .expect("enrollment succeeds");
    let cookie = browser.session_cookie().expect("session cookie");
    (device, cookie)
}

/// Rewrites a server's options so the device will not verify the user
/// (simulating a client that ignores `userVerification: "required"`).
pub fn without_user_verification(mut options: Value) -> Value {
    let pk = &mut options["publicKey"];
    if pk.get("authenticatorSelection").is_some() {
        pk["authenticatorSelection"]["userVerification"] = json!("discouraged");
    } else {
        pk["userVerification"] = json!("discouraged");
    }
    options
}
