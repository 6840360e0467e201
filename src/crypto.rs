//! Small, well-known building blocks over audited crates: random tokens,
//! token hashing, constant-time comparison, and authenticated encryption
//! under the master secret. No primitive is implemented here.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chacha20poly1305::{
    XChaCha20Poly1305, XNonce,
    aead::{Aead, KeyInit, Payload},
};
use hkdf::Hkdf;
use rand::{RngCore, rngs::OsRng};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A URL-safe random token carrying `bytes` bytes of entropy.
pub fn random_token(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    OsRng.fill_bytes(&mut buf);
    URL_SAFE_NO_PAD.encode(buf)
}

/// 128-bit random identifier.
pub fn random_id() -> String {
    random_token(16)
}

/// The stored form of a secret token: its SHA-256, base64url. Tokens carry
/// 256 bits of entropy, so an unsalted hash is enough to make a leaked
/// database useless for presenting them.
pub fn token_hash(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()))
}

/// PKCE S256 transform (RFC 7636 §4.2).
pub fn pkce_s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// The master secret. Every use derives its own key with HKDF, so the same
/// secret never encrypts two kinds of data under one key.
#[derive(Clone)]
pub struct MasterKey {
    ikm: Vec<u8>,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

#[derive(Debug, thiserror::Error)]
#[error("could not decrypt stored secret (wrong master key or corrupt data)")]
pub struct DecryptError;

impl MasterKey {
    /// Accepts any secret of at least 32 characters.
    pub fn from_secret(secret: &str) -> Result<Self, String> {
        let secret = secret.trim();
        if secret.len() < 32 {
            return Err("the master key must be at least 32 characters".into());
        }
        Ok(Self {
            ikm: secret.as_bytes().to_vec(),
        })
    }

    pub fn generate_secret() -> String {
        random_token(32)
    }

    fn cipher(&self, purpose: &str) -> XChaCha20Poly1305 {
        let hk = Hkdf::<Sha256>::new(Some(b"passgate master key v1"), &self.ikm);
        let mut key = [0u8; 32];
        hk.expand(purpose.as_bytes(), &mut key)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        XChaCha20Poly1305::new(&key.into())
    }

    /// Encrypts `plaintext` for `purpose`; `context` (such as the item's key)
    /// is authenticated, so a ciphertext cannot be moved to another item.
    pub fn seal(&self, purpose: &str, context: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; 24];
        OsRng.fill_bytes(&mut nonce);
        let ciphertext = self
            .cipher(purpose)
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: context,
                },
            )
            .expect("XChaCha20-Poly1305 encryption does not fail for in-memory buffers");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ciphertext);
        out
    }

    pub fn open(
        &self,
        purpose: &str,
        context: &[u8],
        sealed: &[u8],
    ) -> Result<Vec<u8>, DecryptError> {
        if sealed.len() < 24 {
            return Err(DecryptError);
        }
        let (nonce, ciphertext) = sealed.split_at(24);
        self.cipher(purpose)
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: context,
                },
            )
            .map_err(|_| DecryptError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_matches_rfc7636_appendix_b() {
        assert_eq!(
            pkce_s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn sealed_data_is_bound_to_purpose_context_and_key() {
        let key = MasterKey::from_secret(&MasterKey::generate_secret()).unwrap();
        let sealed = key.seal("signing-key", b"kid1", b"secret");
        assert_eq!(
            key.open("signing-key", b"kid1", &sealed).unwrap(),
            b"secret"
        );
        assert!(key.open("signing-key", b"kid2", &sealed).is_err());
        assert!(key.open("upstream-token", b"kid1", &sealed).is_err());
        let other = MasterKey::from_secret(&MasterKey::generate_secret()).unwrap();
        assert!(other.open("signing-key", b"kid1", &sealed).is_err());
        assert!(MasterKey::from_secret("short").is_err());
    }

    #[test]
    fn tokens_are_distinct_and_long() {
        let a = random_token(32);
        assert_eq!(a.len(), 43);
        assert_ne!(a, random_token(32));
    }
}
