//! stdio backends: an MCP server that is a command (`npx ...`, `uvx ...`),
//! run by passgate as a child process, one per person and route.
//!
//! - The command and its arguments come from the gateway file only, never
//!   from a request. The child's environment is empty but for `PATH`,
//!   `HOME`, `LANG` and the variables the file names: passgate's own
//!   secrets never reach it.
//! - A person's child is theirs alone: their MCP sessions share it, nobody
//!   else's do, so one person's server state cannot leak to another.
//! - Messages are relayed as they are, one JSON-RPC message per line
//!   (MCP's stdio framing), so whatever the server speaks (progress,
//!   elicitation, methods passgate does not model) passes through. Request
//!   ids are renumbered per child, since a person's sessions choose theirs
//!   independently.
//! - The first `initialize` starts the child; later sessions get the same
//!   answer without a second handshake. A child that crashes is started
//!   again on the next request, with the handshake replayed, after a
//!   backoff that grows with each crash in a row; calls in flight get a
//!   JSON-RPC error.
//! - At most `max_children` children live at once; an idle child is killed
//!   and reaped after `idle_timeout`; shutdown kills and reaps them all.
//! - Each line the child writes to stderr is logged (with the route and
//!   the person's id). The child never sees tokens, so it cannot log them.
//!
//! Children live in this process's memory, so a stdio route pins a person
//! to the instance that runs their child: the session id passgate issues
//! is known only there, and any other instance answers 404 (the Streamable
//! HTTP answer for an unknown session), after which the client starts a new
//! session, and a new child, on that instance.

use std::{
    collections::HashMap,
    process::Stdio,
    sync::{
        Arc, Mutex as StdMutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use serde::Deserialize;
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    process::{Child, ChildStdin, Command},
    sync::{Mutex, mpsc},
};
use tokio_util::sync::CancellationToken;

/// The stdio part of a gateway route, as the file gives it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdioConfig {
    /// The program, found on `PATH` unless a path.
    pub command: String,
    #[serde(default)]
    pub args: Vec<String>,
    /// Variables for the child, each read from passgate's environment at
    /// start-up.
    #[serde(default)]
    pub env: Vec<EnvFromEnv>,
    /// At most this many children of this route at once (default 50).
    #[serde(default = "default_max_children")]
    pub max_children: usize,
    /// A child unused this long is stopped (default 600 s).
    #[serde(default = "default_idle_timeout_secs")]
    pub idle_timeout_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvFromEnv {
    pub name: String,
    pub from_env: String,
}

fn default_max_children() -> usize {
    50
}

fn default_idle_timeout_secs() -> u64 {
    600
}

/// What a child inherits from passgate's environment besides the file's.
const INHERITED_ENV: &[&str] = &["PATH", "HOME", "LANG", "TMPDIR"];

/// Backoff after a crash: none for the first, then doubling to the cap.
const BACKOFF_STEP: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A child that ran this long before exiting starts the count again.
const HEALTHY_RUN: Duration = Duration::from_secs(60);
/// The handshake a restarted child gets must answer within this.
const REPLAY_TIMEOUT: Duration = Duration::from_secs(60);
/// Longer stderr lines are cut before logging.
const MAX_LOGGED_LINE: usize = 2000;

pub use crate::error::StdioError;

/// A stdio route's settings with its environment read, checked once at
/// start-up.
#[derive(Clone)]
pub struct StdioRoute {
    pub settings: StdioConfig,
    /// The variables the file names, with their values (never printed).
    pub env: Vec<(String, String)>,
}

impl std::fmt::Debug for StdioRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.env.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("StdioRoute")
            .field("settings", &self.settings)
            .field("env", &names)
            .finish()
    }
}

