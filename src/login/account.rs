//! The account page: a person's passkeys (add, rename, delete; never the
//! last one), their own keys for MCP servers that want one (set, replace,
//! remove; never shown) and the MCP clients connected to their account
//! (revoke).

use std::collections::BTreeMap;

use axum::{
    body::Bytes,
    extract::{Query, State},
    response::{IntoResponse, Redirect, Response},
};
use http::HeaderMap;
use serde::Deserialize;
use serde_json::json;

use crate::{
    accounts::{
        backend_tokens,
        personal_keys::{self, KeySet},
        users::{self, Credential, MAX_LABEL_CHARS},
    },
    app::AppState,
    config::Config,
    error::{Error, ScriptError},
    login::{
        SignedIn, api, current,
        forms::{SignedInForm, SignedInPage},
        passkeys::{self, NewPasskeyFor, Purpose},
        sign_in_redirect, ui,
    },
    oauth::{
        grants::{self, Grant},
        resource::Resources,
    },
    pages::{Page, escape},
    store::StoreError,
};

/// `GET /account`
pub async fn page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<ui::NoticeQuery>,
) -> Result<Response, Error> {
    let Some(me) = current(&state, &headers).await? else {
        return Ok(sign_in_redirect("/account"));
    };
    let store = state.store.as_ref();
    let creds = users::credentials(store, &me.user_id).await?;
    let keys = personal_keys::list(store, &me.user_id).await?;
    let connections = backend_tokens::list(store, &me.user_id).await?;
    let grants = grants::list_for_user(store, &me.user_id).await?;
    let mut connected = group_by_client(&grants);
    for (client_id, c) in connected.iter_mut() {
        c.origin = client_origin(&state, client_id).await?;
    }
    let admin_link = if me.is_admin {
        r#"<a class="button secondary" href="/admin">Manage users</a>"#
    } else {
        ""
    };
    let body = format!(
        r#"{notice}
<section class="card">
<h1>{display_name}</h1>
<p class="muted">Signed in as <strong>{name}</strong>{role}.</p>
{groups}
<div class="actions">{admin_link}
<form method="post" action="/logout" class="inline">{csrf}<button type="submit" class="secondary">Sign out</button></form>
</div>
</section>
{connect}
{backends}
{keys}
{passkeys}
{clients}"#,
        notice = ui::notice(query.notice.as_deref()),
        display_name = escape(&me.display_name),
        name = escape(&me.name),
        role = if me.is_admin {
            ", an administrator"
        } else {
            ""
        },
        groups = groups_line(&me.groups),
        csrf = ui::csrf_field(&me.csrf),
        connect = connect_section(&state.config, &state.resources),
        keys = keys_section(&me, &state.resources, &keys),
        backends = backends_section(&me, &state.resources, &connections),
        passkeys = passkeys_section(&me, &creds),
        clients = clients_section(&me, &connected, &state.config.mcp_url()),
    );
    Ok(Page::new("Your account", body)
        .with_script()
        .into_response())
}

