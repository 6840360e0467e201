//! How a route reaches its MCP server: the transport seam. The forwarding
//! handler builds an `http::Request` (headers already decided) and relays
//! the `http::Response` it gets back; only this file knows how the bytes
//! travel: Streamable HTTP over `reqwest` (optionally SigV4-signed), or a
//! command's children (`stdio`), which the handler serves before `send`.

use std::{sync::Arc, time::Duration};

use axum::body::{Body, Bytes};
use http::{Request, Response};
use url::Url;

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
    Http(HttpBackend),
    /// A command run per person (`super::stdio`).
    Stdio(Arc<super::stdio::StdioBackend>),
}

/// A Streamable HTTP endpoint.
#[derive(Debug, Clone)]
pub struct HttpBackend {
    url: Url,
    timeout: Duration,
    client: reqwest::Client,
    /// Signs each request for an IAM-protected URL (`sigv4` on the route).
    #[cfg(feature = "aws")]
    signer: Option<super::sigv4::SigV4Signer>,
}

impl Backend {
    /// `signer`, when given, signs every request (an IAM-protected URL).
    pub fn http(
        url: Url,
        timeout: Duration,
        client: reqwest::Client,
        #[cfg(feature = "aws")] signer: Option<super::sigv4::SigV4Signer>,
    ) -> Self {
        Self::Http(HttpBackend {
            url,
            timeout,
            client,
            #[cfg(feature = "aws")]
            signer,
        })
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
            Backend::Http(http) => http
                .client
                .request(http::Method::OPTIONS, http.url.clone())
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok(),
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
        *request.uri_mut() = self
            .url
            .as_str()
            .parse()
            .map_err(|_| BackendError::Unreachable)?;
        *request.headers_mut() = headers;
        signer.sign(&mut request, body).await.map_err(|e| {
            tracing::error!(error = %e, "cannot sign a gateway backend request");
            BackendError::Unreachable
        })?;
        Ok(request.into_parts().0.headers)
    }

    async fn send(&self, request: Request<Bytes>) -> Result<Response<Body>, BackendError> {
        #[cfg_attr(not(feature = "aws"), allow(unused_mut))]
        let (mut parts, body) = request.into_parts();
        #[cfg(feature = "aws")]
        if let Some(signer) = &self.signer {
            // Last, so the signature covers every header sent.
            parts.headers = self
                .signed(signer, &parts.method, parts.headers, &body)
                .await?;
        }
        let send = self
            .client
            .request(parts.method, self.url.clone())
            .headers(parts.headers)
            .body(body)
            .send();
        let response = match tokio::time::timeout(self.timeout, send).await {
            Err(_) => return Err(BackendError::Timeout),
            Ok(Err(e)) if e.is_timeout() => return Err(BackendError::Timeout),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "a gateway backend is unreachable");
                return Err(BackendError::Unreachable);
            }
            Ok(Ok(response)) => response,
        };
        // The head moved, the body relayed frame by frame as it arrives.
        let (head, body) = http::Response::<reqwest::Body>::from(response).into_parts();
        let mut out = Response::new(Body::new(body));
        *out.status_mut() = head.status;
        *out.headers_mut() = head.headers;
        Ok(out)
    }
}
