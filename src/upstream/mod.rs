//! Signing people in through an upstream OpenID provider (Cognito, Google,
//! Entra ID, Keycloak, any OIDC provider).
//!
//! passgate stays the authorization server for MCP clients; the provider
//! only replaces how a person signs in to passgate. The person reaches
//! `/login` (from `/consent`, after `/authorize` validated the client),
//! presses "Sign in with <provider>" (a POST from our own origin), and only
//! then is an upstream attempt created: random `state`, `nonce` and PKCE
//! verifier, stored server-side for [`crate::config::UpstreamConfig::state_ttl_secs`]
//! and bound to the browser by a cookie. `/upstream/callback` takes the
//! attempt (single use), redeems the code, validates the ID token
//! ([`provider`]), applies the allow-list, finds or creates the passgate
//! account linked to the upstream identity, starts a passgate session and
//! returns to `next` (back to `/consent`, where the person decides).
//!
//! MCP clients never see upstream tokens; passgate does not keep them.
//!
//! Keys:
//! - `upstream-state#<sha256(state)>` / `state`: an [`Attempt`], taken once;
//! - `upstream-link#<sha256(issuer, claim, subject)>` / `link`: the passgate
//!   user id for an upstream identity.

pub mod provider;

use axum::{
    extract::{Query, State},
    response::{IntoResponse, Redirect, Response},
};
use http::{HeaderMap, header};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{
    app::AppState,
    crypto::{pkce_s256, random_token, token_hash},
    error::Error,
    login::{cookies, forms::PageForm, signin, ui},
    store::{NewItem, StoreError, Write, now_unix},
    users::{self, Role, User},
};
pub use provider::{Provider, UpstreamError};

/// The fixed callback path registered at the provider.
pub const CALLBACK_PATH: &str = "/upstream/callback";
/// Binds an attempt to the browser that started it. `SameSite=Lax`: the
/// provider's redirect back is a cross-site top-level navigation.
pub const BINDING_COOKIE: &str = "passgate_upstream";

/// One started upstream sign-in.
#[derive(Debug, Serialize, Deserialize)]
struct Attempt {
    nonce: String,
    code_verifier: String,
    next: String,
    binding_hash: String,
}

fn state_key(state: &str) -> String {
    format!("upstream-state#{}", token_hash(state))
}

impl From<UpstreamError> for Error {
    fn from(e: UpstreamError) -> Self {
        match e {
            UpstreamError::Unavailable(m) => Error::UpstreamUnavailable(m),
            UpstreamError::BadAnswer(m) => Error::BadGateway(m),
            UpstreamError::Refused(m) | UpstreamError::Mismatch(m) => Error::BadRequest(m),
        }
    }
}

fn provider(state: &AppState) -> Result<&Provider, Error> {
    state
        .upstream
        .as_deref()
        .ok_or_else(|| Error::NotFound("No identity provider is configured here.".into()))
}

/// The HTML for the "Sign in with <provider>" button on `/login`.
pub fn sign_in_button(provider: &Provider, next: &str) -> String {
    format!(
        r#"<form method="post" action="/login/upstream">
<input type="hidden" name="next" value="{next}">
<div class="actions"><button type="submit">Sign in with {name}</button></div>
</form>"#,
        next = crate::pages::escape(next),
        name = crate::pages::escape(&provider.config.name),
    )
}

#[derive(Deserialize)]
pub struct StartForm {
    #[serde(default)]
    next: Option<String>,
}

