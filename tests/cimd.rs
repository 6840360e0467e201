//! Client ID Metadata Documents fetched from a real HTTPS server on
//! loopback. The product's fetcher is used with two changes only: it trusts
//! the test's certificate and resolves the test host name to loopback.
//! Everything else (https only, no proxy, no redirects, size and time
//! limits, the `client_id` check, caching of documents and failures, the
//! per-caller fetch limit) is what runs in production. One test starts the
//! real binary with `HTTPS_PROXY` pointing at a listener that records what
//! reaches it.

mod support;

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use http::StatusCode;
use passgate::{
    config::Config,
    login::ratelimit::CIMD_FETCH_PER_ADDR,
    oauth::cimd::{CimdFetcher, FAILURE_CACHE_SECS, FETCH_FAILED},
};
use support::{
    ORIGIN, TestApp,
    oauth::{authorize_url, pkce},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};
use tokio_rustls::{TlsAcceptor, rustls};

const HOST: &str = "cimd.test";

/// The paths the document server was asked for, in order.
type Hits = Arc<Mutex<Vec<String>>>;

/// Serves a few documents over TLS, answering by path.
async fn document_server() -> (SocketAddr, reqwest::Certificate, Hits) {
    let hits = Hits::default();
    let seen = hits.clone();
    let cert = rcgen::generate_simple_self_signed(vec![HOST.to_owned()]).unwrap();
    let der = cert.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![der.clone()], key)
    .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let seen = seen.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = vec![0u8; 4096];
                let n = tls.read(&mut buf).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&buf[..n]).into_owned();
                let path = request.split(' ').nth(1).unwrap_or("/").to_owned();
                seen.lock().unwrap().push(path.clone());
                let base = format!("https://{HOST}:{}", addr.port());
                let (status, headers, body) = respond(&base, &path).await;
                let head = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n{headers}\r\n",
                    body.len()
                );
                let _ = tls.write_all(head.as_bytes()).await;
                let _ = tls.write_all(body.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (addr, reqwest::Certificate::from_der(&der).unwrap(), hits)
}

async fn respond(base: &str, path: &str) -> (&'static str, String, String) {
    let doc = |id: &str| {
        serde_json::json!({
            "client_id": id,
            "client_name": "Metadata Client",
            "redirect_uris": ["https://app.example/cb"],
        })
        .to_string()
    };
    match path {
        "/good.json" => (
            "200 OK",
            "cache-control: max-age=600\r\n".into(),
            doc(&format!("{base}/good.json")),
        ),
        "/mismatch.json" => (
            "200 OK",
            String::new(),
            doc("https://someone-else.example/client.json"),
        ),
        "/huge.json" => (
            "200 OK",
            String::new(),
            format!("{{\"pad\":\"{}\"}}", "x".repeat(64 * 1024)),
        ),
        "/redirect.json" => (
            "302 Found",
            format!("location: {base}/good.json\r\n"),
            String::new(),
        ),
        "/slow.json" => {
            tokio::time::sleep(Duration::from_secs(8)).await;
            ("200 OK", String::new(), doc(&format!("{base}/slow.json")))
        }
        "/not-json" => ("200 OK", String::new(), "<html>".into()),
        _ => ("404 Not Found", String::new(), String::new()),
    }
}

async fn app_trusting(addr: SocketAddr, cert: reqwest::Certificate) -> TestApp {
    let config = Config::for_public_url(ORIGIN).unwrap();
    TestApp::customized(config, move |state| {
        state.cimd = CimdFetcher::customized(|b| b.add_root_certificate(cert).resolve(HOST, addr));
    })
    .await
}

fn url(addr: SocketAddr, path: &str) -> String {
    format!("https://{HOST}:{}{path}", addr.port())
}

#[tokio::test]
async fn a_good_document_identifies_the_client_and_is_cached() {
    let (addr, cert, hits) = document_server().await;
    let app = app_trusting(addr, cert).await;
    let client_id = url(addr, "/good.json");
    let (_, challenge) = pkce();
    let response = app
        .get(&authorize_url(
            &client_id,
            "https://app.example/cb",
            &challenge,
            "",
        ))
        .await;
    assert_eq!(response.status, StatusCode::SEE_OTHER, "{}", response.body);
    assert!(
        response
            .location()
            .unwrap()
            .starts_with("/consent?request=")
    );
    let cached = app
        .store()
        .get(&format!("cimd#{client_id}"), "doc")
        .await
        .unwrap()
        .expect("cached per Cache-Control");
    let ttl = cached.expires_at.unwrap() - passgate::store::now_unix();
    assert!((590..=600).contains(&ttl), "cached for max-age: {ttl}");
    // A redirect URI the document does not list is refused with a page.
    let wrong = app
        .get(&authorize_url(
            &client_id,
            "https://evil.example/cb",
            &challenge,
            "",
        ))
        .await;
    assert_eq!(wrong.status, StatusCode::BAD_REQUEST);
    assert!(wrong.location().is_none());
    assert_eq!(*hits.lock().unwrap(), ["/good.json"], "fetched once");
}

