//! Crash safety of the real binary. `passgate serve` is killed with SIGKILL
//! at each step of a sign-in (after the client's registration and the
//! person's enrollment, after `/authorize`, between the passkey ceremony's
//! two halves, on the consent page, after consent, after the code's
//! redemption, and at varied moments of a refresh-token rotation), then
//! started again on the same data directory; the flow continues where it
//! was, on the new process. Nothing may be lost: the account, its passkey,
//! the registration, the grant and the store file itself survive. And
//! SIGTERM lets an in-flight request finish, refuses new connections and
//! exits 0.

mod support;

use std::{
    io::{Read, Write},
    net::TcpStream,
    path::Path,
    time::{Duration, Instant},
};

use http::StatusCode;
use serde_json::json;
use support::{
    authenticator::SoftAuthenticator,
    process::{BIN, Passgate, free_port, invite},
    remote::{McpClient, RemoteBrowser, call_add},
};

/// One data directory, one public URL, and whichever process serves them.
struct Service {
    dir: tempfile::TempDir,
    public: String,
    process: Option<Passgate>,
}

impl Service {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let public = format!("http://localhost:{}", free_port());
        let process = Passgate::start(dir.path(), Some(&public), &[]);
        Self {
            dir,
            public,
            process: Some(process),
        }
    }

    /// The running process's own address.
    fn base(&self) -> String {
        self.process.as_ref().unwrap().local()
    }

    /// SIGKILL, then a new process on the same data directory.
    fn crash_and_restart(&mut self) {
        self.process.take().unwrap().kill_hard();
        self.process = Some(Passgate::start(self.dir.path(), Some(&self.public), &[]));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_every_step_of_a_sign_in_loses_nothing() {
    let mut service = Service::start();
    let public = service.public.clone();
    let device = SoftAuthenticator::new();

    // The client registers; the process dies right after answering.
    let mut client_http = RemoteBrowser::new(&public);
    let client = McpClient::register(
        &mut client_http,
        &service.base(),
        "Crash test client",
        "http://127.0.0.1:33418/callback",
        Some(format!("{public}/mcp")),
    )
    .await;
    service.crash_and_restart();

    // The person enrolls a passkey: the process dies between the
    // ceremony's two halves, and again right after the new account.
    let link = invite(service.dir.path(), &public, "alice", true);
    let invitation = query_of(&link)["token"].clone();
    let mut first = RemoteBrowser::new(&public);
    let options = first
        .post_json(
            &service.base(),
            "/enroll/passkey/options",
            &json!({"token": invitation, "displayName": "Alice"}),
        )
        .await;
    assert_eq!(options.status, StatusCode::OK, "{}", options.body);
    let created = device.create(&public, options.json()).await.unwrap();
    service.crash_and_restart();
    let enrolled = first
        .post_json(&service.base(), "/enroll/passkey/finish", &created)
        .await;
    assert_eq!(
        enrolled.status,
        StatusCode::OK,
        "the enrollment ceremony survives a crash: {}",
        enrolled.body
    );
    service.crash_and_restart();

    // A new browser starts the authorization; the process dies after
    // storing the pending request.
    let mut browser = RemoteBrowser::new(&public);
    let (verifier, authorize) = client.authorize("state-1");
    let reply = browser.get(&service.base(), &authorize).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{}", reply.body);
    let consent_url = reply.location.unwrap();
    service.crash_and_restart();

    let reply = browser.get(&service.base(), &consent_url).await;
    assert!(
        reply
            .location
            .as_deref()
            .unwrap_or("")
            .starts_with("/login"),
        "not signed in yet: {} {}",
        reply.status,
        reply.body
    );

    // The passkey ceremony starts on one process and finishes on the next.
    let options = browser
        .post_json(&service.base(), "/login/passkey/options", &json!({}))
        .await;
    assert_eq!(options.status, StatusCode::OK, "{}", options.body);
    let assertion = device.get(&public, options.json()).await.unwrap();
    service.crash_and_restart();
    let finish = browser
        .post_json(&service.base(), "/login/passkey/finish", &assertion)
        .await;
    assert_eq!(
        finish.status,
        StatusCode::OK,
        "the ceremony survives a crash: {}",
        finish.body
    );

    // The consent page is shown (the pending request survived two
    // crashes), the process dies, and the approval goes to the next one.
    let page = browser.get(&service.base(), &consent_url).await;
    assert_eq!(page.status, StatusCode::OK, "consent page: {}", page.body);
    let form = [
        ("request", page.field("request")),
        ("csrf", page.field("csrf")),
        ("decision", "approve".to_owned()),
    ];
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    service.crash_and_restart();
    let approved = browser.post_form(&service.base(), "/consent", &form).await;
    assert_eq!(
        approved.status,
        StatusCode::SEE_OTHER,
        "the session survives a crash: {}",
        approved.body
    );
    let back = query_of(&approved.location.unwrap());
    assert_eq!(back["state"], "state-1");
    let code = back["code"].clone();

    // After consent: the code outlives the process that issued it.
    service.crash_and_restart();
    let tokens = client
        .redeem(&mut client_http, &service.base(), &code, &verifier)
        .await;
    assert_eq!(tokens.status, StatusCode::OK, "redeem: {}", tokens.body);
    let tokens = tokens.json();

    // After the code: the tokens outlive it (the signing key is stored).
    service.crash_and_restart();
    call_add(&service.base(), tokens["access_token"].as_str().unwrap(), 1).await;

    // During refresh rotation: the process dies while the rotation is in
    // flight, at varied moments; the client retries with the token it has
    // and always gets a working pair (the rotation either never happened,
    // or its stored answer is replayed within the grace window).
    let mut refresh_token = tokens["refresh_token"].as_str().unwrap().to_owned();
    for delay_ms in [0u64, 1, 3, 10, 30] {
        let base = service.base();
        let in_flight = {
            let form = [
                ("grant_type", "refresh_token".to_owned()),
                ("refresh_token", refresh_token.clone()),
                ("client_id", client.id.clone()),
            ];
            tokio::spawn(async move {
                // A connection cut by the crash is no answer.
                let reply = reqwest::Client::new()
                    .post(format!("{base}/token"))
                    .form(&form)
                    .send()
                    .await
                    .ok()?;
                if reply.status() != StatusCode::OK {
                    return None;
                }
                reply.json::<serde_json::Value>().await.ok()
            })
        };
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        service.crash_and_restart();
        let answered = in_flight.await.unwrap();
        eprintln!(
            "crash {delay_ms} ms into a rotation: the client {}",
            if answered.is_some() {
                "had its answer"
            } else {
                "got no answer"
            }
        );
        let retry = client
            .refresh(&mut client_http, &service.base(), &refresh_token)
            .await;
        assert_eq!(
            retry.status,
            StatusCode::OK,
            "retry after a crash {delay_ms} ms into a rotation: {}",
            retry.body
        );
        let retry = retry.json();
        if let Some(first) = answered {
            assert_eq!(
                first["refresh_token"], retry["refresh_token"],
                "a rotation that answered is replayed, not repeated"
            );
        }
        refresh_token = retry["refresh_token"].as_str().unwrap().to_owned();
        call_add(&service.base(), retry["access_token"].as_str().unwrap(), 2).await;
    }

    // Everything is still there: a whole new sign-in of the same person
    // with the same client goes through (consent remembered).
    service.crash_and_restart();
    let mut again = RemoteBrowser::new(&public);
    support::remote::sign_in(&mut again, (&service.base(), &service.base()), &device).await;
    let (verifier, authorize) = client.authorize("state-2");
    let back = support::remote::approve(&mut again, &[&service.base()], &authorize).await;
    let tokens = client
        .redeem(&mut client_http, &service.base(), &back["code"], &verifier)
        .await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.body);

    service.process.take().unwrap().kill_hard();
    assert_store_intact(service.dir.path(), &public, &client.id);
}

