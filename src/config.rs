//! Configuration: parsed once in `main` from flags and `PASSGATE_*` variables,
//! then passed down by reference. Nothing reads the environment after start-up.

use std::{
    collections::{BTreeMap, BTreeSet},
    ffi::OsString,
    net::SocketAddr,
    path::PathBuf,
};

use url::Url;

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
    pub upstream: UpstreamArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum UpstreamPreset {
    /// Any OpenID provider.
    Generic,
    /// Amazon Cognito: no resource indicators, no `offline_access`,
    /// groups in `cognito:groups`, logout on the user-pool domain.
    Cognito,
}

/// Signing in through an upstream OpenID provider (`src/upstream/`).
#[derive(Debug, Clone, clap::Args)]
pub struct UpstreamArgs {
    /// Offer passkey sign-in (and passkey enrollment). Turn off when people
    /// sign in only through the upstream provider.
    #[arg(
        long,
        env = "PASSGATE_PASSKEYS",
        value_parser = clap::builder::BoolishValueParser::new(),
        num_args = 0..=1,
        default_value = "true",
        default_missing_value = "true"
    )]
    pub passkeys: bool,

    /// The upstream OpenID provider's issuer URL (its discovery document is
    /// `<issuer>/.well-known/openid-configuration`). Enables "Sign in with".
    #[arg(long, alias = "upstream-issuer", env = "PASSGATE_OIDC_ISSUER")]
    pub oidc_issuer: Option<String>,

    /// passgate's client id at the upstream provider.
    #[arg(long, alias = "upstream-client-id", env = "PASSGATE_OIDC_CLIENT_ID")]
    pub oidc_client_id: Option<String>,

    /// passgate's client secret at the upstream provider (needed unless
    /// the provider accepts public clients). Its value is never shown or
    /// logged.
    #[arg(
        long,
        alias = "upstream-client-secret",
        env = "PASSGATE_OIDC_CLIENT_SECRET",
        hide_env_values = true
    )]
    pub oidc_client_secret: Option<String>,

    /// Scopes asked of the upstream provider (space-separated).
    #[arg(
        long,
        alias = "upstream-scopes",
        env = "PASSGATE_OIDC_SCOPES",
        default_value = "openid email profile"
    )]
    pub oidc_scopes: String,

    /// The provider's name on the sign-in button.
    #[arg(long, alias = "upstream-name", env = "PASSGATE_OIDC_NAME")]
    pub oidc_name: Option<String>,

    /// Provider quirks to apply.
    #[arg(
        long,
        alias = "upstream-preset",
        env = "PASSGATE_OIDC_PRESET",
        value_enum,
        default_value = "generic"
    )]
    pub oidc_preset: UpstreamPreset,

    /// Cognito's hosted-UI domain (`https://<prefix>.auth.<region>.amazoncognito.com`
    /// or a custom domain), for signing out upstream too.
    #[arg(long, alias = "upstream-domain", env = "PASSGATE_OIDC_DOMAIN")]
    pub oidc_domain: Option<String>,

    /// Extra parameters for the upstream authorization request, `k=v,k=v`.
    #[arg(
        long,
        alias = "upstream-extra-authorize-params",
        env = "PASSGATE_OIDC_EXTRA_AUTHORIZE_PARAMS"
    )]
    pub oidc_extra_authorize_params: Option<String>,

    /// The ID-token claim that identifies the person (`sub` is stable;
    /// `email` survives re-creating the upstream account).
    #[arg(
        long,
        alias = "upstream-subject-claim",
        env = "PASSGATE_OIDC_SUBJECT_CLAIM",
        default_value = "sub"
    )]
    pub oidc_subject_claim: String,

    /// Verified email addresses allowed to sign in (comma-separated). With
    /// `--oidc-allowed-domains`, an address in either list is allowed;
    /// with `--oidc-allowed-groups` too, the person must also be in one
    /// of those groups. No list: everyone the provider signs in.
    #[arg(
        long,
        alias = "upstream-allowed-emails",
        env = "PASSGATE_OIDC_ALLOWED_EMAILS",
        value_delimiter = ','
    )]
    pub oidc_allowed_emails: Vec<String>,

    /// Domains whose verified email addresses are allowed to sign in
    /// (combined with the other lists as `--oidc-allowed-emails` says).
    #[arg(
        long,
        alias = "upstream-allowed-domains",
        env = "PASSGATE_OIDC_ALLOWED_DOMAINS",
        value_delimiter = ','
    )]
    pub oidc_allowed_domains: Vec<String>,

    /// People with these verified emails are made administrators at each
    /// sign-in through the provider (removing them from the list does not
    /// demote them: `passgate users demote <name>` does).
    #[arg(
        long,
        alias = "upstream-admin-emails",
        env = "PASSGATE_OIDC_ADMIN_EMAILS",
        value_delimiter = ','
    )]
    pub oidc_admin_emails: Vec<String>,

    /// Members of these groups (in the groups claim) are made
    /// administrators at each sign-in, as with `--oidc-admin-emails`:
    /// the way for providers that verify no emails, like Entra ID.
    #[arg(
        long,
        alias = "upstream-admin-groups",
        env = "PASSGATE_OIDC_ADMIN_GROUPS",
        value_delimiter = ','
    )]
    pub oidc_admin_groups: Vec<String>,

    /// Groups allowed to sign in: the person must be in one of them, and,
    /// if an email or domain list is set, have an allowed address too.
    #[arg(
        long,
        alias = "upstream-allowed-groups",
        env = "PASSGATE_OIDC_ALLOWED_GROUPS",
        value_delimiter = ','
    )]
    pub oidc_allowed_groups: Vec<String>,

    /// The ID-token claim listing groups (default `cognito:groups` with the
    /// Cognito preset, `groups` otherwise).
    #[arg(
        long,
        alias = "upstream-groups-claim",
        env = "PASSGATE_OIDC_GROUPS_CLAIM"
    )]
    pub oidc_groups_claim: Option<String>,

    /// Timeout for each request to the upstream provider, in seconds.
    #[arg(
        long,
        alias = "upstream-timeout-secs",
        env = "PASSGATE_OIDC_TIMEOUT_SECS",
        default_value_t = 10
    )]
    pub oidc_timeout_secs: u64,

    /// How long a started upstream sign-in stays valid, in seconds.
    #[arg(
        long,
        alias = "upstream-state-ttl-secs",
        env = "PASSGATE_OIDC_STATE_TTL_SECS",
        default_value_t = 600,
        hide = true
    )]
    pub oidc_state_ttl_secs: i64,
}

