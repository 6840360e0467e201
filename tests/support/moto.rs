//! Starts a real DynamoDB-compatible server, moto (`moto_server`, from the
//! Python virtualenv that `scripts/install-test-deps.sh` makes), on a free
//! loopback port, and stops it when dropped.
//!
//! Include it from a test file with
//! `#[path = "support/moto.rs"] mod moto;`.
//! A missing moto is a test failure, not a skip: the test command installs it.
//!
//! moto serves each request on its own thread and its DynamoDB model takes
//! no lock: a conditional write is check-then-act and `ADD` is
//! read-modify-write, so concurrent requests lose updates (50 concurrent
//! `ADD`s end at 47, two `attribute_not_exists` puts both succeed). Real
//! DynamoDB applies every single-item write and every transaction
//! atomically. So the server is started through `moto.server.main` (what the
//! `moto_server` script runs) with one lock around request handling: clients
//! still race with each other as they would against DynamoDB, and each request
//! is atomic as it is there.

#![allow(dead_code)]

use std::{
    net::{SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// The region every test client and function uses with moto.
pub const REGION: &str = "us-east-1";

/// A running `moto_server`; killed on drop.
pub struct Moto {
    child: Child,
    port: u16,
    log: tempfile::NamedTempFile,
}

impl Moto {
    /// Starts moto and waits until it answers. Panics with an explanation if
    /// moto is not installed or does not come up.
    pub fn start() -> Moto {
        let python = moto_python();
        let mut last_error = String::new();
        // The free port is found by binding port 0 and letting go of it;
        // another process could take it in between, so try a few times.
        for _ in 0..3 {
            let port = free_port();
            let log = tempfile::NamedTempFile::new().expect("creating moto's log file");
            let child = Command::new(&python)
                .args(["-c", SERIALIZED_MOTO_SERVER])
                .args(["-H", "127.0.0.1", "-p", &port.to_string()])
                .stdin(Stdio::null())
                .stdout(append_to(&log, "moto log"))
                .stderr(append_to(&log, "moto log"))
                .spawn()
                .unwrap_or_else(|e| panic!("could not start moto with {}: {e}", python.display()));
            let mut moto = Moto { child, port, log };
            match moto.wait_ready(Duration::from_secs(30)) {
                Ok(()) => return moto,
                Err(e) => last_error = e,
            }
        }
        panic!("moto_server did not come up: {last_error}");
    }

    /// The endpoint URL to give the AWS SDK.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A DynamoDB store on this server, with dummy credentials on its own
    /// client config (nothing from the environment), its table created.
    #[cfg(feature = "dynamodb")]
    pub async fn dynamo_store(&self, table: &str) -> passgate::store::dynamodb::DynamoStore {
        use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
        let config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url(self.endpoint())
            .credentials_provider(Credentials::new(
                "testing",
                "testing",
                None,
                None,
                "passgate-tests",
            ));
        let store = passgate::store::dynamodb::DynamoStore::from_config(config, table);
        store
            .create_table_if_missing()
            .await
            .unwrap_or_else(|e| panic!("creating the table on moto: {e}\n{}", self.output()));
        store
    }

    /// What moto printed so far (its request log), for failure messages.
    pub fn output(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<(), String> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().map_err(|e| e.to_string())? {
                return Err(format!("it exited with {status}:\n{}", self.output()));
            }
            if let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200))
                && http_ok(&mut stream)
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                return Err(format!(
                    "no answer on port {} within {timeout:?}:\n{}",
                    self.port,
                    self.output()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.output();
            let start = (log.len().saturating_sub(4000)..log.len())
                .find(|&i| log.is_char_boundary(i))
                .unwrap_or(0);
            let tail = &log[start..];
            eprintln!("--- moto (last lines) ---\n{tail}");
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `moto_server -H HOST -p PORT`, with request handling serialized (see the
/// module comment). Arguments follow `-c SCRIPT` as for `moto_server`.
const SERIALIZED_MOTO_SERVER: &str = "
import sys, threading
from moto.moto_server.werkzeug_app import DomainDispatcherApplication
from moto.server import main

lock = threading.Lock()
handle = DomainDispatcherApplication.__call__

def serialized(self, environ, start_response):
    with lock:
        return handle(self, environ, start_response)

DomainDispatcherApplication.__call__ = serialized
main(sys.argv[1:])
";

/// The virtualenv's Python, after checking that moto is installed there:
/// `$PASSGATE_TOOLS/venv` (scripts/env.sh sets PASSGATE_TOOLS), else
/// `.tools/venv` in this checkout.
fn moto_python() -> PathBuf {
    let tools = std::env::var_os("PASSGATE_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".tools"));
    let bin = tools.join("venv/bin");
    let moto_server = bin.join("moto_server");
    if !moto_server.is_file() {
        panic!(
            "moto is not installed: {} does not exist. The DynamoDB tests need it; \
             run scripts/install-test-deps.sh (it installs tests/py/requirements.txt \
             into .tools/venv), or run the whole suite with scripts/test.sh.",
            moto_server.display()
        );
    }
    bin.join("python")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("finding a free port")
        .port()
}

/// Sends `GET /` and checks for an HTTP 200 (moto answers it once it is up).
fn http_ok(stream: &mut TcpStream) -> bool {
    use std::io::{Read, Write};
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && &head[9..12] == b"200"
}

/// The log file opened for appending: stdout and stderr each get their own
/// handle, and O_APPEND keeps one from overwriting what the other wrote.
fn append_to(log: &tempfile::NamedTempFile, what: &str) -> std::fs::File {
    std::fs::OpenOptions::new()
        .append(true)
        .open(log.path())
        .unwrap_or_else(|e| panic!("opening the {what}: {e}"))
}
