//! passgate in a real browser: headless Chromium (Debian's `chromium`) with
//! the DevTools virtual authenticator, driven by `tests/js/browser.mjs`
//! (playwright-core). Enrollment, sign-out, passkey sign-in from autofill and
//! from the button, consent for an MCP client, the client on the account page
//! and its disconnection, which kills its refresh and access tokens; and a
//! gateway route with personal keys in front of the TypeScript SDK's server:
//! the client is sent to the account page, the person saves, replaces and
//! removes their key there, and the backend receives exactly that key.
//!
//! Screenshots of every page visited are left in
//! `target/browser-artifacts/`; look at them after changing a page.

mod support;

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use support::{
    backends::{Backend, gateway_file},
    process::{Passgate, free_port, invite, node},
};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Where the script finds Chromium (it honours the same variable).
fn chromium() -> String {
    let path = std::env::var("PASSGATE_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&path).exists(),
        "Chromium is missing at {path}: run scripts/install-test-deps.sh (it installs Debian's chromium package)"
    );
    path
}

#[test]
fn passkeys_consent_and_revocation_in_chromium() {
    let chromium = chromium();
    let node = node();
    assert!(
        Path::new(ROOT)
            .join("tests/js/node_modules/playwright-core")
            .exists(),
        "playwright-core is missing from tests/js/node_modules: run scripts/install-test-deps.sh"
    );
    let artifacts = Path::new(ROOT).join("target/browser-artifacts");
    let _ = std::fs::remove_dir_all(&artifacts);
    std::fs::create_dir_all(&artifacts).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let public = format!("http://localhost:{port}");
    let backend = Backend::start_keyed(&public, "authorization");
    let gateway = gateway_file(
        dir.path(),
        &[(
            "keyed",
            backend.gateway_url(),
            "[route.personal_key]\nheader = \"Authorization\"\nprefix = \"Bearer \"\nlabel = \"Example API token\"\nhelp_url = \"https://tokens.example.com/new\"",
        )],
    );
    let server = Passgate::start_on(
        port,
        dir.path(),
        None,
        &["--gateway-config", gateway.to_str().unwrap()],
        "warn",
        &[],
    );
    let link = invite(dir.path(), &server.base, "alice", true);

    let started = Instant::now();
    let mut child = Command::new(node)
        .arg(format!("{ROOT}/tests/js/browser.mjs"))
        .arg(&server.base)
        .arg(&link)
        .arg(&artifacts)
        .arg(format!("{public}/mcp/keyed"))
        .current_dir(format!("{ROOT}/tests/js"))
        .env("PASSGATE_CHROMIUM", &chromium)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start node tests/js/browser.mjs");
    // The script bounds itself (two minutes); this bounds a hung Node.
    let deadline = started + Duration::from_secs(180);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report = || {
        format!(
            "browser.mjs stdout:\n{stdout}\nstderr:\n{stderr}\npassgate's output:\n{}\nthe keyed backend's output:\n{}\nscreenshots: {}",
            server.output(),
            backend.output(),
            artifacts.display()
        )
    };
    assert!(out.status.success(), "the browser run failed\n{}", report());
    let last: serde_json::Value = stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("no JSON result line\n{}", report()));
    assert_eq!(last["ok"], true, "{}", report());
    let requests = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(backend.assert_clean());
    assert!(requests > 0, "the keyed backend was reached");
    eprintln!(
        "browser run: {:.1} s, {} screenshots in {}",
        started.elapsed().as_secs_f64(),
        last["screenshots"].as_array().map_or(0, Vec::len),
        artifacts.display()
    );
}
