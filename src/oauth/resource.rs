//! The protected resources this server issues tokens for (RFC 8707, RFC
//! 9728): each MCP endpoint is one, with its own URL, which is the audience
//! of its tokens, and its own metadata document. A record: knows only the
//! settings, so the authorization server (which tokens to issue) and the
//! bearer check (which audience to accept) read the same table.

use std::sync::Arc;

use crate::config::Config;

use super::SCOPE_MCP;

/// One protected resource: where it is served and what its tokens say.
/// Built only from the public URL and a path, so its URL, audience and
/// metadata address cannot disagree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource(Arc<ResourceInner>);

#[derive(Debug, Clone, PartialEq, Eq)]
struct ResourceInner {
    path: String,
    url: String,
    metadata_url: String,
    name: String,
    scopes: Vec<String>,
    personal_key: Option<PersonalKeyAsk>,
    /// What it fronts has its own sign-in, which each person connects.
    backend_sign_in: bool,
}

/// What the account page asks each person for when a resource needs their
/// own key for what it fronts (a gateway route's `personal_key`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonalKeyAsk {
    /// Such as "GitHub personal access token".
    pub label: String,
    /// Where a person makes one.
    pub help_url: Option<String>,
}

/// A path that cannot name a protected resource.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path:?} cannot be a protected resource's path: {why}")]
pub struct InvalidResourcePath {
    pub path: String,
    pub why: &'static str,
}

impl Resource {
    /// The resource served at `path` (such as `/mcp`) under the public URL,
    /// shown to people and clients as `name`. Its tokens carry the `mcp`
    /// scope; [`Resource::with_scopes`] adds the ones its tools may require.
    pub fn new(
        config: &Config,
        path: &str,
        name: impl Into<String>,
    ) -> Result<Self, InvalidResourcePath> {
        let invalid = |why| InvalidResourcePath {
            path: path.to_owned(),
            why,
        };
        if !path.starts_with('/') || path == "/" {
            return Err(invalid(
                "it must start with / and name something below the root",
            ));
        }
        if path.ends_with('/') || path.contains("//") {
            return Err(invalid(
                "it must not end with / or contain an empty segment",
            ));
        }
        if !path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.' | b'~'))
            || path.split('/').any(|s| s == "." || s == "..")
        {
            return Err(invalid(
                "use letters, digits, - _ . ~ and / only, and no . or .. segments",
            ));
        }
        // Beside passgate's own pages and endpoints, never over one.
        if path != "/mcp" && !path.starts_with("/mcp/") {
            return Err(invalid(
                "protected resources are served at /mcp or below it",
            ));
        }
        Ok(Self(Arc::new(ResourceInner {
            url: config.url(path),
            metadata_url: config.url(&format!("/.well-known/oauth-protected-resource{path}")),
            path: path.to_owned(),
            name: name.into(),
            scopes: vec![SCOPE_MCP.to_owned()],
            personal_key: None,
            backend_sign_in: false,
        })))
    }

    /// passgate's own MCP endpoint, `/mcp`.
    pub fn mcp(config: &Config) -> Self {
        Self::new(config, "/mcp", "passgate MCP server").expect("/mcp is a valid path")
    }

    /// Adds scopes that tools of this resource may require (besides `mcp`,
    /// which every token carries).
    pub fn with_scopes<I, S>(self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut inner = Arc::unwrap_or_clone(self.0);
        for scope in scopes {
            let scope = scope.into();
            if !inner.scopes.contains(&scope) {
                inner.scopes.push(scope);
            }
        }
        Self(Arc::new(inner))
    }

    /// The same resource under another name.
    pub fn named(self, name: impl Into<String>) -> Self {
        let mut inner = Arc::unwrap_or_clone(self.0);
        inner.name = name.into();
        Self(Arc::new(inner))
    }

    /// The same resource, asking each person for their own key on the
    /// account page.
    pub fn asking_personal_key(self, ask: PersonalKeyAsk) -> Self {
        let mut inner = Arc::unwrap_or_clone(self.0);
        inner.personal_key = Some(ask);
        Self(Arc::new(inner))
    }

    /// The same resource, asking each person to connect their account at
    /// what it fronts (a gateway route's `oauth`).
    pub fn asking_backend_sign_in(self) -> Self {
        let mut inner = Arc::unwrap_or_clone(self.0);
        inner.backend_sign_in = true;
        Self(Arc::new(inner))
    }

    /// Whether each person connects their account at what it fronts.
    pub fn asks_backend_sign_in(&self) -> bool {
        self.0.backend_sign_in
    }