fn groups_line(groups: &[String]) -> String {
    if groups.is_empty() {
        return String::new();
    }
    let names: Vec<String> = groups
        .iter()
        .map(|g| format!(r#"<span class="tag">{}</span>"#, escape(g)))
        .collect();
    format!(
        r#"<p class="small" data-groups>Groups: {}</p>"#,
        names.join(" ")
    )
}

/// Each MCP server URL to paste (passgate's own `/mcp` or the gateway's
/// routes), with a copy button (the page script wires it), and where each
/// common client takes it, ready to paste.
fn connect_section(config: &Config, resources: &Resources) -> String {
    let cloud_note = if config.public_url_is_loopback() {
        r#" <span class="muted">It runs in the cloud, so it needs passgate on a public https URL; this one is local.</span>"#
    } else {
        ""
    };
    let servers: String = resources
        .iter()
        .enumerate()
        .map(|(i, resource)| {
            let url = escape(resource.url());
            let id = if i == 0 { "mcp-url".to_owned() } else { format!("mcp-url-{i}") };
            // The name clients list it under: the route's own, or passgate.
            let short = match resource.path().strip_prefix("/mcp/") {
                Some(route) => escape(route),
                None => "passgate".to_owned(),
            };
            let heading = if resources.iter().count() > 1 {
                format!("<h3>{}</h3>\n", escape(resource.name()))
            } else {
                String::new()
            };
            format!(
                r#"{heading}<label for="{id}">MCP server URL</label>
<div class="copy-row"><input type="text" id="{id}" readonly value="{url}" class="mono" data-select-on-focus>
<button type="button" class="secondary" data-copy="{id}" data-copy-status-id="{id}-status" data-copied="Copied. Paste it into your MCP client." hidden>Copy URL</button></div>
<p class="status" role="status" aria-live="polite" id="{id}-status"></p>
<div class="clients-help">
<details><summary>Claude (web and desktop)</summary><p>Settings → Connectors → Add custom connector, then paste the URL.{cloud_note}</p></details>
<details><summary>ChatGPT</summary><p>Settings → Connectors (in developer mode) → Create, paste the URL and choose OAuth.{cloud_note}</p></details>
<details><summary>VS Code</summary><p>Command Palette → <q>MCP: Add Server…</q> → HTTP, then paste the URL.</p></details>
<details><summary>Claude Code</summary><p>Run <code>claude mcp add --transport http {short} {url}</code>, then <code>/mcp</code> in Claude Code to sign in.</p></details>
<details><summary>Cursor</summary><p>Add to <code>~/.cursor/mcp.json</code>: <code>{{"mcpServers": {{"{short}": {{"url": "{url}"}}}}}}</code></p></details>
</div>
"#
            )
        })
        .collect();
    format!(
        r#"<section class="card" aria-labelledby="connect-title">
<h2 id="connect-title">Connect an application</h2>
<p class="muted">Add an MCP server URL to your MCP client. The client sends you here to sign in and approve it.</p>
{servers}</section>"#
    )
}

/// How a [`resource_button`] looks: plain, or red for what takes away.
enum Button {
    Plain,
    Danger,
}

/// A one-button form that posts `resource` (a route path) to `action`.
/// `aria` names what the button does to screen readers.
fn resource_button(
    me: &SignedIn,
    action: &str,
    path: &str,
    kind: Button,
    aria: &str,
    label: &str,
) -> String {
    let class = match kind {
        Button::Plain => "",
        Button::Danger => r#" class="danger""#,
    };
    format!(
        r#"<form method="post" action="{action}" class="inline">{csrf}<input type="hidden" name="resource" value="{path}"><button type="submit"{class} aria-label="{aria}">{label}</button></form>"#,
        csrf = ui::csrf_field(&me.csrf),
        path = escape(path),
        aria = escape(aria),
        label = escape(label),
    )
}

/// The MCP servers with their own sign-in: whether this person connected
/// their account there, and a button to connect (again) or disconnect.
fn backends_section(me: &SignedIn, resources: &Resources, connected: &[(String, i64)]) -> String {
    let items: String = resources
        .iter()
        .filter(|r| r.asks_backend_sign_in())
        .map(|resource| {
            let path = resource.path();
            // The anchor that calls needing it point to.
            let anchor = backend_tokens::account_anchor(path);
            let id = anchor.trim_start_matches("/account#");
            let since = connected.iter().find(|(p, _)| p == path).map(|(_, at)| *at);
            let (state, action) = match since {
                Some(at) => (
                    format!("Connected {}.", ui::date_time(at)),
                    resource_button(
                        me,
                        "/account/backends/disconnect",
                        path,
                        Button::Danger,
                        &format!("Disconnect your account at {}", resource.name()),
                        "Disconnect",
                    ),
                ),
                None => (
                    "Not connected: calls to this server ask you to connect.".to_owned(),
                    resource_button(
                        me,
                        "/account/backends/connect",
                        path,
                        Button::Plain,
                        &format!("Connect your account at {}", resource.name()),
                        "Connect",
                    ),
                ),
            };
            format!(
                r#"<li class="stacked" id="{id}"><div><strong>{name}</strong><br><small data-backend-state>{state}</small></div>
<div class="row-actions">{action}</div></li>"#,
                name = escape(resource.name()),
            )
        })
        .collect();
    if items.is_empty() {
        return String::new();
    }
    format!(
        r#"<section class="card" aria-labelledby="backends-title">
<h2 id="backends-title">Your accounts at MCP servers</h2>
<p class="muted">These servers have a sign-in of their own. Connect once, and your MCP clients reach each one as you; passgate keeps the server's tokens encrypted and never hands them to your clients.</p>
<ul class="list">{items}</ul>
</section>"#
    )
}

/// The MCP servers that want each person's own key: whether this person
/// set one and when, a field to set or replace it (a password field: the
/// key is never shown again) and a button to remove it.
fn keys_section(me: &SignedIn, resources: &Resources, keys: &[KeySet]) -> String {
    let items: String = resources
        .iter()
        .filter_map(|resource| Some((resource, resource.personal_key()?)))
        .map(|(resource, ask)| {
            let path = resource.path();
            let anchor = personal_keys::account_anchor(path);
            let id = anchor.trim_start_matches("/account#");
            let set = keys.iter().find(|k| k.route_path == path);
            let state = match set {
                Some(k) => format!("Set {}.", ui::date_time(k.set_at)),
                None => "Not set yet: calls to this server ask for it.".to_owned(),
            };
            let help = ask.help_url.as_deref().map_or_else(String::new, |url| {
                format!(
                    r#" <a href="{}" target="_blank" rel="noopener noreferrer">Where to get one</a>."#,
                    escape(url)
                )
            });
            let remove = if set.is_some() {
                resource_button(
                    me,
                    "/account/keys/remove",
                    path,
                    Button::Danger,
                    &format!("Remove your {}", ask.label),
                    "Remove",
                )
            } else {
                String::new()
            };
            format!(
                r#"<li class="stacked" id="{id}" data-key-route="{path}"><div><strong>{name}</strong><br><small data-key-state>{state}</small></div>
<form method="post" action="/account/keys" class="key-form">{csrf}<input type="hidden" name="resource" value="{path}">
<label for="{id}-value">Your {label}{help}</label>
<input type="password" id="{id}-value" name="key" autocomplete="off" spellcheck="false" maxlength="{max}" required>
<div class="actions"><button type="submit">{verb}</button></div>
</form>
<div class="row-actions">{remove}</div></li>"#,
                name = escape(resource.name()),
                path = escape(path),
                label = escape(&ask.label),
                csrf = ui::csrf_field(&me.csrf),
                max = personal_keys::MAX_KEY_CHARS,
                verb = if set.is_some() { "Replace key" } else { "Save key" },
            )
        })
        .collect();
    if items.is_empty() {
        return String::new();
    }
    format!(
        r#"<section class="card" aria-labelledby="keys-title">
<h2 id="keys-title">Your keys for MCP servers</h2>
<p class="muted">These servers act as you with your own key for the service behind them. passgate keeps each key encrypted, sends it only to its server with your calls, and never shows it again.</p>
<ul class="list">{items}</ul>
</section>"#
    )
}

fn passkeys_section(me: &SignedIn, creds: &[Credential]) -> String {
    let only_one = creds.len() <= 1;
    let items: String = creds
        .iter()
        .map(|c| passkey_item(me, c, only_one))
        .collect();
    format!(
        r#"<section class="card" aria-labelledby="passkeys-title">
<h2 id="passkeys-title">Passkeys</h2>
<p class="muted">Any of these signs you in. Add one on each device or password manager you use, so losing one does not lock you out.</p>
<ul class="list">{items}</ul>
<form data-passkey="add" data-csrf="{csrf}">
<label for="new-passkey-name">Name for a new passkey <span class="muted">(optional)</span></label>
<input type="text" id="new-passkey-name" name="label" maxlength="{max}" placeholder="For example: work laptop">
<div class="actions"><button type="submit">Add a passkey</button></div>
{status}
</form>
</section>"#,
        csrf = escape(&me.csrf),
        max = MAX_LABEL_CHARS,
        status = ui::STATUS,
    )
}

fn passkey_item(me: &SignedIn, c: &Credential, only_one: bool) -> String {
    let used = c.last_used_at.map_or_else(
        || "never used to sign in".to_owned(),
        |t| format!("last used {}", ui::date_time(t)),
    );
    let synced = if c.backed_up {
        " · synced"
    } else if c.backup_eligible {
        " · can sync"
    } else {
        " · this device only"
    };
    let id = escape(&c.id);
    let field_id = format!("rename-{}", short_id(&c.id));
    let delete = if only_one {
        r#"<small class="muted">Your only passkey cannot be deleted: add another first.</small>"#
            .to_owned()
    } else {
        format!(
            r#"<form method="post" action="/account/passkeys/delete" class="inline">{csrf}<input type="hidden" name="id" value="{id}"><button type="submit" class="danger" aria-label="Delete passkey {label}">Delete</button></form>"#,
            csrf = ui::csrf_field(&me.csrf),
            label = escape(&c.name),
        )
    };
    format!(
        r#"<li class="stacked"><div><strong>{label}</strong><br><small>added {added} · {used}{synced}</small></div>
<div class="row-actions">
<form method="post" action="/account/passkeys/rename" class="inline rename">{csrf}<input type="hidden" name="id" value="{id}">
<label for="{field_id}" class="visually-hidden">New name for {label}</label>
<input type="text" id="{field_id}" name="name" value="{label}" maxlength="{max}" required>
<button type="submit" class="secondary">Rename</button></form>
{delete}
</div></li>"#,
        label = escape(&c.name),
        added = ui::date(c.created_at),
        csrf = ui::csrf_field(&me.csrf),
        max = MAX_LABEL_CHARS,
    )
}

/// A stable, short, HTML-id-safe form of a credential id.
fn short_id(id: &str) -> String {
    crate::crypto::token_hash(id)
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(12)
        .collect()
}

/// Connected clients, one entry per client however many authorizations it
/// holds, with what tells apart installations that share a name.
struct Connected<'a> {
    name: &'a str,
    scopes: Vec<&'a str>,
    since: i64,
    last_used: i64,
    authorizations: usize,
    /// Host and port of the redirect URIs (`127.0.0.1:33418`).
    redirect_hosts: Vec<String>,
    /// Where the registration came from, or how the client is known.
    origin: String,
}

fn group_by_client(grants: &[Grant]) -> BTreeMap<&str, Connected<'_>> {
    let mut clients: BTreeMap<&str, Connected<'_>> = BTreeMap::new();
    for g in grants {
        let entry = clients.entry(g.client_id.as_str()).or_insert(Connected {
            name: &g.client_name,
            scopes: Vec::new(),
            since: g.created_at,
            last_used: 0,
            authorizations: 0,
            redirect_hosts: Vec::new(),
            origin: String::new(),
        });
        entry.authorizations += 1;
        entry.since = entry.since.min(g.created_at);
        entry.last_used = entry.last_used.max(g.last_used_at.unwrap_or(g.created_at));
        if let Some(host) = redirect_host(&g.redirect_uri)
            && !entry.redirect_hosts.contains(&host)
        {
            entry.redirect_hosts.push(host);
        }
        for s in g.scope.split_whitespace() {
            if !entry.scopes.contains(&s) {
                entry.scopes.push(s);
            }
        }
    }
    clients
}

