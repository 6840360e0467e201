//! Real MCP servers behind passgate's gateway, for the gateway tests:
//! FastMCP (stateless, and with sessions), the official TypeScript SDK's
//! server and the Python SDK's `MCPServer` (tests/py/backend.py,
//! tests/js/backend.mjs). Each listens on a *direct* port (the test's own
//! view of the backend, and `GET /_report`) and a *gateway* port that only
//! passgate calls, where every request is inspected: no client credential,
//! and an identity JWT that verifies against passgate's JWKS with the
//! backend's URL as audience. A backend exits when its stdin closes, so
//! none outlives the test process. Also: the gateway file, a token for a
//! route from a real sign-in, and raw Streamable HTTP calls with SSE read
//! event by event.

#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader, Write},
    path::Path,
    process::{Child, ChildStdin, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use serde_json::{Value, json};

use super::{
    process::{free_port, node, python},
    remote::{McpClient, RemoteBrowser, approve},
};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    FastMcpStateless,
    FastMcpSessions,
    TypeScript,
    PythonModern,
}

impl Kind {
    pub const ALL: [Kind; 4] = [
        Kind::FastMcpStateless,
        Kind::FastMcpSessions,
        Kind::TypeScript,
        Kind::PythonModern,
    ];

    /// The route name it is served under.
    pub fn route(self) -> &'static str {
        match self {
            Kind::FastMcpStateless => "fastmcp",
            Kind::FastMcpSessions => "fastmcp-sessions",
            Kind::TypeScript => "typescript",
            Kind::PythonModern => "python-modern",
        }
    }

    /// How the Python SDK client connects: the session-keeping backends on
    /// 2025-11-25 (sessions exist only there), the others as they choose.
    pub fn client_mode(self) -> &'static str {
        match self {
            Kind::FastMcpSessions | Kind::TypeScript => "legacy",
            Kind::FastMcpStateless | Kind::PythonModern => "auto",
        }
    }
}

pub struct Backend {
    pub kind: Kind,
    child: Child,
    /// Held open: the backend exits when it closes.
    _stdin: ChildStdin,
    pub direct_port: u16,
    pub gateway_port: u16,
    output: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

/// What a backend saw on its gateway port.
#[derive(Debug)]
pub struct Report {
    pub requests: u64,
    pub problems: Vec<String>,
}

impl Backend {
    /// Starts `kind`, expecting identity JWTs issued by `issuer`, the static
    /// headers `static_headers` (`NAME=VALUE`), and plain user headers when
    /// `user_headers`.
    pub fn start(kind: Kind, issuer: &str, static_headers: &[&str], user_headers: bool) -> Backend {
        let mut extra: Vec<String> = Vec::new();
        for header in static_headers {
            extra.extend(["--static-header".to_owned(), (*header).to_owned()]);
        }
        if user_headers {
            extra.push("--user-headers".to_owned());
        }
        Self::start_with(kind, issuer, &extra)
    }

    /// The TypeScript SDK backend for a route with personal keys: every
    /// request must carry a person's key in `header`, and its
    /// `personal_key` tool says which one came.
    pub fn start_keyed(issuer: &str, header: &str) -> Backend {
        Self::start_with(
            Kind::TypeScript,
            issuer,
            &["--personal-key-header".to_owned(), header.to_owned()],
        )
    }

