//! The `passgate` binary: parses the command line and wires the library
//! together. No logic lives here.

use clap::{Parser, Subcommand};
use passgate::{
    app::AppState,
    config::{Config, ServeArgs},
    routes, server, telemetry,
};

#[derive(Parser)]
#[command(
    name = "passgate",
    version,
    about = "A remote MCP server behind passkey sign-in"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(ServeArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    #[cfg(feature = "lambda")]
    let argv = passgate::lambda::serve_by_default(argv);
    let cli: Cli = passgate::config::parse_command_line(argv).await?;
    match cli.command {
        Command::Serve(args) => {
            telemetry::init(args.common.log_format);
            #[cfg(feature = "lambda")]
            if passgate::lambda::is_lambda_runtime() {
                return passgate::lambda::serve(&args).await;
            }
            let config = Config::from_args(&args)?;
            let listener = tokio::net::TcpListener::bind(config.listen).await?;
            let (store, master_key) = passgate::bootstrap::open_store(&args.common).await?;
            let state = AppState::build(config, store, master_key).await?;
            tracing::info!(
                listen = %listener.local_addr()?,
                mcp_url = %state.config.mcp_url(),
                "passgate is serving"
            );
            let shutdown = state.shutdown.clone();
            server::serve(listener, routes::router(state), shutdown).await
        }
    }
}