/// `host[:port]` of a redirect URI, or the scheme of a private-use one
/// (`cursor:`).
pub fn redirect_host(uri: &str) -> Option<String> {
    let url = url::Url::parse(uri).ok()?;
    Some(match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        (None, _) => format!("{}:", url.scheme()),
    })
}

/// How a client is known, for telling it apart from same-named ones.
pub async fn client_origin(state: &AppState, client_id: &str) -> Result<String, Error> {
    if state
        .configured_clients
        .iter()
        .any(|c| c.client_id == client_id)
    {
        return Ok("configured by the operator".into());
    }
    if client_id.contains("://") {
        let host = url::Url::parse(client_id)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_default();
        return Ok(format!("described at {host}"));
    }
    Ok(
        match crate::oauth::clients::registration(state.store.as_ref(), client_id).await? {
            Some(c) => match c.registered_from {
                Some(from) => format!("registered {} from {from}", ui::date(c.created_at)),
                None => format!("registered {}", ui::date(c.created_at)),
            },
            None => "registration removed".into(),
        },
    )
}

/// What a scope lets a client do, in words.
fn scope_words(scope: &str) -> String {
    match scope {
        crate::oauth::SCOPE_MCP => "MCP tools".to_owned(),
        other => escape(other),
    }
}

fn client_details(me: &SignedIn, client_id: &str, c: &Connected<'_>, title: bool) -> String {
    let scopes = if c.scopes.is_empty() {
        String::new()
    } else {
        let words: Vec<String> = c.scopes.iter().map(|s| scope_words(s)).collect();
        format!(" · can use {}", words.join(", "))
    };
    let redirect = if c.redirect_hosts.is_empty() {
        String::new()
    } else {
        format!(
            r#"<small class="meta">returns to <span class="mono">{}</span> · {}</small>"#,
            escape(&c.redirect_hosts.join(", ")),
            escape(&c.origin)
        )
    };
    let name = escape(if c.name.is_empty() { client_id } else { c.name });
    let heading = if title {
        format!("<strong>{name}</strong>")
    } else {
        String::new()
    };
    format!(
        r#"<li><div>{heading}<small class="meta">approved {since} · last used {last}{scopes} · {n} sign-in{plural}</small>{redirect}<small class="meta">client ID <span class="mono">{client_id}</span></small></div>
<form method="post" action="/account/clients/revoke" class="inline">{csrf}<input type="hidden" name="client_id" value="{client_id}"><button type="submit" class="danger" aria-label="Disconnect {name}{id_hint}">Disconnect</button></form></li>"#,
        client_id = escape(client_id),
        since = ui::date(c.since),
        last = ui::date(c.last_used),
        n = c.authorizations,
        plural = if c.authorizations == 1 { "" } else { "s" },
        csrf = ui::csrf_field(&me.csrf),
        // Same-named installations: the label says which one.
        id_hint = if title {
            String::new()
        } else {
            format!(
                " ({})",
                escape(&client_id.chars().take(8).collect::<String>())
            )
        },
    )
}

