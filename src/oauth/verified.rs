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

use super::bearer::AccessClaims;
use crate::store::now_unix;

const CAPACITY: usize = 10_000;

#[derive(Clone)]
pub struct Verified {
    pub kid: String,
    pub sub: String,
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
                client_id: claims.client_id.clone(),
                scope: claims.scope.clone(),
                fam: claims.fam.clone(),
                exp: claims.exp,
            },
        );
    }
}
