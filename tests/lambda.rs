//! passgate on the Lambda runtime path, for real: the `passgate` binary
//! started as a Lambda function (no arguments, Lambda environment) under
//! `cargo lambda watch`'s runtime API and Function URL emulation
//! (`support/lambda.rs`), with its state in DynamoDB and its master key and
//! settings in Secrets Manager, both served by moto (`support/moto.rs`).
//!
//! Run with `cargo test --all-features --test lambda`.

#![cfg(all(feature = "lambda", feature = "dynamodb"))]

mod support;

use std::process::{Command, Output};

use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use passgate::{
    crypto::MasterKey,
    store::{Store, dynamodb::DynamoStore, now_unix},
};
use serde_json::{Value, json};
use support::{
    authenticator::SoftAuthenticator,
    lambda,
    moto::{self, REGION},
    remote::{RemoteBrowser, alternating_sign_in_flows, enroll},
};

const TABLE: &str = "passgate-lambda";
const MASTER_KEY_SECRET: &str = "passgate-test/master-key";
const SETTINGS_SECRET: &str = "passgate-test/settings";

fn credentials() -> Credentials {
    Credentials::new("testing", "testing", None, None, "passgate-tests")
}

/// The table, created on moto; the test reads what passgate wrote.
async fn table(moto: &moto::Moto) -> DynamoStore {
    moto.dynamo_store(TABLE).await
}

/// Creates a secret in moto's Secrets Manager and returns its ARN.
async fn put_secret(moto: &moto::Moto, name: &str, value: &str) -> String {
    let config = aws_sdk_secretsmanager::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(moto.endpoint())
        .credentials_provider(credentials())
        .build();
    let client = aws_sdk_secretsmanager::Client::from_conf(config);
    let created = client
        .create_secret()
        .name(name)
        .secret_string(value)
        .send()
        .await
        .unwrap_or_else(|e| panic!("creating the secret {name} on moto: {e:?}"));
    created.arn.expect("the secret's ARN")
}

/// The AWS environment of a function that talks to moto.
fn aws_env(moto: &moto::Moto) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", moto.endpoint()),
        ("AWS_REGION", REGION.into()),
        ("AWS_ACCESS_KEY_ID", "testing".into()),
        ("AWS_SECRET_ACCESS_KEY", "testing".into()),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn passgate_serves_function_url_events_with_dynamodb_and_secrets_manager() {
    let moto = moto::Moto::start();
    let store = table(&moto).await;
    let mut lambda = lambda::Lambda::start();
    let public_url = lambda.base_url();

    let master_key = MasterKey::generate_secret();
    let master_key_arn = put_secret(&moto, MASTER_KEY_SECRET, &master_key).await;
    // The public URL reaches passgate only through this secret. The table
    // name in it loses to the environment's, which the store check proves.
    let settings = json!({
        "PASSGATE_PUBLIC_URL": public_url,
        "PASSGATE_DYNAMODB_TABLE": "not-the-table",
        "PASSGATE_LOG_FORMAT": "json",
    });
    put_secret(&moto, SETTINGS_SECRET, &settings.to_string()).await;

    let mut env = aws_env(&moto);
    env.extend([
        ("PASSGATE_STORE", "dynamodb".to_string()),
        ("PASSGATE_DYNAMODB_TABLE", TABLE.into()),
        ("PASSGATE_MASTER_KEY_SECRET", master_key_arn),
        ("PASSGATE_SETTINGS_SECRET", SETTINGS_SECRET.into()),
    ]);
    lambda.start_function(env);
    // Printed, never asserted: it depends on the machine and its load.
    println!(
        "lambda init time (process start to first served request, debug build): {:?}",
        lambda.init_time()
    );

    let http = reqwest::Client::new();
    let get = |path: &str| http.get(format!("{public_url}{path}")).send();

    let response = get("/healthz").await.expect("GET /healthz");
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "ok");

    // The issuer is the public URL from the settings secret.
    let response = get("/.well-known/oauth-authorization-server")
        .await
        .expect("authorization server metadata");
    assert_eq!(response.status(), 200);
    let metadata: Value = response.json().await.unwrap();
    assert_eq!(metadata["issuer"], public_url, "{metadata}");
    assert_eq!(
        metadata["registration_endpoint"],
        format!("{public_url}/register")
    );
    let response = get("/.well-known/oauth-protected-resource/mcp")
        .await
        .expect("protected resource metadata");
    assert_eq!(response.status(), 200);
    let resource: Value = response.json().await.unwrap();
    assert_eq!(resource["resource"], format!("{public_url}/mcp"));
    assert_eq!(resource["authorization_servers"], json!([public_url]));
    let response = get("/.well-known/jwks.json").await.expect("JWKS");
    let jwks: Value = response.json().await.unwrap();
    assert_eq!(jwks["keys"].as_array().map(Vec::len), Some(1), "{jwks}");

    // Dynamic registration, stored in the environment's table.
    let response = http
        .post(format!("{public_url}/register"))
        .json(&json!({
            "client_name": "Claude",
            "redirect_uris": ["https://claude.ai/api/mcp/auth_callback"],
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
            "token_endpoint_auth_method": "none",
        }))
        .send()
        .await
        .expect("POST /register");
    assert_eq!(response.status(), 201, "{}", lambda.output());
    let client: Value = response.json().await.unwrap();
    assert!(
        client["client_id"]
            .as_str()
            .is_some_and(|id| id.len() >= 16)
    );
    // The registration rate limit counted the Function URL's source IP
    // (127.0.0.1 in the emulation): the adapter passed it on as ConnectInfo.
    let window = now_unix() / 3600;
    let counter = format!(
        "ratelimit#register#{}",
        passgate::crypto::token_hash("127.0.0.1")
    );
    let counted = store
        .get(&counter, &window.to_string())
        .await
        .expect("reading the rate-limit counter");
    assert!(
        counted.is_some(),
        "no rate-limit counter for 127.0.0.1 in the table\n{}",
        lambda.output()
    );

    // MCP without a token: the challenge points at the metadata.
    let response = http
        .post(format!("{public_url}/mcp"))
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}))
        .send()
        .await
        .expect("POST /mcp");
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.headers()["www-authenticate"],
        format!(
            r#"Bearer resource_metadata="{public_url}/.well-known/oauth-protected-resource/mcp", scope="mcp""#
        )
        .as_str()
    );

    assert!(lambda.function_is_running(), "{}", lambda.output());
    // JSON logs (from the settings secret) without the secrets' values.
    let log = lambda.function_output();
    assert!(
        log.contains("\"passgate is serving Lambda invocations\""),
        "{log}"
    );
    assert!(
        !log.contains(&master_key),
        "the master key was logged: {log}"
    );
    // An empty table: the first administrator's link is in the function's
    // output, where the deployment docs tell operators to look for it.
    assert!(log.contains("passgate has no users yet"), "{log}");
}