fn clients_section(
    me: &SignedIn,
    clients: &BTreeMap<&str, Connected<'_>>,
    mcp_url: &str,
) -> String {
    let items: String = if clients.is_empty() {
        format!(
            r#"<li class="empty"><p>No applications are connected to your account yet.</p>
<p class="small muted">To connect one, add <code>{}</code> to your MCP client, as described above.</p></li>"#,
            escape(mcp_url)
        )
    } else {
        // Installations that share a name (every mcp-remote is "MCP CLI
        // Proxy") are listed together under that name.
        let mut by_name: BTreeMap<&str, Vec<(&str, &Connected<'_>)>> = BTreeMap::new();
        for (id, c) in clients {
            by_name
                .entry(if c.name.is_empty() { id } else { c.name })
                .or_default()
                .push((id, c));
        }
        by_name
            .iter()
            .map(|(name, members)| {
                if let [(id, c)] = members.as_slice() {
                    client_details(me, id, c, true)
                } else {
                    let rows: String = members
                        .iter()
                        .map(|(id, c)| client_details(me, id, c, false))
                        .collect();
                    format!(
                        r#"<li class="stacked" data-client-group><div><strong>{name}</strong> <small>{n} installations, told apart by where they return to and when they were used</small></div><ul class="list nested">{rows}</ul></li>"#,
                        name = escape(name),
                        n = members.len(),
                    )
                }
            })
            .collect()
    };
    format!(
        r#"<section class="card" aria-labelledby="clients-title">
<h2 id="clients-title">Connected applications</h2>
<p class="muted">MCP clients you approved. Disconnecting one ends its access at once; to connect again it must ask for your approval.</p>
<ul class="list">{items}</ul>
</section>"#
    )
}

async fn signed_in(state: &AppState, headers: &HeaderMap) -> Result<SignedIn, Error> {
    current(state, headers).await?.ok_or_else(|| {
        Error::Forbidden(
            "You are not signed in (your session may have expired). Sign in again.".into(),
        )
    })
}

#[derive(Deserialize)]
pub struct RenameForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    id: String,
    #[serde(default)]
    name: String,
}

