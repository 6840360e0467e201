//! Recovery links: an administrator lets an existing account add a passkey
//! again (after losing its only one) without deleting the account and its
//! connected applications. A link is a random token, single-use and
//! expiring; the store keeps only its hash, as for invitations.
//!
//! Using a link adds the new passkey, signs the person in on that browser
//! and ends every other browser session of the account. It keeps the other
//! passkeys (the person deletes the lost one on the account page), the
//! connected applications, the role and the groups.
//!
//! Keys: `recover#<token hash>` / `recover`: the [`Recovery`], expiring
//! with it.

use axum::{
    body::Bytes,
    extract::{Query, State},
    response::{IntoResponse, Response},
};
use http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{
    accounts::{session, users},
    app::AppState,
    crypto::{random_token, token_hash},
    error::{Error, ScriptError},
    login::{
        api,
        passkeys::{self, NewPasskeyFor, Purpose},
        signin, ui,
    },
    net::ClientAddr,
    pages::{Page, escape},
    ratelimit::{self, LimitedAction},
    store::{NewItem, Store, StoreError, Write, now_unix},
};

/// What a recovery link stands for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Recovery {
    pub user_id: String,
    /// The account's name when the link was made (shown on the page).
    pub name: String,
    /// The administrator who made it, or `None` from the command line.
    pub created_by: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
}

/// A new recovery link, shown exactly once.
#[derive(Debug, Clone)]
pub struct Created {
    pub recovery: Recovery,
    pub link: String,
}

/// What the page and the command say about using a link.
pub const WHAT_IT_DOES: &str = "Using it adds a new passkey and signs in on that browser. It signs out every other browser, and keeps the account's other passkeys, its connected applications and its groups.";

fn recovery_pk(token_hash: &str) -> String {
    crate::store::keys::Partition::Recovery(token_hash).key()
}

/// A recovery link for the account `name`, valid `ttl_secs`.
pub async fn create(
    store: &dyn Store,
    base: &str,
    name: &str,
    ttl_secs: i64,
    created_by: Option<&str>,
) -> Result<Created, Error> {
    if ttl_secs <= 0 {
        return Err(Error::bad_request(
            "A recovery link must be valid for at least an hour.",
        ));
    }
    let user = users::find_by_name(store, name)
        .await?
        .ok_or_else(|| Error::NotFound(format!("There is no account named \"{name}\".")))?;
    create_for(store, base, &user, ttl_secs, created_by).await
}

/// A recovery link for `user`.
pub async fn create_for(
    store: &dyn Store,
    base: &str,
    user: &users::User,
    ttl_secs: i64,
    created_by: Option<&str>,
) -> Result<Created, Error> {
    if user.disabled {
        return Err(Error::bad_request(format!(
            "The account \"{}\" is disabled: enable it before making a recovery link.",
            user.name
        )));
    }
    let now = now_unix();
    let recovery = Recovery {
        user_id: user.id.clone(),
        name: user.name.clone(),
        created_by: created_by.map(str::to_owned),
        created_at: now,
        expires_at: now + ttl_secs,
    };
    let token = random_token(32);
    store
        .insert(
            NewItem::json(recovery_pk(&token_hash(&token)), "recover", &recovery)?
                .expires_at(recovery.expires_at),
        )
        .await?;
    Ok(Created {
        link: format!("{}/recover?token={token}", base.trim_end_matches('/')),
        recovery,
    })
}

fn not_valid() -> Error {
    Error::Gone(
        "This recovery link is not valid: it was already used, it expired, or it was copied incompletely. Ask an administrator for a new one."
            .into(),
    )
}

/// A live recovery link and its version, without using it up.
async fn peek(store: &dyn Store, token: &str) -> Result<(Recovery, u64), Error> {
    if token.is_empty() || token.len() > 128 {
        return Err(not_valid());
    }
    match store
        .get(&recovery_pk(&token_hash(token)), "recover")
        .await?
    {
        Some(item) => Ok((item.json()?, item.version)),
        None => Err(not_valid()),
    }
}

#[derive(Deserialize)]
pub struct TokenQuery {
    #[serde(default)]
    token: String,
}

