//! passgate: a remote MCP server behind real sign-in.
//!
//! As a library, [`Passgate`] serves your own rmcp server behind passgate's
//! OAuth 2.1 authorization server, passkeys (or an OpenID provider) and
//! store; your tools read the caller with [`Identity::from_parts`]. The
//! [`rmcp`] it is built on is re-exported, so your tools and passgate
//! always agree on its version.
//!
//! Reading order: [`config`] (what can be set), [`routes`] (every URL in one
//! table), [`mcp`] (the tools and the MCP transport), then [`error`] (how
//! failures become HTTP responses). `ARCHITECTURE.md` has the bird's-eye view.

pub mod accounts;
pub mod app;
#[cfg(feature = "aws")]
pub mod aws;
pub mod bootstrap;
pub mod canonical;
pub mod config;
pub mod crypto;
pub mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod gateway;
#[cfg(feature = "lambda")]
pub mod lambda;
mod library;
pub mod login;
pub mod mcp;
pub mod net;
pub mod oauth;
pub mod oidc;
pub mod pages;
pub mod ratelimit;
pub mod routes;
pub mod server;
pub mod store;
pub mod telemetry;

pub use library::Passgate;
pub use oauth::bearer::Identity;
/// The rmcp version passgate is built on: write your tools against this one.
pub use rmcp;