/// `POST /login/upstream`: the person chose to sign in upstream.
pub async fn start(
    State(state): State<AppState>,
    headers: HeaderMap,
    PageForm(form): PageForm<StartForm>,
) -> Result<Response, Error> {
    let provider = provider(&state)?;
    // Login CSRF: only a page of our own origin may start an attempt.
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    if origin != Some(state.config.origin().as_str()) {
        return Err(Error::Csrf);
    }
    let metadata = provider.metadata().await?;
    let upstream_state = random_token(32);
    let nonce = random_token(32);
    let code_verifier = random_token(32);
    let binding = random_token(32);
    let ttl = provider.config.state_ttl_secs;
    let attempt = Attempt {
        nonce: nonce.clone(),
        code_verifier: code_verifier.clone(),
        next: ui::local_next(form.next.as_deref()),
        binding_hash: token_hash(&binding),
    };
    state
        .store
        .insert(NewItem::json(state_key(&upstream_state), "state", &attempt)?.expires_in(ttl))
        .await?;
    let url = provider.authorization_url(
        &metadata,
        &state.config.url(CALLBACK_PATH),
        &upstream_state,
        &nonce,
        &pkce_s256(&code_verifier),
    )?;
    let mut response = Redirect::to(&url).into_response();
    response.headers_mut().append(
        header::SET_COOKIE,
        cookies::set(&state.config, BINDING_COOKIE, &binding, ttl, "Lax"),
    );
    Ok(response)
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

fn unknown_attempt() -> Error {
    Error::bad_request(
        "This sign-in attempt is unknown, has expired, or was already used. Start signing in again.",
    )
}

/// `GET /upstream/callback`: the provider sends the browser back here.
pub async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Result<Response, Error> {
    let provider = provider(&state)?;
    let upstream_state = q
        .state
        .filter(|s| !s.is_empty() && s.len() <= 256)
        .ok_or_else(unknown_attempt)?;
    // Single use: taken before anything else, whatever happens next.
    let attempt: Attempt = state
        .store
        .take_json(&state_key(&upstream_state), "state")
        .await?
        .ok_or_else(unknown_attempt)?;
    let binding =
        cookies::get(&headers, &cookies::name(&state.config, BINDING_COOKIE)).unwrap_or_default();
    if !crate::crypto::constant_time_eq(&token_hash(&binding), &attempt.binding_hash) {
        return Err(Error::bad_request(
            "This sign-in attempt was started in another browser. Start signing in again here.",
        ));
    }
    if let Some(error) = q.error {
        if error == "access_denied" {
            return Err(Error::SignInCancelled {
                provider: provider.config.name.clone(),
                retry: attempt.next,
            });
        }
        let error: String = error
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .take(64)
            .collect();
        return Err(Error::BadGateway(format!(
            "{} could not sign you in ({error}).",
            provider.config.name
        )));
    }
    let code = q
        .code
        .filter(|c| !c.is_empty())
        .ok_or_else(|| Error::bad_request("The identity provider sent no authorization code."))?;
    let claims = provider
        .exchange(
            &code,
            &state.config.url(CALLBACK_PATH),
            &attempt.code_verifier,
            &attempt.nonce,
        )
        .await
        .inspect_err(|e| tracing::warn!(error = %e, "upstream sign-in failed"))?;
    let identity = Identity::from_claims(provider, &claims)?;
    identity.check_allowed(provider)?;
    let user = find_or_create_user(&state, provider, &identity).await?;
    if user.disabled {
        return Err(Error::Forbidden(
            "Your passgate account is disabled.".into(),
        ));
    }
    let cookie = signin::start_session(&state, &headers, &user.id).await?;
    tracing::info!(user = %user.name, "signed in through the upstream provider");
    let mut response = Redirect::to(&attempt.next).into_response();
    let h = response.headers_mut();
    h.append(header::SET_COOKIE, cookie);
    h.append(
        header::SET_COOKIE,
        cookies::clear(&state.config, BINDING_COOKIE),
    );
    Ok(response)
}

/// Who the ID token says the person is.
#[derive(Debug)]
struct Identity {
    subject: String,
    /// Only when the provider says it is verified.
    email: Option<String>,
    name: Option<String>,
    preferred_username: Option<String>,
    groups: Vec<String>,
}

fn truthy(v: Option<&Value>) -> bool {
    match v {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "true",
        _ => false,
    }
}

impl Identity {
    fn from_claims(provider: &Provider, claims: &Map<String, Value>) -> Result<Self, Error> {
        let email = claims
            .get("email")
            .and_then(Value::as_str)
            .filter(|_| truthy(claims.get("email_verified")))
            .map(|e| e.trim().to_ascii_lowercase());
        let claim = provider.config.subject_claim.as_str();
        let subject = if claim == "email" {
            email.clone()
        } else {
            claims.get(claim).and_then(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
        }
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            Error::BadGateway(format!(
                "The identity provider's ID token has no {claim} claim{}.",
                if claim == "email" {
                    " with a verified email"
                } else {
                    ""
                }
            ))
        })?;
        let groups = match claims.get(&provider.config.groups_claim) {
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            Some(Value::String(s)) => s
                .split([',', ' '])
                .filter(|g| !g.is_empty())
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        };
        let text = |k: &str| claims.get(k).and_then(Value::as_str).map(str::to_owned);
        Ok(Self {
            subject,
            email,
            name: text("name"),
            preferred_username: text("preferred_username").or_else(|| text("cognito:username")),
            groups,
        })
    }

    /// The allow-list: with none configured, everyone the provider signs
    /// in may use passgate; otherwise a verified email or domain, or a
    /// group, must match.
    fn check_allowed(&self, provider: &Provider) -> Result<(), Error> {
        let c = &provider.config;
        if c.allowed_emails.is_empty()
            && c.allowed_domains.is_empty()
            && c.allowed_groups.is_empty()
        {
            return Ok(());
        }
        let by_email = self.email.as_deref().is_some_and(|e| {
            c.allowed_emails.iter().any(|a| a == e)
                || e.rsplit_once('@')
                    .is_some_and(|(_, d)| c.allowed_domains.iter().any(|a| a == d))
        });
        let by_group = self.groups.iter().any(|g| c.allowed_groups.contains(g));
        if by_email || by_group {
            Ok(())
        } else {
            tracing::info!("upstream sign-in refused by the allow-list");
            Err(Error::Forbidden(format!(
                "You signed in at {} successfully, but your account is not allowed to use this passgate.",
                c.name
            )))
        }
    }

    /// A passgate user name from the email or username, in the allowed
    /// character set.
    fn base_name(&self) -> String {
        let raw = self
            .email
            .as_deref()
            .and_then(|e| e.split('@').next())
            .or(self.preferred_username.as_deref())
            .unwrap_or("user");
        let mut name: String = raw
            .to_ascii_lowercase()
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '-'
                }
            })
            .skip_while(|c| !c.is_ascii_alphanumeric())
            .take(40)
            .collect();
        if name.is_empty() {
            name = "user".into();
        }
        name
    }
}

