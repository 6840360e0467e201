//! `passgate users ...`: account administration from the server's shell,
//! and the first administrator's invitation printed by `passgate serve`.
//! Each function returns the text to print; `main` only prints it.

use crate::{
    accounts::{
        invitations,
        users::{self, Role},
    },
    config::Config,
    login::{recovery, ui},
    store::Store,
};

/// `passgate users invite <name> [--admin] [--ttl-hours N]`. The link is
/// the last line, so scripts can take it with `tail -n 1`.
pub async fn invite(
    store: &dyn Store,
    public_url: &str,
    name: &str,
    admin: bool,
    ttl_hours: u32,
    passkeys: bool,
) -> anyhow::Result<String> {
    if !passkeys {
        // The link would lead to a passkey page the server does not offer.
        anyhow::bail!(
            "passkeys are off (--passkeys false), so an invitation, which enrolls a passkey, could not be used: people get an account by signing in with the identity provider.{}",
            if admin {
                " To make one an administrator, run `passgate users promote <name>` after their first sign-in, or list their verified email in --oidc-admin-emails."
            } else {
                ""
            }
        );
    }
    let role = if admin { Role::Admin } else { Role::Member };
    let created = invitations::create(
        store,
        public_url,
        name,
        role,
        i64::from(ttl_hours) * 3600,
        None,
    )
    .await?;
    Ok(format!(
        "Invitation for {name} ({role}), valid once until {expires}.\nSend this link to {name} through a channel you trust:\n{link}",
        name = created.invitation.name,
        role = role.as_str(),
        expires = ui::date_time(created.invitation.expires_at),
        link = created.link,
    ))
}

/// `passgate users list`
pub async fn list(store: &dyn Store) -> anyhow::Result<String> {
    let all = users::list(store).await?;
    if all.is_empty() {
        return Ok(
            "No users yet. Create an invitation with `passgate users invite <name> --admin`."
                .into(),
        );
    }
    let mut out = format!(
        "{:<24} {:<8} {:<9} {:<8} {:<11} {}\n",
        "NAME", "ROLE", "STATUS", "PASSKEYS", "JOINED", "DISPLAY NAME"
    );
    for u in all {
        let passkeys = users::credentials(store, &u.id).await?.len();
        out.push_str(&format!(
            "{:<24} {:<8} {:<9} {:<8} {:<11} {}\n",
            u.name,
            u.role.as_str(),
            if u.disabled { "disabled" } else { "active" },
            passkeys,
            ui::date(u.created_at),
            u.display_name,
        ));
    }
    Ok(out.trim_end().to_owned())
}

async fn by_name(store: &dyn Store, name: &str) -> anyhow::Result<users::User> {
    users::find_by_name(store, name).await?.ok_or_else(|| {
        anyhow::anyhow!("there is no user named {name:?} (see `passgate users list`)")
    })
}

/// `passgate users disable <name>`: ends their sessions and revokes their
/// grants too.
pub async fn disable(store: &dyn Store, name: &str) -> anyhow::Result<String> {
    let user = by_name(store, name).await?;
    users::set_disabled(store, &user.id, true).await?;
    Ok(format!(
        "Disabled {}: their sessions are ended and their applications disconnected.",
        user.name
    ))
}

/// `passgate users enable <name>`
pub async fn enable(store: &dyn Store, name: &str) -> anyhow::Result<String> {
    let user = by_name(store, name).await?;
    users::set_disabled(store, &user.id, false).await?;
    Ok(format!("Enabled {}.", user.name))
}

/// `passgate users delete <name>`
pub async fn delete(store: &dyn Store, name: &str) -> anyhow::Result<String> {
    let user = by_name(store, name).await?;
    users::delete(store, &user.id).await?;
    Ok(format!(
        "Deleted {} with their passkeys, sessions and grants.",
        user.name
    ))
}

/// `passgate users recover <name> [--ttl-hours N]`: a single-use link that
/// lets the account add a passkey again. The link is the last line.
pub async fn recover(
    store: &dyn Store,
    public_url: &str,
    name: &str,
    ttl_hours: u32,
) -> anyhow::Result<String> {
    let user = by_name(store, name).await?;
    let created =
        recovery::create_for(store, public_url, &user, i64::from(ttl_hours) * 3600, None).await?;
    Ok(format!(
        "Recovery link for {name}, valid once until {expires}.\n{what}\nSend this link to {name} through a channel you trust:\n{link}",
        name = user.name,
        expires = ui::date_time(created.recovery.expires_at),
        what = recovery::WHAT_IT_DOES,
        link = created.link,
    ))
}

/// `passgate users groups <name> [g1,g2,...]`: sets the account's groups
/// (none given: clears them) and prints them.
pub async fn groups(store: &dyn Store, name: &str, groups: &str) -> anyhow::Result<String> {
    let user = by_name(store, name).await?;
    let groups = users::parse_groups(groups)?;
    let user = users::set_groups(store, &user.id, groups).await?;
    Ok(if user.groups.is_empty() {
        format!("{} is in no groups.", user.name)
    } else {
        format!("Groups of {}: {}", user.name, user.groups.join(", "))
    })
}

