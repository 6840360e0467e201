//! The WebAuthn relying party, on the `webauthn_rp` crate.
//!
//! Policy: discoverable credentials (resident key required) with user
//! verification required, so that a passkey alone, unlocked by the person's
//! PIN or biometrics, signs them in without a username. The RP id is the
//! public URL's host and the only accepted origin is the public URL's origin.
//! Credential protection is requested but not enforced, because Chromium's
//! virtual authenticator and some security keys cannot enforce it and would
//! otherwise fail with `NotAllowedError`.
//!
//! Ceremonies span two requests that may reach different instances, so the
//! server half of each ceremony is stored (`ceremony#<challenge>` /
//! `ceremony`, expiring after [`CEREMONY_SECS`]). At finish it is *taken*
//! before anything is verified, so a ceremony can complete at most once: a
//! replayed response finds nothing. Each ceremony is also bound to the
//! browser that started it (a random cookie whose hash is stored with it), so
//! a response cannot be posted from another browser to sign that browser in
//! as someone else.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use serde::{Deserialize, Serialize};
use webauthn_rp::{
    AuthenticatedCredential, DiscoverableAuthenticationServerState,
    DiscoverableCredentialRequestOptions, PublicKeyCredentialCreationOptions,
    RegistrationServerState,
    bin::{Decode, Encode},
    request::{
        AsciiDomain, BackupReq, ExtensionInfo, PublicKeyCredentialDescriptor, RpId,
        TimedCeremony as _,
        auth::{AuthenticationVerificationOptions, SignatureCounterEnforcement},
        register::{
            CredProtect, Nickname, PublicKeyCredentialUserEntity, RegistrationVerificationOptions,
            UserHandle16, Username,
        },
    },
    response::{
        AuthTransports, Backup, CredentialId,
        auth::{error::AuthCeremonyErr, ser_relaxed::DiscoverableAuthenticationRelaxed16},
        register::{
            CompressedPubKey, DynamicState, StaticState, error::RegCeremonyErr,
            ser_relaxed::RegistrationRelaxed,
        },
    },
};

use crate::{
    accounts::users::{self, Credential, Role, User},
    app::AppState,
    config::Config,
    crypto::{constant_time_eq, token_hash},
    error::Error,
    net::ClientAddr,
    ratelimit::{self, LimitedAction},
    store::{NewItem, now_unix},
};

/// How long a started ceremony can be finished (the browser's own timeout
/// is the same five minutes).
pub const CEREMONY_SECS: i64 = 300;

/// Stored public keys as `webauthn_rp` decodes them.
type StoredPubKey = CompressedPubKey<[u8; 32], [u8; 32], [u8; 48], Vec<u8>>;

/// What a ceremony is for, fixed when it starts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Purpose {
    /// Usernameless sign-in; go to `next` afterwards.
    SignIn { next: String },
    /// Creating an account from an invitation.
    Enroll {
        /// Hash of the invitation token and the version seen at start.
        invitation: String,
        invitation_version: u64,
        user_id: String,
        name: String,
        display_name: String,
        role: Role,
    },
    /// A signed-in person adding another passkey.
    AddPasskey { user_id: String, label: String },
    /// An existing account adding a passkey from a recovery link.
    Recover {
        /// Hash of the recovery token and the version seen at start.
        recovery: String,
        recovery_version: u64,
        user_id: String,
        label: String,
    },
}

#[derive(Debug, Serialize, Deserialize)]
struct Ceremony {
    purpose: Purpose,
    /// `webauthn_rp`'s encoded server state, base64url.
    state: String,
    /// Hash of the browser-binding cookie.
    binding: String,
}

/// The identity a new passkey is created for.
pub struct NewPasskeyFor<'a> {
    pub user_id: &'a str,
    pub name: &'a str,
    pub display_name: &'a str,
}

