//! Backend sessions without sticky routing: the client holds the backend's
//! `Mcp-Session-Id` sealed with the route, the account and an expiry under
//! a key derived from the master key, so any instance can open it. The
//! route and the account are the seal's authenticated context, so an id
//! moved to another route or presented by another account does not open.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};

use crate::{crypto::MasterKey, store::now_unix};

const PURPOSE: &str = "gateway-session";
/// How long a client may keep using one backend session.
pub const SESSION_TTL_SECS: i64 = 24 * 3600;
/// Backend session ids longer than this are not sealed (and the response
/// is refused): the spec's ids are short visible-ASCII strings.
const MAX_BACKEND_ID: usize = 1024;

#[derive(Serialize, Deserialize)]
struct Sealed {
    /// The backend's own session id.
    s: String,
    /// Unix seconds after which the id is refused.
    exp: i64,
}

fn context(route: &str, user_id: &str) -> Vec<u8> {
    format!("{route}\n{user_id}").into_bytes()
}

/// The id the client gets for the backend's `backend_id`.
pub fn seal(key: &MasterKey, route: &str, user_id: &str, backend_id: &str) -> Option<String> {
    if backend_id.is_empty() || backend_id.len() > MAX_BACKEND_ID {
        return None;
    }
    let plaintext = serde_json::to_vec(&Sealed {
        s: backend_id.to_owned(),
        exp: now_unix() + SESSION_TTL_SECS,
    })
    .ok()?;
    Some(URL_SAFE_NO_PAD.encode(key.seal(PURPOSE, &context(route, user_id), &plaintext)))
}

/// The backend's session id, if `client_id` is one of ours for this route
/// and account and has not expired.
pub fn open(key: &MasterKey, route: &str, user_id: &str, client_id: &str) -> Option<String> {
    let sealed = URL_SAFE_NO_PAD.decode(client_id.trim()).ok()?;
    let plaintext = key.open(PURPOSE, &context(route, user_id), &sealed).ok()?;
    let sealed: Sealed = serde_json::from_slice(&plaintext).ok()?;
    (sealed.exp > now_unix()).then_some(sealed.s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_opens_only_for_its_route_and_account() {
        let key = MasterKey::from_secret(&"k".repeat(32)).unwrap();
        let id = seal(&key, "/mcp/a", "u1", "backend-123").unwrap();
        assert!(!id.contains("backend-123"));
        assert_eq!(
            open(&key, "/mcp/a", "u1", &id).as_deref(),
            Some("backend-123")
        );
        assert_eq!(open(&key, "/mcp/b", "u1", &id), None);
        assert_eq!(open(&key, "/mcp/a", "u2", &id), None);
        let other = MasterKey::from_secret(&"j".repeat(32)).unwrap();
        assert_eq!(open(&other, "/mcp/a", "u1", &id), None);
        let mut tampered = id.into_bytes();
        let last = tampered.len() - 2;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            open(&key, "/mcp/a", "u1", &String::from_utf8(tampered).unwrap()),
            None
        );
        assert_eq!(open(&key, "/mcp/a", "u1", "backend-123"), None);
    }

    #[test]
    fn an_expired_id_is_refused() {
        let key = MasterKey::from_secret(&"k".repeat(32)).unwrap();
        let plaintext = serde_json::to_vec(&Sealed {
            s: "b".into(),
            exp: now_unix() - 1,
        })
        .unwrap();
        let id = URL_SAFE_NO_PAD.encode(key.seal(PURPOSE, &context("/mcp", "u"), &plaintext));
        assert_eq!(open(&key, "/mcp", "u", &id), None);
    }
}