/// Printed once `passgate serve` listens: the URL to paste into MCP
/// clients, and where people manage their account.
pub fn serving_banner(config: &Config) -> String {
    format!(
        "passgate is serving {public}\n  MCP server URL (paste this into your MCP client): {mcp}\n  Your account: {account}",
        public = config.issuer(),
        mcp = config.mcp_url(),
        account = config.url("/account"),
    )
}

/// `passgate users promote <name>`: works whichever way the person signs
/// in (passkeys or any identity provider).
pub async fn promote(store: &dyn Store, name: &str) -> anyhow::Result<String> {
    let user = by_name(store, name).await?;
    if user.is_admin() {
        return Ok(format!("{} is already an administrator.", user.name));
    }
    let user = users::set_role(store, &user.id, Role::Admin).await?;
    Ok(format!("{} is now an administrator.", user.name))
}

/// `passgate users demote <name>`. Refuses to demote the last active
/// administrator, who is the only one left to manage users from the web.
pub async fn demote(store: &dyn Store, name: &str) -> anyhow::Result<String> {
    let user = by_name(store, name).await?;
    if !user.is_admin() {
        return Ok(format!("{} is not an administrator.", user.name));
    }
    let others = users::list(store)
        .await?
        .into_iter()
        .filter(|u| u.is_admin() && !u.disabled && u.id != user.id)
        .count();
    if others == 0 && !user.disabled {
        anyhow::bail!(
            "{} is the only active administrator; promote someone else first (`passgate users promote <name>`)",
            user.name
        );
    }
    let user = users::set_role(store, &user.id, Role::Member).await?;
    Ok(format!(
        "{} is now a member. (Someone listed in --oidc-admin-emails becomes an administrator again at their next sign-in: remove them from that list too.)",
        user.name
    ))
}

/// At `passgate serve` start-up with passkeys off (nobody can enroll from
/// an invitation): while no administrator exists, how to get one.
pub async fn no_admin_banner(store: &dyn Store, config: &Config) -> anyhow::Result<Option<String>> {
    let Some(upstream) = config.oidc.as_ref().filter(|_| !config.passkeys) else {
        return Ok(None);
    };
    if users::list(store).await?.iter().any(|u| u.is_admin()) {
        return Ok(None);
    }
    tracing::info!("no administrator yet: printed how to make one to standard output");
    let listed = if upstream.admin_emails.is_empty() && upstream.admin_groups.is_empty() {
        "list their verified email in --oidc-admin-emails, or a group of\n     \
         theirs in --oidc-admin-groups (Entra ID: no email is verified),\n     \
         and restart passgate; they become one at their next sign-in"
            .to_owned()
    } else {
        let mut lists = Vec::new();
        if !upstream.admin_emails.is_empty() {
            lists.push(format!("emails {}", upstream.admin_emails.join(", ")));
        }
        if !upstream.admin_groups.is_empty() {
            lists.push(format!("groups {}", upstream.admin_groups.join(", ")));
        }
        format!(
            "sign in as someone listed as an administrator ({})",
            lists.join("; ")
        )
    };
    let rule = "=".repeat(72);
    Ok(Some(format!(
        "\n{rule}\n  passgate has no administrator yet. People sign in with {name} at\n  \
         {login}. To make someone an administrator, either\n  \
         - {listed}, or\n  \
         - after their first sign-in, run `passgate users promote <name>` with\n     \
         the same store settings (`passgate users list` shows the names).\n{rule}\n",
        name = upstream.name,
        login = config.url("/login"),
    )))
}

/// At `passgate serve` start-up: when nobody can sign in yet, creates the
/// first administrator's invitation and returns the banner to print (the
/// link goes to standard output only, never to the log).
pub async fn first_admin_banner(
    store: &dyn Store,
    config: &Config,
) -> anyhow::Result<Option<String>> {
    match invitations::ensure_first_admin(store, &config.issuer(), config.invite_ttl_secs).await? {
        invitations::FirstAdmin::NotNeeded => Ok(None),
        invitations::FirstAdmin::Pending { expires_at } => {
            tracing::info!(
                expires = %ui::date_time(expires_at),
                "no users yet; the first administrator's invitation printed at an earlier start is still valid (run `passgate users invite <name> --admin` for a new one)"
            );
            Ok(None)
        }
        invitations::FirstAdmin::Created(created) => {
            tracing::info!(
                "no users yet: printed an invitation link for the first administrator to standard output"
            );
            let rule = "=".repeat(72);
            Ok(Some(format!(
                "\n{rule}\n  passgate has no users yet. Open this link in a browser to create the\n  first administrator's passkey (it works once, until {expires}):\n\n  {link}\n{rule}\n",
                expires = ui::date_time(created.invitation.expires_at),
                link = created.link,
            )))
        }
    }
}
