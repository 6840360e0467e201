//! Backends with their own OAuth sign-in (`[route.oauth]`): passgate is an
//! OAuth client of the backend's authorization server, and each person
//! connects their account there once, from their account page. Their calls
//! then reach the backend with their own access token, which the MCP client
//! never sees (it holds only passgate's).
//!
//! Discovery follows the backend's protected resource metadata (RFC 9728)
//! to its authorization server's metadata (RFC 8414, else OpenID
//! discovery). passgate registers by the client metadata document it
//! publishes where the server supports those (and passgate's own URL is one
//! the server can fetch), else by dynamic registration (RFC 7591, stored and
//! shared by every instance), else with the client the route names. The
//! sign-in uses PKCE, `resource` (RFC 8707) and checks `iss` (RFC 9207).
//!
//! Tokens are stored sealed per person and route (`accounts::backend_tokens`)
//! and refreshed once for concurrent callers of one person in this instance;
//! across instances a versioned write picks one refresh and the other reads
//! it. `invalid_grant` at refresh deletes them (the person connects again);
//! any other failure keeps them and the call gets 502.
//!
//! URLs the backend names (its authorization server, that server's
//! endpoints) are fetched with the metadata-document fence (no proxy, no
//! redirects, public addresses only) unless they are on the backend's own
//! origin, which the operator configured.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex as StdMutex},
    time::Duration,
};

use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet,
    EndpointSet, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken, RequestTokenError,
    Scope, TokenResponse, TokenUrl,
    basic::{BasicClient, BasicErrorResponseType},
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use url::Url;

use super::config::OAuthRoute;
use crate::{
    accounts::backend_tokens::{self, BackendTokens, Stored},
    app::AppState,
    crypto::random_token,
    store::{NewItem, StoreError, keys::Partition, now_unix},
};

/// Where backends' authorization servers send people back.
pub const CALLBACK_PATH: &str = "/account/backends/callback";
/// passgate's client metadata document, for servers that support those.
pub const CLIENT_DOCUMENT_PATH: &str = "/oauth/backend-client.json";
/// How long a person has to finish signing in at the backend.
const SIGN_IN_TTL_SECS: i64 = 600;
/// Tokens this close to expiry are refreshed before use.
const REFRESH_MARGIN_SECS: i64 = 60;
const MAX_DOCUMENT_BYTES: usize = 64 * 1024;
const TIMEOUT: Duration = Duration::from_secs(10);

type OAuthClient =
    BasicClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