    fn start_with(kind: Kind, issuer: &str, extra: &[String]) -> Backend {
        let (direct_port, gateway_port) = (free_port(), free_port());
        let mut cmd = match kind {
            Kind::TypeScript => {
                let mut cmd = Command::new(node());
                cmd.arg(format!("{ROOT}/tests/js/backend.mjs"))
                    .current_dir(format!("{ROOT}/tests/js"));
                cmd
            }
            _ => {
                let mut cmd = Command::new(python());
                cmd.arg(format!("{ROOT}/tests/py/backend.py"))
                    .arg(match kind {
                        Kind::FastMcpStateless => "fastmcp-stateless",
                        Kind::FastMcpSessions => "fastmcp-sessions",
                        _ => "mcp-modern",
                    });
                cmd
            }
        };
        cmd.args(["--direct-port", &direct_port.to_string()])
            .args(["--gateway-port", &gateway_port.to_string()])
            .args(["--issuer", issuer])
            .args(extra);
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start the {kind:?} backend: {e}"));
        let stdin = child.stdin.take().unwrap();
        let output = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        {
            let output = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if line == "ready" {
                        let _ = ready_tx.send(());
                    }
                    output.lock().unwrap().push(line);
                }
            });
        }
        {
            let output = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    output.lock().unwrap().push(line);
                }
            });
        }
        let backend = Backend {
            kind,
            child,
            _stdin: stdin,
            direct_port,
            gateway_port,
            output,
        };
        if ready_rx.recv_timeout(Duration::from_secs(120)).is_err() {
            panic!(
                "the {kind:?} backend did not start; its output:\n{}",
                backend.output()
            );
        }
        backend
    }

    pub fn direct_url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.direct_port)
    }

    /// The URL passgate is configured with (and the identity JWT's `aud`).
    pub fn gateway_url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.gateway_port)
    }

    pub fn output(&self) -> String {
        self.output.lock().unwrap().join("\n")
    }

    pub async fn report(&self) -> Report {
        let body: Value = reqwest::get(format!("http://127.0.0.1:{}/_report", self.direct_port))
            .await
            .expect("the backend's report")
            .json()
            .await
            .unwrap();
        Report {
            requests: body["requests"].as_u64().unwrap(),
            problems: body["problems"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_str().unwrap().to_owned())
                .collect(),
        }
    }

    /// Asserts that passgate forwarded requests here and that every one of
    /// them passed the backend's inspection; returns the count.
    pub async fn assert_clean(&self) -> u64 {
        let report = self.report().await;
        assert!(
            report.requests > 0,
            "{:?}: passgate forwarded nothing",
            self.kind
        );
        assert!(
            report.problems.is_empty(),
            "{:?} saw what it must not:\n{}",
            self.kind,
            report.problems.join("\n")
        );
        report.requests
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes a gateway file with one route per `(name, url, extra TOML lines)`.
pub fn gateway_file(dir: &Path, routes: &[(&str, String, &str)]) -> std::path::PathBuf {
    let path = dir.join("gateway.toml");
    let mut file = std::fs::File::create(&path).unwrap();
    for (name, url, extra) in routes {
        writeln!(
            file,
            "[[route]]\nname = \"{name}\"\nurl = \"{url}\"\n{extra}\n"
        )
        .unwrap();
    }
    path
}

/// A new MCP client's access token for `resource`, from a real sign-in by
/// the person signed in in `browser`: registration, `/authorize`, the
/// consent page, the code and `/token`. Returns the client id and the token.
pub async fn route_token(
    browser: &mut RemoteBrowser,
    base: &str,
    resource: &str,
) -> (String, String) {
    let client = McpClient::register(
        browser,
        base,
        "Gateway test client",
        "http://127.0.0.1:33418/callback",
        Some(resource.to_owned()),
    )
    .await;
    let (verifier, authorize) = client.authorize("gateway");
    let back = approve(browser, &[base], &authorize).await;
    let code = back
        .get("code")
        .unwrap_or_else(|| panic!("no code: {back:?}"));
    let tokens = client.redeem(browser, base, code, &verifier).await;
    assert!(tokens.status.is_success(), "token: {}", tokens.body);
    let token = tokens.json()["access_token"].as_str().unwrap().to_owned();
    (client.id, token)
}

/// Runs the Python SDK client (tests/py/gateway_client.py) against `url`,
/// with `token` if given; returns its transcript of every answer.
pub fn sdk_transcript(url: &str, mode: &str, token: Option<&str>) -> Value {
    let mut cmd = Command::new(python());
    cmd.arg(format!("{ROOT}/tests/py/gateway_client.py"))
        .args([url, mode]);
    if let Some(token) = token {
        cmd.arg(token);
    }
    let out = cmd.output().expect("run the Python SDK client");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the Python SDK client failed against {url}:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("no transcript from the client ({e}):\n{stdout}"))
}

/// Raw Streamable HTTP, as a 2025-11-25 client sends it.
pub struct RawMcp {
    pub http: reqwest::Client,
    pub token: String,
    pub session: Option<String>,
}

