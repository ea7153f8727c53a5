//! What staff accounts and their logins refuse, in their own words; `routes/errors.rs`
//! gives each its HTTP answer.

use crate::domain::PasswordRejected;
use crate::failure::Failure;

#[derive(Debug, thiserror::Error)]
pub enum AccountsError {
    #[error(transparent)]
    Failure(#[from] Failure),
    /// Wrong login or password, unknown, expired or idle session, disabled account: one
    /// answer for all, so that none is disclosed.
    #[error("missing or invalid credentials")]
    BadCredentials,
    #[error("too many failed logins; try again later")]
    LoginLocked { retry_after_s: u64 },
    #[error("a one-time code (TOTP) is required for this account")]
    TotpRequired,
    #[error("{0}")]
    PasswordRejected(#[from] PasswordRejected),
    /// A role or a login that does not parse (the parser says why).
    #[error("{0}")]
    InvalidField(String),
    #[error("this login already exists")]
    LoginTaken,
    #[error("login, password or code too long")]
    CredentialsTooLong,
    #[error("the current password is wrong")]
    WrongCurrentPassword,
    #[error("the new password must differ from the current one")]
    SamePassword,
    #[error("invalid TOTP secret: {0}")]
    InvalidTotpSecret(String),
    #[error("the TOTP secret is not valid base32")]
    TotpSecretNotBase32,
    #[error("the code does not match: check the phone's clock and type the current code")]
    TotpCodeMismatch,
    /// Replacing a second factor takes the password and a code of the one in place.
    #[error(
        "replacing the second factor needs the password and a current code of the one in place"
    )]
    ReplacementNotProven,
    /// Every password hashing slot stayed busy: the server is overloaded.
    #[error("the server is busy; retry later")]
    Busy,
}

crate::meets_failures!(AccountsError);