/// `GET /recover?token=...`
pub async fn page(
    State(state): State<AppState>,
    Query(query): Query<TokenQuery>,
) -> Result<Response, Error> {
    let recovery = match peek(state.store.as_ref(), &query.token).await {
        Ok((recovery, _)) => recovery,
        Err(Error::Gone(what)) => {
            return Ok(Page::new(
                "Recovery link not valid",
                format!(
                    r#"<section class="card">
<h1>This recovery link cannot be used</h1>
<p class="lead">{}</p>
<p>Already used it? Sign in with the passkey you created then.</p>
<div class="actions"><a class="button" href="/login">Sign in</a></div>
</section>"#,
                    escape(&what)
                ),
            )
            .status(StatusCode::GONE)
            .into_response());
        }
        Err(e) => return Err(e),
    };
    let body = format!(
        r#"<section class="card">
<h1>Add a new passkey</h1>
<p class="lead">This link lets the account <strong>{name}</strong> on <strong>{origin}</strong> add a passkey again.</p>
<ul class="steps" data-recovery-terms>
<li><strong>It ends</strong> every other browser session of the account: other browsers are signed out.</li>
<li><strong>It keeps</strong> the account's other passkeys, its connected applications and its groups. If a passkey was lost or stolen, delete it on your account page afterwards.</li>
</ul>
<form data-passkey="recover" data-token="{token}">
<label for="recover-label">Name for the new passkey <span class="muted">(optional)</span></label>
<input type="text" id="recover-label" name="label" maxlength="{max}" placeholder="For example: new phone">
<div class="actions"><button type="submit">Create a passkey</button></div>
{status}
</form>
{noscript}
<p class="muted">This link works once and expires {expires}.</p>
</section>"#,
        name = escape(&recovery.name),
        origin = escape(&state.config.origin()),
        token = escape(&query.token),
        max = users::MAX_LABEL_CHARS,
        status = ui::STATUS,
        noscript = ui::NOSCRIPT,
        expires = escape(&ui::date_time(recovery.expires_at)),
    );
    Ok(Page::new("Add a new passkey", body)
        .with_script()
        .into_response())
}

#[derive(Deserialize)]
pub struct RecoverStart {
    #[serde(default)]
    token: String,
    #[serde(default)]
    label: String,
}

/// `POST /recover/passkey/options`
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
    let start: RecoverStart = serde_json::from_slice(&body)
        .map_err(|_| Error::bad_request("The recovery request could not be read."))?;
    let store = state.store.as_ref();
    ratelimit::check(store, LimitedAction::Enroll, &addr).await?;
    let recovery_id = token_hash(&start.token);
    ratelimit::check_subject(store, LimitedAction::EnrollInvitation, &recovery_id).await?;
    let (recovery, version) = peek(store, &start.token).await?;
    let user = users::get(store, &recovery.user_id)
        .await?
        .filter(|u| !u.disabled)
        .ok_or_else(not_valid)?;
    let label = if start.label.trim().is_empty() {
        passkeys::default_label()
    } else {
        users::normalize_label(&start.label, "passkey name", users::MAX_LABEL_CHARS)?
    };
    let existing = users::credentials(store, &user.id).await?;
    let (binding, set_binding) = api::binding(&state.config, &headers);
    let options = passkeys::start_registration(
        &state,
        &binding,
        Purpose::Recover {
            recovery: recovery_id,
            recovery_version: version,
            user_id: user.id.clone(),
            label,
        },
        NewPasskeyFor {
            user_id: &user.id,
            name: &user.name,
            display_name: &user.display_name,
        },
        &existing,
    )
    .await?;
    Ok(api::json_with_cookies(
        json!({ "publicKey": options }),
        set_binding.into_iter().collect(),
    ))
}

/// `POST /recover/passkey/finish`: stores the passkey and uses up the link
/// in one transaction, then ends the account's other sessions.
pub async fn finish(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ScriptError> {
    api::check_request(&state.config, &headers)?;
    let binding = api::require_binding(&state.config, &headers)?;
    let (purpose, credential) = passkeys::finish_registration(&state, &binding, &body).await?;
    let Purpose::Recover {
        recovery,
        recovery_version,
        user_id,
        ..
    } = purpose
    else {
        return Err(Error::bad_request("This passkey answers another kind of request.").into());
    };
    let store = state.store.as_ref();
    let user = users::get(store, &user_id)
        .await?
        .filter(|u| !u.disabled)
        .ok_or_else(not_valid)?;
    let mut writes = users::add_credential_writes(&credential)?;
    writes.push(Write::DeleteVersion {
        pk: recovery_pk(&recovery),
        sk: "recover".into(),
        expected_version: recovery_version,
    });
    match store.transact(writes).await {
        Ok(()) => {}
        Err(StoreError::Conflict) => {
            return Err(Error::Gone(
                "This recovery link was used already (perhaps in another browser). Remove the passkey just created from your device, and ask an administrator for a new link if you still need one."
                    .into(),
            )
            .into());
        }
        Err(e) => return Err(e.into()),
    }
    let ended = session::end_all_for_user(store, &user.id).await?;
    tracing::info!(user = %user.name, sessions_ended = ended, "passkey added from a recovery link");
    let cookie = signin::start_session(&state, &headers, &user.id, Some(&credential.id)).await?;
    Ok(api::json_with_cookies(
        json!({ "redirect": "/account?notice=recovered" }),
        vec![cookie],
    ))
}
