//! The gateway's routes: `--backend` and the `--gateway-config` TOML file
//! (format in docs/gateway.md), parsed and validated once at start-up. Pure
//! data: nothing here touches the network or the store.

use std::{collections::HashSet, path::Path, time::Duration};

use globset::{Glob, GlobSet, GlobSetBuilder};
use http::{HeaderName, HeaderValue};
use serde::Deserialize;
use url::Url;

/// Seconds a backend has to start answering, unless the route says otherwise.
pub const DEFAULT_TIMEOUT_SECS: u64 = 30;
const MAX_TIMEOUT_SECS: u64 = 3600;
const MAX_NAME_LEN: usize = 64;

/// Why the gateway configuration was refused. Never carries a header value.
#[derive(Debug, thiserror::Error)]
pub enum GatewayConfigError {
    #[error("cannot read the gateway configuration {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("the gateway configuration {path} is not valid: {reason}")]
    Syntax { path: String, reason: String },
    #[error("gateway route {route:?}: {reason}")]
    Route { route: String, reason: String },
}

/// One protected backend.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// Empty for `--backend` (served at `/mcp`), else served at `/mcp/<name>`.
    pub name: String,
    /// The backend's Streamable HTTP endpoint and the identity JWT's `aud`.
    pub url: Url,
    pub timeout: Duration,
    pub forward_user_headers: bool,
    /// Static credentials; values come from the environment.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub access: AccessPolicy,
    pub tools: ToolPolicy,
    /// Sign requests to the backend with AWS SigV4 (an IAM-protected URL).
    pub sigv4: Option<SigV4Route>,
    /// A stdio backend: the command passgate runs per person (`url` is then
    /// `stdio:<name>`, never fetched).
    pub stdio: Option<super::stdio::StdioRoute>,
    /// Each person's own key for this backend, set on their account page.
    pub personal_key: Option<PersonalKeyRoute>,
    /// The backend runs its own OAuth sign-in: each person connects their
    /// account there from their account page.
    pub oauth: Option<OAuthRoute>,
}

/// `[route.oauth]`: the backend is an OAuth protected resource with its own
/// authorization server (RFC 9728). passgate is that server's client, by a
/// client metadata document it publishes, else dynamic registration, else
/// the client given here.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct OAuthRoute {
    /// A client registered at the backend's authorization server ahead of
    /// time, with `<public URL>/account/backends/callback` as its redirect.
    pub client_id: Option<String>,
    /// Its secret, from the environment (never logged).
    pub client_secret: Option<String>,
    /// Scopes to ask for; default: those the backend's metadata lists.
    pub scopes: Option<Vec<String>>,
}

impl std::fmt::Debug for OAuthRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthRoute")
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("scopes", &self.scopes)
            .finish()
    }
}

/// `[route.personal_key]`: each person gives passgate their own key for the
/// backend (an API token of their account there) on their account page,
/// and their requests carry it in `header`, after `prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonalKeyRoute {
    pub header: HeaderName,
    /// Put before the key, such as `Bearer `.
    pub prefix: String,
    /// What the account page asks for, such as "GitHub personal access token".
    pub label: String,
    /// Where a person makes such a key.
    pub help_url: Option<Url>,
}

const MAX_LABEL_CHARS: usize = 100;
const MAX_PREFIX_CHARS: usize = 32;

impl PersonalKeyEntry {
    fn checked(
        self,
        static_headers: &[(HeaderName, HeaderValue)],
        sigv4: bool,
    ) -> Result<PersonalKeyRoute, String> {
        let header = HeaderName::from_bytes(self.header.as_bytes())
            .map_err(|_| format!("personal_key: {:?} is not a header name", self.header))?;
        if super::headers::is_reserved_header(&header) || header == http::header::COOKIE {
            return Err(format!(
                "personal_key: the header {header} is set by passgate and cannot carry a key"
            ));
        }
        if static_headers.iter().any(|(name, _)| *name == header) {
            return Err(format!(
                "personal_key: the header {header} is also a static header of this route"
            ));
        }
        if sigv4 && header == http::header::AUTHORIZATION {
            return Err("personal_key: a sigv4 route signs with the authorization header; put the key in another one".into());
        }
        if self.prefix.chars().count() > MAX_PREFIX_CHARS
            || HeaderValue::from_str(&self.prefix).is_err()
        {
            return Err(format!(
                "personal_key: prefix must be at most {MAX_PREFIX_CHARS} characters of a header value"
            ));
        }
        let label = self.label.trim().to_owned();
        if label.is_empty()
            || label.chars().count() > MAX_LABEL_CHARS
            || label.chars().any(char::is_control)
        {
            return Err(format!(
                "personal_key: label must be 1 to {MAX_LABEL_CHARS} characters on one line, saying what key to give"
            ));
        }
        let help_url = self
            .help_url
            .map(|raw| {
                Url::parse(&raw)
                    .ok()
                    .filter(|u| matches!(u.scheme(), "https" | "http"))
                    .ok_or_else(|| format!("personal_key: help_url {raw:?} is not an http(s) URL"))
            })
            .transpose()?;
        Ok(PersonalKeyRoute {
            header,
            prefix: self.prefix,
            label,
            help_url,
        })
    }
}