/// The original system's failure, reproduced on its own platform and fixed:
/// two Lambda functions, each behind its own emulated Function URL, share
/// one DynamoDB table. The first administrator enrolls from the link in a
/// function's log; then 200 complete sign-in flows (passkey ceremony,
/// consent, code, token, MCP call, refresh) alternate between the two
/// functions request by request, and every one must succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_lambda_functions_on_one_table_complete_200_alternating_sign_ins() {
    const FLOWS: usize = 200;
    let moto = moto::Moto::start();
    table(&moto).await;
    let mut a = lambda::Lambda::start();
    let mut b = lambda::Lambda::start();
    // One service: the first Function URL is the public URL of both.
    let public = a.base_url();
    let mut env = aws_env(&moto);
    env.extend([
        ("PASSGATE_STORE", "dynamodb".to_string()),
        ("PASSGATE_DYNAMODB_TABLE", TABLE.into()),
        ("PASSGATE_MASTER_KEY", MasterKey::generate_secret()),
        ("PASSGATE_PUBLIC_URL", public.clone()),
        // Each flow comes from its own address, as 200 people would.
        ("PASSGATE_TRUST_FORWARDED_FOR", "true".into()),
    ]);
    a.start_function(env.clone());
    b.start_function(env);

    // Only the first function to start on the empty table invites.
    let link = first_admin_link(&a.function_output(), &public)
        .unwrap_or_else(|| panic!("no first-admin link\n{}", a.output()));
    let b_log = b.function_output();
    assert_eq!(first_admin_link(&b_log, &public), None, "{b_log}");
    assert!(b_log.contains("printed at an earlier start"), "{b_log}");

    let device = SoftAuthenticator::new();
    let mut first = RemoteBrowser::new(&public);
    enroll(&mut first, &b.base_url(), &device, &link, "Alice").await;

    let (url_a, url_b) = (a.base_url(), b.base_url());
    alternating_sign_in_flows(&public, (&url_a, &url_b), &device, FLOWS).await;
    assert!(a.function_is_running(), "{}", a.output());
    assert!(b.function_is_running(), "{}", b.output());
}

/// The enrollment link in a function's first-start banner.
fn first_admin_link(output: &str, public: &str) -> Option<String> {
    output
        .split_whitespace()
        .find(|word| word.starts_with(public) && word.contains("token="))
        .map(str::to_owned)
}

/// Runs the binary as Lambda would, without the emulator: start-up fails
/// before the runtime is ever asked for an event.
fn run_init<'a>(env: impl IntoIterator<Item = (&'a str, &'a str)>) -> Output {
    Command::new(env!("CARGO_BIN_EXE_passgate"))
        .env_clear()
        .env("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9")
        .envs(env)
        .output()
        .expect("running passgate")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn init_fails_clearly_when_the_settings_secret_is_missing_or_wrong() {
    let moto = moto::Moto::start();
    let secret_value = "hunter2-a-value-that-must-never-be-printed";
    put_secret(
        &moto,
        SETTINGS_SECRET,
        &json!({"PASSGATE_MASTER_KEY": secret_value, "AWS_REGION": "eu-west-1"}).to_string(),
    )
    .await;
    let aws = aws_env(&moto);
    let with = |name: &'static str| {
        let aws = aws.iter().map(|(k, v)| (*k, v.as_str()));
        aws.chain([("PASSGATE_SETTINGS_SECRET", name)])
    };

    let output = run_init(with("passgate-test/absent"));
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(
        err.contains("cannot read the Secrets Manager secret passgate-test/absent"),
        "{err}"
    );

    let output = run_init(with(SETTINGS_SECRET));
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(err.contains("sets AWS_REGION"), "{err}");
    assert!(
        !err.contains(secret_value),
        "a secret value was printed: {err}"
    );
}

#[test]
fn dynamodb_without_a_table_or_a_master_key_fails_clearly() {
    let output = run_init([("PASSGATE_STORE", "dynamodb")]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("set PASSGATE_DYNAMODB_TABLE"),
        "{}",
        stderr(&output)
    );

    let output = run_init([
        ("PASSGATE_STORE", "dynamodb"),
        ("PASSGATE_DYNAMODB_TABLE", TABLE),
    ]);
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(err.contains("needs the master key"), "{err}");
    assert!(err.contains("PASSGATE_MASTER_KEY_SECRET"), "{err}");
}
