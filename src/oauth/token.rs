//! The token endpoint: authorization-code and refresh-token grants.
//!
//! Both grants are single-use, enforced by a versioned write: of concurrent
//! redemptions exactly one wins. The winner stores its response, sealed
//! under the master key, in the same write; a client that repeats the same
//! request within [`REPLAY_GRACE_SECS`] (with the same PKCE verifier, for
//! codes) gets that same response back, so real clients that double-post
//! keep their session. A replay after the grace window is treated as theft:
//! the whole token family is revoked (RFC 9700 §4.14.2).
//!
//! Both grants mint only for a live person, grant and client
//! (`access::ended`); redeeming a code also makes its token family, created
//! at approval, permanent in the same conditional write, so a family ended
//! after the code was issued can never be redeemed.
//!
//! Keys: `rt#<sha256(token)>` / `rt`.

use axum::{
    Json,
    body::Bytes,
    extract::State,
    response::{IntoResponse, Response},
};
use base64::{Engine, engine::general_purpose::STANDARD};
use http::{HeaderMap, HeaderValue, header};
use serde::{Deserialize, Serialize};

use super::{
    ACCESS_TOKEN_TTL_SECS, OAuthError, REFRESH_TOKEN_TTL_SECS, REPLAY_GRACE_SECS, access,
    access_token::AccessClaims,
    clients::{self, Client},
    codes::{CodeGrant, Redeemed, code_key},
    grants,
    params::Params,
};
use crate::{
    app::AppState,
    crypto,
    net::ClientAddr,
    store::{Item, NewItem, StoreError, Write, now_unix},
};

const SEAL_PURPOSE: &str = "token-response";
/// How long a used code or rotated refresh token is remembered, to detect
/// replays after the grace window.
const REPLAY_MEMORY_SECS: i64 = 24 * 3600;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefreshToken {
    pub family: String,
    pub client_id: String,
    pub user_id: String,
    pub scope: String,
    pub resource: String,
    #[serde(default)]
    pub redeemed: Option<Redeemed>,
}

/// A token request's parameters.
#[derive(Debug)]
pub struct TokenForm {
    grant_type: Option<String>,
    code: Option<String>,
    redirect_uri: Option<String>,
    code_verifier: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    refresh_token: Option<String>,
    /// Every `resource` given (RFC 8707 allows several).
    resources: Vec<String>,
    scope: Option<String>,
}

impl TokenForm {
    /// Reads a form body; a repeated parameter other than `resource` is
    /// `invalid_request`.
    pub fn parse(body: &[u8]) -> Result<Self, OAuthError> {
        let p = Params::parse(body);
        Ok(Self {
            grant_type: p.single_owned("grant_type")?,
            code: p.single_owned("code")?,
            redirect_uri: p.single_owned("redirect_uri")?,
            code_verifier: p.single_owned("code_verifier")?,
            client_id: p.single_owned("client_id")?,
            client_secret: p.single_owned("client_secret")?,
            refresh_token: p.single_owned("refresh_token")?,
            resources: p.all("resource").map(str::to_owned).collect(),
            scope: p.single_owned("scope")?,
        })
    }
}

/// A PKCE code verifier as RFC 7636 §4.1 defines it: 43 to 128 characters,
/// each unreserved (`A-Z a-z 0-9 - . _ ~`).
pub fn is_valid_code_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| {
            m.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: i64,
    pub refresh_token: String,
    pub scope: String,
}

/// `POST /token`
pub async fn token(
    State(state): State<AppState>,
    headers: HeaderMap,
    addr: ClientAddr,
    body: Bytes,
) -> Response {
    let result = if is_form(&headers) {
        match TokenForm::parse(&body) {
            Ok(form) => handle(&state, &headers, &addr.subject(), form).await,
            Err(e) => Err(e),
        }
    } else {
        Err(OAuthError::invalid_request(
            "send the token request as application/x-www-form-urlencoded",
        ))
    };
    let mut response = match result {
        Ok(body) => Json(body).into_response(),
        Err(e) => e.into_response(),
    };
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// Client id and secret from HTTP Basic (RFC 6749 §2.3.1), if present.
pub fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let unescape = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Some((unescape(id), unescape(secret)))
}

