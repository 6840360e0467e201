//! A bounded, per-process memo of access tokens whose signature and claims
//! have been verified, keyed by the token's SHA-256. MCP clients send the
//! same token for an hour of calls; checking its ES256 signature each time
//! was most of a request's CPU (docs/benchmarks.md). Only successes are
//! remembered, until the token's own expiry, and only while the signing key
//! is still known; the grant is still read from the store on every call, so
//! revocation stays immediate. Losing the memo (a restart, another
//! instance) only costs one verification.

use std::{collections::HashMap, sync::Mutex};

use sha2::{Digest, Sha256};

use super::access_token::AccessClaims;
use crate::store::now_unix;

const CAPACITY: usize = 10_000;

#[derive(Clone)]
pub struct Verified {
    pub kid: String,
    pub sub: String,
    /// The audience: the one resource the token was verified for.
    pub aud: String,
    pub client_id: String,
    pub scope: String,
    pub fam: String,
    pub exp: i64,
}

#[derive(Default)]
pub struct VerifiedTokens {
    entries: Mutex<HashMap<[u8; 32], Verified>>,
}

pub fn key(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl VerifiedTokens {
    pub fn get(&self, key: &[u8; 32]) -> Option<Verified> {
        let entries = self.entries.lock().ok()?;
        entries.get(key).filter(|v| v.exp > now_unix()).cloned()
    }

    pub fn insert(&self, key: [u8; 32], kid: &str, claims: &AccessClaims) {
        let Ok(mut entries) = self.entries.lock() else {
            return;
        };
        if entries.len() >= CAPACITY {
            let now = now_unix();
            entries.retain(|_, v| v.exp > now);
            if entries.len() >= CAPACITY {
                entries.clear();
            }
        }
        entries.insert(
            key,
            Verified {
                kid: kid.to_owned(),
                sub: claims.sub.clone(),
                aud: claims.aud.clone(),
                client_id: claims.client_id.clone(),
                scope: claims.scope.clone(),
                fam: claims.fam.clone(),
                exp: claims.exp,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(n: usize, exp: i64) -> AccessClaims {
        AccessClaims {
            iss: String::new(),
            sub: format!("user-{n}"),
            aud: String::new(),
            exp,
            iat: 0,
            jti: String::new(),
            client_id: "client".into(),
            scope: "mcp".into(),
            fam: format!("family-{n}"),
        }
    }

    /// A long run mints far more tokens than the memo holds: its memory is
    /// bounded by the capacity, live tokens or not.
    #[test]
    fn the_memo_never_holds_more_than_its_capacity() {
        let memo = VerifiedTokens::default();
        let live = now_unix() + 3600;
        for n in 0..CAPACITY * 2 + 7 {
            memo.insert(key(&format!("token-{n}")), "kid", &claims(n, live));
            assert!(memo.entries.lock().unwrap().len() <= CAPACITY, "after {n}");
        }
        let last = key(&format!("token-{}", CAPACITY * 2 + 6));
        assert_eq!(
            memo.get(&last).map(|v| v.sub),
            Some(format!("user-{}", CAPACITY * 2 + 6))
        );
    }

    /// Expired entries make room first, so live ones survive a full memo.
    #[test]
    fn a_full_memo_drops_expired_tokens_before_live_ones() {
        let memo = VerifiedTokens::default();
        let now = now_unix();
        memo.insert(key("live"), "kid", &claims(0, now + 3600));
        for n in 1..CAPACITY {
            memo.insert(key(&format!("old-{n}")), "kid", &claims(n, now - 1));
        }
        memo.insert(key("new"), "kid", &claims(CAPACITY, now + 3600));
        assert_eq!(memo.entries.lock().unwrap().len(), 2);
        assert!(memo.get(&key("live")).is_some());
        assert!(memo.get(&key("new")).is_some());
    }
}
