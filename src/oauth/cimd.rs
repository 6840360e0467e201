//! Client ID Metadata Documents: a client whose id is an https URL publishes
//! its name and redirect URIs at that URL. Fetching a URL that anyone can
//! choose is a server-side request forgery risk, so the fetch is fenced in:
//! https only, never through a proxy (a proxy would connect to the target
//! for us, past every address check), public addresses only (checked after
//! DNS resolution, and for IP literals before), no redirects, a small size
//! cap, a short timeout, and a per-caller rate limit on actual fetches.
//! Callers learn only that the fetch failed, never how (refused, timed out,
//! which status): that would make passgate a port scanner. The log has the
//! details.
//!
//! Documents are cached in the store as their Cache-Control allows, and
//! failures for [`FAILURE_CACHE_SECS`], so a bad client id cannot make
//! every request fetch again. Both live in the store like every other
//! request-spanning state, so every instance sees them.
//!
//! Keys: `cimd#<url>` / `doc` (a document, or a recent failure).

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use futures_util::StreamExt;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use serde::{Deserialize, Serialize};

use super::{
    OAuthError,
    client::{Client, ClientSource, validate_redirect_uri},
};
use crate::{
    error::Error,
    ratelimit::{self, LimitedAction},
    store::{NewItem, Store},
};

const MAX_DOCUMENT_BYTES: usize = 10 * 1024;
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_CACHE_SECS: i64 = 300;
const MAX_CACHE_SECS: i64 = 24 * 3600;
/// How long a failed fetch is answered from the store instead of retried.
pub const FAILURE_CACHE_SECS: i64 = 60;

