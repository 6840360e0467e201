//! The command line: the settings every subcommand shares and those of
//! `passgate serve`, each flag with its `PASSGATE_*` variable.

use std::{net::SocketAddr, path::PathBuf};

use url::Url;

use super::oidc::SignInArgs;

/// Default cap on request bodies. MCP requests and OAuth forms are small; a
/// large body is a mistake or an attack, and gets 413.
pub const DEFAULT_MAX_BODY_BYTES: usize = 256 * 1024;
/// Five minutes: expired items are few by then, and each purge is short.
pub const DEFAULT_PURGE_INTERVAL_SECS: u64 = 300;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StoreKind {
    /// A SQLite file in the data directory (the default; no cloud account).
    Sqlite,
    /// An Amazon DynamoDB table (build with the `dynamodb` feature).
    Dynamodb,
    /// A PostgreSQL database shared by every instance (build with the
    /// `postgres` feature).
    Postgres,
}

/// The PostgreSQL connection URL. It may hold the password, so `Debug`
/// (and so every log line and error that formats the settings) hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(pub String);

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DatabaseUrl(<redacted>)")
    }
}

impl std::str::FromStr for DatabaseUrl {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

/// Settings every subcommand needs: where state lives and who we are.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonArgs {
    /// The URL people and clients reach passgate at (scheme, host, optional
    /// port; no path). It is the OAuth issuer and the base of every URL that
    /// passgate hands out, so it must stay stable.
    #[arg(long, env = "PASSGATE_PUBLIC_URL", default_value = "http://localhost:8080", value_parser = parse_public_url)]
    pub public_url: Url,

    /// Where the embedded store keeps its files.
    #[arg(long, env = "PASSGATE_DATA_DIR", default_value = "passgate-data")]
    pub data_dir: PathBuf,

    /// Which store keeps the OAuth and account state.
    #[arg(long, env = "PASSGATE_STORE", value_enum, default_value = "sqlite")]
    pub store: StoreKind,

    /// DynamoDB table name (with `--store dynamodb`).
    #[arg(long, env = "PASSGATE_DYNAMODB_TABLE")]
    pub dynamodb_table: Option<String>,

    /// PostgreSQL connection URL (with `--store postgres`), e.g.
    /// `postgres://passgate:PASSWORD@db.internal/passgate?sslmode=require`.
    #[arg(long, env = "PASSGATE_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<DatabaseUrl>,

    /// PEM file with the CA certificate(s) of the PostgreSQL server's
    /// certificate; setting it requires TLS. Without it, TLS is verified
    /// against the system's roots.
    #[arg(long, env = "PASSGATE_DATABASE_CA_FILE")]
    pub database_ca_file: Option<PathBuf>,

    /// Most PostgreSQL connections one instance opens.
    #[arg(long, env = "PASSGATE_DATABASE_MAX_CONNECTIONS", default_value_t = 16)]
    pub database_max_connections: usize,

    /// How long a request waits for a PostgreSQL connection, a connection
    /// attempt, or one statement, in seconds, before it is answered 503.
    #[arg(long, env = "PASSGATE_DATABASE_TIMEOUT_SECS", default_value_t = 5)]
    pub database_timeout_secs: u64,

    /// The master secret that encrypts the signing keys (and the token
    /// answers kept for a client's retry) in the store. Without it (or
    /// `--master-key-secret`), the SQLite setup creates `master.key` in the
    /// data directory on first start.
    // Generated keys are base64url: one in 64 starts with `-`.
    #[arg(
        long,
        env = "PASSGATE_MASTER_KEY",
        hide_env_values = true,
        allow_hyphen_values = true
    )]
    pub master_key: Option<String>,

    /// An AWS Secrets Manager secret (name or ARN) whose string value is the
    /// master key, read once at start-up (builds with AWS support).
    #[arg(long, env = "PASSGATE_MASTER_KEY_SECRET", hide_env_values = true)]
    pub master_key_secret: Option<String>,

    /// An AWS Secrets Manager secret (name or ARN) holding a JSON object of
    /// `PASSGATE_*` settings, read once at start-up. A setting in it applies
    /// where neither the command line nor the environment sets it.
    #[arg(long, env = "PASSGATE_SETTINGS_SECRET")]
    pub settings_secret: Option<String>,

    /// Log format.
    #[arg(
        long,
        env = "PASSGATE_LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    pub log_format: LogFormat,
}

