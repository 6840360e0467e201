//! AWS at start-up (feature `aws`, enabled by `dynamodb` and `lambda`):
//! reading AWS Secrets Manager secrets, the master key
//! (`PASSGATE_MASTER_KEY_SECRET`) and the settings secret
//! (`PASSGATE_SETTINGS_SECRET`). Read once per process (or Lambda execution
//! environment), never per request. Region, credentials and endpoint come
//! from the usual AWS environment (`AWS_REGION`, `AWS_ENDPOINT_URL`, ...).
//!
//! Only `GetSecretValue` is called. Secret values are returned to the
//! caller and never logged; errors name the secret, not its value.

use std::time::Duration;

use anyhow::{Context, bail};
use aws_sdk_secretsmanager::{
    Client,
    config::{BehaviorVersion, timeout::TimeoutConfig},
    error::DisplayErrorContext,
};
use tokio::sync::OnceCell;

/// One client for the process: the settings secret and the master key are
/// read through the same connection and credentials.
static CLIENT: OnceCell<Client> = OnceCell::const_new();

async fn client() -> anyhow::Result<&'static Client> {
    CLIENT
        .get_or_try_init(|| async {
            let shared = aws_config::defaults(BehaviorVersion::latest()).load().await;
            if shared.region().is_none() {
                bail!("no AWS region configured for Secrets Manager: set AWS_REGION");
            }
            let config = aws_sdk_secretsmanager::config::Builder::from(&shared)
                .timeout_config(
                    TimeoutConfig::builder()
                        .connect_timeout(Duration::from_secs(3))
                        .operation_attempt_timeout(Duration::from_secs(5))
                        .operation_timeout(Duration::from_secs(15))
                        .build(),
                )
                .build();
            Ok(Client::from_conf(config))
        })
        .await
}

/// The string value (`SecretString`) of the secret with this name or ARN.
pub async fn secret_string(id: &str) -> anyhow::Result<String> {
    let output = client()
        .await?
        .get_secret_value()
        .secret_id(id)
        .send()
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot read the Secrets Manager secret {id}: {}",
                DisplayErrorContext(&e)
            )
        })?;
    output.secret_string.with_context(|| {
        format!("the secret {id} has no string value (binary secrets are not supported)")
    })
}