/// Why a backend sign-in or token could not be had. Never carries a token.
#[derive(Debug, thiserror::Error)]
pub enum BackendAuthError {
    /// The person has not connected (or must connect again).
    #[error("not connected")]
    NotConnected,
    /// The authorization server is unreachable or failed: the tokens are
    /// kept, try again later.
    #[error("{0}")]
    Unavailable(String),
    /// The backend's or its server's metadata cannot be used (an operator's
    /// matter: the message says what is wrong).
    #[error("{0}")]
    Misconfigured(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What discovery found, kept for the process's life once it succeeded.
#[derive(Debug, Clone)]
struct Discovered {
    issuer: String,
    authorization_endpoint: Url,
    token_endpoint: Url,
    registration_endpoint: Option<Url>,
    revocation_endpoint: Option<Url>,
    client_id_metadata_document_supported: bool,
    iss_parameter_supported: bool,
    /// `client_secret_post` only, where the server names no other method.
    secret_in_body: bool,
    /// The protected resource's identifier, sent as `resource`.
    resource: String,
    scopes: Vec<String>,
}

/// passgate's registration at one authorization server.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Registration {
    issuer: String,
    client_id: String,
    #[serde(default)]
    client_secret: Option<String>,
}

/// A sign-in at the backend's server under way, taken once at the callback.
#[derive(Serialize, Deserialize)]
struct Attempt {
    user_id: String,
    route_path: String,
    verifier: String,
    issuer: String,
    client_id: String,
}

/// One `[route.oauth]` route's client side.
pub struct BackendSignIn {
    route_path: String,
    backend_url: Url,
    settings: OAuthRoute,
    /// The gateway's own client, for the backend's origin.
    trusted_http: reqwest::Client,
    discovered: tokio::sync::Mutex<Option<Arc<Discovered>>>,
    /// One refresh at a time per person (never shared across people).
    refreshing: StdMutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl std::fmt::Debug for BackendSignIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackendSignIn")
            .field("route_path", &self.route_path)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl BackendSignIn {
    pub fn new(
        route_path: String,
        backend_url: Url,
        settings: OAuthRoute,
        trusted_http: reqwest::Client,
    ) -> Self {
        Self {
            route_path,
            backend_url,
            settings,
            trusted_http,
            discovered: tokio::sync::Mutex::new(None),
            refreshing: StdMutex::new(HashMap::new()),
        }
    }

    pub fn route_path(&self) -> &str {
        &self.route_path
    }

    /// The client for a URL: the gateway's for the backend's own origin,
    /// else the fenced one.
    fn http_for<'a>(
        &'a self,
        app: &'a AppState,
        url: &Url,
    ) -> Result<&'a reqwest::Client, BackendAuthError> {
        if url.origin() == self.backend_url.origin() {
            return Ok(&self.trusted_http);
        }
        let literal = match url.host() {
            Some(url::Host::Ipv4(ip)) => Some(std::net::IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(std::net::IpAddr::V6(ip)),
            _ => None,
        };
        let loopback_ok = app.cimd.allows_loopback();
        if literal.is_some_and(|ip| {
            !(crate::oauth::cimd::is_public(ip) || (loopback_ok && ip.is_loopback()))
        }) {
            return Err(BackendAuthError::Misconfigured(format!(
                "the backend's authorization server {url} is not on a public address"
            )));
        }
        Ok(app.cimd.http())
    }