/// What callers are told about any failure to fetch a document.
pub const FETCH_FAILED: &str = "passgate could not fetch a client metadata document from this client_id URL (it must be an https URL on a public address that answers 200 with the document)";

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
    /// loopback. Every limit (https only, no proxy, no redirects, timeouts,
    /// public addresses for names not pinned) still applies.
    pub fn customized(
        customize: impl FnOnce(reqwest::ClientBuilder) -> reqwest::ClientBuilder,
    ) -> Self {
        let builder = reqwest::Client::builder()
            .https_only(true)
            // A proxy from the environment (HTTPS_PROXY) would resolve and
            // connect to the target itself, so our resolver would only ever
            // see the proxy's address.
            .no_proxy()
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
    /// addresses stay refused, and no proxy is used either.
    pub fn allowing_loopback() -> Self {
        let client = reqwest::Client::builder()
            .no_proxy()
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

    /// The fenced HTTP client itself (no proxy, no redirects, timeouts,
    /// public addresses only unless the development setting is on), for
    /// other URLs that someone else names, such as a gateway backend's
    /// authorization server. IP literals are the caller's to check
    /// ([`is_public`]).
    pub fn http(&self) -> &reqwest::Client {
        &self.client
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

/// Is this an address anyone on the internet could reach? Everything in
/// the IANA IPv4 and IPv6 special-purpose address registries is refused,
/// whether or not the registry marks it globally reachable (no metadata
/// document lives on an anycast DNS sink). IPv6 forms that carry an IPv4
/// address for a translator or tunnel to reach (NAT64, 6to4, IPv4-mapped)
/// are judged by that IPv4 address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], len: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn in_v6(ip: Ipv6Addr, net: u128, len: u32) -> bool {
    let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
    u128::from(ip) & mask == net & mask
}

/// The IANA IPv4 special-purpose registry, plus multicast.
const SPECIAL_V4: &[([u8; 4], u32)] = &[
    ([0, 0, 0, 0], 8),       // "this network"
    ([10, 0, 0, 0], 8),      // private
    ([100, 64, 0, 0], 10),   // shared address space (carrier NAT)
    ([127, 0, 0, 0], 8),     // loopback
    ([169, 254, 0, 0], 16),  // link local (cloud metadata services)
    ([172, 16, 0, 0], 12),   // private
    ([192, 0, 0, 0], 24),    // IETF protocol assignments
    ([192, 0, 2, 0], 24),    // documentation
    ([192, 31, 196, 0], 24), // AS112
    ([192, 52, 193, 0], 24), // AMT
    ([192, 88, 99, 0], 24),  // 6to4 relay anycast (deprecated)
    ([192, 168, 0, 0], 16),  // private
    ([192, 175, 48, 0], 24), // AS112 direct delegation
    ([198, 18, 0, 0], 15),   // benchmarking
    ([198, 51, 100, 0], 24), // documentation
    ([203, 0, 113, 0], 24),  // documentation
    ([224, 0, 0, 0], 4),     // multicast
    ([240, 0, 0, 0], 4),     // reserved, and the broadcast address
];

fn is_public_v4(ip: Ipv4Addr) -> bool {
    !SPECIAL_V4.iter().any(|(net, len)| in_v4(ip, *net, *len))
}

/// Special-purpose blocks inside global unicast (2000::/3).
const SPECIAL_V6: &[(u128, u32)] = &[
    (0x2001_0000_u128 << 96, 23),      // IETF protocol assignments, Teredo
    (0x2001_0db8_u128 << 96, 32),      // documentation
    (0x2620_004f_8000_u128 << 80, 48), // AS112 direct delegation
    (0x3fff_0000_u128 << 96, 20),      // documentation
];

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let bits = u128::from(ip);
    // Translators and tunnels deliver to the embedded IPv4 address.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    if in_v6(ip, 0x0064_ff9b_u128 << 96, 96) {
        // NAT64 well-known prefix: the IPv4 address is the last 32 bits.
        return is_public_v4(Ipv4Addr::from(bits as u32));
    }
    if in_v6(ip, 0x2002_u128 << 112, 16) {
        // 6to4: the IPv4 address follows the prefix.
        return is_public_v4(Ipv4Addr::from((bits >> 80) as u32));
    }
    // Only 2000::/3 is allocated for global unicast. Outside it are the
    // unspecified and loopback addresses, IPv4-compatible `::a.b.c.d`, the
    // local-use NAT64 prefix 64:ff9b:1::/48, discard-only 100::/64, SRv6
    // 5f00::/16, unique local fc00::/7, link local fe80::/10, site local
    // fec0::/10 and multicast ff00::/8.
    in_v6(ip, 0x2000_u128 << 112, 3) && !SPECIAL_V6.iter().any(|(net, len)| in_v6(ip, *net, *len))
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
/// These messages are about the document its author wrote, so they say
/// what to fix.
pub fn client_from_document(url: &str, body: &[u8]) -> Result<Client, OAuthError> {
    let doc: Document = serde_json::from_slice(body)
        .map_err(|_| invalid("the client metadata document is not a valid JSON document"))?;
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

/// Why a fetch failed: what the caller is told, and what only the log
/// hears.
struct Failure {
    public: OAuthError,
    detail: String,
}

/// A failure of the fetch itself: the caller gets [`FETCH_FAILED`].
fn unreachable(detail: impl Into<String>) -> Failure {
    Failure {
        public: invalid(FETCH_FAILED),
        detail: detail.into(),
    }
}

fn bad_document(public: OAuthError) -> Failure {
    Failure {
        detail: public.description.clone(),
        public,
    }
}

/// Is `url` acceptable as a metadata document URL at all? Checked before
/// anything is counted or fetched.
fn check_url(fetcher: &CimdFetcher, url: &str) -> Result<url::Url, OAuthError> {
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
    Ok(parsed)
}

async fn fetch(
    fetcher: &CimdFetcher,
    url: &str,
    parsed: url::Url,
) -> Result<(Client, i64), Failure> {
    // IP literals never reach the resolver, so they are checked here.
    let literal = match parsed.host() {
        Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
        _ => None,
    };
    let allowed = |ip: IpAddr| is_public(ip) || (fetcher.allow_loopback && ip.is_loopback());
    if let Some(ip) = literal.filter(|ip| !allowed(*ip)) {
        return Err(unreachable(format!("{ip} is not a public address")));
    }
    let response = fetcher
        .client
        .get(parsed)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| {
            unreachable(if e.is_timeout() {
                "timed out".to_owned()
            } else {
                format!("{:#}", anyhow::Error::from(e.without_url()))
            })
        })?;
    let status = response.status();
    if !status.is_success() {
        return Err(unreachable(format!(
            "answered HTTP {} (redirects are not followed)",
            status.as_u16()
        )));
    }
    if response
        .content_length()
        .is_some_and(|n| n as usize > MAX_DOCUMENT_BYTES)
    {
        return Err(unreachable("the document is too large"));
    }
    let ttl = cache_secs(response.headers());
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| unreachable(format!("reading the body failed: {e}")))?;
        if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
            return Err(unreachable("the document is too large"));
        }
        body.extend_from_slice(&chunk);
    }
    let client = client_from_document(url, &body).map_err(bad_document)?;
    Ok((client, ttl))
}

