//! Signing people in through an upstream OpenID provider (Cognito, Google,
//! Entra ID, Keycloak, any OIDC provider).
//!
//! passgate stays the authorization server for MCP clients; the provider
//! only replaces how a person signs in to passgate. The person reaches
//! `/login` (from `/consent`, after `/authorize` validated the client),
//! presses "Sign in with `<provider>`" (a POST from our own origin), and only
//! then is an upstream attempt created: random `state`, `nonce` and PKCE
//! verifier, stored server-side for [`crate::config::OidcConfig::state_ttl_secs`]
//! and bound to the browser by a cookie. The cookie holds one random value
//! per browser, kept by every attempt that browser starts, so sign-ins
//! started in two tabs both complete. `/upstream/callback` takes the
//! attempt (single use), checks the RFC 9207 `iss`, redeems the code,
//! validates the ID token (`provider`), applies the allow-list, finds or
//! creates the passgate account linked to the upstream identity (and makes
//! it an administrator if its verified email is listed), starts a passgate
//! session and returns to `next` (back to `/consent`, where the person
//! decides).
//!
//! MCP clients never see upstream tokens; passgate does not keep them.
//!
//! Keys:
//! - `upstream-state#<sha256(state)>` / `state`: an `Attempt`, taken once;
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
    accounts::users::{self, Role, User},
    app::AppState,
    crypto::{pkce_s256, random_token, token_hash},
    error::Error,
    login::{cookies, forms::PageForm, signin, ui},
    store::{NewItem, StoreError, Write, now_unix},
};
pub use provider::{OidcError, Provider};

/// The fixed callback path registered at the provider.
pub const CALLBACK_PATH: &str = "/upstream/callback";
/// Binds attempts to the browser that started them. `SameSite=Lax`: the
/// provider's redirect back is a cross-site top-level navigation.
pub const BINDING_COOKIE: &str = "passgate_upstream";

/// The browser's binding value if it is one we made (a 32-byte token).
fn our_binding(value: Option<String>) -> Option<String> {
    value.filter(|v| {
        v.len() == 43
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    })
}

/// One started upstream sign-in.
#[derive(Debug, Serialize, Deserialize)]
struct Attempt {
    nonce: String,
    code_verifier: String,
    next: String,
    binding_hash: String,
}

fn state_key(state: &str) -> String {
    crate::store::keys::Partition::OidcAttempt(state).key()
}

impl From<OidcError> for Error {
    fn from(e: OidcError) -> Self {
        match e {
            OidcError::Unavailable(message) => Error::ProviderUnavailable {
                message,
                retry: None,
            },
            OidcError::BadAnswer(m) => Error::BadGateway(m),
            OidcError::Refused(m) | OidcError::Mismatch(m) => Error::BadRequest(m),
        }
    }
}

/// As the `From` conversion, with a way back to `/login?next=<next>` on the
/// page of a provider outage.
fn with_retry(e: OidcError, next: &str) -> Error {
    match e {
        OidcError::Unavailable(message) => Error::ProviderUnavailable {
            message,
            retry: Some(next.to_owned()),
        },
        other => other.into(),
    }
}

fn provider(state: &AppState) -> Result<&Provider, Error> {
    state
        .oidc
        .as_deref()
        .ok_or_else(|| Error::NotFound("No identity provider is configured here.".into()))
}

#[derive(Deserialize)]
pub struct StartForm {
    #[serde(default)]
    next: Option<String>,
}

