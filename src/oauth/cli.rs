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
use crate::{accounts::users, crypto::MasterKey, store::Store};

/// Every registered and configured client, and every client with live
/// grants or pending authorizations (metadata-document clients appear once
/// someone asked for them), with how many people and sign-ins each holds
/// (a sign-in is a token family: an approved code not yet redeemed counts),
/// how many authorizations await consent, and what tells apart clients
/// that share a name: where they return to, when they were last used,
/// where they registered from.
pub async fn list_clients(store: &dyn Store, configured: &[Client]) -> anyhow::Result<String> {
    #[derive(Default)]
    struct Row {
        name: String,
        kind: &'static str,
        people: usize,
        sign_ins: usize,
        pending: usize,
        last_used: Option<i64>,
        redirects: BTreeSet<String>,
        from: String,
    }
    let row = |client: &Client, kind| Row {
        name: client.client_name.clone(),
        kind,
        redirects: client
            .redirect_uris
            .iter()
            .filter_map(|u| crate::login::account::redirect_host(u))
            .collect(),
        from: client.registered_from.clone().unwrap_or_default(),
        ..Row::default()
    };
    let mut rows: BTreeMap<String, Row> = BTreeMap::new();
    for client in configured {
        rows.insert(client.client_id.clone(), row(client, "configured"));
    }
    for client in clients::registered(store).await? {
        rows.entry(client.client_id.clone())
            .or_insert_with(|| row(&client, "registered"));
    }
    for user in users::list(store).await? {
        let mut counted = BTreeSet::new();
        for grant in grants::list_for_user(store, &user.id).await? {
            let entry = rows.entry(grant.client_id.clone()).or_insert_with(|| Row {
                name: grant.client_name.clone(),
                kind: kind_of(&grant.client_id),
                ..Row::default()
            });
            entry.sign_ins += 1;
            let used = grant.last_used_at.unwrap_or(grant.created_at);
            entry.last_used = entry.last_used.max(Some(used));
            if let Some(host) = crate::login::account::redirect_host(&grant.redirect_uri) {
                entry.redirects.insert(host);
            }
            if counted.insert(grant.client_id) {
                entry.people += 1;
            }
        }
    }
    for (client_id, n) in authorize::pending_per_client(store).await? {
        rows.entry(client_id.clone())
            .or_insert_with(|| Row {
                name: client_id.clone(),
                kind: kind_of(&client_id),
                ..Row::default()
            })
            .pending = n;
    }
    if rows.is_empty() {
        return Ok("No clients are registered or connected.".into());
    }
    let header = [
        "CLIENT ID",
        "NAME",
        "KIND",
        "PEOPLE",
        "SIGN-INS",
        "PENDING",
        "LAST USED",
        "RETURNS TO",
        "REGISTERED FROM",
    ];
    // Same-named clients sit next to each other.
    let mut sorted: Vec<(String, Row)> = rows.into_iter().collect();
    sorted.sort_by(|(a_id, a), (b_id, b)| (&a.name, a_id).cmp(&(&b.name, b_id)));
    let table: Vec<[String; 9]> = sorted
        .into_iter()
        .map(|(id, r)| {
            [
                id,
                one_line(&r.name),
                r.kind.to_owned(),
                r.people.to_string(),
                r.sign_ins.to_string(),
                r.pending.to_string(),
                r.last_used
                    .map_or_else(|| "-".into(), crate::login::ui::date),
                if r.redirects.is_empty() {
                    "-".into()
                } else {
                    r.redirects.into_iter().collect::<Vec<_>>().join(",")
                },
                if r.from.is_empty() {
                    "-".into()
                } else {
                    one_line(&r.from)
                },
            ]
        })
        .collect();
    Ok(render_table(&header, &table, &[3, 4, 5]))
}

/// Names come from clients: keep each on one line of the table.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// Columns as wide as their widest cell (in characters), two spaces apart;
/// the columns in `right` are right-aligned; the last column is not padded.
fn render_table<const N: usize>(
    header: &[&str; N],
    rows: &[[String; N]],
    right: &[usize],
) -> String {
    let width = |s: &str| s.chars().count();
    let mut widths: [usize; N] = header.map(width);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(width(cell));
        }
    }
    let line = |cells: [&str; N]| -> String {
        let mut out = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let pad = " ".repeat(widths[i] - width(cell));
            if i > 0 {
                out.push_str("  ");
            }
            if right.contains(&i) {
                out.push_str(&pad);
                out.push_str(cell);
            } else {
                out.push_str(cell);
                if i + 1 < N {
                    out.push_str(&pad);
                }
            }
        }
        out.trim_end().to_owned()
    };
    let mut out = vec![line(*header)];
    for row in rows {
        out.push(line(std::array::from_fn(|i| row[i].as_str())));
    }
    out.join("\n")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_columns_fit_the_widest_cell() {
        let long = "A client with a name well over thirty characters long".to_owned();
        let rows = [
            [long.clone(), "1".to_owned(), "x".to_owned()],
            ["Short".to_owned(), "12345".to_owned(), "yz".to_owned()],
        ];
        let table = render_table(&["NAME", "N", "LAST"], &rows, &[1]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3);
        // The last column starts at the same character on every line, after
        // the longest name; the right-aligned column ends at one place.
        let last = long.len() + 2 + 5 + 2;
        assert_eq!(lines[0].find("LAST"), Some(last));
        assert_eq!(lines[1].find('x'), Some(last));
        assert_eq!(lines[2].find("yz"), Some(last));
        assert_eq!(lines[1].find("1  x"), Some(last - 3));
        assert_eq!(lines[2].find("12345"), Some(last - 7));
    }
}
