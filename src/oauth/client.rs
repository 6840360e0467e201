//! What passgate knows of an OAuth client, however it became known
//! (registration, metadata document, the operator's clients file), and the
//! redirect-URI rules. Records and rules only: no store, no state, so the
//! metadata-document fetch and the configuration can use them.

use serde::{Deserialize, Serialize};

use crate::{config::ConfiguredClient, crypto};

/// The longest client id or redirect URI accepted.
pub const MAX_FIELD_LEN: usize = 2000;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ClientSource {
    Registered,
    MetadataDocument,
    Configured,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Client {
    pub client_id: String,
    pub client_name: String,
    pub redirect_uris: Vec<String>,
    pub source: ClientSource,
    /// Set for confidential clients; the secret itself is never stored.
    #[serde(default)]
    pub secret_hash: Option<String>,
    #[serde(default)]
    pub created_at: i64,
    /// Registrations: the address (and `User-Agent`) that registered, which
    /// tells apart installations that share a name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registered_from: Option<String>,
}

impl Client {
    /// A client from the operator's clients file, its redirect URIs checked.
    pub fn configured(entry: ConfiguredClient) -> Result<Client, String> {
        for uri in &entry.redirect_uris {
            validate_redirect_uri(uri).map_err(|e| format!("client {}: {e}", entry.client_id))?;
        }
        Ok(Client {
            client_name: entry.client_name.unwrap_or_else(|| entry.client_id.clone()),
            client_id: entry.client_id,
            redirect_uris: entry.redirect_uris,
            source: ClientSource::Configured,
            secret_hash: entry.client_secret.as_deref().map(crypto::token_hash),
            created_at: 0,
            registered_from: None,
        })
    }
}

/// The operator's clients file as clients, or the first entry's mistake.
pub fn configured(entries: &[ConfiguredClient]) -> Result<Vec<Client>, String> {
    entries.iter().cloned().map(Client::configured).collect()
}

fn is_loopback_host(host: Option<url::Host<&str>>) -> bool {
    match host {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Checks a redirect URI at registration: absolute, no fragment, no
/// credentials, and plain http only on loopback (RFC 8252 §7.3). Native
/// apps' private-use schemes (`cursor://...`) are allowed; schemes that
/// would run code in the browser are not.
pub fn validate_redirect_uri(uri: &str) -> Result<(), String> {
    if uri.len() > MAX_FIELD_LEN {
        return Err("redirect URI is too long".into());
    }
    let url =
        url::Url::parse(uri).map_err(|_| format!("redirect URI {uri:?} is not an absolute URI"))?;
    if url.fragment().is_some() {
        return Err(format!("redirect URI {uri:?} must not contain a fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("redirect URI {uri:?} must not contain credentials"));
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback_host(url.host()) => Ok(()),
        "http" => Err(format!(
            "redirect URI {uri:?} uses plain http on a non-loopback host; use https"
        )),
        "javascript" | "data" | "file" | "vbscript" | "blob" | "about" => Err(format!(
            "redirect URI scheme {:?} is not allowed",
            url.scheme()
        )),
        _ => Ok(()),
    }
}

/// Does `requested` match one of the client's redirect URIs? Exactly, except
/// that a loopback http redirect may use any port (RFC 8252 §7.3), since
/// native clients such as VS Code pick a free port at run time.
pub fn redirect_uri_allowed(client: &Client, requested: &str) -> bool {
    if client.redirect_uris.iter().any(|r| r == requested) {
        return true;
    }
    let Ok(req) = url::Url::parse(requested) else {
        return false;
    };
    if req.scheme() != "http" || !is_loopback_host(req.host()) || req.fragment().is_some() {
        return false;
    }
    client.redirect_uris.iter().any(|registered| {
        url::Url::parse(registered).is_ok_and(|reg| {
            reg.scheme() == "http"
                && reg.host() == req.host()
                && reg.path() == req.path()
                && reg.query() == req.query()
                && req.username().is_empty()
                && req.password().is_none()
        })
    })
}