impl SignedInPage for RenameForm {
    const PAGE: &'static str = "/account";
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// `POST /account/passkeys/rename`
pub async fn rename(
    State(state): State<AppState>,
    SignedInForm { me, form }: SignedInForm<RenameForm>,
) -> Result<Response, Error> {
    users::rename_credential(state.store.as_ref(), &me.user_id, &form.id, &form.name).await?;
    Ok(Redirect::to("/account?notice=passkey-renamed").into_response())
}

#[derive(Deserialize)]
pub struct IdForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    id: String,
}

impl SignedInPage for IdForm {
    const PAGE: &'static str = "/account";
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// `POST /account/passkeys/delete`
pub async fn delete(
    State(state): State<AppState>,
    SignedInForm { me, form }: SignedInForm<IdForm>,
) -> Result<Response, Error> {
    let sessions = users::delete_credential(state.store.as_ref(), &me.user_id, &form.id).await?;
    tracing::info!(user = %me.name, sessions, "passkey deleted");
    Ok(Redirect::to("/account?notice=passkey-deleted").into_response())
}

#[derive(Deserialize)]
pub struct RevokeForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    client_id: String,
}

impl SignedInPage for RevokeForm {
    const PAGE: &'static str = "/account";
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// `POST /account/clients/revoke`
pub async fn revoke_client(
    State(state): State<AppState>,
    SignedInForm { me, form }: SignedInForm<RevokeForm>,
) -> Result<Response, Error> {
    let n =
        grants::revoke_client_for_user(state.store.as_ref(), &me.user_id, &form.client_id).await?;
    tracing::info!(user = %me.name, families = n, "client disconnected");
    Ok(Redirect::to("/account?notice=client-revoked").into_response())
}

#[derive(Deserialize)]
pub struct KeyForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    resource: String,
    #[serde(default)]
    key: String,
}

