//! Staff roles, stored by name.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Reviewer,
    Jury,
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "reviewer" => Ok(Role::Reviewer),
            "jury" => Ok(Role::Jury),
            "admin" => Ok(Role::Admin),
            _ => Err(format!("unknown role {s:?} (reviewer, jury or admin)")),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reviewer => "reviewer",
            Role::Jury => "jury",
            Role::Admin => "admin",
        }
    }
    /// Who may watch recordings: reviewers only. An admin manages accounts and reads the
    /// audit, and watches nothing (an account has one role).
    pub fn may_view_recordings(self) -> bool {
        matches!(self, Role::Reviewer)
    }
}
