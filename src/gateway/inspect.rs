//! What passgate reads of a forwarded message before deciding on it: the
//! JSON-RPC method, id and tool name from the body, and on 2026-07-28 the
//! headers that must agree with the body (`MCP-Protocol-Version`,
//! `Mcp-Method`, `Mcp-Name`). A mismatch is refused before any policy
//! decision, and policy is decided on the body, never on a header.

use base64::{Engine, engine::general_purpose::STANDARD};
use http::HeaderMap;
use rmcp::model::{CallToolRequestParams, GetPromptRequestParams, ReadResourceRequestParams};
use serde::Deserialize;
use serde_json::Value;

const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
/// The first revision with per-request protocol versions and no sessions.
const PER_REQUEST_ERA: &str = "2026-07-28";

/// A forwarded POST's message, as far as passgate needs it.
#[derive(Debug, Default)]
pub struct Message {
    /// `None` for a response (a client's answer to a server request).
    pub method: Option<String>,
    pub id: Option<Value>,
    /// The tool of a `tools/call`.
    pub tool: Option<String>,
    /// The request speaks 2026-07-28 (or later).
    pub per_request_era: bool,
}

/// Why a message was refused before forwarding.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    NotJson,
    NotJsonRpc,
    /// A header disagrees with the body (the reason names headers, never values).
    HeaderMismatch(&'static str),
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    jsonrpc: Option<String>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    id: Option<Value>,
    #[serde(default)]
    params: Option<Value>,
}

/// The JSON-RPC id of a body that is one message, if it has one.
pub fn request_id(body: &[u8]) -> Option<Value> {
    serde_json::from_slice::<Envelope>(body).ok()?.id
}

/// Reads the body and checks the headers against it.
pub fn inspect(headers: &HeaderMap, body: &[u8]) -> Result<Message, Refused> {
    // One message per POST (batches left JSON-RPC for MCP in 2025-06-18):
    // policy is decided per message. Read in one pass; a repeated member is
    // refused, as it could be read differently by the backend. Only a body
    // that fails is parsed again, to tell "not JSON" from "not JSON-RPC".
    let envelope: Envelope =
        serde_json::from_slice(body).map_err(|_| {
            match serde_json::from_slice::<serde::de::IgnoredAny>(body) {
                Ok(_) => Refused::NotJsonRpc,
                Err(_) => Refused::NotJson,
            }
        })?;
    if envelope.jsonrpc.as_deref() != Some("2.0") {
        return Err(Refused::NotJsonRpc);
    }
    let header_version = single(headers, "mcp-protocol-version")?;
    let body_version = envelope
        .params
        .as_ref()
        .and_then(|p| p.get("_meta"))
        .and_then(|m| m.get(META_PROTOCOL_VERSION));
    let body_version = match body_version {
        None => None,
        Some(Value::String(v)) => Some(v.as_str()),
        Some(_) => {
            return Err(Refused::HeaderMismatch(
                "the _meta protocol version is not a string",
            ));
        }
    };
    let per_request_era =
        body_version.is_some() || header_version.is_some_and(|v| v >= PER_REQUEST_ERA);
    if per_request_era && envelope.method.is_some() {
        match (header_version, body_version) {
            (None, _) => {
                return Err(Refused::HeaderMismatch(
                    "the MCP-Protocol-Version header is required",
                ));
            }
            (Some(h), Some(b)) if h != b => {
                return Err(Refused::HeaderMismatch(
                    "MCP-Protocol-Version does not match the body's _meta protocol version",
                ));
            }
            _ => {}
        }
    }
    let mut message = Message {
        method: envelope.method,
        id: envelope.id,
        tool: None,
        per_request_era,
    };
    let Some(method) = message.method.as_deref() else {
        return Ok(message);
    };
    match single(headers, "mcp-method")? {
        None if per_request_era => {
            return Err(Refused::HeaderMismatch("the Mcp-Method header is required"));
        }
        Some(h) if h != method => {
            return Err(Refused::HeaderMismatch(
                "Mcp-Method does not match the body's method",
            ));
        }
        _ => {}
    }
    let params = envelope.params.unwrap_or(Value::Null);
    let name = match method {
        "tools/call" => {
            let p: CallToolRequestParams =
                serde_json::from_value(params).map_err(|_| Refused::NotJsonRpc)?;
            message.tool = Some(p.name.to_string());
            message.tool.clone()
        }
        "prompts/get" => serde_json::from_value::<GetPromptRequestParams>(params)
            .map(|p| Some(p.name))
            .map_err(|_| Refused::NotJsonRpc)?,
        "resources/read" => serde_json::from_value::<ReadResourceRequestParams>(params)
            .map(|p| Some(p.uri))
            .map_err(|_| Refused::NotJsonRpc)?,
        _ => None,
    };
    if let Some(expected) = name {
        match single(headers, "mcp-name")? {
            None if per_request_era => {
                return Err(Refused::HeaderMismatch("the Mcp-Name header is required"));
            }
            Some(h) if decode(h).as_deref() != Some(expected.as_str()) => {
                return Err(Refused::HeaderMismatch(
                    "Mcp-Name does not match the body's name",
                ));
            }
            _ => {}
        }
    }
    Ok(message)
}