impl StdioRoute {
    /// Checks the settings and reads the named variables through `lookup`.
    pub fn resolve(
        settings: StdioConfig,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        if settings.command.trim().is_empty() {
            return Err("stdio command is empty".into());
        }
        if settings.max_children == 0 {
            return Err("stdio max_children must be at least 1".into());
        }
        if settings.idle_timeout_secs == 0 {
            return Err("stdio idle_timeout_secs must be at least 1".into());
        }
        let env = settings
            .env
            .iter()
            .map(|e| {
                lookup(&e.from_env)
                    .map(|v| (e.name.clone(), v))
                    .ok_or_else(|| {
                        format!(
                            "the environment variable {} (for the command's {}) is not set",
                            e.from_env, e.name
                        )
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { settings, env })
    }
}

/// One route's children.
pub struct StdioBackend {
    route: String,
    config: StdioConfig,
    env: Vec<(String, String)>,
    slots: StdMutex<HashMap<String, Arc<Slot>>>,
    shutdown: CancellationToken,
}

/// A person's child, its handshake and their sessions.
struct Slot {
    user_id: String,
    inner: Mutex<SlotState>,
    /// Sessions issued for this person (checked without the async lock).
    sessions: StdMutex<Vec<String>>,
    last_used: StdMutex<Instant>,
}

#[derive(Default)]
struct SlotState {
    running: Option<Running>,
    /// The first `initialize`'s params and result, replayed to a restarted
    /// child and answered to later sessions.
    handshake: Option<(Value, Value)>,
    initialized_sent: bool,
    crashes: u32,
    not_before: Option<Instant>,
}

struct Running {
    stdin: ChildStdin,
    pending: Arc<StdMutex<HashMap<u64, Pending>>>,
    next_id: Arc<AtomicU64>,
    /// Set by the reader when stdout closes.
    exited: CancellationToken,
    child: Arc<Mutex<Child>>,
    started: Instant,
}

/// A request in flight: where its messages go, and under which id the
/// client knows it.
struct Pending {
    client_id: Value,
    progress_token: Option<Value>,
    sink: mpsc::UnboundedSender<Value>,
}

/// What a relayed client message produced.
pub enum Relayed {
    /// A notification or response was delivered (HTTP 202).
    Accepted,
    /// The answer to `initialize`, with the new session id.
    Initialized { session_id: String, answer: Value },
    /// The messages for a request: server requests and notifications, then
    /// its response; the stream ends after the response.
    Stream(mpsc::UnboundedReceiver<Value>),
}

impl std::fmt::Debug for StdioBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the environment: it may hold the operator's secrets.
        f.debug_struct("StdioBackend")
            .field("route", &self.route)
            .field("command", &self.config.command)
            .finish_non_exhaustive()
    }
}

impl StdioBackend {
    pub fn new(route: &str, stdio: StdioRoute, shutdown: CancellationToken) -> Arc<Self> {
        let backend = Arc::new(Self {
            route: route.to_owned(),
            config: stdio.settings,
            env: stdio.env,
            slots: StdMutex::new(HashMap::new()),
            shutdown,
        });
        backend.clone().spawn_reaper();
        backend
    }

    /// Cancelling it stops and reaps every child (shutdown).
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Every person's slot, copied out so no lock is held while they are
    /// inspected (each slot has its own async lock).
    fn slot_snapshot(&self) -> Vec<Arc<Slot>> {
        self.slots
            .lock()
            .expect("slots")
            .values()
            .cloned()
            .collect()
    }

    /// Children alive now (for the account of what runs, and the tests).
    pub fn live_children(&self) -> usize {
        self.slot_snapshot()
            .iter()
            .filter(|s| {
                s.inner
                    .try_lock()
                    .map(|state| state.running.is_some())
                    .unwrap_or(true)
            })
            .count()
    }

    fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.config.idle_timeout_secs)
    }

    /// Relays one client message from `user_id`. `session` is the
    /// `Mcp-Session-Id` the client sent.
    pub async fn relay(
        &self,
        user_id: &str,
        session: Option<&str>,
        message: Value,
    ) -> Result<Relayed, StdioError> {
        let kind = Kind::of(&message)?;
        if let Kind::Request { method, .. } = &kind
            && method == "initialize"
        {
            return self.initialize(user_id, message).await;
        }
        let slot = self
            .slot_of(user_id, session)
            .ok_or(StdioError::UnknownSession)?;
        *slot.last_used.lock().expect("last used") = Instant::now();
        let mut state = slot.inner.lock().await;
        self.ensure_running(&slot, &mut state).await?;
        *slot.last_used.lock().expect("last used") = Instant::now();
        match kind {
            Kind::Notification { method } => {
                if method == "notifications/initialized" {
                    if state.initialized_sent {
                        return Ok(Relayed::Accepted);
                    }
                    state.initialized_sent = true;
                }
                write_line(&mut state, &message).await?;
                Ok(Relayed::Accepted)
            }
            Kind::Response => {
                write_line(&mut state, &message).await?;
                Ok(Relayed::Accepted)
            }
            Kind::Request { id, .. } => {
                let (sink, stream) = mpsc::unbounded_channel();
                send_request(&mut state, message, id, sink).await?;
                Ok(Relayed::Stream(stream))
            }
        }
    }

    /// Ends a session (HTTP DELETE). The child stays until idle.
    pub fn end_session(&self, user_id: &str, session: &str) -> bool {
        let Some(slot) = self.slot_of(user_id, Some(session)) else {
            return false;
        };
        slot.sessions
            .lock()
            .expect("sessions")
            .retain(|s| s != session);
        true
    }

    fn slot_of(&self, user_id: &str, session: Option<&str>) -> Option<Arc<Slot>> {
        let session = session?;
        let slot = self.slots.lock().expect("slots").get(user_id).cloned()?;
        let known = slot
            .sessions
            .lock()
            .expect("sessions")
            .iter()
            .any(|s| s == session);
        known.then_some(slot)
    }

    async fn initialize(&self, user_id: &str, message: Value) -> Result<Relayed, StdioError> {
        let slot = {
            let mut slots = self.slots.lock().expect("slots");
            if !slots.contains_key(user_id) && slots.len() >= self.config.max_children {
                return Err(StdioError::AtCapacity);
            }
            slots
                .entry(user_id.to_owned())
                .or_insert_with(|| {
                    Arc::new(Slot {
                        user_id: user_id.to_owned(),
                        inner: Mutex::new(SlotState::default()),
                        sessions: StdMutex::new(Vec::new()),
                        last_used: StdMutex::new(Instant::now()),
                    })
                })
                .clone()
        };
        *slot.last_used.lock().expect("last used") = Instant::now();
        let mut state = slot.inner.lock().await;
        self.ensure_running(&slot, &mut state).await?;
        let client_id = message.get("id").cloned().unwrap_or(Value::Null);
        let result = match &state.handshake {
            Some((_, result)) => result.clone(),
            None => {
                let params = message.get("params").cloned().unwrap_or(json!({}));
                let answer = call(&mut state, "initialize", params.clone()).await?;
                // An error answer goes back as it is, and nothing is kept.
                let Some(result) = answer.get("result").cloned() else {
                    let mut answer = answer;
                    answer["id"] = client_id;
                    return Ok(Relayed::Initialized {
                        session_id: String::new(),
                        answer,
                    });
                };
                state.handshake = Some((params, result.clone()));
                result
            }
        };
        *slot.last_used.lock().expect("last used") = Instant::now();
        let session_id = crate::crypto::random_token(24);
        slot.sessions
            .lock()
            .expect("sessions")
            .push(session_id.clone());
        Ok(Relayed::Initialized {
            session_id,
            answer: json!({"jsonrpc": "2.0", "id": client_id, "result": result}),
        })
    }

    /// Starts the child if none runs, honouring the crash backoff and the
    /// cap, and replays the handshake to a restarted one.
    async fn ensure_running(&self, slot: &Slot, state: &mut SlotState) -> Result<(), StdioError> {
        if let Some(running) = &state.running {
            if !running.exited.is_cancelled() {
                return Ok(());
            }
            let ran = running.started.elapsed();
            let running = state.running.take().expect("running");
            reap(&running.child).await;
            state.crashes = if ran > HEALTHY_RUN {
                1
            } else {
                state.crashes + 1
            };
            let backoff = backoff(state.crashes);
            tracing::warn!(
                route = %self.route,
                user_id = %slot.user_id,
                crashes = state.crashes,
                backoff_ms = backoff.as_millis() as u64,
                "stdio server exited; starting it again on the next request"
            );
            state.not_before = Some(Instant::now() + backoff);
        }
        if let Some(not_before) = state.not_before
            && let Some(wait) = not_before.checked_duration_since(Instant::now())
        {
            return Err(StdioError::Restarting(wait.as_secs().max(1)));
        }
        if self.running_children_besides(slot) >= self.config.max_children {
            return Err(StdioError::AtCapacity);
        }
        state.running = Some(self.spawn(&slot.user_id)?);
        if let Some((params, _)) = state.handshake.clone() {
            let replayed = tokio::time::timeout(REPLAY_TIMEOUT, call(state, "initialize", params))
                .await
                .map_err(|_| StdioError::Exited)??;
            if replayed.get("result").is_none() {
                return Err(StdioError::Exited);
            }
            if state.initialized_sent {
                let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
                write_line(state, &note).await?;
            }
        }
        Ok(())
    }

    /// Children running for other people than `slot`'s (one whose lock is
    /// held elsewhere counts as running).
    fn running_children_besides(&self, slot: &Slot) -> usize {
        self.slot_snapshot()
            .iter()
            .filter(|s| !std::ptr::eq(s.as_ref(), slot))
            .filter(|s| {
                s.inner
                    .try_lock()
                    .map(|state| state.running.is_some())
                    .unwrap_or(true)
            })
            .count()
    }

    fn spawn(&self, user_id: &str) -> Result<Running, StdioError> {
        let mut command = Command::new(&self.config.command);
        command
            .args(&self.config.args)
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for name in INHERITED_ENV {
            if let Some(value) = std::env::var_os(name) {
                command.env(name, value);
            }
        }
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        let mut child = command.spawn().map_err(|e| {
            tracing::error!(route = %self.route, error = %e, "cannot start the stdio server");
            StdioError::Spawn
        })?;
        tracing::info!(
            route = %self.route,
            user_id = %user_id,
            pid = child.id(),
            "started a stdio server"
        );
        let stdin = child.stdin.take().ok_or(StdioError::Spawn)?;
        let stdout = child.stdout.take().ok_or(StdioError::Spawn)?;
        let stderr = child.stderr.take().ok_or(StdioError::Spawn)?;
        let pending: Arc<StdMutex<HashMap<u64, Pending>>> = Arc::default();
        let exited = CancellationToken::new();
        tokio::spawn(read_stdout(
            BufReader::new(stdout),
            pending.clone(),
            exited.clone(),
        ));
        tokio::spawn(log_stderr(
            BufReader::new(stderr),
            self.route.clone(),
            user_id.to_owned(),
        ));
        Ok(Running {
            stdin,
            pending,
            next_id: Arc::new(AtomicU64::new(1)),
            exited,
            child: Arc::new(Mutex::new(child)),
            started: Instant::now(),
        })
    }

    /// Stops and reaps children idle past the timeout, and all of them on
    /// shutdown.
    fn spawn_reaper(self: Arc<Self>) {
        let period =
            (self.idle_timeout() / 4).clamp(Duration::from_millis(50), Duration::from_secs(30));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tokio::select! {
                    _ = tick.tick() => self.reap_idle(false).await,
                    _ = self.shutdown.cancelled() => {
                        self.reap_idle(true).await;
                        return;
                    }
                }
            }
        });
    }

    async fn reap_idle(&self, all: bool) {
        let idle = self.idle_timeout();
        let candidates: Vec<Arc<Slot>> = {
            let slots = self.slots.lock().expect("slots");
            slots
                .values()
                .filter(|s| all || s.last_used.lock().expect("last used").elapsed() > idle)
                .cloned()
                .collect()
        };
        for slot in candidates {
            let mut state = slot.inner.lock().await;
            // Used while this waited for the lock (a slow start, a call).
            if !all && slot.last_used.lock().expect("last used").elapsed() <= idle {
                continue;
            }
            let busy = state
                .running
                .as_ref()
                .is_some_and(|r| !r.pending.lock().expect("pending").is_empty());
            if busy && !all {
                continue;
            }
            // Its sessions end with it: the next request is a 404 and the
            // client starts a new session.
            self.slots.lock().expect("slots").remove(&slot.user_id);
            if let Some(running) = state.running.take() {
                reap(&running.child).await;
                tracing::info!(route = %self.route, user_id = %slot.user_id, "stopped an idle stdio server");
            }
        }
    }

    /// Kills and reaps every child now (shutdown).
    pub async fn stop_all(&self) {
        self.reap_idle(true).await;
    }
}