/// `POST /login/upstream`: the person chose to sign in upstream.
pub async fn start(
    State(state): State<AppState>,
    addr: crate::net::ClientAddr,
    headers: HeaderMap,
    PageForm(form): PageForm<StartForm>,
) -> Result<Response, Error> {
    let provider = provider(&state)?;
    // Login CSRF: only a page of our own origin may start an attempt.
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    if origin != Some(state.config.origin().as_str()) {
        return Err(Error::Csrf);
    }
    // Each attempt is stored until it expires: bounded per address.
    crate::ratelimit::check(
        state.store.as_ref(),
        crate::ratelimit::LimitedAction::OidcSignIn,
        &addr,
    )
    .await?;
    let next = ui::local_next(form.next.as_deref());
    let metadata = provider
        .metadata()
        .await
        .map_err(|e| with_retry(e, &next))?;
    let upstream_state = random_token(32);
    let nonce = random_token(32);
    let code_verifier = random_token(32);
    // Kept if the browser has one: another tab's attempt must stay bound.
    let binding = our_binding(cookies::get(
        &headers,
        &cookies::name(&state.config, BINDING_COOKIE),
    ))
    .unwrap_or_else(|| random_token(32));
    let ttl = provider.config.state_ttl_secs;
    let attempt = Attempt {
        nonce: nonce.clone(),
        code_verifier: code_verifier.clone(),
        next,
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
    /// RFC 9207: who sent this answer.
    iss: Option<String>,
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
    match cookies::get(&headers, &cookies::name(&state.config, BINDING_COOKIE)) {
        None => {
            return Err(Error::bad_request(
                "This browser has no record of starting this sign-in: it was started in another browser or private window, or this browser does not keep passgate's cookies. Start signing in again here.",
            ));
        }
        Some(binding)
            if !crate::crypto::constant_time_eq(&token_hash(&binding), &attempt.binding_hash) =>
        {
            return Err(Error::bad_request(
                "This sign-in attempt was started in another browser or private window. Start signing in again here.",
            ));
        }
        Some(_) => {}
    }
    // RFC 9207 §2.4, before anything else in the answer is believed
    // (error answers carry `iss` too).
    let metadata = provider
        .metadata()
        .await
        .map_err(|e| with_retry(e, &attempt.next))?;
    provider
        .check_response_issuer(&metadata, q.iss.as_deref())
        .inspect_err(|e| tracing::warn!(error = %e, "upstream sign-in answer refused"))?;
    if let Some(error) = q.error {
        if error == crate::oauth::OAuthErrorCode::AccessDenied.as_str() {
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
        .inspect_err(|e| tracing::warn!(error = %e, "upstream sign-in failed"))
        .map_err(|e| with_retry(e, &attempt.next))?;
    let identity = Identity::from_claims(provider, &claims)?;
    if let Err(reasons) = identity.check_allowed(provider) {
        // The account linked at an earlier sign-in, if any (best effort:
        // only for the log).
        let account = match state
            .store
            .get_json::<Link>(&link_key(provider, &identity.subject), "link")
            .await
        {
            Ok(Some(link)) => users::get(state.store.as_ref(), &link.user_id)
                .await
                .ok()
                .flatten()
                .map(|u| u.name),
            _ => None,
        };
        tracing::info!(
            subject = %identity.subject,
            account = %account.as_deref().unwrap_or("(none yet)"),
            email = %identity.any_email().unwrap_or("(none)"),
            email_verified = identity.email.is_some(),
            groups = ?identity.groups,
            reason = %reasons.join("; "),
            "upstream sign-in refused by the allow-list"
        );
        return Err(Error::Forbidden(format!(
            "You signed in at {} successfully, but this passgate does not admit you: {}.",
            provider.config.name,
            reasons.join(", and ")
        )));
    }
    let mut user = find_or_create_user(&state, provider, &identity).await?;
    if user.disabled {
        tracing::info!(user = %user.name, "upstream sign-in refused: the account is disabled");
        return Err(Error::Forbidden(
            "Your passgate account is disabled.".into(),
        ));
    }
    if !user.is_admin() && identity.is_listed_admin(provider) {
        user = users::set_role(state.store.as_ref(), &user.id, Role::Admin).await?;
        tracing::info!(user = %user.name, "made an administrator: listed in --oidc-admin-emails or --oidc-admin-groups");
    }
    // The provider is the authority on its people's groups: copied at each
    // sign-in (names passgate cannot hold are left out), so tools see them.
    let groups: Vec<String> = identity
        .groups
        .iter()
        .filter_map(|g| users::parse_groups(g).ok())
        .flatten()
        .collect();
    let groups = users::parse_groups(&groups.join(",")).unwrap_or_default();
    if user.groups != groups {
        user = users::set_groups(state.store.as_ref(), &user.id, groups).await?;
    }
    if user.email != identity.email {
        user = users::set_email(state.store.as_ref(), &user.id, identity.email.clone()).await?;
    }
    let cookie = signin::start_session(&state, &headers, &user.id, None).await?;
    tracing::info!(user = %user.name, "signed in through the upstream provider");
    // The binding cookie stays: attempts from other tabs may be pending; it
    // expires with the last of them.
    let mut response = Redirect::to(&attempt.next).into_response();
    response.headers_mut().append(header::SET_COOKIE, cookie);
    Ok(response)
}

/// Who the ID token says the person is.
#[derive(Debug)]
struct Identity {
    subject: String,
    /// Only when the provider says it is verified.
    email: Option<String>,
    /// An email the provider did not mark verified (Entra never does):
    /// used for names and logs, never for access or roles.
    unverified_email: Option<String>,
    name: Option<String>,
    preferred_username: Option<String>,
    /// Entra's user principal name.
    upn: Option<String>,
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
        let any_email = claims
            .get("email")
            .and_then(Value::as_str)
            .map(|e| e.trim().to_ascii_lowercase())
            .filter(|e| !e.is_empty());
        let verified = truthy(claims.get("email_verified"));
        let (email, unverified_email) = if verified {
            (any_email, None)
        } else {
            (None, any_email)
        };
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
            unverified_email,
            name: text("name"),
            preferred_username: text("preferred_username").or_else(|| text("cognito:username")),
            upn: text("upn"),
            groups,
        })
    }

    fn any_email(&self) -> Option<&str> {
        self.email.as_deref().or(self.unverified_email.as_deref())
    }

    /// A verified email in `--oidc-admin-emails`, or a group in
    /// `--oidc-admin-groups`.
    fn is_listed_admin(&self, provider: &Provider) -> bool {
        let c = &provider.config;
        self.email
            .as_deref()
            .is_some_and(|e| c.admin_emails.iter().any(|a| a == e))
            || self.groups.iter().any(|g| c.admin_groups.contains(g))
    }

    /// The allow-list. Each configured kind of list must admit the person:
    /// the address rule (a verified email listed in `allowed_emails` or in
    /// a domain of `allowed_domains`) and the group rule (a group of
    /// `allowed_groups`). With neither configured, everyone the provider
    /// signs in is admitted. Refusals list every rule that did not hold,
    /// in words fit for the person and the log.
    fn check_allowed(&self, provider: &Provider) -> Result<(), Vec<String>> {
        let c = &provider.config;
        let mut reasons = Vec::new();
        if !c.allowed_emails.is_empty() || !c.allowed_domains.is_empty() {
            match (&self.email, &self.unverified_email) {
                (Some(e), _) => {
                    let listed = c.allowed_emails.iter().any(|a| a == e)
                        || e.rsplit_once('@')
                            .is_some_and(|(_, d)| c.allowed_domains.iter().any(|a| a == d));
                    if !listed {
                        reasons.push(format!(
                            "your email address {e} is not among the addresses allowed here"
                        ));
                    }
                }
                (None, Some(e)) => reasons.push(format!(
                    "{} did not mark your email address {e} as verified, and only verified addresses are allowed here",
                    c.name
                )),
                (None, None) => reasons.push(format!(
                    "{} sent no email address, and only some addresses are allowed here",
                    c.name
                )),
            }
        }
        if !c.allowed_groups.is_empty() && !self.groups.iter().any(|g| c.allowed_groups.contains(g))
        {
            reasons.push(format!(
                "{} lists you in none of the groups allowed here",
                c.name
            ));
        }
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons)
        }
    }

    /// A passgate user name from the first claim that gives one, in the
    /// allowed character set: Cognito and Google send a verified email,
    /// Entra `preferred_username` or `upn` (addresses), others a name.
    fn base_name(&self) -> String {
        let local_part = |s: &str| s.split('@').next().unwrap_or(s).to_owned();
        [
            self.email.as_deref().map(local_part),
            self.preferred_username.as_deref().map(local_part),
            self.upn.as_deref().map(local_part),
            self.unverified_email.as_deref().map(local_part),
            self.name.clone(),
        ]
        .into_iter()
        .flatten()
        .map(|raw| slug(&raw))
        .find(|name| !name.is_empty())
        .unwrap_or_else(|| "user".into())
    }
}

