//! Conformance fixture server: every tool, resource and prompt that the
//! official MCP conformance suite's server scenarios call, served through
//! passgate's own HTTP stack (`mcp::service`, the `/mcp` Origin and JSON-RPC
//! layers, and `routes::with_common_layers`) so the suite exercises
//! passgate's real transport settings: stateless, JSON responses,
//! Origin/Host checks from the public URL, body limit.
//!
//! Not part of the product and deliberately open (no sign-in). Run by
//! `scripts/test.d/20-conformance.sh`:
//!
//! ```text
//! cargo run --example conformance_server -- --port 0 --port-file /tmp/port
//! ```
//!
//! The fixtures ask for client input in whichever way the request's protocol
//! revision allows: on 2026-07-28 they answer with an `input_required` result
//! (SEP-2322); before that they send the request in-band on the response
//! stream and wait a bounded time for the answer.

// Logging, sampling and roots are deprecated by SEP-2577 but still exercised
// by the suite for the revisions before 2026-07-28.
#![allow(deprecated)]

use std::{
    collections::{BTreeMap, hash_map::RandomState},
    hash::{BuildHasher, Hasher},
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;
use axum::{Router, routing::get};
use clap::Parser;
use passgate::{
    config::{Config, LogFormat},
    mcp, routes, server, telemetry,
};
use rmcp::{
    ErrorData, RoleServer, ServerHandler,
    model::{
        CacheScope, CallToolRequestParams, CallToolResponse, CallToolResult, ClientCapabilities,
        CompleteRequestParams, CompleteResult, CompletionInfo, ContentBlock, CreateMessageResult,
        ElicitResult, ElicitationAction, GetPromptRequestParams, GetPromptResponse,
        GetPromptResult, Implementation, InputRequest, InputRequests, InputRequiredResult,
        InputResponses, JsonObject, ListPromptsResult, ListResourceTemplatesResult,
        ListResourcesResult, ListRootsResult, ListToolsResult, LoggingLevel,
        LoggingMessageNotificationParam, PaginatedRequestParams, ProgressNotificationParam, Prompt,
        PromptArgument, PromptMessage, ProtocolVersion, ReadResourceRequestParams,
        ReadResourceResponse, ReadResourceResult, Reference, Resource, ResourceContents,
        ResourceTemplate, Role, ServerCapabilities, ServerConfig, ServerRequest,
        SetLevelRequestMethod, SetLevelRequestParams, SubscribeRequestParams, SubscriptionFilter,
        Tool, UnsubscribeRequestParams,
    },
    service::{PeerRequestOptions, RequestContext, SubscriptionContext},
};
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// A 1x1 red PNG.
const PNG_BASE64: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";
/// A WAV header with one silent sample.
const WAV_BASE64: &str = "UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA=";

/// How long a pre-2026 fixture waits for the client's answer to an in-band
/// request. Bounded because passgate's stateless transport rejects the POST
/// that carries the answer, and a fixture must never hang the suite.
const IN_BAND_ANSWER_TIMEOUT: Duration = Duration::from_secs(5);
/// Upper bound on a `subscriptions/listen` stream, so a client that vanishes
/// without the transport noticing cannot pin a task forever.
const LISTEN_MAX: Duration = Duration::from_secs(300);
/// Outstanding `requestState` handles kept; the oldest are forgotten first.
const MAX_PENDING_STATES: usize = 10_000;

#[derive(Parser)]
#[command(
    name = "conformance_server",
    about = "MCP conformance fixtures served through passgate's HTTP stack (no auth; tests only)"
)]
struct Args {
    /// Port on 127.0.0.1; 0 picks a free one. The public URL is
    /// http://localhost:PORT.
    #[arg(long, env = "CONFORMANCE_PORT", default_value_t = 0)]
    port: u16,
    /// Write the port actually bound to this file once listening.
    #[arg(long, env = "CONFORMANCE_PORT_FILE")]
    port_file: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    telemetry::init(LogFormat::Text);

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port))
        .await
        .with_context(|| format!("cannot listen on 127.0.0.1:{}", args.port))?;
    let port = listener.local_addr()?.port();
    // The public URL must name the bound port: Origin validation compares it.
    let config = Config::for_public_url(&format!("http://localhost:{port}"))
        .map_err(|e| anyhow::anyhow!(e))?;
    let shutdown = CancellationToken::new();

    let mcp_service = mcp::service(Fixtures::new(), &config, shutdown.clone());
    let app = routes::with_common_layers(
        Router::new()
            .route("/healthz", get(|| async { "ok" }))
            .route_service("/mcp", mcp_service)
            .route_layer(axum::middleware::from_fn(mcp::json_rpc_errors))
            .route_layer(axum::middleware::from_fn_with_state(
                mcp::AllowedOrigins::new(&config),
                mcp::check_origin,
            )),
        &config,
    );

    if let Some(path) = &args.port_file {
        // Write then rename, so a reader never sees a half-written number.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, port.to_string())
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    }
    tracing::info!(mcp_url = %config.mcp_url(), "conformance fixtures are serving");
    server::serve(listener, app, shutdown).await
}

// ---------------------------------------------------------------------------
// The handler
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum ListChange {
    Tools,
    Prompts,
}

/// State shared by every per-request clone of the handler.
struct Shared {
    tools: Vec<Tool>,
    changes: broadcast::Sender<ListChange>,
    /// When each list last changed: see `Fixtures::listen`.
    last_change: std::sync::Mutex<[Option<std::time::Instant>; 2]>,
    states: StateStore,
}

/// A change that may have come between rmcp's acknowledgement of a
/// subscription and `listen` starting, and is told again to be safe.
const LISTEN_CATCH_UP: Duration = Duration::from_secs(2);

impl Shared {
    fn announce(&self, change: ListChange) {
        self.last_change.lock().expect("last change")[change as usize] =
            Some(std::time::Instant::now());
        let _ = self.changes.send(change);
    }

    /// The changes made within `LISTEN_CATCH_UP`.
    fn recent_changes(&self) -> Vec<ListChange> {
        let last = *self.last_change.lock().expect("last change");
        [ListChange::Tools, ListChange::Prompts]
            .into_iter()
            .filter(|c| last[*c as usize].is_some_and(|at| at.elapsed() < LISTEN_CATCH_UP))
            .collect()
    }
}

