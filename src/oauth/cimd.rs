//! Client ID Metadata Documents: a client whose id is an https URL publishes
//! its name and redirect URIs at that URL. Fetching a URL that anyone can
//! choose is a server-side request forgery risk, so the fetch is fenced in:
//! https only, public addresses only (checked after DNS resolution, and for
//! IP literals before), no redirects, a small size cap and a short timeout.
//! Documents are cached in the store as their Cache-Control allows.
//!
//! Keys: `cimd#<url>` / `doc`.

use std::{
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use futures_util::StreamExt;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use serde::Deserialize;

use super::{
    OAuthError,
    clients::{Client, ClientSource, validate_redirect_uri},
};
use crate::{app::AppState, store::NewItem};

const MAX_DOCUMENT_BYTES: usize = 10 * 1024;
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_CACHE_SECS: i64 = 300;
const MAX_CACHE_SECS: i64 = 24 * 3600;

/// The HTTP client used for metadata documents.
#[derive(Clone)]
pub struct CimdFetcher {
    client: reqwest::Client,
    /// `--dev-allow-loopback-cimd`: loopback documents, over http too.
    allow_loopback: bool,
}

impl CimdFetcher {
    pub fn new() -> Self {
        Self::customized(|builder| builder)
    }

    /// The product's fetcher with changes to its HTTP client: tests use it
    /// to trust their own certificate and to pin a test host name to
    /// loopback. Every limit (https only, no redirects, timeouts, public
    /// addresses for names not pinned) still applies.
    pub fn customized(
        customize: impl FnOnce(reqwest::ClientBuilder) -> reqwest::ClientBuilder,
    ) -> Self {
        let builder = reqwest::Client::builder()
            .https_only(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(FETCH_TIMEOUT)
            .connect_timeout(FETCH_TIMEOUT)
            .dns_resolver(Arc::new(PublicOnlyResolver))
            .user_agent(concat!("passgate/", env!("CARGO_PKG_VERSION")));
        Self {
            client: customize(builder)
                .build()
                .expect("reqwest client configuration is valid"),
            allow_loopback: false,
        }
    }

    /// Development only (`--dev-allow-loopback-cimd`): also loopback
    /// addresses, and plain http to a loopback host. Other private
    /// addresses stay refused.
    pub fn allowing_loopback() -> Self {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(FETCH_TIMEOUT)
            .connect_timeout(FETCH_TIMEOUT)
            .dns_resolver(Arc::new(PublicOrLoopbackResolver))
            .user_agent(concat!("passgate/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("reqwest client configuration is valid");
        Self {
            client,
            allow_loopback: true,
        }
    }

    pub fn allows_loopback(&self) -> bool {
        self.allow_loopback
    }
}

/// Is this a client id the development setting accepts over plain http?
pub fn is_loopback_http(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|u| {
        u.scheme() == "http"
            && match u.host() {
                Some(url::Host::Domain(d)) => d == "localhost",
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                None => false,
            }
    })
}

impl Default for CimdFetcher {
    fn default() -> Self {
        Self::new()
    }
}

/// Is this an address anyone on the internet could reach?
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_multicast()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64) // 100.64.0.0/10, carrier NAT
                || (o[0] == 192 && o[1] == 0 && o[2] == 0) // 192.0.0.0/24
                || (o[0] == 198 && (o[1] & 0xfe) == 18) // 198.18.0.0/15, benchmarking
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local
                || (s[0] & 0xffc0) == 0xfe80 // link local
                || (s[0] == 0x2001 && s[1] == 0x0db8)) // documentation
        }
    }
}

struct PublicOnlyResolver;

impl Resolve for PublicOnlyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 443))
                .await?
                .filter(|a| is_public(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err("the host has no public address".into());
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

struct PublicOrLoopbackResolver;

impl Resolve for PublicOrLoopbackResolver {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), 443))
                .await?
                .filter(|a| is_public(a.ip()) || a.ip().is_loopback())
                .collect();
            if addrs.is_empty() {
                return Err("the host has no public or loopback address".into());
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

#[derive(Deserialize)]
struct Document {
    client_id: String,
    client_name: Option<String>,
    #[serde(default)]
    redirect_uris: Vec<String>,
}

fn cache_secs(headers: &reqwest::header::HeaderMap) -> i64 {
    let Some(cc) = headers
        .get(reqwest::header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
    else {
        return DEFAULT_CACHE_SECS;
    };
    let mut max_age = None;
    for directive in cc.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return 0;
        }
        if let Some(v) = lower.strip_prefix("max-age=") {
            max_age = v.trim_matches('"').parse::<i64>().ok();
        }
    }
    max_age
        .unwrap_or(DEFAULT_CACHE_SECS)
        .clamp(0, MAX_CACHE_SECS)
}

fn invalid(description: impl Into<String>) -> OAuthError {
    OAuthError::invalid_client(description)
}

