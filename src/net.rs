//! The client's network address, for rate limits: one extractor for every
//! endpoint.

use std::{
    convert::Infallible,
    net::{IpAddr, Ipv6Addr, SocketAddr},
};

use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRef, FromRequestParts};
use http::{HeaderMap, request::Parts};

use crate::config::Config;

/// Who is calling, as far as rate limits are concerned: the TCP peer (on
/// Lambda, the Function URL's `requestContext.http.sourceIp`, which
/// `lambda.rs` turns into the peer), or with `--trust-forwarded-for` the
/// address the proxy in front of passgate appended to `X-Forwarded-For`.
/// IPv6 addresses are grouped by /64, the usual allocation to one site.
/// `None` when unknown (in-process tests): such requests share one bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub Option<IpAddr>);

impl ClientAddr {
    pub fn from_request(
        headers: &HeaderMap,
        peer: Option<SocketAddr>,
        trust_forwarded_for: bool,
    ) -> Self {
        let forwarded = trust_forwarded_for
            .then(|| appended_forwarded_for(headers))
            .flatten();
        Self(forwarded.or(peer.map(|p| p.ip())).map(grouped))
    }

    /// A stable string for rate-limit keys.
    pub fn subject(&self) -> String {
        self.0
            .map_or_else(|| "unknown".to_owned(), |ip| ip.to_string())
    }
}

/// Generic over the state so this module needs only the configuration.
impl<S> FromRequestParts<S> for ClientAddr
where
    S: Send + Sync,
    Arc<Config>: FromRef<S>,
{
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Infallible> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0);
        Ok(Self::from_request(
            &parts.headers,
            peer,
            Arc::<Config>::from_ref(state).trust_forwarded_for,
        ))
    }
}

/// The right-most `X-Forwarded-For` entry: the one the trusted proxy
/// appended. Entries to its left come from the client and can say anything.
/// A right-most entry that is not an address means the header was not set
/// by a proxy we understand, so the peer is used instead.
fn appended_forwarded_for(headers: &HeaderMap) -> Option<IpAddr> {
    let last = headers
        .get_all("x-forwarded-for")
        .iter()
        .next_back()?
        .to_str()
        .ok()?
        .rsplit(',')
        .next()?
        .trim();
    last.parse::<IpAddr>()
        .ok()
        .or_else(|| last.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

fn grouped(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(values: &[&'static str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn forwarded_for_only_when_trusted_and_right_most() {
        let peer: SocketAddr = "192.0.2.1:5555".parse().unwrap();
        let h = headers(&["198.51.100.1, 203.0.113.9"]);
        let addr = |h: &HeaderMap, trust| ClientAddr::from_request(h, Some(peer), trust).0;
        assert_eq!(addr(&h, false), Some("192.0.2.1".parse().unwrap()));
        assert_eq!(addr(&h, true), Some("203.0.113.9".parse().unwrap()));
        // What the client put in front does not change its bucket.
        let spoofed = headers(&["1.2.3.4, 5.6.7.8, 203.0.113.9"]);
        assert_eq!(addr(&spoofed, true), addr(&h, true));
        // Several header lines: the last one's last entry.
        let lines = headers(&["1.2.3.4", "203.0.113.9"]);
        assert_eq!(addr(&lines, true), Some("203.0.113.9".parse().unwrap()));
        // With a port, and garbage (falls back to the peer).
        let port = headers(&["203.0.113.9:4711"]);
        assert_eq!(addr(&port, true), Some("203.0.113.9".parse().unwrap()));
        let garbage = headers(&["203.0.113.9, unknown"]);
        assert_eq!(addr(&garbage, true), Some("192.0.2.1".parse().unwrap()));
        assert_eq!(
            ClientAddr::from_request(&HeaderMap::new(), None, true).0,
            None
        );
    }

    #[test]
    fn ipv6_is_grouped_by_prefix() {
        let peer: SocketAddr = "[2001:db8:1:2:3:4:5:6]:443".parse().unwrap();
        assert_eq!(
            ClientAddr::from_request(&HeaderMap::new(), Some(peer), false).0,
            Some("2001:db8:1:2::".parse().unwrap())
        );
        let mapped: SocketAddr = "[::ffff:192.0.2.7]:443".parse().unwrap();
        assert_eq!(
            ClientAddr::from_request(&HeaderMap::new(), Some(mapped), false).0,
            Some("192.0.2.7".parse().unwrap())
        );
    }
}