/// The Streamable HTTP side of a stdio route, for a caller already
/// authenticated and admitted: POST relays one message (a request's answer
/// is JSON when the server sends nothing before it, else an event stream
/// that ends with it), DELETE ends the session, GET is 405 (no stream of
/// the server's own; its messages ride on the requests' streams).
pub async fn serve(
    backend: &StdioBackend,
    user_id: &str,
    method: &http::Method,
    headers: &http::HeaderMap,
    body: &[u8],
) -> Result<axum::response::Response, StdioError> {
    use axum::response::IntoResponse;
    let session = headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok());
    match *method {
        http::Method::POST => {}
        http::Method::DELETE => {
            let ended = session.is_some_and(|s| backend.end_session(user_id, s));
            return if ended {
                Ok(http::StatusCode::NO_CONTENT.into_response())
            } else {
                Err(StdioError::UnknownSession)
            };
        }
        _ => return Err(StdioError::MethodNotAllowed),
    }
    let message: Value = serde_json::from_slice(body).map_err(|_| StdioError::NotJson)?;
    match backend.relay(user_id, session, message).await? {
        Relayed::Accepted => Ok(http::StatusCode::ACCEPTED.into_response()),
        Relayed::Initialized { session_id, answer } => {
            let mut response = axum::Json(answer).into_response();
            if let Ok(value) = http::HeaderValue::from_str(&session_id)
                && !session_id.is_empty()
            {
                response.headers_mut().insert(SESSION_HEADER, value);
            }
            Ok(response)
        }
        Relayed::Stream(mut stream) => {
            let first = stream.recv().await.ok_or(StdioError::Exited)?;
            if first.get("method").is_none() {
                return Ok(axum::Json(first).into_response());
            }
            let events = futures_util::stream::unfold(
                (Some(first), stream, false),
                |(first, mut stream, done)| async move {
                    if done {
                        return None;
                    }
                    let message = match first {
                        Some(m) => m,
                        None => stream.recv().await?,
                    };
                    let last = message.get("method").is_none();
                    let event = format!("event: message\ndata: {message}\n\n");
                    Some((
                        Ok::<_, std::convert::Infallible>(event),
                        (None, stream, last),
                    ))
                },
            );
            let mut response = axum::body::Body::from_stream(events).into_response();
            let headers = response.headers_mut();
            headers.insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/event-stream"),
            );
            headers.insert(
                http::header::CACHE_CONTROL,
                http::HeaderValue::from_static("no-cache"),
            );
            headers.insert("x-accel-buffering", http::HeaderValue::from_static("no"));
            Ok(response)
        }
    }
}

