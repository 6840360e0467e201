//! Requests that reach a local passgate under another loopback name than
//! its public URL's (`127.0.0.1:8080` for `localhost:8080`). The OAuth
//! documents name the public URL, so an MCP client configured with the other
//! name fails with a mismatch it cannot explain. Such a request to `/mcp` or
//! a discovery document gets an error that names the URL to use (the SDKs
//! show a JSON-RPC error's message); a browser's page request is redirected
//! to the same path under the public URL (passkeys also refuse IP origins).
//!
//! Only loopback public URLs, and only another name on the same port: a
//! different port is another instance or a local proxy, and a public
//! deployment may sit behind proxies that rewrite `Host`.

use axum::{
    extract::{Request, State},
    middleware::Next,
    response::{IntoResponse, Redirect, Response},
};
use http::{Method, header, uri::Authority};

use crate::{
    app::AppState,
    config::Config,
    error::{WrongHost, WrongHostReader},
};

/// The origin this request was sent to, when it is a loopback alias of the
/// public URL's host on the same port.
pub fn misdirected(config: &Config, headers: &http::HeaderMap) -> Option<String> {
    if !config.public_url_is_loopback() {
        return None;
    }
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let authority: Authority = host.parse().ok()?;
    let scheme = config.public_url().scheme();
    let port = authority
        .port_u16()
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    if Some(port) != config.public_url().port_or_known_default() {
        return None;
    }
    let name = authority.host().to_ascii_lowercase();
    let public = config.public_url().host_str()?.to_ascii_lowercase();
    let loopback = matches!(name.as_str(), "localhost" | "127.0.0.1" | "[::1]");
    (loopback && name != public).then(|| format!("{scheme}://{name}:{port}"))
}

/// Middleware on the whole router.
pub async fn redirect_or_explain(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let Some(requested) = misdirected(&state.config, request.headers()) else {
        return next.run(request).await;
    };
    let path = request.uri().path();
    let resource = state.resources.iter().find(|r| r.path() == path);
    let wrong = |reader| WrongHost {
        requested: requested.clone(),
        public_url: state.config.issuer(),
        mcp_url: resource.map_or_else(|| state.config.mcp_url(), |r| r.url().to_owned()),
        reader,
    };
    if resource.is_some() && !wants_html(&request) {
        return wrong(WrongHostReader::McpClient).into_response();
    }
    if path.starts_with("/.well-known/") {
        return wrong(WrongHostReader::Discovery).into_response();
    }
    if matches!(*request.method(), Method::GET | Method::HEAD) && wants_html(&request) {
        // Our own origin and path: never a redirect somewhere else.
        let path_and_query = request
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        return Redirect::permanent(&state.config.url(&path_and_query)).into_response();
    }
    next.run(request).await
}

fn wants_html(request: &Request) -> bool {
    request
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"))
}

#[cfg(test)]
mod tests {
    use http::HeaderMap;

    use super::*;

    fn host(config: &Config, value: &str) -> Option<String> {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, value.parse().unwrap());
        misdirected(config, &headers)
    }

    #[test]
    fn only_another_loopback_name_on_the_same_port() {
        let local = Config::for_public_url("http://localhost:8080").unwrap();
        assert_eq!(
            host(&local, "127.0.0.1:8080").as_deref(),
            Some("http://127.0.0.1:8080")
        );
        assert_eq!(
            host(&local, "[::1]:8080").as_deref(),
            Some("http://[::1]:8080")
        );
        assert_eq!(host(&local, "localhost:8080"), None);
        assert_eq!(host(&local, "LOCALHOST:8080"), None);
        // Another port: another instance or a proxy.
        assert_eq!(host(&local, "127.0.0.1:9090"), None);
        assert_eq!(host(&local, "evil.example:8080"), None);
        let by_ip = Config::for_public_url("http://127.0.0.1:8080").unwrap();
        assert_eq!(
            host(&by_ip, "localhost:8080").as_deref(),
            Some("http://localhost:8080")
        );
        let public = Config::for_public_url("https://mcp.example.com").unwrap();
        assert_eq!(host(&public, "127.0.0.1:443"), None);
    }
}
