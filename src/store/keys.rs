//! The data layout: every partition key passgate writes, in one place.
//! Stored data outlives releases, so a key's text never changes; the test
//! below lists each one. Secrets in keys (tokens, codes, recovery links)
//! appear only as their SHA-256, hashed here.

use crate::crypto::token_hash;

/// The listing of every registration (sort key: the client id).
pub const CLIENT_LISTING: &str = "clients";
/// The listing of pending authorizations' clients.
pub const PENDING_LISTING: &str = "authz-pending";
/// The listing of every account.
pub const USERS: &str = "users";
/// The access-token signing keys.
pub const SIGNING_KEYS: &str = "signing-keys";

/// A partition of the store, by what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partition<'a> {
    /// A registered client, by id.
    Client(&'a str),
    /// The listing of every registration (sort key: the client id).
    ClientListing,
    /// The operator's revocation mark for a client id.
    ClientRevoked(&'a str),
    /// A fetched client metadata document (or a failed fetch), by URL.
    MetadataDocument(&'a str),
    /// A pending authorization, by id.
    PendingAuthorization(&'a str),
    /// The listing of pending authorizations' clients.
    PendingListing,
    /// An authorization code, by the code (stored hashed).
    Code(&'a str),
    /// A refresh token from before chains, by the token (stored hashed).
    RefreshToken(&'a str),
    /// A token family's refresh chain, by family id.
    RefreshChain(&'a str),
    /// A token family, by family id.
    Grant(&'a str),
    /// A person's items: the account, its passkeys, sessions and grants.
    User(&'a str),
    /// The account id behind a user name.
    Username(&'a str),
    /// The account behind a passkey, by credential id.
    Credential(&'a str),
    /// The listing of every account.
    Users,
    /// A person's consents (sort key: the client id).
    Consents(&'a str),
    /// A browser session, by the session token's hash.
    Session(&'a str),
    /// An invitation, by its token (stored hashed).
    Invitation(&'a str),
    /// An invitation, by its id (the token's hash).
    InvitationId(&'a str),
    /// A recovery link, by the token's hash.
    Recovery(&'a str),
    /// A passkey ceremony, by its challenge.
    Ceremony(u128),
    /// A sign-in started at the OpenID provider, by its `state` (hashed).
    OidcAttempt(&'a str),
    /// The account linked to a provider identity: issuer, subject claim and
    /// subject, hashed together.
    OidcLink {
        issuer: &'a str,
        claim: &'a str,
        subject: &'a str,
    },
    /// A rate-limit counter: the action's name and the subject (hashed;
    /// subjects can be long or carry secrets).
    RateLimit { action: &'a str, subject: &'a str },
    /// The access-token signing keys.
    SigningKeys,
    /// passgate's registration at a gateway route's backend authorization
    /// server, by the route's path.
    BackendClient(&'a str),
    /// A sign-in at a backend's authorization server under way, by its
    /// `state` (hashed).
    BackendSignIn(&'a str),
}

impl Partition<'_> {
    /// The partition key's text.
    pub fn key(&self) -> String {
        match *self {
            Self::Client(id) => format!("client#{id}"),
            Self::ClientListing => CLIENT_LISTING.to_owned(),
            Self::ClientRevoked(id) => format!("client-revoked#{id}"),
            Self::MetadataDocument(url) => format!("cimd#{url}"),
            Self::PendingAuthorization(id) => format!("authz#{id}"),
            Self::PendingListing => PENDING_LISTING.to_owned(),
            Self::Code(code) => format!("code#{}", token_hash(code)),
            Self::RefreshToken(token) => format!("rt#{}", token_hash(token)),
            Self::RefreshChain(family) => format!("rt-chain#{family}"),
            Self::Grant(family) => format!("grant#{family}"),
            Self::User(id) => format!("user#{id}"),
            Self::Username(name) => format!("username#{name}"),
            Self::Credential(id) => format!("cred#{id}"),
            Self::Users => USERS.to_owned(),
            Self::Consents(user_id) => format!("consent#{user_id}"),
            Self::Session(hash) => format!("session#{hash}"),
            Self::Invitation(token) => format!("invite#{}", token_hash(token)),
            Self::InvitationId(id) => format!("invite#{id}"),
            Self::Recovery(hash) => format!("recover#{hash}"),
            Self::Ceremony(challenge) => format!("ceremony#{challenge:032x}"),
            Self::OidcAttempt(state) => format!("upstream-state#{}", token_hash(state)),
            Self::OidcLink {
                issuer,
                claim,
                subject,
            } => format!(
                "upstream-link#{}",
                token_hash(&format!("{issuer}\n{claim}\n{subject}"))
            ),
            Self::RateLimit { action, subject } => {
                format!("ratelimit#{action}#{}", token_hash(subject))
            }
            Self::SigningKeys => SIGNING_KEYS.to_owned(),
            Self::BackendClient(route) => format!("backend-client#{route}"),
            Self::BackendSignIn(state) => format!("backend-signin#{}", token_hash(state)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Existing stores hold these keys: each must stay exactly as it is.
    #[test]
    fn every_key_keeps_its_exact_text() {
        // SHA-256 of "t", base64url without padding, as `token_hash` writes it.
        let t = token_hash("t");
        let cases = [
            (Partition::Client("c1"), "client#c1".to_owned()),
            (Partition::ClientListing, "clients".to_owned()),
            (
                Partition::ClientRevoked("c1"),
                "client-revoked#c1".to_owned(),
            ),
            (
                Partition::MetadataDocument("https://app.example/m.json"),
                "cimd#https://app.example/m.json".to_owned(),
            ),
            (Partition::PendingAuthorization("a1"), "authz#a1".to_owned()),
            (Partition::PendingListing, "authz-pending".to_owned()),
            (Partition::Code("t"), format!("code#{t}")),
            (Partition::RefreshToken("t"), format!("rt#{t}")),
            (Partition::RefreshChain("f1"), "rt-chain#f1".to_owned()),
            (Partition::Grant("f1"), "grant#f1".to_owned()),
            (Partition::User("u1"), "user#u1".to_owned()),
            (Partition::Username("ada"), "username#ada".to_owned()),
            (Partition::Credential("k1"), "cred#k1".to_owned()),
            (Partition::Users, "users".to_owned()),
            (Partition::Consents("u1"), "consent#u1".to_owned()),
            (Partition::Session("h1"), "session#h1".to_owned()),
            (Partition::Invitation("t"), format!("invite#{t}")),
            (Partition::InvitationId("h1"), "invite#h1".to_owned()),
            (Partition::Recovery("h1"), "recover#h1".to_owned()),
            (
                Partition::Ceremony(0xab),
                "ceremony#000000000000000000000000000000ab".to_owned(),
            ),
            (Partition::OidcAttempt("t"), format!("upstream-state#{t}")),
            (
                Partition::OidcLink {
                    issuer: "https://idp.example",
                    claim: "sub",
                    subject: "s1",
                },
                format!(
                    "upstream-link#{}",
                    token_hash("https://idp.example\nsub\ns1")
                ),
            ),
            (
                Partition::RateLimit {
                    action: "register",
                    subject: "t",
                },
                format!("ratelimit#register#{t}"),
            ),
            (Partition::SigningKeys, "signing-keys".to_owned()),
            (
                Partition::BackendClient("/mcp/a"),
                "backend-client#/mcp/a".to_owned(),
            ),
            (Partition::BackendSignIn("t"), format!("backend-signin#{t}")),
        ];
        for (partition, expected) in cases {
            assert_eq!(partition.key(), expected, "{partition:?}");
        }
        assert_eq!(
            t, "47mKTaMaEn1L3m5DAz9muidMqw636xxw7EFAK_YnPdg",
            "token_hash changed, and with it every hashed key"
        );
    }
}
