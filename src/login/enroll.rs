//! Enrollment: turning an invitation into an account with its first
//! passkey. The invitation is only looked at when the ceremony starts; it is
//! used up in the same transaction that creates the account, so it yields
//! exactly one account, and nothing is created unless the passkey verified.

use axum::{
    body::Bytes,
    extract::{Query, State},
    response::{IntoResponse, Response},
};
use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use serde_json::json;

use crate::{
    accounts::{
        invitations,
        users::{self, MAX_NAME_CHARS},
    },
    app::AppState,
    error::{Error, ScriptError},
    login::{
        api,
        passkeys::{self, NewPasskeyFor, Purpose},
        signin, ui,
    },
    net::ClientAddr,
    pages::{Page, escape},
    ratelimit::{self, LimitedAction},
    store::StoreError,
};

#[derive(Deserialize)]
pub struct TokenQuery {
    #[serde(default)]
    token: String,
}

/// `GET /enroll?token=...`
pub async fn page(
    State(state): State<AppState>,
    Query(query): Query<TokenQuery>,
) -> Result<Response, Error> {
    if !state.config.passkeys {
        return Ok(passkeys_off(&state));
    }
    let invitation = match invitations::peek(state.store.as_ref(), &query.token).await {
        Ok((invitation, _)) => invitation,
        Err(Error::Gone(_)) => return Ok(link_not_valid()),
        Err(e) => return Err(e),
    };
    let role = match invitation.role {
        users::Role::Admin => " as an <strong>administrator</strong>",
        users::Role::Member => "",
    };
    let body = format!(
        r#"<section class="card">
<h1>Create your passkey</h1>
<p class="lead">You are invited to <strong>{origin}</strong>{role} with the user name <strong>{name}</strong>.</p>
<p>A passkey replaces a password: your device or password manager keeps it, and unlocks it with your fingerprint, face, or PIN.</p>
<form data-passkey="enroll" data-token="{token}">
<label for="display-name">Your name</label>
<input type="text" id="display-name" name="display_name" value="{name}" maxlength="{max}" autocomplete="name" required aria-describedby="display-name-help">
<p id="display-name-help" class="muted hint">Shown on your account page and by your passkey manager.</p>
<div class="actions"><button type="submit">Create a passkey</button></div>
{status}
</form>
{noscript}
<p class="muted">This invitation works once and expires {expires}.</p>
</section>"#,
        origin = escape(&state.config.origin()),
        name = escape(&invitation.name),
        token = escape(&query.token),
        max = MAX_NAME_CHARS,
        status = ui::STATUS,
        noscript = ui::NOSCRIPT,
        expires = escape(&ui::date_time(invitation.expires_at)),
    );
    Ok(Page::new("Create your passkey", body)
        .with_script()
        .into_response())
}

/// The page for a used, expired or mangled invitation link: what happened
/// and what to do next, for both the person who still needs an account and
/// the one who already made it.
fn link_not_valid() -> Response {
    Page::new(
        "Invitation link not valid",
        r#"<section class="card">
<h1>This invitation link cannot be used</h1>
<p class="lead">This invitation link is not valid: it was already used, it expired, or it was copied incompletely.</p>
<ul class="steps">
<li><strong>Still need an account?</strong> Ask the person who invited you for a new link, and use it before it expires.</li>
<li><strong>Already created your account with this link?</strong> Sign in with the passkey you made then.</li>
</ul>
<div class="actions"><a class="button" href="/login">Sign in</a></div>
</section>"#,
    )
    .status(StatusCode::GONE)
    .into_response()
}

/// An invitation enrolls a passkey; with passkeys off people sign in
/// through the identity provider instead, and their account is made then.
fn passkeys_off(state: &AppState) -> Response {
    let provider = state
        .config
        .oidc
        .as_ref()
        .map_or("the identity provider", |u| u.name.as_str());
    Page::new(
        "Invitation links are not used here",
        format!(
            r#"<section class="card">
<h1>Invitation links are not used here</h1>
<p class="lead">This passgate does not use passkeys, so an invitation link cannot create an account. Sign in with {provider} instead: your account is created at your first sign-in.</p>
<div class="actions"><a class="button" href="/login">Sign in</a></div>
</section>"#,
            provider = escape(provider),
        ),
    )
    .status(StatusCode::GONE)
    .into_response()
}

