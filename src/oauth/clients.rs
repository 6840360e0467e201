//! OAuth clients, known three ways: registered through Dynamic Client
//! Registration (RFC 7591), described by a Client ID Metadata Document (the
//! client id is an https URL, see [`super::cimd`]), or configured by the
//! operator. All three end up as a [`Client`].
//!
//! Keys: `client#<client_id>` / `client` for registrations, and a copy under
//! `clients` / `<client_id>` (written in the same transaction) so that the
//! operator can list them. A registration that never completes an
//! authorization expires after [`UNUSED_REGISTRATION_TTL_SECS`]; the first
//! issued token makes it (and its copy) permanent.

use serde::Deserialize;

use super::OAuthError;
pub use super::client::{
    Client, ClientSource, MAX_FIELD_LEN, redirect_uri_allowed, validate_redirect_uri,
};
use crate::{
    app::AppState,
    crypto,
    store::{NewItem, Store, StoreError, Write, now_unix},
};

pub const UNUSED_REGISTRATION_TTL_SECS: i64 = 7 * 24 * 3600;
const MAX_REDIRECT_URIS: usize = 10;

fn key(client_id: &str) -> String {
    crate::store::keys::Partition::Client(client_id).key()
}

/// The partition that lists every registration.
const LISTING: &str = crate::store::keys::CLIENT_LISTING;

/// Every live registration (not configured or metadata-document clients),
/// oldest id first.
pub async fn registered(store: &dyn Store) -> Result<Vec<Client>, StoreError> {
    store
        .list(LISTING)
        .await?
        .iter()
        .map(|item| item.json())
        .collect()
}

/// Deletes a registration and its listing entry.
pub async fn delete_registration(store: &dyn Store, client_id: &str) -> Result<(), StoreError> {
    store
        .transact(vec![
            Write::Delete {
                pk: key(client_id),
                sk: "client".into(),
            },
            Write::Delete {
                pk: LISTING.into(),
                sk: client_id.into(),
            },
        ])
        .await
}

/// Finds a client by id, fetching its metadata document if the id is a URL.
/// `caller` is the requester's rate-limit subject (see `cimd::resolve`).
pub async fn find(
    state: &AppState,
    client_id: &str,
    caller: &str,
) -> Result<Option<Client>, OAuthError> {
    if client_id.is_empty() || client_id.len() > MAX_FIELD_LEN {
        return Ok(None);
    }
    if let Some(c) = state
        .configured_clients
        .iter()
        .find(|c| c.client_id == client_id)
    {
        return Ok(Some(c.clone()));
    }
    if super::cimd::is_loopback_http(client_id) && !state.cimd.allows_loopback() {
        return Err(OAuthError::invalid_client(
            "the client metadata document is on this machine, over plain http",
        ));
    }
    if client_id.starts_with("https://") || super::cimd::is_loopback_http(client_id) {
        return super::cimd::resolve(&state.cimd, state.store.as_ref(), client_id, caller)
            .await
            .map(Some);
    }
    Ok(state.store.get_json(&key(client_id), "client").await?)
}

/// Makes a registration permanent once it has been used.
pub async fn mark_used(state: &AppState, client: &Client) -> Result<(), OAuthError> {
    if client.source != ClientSource::Registered {
        return Ok(());
    }
    if let Some(item) = state.store.get(&key(&client.client_id), "client").await?
        && item.expires_at.is_some()
    {
        let mut permanent = NewItem::new(item.pk.clone(), item.sk.clone(), item.value.clone());
        permanent.expires_at = None;
        let listed = NewItem::new(LISTING, client.client_id.clone(), item.value.clone());
        // Losing this race to a concurrent redemption is harmless.
        let _ = state
            .store
            .transact(vec![
                Write::Replace {
                    item: permanent,
                    expected_version: item.version,
                },
                Write::Put(listed),
            ])
            .await;
    }
    Ok(())
}

/// The body of a registration request. Unknown fields are ignored, as
/// RFC 7591 §2 asks.
#[derive(Debug, Deserialize)]
pub struct RegistrationRequest {
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    pub client_name: Option<String>,
    pub token_endpoint_auth_method: Option<String>,
    pub grant_types: Option<Vec<String>>,
    pub response_types: Option<Vec<String>>,
    pub application_type: Option<String>,
    pub scope: Option<String>,
}

