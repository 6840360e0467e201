//! A software passkey authenticator for tests without a browser: 1Password's
//! `passkey-client` (the browser's half of WebAuthn) over
//! `passkey-authenticator` (the device's half), with a small keyring that
//! finds discoverable credentials without `allowCredentials`. Also used by
//! the sign-in benchmark (`examples/bench_signin.rs`).

#![allow(dead_code)]

use passkey_authenticator::{
    Authenticator, CredentialStore, DiscoverabilitySupport, StoreInfo, UiHint, UserCheck,
    UserValidationMethod,
};
use passkey_client::{Client, DefaultClientData};
use passkey_crypto::AvailableBackend;
use passkey_types::{
    Passkey,
    ctap2::{
        Aaguid, Ctap2Error, StatusCode,
        make_credential::{Options, PublicKeyCredentialRpEntity, PublicKeyCredentialUserEntity},
    },
    webauthn::{
        CredentialCreationOptions, CredentialRequestOptions, PublicKeyCredentialDescriptor,
    },
};
use serde_json::Value;
use tokio::sync::Mutex;
use url::Url;

/// The passkeys the authenticator holds, newest last.
#[derive(Default, Clone)]
pub struct Keyring {
    pub passkeys: Vec<Passkey>,
}

#[async_trait::async_trait]
impl CredentialStore for Keyring {
    type PasskeyItem = Passkey;

    async fn find_credentials(
        &self,
        ids: Option<&[PublicKeyCredentialDescriptor]>,
        rp_id: &str,
        _user_handle: Option<&[u8]>,
    ) -> Result<Vec<Passkey>, StatusCode> {
        let ids = ids.filter(|ids| !ids.is_empty());
        let found: Vec<Passkey> = self
            .passkeys
            .iter()
            .rev()
            .filter(|p| p.rp_id == rp_id)
            .filter(|p| ids.is_none_or(|ids| ids.iter().any(|d| d.id == p.credential_id)))
            .cloned()
            .collect();
        if found.is_empty() {
            Err(Ctap2Error::NoCredentials.into())
        } else {
            Ok(found)
        }
    }

    async fn save_credential(
        &mut self,
        cred: Passkey,
        _user: PublicKeyCredentialUserEntity,
        _rp: PublicKeyCredentialRpEntity,
        _options: Options,
    ) -> Result<(), StatusCode> {
        self.passkeys.push(cred);
        Ok(())
    }

    async fn update_credential(&mut self, cred: &Passkey) -> Result<(), StatusCode> {
        for p in &mut self.passkeys {
            if p.credential_id == cred.credential_id {
                *p = cred.clone();
            }
        }
        Ok(())
    }

    async fn get_info(&self) -> StoreInfo {
        StoreInfo {
            discoverability: DiscoverabilitySupport::Full,
        }
    }
}

/// The person at the device: always present, and verified whenever asked.
pub struct Person;

#[async_trait::async_trait]
impl UserValidationMethod for Person {
    type PasskeyItem = Passkey;

    async fn check_user<'a>(
        &self,
        _hint: UiHint<'a, Passkey>,
        _presence: bool,
        verification: bool,
    ) -> Result<UserCheck, Ctap2Error> {
        Ok(UserCheck {
            presence: true,
            verification,
        })
    }

    fn is_presence_enabled(&self) -> bool {
        true
    }

    fn is_verification_enabled(&self) -> Option<bool> {
        Some(true)
    }
}

type SoftClient = Client<Keyring, Person, AvailableBackend, public_suffix::PublicSuffixList, ()>;

/// A device with a platform authenticator and a browser in front of it.
pub struct SoftAuthenticator {
    client: Mutex<SoftClient>,
}

impl Default for SoftAuthenticator {
    fn default() -> Self {
        Self::new()
    }
}

impl SoftAuthenticator {
    /// Passkeys with a signature counter (so counter checks are exercised).
    pub fn new() -> Self {
        let mut authenticator = Authenticator::new(
            Aaguid::new_empty(),
            Keyring::default(),
            Person,
            AvailableBackend,
        );
        authenticator.set_make_credentials_with_signature_counter(true);
        Self {
            client: Mutex::new(Client::new(authenticator).allows_insecure_localhost(true)),
        }
    }

    /// `navigator.credentials.create(options)` at `origin`; `options` is the
    /// server's `{"publicKey": ...}` answer. Returns the credential's JSON.
    pub async fn create(&self, origin: &str, options: Value) -> Result<Value, String> {
        let options: CredentialCreationOptions =
            serde_json::from_value(options).map_err(|e| format!("creation options: {e}"))?;
        let origin = Url::parse(origin).map_err(|e| e.to_string())?;
        let cred = self
            .client
            .lock()
            .await
            .register(&origin, options, DefaultClientData)
            .await
            .map_err(|e| format!("register: {e:?}"))?;
        serde_json::to_value(cred).map_err(|e| e.to_string())
    }

    /// `navigator.credentials.get(options)` at `origin`.
    pub async fn get(&self, origin: &str, options: Value) -> Result<Value, String> {
        let options: CredentialRequestOptions =
            serde_json::from_value(options).map_err(|e| format!("request options: {e}"))?;
        let origin = Url::parse(origin).map_err(|e| e.to_string())?;
        let cred = self
            .client
            .lock()
            .await
            .authenticate(&origin, options, DefaultClientData)
            .await
            .map_err(|e| format!("authenticate: {e:?}"))?;
        serde_json::to_value(cred).map_err(|e| e.to_string())
    }

    /// A copy of the device's passkeys (to roll the device back later).
    pub async fn snapshot(&self) -> Vec<Passkey> {
        self.client
            .lock()
            .await
            .authenticator()
            .store()
            .passkeys
            .clone()
    }

    pub async fn restore(&self, passkeys: Vec<Passkey>) {
        self.client
            .lock()
            .await
            .authenticator_mut()
            .store_mut()
            .passkeys = passkeys;
    }

    /// How many passkeys the device holds.
    pub async fn count(&self) -> usize {
        self.client
            .lock()
            .await
            .authenticator()
            .store()
            .passkeys
            .len()
    }
}