#[tokio::test]
async fn bad_documents_are_refused_with_a_page_never_a_redirect() {
    let (addr, cert, hits) = document_server().await;
    let app = app_trusting(addr, cert).await;
    let (_, challenge) = pkce();
    // How the fetch went is nobody's business but the log's: every failure
    // to get a document reads the same. What is wrong inside a document
    // its author wrote is said plainly.
    for (path, why) in [
        ("/mismatch.json", "client_id does not equal its URL"),
        ("/not-json", "not a valid JSON document"),
        ("/huge.json", FETCH_FAILED),
        ("/redirect.json", FETCH_FAILED),
        ("/slow.json", FETCH_FAILED),
        ("/missing", FETCH_FAILED),
    ] {
        let response = app
            .get(&authorize_url(
                &url(addr, path),
                "https://app.example/cb",
                &challenge,
                "",
            ))
            .await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{path}");
        assert!(response.location().is_none(), "{path}: never a redirect");
        assert!(
            response.body.contains(&passgate::pages::escape(why)),
            "{path}: the page says {why:?}: {}",
            response.body
        );
        for detail in [
            "timed out",
            "404",
            "302",
            "redirect",
            "too large",
            "trying to connect",
        ] {
            assert!(
                !response.body.contains(detail),
                "{path}: the page does not describe the connection ({detail}): {}",
                response.body
            );
        }
    }
    // Failures are remembered for a short while: asking again fetches
    // nothing and gets the same answer.
    let fetched = hits.lock().unwrap().len();
    let again = app
        .get(&authorize_url(
            &url(addr, "/missing"),
            "https://app.example/cb",
            &challenge,
            "",
        ))
        .await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    assert!(again.body.contains(&passgate::pages::escape(FETCH_FAILED)));
    assert_eq!(
        hits.lock().unwrap().len(),
        fetched,
        "answered from the store"
    );
    let cached = app
        .store()
        .get(&format!("cimd#{}", url(addr, "/missing")), "doc")
        .await
        .unwrap()
        .expect("the failure is stored");
    let ttl = cached.expires_at.unwrap() - passgate::store::now_unix();
    assert!((1..=FAILURE_CACHE_SECS).contains(&ttl), "{ttl}");
}

#[tokio::test]
async fn document_fetches_are_limited_per_caller() {
    let (addr, cert, hits) = document_server().await;
    let app = app_trusting(addr, cert).await;
    let (_, challenge) = pkce();
    let max = CIMD_FETCH_PER_ADDR.max as usize;
    // Each new URL is a fetch; the cached document is not.
    let good = url(addr, "/good.json");
    for i in 0..max {
        let client_id = if i == 0 {
            good.clone()
        } else {
            url(addr, &format!("/missing-{i}"))
        };
        let response = app
            .get(&authorize_url(
                &client_id,
                "https://app.example/cb",
                &challenge,
                "",
            ))
            .await;
        assert_ne!(response.status, StatusCode::TOO_MANY_REQUESTS, "fetch {i}");
    }
    assert_eq!(hits.lock().unwrap().len(), max);
    let over = app
        .get(&authorize_url(
            &url(addr, "/missing-over"),
            "https://app.example/cb",
            &challenge,
            "",
        ))
        .await;
    assert_eq!(over.status, StatusCode::TOO_MANY_REQUESTS, "{}", over.body);
    assert!(over.location().is_none());
    assert_eq!(hits.lock().unwrap().len(), max, "no fetch over the limit");
    // At the token endpoint the refusal is OAuth JSON with Retry-After.
    let token = app
        .post_form(
            "/token",
            &[
                ("grant_type", "refresh_token"),
                ("client_id", &url(addr, "/missing-token")),
                ("refresh_token", "x"),
            ],
        )
        .await;
    assert_eq!(
        token.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        token.body
    );
    assert_eq!(token.json()["error"], "temporarily_unavailable");
    let retry: i64 = token.headers[http::header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=CIMD_FETCH_PER_ADDR.window_secs).contains(&retry));
    // Documents already cached are still answered.
    let cached = app
        .get(&authorize_url(
            &good,
            "https://app.example/cb",
            &challenge,
            "",
        ))
        .await;
    assert_eq!(cached.status, StatusCode::SEE_OTHER, "{}", cached.body);
}

