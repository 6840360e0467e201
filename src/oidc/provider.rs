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

use crate::config::OidcConfig;

/// An unknown key id triggers at most one JWKS fetch this often.
pub const JWKS_REFETCH_SECS: u64 = 30;
/// Clock skew tolerated on `exp`, `nbf` and `iat`.
const LEEWAY_SECS: u64 = 60;

/// What can go wrong talking to the provider. Messages are shown to the
/// person and logged; they never contain tokens, codes or state.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
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
    /// RFC 9207: the provider puts `iss` in every authorization response.
    #[serde(default, deserialize_with = "lenient::flag")]
    pub authorization_response_iss_parameter_supported: bool,
    /// Absent means `client_secret_basic` (OpenID Connect Discovery §3).
    #[serde(default, deserialize_with = "lenient::strings")]
    pub token_endpoint_auth_methods_supported: Option<Vec<String>>,
}

/// Optional discovery fields read without failing: a provider that types
/// one oddly must not make its whole document unusable.
mod lenient {
    use serde::{Deserialize, Deserializer};
    use serde_json::Value;

    pub fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        Ok(matches!(Value::deserialize(d)?, Value::Bool(true)))
    }

    pub fn strings<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
        Ok(match Value::deserialize(d)? {
            Value::Array(items) => Some(
                items
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect(),
            ),
            _ => None,
        })
    }
}

/// The issuer Google's discovery document names; its ID tokens carry
/// either this or [`GOOGLE_ISSUER_WITHOUT_SCHEME`] as `iss`, as Google
/// documents ("Validating an ID token", OpenID Connect on Google Identity).
pub const GOOGLE_ISSUER: &str = "https://accounts.google.com";
pub const GOOGLE_ISSUER_WITHOUT_SCHEME: &str = "accounts.google.com";

#[derive(Debug, Deserialize)]
struct TokenResponse {
    id_token: Option<String>,
}

#[derive(Debug, Deserialize)]
struct TokenErrorResponse {
    error: String,
}