fn rp_id(config: &Config) -> Result<RpId, Error> {
    let host = config.public_host();
    if host.parse::<std::net::IpAddr>().is_ok() || host.starts_with('[') {
        return Err(Error::Internal(anyhow::anyhow!(
            "passkeys need a domain name in the public URL, not an IP address (use http://localhost:PORT locally)"
        )));
    }
    AsciiDomain::try_from(host.to_owned())
        .map(RpId::Domain)
        .map_err(|e| {
            Error::Internal(anyhow::anyhow!(
                "the public URL's host is not a valid RP id: {e}"
            ))
        })
}

fn ceremony_pk(challenge: u128) -> String {
    crate::store::keys::Partition::Ceremony(challenge).key()
}

async fn save_ceremony(
    state: &AppState,
    challenge: u128,
    purpose: Purpose,
    encoded: Vec<u8>,
    binding: &str,
) -> Result<(), Error> {
    let ceremony = Ceremony {
        purpose,
        state: B64.encode(encoded),
        binding: token_hash(binding),
    };
    state
        .store
        .insert(
            NewItem::json(ceremony_pk(challenge), "ceremony", &ceremony)?.expires_in(CEREMONY_SECS),
        )
        .await?;
    Ok(())
}

/// Takes (consumes) the ceremony a response answers, checking it was
/// started by this browser. Runs before any verification.
async fn take_ceremony(
    state: &AppState,
    challenge: u128,
    binding: &str,
) -> Result<Ceremony, Error> {
    let ceremony: Ceremony = state
        .store
        .take_json(&ceremony_pk(challenge), "ceremony")
        .await?
        .ok_or_else(|| {
            Error::Gone("This passkey request expired or was already used. Start again.".into())
        })?;
    if !constant_time_eq(&ceremony.binding, &token_hash(binding)) {
        return Err(Error::Forbidden(
            "This passkey response belongs to a request started in another browser.".into(),
        ));
    }
    Ok(ceremony)
}

fn decode_b64(s: &str) -> Result<Vec<u8>, Error> {
    B64.decode(s)
        .map_err(|e| Error::Internal(anyhow::anyhow!("stored passkey data is not base64: {e}")))
}

fn wrong_kind() -> Error {
    Error::bad_request(
        "This passkey response answers another kind of request (a sign-in and a new passkey are different requests). Start again.",
    )
}

fn corrupt(what: &str) -> Error {
    Error::Internal(anyhow::anyhow!("stored {what} could not be decoded"))
}

/// Starts a usernameless sign-in; returns the options for
/// `navigator.credentials.get({ publicKey })`.
pub async fn start_sign_in(
    state: &AppState,
    binding: &str,
    next: String,
) -> Result<serde_json::Value, Error> {
    let rp_id = rp_id(&state.config)?;
    let (server, client) = DiscoverableCredentialRequestOptions::passkey(&rp_id)
        .start_ceremony()
        .map_err(|e| Error::Internal(anyhow::anyhow!("request options: {e}")))?;
    let options = serde_json::to_value(&client).map_err(|e| Error::Internal(e.into()))?;
    let encoded = server
        .encode()
        .map_err(|e| Error::Internal(anyhow::anyhow!("encode ceremony: {e}")))?;
    save_ceremony(
        state,
        server.sent_challenge().0,
        Purpose::SignIn { next },
        encoded,
        binding,
    )
    .await?;
    Ok(options)
}

/// Who signed in, with which passkey, and where to go next.
pub struct SignedInWith {
    pub user: User,
    /// The passkey's credential id.
    pub credential: String,
    pub next: String,
}