/// Parses and checks a fetched document against the URL it came from.
pub fn client_from_document(url: &str, body: &[u8]) -> Result<Client, OAuthError> {
    let doc: Document = serde_json::from_slice(body).map_err(|e| {
        invalid(format!(
            "the client metadata document is not valid JSON: {e}"
        ))
    })?;
    if doc.client_id != url {
        return Err(invalid(
            "the client metadata document's client_id does not equal its URL",
        ));
    }
    if doc.redirect_uris.is_empty() {
        return Err(invalid(
            "the client metadata document lists no redirect_uris",
        ));
    }
    for uri in &doc.redirect_uris {
        validate_redirect_uri(uri).map_err(invalid)?;
    }
    let host = url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default();
    Ok(Client {
        client_id: doc.client_id,
        client_name: doc
            .client_name
            .filter(|n| !n.trim().is_empty())
            .map(|n| n.chars().take(200).collect())
            .unwrap_or(host),
        redirect_uris: doc.redirect_uris,
        source: ClientSource::MetadataDocument,
        secret_hash: None,
        created_at: 0,
        registered_from: None,
    })
}

async fn fetch(fetcher: &CimdFetcher, url: &str) -> Result<(Client, i64), OAuthError> {
    let parsed = url::Url::parse(url).map_err(|_| invalid("the client id is not a valid URL"))?;
    let dev_http = fetcher.allow_loopback && is_loopback_http(url);
    if (parsed.scheme() != "https" && !dev_http)
        || parsed.fragment().is_some()
        || !parsed.username().is_empty()
    {
        return Err(invalid(
            "a URL client id must be an https URL without fragment or credentials",
        ));
    }
    // IP literals never reach the resolver, so they are checked here.
    let literal = match parsed.host() {
        Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
        _ => None,
    };
    let allowed = |ip: IpAddr| is_public(ip) || (fetcher.allow_loopback && ip.is_loopback());
    if literal.is_some_and(|ip| !allowed(ip)) {
        return Err(invalid(
            "the client metadata document is on a non-public address",
        ));
    }
    let response = fetcher
        .client
        .get(parsed)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| {
            invalid(format!(
                "could not fetch the client metadata document ({})",
                if e.is_timeout() {
                    "timed out".to_owned()
                } else {
                    e.without_url().to_string()
                }
            ))
        })?;
    if response.status().is_redirection() {
        return Err(invalid(
            "the client metadata document URL redirects; redirects are not followed",
        ));
    }
    if !response.status().is_success() {
        return Err(invalid(format!(
            "the client metadata document URL answered HTTP {}",
            response.status().as_u16()
        )));
    }
    if response
        .content_length()
        .is_some_and(|n| n as usize > MAX_DOCUMENT_BYTES)
    {
        return Err(invalid("the client metadata document is too large"));
    }
    let ttl = cache_secs(response.headers());
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| invalid("reading the client metadata document failed"))?;
        if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
            return Err(invalid("the client metadata document is too large"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((client_from_document(url, &body)?, ttl))
}

/// The client described at `url`, from the cache or freshly fetched.
pub async fn resolve(state: &AppState, url: &str) -> Result<Client, OAuthError> {
    let key = format!("cimd#{url}");
    if let Some(client) = state.store.get_json::<Client>(&key, "doc").await? {
        return Ok(client);
    }
    let (client, ttl) = fetch(&state.cimd, url).await?;
    if ttl > 0 {
        state
            .store
            .put(NewItem::json(&key, "doc", &client)?.expires_in(ttl))
            .await?;
    }
    Ok(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_special_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            assert!(
                !is_public(ip.parse().unwrap()),
                "{ip} must not count as public"
            );
        }
        for ip in ["93.184.216.34", "1.1.1.1", "2606:4700:4700::1111"] {
            assert!(is_public(ip.parse().unwrap()), "{ip} is public");
        }
    }

    #[test]
    fn document_checks() {
        let url = "https://app.example/client.json";
        let ok = br#"{"client_id":"https://app.example/client.json","client_name":"App","redirect_uris":["https://app.example/cb"]}"#;
        let client = client_from_document(url, ok).unwrap();
        assert_eq!(client.client_name, "App");
        let wrong_id = br#"{"client_id":"https://evil.example/client.json","redirect_uris":["https://app.example/cb"]}"#;
        assert!(client_from_document(url, wrong_id).is_err());
        let no_redirects = br#"{"client_id":"https://app.example/client.json"}"#;
        assert!(client_from_document(url, no_redirects).is_err());
        let bad_redirect =
            br#"{"client_id":"https://app.example/client.json","redirect_uris":["javascript:x"]}"#;
        assert!(client_from_document(url, bad_redirect).is_err());
        assert!(client_from_document(url, b"not json").is_err());
    }

    #[test]
    fn cache_lifetime_follows_headers() {
        let mut h = reqwest::header::HeaderMap::new();
        assert_eq!(cache_secs(&h), DEFAULT_CACHE_SECS);
        h.insert("cache-control", "public, max-age=600".parse().unwrap());
        assert_eq!(cache_secs(&h), 600);
        h.insert("cache-control", "max-age=99999999".parse().unwrap());
        assert_eq!(cache_secs(&h), MAX_CACHE_SECS);
        h.insert("cache-control", "no-store".parse().unwrap());
        assert_eq!(cache_secs(&h), 0);
    }
}