/// What the store holds for a document URL. Untagged, so documents cached
/// before failures were cached still read as documents.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Cached {
    Document(Client),
    Failed { failed: String },
}

/// The client described at `url`, from the cache or freshly fetched.
/// `caller` is the rate-limit subject of whoever made us fetch (their
/// address): only actual fetches count, cached answers do not.
pub async fn resolve(
    fetcher: &CimdFetcher,
    store: &dyn Store,
    url: &str,
    caller: &str,
) -> Result<Client, OAuthError> {
    let parsed = check_url(fetcher, url)?;
    let key = crate::store::keys::Partition::MetadataDocument(url).key();
    match store.get_json::<Cached>(&key, "doc").await? {
        Some(Cached::Document(client)) => return Ok(client),
        Some(Cached::Failed { failed }) => return Err(invalid(failed)),
        None => {}
    }
    match ratelimit::check_subject(store, LimitedAction::CimdFetch, caller).await {
        Ok(()) => {}
        Err(Error::RateLimited) => {
            return Err(OAuthError::rate_limited(
                "too many client metadata documents fetched for this address; try again later",
                ratelimit::retry_after(LimitedAction::CimdFetch),
            ));
        }
        Err(Error::Store(e)) => return Err(e.into()),
        Err(e) => return Err(OAuthError::server_error(e.to_string())),
    }
    match fetch(fetcher, url, parsed.clone()).await {
        Ok((client, ttl)) => {
            if ttl > 0 {
                store
                    .put(
                        NewItem::json(&key, "doc", &Cached::Document(client.clone()))?
                            .expires_in(ttl),
                    )
                    .await?;
            }
            Ok(client)
        }
        Err(failure) => {
            // The host only: a client id's path and query are the client's.
            tracing::info!(
                host = parsed.host_str().unwrap_or_default(),
                reason = %failure.detail,
                "client metadata document refused"
            );
            let cached = Cached::Failed {
                failed: failure.public.description.clone(),
            };
            store
                .put(NewItem::json(&key, "doc", &cached)?.expires_in(FAILURE_CACHE_SECS))
                .await?;
            Err(failure.public)
        }
    }
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
            // NAT64, 6to4 and IPv4-compatible forms of private addresses.
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::808:808",
            "2002:7f00:1::",
            "2002:a9fe:a9fe::1",
            "2002:0a00:0001::1",
            "::127.0.0.1",
            "::8.8.8.8",
            // Teredo, site local, documentation, discard, SRv6, multicast.
            "2001::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "fec0::1",
            "2001:db8::1",
            "3fff::1",
            "100::1",
            "5f00::1",
            "ff02::1",
            // IPv4 special-purpose blocks.
            "192.0.0.9",
            "192.0.2.1",
            "192.31.196.1",
            "192.52.193.1",
            "192.88.99.1",
            "192.175.48.1",
            "198.18.0.1",
            "198.51.100.1",
            "203.0.113.1",
            "224.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
        ] {
            assert!(
                !is_public(ip.parse().unwrap()),
                "{ip} must not count as public"
            );
        }
        for ip in [
            "93.184.216.34",
            "1.1.1.1",
            "2606:4700:4700::1111",
            // Public IPv4 addresses behind NAT64 or 6to4 stay reachable.
            "64:ff9b::808:808",
            "2002:808:808::1",
            "::ffff:8.8.8.8",
        ] {
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
