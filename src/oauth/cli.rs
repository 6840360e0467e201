//! Operator commands for OAuth state: `passgate clients ...` and
//! `passgate keys ...`. Each returns the text to print.

use std::collections::BTreeMap;

use anyhow::Context;

use super::{clients::Client, grants, keys::SigningKeys};
use crate::{crypto::MasterKey, store::Store, users};

/// Every client with live grants (and every configured client), with how
/// many people and sign-ins it holds.
pub async fn list_clients(store: &dyn Store, configured: &[Client]) -> anyhow::Result<String> {
    // client id -> (name, people, families)
    let mut seen: BTreeMap<String, (String, usize, usize)> = BTreeMap::new();
    for user in users::list(store).await? {
        let grants = grants::list_for_user(store, &user.id).await?;
        let mut counted_person = std::collections::BTreeSet::new();
        for grant in grants {
            let entry = seen
                .entry(grant.client_id.clone())
                .or_insert_with(|| (grant.client_name.clone(), 0, 0));
            entry.2 += 1;
            if counted_person.insert(grant.client_id.clone()) {
                entry.1 += 1;
            }
        }
    }
    for client in configured {
        seen.entry(client.client_id.clone())
            .or_insert_with(|| (client.client_name.clone(), 0, 0));
    }
    if seen.is_empty() {
        return Ok("No clients are connected.".into());
    }
    let mut out = format!(
        "{:<44} {:<30} {:>6} {:>9}\n",
        "CLIENT ID", "NAME", "PEOPLE", "SIGN-INS"
    );
    for (id, (name, people, families)) in seen {
        out.push_str(&format!("{id:<44} {name:<30} {people:>6} {families:>9}\n"));
    }
    Ok(out.trim_end().to_owned())
}

/// Ends every grant of a client, forgets every approval of it, and deletes
/// its registration, so it must register and be approved again.
pub async fn revoke_client(store: &dyn Store, client_id: &str) -> anyhow::Result<String> {
    let mut families = 0;
    for user in users::list(store).await? {
        families += grants::revoke_client_for_user(store, &user.id, client_id).await?;
    }
    store
        .delete(&format!("client#{client_id}"), "client")
        .await
        .context("deleting the registration")?;
    Ok(format!(
        "Revoked {families} sign-in(s) of client {client_id} and deleted its registration."
    ))
}

/// Adds a new signing key; running instances pick it up as they reload.
pub async fn rotate_keys(store: &dyn Store, master: &MasterKey) -> anyhow::Result<String> {
    let kid = SigningKeys::rotate(store, master).await?;
    Ok(format!(
        "New signing key {kid}. Older keys stay valid; after an hour (the access-token lifetime) \
         remove them with `passgate keys prune`."
    ))
}

pub async fn prune_keys(store: &dyn Store) -> anyhow::Result<String> {
    let removed = SigningKeys::prune(store, 1).await?;
    Ok(format!("Removed {removed} older signing key(s)."))
}