fn query_of(url: &str) -> std::collections::BTreeMap<String, String> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The SQLite file passes its own integrity check, and the CLI still sees
/// the account and the registered client.
fn assert_store_intact(dir: &Path, public: &str, client_id: &str) {
    let db = rusqlite::Connection::open(dir.join("passgate.sqlite3")).unwrap();
    let check: String = db
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    drop(db);
    let run = |args: &[&str]| {
        let out = std::process::Command::new(BIN)
            .args(args)
            .args(["--public-url", public])
            .arg("--data-dir")
            .arg(dir)
            .env("PASSGATE_LOG", "warn")
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let users = run(&["users", "list"]);
    assert!(users.contains("alice"), "users list: {users}");
    let clients = run(&["clients", "list"]);
    assert!(clients.contains(client_id), "clients list: {clients}");
}

/// SIGTERM while a request is in flight: the request completes, new
/// connections are refused, and the process exits 0.
#[test]
fn sigterm_drains_in_flight_requests_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Passgate::start(dir.path(), None, &[]);
    let port = server.port;

    // A token request whose body is held back. `Expect: 100-continue`
    // makes the server say when the handler starts reading it: from then
    // on the request is in flight.
    let body = "grant_type=refresh_token&refresh_token=nope&client_id=nobody";
    let mut slow = TcpStream::connect(("127.0.0.1", port)).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    write!(
        slow,
        "POST /token HTTP/1.1\r\nHost: localhost:{port}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        body.len()
    )
    .unwrap();
    let mut interim = [0u8; 25];
    slow.read_exact(&mut interim).unwrap();
    assert!(
        interim.starts_with(b"HTTP/1.1 100 Continue"),
        "{}",
        String::from_utf8_lossy(&interim)
    );

    server.terminate();
    // New connections are refused once the listener is closed.
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_ok() {
        assert!(
            Instant::now() < deadline,
            "passgate still accepts connections 30 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The process is still there, waiting for the held-back request.
    assert!(server.running(), "passgate exited with a request in flight");

    slow.write_all(body.as_bytes()).unwrap();
    let mut response = String::new();
    slow.read_to_string(&mut response).unwrap();
    assert!(
        response.starts_with("HTTP/1.1 401") || response.starts_with("HTTP/1.1 400"),
        "the in-flight request gets its whole answer: {response}"
    );
    assert!(response.contains(r#""error":"#), "{response}");

    let status = server.wait_exit(Duration::from_secs(30));
    assert!(
        status.success(),
        "exit status {status:?}: {}",
        server.output()
    );
}
