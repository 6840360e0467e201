//! AWS Signature Version 4 for requests to a backend that only AWS IAM
//! lets in: a Lambda Function URL with `AWS_IAM` auth (service `lambda`) or
//! an API Gateway API with IAM authorization (service `execute-api`).
//!
//! The signature is the official `aws-sigv4` crate's; the credentials are
//! the process's own (on Lambda, the function's role, from its environment)
//! through `aws-config`'s default chain, so the backend is reachable only by
//! whoever holds that role, which is passgate.

use std::{
    sync::Arc,
    time::{Duration, SystemTime},
};

use aws_credential_types::{
    Credentials,
    provider::{ProvideCredentials, SharedCredentialsProvider},
};
use aws_sigv4::{
    http_request::{
        PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings, sign as sign_request,
    },
    sign::v4,
};
use tokio::sync::{Mutex, OnceCell};

/// The AWS services a backend can sit behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub enum SigV4Service {
    /// A Lambda Function URL with `AWS_IAM` auth.
    #[serde(rename = "lambda")]
    Lambda,
    /// An API Gateway API whose routes use IAM authorization.
    #[serde(rename = "execute-api")]
    ExecuteApi,
}

impl SigV4Service {
    /// The service a route's `sigv4.service` names (checked at start-up).
    pub fn named(name: &str) -> Option<Self> {
        match name {
            "lambda" => Some(SigV4Service::Lambda),
            "execute-api" => Some(SigV4Service::ExecuteApi),
            _ => None,
        }
    }

    /// The signing name in the credential scope.
    pub fn signing_name(self) -> &'static str {
        match self {
            SigV4Service::Lambda => "lambda",
            SigV4Service::ExecuteApi => "execute-api",
        }
    }
}

/// Why a request could not be signed. Never carries a credential.
#[derive(Debug, thiserror::Error)]
pub enum SigV4Error {
    #[error("no AWS credentials for signing backend requests: {0}")]
    Credentials(String),
    #[error("the backend request cannot be signed: {0}")]
    Signing(String),
}

/// Credentials are refreshed this long before they expire, so a request
/// never leaves with ones that lapse on the way.
const REFRESH_BEFORE_EXPIRY: Duration = Duration::from_secs(300);

/// Signs requests for one service and region with one credentials source.
/// Cheap to clone; clones share the cached credentials.
#[derive(Clone)]
pub struct SigV4Signer {
    service: SigV4Service,
    region: String,
    provider: Arc<OnceCell<SharedCredentialsProvider>>,
    cached: Arc<Mutex<Option<Credentials>>>,
}

impl std::fmt::Debug for SigV4Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigV4Signer")
            .field("service", &self.service)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl SigV4Signer {
    /// A signer with the process's own credentials (`aws-config`'s default
    /// chain: environment, web identity, container or instance role, ...),
    /// looked up on first use.
    pub fn from_environment(service: SigV4Service, region: &str) -> Self {
        Self::build(service, region, None)
    }

    /// A signer with the given credentials source.
    pub fn with_provider(
        service: SigV4Service,
        region: &str,
        provider: SharedCredentialsProvider,
    ) -> Self {
        Self::build(service, region, Some(provider))
    }

    fn build(
        service: SigV4Service,
        region: &str,
        provider: Option<SharedCredentialsProvider>,
    ) -> Self {
        Self {
            service,
            region: region.to_owned(),
            provider: Arc::new(OnceCell::new_with(provider)),
            cached: Arc::new(Mutex::new(None)),
        }
    }

    async fn provider(&self) -> Result<&SharedCredentialsProvider, SigV4Error> {
        self.provider
            .get_or_try_init(|| async {
                let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
                config.credentials_provider().ok_or_else(|| {
                    SigV4Error::Credentials(
                        "the AWS configuration has no credentials provider".into(),
                    )
                })
            })
            .await
    }

    pub fn service(&self) -> SigV4Service {
        self.service
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// Adds `Authorization`, `X-Amz-Date`, `X-Amz-Content-Sha256` (the hash
    /// of `body`) and, with temporary credentials, `X-Amz-Security-Token`
    /// to `request`. `body` must be exactly what will be sent; headers added
    /// after this call are not covered by the signature.
    pub async fn sign<B>(
        &self,
        request: &mut http::Request<B>,
        body: &[u8],
    ) -> Result<(), SigV4Error> {
        if request.uri().host().is_none() {
            return Err(SigV4Error::Signing("the backend URL has no host".into()));
        }
        let credentials = self.credentials().await?;
        let identity = credentials.into();
        let mut settings = SigningSettings::default();
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(self.service.signing_name())
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .map_err(|e| SigV4Error::Signing(e.to_string()))?
            .into();
        let uri = request.uri().to_string();
        let headers = request
            .headers()
            .iter()
            .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?)));
        let signable = SignableRequest::new(
            request.method().as_str(),
            uri.as_str(),
            headers,
            SignableBody::Bytes(body),
        )
        .map_err(|e| SigV4Error::Signing(e.to_string()))?;
        let (instructions, _signature) = sign_request(signable, &params)
            .map_err(|e| SigV4Error::Signing(e.to_string()))?
            .into_parts();
        instructions.apply_to_request_http1x(request);
        Ok(())
    }

    /// The cached credentials, fetched again when absent or close to expiry.
    async fn credentials(&self) -> Result<Credentials, SigV4Error> {
        let mut cached = self.cached.lock().await;
        let fresh = |c: &Credentials| {
            c.expiry()
                .is_none_or(|expiry| expiry > SystemTime::now() + REFRESH_BEFORE_EXPIRY)
        };
        if let Some(credentials) = cached.as_ref().filter(|c| fresh(c)) {
            return Ok(credentials.clone());
        }
        let credentials = self
            .provider()
            .await?
            .provide_credentials()
            .await
            .map_err(|e| SigV4Error::Credentials(e.to_string()))?;
        *cached = Some(credentials.clone());
        Ok(credentials)
    }
}
