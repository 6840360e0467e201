//! passgate as an OAuth 2.1 authorization server for MCP clients, and the
//! resource-server side that protects `/mcp`.
//!
//! Every piece of state a later request needs (registrations, pending
//! authorizations, codes, refresh tokens, grants, signing keys) is in the
//! store; nothing survives in process memory except the signing keys' cached
//! copy, which is refreshed from the store when an unknown key id appears.

pub mod authorize;
pub mod bearer;
pub mod cimd;
pub mod cli;
pub mod clients;
pub mod grants;
pub mod keys;
pub mod metadata;
pub mod params;
pub mod revoke;
pub mod token;
pub mod verified;

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

/// An OAuth error (RFC 6749 §5.2, RFC 7591 §3.2.2, RFC 8707). Carries no
/// HTTP knowledge beyond the code; `error.rs` maps it to a response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {description}")]
pub struct OAuthError {
    pub code: &'static str,
    pub description: String,
    /// Set when the request was refused for coming too often: the seconds
    /// until the client may try again (answered as 429 with `Retry-After`).
    pub retry_after_secs: Option<i64>,
}

impl OAuthError {
    pub fn new(code: &'static str, description: impl Into<String>) -> Self {
        Self {
            code,
            description: description.into(),
            retry_after_secs: None,
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
        Self::new("invalid_request", d)
    }
    pub fn invalid_grant(d: impl Into<String>) -> Self {
        Self::new("invalid_grant", d)
    }
    pub fn invalid_client(d: impl Into<String>) -> Self {
        Self::new("invalid_client", d)
    }
    pub fn invalid_target(d: impl Into<String>) -> Self {
        Self::new("invalid_target", d)
    }
    pub fn server_error(d: impl Into<String>) -> Self {
        Self::new("server_error", d)
    }
    pub fn temporarily_unavailable(d: impl Into<String>) -> Self {
        Self::new("temporarily_unavailable", d)
    }
}

impl From<crate::store::StoreError> for OAuthError {
    fn from(e: crate::store::StoreError) -> Self {
        // Never `invalid_grant` for our own trouble: clients discard their
        // credentials on it.
        match e {
            crate::store::StoreError::Unavailable(_) => {
                tracing::warn!(error = %e, "store unavailable during an OAuth request");
                Self::temporarily_unavailable("storage is busy; retry shortly")
            }
            other => {
                tracing::error!(error = %other, "store error during an OAuth request");
                Self::server_error("internal error; retry later")
            }
        }
    }
}

/// Parses a space-separated scope string, keeps the scopes we know, and
/// falls back to the default. Unknown scopes (Claude asks for `claudeai`)
/// are dropped rather than refused, as RFC 6749 §3.3 allows.
pub fn effective_scope(requested: Option<&str>) -> String {
    let known: Vec<&str> = requested
        .unwrap_or("")
        .split(' ')
        .filter(|s| *s == SCOPE_MCP)
        .collect();
    if known.is_empty() {
        SCOPE_MCP.to_owned()
    } else {
        known.join(" ")
    }
}

/// True when `resource` names our MCP endpoint. Query parameters are
/// ignored because ChatGPT appends some; the scheme, host, port and path
/// must match exactly and a fragment is never allowed (RFC 8707 §2).
pub fn resource_matches(resource: &str, mcp_url: &str) -> bool {
    let (Ok(given), Ok(ours)) = (url::Url::parse(resource), url::Url::parse(mcp_url)) else {
        return false;
    };
    given.fragment().is_none()
        && given.scheme() == ours.scheme()
        && given.host() == ours.host()
        && given.port_or_known_default() == ours.port_or_known_default()
        && given.path().trim_end_matches('/') == ours.path()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_lenient_with_unknown_ones() {
        assert_eq!(effective_scope(None), "mcp");
        assert_eq!(effective_scope(Some("claudeai")), "mcp");
        assert_eq!(effective_scope(Some("mcp offline_access")), "mcp");
    }

    #[test]
    fn resource_matching() {
        let ours = "https://mcp.example.com/mcp";
        assert!(resource_matches("https://mcp.example.com/mcp", ours));
        assert!(resource_matches("https://mcp.example.com:443/mcp", ours));
        assert!(resource_matches(
            "https://mcp.example.com/mcp?chatgpt=1",
            ours
        ));
        assert!(resource_matches("https://mcp.example.com/mcp/", ours));
        assert!(!resource_matches("https://mcp.example.com/mcp#x", ours));
        assert!(!resource_matches("https://mcp.example.com/other", ours));
        assert!(!resource_matches("https://evil.example.com/mcp", ours));
        assert!(!resource_matches("http://mcp.example.com/mcp", ours));
        assert!(!resource_matches("not a url", ours));
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        proptest! {
            /// The same resource written differently still names it: case
            /// of scheme and host, an explicit default port, a trailing
            /// slash, an added query (ChatGPT adds some).
            #[test]
            fn canonical_variants_of_our_resource_match(
                host in "[a-z]{1,10}(\\.[a-z]{1,5}){0,2}",
                upper_scheme in any::<bool>(),
                upper_host in any::<bool>(),
                explicit_port in any::<bool>(),
                slash in any::<bool>(),
                query in prop::option::of("[a-z]{1,5}=[a-z0-9]{0,5}"),
            ) {
                let ours = format!("https://{host}/mcp");
                let scheme = if upper_scheme { "HTTPS" } else { "https" };
                let h = if upper_host { host.to_ascii_uppercase() } else { host.clone() };
                let port = if explicit_port { ":443" } else { "" };
                let slash = if slash { "/" } else { "" };
                let query = query.map(|q| format!("?{q}")).unwrap_or_default();
                let variant = format!("{scheme}://{h}{port}/mcp{slash}{query}");
                prop_assert!(resource_matches(&variant, &ours), "{}", variant);
            }

            /// Another scheme, host, port or path, or any fragment, names
            /// another resource.
            #[test]
            fn other_resources_do_not_match(
                host in "[a-z]{1,10}\\.example",
                other in "[a-z]{1,10}",
                port in 1u16..,
                fragment in "[a-z]{0,5}",
            ) {
                let ours = format!("https://{host}/mcp");
                let mut others = vec![
                    format!("http://{host}/mcp"),
                    format!("https://{other}.{host}/mcp"),
                    format!("https://{host}/mcp/{other}"),
                    format!("https://{host}/{other}"),
                    format!("https://{host}/mcp#{fragment}"),
                ];
                if port != 443 {
                    others.push(format!("https://{host}:{port}/mcp"));
                }
                for other in others {
                    prop_assert!(!resource_matches(&other, &ours), "{}", other);
                }
            }
        }
    }
}
