//! The admin page: every account, invitations, and disabling or deleting
//! accounts. Administrators only; an administrator cannot disable or delete
//! their own account here (that would lock the last one out).

use axum::{
    extract::{Query, State},
    response::{IntoResponse, Redirect, Response},
};
use http::HeaderMap;
use serde::Deserialize;

use crate::{
    accounts::{
        invitations,
        users::{self, Role, User},
    },
    app::AppState,
    error::Error,
    login::{
        SignedIn, current,
        forms::{SignedInForm, SignedInPage},
        recovery, sign_in_redirect, ui,
    },
    pages::{Page, escape},
};

async fn require_admin(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<Result<SignedIn, Response>, Error> {
    let Some(me) = current(state, headers).await? else {
        return Ok(Err(sign_in_redirect("/admin")));
    };
    me.require_admin()?;
    Ok(Ok(me))
}

/// `GET /admin`
pub async fn page(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<ui::NoticeQuery>,
) -> Result<Response, Error> {
    let me = match require_admin(&state, &headers).await? {
        Ok(me) => me,
        Err(redirect) => return Ok(redirect),
    };
    let all = users::list(state.store.as_ref()).await?;
    let passkeys = state.config.passkeys;
    let rows: String = all.iter().map(|u| user_row(&me, u, passkeys)).collect();
    let invite = if state.config.passkeys {
        invite_section(&state, &me)
    } else {
        no_invitations_section(&state)
    };
    let body = format!(
        r#"{notice}
<section class="card">
<h1>Users</h1>
<ul class="list">{rows}</ul>
<div class="actions"><a class="button secondary" href="/account">Back to your account</a></div>
</section>
{invite}"#,
        notice = ui::notice(query.notice.as_deref()),
    );
    Ok(Page::new("Users", body).into_response())
}

/// With passkeys off an invitation could not be used (it enrolls a
/// passkey): people arrive through the provider instead.
fn no_invitations_section(state: &AppState) -> String {
    let provider = state
        .config
        .oidc
        .as_ref()
        .map_or("the identity provider", |u| u.name.as_str());
    format!(
        r#"<section class="card" aria-labelledby="invite-title">
<h2 id="invite-title">Adding people</h2>
<p>People get an account by signing in with {provider}. To make someone an administrator after their first sign-in, run <code>passgate users promote &lt;name&gt;</code> on the server.</p>
</section>"#,
        provider = crate::pages::escape(provider),
    )
}

fn invite_section(state: &AppState, me: &SignedIn) -> String {
    format!(
        r#"<section class="card" aria-labelledby="invite-title">
<h2 id="invite-title">Invite someone</h2>
<p class="muted">The invitation link works once and expires in {hours} hours. Only the person with the link can create the account.</p>
<form method="post" action="/admin/invite">
{csrf}
<label for="invite-name">User name</label>
<input type="text" id="invite-name" name="name" required maxlength="{max}" autocapitalize="none" spellcheck="false" pattern="[A-Za-z0-9][A-Za-z0-9._\-]*" aria-describedby="invite-name-help">
<p id="invite-name-help" class="muted hint">Lowercase letters, digits, dots, dashes or underscores; no spaces. The person chooses their display name when enrolling.</p>
<fieldset class="choice"><legend>Role</legend>
<label class="option"><input type="radio" name="role" value="member" checked> Member: connects applications to their own account</label>
<label class="option"><input type="radio" name="role" value="admin"> Administrator: also manages users</label>
</fieldset>
<div class="actions"><button type="submit">Create invitation link</button></div>
</form>
</section>"#,
        hours = state.config.invite_ttl_secs / 3600,
        csrf = ui::csrf_field(&me.csrf),
        max = users::MAX_NAME_CHARS,
    )
}

fn user_row(me: &SignedIn, u: &User, passkeys: bool) -> String {
    let status = if u.disabled {
        " · <strong>disabled</strong>"
    } else {
        ""
    };
    let actions = if u.id == me.user_id {
        r#"<small class="muted">This is you.</small>"#.to_owned()
    } else {
        let toggle = if u.disabled {
            ("enable", "Enable", "secondary")
        } else {
            ("disable", "Disable", "secondary")
        };
        format!(
            r#"<form method="post" action="/admin/users/{action}" class="inline">{csrf}<input type="hidden" name="user_id" value="{id}"><button type="submit" class="{class}" aria-label="{label} {name}">{label}</button></form>
<form method="post" action="/admin/users/delete" class="inline">{csrf}<input type="hidden" name="user_id" value="{id}"><button type="submit" class="danger" aria-label="Delete {name}">Delete</button></form>"#,
            action = toggle.0,
            label = toggle.1,
            class = toggle.2,
            csrf = ui::csrf_field(&me.csrf),
            id = escape(&u.id),
            name = escape(&u.name),
        )
    };
    let field_id = format!("groups-{}", escape(&u.id));
    let groups = format!(
        r#"<form method="post" action="/admin/users/groups" class="inline groups">{csrf}<input type="hidden" name="user_id" value="{id}">
<label for="{field_id}" class="visually-hidden">Groups of {name}</label><span class="muted small" aria-hidden="true">Groups</span>
<input type="text" id="{field_id}" name="groups" value="{groups}" placeholder="groups, comma-separated" maxlength="2000" autocapitalize="none" spellcheck="false">
<button type="submit" class="secondary" aria-label="Save groups of {name}">Save groups</button></form>"#,
        csrf = ui::csrf_field(&me.csrf),
        id = escape(&u.id),
        name = escape(&u.name),
        groups = escape(&u.groups.join(", ")),
    );
    // A recovery link adds a passkey: not for oneself, a disabled account,
    // or a server without passkeys.
    let recover = if u.disabled || u.id == me.user_id || !passkeys {
        String::new()
    } else {
        format!(
            r#"<form method="post" action="/admin/users/recover" class="inline">{csrf}<input type="hidden" name="user_id" value="{id}"><button type="submit" class="secondary" aria-label="Recovery link for {name}">Recovery link</button></form>"#,
            csrf = ui::csrf_field(&me.csrf),
            id = escape(&u.id),
            name = escape(&u.name),
        )
    };
    format!(
        r#"<li class="stacked"><div><strong>{display}</strong> <span class="mono">{name}</span><br><small>{role} · joined {joined}{status}</small></div><div class="row-actions">{groups}</div><div class="row-actions">{recover}{actions}</div></li>"#,
        display = escape(&u.display_name),
        name = escape(&u.name),
        role = u.role.as_str(),
        joined = ui::date(u.created_at),
    )
}

#[derive(Deserialize)]
pub struct InviteForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    role: String,
}