impl RawMcp {
    pub fn new(token: &str) -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            token: token.to_owned(),
            session: None,
        }
    }

    pub fn post(&self, url: &str, body: &Value) -> reqwest::RequestBuilder {
        self.post_as(url, body, "2025-11-25")
    }

    /// A POST with `MCP-Protocol-Version: version`.
    pub fn post_as(&self, url: &str, body: &Value, version: &str) -> reqwest::RequestBuilder {
        let mut request = self
            .http
            .post(url)
            .bearer_auth(&self.token)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", version)
            .timeout(Duration::from_secs(60))
            .body(body.to_string());
        if let Some(session) = &self.session {
            request = request.header("mcp-session-id", session);
        }
        request
    }

    /// `initialize` and `notifications/initialized`; keeps the session id.
    pub async fn initialize(&mut self, url: &str) -> Value {
        self.session = None;
        let response = self
            .post(
                url,
                &json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
                    "protocolVersion":"2025-11-25",
                    "capabilities":{"elicitation":{"form":{}}},
                    "clientInfo":{"name":"raw","version":"1"}}}),
            )
            .send()
            .await
            .expect("initialize");
        assert_eq!(response.status(), 200, "initialize at {url}");
        self.session = response
            .headers()
            .get("mcp-session-id")
            .map(|v| v.to_str().unwrap().to_owned());
        let result = Events::new(response).next_message().await;
        let ack = self
            .post(
                url,
                &json!({"jsonrpc":"2.0","method":"notifications/initialized"}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(ack.status(), 202, "initialized at {url}");
        result
    }

    /// A `tools/call` whose answer is the only message.
    pub async fn call(&self, url: &str, id: u64, name: &str, arguments: Value) -> Value {
        let response = self
            .post(
                url,
                &json!({"jsonrpc":"2.0","id":id,"method":"tools/call",
                        "params":{"name":name,"arguments":arguments}}),
            )
            .send()
            .await
            .expect("tools/call");
        assert_eq!(response.status(), 200, "tools/call {name} at {url}");
        Events::new(response).next_message().await
    }
}

/// JSON-RPC messages of a response, JSON or SSE, read as they arrive.
pub struct Events {
    json: Option<reqwest::Response>,
    stream: Option<reqwest::Response>,
    buffer: String,
}

impl Events {
    pub fn new(response: reqwest::Response) -> Self {
        let sse = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if sse {
            Self {
                json: None,
                stream: Some(response),
                buffer: String::new(),
            }
        } else {
            Self {
                json: Some(response),
                stream: None,
                buffer: String::new(),
            }
        }
    }

    /// The next message (an SSE event's data, or the JSON body); panics at
    /// the end of the stream.
    pub async fn next_message(&mut self) -> Value {
        self.try_next()
            .await
            .expect("the response ended before the next message")
    }

    pub async fn try_next(&mut self) -> Option<Value> {
        self.next_inner(false).await
    }

    /// How many more messages arrive before the stream ends; a broken
    /// stream (a backend that went away mid-stream) counts as ended.
    pub async fn remaining(&mut self) -> usize {
        let mut n = 0;
        while self.next_inner(true).await.is_some() {
            n += 1;
        }
        n
    }

    async fn next_inner(&mut self, cut_is_end: bool) -> Option<Value> {
        if let Some(response) = self.json.take() {
            return Some(response.json().await.expect("a JSON body"));
        }
        let stream = self.stream.as_mut()?;
        loop {
            let normalized = self.buffer.replace("\r\n", "\n");
            if let Some(end) = normalized.find("\n\n") {
                let event = normalized[..end].to_owned();
                self.buffer = normalized[end + 2..].to_owned();
                let data: Vec<&str> = event
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(|l| l.strip_prefix(' ').unwrap_or(l))
                    .collect();
                if data.is_empty() || data.iter().all(|d| d.is_empty()) {
                    continue; // a comment, a priming event or a retry hint
                }
                return Some(serde_json::from_str(&data.join("\n")).expect("SSE data is JSON"));
            }
            let read = tokio::time::timeout(Duration::from_secs(60), stream.chunk())
                .await
                .expect("no SSE event within 60 s");
            match read {
                Ok(Some(chunk)) => self.buffer.push_str(&String::from_utf8_lossy(&chunk)),
                Ok(None) => return None,
                Err(_) if cut_is_end => return None,
                Err(e) => panic!("SSE read: {e}"),
            }
        }
    }
}
