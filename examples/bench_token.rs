//! Mints an access token for the benchmarks (`bench/run.sh`,
//! `bench/gateway.sh`) and the conformance suite through the gateway: opens
//! passgate's data directory exactly as `passgate serve` does (same store,
//! same master key, same signing keys, created on first use), records the
//! person (when new) and a grant as enrollment and the token endpoint would,
//! and prints a signed ES256 access token for it on stdout.
//!
//! This is an example binary, never part of the release `passgate` binary:
//! it skips sign-in and consent, which is what a benchmark of the `/mcp` hot
//! path needs and what a production server must never offer.
//!
//! ```text
//! cargo run --release --example bench_token -- \
//!     --data-dir /tmp/pg-data --public-url http://127.0.0.1:18080 --ttl-secs 86400
//! ```

use clap::Parser;
use passgate::{
    accounts::users::{self, Role, User},
    bootstrap,
    config::{CommonArgs, Config},
    crypto,
    oauth::{
        SCOPE_MCP,
        bearer::AccessClaims,
        grants::{self, Grant},
        keys::SigningKeys,
    },
    store::now_unix,
};

#[derive(Parser)]
#[command(about = "Print a benchmark access token for a passgate data directory")]
struct Args {
    #[command(flatten)]
    common: CommonArgs,

    /// Lifetime of the token, in seconds.
    #[arg(long, default_value_t = 24 * 3600)]
    ttl_secs: i64,

    /// The user id the grant is for.
    #[arg(long, default_value = "bench-user")]
    user_id: String,

    /// The client id the grant is for.
    #[arg(long, default_value = "bench-client")]
    client_id: String,

    /// The protected resource (the token's audience): a gateway route's
    /// URL, `<public URL>/mcp/<name>`. Default: `<public URL>/mcp`.
    #[arg(long)]
    resource: Option<String>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let config =
        Config::for_public_url(args.common.public_url.as_str()).map_err(anyhow::Error::msg)?;
    let (store, master_key) = bootstrap::open_store(&args.common).await?;
    let keys = SigningKeys::load_or_create(store.as_ref(), &master_key).await?;

    let resource = args.resource.unwrap_or_else(|| config.mcp_url());
    let now = now_unix();
    // The benchmark's person exists, and the grant carries their profile,
    // as one the token endpoint issues does.
    let user = match users::get(store.as_ref(), &args.user_id).await? {
        Some(user) => user,
        None => {
            let user = User {
                id: args.user_id.clone(),
                name: args.user_id.clone(),
                display_name: "passgate benchmark".into(),
                email: None,
                role: Role::Member,
                disabled: false,
                created_at: now,
                groups: Vec::new(),
            };
            store.transact(users::new_user_writes(&user)?).await?;
            user
        }
    };
    let grant = Grant {
        family: crypto::random_id(),
        user_id: args.user_id,
        client_id: args.client_id,
        client_name: "passgate benchmark".into(),
        scope: SCOPE_MCP.into(),
        resource: resource.clone(),
        created_at: now,
        redirect_uri: String::new(),
        groups: user.groups.clone(),
        user_name: user.name.clone(),
        display_name: user.display_name.clone(),
        account: Some(user.grant_profile()),
        last_used_at: None,
    };
    store.transact(grants::create_writes(&grant)?).await?;

    let claims = AccessClaims {
        iss: config.issuer(),
        sub: grant.user_id.clone(),
        aud: resource,
        exp: now + args.ttl_secs,
        iat: now,
        jti: crypto::random_id(),
        client_id: grant.client_id.clone(),
        scope: grant.scope.clone(),
        fam: grant.family.clone(),
    };
    println!("{}", keys.sign(&claims));
    Ok(())
}
