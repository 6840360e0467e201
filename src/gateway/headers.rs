//! Which headers cross the gateway: the hop-by-hop ones never do, and some
//! of the client's never reach a backend. Shared by the file's validation
//! (what an operator may configure) and the forwarding handler.

use http::HeaderName;

/// Headers that only concern one connection (RFC 9110 §7.6.1).
pub const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Client headers that never reach a backend: credentials meant for
/// passgate, the browser's origin, and anything that could pass for an
/// identity passgate vouches for.
pub fn is_client_only(name: &str) -> bool {
    const EXACT: [&str; 10] = [
        "host",
        "authorization",
        "cookie",
        "origin",
        "referer",
        "content-length",
        "forwarded",
        "x-real-ip",
        "mcp-session-id",
        "x-user",
    ];
    const PREFIXES: [&str; 8] = [
        "x-forwarded-",
        "x-passgate-",
        "x-auth-request-",
        "x-pomerium-",
        "cf-access-",
        "x-remote-",
        "remote-",
        "proxy-",
    ];
    EXACT.contains(&name)
        || HOP_BY_HOP.contains(&name)
        || PREFIXES.iter().any(|p| name.starts_with(p))
}

/// Headers an operator cannot configure as static credentials: passgate
/// sets them itself, or they belong to the connection or the protocol.
pub fn is_reserved_header(name: &HeaderName) -> bool {
    let name = name.as_str();
    (is_client_only(name) && name != "authorization" && name != "cookie")
        || matches!(
            name,
            "content-type" | "accept" | "mcp-protocol-version" | "mcp-method" | "mcp-name"
        )
}