impl SignedInPage for KeyForm {
    const PAGE: &'static str = "/account";
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// The resource path a key form names, if that resource asks for keys.
fn keyed_resource<'a>(state: &'a AppState, path: &str) -> Result<&'a str, Error> {
    state
        .resources
        .iter()
        .find(|r| r.path() == path && r.personal_key().is_some())
        .map(|r| r.path())
        .ok_or_else(|| Error::bad_request("That MCP server does not take a key (any more)."))
}

/// `POST /account/keys`: sets or replaces the person's key for one server.
pub async fn set_key(
    State(state): State<AppState>,
    SignedInForm { me, form }: SignedInForm<KeyForm>,
) -> Result<Response, Error> {
    let path = keyed_resource(&state, &form.resource)?;
    personal_keys::set(
        state.store.as_ref(),
        &state.master_key,
        &me.user_id,
        path,
        &form.key,
    )
    .await?;
    tracing::info!(user = %me.name, route = path, "personal key set");
    Ok(Redirect::to("/account?notice=key-saved").into_response())
}

/// `POST /account/keys/remove`
pub async fn remove_key(
    State(state): State<AppState>,
    SignedInForm { me, form }: SignedInForm<KeyForm>,
) -> Result<Response, Error> {
    // Any path: a key for a route that is gone can be removed too.
    personal_keys::remove(state.store.as_ref(), &me.user_id, &form.resource).await?;
    tracing::info!(user = %me.name, route = %form.resource, "personal key removed");
    Ok(Redirect::to("/account?notice=key-removed").into_response())
}

fn csrf_header(headers: &HeaderMap) -> &str {
    headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

#[derive(Deserialize, Default)]
pub struct AddStart {
    #[serde(default)]
    label: String,
}

/// `POST /account/passkeys/options`: starts adding a passkey. Needs the
/// session's CSRF token in `X-CSRF-Token`.
pub async fn add_options(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ScriptError> {
    api::check_request(&state.config, &headers)?;
    let me = signed_in(&state, &headers).await?;
    me.check_csrf(csrf_header(&headers))?;
    let start: AddStart = serde_json::from_slice(&body).unwrap_or_default();
    let label = if start.label.trim().is_empty() {
        passkeys::default_label()
    } else {
        users::normalize_label(&start.label, "passkey name", MAX_LABEL_CHARS)?
    };
    let existing = users::credentials(state.store.as_ref(), &me.user_id).await?;
    let (binding, set_binding) = api::binding(&state.config, &headers);
    let options = passkeys::start_registration(
        &state,
        &binding,
        Purpose::AddPasskey {
            user_id: me.user_id.clone(),
            label,
        },
        NewPasskeyFor {
            user_id: &me.user_id,
            name: &me.name,
            display_name: &me.display_name,
        },
        &existing,
    )
    .await?;
    Ok(api::json_with_cookies(
        json!({ "publicKey": options }),
        set_binding.into_iter().collect(),
    ))
}

/// `POST /account/passkeys/finish`: verifies and stores the new passkey.
pub async fn add_finish(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ScriptError> {
    api::check_request(&state.config, &headers)?;
    let me = signed_in(&state, &headers).await?;
    me.check_csrf(csrf_header(&headers))?;
    let binding = api::require_binding(&state.config, &headers)?;
    let (purpose, credential) = passkeys::finish_registration(&state, &binding, &body).await?;
    match purpose {
        Purpose::AddPasskey { user_id, .. } if user_id == me.user_id => {}
        _ => {
            return Err(Error::Forbidden(
                "This passkey was started for another account or purpose.".into(),
            )
            .into());
        }
    }
    match state
        .store
        .transact(users::add_credential_writes(&credential)?)
        .await
    {
        Ok(()) => {}
        Err(StoreError::Conflict) => {
            return Err(
                Error::bad_request("This passkey is already registered with passgate.").into(),
            );
        }
        Err(e) => return Err(e.into()),
    }
    tracing::info!(user = %me.name, "passkey added");
    Ok(api::json_with_cookies(
        json!({ "redirect": "/account?notice=passkey-added" }),
        Vec::new(),
    ))
}
