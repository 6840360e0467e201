//! The ceiling for `bench/run.sh`: a bare axum server on the same tokio
//! runtime and the same axum/hyper stack as passgate, answering every
//! `POST /mcp` with one fixed JSON-RPC `tools/call` result. No auth, no
//! JSON parsing, no MCP: whatever passgate spends above this is its own.
//!
//! Built as the example `bench_ceiling` (see `Cargo.toml`), never part of
//! the `passgate` binary.
//!
//! ```text
//! bench_ceiling 127.0.0.1:18082 5     # listen address, the sum to answer
//! ```

use axum::{Router, body::Bytes, routing::post};
use http::header;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:18082".into());
    let sum: i64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(5);
    // The same shape passgate's `add` returns.
    let body: &'static str = Box::leak(
        format!(
            r#"{{"jsonrpc":"2.0","id":1,"result":{{"content":[{{"type":"text","text":"{sum}"}}],"structuredContent":{{"result":{sum}}},"isError":false}}}}"#
        )
        .into_boxed_str(),
    );
    let app = Router::new().route(
        "/mcp",
        post(move |request_body: Bytes| async move {
            // Read the request like any server must, then answer.
            drop(request_body);
            ([(header::CONTENT_TYPE, "application/json")], body)
        }),
    );
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    axum::serve(listener, app).await
}