/// `raw` as a user name: lowercase ASCII letters, digits, `.`, `_` and
/// `-`, starting and ending with a letter or digit ("Ada Lovelace" ->
/// "ada-lovelace"); empty when nothing usable is left.
fn slug(raw: &str) -> String {
    let mut name = String::new();
    for c in raw.to_ascii_lowercase().chars() {
        let c = if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
            c
        } else {
            '-'
        };
        if (name.is_empty() && !c.is_ascii_alphanumeric()) || (c == '-' && name.ends_with('-')) {
            continue;
        }
        name.push(c);
        if name.len() == 40 {
            break;
        }
    }
    name.trim_end_matches(['-', '.', '_']).to_owned()
}

#[derive(Serialize, Deserialize)]
struct Link {
    user_id: String,
}

fn link_key(provider: &Provider, subject: &str) -> String {
    let c = &provider.config;
    crate::store::keys::Partition::OidcLink {
        issuer: &c.issuer,
        claim: &c.subject_claim,
        subject,
    }
    .key()
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
                .or_else(|| identity.any_email().map(str::to_owned))
                .unwrap_or_else(|| identity.base_name())
                .chars()
                .filter(|c| !c.is_control())
                .take(users::MAX_NAME_CHARS)
                .collect(),
            role: if identity.is_listed_admin(provider) {
                Role::Admin
            } else {
                Role::Member
            },
            disabled: false,
            created_at: now_unix(),
            groups: Vec::new(),
            email: identity.email.clone(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_first_claim_that_gives_one() {
        assert_eq!(slug("Ada  Lovelace"), "ada-lovelace");
        assert_eq!(slug("--Ada.Lovelace--"), "ada.lovelace");
        assert_eq!(slug("Ærin"), "rin");
        assert_eq!(slug("日本"), "");
        let identity = |preferred: Option<&str>, upn: Option<&str>, name: Option<&str>| Identity {
            subject: "s".into(),
            email: None,
            unverified_email: None,
            name: name.map(str::to_owned),
            preferred_username: preferred.map(str::to_owned),
            upn: upn.map(str::to_owned),
            groups: Vec::new(),
        };
        assert_eq!(
            identity(Some("ada@contoso.com"), Some("x@y"), None).base_name(),
            "ada"
        );
        // Nothing usable in preferred_username: the next claim gives the name.
        assert_eq!(
            identity(Some("日本"), Some("ada.l@contoso.com"), None).base_name(),
            "ada.l"
        );
        assert_eq!(
            identity(None, None, Some("Ada Lovelace")).base_name(),
            "ada-lovelace"
        );
        assert_eq!(identity(None, None, None).base_name(), "user");
    }
}
