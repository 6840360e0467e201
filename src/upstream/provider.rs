//! The upstream OpenID provider as passgate's client sees it: discovery,
//! the JWKS, the code exchange and ID-token validation.
//!
//! The discovery document and the JWKS are configuration, not request
//! state: fetched once at start-up (again later only if that failed), kept
//! in memory, and the JWKS refetched when a token names an unknown key id
//! (at most once per [`JWKS_REFETCH_SECS`]). Every request to the provider
//! has a bounded timeout. Signatures are checked by `jsonwebtoken`.

use std::{
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant},
};

use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::JwkSet};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::config::UpstreamConfig;

/// An unknown key id triggers at most one JWKS fetch this often.
pub const JWKS_REFETCH_SECS: u64 = 30;
/// Clock skew tolerated on `exp`, `nbf` and `iat`.
const LEEWAY_SECS: u64 = 60;

/// What can go wrong talking to the provider. Messages are shown to the
/// person and logged; they never contain tokens, codes or state.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// Unreachable, too slow, or answering 5xx: try again later.
    #[error("{0}")]
    Unavailable(String),
    /// An answer we cannot accept (bad ID token, misconfiguration).
    #[error("{0}")]
    BadAnswer(String),
    /// The code was refused (expired, already used): start again.
    #[error("{0}")]
    Refused(String),
    /// The ID token belongs to another sign-in attempt.
    #[error("{0}")]
    Mismatch(String),
}

#[derive(Debug, Clone, Deserialize)]
pub struct Metadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    #[serde(default)]
    pub end_session_endpoint: Option<String>,
}

#[derive(Debug, Deserialize)]
struct TokenResponse {
    id_token: Option<String>,
}

#[derive(Debug, Deserialize)]
struct TokenErrorResponse {
    error: String,
}

pub struct Provider {
    pub config: UpstreamConfig,
    http: reqwest::Client,
    metadata: RwLock<Option<Arc<Metadata>>>,
    jwks: RwLock<Arc<JwkSet>>,
    /// When an unknown key id last caused a refetch (rate limit).
    last_jwks_fetch: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("issuer", &self.config.issuer)
            .finish_non_exhaustive()
    }
}

fn transport_error(what: &str, e: &reqwest::Error) -> UpstreamError {
    let why = if e.is_timeout() {
        "did not answer in time"
    } else if e.is_connect() {
        "could not be reached"
    } else {
        "did not give a usable answer"
    };
    UpstreamError::Unavailable(format!("The identity provider's {what} {why}."))
}