const SESSION_HEADER: &str = "mcp-session-id";

/// The client message's shape.
enum Kind {
    Request { id: Value, method: String },
    Notification { method: String },
    Response,
}

impl Kind {
    fn of(message: &Value) -> Result<Kind, StdioError> {
        let object = message.as_object().ok_or(StdioError::NotJsonRpc)?;
        if object.get("jsonrpc") != Some(&json!("2.0")) {
            return Err(StdioError::NotJsonRpc);
        }
        match (
            object.get("method").and_then(Value::as_str),
            object.get("id"),
        ) {
            (Some(method), Some(id)) if !id.is_null() => Ok(Kind::Request {
                id: id.clone(),
                method: method.to_owned(),
            }),
            (Some(method), None) => Ok(Kind::Notification {
                method: method.to_owned(),
            }),
            (None, Some(_)) if object.contains_key("result") || object.contains_key("error") => {
                Ok(Kind::Response)
            }
            _ => Err(StdioError::NotJsonRpc),
        }
    }
}

fn backoff(crashes: u32) -> Duration {
    if crashes <= 1 {
        return Duration::ZERO;
    }
    BACKOFF_STEP
        .saturating_mul(1 << (crashes - 2).min(16))
        .min(BACKOFF_MAX)
}

async fn write_line(state: &mut SlotState, message: &Value) -> Result<(), StdioError> {
    let running = state.running.as_mut().ok_or(StdioError::Exited)?;
    let mut line = serde_json::to_vec(message).map_err(|_| StdioError::NotJsonRpc)?;
    line.push(b'\n');
    let written = async {
        running.stdin.write_all(&line).await?;
        running.stdin.flush().await
    };
    written.await.map_err(|_| StdioError::Exited)
}

