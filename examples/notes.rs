//! A small MCP server of its own behind passgate's sign-in: each person
//! keeps notes, visible to them alone. `add_note` and `list_notes` need
//! only a signed-in connection; `delete_note` also needs the `notes.delete`
//! scope, so a client that did not ask for it gets 403 `insufficient_scope`
//! and can ask the person again.
//!
//! ```sh
//! cargo run --example notes -- --public-url http://localhost:8080 --data-dir ./notes-data
//! ```
//!
//! It takes every flag of `passgate serve`; the first start prints the
//! first administrator's invitation link. The notes are kept in this
//! process's memory, to keep the example short: a real server would keep
//! them in its own database, keyed by [`Identity::user_id`].

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use passgate::{
    Identity, Passgate,
    rmcp::{
        ErrorData, ServerHandler,
        handler::server::{common::Extension, router::tool::ToolRouter, wrapper::Parameters},
        model::{CallToolResult, ContentBlock, Implementation, ServerCapabilities, ServerConfig},
        schemars, tool, tool_handler, tool_router,
    },
};
use serde::{Deserialize, Serialize};

/// The scope `delete_note` needs.
const DELETE_SCOPE: &str = "notes.delete";

#[derive(Debug, Clone, Serialize)]
struct Note {
    id: u64,
    text: String,
}

/// Every person's notes, by passgate user id.
#[derive(Default)]
struct Notebooks {
    next_id: u64,
    by_user: HashMap<String, Vec<Note>>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct AddNote {
    /// What to write down.
    text: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
struct DeleteNote {
    /// The id `add_note` or `list_notes` gave.
    id: u64,
}

/// One clone per request (the transport is stateless); the notebooks and
/// the tool router are shared.
#[derive(Clone)]
struct Notes {
    notebooks: Arc<Mutex<Notebooks>>,
    tool_router: Arc<ToolRouter<Self>>,
}

/// The verified caller, or the error a tool answers without one.
fn caller(parts: &http::request::Parts) -> Result<&Identity, ErrorData> {
    Identity::from_parts(parts)
        .ok_or_else(|| ErrorData::invalid_request("this connection is not signed in", None))
}

fn json_result(value: serde_json::Value) -> CallToolResult {
    let mut result = CallToolResult::structured(value.clone());
    result.content = vec![ContentBlock::text(value.to_string())];
    result
}

#[tool_router(router = tool_router)]
impl Notes {
    fn new(notebooks: Arc<Mutex<Notebooks>>) -> Self {
        Self {
            notebooks,
            tool_router: Arc::new(Self::tool_router()),
        }
    }

    #[tool(description = "Write down a note; only you can read it.")]
    async fn add_note(
        &self,
        Extension(parts): Extension<http::request::Parts>,
        Parameters(AddNote { text }): Parameters<AddNote>,
    ) -> Result<CallToolResult, ErrorData> {
        let who = caller(&parts)?;
        let mut books = self.notebooks.lock().expect("notebooks lock");
        books.next_id += 1;
        let note = Note {
            id: books.next_id,
            text,
        };
        books
            .by_user
            .entry(who.user_id.clone())
            .or_default()
            .push(note.clone());
        Ok(json_result(serde_json::json!({
            "note": note,
            "owner": who.user_name,
        })))
    }

    #[tool(description = "List your notes.")]
    async fn list_notes(
        &self,
        Extension(parts): Extension<http::request::Parts>,
    ) -> Result<CallToolResult, ErrorData> {
        let who = caller(&parts)?;
        let books = self.notebooks.lock().expect("notebooks lock");
        let notes = books.by_user.get(&who.user_id).cloned().unwrap_or_default();
        Ok(json_result(serde_json::json!({
            "owner": who.user_name,
            "display_name": who.display_name,
            "notes": notes,
        })))
    }

    #[tool(description = "Delete one of your notes (needs the notes.delete scope).")]
    async fn delete_note(
        &self,
        Extension(parts): Extension<http::request::Parts>,
        Parameters(DeleteNote { id }): Parameters<DeleteNote>,
    ) -> Result<CallToolResult, ErrorData> {
        let who = caller(&parts)?;
        let mut books = self.notebooks.lock().expect("notebooks lock");
        let notes = books.by_user.entry(who.user_id.clone()).or_default();
        let before = notes.len();
        notes.retain(|n| n.id != id);
        Ok(if notes.len() < before {
            json_result(serde_json::json!({ "deleted": id }))
        } else {
            CallToolResult::error(vec![ContentBlock::text(format!(
                "you have no note {id}; list_notes shows your notes"
            ))])
        })
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Notes {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("notes", env!("CARGO_PKG_VERSION")))
            .with_instructions("Personal notes: add_note, list_notes, delete_note.")
    }
}

/// passgate with the notes tools at `/mcp` (tests/library.rs serves it too).
pub fn with_notes(passgate: Passgate) -> Passgate {
    let notes = Notes::new(Arc::new(Mutex::new(Notebooks::default())));
    passgate
        .name("notes")
        .mcp(move || notes.clone())
        .require_scopes("delete_note", [DELETE_SCOPE])
}

#[allow(dead_code)] // tests/library.rs includes this file and has its own main.
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    with_notes(Passgate::from_command_line().await?)
        .serve()
        .await
}