impl Provider {
    pub fn new(config: UpstreamConfig) -> anyhow::Result<Self> {
        let timeout = Duration::from_secs(config.timeout_secs);
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("passgate/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            config,
            http,
            metadata: RwLock::new(None),
            jwks: RwLock::new(Arc::new(JwkSet { keys: Vec::new() })),
            last_jwks_fetch: Mutex::new(None),
        })
    }

    /// Fetches discovery and JWKS at start-up. A failure is logged, not
    /// fatal: the provider may come up later, and sign-in retries then.
    pub async fn warm_up(&self) {
        match self.metadata().await {
            Ok(_) => tracing::info!(issuer = %self.config.issuer, "upstream provider discovered"),
            Err(e) => tracing::warn!(
                issuer = %self.config.issuer,
                error = %e,
                "upstream provider discovery failed; will retry at the next sign-in"
            ),
        }
    }

    /// The discovery document (fetched once, and with the JWKS).
    pub async fn metadata(&self) -> Result<Arc<Metadata>, UpstreamError> {
        if let Some(m) = self.metadata.read().expect("lock").clone() {
            return Ok(m);
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.config.issuer.trim_end_matches('/')
        );
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| transport_error("discovery document", &e))?;
        if !response.status().is_success() {
            return Err(UpstreamError::Unavailable(format!(
                "The identity provider's discovery document answered {}.",
                response.status()
            )));
        }
        let metadata: Metadata = response.json().await.map_err(|_| {
            UpstreamError::BadAnswer(
                "The identity provider's discovery document is not valid.".into(),
            )
        })?;
        if metadata.issuer != self.config.issuer {
            return Err(UpstreamError::BadAnswer(format!(
                "The identity provider calls itself {} in its discovery document, not the configured issuer.",
                metadata.issuer
            )));
        }
        let metadata = Arc::new(metadata);
        self.fetch_jwks(&metadata).await?;
        *self.metadata.write().expect("lock") = Some(metadata.clone());
        Ok(metadata)
    }

    async fn fetch_jwks(&self, metadata: &Metadata) -> Result<(), UpstreamError> {
        let response = self
            .http
            .get(&metadata.jwks_uri)
            .send()
            .await
            .map_err(|e| transport_error("key set", &e))?;
        if !response.status().is_success() {
            return Err(UpstreamError::Unavailable(format!(
                "The identity provider's key set answered {}.",
                response.status()
            )));
        }
        let jwks: JwkSet = response.json().await.map_err(|_| {
            UpstreamError::BadAnswer("The identity provider's key set is not valid.".into())
        })?;
        *self.jwks.write().expect("lock") = Arc::new(jwks);
        Ok(())
    }

    fn find_key(&self, kid: Option<&str>) -> Option<jsonwebtoken::jwk::Jwk> {
        let jwks = self.jwks.read().expect("lock").clone();
        match kid {
            Some(kid) => jwks.find(kid).cloned(),
            None if jwks.keys.len() == 1 => jwks.keys.first().cloned(),
            None => None,
        }
    }

    /// The key for `kid`, refetching the JWKS once (rate-limited) if unknown.
    async fn key_for(
        &self,
        metadata: &Metadata,
        kid: Option<&str>,
    ) -> Result<jsonwebtoken::jwk::Jwk, UpstreamError> {
        if let Some(key) = self.find_key(kid) {
            return Ok(key);
        }
        let may_refetch = self
            .last_jwks_fetch
            .lock()
            .expect("lock")
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(JWKS_REFETCH_SECS));
        if may_refetch {
            *self.last_jwks_fetch.lock().expect("lock") = Some(Instant::now());
            self.fetch_jwks(metadata).await?;
            if let Some(key) = self.find_key(kid) {
                return Ok(key);
            }
        }
        Err(UpstreamError::BadAnswer(
            "The identity provider signed its answer with a key it does not publish.".into(),
        ))
    }

    /// The authorization URL to send the browser to.
    pub fn authorization_url(
        &self,
        metadata: &Metadata,
        redirect_uri: &str,
        state: &str,
        nonce: &str,
        code_challenge: &str,
    ) -> Result<String, UpstreamError> {
        let mut url = url::Url::parse(&metadata.authorization_endpoint).map_err(|_| {
            UpstreamError::BadAnswer(
                "The identity provider's authorization endpoint is not a URL.".into(),
            )
        })?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", &self.config.client_id)
                .append_pair("redirect_uri", redirect_uri)
                .append_pair("scope", &self.config.scopes)
                .append_pair("state", state)
                .append_pair("nonce", nonce)
                .append_pair("code_challenge", code_challenge)
                .append_pair("code_challenge_method", "S256");
            for (k, v) in &self.config.extra_authorize_params {
                q.append_pair(k, v);
            }
        }
        Ok(url.into())
    }

    /// Redeems the code and returns the validated ID token's claims.
    pub async fn exchange(
        &self,
        code: &str,
        redirect_uri: &str,
        code_verifier: &str,
        nonce: &str,
    ) -> Result<Map<String, Value>, UpstreamError> {
        let metadata = self.metadata().await?;
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", code_verifier),
            ("client_id", self.config.client_id.as_str()),
        ];
        let mut request = self.http.post(&metadata.token_endpoint).form(&form);
        if let Some(secret) = &self.config.client_secret {
            // RFC 6749 §2.3.1: form-encode both before Basic.
            let enc = |s: &str| -> String {
                url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
            };
            request = request.basic_auth(enc(&self.config.client_id), Some(enc(secret)));
        }
        let response = request
            .send()
            .await
            .map_err(|e| transport_error("token endpoint", &e))?;
        let status = response.status();
        if status.is_server_error() {
            return Err(UpstreamError::Unavailable(format!(
                "The identity provider's token endpoint answered {status}."
            )));
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| transport_error("token endpoint", &e))?;
        if !status.is_success() {
            let error = serde_json::from_slice::<TokenErrorResponse>(&body)
                .map(|e| e.error)
                .unwrap_or_else(|_| status.to_string());
            return Err(if error == "invalid_grant" {
                UpstreamError::Refused(
                    "The identity provider refused the sign-in (it expired or was already used)."
                        .into(),
                )
            } else {
                UpstreamError::BadAnswer(format!(
                    "The identity provider refused passgate's code exchange ({error}); check passgate's client id and secret there."
                ))
            });
        }
        let tokens: TokenResponse = serde_json::from_slice(&body).map_err(|_| {
            UpstreamError::BadAnswer(
                "The identity provider's token answer is not valid JSON.".into(),
            )
        })?;
        let id_token = tokens.id_token.ok_or_else(|| {
            UpstreamError::BadAnswer(
                "The identity provider sent no ID token (is the openid scope allowed?).".into(),
            )
        })?;
        self.validate_id_token(&metadata, &id_token, nonce).await
    }

    /// Checks signature, issuer, audience, expiry, `azp` and nonce.
    pub async fn validate_id_token(
        &self,
        metadata: &Metadata,
        id_token: &str,
        nonce: &str,
    ) -> Result<Map<String, Value>, UpstreamError> {
        let bad = |why: &str| {
            UpstreamError::BadAnswer(format!(
                "The identity provider's ID token could not be accepted: {why}."
            ))
        };
        let header = jsonwebtoken::decode_header(id_token).map_err(|_| bad("it is not a JWT"))?;
        if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
            return Err(bad(
                "it is signed with an algorithm passgate does not accept",
            ));
        }
        let jwk = self.key_for(metadata, header.kid.as_deref()).await?;
        let key = DecodingKey::from_jwk(&jwk).map_err(|_| bad("the provider's key is unusable"))?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[self.config.issuer.as_str()]);
        validation.set_audience(&[self.config.client_id.as_str()]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        let data = jsonwebtoken::decode::<Map<String, Value>>(id_token, &key, &validation)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                match e.kind() {
                    ErrorKind::ExpiredSignature => bad("it has expired"),
                    ErrorKind::InvalidIssuer => bad("it was issued by someone else"),
                    ErrorKind::InvalidAudience => bad("it is meant for another client"),
                    ErrorKind::InvalidSignature => bad("its signature is not valid"),
                    ErrorKind::ImmatureSignature => bad("it is not valid yet"),
                    _ => bad("it is malformed"),
                }
            })?;
        let claims = data.claims;
        if let Some(Value::Array(auds)) = claims.get("aud")
            && auds.len() > 1
            && claims.get("azp").and_then(Value::as_str) != Some(self.config.client_id.as_str())
        {
            return Err(bad(
                "it names several audiences but not passgate as the authorized party",
            ));
        }
        let token_nonce = claims.get("nonce").and_then(Value::as_str).unwrap_or("");
        if !crate::crypto::constant_time_eq(token_nonce, nonce) {
            return Err(UpstreamError::Mismatch(
                "The identity provider's ID token belongs to another sign-in attempt (nonce mismatch).".into(),
            ));
        }
        Ok(claims)
    }

    /// Where to send the browser to sign out upstream too (Cognito's
    /// logout endpoint, or the provider's `end_session_endpoint`).
    pub fn logout_url(&self, return_to: &str) -> Option<String> {
        let mut url = match (&self.config.domain, self.config.preset) {
            (Some(domain), crate::config::UpstreamPreset::Cognito) => {
                let mut u = url::Url::parse(&format!("{domain}/logout")).ok()?;
                u.query_pairs_mut()
                    .append_pair("client_id", &self.config.client_id)
                    .append_pair("logout_uri", return_to);
                return Some(u.into());
            }
            _ => {
                let m = self.metadata.read().expect("lock").clone()?;
                url::Url::parse(m.end_session_endpoint.as_deref()?).ok()?
            }
        };
        url.query_pairs_mut()
            .append_pair("client_id", &self.config.client_id)
            .append_pair("post_logout_redirect_uri", return_to);
        Some(url.into())
    }
}
