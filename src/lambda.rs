//! Serving under the AWS Lambda runtime (feature `lambda`): the same router
//! as over TCP, fed Function URL events (API Gateway HTTP API v2 payloads)
//! by `lambda_http`.
//!
//! Everything is built once per execution environment, in Lambda's init
//! phase: the settings secret and the command line are read by `main`, then
//! [`serve`] opens the store, fetches the master key, loads the signing keys
//! and builds the router. A request only clones the router (reference
//! counts) and runs it.
//!
//! Responses are buffered, not streamed: the Function URL that `deploy/aws`
//! creates uses the default `BUFFERED` invoke mode, `/mcp` answers with JSON
//! (stateless, no SSE) and every other response is small. Streaming would
//! need the `RESPONSE_STREAM` invoke mode on the URL as well as
//! `lambda_http::run_with_streaming_response` here, for no gain.

use std::{
    ffi::OsString,
    net::{IpAddr, SocketAddr},
};

use axum::{Router, extract::ConnectInfo};
use lambda_http::{Request, RequestExt, request::RequestContext};

use crate::{
    app::AppState,
    bootstrap,
    config::{Config, ServeArgs},
    login, routes,
};

/// True when this process was started by the Lambda runtime (or an
/// emulation of it, such as `cargo lambda watch`).
pub fn is_lambda_runtime() -> bool {
    std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some()
}

/// Lambda starts the binary (named `bootstrap`) with no arguments; under
/// the runtime, that means `serve`, configured from the environment.
pub fn serve_by_default(mut argv: Vec<OsString>) -> Vec<OsString> {
    if argv.len() <= 1 && is_lambda_runtime() {
        if argv.is_empty() {
            argv.push("passgate".into());
        }
        argv.push("serve".into());
    }
    argv
}

/// Builds the application once and answers invocations until the runtime
/// stops the execution environment. Any error before the loop starts fails
/// Lambda's init phase, which Lambda retries.
pub async fn serve(args: &ServeArgs) -> anyhow::Result<()> {
    let config = Config::from_args(args)?;
    let (store, master_key) = bootstrap::open_store(&args.common).await?;
    // As `passgate serve` over TCP: the first administrator's link goes to
    // standard output (the function's log), once for the whole table.
    if config.passkeys
        && let Some(banner) = login::cli::first_admin_banner(store.as_ref(), &config).await?
    {
        println!("{banner}");
    }
    if let Some(banner) = login::cli::no_admin_banner(store.as_ref(), &config).await? {
        println!("{banner}");
    }
    let state = AppState::build(config, store, master_key).await?;
    // Runs while the execution environment is thawed; a tick missed while
    // frozen fires on the next invocation.
    state.keys.spawn_periodic_reload(
        state.store.clone(),
        state.master_key.clone(),
        state.shutdown.clone(),
    );
    tracing::info!(
        mcp_url = %state.config.mcp_url(),
        "passgate is serving Lambda invocations"
    );
    run(routes::router(state)).await
}

/// Runs `app` under the Lambda runtime.
pub async fn run(app: Router) -> anyhow::Result<()> {
    let service = tower::ServiceBuilder::new()
        .map_request(with_client_addr)
        .service(app);
    lambda_http::run(service)
        .await
        .map_err(|e| anyhow::anyhow!("the Lambda runtime loop failed: {e}"))
}

/// Gives the request the caller's address the way the TCP server does
/// (`ConnectInfo`), so `net::ClientAddr` and the rate limits see it.
fn with_client_addr(mut request: Request) -> Request {
    if let Some(addr) = source_addr(&request) {
        request.extensions_mut().insert(ConnectInfo(addr));
    }
    request
}

/// The source IP that the Function URL saw (`requestContext.http.sourceIp`),
/// with port 0: Lambda does not tell the port.
fn source_addr(request: &Request) -> Option<SocketAddr> {
    match request.request_context_ref()? {
        RequestContext::ApiGatewayV2(context) => context
            .http
            .source_ip
            .as_deref()?
            .parse::<IpAddr>()
            .ok()
            .map(|ip| SocketAddr::new(ip, 0)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_url_source_ip_becomes_connect_info() {
        let event = serde_json::json!({
            "version": "2.0",
            "routeKey": "$default",
            "rawPath": "/healthz",
            "rawQueryString": "",
            "headers": {"host": "abc.lambda-url.eu-west-1.on.aws"},
            "requestContext": {
                "accountId": "anonymous",
                "apiId": "abc",
                "domainName": "abc.lambda-url.eu-west-1.on.aws",
                "domainPrefix": "abc",
                "http": {
                    "method": "GET",
                    "path": "/healthz",
                    "protocol": "HTTP/1.1",
                    "sourceIp": "203.0.113.7",
                    "userAgent": "test"
                },
                "requestId": "id",
                "routeKey": "$default",
                "stage": "$default",
                "time": "01/Jan/2026:00:00:00 +0000",
                "timeEpoch": 0
            },
            "isBase64Encoded": false
        });
        let request =
            lambda_http::request::from_str(&event.to_string()).expect("a Function URL event");
        let request = with_client_addr(request);
        let ConnectInfo(addr) = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .expect("ConnectInfo");
        assert_eq!(addr.ip().to_string(), "203.0.113.7");
        assert_eq!(request.uri().path(), "/healthz");
    }

    #[test]
    fn no_source_ip_no_connect_info() {
        let request = with_client_addr(Request::default());
        assert!(
            request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .is_none()
        );
    }
}
