//! passgate: a remote MCP server behind real sign-in.
//!
//! As a library, [`Passgate`] serves your own rmcp server behind passgate's
//! OAuth 2.1 authorization server, passkeys (or an OpenID provider) and
//! store; your tools read the caller with [`Identity::from_parts`]. The
//! [`rmcp`] it is built on is re-exported, so your tools and passgate
//! always agree on its version. More endpoints, each its own protected
//! resource, are [`ProtectedMcp`]s made from the [`AppState`] with a
//! [`Resource`]; [`config`] has every setting and [`store`] the storage
//! trait. Nothing else here is a stable API.
//!
//! Reading the code: `ARCHITECTURE.md` has the layers and a walkthrough;
//! start at `config`, then `routes` (every URL in one table), `mcp`, then
//! `error` (how failures become HTTP responses).

// The library's surface: what a Rust user serving their own tools needs
// (see `Passgate`), documented and kept stable.
pub mod config;
pub mod mcp;
pub mod store;

pub use app::AppState;
pub use library::Passgate;
pub use mcp::ProtectedMcp;
pub use oauth::{bearer::Identity, resource::Resource};
/// The rmcp version passgate is built on: write your tools against this one.
pub use rmcp;

// passgate's own parts. Public (but hidden from the documentation, and not
// a stable API) because its binary, examples, benchmarks, fuzz targets and
// integration tests drive them from outside the crate.
#[doc(hidden)]
pub mod accounts;
#[doc(hidden)]
pub mod app;
#[doc(hidden)]
pub mod bootstrap;
#[doc(hidden)]
pub mod crypto;
#[doc(hidden)]
pub mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
#[doc(hidden)]
pub mod gateway;
#[cfg(feature = "lambda")]
#[doc(hidden)]
pub mod lambda;
#[doc(hidden)]
pub mod login;
#[doc(hidden)]
pub mod net;
#[doc(hidden)]
pub mod oauth;
#[doc(hidden)]
pub mod oidc;
#[doc(hidden)]
pub mod pages;
#[doc(hidden)]
pub mod ratelimit;
#[doc(hidden)]
pub mod routes;
#[doc(hidden)]
pub mod server;
#[doc(hidden)]
pub mod telemetry;

// Used only inside the crate.
#[cfg(feature = "aws")]
mod aws;
mod canonical;
mod library;
