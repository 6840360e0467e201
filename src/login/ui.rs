//! Small pieces shared by the sign-in, enrollment, account and admin pages.

use crate::pages::escape;

/// Where to go after sign-in: `next` if it is a path on this server,
/// otherwise the account page. Refuses anything a browser could read as
/// another host (`//host`, `/\host`) or that carries control characters.
pub fn local_next(next: Option<&str>) -> String {
    const FALLBACK: &str = "/account";
    let Some(next) = next else {
        return FALLBACK.to_owned();
    };
    let ok = next.starts_with('/')
        && !next.starts_with("//")
        && !next.contains('\\')
        && next.len() <= 2048
        && !next.chars().any(char::is_control);
    if ok {
        next.to_owned()
    } else {
        FALLBACK.to_owned()
    }
}

/// The hidden form field carrying the session's anti-forgery token.
pub fn csrf_field(csrf: &str) -> String {
    format!(
        r#"<input type="hidden" name="csrf" value="{}">"#,
        escape(csrf)
    )
}

/// `YYYY-MM-DD` (UTC) for Unix seconds.
pub fn date(unix: i64) -> String {
    let (y, m, d) = civil_from_days(unix.div_euclid(86_400));
    format!("{y:04}-{m:02}-{d:02}")
}

/// `YYYY-MM-DD HH:MM UTC` for Unix seconds.
pub fn date_time(unix: i64) -> String {
    let secs = unix.rem_euclid(86_400);
    format!(
        "{} {:02}:{:02} UTC",
        date(unix),
        secs / 3600,
        (secs % 3600) / 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The status line the passkey script writes into, announced to screen
/// readers.
pub const STATUS: &str = r#"<p class="status" role="status" aria-live="polite" data-status></p>"#;

/// Shown when scripts are off: passkeys need the WebAuthn API.
pub const NOSCRIPT: &str = r#"<noscript><p class="notice error">Passkeys need JavaScript. Turn it on for this site and reload the page.</p></noscript>"#;

/// `?notice=<code>` on a page that a form redirects back to.
#[derive(serde::Deserialize)]
pub struct NoticeQuery {
    pub notice: Option<String>,
}

/// A notice after a redirect, chosen from a fixed list (nothing from the
/// query string is echoed).
pub fn notice(code: Option<&str>) -> String {
    let text = match code {
        Some("welcome") => "Your account is ready, and you are signed in.",
        Some("passkey-added") => "Your new passkey is saved.",
        Some("recovered") => {
            "Your new passkey is saved and you are signed in; other browsers were signed out. If you lost a passkey, delete it below."
        }
        Some("groups-saved") => "The groups were saved.",
        Some("passkey-renamed") => "The passkey was renamed.",
        Some("passkey-deleted") => {
            "The passkey was deleted, and browsers signed in with it were signed out. Remember to remove it from your device or password manager too."
        }
        Some("client-revoked") => {
            "The application was disconnected. It must ask for your approval again to connect."
        }
        Some("user-disabled") => {
            "The account was disabled, its sessions ended and its applications disconnected."
        }
        Some("key-saved") => {
            "Your key was saved. passgate sends it only to that MCP server, with your calls; it is not shown again."
        }
        Some("key-removed") => "Your key was removed. Calls to that MCP server now ask for one.",
        Some("backend-connected") => {
            "Your account there is connected. Your MCP clients reach that server as you now; it never sees their passgate sign-in."
        }
        Some("backend-disconnected") => {
            "Disconnected. passgate deleted its tokens for that server (and asked the server to revoke them where it can)."
        }
        Some("backend-cancelled") => {
            "Connecting was cancelled at the MCP server's sign-in; nothing changed."
        }
        Some("user-enabled") => "The account was enabled again.",
        Some("user-deleted") => "The account was deleted.",
        _ => return String::new(),
    };
    format!(r#"<p class="notice" role="status">{}</p>"#, escape(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_must_be_a_local_path() {
        assert_eq!(local_next(Some("/authorize?x=1")), "/authorize?x=1");
        assert_eq!(local_next(Some("https://evil.example")), "/account");
        assert_eq!(local_next(Some("//evil.example")), "/account");
        assert_eq!(local_next(Some("/\\evil.example")), "/account");
        assert_eq!(local_next(Some("/a\nb")), "/account");
        assert_eq!(local_next(None), "/account");
    }

    #[test]
    fn dates_are_utc_calendar_dates() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(951_782_400), "2000-02-29");
        assert_eq!(date_time(1_700_000_000), "2023-11-14 22:13 UTC");
    }
}
