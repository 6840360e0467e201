//! Rate limits on sign-in and enrollment, per client address and per
//! account. Passkeys cannot be guessed, so these limits are about cost and
//! noise (every attempt writes a ceremony) and about slowing down anyone
//! probing invitations. Counters live in the store, so every instance of a
//! serverless deployment sees the same counts.
//!
//! Keys:
//! - `ratelimit#<limit>#<subject hash>` / `<window number>`: counts attempts
//!   (or failures) in fixed windows, expiring with the window;
//! - `ratelimit-block#<limit>#<subject hash>` / `-`: present while a subject
//!   that failed too often is refused, until its window ends.

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;

use crate::{
    config::Config,
    crypto::token_hash,
    error::Error,
    store::{NewItem, Store, now_unix},
};

/// At most `max` attempts per `window_secs` for one subject.
#[derive(Debug, Clone, Copy)]
pub struct Limit {
    pub name: &'static str,
    pub max: u64,
    pub window_secs: i64,
}

/// Sign-in ceremonies started from one address.
pub const SIGN_IN_PER_ADDR: Limit = Limit {
    name: "signin-addr",
    max: 30,
    window_secs: 300,
};
/// Failed sign-ins with the passkeys of one account (successful ones do
/// not count, so a busy person is never locked out by their own use).
pub const SIGN_IN_FAILURES_PER_ACCOUNT: Limit = Limit {
    name: "signin-user",
    max: 10,
    window_secs: 300,
};
/// Enrollment ceremonies started from one address.
pub const ENROLL_PER_ADDR: Limit = Limit {
    name: "enroll-addr",
    max: 10,
    window_secs: 300,
};
/// Enrollment attempts with one invitation.
pub const ENROLL_PER_INVITATION: Limit = Limit {
    name: "enroll-invite",
    max: 10,
    window_secs: 300,
};

/// Client metadata documents actually fetched (not answered from the
/// cache) because of requests from one address: each is an outbound
/// request anyone can trigger.
pub const CIMD_FETCH_PER_ADDR: Limit = Limit {
    name: "cimd-addr",
    max: 30,
    window_secs: 300,
};

/// Seconds until the current window of `limit` ends, for `Retry-After`.
pub fn retry_after(limit: Limit) -> i64 {
    limit.window_secs - now_unix().rem_euclid(limit.window_secs)
}

/// Counts one attempt in the current window; returns the count and the
/// window's end.
async fn count(store: &dyn Store, limit: Limit, subject: &str) -> Result<(u64, i64), Error> {
    let window = now_unix().div_euclid(limit.window_secs);
    let expires_at = (window + 1) * limit.window_secs;
    // Subjects can be long or carry secrets (invitation hashes); hashing
    // keeps keys short and uniform.
    let pk = format!("ratelimit#{}#{}", limit.name, token_hash(subject));
    let count = store
        .increment(&pk, &window.to_string(), expires_at)
        .await?;
    Ok((count, expires_at))
}

fn refuse(limit: Limit) -> Error {
    tracing::info!(limit = limit.name, "rate limit reached");
    Error::RateLimited
}

/// Counts one attempt by `subject` and refuses it once over the limit.
pub async fn check(store: &dyn Store, limit: Limit, subject: &str) -> Result<(), Error> {
    let (count, _) = count(store, limit, subject).await?;
    if count > limit.max {
        Err(refuse(limit))
    } else {
        Ok(())
    }
}

fn block_pk(limit: Limit, subject: &str) -> String {
    format!("ratelimit-block#{}#{}", limit.name, token_hash(subject))
}

/// Refuses `subject` while it is blocked by [`record_failure`].
pub async fn check_failures(store: &dyn Store, limit: Limit, subject: &str) -> Result<(), Error> {
    if store.get(&block_pk(limit, subject), "-").await?.is_some() {
        Err(refuse(limit))
    } else {
        Ok(())
    }
}

/// Counts a failure by `subject`; at the limit, blocks it until the
/// window ends.
pub async fn record_failure(store: &dyn Store, limit: Limit, subject: &str) -> Result<(), Error> {
    let (count, window_end) = count(store, limit, subject).await?;
    if count >= limit.max {
        store
            .put(NewItem::new(block_pk(limit, subject), "-", Vec::new()).expires_at(window_end))
            .await?;
    }
    Ok(())
}

/// The client's address for rate limiting: the TCP peer, or the first
/// `X-Forwarded-For` hop when the deployment says a trusted proxy sets it.
/// IPv6 addresses are grouped by /64, the usual allocation to one site.
/// `None` when unknown (in-process tests); such requests share one bucket.
pub fn client_addr(
    headers: &HeaderMap,
    connect_info: Option<SocketAddr>,
    config: &Config,
) -> Option<IpAddr> {
    let addr = if config.trust_forwarded_for {
        forwarded_for(headers).or(connect_info.map(|s| s.ip()))
    } else {
        connect_info.map(|s| s.ip())
    }?;
    Some(match addr {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    })
}

fn forwarded_for(headers: &HeaderMap) -> Option<IpAddr> {
    headers
        .get("x-forwarded-for")?
        .to_str()
        .ok()?
        .split(',')
        .next()?
        .trim()
        .parse()
        .ok()
}

/// The subject string for an address.
pub fn addr_subject(addr: Option<IpAddr>) -> String {
    addr.map_or_else(|| "unknown".to_owned(), |a| a.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn forwarded_for_only_when_trusted() {
        let mut config = Config::for_public_url("https://mcp.example.com").unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static("203.0.113.9, 10.0.0.1"),
        );
        let peer: SocketAddr = "192.0.2.1:5555".parse().unwrap();
        assert_eq!(
            client_addr(&headers, Some(peer), &config),
            Some("192.0.2.1".parse().unwrap())
        );
        config.trust_forwarded_for = true;
        assert_eq!(
            client_addr(&headers, Some(peer), &config),
            Some("203.0.113.9".parse().unwrap())
        );
        assert_eq!(client_addr(&HeaderMap::new(), None, &config), None);
    }

    #[test]
    fn ipv6_is_grouped_by_prefix() {
        let config = Config::for_public_url("https://mcp.example.com").unwrap();
        let peer: SocketAddr = "[2001:db8:1:2:3:4:5:6]:443".parse().unwrap();
        assert_eq!(
            client_addr(&HeaderMap::new(), Some(peer), &config),
            Some("2001:db8:1:2::".parse().unwrap())
        );
    }
}
