//! The authorization endpoint and passgate's own consent page.
//!
//! `/authorize` validates the request and stores it as a pending
//! authorization (nothing is kept in memory, so the person's next request
//! may reach any instance), then sends the browser to `/consent`. There the
//! person signs in if needed and approves or denies; approval is stored per
//! person and client, and a remembered approval skips the page next time,
//! but only for https redirects (see [`may_skip_consent`]): native apps'
//! loopback and private-use-scheme redirects always show it.
//!
//! Errors about the client or redirect URI are shown as a page and never
//! redirected (the URI is not trusted yet); later errors go back to the
//! client's redirect URI with `error`, `state` and `iss` (RFC 9207).
//!
//! Approving creates the code together with its token family (expiring
//! with the code, see `grants`), then checks the access rule
//! (`access::ended`), so an account disabled or a client revoked at that
//! very moment never gets a code that works.
//!
//! Keys: `authz#<id>` / `pending` (taken once, on the decision);
//! `authz-pending` / `<id>`: the client of each pending authorization, so
//! the operator can count and end them (`passgate clients`);
//! `code#<sha256(code)>` / `code`.

use axum::{
    extract::{Query, RawQuery, State},
    response::{IntoResponse, Redirect, Response},
};
use http::HeaderMap;
use serde::{Deserialize, Serialize};

pub use super::codes::{CodeGrant, code_key};
use super::{
    CODE_TTL_SECS, OAuthError, OAuthErrorCode, PENDING_AUTHORIZATION_TTL_SECS, SCOPE_MCP, access,
    clients::{self, ClientSource},
    effective_scope,
    grants::{self, Grant},
    params::{Params, Repeated},
};
use crate::{
    app::AppState,
    crypto,
    error::Error,
    login::{self, forms::PageForm},
    net::ClientAddr,
    pages::{Page, escape},
    ratelimit::{self, LimitedAction},
    store::{NewItem, Store, StoreError, Write, now_unix},
};

/// The parameters of an authorization request, each at most once, except
/// `resource` (RFC 8707 allows several).
#[derive(Debug)]
pub struct AuthorizeParams {
    response_type: Option<String>,
    client_id: Option<String>,
    redirect_uri: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
    state: Option<String>,
    scope: Option<String>,
    resources: Vec<String>,
}

