//! Starts a real, throw-away PostgreSQL cluster (Debian's `postgresql`
//! package, which `scripts/install-test-deps.sh` installs): `initdb` in a
//! temporary directory, the server on a free loopback port, trust
//! authentication for the user `passgate`. PostgreSQL refuses to run as
//! root, so as root the cluster belongs to `nobody` and its commands run
//! through `runuser`.
//!
//! Include it from a test file with `#[path = "support/postgres.rs"] mod postgres;`.
//! [`shared`] is one cluster per test binary, on which each test makes its
//! own database ([`Cluster::new_database`]); tests that stop the server or
//! need TLS start their own with [`Cluster::start`]. A cluster is stopped
//! and its directory removed when it is dropped, and, for the shared one
//! (a static, never dropped), by a watchdog when the test process exits.
//! A missing PostgreSQL is a test failure, not a skip.

#![allow(dead_code)]

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

/// The user that owns the cluster when the tests run as root.
const RUN_AS: &str = "nobody";

/// TLS material for a cluster: the server's certificate chain and key (PEM).
pub struct ServerTls {
    pub cert_pem: String,
    pub key_pem: String,
}

pub struct Cluster {
    /// Temporary directory holding `data/`, the socket and the log.
    dir: PathBuf,
    bin: PathBuf,
    pub port: u16,
    as_root: bool,
    databases: AtomicUsize,
}

/// The cluster every test of this binary shares.
pub fn shared() -> &'static Cluster {
    static SHARED: OnceLock<Cluster> = OnceLock::new();
    SHARED.get_or_init(|| Cluster::start(None))
}

impl Cluster {
    /// Makes a cluster and starts it; with `tls`, `ssl = on` and only TLS
    /// connections from loopback are accepted.
    pub fn start(tls: Option<&ServerTls>) -> Cluster {
        let bin = bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("passgate-pg-")
            .tempdir()
            .expect("temp dir for PostgreSQL")
            .keep();
        let as_root = is_root();
        let cluster = Cluster {
            dir,
            bin,
            port: free_port(),
            as_root,
            databases: AtomicUsize::new(0),
        };
        if as_root {
            run(Command::new("chown").arg(RUN_AS).arg(&cluster.dir), "chown");
        }
        cluster.watch_for_exit();
        let data = cluster.data_dir();
        let mut initdb = cluster.command("initdb");
        initdb.arg("-D").arg(&data).args([
            "-U",
            "passgate",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
        ]);
        run(&mut initdb, "initdb");

        // No fsync: the cluster is thrown away, and the tests are about
        // correctness, not power cuts. Commits stay synchronous, so a
        // server killed by a test keeps what it acknowledged.
        let mut conf = format!(
            "listen_addresses = '127.0.0.1'\nport = {port}\nunix_socket_directories = '{dir}'\n\
             max_connections = 400\nfsync = off\nfull_page_writes = off\n\
             shared_preload_libraries = 'pg_stat_statements'\n",
            port = cluster.port,
            dir = cluster.dir.display(),
        );
        if let Some(tls) = tls {
            cluster.write_private("data/server.crt", &tls.cert_pem);
            cluster.write_private("data/server.key", &tls.key_pem);
            conf.push_str("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
            std::fs::write(
                data.join("pg_hba.conf"),
                "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
            )
            .expect("pg_hba.conf");
        }
        let mut existing = std::fs::read_to_string(data.join("postgresql.conf")).unwrap();
        existing.push_str(&conf);
        std::fs::write(data.join("postgresql.conf"), existing).expect("postgresql.conf");
        cluster.start_server();
        cluster
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join("server.log")
    }

    /// `program` from PostgreSQL's bin directory, run as the cluster's owner.
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_root {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", RUN_AS, "--"]).arg(path);
            cmd
        } else {
            Command::new(path)
        }
    }

    fn write_private(&self, name: &str, contents: &str) {
        use std::os::unix::fs::PermissionsExt;
        let path = self.dir.join(name);
        std::fs::write(&path, contents).expect("writing a TLS file");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        if self.as_root {
            run(Command::new("chown").arg(RUN_AS).arg(&path), "chown");
        }
    }

    /// Starts the server (again) and waits until it accepts connections.
    pub fn start_server(&self) {
        let mut start = self.command("pg_ctl");
        start
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(self.log_path())
            .args(["-w", "-t", "60", "start"]);
        if !start.status().is_ok_and(|s| s.success()) {
            panic!("PostgreSQL did not start:\n{}", self.log());
        }
    }