pub struct Provider {
    pub config: OidcConfig,
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

fn transport_error(what: &str, e: &reqwest::Error) -> OidcError {
    let why = if e.is_timeout() {
        "did not answer in time"
    } else if e.is_connect() {
        "could not be reached"
    } else {
        "did not give a usable answer"
    };
    OidcError::Unavailable(format!("The identity provider's {what} {why}."))
}

impl Provider {
    pub fn new(config: OidcConfig) -> anyhow::Result<Self> {
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

    /// Fetches discovery and JWKS at start-up. An unreachable provider is
    /// logged, not fatal: it may come up later, and sign-in retries then.
    /// A provider that answers and contradicts the configuration is an
    /// error: no sign-in could work, so passgate should not start.
    pub async fn warm_up(&self) -> Result<(), OidcError> {
        match self.metadata().await {
            Ok(_) => {
                tracing::info!(issuer = %self.config.issuer, "upstream provider discovered");
                Ok(())
            }
            Err(OidcError::Unavailable(e)) => {
                tracing::warn!(
                    issuer = %self.config.issuer,
                    error = %e,
                    "upstream provider discovery failed; will retry at the next sign-in"
                );
                Ok(())
            }
            Err(e) => {
                tracing::error!(
                    issuer = %self.config.issuer,
                    error = %e,
                    "the upstream provider contradicts passgate's configuration; nobody could sign in"
                );
                Err(e)
            }
        }
    }

    /// The `iss` values accepted in ID tokens: the configured issuer, and
    /// for Google exactly the scheme-less form Google documents.
    pub fn accepted_id_token_issuers(&self) -> Vec<&str> {
        let mut issuers = vec![self.config.issuer.as_str()];
        if self.config.issuer == GOOGLE_ISSUER {
            issuers.push(GOOGLE_ISSUER_WITHOUT_SCHEME);
        }
        issuers
    }

    /// RFC 9207 §2.4: a provider that advertises `iss` in authorization
    /// responses must send its own; any `iss` that is present must match,
    /// advertised or not (it tells apart answers from another provider).
    pub fn check_response_issuer(
        &self,
        metadata: &Metadata,
        iss: Option<&str>,
    ) -> Result<(), OidcError> {
        match iss {
            Some(iss) if iss == metadata.issuer => Ok(()),
            Some(_) => Err(OidcError::Mismatch(
                "This sign-in answer names another identity provider than the one passgate sent you to (iss mismatch). Start signing in again.".into(),
            )),
            None if metadata.authorization_response_iss_parameter_supported => {
                Err(OidcError::Mismatch(
                    "This sign-in answer lacks the identity provider's name (iss), which the provider always sends. Start signing in again.".into(),
                ))
            }
            None => Ok(()),
        }
    }

    /// What the discovery document must agree with in the configuration.
    fn check_metadata(&self, metadata: &Metadata) -> Result<(), OidcError> {
        let configured = self.config.issuer.as_str();
        if metadata.issuer != configured {
            let hint = if configured.trim_end_matches('/') == metadata.issuer {
                format!(
                    " Remove the trailing slash: --oidc-issuer {}",
                    metadata.issuer
                )
            } else if metadata.issuer.trim_end_matches('/') == configured {
                format!(" Add the trailing slash: --oidc-issuer {}", metadata.issuer)
            } else {
                " Set --oidc-issuer to the issuer the provider names.".to_owned()
            };
            return Err(OidcError::BadAnswer(format!(
                "The identity provider calls itself {} in its discovery document, not {configured} as configured; its ID tokens would never match.{hint}",
                metadata.issuer
            )));
        }
        if self.config.client_secret.is_none() {
            let methods = metadata
                .token_endpoint_auth_methods_supported
                .clone()
                .unwrap_or_else(|| vec!["client_secret_basic".into()]);
            if !methods.iter().any(|m| m == "none") {
                return Err(OidcError::BadAnswer(format!(
                    "The identity provider accepts only authenticated clients at its token endpoint ({}), and passgate has no client secret: set --oidc-client-secret (PASSGATE_OIDC_CLIENT_SECRET).",
                    methods.join(", ")
                )));
            }
        }
        Ok(())
    }

    /// The discovery document (fetched once, and with the JWKS).
    pub async fn metadata(&self) -> Result<Arc<Metadata>, OidcError> {
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
        let status = response.status();
        if status.is_client_error() && !matches!(status.as_u16(), 408 | 429) {
            // The provider answers, but has no discovery document there.
            return Err(OidcError::BadAnswer(format!(
                "There is no OpenID discovery document at {url} (it answered {status}); check --oidc-issuer."
            )));
        }
        if !status.is_success() {
            return Err(OidcError::Unavailable(format!(
                "The identity provider's discovery document answered {status}."
            )));
        }
        let metadata: Metadata = response.json().await.map_err(|_| {
            OidcError::BadAnswer("The identity provider's discovery document is not valid.".into())
        })?;
        self.check_metadata(&metadata)?;
        let metadata = Arc::new(metadata);
        self.fetch_jwks(&metadata).await?;
        *self.metadata.write().expect("lock") = Some(metadata.clone());
        Ok(metadata)
    }

    async fn fetch_jwks(&self, metadata: &Metadata) -> Result<(), OidcError> {
        let response = self
            .http
            .get(&metadata.jwks_uri)
            .send()
            .await
            .map_err(|e| transport_error("key set", &e))?;
        if !response.status().is_success() {
            return Err(OidcError::Unavailable(format!(
                "The identity provider's key set answered {}.",
                response.status()
            )));
        }
        let jwks: JwkSet = response.json().await.map_err(|_| {
            OidcError::BadAnswer("The identity provider's key set is not valid.".into())
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
    ) -> Result<jsonwebtoken::jwk::Jwk, OidcError> {
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
        Err(OidcError::BadAnswer(
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
    ) -> Result<String, OidcError> {
        let mut url = url::Url::parse(&metadata.authorization_endpoint).map_err(|_| {
            OidcError::BadAnswer(
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
    ) -> Result<Map<String, Value>, OidcError> {
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
            return Err(OidcError::Unavailable(format!(
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
            return Err(
                if error == crate::oauth::OAuthErrorCode::InvalidGrant.as_str() {
                    OidcError::Refused(
                    "The identity provider refused the sign-in (it expired or was already used)."
                        .into(),
                )
                } else {
                    OidcError::BadAnswer(format!(
                        "The identity provider refused passgate's code exchange ({error}); check passgate's client id and secret there."
                    ))
                },
            );
        }
        let tokens: TokenResponse = serde_json::from_slice(&body).map_err(|_| {
            OidcError::BadAnswer("The identity provider's token answer is not valid JSON.".into())
        })?;
        let id_token = tokens.id_token.ok_or_else(|| {
            OidcError::BadAnswer(
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
    ) -> Result<Map<String, Value>, OidcError> {
        let bad = |why: &str| {
            OidcError::BadAnswer(format!(
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
        validation.set_issuer(&self.accepted_id_token_issuers());
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
            return Err(OidcError::Mismatch(
                "The identity provider's ID token belongs to another sign-in attempt (nonce mismatch).".into(),
            ));
        }
        Ok(claims)
    }

    /// Where to send the browser to sign out upstream too (Cognito's
    /// logout endpoint, or the provider's `end_session_endpoint`).
    pub fn logout_url(&self, return_to: &str) -> Option<String> {
        let mut url = match (&self.config.domain, self.config.preset) {
            (Some(domain), crate::config::OidcPreset::Cognito) => {
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

#[cfg(test)]
mod tests {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    use jsonwebtoken::{EncodingKey, Header};
    use p256::{ecdsa::SigningKey, elliptic_curve::sec1::Coordinates, pkcs8::EncodePrivateKey};
    use serde_json::json;

    use super::*;
    use crate::config::OidcPreset;

    fn config(issuer: &str) -> OidcConfig {
        OidcConfig {
            issuer: issuer.into(),
            client_id: "passgate".into(),
            client_secret: Some("s".into()),
            scopes: "openid".into(),
            name: "Test".into(),
            preset: OidcPreset::Generic,
            domain: None,
            extra_authorize_params: Vec::new(),
            subject_claim: "sub".into(),
            allowed_emails: Vec::new(),
            allowed_domains: Vec::new(),
            allowed_groups: Vec::new(),
            admin_emails: Vec::new(),
            admin_groups: Vec::new(),
            groups_claim: "groups".into(),
            timeout_secs: 1,
            state_ttl_secs: 60,
        }
    }

    /// A provider for `issuer` that knows one ES256 key, and that key.
    fn provider_with_key(issuer: &str) -> (Provider, EncodingKey, Metadata) {
        crate::crypto::install_jwt_crypto();
        let signing = SigningKey::random(&mut rand::rngs::OsRng);
        let point = signing.verifying_key().to_encoded_point(false);
        let Coordinates::Uncompressed { x, y } = point.coordinates() else {
            unreachable!("an uncompressed point")
        };
        let jwks: JwkSet = serde_json::from_value(json!({"keys": [{
            "kty": "EC", "crv": "P-256", "kid": "k1", "alg": "ES256", "use": "sig",
            "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y),
        }]}))
        .unwrap();
        let provider = Provider::new(config(issuer)).unwrap();
        *provider.jwks.write().unwrap() = Arc::new(jwks);
        let metadata: Metadata = serde_json::from_value(json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/auth"),
            "token_endpoint": format!("{issuer}/token"),
            "jwks_uri": format!("{issuer}/jwks"),
        }))
        .unwrap();
        let der = signing.to_pkcs8_der().unwrap();
        (provider, EncodingKey::from_ec_der(der.as_bytes()), metadata)
    }

    fn id_token(key: &EncodingKey, iss: &str) -> String {
        let now = crate::store::now_unix();
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("k1".into());
        let claims = json!({
            "iss": iss, "aud": "passgate", "sub": "person", "nonce": "n",
            "iat": now, "exp": now + 300,
        });
        jsonwebtoken::encode(&header, &claims, key).unwrap()
    }

    #[test]
    fn odd_optional_discovery_fields_do_not_spoil_the_document() {
        let base = json!({
            "issuer": "https://idp.example",
            "authorization_endpoint": "https://idp.example/auth",
            "token_endpoint": "https://idp.example/token",
            "jwks_uri": "https://idp.example/jwks",
        });
        let mut odd = base.clone();
        odd["authorization_response_iss_parameter_supported"] = json!("yes");
        odd["token_endpoint_auth_methods_supported"] = json!("client_secret_basic");
        let m: Metadata = serde_json::from_value(odd).unwrap();
        assert!(!m.authorization_response_iss_parameter_supported);
        assert!(m.token_endpoint_auth_methods_supported.is_none());
        let mut good = base;
        good["authorization_response_iss_parameter_supported"] = json!(true);
        good["token_endpoint_auth_methods_supported"] = json!(["none", 3]);
        let m: Metadata = serde_json::from_value(good).unwrap();
        assert!(m.authorization_response_iss_parameter_supported);
        assert_eq!(m.token_endpoint_auth_methods_supported.unwrap(), ["none"]);
    }

    #[tokio::test]
    async fn google_tokens_may_name_the_issuer_without_scheme_and_nobody_else_may() {
        let (google, key, metadata) = provider_with_key(GOOGLE_ISSUER);
        for iss in [GOOGLE_ISSUER, GOOGLE_ISSUER_WITHOUT_SCHEME] {
            let claims = google
                .validate_id_token(&metadata, &id_token(&key, iss), "n")
                .await
                .unwrap_or_else(|e| panic!("{iss}: {e}"));
            assert_eq!(claims["sub"], "person");
        }
        for iss in [
            "http://accounts.google.com",
            "https://accounts.google.com/",
            "accounts.google.com.evil.example",
            "https://evil.example",
        ] {
            let refused = google
                .validate_id_token(&metadata, &id_token(&key, iss), "n")
                .await;
            assert!(
                matches!(&refused, Err(OidcError::BadAnswer(m)) if m.contains("issued by someone else")),
                "{iss}: {refused:?}"
            );
        }
        // Another provider gets no scheme-less alias.
        let (other, key, metadata) = provider_with_key("https://idp.example");
        assert!(
            other
                .validate_id_token(&metadata, &id_token(&key, "idp.example"), "n")
                .await
                .is_err()
        );
        other
            .validate_id_token(&metadata, &id_token(&key, "https://idp.example"), "n")
            .await
            .unwrap();
    }
}