impl AuthorizeParams {
    /// Reads a query string. `client_id` and `redirect_uri` repeated are
    /// refused at once (the first error: nothing is validated yet, so it
    /// is shown as a page); the other repeats come back as the second
    /// value, to be answered at the validated redirect URI.
    pub fn parse(query: &[u8]) -> Result<(Self, Option<Repeated>), Repeated> {
        let p = Params::parse(query);
        let mut repeated = None;
        let mut later = |r: Result<Option<String>, Repeated>| {
            r.unwrap_or_else(|e| {
                repeated.get_or_insert(e);
                None
            })
        };
        let params = Self {
            client_id: p.single_owned("client_id")?,
            redirect_uri: p.single_owned("redirect_uri")?,
            response_type: later(p.single_owned("response_type")),
            code_challenge: later(p.single_owned("code_challenge")),
            code_challenge_method: later(p.single_owned("code_challenge_method")),
            state: later(p.single_owned("state")),
            scope: later(p.single_owned("scope")),
            resources: p.all("resource").map(str::to_owned).collect(),
        };
        Ok((params, repeated))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingAuthorization {
    pub client_id: String,
    pub client_name: String,
    pub client_source: ClientSource,
    pub redirect_uri: String,
    /// Whether the request named the redirect URI (then `/token` must too).
    #[serde(default)]
    pub redirect_uri_sent: bool,
    pub state: Option<String>,
    pub code_challenge: String,
    pub scope: String,
    pub resource: String,
    /// Unix seconds; 0 for requests stored before this field existed.
    #[serde(default)]
    pub created_at: i64,
}

fn pending_key(id: &str) -> String {
    crate::store::keys::Partition::PendingAuthorization(id).key()
}

/// The partition listing every pending authorization's client.
const PENDING_LISTING: &str = crate::store::keys::PENDING_LISTING;

#[derive(Debug, Serialize, Deserialize)]
struct PendingEntry {
    client_id: String,
}

/// Takes a pending authorization (and its listing entry): exactly one
/// caller gets it.
async fn take_pending(
    store: &dyn Store,
    id: &str,
) -> Result<Option<PendingAuthorization>, StoreError> {
    let pending = store.take_json(&pending_key(id), "pending").await?;
    // The request is taken: failing it now would lose it. A listing entry
    // left behind only overcounts until it expires with the request.
    if pending.is_some()
        && let Err(e) = store.delete(PENDING_LISTING, id).await
    {
        tracing::warn!(error = %e, "could not delete a pending authorization's listing entry");
    }
    Ok(pending)
}

/// How many authorizations await consent, per client id.
pub async fn pending_per_client(
    store: &dyn Store,
) -> Result<std::collections::BTreeMap<String, usize>, StoreError> {
    let mut counts = std::collections::BTreeMap::new();
    for item in store.list(PENDING_LISTING).await? {
        let entry: PendingEntry = item.json()?;
        *counts.entry(entry.client_id).or_default() += 1;
    }
    Ok(counts)
}

/// Ends every pending authorization of a client; returns how many.
pub async fn end_pending_for_client(
    store: &dyn Store,
    client_id: &str,
) -> Result<usize, StoreError> {
    let mut ended = 0;
    for item in store.list(PENDING_LISTING).await? {
        let entry: PendingEntry = item.json()?;
        if entry.client_id == client_id {
            store
                .transact(vec![
                    Write::Delete {
                        pk: pending_key(&item.sk),
                        sk: "pending".into(),
                    },
                    Write::Delete {
                        pk: PENDING_LISTING.into(),
                        sk: item.sk.clone(),
                    },
                ])
                .await?;
            ended += 1;
        }
    }
    Ok(ended)
}

/// Appends parameters to a validated redirect URI, keeping its own query.
fn redirect_with(redirect_uri: &str, params: &[(&str, &str)]) -> Response {
    match url::Url::parse(redirect_uri) {
        Ok(mut url) => {
            {
                let mut q = url.query_pairs_mut();
                for (k, v) in params {
                    q.append_pair(k, v);
                }
            }
            Redirect::to(url.as_str()).into_response()
        }
        // Validated at registration, so this means corrupt data.
        Err(_) => Error::bad_request("the client's redirect URI is invalid").into_response(),
    }
}

fn error_redirect(
    state: &AppState,
    redirect_uri: &str,
    client_state: Option<&str>,
    error: &OAuthError,
) -> Response {
    let issuer = state.config.issuer();
    let mut params = vec![
        ("error", error.code.as_str()),
        ("error_description", error.description.as_str()),
        ("iss", issuer.as_str()),
    ];
    if let Some(s) = client_state {
        params.push(("state", s));
    }
    redirect_with(redirect_uri, &params)
}

fn oauth_page_error(e: OAuthError) -> Response {
    if e.retry_after_secs.is_some() {
        return Error::RateLimited.into_response();
    }
    // The page keeps the status `error.rs` gives the code (our trouble
    // stays 5xx), with the page's own wording.
    let page = match crate::error::oauth_status(e.code) {
        http::StatusCode::SERVICE_UNAVAILABLE => {
            Error::Store(crate::store::StoreError::Unavailable(e.description))
        }
        http::StatusCode::INTERNAL_SERVER_ERROR => Error::Internal(anyhow::anyhow!(e.description)),
        _ => Error::BadRequest(e.description),
    };
    // The fault behind the OAuth error is the one to log, not the page's
    // generic description of it.
    let fault = e.fault.or_else(|| page.fault());
    crate::error::with_fault(page.into_response(), fault)
}

/// A client metadata document that could not be used: what went wrong, and
/// what to do, since the application keeps waiting for this sign-in.
fn metadata_document_refused(state: &AppState, e: OAuthError) -> Response {
    let local = if state.config.public_url_is_loopback() && !state.cimd.allows_loopback() {
        " passgate fetches these documents only over https from public addresses. To try a client's metadata document on this machine, restart passgate with --dev-allow-loopback-cimd (development only), or let the client register dynamically instead."
    } else {
        ""
    };
    Error::BadRequest(format!(
        "This application identifies itself with a client metadata document that passgate cannot use: {}.{local} Then cancel the sign-in in the application (it is still waiting for this one) and connect again.",
        e.description
    ))
    .into_response()
}

/// `GET /authorize`
pub async fn authorize(
    State(state): State<AppState>,
    addr: ClientAddr,
    RawQuery(query): RawQuery,
) -> Response {
    // Anyone can send this request, and it stores a pending authorization
    // (and may fetch and cache a metadata document): bounded per address,
    // before anything else. Over the limit the page says so, never a
    // redirect (nothing is validated yet).
    if let Err(e) = ratelimit::check(state.store.as_ref(), LimitedAction::Authorize, &addr).await {
        return e.into_response();
    }
    // 1. Client and redirect URI: failures here are shown, never redirected.
    let (p, repeated) = match AuthorizeParams::parse(query.unwrap_or_default().as_bytes()) {
        Ok(parsed) => parsed,
        Err(Repeated(name)) => {
            return Error::bad_request(format!(
                "The sign-in request names {name} more than once, so passgate cannot tell which application it is for."
            ))
            .into_response();
        }
    };
    let Some(client_id) = p.client_id.as_deref() else {
        return Error::bad_request("The sign-in request has no client_id.").into_response();
    };
    let client = match clients::find(&state, client_id, &addr.subject()).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            return Error::bad_request(
                "This application is not registered with passgate (unknown client_id). \
                 Remove the server from the application and add it again so that it registers anew.",
            )
            .into_response();
        }
        Err(e) if e.code == OAuthErrorCode::InvalidClient && client_id.contains("://") => {
            return metadata_document_refused(&state, e);
        }
        Err(e) => return oauth_page_error(e),
    };
    let redirect_uri = match p.redirect_uri.as_deref() {
        Some(uri) if clients::redirect_uri_allowed(&client, uri) => uri.to_owned(),
        Some(_) => {
            return Error::bad_request(
                "The redirect URI in this request is not one the application registered.",
            )
            .into_response();
        }
        None if client.redirect_uris.len() == 1 => client.redirect_uris[0].clone(),
        None => {
            return Error::bad_request("The sign-in request has no redirect_uri.").into_response();
        }
    };
    let client_state = p.state.as_deref();
    let fail = |e: OAuthError| error_redirect(&state, &redirect_uri, client_state, &e);