/// `sigv4 = { service = "lambda", region = "eu-west-1" }`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigV4Route {
    /// `lambda` (a Function URL with `AWS_IAM` auth) or `execute-api`.
    pub service: String,
    pub region: String,
}

impl SigV4Route {
    fn checked(self) -> Result<Self, String> {
        if !matches!(self.service.as_str(), "lambda" | "execute-api") {
            return Err(format!(
                "sigv4 service must be \"lambda\" or \"execute-api\", not {:?}",
                self.service
            ));
        }
        let region_ok = !self.region.is_empty()
            && self
                .region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !region_ok {
            return Err(format!(
                "sigv4 region {:?} is not a region name",
                self.region
            ));
        }
        if cfg!(not(feature = "aws")) {
            return Err("sigv4 needs a passgate built with the aws feature".into());
        }
        Ok(self)
    }
}

impl RouteConfig {
    /// The path this route is served at.
    pub fn path(&self) -> String {
        if self.name.is_empty() {
            "/mcp".into()
        } else {
            format!("/mcp/{}", self.name)
        }
    }

    /// The route signed with SigV4 when `sigv4` is given (for `--backend`:
    /// `--backend-sigv4-service` and `--backend-sigv4-region`).
    pub fn signed(mut self, sigv4: Option<SigV4Route>) -> Result<Self, GatewayConfigError> {
        self.sigv4 = sigv4
            .map(SigV4Route::checked)
            .transpose()
            .map_err(|reason| GatewayConfigError::Route {
                route: self.name.clone(),
                reason,
            })?;
        Ok(self)
    }

    /// The `--backend` route: defaults, at `/mcp`.
    pub fn single(url: &Url) -> Result<Self, GatewayConfigError> {
        Ok(Self {
            sigv4: None,
            stdio: None,
            personal_key: None,
            oauth: None,
            name: String::new(),
            url: backend_url("", url.as_str())?,
            timeout: Duration::from_secs(DEFAULT_TIMEOUT_SECS),
            forward_user_headers: false,
            headers: Vec::new(),
            access: AccessPolicy::default(),
            tools: ToolPolicy::default(),
        })
    }
}

/// Who may use a route. All lists empty: everyone who can sign in.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessPolicy {
    #[serde(default)]
    pub allow_users: Vec<String>,
    #[serde(default)]
    pub allow_roles: Vec<String>,
    #[serde(default)]
    pub allow_email_domains: Vec<String>,
    #[serde(default)]
    pub allow_groups: Vec<String>,
}

/// The facts about a caller the access policy looks at.
pub struct Caller<'a> {
    pub name: &'a str,
    pub role: &'a str,
    pub email: Option<&'a str>,
    pub groups: &'a [String],
}

impl AccessPolicy {
    pub fn is_open(&self) -> bool {
        self.allow_users.is_empty()
            && self.allow_roles.is_empty()
            && self.allow_email_domains.is_empty()
            && self.allow_groups.is_empty()
    }

    pub fn admits(&self, caller: &Caller<'_>) -> bool {
        if self.is_open() {
            return true;
        }
        let domain = caller
            .email
            .and_then(|e| e.rsplit_once('@'))
            .map(|(_, d)| d);
        self.allow_users.iter().any(|u| u == caller.name)
            || self.allow_roles.iter().any(|r| r == caller.role)
            || domain.is_some_and(|d| {
                self.allow_email_domains
                    .iter()
                    .any(|a| a.eq_ignore_ascii_case(d))
            })
            || self
                .allow_groups
                .iter()
                .any(|g| caller.groups.iter().any(|c| c == g))
    }
}