/// The upstream provider settings, validated.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<String>,
    pub scopes: String,
    pub name: String,
    pub preset: UpstreamPreset,
    pub domain: Option<String>,
    pub extra_authorize_params: Vec<(String, String)>,
    pub subject_claim: String,
    pub allowed_emails: Vec<String>,
    pub allowed_domains: Vec<String>,
    pub allowed_groups: Vec<String>,
    pub admin_emails: Vec<String>,
    pub admin_groups: Vec<String>,
    pub groups_claim: String,
    pub timeout_secs: u64,
    pub state_ttl_secs: i64,
}

impl UpstreamArgs {
    fn to_config(&self) -> anyhow::Result<Option<UpstreamConfig>> {
        let Some(issuer) = self.oidc_issuer.as_deref().filter(|s| !s.is_empty()) else {
            return Ok(None);
        };
        let issuer_url =
            Url::parse(issuer).map_err(|e| anyhow::anyhow!("--oidc-issuer is not a URL: {e}"))?;
        if !matches!(issuer_url.scheme(), "https" | "http") {
            anyhow::bail!("--oidc-issuer must be an https URL");
        }
        let client_id = self
            .oidc_client_id
            .clone()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| anyhow::anyhow!("--oidc-issuer needs --oidc-client-id"))?;
        let cognito = self.oidc_preset == UpstreamPreset::Cognito;
        let mut scopes: Vec<&str> = self.oidc_scopes.split_whitespace().collect();
        if !scopes.contains(&"openid") {
            scopes.insert(0, "openid");
        }
        if cognito {
            // Cognito has no `offline_access` scope and refuses unknown ones.
            scopes.retain(|s| *s != "offline_access");
        }
        let mut extra = Vec::new();
        for pair in self
            .oidc_extra_authorize_params
            .as_deref()
            .unwrap_or("")
            .split(',')
            .filter(|p| !p.trim().is_empty())
        {
            let (k, v) = pair.split_once('=').ok_or_else(|| {
                anyhow::anyhow!("--oidc-extra-authorize-params wants k=v,k=v; got {pair:?}")
            })?;
            let k = k.trim().to_owned();
            const OURS: &[&str] = &[
                "response_type",
                "client_id",
                "redirect_uri",
                "scope",
                "state",
                "nonce",
                "code_challenge",
                "code_challenge_method",
            ];
            if OURS.contains(&k.as_str()) || (cognito && k == "resource") {
                anyhow::bail!("--oidc-extra-authorize-params cannot set {k}");
            }
            extra.push((k, v.trim().to_owned()));
        }
        let lower = |v: &[String]| -> Vec<String> {
            v.iter()
                .map(|s| s.trim().trim_start_matches('@').to_ascii_lowercase())
                .filter(|s| !s.is_empty())
                .collect()
        };
        let name = self.oidc_name.clone().unwrap_or_else(|| {
            if cognito {
                "Amazon Cognito".into()
            } else {
                issuer_url
                    .host_str()
                    .unwrap_or("your identity provider")
                    .to_owned()
            }
        });
        Ok(Some(UpstreamConfig {
            issuer: issuer.to_owned(),
            client_id,
            client_secret: self.oidc_client_secret.clone().filter(|s| !s.is_empty()),
            scopes: scopes.join(" "),
            name,
            preset: self.oidc_preset,
            domain: self
                .oidc_domain
                .as_deref()
                .filter(|s| !s.is_empty())
                .map(|d| {
                    let d = d.trim_end_matches('/');
                    if d.starts_with("https://") || d.starts_with("http://") {
                        d.to_owned()
                    } else {
                        format!("https://{d}")
                    }
                }),
            extra_authorize_params: extra,
            subject_claim: self.oidc_subject_claim.clone(),
            allowed_emails: lower(&self.oidc_allowed_emails),
            allowed_domains: lower(&self.oidc_allowed_domains),
            admin_emails: lower(&self.oidc_admin_emails),
            admin_groups: self
                .oidc_admin_groups
                .iter()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
            allowed_groups: self
                .oidc_allowed_groups
                .iter()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect(),
            groups_claim: self
                .oidc_groups_claim
                .clone()
                .unwrap_or_else(|| if cognito { "cognito:groups" } else { "groups" }.to_owned()),
            timeout_secs: self.oidc_timeout_secs.max(1),
            state_ttl_secs: self.oidc_state_ttl_secs.max(1),
        }))
    }
}