impl SignedInPage for InviteForm {
    const PAGE: &'static str = "/admin";
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// `POST /admin/invite`: creates an invitation and shows its link, once.
pub async fn invite(
    State(state): State<AppState>,
    SignedInForm { me, form }: SignedInForm<InviteForm>,
) -> Result<Response, Error> {
    me.require_admin()?;
    if !state.config.passkeys {
        return Err(Error::bad_request(
            "Passkeys are turned off here, so an invitation could not be used: people get an account by signing in with the identity provider.",
        ));
    }
    let role = if form.role == "admin" {
        Role::Admin
    } else {
        Role::Member
    };
    let created = invitations::create(
        state.store.as_ref(),
        &state.config.issuer(),
        &form.name,
        role,
        state.config.invite_ttl_secs,
        Some(&me.name),
    )
    .await?;
    tracing::info!(by = %me.name, name = %created.invitation.name, role = role.as_str(), "invitation created");
    let body = format!(
        r#"<section class="card">
<h1>Invitation for {name}</h1>
<p class="lead">Send this link to {name} through a channel you trust. It is shown only now, works once, and expires {expires}.</p>
<label for="invite-link">Invitation link</label>
<input type="text" id="invite-link" readonly value="{link}" class="mono" data-select-on-focus>
<p class="status" role="status" aria-live="polite" data-copy-status></p>
<div class="actions"><button type="button" data-copy="invite-link" hidden>Copy link</button><a class="button secondary" href="/admin">Done</a></div>
</section>"#,
        name = escape(&created.invitation.name),
        expires = escape(&ui::date_time(created.invitation.expires_at)),
        link = escape(&created.link),
    );
    Ok(Page::new("Invitation created", body)
        .with_script()
        .into_response())
}

#[derive(Deserialize)]
pub struct UserForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    user_id: String,
}