/// Verifies a sign-in response (the JSON of the browser's credential) and
/// records the passkey's new sign counter and backup state.
pub async fn finish_sign_in(
    state: &AppState,
    addr: &ClientAddr,
    binding: &str,
    body: &[u8],
) -> Result<SignedInWith, Error> {
    let auth = serde_json::from_slice::<DiscoverableAuthenticationRelaxed16>(body)
        .map_err(|_| Error::bad_request("The passkey response could not be read."))?
        .0;
    let challenge = auth
        .challenge_relaxed()
        .map_err(|_| Error::bad_request("The passkey response has no readable challenge."))?;
    let ceremony = take_ceremony(state, challenge.0, binding).await?;
    let Purpose::SignIn { next } = ceremony.purpose else {
        return Err(wrong_kind());
    };
    let server =
        DiscoverableAuthenticationServerState::decode(decode_b64(&ceremony.state)?.as_slice())
            .map_err(|_| corrupt("ceremony"))?;

    let cred_id = B64.encode(auth.raw_id().as_ref());
    let user_id = users::hex(auth.response().user_handle().as_ref());
    let not_registered = || {
        Error::Forbidden(
            "This passkey is not registered with passgate (it may have been deleted). Use another passkey, or ask an administrator for a new invitation."
                .into(),
        )
    };
    let (mut stored, version) = users::credential(state.store.as_ref(), &cred_id)
        .await?
        .ok_or_else(not_registered)?;
    if stored.user_id != user_id {
        return Err(not_registered());
    }
    // Failures count against the address that sent them, never against
    // the account: anyone can name anyone's passkey.
    let limit = LimitedAction::SignInFailure;
    ratelimit::check_failures(state.store.as_ref(), limit, addr).await?;
    let user = users::get(state.store.as_ref(), &user_id)
        .await?
        .ok_or_else(not_registered)?;
    if user.disabled {
        return Err(Error::Forbidden(
            "This account is disabled. Ask an administrator if you need access again.".into(),
        ));
    }

    let handle_bytes = users::user_handle(&user_id).ok_or_else(|| corrupt("user id"))?;
    let handle = UserHandle16::decode(handle_bytes).map_err(|_| corrupt("user id"))?;
    let id_bytes = decode_b64(&stored.id)?;
    let id =
        CredentialId::<&[u8]>::decode(id_bytes.as_slice()).map_err(|_| corrupt("credential id"))?;
    let static_bytes = decode_b64(&stored.static_state)?;
    let static_state = StaticState::<StoredPubKey>::decode(static_bytes.as_slice())
        .map_err(|_| corrupt("public key"))?;
    let dynamic_bytes: [u8; 7] = decode_b64(&stored.dynamic_state)?
        .try_into()
        .map_err(|_| corrupt("passkey state"))?;
    let dynamic = DynamicState::decode(dynamic_bytes).map_err(|_| corrupt("passkey state"))?;
    let mut credential = AuthenticatedCredential::new(id, &handle, static_state, dynamic)
        .map_err(|_| corrupt("credential"))?;

    let origin = state.config.origin();
    let allowed = [origin.as_str()];
    let options = AuthenticationVerificationOptions::<&str, &str> {
        allowed_origins: &allowed,
        allowed_top_origins: None,
        // Backup eligibility may not change; backup state may.
        backup_requirement: None,
        error_on_unsolicited_extensions: false,
        update_uv: true,
        // A counter that does not grow (once non-zero) means a cloned key.
        sig_counter_enforcement: SignatureCounterEnforcement::Fail,
        ..Default::default()
    };
    if let Err(e) = server.verify(&rp_id(&state.config)?, &auth, &mut credential, &options) {
        ratelimit::record_failure(state.store.as_ref(), limit, addr).await?;
        return Err(sign_in_refused(&e));
    }

    let dynamic = credential.dynamic_state();
    apply_dynamic_state(&mut stored, dynamic)?;
    stored.last_used_at = Some(now_unix());
    users::update_credential(state.store.as_ref(), &stored, version)
        .await
        .map_err(|e| match e {
            crate::store::StoreError::Conflict => Error::Forbidden(
                "This passkey was used twice at the same moment; only one use counts. Try again."
                    .into(),
            ),
            other => other.into(),
        })?;
    Ok(SignedInWith {
        user,
        credential: stored.id,
        next,
    })
}

