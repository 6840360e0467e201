//! passgate: a remote MCP server behind real sign-in.
//!
//! Reading order: [`config`] (what can be set), [`routes`] (every URL in one
//! table), [`mcp`] (the tools and the MCP transport), then [`error`] (how
//! failures become HTTP responses). `ARCHITECTURE.md` has the bird's-eye view.

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
#[cfg(feature = "lambda")]
pub mod lambda;
pub mod login;
pub mod mcp;
pub mod net;
pub mod oauth;
pub mod pages;
pub mod ratelimit;
pub mod routes;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod upstream;
pub mod users;