    /// What each person is asked for, if anything.
    pub fn personal_key(&self) -> Option<&PersonalKeyAsk> {
        self.0.personal_key.as_ref()
    }

    /// The path under the public URL.
    pub fn path(&self) -> &str {
        &self.0.path
    }
    /// The resource URL: the audience of its tokens.
    pub fn url(&self) -> &str {
        &self.0.url
    }
    /// Where its protected resource metadata is served.
    pub fn metadata_url(&self) -> &str {
        &self.0.metadata_url
    }
    /// The metadata document's path (for the route table).
    pub fn metadata_path(&self) -> String {
        format!("/.well-known/oauth-protected-resource{}", self.0.path)
    }
    pub fn name(&self) -> &str {
        &self.0.name
    }
    /// Every scope its tokens may carry, `mcp` first.
    pub fn scopes(&self) -> &[String] {
        &self.0.scopes
    }

    /// Does `requested` (a client's `resource` parameter) name this one?
    pub fn is_named_by(&self, requested: &str) -> bool {
        resource_matches(requested, self.url())
    }
}

/// Every protected resource of this server; the first is the one tokens
/// are for when a client names none (Claude sends no `resource`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resources(Arc<Vec<Resource>>);

impl Resources {
    /// `list` must hold at least one resource, and no two at one path.
    pub fn new(list: Vec<Resource>) -> Result<Self, InvalidResourcePath> {
        if list.is_empty() {
            return Err(InvalidResourcePath {
                path: String::new(),
                why: "at least one protected resource is needed",
            });
        }
        for (i, r) in list.iter().enumerate() {
            if list[..i].iter().any(|other| other.path() == r.path()) {
                return Err(InvalidResourcePath {
                    path: r.path().to_owned(),
                    why: "another protected resource is served there",
                });
            }
        }
        Ok(Self(Arc::new(list)))
    }

    /// Only passgate's own `/mcp`.
    pub fn only_mcp(config: &Config) -> Self {
        Self(Arc::new(vec![Resource::mcp(config)]))
    }

    /// The resource a client that names none gets tokens for.
    pub fn primary(&self) -> &Resource {
        &self.0[0]
    }

    pub fn iter(&self) -> impl Iterator<Item = &Resource> {
        self.0.iter()
    }

    /// The one resource that every `resource` parameter names (the primary
    /// one when there are none), or `None` when one names none of ours or
    /// they name different ones: a token has one audience.
    pub fn named_by<'a>(&self, requested: impl IntoIterator<Item = &'a str>) -> Option<&Resource> {
        let mut chosen: Option<&Resource> = None;
        for r in requested {
            let found = self.0.iter().find(|res| res.is_named_by(r))?;
            if chosen.is_some_and(|c| c != found) {
                return None;
            }
            chosen = Some(found);
        }
        Some(chosen.unwrap_or_else(|| self.primary()))
    }

    /// Every scope some resource's tokens may carry, `mcp` first.
    pub fn scopes_supported(&self) -> Vec<String> {
        let mut scopes: Vec<String> = Vec::new();
        for scope in self.0.iter().flat_map(|r| r.scopes()) {
            if !scopes.contains(scope) {
                scopes.push(scope.clone());
            }
        }
        scopes
    }

    /// The URLs of them all, for an answer that names where tokens are for.
    pub fn urls(&self) -> Vec<&str> {
        self.0.iter().map(|r| r.url()).collect()
    }
}

