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
//! A family's refresh tokens form a chain kept in one record that every
//! rotation replaces: a token is `<family>.<generation>.<tag>`, the tag an
//! HMAC under the master key, so passgate recognises its own old tokens
//! without remembering each one. Presenting the current generation
//! rotates; the one before it, within the grace window, gets the stored
//! answer; any older one (or the one before, later) is a replay and ends
//! the family, for as long as the family lives. Rotating leaves nothing
//! behind, where one record per used token, kept a day to recognise
//! replays, made the store grow with every refresh. A used code is kept
//! only as long as the code was valid (at least the grace window): a code
//! is redeemed within seconds of being issued, so that is when a replay
//! can race the client.
//!
//! Keys: `rt-chain#<family>` / `rt`; `rt#<sha256(token)>` / `rt` for
//! refresh tokens from before chains (still redeemed; their replacement
//! starts a chain).

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
const CHAIN_TAG_PURPOSE: &str = "refresh-token chain";
/// How long a rotated refresh token from before chains is remembered, to
/// detect replays after the grace window.
const LEGACY_REPLAY_MEMORY_SECS: i64 = 24 * 3600;

/// A token family's refresh state: one record, replaced at each rotation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefreshChain {
    pub family: String,
    pub client_id: String,
    pub user_id: String,
    pub scope: String,
    pub resource: String,
    /// The generation of the family's one live refresh token.
    pub generation: u64,
    /// The answer of the rotation that made `generation`, for a client that
    /// repeats it within the grace window.
    #[serde(default)]
    pub previous: Option<Redeemed>,
}

/// A refresh token from before chains, stored under its hash.
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
    /// The family's chain at the new token's generation (`previous` unset).
    chain: RefreshChain,
}

impl Issued {
    /// The chain record, live as long as its newest token.
    fn chain_item(&self) -> Result<NewItem, OAuthError> {
        Ok(
            NewItem::json(chain_key(&self.chain.family), "rt", &self.chain)?
                .expires_in(REFRESH_TOKEN_TTL_SECS),
        )
    }
}

pub fn chain_key(family: &str) -> String {
    crate::store::keys::Partition::RefreshChain(family).key()
}

fn chained_token(state: &AppState, family: &str, generation: u64) -> String {
    let body = format!("{family}.{generation}");
    let tag = state.master_key.tag(CHAIN_TAG_PURPOSE, body.as_bytes());
    format!("{body}.{tag}")
}

