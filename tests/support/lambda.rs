//! Runs the real `passgate` binary under an emulated AWS Lambda runtime and
//! returns the base URL of its Function URL; everything is killed on drop.
//!
//! `cargo lambda watch` (from the `cargo-lambda` PyPI package that
//! `scripts/install-test-deps.sh` puts into `.tools/venv`) serves the Lambda
//! runtime API and the Function URL emulation on a free loopback port. The
//! function is the `passgate` binary this test build made, started with no
//! arguments and the Lambda environment (`AWS_LAMBDA_RUNTIME_API`, ...), as
//! the Lambda service starts `bootstrap`: it polls the runtime API for
//! Function URL events through `lambda_http`, the code path it runs on AWS.
//!
//! The emulator runs with `--only-lambda-apis`, so the harness starts the
//! function rather than `cargo lambda watch` itself. Left to itself, watch
//! starts the function with `cargo run`: a second build inside `cargo test`,
//! and not a no-op one, since `cargo run` resolves features without the
//! dev-dependencies (it rebuilt passgate, 43 s on two cores, and the next
//! `cargo test` rebuilt it back). It would also wait on the target
//! directory's lock, reload on every source change, and count cargo's own
//! start-up in the init time. Starting the built binary directly is what
//! the Lambda service does with `bootstrap`.
//!
//! Use from a test file with `#[path = "support/lambda.rs"] mod lambda;`.
//! A missing cargo-lambda is a test failure, not a skip.
//!
//! ```ignore
//! let mut lambda = lambda::Lambda::start();
//! let base = lambda.base_url(); // known before the function starts
//! lambda.start_function(&[("PASSGATE_STORE", "dynamodb"), /* ... */]);
//! // requests to `base` now reach passgate
//! ```

#![allow(dead_code)]