/// True when `resource` names the resource at `ours`. Query parameters are
/// ignored because ChatGPT appends some; the scheme, host, port and path
/// must match exactly and a fragment is never allowed (RFC 8707 §2).
pub fn resource_matches(resource: &str, ours: &str) -> bool {
    let (Ok(given), Ok(ours)) = (url::Url::parse(resource), url::Url::parse(ours)) else {
        return false;
    };
    given.fragment().is_none()
        && given.scheme() == ours.scheme()
        && given.host() == ours.host()
        && given.port_or_known_default() == ours.port_or_known_default()
        && given.path().trim_end_matches('/') == ours.path()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::for_public_url("https://mcp.example.com").unwrap()
    }

    #[test]
    fn a_resource_derives_its_audience_and_metadata_from_its_path() {
        let r = Resource::new(&config(), "/mcp/notes", "notes").unwrap();
        assert_eq!(r.url(), "https://mcp.example.com/mcp/notes");
        assert_eq!(
            r.metadata_url(),
            "https://mcp.example.com/.well-known/oauth-protected-resource/mcp/notes"
        );
        assert_eq!(
            r.metadata_path(),
            "/.well-known/oauth-protected-resource/mcp/notes"
        );
        assert_eq!(r.scopes(), ["mcp"]);
        let r = r.with_scopes(["notes.delete", "mcp"]);
        assert_eq!(r.scopes(), ["mcp", "notes.delete"]);
    }

    #[test]
    fn paths_that_cannot_be_resources_are_refused() {
        for bad in [
            "",
            "/",
            "mcp",
            "/mcp/",
            "/mcp//b",
            "/mcp/../b",
            "/mcp/a b",
            "/mcp?b",
            "/mcp#b",
            "/mcpx",
            "/token",
            "/.well-known/x",
        ] {
            assert!(Resource::new(&config(), bad, "x").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn one_token_names_one_resource() {
        let c = config();
        let mcp = Resource::mcp(&c);
        let notes = Resource::new(&c, "/mcp/notes", "notes").unwrap();
        let all = Resources::new(vec![mcp.clone(), notes.clone()]).unwrap();
        assert_eq!(all.named_by([]), Some(&mcp));
        assert_eq!(
            all.named_by(["https://mcp.example.com/mcp/notes?x=1"]),
            Some(&notes)
        );
        assert_eq!(
            all.named_by([
                "https://mcp.example.com/mcp",
                "https://mcp.example.com:443/mcp"
            ]),
            Some(&mcp)
        );
        assert_eq!(
            all.named_by([
                "https://mcp.example.com/mcp",
                "https://mcp.example.com/mcp/notes"
            ]),
            None
        );
        assert_eq!(all.named_by(["https://evil.example/mcp"]), None);
        assert!(Resources::new(vec![]).is_err());
        assert!(Resources::new(vec![mcp.clone(), mcp]).is_err());
    }

    #[test]
    fn resource_matching() {
        let ours = "https://mcp.example.com/mcp";
        assert!(resource_matches("https://mcp.example.com/mcp", ours));
        assert!(resource_matches("https://mcp.example.com:443/mcp", ours));
        assert!(resource_matches(
            "https://mcp.example.com/mcp?chatgpt=1",
            ours
        ));
        assert!(resource_matches("https://mcp.example.com/mcp/", ours));
        assert!(!resource_matches("https://mcp.example.com/mcp#x", ours));
        assert!(!resource_matches("https://mcp.example.com/other", ours));
        assert!(!resource_matches("https://evil.example.com/mcp", ours));
        assert!(!resource_matches("http://mcp.example.com/mcp", ours));
        assert!(!resource_matches("not a url", ours));
    }

    mod properties {
        use proptest::prelude::*;

        use super::*;

        proptest! {
            /// The same resource written differently still names it: case
            /// of scheme and host, an explicit default port, a trailing
            /// slash, an added query (ChatGPT adds some).
            #[test]
            fn canonical_variants_of_our_resource_match(
                host in "[a-z]{1,10}(\\.[a-z]{1,5}){0,2}",
                upper_scheme in any::<bool>(),
                upper_host in any::<bool>(),
                explicit_port in any::<bool>(),
                slash in any::<bool>(),
                query in prop::option::of("[a-z]{1,5}=[a-z0-9]{0,5}"),
            ) {
                let ours = format!("https://{host}/mcp");
                let scheme = if upper_scheme { "HTTPS" } else { "https" };
                let h = if upper_host { host.to_ascii_uppercase() } else { host.clone() };
                let port = if explicit_port { ":443" } else { "" };
                let slash = if slash { "/" } else { "" };
                let query = query.map(|q| format!("?{q}")).unwrap_or_default();
                let variant = format!("{scheme}://{h}{port}/mcp{slash}{query}");
                prop_assert!(resource_matches(&variant, &ours), "{}", variant);
            }

            /// Another scheme, host, port or path, or any fragment, names
            /// another resource.
            #[test]
            fn other_resources_do_not_match(
                host in "[a-z]{1,10}\\.example",
                other in "[a-z]{1,10}",
                port in 1u16..,
                fragment in "[a-z]{0,5}",
            ) {
                let ours = format!("https://{host}/mcp");
                let mut others = vec![
                    format!("http://{host}/mcp"),
                    format!("https://{other}.{host}/mcp"),
                    format!("https://{host}/mcp/{other}"),
                    format!("https://{host}/{other}"),
                    format!("https://{host}/mcp#{fragment}"),
                ];
                if port != 443 {
                    others.push(format!("https://{host}:{port}/mcp"));
                }
                for other in others {
                    prop_assert!(!resource_matches(&other, &ours), "{}", other);
                }
            }
        }
    }
}