#[derive(Clone)]
struct Fixtures {
    shared: Arc<Shared>,
}

impl Fixtures {
    fn new() -> Self {
        let (changes, _) = broadcast::channel(16);
        Self {
            shared: Arc::new(Shared {
                tools: tool_list(),
                changes,
                last_change: std::sync::Mutex::new([None, None]),
                states: StateStore::default(),
            }),
        }
    }
}

impl ServerHandler for Fixtures {
    fn get_info(&self) -> ServerConfig {
        let capabilities = ServerCapabilities::builder()
            .enable_logging()
            .enable_completions()
            .enable_prompts()
            .enable_prompts_list_changed()
            .enable_resources()
            .enable_resources_subscribe()
            .enable_tools()
            .enable_tool_list_changed()
            .build();
        ServerConfig::new(capabilities)
            .with_server_info(Implementation::new(
                "passgate-conformance-fixtures",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(
                "Fixtures for the MCP conformance suite; not passgate's product tools.",
            )
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.shared.tools.iter().find(|t| t.name == name).cloned()
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let mut result = ListToolsResult::with_all_items(self.shared.tools.clone());
        if is_modern(&context) {
            // The fixture set never changes per caller, so it may be shared.
            result = result
                .with_ttl_ms(60_000)
                .with_cache_scope(CacheScope::Public);
        }
        Ok(result)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let args = request.arguments.clone().unwrap_or_default();
        let done = |r: CallToolResult| Ok(CallToolResponse::Complete(r));
        match request.name.as_ref() {
            "test_simple_text" => done(text_result("This is a simple text response for testing.")),
            "test_image_content" => done(CallToolResult::success(vec![ContentBlock::image(
                PNG_BASE64,
                "image/png",
            )])),
            "test_audio_content" => done(CallToolResult::success(vec![ContentBlock::audio(
                WAV_BASE64,
                "audio/wav",
            )])),
            "test_embedded_resource" => {
                done(CallToolResult::success(vec![ContentBlock::resource(
                    ResourceContents::text(
                        "This is an embedded resource content.",
                        "test://embedded-resource",
                    ),
                )]))
            }
            "test_multiple_content_types" => done(CallToolResult::success(vec![
                ContentBlock::text("Multiple content types test:"),
                ContentBlock::image(PNG_BASE64, "image/png"),
                ContentBlock::resource(
                    ResourceContents::text(
                        json!({ "test": "data", "value": 123 }).to_string(),
                        "test://mixed-content-resource",
                    )
                    .with_mime_type("application/json"),
                ),
            ])),
            "test_error_handling" => done(CallToolResult::error(vec![ContentBlock::text(
                "This tool intentionally returns an error for testing",
            )])),
            "test_tool_with_logging" | "test_logging_tool" => {
                for message in [
                    "Tool execution started",
                    "Tool processing data",
                    "Tool execution completed",
                ] {
                    log(&context, LoggingLevel::Info, message).await;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                done(text_result("Tool with logging executed successfully"))
            }
            "test_tool_with_progress" => {
                let token = context.meta.get_progress_token();
                for step in [0.0, 50.0, 100.0] {
                    if let Some(token) = &token {
                        let progress = ProgressNotificationParam::new(token.clone(), step)
                            .with_total(100.0)
                            .with_message(format!("Completed step {step} of 100"));
                        // A client that went away is not this fixture's problem.
                        let _ = context.peer.notify_progress(progress).await;
                    }
                    if step < 100.0 {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
                done(text_result("Tool with progress executed successfully"))
            }
            "test_reconnection" => {
                // SEP-1699 polling needs a resumable stream; a stateless
                // transport without an event store has none to close.
                tokio::time::sleep(Duration::from_millis(100)).await;
                done(text_result("Reconnection test completed."))
            }
            "test_trigger_tool_change" => {
                self.shared.announce(ListChange::Tools);
                done(text_result("Announced a tool list change."))
            }
            "test_trigger_prompt_change" => {
                self.shared.announce(ListChange::Prompts);
                done(text_result("Announced a prompt list change."))
            }
            "test_custom_header" => {
                let region = string_arg(&args, "region")?;
                done(text_result(format!("Region: {region}")))
            }
            "json_schema_2020_12_tool" => done(text_result(format!(
                "Received: {}",
                Value::Object(args.clone())
            ))),
            "test_sampling" => {
                let prompt = string_arg(&args, "prompt")?;
                self.single_input(
                    &request,
                    &context,
                    "llm",
                    sampling_request(&prompt, 100)?,
                    |answer| {
                        let reply: CreateMessageResult = parse_answer(answer)?;
                        Ok(format!("LLM response: {}", sampling_text(&reply)))
                    },
                )
                .await
            }
            "test_elicitation" => {
                let message = string_arg(&args, "message")?;
                let schema = json!({
                    "type": "object",
                    "properties": {
                        "response": { "type": "string", "description": "User's response" }
                    },
                    "required": ["response"]
                });
                self.single_input(
                    &request,
                    &context,
                    "user_input",
                    elicitation_request(&message, schema)?,
                    |answer| Ok(format!("User response: {}", describe_elicitation(answer)?)),
                )
                .await
            }
            "test_elicitation_sep1034_defaults" => {
                let schema = json!({
                    "type": "object",
                    "properties": {
                        "name": { "type": "string", "description": "User name", "default": "John Doe" },
                        "age": { "type": "integer", "description": "User age", "default": 30 },
                        "score": { "type": "number", "description": "User score", "default": 95.5 },
                        "status": {
                            "type": "string",
                            "description": "User status",
                            "enum": ["active", "inactive", "pending"],
                            "default": "active"
                        },
                        "verified": { "type": "boolean", "description": "Verification status", "default": true }
                    },
                    "required": []
                });
                self.single_input(
                    &request,
                    &context,
                    "form",
                    elicitation_request(
                        "Please review and update the form fields with defaults",
                        schema,
                    )?,
                    |answer| {
                        Ok(format!(
                            "Elicitation completed: {}",
                            describe_elicitation(answer)?
                        ))
                    },
                )
                .await
            }
            "test_elicitation_sep1330_enums" => {
                let schema = json!({
                    "type": "object",
                    "properties": {
                        "untitledSingle": {
                            "type": "string",
                            "description": "Untitled single-select",
                            "enum": ["option1", "option2", "option3"]
                        },
                        "titledSingle": {
                            "type": "string",
                            "description": "Titled single-select",
                            "oneOf": [
                                { "const": "value1", "title": "First Option" },
                                { "const": "value2", "title": "Second Option" },
                                { "const": "value3", "title": "Third Option" }
                            ]
                        },
                        "legacyEnum": {
                            "type": "string",
                            "description": "Legacy titled enum",
                            "enum": ["opt1", "opt2", "opt3"],
                            "enumNames": ["Option One", "Option Two", "Option Three"]
                        },
                        "untitledMulti": {
                            "type": "array",
                            "description": "Untitled multi-select",
                            "items": { "type": "string", "enum": ["option1", "option2", "option3"] }
                        },
                        "titledMulti": {
                            "type": "array",
                            "description": "Titled multi-select",
                            "items": {
                                "anyOf": [
                                    { "const": "value1", "title": "First Choice" },
                                    { "const": "value2", "title": "Second Choice" },
                                    { "const": "value3", "title": "Third Choice" }
                                ]
                            }
                        }
                    },
                    "required": []
                });
                self.single_input(
                    &request,
                    &context,
                    "choices",
                    elicitation_request("Please choose from the enum fields", schema)?,
                    |answer| {
                        Ok(format!(
                            "Elicitation completed: {}",
                            describe_elicitation(answer)?
                        ))
                    },
                )
                .await
            }
            "test_missing_capability" => {
                // Needs sampling; SEP-2575 requires -32021 when undeclared.
                require_capabilities(&context, &[Need::Sampling])?;
                self.single_input(
                    &request,
                    &context,
                    "llm",
                    sampling_request("Say hello", 50)?,
                    |answer| {
                        let reply: CreateMessageResult = parse_answer(answer)?;
                        Ok(format!("LLM response: {}", sampling_text(&reply)))
                    },
                )
                .await
            }
            "test_streaming_elicitation" => {
                require_capabilities(&context, &[Need::Elicitation])?;
                self.single_input(
                    &request,
                    &context,
                    "confirm",
                    elicitation_request("Continue?", ok_schema())?,
                    |answer| Ok(format!("Answered: {}", describe_elicitation(answer)?)),
                )
                .await
            }
            "test_input_required_result_elicitation" => {
                self.single_input(
                    &request,
                    &context,
                    "user_name",
                    elicitation_request("What is your name?", name_schema())?,
                    |answer| {
                        let name = elicited_string(answer, "name")?;
                        Ok(format!("Hello, {name}!"))
                    },
                )
                .await
            }
            "test_input_required_result_sampling" => {
                self.single_input(
                    &request,
                    &context,
                    "capital_question",
                    sampling_request("What is the capital of France?", 100)?,
                    |answer| {
                        let reply: CreateMessageResult = parse_answer(answer)?;
                        Ok(format!("Sampling said: {}", sampling_text(&reply)))
                    },
                )
                .await
            }
            "test_input_required_result_list_roots" => {
                self.single_input(
                    &request,
                    &context,
                    "client_roots",
                    roots_request()?,
                    |answer| {
                        let roots: ListRootsResult = parse_answer(answer)?;
                        let uris: Vec<&str> = roots.roots.iter().map(|r| r.uri.as_str()).collect();
                        Ok(format!("Client roots: {}", uris.join(", ")))
                    },
                )
                .await
            }
            "test_input_required_result_request_state" => {
                self.request_state_tool(&request, &context).await
            }
            "test_input_required_result_tampered_state" => {
                self.request_state_tool(&request, &context).await
            }
            "test_input_required_result_multiple_inputs" => {
                self.multiple_inputs_tool(&request, &context).await
            }
            "test_input_required_result_multi_round" => {
                self.multi_round_tool(&request, &context).await
            }
            "test_input_required_result_capabilities" => {
                self.capabilities_tool(&request, &context).await
            }
            other => Err(ErrorData::invalid_params(
                format!("unknown tool: {other}"),
                Some(json!({ "name": other })),
            )),
        }
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        let mut result = ListPromptsResult::with_all_items(prompt_list());
        if is_modern(&context) {
            result = result
                .with_ttl_ms(60_000)
                .with_cache_scope(CacheScope::Public);
        }
        Ok(result)
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let args = request.arguments.clone().unwrap_or_default();
        let messages = match request.name.as_str() {
            "test_simple_prompt" => vec![PromptMessage::new_text(
                Role::User,
                "This is a simple prompt for testing.",
            )],
            "test_prompt_with_arguments" => {
                let arg1 = string_arg(&args, "arg1")?;
                let arg2 = string_arg(&args, "arg2")?;
                vec![PromptMessage::new_text(
                    Role::User,
                    format!("Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"),
                )]
            }
            "test_prompt_with_embedded_resource" => {
                let uri = string_arg(&args, "resourceUri")?;
                vec![
                    PromptMessage::new(
                        Role::User,
                        ContentBlock::resource(ResourceContents::text(
                            "Embedded resource content for testing.",
                            uri,
                        )),
                    ),
                    PromptMessage::new_text(
                        Role::User,
                        "Please process the embedded resource above.",
                    ),
                ]
            }
            "test_prompt_with_image" => vec![
                PromptMessage::new(Role::User, ContentBlock::image(PNG_BASE64, "image/png")),
                PromptMessage::new_text(Role::User, "Please analyze the image above."),
            ],
            "test_input_required_result_prompt" => {
                let key = "user_context";
                let ask = elicitation_request(
                    "What context should the prompt use?",
                    json!({
                        "type": "object",
                        "properties": { "context": { "type": "string" } },
                        "required": ["context"]
                    }),
                )?;
                let answers = match self
                    .gather(
                        &context,
                        request.input_responses.as_ref(),
                        BTreeMap::from([(key.to_owned(), ask)]),
                    )
                    .await?
                {
                    Gathered::Ask(pending) => return Ok(GetPromptResponse::InputRequired(pending)),
                    Gathered::Answers(answers) => answers,
                    Gathered::Failed(why) => {
                        return Err(ErrorData::internal_error(why, None));
                    }
                };
                let prompt_context = elicited_string(answer(&answers, key)?, "context")?;
                vec![PromptMessage::new_text(
                    Role::User,
                    format!("Use this context: {prompt_context}"),
                )]
            }
            other => {
                return Err(ErrorData::invalid_params(
                    format!("unknown prompt: {other}"),
                    Some(json!({ "name": other })),
                ));
            }
        };
        Ok(GetPromptResponse::Complete(GetPromptResult::new(messages)))
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let resources = vec![
            Resource::new("test://static-text", "static-text")
                .with_description("A static text resource")
                .with_mime_type("text/plain"),
            Resource::new("test://static-binary", "static-binary")
                .with_description("A static binary resource (a PNG)")
                .with_mime_type("image/png"),
            Resource::new("test://watched-resource", "watched-resource")
                .with_description("A resource clients may subscribe to")
                .with_mime_type("text/plain"),
        ];
        let mut result = ListResourcesResult::with_all_items(resources);
        if is_modern(&context) {
            result = result
                .with_ttl_ms(60_000)
                .with_cache_scope(CacheScope::Public);
        }
        Ok(result)
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let templates = vec![
            ResourceTemplate::new("test://template/{id}/data", "template-data")
                .with_description("Data for the given id")
                .with_mime_type("application/json"),
        ];
        let mut result = ListResourceTemplatesResult::with_all_items(templates);
        if is_modern(&context) {
            result = result
                .with_ttl_ms(60_000)
                .with_cache_scope(CacheScope::Public);
        }
        Ok(result)
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let uri = request.uri.as_str();
        let contents = match uri {
            "test://static-text" => {
                ResourceContents::text("This is the content of the static text resource.", uri)
            }
            "test://static-binary" => {
                ResourceContents::blob(PNG_BASE64, uri).with_mime_type("image/png")
            }
            "test://watched-resource" => ResourceContents::text("Watched resource content", uri),
            _ => match template_id(uri) {
                Some(id) => ResourceContents::text(
                    json!({ "id": id, "templateTest": true, "data": format!("Data for ID: {id}") })
                        .to_string(),
                    uri,
                )
                .with_mime_type("application/json"),
                // rmcp maps this to -32602 for 2026-07-28 callers (SEP-2164).
                None => {
                    return Err(ErrorData::resource_not_found(
                        "Resource not found",
                        Some(json!({ "uri": uri })),
                    ));
                }
            },
        };
        let mut result = ReadResourceResult::new(vec![contents]);
        if is_modern(&context) {
            result = result
                .with_ttl_ms(60_000)
                .with_cache_scope(CacheScope::Public);
        }
        Ok(ReadResourceResponse::Complete(result))
    }

    async fn subscribe(
        &self,
        _request: SubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        // Fixture resources never change, so there is nothing to deliver;
        // a stateless server could not deliver it without a GET stream anyway.
        Ok(())
    }

    async fn unsubscribe(
        &self,
        _request: UnsubscribeRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        Ok(())
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        // rmcp narrows this to what the capabilities advertise.
        Some(requested.clone())
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        let mut changes = self.shared.changes.subscribe();
        // rmcp acknowledges the subscription before calling this, so a
        // client may change a list before `changes` existed to see it (under
        // load this lost the notification of conformance's sep-2575 check).
        // A list_changed is a hint to list again, so one extra is harmless.
        for change in self.shared.recent_changes() {
            let _ = match change {
                ListChange::Tools => context.sink().notify_tool_list_changed().await,
                ListChange::Prompts => context.sink().notify_prompt_list_changed().await,
            };
        }
        let deadline = tokio::time::sleep(LISTEN_MAX);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = context.cancelled() => return Ok(()),
                _ = &mut deadline => return Ok(()),
                change = changes.recv() => {
                    // The sink drops what the filter did not accept.
                    let _ = match change {
                        Ok(ListChange::Tools) => context.sink().notify_tool_list_changed().await,
                        Ok(ListChange::Prompts) => context.sink().notify_prompt_list_changed().await,
                        Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(broadcast::error::RecvError::Closed) => return Ok(()),
                    };
                }
            }
        }
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        let candidates: &[&str] = match (&request.r#ref, request.argument.name.as_str()) {
            (Reference::Prompt(p), "arg1") if p.name == "test_prompt_with_arguments" => {
                &["paris", "park", "party"]
            }
            (Reference::Prompt(p), "arg2") if p.name == "test_prompt_with_arguments" => {
                &["world", "wonder", "work"]
            }
            (Reference::Resource(r), "id") if r.uri == "test://template/{id}/data" => {
                &["1", "2", "3", "123"]
            }
            _ => &[],
        };
        let values = candidates
            .iter()
            .filter(|v| v.starts_with(request.argument.value.as_str()))
            .map(|v| v.to_string())
            .collect();
        let info = CompletionInfo::new(values).map_err(|e| ErrorData::internal_error(e, None))?;
        Ok(CompleteResult::new(info))
    }

    async fn set_level(
        &self,
        _request: SetLevelRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        // 2026-07-28 removed logging/setLevel (per-request logLevel replaces
        // it); rmcp leaves that check to the handler. Before that, a stateless
        // server has no session to keep the level in, so it only acknowledges.
        if is_modern(&context) {
            return Err(ErrorData::method_not_found::<SetLevelRequestMethod>());
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Asking the client for input, in both eras
// ---------------------------------------------------------------------------

enum Gathered {
    /// Every requested key has a well-formed answer.
    Answers(InputResponses),
    /// 2026-07-28: send this back; the client retries with the answers.
    Ask(InputRequiredResult),
    /// Before 2026-07-28: the in-band request got no usable answer.
    Failed(String),
}

impl Fixtures {
    /// Returns the answers to `requests`, or what to do instead. On
    /// 2026-07-28 the answers come from the retried request's
    /// `inputResponses` (unknown extra keys are ignored; missing ones are
    /// asked for again); earlier, they are requested in-band.
    async fn gather(
        &self,
        context: &RequestContext<RoleServer>,
        responses: Option<&InputResponses>,
        requests: InputRequests,
    ) -> Result<Gathered, ErrorData> {
        if !is_modern(context) {
            return Ok(ask_in_band(context, &requests).await);
        }
        let mut answers = InputResponses::new();
        let mut missing = InputRequests::new();
        for (key, request) in requests {
            match responses.and_then(|r| r.get(&key)) {
                Some(answer) => {
                    check_answer(&key, &request, answer)?;
                    answers.insert(key, answer.clone());
                }
                None => {
                    missing.insert(key, request);
                }
            }
        }
        if missing.is_empty() {
            Ok(Gathered::Answers(answers))
        } else {
            Ok(Gathered::Ask(InputRequiredResult::from_input_requests(
                missing,
            )))
        }
    }

    /// A tool that needs one answer and then renders it.
    async fn single_input(
        &self,
        request: &CallToolRequestParams,
        context: &RequestContext<RoleServer>,
        key: &str,
        ask: InputRequest,
        render: impl FnOnce(&Value) -> Result<String, ErrorData>,
    ) -> Result<CallToolResponse, ErrorData> {
        let requests = BTreeMap::from([(key.to_owned(), ask)]);
        match self
            .gather(context, request.input_responses.as_ref(), requests)
            .await?
        {
            Gathered::Ask(pending) => Ok(CallToolResponse::InputRequired(pending)),
            Gathered::Failed(why) => Ok(CallToolResponse::Complete(CallToolResult::error(vec![
                ContentBlock::text(why),
            ]))),
            Gathered::Answers(answers) => Ok(CallToolResponse::Complete(text_result(render(
                answer(&answers, key)?,
            )?))),
        }
    }

    /// `requestState` must come back unchanged; the tampered-state scenario
    /// uses the same fixture and expects a tampered value to be rejected.
    async fn request_state_tool(
        &self,
        request: &CallToolRequestParams,
        context: &RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let tool = request.name.to_string();
        let ask = elicitation_request("Please confirm", ok_schema())?;
        if !is_modern(context) {
            return self
                .single_input(request, context, "confirm", ask, |answer| {
                    Ok(format!("Confirmed: {}", describe_elicitation(answer)?))
                })
                .await;
        }
        let Some(state) = &request.request_state else {
            let handle = self.shared.states.issue(&tool, 1, None);
            return Ok(CallToolResponse::InputRequired(InputRequiredResult::new(
                Some(BTreeMap::from([("confirm".to_owned(), ask)])),
                Some(handle),
            )));
        };
        self.shared.states.redeem(state, &tool, 1)?;
        let requests = BTreeMap::from([("confirm".to_owned(), ask)]);
        match self
            .gather(context, request.input_responses.as_ref(), requests)
            .await?
        {
            Gathered::Answers(answers) => Ok(CallToolResponse::Complete(text_result(format!(
                "state-ok: {}",
                describe_elicitation(answer(&answers, "confirm")?)?
            )))),
            Gathered::Ask(mut pending) => {
                // Re-ask under a fresh handle: the old one was single-use.
                pending.request_state = Some(self.shared.states.issue(&tool, 1, None));
                Ok(CallToolResponse::InputRequired(pending))
            }
            Gathered::Failed(why) => Err(ErrorData::internal_error(why, None)),
        }
    }

    async fn multiple_inputs_tool(
        &self,
        request: &CallToolRequestParams,
        context: &RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let tool = request.name.to_string();
        let requests = BTreeMap::from([
            (
                "user_name".to_owned(),
                elicitation_request("What is your name?", name_schema())?,
            ),
            (
                "greeting".to_owned(),
                sampling_request("Generate a greeting", 50)?,
            ),
            ("client_roots".to_owned(), roots_request()?),
        ]);
        if is_modern(context)
            && let Some(state) = &request.request_state
        {
            self.shared.states.redeem(state, &tool, 1)?;
        }
        let answers = match self
            .gather(context, request.input_responses.as_ref(), requests)
            .await?
        {
            Gathered::Answers(answers) => answers,
            Gathered::Ask(mut pending) => {
                pending.request_state = Some(self.shared.states.issue(&tool, 1, None));
                return Ok(CallToolResponse::InputRequired(pending));
            }
            Gathered::Failed(why) => {
                return Ok(CallToolResponse::Complete(CallToolResult::error(vec![
                    ContentBlock::text(why),
                ])));
            }
        };
        let name = elicited_string(answer(&answers, "user_name")?, "name")?;
        let greeting: CreateMessageResult = parse_answer(answer(&answers, "greeting")?)?;
        let roots: ListRootsResult = parse_answer(answer(&answers, "client_roots")?)?;
        Ok(CallToolResponse::Complete(text_result(format!(
            "{} {name}! ({} root(s))",
            sampling_text(&greeting),
            roots.roots.len()
        ))))
    }

    /// Round 1 asks for a name, round 2 for a colour, each under a new
    /// `requestState` that carries what earlier rounds learnt.
    async fn multi_round_tool(
        &self,
        request: &CallToolRequestParams,
        context: &RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let tool = request.name.to_string();
        let step1 = elicitation_request("Step 1: What is your name?", name_schema())?;
        let step2 = elicitation_request(
            "Step 2: What is your favorite color?",
            json!({
                "type": "object",
                "properties": { "color": { "type": "string" } },
                "required": ["color"]
            }),
        )?;
        if !is_modern(context) {
            let requests =
                BTreeMap::from([("step1".to_owned(), step1), ("step2".to_owned(), step2)]);
            return Ok(CallToolResponse::Complete(
                match ask_in_band(context, &requests).await {
                    Gathered::Answers(a) => text_result(format!(
                        "{} likes {}",
                        elicited_string(answer(&a, "step1")?, "name")?,
                        elicited_string(answer(&a, "step2")?, "color")?
                    )),
                    Gathered::Failed(why) => CallToolResult::error(vec![ContentBlock::text(why)]),
                    Gathered::Ask(_) => {
                        return Err(ErrorData::internal_error("unexpected state", None));
                    }
                },
            ));
        }
        let responses = request.input_responses.as_ref();
        let (round, carried) = match &request.request_state {
            None => (1, None),
            Some(state) => self.shared.states.redeem_any_round(state, &tool)?,
        };
        match round {
            1 => {
                let requests = BTreeMap::from([("step1".to_owned(), step1)]);
                match self.gather(context, responses, requests).await? {
                    Gathered::Answers(a) => {
                        let name = elicited_string(answer(&a, "step1")?, "name")?;
                        let handle = self.shared.states.issue(&tool, 2, Some(name));
                        Ok(CallToolResponse::InputRequired(InputRequiredResult::new(
                            Some(BTreeMap::from([("step2".to_owned(), step2)])),
                            Some(handle),
                        )))
                    }
                    Gathered::Ask(mut pending) => {
                        pending.request_state = Some(self.shared.states.issue(&tool, 1, None));
                        Ok(CallToolResponse::InputRequired(pending))
                    }
                    Gathered::Failed(why) => Err(ErrorData::internal_error(why, None)),
                }
            }
            _ => {
                let requests = BTreeMap::from([("step2".to_owned(), step2)]);
                match self.gather(context, responses, requests).await? {
                    Gathered::Answers(a) => {
                        let color = elicited_string(answer(&a, "step2")?, "color")?;
                        let name = carried.unwrap_or_default();
                        Ok(CallToolResponse::Complete(text_result(format!(
                            "{name} likes {color}"
                        ))))
                    }
                    Gathered::Ask(mut pending) => {
                        pending.request_state = Some(self.shared.states.issue(&tool, 2, carried));
                        Ok(CallToolResponse::InputRequired(pending))
                    }
                    Gathered::Failed(why) => Err(ErrorData::internal_error(why, None)),
                }
            }
        }
    }

    /// Asks only for what the client declared it can answer (SEP-2322).
    async fn capabilities_tool(
        &self,
        request: &CallToolRequestParams,
        context: &RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let caps = context.client_capabilities().unwrap_or_default();
        let mut requests = InputRequests::new();
        if caps.elicitation.is_some() {
            requests.insert(
                "user_name".to_owned(),
                elicitation_request("What is your name?", name_schema())?,
            );
        }
        if caps.sampling.is_some() {
            requests.insert(
                "summary".to_owned(),
                sampling_request("Summarise this conversation", 50)?,
            );
        }
        if caps.roots.is_some() {
            requests.insert("client_roots".to_owned(), roots_request()?);
        }
        if requests.is_empty() {
            return Ok(CallToolResponse::Complete(text_result(
                "The client declared no capability this tool could use.",
            )));
        }
        match self
            .gather(context, request.input_responses.as_ref(), requests)
            .await?
        {
            Gathered::Answers(a) => Ok(CallToolResponse::Complete(text_result(format!(
                "Received {} answer(s)",
                a.len()
            )))),
            Gathered::Ask(pending) => Ok(CallToolResponse::InputRequired(pending)),
            Gathered::Failed(why) => Ok(CallToolResponse::Complete(CallToolResult::error(vec![
                ContentBlock::text(why),
            ]))),
        }
    }
}

/// Before 2026-07-28, server-to-client requests travel on the response
/// stream and the client answers with a separate POST. passgate's transport
/// is stateless, so that answer cannot be routed back to this request; the
/// bounded wait turns that into a visible tool error instead of a hang.
async fn ask_in_band(context: &RequestContext<RoleServer>, requests: &InputRequests) -> Gathered {
    let mut answers = InputResponses::new();
    for (key, request) in requests {
        let server_request = match request.clone() {
            InputRequest::CreateMessage(r) => ServerRequest::CreateMessageRequest(r),
            InputRequest::Elicitation(r) => ServerRequest::ElicitRequest(r),
            InputRequest::ListRoots(r) => ServerRequest::ListRootsRequest(r),
            _ => return Gathered::Failed(format!("cannot send input request {key} in-band")),
        };
        let handle = match context
            .peer
            .send_request_with_option(
                server_request,
                PeerRequestOptions::with_timeout(IN_BAND_ANSWER_TIMEOUT),
            )
            .await
        {
            Ok(handle) => handle,
            Err(e) => return Gathered::Failed(format!("could not send {key} to the client: {e}")),
        };
        let answer = match handle.await_response().await {
            Ok(answer) => answer,
            Err(e) => {
                return Gathered::Failed(format!(
                    "the client's answer to {key} did not arrive ({e}); \
                     a stateless server cannot receive answers to in-band requests"
                ));
            }
        };
        match serde_json::to_value(answer) {
            Ok(value) => {
                answers.insert(key.clone(), value);
            }
            Err(e) => return Gathered::Failed(format!("unreadable answer to {key}: {e}")),
        }
    }
    Gathered::Answers(answers)
}

/// Rejects an answer that is not the result type its request calls for.
fn check_answer(key: &str, request: &InputRequest, answer: &Value) -> Result<(), ErrorData> {
    let ok = match request {
        InputRequest::Elicitation(_) => {
            serde_json::from_value::<ElicitResult>(answer.clone()).is_ok()
        }
        InputRequest::CreateMessage(_) => {
            serde_json::from_value::<CreateMessageResult>(answer.clone()).is_ok()
        }
        InputRequest::ListRoots(_) => {
            serde_json::from_value::<ListRootsResult>(answer.clone()).is_ok()
        }
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(ErrorData::invalid_params(
            format!("inputResponses.{key} is not a valid answer to its input request"),
            Some(json!({ "key": key })),
        ))
    }
}

#[derive(Clone, Copy)]
enum Need {
    Sampling,
    Elicitation,
}

/// Fails with -32021 when a 2026-07-28 request did not declare what the
/// fixture needs. Earlier requests are let through: a stateless server has
/// no record of what the client declared at `initialize`.
fn require_capabilities(
    context: &RequestContext<RoleServer>,
    needs: &[Need],
) -> Result<(), ErrorData> {
    if !is_modern(context) {
        return Ok(());
    }
    let declared = context.client_capabilities().unwrap_or_default();
    let mut missing = serde_json::Map::new();
    for need in needs {
        match need {
            Need::Sampling if declared.sampling.is_none() => {
                missing.insert("sampling".into(), json!({}));
            }
            Need::Elicitation if declared.elicitation.is_none() => {
                missing.insert("elicitation".into(), json!({}));
            }
            _ => {}
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let required: ClientCapabilities = serde_json::from_value(Value::Object(missing))
        .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
    Err(ErrorData::missing_required_client_capability(required))
}

// ---------------------------------------------------------------------------
// requestState handles
// ---------------------------------------------------------------------------

struct PendingState {
    tool: String,
    round: u8,
    carried: Option<String>,
}

/// Keeps MRTR state server-side and hands out unguessable single-use
/// handles, so a tampered or replayed `requestState` simply does not resolve.
/// (rmcp's `RequestStateCodec` would seal it instead, but needs the
/// `request-state` feature, which passgate does not enable.)
struct StateStore {
    keys: RandomState,
    counter: AtomicU64,
    pending: Mutex<BTreeMap<String, PendingState>>,
}

impl Default for StateStore {
    fn default() -> Self {
        Self {
            keys: RandomState::new(),
            counter: AtomicU64::new(0),
            pending: Mutex::new(BTreeMap::new()),
        }
    }
}

impl StateStore {
    fn issue(&self, tool: &str, round: u8, carried: Option<String>) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut hasher = self.keys.build_hasher();
        hasher.write_u64(n);
        // Fixed-width counter first, so map order is issue order.
        let handle = format!("{n:016x}{:016x}", hasher.finish());
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        while pending.len() >= MAX_PENDING_STATES {
            pending.pop_first();
        }
        pending.insert(
            handle.clone(),
            PendingState {
                tool: tool.to_owned(),
                round,
                carried,
            },
        );
        handle
    }

    fn take(&self, handle: &str, tool: &str) -> Result<PendingState, ErrorData> {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        match pending.remove(handle) {
            Some(state) if state.tool == tool => Ok(state),
            _ => Err(ErrorData::invalid_params(
                "requestState failed verification: unknown, already used or altered",
                None,
            )),
        }
    }

    fn redeem(&self, handle: &str, tool: &str, round: u8) -> Result<(), ErrorData> {
        let state = self.take(handle, tool)?;
        if state.round == round {
            Ok(())
        } else {
            Err(ErrorData::invalid_params(
                "requestState belongs to another round",
                None,
            ))
        }
    }

    fn redeem_any_round(
        &self,
        handle: &str,
        tool: &str,
    ) -> Result<(u8, Option<String>), ErrorData> {
        let state = self.take(handle, tool)?;
        Ok((state.round, state.carried))
    }
}

// ---------------------------------------------------------------------------
// Fixture data and small helpers
// ---------------------------------------------------------------------------

/// True when the request runs on the 2026-07-28 wire (per-request `_meta`).
fn is_modern(context: &RequestContext<RoleServer>) -> bool {
    context
        .protocol_version()
        .is_some_and(|v| v.as_str() >= ProtocolVersion::V_2026_07_28.as_str())
}

fn text_result(text: impl Into<String>) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(text)])
}

fn string_arg(args: &JsonObject, name: &str) -> Result<String, ErrorData> {
    match args.get(name) {
        Some(Value::String(s)) => Ok(s.clone()),
        _ => Err(ErrorData::invalid_params(
            format!("argument `{name}` (a string) is required"),
            None,
        )),
    }
}

fn input_request(value: Value) -> Result<InputRequest, ErrorData> {
    serde_json::from_value(value)
        .map_err(|e| ErrorData::internal_error(format!("bad fixture input request: {e}"), None))
}

fn elicitation_request(message: &str, schema: Value) -> Result<InputRequest, ErrorData> {
    input_request(json!({
        "method": "elicitation/create",
        "params": { "mode": "form", "message": message, "requestedSchema": schema }
    }))
}

fn sampling_request(prompt: &str, max_tokens: u32) -> Result<InputRequest, ErrorData> {
    input_request(json!({
        "method": "sampling/createMessage",
        "params": {
            "messages": [{ "role": "user", "content": { "type": "text", "text": prompt } }],
            "maxTokens": max_tokens
        }
    }))
}

fn roots_request() -> Result<InputRequest, ErrorData> {
    input_request(json!({ "method": "roots/list", "params": {} }))
}

fn name_schema() -> Value {
    json!({
        "type": "object",
        "properties": { "name": { "type": "string" } },
        "required": ["name"]
    })
}

fn ok_schema() -> Value {
    json!({
        "type": "object",
        "properties": { "ok": { "type": "boolean" } },
        "required": ["ok"]
    })
}

/// The answer under `key`; `gather` only reports complete sets, so a gap is
/// a fixture bug, reported rather than panicking.
fn answer<'a>(answers: &'a InputResponses, key: &str) -> Result<&'a Value, ErrorData> {
    answers
        .get(key)
        .ok_or_else(|| ErrorData::internal_error(format!("no answer under {key}"), None))
}

fn parse_answer<T: serde::de::DeserializeOwned>(answer: &Value) -> Result<T, ErrorData> {
    serde_json::from_value(answer.clone())
        .map_err(|e| ErrorData::invalid_params(format!("malformed input response: {e}"), None))
}

fn describe_elicitation(answer: &Value) -> Result<String, ErrorData> {
    let result: ElicitResult = parse_answer(answer)?;
    let action = match result.action {
        ElicitationAction::Accept => "accept",
        ElicitationAction::Decline => "decline",
        ElicitationAction::Cancel => "cancel",
        _ => "unknown",
    };
    let content = result.content.unwrap_or_else(|| json!({}));
    Ok(format!("action={action}, content={content}"))
}

/// The string field `field` of an accepted elicitation, or an explanation.
fn elicited_string(answer: &Value, field: &str) -> Result<String, ErrorData> {
    let result: ElicitResult = parse_answer(answer)?;
    if !matches!(result.action, ElicitationAction::Accept) {
        return Ok(format!("(no {field}: the user did not accept)"));
    }
    match result.content.as_ref().and_then(|c| c.get(field)) {
        Some(Value::String(s)) => Ok(s.clone()),
        _ => Err(ErrorData::invalid_params(
            format!("the accepted elicitation lacks the string field `{field}`"),
            None,
        )),
    }
}

fn sampling_text(reply: &CreateMessageResult) -> String {
    match serde_json::to_value(&reply.message.content) {
        Ok(Value::Object(block)) => block
            .get("text")
            .and_then(Value::as_str)
            .unwrap_or("(non-text reply)")
            .to_owned(),
        Ok(Value::Array(blocks)) => blocks
            .iter()
            .filter_map(|b| b.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => "(unreadable reply)".to_owned(),
    }
}

/// `123` for `test://template/123/data`.
fn template_id(uri: &str) -> Option<&str> {
    let id = uri
        .strip_prefix("test://template/")?
        .strip_suffix("/data")?;
    (!id.is_empty() && !id.contains('/')).then_some(id)
}

async fn log(context: &RequestContext<RoleServer>, level: LoggingLevel, message: &str) {
    // 2026-07-28: log only when the request asked for it, at or above its
    // level (SEP-2575). Earlier revisions set the level per session, which a
    // stateless server cannot keep, so everything is sent.
    if is_modern(context) {
        match context.meta.log_level() {
            Some(threshold) if severity(level) >= severity(threshold) => {}
            _ => return,
        }
    }
    let params = LoggingMessageNotificationParam::new(level, json!(message))
        .with_logger("passgate-conformance-fixtures");
    let _ = context.peer.notify_logging_message(params).await;
}

fn severity(level: LoggingLevel) -> u8 {
    match level {
        LoggingLevel::Debug => 0,
        LoggingLevel::Info => 1,
        LoggingLevel::Notice => 2,
        LoggingLevel::Warning => 3,
        LoggingLevel::Error => 4,
        LoggingLevel::Critical => 5,
        LoggingLevel::Alert => 6,
        LoggingLevel::Emergency => 7,
    }
}

fn object(value: Value) -> JsonObject {
    match value {
        Value::Object(map) => map,
        _ => JsonObject::new(),
    }
}

fn no_args() -> JsonObject {
    object(json!({ "type": "object", "properties": {} }))
}

fn tool_list() -> Vec<Tool> {
    let simple =
        |name: &'static str, description: &'static str| Tool::new(name, description, no_args());
    // Order matters: header-validation scenarios call the first tool with
    // no arguments and expect success.
    vec![
        simple("test_simple_text", "Returns simple text content"),
        simple("test_image_content", "Returns image content"),
        simple("test_audio_content", "Returns audio content"),
        simple("test_embedded_resource", "Returns an embedded resource"),
        simple(
            "test_multiple_content_types",
            "Returns text, image and resource content",
        ),
        simple(
            "test_tool_with_logging",
            "Sends three log messages while it runs",
        ),
        simple(
            "test_tool_with_progress",
            "Reports progress when given a progress token",
        ),
        simple("test_error_handling", "Always reports a tool error"),
        Tool::new(
            "test_sampling",
            "Asks the client's model to answer a prompt",
            object(json!({
                "type": "object",
                "properties": { "prompt": { "type": "string", "description": "The prompt to send to the LLM" } },
                "required": ["prompt"]
            })),
        ),
        Tool::new(
            "test_elicitation",
            "Asks the user for input",
            object(json!({
                "type": "object",
                "properties": { "message": { "type": "string", "description": "The message to show the user" } },
                "required": ["message"]
            })),
        ),
        simple(
            "test_elicitation_sep1034_defaults",
            "Elicitation whose fields carry defaults (SEP-1034)",
        ),
        simple(
            "test_elicitation_sep1330_enums",
            "Elicitation with every enum variant (SEP-1330)",
        ),
        Tool::new(
            "json_schema_2020_12_tool",
            "Tool with JSON Schema 2020-12 features",
            object(json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "object",
                "$defs": {
                    "address": {
                        "$anchor": "addressDef",
                        "type": "object",
                        "properties": { "street": { "type": "string" }, "city": { "type": "string" } }
                    }
                },
                "properties": {
                    "name": { "type": "string" },
                    "address": { "$ref": "#/$defs/address" },
                    "contactMethod": { "type": "string", "enum": ["phone", "email"] },
                    "phone": { "type": "string" },
                    "email": { "type": "string" }
                },
                "allOf": [{ "anyOf": [{ "required": ["phone"] }, { "required": ["email"] }] }],
                "if": { "properties": { "contactMethod": { "const": "phone" } }, "required": ["contactMethod"] },
                "then": { "required": ["phone"] },
                "else": { "required": ["email"] },
                "additionalProperties": false
            })),
        ),
        simple("test_reconnection", "SSE reconnection probe (SEP-1699)"),
        simple(
            "test_missing_capability",
            "Needs the client's sampling capability",
        ),
        simple(
            "test_streaming_elicitation",
            "Asks for input without sending requests on the response stream",
        ),
        simple(
            "test_logging_tool",
            "Logs only at the level the request asked for",
        ),
        simple(
            "test_trigger_tool_change",
            "Announces a tool list change to listeners",
        ),
        simple(
            "test_trigger_prompt_change",
            "Announces a prompt list change to listeners",
        ),
        Tool::new(
            "test_custom_header",
            "Echoes a parameter that is mirrored in the Mcp-Param-Region header (SEP-2243)",
            object(json!({
                "type": "object",
                "properties": { "region": { "type": "string", "x-mcp-header": "Region" } },
                "required": ["region"]
            })),
        ),
        simple(
            "test_input_required_result_elicitation",
            "Asks for a name, then greets",
        ),
        simple(
            "test_input_required_result_sampling",
            "Asks the client's model a question",
        ),
        simple(
            "test_input_required_result_list_roots",
            "Asks for the client's roots",
        ),
        simple(
            "test_input_required_result_request_state",
            "Round-trips an opaque requestState",
        ),
        simple(
            "test_input_required_result_multiple_inputs",
            "Asks for an elicitation, a sampling and the roots at once",
        ),
        simple(
            "test_input_required_result_multi_round",
            "Asks in two rounds with evolving requestState",
        ),
        simple(
            "test_input_required_result_tampered_state",
            "Rejects an altered requestState",
        ),
        simple(
            "test_input_required_result_capabilities",
            "Asks only for what the client declared",
        ),
    ]
}

fn prompt_list() -> Vec<Prompt> {
    let arg = |name: &str, description: &str| {
        PromptArgument::new(name)
            .with_description(description)
            .with_required(true)
    };
    vec![
        Prompt::new(
            "test_simple_prompt",
            Some("A prompt without arguments"),
            None,
        ),
        Prompt::new(
            "test_prompt_with_arguments",
            Some("A prompt with two required arguments"),
            Some(vec![
                arg("arg1", "First test argument"),
                arg("arg2", "Second test argument"),
            ]),
        ),
        Prompt::new(
            "test_prompt_with_embedded_resource",
            Some("A prompt that embeds a resource"),
            Some(vec![arg("resourceUri", "URI of the resource to embed")]),
        ),
        Prompt::new(
            "test_prompt_with_image",
            Some("A prompt that contains an image"),
            None,
        ),
        Prompt::new(
            "test_input_required_result_prompt",
            Some("A prompt that first asks the user for context"),
            None,
        ),
    ]
}
