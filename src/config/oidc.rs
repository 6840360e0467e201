//! Signing in through an OpenID provider: its flags (`--oidc-*`, formerly
//! `--upstream-*`) and the validated settings the provider client uses.

use url::Url;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OidcPreset {
    /// Any OpenID provider.
    Generic,
    /// Amazon Cognito: no resource indicators, no `offline_access`,
    /// groups in `cognito:groups`, logout on the user-pool domain.
    Cognito,
}

/// Signing in through an upstream OpenID provider (`src/oidc/`).
#[derive(Debug, Clone, clap::Args)]
pub struct SignInArgs {
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
    pub oidc_preset: OidcPreset,

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
pub struct OidcConfig {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<String>,
    pub scopes: String,
    pub name: String,
    pub preset: OidcPreset,
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

impl SignInArgs {
    pub(super) fn to_config(&self) -> anyhow::Result<Option<OidcConfig>> {
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
        let cognito = self.oidc_preset == OidcPreset::Cognito;
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
        Ok(Some(OidcConfig {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn oidc_config(args: &[&str]) -> anyhow::Result<Option<OidcConfig>> {
        #[derive(clap::Parser)]
        struct P {
            #[command(flatten)]
            u: SignInArgs,
        }
        let mut all = vec!["test"];
        all.extend_from_slice(args);
        <P as clap::Parser>::try_parse_from(all)?.u.to_config()
    }

    #[test]
    fn oidc_settings() {
        assert!(oidc_config(&[]).unwrap().is_none());
        assert!(oidc_config(&["--oidc-issuer", "https://idp.example"]).is_err());
        let c = oidc_config(&[
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
                oidc_config(&[
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
        let g = oidc_config(&[
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
}
