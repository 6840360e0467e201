//! passgate as an OAuth 2.1 authorization server for MCP clients, and the
//! resource-server side that protects `/mcp`.
//!
//! Every piece of state a later request needs (registrations, pending
//! authorizations, codes, refresh tokens, grants, signing keys) is in the
//! store; nothing survives in process memory except the signing keys' cached
//! copy, which is refreshed from the store when an unknown key id appears.

pub mod access;
pub mod access_token;
pub mod authorize;
pub mod bearer;
pub mod cimd;
pub mod cli;
pub mod client;
pub mod clients;
pub mod codes;
pub mod grants;
pub mod keys;
pub mod metadata;
pub mod params;
pub mod resource;
pub mod revoke;
pub mod token;
pub mod verified;

use crate::telemetry::Fault;

/// The one scope passgate grants: use the MCP server's tools.
pub const SCOPE_MCP: &str = "mcp";
/// Access tokens are short-lived; refresh tokens carry the session.
pub const ACCESS_TOKEN_TTL_SECS: i64 = 3600;
/// A refresh token lives this long after it was issued; each rotation
/// issues a new one, so an active client stays signed in.
pub const REFRESH_TOKEN_TTL_SECS: i64 = 30 * 24 * 3600;
/// Authorization codes (RFC 6749 recommends at most ten minutes).
pub const CODE_TTL_SECS: i64 = 120;
/// How long a person has between `/authorize` and approving consent.
pub const PENDING_AUTHORIZATION_TTL_SECS: i64 = 15 * 60;
/// A client that sends the same code or refresh token twice within this
/// window (ChatGPT re-posts codes; Claude refreshes from two places at once)
/// gets the same answer again instead of having its session revoked.
pub const REPLAY_GRACE_SECS: i64 = 30;

/// Every OAuth error code passgate answers with (RFC 6749 §4.1.2.1 and
/// §5.2, RFC 7591 §3.2.2, RFC 8707 §2), serialised as the RFC's text. The
/// status each one gets is decided in `error.rs` alone, by an exhaustive
/// match, so a new code cannot be added without choosing its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OAuthErrorCode {
    InvalidRequest,
    InvalidClient,
    InvalidGrant,
    InvalidScope,
    InvalidTarget,
    UnsupportedGrantType,
    UnsupportedResponseType,
    AccessDenied,
    InvalidClientMetadata,
    InvalidRedirectUri,
    ServerError,
    TemporarilyUnavailable,
}

impl OAuthErrorCode {
    /// The code as the RFCs spell it: the `error` member of a JSON answer
    /// and the `error` parameter of an error redirect.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::InvalidScope => "invalid_scope",
            Self::InvalidTarget => "invalid_target",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::UnsupportedResponseType => "unsupported_response_type",
            Self::AccessDenied => "access_denied",
            Self::InvalidClientMetadata => "invalid_client_metadata",
            Self::InvalidRedirectUri => "invalid_redirect_uri",
            Self::ServerError => "server_error",
            Self::TemporarilyUnavailable => "temporarily_unavailable",
        }
    }
}

impl serde::Serialize for OAuthErrorCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl std::fmt::Display for OAuthErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An OAuth error (RFC 6749 §5.2, RFC 7591 §3.2.2, RFC 8707). Carries no
/// HTTP knowledge beyond the code; `error.rs` maps it to a response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {description}")]
pub struct OAuthError {
    pub code: OAuthErrorCode,
    pub description: String,
    /// Set when the request was refused for coming too often: the seconds
    /// until the client may try again (answered as 429 with `Retry-After`).
    pub retry_after_secs: Option<i64>,
    /// Our own fault behind a `server_error` or `temporarily_unavailable`:
    /// for the log only, never for the client.
    pub fault: Option<Fault>,
}