/// A header that may appear once: a repeat could be read differently by
/// the backend than by passgate.
fn single<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, Refused> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(Refused::HeaderMismatch("an MCP header is repeated"));
    }
    value
        .to_str()
        .map(|v| Some(v.trim()))
        .map_err(|_| Refused::HeaderMismatch("an MCP header is not visible ASCII"))
}

/// A header value as text: `=?base64?…?=` decoded.
fn decode(value: &str) -> Option<String> {
    match value
        .strip_prefix("=?base64?")
        .and_then(|v| v.strip_suffix("?="))
    {
        Some(inner) => String::from_utf8(STANDARD.decode(inner).ok()?).ok(),
        None => Some(value.to_owned()),
    }
}

/// Removes the tools `allowed` refuses from a `tools/list` result, in place.
/// Returns true when the message was such a result and was changed.
pub fn filter_tools_list(message: &mut Value, allowed: impl Fn(&str) -> bool) -> bool {
    let Some(tools) = message
        .get_mut("result")
        .and_then(|r| r.get_mut("tools"))
        .and_then(Value::as_array_mut)
    else {
        return false;
    };
    let before = tools.len();
    tools.retain(|t| t.get("name").and_then(Value::as_str).is_some_and(&allowed));
    tools.len() != before
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    const CALL: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add","arguments":{},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#;

    #[test]
    fn headers_must_agree_with_the_body_on_2026_07_28() {
        let good = [
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "add"),
        ];
        let m = inspect(&headers(&good), CALL.as_bytes()).unwrap();
        assert_eq!(m.tool.as_deref(), Some("add"));
        assert!(m.per_request_era);
        let encoded = [
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "=?base64?YWRk?="),
        ];
        assert!(inspect(&headers(&encoded), CALL.as_bytes()).is_ok());
        for bad in [
            &[
                ("mcp-protocol-version", "2025-11-25"),
                ("mcp-method", "tools/call"),
                ("mcp-name", "add"),
            ][..],
            &[
                ("mcp-protocol-version", "2026-07-28"),
                ("mcp-method", "tools/list"),
                ("mcp-name", "add"),
            ],
            &[
                ("mcp-protocol-version", "2026-07-28"),
                ("mcp-method", "tools/call"),
                ("mcp-name", "other"),
            ],
            &[
                ("mcp-protocol-version", "2026-07-28"),
                ("mcp-method", "tools/call"),
                ("mcp-name", "=?base64?b3RoZXI=?="),
            ],
            &[
                ("mcp-protocol-version", "2026-07-28"),
                ("mcp-method", "tools/call"),
            ],
            &[("mcp-protocol-version", "2026-07-28"), ("mcp-name", "add")],
            &[("mcp-method", "tools/call"), ("mcp-name", "add")],
            &[
                ("mcp-protocol-version", "2026-07-28"),
                ("mcp-method", "tools/call"),
                ("mcp-name", "add"),
                ("mcp-name", "add"),
            ],
        ] {
            assert!(
                matches!(
                    inspect(&headers(bad), CALL.as_bytes()),
                    Err(Refused::HeaderMismatch(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_older_era_needs_no_headers_but_present_ones_must_agree() {
        let call = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"add"}}"#;
        assert!(inspect(&headers(&[]), call.as_bytes()).is_ok());
        assert!(inspect(&headers(&[("mcp-name", "other")]), call.as_bytes()).is_err());
        assert_eq!(inspect(&headers(&[]), b"{").unwrap_err(), Refused::NotJson);
        assert_eq!(
            inspect(&headers(&[]), b"[1]").unwrap_err(),
            Refused::NotJsonRpc
        );
        let twice = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call","params":{"name":"add"}}"#;
        assert_eq!(
            inspect(&headers(&[]), twice.as_bytes()).unwrap_err(),
            Refused::NotJsonRpc,
            "a repeated member is read one way by passgate, maybe another by the backend"
        );
    }

    #[test]
    fn denied_tools_leave_the_list() {
        let mut v: Value = serde_json::from_str(
            r#"{"jsonrpc":"2.0","id":2,"result":{"tools":[{"name":"a"},{"name":"secret"}],"nextCursor":"x"}}"#,
        )
        .unwrap();
        assert!(filter_tools_list(&mut v, |n| n != "secret"));
        assert_eq!(v["result"]["tools"].as_array().unwrap().len(), 1);
        assert_eq!(v["result"]["nextCursor"], "x");
    }
}