fn apply_dynamic_state(cred: &mut Credential, dynamic: DynamicState) -> Result<(), Error> {
    let encoded = dynamic
        .encode()
        .map_err(|e| Error::Internal(anyhow::anyhow!("encode passkey state: {e:?}")))?;
    cred.dynamic_state = B64.encode(encoded);
    cred.sign_count = dynamic.sign_count;
    cred.backup_eligible = !matches!(dynamic.backup, Backup::NotEligible);
    cred.backed_up = matches!(dynamic.backup, Backup::Exists);
    Ok(())
}

fn sign_in_refused(e: &AuthCeremonyErr) -> Error {
    tracing::info!(reason = %e, "passkey sign-in refused");
    Error::Forbidden(
        match e {
            AuthCeremonyErr::UserNotVerified => {
                "Your passkey did not confirm it was you (with a PIN, fingerprint or face). passgate requires that: try again and complete the check when asked."
            }
            AuthCeremonyErr::OriginMismatch
            | AuthCeremonyErr::CrossOrigin
            | AuthCeremonyErr::TopOriginMismatch
            | AuthCeremonyErr::RpIdHashMismatch => {
                "This passkey answer was made for a different web address. Open passgate at its own address and try again."
            }
            AuthCeremonyErr::SignatureCounter => {
                "This passkey's use counter went backwards, which happens when a passkey has been copied. Use another passkey, or ask an administrator to check your account."
            }
            AuthCeremonyErr::Timeout => "The sign-in request expired. Start again.",
            _ => "The passkey's answer could not be verified. Try again, or use another passkey.",
        }
        .into(),
    )
}

fn registration_refused(e: &RegCeremonyErr) -> Error {
    tracing::info!(reason = %e, "passkey registration refused");
    Error::Forbidden(
        match e {
            RegCeremonyErr::UserNotVerified => {
                "Your device created the passkey without confirming it was you (with a PIN, fingerprint or face). passgate requires that: try again, or use another device or password manager."
            }
            RegCeremonyErr::OriginMismatch
            | RegCeremonyErr::CrossOrigin
            | RegCeremonyErr::TopOriginMismatch
            | RegCeremonyErr::RpIdHashMismatch => {
                "This passkey was made for a different web address. Open passgate at its own address and try again."
            }
            RegCeremonyErr::Credential(_) => {
                "Your device made a passkey that must be remembered by the server, but passgate needs one your device keeps (a \"discoverable\" passkey). Try another device or password manager."
            }
            RegCeremonyErr::Timeout => "The request expired. Start again.",
            _ => "The new passkey could not be verified. Try again, or use another device or password manager.",
        }
        .into(),
    )
}

/// Starts creating a passkey for `user`, excluding the passkeys they
/// already have (so an authenticator does not overwrite one). Returns the
/// options for `navigator.credentials.create({ publicKey })`.
pub async fn start_registration(
    state: &AppState,
    binding: &str,
    purpose: Purpose,
    user: NewPasskeyFor<'_>,
    existing: &[Credential],
) -> Result<serde_json::Value, Error> {
    let rp_id = rp_id(&state.config)?;
    let handle_bytes = users::user_handle(user.user_id).ok_or_else(|| corrupt("user id"))?;
    let handle = UserHandle16::decode(handle_bytes).map_err(|_| corrupt("user id"))?;
    let entity = PublicKeyCredentialUserEntity {
        name: Username::try_from(user.name)
            .map_err(|_| Error::bad_request("This name cannot be used for a passkey."))?,
        id: &handle,
        display_name: Some(Nickname::try_from(user.display_name).map_err(|_| {
            Error::bad_request("This display name cannot be used for a passkey; try a simpler one.")
        })?),
    };
    let mut exclude = Vec::with_capacity(existing.len());
    for cred in existing {
        let id = CredentialId::<Vec<u8>>::decode(decode_b64(&cred.id)?)
            .map_err(|_| corrupt("credential id"))?;
        let transports =
            AuthTransports::decode(cred.transports).map_err(|_| corrupt("transports"))?;
        exclude.push(PublicKeyCredentialDescriptor { id, transports });
    }
    let mut options = PublicKeyCredentialCreationOptions::passkey(&rp_id, entity, exclude);
    options.extensions.cred_protect =
        CredProtect::UserVerificationRequired(ExtensionInfo::AllowDontEnforceValue);
    let (server, client) = options
        .start_ceremony()
        .map_err(|e| Error::Internal(anyhow::anyhow!("creation options: {e}")))?;
    let json = serde_json::to_value(&client).map_err(|e| Error::Internal(e.into()))?;
    let encoded = server
        .encode()
        .map_err(|e| Error::Internal(anyhow::anyhow!("encode ceremony: {e}")))?;
    save_ceremony(state, server.sent_challenge().0, purpose, encoded, binding).await?;
    Ok(json)
}