impl OAuthError {
    pub fn new(code: OAuthErrorCode, description: impl Into<String>) -> Self {
        Self {
            code,
            description: description.into(),
            retry_after_secs: None,
            fault: None,
        }
    }
    /// Too many requests from this caller. `temporarily_unavailable`
    /// tells a client to keep its credentials and retry later.
    pub fn rate_limited(d: impl Into<String>, retry_after_secs: i64) -> Self {
        Self {
            retry_after_secs: Some(retry_after_secs.max(1)),
            ..Self::temporarily_unavailable(d)
        }
    }
    pub fn invalid_request(d: impl Into<String>) -> Self {
        Self::new(OAuthErrorCode::InvalidRequest, d)
    }
    pub fn invalid_grant(d: impl Into<String>) -> Self {
        Self::new(OAuthErrorCode::InvalidGrant, d)
    }
    pub fn invalid_client(d: impl Into<String>) -> Self {
        Self::new(OAuthErrorCode::InvalidClient, d)
    }
    pub fn invalid_scope(d: impl Into<String>) -> Self {
        Self::new(OAuthErrorCode::InvalidScope, d)
    }
    pub fn invalid_target(d: impl Into<String>) -> Self {
        Self::new(OAuthErrorCode::InvalidTarget, d)
    }
    pub fn unsupported_grant_type(d: impl Into<String>) -> Self {
        Self::new(OAuthErrorCode::UnsupportedGrantType, d)
    }
    pub fn unsupported_response_type(d: impl Into<String>) -> Self {
        Self::new(OAuthErrorCode::UnsupportedResponseType, d)
    }
    pub fn access_denied(d: impl Into<String>) -> Self {
        Self::new(OAuthErrorCode::AccessDenied, d)
    }
    pub fn invalid_client_metadata(d: impl Into<String>) -> Self {
        Self::new(OAuthErrorCode::InvalidClientMetadata, d)
    }
    pub fn invalid_redirect_uri(d: impl Into<String>) -> Self {
        Self::new(OAuthErrorCode::InvalidRedirectUri, d)
    }
    pub fn server_error(d: impl Into<String>) -> Self {
        Self::new(OAuthErrorCode::ServerError, d)
    }
    pub fn temporarily_unavailable(d: impl Into<String>) -> Self {
        Self::new(OAuthErrorCode::TemporarilyUnavailable, d)
    }
    /// Attaches the fault behind this answer, for the log.
    pub fn with_fault(self, fault: Fault) -> Self {
        Self {
            fault: Some(fault),
            ..self
        }
    }
}

impl From<crate::store::StoreError> for OAuthError {
    fn from(e: crate::store::StoreError) -> Self {
        // Never `invalid_grant` for our own trouble: clients discard their
        // credentials on it.
        match e {
            crate::store::StoreError::Unavailable(_) => {
                Self::temporarily_unavailable("storage is busy; retry shortly").with_fault(
                    Fault::warn("store unavailable during an OAuth request", e.to_string()),
                )
            }
            other => Self::server_error("internal error; retry later").with_fault(Fault::error(
                "store error during an OAuth request",
                other.to_string(),
            )),
        }
    }
}

/// Parses a space-separated scope string, keeps the scopes some resource
/// supports (`supported`, see `resource::Resources::scopes_supported`), and
/// falls back to the default. Unknown scopes (Claude asks for `claudeai`)
/// are dropped rather than refused, as RFC 6749 §3.3 allows.
pub fn effective_scope(requested: Option<&str>, supported: &[String]) -> String {
    let mut known: Vec<&str> = Vec::new();
    for s in requested.unwrap_or("").split(' ') {
        if supported.iter().any(|k| k == s) && !known.contains(&s) {
            known.push(s);
        }
    }
    if known.is_empty() {
        SCOPE_MCP.to_owned()
    } else {
        known.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_are_spelled_as_the_rfcs_spell_them() {
        use OAuthErrorCode::*;
        let spelled = [
            (InvalidRequest, "invalid_request"),
            (InvalidClient, "invalid_client"),
            (InvalidGrant, "invalid_grant"),
            (InvalidScope, "invalid_scope"),
            (InvalidTarget, "invalid_target"),
            (UnsupportedGrantType, "unsupported_grant_type"),
            (UnsupportedResponseType, "unsupported_response_type"),
            (AccessDenied, "access_denied"),
            (InvalidClientMetadata, "invalid_client_metadata"),
            (InvalidRedirectUri, "invalid_redirect_uri"),
            (ServerError, "server_error"),
            (TemporarilyUnavailable, "temporarily_unavailable"),
        ];
        for (code, text) in spelled {
            assert_eq!(code.to_string(), text);
            assert_eq!(serde_json::to_value(code).unwrap(), text);
        }
    }

    #[test]
    fn scopes_are_lenient_with_unknown_ones() {
        let supported = [SCOPE_MCP.to_owned(), "notes.delete".to_owned()];
        assert_eq!(effective_scope(None, &supported), "mcp");
        assert_eq!(effective_scope(Some("claudeai"), &supported), "mcp");
        assert_eq!(
            effective_scope(Some("mcp offline_access"), &supported),
            "mcp"
        );
        assert_eq!(
            effective_scope(Some("notes.delete mcp notes.delete"), &supported),
            "notes.delete mcp"
        );
    }
}
