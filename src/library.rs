//! The library entry point: [`Passgate`] puts your own MCP server behind
//! passgate's sign-in, with the same start-up, store and settings as
//! `passgate serve`, which is itself built this way (with the demo tools).

use std::{ffi::OsString, sync::Arc};

use axum::Router;
use rmcp::ServerHandler;
use tokio_util::sync::CancellationToken;

use crate::{
    app::AppState,
    config::{self, Config, ServeArgs},
    mcp::ProtectedMcp,
    oauth::resource::Resource,
    server::{self, Endpoints},
    telemetry,
};

/// Makes one protected endpoint from the app's state.
type EndpointFactory = Arc<dyn Fn(&AppState) -> ProtectedMcp + Send + Sync>;

/// passgate around your MCP server: the OAuth authorization server,
/// passkeys or the OpenID provider, the sign-in, account and admin pages,
/// and the store, with your rmcp [`ServerHandler`] at `/mcp`.
///
/// Every request to `/mcp` carries a verified access token for it; your
/// tools read the caller from rmcp's request parts with
/// [`Identity::from_parts`](crate::Identity::from_parts).
///
/// ```no_run
/// use std::sync::Arc;
///
/// use passgate::{
///     Identity, Passgate,
///     rmcp::{
///         ServerHandler, handler::server::{common::Extension, router::tool::ToolRouter},
///         model::{CallToolResult, ContentBlock, ServerCapabilities, ServerConfig},
///         tool, tool_handler, tool_router,
///     },
/// };
///
/// /// Built once; each request gets a clone that shares the router.
/// #[derive(Clone)]
/// struct Hello {
///     tool_router: Arc<ToolRouter<Self>>,
/// }
///
/// #[tool_router(router = tool_router)]
/// impl Hello {
///     #[tool(description = "Greet the signed-in person.")]
///     async fn hello(&self, Extension(parts): Extension<http::request::Parts>) -> CallToolResult {
///         let name = Identity::from_parts(&parts).map_or("stranger", |i| i.display_name.as_str());
///         CallToolResult::success(vec![ContentBlock::text(format!("Hello, {name}!"))])
///     }
/// }
///
/// #[tool_handler(router = self.tool_router)]
/// impl ServerHandler for Hello {
///     fn get_info(&self) -> ServerConfig {
///         ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
///     }
/// }
///
/// #[tokio::main]
/// async fn main() -> anyhow::Result<()> {
///     let hello = Hello { tool_router: Arc::new(Hello::tool_router()) };
///     // `passgate serve`'s flags and PASSGATE_* variables: --public-url, --data-dir, ...
///     Passgate::from_command_line()
///         .await?
///         .mcp(move || hello.clone())
///         .serve()
///         .await
/// }
/// ```
pub struct Passgate {
    args: ServeArgs,
    mcp: Option<EndpointFactory>,
    /// `(tool, scopes)` for the `/mcp` endpoint.
    tool_scopes: Vec<(String, Vec<String>)>,
    name: Option<String>,
    others: Vec<EndpointFactory>,
    shutdown: CancellationToken,
}

impl Passgate {
    /// With `passgate serve`'s settings, as parsed from its flags.
    pub fn new(args: ServeArgs) -> Self {
        Self {
            args,
            mcp: None,
            tool_scopes: Vec::new(),
            name: None,
            others: Vec::new(),
            shutdown: CancellationToken::new(),
        }
    }

    /// Settings from the `PASSGATE_*` environment variables alone (and the
    /// settings secret they may name), as `passgate serve` reads them.
    pub async fn from_env() -> anyhow::Result<Self> {
        Self::from_argv(vec![OsString::from("passgate")]).await
    }

    /// Settings from this program's command line and environment: the
    /// flags of `passgate serve` (`--help` lists them).
    pub async fn from_command_line() -> anyhow::Result<Self> {
        Self::from_argv(std::env::args_os().collect()).await
    }