/// Which tools of a route may be listed and called.
#[derive(Debug, Clone, Default)]
pub struct ToolPolicy {
    allow: Option<GlobSet>,
    deny: Option<GlobSet>,
}

impl ToolPolicy {
    /// True when every tool is allowed (no filtering needed).
    pub fn is_open(&self) -> bool {
        self.allow.is_none() && self.deny.is_none()
    }

    pub fn allows(&self, tool: &str) -> bool {
        self.allow.as_ref().is_none_or(|a| a.is_match(tool))
            && !self.deny.as_ref().is_some_and(|d| d.is_match(tool))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    route: Vec<RouteEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteEntry {
    name: String,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    sigv4: Option<SigV4Route>,
    #[serde(default)]
    stdio: Option<super::stdio::StdioConfig>,
    #[serde(default)]
    timeout_secs: Option<u64>,
    #[serde(default)]
    forward_user_headers: bool,
    #[serde(default)]
    headers: Vec<HeaderEntry>,
    #[serde(default)]
    access: AccessPolicy,
    #[serde(default)]
    tools: ToolEntry,
    #[serde(default)]
    personal_key: Option<PersonalKeyEntry>,
    #[serde(default)]
    oauth: Option<OAuthEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OAuthEntry {
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    client_secret_from_env: Option<String>,
    #[serde(default)]
    scopes: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PersonalKeyEntry {
    header: String,
    #[serde(default)]
    prefix: String,
    label: String,
    #[serde(default)]
    help_url: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HeaderEntry {
    name: String,
    from_env: String,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ToolEntry {
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    deny: Vec<String>,
}

/// Every route: `--backend`'s (if any) first, then the file's.
pub fn load(
    backend: Option<&Url>,
    backend_sigv4: Option<SigV4Route>,
    file: Option<&Path>,
) -> Result<Vec<RouteConfig>, GatewayConfigError> {
    let mut routes = Vec::new();
    if let Some(url) = backend {
        routes.push(RouteConfig::single(url)?.signed(backend_sigv4)?);
    }
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|e| GatewayConfigError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        routes.extend(parse(&text, &path.display().to_string(), |name| {
            std::env::var(name).ok()
        })?);
    }
    Ok(routes)
}

/// Parses a gateway file; `env` looks up the static headers' variables.
pub fn parse(
    text: &str,
    path: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Vec<RouteConfig>, GatewayConfigError> {
    let file: File = toml::from_str(text).map_err(|e| GatewayConfigError::Syntax {
        path: path.to_owned(),
        reason: e.message().to_owned(),
    })?;
    let mut seen = HashSet::new();
    let mut routes = Vec::new();
    for entry in file.route {
        let name = entry.name.clone();
        let fail = |reason: String| GatewayConfigError::Route {
            route: name.clone(),
            reason,
        };
        if !valid_name(&name) {
            return Err(fail(format!(
                "the name must be 1 to {MAX_NAME_LEN} of a-z, 0-9, '-' and '_'"
            )));
        }
        if !seen.insert(name.clone()) {
            return Err(fail("a route of this name is already declared".into()));
        }
        let (url, stdio) = match (&entry.url, entry.stdio) {
            (Some(url), None) => (backend_url(&name, url)?, None),
            (None, Some(stdio)) => {
                let stdio = super::stdio::StdioRoute::resolve(stdio, &env).map_err(&fail)?;
                let url = Url::parse(&format!("stdio:{name}")).expect("a route name is a URL path");
                (url, Some(stdio))
            }
            _ => return Err(fail("give exactly one of url and stdio".into())),
        };
        let sigv4 = match entry.sigv4 {
            Some(_) if stdio.is_some() => {
                return Err(fail(
                    "sigv4 signs HTTP requests; a stdio route has none".into(),
                ));
            }
            Some(sigv4) => Some(sigv4.checked().map_err(&fail)?),
            None => None,
        };
        let timeout_secs = entry.timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS);
        if !(1..=MAX_TIMEOUT_SECS).contains(&timeout_secs) {
            return Err(fail(format!(
                "timeout_secs must be between 1 and {MAX_TIMEOUT_SECS}"
            )));
        }
        let mut headers = Vec::new();
        for h in &entry.headers {
            let header = HeaderName::from_bytes(h.name.as_bytes())
                .map_err(|_| fail(format!("{:?} is not a header name", h.name)))?;
            if super::headers::is_reserved_header(&header) {
                return Err(fail(format!(
                    "the header {header} is set by passgate and cannot be configured"
                )));
            }
            let value = env(&h.from_env).ok_or_else(|| {
                fail(format!(
                    "the environment variable {} (for header {header}) is not set",
                    h.from_env
                ))
            })?;
            let mut value = HeaderValue::from_str(&value).map_err(|_| {
                fail(format!(
                    "the environment variable {} (for header {header}) is not a valid header value",
                    h.from_env
                ))
            })?;
            value.set_sensitive(true);
            headers.push((header, value));
        }
        let personal_key = match entry.personal_key {
            Some(_) if stdio.is_some() => {
                return Err(fail(
                    "personal_key puts each person's key in their HTTP requests; a stdio route has none".into(),
                ));
            }
            Some(key) => Some(key.checked(&headers, sigv4.is_some()).map_err(&fail)?),
            None => None,
        };
        let oauth = match entry.oauth {
            Some(_) if stdio.is_some() || sigv4.is_some() || personal_key.is_some() => {
                return Err(fail(
                    "oauth gives each person's requests their own token in Authorization; it cannot be combined with stdio, sigv4 or personal_key".into(),
                ));
            }
            Some(oauth) => {
                let client_secret = match &oauth.client_secret_from_env {
                    Some(_) if oauth.client_id.is_none() => {
                        return Err(fail("oauth: client_secret_from_env needs client_id".into()));
                    }
                    Some(name) => Some(env(name).ok_or_else(|| {
                        fail(format!(
                            "the environment variable {name} (for oauth's client secret) is not set"
                        ))
                    })?),
                    None => None,
                };
                if oauth.client_id.as_deref().is_some_and(str::is_empty) {
                    return Err(fail("oauth: client_id is empty".into()));
                }
                Some(OAuthRoute {
                    client_id: oauth.client_id,
                    client_secret,
                    scopes: oauth.scopes,
                })
            }
            None => None,
        };
        routes.push(RouteConfig {
            name: entry.name,
            url,
            timeout: Duration::from_secs(timeout_secs),
            forward_user_headers: entry.forward_user_headers,
            headers,
            access: entry.access,
            tools: ToolPolicy {
                allow: glob_set(&entry.tools.allow).map_err(&fail)?,
                deny: glob_set(&entry.tools.deny).map_err(&fail)?,
            },
            sigv4,
            stdio,
            personal_key,
            oauth,
        });
    }
    Ok(routes)
}

fn valid_name(name: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn backend_url(route: &str, raw: &str) -> Result<Url, GatewayConfigError> {
    let fail = |reason: &str| GatewayConfigError::Route {
        route: route.to_owned(),
        reason: format!("url {raw:?} {reason}"),
    };
    let url = Url::parse(raw).map_err(|_| fail("is not an absolute URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(fail("must be an http or https URL with a host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(fail(
            "must not carry credentials (use headers with from_env)",
        ));
    }
    if url.fragment().is_some() {
        return Err(fail("must not have a fragment"));
    }
    // The forwarding client takes an `http::Uri`, which is stricter.
    if url.as_str().parse::<http::Uri>().is_err() {
        return Err(fail("is not a valid HTTP request URI"));
    }
    Ok(url)
}

fn glob_set(patterns: &[String]) -> Result<Option<GlobSet>, String> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut builder = GlobSetBuilder::new();
    for p in patterns {
        builder.add(Glob::new(p).map_err(|e| format!("tool pattern {p:?}: {e}"))?);
    }
    builder
        .build()
        .map(Some)
        .map_err(|e| format!("tool patterns: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "KEY").then(|| "s3cret-value".to_owned())
    }

    #[test]
    fn a_full_route_parses() {
        let routes = parse(
            r#"
            [[route]]
            name = "notes"
            url = "http://127.0.0.1:9000/mcp"
            timeout_secs = 5
            forward_user_headers = true
            headers = [{ name = "X-Api-Key", from_env = "KEY" }]
            [route.access]
            allow_groups = ["eng"]
            [route.tools]
            allow = ["notes_*"]
            deny = ["*_delete"]
            "#,
            "g.toml",
            env,
        )
        .unwrap();
        let r = &routes[0];
        assert_eq!(r.path(), "/mcp/notes");
        assert_eq!(r.timeout, Duration::from_secs(5));
        assert!(r.forward_user_headers);
        assert_eq!(r.headers[0].1, "s3cret-value");
        assert!(r.tools.allows("notes_read"));
        assert!(!r.tools.allows("notes_delete"));
        assert!(!r.tools.allows("other"));
        let groups = vec!["eng".to_owned()];
        let caller = Caller {
            name: "bob",
            role: "member",
            email: None,
            groups: &groups,
        };
        assert!(r.access.admits(&caller));
        assert!(!r.access.admits(&Caller {
            groups: &[],
            ..caller
        }));
    }

    #[test]
    fn a_personal_key_route_parses() {
        let routes = parse(
            r#"
            [[route]]
            name = "github"
            url = "https://mcp.example.com/mcp"
            [route.personal_key]
            header = "Authorization"
            prefix = "Bearer "
            label = "GitHub personal access token"
            help_url = "https://github.com/settings/tokens"
            "#,
            "g.toml",
            env,
        )
        .unwrap();
        let key = routes[0].personal_key.as_ref().unwrap();
        assert_eq!(key.header, http::header::AUTHORIZATION);
        assert_eq!(key.prefix, "Bearer ");
        assert_eq!(key.label, "GitHub personal access token");
        assert_eq!(
            key.help_url.as_ref().unwrap().as_str(),
            "https://github.com/settings/tokens"
        );
    }

    #[test]
    fn mistakes_stop_start_up_without_printing_values() {
        let cases = [
            (
                "[[route]]\nname='a'\nurl='http://x/mcp'\n[[route]]\nname='a'\nurl='http://y/mcp'",
                "already declared",
            ),
            ("[[route]]\nname='a'\nurl='ftp://x/mcp'", "http or https"),
            ("[[route]]\nname='a'\nurl='/mcp'", "absolute URL"),
            (
                "[[route]]\nname='A b'\nurl='http://x/mcp'",
                "the name must be",
            ),
            (
                "[[route]]\nname='a'\nurl='http://x/mcp'\nheaders=[{name='X-K', from_env='MISSING'}]",
                "MISSING",
            ),
            (
                "[[route]]\nname='a'\nurl='http://x/mcp'\nheaders=[{name='X-Passgate-Identity', from_env='KEY'}]",
                "cannot be configured",
            ),
            (
                "[[route]]\nname='a'\nurl='http://x/mcp'\n[route.access]\nalow_users=['x']",
                "unknown field",
            ),
            (
                "[[route]]\nname='a'\nurl='http://x/mcp'\n[route.personal_key]\nheader='X-Passgate-Identity'\nlabel='k'",
                "cannot carry a key",
            ),
            (
                "[[route]]\nname='a'\nurl='http://x/mcp'\nheaders=[{name='X-K', from_env='KEY'}]\n[route.personal_key]\nheader='x-k'\nlabel='k'",
                "also a static header",
            ),
            (
                "[[route]]\nname='a'\nurl='http://x/mcp'\n[route.personal_key]\nheader='X-K'\nlabel=' '",
                "label must be",
            ),
            (
                "[[route]]\nname='a'\nurl='http://x/mcp'\n[route.personal_key]\nheader='X-K'\nlabel='k'\nhelp_url='javascript:alert(1)'",
                "not an http(s) URL",
            ),
            (
                "[[route]]\nname='a'\nurl='http://x/mcp'\n[route.personal_key]\nheader='X-K'\nlabel='k'\nprefix='xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx'",
                "prefix must be",
            ),
            (
                "[[route]]\nname='a'\nstdio={command='true'}\n[route.personal_key]\nheader='X-K'\nlabel='k'",
                "a stdio route has none",
            ),
        ];
        for (text, expected) in cases {
            let message = parse(text, "g.toml", env).unwrap_err().to_string();
            assert!(message.contains(expected), "{text}: {message}");
            assert!(!message.contains("s3cret"), "{message}");
        }
    }
}
