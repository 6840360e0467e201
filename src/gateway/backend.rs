//! How a route reaches its MCP server: the transport seam. The forwarding
//! handler builds an `http::Request` (headers already decided) and relays
//! the `http::Response` it gets back; only this file knows how the bytes
//! travel: Streamable HTTP over hyper's pooled client (optionally
//! SigV4-signed), or a command's children (`stdio`), which the handler
//! serves before `send`.
//!
//! hyper's client, not reqwest: a forwarded call is two HTTP exchanges and
//! little else, and reqwest's per-request work (its URL parsed again, its
//! request builder, its own body and timeout wrappers) cost about 11 µs of
//! CPU per call above hyper's on the same pool (`bench/gateway.sh`,
//! `bare-reqwest` beside `bare-hyper`). Backends' own sign-ins, which are
//! rare, still go through reqwest (`backend_auth`).

use std::{sync::Arc, time::Duration};

use axum::body::{Body, Bytes};
use http::{Request, Response, Uri};
use http_body_util::Full;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioTimer},
};
use url::Url;

/// The pooled HTTP/1.1 and HTTP/2 (by ALPN) client every HTTP route
/// shares: HTTPS with the Mozilla roots, as reqwest's default. It follows no
/// redirect (a backend must not send passgate, and the identity it carries,
/// elsewhere) and reads no proxy from the environment (no proxy sees the
/// identity JWT or the static credentials).
#[derive(Clone)]
pub struct BackendClient(Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>);

impl std::fmt::Debug for BackendClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BackendClient")
    }
}

impl BackendClient {
    pub fn new() -> Self {
        let mut http = HttpConnector::new();
        // Small writes go out at once (reqwest's default too).
        http.set_nodelay(true);
        http.enforce_http(false);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
            .expect("ring supports rustls's default protocol versions")
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(https);
        Self(client)
    }
}

impl Default for BackendClient {
    fn default() -> Self {
        Self::new()
    }
}

/// Why a backend gave no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendError {
    Unreachable,
    /// No response head within the route's timeout.
    Timeout,
}

/// A route's MCP server.
#[derive(Debug, Clone)]
pub enum Backend {
    /// Boxed: the client and parsed URL are far larger than the other arm.
    Http(Box<HttpBackend>),
    /// A command run per person (`super::stdio`).
    Stdio(Arc<super::stdio::StdioBackend>),
}

/// A Streamable HTTP endpoint.
#[derive(Debug, Clone)]
pub struct HttpBackend {
    url: Url,
    /// `url`, parsed once for every request.
    uri: Uri,
    timeout: Duration,
    client: BackendClient,
    /// Signs each request for an IAM-protected URL (`sigv4` on the route).
    #[cfg(feature = "aws")]
    signer: Option<super::sigv4::SigV4Signer>,
}

impl Backend {
    /// `signer`, when given, signs every request (an IAM-protected URL).
    pub fn http(
        url: Url,
        timeout: Duration,
        client: BackendClient,
        #[cfg(feature = "aws")] signer: Option<super::sigv4::SigV4Signer>,
    ) -> Self {
        // The gateway file's check refuses a URL that is no valid URI; one
        // made otherwise is sent nowhere (every request "unreachable").
        let uri = url.as_str().parse().unwrap_or_default();
        Self::Http(Box::new(HttpBackend {
            url,
            uri,
            timeout,
            client,
            #[cfg(feature = "aws")]
            signer,
        }))
    }

    pub fn command(children: Arc<super::stdio::StdioBackend>) -> Self {
        Self::Stdio(children)
    }

    /// The children, when the backend is a command.
    pub fn stdio(&self) -> Option<&Arc<super::stdio::StdioBackend>> {
        match self {
            Backend::Stdio(children) => Some(children),
            Backend::Http(_) => None,
        }
    }

    /// The URL the identity JWT is issued for (its `aud`).
    pub fn audience(&self) -> &str {
        match self {
            Backend::Http(http) => http.url.as_str(),
            // Never sent: the children get no identity JWT.
            Backend::Stdio(_) => "",
        }
    }

    /// Sends one request; the response body streams as the backend writes.
    /// The request's URI is ignored: the backend's own is used.
    pub async fn send(&self, request: Request<Bytes>) -> Result<Response<Body>, BackendError> {
        match self {
            Backend::Http(http) => http.send(request).await,
            // The handler serves these itself (`stdio::serve`).
            Backend::Stdio(_) => Err(BackendError::Unreachable),
        }
    }

    /// Does the backend answer at all (any status) within two seconds? An
    /// `OPTIONS` request that carries no identity.
    pub async fn probe(&self) -> bool {
        match self {
            Backend::Http(http) => {
                let mut request = Request::new(Full::default());
                *request.method_mut() = http::Method::OPTIONS;
                *request.uri_mut() = http.uri.clone();
                tokio::time::timeout(Duration::from_secs(2), http.client.0.request(request))
                    .await
                    .is_ok_and(|r| r.is_ok())
            }
            // Started on demand; nothing to probe.
            Backend::Stdio(_) => true,
        }
    }
}

impl HttpBackend {
    /// `headers` with the SigV4 signature of the request they go with.
    #[cfg(feature = "aws")]
    async fn signed(
        &self,
        signer: &super::sigv4::SigV4Signer,
        method: &http::Method,
        headers: http::HeaderMap,
        body: &[u8],
    ) -> Result<http::HeaderMap, BackendError> {
        let mut request = Request::new(());
        *request.method_mut() = method.clone();
        *request.uri_mut() = self.uri.clone();
        *request.headers_mut() = headers;
        signer.sign(&mut request, body).await.map_err(|e| {
            tracing::error!(error = %e, "cannot sign a gateway backend request");
            BackendError::Unreachable
        })?;
        Ok(request.into_parts().0.headers)
    }

    async fn send(&self, request: Request<Bytes>) -> Result<Response<Body>, BackendError> {
        let (mut parts, body) = request.into_parts();
        #[cfg(feature = "aws")]
        if let Some(signer) = &self.signer {
            // Last, so the signature covers every header sent.
            parts.headers = self
                .signed(signer, &parts.method, parts.headers, &body)
                .await?;
        }
        parts.uri = self.uri.clone();
        let send = self
            .client
            .0
            .request(Request::from_parts(parts, Full::new(body)));
        match tokio::time::timeout(self.timeout, send).await {
            Err(_) => Err(BackendError::Timeout),
            Ok(Err(e)) => {
                // hyper's error alone says only "client error (Connect)".
                tracing::warn!(error = %super::backend_auth::describe(&e), "a gateway backend is unreachable");
                Err(BackendError::Unreachable)
            }
            // The body relayed frame by frame as it arrives.
            Ok(Ok(response)) => Ok(response.map(Body::new)),
        }
    }
}