/// Identifies and authenticates the client of a token or revocation request.
pub async fn client_of_request(
    state: &AppState,
    headers: &HeaderMap,
    caller: &str,
    form_client_id: Option<&str>,
    form_secret: Option<&str>,
) -> Result<Client, OAuthError> {
    let basic = basic_credentials(headers);
    let client_id = match (&basic, form_client_id) {
        (Some((id, _)), Some(form_id)) if id != form_id => {
            return Err(OAuthError::invalid_request(
                "client_id differs from the authenticated client",
            ));
        }
        (Some((id, _)), _) => id.clone(),
        (None, Some(id)) => id.to_owned(),
        (None, None) => return Err(OAuthError::invalid_client("client_id is required")),
    };
    let client = clients::find(state, &client_id, caller)
        .await?
        .ok_or_else(|| OAuthError::invalid_client("unknown client"))?;
    clients::authenticate(
        &client,
        basic.as_ref().map(|(_, s)| s.as_str()),
        form_secret,
    )?;
    Ok(client)
}

async fn handle(
    state: &AppState,
    headers: &HeaderMap,
    caller: &str,
    form: TokenForm,
) -> Result<TokenResponse, OAuthError> {
    let client = client_of_request(
        state,
        headers,
        caller,
        form.client_id.as_deref(),
        form.client_secret.as_deref(),
    )
    .await?;
    // Several resources are fine as long as each names the same one of
    // ours: the one token serves them all (RFC 8707 §2).
    if !form.resources.is_empty()
        && state
            .resources
            .named_by(form.resources.iter().map(String::as_str))
            .is_none()
    {
        return Err(OAuthError::invalid_target(format!(
            "this server issues tokens for {} (one at a time)",
            state.resources.urls().join(", ")
        )));
    }
    match form.grant_type.as_deref() {
        Some("authorization_code") => redeem_code(state, &client, form).await,
        Some("refresh_token") => refresh(state, &client, form).await,
        Some(other) => Err(OAuthError::unsupported_grant_type(format!(
            "grant_type {other:?} is not supported"
        ))),
        None => Err(OAuthError::invalid_request("grant_type is required")),
    }
}

struct Issued {
    response: TokenResponse,
    refresh_item: NewItem,
}

/// The audience of a token for a grant whose resource is `granted`: a
/// token request may name that resource again, not another one.
fn audience(form: &TokenForm, granted: &str) -> Result<String, OAuthError> {
    if form
        .resources
        .iter()
        .all(|r| super::resource::resource_matches(r, granted))
    {
        Ok(granted.to_owned())
    } else {
        Err(OAuthError::invalid_target(format!(
            "this grant is for {granted}, not another resource"
        )))
    }
}

fn issue(
    state: &AppState,
    family: &str,
    user_id: &str,
    client_id: &str,
    scope: &str,
    resource: &str,
) -> Result<Issued, OAuthError> {
    let now = now_unix();
    let claims = AccessClaims {
        iss: state.config.issuer(),
        sub: user_id.to_owned(),
        aud: resource.to_owned(),
        exp: now + ACCESS_TOKEN_TTL_SECS,
        iat: now,
        jti: crypto::random_id(),
        client_id: client_id.to_owned(),
        scope: scope.to_owned(),
        fam: family.to_owned(),
    };
    let refresh_token = crypto::random_token(32);
    let record = RefreshToken {
        family: family.to_owned(),
        client_id: client_id.to_owned(),
        user_id: user_id.to_owned(),
        scope: scope.to_owned(),
        resource: resource.to_owned(),
        redeemed: None,
    };
    let refresh_item = NewItem::json(refresh_key(&refresh_token), "rt", &record)?
        .expires_in(REFRESH_TOKEN_TTL_SECS);
    Ok(Issued {
        response: TokenResponse {
            access_token: state.keys.sign(&claims),
            token_type: "Bearer".into(),
            expires_in: ACCESS_TOKEN_TTL_SECS,
            refresh_token,
            scope: scope.to_owned(),
        },
        refresh_item,
    })
}

fn refresh_key(token: &str) -> String {
    crate::store::keys::Partition::RefreshToken(token).key()
}

