//! Configuration: parsed once in `main` from flags and `PASSGATE_*` variables,
//! then passed down by reference. Nothing reads the environment after start-up.
//!
//! By concern: [`args`] is the command line (every flag and its variable),
//! [`oidc`] the OpenID provider's settings, [`secret`] the settings secret
//! and how its values reach clap, [`clients`] the pre-registered clients
//! file, and [`validated`] the [`Config`] the server runs with. This file
//! only re-exports them, so that no part depends on the whole.

pub mod args;
pub mod clients;
pub mod oidc;
pub mod secret;
pub mod validated;

pub use args::*;
pub use clients::*;
pub use oidc::*;
pub use secret::*;
pub use validated::*;