/// The family and generation of a chained refresh token passgate issued
/// (its tag verifies); `None` for anything else, tokens from before chains
/// included.
pub fn chained(state: &AppState, token: &str) -> Option<(String, u64)> {
    let (body, tag) = token.rsplit_once('.')?;
    let (family, generation) = body.split_once('.')?;
    let generation = generation.parse().ok()?;
    state
        .master_key
        .verify_tag(CHAIN_TAG_PURPOSE, body.as_bytes(), tag)
        .then(|| (family.to_owned(), generation))
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
    generation: u64,
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
    let chain = RefreshChain {
        family: family.to_owned(),
        client_id: client_id.to_owned(),
        user_id: user_id.to_owned(),
        scope: scope.to_owned(),
        resource: resource.to_owned(),
        generation,
        previous: None,
    };
    Ok(Issued {
        response: TokenResponse {
            access_token: state.keys.sign(&claims),
            token_type: "Bearer".into(),
            expires_in: ACCESS_TOKEN_TTL_SECS,
            refresh_token: chained_token(state, family, generation),
            scope: scope.to_owned(),
        },
        chain,
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
    reused(state, user_id, &redeemed.family, what).await
}

/// A code or refresh token used again after the grace window: theft, so
/// the family ends (RFC 9700 §4.14.2).
async fn reused(
    state: &AppState,
    user_id: &str,
    family: &str,
    what: &str,
) -> Result<TokenResponse, OAuthError> {
    grants::revoke(state.store.as_ref(), user_id, family).await?;
    tracing::warn!(family = %family, "{what} reused after the grace window; its tokens were revoked");
    Err(OAuthError::invalid_grant(format!(
        "this {what} was already used; the tokens issued for it have been revoked"
    )))
}

/// Marks a code or refresh token as used, conditional on nobody else having
/// done so first, and keeps the mark until `keep_until` (at least the grace
/// window) so that replays are recognised.
fn used_write<T: Serialize>(item: &Item, used: &T, keep_until: i64) -> Result<Write, OAuthError> {
    let keep_until = keep_until.max(now_unix() + REPLAY_GRACE_SECS);
    let new = NewItem::json(item.pk.clone(), item.sk.clone(), used)?.expires_at(keep_until);
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
        let (mut family, family_item) = grants::get_item(store, &grant.family)
            .await?
            .ok_or_else(ended_since)?;
        let user = match access::check(store, &grant.user_id, &client.client_id, family.created_at)
            .await?
        {
            Ok(user) => user,
            Err(ended) => {
                return Err(OAuthError::invalid_grant(format!(
                    "{}; sign in again",
                    ended.describe()
                )));
            }
        };
        // The account as it is now: a role or email changed since approval,
        // before this family was listed, is not lost.
        family.groups = user.groups.clone();
        family.account = Some(user.grant_profile());
        let family_writes = grants::activate_writes(&family, &family_item)?;
        let issued = issue(
            state,
            &family.family,
            0,
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
        let code_expiry = item.expires_at.unwrap_or_default();
        let mut writes = vec![
            used_write(&item, &used, code_expiry)?,
            Write::Insert(issued.chain_item()?),
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
    match chained(state, &token) {
        Some((family, generation)) => {
            refresh_chained(state, client, &form, &family, generation).await
        }
        None => refresh_legacy(state, client, &form, &token).await,
    }
}

fn unknown_refresh_token() -> OAuthError {
    OAuthError::invalid_grant("the refresh token is invalid, expired or revoked")
}

/// What a rotation may grant: `None` from `form.scope` keeps `scope`; the
/// family must be live and nothing must have ended the person's or the
/// client's access since it began.
async fn rotation_scope(
    state: &AppState,
    client: &Client,
    form: &TokenForm,
    family: &str,
    user_id: &str,
    scope: &str,
) -> Result<String, OAuthError> {
    let Some(family) = grants::get(state.store.as_ref(), family).await? else {
        return Err(OAuthError::invalid_grant(
            "access was revoked; sign in again",
        ));
    };
    if let Some(ended) = access::ended(
        state.store.as_ref(),
        user_id,
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
    match form.scope.as_deref() {
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
            Ok(narrowed.join(" "))
        }
        None => Ok(scope.to_owned()),
    }
}

/// The stored record behind a refresh token, whichever its format, once it
/// is known to belong to `client`.
async fn refresh_record<T: serde::de::DeserializeOwned>(
    state: &AppState,
    key: &str,
    client: &Client,
    client_of: fn(&T) -> &String,
) -> Result<(Item, T), OAuthError> {
    let item = state
        .store
        .get(key, "rt")
        .await?
        .ok_or_else(unknown_refresh_token)?;
    let record: T = item.json()?;
    if *client_of(&record) != client.client_id {
        return Err(OAuthError::invalid_grant(
            "the refresh token was issued to another client",
        ));
    }
    Ok((item, record))
}

async fn refresh_chained(
    state: &AppState,
    client: &Client,
    form: &TokenForm,
    family: &str,
    generation: u64,
) -> Result<TokenResponse, OAuthError> {
    let key = chain_key(family);
    // What the answer to this generation's rotation is sealed with.
    let context = format!("{key}#{generation}");
    for _ in 0..2 {
        let (item, chain) =
            refresh_record(state, &key, client, |c: &RefreshChain| &c.client_id).await?;
        if generation != chain.generation {
            return match &chain.previous {
                Some(redeemed) if generation + 1 == chain.generation => {
                    replayed(state, &context, &chain.user_id, redeemed, "refresh token").await
                }
                _ if generation < chain.generation => {
                    reused(state, &chain.user_id, family, "refresh token").await
                }
                // Newer than any issued: the chain was ended and begun
                // again, which never happens to a family.
                _ => Err(unknown_refresh_token()),
            };
        }
        let scope =
            rotation_scope(state, client, form, family, &chain.user_id, &chain.scope).await?;
        let issued = issue(
            state,
            family,
            generation + 1,
            &chain.user_id,
            &client.client_id,
            &scope,
            &audience(form, &chain.resource)?,
        )?;
        let mut next = issued.chain.clone();
        next.previous = Some(Redeemed {
            at: now_unix(),
            family: family.to_owned(),
            sealed_response: seal(state, &context, &issued.response)?,
        });
        let mut writes = vec![Write::Replace {
            item: NewItem::json(key.clone(), "rt", &next)?.expires_in(REFRESH_TOKEN_TTL_SECS),
            expected_version: item.version,
        }];
        writes.extend(grants::touch_write(state.store.as_ref(), &chain.user_id, family).await?);
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

/// A refresh token from before chains: redeemed as it always was, and
/// replaced by the first token of a chain.
async fn refresh_legacy(
    state: &AppState,
    client: &Client,
    form: &TokenForm,
    token: &str,
) -> Result<TokenResponse, OAuthError> {
    let key = refresh_key(token);
    for _ in 0..2 {
        let (item, record) =
            refresh_record(state, &key, client, |r: &RefreshToken| &r.client_id).await?;
        if let Some(redeemed) = &record.redeemed {
            return replayed(state, &key, &record.user_id, redeemed, "refresh token").await;
        }
        let scope = rotation_scope(
            state,
            client,
            form,
            &record.family,
            &record.user_id,
            &record.scope,
        )
        .await?;
        let issued = issue(
            state,
            &record.family,
            0,
            &record.user_id,
            &client.client_id,
            &scope,
            &audience(form, &record.resource)?,
        )?;
        let redeemed = Redeemed {
            at: now_unix(),
            family: record.family.clone(),
            sealed_response: seal(state, &key, &issued.response)?,
        };
        let mut used = record.clone();
        used.redeemed = Some(redeemed);
        let mut writes = vec![
            used_write(&item, &used, now_unix() + LEGACY_REPLAY_MEMORY_SECS)?,
            Write::Insert(issued.chain_item()?),
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
