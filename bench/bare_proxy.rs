//! The floor for `bench/gateway.sh`: the least any HTTP gateway on passgate's
//! stack does per forwarded call, and nothing more. It reads the request body
//! whole (a gateway that decides policy on the body must), copies the
//! end-to-end headers, sends the request to the backend with the given client
//! and streams the answer back. No token check, no policy, no identity
//! assertion, no logging: passgate's cost above this row is its own, and this
//! row's cost above the backend alone is what two HTTP exchanges cost here.
//!
//! Two clients, to tell whether the client matters: `reqwest` (the one
//! passgate's gateway uses, built the same way) and `hyper` (hyper-util's
//! pooled client, which reqwest wraps).
//!
//! Built as the example `bench_bare_proxy` (see `Cargo.toml`), never part of
//! the `passgate` binary.
//!
//! ```text
//! bench_bare_proxy 127.0.0.1:18091 http://127.0.0.1:18090/mcp reqwest
//! ```

use std::{sync::Arc, time::Duration};

use axum::{
    Router,
    body::Body,
    extract::{Request, State},
    http::{HeaderMap, StatusCode, Uri, header},
    response::{IntoResponse, Response},
    routing::any,
};
use hyper_util::{client::legacy::Client as HyperClient, rt::TokioExecutor};

#[derive(Clone)]
enum Upstream {
    Reqwest(reqwest::Client),
    Hyper(Box<HyperClient<hyper_util::client::legacy::connect::HttpConnector, Body>>),
}

struct Proxy {
    backend: Uri,
    authority: header::HeaderValue,
    upstream: Upstream,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:18091".into());
    let backend: Uri = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:18090/mcp".into())
        .parse()?;
    let upstream = match args.next().as_deref().unwrap_or("reqwest") {
        "reqwest" => Upstream::Reqwest(
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .pool_idle_timeout(Duration::from_secs(60))
                .build()?,
        ),
        "hyper" => Upstream::Hyper(Box::new(
            HyperClient::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(60))
                .build_http(),
        )),
        other => anyhow::bail!("unknown client {other}: reqwest or hyper"),
    };
    let authority = backend
        .authority()
        .ok_or_else(|| anyhow::anyhow!("the backend URL has no authority"))?
        .as_str()
        .parse()?;
    let state = Arc::new(Proxy {
        backend,
        authority,
        upstream,
    });
    let app = Router::new().route("/mcp", any(forward)).with_state(state);
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    axum::serve(listener, app).await?;
    Ok(())
}

async fn forward(State(proxy): State<Arc<Proxy>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, 4 * 1024 * 1024).await else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let mut headers = HeaderMap::with_capacity(parts.headers.len());
    for (name, value) in &parts.headers {
        if !matches!(
            name.as_str(),
            "host" | "connection" | "content-length" | "transfer-encoding" | "authorization"
        ) {
            headers.append(name.clone(), value.clone());
        }
    }
    headers.insert(header::HOST, proxy.authority.clone());
    let answer = match &proxy.upstream {
        Upstream::Reqwest(client) => client
            .request(parts.method, proxy.backend.to_string())
            .headers(headers)
            .body(body)
            .send()
            .await
            .map(http::Response::<reqwest::Body>::from)
            .map(|r| r.map(Body::new))
            .ok(),
        Upstream::Hyper(client) => {
            let mut outgoing = http::Request::new(Body::from(body));
            *outgoing.method_mut() = parts.method;
            *outgoing.uri_mut() = proxy.backend.clone();
            *outgoing.headers_mut() = headers;
            client
                .request(outgoing)
                .await
                .map(|r| r.map(Body::new))
                .ok()
        }
    };
    match answer {
        Some(mut response) => {
            response.headers_mut().remove(header::CONNECTION);
            response
        }
        None => StatusCode::BAD_GATEWAY.into_response(),
    }
}
