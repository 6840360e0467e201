//! The fast backend for `bench/gateway.sh`: passgate's own `add` tool on
//! rmcp's Streamable HTTP transport with passgate's settings (stateless,
//! JSON responses), without any authorization, so that what passgate adds
//! as a gateway in front of it is measured against the backend alone. Also
//! `POST /sse`: an SSE response whose first event is sent 50 ms after the
//! headers, carrying the wall-clock time it was sent (`sent_unix_ns`), then
//! held open for another second: a proxy that buffers shows the hold.
//!
//! Built as the example `bench_backend` (see `Cargo.toml`), never part of
//! the `passgate` binary.
//!
//! ```text
//! bench_backend 127.0.0.1:18090
//! ```

use std::{
    convert::Infallible,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use axum::{Router, body::Body, routing::post};
use http::header;
use passgate::{config::Config, mcp};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let listen = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18090".into());
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    let port = listener.local_addr()?.port();
    // The Host passgate forwards is the backend's own authority.
    let config =
        Config::for_public_url(&format!("http://127.0.0.1:{port}")).map_err(anyhow::Error::msg)?;
    let app = Router::new()
        .nest_service(
            "/mcp",
            mcp::service(mcp::Tools::new(), &config, CancellationToken::new()),
        )
        .route("/sse", post(sse));
    axum::serve(listener, app).await?;
    Ok(())
}

async fn sse() -> impl axum::response::IntoResponse {
    let events = futures_util::stream::unfold(0u8, |step| async move {
        let event = match step {
            0 => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let sent = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_nanos();
                format!(
                    "event: message\ndata: {{\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{{\"progressToken\":1,\"progress\":1,\"sent_unix_ns\":{sent}}}}}\n\n"
                )
            }
            1 => {
                tokio::time::sleep(Duration::from_secs(1)).await;
                "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"content\":[]}}\n\n".to_owned()
            }
            _ => return None,
        };
        Some((Ok::<_, Infallible>(event), step + 1))
    });
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(events),
    )
}
