//! The reviewer and jury web app: server-rendered pages (askama), the scripts and styles
//! they load (all served by the server itself: no CDN), and their text (`text`). Knows no
//! domain logic and no HTTP framework: the server's `routes::pages` fills these views
//! from its use cases and serves what they render.

pub mod assets;
pub mod text;

pub use askama::Template;
pub use text::{Text, FR};

/// The Content-Security-Policy of every staff page: scripts, styles and media from the
/// server only, nothing inline, no framing.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; \
connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

#[derive(Template)]
#[template(path = "login.html")]
pub struct LoginPage<'a> {
    pub t: &'a Text,
    pub error: Option<&'a str>,
}

pub struct QueueItem {
    pub attempt_id: String,
    pub candidate: String,
    pub sitting: String,
    pub state: String,
    pub state_label: String,
    pub seconds: u64,
    pub duration: String,
    pub gaps: usize,
    pub integrity: String,
    pub integrity_label: String,
    /// Streams received after the exam's end.
    pub late_streams: usize,
    pub flags: usize,
    pub ended_ms: i64,
    pub ended: String,
    pub due_ms: i64,
    pub due: String,
    pub overdue: bool,
}

#[derive(Template)]
#[template(path = "queue.html")]
pub struct QueuePage<'a> {
    pub t: &'a Text,
    pub login: &'a str,
    pub csrf: &'a str,
    pub sittings: Vec<String>,
    pub items: Vec<QueueItem>,
}

#[derive(Template)]
#[template(path = "player.html")]
pub struct PlayerPage<'a> {
    pub t: &'a Text,
    pub login: &'a str,
    pub csrf: &'a str,
    pub attempt_id: String,
    pub candidate: String,
    pub sitting: String,
    pub speeds: &'a [&'a str],
    /// `t` as JSON for the player's script, safe inside a `<script>` element.
    pub text_json: String,
}

/// Playback speeds offered (the issue asks 0.5× to 8×).
pub const SPEEDS: &[&str] = &["0.5", "1", "1.5", "2", "4", "8"];

/// JSON that can sit inside a `<script>` element: `<` never appears raw, so neither
/// `</script>` nor `<!--` can end or change it.
pub fn script_json(t: &Text) -> String {
    serde_json::to_string(t)
        .expect("text serialises")
        .replace('<', "\\u003c")
}

/// "1 h 02 min 05 s" style durations for the queue.
pub fn duration(seconds: u64) -> String {
    let (h, m, s) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    if h > 0 {
        format!("{h} h {m:02} min")
    } else {
        format!("{m} min {s:02} s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_escape_what_they_show() {
        let page = LoginPage {
            t: &FR,
            error: Some("<script>x</script>"),
        }
        .render()
        .unwrap();
        assert!(
            page.contains("&#60;script&#62;x") || page.contains("&lt;script&gt;x"),
            "{page}"
        );
        assert!(!page.contains("<script>x"));
        assert!(!script_json(&FR).contains('<'));
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(65), "1 min 05 s");
        assert_eq!(duration(3725), "1 h 02 min");
    }
}

#[derive(Template)]
#[template(path = "account_notices.html")]
pub struct AccountNoticesPage<'a> {
    pub t: &'a Text,
    pub notices: &'a [String],
    pub next: &'a str,
}

#[derive(Template)]
#[template(path = "error.html")]
pub struct ErrorPage<'a> {
    pub t: &'a Text,
    pub status: u16,
    pub message: &'a str,
}

#[derive(Template)]
#[template(path = "account_password.html")]
pub struct PasswordPage<'a> {
    pub t: &'a Text,
    pub login: &'a str,
    pub csrf: &'a str,
    pub error: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "account_totp.html")]
pub struct TotpPage<'a> {
    pub t: &'a Text,
    pub login: &'a str,
    pub csrf: &'a str,
    pub secret: &'a str,
    pub otpauth_url: &'a str,
    pub error: Option<&'a str>,
    /// The account has a second factor already: replacing it asks for the password and a
    /// code of the current one.
    pub replacing: bool,
}

