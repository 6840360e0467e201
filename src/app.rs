//! Shared application state, built once per process (or per Lambda execution
//! environment) and cloned cheaply into every request.

use std::{
    ops::{Deref, DerefMut},
    sync::Arc,
};

use tokio_util::sync::CancellationToken;

use crate::{
    config::Config,
    crypto::MasterKey,
    oauth::{
        cimd::CimdFetcher,
        client::{self, Client},
        keys::SigningKeys,
        resource::Resources,
        verified::VerifiedTokens,
    },
    oidc::provider::Provider,
    store::Store,
};

/// What the client-address extractor (`net::ClientAddr`) reads.
impl axum::extract::FromRef<AppState> for Arc<Config> {
    fn from_ref(state: &AppState) -> Self {
        state.config.clone()
    }
}

/// The services, behind one `Arc`: axum clones a handler's state for every
/// request, and several layers hold their own copy, so a clone must cost one
/// reference count (field by field it was a dozen, one of them a
/// cancellation token's lock). Reads go through `Deref`; setting a field
/// (`state.resources = ...`, only while the application is put together)
/// copies the services first if another clone already shares them, so a
/// clone never sees another's changes, as with a plain struct.
#[derive(Clone)]
pub struct AppState(Arc<App>);

impl Deref for AppState {
    type Target = App;

    fn deref(&self) -> &App {
        &self.0
    }
}

impl DerefMut for AppState {
    fn deref_mut(&mut self) -> &mut App {
        Arc::make_mut(&mut self.0)
    }
}

/// What every handler shares (through [`AppState`]).
#[derive(Clone)]
pub struct App {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub master_key: MasterKey,
    pub keys: SigningKeys,
    pub cimd: CimdFetcher,
    /// Clients the operator configured (not stored: they are configuration).
    pub configured_clients: Arc<Vec<Client>>,
    /// The upstream OpenID provider people may sign in with, if configured.
    pub oidc: Option<Arc<Provider>>,
    /// Access tokens already verified by this process (an optimization;
    /// see `oauth::verified`).
    pub verified: Arc<VerifiedTokens>,
    /// The protected resources tokens are issued for: `/mcp` unless the
    /// route table mounts others (`routes::router_with`).
    pub resources: Resources,
    /// Cancelled on shutdown so long-lived responses (SSE) end promptly.
    pub shutdown: CancellationToken,
}

impl AppState {
    /// Loads (or creates) the signing keys; everything else is cheap.
    pub async fn build(
        config: Config,
        store: Arc<dyn Store>,
        master_key: MasterKey,
    ) -> anyhow::Result<Self> {
        crate::crypto::install_jwt_crypto();
        let keys = SigningKeys::load_or_create(store.as_ref(), &master_key).await?;
        let configured_clients =
            Arc::new(client::configured(&config.clients).map_err(anyhow::Error::msg)?);
        let oidc = match config.oidc.clone() {
            Some(c) => {
                let provider = Arc::new(Provider::new(c)?);
                provider.warm_up().await.map_err(|e| {
                    anyhow::anyhow!(
                        "the upstream identity provider contradicts passgate's configuration, so nobody could sign in: {e}"
                    )
                })?;
                Some(provider)
            }
            None => None,
        };
        let cimd = if config.dev_allow_loopback_cimd {
            tracing::warn!(
                "--dev-allow-loopback-cimd is on: client metadata documents are fetched from loopback addresses, over http too. For development on this machine only."
            );
            CimdFetcher::allowing_loopback()
        } else {
            CimdFetcher::new()
        };
        Ok(Self(Arc::new(App {
            resources: Resources::only_mcp(&config),
            config: Arc::new(config),
            store,
            master_key,
            keys,
            cimd,
            configured_clients,
            oidc,
            verified: Arc::default(),
            shutdown: CancellationToken::new(),
        })))
    }
}
