//! The gateway: passgate in front of someone else's Streamable HTTP MCP
//! server (docs/gateway.md). Each route is its own protected resource with
//! its own token audience; the backend never sees the client's credentials,
//! only an identity JWT passgate signs for it, the operator's static
//! headers, and a session id opened from the sealed one the client holds.
//!
//! Layering: this module uses `app`, `config`, `crypto`, `store`, `users`,
//! `oauth::bearer` (the caller's `Identity`) and the protected-resource
//! seam (`mcp::ProtectedMcp`, `oauth::resource`); the route table mounts
//! its endpoints (`Gateway::endpoints`) behind the Origin and bearer checks.

pub mod backend;
pub mod backend_auth;
pub mod config;
mod connect;
mod headers;
mod identity;
mod inspect;
mod proxy;
pub(crate) mod session;
#[cfg(feature = "aws")]
pub mod sigv4;
pub mod stdio;

use std::{sync::Arc, time::Duration};

use tokio_util::sync::CancellationToken;

use axum::routing::any;

use self::backend::Backend;
use crate::{
    app::AppState,
    config::Config,
    mcp::ProtectedMcp,
    oauth::resource::{InvalidResourcePath, PersonalKeyAsk, Resource},
};

pub use config::{GatewayConfigError, RouteConfig};

/// One protected backend as served.
#[derive(Debug)]
pub struct Route {
    pub config: RouteConfig,
    pub backend: Backend,
    /// For a backend with its own OAuth sign-in: passgate's client there.
    pub sign_in: Option<Arc<backend_auth::BackendSignIn>>,
}

impl Route {
    /// How the account page and logs name the route.
    pub fn label(&self) -> &str {
        if self.config.name.is_empty() {
            "mcp"
        } else {
            &self.config.name
        }
    }
}

/// Every route.
#[derive(Clone)]
pub struct Gateway {
    routes: Arc<Vec<Arc<Route>>>,
}

/// The HTTP client of backends' own sign-ins (their authorization servers).
/// Redirects are never followed, and no proxy from the environment sees
/// the tokens. Forwarded calls have their own client
/// ([`backend::BackendClient`]).
fn backend_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .pool_idle_timeout(Duration::from_secs(60))
        .build()
        .expect("a client without TLS settings of its own builds")
}

impl Gateway {
    /// The routes `--backend` and `--gateway-config` declare; `None` when
    /// neither is set. Fails naming what is wrong, never printing a secret.
    pub fn load(config: &Config) -> Result<Option<Self>, GatewayConfigError> {
        if config.backend.is_none() && config.gateway_config.is_none() {
            return Ok(None);
        }
        let routes = config::load(
            config.backend.as_ref(),
            config
                .backend_sigv4
                .clone()
                .map(|(service, region)| config::SigV4Route { service, region }),
            config.gateway_config.as_deref(),
        )?;
        Ok(Some(Self::new(routes)))
    }

    pub fn new(routes: Vec<RouteConfig>) -> Self {
        let client = backend_client();
        let forwarding = backend::BackendClient::new();
        let routes = routes
            .into_iter()
            .map(|config| {
                let backend = match &config.stdio {
                    Some(stdio) => Backend::command(stdio::StdioBackend::new(
                        &config.name,
                        stdio.clone(),
                        CancellationToken::new(),
                    )),
                    None => Backend::http(
                        config.url.clone(),
                        config.timeout,
                        forwarding.clone(),
                        #[cfg(feature = "aws")]
                        config.sigv4.as_ref().and_then(|s| {
                            let service = sigv4::SigV4Service::named(&s.service)?;
                            Some(sigv4::SigV4Signer::from_environment(service, &s.region))
                        }),
                    ),
                };
                let sign_in = config.oauth.clone().map(|settings| {
                    Arc::new(backend_auth::BackendSignIn::new(
                        config.path(),
                        config.url.clone(),
                        settings,
                        client.clone(),
                    ))
                });
                Arc::new(Route {
                    config,
                    backend,
                    sign_in,
                })
            })
            .collect();
        Self {
            routes: Arc::new(routes),
        }
    }

    /// The routes whose backend is a command: they need a long-running
    /// process (`passgate serve`), which Lambda is not.
    pub fn stdio_routes(&self) -> impl Iterator<Item = &str> {
        self.routes
            .iter()
            .filter(|r| r.config.stdio.is_some())
            .map(|r| r.label())
    }

    pub fn routes(&self) -> &[Arc<Route>] {
        &self.routes
    }

    /// True when a backend is served at `/mcp` (then the demo tools are not).
    pub fn serves_mcp(&self) -> bool {
        self.routes.iter().any(|r| r.config.name.is_empty())
    }

    /// Every route as a protected MCP endpoint: its own resource (path,
    /// token audience, metadata) in front of the forwarding handler, so the
    /// route table puts the `Origin` and bearer checks before it.
    pub fn endpoints(&self, state: &AppState) -> Result<Vec<ProtectedMcp>, InvalidResourcePath> {
        self.routes
            .iter()
            .map(|route| {
                let mut resource = Resource::new(
                    &state.config,
                    &route.config.path(),
                    format!("{} (through passgate)", route.label()),
                )?;
                if route.sign_in.is_some() {
                    resource = resource.asking_backend_sign_in();
                }
                if let Some(key) = &route.config.personal_key {
                    resource = resource.asking_personal_key(PersonalKeyAsk {
                        label: key.label.clone(),
                        help_url: key.help_url.as_ref().map(ToString::to_string),
                    });
                }
                if let Some(stdio) = route.backend.stdio() {
                    // The children end with the application.
                    let (app, children) = (state.shutdown.clone(), stdio.shutdown_token());
                    tokio::spawn(async move {
                        app.cancelled().await;
                        children.cancel();
                    });
                }
                let forward = any(proxy::forward).with_state(proxy::RouteState {
                    app: state.clone(),
                    route: route.clone(),
                    assertions: Default::default(),
                });
                Ok(ProtectedMcp::new(resource, forward))
            })
            .collect()
    }

    /// The route whose backend sign-in serves `route_path`.
    pub fn sign_in(&self, route_path: &str) -> Option<&Arc<backend_auth::BackendSignIn>> {
        self.routes
            .iter()
            .find(|r| r.config.path() == route_path)
            .and_then(|r| r.sign_in.as_ref())
    }

    /// The pages and endpoints of backends' own sign-ins (connect,
    /// callback, disconnect, passgate's client metadata document), when a
    /// route has one.
    pub fn account_routes(&self) -> axum::Router<AppState> {
        if self.routes.iter().all(|r| r.sign_in.is_none()) {
            return axum::Router::new();
        }
        connect::routes(self.clone())
    }

    /// Readiness: every backend answers HTTP at all (any status) within two
    /// seconds. The probe is an `OPTIONS` request carrying no identity.
    pub async fn check_backends(&self) -> Result<(), String> {
        for route in self.routes.iter() {
            if !route.backend.probe().await {
                return Err(format!(
                    "the backend of route {} is unreachable",
                    route.label()
                ));
            }
        }
        Ok(())
    }
}