fn explain_link(e: Error) -> Error {
    match e {
        Error::Gone(_) => Error::Gone(
            "This invitation link is not valid: it was already used, it expired, or it was copied incompletely. Ask the person who invited you for a new link."
                .into(),
        ),
        other => other,
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnrollStart {
    #[serde(default)]
    token: String,
    #[serde(default)]
    display_name: String,
}

/// `POST /enroll/passkey/options`: starts creating the first passkey of the
/// invited account.
pub async fn options(
    State(state): State<AppState>,
    addr: ClientAddr,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ScriptError> {
    api::check_request(&state.config, &headers)?;
    if !state.config.passkeys {
        return Err(Error::NotFound("Passkeys are turned off here.".into()).into());
    }
    let start: EnrollStart = serde_json::from_slice(&body)
        .map_err(|_| Error::bad_request("The enrollment request could not be read."))?;
    let store = state.store.as_ref();
    ratelimit::check(store, LimitedAction::Enroll, &addr).await?;
    let invitation_id = invitations::invitation_id(&start.token);
    ratelimit::check_subject(store, LimitedAction::EnrollInvitation, &invitation_id).await?;
    let (invitation, version) = invitations::peek(store, &start.token)
        .await
        .map_err(explain_link)?;
    let display_name = if start.display_name.trim().is_empty() {
        invitation.name.clone()
    } else {
        users::normalize_label(&start.display_name, "name", MAX_NAME_CHARS)?
    };
    let user_id = users::new_user_id();
    let (binding, set_binding) = api::binding(&state.config, &headers);
    let options = passkeys::start_registration(
        &state,
        &binding,
        Purpose::Enroll {
            invitation: invitation_id,
            invitation_version: version,
            user_id: user_id.clone(),
            name: invitation.name.clone(),
            display_name: display_name.clone(),
            role: invitation.role,
        },
        NewPasskeyFor {
            user_id: &user_id,
            name: &invitation.name,
            display_name: &display_name,
        },
        &[],
    )
    .await?;
    Ok(api::json_with_cookies(
        json!({ "publicKey": options }),
        set_binding.into_iter().collect(),
    ))
}

/// `POST /enroll/passkey/finish`: verifies the new passkey, then creates the
/// account, stores the passkey and uses up the invitation, all at once.
pub async fn finish(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ScriptError> {
    api::check_request(&state.config, &headers)?;
    let binding = api::require_binding(&state.config, &headers)?;
    let (purpose, credential) = passkeys::finish_registration(&state, &binding, &body).await?;
    let Purpose::Enroll {
        invitation,
        invitation_version,
        user_id,
        name,
        display_name,
        role,
    } = purpose
    else {
        return Err(Error::bad_request("This passkey answers another kind of request.").into());
    };
    let user = users::new_user(user_id, name, display_name, role);
    let mut writes = users::create_writes(&user, &credential)?;
    writes.push(invitations::consume_write(&invitation, invitation_version));
    writes.push(invitations::first_admin_done_write());
    match state.store.transact(writes).await {
        Ok(()) => {}
        Err(StoreError::Conflict) => return Err(enroll_conflict(&state, &user.name).await.into()),
        Err(e) => return Err(e.into()),
    }
    tracing::info!(user = %user.name, role = user.role.as_str(), "account created from an invitation");
    let cookie = signin::start_session(&state, &headers, &user.id, Some(&credential.id)).await?;
    Ok(api::json_with_cookies(
        json!({ "redirect": "/account?notice=welcome" }),
        vec![cookie],
    ))
}

/// Says why creating the account conflicted: the name was taken meanwhile,
/// or (most likely) the invitation was used in another browser.
async fn enroll_conflict(state: &AppState, name: &str) -> Error {
    match users::find_by_name(state.store.as_ref(), name).await {
        Ok(Some(_)) => Error::Gone(format!(
            "An account named \"{name}\" exists already, so this invitation cannot be used. If it is yours, sign in; otherwise ask for a new invitation. Remove the passkey just created from your device."
        )),
        _ => Error::Gone(
            "This invitation was used already (perhaps in another browser). Ask for a new one if you still need an account, and remove the passkey just created from your device."
                .into(),
        ),
    }
}
