//! Cookie plumbing for the session and ceremony cookies. Over https every
//! cookie gets the `__Host-` prefix and `Secure` (the browser then refuses
//! it from any other host or path); over plain http, which only makes sense
//! for `http://localhost`, browsers would drop such cookies, so both are left
//! out. Cookies are always `HttpOnly` and `Path=/`.

use http::{HeaderMap, HeaderValue, header};

use crate::config::Config;

/// The cookie's name for this deployment.
pub fn name(config: &Config, base: &str) -> String {
    if config.is_https() {
        format!("__Host-{base}")
    } else {
        base.to_owned()
    }
}

/// A `Set-Cookie` value. Values are base64url tokens made by us, so they
/// need no quoting.
pub fn set(config: &Config, base: &str, value: &str, max_age: i64, same_site: &str) -> HeaderValue {
    let secure = if config.is_https() { "; Secure" } else { "" };
    let cookie = format!(
        "{}={value}; Path=/; HttpOnly; SameSite={same_site}; Max-Age={max_age}{secure}",
        name(config, base)
    );
    HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// A `Set-Cookie` value that deletes the cookie.
pub fn clear(config: &Config, base: &str) -> HeaderValue {
    set(config, base, "", 0, "Lax")
}

/// The value of the named cookie in the request, if present.
pub fn get(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_prefix_and_secure_only_over_https() {
        let https = Config::for_public_url("https://mcp.example.com").unwrap();
        let v = set(&https, "passgate_session", "abc", 60, "Lax");
        assert_eq!(
            v.to_str().unwrap(),
            "__Host-passgate_session=abc; Path=/; HttpOnly; SameSite=Lax; Max-Age=60; Secure"
        );
        let http = Config::for_public_url("http://localhost:8080").unwrap();
        let v = set(&http, "passgate_session", "abc", 60, "Lax");
        assert_eq!(
            v.to_str().unwrap(),
            "passgate_session=abc; Path=/; HttpOnly; SameSite=Lax; Max-Age=60"
        );
    }

    #[test]
    fn reads_one_cookie_among_many() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1; b=2"));
        h.append(header::COOKIE, HeaderValue::from_static("c=3"));
        assert_eq!(get(&h, "b").as_deref(), Some("2"));
        assert_eq!(get(&h, "c").as_deref(), Some("3"));
        assert_eq!(get(&h, "d"), None);
    }
}