/// Verifies a registration response and returns the new passkey (not yet
/// stored: the caller stores it together with whatever else the purpose
/// needs, such as the new account).
pub async fn finish_registration(
    state: &AppState,
    binding: &str,
    body: &[u8],
) -> Result<(Purpose, Credential), Error> {
    let registration = serde_json::from_slice::<RegistrationRelaxed>(body)
        .map_err(|_| Error::bad_request("The new passkey could not be read."))?
        .0;
    let challenge = registration
        .challenge_relaxed()
        .map_err(|_| Error::bad_request("The new passkey has no readable challenge."))?;
    let ceremony = take_ceremony(state, challenge.0, binding).await?;
    // A sign-in ceremony holds another kind of server state: answering it
    // with a new passkey is the client's mistake, not stored data gone bad.
    if let Purpose::SignIn { .. } = ceremony.purpose {
        return Err(wrong_kind());
    }
    let server = RegistrationServerState::<16>::decode(decode_b64(&ceremony.state)?.as_slice())
        .map_err(|_| corrupt("ceremony"))?;
    let origin = state.config.origin();
    let allowed = [origin.as_str()];
    let options = RegistrationVerificationOptions::<&str, &str> {
        allowed_origins: &allowed,
        allowed_top_origins: None,
        backup_requirement: BackupReq::None,
        error_on_unsolicited_extensions: false,
        require_authenticator_attachment: false,
        ..Default::default()
    };
    let registered = server
        .verify(&rp_id(&state.config)?, &registration, &options)
        .map_err(|e| registration_refused(&e))?;

    let (id, transports, user_handle, static_state, dynamic, _metadata) = registered.into_parts();
    let cred_id = B64.encode(id.as_ref());
    if users::credential_exists(state.store.as_ref(), &cred_id).await? {
        return Err(Error::bad_request(
            "This passkey is already registered with passgate.",
        ));
    }
    let (user_id, label) = match &ceremony.purpose {
        Purpose::Enroll { user_id, .. } => (user_id.clone(), default_label()),
        Purpose::AddPasskey { user_id, label } | Purpose::Recover { user_id, label, .. } => {
            (user_id.clone(), label.clone())
        }
        Purpose::SignIn { .. } => return Err(wrong_kind()),
    };
    if users::hex(user_handle.as_ref()) != user_id {
        return Err(corrupt("ceremony user"));
    }
    let static_encoded = static_state
        .encode()
        .map_err(|e| Error::Internal(anyhow::anyhow!("encode public key: {e:?}")))?;
    let transports = transports
        .encode()
        .map_err(|e| Error::Internal(anyhow::anyhow!("encode transports: {e:?}")))?;
    let mut cred = Credential {
        id: cred_id,
        user_id,
        name: label,
        static_state: B64.encode(static_encoded),
        dynamic_state: String::new(),
        transports,
        backup_eligible: false,
        backed_up: false,
        sign_count: 0,
        created_at: now_unix(),
        last_used_at: None,
    };
    apply_dynamic_state(&mut cred, dynamic)?;
    Ok((ceremony.purpose, cred))
}

/// The label a passkey gets until the person renames it.
pub fn default_label() -> String {
    format!("Passkey added {}", crate::login::ui::date(now_unix()))
}