/// Registers a client (RFC 7591). Returns the response body.
pub async fn register(
    state: &AppState,
    req: RegistrationRequest,
    registered_from: Option<String>,
) -> Result<serde_json::Value, OAuthError> {
    let invalid_metadata = |d: String| OAuthError::invalid_client_metadata(d);
    if req.redirect_uris.is_empty() {
        return Err(OAuthError::invalid_redirect_uri(
            "redirect_uris must list at least one redirect URI",
        ));
    }
    if req.redirect_uris.len() > MAX_REDIRECT_URIS {
        return Err(OAuthError::invalid_redirect_uri(format!(
            "at most {MAX_REDIRECT_URIS} redirect URIs"
        )));
    }
    for uri in &req.redirect_uris {
        validate_redirect_uri(uri).map_err(OAuthError::invalid_redirect_uri)?;
    }
    if let Some(types) = &req.grant_types
        && !types.iter().any(|t| t == "authorization_code")
    {
        return Err(invalid_metadata(
            "grant_types must include authorization_code".into(),
        ));
    }
    if let Some(types) = &req.response_types
        && !types.iter().all(|t| t == "code")
    {
        return Err(invalid_metadata(
            "only the `code` response type is supported".into(),
        ));
    }
    if let Some(kind) = &req.application_type
        && kind != "web"
        && kind != "native"
    {
        return Err(invalid_metadata(format!(
            "application_type must be `web` or `native`, not {kind:?}"
        )));
    }
    let auth_method = req
        .token_endpoint_auth_method
        .clone()
        .unwrap_or_else(|| "none".into());
    let secret = match auth_method.as_str() {
        "none" => None,
        "client_secret_basic" | "client_secret_post" => Some(crypto::random_token(32)),
        other => {
            return Err(invalid_metadata(format!(
                "token_endpoint_auth_method {other:?} is not supported; use none, client_secret_basic or client_secret_post"
            )));
        }
    };
    let client_name: String = req
        .client_name
        .as_deref()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .unwrap_or("Unnamed MCP client")
        .chars()
        .take(200)
        .collect();
    let now = now_unix();
    let client = Client {
        client_id: crypto::random_id(),
        client_name,
        redirect_uris: req.redirect_uris,
        source: ClientSource::Registered,
        secret_hash: secret.as_deref().map(crypto::token_hash),
        created_at: now,
        registered_from,
    };
    state
        .store
        .transact(vec![
            Write::Insert(
                NewItem::json(key(&client.client_id), "client", &client)?
                    .expires_in(UNUSED_REGISTRATION_TTL_SECS),
            ),
            Write::Put(
                NewItem::json(LISTING, client.client_id.clone(), &client)?
                    .expires_in(UNUSED_REGISTRATION_TTL_SECS),
            ),
        ])
        .await?;
    let mut body = serde_json::json!({
        "client_id": client.client_id,
        "client_id_issued_at": now,
        "client_name": client.client_name,
        "redirect_uris": client.redirect_uris,
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "token_endpoint_auth_method": auth_method,
    });
    if let Some(kind) = req.application_type {
        body["application_type"] = kind.into();
    }
    if let Some(scope) = req.scope.as_deref() {
        // What this client may get, not what it asked for (RFC 7591 §3.2.1:
        // the server may replace requested metadata values).
        body["scope"] =
            super::effective_scope(Some(scope), &state.resources.scopes_supported()).into();
    }
    if let Some(secret) = secret {
        body["client_secret"] = secret.into();
        body["client_secret_expires_at"] = 0.into();
    }
    Ok(body)
}

/// Client authentication at the token and revocation endpoints: public
/// clients send only their id; confidential ones prove their secret (HTTP
/// Basic or form post).
pub fn authenticate(
    client: &Client,
    basic_secret: Option<&str>,
    form_secret: Option<&str>,
) -> Result<(), OAuthError> {
    match &client.secret_hash {
        None => Ok(()),
        Some(hash) => {
            let presented = basic_secret
                .or(form_secret)
                .ok_or_else(|| OAuthError::invalid_client("client authentication required"))?;
            if crypto::constant_time_eq(&crypto::token_hash(presented), hash) {
                Ok(())
            } else {
                Err(OAuthError::invalid_client("client authentication failed"))
            }
        }
    }
}

/// Where a registration came from, for people telling installations apart:
/// the peer address and a short, printable `User-Agent`.
fn registration_origin(addr: crate::net::ClientAddr, headers: &http::HeaderMap) -> String {
    let agent: String = headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control())
        .take(60)
        .collect();
    match (addr.0, agent.trim()) {
        (Some(ip), "") => ip.to_string(),
        (Some(ip), agent) => format!("{ip}, {agent}"),
        (None, "") => "unknown address".into(),
        (None, agent) => agent.to_owned(),
    }
}