/// Sends a client request under a fresh id; its messages go to `sink`.
async fn send_request(
    state: &mut SlotState,
    mut message: Value,
    client_id: Value,
    sink: mpsc::UnboundedSender<Value>,
) -> Result<(), StdioError> {
    let running = state.running.as_ref().ok_or(StdioError::Exited)?;
    let id = running.next_id.fetch_add(1, Ordering::Relaxed);
    let progress_token = message.pointer("/params/_meta/progressToken").cloned();
    message["id"] = json!(id);
    running.pending.lock().expect("pending").insert(
        id,
        Pending {
            client_id,
            progress_token,
            sink,
        },
    );
    if let Err(e) = write_line(state, &message).await {
        if let Some(running) = &state.running {
            running.pending.lock().expect("pending").remove(&id);
        }
        return Err(e);
    }
    Ok(())
}

/// A request of passgate's own (the handshake) and its answer.
async fn call(state: &mut SlotState, method: &str, params: Value) -> Result<Value, StdioError> {
    let (sink, mut stream) = mpsc::unbounded_channel();
    let message = json!({"jsonrpc": "2.0", "id": 0, "method": method, "params": params});
    send_request(state, message, json!(0), sink).await?;
    while let Some(message) = stream.recv().await {
        if message.get("method").is_none() {
            return Ok(message);
        }
    }
    Err(StdioError::Exited)
}

/// Routes each line the child writes: a response to its request (with the
/// client's id back), a progress notification to the request that asked
/// for it, anything else to every request in flight.
async fn read_stdout(
    stdout: BufReader<tokio::process::ChildStdout>,
    pending: Arc<StdMutex<HashMap<u64, Pending>>>,
    exited: CancellationToken,
) {
    let mut lines = stdout.lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let Ok(mut message) = serde_json::from_str::<Value>(line.trim()) else {
            tracing::debug!("a stdio server wrote a line that is not JSON");
            continue;
        };
        let is_response = message.get("method").is_none();
        let mut pending = pending.lock().expect("pending");
        if is_response {
            let id = message.get("id").and_then(Value::as_u64);
            if let Some(request) = id.and_then(|id| pending.remove(&id)) {
                message["id"] = request.client_id;
                let _ = request.sink.send(message);
            }
            continue;
        }
        let progress = (message.get("method") == Some(&json!("notifications/progress")))
            .then(|| message.pointer("/params/progressToken").cloned())
            .flatten();
        for request in pending.values() {
            if progress.is_none() || request.progress_token == progress {
                let _ = request.sink.send(message.clone());
            }
        }
    }
    exited.cancel();
    // Calls in flight get an answer rather than a stream that just ends.
    for (_, request) in pending.lock().expect("pending").drain() {
        let _ = request.sink.send(json!({
            "jsonrpc": "2.0",
            "id": request.client_id,
            "error": {"code": -32603, "message": "the stdio server exited during the call"},
        }));
    }
}

async fn log_stderr(
    stderr: BufReader<tokio::process::ChildStderr>,
    route: String,
    user_id: String,
) {
    let mut lines = stderr.lines();
    while let Ok(Some(line)) = lines.next_line().await {
        let text: String = line.trim_end().chars().take(MAX_LOGGED_LINE).collect();
        tracing::info!(route = %route, user_id = %user_id, stderr = %text, "stdio server");
    }
}

async fn reap(child: &Arc<Mutex<Child>>) {
    let mut child = child.lock().await;
    let _ = child.start_kill();
    let _ = child.wait().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_from_nothing_to_the_cap() {
        assert_eq!(backoff(1), Duration::ZERO);
        assert_eq!(backoff(2), Duration::from_millis(500));
        assert_eq!(backoff(3), Duration::from_secs(1));
        assert_eq!(backoff(40), BACKOFF_MAX);
    }

    #[test]
    fn messages_are_classified() {
        let request = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"});
        assert!(matches!(Kind::of(&request), Ok(Kind::Request { .. })));
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        assert!(matches!(Kind::of(&note), Ok(Kind::Notification { .. })));
        let answer = json!({"jsonrpc": "2.0", "id": "s1", "result": {}});
        assert!(matches!(Kind::of(&answer), Ok(Kind::Response)));
        for bad in [
            json!([]),
            json!({"id": 1, "method": "x"}),
            json!({"jsonrpc": "2.0"}),
        ] {
            assert!(Kind::of(&bad).is_err(), "{bad}");
        }
    }
}