fn seal(state: &AppState, context: &str, response: &TokenResponse) -> Result<String, OAuthError> {
    let json = serde_json::to_vec(response).map_err(|e| OAuthError::server_error(e.to_string()))?;
    Ok(STANDARD.encode(
        state
            .master_key
            .seal(SEAL_PURPOSE, context.as_bytes(), &json),
    ))
}

fn unseal(state: &AppState, context: &str, redeemed: &Redeemed) -> Option<TokenResponse> {
    let sealed = STANDARD.decode(&redeemed.sealed_response).ok()?;
    let json = state
        .master_key
        .open(SEAL_PURPOSE, context.as_bytes(), &sealed)
        .ok()?;
    serde_json::from_slice(&json).ok()
}

/// A repeated request: the stored answer inside the grace window, family
/// revocation after it.
async fn replayed(
    state: &AppState,
    key: &str,
    user_id: &str,
    redeemed: &Redeemed,
    what: &str,
) -> Result<TokenResponse, OAuthError> {
    if now_unix() - redeemed.at <= REPLAY_GRACE_SECS
        && let Some(response) = unseal(state, key, redeemed)
        && grants::get(state.store.as_ref(), &redeemed.family)
            .await?
            .is_some()
    {
        return Ok(response);
    }
    grants::revoke(state.store.as_ref(), user_id, &redeemed.family).await?;
    tracing::warn!(family = %redeemed.family, "{what} reused after the grace window; its tokens were revoked");
    Err(OAuthError::invalid_grant(format!(
        "this {what} was already used; the tokens issued for it have been revoked"
    )))
}

/// Marks a code or refresh token as used, conditional on nobody else having
/// done so first. Kept a while longer so that late replays are recognised.
fn used_write<T: Serialize>(item: &Item, used: &T) -> Result<Write, OAuthError> {
    let new = NewItem::json(item.pk.clone(), item.sk.clone(), used)?.expires_in(REPLAY_MEMORY_SECS);
    Ok(Write::Replace {
        item: new,
        expected_version: item.version,
    })
}