/// Settings of `passgate serve`.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub common: CommonArgs,

    /// Address to listen on.
    #[arg(long, env = "PASSGATE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Extra browser origins allowed to call `/mcp` (for browser-based MCP
    /// clients). The public URL's own origin is always allowed.
    #[arg(
        long = "allowed-origin",
        env = "PASSGATE_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    pub allowed_origins: Vec<String>,

    /// A JSON file listing pre-registered OAuth clients:
    /// `[{"client_id": "...", "client_name": "...", "redirect_uris": ["..."], "client_secret": "..."}]`
    /// (`client_secret` only for confidential clients).
    #[arg(long, env = "PASSGATE_CLIENTS_FILE")]
    pub clients_file: Option<PathBuf>,

    /// Largest accepted request body, in bytes.
    #[arg(long, env = "PASSGATE_MAX_BODY_BYTES", default_value_t = DEFAULT_MAX_BODY_BYTES)]
    pub max_body_bytes: usize,

    /// Take the client address for rate limits from the last (right-most)
    /// `X-Forwarded-For` entry, the one the reverse proxy in front of
    /// passgate appended. Only behind exactly one such proxy; without one,
    /// clients could pick their own address.
    #[arg(
        long,
        env = "PASSGATE_TRUST_FORWARDED_FOR",
        value_parser = clap::builder::BoolishValueParser::new(),
        num_args = 0..=1,
        default_value = "false",
        default_missing_value = "true"
    )]
    pub trust_forwarded_for: bool,

    /// How often expired items (codes, sessions, ceremonies, rate-limit
    /// windows...) are deleted from the SQLite store, in seconds; 0 turns
    /// purging off. DynamoDB deletes them itself (TTL).
    #[arg(long, env = "PASSGATE_PURGE_INTERVAL_SECS", default_value_t = DEFAULT_PURGE_INTERVAL_SECS)]
    pub purge_interval_secs: u64,

    /// How long invitation links (including the first administrator's)
    /// stay valid, in hours.
    #[arg(long, env = "PASSGATE_INVITE_TTL_HOURS", default_value_t = DEFAULT_INVITE_TTL_HOURS)]
    pub invite_ttl_hours: u32,

    /// Development only: accept client metadata documents (URL client ids)
    /// on loopback addresses, over http too, to try a client's metadata
    /// document option against a local passgate. Refused with an https
    /// public URL, and logged as a warning at start-up.
    #[arg(
        long,
        env = "PASSGATE_DEV_ALLOW_LOOPBACK_CIMD",
        value_parser = clap::builder::BoolishValueParser::new(),
        num_args = 0..=1,
        default_value = "false",
        default_missing_value = "true"
    )]
    pub dev_allow_loopback_cimd: bool,

    /// Protect this Streamable HTTP MCP server (its URL) and serve it at
    /// `<public URL>/mcp` instead of the demo tools (docs/gateway.md).
    #[arg(long, env = "PASSGATE_BACKEND")]
    pub backend: Option<Url>,

    /// Sign requests to `--backend` with AWS SigV4 for this service:
    /// `lambda` (a Function URL with AWS_IAM auth) or `execute-api`, with
    /// the process's own AWS credentials (docs/deploy-aws.md).
    #[arg(
        long,
        env = "PASSGATE_BACKEND_SIGV4_SERVICE",
        requires = "backend_sigv4_region"
    )]
    pub backend_sigv4_service: Option<String>,

    /// The backend's AWS region, for `--backend-sigv4-service`.
    #[arg(
        long,
        env = "PASSGATE_BACKEND_SIGV4_REGION",
        requires = "backend_sigv4_service"
    )]
    pub backend_sigv4_region: Option<String>,

    /// A TOML file of MCP servers to protect, each served at
    /// `<public URL>/mcp/<name>` (docs/gateway.md).
    #[arg(long, env = "PASSGATE_GATEWAY_CONFIG")]
    pub gateway_config: Option<PathBuf>,

    #[command(flatten)]
    pub sign_in: SignInArgs,
}

/// Default lifetime of an invitation link.
pub const DEFAULT_INVITE_TTL_HOURS: u32 = 24;

/// Accepts only an absolute http(s) URL with no path, query or fragment, so
/// that the issuer and every derived URL are unambiguous.
pub fn parse_public_url(raw: &str) -> Result<Url, String> {
    let url = Url::parse(raw).map_err(|e| format!("not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("the public URL must start with http:// or https://".into());
    }
    if url.host_str().is_none() {
        return Err("the public URL needs a host".into());
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err("the public URL must be an origin only, like https://mcp.example.com (no path, query or fragment)".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("the public URL must not contain credentials".into());
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_url_must_be_an_origin() {
        assert!(parse_public_url("https://mcp.example.com").is_ok());
        assert!(parse_public_url("https://mcp.example.com/").is_ok());
        assert!(parse_public_url("https://mcp.example.com/base").is_err());
        assert!(parse_public_url("https://mcp.example.com/?a=b").is_err());
        assert!(parse_public_url("ftp://mcp.example.com").is_err());
        assert!(parse_public_url("https://u:p@mcp.example.com").is_err());
        assert!(parse_public_url("not a url").is_err());
    }
}

/// Which tokio runtime serves (`PASSGATE_RUNTIME`): read from the
/// environment before the runtime exists, so neither a flag nor the settings
/// secret can set it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// Worker threads, one per CPU, with work stealing (the default): a
    /// slow request never holds up the others.
    MultiThread,
    /// Everything on one thread: no wake-ups across threads, so less CPU per
    /// request, but one slow request delays every other one.
    CurrentThread,
}

impl Runtime {
    pub const ENV: &str = "PASSGATE_RUNTIME";

    pub fn from_env() -> anyhow::Result<Self> {
        match std::env::var(Self::ENV).ok().as_deref() {
            None | Some("") | Some("multi-thread") => Ok(Self::MultiThread),
            Some("current-thread") => Ok(Self::CurrentThread),
            Some(other) => anyhow::bail!(
                "{}={other:?} is not a runtime: use multi-thread or current-thread",
                Self::ENV
            ),
        }
    }

    pub fn build(self) -> std::io::Result<tokio::runtime::Runtime> {
        match self {
            Self::MultiThread => tokio::runtime::Builder::new_multi_thread(),
            Self::CurrentThread => tokio::runtime::Builder::new_current_thread(),
        }
        .enable_all()
        .build()
    }
}
