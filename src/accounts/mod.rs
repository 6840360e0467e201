//! The people records: accounts and their passkeys ([`users`]), browser
//! sessions ([`session`]), invitations ([`invitations`]) and each person's
//! own credentials for gateway backends: keys they paste
//! ([`personal_keys`]) and tokens from backends with their own sign-in
//! ([`backend_tokens`]). They sit apart
//! from the sign-in methods (`login`, `oidc`) that create them and from the
//! pages that show them, so every way in writes the same records and every
//! way of ending access (sign-out, disable, delete) finds them all.

pub mod backend_tokens;
pub mod invitations;
pub mod personal_keys;
pub mod session;
pub mod users;