    // 2. The rest of the request: failures go back to the client.
    if let Some(repeated) = repeated {
        return fail(repeated.into());
    }
    if p.response_type.as_deref() != Some("code") {
        return fail(OAuthError::unsupported_response_type(
            "only response_type=code is supported",
        ));
    }
    let Some(challenge) = p.code_challenge else {
        return fail(OAuthError::invalid_request(
            "PKCE is required: send code_challenge with code_challenge_method=S256",
        ));
    };
    if p.code_challenge_method.as_deref() != Some("S256") {
        return fail(OAuthError::invalid_request(
            "code_challenge_method must be S256",
        ));
    }
    // A S256 challenge is 43 base64url characters.
    if challenge.len() != 43
        || !challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return fail(OAuthError::invalid_request(
            "code_challenge is not a valid S256 challenge",
        ));
    }
    // Several resources are fine as long as each names the same one of
    // ours: a token has one audience (RFC 8707 §2).
    let Some(resource) = state
        .resources
        .named_by(p.resources.iter().map(String::as_str))
    else {
        return fail(OAuthError::invalid_target(format!(
            "this server issues tokens for {} (one at a time)",
            state.resources.urls().join(", ")
        )));
    };
    let resource = resource.url().to_owned();
    if client_state.is_some_and(|s| s.len() > 2000) {
        return fail(OAuthError::invalid_request("state is too long"));
    }

    let pending = PendingAuthorization {
        client_id: client.client_id.clone(),
        client_name: client.client_name.clone(),
        client_source: client.source,
        redirect_uri: redirect_uri.clone(),
        redirect_uri_sent: p.redirect_uri.is_some(),
        state: p.state.clone(),
        code_challenge: challenge,
        scope: effective_scope(p.scope.as_deref(), &state.resources.scopes_supported()),
        resource,
        created_at: now_unix(),
    };
    let id = crypto::random_token(24);
    let writes = (|| {
        Ok::<_, StoreError>(vec![
            Write::Insert(
                NewItem::json(pending_key(&id), "pending", &pending)?
                    .expires_in(PENDING_AUTHORIZATION_TTL_SECS),
            ),
            Write::Put(
                NewItem::json(
                    PENDING_LISTING,
                    id.clone(),
                    &PendingEntry {
                        client_id: pending.client_id.clone(),
                    },
                )?
                .expires_in(PENDING_AUTHORIZATION_TTL_SECS),
            ),
        ])
    })();
    let result = match writes {
        Ok(writes) => state.store.transact(writes).await,
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        return fail(e.into());
    }
    Redirect::to(&format!("/consent?request={id}")).into_response()
}

