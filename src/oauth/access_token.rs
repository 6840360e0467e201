//! What an access token says: the claims passgate signs at `/token` and
//! checks at `/mcp`, apart from both so the verified-token memo can hold
//! them without importing the bearer middleware.

use serde::{Deserialize, Serialize};

/// Access-token claims (RFC 9068 plus `fam`, the grant the token belongs to).
#[derive(Debug, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    pub client_id: String,
    pub scope: String,
    pub fam: String,
}
