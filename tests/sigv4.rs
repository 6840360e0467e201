//! SigV4 signing of backend requests (`passgate::sigv4`), checked the way
//! AWS checks it: a local HTTP endpoint, written here with the official
//! `aws-sigv4` crate, recomputes the signature from the request it
//! received (its method, path, query, the headers it names as signed, its
//! body and the secret it knows for the access key) and compares. A body
//! that is not the one signed, a wrong secret, a changed signed header or a
//! scope for another service or region must all be refused.
//!
//! Run with `cargo test --all-features --test sigv4`.

#![cfg(feature = "aws")]

mod support;

use std::collections::HashMap;

use aws_credential_types::{Credentials, provider::SharedCredentialsProvider};
use axum::{body::Bytes, extract::State, http::HeaderMap, response::IntoResponse};
use passgate::gateway::sigv4::{SigV4Service, SigV4Signer};
use sha2::{Digest, Sha256};
use support::sigv4::{Verifier, hex};

const ACCESS_KEY: &str = "AKIDPASSGATETEST";
const SECRET: &str = "the-secret-only-the-role-and-aws-know";
const REGION: &str = "eu-west-1";

/// The endpoint: 200 "signature ok" when the request verifies, else 403
/// with the reason (as AWS answers `InvalidSignatureException`).
async fn verify_endpoint(
    State(verifier): State<Verifier>,
    method: http::Method,
    uri: http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> impl IntoResponse {
    match verifier.verify(&method, &uri, &headers, &body) {
        Ok(()) => (http::StatusCode::OK, "signature ok".to_string()),
        Err(reason) => (http::StatusCode::FORBIDDEN, reason),
    }
}

/// Starts the verifier for `service` on a loopback port; returns its URL.
async fn start_verifier(service: &'static str) -> String {
    let verifier = Verifier {
        secrets: HashMap::from([(ACCESS_KEY.to_owned(), SECRET.to_owned())]),
        service,
        region: REGION,
    };
    let app = axum::Router::new()
        .fallback(verify_endpoint)
        .with_state(verifier);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn signer(service: SigV4Service, secret: &str, session_token: Option<&str>) -> SigV4Signer {
    let credentials = Credentials::new(
        ACCESS_KEY,
        secret,
        session_token.map(str::to_owned),
        None,
        "test",
    );
    SigV4Signer::with_provider(service, REGION, SharedCredentialsProvider::new(credentials))
}

/// Signs a POST of `signed_body` to `url` and sends `sent_body`; returns the
/// verifier's answer.
async fn send(
    signer: &SigV4Signer,
    url: &str,
    signed_body: &[u8],
    sent_body: &[u8],
    tamper: impl FnOnce(&mut http::Request<Vec<u8>>),
) -> (u16, String) {
    let mut request = http::Request::post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2025-11-25")
        .body(signed_body.to_vec())
        .unwrap();
    signer
        .sign(&mut request, signed_body)
        .await
        .expect("signing");
    *request.body_mut() = sent_body.to_vec();
    tamper(&mut request);
    let request = reqwest::Request::try_from(request).unwrap();
    let response = reqwest::Client::new().execute(request).await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

const BODY: &[u8] = br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;

#[tokio::test]
async fn a_signed_request_verifies_and_every_alteration_is_refused() {
    let url = format!("{}/mcp?x=1&a=b%20c", start_verifier("lambda").await);
    let good = signer(SigV4Service::Lambda, SECRET, None);

    assert_eq!(
        send(&good, &url, BODY, BODY, |_| ()).await,
        (200, "signature ok".into())
    );
    // Temporary credentials (a Lambda role's) carry a session token.
    let with_token = signer(SigV4Service::Lambda, SECRET, Some("session-token"));
    assert_eq!(send(&with_token, &url, BODY, BODY, |_| ()).await.0, 200);
    // An empty body (a GET or a DELETE) is signed with the empty hash.
    assert_eq!(send(&good, &url, b"", b"", |_| ()).await.0, 200);

    let other_body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#;
    assert_eq!(
        send(&good, &url, BODY, other_body, |_| ()).await,
        (403, "the body is not the one that was signed".into())
    );
    // The body and its claimed hash both changed: the signature catches it.
    let (status, reason) = send(&good, &url, BODY, other_body, |r| {
        let hash = hex(&Sha256::digest(other_body));
        r.headers_mut()
            .insert("x-amz-content-sha256", hash.parse().unwrap());
    })
    .await;
    assert_eq!(
        (status, reason.as_str()),
        (403, "the request signature we calculated does not match")
    );

    let wrong_secret = signer(SigV4Service::Lambda, "not-the-secret", None);
    assert_eq!(
        send(&wrong_secret, &url, BODY, BODY, |_| ()).await,
        (
            403,
            "the request signature we calculated does not match".into()
        )
    );

    let (status, reason) = send(&good, &url, BODY, BODY, |r| {
        r.headers_mut()
            .insert("mcp-protocol-version", "2026-07-28".parse().unwrap());
    })
    .await;
    assert_eq!(
        (status, reason.as_str()),
        (403, "the request signature we calculated does not match"),
        "a signed header was changed"
    );
    let (status, _) = send(&good, &url, BODY, BODY, |r| {
        *r.uri_mut() = r.uri().to_string().replace("x=1", "x=2").parse().unwrap();
    })
    .await;
    assert_eq!(status, 403, "the query was changed");

    let api_gateway = signer(SigV4Service::ExecuteApi, SECRET, None);
    assert_eq!(
        send(&api_gateway, &url, BODY, BODY, |_| ()).await,
        (403, "scope is for execute-api in eu-west-1".into())
    );
}

#[tokio::test]
async fn execute_api_requests_verify_for_execute_api() {
    let url = format!("{}/prod/mcp", start_verifier("execute-api").await);
    let signer = signer(SigV4Service::ExecuteApi, SECRET, None);
    assert_eq!(
        send(&signer, &url, BODY, BODY, |_| ()).await,
        (200, "signature ok".into())
    );
}

#[tokio::test]
async fn a_url_without_host_is_an_error_not_a_panic() {
    let signer = signer(SigV4Service::Lambda, SECRET, None);
    let mut request = http::Request::post("/mcp").body(Vec::<u8>::new()).unwrap();
    let error = signer.sign(&mut request, b"").await.unwrap_err();
    assert!(error.to_string().contains("no host"), "{error}");
}
