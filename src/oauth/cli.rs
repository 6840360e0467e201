//! Operator commands for OAuth state: `passgate clients ...` and
//! `passgate keys ...`. Each returns the text to print.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Context;

use super::{
    access, authorize,
    clients::{self, Client},
    grants,
    keys::SigningKeys,
};
use crate::{crypto::MasterKey, store::Store, users};

/// Every registered and configured client, and every client with live
/// grants or pending authorizations (metadata-document clients appear once
/// someone asked for them), with how many people and sign-ins each holds
/// (a sign-in is a token family: an approved code not yet redeemed counts)
/// and how many authorizations await consent.
pub async fn list_clients(store: &dyn Store, configured: &[Client]) -> anyhow::Result<String> {
    struct Row {
        name: String,
        kind: &'static str,
        people: usize,
        sign_ins: usize,
        pending: usize,
    }
    let row = |name: &str, kind| Row {
        name: name.to_owned(),
        kind,
        people: 0,
        sign_ins: 0,
        pending: 0,
    };
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    for client in configured {
        rows.insert(
            client.client_id.clone(),
            row(&client.client_name, "configured"),
        );
    }
    for client in clients::registered(store).await? {
        rows.entry(client.client_id.clone())
            .or_insert_with(|| row(&client.client_name, "registered"));
    }
    for user in users::list(store).await? {
        let mut counted = BTreeSet::new();
        for grant in grants::list_for_user(store, &user.id).await? {
            let entry = rows
                .entry(grant.client_id.clone())
                .or_insert_with(|| row(&grant.client_name, kind_of(&grant.client_id)));
            entry.sign_ins += 1;
            if counted.insert(grant.client_id) {
                entry.people += 1;
            }
        }
    }
    for (client_id, n) in authorize::pending_per_client(store).await? {
        rows.entry(client_id.clone())
            .or_insert_with(|| row(&client_id, kind_of(&client_id)))
            .pending = n;
    }
    if rows.is_empty() {
        return Ok("No clients are registered or connected.".into());
    }
    let mut out = format!(
        "{:<44} {:<30} {:<10} {:>6} {:>9} {:>8}\n",
        "CLIENT ID", "NAME", "KIND", "PEOPLE", "SIGN-INS", "PENDING"
    );
    for (id, r) in rows {
        out.push_str(&format!(
            "{id:<44} {:<30} {:<10} {:>6} {:>9} {:>8}\n",
            r.name, r.kind, r.people, r.sign_ins, r.pending
        ));
    }
    Ok(out.trim_end().to_owned())
}

/// How a client that is neither listed nor configured is known.
fn kind_of(client_id: &str) -> &'static str {
    if client_id.starts_with("https://") {
        "document"
    } else {
        // Registered before registrations had a listing entry.
        "registered"
    }
}

/// Ends every grant of a client (codes not yet redeemed included) and every
/// authorization of it awaiting consent, forgets every approval of it, and
/// deletes its registration, so it must register and be approved again.
pub async fn revoke_client(store: &dyn Store, client_id: &str) -> anyhow::Result<String> {
    // First, so that whatever is being approved right now ends too.
    access::mark_client_revoked(store, client_id).await?;
    let pending = authorize::end_pending_for_client(store, client_id).await?;
    let (mut people, mut families) = (0, 0);
    for user in users::list(store).await? {
        let n = grants::revoke_client_for_user(store, &user.id, client_id).await?;
        if n > 0 {
            people += 1;
            families += n;
        }
    }
    clients::delete_registration(store, client_id)
        .await
        .context("deleting the registration")?;
    Ok(format!(
        "Revoked {families} sign-in(s) of {people} person(s) and {pending} pending authorization(s) \
         of client {client_id}, and deleted its registration."
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