pub struct StaffRow {
    pub login: String,
    pub role: String,
    pub status: String,
    pub totp: bool,
    /// (action path segment, button label)
    pub actions: Vec<(&'static str, &'static str)>,
}

#[derive(Template)]
#[template(path = "admin.html")]
pub struct AdminPage<'a> {
    pub t: &'a Text,
    pub login: &'a str,
    pub csrf: &'a str,
    pub staff: Vec<StaffRow>,
    pub totp_required: bool,
    pub message: Option<&'a str>,
    pub shown_password: Option<&'a str>,
    pub error: Option<&'a str>,
}

pub struct AuditRow {
    pub seq: i64,
    pub when: String,
    pub actor: String,
    pub action: String,
    pub detail: String,
}

#[derive(Template)]
#[template(path = "admin_audit.html")]
pub struct AuditPage<'a> {
    pub t: &'a Text,
    pub login: &'a str,
    pub csrf: &'a str,
    pub total: usize,
    pub intact: bool,
    pub first_bad: Option<i64>,
    pub reason: String,
    pub entries: Vec<AuditRow>,
}

pub struct JuryRow {
    pub attempt_id: String,
    /// The first review is submitted and no second one was asked yet.
    pub second_review_possible: bool,
    pub sitting: String,
    pub candidate: String,
    pub state: String,
    pub review: String,
    pub outcome: String,
    pub categories: String,
}

/// A sitting of the jury member, with its PV's status.
pub struct JurySitting {
    pub id: String,
    pub reference: String,
    /// "Validé sans réserve, décidé le …", or empty while undecided.
    pub pv: String,
}

#[derive(Template)]
#[template(path = "jury.html")]
pub struct JuryPage<'a> {
    pub t: &'a Text,
    pub login: &'a str,
    pub csrf: &'a str,
    pub sittings: Vec<JurySitting>,
    pub rows: Vec<JuryRow>,
}

pub struct PvCandidate {
    pub attempt_id: String,
    pub candidate: String,
    pub review: String,
    pub unsubmitted: bool,
}

/// The PV form: outcome, contested candidates, the explicit override.
#[derive(Template)]
#[template(path = "jury_pv.html")]
pub struct PvFormPage<'a> {
    pub t: &'a Text,
    pub login: &'a str,
    pub csrf: &'a str,
    pub sitting_id: String,
    pub sitting: String,
    pub candidates: Vec<PvCandidate>,
    pub unsubmitted: usize,
    pub error: Option<String>,
}

/// One candidate's fate under the decision.
pub struct PvFate {
    pub candidate: String,
    pub contested: bool,
    pub fate: String,
}

/// What the decision will do, said plainly, before it is confirmed; and, once recorded,
/// what it did (`done`).
#[derive(Template)]
#[template(path = "jury_pv_confirm.html")]
pub struct PvConfirmPage<'a> {
    pub t: &'a Text,
    pub login: &'a str,
    pub csrf: &'a str,
    pub sitting_id: String,
    pub sitting: String,
    pub outcome: String,
    pub outcome_label: String,
    pub effects: String,
    pub contested: String,
    pub override_unsubmitted: bool,
    pub unsubmitted: usize,
    pub rows: Vec<PvFate>,
    pub done: bool,
    pub receipts: usize,
}

/// One attempt not destroyed yet, on the admin's retention page.
pub struct RetentionRow {
    pub attempt_id: String,
    pub candidate: String,
    pub state: String,
    pub rule: String,
    pub destroy_at: String,
    pub held: bool,
}

#[derive(Template)]
#[template(path = "admin_retention.html")]
pub struct RetentionPage<'a> {
    pub t: &'a Text,
    pub login: &'a str,
    pub csrf: &'a str,
    pub rows: Vec<RetentionRow>,
    pub message: Option<&'a str>,
    pub error: Option<String>,
}