    /// Settings from `argv` (program name first) and the environment.
    pub async fn from_argv(argv: Vec<OsString>) -> anyhow::Result<Self> {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            serve: ServeArgs,
        }
        let cli: Cli = config::parse_command_line(argv).await?;
        Ok(Self::new(cli.serve))
    }

    /// The settings this will serve with (public URL, derived URLs, ...).
    pub fn config(&self) -> anyhow::Result<Config> {
        Config::from_args(&self.args)
    }

    /// Serves the rmcp server that `factory` makes (one per request: the
    /// transport is stateless, so any instance answers any request) at
    /// `/mcp`, behind the bearer check. Replaces the demo tools.
    ///
    /// `factory` runs on every request: build the handler once and return
    /// clones that share its tool router (an `Arc<ToolRouter<Self>>` field).
    /// Calling `Self::tool_router()` in the factory builds every tool's
    /// description and schemas again for each call.
    pub fn mcp<H, F>(mut self, factory: F) -> Self
    where
        H: ServerHandler + Send + 'static,
        F: Fn() -> H + Send + Sync + 'static,
    {
        let factory = Arc::new(factory);
        self.mcp = Some(Arc::new(move |state: &AppState| {
            let factory = factory.clone();
            ProtectedMcp::rmcp_from(
                Resource::mcp(&state.config),
                move || factory(),
                &state.config,
                state.shutdown.clone(),
            )
        }));
        self
    }

    /// The name clients and the metadata show for `/mcp`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// `tool` at `/mcp` needs every one of `scopes`, besides `mcp`: without
    /// them a call answers 403 with the `insufficient_scope` challenge, and
    /// clients can ask for them when they sign in.
    pub fn require_scopes<I, S>(mut self, tool: &str, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tool_scopes.push((
            tool.to_owned(),
            scopes.into_iter().map(Into::into).collect(),
        ));
        self
    }

    /// Another protected endpoint below `/mcp` (any tower service, see
    /// [`ProtectedMcp`]), with its own resource URL and metadata.
    pub fn endpoint<F>(mut self, endpoint: F) -> Self
    where
        F: Fn(&AppState) -> ProtectedMcp + Send + Sync + 'static,
    {
        self.others.push(Arc::new(endpoint));
        self
    }

    /// Cancelling `shutdown` ends serving gracefully and stops the
    /// background work (key reloads, the purge); so do SIGTERM and Ctrl-C.
    pub fn shutdown_on(mut self, shutdown: CancellationToken) -> Self {
        self.shutdown = shutdown;
        self
    }

    fn endpoints(&self) -> Endpoints {
        let mcp = self.mcp.clone();
        let name = self.name.clone();
        let tool_scopes = self.tool_scopes.clone();
        let others = self.others.clone();
        Arc::new(move |state: &AppState| {
            let mut endpoint = match &mcp {
                Some(make) => make(state),
                None => ProtectedMcp::demo(&state.config, state.shutdown.clone()),
            };
            if let Some(name) = &name {
                endpoint = endpoint.named(name);
            }
            for (tool, scopes) in &tool_scopes {
                endpoint = endpoint.require_scopes(tool, scopes.iter().cloned());
            }
            let mut all = vec![endpoint];
            all.extend(others.iter().map(|make| make(state)));
            all
        })
    }

    /// The whole application as an axum [`Router`], after `passgate
    /// serve`'s start-up (store, first administrator's invitation, signing
    /// keys, scheduled purge). Serve it with connect info, which the rate
    /// limits need:
    /// `axum::serve(listener, router.into_make_service_with_connect_info::<std::net::SocketAddr>())`.
    pub async fn router(self) -> anyhow::Result<Router> {
        let config = self.config()?;
        server::start(&self.args, &config, &self.shutdown, &self.endpoints()).await
    }

    /// Serves as `passgate serve` does: on `--listen`, answering 503 while
    /// the store is unreachable at start, until SIGTERM or Ctrl-C, then
    /// letting requests in flight finish. Logs to standard error unless a
    /// `tracing` subscriber is set already.
    ///
    /// Under the AWS Lambda runtime (built with the `lambda` feature), it
    /// answers Function URL invocations instead, with the same endpoints:
    /// one binary serves your tools on a server and on Lambda.
    pub async fn serve(self) -> anyhow::Result<()> {
        telemetry::try_init(self.args.common.log_format);
        #[cfg(feature = "lambda")]
        if crate::lambda::is_lambda_runtime() {
            return crate::lambda::serve(&self.args, &self.endpoints()).await;
        }
        server::run_with(&self.args, self.endpoints(), self.shutdown.clone()).await
    }
}