    /// Stops the server at once (as a crash or a failover would look to
    /// clients: every connection drops).
    pub fn stop_server(&self) {
        let mut stop = self.command("pg_ctl");
        stop.arg("-D")
            .arg(self.data_dir())
            .args(["-m", "immediate", "-w", "stop"]);
        let _ = stop.stdout(Stdio::null()).stderr(Stdio::null()).status();
    }

    /// `postgres://passgate@127.0.0.1:<port>/<database>`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://passgate@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates a fresh, empty database and returns its name.
    pub fn new_database(&self) -> String {
        let n = self.databases.fetch_add(1, Ordering::SeqCst);
        let name = format!("t{}_{n}", std::process::id());
        let mut psql = self.command("psql");
        psql.args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args([
                "-U",
                "passgate",
                "-d",
                "postgres",
                "-v",
                "ON_ERROR_STOP=1",
                "-q",
                "-c",
            ])
            .arg(format!("CREATE DATABASE {name}"));
        run(&mut psql, "CREATE DATABASE");
        name
    }

    /// Runs one SQL statement with `psql` and returns its unaligned output.
    pub fn psql(&self, database: &str, sql: &str) -> String {
        let mut psql = self.command("psql");
        psql.args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args([
                "-U",
                "passgate",
                "-d",
                database,
                "-v",
                "ON_ERROR_STOP=1",
                "-At",
                "-c",
            ])
            .arg(sql);
        let out = psql.output().expect("running psql");
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// A shell command line that runs `sql` with `psql` (for a session
    /// that must stay open in the background).
    pub fn psql_command(&self, database: &str, sql: &str) -> String {
        let psql = format!(
            "{}/psql -h 127.0.0.1 -p {} -U passgate -d {database} -q -c \"{sql}\"",
            self.bin.display(),
            self.port
        );
        if self.as_root {
            format!("exec runuser -u {RUN_AS} -- {psql}")
        } else {
            format!("exec {psql}")
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// A detached shell that stops the server and removes the directory
    /// once this test process has exited, however it exits.
    fn watch_for_exit(&self) {
        let mut stop = format!(
            "{}/pg_ctl -D '{}' -m immediate -w stop",
            self.bin.display(),
            self.data_dir().display()
        );
        if self.as_root {
            stop = format!("runuser -u {RUN_AS} -- {stop}");
        }
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
             [ -f '{data}/postmaster.pid' ] && {stop} >/dev/null 2>&1; rm -rf '{dir}'",
            pid = std::process::id(),
            data = self.data_dir().display(),
            dir = self.dir.display(),
        );
        // Deliberately never waited for: it outlives this process.
        #[allow(clippy::zombie_processes)]
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting the PostgreSQL watchdog");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let start = (log.len().saturating_sub(4000)..log.len())
                .find(|&i| log.is_char_boundary(i))
                .unwrap_or(0);
            eprintln!("--- PostgreSQL (last lines) ---\n{}", &log[start..]);
        }
        self.stop_server();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Makes a CA and a server certificate for `127.0.0.1` and `localhost`
/// signed by it. Returns the CA's PEM and the server's material.
pub fn test_ca_and_server_cert() -> (String, ServerTls) {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "passgate test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let server_key = KeyPair::generate().unwrap();
    let server = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .unwrap()
        .signed_by(&server_key, &ca)
        .unwrap();
    (
        ca.pem(),
        ServerTls {
            cert_pem: server.pem(),
            key_pem: server_key.serialize_pem(),
        },
    )
}

/// The newest `/usr/lib/postgresql/<version>/bin` (Debian's layout), or
/// the directory of `initdb` on the PATH.
fn bin_dir() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return bin;
    }
    let found = Command::new("sh")
        .args(["-c", "command -v initdb"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok());
    match found {
        Some(path) => Path::new(path.trim()).parent().unwrap().to_path_buf(),
        None => panic!(
            "PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb, no initdb on PATH). \
             The PostgreSQL tests need it: run scripts/install-test-deps.sh (it installs Debian's \
             postgresql package), or run the whole suite with scripts/test.sh."
        ),
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("finding a free port")
        .port()
}

/// Waits until `f` holds, polling every 100 ms, for at most `timeout`.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}