async fn redeem_code(
    state: &AppState,
    client: &Client,
    form: TokenForm,
) -> Result<TokenResponse, OAuthError> {
    let code = form
        .code
        .clone()
        .filter(|c| !c.is_empty())
        .ok_or_else(|| OAuthError::invalid_request("code is required"))?;
    let verifier = form
        .code_verifier
        .clone()
        .ok_or_else(|| OAuthError::invalid_request("code_verifier is required (PKCE)"))?;
    if !is_valid_code_verifier(&verifier) {
        return Err(OAuthError::invalid_request(
            "code_verifier must be 43 to 128 characters from A-Z, a-z, 0-9 and -._~ (RFC 7636)",
        ));
    }
    let key = code_key(&code);
    // Two rounds at most: if we lose the race, the second read sees the
    // winner's redemption.
    for _ in 0..2 {
        let item = state.store.get(&key, "code").await?.ok_or_else(|| {
            OAuthError::invalid_grant("the authorization code is invalid or expired")
        })?;
        let grant: CodeGrant = item.json()?;
        if grant.client_id != client.client_id {
            return Err(OAuthError::invalid_grant(
                "the code was issued to another client",
            ));
        }
        if !crypto::constant_time_eq(&crypto::pkce_s256(&verifier), &grant.code_challenge) {
            return Err(OAuthError::invalid_grant(
                "code_verifier does not match the code challenge",
            ));
        }
        // Required when the authorization request had one, and then
        // identical (RFC 6749 §4.1.3).
        match form.redirect_uri.as_deref() {
            Some(r) if r != grant.redirect_uri => {
                return Err(OAuthError::invalid_grant(
                    "redirect_uri differs from the authorization request",
                ));
            }
            None if grant.redirect_uri_sent => {
                return Err(OAuthError::invalid_request(
                    "redirect_uri is required: the authorization request had one",
                ));
            }
            _ => {}
        }
        if let Some(redeemed) = &grant.redeemed {
            return replayed(state, &key, &grant.user_id, redeemed, "authorization code").await;
        }

        // The family created at approval, unless it ended since (codes from
        // before families were created at approval have none: nothing
        // could have ended them, so they are refused too).
        let store = state.store.as_ref();
        let ended_since = || {
            OAuthError::invalid_grant("access was ended after this code was issued; sign in again")
        };
        if grant.family.is_empty() {
            return Err(ended_since());
        }
        let (family, family_item) = grants::get_item(store, &grant.family)
            .await?
            .ok_or_else(ended_since)?;
        let family_writes = grants::activate_writes(&family, &family_item)?;
        if let Some(ended) =
            access::ended(store, &grant.user_id, &client.client_id, family.created_at).await?
        {
            return Err(OAuthError::invalid_grant(format!(
                "{}; sign in again",
                ended.describe()
            )));
        }
        let issued = issue(
            state,
            &family.family,
            &grant.user_id,
            &client.client_id,
            &grant.scope,
            &audience(&form, &grant.resource)?,
        )?;
        let redeemed = Redeemed {
            at: now_unix(),
            family: family.family.clone(),
            sealed_response: seal(state, &key, &issued.response)?,
        };
        let mut used = grant.clone();
        used.redeemed = Some(redeemed);
        let mut writes = vec![
            used_write(&item, &used)?,
            Write::Insert(issued.refresh_item),
        ];
        writes.extend(family_writes);
        match state.store.transact(writes).await {
            Ok(()) => {
                clients::mark_used(state, client).await?;
                return Ok(issued.response);
            }
            Err(StoreError::Conflict) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(OAuthError::temporarily_unavailable(
        "concurrent use of this code; retry",
    ))
}

async fn refresh(
    state: &AppState,
    client: &Client,
    form: TokenForm,
) -> Result<TokenResponse, OAuthError> {
    let token = form
        .refresh_token
        .clone()
        .filter(|t| !t.is_empty())
        .ok_or_else(|| OAuthError::invalid_request("refresh_token is required"))?;
    let key = refresh_key(&token);
    for _ in 0..2 {
        let item = state.store.get(&key, "rt").await?.ok_or_else(|| {
            OAuthError::invalid_grant("the refresh token is invalid, expired or revoked")
        })?;
        let record: RefreshToken = item.json()?;
        if record.client_id != client.client_id {
            return Err(OAuthError::invalid_grant(
                "the refresh token was issued to another client",
            ));
        }
        if let Some(redeemed) = &record.redeemed {
            return replayed(state, &key, &record.user_id, redeemed, "refresh token").await;
        }
        let Some(family) = grants::get(state.store.as_ref(), &record.family).await? else {
            return Err(OAuthError::invalid_grant(
                "access was revoked; sign in again",
            ));
        };
        if let Some(ended) = access::ended(
            state.store.as_ref(),
            &record.user_id,
            &client.client_id,
            family.created_at,
        )
        .await?
        {
            return Err(OAuthError::invalid_grant(format!(
                "{}; sign in again",
                ended.describe()
            )));
        }
        // A refresh may narrow the scope, never widen it (RFC 6749 §6).
        let scope = match form.scope.as_deref() {
            Some(requested) => {
                let narrowed: Vec<&str> = requested
                    .split(' ')
                    .filter(|s| family.scope.split(' ').any(|g| g == *s))
                    .collect();
                if narrowed.is_empty() {
                    return Err(OAuthError::invalid_scope(
                        "the requested scope was not granted",
                    ));
                }
                narrowed.join(" ")
            }
            None => record.scope.clone(),
        };
        let issued = issue(
            state,
            &record.family,
            &record.user_id,
            &client.client_id,
            &scope,
            &audience(&form, &record.resource)?,
        )?;
        let redeemed = Redeemed {
            at: now_unix(),
            family: record.family.clone(),
            sealed_response: seal(state, &key, &issued.response)?,
        };
        let mut used = record.clone();
        used.redeemed = Some(redeemed);
        let mut writes = vec![
            used_write(&item, &used)?,
            Write::Insert(issued.refresh_item),
        ];
        writes.extend(
            grants::touch_write(state.store.as_ref(), &record.user_id, &record.family).await?,
        );
        match state.store.transact(writes).await {
            Ok(()) => return Ok(issued.response),
            Err(StoreError::Conflict) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(OAuthError::temporarily_unavailable(
        "concurrent use of this refresh token; retry",
    ))
}
