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
/// How long a verification is remembered at most. Memory then holds the
/// tokens used in the last few minutes rather than every token issued in
/// the hour (the soak's resident memory grew with those, docs/reliability.md),
/// and a token in use is checked again once per this long: one ES256
/// verification (68 µs in docs/benchmarks.md) every five minutes.
const REMEMBER_SECS: i64 = 300;

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
    /// When this process stops trusting its memory of the check.
    until: i64,
}

#[derive(Default)]
pub struct VerifiedTokens {
    memo: Mutex<Memo>,
}

#[derive(Default)]
struct Memo {
    entries: HashMap<[u8; 32], Verified>,
    /// When entries past their time are next dropped.
    next_sweep: i64,
}

pub fn key(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl VerifiedTokens {
    pub fn get(&self, key: &[u8; 32]) -> Option<Verified> {
        self.get_at(key, now_unix())
    }

    fn get_at(&self, key: &[u8; 32], now: i64) -> Option<Verified> {
        let memo = self.memo.lock().ok()?;
        memo.entries.get(key).filter(|v| v.until > now).cloned()
    }

    pub fn insert(&self, key: [u8; 32], kid: &str, claims: &AccessClaims) {
        self.insert_at(key, kid, claims, now_unix());
    }

    fn insert_at(&self, key: [u8; 32], kid: &str, claims: &AccessClaims, now: i64) {
        let Ok(mut memo) = self.memo.lock() else {
            return;
        };
        // Entries past their time are dropped once in a while, not only
        // when the memo is full, so memory follows the tokens in use.
        if now >= memo.next_sweep || memo.entries.len() >= CAPACITY {
            memo.entries.retain(|_, v| v.until > now);
            memo.next_sweep = now + REMEMBER_SECS;
        }
        if memo.entries.len() >= CAPACITY {
            memo.entries.clear();
        }
        memo.entries.insert(
            key,
            Verified {
                kid: kid.to_owned(),
                sub: claims.sub.clone(),
                aud: claims.aud.clone(),
                client_id: claims.client_id.clone(),
                scope: claims.scope.clone(),
                fam: claims.fam.clone(),
                exp: claims.exp,
                until: claims.exp.min(now + REMEMBER_SECS),
            },
        );
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.memo.lock().unwrap().entries.len()
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
            assert!(memo.len() <= CAPACITY, "after {n}");
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
        assert_eq!(memo.len(), 2);
        assert!(memo.get(&key("live")).is_some());
        assert!(memo.get(&key("new")).is_some());
    }

    /// A token in use is checked again after `REMEMBER_SECS`, and the memo
    /// lets go of what was verified long ago although the token lives on:
    /// memory follows the tokens in use, not the tokens issued.
    #[test]
    fn a_verification_is_remembered_for_minutes_not_for_the_tokens_hour() {
        let memo = VerifiedTokens::default();
        let start = now_unix();
        let hour = start + 3600;
        for n in 0..100 {
            memo.insert_at(key(&format!("early-{n}")), "kid", &claims(n, hour), start);
        }
        assert!(
            memo.get_at(&key("early-0"), start + REMEMBER_SECS - 1)
                .is_some()
        );
        assert!(
            memo.get_at(&key("early-0"), start + REMEMBER_SECS)
                .is_none()
        );
        let later = start + REMEMBER_SECS + 1;
        memo.insert_at(key("later"), "kid", &claims(100, hour), later);
        assert_eq!(memo.len(), 1, "the early ones were dropped");
        // Never past the token's own expiry.
        memo.insert_at(key("short"), "kid", &claims(101, later + 10), later);
        assert!(memo.get_at(&key("short"), later + 10).is_none());
    }
}