#[derive(Debug, Deserialize)]
pub struct ConsentQuery {
    request: Option<String>,
}

fn expired_request() -> Error {
    Error::Gone("This sign-in request has expired or was already completed.".into())
}

/// Issues a code (with its token family) for an approved request and sends
/// the browser back.
async fn complete(
    state: &AppState,
    pending: &PendingAuthorization,
    user_id: &str,
) -> Result<Response, Error> {
    let store = state.store.as_ref();
    let code = crypto::random_token(32);
    // The profile at sign-in; `grants::sync_profile_for_user` keeps the
    // groups, role and email current, and redemption takes them afresh.
    let (user_name, display_name, groups, account) = crate::accounts::users::get(store, user_id)
        .await?
        .map(|u| {
            let account = u.grant_profile();
            (u.name, u.display_name, u.groups, Some(account))
        })
        .unwrap_or_default();
    let family = Grant {
        family: crypto::random_id(),
        user_id: user_id.to_owned(),
        client_id: pending.client_id.clone(),
        client_name: pending.client_name.clone(),
        scope: pending.scope.clone(),
        resource: pending.resource.clone(),
        created_at: now_unix(),
        redirect_uri: pending.redirect_uri.clone(),
        groups,
        user_name,
        display_name,
        account,
        last_used_at: None,
    };
    let grant = CodeGrant {
        client_id: pending.client_id.clone(),
        client_name: pending.client_name.clone(),
        redirect_uri: pending.redirect_uri.clone(),
        redirect_uri_sent: pending.redirect_uri_sent,
        code_challenge: pending.code_challenge.clone(),
        scope: pending.scope.clone(),
        resource: pending.resource.clone(),
        user_id: user_id.to_owned(),
        family: family.family.clone(),
        redeemed: None,
    };
    let code_item = NewItem::json(code_key(&code), "code", &grant)?.expires_in(CODE_TTL_SECS);
    // The family outlives the code a little, so a redemption at the last
    // moment still finds it.
    let mut writes = grants::pending_writes(&family, now_unix() + CODE_TTL_SECS + 60)?;
    writes.push(Write::Insert(code_item));
    store.transact(writes).await?;
    // Checked after writing (see `access`): an ending action that ran
    // meanwhile either found this family or is seen here.
    if let Some(ended) =
        access::ended(store, user_id, &pending.client_id, pending.created_at).await?
    {
        grants::revoke(store, user_id, &family.family).await?;
        return Err(Error::Forbidden(format!(
            "No access was granted: {}. Start again from the application if you still want to connect it.",
            ended.describe()
        )));
    }
    let issuer = state.config.issuer();
    let mut params = vec![("code", code.as_str()), ("iss", issuer.as_str())];
    if let Some(s) = pending.state.as_deref() {
        params.push(("state", s));
    }
    Ok(redirect_with(&pending.redirect_uri, &params))
}

fn scope_covered(approved: &str, requested: &str) -> bool {
    requested
        .split(' ')
        .all(|s| approved.split(' ').any(|a| a == s))
}

/// `GET /consent?request=...`
pub async fn consent_page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<ConsentQuery>,
) -> Result<Response, Error> {
    let id = q.request.ok_or_else(expired_request)?;
    let Some(signed_in) = login::current(&state, &headers).await? else {
        return Ok(login::sign_in_redirect(&format!("/consent?request={id}")));
    };
    let pending: PendingAuthorization = state
        .store
        .get_json(&pending_key(&id), "pending")
        .await?
        .ok_or_else(expired_request)?;
    // Approved before: no page. The pending request is still consumed once.
    if may_skip_consent(&pending.redirect_uri)
        && let Some(consent) =
            grants::consent(state.store.as_ref(), &signed_in.user_id, &pending.client_id).await?
        && scope_covered(&consent.scope, &pending.scope)
    {
        let pending = take_pending(state.store.as_ref(), &id)
            .await?
            .ok_or_else(expired_request)?;
        return complete(&state, &pending, &signed_in.user_id).await;
    }
    let setup = setup_note(&state, &pending.resource, &signed_in.user_id).await?;
    Ok(render_consent(&id, &pending, &signed_in, &setup).into_response())
}

