//! The validated configuration the server runs with, and the URLs derived
//! from the public URL.

use std::{net::SocketAddr, path::PathBuf};

use url::Url;

use super::{
    args::{
        DEFAULT_INVITE_TTL_HOURS, DEFAULT_MAX_BODY_BYTES, DEFAULT_PURGE_INTERVAL_SECS, ServeArgs,
        parse_public_url,
    },
    clients::{ConfiguredClient, load_clients},
    oidc::OidcConfig,
};

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
    pub oidc: Option<OidcConfig>,
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
        if !args.sign_in.passkeys && args.sign_in.oidc_issuer.is_none() {
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
            passkeys: args.sign_in.passkeys,
            oidc: args.sign_in.to_config()?,
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
            oidc: None,
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
    use super::*;

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