use std::{
    ffi::OsStr,
    io::{ErrorKind, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// How long the function may take from start to its first answer.
const INIT_TIMEOUT: Duration = Duration::from_secs(60);

/// The emulator, and the function once started. Dropping it kills both.
pub struct Lambda {
    emulator: Child,
    emulator_log: tempfile::NamedTempFile,
    port: u16,
    function: Option<Function>,
}

struct Function {
    child: Child,
    log: tempfile::NamedTempFile,
    init_time: Duration,
}

impl Lambda {
    /// Starts `cargo lambda watch --only-lambda-apis` on a free port and
    /// waits until it accepts connections.
    pub fn start() -> Lambda {
        let cargo_lambda = cargo_lambda();
        let mut last_error = String::new();
        // The free port is found by binding port 0 and letting go of it;
        // another process could take it in between, so try a few times.
        for _ in 0..3 {
            let port = free_port();
            let log = tempfile::NamedTempFile::new().expect("creating the emulator's log file");
            let emulator = Command::new(&cargo_lambda)
                .args(["lambda", "watch", "--only-lambda-apis", "--disable-cors"])
                .args(["--invoke-address", "127.0.0.1"])
                .args(["--invoke-port", &port.to_string()])
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .stdin(Stdio::null())
                .stdout(append_to(&log, "emulator log"))
                .stderr(append_to(&log, "emulator log"))
                .spawn()
                .unwrap_or_else(|e| panic!("could not start {}: {e}", cargo_lambda.display()));
            let mut lambda = Lambda {
                emulator,
                emulator_log: log,
                port,
                function: None,
            };
            match lambda.wait_listening(Duration::from_secs(30)) {
                Ok(()) => return lambda,
                Err(e) => last_error = e,
            }
        }
        panic!("cargo lambda watch did not come up: {last_error}");
    }

    /// The Function URL: `http://localhost:<port>` (the emulator sends
    /// every path outside `/lambda-url/...` to the one function).
    pub fn base_url(&self) -> String {
        format!("http://localhost:{}", self.port)
    }

    /// Starts `passgate` as the function, with a clean environment plus
    /// `env`, and waits for its answer to a first request (`GET /healthz`
    /// through the Function URL). Panics if the function exits first.
    pub fn start_function<I, K, V>(&mut self, env: I)
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        assert!(self.function.is_none(), "the function is already running");
        let log = tempfile::NamedTempFile::new().expect("creating the function's log file");
        let started = Instant::now();
        let child = Command::new(env!("CARGO_BIN_EXE_passgate"))
            // Like the Lambda service: no arguments, only the environment.
            .env_clear()
            .env(
                "AWS_LAMBDA_RUNTIME_API",
                format!("http://127.0.0.1:{}/.rt", self.port),
            )
            // The default function of the emulator.
            .env("AWS_LAMBDA_FUNCTION_NAME", "_")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .envs(env)
            .stdin(Stdio::null())
            .stdout(append_to(&log, "function log"))
            .stderr(append_to(&log, "function log"))
            .spawn()
            .expect("starting the passgate binary");
        self.function = Some(Function {
            child,
            log,
            init_time: Duration::ZERO,
        });
        let status = self.first_request(started);
        self.function.as_mut().expect("function").init_time = started.elapsed();
        assert_eq!(
            status,
            200,
            "GET /healthz through the Function URL\n{}",
            self.output()
        );
    }

    /// From starting the process to the end of its first answer: what
    /// Lambda reports as init duration plus the first invocation's.
    pub fn init_time(&self) -> Duration {
        self.function.as_ref().expect("no function").init_time
    }

    /// True while the function's process runs.
    pub fn function_is_running(&mut self) -> bool {
        match self.function.as_mut() {
            Some(f) => f.child.try_wait().ok().flatten().is_none(),
            None => false,
        }
    }

    /// What the function and the emulator printed so far, for failure
    /// messages.
    pub fn output(&self) -> String {
        let read = |path: &std::path::Path| std::fs::read_to_string(path).unwrap_or_default();
        let function = self
            .function
            .as_ref()
            .map(|f| read(f.log.path()))
            .unwrap_or_default();
        format!(
            "--- passgate (function) ---\n{function}\n--- cargo lambda watch ---\n{}",
            read(self.emulator_log.path())
        )
    }

    /// What the function printed so far.
    pub fn function_output(&self) -> String {
        self.function
            .as_ref()
            .map(|f| std::fs::read_to_string(f.log.path()).unwrap_or_default())
            .unwrap_or_default()
    }

    fn wait_listening(&mut self, timeout: Duration) -> Result<(), String> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.emulator.try_wait().map_err(|e| e.to_string())? {
                return Err(format!("it exited with {status}:\n{}", self.output()));
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = self.emulator.kill();
                let _ = self.emulator.wait();
                return Err(format!(
                    "no answer on port {} within {timeout:?}:\n{}",
                    self.port,
                    self.output()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends one `GET /healthz` and returns the status of its answer. The
    /// emulator holds the request until the function asks for it, so the
    /// answer arrives as soon as the function is up; meanwhile the function
    /// is watched so that a failed start is reported at once.
    fn first_request(&mut self, started: Instant) -> u16 {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let mut stream = TcpStream::connect(addr).expect("connecting to the emulator");
        write!(
            stream,
            "GET /healthz HTTP/1.1\r\nHost: localhost:{}\r\nConnection: close\r\n\r\n",
            self.port
        )
        .expect("sending the first request");
        stream
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("read timeout");
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(2).any(|w| w == b"\r\n") {
            match stream.read(&mut buf) {
                Ok(0) => panic!("the emulator closed the connection\n{}", self.output()),
                Ok(n) => head.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    let function = &mut self.function.as_mut().expect("function").child;
                    if let Ok(Some(status)) = function.try_wait() {
                        panic!(
                            "passgate exited with {status} during init\n{}",
                            self.output()
                        );
                    }
                    if started.elapsed() > INIT_TIMEOUT {
                        panic!("no answer within {INIT_TIMEOUT:?}\n{}", self.output());
                    }
                }
                Err(e) => panic!("reading the first answer: {e}\n{}", self.output()),
            }
        }
        let line = String::from_utf8_lossy(&head);
        line.split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("not an HTTP answer: {line}"))
    }
}

impl Drop for Lambda {
    fn drop(&mut self) {
        // A test failing anywhere (not only in this module's checks) shows
        // what the function and the emulator said.
        if std::thread::panicking() {
            eprintln!("{}", self.output());
        }
        if let Some(function) = self.function.as_mut() {
            let _ = function.child.kill();
            let _ = function.child.wait();
        }
        let _ = self.emulator.kill();
        let _ = self.emulator.wait();
    }
}

/// `cargo-lambda` in the virtualenv: `$PASSGATE_TOOLS/venv` (scripts/env.sh
/// sets PASSGATE_TOOLS), else `.tools/venv` in this checkout.
fn cargo_lambda() -> PathBuf {
    let tools = std::env::var_os("PASSGATE_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".tools"));
    let path = tools.join("venv/bin/cargo-lambda");
    if !path.is_file() {
        panic!(
            "cargo-lambda is not installed: {} does not exist. The Lambda tests need it; \
             run scripts/install-test-deps.sh (it installs tests/py/requirements.txt \
             into .tools/venv), or run the whole suite with scripts/test.sh.",
            path.display()
        );
    }
    path
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("finding a free port")
        .port()
}

/// The log file opened for appending: stdout and stderr each get their own
/// handle, and O_APPEND keeps one from overwriting what the other wrote.
fn append_to(log: &tempfile::NamedTempFile, what: &str) -> std::fs::File {
    std::fs::OpenOptions::new()
        .append(true)
        .open(log.path())
        .unwrap_or_else(|e| panic!("opening the {what}: {e}"))
}