impl SignedInPage for UserForm {
    const PAGE: &'static str = "/admin";
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// Disabling, enabling and deleting: administrators, other accounts only.
fn check_user_action(me: &SignedIn, form: &UserForm) -> Result<(), Error> {
    me.require_admin()?;
    if form.user_id == me.user_id {
        return Err(Error::bad_request(
            "You cannot disable or delete your own account from here. Ask another administrator, or use `passgate users` on the server.",
        ));
    }
    Ok(())
}

/// `POST /admin/users/disable`
pub async fn disable(
    State(state): State<AppState>,
    SignedInForm { me, form }: SignedInForm<UserForm>,
) -> Result<Response, Error> {
    check_user_action(&me, &form)?;
    let user = users::set_disabled(state.store.as_ref(), &form.user_id, true).await?;
    tracing::info!(by = %me.name, user = %user.name, "account disabled");
    Ok(Redirect::to("/admin?notice=user-disabled").into_response())
}

/// `POST /admin/users/enable`
pub async fn enable(
    State(state): State<AppState>,
    SignedInForm { me, form }: SignedInForm<UserForm>,
) -> Result<Response, Error> {
    check_user_action(&me, &form)?;
    let user = users::set_disabled(state.store.as_ref(), &form.user_id, false).await?;
    tracing::info!(by = %me.name, user = %user.name, "account enabled");
    Ok(Redirect::to("/admin?notice=user-enabled").into_response())
}

/// `POST /admin/users/delete`
pub async fn delete(
    State(state): State<AppState>,
    SignedInForm { me, form }: SignedInForm<UserForm>,
) -> Result<Response, Error> {
    check_user_action(&me, &form)?;
    let user = users::delete(state.store.as_ref(), &form.user_id).await?;
    tracing::info!(by = %me.name, user = %user.name, "account deleted");
    Ok(Redirect::to("/admin?notice=user-deleted").into_response())
}

#[derive(Deserialize)]
pub struct GroupsForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    user_id: String,
    #[serde(default)]
    groups: String,
}

impl SignedInPage for GroupsForm {
    const PAGE: &'static str = "/admin";
    fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// `POST /admin/users/groups`: any account's groups, the admin's own too.
pub async fn set_groups(
    State(state): State<AppState>,
    SignedInForm { me, form }: SignedInForm<GroupsForm>,
) -> Result<Response, Error> {
    me.require_admin()?;
    let groups = users::parse_groups(&form.groups)?;
    let user = users::set_groups(state.store.as_ref(), &form.user_id, groups).await?;
    tracing::info!(by = %me.name, user = %user.name, groups = ?user.groups, "groups set");
    Ok(Redirect::to("/admin?notice=groups-saved").into_response())
}

/// `POST /admin/users/recover`: a recovery link for another account, shown
/// once. (An administrator who lost their own passkey asks another one, or
/// runs `passgate users recover` on the server.)
pub async fn recover(
    State(state): State<AppState>,
    SignedInForm { me, form }: SignedInForm<UserForm>,
) -> Result<Response, Error> {
    me.require_admin()?;
    if !state.config.passkeys {
        return Err(Error::bad_request(
            "Passkeys are turned off here, so a recovery link could not be used: people sign in with the identity provider.",
        ));
    }
    let user = users::get(state.store.as_ref(), &form.user_id)
        .await?
        .ok_or_else(|| Error::NotFound("There is no such user.".into()))?;
    let created = recovery::create_for(
        state.store.as_ref(),
        &state.config.issuer(),
        &user,
        state.config.invite_ttl_secs,
        Some(&me.name),
    )
    .await?;
    tracing::info!(by = %me.name, user = %user.name, "recovery link created");
    let body = format!(
        r#"<section class="card">
<h1>Recovery link for {name}</h1>
<p class="lead">Send this link to {name} through a channel you trust. It is shown only now, works once, and expires {expires}.</p>
<p>{what}</p>
<label for="recovery-link">Recovery link</label>
<input type="text" id="recovery-link" readonly value="{link}" class="mono" data-select-on-focus>
<p class="status" role="status" aria-live="polite" data-copy-status></p>
<div class="actions"><button type="button" data-copy="recovery-link" hidden>Copy link</button><a class="button secondary" href="/admin">Done</a></div>
</section>"#,
        name = escape(&user.name),
        expires = escape(&ui::date_time(created.recovery.expires_at)),
        what = escape(recovery::WHAT_IT_DOES),
        link = escape(&created.link),
    );
    Ok(Page::new("Recovery link created", body)
        .with_script()
        .into_response())
}