/// What the server being approved needs of the person besides this
/// approval (their account at the backend connected, or their key for it),
/// said on the consent page so that their first call is not a surprise.
async fn setup_note(state: &AppState, resource: &str, user_id: &str) -> Result<String, Error> {
    let Some(resource) = state.resources.iter().find(|r| r.is_named_by(resource)) else {
        return Ok(String::new());
    };
    let store = state.store.as_ref();
    let path = resource.path();
    let needed = if resource.asks_backend_sign_in()
        && !crate::accounts::backend_tokens::list(store, user_id)
            .await?
            .iter()
            .any(|(p, _)| p == path)
    {
        Some(format!(
            "signs you in to the service behind it too: connect your account there on your <a href=\"{page}\" target=\"_blank\" rel=\"noopener\">account page</a>",
            page = escape(&crate::accounts::backend_tokens::account_anchor(path)),
        ))
    } else if let Some(ask) = resource.personal_key()
        && !crate::accounts::personal_keys::list(store, user_id)
            .await?
            .iter()
            .any(|k| k.route_path == path)
    {
        Some(format!(
            "needs your {label}: add it on your <a href=\"{page}\" target=\"_blank\" rel=\"noopener\">account page</a>",
            label = escape(&ask.label),
            page = escape(&crate::accounts::personal_keys::account_anchor(path)),
        ))
    } else {
        None
    };
    Ok(needed.map_or_else(String::new, |what| {
        format!(
            r#"<p class="notice" data-setup-needed>{} {what}, or its calls will ask you to first.</p>"#,
            escape(resource.name())
        )
    }))
}

/// May a remembered approval answer a request without showing the page?
/// Only when the redirect URI itself says who receives the code: an https
/// URL on a host that is not this device. A loopback or private-use-scheme
/// redirect can be served by any program on the person's device, which can
/// present a public client's id as its own (RFC 8252 §8.6), so such
/// requests always show the page: one click for the person, and a program
/// that borrows another's id is seen before it gets a code.
pub fn may_skip_consent(redirect_uri: &str) -> bool {
    let Ok(url) = url::Url::parse(redirect_uri) else {
        return false;
    };
    url.scheme() == "https"
        && match url.host() {
            Some(url::Host::Domain(d)) => {
                let d = d.trim_end_matches('.');
                d != "localhost" && !d.ends_with(".localhost")
            }
            Some(url::Host::Ipv4(ip)) => !ip.is_loopback() && !ip.is_unspecified(),
            Some(url::Host::Ipv6(ip)) => !ip.is_loopback() && !ip.is_unspecified(),
            None => false,
        }
}

fn redirect_origin(uri: &str) -> Option<String> {
    let url = url::Url::parse(uri).ok()?;
    match url.origin() {
        url::Origin::Tuple(..) => Some(url.origin().ascii_serialization()),
        // Private-use schemes (cursor://...) have opaque origins; CSP
        // source expressions accept a bare scheme.
        url::Origin::Opaque(_) => Some(format!("{}:", url.scheme())),
    }
}

