//! The original system lost about one login in ten because its OAuth state
//! lived in one process's memory. Here two `passgate serve` processes share
//! one SQLite file, and every request of 200 complete sign-in flows goes to
//! the other instance than the one before: every flow must succeed. (The
//! same flows over two Lambda functions sharing one DynamoDB table are in
//! `tests/lambda.rs`.)

mod support;

use support::{
    authenticator::SoftAuthenticator,
    process::{Passgate, free_port, invite},
    remote::{RemoteBrowser, alternating_sign_in_flows, enroll},
};

const FLOWS: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_every_piece_of_state() {
    let dir = tempfile::tempdir().unwrap();
    // Both instances are one service: one public URL, one issuer.
    let public = format!("http://localhost:{}", free_port());
    // 200 people sign in within seconds: they come from 200 addresses, as
    // they would through a proxy, so the per-address sign-in limit holds.
    let a = Passgate::start(dir.path(), Some(&public), &["--trust-forwarded-for"]);
    let b = Passgate::start(dir.path(), Some(&public), &["--trust-forwarded-for"]);
    let (a, b) = (a.local(), b.local());

    let device = SoftAuthenticator::new();
    let link = invite(dir.path(), &public, "alice", true);
    let mut first = RemoteBrowser::new(&public);
    enroll(&mut first, &a, &device, &link, "Alice").await;

    alternating_sign_in_flows(&public, (&a, &b), &device, FLOWS).await;
}
