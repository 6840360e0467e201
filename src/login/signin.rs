//! The sign-in page and its JSON endpoints, and sign-out.
//!
//! Sign-in is usernameless: the browser offers the person's passkeys for
//! this site (in the autofill list where conditional mediation is
//! supported, or in a dialog from the button) and the passkey's user handle
//! names the account.

use axum::{
    body::Bytes,
    extract::{Query, State},
    response::{IntoResponse, Redirect, Response},
};
use http::{HeaderMap, HeaderValue, header};
use serde::Deserialize;
use serde_json::json;

use crate::{
    accounts::session,
    app::AppState,
    error::{Error, ScriptError},
    login::{
        api, cookies, current,
        forms::{SignedInForm, SignedInPage},
        passkeys, ui,
    },
    net::ClientAddr,
    pages::{Page, escape},
    ratelimit::{self, LimitedAction},
};

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
}

/// `GET /login?next=...`
pub async fn page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<NextQuery>,
) -> Result<Response, Error> {
    let next = ui::local_next(query.next.as_deref());
    if current(&state, &headers).await?.is_some() {
        return Ok(Redirect::to(&next).into_response());
    }
    let upstream = match &state.oidc {
        Some(provider) => sign_in_button(provider, &next),
        None => String::new(),
    };
    if !state.config.passkeys {
        let body = format!(
            r#"<section class="card">
<h1>Sign in</h1>
<p class="lead">Sign in with your {name} account.</p>
{upstream}
</section>"#,
            name = escape(
                state
                    .oidc
                    .as_ref()
                    .map(|p| p.config.name.as_str())
                    .unwrap_or("")
            ),
        );
        return Ok(Page::new("Sign in", body).into_response());
    }
    let upstream = if upstream.is_empty() {
        upstream
    } else {
        format!(r#"<p class="muted center">or</p>{upstream}"#)
    };
    let body = format!(
        r#"<section class="card">
<h1>Sign in</h1>
<p class="lead">Use the passkey you created when you joined this passgate.</p>
<form data-passkey="sign-in" data-next="{next}">
<label for="username">User name</label>
<input type="text" id="username" name="username" autocomplete="username webauthn" autocapitalize="none" spellcheck="false" aria-describedby="username-help">
<p id="username-help" class="muted hint">Your browser may suggest your passkey here. You can also just press the button: no user name needed.</p>
<div class="actions"><button type="submit">Sign in with a passkey</button></div>
{status}
</form>
{upstream}
{noscript}
</section>
<p class="muted center">No account yet? Accounts are by invitation only: ask an administrator of this passgate for an invitation link.</p>"#,
        next = escape(&next),
        status = ui::STATUS,
        noscript = ui::NOSCRIPT,
    );
    Ok(Page::new("Sign in", body).with_script().into_response())
}

#[derive(Deserialize, Default)]
pub struct SignInStart {
    #[serde(default)]
    next: Option<String>,
}

/// `POST /login/passkey/options`: starts a sign-in ceremony.
pub async fn options(
    State(state): State<AppState>,
    addr: ClientAddr,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ScriptError> {
    api::check_request(&state.config, &headers)?;
    if !state.config.passkeys {
        return Err(Error::NotFound("Passkey sign-in is turned off here.".into()).into());
    }
    let start: SignInStart = serde_json::from_slice(&body).unwrap_or_default();
    ratelimit::check(state.store.as_ref(), LimitedAction::SignIn, &addr).await?;
    let (binding, set_binding) = api::binding(&state.config, &headers);
    let next = ui::local_next(start.next.as_deref());
    let options = passkeys::start_sign_in(&state, &binding, next).await?;
    Ok(api::json_with_cookies(
        json!({ "publicKey": options }),
        set_binding.into_iter().collect(),
    ))
}

/// `POST /login/passkey/finish`: verifies the passkey's answer (the body is
/// the credential's JSON) and starts a session.
pub async fn finish(
    State(state): State<AppState>,
    addr: ClientAddr,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ScriptError> {
    api::check_request(&state.config, &headers)?;
    let binding = api::require_binding(&state.config, &headers)?;
    let signed_in = passkeys::finish_sign_in(&state, &addr, &binding, &body).await?;
    let cookie = start_session(
        &state,
        &headers,
        &signed_in.user.id,
        Some(&signed_in.credential),
    )
    .await?;
    tracing::info!(user = %signed_in.user.name, "signed in with a passkey");
    Ok(api::json_with_cookies(
        json!({ "redirect": signed_in.next }),
        vec![cookie],
    ))
}

/// Starts a session for `user_id`, signed in with passkey `credential` (if
/// any), ending the one this browser had (a new token at every sign-in, so
/// a planted cookie is never promoted).
pub async fn start_session(
    state: &AppState,
    headers: &HeaderMap,
    user_id: &str,
    credential: Option<&str>,
) -> Result<HeaderValue, Error> {
    let name = cookies::name(&state.config, session::COOKIE);
    if let Some(old) = cookies::get(headers, &name) {
        session::end(state.store.as_ref(), &old).await?;
    }
    let store = state.store.as_ref();
    let token = session::create(store, user_id, credential).await?;
    // Checked after writing: a deletion of the passkey that ran meanwhile
    // either ended this session or is seen here.
    if let Some(credential) = credential
        && !crate::accounts::users::credential_exists(store, credential).await?
    {
        session::end(store, &token).await?;
        return Err(Error::Forbidden(
            "This passkey was deleted while you were signing in. Use another passkey.".into(),
        ));
    }
    Ok(cookies::set(
        &state.config,
        session::COOKIE,
        &token,
        session::ABSOLUTE_SECS,
        "Lax",
    ))
}

#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

impl SignedInPage for CsrfForm {
    const PAGE: &'static str = "/account";
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// `POST /logout`: ends the session.
pub async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    SignedInForm { .. }: SignedInForm<CsrfForm>,
) -> Result<Response, Error> {
    if let Some(token) = cookies::get(&headers, &cookies::name(&state.config, session::COOKIE)) {
        session::end(state.store.as_ref(), &token).await?;
    }
    let upstream_logout = state
        .oidc
        .as_ref()
        .and_then(|p| Some((p.config.name.clone(), p.logout_url(&state.config.url("/"))?)))
        .map(|(name, url)| {
            format!(
                r#"<p>You may still be signed in at {name}. <a href="{url}">Sign out there too</a>.</p>"#,
                name = escape(&name),
                url = escape(&url),
            )
        })
        .unwrap_or_default();
    let mut response = Page::new(
        "Signed out",
        format!(
            r#"<section class="card">
<h1>You are signed out</h1>
<p class="lead">Applications you connected keep their access until you disconnect them from your account page.</p>
{upstream_logout}
<div class="actions"><a class="button" href="/login">Sign in again</a></div>
</section>"#
        ),
    )
    .into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        cookies::clear(&state.config, session::COOKIE),
    );
    Ok(response)
}

/// The HTML for the "Sign in with `<provider>`" button on `/login`.
fn sign_in_button(provider: &crate::oidc::provider::Provider, next: &str) -> String {
    format!(
        r#"<form method="post" action="/login/upstream">
<input type="hidden" name="next" value="{next}">
<div class="actions"><button type="submit">Sign in with {name}</button></div>
</form>"#,
        next = crate::pages::escape(next),
        name = crate::pages::escape(&provider.config.name),
    )
}
