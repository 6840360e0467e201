//! Small, well-known building blocks over audited crates: random tokens,
//! token hashing, constant-time comparison, and authenticated encryption
//! and message tags under the master secret. No primitive is implemented
//! here.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chacha20poly1305::{
    XChaCha20Poly1305, XNonce,
    aead::{Aead, KeyInit, Payload},
};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
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

    fn derived(&self, purpose: &str) -> [u8; 32] {
        let hk = Hkdf::<Sha256>::new(Some(b"passgate master key v1"), &self.ikm);
        let mut key = [0u8; 32];
        hk.expand(purpose.as_bytes(), &mut key)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        key
    }

    fn cipher(&self, purpose: &str) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&self.derived(purpose).into())
    }

    fn mac(&self, purpose: &str, message: &[u8]) -> Hmac<Sha256> {
        // The purpose is prefixed so that a tag key never equals a cipher key.
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(&self.derived(&format!("tag {purpose}")))
                .expect("HMAC takes a key of any length");
        mac.update(message);
        mac
    }

    /// An HMAC-SHA256 tag of `message` for `purpose`, base64url: proof that
    /// passgate made the message, checkable by any instance.
    pub fn tag(&self, purpose: &str, message: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(self.mac(purpose, message).finalize().into_bytes())
    }

    /// Whether `tag` is [`Self::tag`] of `message` (compared in constant time).
    pub fn verify_tag(&self, purpose: &str, message: &[u8], tag: &str) -> bool {
        URL_SAFE_NO_PAD
            .decode(tag)
            .is_ok_and(|tag| self.mac(purpose, message).verify_slice(&tag).is_ok())
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

/// Makes jsonwebtoken verify ES256 with `ring` (already in the binary through
/// rustls) instead of the pure-Rust `p256`: the check runs on every first use
/// of an access token and every forged one, and ring's is about 5× cheaper
/// (docs/benchmarks.md). Everything else, signing included, stays with the
/// crate's `rust_crypto` provider. Idempotent; call before verifying tokens.
pub fn install_jwt_crypto() {
    use jsonwebtoken::crypto::{CryptoProvider, rust_crypto};

    static PROVIDER: std::sync::OnceLock<CryptoProvider> = std::sync::OnceLock::new();
    let provider = PROVIDER.get_or_init(|| CryptoProvider {
        verifier_factory: jwt::new_verifier,
        ..rust_crypto::DEFAULT_PROVIDER.clone()
    });
    // Err only when a provider is already installed: ours, by an earlier call.
    let _ = provider.install_default();
}

mod jwt {
    use jsonwebtoken::{
        Algorithm, AlgorithmFamily, DecodingKey,
        crypto::{JwtVerifier, rust_crypto},
        errors::{ErrorKind, Result},
        signature::{self, Verifier},
    };
    use ring::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};

    pub fn new_verifier(algorithm: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
        match algorithm {
            Algorithm::ES256 => Ok(Box::new(Es256::new(key)?)),
            _ => (rust_crypto::DEFAULT_PROVIDER.verifier_factory)(algorithm, key),
        }
    }

    /// ES256 over ring: the key is the SEC1 uncompressed point that
    /// jsonwebtoken keeps for EC keys, the signature JWS's fixed r‖s.
    struct Es256(UnparsedPublicKey<Vec<u8>>);

    impl Es256 {
        fn new(key: &DecodingKey) -> Result<Self> {
            if key.family() != AlgorithmFamily::Ec {
                return Err(ErrorKind::InvalidKeyFormat.into());
            }
            let point = key.as_bytes();
            // ring checks the point when verifying; refuse a wrong-sized key
            // here so that a bad JWK fails as a key error, not a bad signature.
            if point.len() != 65 || point[0] != 4 {
                return Err(ErrorKind::InvalidEcdsaKey.into());
            }
            Ok(Self(UnparsedPublicKey::new(
                &ECDSA_P256_SHA256_FIXED,
                point.to_vec(),
            )))
        }
    }

    impl Verifier<Vec<u8>> for Es256 {
        fn verify(
            &self,
            msg: &[u8],
            signature: &Vec<u8>,
        ) -> std::result::Result<(), signature::Error> {
            self.0
                .verify(msg, signature)
                .map_err(|_| signature::Error::new())
        }
    }

    impl JwtVerifier for Es256 {
        fn algorithm(&self) -> Algorithm {
            Algorithm::ES256
        }
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

    #[test]
    fn es256_tokens_signed_by_rust_crypto_verify_with_ring_and_forgeries_fail() {
        use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
        use p256::{ecdsa::SigningKey, elliptic_curve::sec1::Coordinates, pkcs8::EncodePrivateKey};

        install_jwt_crypto();
        let keys = |seed: u8| {
            let signing = SigningKey::from_slice(&[seed; 32]).unwrap();
            let der = signing.to_pkcs8_der().unwrap();
            let point = signing.verifying_key().to_encoded_point(false);
            let Coordinates::Uncompressed { x, y } = point.coordinates() else {
                unreachable!("an uncompressed point")
            };
            let decoding = DecodingKey::from_ec_components(
                &URL_SAFE_NO_PAD.encode(x),
                &URL_SAFE_NO_PAD.encode(y),
            )
            .unwrap();
            (EncodingKey::from_ec_der(der.as_bytes()), decoding)
        };
        let (ours, our_public) = keys(7);
        let (_, other_public) = keys(9);
        let claims = serde_json::json!({"sub": "alice", "exp": 4_000_000_000_i64});
        let token = jsonwebtoken::encode(&Header::new(Algorithm::ES256), &claims, &ours).unwrap();
        let mut validation = Validation::new(Algorithm::ES256);
        validation.required_spec_claims.clear();
        let decoded =
            jsonwebtoken::decode::<serde_json::Value>(&token, &our_public, &validation).unwrap();
        assert_eq!(decoded.claims["sub"], "alice");

        let wrong_key =
            jsonwebtoken::decode::<serde_json::Value>(&token, &other_public, &validation);
        assert!(wrong_key.is_err());
        // One flipped bit in the signature.
        let (head, signature) = token.rsplit_once('.').unwrap();
        let mut bytes = URL_SAFE_NO_PAD.decode(signature).unwrap();
        bytes[10] ^= 1;
        let forged = format!("{head}.{}", URL_SAFE_NO_PAD.encode(bytes));
        let forged = jsonwebtoken::decode::<serde_json::Value>(&forged, &our_public, &validation);
        assert!(matches!(
            forged.unwrap_err().kind(),
            jsonwebtoken::errors::ErrorKind::InvalidSignature
        ));
    }
}