fn render_consent(id: &str, p: &PendingAuthorization, who: &login::SignedIn, setup: &str) -> Page {
    let redirect_host = url::Url::parse(&p.redirect_uri)
        .ok()
        .map(|u| match u.host_str() {
            Some(h) => match u.port() {
                Some(port) => format!("{h}:{port}"),
                None => h.to_owned(),
            },
            None => format!("{}:", u.scheme()),
        })
        .unwrap_or_default();
    let source = match p.client_source {
        ClientSource::MetadataDocument => format!(
            "Identified by its metadata document at <code>{}</code>.",
            escape(&p.client_id)
        ),
        ClientSource::Registered => {
            "This application registered itself, so passgate cannot vouch for its name. Allow it only if you just asked an application to connect to this server.".to_owned()
        }
        ClientSource::Configured => "Configured by this server's operator.".to_owned(),
    };
    let scopes: String = p
        .scope
        .split(' ')
        .map(|s| match s {
            SCOPE_MCP => "<li>Use this server's MCP tools as you</li>".to_owned(),
            other => format!("<li><code>{}</code></li>", escape(other)),
        })
        .collect();
    let loopback = url::Url::parse(&p.redirect_uri)
        .ok()
        .and_then(|u| u.host().map(|h| h.to_owned()))
        .is_some_and(|h| match h {
            url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
            url::Host::Ipv4(ip) => ip.is_loopback(),
            url::Host::Ipv6(ip) => ip.is_loopback(),
        });
    let destination = if loopback {
        format!(
            "the application on this computer (<code>{}</code>)",
            escape(&redirect_host)
        )
    } else {
        format!("<code>{}</code>", escape(&redirect_host))
    };
    let body = format!(
        r#"<section class="card">
<h1>Allow <strong>{name}</strong> to use your account?</h1>
<p class="muted">{source}</p>
<p>If you allow it, it will be able to:</p>
<ul class="scopes">{scopes}</ul>
<p>Either way, you go back to {destination} next. You can disconnect it later from your account page.</p>
{setup}
<p class="muted small">Signed in as <strong>{display}</strong> ({user}).</p>
<form method="post" action="/consent">
<input type="hidden" name="request" value="{id}">
<input type="hidden" name="csrf" value="{csrf}">
<div class="actions">
<button type="submit" name="decision" value="approve">Allow</button>
<button type="submit" name="decision" value="deny" class="secondary">Deny</button>
</div>
</form>
</section>"#,
        name = escape(&p.client_name),
        display = escape(&who.display_name),
        user = escape(&who.name),
        id = escape(id),
        csrf = escape(&who.csrf),
    );
    let page = Page::new(format!("Allow {}?", p.client_name), body);
    match redirect_origin(&p.redirect_uri) {
        Some(origin) => page.form_target(origin),
        None => page,
    }
}

#[derive(Debug, Deserialize)]
pub struct ConsentForm {
    request: String,
    csrf: String,
    decision: String,
}

/// `POST /consent`
pub async fn consent_decision(
    State(state): State<AppState>,
    headers: HeaderMap,
    PageForm(form): PageForm<ConsentForm>,
) -> Result<Response, Error> {
    let Some(signed_in) = login::current(&state, &headers).await? else {
        return Ok(login::sign_in_redirect(&format!(
            "/consent?request={}",
            form.request
        )));
    };
    signed_in.check_csrf(&form.csrf)?;
    // Taken atomically: a double-submitted form decides once.
    let pending = take_pending(state.store.as_ref(), &form.request)
        .await?
        .ok_or_else(expired_request)?;
    match form.decision.as_str() {
        "approve" => {
            grants::record_consent(
                state.store.as_ref(),
                &signed_in.user_id,
                &pending.client_id,
                &pending.scope,
            )
            .await?;
            complete(&state, &pending, &signed_in.user_id).await
        }
        _ => Ok(error_redirect(
            &state,
            &pending.redirect_uri,
            pending.state.as_deref(),
            &OAuthError::access_denied("the person denied access"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn an_error_page_for_an_oauth_fault_keeps_the_fault_to_log() {
        let fault =
            crate::telemetry::Fault::error("store error during an OAuth request", "disk full");
        let response = oauth_page_error(
            OAuthError::server_error("internal error; retry later").with_fault(fault.clone()),
        );
        assert_eq!(response.status(), http::StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(response.extensions().get(), Some(&fault));
    }

    proptest! {
        /// A remembered approval never answers a loopback or private-use
        /// redirect, whatever its port, path or spelling; it may answer an
        /// https redirect to a host that is not this device.
        #[test]
        fn remembered_consent_only_for_https_redirects_off_this_device(
            host in prop::sample::select(vec![
                "localhost", "LOCALHOST", "127.0.0.1", "127.1.2.3", "[::1]",
                "app.localhost", "localhost.", "0.0.0.0", "[::]",
            ]),
            port in prop::option::of(1u16..),
            path in "(/[a-z0-9]{0,6}){0,3}",
            scheme in prop::sample::select(vec!["http", "https"]),
            private in "[a-z]{1,8}(\\.[a-z]{1,8}){0,2}",
            public in "[a-z]{1,10}\\.example",
        ) {
            let port = port.map(|p| format!(":{p}")).unwrap_or_default();
            let local = format!("{scheme}://{host}{port}{path}");
            prop_assert!(!may_skip_consent(&local), "{local}");
            let private_use = format!("app.{private}:/{path}");
            prop_assert!(!may_skip_consent(&private_use), "{private_use}");
            let web = format!("{scheme}://{public}{port}{path}");
            prop_assert_eq!(may_skip_consent(&web), scheme == "https", "{}", web);
        }
    }
}