/// A registration by client id, if it exists (no metadata-document fetch).
pub async fn registration(
    store: &dyn Store,
    client_id: &str,
) -> Result<Option<Client>, StoreError> {
    store.get_json(&key(client_id), "client").await
}

/// `POST /register`
pub async fn register_handler(
    axum::extract::State(state): axum::extract::State<AppState>,
    addr: crate::net::ClientAddr,
    headers: http::HeaderMap,
    body: Result<axum::Json<RegistrationRequest>, axum::extract::rejection::JsonRejection>,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let from = registration_origin(addr, &headers);
    if let Err(e) = &body
        && e.status() == http::StatusCode::PAYLOAD_TOO_LARGE
    {
        return (
            http::StatusCode::PAYLOAD_TOO_LARGE,
            OAuthError::invalid_client_metadata("the registration is too large").into_response(),
        )
            .into_response();
    }
    let result = async {
        let axum::Json(req) = body.map_err(|e| {
            OAuthError::invalid_client_metadata(format!(
                "the registration must be a JSON object: {}",
                e.body_text()
            ))
        })?;
        crate::ratelimit::check(
            state.store.as_ref(),
            crate::ratelimit::LimitedAction::Register,
            &addr,
        )
        .await
        .map_err(|e| match e {
            // RFC 7591 §3.2.2 has no code for "too often"; the 429 and its
            // Retry-After say it, the code stays one the RFC defines.
            crate::error::Error::RateLimited => OAuthError {
                retry_after_secs: Some(crate::ratelimit::retry_after(
                    crate::ratelimit::LimitedAction::Register,
                )),
                ..OAuthError::invalid_client_metadata(
                    "too many registrations from this address; try again later",
                )
            },
            crate::error::Error::Store(e) => e.into(),
            other => OAuthError::server_error(other.to_string()),
        })?;
        register(&state, req, Some(from)).await
    }
    .await;
    match result {
        Ok(body) => (
            http::StatusCode::CREATED,
            [(http::header::CACHE_CONTROL, "no-store")],
            axum::Json(body),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(uris: &[&str]) -> Client {
        Client {
            client_id: "c".into(),
            client_name: "c".into(),
            redirect_uris: uris.iter().map(|s| s.to_string()).collect(),
            source: ClientSource::Registered,
            secret_hash: None,
            created_at: 0,
            registered_from: None,
        }
    }

    #[test]
    fn redirect_validation() {
        assert!(validate_redirect_uri("https://claude.ai/api/mcp/auth_callback").is_ok());
        assert!(validate_redirect_uri("http://127.0.0.1:33418/").is_ok());
        assert!(validate_redirect_uri("http://localhost:6274/oauth/callback").is_ok());
        assert!(
            validate_redirect_uri("cursor://anysphere.cursor-retrieval/oauth/callback").is_ok()
        );
        assert!(validate_redirect_uri("http://example.com/cb").is_err());
        assert!(validate_redirect_uri("https://example.com/cb#frag").is_err());
        assert!(validate_redirect_uri("https://user:pw@example.com/cb").is_err());
        assert!(validate_redirect_uri("javascript:alert(1)").is_err());
        assert!(validate_redirect_uri("/relative").is_err());
    }

    #[test]
    fn loopback_redirects_may_change_port_only() {
        let c = client(&["http://127.0.0.1:33418/callback", "https://app.example/cb"]);
        assert!(redirect_uri_allowed(&c, "http://127.0.0.1:33418/callback"));
        assert!(redirect_uris_allowed_port(&c));
        assert!(!redirect_uri_allowed(&c, "http://127.0.0.1:5000/other"));
        assert!(!redirect_uri_allowed(&c, "http://localhost:5000/callback"));
        assert!(!redirect_uri_allowed(&c, "https://app.example/cb2"));
        assert!(!redirect_uri_allowed(&c, "https://app.example:444/cb"));
        assert!(!redirect_uri_allowed(
            &c,
            "http://127.0.0.1:5000/callback#x"
        ));
    }

    fn redirect_uris_allowed_port(c: &Client) -> bool {
        redirect_uri_allowed(c, "http://127.0.0.1:5000/callback")
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        fn segment() -> impl Strategy<Value = String> {
            "[a-z0-9_-]{1,8}"
        }

        fn path() -> impl Strategy<Value = String> {
            prop::collection::vec(segment(), 0..4).prop_map(|s| format!("/{}", s.join("/")))
        }

        fn query() -> impl Strategy<Value = Option<String>> {
            prop::option::of("[a-z]{1,5}=[a-z0-9]{1,5}")
        }

        fn loopback_host() -> impl Strategy<Value = &'static str> {
            prop::sample::select(vec!["127.0.0.1", "localhost", "[::1]", "127.0.0.2"])
        }

        fn with_query(base: String, q: &Option<String>) -> String {
            match q {
                Some(q) => format!("{base}?{q}"),
                None => base,
            }
        }

        proptest! {
            /// RFC 8252 §7.3: a loopback redirect may come back on any
            /// port, and differs in nothing else.
            #[test]
            fn loopback_redirects_match_on_any_port(
                host in loopback_host(),
                registered_port in prop::option::of(1u16..),
                port in 1u16..,
                p in path(),
                q in query(),
            ) {
                let registered = with_query(
                    match registered_port {
                        Some(rp) => format!("http://{host}:{rp}{p}"),
                        None => format!("http://{host}{p}"),
                    },
                    &q,
                );
                prop_assert!(validate_redirect_uri(&registered).is_ok());
                let c = client(&[&registered]);
                let requested = with_query(format!("http://{host}:{port}{p}"), &q);
                prop_assert!(redirect_uri_allowed(&c, &requested), "{requested} for {registered}");
                // Anything else that differs is refused.
                for other in [
                    with_query(format!("http://{host}:{port}{p}x"), &q),
                    with_query(format!("http://{host}:{port}{p}/x"), &q),
                    format!("http://{host}:{port}{p}?other=1"),
                    with_query(format!("https://{host}:{port}{p}"), &q),
                    with_query(format!("http://{host}:{port}{p}"), &q) + "#frag",
                    with_query(format!("http://user@{host}:{port}{p}"), &q),
                    with_query(format!("http://{host}.evil.example:{port}{p}"), &q),
                ] {
                    prop_assert!(!redirect_uri_allowed(&c, &other), "{other} for {registered}");
                }
                let other_host = if host == "localhost" { "127.0.0.1" } else { "localhost" };
                let moved = with_query(format!("http://{other_host}:{port}{p}"), &q);
                prop_assert!(!redirect_uri_allowed(&c, &moved), "{moved} for {registered}");
            }

            /// Everything that is not a loopback http redirect is matched
            /// as an exact string: no port, case or path freedom.
            #[test]
            fn other_redirects_match_exactly(
                host in "[a-z]{1,10}\\.example",
                port in prop::option::of(1u16..),
                p in path(),
                q in query(),
                requested_port in 1u16..,
            ) {
                let authority = match port {
                    Some(port) => format!("{host}:{port}"),
                    None => host.clone(),
                };
                let registered = with_query(format!("https://{authority}{p}"), &q);
                let c = client(&[&registered]);
                prop_assert!(redirect_uri_allowed(&c, &registered));
                if port != Some(requested_port) {
                    let other_port = with_query(format!("https://{host}:{requested_port}{p}"), &q);
                    prop_assert!(!redirect_uri_allowed(&c, &other_port), "{other_port}");
                }
                let upper = registered.to_ascii_uppercase();
                if upper != registered {
                    prop_assert!(!redirect_uri_allowed(&c, &upper), "{upper}");
                }
                let http = registered.replacen("https://", "http://", 1);
                prop_assert!(!redirect_uri_allowed(&c, &http), "{http}");
            }

            /// Whatever string is presented, an accepted one is either a
            /// registered URI or a loopback http URL equal to one but for
            /// the port.
            #[test]
            fn only_registered_or_loopback_port_variants_are_accepted(
                requested in "[a-zA-Z0-9:/?#@.\\[\\]%_=&-]{0,40}",
                registered_port in 1u16..,
            ) {
                let registered = format!("http://127.0.0.1:{registered_port}/cb");
                let c = client(&[&registered, "https://app.example/cb"]);
                if redirect_uri_allowed(&c, &requested) && !c.redirect_uris.contains(&requested) {
                    let url = url::Url::parse(&requested).unwrap();
                    prop_assert_eq!(url.scheme(), "http");
                    prop_assert_eq!(url.host_str(), Some("127.0.0.1"));
                    prop_assert_eq!(url.path(), "/cb");
                    prop_assert_eq!(url.query(), None);
                    prop_assert_eq!(url.fragment(), None);
                    prop_assert_eq!(url.username(), "");
                }
            }
        }
    }
}
