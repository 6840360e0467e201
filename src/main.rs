//! The `passgate` binary: parses the command line and wires the library
//! together. No logic lives here.

use clap::{Parser, Subcommand};
use passgate::{
    config::{CommonArgs, DEFAULT_INVITE_TTL_HOURS, ServeArgs},
    login::cli,
    oauth::cli as oauth_cli,
    telemetry,
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
// Parsed once at start-up; the size of the `serve` settings does not matter.
#[allow(clippy::large_enum_variant)]
enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Manage the people who can sign in.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Manage the OAuth clients connected to this server.
    #[command(subcommand)]
    Clients(ClientsCommand),
    /// Manage the keys that sign access tokens.
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Subcommand)]
enum ClientsCommand {
    /// List connected clients.
    List {
        /// The same pre-registered clients file the server uses, to list
        /// those clients too.
        #[arg(long, env = "PASSGATE_CLIENTS_FILE")]
        clients_file: Option<std::path::PathBuf>,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// End every sign-in of a client and delete its registration.
    Revoke {
        // Registered IDs are random base64url, so one in 64 begins with `-`.
        #[arg(allow_hyphen_values = true)]
        client_id: String,
        #[command(flatten)]
        common: CommonArgs,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Add a new signing key, used for new tokens from now on.
    Rotate {
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Remove all signing keys but the newest (tokens they signed stop working).
    Prune {
        #[command(flatten)]
        common: CommonArgs,
    },
}

#[derive(Subcommand)]
enum UsersCommand {
    /// Create an invitation link (printed as the last line).
    Invite {
        /// The new account's user name (lowercase, no spaces).
        name: String,
        /// Make the new account an administrator.
        #[arg(long)]
        admin: bool,
        /// How long the link stays valid.
        #[arg(long, default_value_t = DEFAULT_INVITE_TTL_HOURS)]
        ttl_hours: u32,
        /// Whether the server offers passkeys, as `serve --passkeys`: an
        /// invitation enrolls one, so it is refused when they are off.
        #[arg(
            long,
            env = "PASSGATE_PASSKEYS",
            value_parser = clap::builder::BoolishValueParser::new(),
            num_args = 0..=1,
            default_value = "true",
            default_missing_value = "true"
        )]
        passkeys: bool,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// List every account.
    List {
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Disable an account: ends its sessions and revokes its grants.
    Disable {
        name: String,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Enable a disabled account again.
    Enable {
        name: String,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Delete an account with its passkeys, sessions and grants.
    Delete {
        name: String,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Create a single-use link that lets an existing account add a passkey
    /// again (printed as the last line).
    Recover {
        name: String,
        /// How long the link stays valid.
        #[arg(long, default_value_t = DEFAULT_INVITE_TTL_HOURS)]
        ttl_hours: u32,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Set an account's groups (comma-separated; none clears them). An
    /// account that signs in through an identity provider gets the
    /// provider's groups again at each sign-in.
    Groups {
        name: String,
        #[arg(default_value = "")]
        groups: String,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Make an existing account an administrator (however they sign in).
    Promote {
        name: String,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// Make an administrator a member again.
    Demote {
        name: String,
        #[command(flatten)]
        common: CommonArgs,
    },
}

impl UsersCommand {
    fn common(&self) -> &CommonArgs {
        match self {
            Self::Invite { common, .. }
            | Self::List { common }
            | Self::Disable { common, .. }
            | Self::Enable { common, .. }
            | Self::Delete { common, .. }
            | Self::Recover { common, .. }
            | Self::Groups { common, .. }
            | Self::Promote { common, .. }
            | Self::Demote { common, .. } => common,
        }
    }
}

fn main() -> anyhow::Result<()> {
    // Chosen before anything else runs, so from the environment only.
    passgate::config::Runtime::from_env()?
        .build()?
        .block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    #[cfg(feature = "lambda")]
    let argv = passgate::lambda::serve_by_default(argv);
    let cli: Cli = passgate::config::parse_command_line(argv).await?;
    match cli.command {
        Command::Serve(args) => {
            telemetry::init(args.common.log_format);
            // The demo tools, served the way a library user serves theirs
            // (over TCP, or under the Lambda runtime). Built once: each
            // request gets a clone, which shares the tool router (building
            // it, schemas and all, per request was a tenth of a call's CPU).
            let tools = passgate::mcp::Tools::new();
            passgate::Passgate::new(args)
                .mcp(move || tools.clone())
                .serve()
                .await
        }
        Command::Users(command) => {
            let common = command.common();
            telemetry::init(common.log_format);
            let (store, _) = passgate::bootstrap::open_store(common).await?;
            let store = store.as_ref();
            let output = match &command {
                UsersCommand::Invite {
                    name,
                    admin,
                    ttl_hours,
                    passkeys,
                    common,
                } => {
                    let base = common.public_url.as_str().trim_end_matches('/');
                    cli::invite(store, base, name, *admin, *ttl_hours, *passkeys).await?
                }
                UsersCommand::List { .. } => cli::list(store).await?,
                UsersCommand::Disable { name, .. } => cli::disable(store, name).await?,
                UsersCommand::Enable { name, .. } => cli::enable(store, name).await?,
                UsersCommand::Delete { name, .. } => cli::delete(store, name).await?,
                UsersCommand::Recover {
                    name,
                    ttl_hours,
                    common,
                } => {
                    let base = common.public_url.as_str().trim_end_matches('/');
                    cli::recover(store, base, name, *ttl_hours).await?
                }
                UsersCommand::Groups { name, groups, .. } => {
                    cli::groups(store, name, groups).await?
                }
                UsersCommand::Promote { name, .. } => cli::promote(store, name).await?,
                UsersCommand::Demote { name, .. } => cli::demote(store, name).await?,
            };
            println!("{output}");
            Ok(())
        }
        Command::Clients(command) => {
            let common = match &command {
                ClientsCommand::List { common, .. } | ClientsCommand::Revoke { common, .. } => {
                    common
                }
            };
            telemetry::init(common.log_format);
            let (store, _) = passgate::bootstrap::open_store(common).await?;
            let output = match &command {
                ClientsCommand::List { clients_file, .. } => {
                    let configured = match clients_file {
                        Some(path) => passgate::oauth::client::configured(
                            &passgate::config::load_clients(path)?,
                        )
                        .map_err(anyhow::Error::msg)?,
                        None => Vec::new(),
                    };
                    oauth_cli::list_clients(store.as_ref(), &configured).await?
                }
                ClientsCommand::Revoke { client_id, .. } => {
                    oauth_cli::revoke_client(store.as_ref(), client_id).await?
                }
            };
            println!("{output}");
            Ok(())
        }
        Command::Keys(command) => {
            let common = match &command {
                KeysCommand::Rotate { common } | KeysCommand::Prune { common } => common,
            };
            telemetry::init(common.log_format);
            let (store, master_key) = passgate::bootstrap::open_store(common).await?;
            let output = match command {
                KeysCommand::Rotate { .. } => {
                    oauth_cli::rotate_keys(store.as_ref(), &master_key).await?
                }
                KeysCommand::Prune { .. } => oauth_cli::prune_keys(store.as_ref()).await?,
            };
            println!("{output}");
            Ok(())
        }
    }
}
