//! A SigV4 verifier that checks requests the way AWS does: it recomputes
//! the signature from the request it received (method, path, query, the
//! headers named as signed, the body, the secret it knows for the access
//! key) with the official `aws-sigv4` crate and compares.
//!
//! Use from a test file with `mod support;` (`support::sigv4`).

#![allow(dead_code)]

use std::{
    collections::HashMap,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use aws_credential_types::Credentials;
use aws_sigv4::{
    http_request::{PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings, sign},
    sign::v4,
};
use axum::http::HeaderMap;
use sha2::{Digest, Sha256};

/// What the verifier knows: the one access key's secret, and which service
/// and region it stands for.
#[derive(Clone)]
pub struct Verifier {
    pub secrets: HashMap<String, String>,
    pub service: &'static str,
    pub region: &'static str,
}

impl Verifier {
    pub fn verify(
        &self,
        method: &http::Method,
        uri: &http::Uri,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<(), String> {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .ok_or(format!("missing {name}"))
        };
        let authorization = header("authorization")?;
        let rest = authorization
            .strip_prefix("AWS4-HMAC-SHA256 ")
            .ok_or("not AWS4-HMAC-SHA256")?;
        let mut fields = HashMap::new();
        for part in rest.split(", ") {
            let (k, v) = part.split_once('=').ok_or("malformed Authorization")?;
            fields.insert(k, v);
        }
        let credential = fields.get("Credential").ok_or("no Credential")?;
        let signed_headers = fields.get("SignedHeaders").ok_or("no SignedHeaders")?;
        let scope: Vec<&str> = credential.split('/').collect();
        let [access_key, date, region, service, "aws4_request"] = scope[..] else {
            return Err(format!("malformed credential scope {credential}"));
        };
        let secret = self.secrets.get(access_key).ok_or("unknown access key")?;
        if service != self.service || region != self.region {
            return Err(format!("scope is for {service} in {region}"));
        }
        let amz_date = header("x-amz-date")?;
        let time = parse_amz_date(amz_date).ok_or("malformed X-Amz-Date")?;
        if !amz_date.starts_with(date) {
            return Err("scope date is not the request's".into());
        }
        let skew = SystemTime::now()
            .duration_since(time)
            .unwrap_or_else(|e| e.duration());
        if skew > Duration::from_secs(15 * 60) {
            return Err("request time too skewed".into());
        }
        // The payload hash the client claims must be the body's.
        let body_hash = hex(&Sha256::digest(body));
        if header("x-amz-content-sha256")? != body_hash {
            return Err("the body is not the one that was signed".into());
        }
        let signed: Vec<&str> = signed_headers.split(';').collect();
        for name in ["host", "x-amz-date"] {
            if !signed.contains(&name) {
                return Err(format!("{name} is not signed"));
            }
        }
        // The signer adds these itself from the time, body and credentials.
        let added_by_signer = ["x-amz-date", "x-amz-content-sha256", "x-amz-security-token"];
        let mut request_headers = Vec::new();
        for name in &signed {
            if !added_by_signer.contains(name) {
                request_headers.push((*name, header(name)?));
            }
        }
        let session_token = headers
            .get("x-amz-security-token")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let identity = Credentials::new(access_key, secret, session_token, None, "verifier").into();
        let mut settings = SigningSettings::default();
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(region)
            .name(service)
            .time(time)
            .settings(settings)
            .build()
            .map_err(|e| e.to_string())?
            .into();
        let host = header("host")?;
        let full_uri = format!(
            "http://{host}{}",
            uri.path_and_query().map_or("/", |p| p.as_str())
        );
        let signable = SignableRequest::new(
            method.as_str(),
            full_uri,
            request_headers.into_iter(),
            SignableBody::Bytes(body),
        )
        .map_err(|e| e.to_string())?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| e.to_string())?
            .into_parts();
        let expected = instructions
            .headers()
            .find(|(name, _)| name.eq_ignore_ascii_case("authorization"))
            .map(|(_, value)| value.to_owned())
            .ok_or("the signer made no Authorization")?;
        if expected != authorization {
            return Err("the request signature we calculated does not match".into());
        }
        Ok(())
    }
}

/// `20260101T000000Z` as a time.
fn parse_amz_date(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (hh, mm, ss) = (num(9..11)?, num(11..13)?, num(13..15)?);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    let secs = days * 86400 + hh * 3600 + mm * 60 + ss;
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
