//! The settings secret (`--settings-secret` or `PASSGATE_SETTINGS_SECRET`):
//! `PASSGATE_*` values read from AWS Secrets Manager once, before the command
//! line is parsed, and the legacy `PASSGATE_UPSTREAM_*` variables.

use std::{
    collections::{BTreeMap, BTreeSet},
    ffi::OsString,
};

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

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, FromArgMatches};

    use super::*;
    use crate::config::{CommonArgs, ServeArgs, StoreKind};

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
        assert_eq!(args.sign_in.oidc_client_id.as_deref(), Some("client"));
        assert_eq!(args.sign_in.oidc_client_secret.as_deref(), Some("s"));
    }

    #[test]
    fn the_oidc_settings_keep_their_upstream_names() {
        // A secret written by an older stack; the new name wins over the old.
        let secret = r#"{"PASSGATE_UPSTREAM_CLIENT_ID": "old-client",
            "PASSGATE_UPSTREAM_CLIENT_SECRET": "old-secret",
            "PASSGATE_OIDC_CLIENT_SECRET": "new-secret"}"#;
        let args = serve(parse(secret, &["passgate", "serve"]).unwrap());
        assert_eq!(args.sign_in.oidc_client_id.as_deref(), Some("old-client"));
        assert_eq!(
            args.sign_in.oidc_client_secret.as_deref(),
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
            args.sign_in.oidc_issuer.as_deref(),
            Some("https://idp.example")
        );
        assert_eq!(
            args.sign_in.oidc_admin_emails,
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
}