#[derive(Serialize, Deserialize)]
struct Link {
    user_id: String,
}

fn link_key(provider: &Provider, subject: &str) -> String {
    let c = &provider.config;
    format!(
        "upstream-link#{}",
        token_hash(&format!("{}\n{}\n{}", c.issuer, c.subject_claim, subject))
    )
}

/// The passgate account linked to this upstream identity, created on the
/// first sign-in.
async fn find_or_create_user(
    state: &AppState,
    provider: &Provider,
    identity: &Identity,
) -> Result<User, Error> {
    let store = state.store.as_ref();
    let key = link_key(provider, &identity.subject);
    for attempt in 0..8 {
        let link = store.get_json::<Link>(&key, "link").await?;
        if let Some(link) = &link
            && let Some(user) = users::get(store, &link.user_id).await?
        {
            return Ok(user);
        }
        let base = identity.base_name();
        let name = match attempt {
            0 => base,
            1..=4 => format!("{base}-{}", attempt + 1),
            _ => format!(
                "{base}-{}",
                &random_token(4)
                    .to_ascii_lowercase()
                    .replace(['-', '_'], "x")
            ),
        };
        let user = User {
            id: users::new_user_id(),
            name,
            display_name: identity
                .name
                .clone()
                .or_else(|| identity.email.clone())
                .unwrap_or_else(|| identity.base_name())
                .chars()
                .filter(|c| !c.is_control())
                .take(users::MAX_NAME_CHARS)
                .collect(),
            role: if identity
                .email
                .as_deref()
                .is_some_and(|e| provider.config.admin_emails.iter().any(|a| a == e))
            {
                Role::Admin
            } else {
                Role::Member
            },
            disabled: false,
            created_at: now_unix(),
            groups: Vec::new(),
        };
        let mut writes = users::new_user_writes(&user)?;
        let new_link = NewItem::json(
            key.clone(),
            "link",
            &Link {
                user_id: user.id.clone(),
            },
        )?;
        // A stale link (its account was deleted) is replaced; otherwise the
        // link is inserted, so two concurrent first sign-ins make one user.
        writes.push(if link.is_some() {
            Write::Put(new_link)
        } else {
            Write::Insert(new_link)
        });
        match store.transact(writes).await {
            Ok(()) => {
                tracing::info!(user = %user.name, "created an account for an upstream identity");
                return Ok(user);
            }
            // Name taken, or a concurrent first sign-in: look again.
            Err(StoreError::Conflict) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(Error::Internal(anyhow::anyhow!(
        "could not find a free user name for an upstream identity"
    )))
}
