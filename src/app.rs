//! Shared application state, built once per process (or per Lambda execution
//! environment) and cloned cheaply into every request.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::{config::Config, crypto::MasterKey, store::Store};

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub master_key: MasterKey,
    /// Cancelled on shutdown so long-lived responses (SSE) end promptly.
    pub shutdown: CancellationToken,
}

impl AppState {
    pub fn new(config: Config, store: Arc<dyn Store>, master_key: MasterKey) -> Self {
        Self {
            config: Arc::new(config),
            store,
            master_key,
            shutdown: CancellationToken::new(),
        }
    }
}
