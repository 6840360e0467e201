//! Serving over TCP with graceful shutdown, and the start-up sequence of
//! `passgate serve`: open the store, print the first administrator's
//! invitation if needed, load the signing keys, serve.
//!
//! If the store cannot be reached at start (the database is away),
//! passgate serves anyway: `/healthz` answers (the process is alive),
//! `/readyz` and everything else answer 503 (`temporarily_unavailable` on
//! the OAuth endpoints), and start-up is tried again until it works. Any
//! other start-up failure ends the process.

use std::{
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use anyhow::Context;
use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    app::AppState,
    bootstrap,
    config::{Config, ServeArgs},
    gateway::Gateway,
    login::cli::{first_admin_banner, no_admin_banner, serving_banner},
    mcp::ProtectedMcp,
    routes,
};

/// Makes the protected MCP endpoints once the app's state is built (again
/// on each start-up attempt).
pub type Endpoints = Arc<dyn Fn(&AppState) -> Vec<ProtectedMcp> + Send + Sync>;

/// passgate's own demo tools at `/mcp`.
pub fn demo_endpoints() -> Endpoints {
    Arc::new(|state: &AppState| vec![ProtectedMcp::demo(&state.config, state.shutdown.clone())])
}

/// Waits between start-up attempts while the store is unreachable.
const START_RETRY: Duration = Duration::from_secs(2);

/// `passgate serve`.
pub async fn run(args: &ServeArgs) -> anyhow::Result<()> {
    run_with(args, demo_endpoints(), CancellationToken::new()).await
}

/// `passgate serve` with `endpoints` instead of the demo, until `shutdown`
/// is cancelled (or a signal comes).
pub async fn run_with(
    args: &ServeArgs,
    endpoints: Endpoints,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let config = Config::from_args(args)?;
    let listener = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let app = match start(args, &config, &shutdown, &endpoints).await {
        Ok(app) => app,
        Err(e) if bootstrap::is_unavailable(&e) => {
            tracing::warn!(
                error = %format!("{e:#}"),
                "the store is unreachable; answering 503 and trying again"
            );
            let ready = Arc::new(OnceLock::new());
            let failed = Arc::new(Mutex::new(None));
            tokio::spawn(keep_starting(
                args.clone(),
                config.clone(),
                shutdown.clone(),
                endpoints,
                ready.clone(),
                failed.clone(),
            ));
            let app = routes::while_starting(ready, &config);
            serve(listener, app, shutdown).await?;
            let failed = failed.lock().map(|mut f| f.take()).unwrap_or_default();
            return match failed {
                Some(e) => Err(e),
                None => Ok(()),
            };
        }
        Err(e) => return Err(e),
    };
    serve(listener, app, shutdown).await
}

/// Tries start-up again until it works (then `ready` holds the app) or
/// fails for a reason other than an unreachable store (then the server
/// shuts down with that error).
async fn keep_starting(
    args: ServeArgs,
    config: Config,
    shutdown: CancellationToken,
    endpoints: Endpoints,
    ready: Arc<OnceLock<Router>>,
    failed: Arc<Mutex<Option<anyhow::Error>>>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(START_RETRY) => {}
            _ = shutdown.cancelled() => return,
        }
        match start(&args, &config, &shutdown, &endpoints).await {
            Ok(app) => {
                let _ = ready.set(app);
                return;
            }
            Err(e) if bootstrap::is_unavailable(&e) => {
                tracing::warn!(error = %format!("{e:#}"), "the store is still unreachable");
            }
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "start-up failed");
                if let Ok(mut slot) = failed.lock() {
                    *slot = Some(e);
                }
                shutdown.cancel();
                return;
            }
        }
    }
}

/// Everything that needs the store before passgate can answer: the store,
/// the first administrator's invitation, the signing keys, the scheduled
/// purge; then the router around `endpoints`. Background work ends when
/// `shutdown` is cancelled.
pub async fn start(
    args: &ServeArgs,
    config: &Config,
    shutdown: &CancellationToken,
    endpoints: &Endpoints,
) -> anyhow::Result<Router> {
    // The gateway's file is checked before anything else, so a mistake in
    // it stops start-up at once with a message naming it.
    let gateway = Gateway::load(config)?;
    let (store, master_key) = bootstrap::open_store(&args.common).await?;
    // Invitations enroll passkeys; without passkeys people arrive through
    // the upstream provider instead.
    if config.passkeys
        && let Some(banner) = first_admin_banner(store.as_ref(), config).await?
    {
        println!("{banner}");
    }
    if let Some(banner) = no_admin_banner(store.as_ref(), config).await? {
        println!("{banner}");
    }
    let mut state = AppState::build(config.clone(), store, master_key).await?;
    state.shutdown = shutdown.clone();
    tracing::info!(
        listen = %config.listen,
        mcp_url = %state.config.mcp_url(),
        "passgate is serving"
    );
    println!("{}", serving_banner(&state.config));
    state.keys.spawn_periodic_reload(
        state.store.clone(),
        state.master_key.clone(),
        shutdown.clone(),
    );
    if state.config.purge_interval_secs > 0 {
        crate::store::spawn_purge(
            state.store.clone(),
            Duration::from_secs(state.config.purge_interval_secs),
            shutdown.clone(),
        );
    }
    let endpoints = endpoints(&state);
    Ok(routes::router_with_gateway(state, endpoints, gateway)?)
}

/// Serves `app` on `listener` until SIGTERM or Ctrl-C, then lets in-flight
/// requests finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let signal_token = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down");
        signal_token.cancel();
    });
    // Connect info gives handlers the peer address (rate limits).
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move { shutdown.cancelled_owned().await })
    .await
    .context("server failed")
}

async fn wait_for_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