    async fn fetch_json(
        &self,
        app: &AppState,
        url: &Url,
    ) -> Result<Option<Value>, BackendAuthError> {
        let http = self.http_for(app, url)?;
        let response = http
            .get(url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .timeout(TIMEOUT)
            .send()
            .await
            .map_err(|e| unavailable("fetching the backend's metadata", e))?;
        if response.status().is_server_error() {
            return Err(BackendAuthError::Unavailable(format!(
                "the backend's metadata at {url} answered {}",
                response.status().as_u16()
            )));
        }
        if !response.status().is_success() {
            return Ok(None);
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| unavailable("reading the backend's metadata", e))?;
        if body.len() > MAX_DOCUMENT_BYTES {
            return Err(BackendAuthError::Misconfigured(format!(
                "the metadata at {url} is larger than {MAX_DOCUMENT_BYTES} bytes"
            )));
        }
        Ok(serde_json::from_slice(&body).ok())
    }

    /// The first of `candidates` that answers with a JSON document.
    async fn first_document(
        &self,
        app: &AppState,
        candidates: Vec<Url>,
    ) -> Result<Option<Value>, BackendAuthError> {
        for candidate in candidates {
            if let Some(doc) = self.fetch_json(app, &candidate).await? {
                return Ok(Some(doc));
            }
        }
        Ok(None)
    }

    /// RFC 9728 then RFC 8414 (or OpenID discovery), once per process.
    async fn discover(&self, app: &AppState) -> Result<Arc<Discovered>, BackendAuthError> {
        let mut cached = self.discovered.lock().await;
        if let Some(found) = cached.as_ref() {
            return Ok(found.clone());
        }
        let found = Arc::new(self.discover_now(app).await?);
        *cached = Some(found.clone());
        Ok(found)
    }

    async fn discover_now(&self, app: &AppState) -> Result<Discovered, BackendAuthError> {
        let backend = &self.backend_url;
        let prm = self
            .first_document(app, well_known(backend, "oauth-protected-resource"))
            .await?;
        let prm = prm.ok_or_else(|| {
            BackendAuthError::Misconfigured(format!(
                "the backend {backend} publishes no protected resource metadata (RFC 9728), so its sign-in cannot be found"
            ))
        })?;
        let resource = prm["resource"].as_str().unwrap_or_default().to_owned();
        if resource.trim_end_matches('/') != backend.as_str().trim_end_matches('/') {
            return Err(BackendAuthError::Misconfigured(format!(
                "the backend's metadata names the resource {resource:?}, not {backend} (RFC 9728 §3.3)"
            )));
        }
        let issuer = prm["authorization_servers"][0]
            .as_str()
            .and_then(|s| Url::parse(s).ok())
            .ok_or_else(|| {
                BackendAuthError::Misconfigured(
                    "the backend's metadata names no authorization server".into(),
                )
            })?;
        let mut candidates = well_known(&issuer, "oauth-authorization-server");
        candidates.extend(well_known(&issuer, "openid-configuration"));
        if let Ok(appended) = Url::parse(&format!(
            "{}/.well-known/openid-configuration",
            issuer.as_str().trim_end_matches('/')
        )) {
            candidates.push(appended);
        }
        let metadata = self.first_document(app, candidates).await?;
        let m = metadata.ok_or_else(|| {
            BackendAuthError::Misconfigured(format!(
                "the authorization server {issuer} publishes no metadata (RFC 8414 or OpenID discovery)"
            ))
        })?;
        let named = m["issuer"].as_str().unwrap_or_default();
        if named.trim_end_matches('/') != issuer.as_str().trim_end_matches('/') {
            return Err(BackendAuthError::Misconfigured(format!(
                "the authorization server's metadata names the issuer {named:?}, not {issuer}"
            )));
        }
        let endpoint = |name: &str| -> Result<Option<Url>, BackendAuthError> {
            match m[name].as_str() {
                None => Ok(None),
                Some(raw) => {
                    let url = Url::parse(raw)
                        .ok()
                        .filter(|u| matches!(u.scheme(), "https" | "http"))
                        .ok_or_else(|| {
                            BackendAuthError::Misconfigured(format!(
                                "the authorization server's {name} {raw:?} is not an http(s) URL"
                            ))
                        })?;
                    Ok(Some(url))
                }
            }
        };
        let required = |name: &str| {
            endpoint(name)?.ok_or_else(|| {
                BackendAuthError::Misconfigured(format!(
                    "the authorization server's metadata has no {name}"
                ))
            })
        };
        let strings = |name: &str| -> Vec<String> {
            m[name]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        let methods = strings("token_endpoint_auth_methods_supported");
        let scopes = match &self.settings.scopes {
            Some(scopes) => scopes.clone(),
            None => prm["scopes_supported"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
        };
        Ok(Discovered {
            issuer: named.to_owned(),
            authorization_endpoint: required("authorization_endpoint")?,
            token_endpoint: required("token_endpoint")?,
            registration_endpoint: endpoint("registration_endpoint")?,
            revocation_endpoint: endpoint("revocation_endpoint")?,
            client_id_metadata_document_supported: m["client_id_metadata_document_supported"]
                == Value::Bool(true),
            iss_parameter_supported: m["authorization_response_iss_parameter_supported"]
                == Value::Bool(true),
            secret_in_body: !methods.is_empty()
                && methods.iter().all(|m| m == "client_secret_post"),
            resource,
            scopes,
        })
    }

    /// passgate's client at the backend's server: the configured one, its
    /// own metadata document, or a dynamic registration (made once, shared
    /// through the store by every instance).
    async fn registration(
        &self,
        app: &AppState,
        found: &Discovered,
    ) -> Result<Registration, BackendAuthError> {
        if let Some(client_id) = &self.settings.client_id {
            return Ok(Registration {
                issuer: found.issuer.clone(),
                client_id: client_id.clone(),
                client_secret: self.settings.client_secret.clone(),
            });
        }
        // A document the server must fetch: an https URL, or a loopback one
        // under the development setting (servers that fetch from loopback).
        let fetchable = app.config.is_https() || app.cimd.allows_loopback();
        if found.client_id_metadata_document_supported && fetchable {
            return Ok(Registration {
                issuer: found.issuer.clone(),
                client_id: app.config.url(CLIENT_DOCUMENT_PATH),
                client_secret: None,
            });
        }
        let key = Partition::BackendClient(&self.route_path).key();
        if let Some(stored) = app
            .store
            .get_json::<Registration>(&key, "client")
            .await?
            .filter(|r| r.issuer == found.issuer)
        {
            return Ok(stored);
        }
        let endpoint = found.registration_endpoint.as_ref().ok_or_else(|| {
            BackendAuthError::Misconfigured(
                "the backend's authorization server supports neither client metadata documents nor dynamic registration: register passgate there and set oauth.client_id".into(),
            )
        })?;
        let response = self
            .http_for(app, endpoint)?
            .post(endpoint.clone())
            .timeout(TIMEOUT)
            .json(&client_metadata(app))
            .send()
            .await
            .map_err(|e| unavailable("registering at the backend's authorization server", e))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        let Some(client_id) = body["client_id"].as_str().filter(|_| status.is_success()) else {
            let error = body["error"].as_str().unwrap_or("no client_id");
            return Err(if status.is_server_error() {
                BackendAuthError::Unavailable(format!("registration answered {status}"))
            } else {
                BackendAuthError::Misconfigured(format!(
                    "the backend's authorization server refused passgate's registration ({status}, {error})"
                ))
            });
        };
        let registration = Registration {
            issuer: found.issuer.clone(),
            client_id: client_id.to_owned(),
            client_secret: body["client_secret"].as_str().map(str::to_owned),
        };
        // Of two registrations made at once (two instances, or two people on
        // one), the first stored is the one everyone uses; the other is
        // never used. One for another issuer is replaced.
        let item = NewItem::json(key.clone(), "client", &registration)?;
        match app.store.insert(item).await {
            Ok(()) => {}
            Err(StoreError::Conflict) => {
                let current = app.store.get(&key, "client").await?;
                match current {
                    Some(found_item) => {
                        let stored: Registration = found_item.json()?;
                        if stored.issuer == found.issuer {
                            return Ok(stored);
                        }
                        app.store
                            .replace(
                                NewItem::json(key, "client", &registration)?,
                                found_item.version,
                            )
                            .await?;
                    }
                    None => {
                        app.store
                            .put(NewItem::json(key, "client", &registration)?)
                            .await?
                    }
                }
            }
            Err(e) => return Err(e.into()),
        }
        tracing::info!(route = %self.route_path, issuer = %found.issuer, "registered at a backend's authorization server");
        Ok(registration)
    }

    fn client(
        &self,
        app: &AppState,
        found: &Discovered,
        registration: &Registration,
    ) -> Result<OAuthClient, BackendAuthError> {
        let redirect = RedirectUrl::new(app.config.url(CALLBACK_PATH))
            .map_err(|e| BackendAuthError::Misconfigured(e.to_string()))?;
        let mut client = BasicClient::new(ClientId::new(registration.client_id.clone()))
            .set_auth_uri(AuthUrl::from_url(found.authorization_endpoint.clone()))
            .set_token_uri(TokenUrl::from_url(found.token_endpoint.clone()))
            .set_redirect_uri(redirect);
        if let Some(secret) = &registration.client_secret {
            client = client.set_client_secret(ClientSecret::new(secret.clone()));
            if found.secret_in_body {
                client = client.set_auth_type(AuthType::RequestBody);
            }
        }
        Ok(client)
    }

    /// Starts the person's sign-in at the backend: where to send their
    /// browser.
    pub async fn start(&self, app: &AppState, user_id: &str) -> Result<String, BackendAuthError> {
        let found = self.discover(app).await?;
        let registration = self.registration(app, &found).await?;
        let client = self.client(app, &found, &registration)?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let state = random_token(32);
        let mut request = client
            .authorize_url(|| CsrfToken::new(state.clone()))
            .set_pkce_challenge(challenge)
            .add_extra_param("resource", found.resource.clone());
        for scope in &found.scopes {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        let (url, _) = request.url();
        let attempt = Attempt {
            user_id: user_id.to_owned(),
            route_path: self.route_path.clone(),
            verifier: verifier.secret().clone(),
            issuer: found.issuer.clone(),
            client_id: registration.client_id.clone(),
        };
        app.store
            .insert(
                NewItem::json(Partition::BackendSignIn(&state).key(), "attempt", &attempt)?
                    .expires_in(SIGN_IN_TTL_SECS),
            )
            .await?;
        Ok(url.to_string())
    }

    /// The backend's server sent the person back with `code` for `state`
    /// (already taken by [`take_attempt`]): the code is exchanged and the
    /// tokens stored for them.
    async fn finish(
        &self,
        app: &AppState,
        attempt: Attempt,
        code: &str,
        iss: Option<&str>,
    ) -> Result<(), CallbackError> {
        let found = self.discover(app).await.map_err(CallbackError::Auth)?;
        match iss {
            Some(iss) if iss.trim_end_matches('/') != found.issuer.trim_end_matches('/') => {
                return Err(CallbackError::Refused(
                    "the answer names another authorization server than the one passgate sent you to (iss mismatch)",
                ));
            }
            None if found.iss_parameter_supported => {
                return Err(CallbackError::Refused(
                    "the answer lacks the authorization server's name (iss), which it always sends",
                ));
            }
            _ => {}
        }
        let registration = self
            .registration(app, &found)
            .await
            .map_err(CallbackError::Auth)?;
        if registration.client_id != attempt.client_id || found.issuer != attempt.issuer {
            return Err(CallbackError::Refused(
                "passgate's registration at the backend changed during your sign-in",
            ));
        }
        let client = self
            .client(app, &found, &registration)
            .map_err(CallbackError::Auth)?;
        let http = self
            .http_for(app, &found.token_endpoint)
            .map_err(CallbackError::Auth)?;
        let answer = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .set_pkce_verifier(PkceCodeVerifier::new(attempt.verifier))
            .add_extra_param("resource", found.resource.clone())
            .request_async(http)
            .await;
        let response = match answer {
            Ok(response) => response,
            Err(RequestTokenError::ServerResponse(e)) => {
                tracing::warn!(route = %self.route_path, error = %e.error(), "a backend's authorization server refused a code");
                return Err(CallbackError::Refused(
                    "the backend's authorization server refused the sign-in (the code expired or was used)",
                ));
            }
            Err(e) => {
                return Err(CallbackError::Auth(BackendAuthError::Unavailable(format!(
                    "exchanging the code failed: {}",
                    describe(&e)
                ))));
            }
        };
        let tokens = tokens_from(&response, None, &registration);
        backend_tokens::connect(
            app.store.as_ref(),
            &app.master_key,
            &attempt.user_id,
            &self.route_path,
            &tokens,
        )
        .await
        .map_err(|e| CallbackError::Auth(e.into()))?;
        Ok(())
    }

    /// The person's access token for the backend (refreshed first when it
    /// is about to expire) and the stored version it came from.
    pub async fn access_token(
        &self,
        app: &AppState,
        user_id: &str,
    ) -> Result<(String, u64), BackendAuthError> {
        let stored = backend_tokens::get(
            app.store.as_ref(),
            &app.master_key,
            user_id,
            &self.route_path,
        )
        .await?
        .ok_or(BackendAuthError::NotConnected)?;
        if !expiring(&stored.tokens) {
            return Ok((stored.tokens.access_token, stored.version));
        }
        self.refresh(app, user_id, stored.version).await
    }

    /// Refreshes the tokens last seen at `seen_version` (expired, or
    /// refused by the backend), unless another caller already did.
    pub async fn refresh(
        &self,
        app: &AppState,
        user_id: &str,
        seen_version: u64,
    ) -> Result<(String, u64), BackendAuthError> {
        let lock = self
            .refreshing
            .lock()
            .expect("refresh locks")
            .entry(user_id.to_owned())
            .or_default()
            .clone();
        let _one_at_a_time = lock.lock().await;
        let result = self.refresh_locked(app, user_id, seen_version).await;
        drop(_one_at_a_time);
        let mut locks = self.refreshing.lock().expect("refresh locks");
        if Arc::strong_count(&lock) <= 2 {
            locks.remove(user_id);
        }
        result
    }

    async fn refresh_locked(
        &self,
        app: &AppState,
        user_id: &str,
        seen_version: u64,
    ) -> Result<(String, u64), BackendAuthError> {
        let store = app.store.as_ref();
        let read = || backend_tokens::get(store, &app.master_key, user_id, &self.route_path);
        let stored = read().await?.ok_or(BackendAuthError::NotConnected)?;
        if stored.version != seen_version {
            // Refreshed by another caller meanwhile.
            return Ok((stored.tokens.access_token, stored.version));
        }
        let Some(refresh_token) = stored.tokens.refresh_token.clone() else {
            backend_tokens::remove(store, user_id, &self.route_path).await?;
            return Err(BackendAuthError::NotConnected);
        };
        let found = self.discover(app).await?;
        let registration = Registration {
            issuer: stored.tokens.issuer.clone(),
            client_id: stored.tokens.client_id.clone(),
            client_secret: self
                .settings
                .client_id
                .as_ref()
                .filter(|id| **id == stored.tokens.client_id)
                .and(self.settings.client_secret.clone())
                .or(self.stored_secret(app, &stored).await?),
        };
        let client = self.client(app, &found, &registration)?;
        let answer = client
            .exchange_refresh_token(&RefreshToken::new(refresh_token.clone()))
            .add_extra_param("resource", found.resource.clone())
            .request_async(self.http_for(app, &found.token_endpoint)?)
            .await;
        match answer {
            Ok(response) => {
                let tokens = tokens_from(&response, Some(&refresh_token), &registration);
                match backend_tokens::replace(
                    store,
                    &app.master_key,
                    user_id,
                    &self.route_path,
                    &stored,
                    &tokens,
                )
                .await
                {
                    Ok(()) => {
                        let now = read().await?.ok_or(BackendAuthError::NotConnected)?;
                        Ok((now.tokens.access_token, now.version))
                    }
                    Err(StoreError::Conflict) => {
                        let now = read().await?.ok_or(BackendAuthError::NotConnected)?;
                        Ok((now.tokens.access_token, now.version))
                    }
                    Err(e) => Err(e.into()),
                }
            }
            Err(RequestTokenError::ServerResponse(e))
                if *e.error() == BasicErrorResponseType::InvalidGrant =>
            {
                // Refreshed by another instance with the same token (which
                // rotation then refuses)? Then its write is there to use.
                if let Some(now) = read().await?.filter(|now| now.version != stored.version) {
                    return Ok((now.tokens.access_token, now.version));
                }
                backend_tokens::remove(store, user_id, &self.route_path).await?;
                tracing::info!(route = %self.route_path, user = %user_id, "a backend's authorization server ended a connection; the person must connect again");
                Err(BackendAuthError::NotConnected)
            }
            // Our own registration is gone there (its operator deleted it,
            // or it expired): the tokens it holds are worth nothing, and the
            // next connection registers again. A configured client is the
            // operator's to fix, so its tokens stay.
            Err(RequestTokenError::ServerResponse(e))
                if *e.error() == BasicErrorResponseType::InvalidClient
                    && self.settings.client_id.is_none() =>
            {
                if self
                    .dynamic_registration(app)
                    .await?
                    .is_some_and(|r| r.client_id == stored.tokens.client_id)
                {
                    let key = Partition::BackendClient(&self.route_path).key();
                    store.delete(&key, "client").await?;
                }
                backend_tokens::remove(store, user_id, &self.route_path).await?;
                tracing::info!(route = %self.route_path, user = %user_id, "a backend's authorization server no longer knows passgate's registration; the person must connect again");
                Err(BackendAuthError::NotConnected)
            }
            Err(RequestTokenError::ServerResponse(e)) => {
                Err(BackendAuthError::Unavailable(format!(
                    "the backend's authorization server refused a refresh: {}",
                    e.error()
                )))
            }
            Err(e) => Err(BackendAuthError::Unavailable(format!(
                "refreshing failed: {}",
                describe(&e)
            ))),
        }
    }

    /// The dynamic registration stored for this route, if any.
    async fn dynamic_registration(
        &self,
        app: &AppState,
    ) -> Result<Option<Registration>, BackendAuthError> {
        let key = Partition::BackendClient(&self.route_path).key();
        Ok(app.store.get_json::<Registration>(&key, "client").await?)
    }

    /// The secret of a dynamic registration the tokens were issued to.
    async fn stored_secret(
        &self,
        app: &AppState,
        stored: &Stored,
    ) -> Result<Option<String>, BackendAuthError> {
        Ok(self
            .dynamic_registration(app)
            .await?
            .filter(|r| r.client_id == stored.tokens.client_id)
            .and_then(|r| r.client_secret))
    }

    /// Ends the person's connection: revoked at the backend's server where
    /// it can revoke (best effort), deleted here in any case.
    pub async fn disconnect(&self, app: &AppState, user_id: &str) -> Result<(), BackendAuthError> {
        let store = app.store.as_ref();
        if let Some(stored) =
            backend_tokens::get(store, &app.master_key, user_id, &self.route_path).await?
        {
            backend_tokens::remove(store, user_id, &self.route_path).await?;
            if let Err(e) = self.revoke(app, &stored).await {
                tracing::info!(route = %self.route_path, error = %e, "could not revoke a backend token (it was deleted here)");
            }
        }
        Ok(())
    }

    /// RFC 7009. Sent as a plain form post: oauth2's revocation request
    /// insists on https, which a backend on this machine (or in tests) is
    /// not; the token endpoint calls have no such rule.
    async fn revoke(&self, app: &AppState, stored: &Stored) -> Result<(), BackendAuthError> {
        let found = self.discover(app).await?;
        let Some(endpoint) = &found.revocation_endpoint else {
            return Ok(());
        };
        let (token, hint) = match &stored.tokens.refresh_token {
            Some(rt) => (rt.as_str(), "refresh_token"),
            None => (stored.tokens.access_token.as_str(), "access_token"),
        };
        let secret = match &self.settings.client_id {
            Some(id) if *id == stored.tokens.client_id => self.settings.client_secret.clone(),
            _ => self.stored_secret(app, stored).await?,
        };
        let client_id = stored.tokens.client_id.as_str();
        let mut form = vec![("token", token), ("token_type_hint", hint)];
        let mut request = self
            .http_for(app, endpoint)?
            .post(endpoint.clone())
            .timeout(TIMEOUT);
        match &secret {
            Some(secret) if found.secret_in_body => {
                form.extend([("client_id", client_id), ("client_secret", secret.as_str())]);
            }
            Some(secret) => request = request.basic_auth(client_id, Some(secret)),
            None => form.push(("client_id", client_id)),
        }
        let response = request
            .form(&form)
            .send()
            .await
            .map_err(|e| unavailable("revoking at the backend's authorization server", e))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(BackendAuthError::Unavailable(format!(
                "revocation answered {}",
                response.status().as_u16()
            )))
        }
    }
}

/// What went wrong when the person came back from the backend's server.
#[derive(Debug)]
pub enum CallbackError {
    /// Shown to the person as is.
    Refused(&'static str),
    Auth(BackendAuthError),
}

/// Takes (once) the sign-in attempt `state` names.
pub async fn take_attempt(
    app: &AppState,
    state: &str,
) -> Result<Option<(String, String, AttemptRef)>, StoreError> {
    let Some(item) = app
        .store
        .take(&Partition::BackendSignIn(state).key(), "attempt")
        .await?
    else {
        return Ok(None);
    };
    let attempt: Attempt = item.json()?;
    Ok(Some((
        attempt.user_id.clone(),
        attempt.route_path.clone(),
        AttemptRef(attempt),
    )))
}

/// A taken attempt, to finish with [`finish_attempt`].
pub struct AttemptRef(Attempt);

/// Exchanges the code of a taken attempt and stores the tokens.
pub async fn finish_attempt(
    sign_in: &BackendSignIn,
    app: &AppState,
    attempt: AttemptRef,
    code: &str,
    iss: Option<&str>,
) -> Result<(), CallbackError> {
    sign_in.finish(app, attempt.0, code, iss).await
}

/// passgate as an OAuth client, as its metadata document and its dynamic
/// registrations describe it.
pub fn client_metadata(app: &AppState) -> Value {
    serde_json::json!({
        "client_id": app.config.url(CLIENT_DOCUMENT_PATH),
        "client_name": format!("passgate at {}", app.config.public_host()),
        "client_uri": app.config.url("/"),
        "redirect_uris": [app.config.url(CALLBACK_PATH)],
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "none",
    })
}

/// The well-known URLs of `base` for `name`, path form first (RFC 8414 §3
/// and RFC 9728 §3.1 insert the suffix between host and path).
fn well_known(base: &Url, name: &str) -> Vec<Url> {
    let path = base.path().trim_end_matches('/');
    let mut urls = Vec::new();
    let mut with_path = base.clone();
    with_path.set_query(None);
    with_path.set_fragment(None);
    with_path.set_path(&format!("/.well-known/{name}{path}"));
    urls.push(with_path.clone());
    if !path.is_empty() {
        with_path.set_path(&format!("/.well-known/{name}"));
        urls.push(with_path);
    }
    urls
}

fn expiring(tokens: &BackendTokens) -> bool {
    tokens
        .expires_at
        .is_some_and(|at| at - REFRESH_MARGIN_SECS <= now_unix())
}

fn tokens_from(
    response: &oauth2::basic::BasicTokenResponse,
    previous_refresh: Option<&str>,
    registration: &Registration,
) -> BackendTokens {
    BackendTokens {
        access_token: response.access_token().secret().clone(),
        // A server that does not rotate keeps the refresh token as it was.
        refresh_token: response
            .refresh_token()
            .map(|t| t.secret().clone())
            .or(previous_refresh.map(str::to_owned)),
        expires_at: response
            .expires_in()
            .map(|d| now_unix() + i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2)),
        issuer: registration.issuer.clone(),
        client_id: registration.client_id.clone(),
    }
}

fn unavailable(what: &str, e: reqwest::Error) -> BackendAuthError {
    BackendAuthError::Unavailable(if e.is_timeout() {
        format!("{what} timed out")
    } else {
        format!("{what} failed: {:#}", anyhow::Error::from(e.without_url()))
    })
}

/// An error with its causes, as one line.
pub(super) fn describe<E: std::error::Error>(e: &E) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_urls_insert_the_suffix_before_the_path() {
        let with_path = Url::parse("https://mcp.example.com/tenant/mcp?x=1").unwrap();
        let urls: Vec<String> = well_known(&with_path, "oauth-protected-resource")
            .iter()
            .map(Url::to_string)
            .collect();
        assert_eq!(
            urls,
            [
                "https://mcp.example.com/.well-known/oauth-protected-resource/tenant/mcp",
                "https://mcp.example.com/.well-known/oauth-protected-resource",
            ]
        );
        let issuer = Url::parse("https://auth.example.com/").unwrap();
        let urls: Vec<String> = well_known(&issuer, "oauth-authorization-server")
            .iter()
            .map(Url::to_string)
            .collect();
        assert_eq!(
            urls,
            ["https://auth.example.com/.well-known/oauth-authorization-server"]
        );
    }

    #[test]
    fn tokens_are_refreshed_a_minute_before_they_expire_and_never_without_an_expiry() {
        let tokens = |expires_at| BackendTokens {
            access_token: "a".into(),
            refresh_token: None,
            expires_at,
            issuer: "https://auth.example.com".into(),
            client_id: "c".into(),
        };
        assert!(expiring(&tokens(Some(now_unix() + 30))));
        assert!(!expiring(&tokens(Some(now_unix() + 300))));
        assert!(!expiring(&tokens(None)));
    }
}
