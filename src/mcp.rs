//! The MCP server: the tools passgate serves, and the Streamable HTTP service
//! that carries them. Protocol handling (both eras, headers, JSON-RPC errors)
//! is rmcp's; this module only chooses its settings and defines the tools.

use std::sync::Arc;

use rmcp::{
    ErrorData, ServerHandler,
    handler::server::{
        common::Extension, router::tool::ToolRouter, tool::schema_for_output, wrapper::Parameters,
    },
    model::{CallToolResult, ContentBlock, Implementation, ServerCapabilities, ServerConfig},
    tool, tool_handler, tool_router,
    transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService, session::never::NeverSessionManager,
    },
};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::{config::Config, oauth::bearer::Identity};

/// Arguments of `add`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct AddArgs {
    /// First addend (64-bit signed integer).
    pub a: i64,
    /// Second addend (64-bit signed integer).
    pub b: i64,
}

/// Structured result of `add`. The `result` wrapper matches what FastMCP
/// produces for a scalar return, so clients of the original see the same shape.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct AddOutput {
    /// The exact sum.
    pub result: i64,
}

/// Structured result of `whoami`.
#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct WhoamiOutput {
    /// The signed-in person's passgate user id.
    pub user_id: String,
    /// The OAuth client the call came through.
    pub client_id: String,
    /// The scopes of the access token.
    pub scopes: Vec<String>,
    /// The groups administrators put the person in.
    pub groups: Vec<String>,
}

/// The tools passgate serves. Built once; each request gets a cheap clone
/// (the router is shared), because the stateless transport asks for a fresh
/// handler per request.
#[derive(Clone)]
pub struct Tools {
    tool_router: Arc<ToolRouter<Self>>,
}

impl Default for Tools {
    fn default() -> Self {
        Self::new()
    }
}

#[tool_router(router = tool_router)]
impl Tools {
    pub fn new() -> Self {
        Self {
            tool_router: Arc::new(Self::tool_router()),
        }
    }

    /// Adds two integers. Overflow is reported as a tool error rather than
    /// wrapping, so a caller never receives a wrong sum.
    #[tool(
        description = "Add two 64-bit signed integers and return their exact sum.",
        output_schema = schema_for_output::<AddOutput>(),
        annotations(read_only_hint = true, idempotent_hint = true, open_world_hint = false)
    )]
    pub async fn add(
        &self,
        Parameters(AddArgs { a, b }): Parameters<AddArgs>,
    ) -> Result<CallToolResult, ErrorData> {
        Ok(match a.checked_add(b) {
            Some(sum) => {
                let mut result = CallToolResult::structured(serde_json::json!({ "result": sum }));
                result.content = vec![ContentBlock::text(sum.to_string())];
                result
            }
            None => CallToolResult::error(vec![ContentBlock::text(format!(
                "{a} + {b} does not fit in a 64-bit signed integer \
                 (range {} to {}); use smaller numbers",
                i64::MIN,
                i64::MAX
            ))]),
        })
    }

    /// Reports who is calling, from the verified access token: useful to
    /// check a client's connection, and the pattern for tools that act on
    /// behalf of the person.
    #[tool(
        description = "Tell which passgate user (with their groups) and OAuth client this connection is signed in as.",
        output_schema = schema_for_output::<WhoamiOutput>(),
        annotations(read_only_hint = true, idempotent_hint = true, open_world_hint = false)
    )]
    pub async fn whoami(
        &self,
        Extension(parts): Extension<http::request::Parts>,
    ) -> CallToolResult {
        match parts.extensions.get::<Identity>() {
            Some(identity) => {
                let out = WhoamiOutput {
                    user_id: identity.user_id.clone(),
                    client_id: identity.client_id.clone(),
                    scopes: identity.scopes.clone(),
                    groups: identity.groups.clone(),
                };
                CallToolResult::structured(serde_json::to_value(out).unwrap_or_default())
            }
            None => {
                CallToolResult::error(vec![ContentBlock::text("this connection is not signed in")])
            }
        }
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Tools {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("passgate", env!("CARGO_PKG_VERSION")))
            .with_instructions("passgate: tools behind passkey sign-in. `add` sums two integers.")
    }
}

/// rmcp settings shared by the product and the conformance fixtures:
/// stateless (any instance answers any request), JSON responses when the
/// client accepts them, Origin and Host checks derived from the public URL.
pub fn transport_config(
    config: &Config,
    shutdown: CancellationToken,
) -> StreamableHttpServerConfig {
    StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_json_response(true)
        .with_sse_keep_alive(None)
        .with_allowed_hosts(config.allowed_hosts())
        .with_allowed_origins(config.allowed_origins())
        .enforce_origin_validation()
        .with_max_request_body_bytes(config.max_body_bytes)
        .with_cancellation_token(shutdown)
}

/// The tower service that answers `/mcp` for a given handler.
pub fn service<H>(
    handler: H,
    config: &Config,
    shutdown: CancellationToken,
) -> StreamableHttpService<H, NeverSessionManager>
where
    H: ServerHandler + Clone + Send + Sync + 'static,
{
    StreamableHttpService::new(
        move || Ok(handler.clone()),
        Arc::new(NeverSessionManager::default()),
        transport_config(config, shutdown),
    )
}