/// A proxy in passgate's environment must not carry metadata-document
/// fetches: it would connect to loopback or a cloud metadata service for
/// us, past the address checks. The listener records every request line
/// that reaches it.
#[test]
fn the_fetcher_never_uses_a_proxy_from_the_environment() {
    use std::io::{BufRead, BufReader, Write};
    let proxy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy_addr = proxy.local_addr().unwrap();
    let seen: Hits = Hits::default();
    let recorded = seen.clone();
    std::thread::spawn(move || {
        for stream in proxy.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut line = String::new();
            let _ = BufReader::new(&stream).read_line(&mut line);
            recorded.lock().unwrap().push(line.trim().to_owned());
            let _ = stream.write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n");
        }
    });
    // A target that would answer if anything connected to it, so "refused"
    // can only mean passgate never tried.
    let target = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let target_port = target.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let proxy_url = format!("http://{proxy_addr}");
    let server = support::process::Passgate::start_with_env(
        dir.path(),
        None,
        &[
            ("HTTPS_PROXY", proxy_url.as_str()),
            ("https_proxy", proxy_url.as_str()),
            ("ALL_PROXY", proxy_url.as_str()),
        ],
    );
    let (_, challenge) = pkce();
    for client_id in [
        format!("https://localhost:{target_port}/client.json"),
        format!("https://127.0.0.1:{target_port}/client.json"),
        format!("https://[::ffff:127.0.0.1]:{target_port}/client.json"),
        format!("https://[64:ff9b::7f00:1]:{target_port}/client.json"),
        "https://169.254.169.254/latest/meta-data".to_owned(),
    ] {
        let path = authorize_url(&client_id, "https://app.example/cb", &challenge, "");
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
        let mut response = String::new();
        std::io::Read::read_to_string(&mut stream, &mut response).unwrap();
        assert!(
            response.starts_with("HTTP/1.0 400") || response.starts_with("HTTP/1.1 400"),
            "{client_id}: {response}"
        );
        assert!(!response.to_ascii_lowercase().contains("\r\nlocation:"));
        assert!(
            response.contains(&passgate::pages::escape(FETCH_FAILED)),
            "{client_id}: {response}"
        );
    }
    assert_eq!(
        *seen.lock().unwrap(),
        Vec::<String>::new(),
        "nothing reached the proxy"
    );
    drop(target);
}

/// A plain-http document server on loopback, as a developer runs beside a
/// local passgate; answers every request with a document for `/client.json`.
async fn loopback_http_document_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let _ = tcp.read(&mut buf).await;
                let body = serde_json::json!({
                    "client_id": format!("http://127.0.0.1:{}/client.json", addr.port()),
                    "client_name": "Local Metadata Client",
                    "redirect_uris": ["http://127.0.0.1:6274/oauth/callback"],
                })
                .to_string();
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = tcp.write_all(head.as_bytes()).await;
                let _ = tcp.write_all(body.as_bytes()).await;
                let _ = tcp.shutdown().await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn loopback_documents_only_with_the_development_setting() {
    let addr = loopback_http_document_server().await;
    let client_id = format!("http://127.0.0.1:{}/client.json", addr.port());
    let https_loopback = format!("https://127.0.0.1:{}/client.json", addr.port());
    let redirect = "http://127.0.0.1:6274/oauth/callback";
    let (_, challenge) = pkce();

    // By default: a page that says what happened and what to do, since the
    // client keeps waiting for this sign-in.
    let app = TestApp::new().await;
    for id in [&client_id, &https_loopback] {
        let refused = app.get(&authorize_url(id, redirect, &challenge, "")).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{id}");
        assert!(refused.location().is_none(), "never a redirect");
        assert!(
            refused.body.contains("--dev-allow-loopback-cimd")
                && refused.body.contains("register dynamically")
                && refused
                    .body
                    .contains("cancel the sign-in in the application"),
            "{id}: {}",
            refused.body
        );
    }

    // With the setting: the document is fetched from loopback over http.
    let mut config = Config::for_public_url(ORIGIN).unwrap();
    config.dev_allow_loopback_cimd = true;
    let app = TestApp::customized(config, |state| {
        state.cimd = CimdFetcher::allowing_loopback();
    })
    .await;
    let response = app
        .get(&authorize_url(&client_id, redirect, &challenge, ""))
        .await;
    assert_eq!(response.status, StatusCode::SEE_OTHER, "{}", response.body);
    assert!(
        response
            .location()
            .unwrap()
            .starts_with("/consent?request=")
    );
    // Other private addresses stay refused, as does plain http elsewhere.
    for id in [
        "http://10.0.0.1/client.json",
        "http://169.254.169.254/latest/meta-data",
        "http://app.example/client.json",
    ] {
        let refused = app.get(&authorize_url(id, redirect, &challenge, "")).await;
        assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{id}");
        assert!(refused.location().is_none(), "{id}");
    }
}
