//! Shared application state, built once per process (or per Lambda execution
//! environment) and cloned cheaply into every request.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::Config;

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    /// Cancelled on shutdown so long-lived responses (SSE) end promptly.
    pub shutdown: CancellationToken,
}

impl AppState {
    pub fn new(config: Config) -> Self {
        Self {
            config: Arc::new(config),
            shutdown: CancellationToken::new(),
        }
    }
}
