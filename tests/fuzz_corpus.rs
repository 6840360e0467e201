//! The fuzz targets' inputs as regression tests, on stable Rust: every file
//! of `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/` goes through
//! the same entry point the fuzz target calls (`passgate::fuzzing`), whose
//! checks panic on a 5xx, a malformed error, a redirect to an unregistered
//! URI or a made-up token let through. Each target must have seeds, so this
//! cannot pass by finding nothing.

use std::path::{Path, PathBuf};

use passgate::fuzzing::{Harness, Target};

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_corpus_and_regression_input_passes_its_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    // Every directory names a target: a misspelt one would be skipped.
    for kind in ["corpus", "regressions"] {
        // `regressions/` may hold no input yet (git keeps no empty folder).
        let Ok(entries) = std::fs::read_dir(root.join(kind)) else {
            assert_eq!(kind, "regressions", "fuzz/{kind} is missing");
            continue;
        };
        for entry in entries {
            let entry = entry.unwrap();
            if !entry.file_type().unwrap().is_dir() {
                continue;
            }
            let name = entry.file_name().into_string().unwrap();
            assert!(
                Target::from_name(&name).is_some(),
                "fuzz/{kind}/{name} is not a fuzz target"
            );
        }
    }
    let harness = Harness::new();
    for target in Target::ALL {
        let source = root.join(format!("fuzz_targets/{}.rs", target.name()));
        assert!(source.exists(), "no fuzz target {}", source.display());
        let seeds = inputs(&root.join("corpus").join(target.name()));
        assert!(
            seeds.len() >= 3,
            "fuzz/corpus/{} has {} inputs; seed it from the tests",
            target.name(),
            seeds.len()
        );
        let regressions = inputs(&root.join("regressions").join(target.name()));
        for file in seeds.iter().chain(&regressions) {
            let data = std::fs::read(file).unwrap();
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                harness.run(target, &data)
            }));
            assert!(
                outcome.is_ok(),
                "{} failed on {}",
                target.name(),
                file.display()
            );
        }
    }
}

/// The seeds reach past the first check of each parser: the harness's
/// fixtures work, so the fuzzer starts from inputs the server accepts.
#[test]
fn the_harness_fixtures_reach_the_happy_paths() {
    use http::StatusCode;
    use passgate::fuzzing::{CODE, CODE_VERIFIER, PUBLIC_CLIENT};
    let harness = Harness::new();
    let form = format!(
        "\ngrant_type=authorization_code&code={CODE}&code_verifier={CODE_VERIFIER}\
         &client_id={PUBLIC_CLIENT}&redirect_uri=http%3A%2F%2F127.0.0.1%2Fcallback"
    );
    // The stored code redeems (the target checks the token fields), and a
    // second redemption within the grace window gets the same answer.
    assert_eq!(
        harness.run(Target::Token, form.as_bytes()),
        Some(StatusCode::OK)
    );
    assert_eq!(
        harness.run(Target::Token, form.as_bytes()),
        Some(StatusCode::OK)
    );
    let authorize = format!(
        "response_type=code&client_id={PUBLIC_CLIENT}&redirect_uri=http://127.0.0.1:5555/callback\
         &code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256&state=s"
    );
    assert_eq!(
        harness.run(Target::Authorize, authorize.as_bytes()),
        Some(StatusCode::SEE_OTHER)
    );
    let registration = br#"{"client_name":"x","redirect_uris":["http://127.0.0.1/cb"]}"#;
    assert_eq!(
        harness.run(Target::Register, registration),
        Some(StatusCode::CREATED)
    );
    let call = b"\n\n{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/list\"}";
    assert_eq!(harness.run(Target::Mcp, call), Some(StatusCode::OK));
    assert_eq!(
        harness.run(Target::Bearer, b"Bearer eyJhbGciOiJFUzI1NiJ9.e30.c2ln"),
        Some(StatusCode::UNAUTHORIZED)
    );
}

mod support;

/// Writes the seeds that need a real server and authenticator: WebAuthn
/// registration and assertion responses made by the tests' software
/// authenticator (with the ceremony cookie on the first line), and access
/// tokens signed by a test app (whose key the fuzz harness does not know).
/// Run by hand after a change to the wire formats:
/// `cargo test --all-features --test fuzz_corpus -- --ignored`.
#[tokio::test]
#[ignore = "writes fuzz/corpus; run by hand"]
async fn write_generated_seeds() {
    use passgate::accounts::users::Role;
    use serde_json::json;
    use support::{Browser, ORIGIN, SoftAuthenticator, TestApp};
    assert_eq!(ORIGIN, passgate::fuzzing::ORIGIN, "seeds carry the origin");
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    let write = |target: &str, name: &str, data: &[u8]| {
        let dir = corpus.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), data).unwrap();
    };
    let app = TestApp::new().await;
    let device = SoftAuthenticator::new();
    let mut browser = Browser::new();
    let token = app.invite("alice", Role::Admin).await;
    let options = browser
        .post_json(
            &app,
            "/enroll/passkey/options",
            &json!({"token": token, "displayName": "Alice"}),
        )
        .await;
    let created = device.create(ORIGIN, options.json()).await.unwrap();
    let cookie = browser.cookie_header().unwrap();
    write(
        "passkey_registration",
        "generated-enroll",
        format!("{cookie}\n{created}").as_bytes(),
    );
    write(
        "passkey_registration",
        "generated-no-cookie",
        format!("\n{created}").as_bytes(),
    );
    let finish = browser
        .post_json(&app, "/enroll/passkey/finish", &created)
        .await;
    assert!(finish.status.is_success(), "{}", finish.body);

    let mut other = Browser::new();
    let options = other
        .post_json(&app, "/login/passkey/options", &json!({}))
        .await;
    let assertion = device.get(ORIGIN, options.json()).await.unwrap();
    let cookie = other.cookie_header().unwrap();
    write(
        "passkey_assertion",
        "generated-sign-in",
        format!("{cookie}\n{assertion}").as_bytes(),
    );
    write("cookies", "generated-binding", cookie.as_bytes());
    let session = browser.cookie_header().unwrap();
    write("cookies", "generated-session", session.as_bytes());

    let me = app
        .signed_in(&browser.session_cookie().unwrap())
        .await
        .unwrap();
    let (_, access) = app.grant_and_token(&me.user_id, "client", "mcp").await;
    write(
        "bearer",
        "generated-token",
        format!("Bearer {access}").as_bytes(),
    );
    // The same token with its signature cut off, and lower-case scheme.
    let unsigned = access.rsplit_once('.').unwrap().0;
    write(
        "bearer",
        "generated-unsigned",
        format!("bearer {unsigned}.").as_bytes(),
    );
}