pub fn load_clients(path: &std::path::Path) -> anyhow::Result<Vec<ConfiguredClient>> {
    use anyhow::Context;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the clients file {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is not a JSON list of clients", path.display()))
}

/// A pre-registered client from the operator's clients file.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct ConfiguredClient {
    pub client_id: String,
    pub client_name: Option<String>,
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub client_secret: Option<String>,
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

/// Names the settings secret; also accepted as `--settings-secret`.
pub const SETTINGS_SECRET_ENV: &str = "PASSGATE_SETTINGS_SECRET";
const SETTINGS_SECRET_FLAG: &str = "--settings-secret";

/// Parses the command line `argv` (program name first) into `C`, after
/// applying the settings secret if one is named (by `--settings-secret` or
/// `PASSGATE_SETTINGS_SECRET`). The secret is read once, before parsing, so
/// it serves every subcommand; failing to read it fails start-up.
///
/// How its values reach clap: each one becomes the *default value* of the
/// argument whose `env` is that key. Clap then ranks command line, then
/// environment, then the secret, then the built-in default, and parses the
/// value with the argument's own parser. Setting environment variables
/// instead is `unsafe` in Rust 2024 (passgate has no unsafe code), and appending
/// flags to argv would rank the secret above the environment and collide
/// with flags given on the command line. The key-to-argument mapping is
/// clap's own definition (`Arg::get_env`), so there is no table to drift.
pub async fn parse_command_line<C: clap::Parser>(argv: Vec<OsString>) -> anyhow::Result<C> {
    let mut command = C::command();
    if let Some(name) = settings_secret_name(&argv) {
        let settings = read_settings_secret(&name).await?;
        command = settings.apply_to(command)?;
    }
    let mut matches = with_legacy_oidc_env(command).get_matches_from(argv);
    Ok(
        C::from_arg_matches_mut(&mut matches)
            .unwrap_or_else(|e| e.format(&mut C::command()).exit()),
    )
}

#[cfg(feature = "aws")]
async fn read_settings_secret(name: &str) -> anyhow::Result<SettingsSecret> {
    SettingsSecret::from_json(name, &crate::aws::secret_string(name).await?)
}

#[cfg(not(feature = "aws"))]
async fn read_settings_secret(_name: &str) -> anyhow::Result<SettingsSecret> {
    anyhow::bail!(
        "{SETTINGS_SECRET_ENV} is set, but this passgate was built without AWS support; \
         rebuild with `--features dynamodb`"
    )
}

/// The OpenID provider's settings were `--upstream-*` and
/// `PASSGATE_UPSTREAM_*` until "upstream" came to mean the gateway's
/// backends. The old flags are clap aliases; the old variables rank below
/// the new ones (and above the settings secret, as the environment does).
const OIDC_ENV_PREFIX: &str = "PASSGATE_OIDC_";
const LEGACY_OIDC_ENV_PREFIX: &str = "PASSGATE_UPSTREAM_";

/// `PASSGATE_UPSTREAM_X` for `PASSGATE_OIDC_X`.
fn legacy_oidc_env(name: &str) -> Option<String> {
    name.strip_prefix(OIDC_ENV_PREFIX)
        .map(|rest| format!("{LEGACY_OIDC_ENV_PREFIX}{rest}"))
}

fn with_legacy_oidc_env(command: clap::Command) -> clap::Command {
    command
        .mut_args(|arg| {
            let legacy_value = arg
                .get_env()
                .and_then(|env| env.to_str())
                .filter(|env| std::env::var_os(env).is_none())
                .and_then(legacy_oidc_env)
                .and_then(|legacy| std::env::var(legacy).ok());
            match legacy_value {
                // Hidden in `--help`: the value may be the client secret.
                Some(value) => arg.default_value(value).hide_default_value(true),
                None => arg,
            }
        })
        .mut_subcommands(with_legacy_oidc_env)
}

/// The settings secret's name: `--settings-secret NAME` (or `=NAME`) on the
/// command line, else `PASSGATE_SETTINGS_SECRET`. Empty means unset.
pub fn settings_secret_name(argv: &[OsString]) -> Option<String> {
    let mut args = argv.iter().skip(1).filter_map(|a| a.to_str());
    let mut from_flag = None;
    while let Some(arg) = args.next() {
        if arg == "--" {
            break;
        } else if arg == SETTINGS_SECRET_FLAG {
            from_flag = args.next().map(str::to_owned);
        } else if let Some(value) = arg
            .strip_prefix(SETTINGS_SECRET_FLAG)
            .and_then(|rest| rest.strip_prefix('='))
        {
            from_flag = Some(value.to_owned());
        }
    }
    from_flag
        .or_else(|| std::env::var(SETTINGS_SECRET_ENV).ok())
        .filter(|name| !name.is_empty())
}

/// The `PASSGATE_*` settings of a settings secret. Values may be secret
/// (an upstream client secret), so `Debug` shows the keys only and no error
/// message quotes a value.
pub struct SettingsSecret {
    name: String,
    values: BTreeMap<String, String>,
}

impl std::fmt::Debug for SettingsSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SettingsSecret")
            .field("name", &self.name)
            .field("keys", &self.values.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl SettingsSecret {
    /// Reads the secret's string value: a JSON object whose keys start with
    /// `PASSGATE_` and whose values are strings, numbers or booleans.
    pub fn from_json(name: &str, text: &str) -> anyhow::Result<Self> {
        use anyhow::bail;
        // serde's messages can quote the input ("invalid type: string
        // \"...\""), so only the position of a syntax error is passed on.
        let object = match serde_json::from_str(text) {
            Ok(serde_json::Value::Object(object)) => object,
            Ok(_) => bail!("the settings secret {name} is not a JSON object"),
            Err(e) => bail!(
                "the settings secret {name} is not a JSON object: malformed at line {}, column {}",
                e.line(),
                e.column()
            ),
        };
        let mut values = BTreeMap::new();
        for (key, value) in object {
            if !key.starts_with("PASSGATE_") {
                bail!(
                    "the settings secret {name} sets {key}; it may hold only PASSGATE_* settings"
                );
            }
            if key == SETTINGS_SECRET_ENV {
                bail!("the settings secret {name} sets {key}, which only the environment can set");
            }
            let value = match value {
                serde_json::Value::String(s) => s,
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                _ => bail!(
                    "the settings secret {name} sets {key} to something other than a string, number or boolean"
                ),
            };
            match key.strip_prefix(LEGACY_OIDC_ENV_PREFIX) {
                Some(rest) => {
                    values
                        .entry(format!("{OIDC_ENV_PREFIX}{rest}"))
                        .or_insert(value);
                }
                None => {
                    values.insert(key, value);
                }
            }
        }
        Ok(Self {
            name: name.to_owned(),
            values,
        })
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.values.keys().map(String::as_str)
    }

    /// Makes each value the default of every argument (in `command` and its
    /// subcommands) whose environment variable is that key. A key that no
    /// argument anywhere reads is refused, so a misspelt setting does not
    /// pass silently; a key that only other subcommands read is fine.
    pub fn apply_to(&self, command: clap::Command) -> anyhow::Result<clap::Command> {
        let mut known = BTreeSet::new();
        collect_env_names(&command, &mut known);
        let unknown: Vec<&str> = self.keys().filter(|key| !known.contains(*key)).collect();
        if !unknown.is_empty() {
            anyhow::bail!(
                "the settings secret {} sets {}, which this passgate does not know",
                self.name,
                unknown.join(", ")
            );
        }
        Ok(self.set_defaults(command))
    }

    fn set_defaults(&self, command: clap::Command) -> clap::Command {
        command
            .mut_args(|arg| {
                let value = arg
                    .get_env()
                    .and_then(|env| env.to_str())
                    .and_then(|env| self.values.get(env));
                match value {
                    Some(value) => {
                        // Hidden in `--help`: the value may be a secret.
                        let hide = arg.get_action().takes_values();
                        arg.default_value(value.clone()).hide_default_value(hide)
                    }
                    None => arg,
                }
            })
            .mut_subcommands(|sub| self.set_defaults(sub))
    }
}

fn collect_env_names(command: &clap::Command, names: &mut BTreeSet<String>) {
    for arg in command.get_arguments() {
        if let Some(env) = arg.get_env().and_then(|env| env.to_str()) {
            names.insert(env.to_owned());
        }
    }
    for sub in command.get_subcommands() {
        collect_env_names(sub, names);
    }
}

/// The validated configuration the server runs with.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    public_url: Url,
    pub allowed_origins: Vec<String>,
    pub max_body_bytes: usize,
    pub clients: Vec<ConfiguredClient>,
    /// Use the right-most `X-Forwarded-For` entry as the client address.
    pub trust_forwarded_for: bool,
    /// Seconds between purges of expired items; 0: never.
    pub purge_interval_secs: u64,
    /// Lifetime of invitation links, in seconds.
    pub invite_ttl_secs: i64,
    /// Passkey sign-in and enrollment are offered.
    pub passkeys: bool,
    /// Sign-in through an upstream OpenID provider, if configured.
    pub upstream: Option<UpstreamConfig>,
    /// Development only: client metadata documents may be fetched from
    /// loopback addresses, over http too. Never with an https public URL.
    pub dev_allow_loopback_cimd: bool,
    /// `--backend`: the MCP server served at `/mcp`, if any.
    pub backend: Option<Url>,
    /// `--backend-sigv4-service` and `--backend-sigv4-region`, in that order.
    pub backend_sigv4: Option<(String, String)>,
    /// `--gateway-config`: the file of MCP servers served at `/mcp/<name>`.
    pub gateway_config: Option<PathBuf>,
}

impl Config {
    pub fn from_args(args: &ServeArgs) -> anyhow::Result<Self> {
        if !args.upstream.passkeys && args.upstream.oidc_issuer.is_none() {
            anyhow::bail!(
                "--passkeys false needs an upstream provider (--oidc-issuer): nobody could sign in"
            );
        }
        if args.dev_allow_loopback_cimd && args.common.public_url.scheme() == "https" {
            anyhow::bail!(
                "--dev-allow-loopback-cimd is for trying clients on this machine; it cannot be used with an https public URL ({}), where it would let anyone make passgate fetch from its own network",
                args.common.public_url
            );
        }
        let clients = match &args.clients_file {
            Some(path) => load_clients(path)?,
            None => Vec::new(),
        };
        Ok(Self {
            listen: args.listen,
            public_url: args.common.public_url.clone(),
            allowed_origins: args.allowed_origins.clone(),
            max_body_bytes: args.max_body_bytes,
            clients,
            trust_forwarded_for: args.trust_forwarded_for,
            purge_interval_secs: args.purge_interval_secs,
            invite_ttl_secs: i64::from(args.invite_ttl_hours) * 3600,
            passkeys: args.upstream.passkeys,
            upstream: args.upstream.to_config()?,
            dev_allow_loopback_cimd: args.dev_allow_loopback_cimd,
            backend: args.backend.clone(),
            backend_sigv4: args
                .backend_sigv4_service
                .clone()
                .zip(args.backend_sigv4_region.clone()),
            gateway_config: args.gateway_config.clone(),
        })
    }

    /// A configuration for tests and embedding: defaults plus a public URL.
    pub fn for_public_url(public_url: &str) -> Result<Self, String> {
        Ok(Self {
            listen: ([127, 0, 0, 1], 0).into(),
            public_url: parse_public_url(public_url)?,
            allowed_origins: Vec::new(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            clients: Vec::new(),
            trust_forwarded_for: false,
            purge_interval_secs: DEFAULT_PURGE_INTERVAL_SECS,
            invite_ttl_secs: i64::from(DEFAULT_INVITE_TTL_HOURS) * 3600,
            passkeys: true,
            upstream: None,
            dev_allow_loopback_cimd: false,
            backend: None,
            backend_sigv4: None,
            gateway_config: None,
        })
    }

    /// The issuer: the public URL without a trailing slash (RFC 8414 §2).
    pub fn issuer(&self) -> String {
        self.public_url.as_str().trim_end_matches('/').to_owned()
    }

    /// The URL of the MCP endpoint, which is also the protected resource's
    /// identifier (RFC 9728) and the audience of access tokens (RFC 8707).
    pub fn mcp_url(&self) -> String {
        format!("{}/mcp", self.issuer())
    }

    /// A URL under the public URL, such as `url("/token")`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.issuer(), path)
    }

    /// The browser origin of the public URL (`scheme://host[:port]`).
    pub fn origin(&self) -> String {
        self.public_url.origin().ascii_serialization()
    }

    pub fn public_url(&self) -> &Url {
        &self.public_url
    }

    pub fn public_host(&self) -> &str {
        self.public_url.host_str().unwrap_or("localhost")
    }

    /// Served over https: cookies get `Secure` and the `__Host-` prefix.
    pub fn is_https(&self) -> bool {
        self.public_url.scheme() == "https"
    }

    /// True when the public URL names this machine, as in local development.
    pub fn public_url_is_loopback(&self) -> bool {
        match self.public_url.host() {
            Some(url::Host::Domain(d)) => d == "localhost" || d.ends_with(".localhost"),
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        }
    }

    /// Host header values accepted on `/mcp` (DNS-rebinding protection).
    /// Only enforced for a loopback public URL, where rebinding is the threat;
    /// a public deployment may sit behind proxies that rewrite `Host`, and
    /// relies on the Origin check and on bearer tokens instead.
    pub fn allowed_hosts(&self) -> Vec<String> {
        if !self.public_url_is_loopback() {
            return Vec::new();
        }
        let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "::1"]
            .iter()
            .map(|h| h.to_string())
            .collect();
        hosts.push(self.public_host().to_owned());
        hosts
    }

    /// Browser origins accepted on `/mcp`: our own plus the configured ones,
    /// each with an explicit port (rmcp treats a port-less entry as "any
    /// port"). A loopback public URL also accepts the other loopback names on
    /// the same port, as the Host check does.
    pub fn allowed_origins(&self) -> Vec<String> {
        let scheme = self.public_url.scheme();
        let port = self.public_url.port_or_known_default().unwrap_or(80);
        let mut origins = vec![format!(
            "{scheme}://{}:{port}",
            self.public_host_for_origin()
        )];
        if self.public_url_is_loopback() {
            for host in ["localhost", "127.0.0.1", "[::1]"] {
                origins.push(format!("{scheme}://{host}:{port}"));
            }
        }
        origins.extend(self.allowed_origins.iter().cloned());
        origins.dedup();
        origins
    }

    fn public_host_for_origin(&self) -> String {
        match self.public_url.host() {
            Some(url::Host::Ipv6(ip)) => format!("[{ip}]"),
            Some(host) => host.to_string(),
            None => "localhost".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, FromArgMatches};

    use super::*;

    /// The shape of the binary's command line: `serve`, and a subcommand
    /// with only the common settings (as `users ...` has).
    #[derive(clap::Parser, Debug)]
    struct TestCli {
        #[command(subcommand)]
        command: TestCommand,
    }

    #[derive(clap::Subcommand, Debug)]
    #[allow(clippy::large_enum_variant)] // parsed once in a test
    enum TestCommand {
        Serve(ServeArgs),
        Users {
            #[command(flatten)]
            common: CommonArgs,
            #[arg(long, env = "PASSGATE_TEST_FLAG")]
            flag: bool,
        },
    }

    fn parse(secret: &str, argv: &[&str]) -> anyhow::Result<TestCli> {
        let settings = SettingsSecret::from_json("test/settings", secret)?;
        let command = settings.apply_to(TestCli::command())?;
        let matches = command.try_get_matches_from(argv)?;
        Ok(TestCli::from_arg_matches(&matches)?)
    }

    fn serve(cli: TestCli) -> ServeArgs {
        match cli.command {
            TestCommand::Serve(args) => args,
            other => panic!("not serve: {other:?}"),
        }
    }

    #[test]
    fn settings_secret_values_rank_above_builtin_defaults() {
        let secret = r#"{"PASSGATE_PUBLIC_URL": "https://mcp.example.com",
            "PASSGATE_MAX_BODY_BYTES": 1024,
            "PASSGATE_ALLOWED_ORIGINS": "https://a.example,https://b.example"}"#;
        let args = serve(parse(secret, &["passgate", "serve"]).unwrap());
        assert_eq!(args.common.public_url.as_str(), "https://mcp.example.com/");
        assert_eq!(args.max_body_bytes, 1024);
        assert_eq!(
            args.allowed_origins,
            ["https://a.example", "https://b.example"]
        );
        // Untouched settings keep their built-in defaults.
        assert_eq!(args.listen, "127.0.0.1:8080".parse().unwrap());
    }

    #[test]
    fn the_deploy_stacks_settings_secret_is_understood() {
        // What deploy/aws/lib/passgate-stack.js writes into the secret.
        let secret = r#"{"PASSGATE_PUBLIC_URL": "https://abc.lambda-url.eu-west-1.on.aws",
            "PASSGATE_OIDC_CLIENT_ID": "client", "PASSGATE_OIDC_CLIENT_SECRET": "s"}"#;
        let args = serve(parse(secret, &["passgate", "serve"]).unwrap());
        assert_eq!(
            args.common.public_url.as_str(),
            "https://abc.lambda-url.eu-west-1.on.aws/"
        );
        assert_eq!(args.upstream.oidc_client_id.as_deref(), Some("client"));
        assert_eq!(args.upstream.oidc_client_secret.as_deref(), Some("s"));
    }

    #[test]
    fn the_oidc_settings_keep_their_upstream_names() {
        // A secret written by an older stack; the new name wins over the old.
        let secret = r#"{"PASSGATE_UPSTREAM_CLIENT_ID": "old-client",
            "PASSGATE_UPSTREAM_CLIENT_SECRET": "old-secret",
            "PASSGATE_OIDC_CLIENT_SECRET": "new-secret"}"#;
        let args = serve(parse(secret, &["passgate", "serve"]).unwrap());
        assert_eq!(args.upstream.oidc_client_id.as_deref(), Some("old-client"));
        assert_eq!(
            args.upstream.oidc_client_secret.as_deref(),
            Some("new-secret")
        );
        let argv = [
            "passgate",
            "serve",
            "--upstream-issuer",
            "https://idp.example",
            "--upstream-admin-emails",
            "a@example.com,b@example.com",
        ];
        let args = serve(parse("{}", &argv).unwrap());
        assert_eq!(
            args.upstream.oidc_issuer.as_deref(),
            Some("https://idp.example")
        );
        assert_eq!(
            args.upstream.oidc_admin_emails,
            ["a@example.com", "b@example.com"]
        );
        assert_eq!(
            legacy_oidc_env("PASSGATE_OIDC_CLIENT_SECRET").as_deref(),
            Some("PASSGATE_UPSTREAM_CLIENT_SECRET")
        );
        assert_eq!(legacy_oidc_env("PASSGATE_LISTEN"), None);
    }

    #[test]
    fn the_database_url_comes_from_the_settings_secret_and_is_never_shown() {
        let secret = r#"{"PASSGATE_STORE": "postgres",
            "PASSGATE_DATABASE_URL": "postgres://passgate:hunter2-db@db.internal/passgate",
            "PASSGATE_DATABASE_MAX_CONNECTIONS": 4}"#;
        let args = serve(parse(secret, &["passgate", "serve"]).unwrap());
        assert_eq!(args.common.store, StoreKind::Postgres);
        assert_eq!(
            args.common.database_url.as_ref().map(|u| u.0.as_str()),
            Some("postgres://passgate:hunter2-db@db.internal/passgate")
        );
        assert_eq!(args.common.database_max_connections, 4);
        assert_eq!(args.common.database_timeout_secs, 5);
        assert!(!format!("{args:?}").contains("hunter2"));
        let help = TestCli::command()
            .try_get_matches_from(["passgate", "serve", "--help"])
            .unwrap_err()
            .to_string();
        assert!(help.contains("--database-url"), "{help}");
    }

    #[test]
    fn a_master_key_may_start_with_a_hyphen() {
        let argv = ["passgate", "serve", "--master-key", "-aZ09_-key"];
        let args = serve(parse("{}", &argv).unwrap());
        assert_eq!(args.common.master_key.as_deref(), Some("-aZ09_-key"));
    }

    #[test]
    fn the_command_line_ranks_above_the_settings_secret() {
        let secret = r#"{"PASSGATE_PUBLIC_URL": "https://mcp.example.com"}"#;
        let argv = ["passgate", "serve", "--public-url", "https://other.example"];
        let args = serve(parse(secret, &argv).unwrap());
        assert_eq!(args.common.public_url.as_str(), "https://other.example/");
    }

    #[test]
    fn settings_apply_to_every_subcommand_that_reads_them() {
        let secret = r#"{"PASSGATE_DYNAMODB_TABLE": "t", "PASSGATE_LISTEN": "0.0.0.0:1",
            "PASSGATE_TEST_FLAG": true}"#;
        let cli = parse(secret, &["passgate", "users"]).unwrap();
        let TestCommand::Users { common, flag } = cli.command else {
            panic!("not users")
        };
        assert_eq!(common.dynamodb_table.as_deref(), Some("t"));
        assert!(flag, "a boolean flag takes its value from the secret");
        let args = serve(parse(secret, &["passgate", "serve"]).unwrap());
        assert_eq!(args.listen, "0.0.0.0:1".parse().unwrap());
    }

    #[test]
    fn settings_secret_refuses_what_it_cannot_apply() {
        let cases = [
            (r#"{"AWS_REGION": "eu-west-1"}"#, "only PASSGATE_"),
            (
                r#"{"PASSGATE_PUBLIK_URL": "https://x.example"}"#,
                "does not know",
            ),
            (
                r#"{"PASSGATE_SETTINGS_SECRET": "other"}"#,
                "only the environment",
            ),
            (r#"{"PASSGATE_LISTEN": ["a"]}"#, "string, number or boolean"),
            (r#"["PASSGATE_LISTEN"]"#, "not a JSON object"),
            (r#""hunter2-secret""#, "not a JSON object"),
            (
                r#"{"PASSGATE_LISTEN": "hunter2-secret""#,
                "malformed at line 1",
            ),
            (
                r#"{"PASSGATE_PUBLIC_URL": "https://x.example/path"}"#,
                "origin only",
            ),
        ];
        for (secret, expected) in cases {
            let err = format!("{:#}", parse(secret, &["passgate", "serve"]).unwrap_err());
            assert!(err.contains(expected), "{secret}: {err}");
            assert!(!err.contains("hunter2"), "{secret}: {err}");
        }
    }

    #[test]
    fn settings_secret_debug_shows_keys_not_values() {
        let settings = SettingsSecret::from_json(
            "n",
            r#"{"PASSGATE_OIDC_CLIENT_SECRET": "hunter2-very-secret"}"#,
        )
        .unwrap();
        let debug = format!("{settings:?}");
        assert!(debug.contains("PASSGATE_OIDC_CLIENT_SECRET"));
        assert!(!debug.contains("hunter2"));
    }

    #[test]
    fn settings_secret_name_from_the_command_line() {
        let argv = |args: &[&str]| -> Vec<OsString> { args.iter().map(Into::into).collect() };
        assert_eq!(
            settings_secret_name(&argv(&["p", "serve", "--settings-secret", "a/b"])),
            Some("a/b".into())
        );
        assert_eq!(
            settings_secret_name(&argv(&["p", "serve", "--settings-secret=a/b"])),
            Some("a/b".into())
        );
        // After `--`, arguments are values, not flags.
        let after = settings_secret_name(&argv(&["p", "x", "--", "--settings-secret=a"]));
        assert_eq!(
            after,
            std::env::var(SETTINGS_SECRET_ENV)
                .ok()
                .filter(|s| !s.is_empty())
        );
    }

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

    fn upstream(args: &[&str]) -> anyhow::Result<Option<UpstreamConfig>> {
        #[derive(clap::Parser)]
        struct P {
            #[command(flatten)]
            u: UpstreamArgs,
        }
        let mut all = vec!["test"];
        all.extend_from_slice(args);
        <P as clap::Parser>::try_parse_from(all)?.u.to_config()
    }

    #[test]
    fn upstream_settings() {
        assert!(upstream(&[]).unwrap().is_none());
        assert!(upstream(&["--oidc-issuer", "https://idp.example"]).is_err());
        let c = upstream(&[
            "--oidc-issuer",
            "https://cognito-idp.eu-west-1.amazonaws.com/pool",
            "--oidc-client-id",
            "abc",
            "--oidc-preset",
            "cognito",
            "--oidc-scopes",
            "email offline_access",
            "--oidc-domain",
            "auth.example.com/",
            "--oidc-extra-authorize-params",
            "lang=de, prompt=login",
            "--oidc-allowed-domains",
            "@Example.COM",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(c.scopes, "openid email");
        assert_eq!(c.domain.as_deref(), Some("https://auth.example.com"));
        assert_eq!(c.groups_claim, "cognito:groups");
        assert_eq!(c.allowed_domains, vec!["example.com"]);
        assert_eq!(
            c.extra_authorize_params,
            vec![
                ("lang".into(), "de".into()),
                ("prompt".into(), "login".into())
            ]
        );
        for bad in ["state=x", "nonce=x", "resource=https://x", "novalue"] {
            assert!(
                upstream(&[
                    "--oidc-issuer",
                    "https://idp.example",
                    "--oidc-client-id",
                    "abc",
                    "--oidc-preset",
                    "cognito",
                    "--oidc-extra-authorize-params",
                    bad,
                ])
                .is_err(),
                "{bad}"
            );
        }
        let g = upstream(&[
            "--oidc-issuer",
            "https://idp.example",
            "--oidc-client-id",
            "x",
        ])
        .unwrap()
        .unwrap();
        assert_eq!(g.groups_claim, "groups");
        assert_eq!(g.name, "idp.example");
        assert_eq!(g.scopes, "openid email profile");
    }

    #[test]
    fn derived_urls_have_no_double_slash() {
        let c = Config::for_public_url("https://mcp.example.com/").unwrap();
        assert_eq!(c.issuer(), "https://mcp.example.com");
        assert_eq!(c.mcp_url(), "https://mcp.example.com/mcp");
        assert_eq!(c.origin(), "https://mcp.example.com");
        assert!(c.allowed_hosts().is_empty());
        assert_eq!(c.allowed_origins(), vec!["https://mcp.example.com:443"]);
        let local = Config::for_public_url("http://localhost:8080").unwrap();
        assert_eq!(local.origin(), "http://localhost:8080");
        assert!(
            local
                .allowed_origins()
                .contains(&"http://127.0.0.1:8080".to_string())
        );
        assert!(local.allowed_hosts().contains(&"127.0.0.1".to_string()));
    }
}
