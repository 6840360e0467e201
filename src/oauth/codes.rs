//! Authorization codes as stored: what a code stands for, and the record
//! of a first redemption that codes and refresh tokens share. Apart from
//! `authorize` (which issues codes) and `token` (which redeems them), so
//! neither imports the other.

use serde::{Deserialize, Serialize};

/// What a code stands for; stored under the code's hash.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CodeGrant {
    pub client_id: String,
    pub client_name: String,
    pub redirect_uri: String,
    #[serde(default)]
    pub redirect_uri_sent: bool,
    pub code_challenge: String,
    pub scope: String,
    pub resource: String,
    pub user_id: String,
    /// The token family created with the code (see `grants`); empty for
    /// codes issued before families were created at approval, which no
    /// longer redeem.
    #[serde(default)]
    pub family: String,
    /// Set by the first successful redemption (see `token.rs`).
    #[serde(default)]
    pub redeemed: Option<Redeemed>,
}

pub fn code_key(code: &str) -> String {
    crate::store::keys::Partition::Code(code).key()
}

/// The first redemption of a code or refresh token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Redeemed {
    pub at: i64,
    pub family: String,
    /// The token response, sealed with the item key as context.
    pub sealed_response: String,
}
