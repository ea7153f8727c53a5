//! Staff accounts after creation: changing one's password (forced at first login, after
//! a reset, and past the maximum age), an admin's resets and disabling, the TOTP second
//! factor (RFC 6238: SHA-1, 6 digits, 30 s, one step of clock skew, a code never accepted
//! twice) and the switch that requires it for everyone. Every change is audited.

mod error;
mod login;

pub use error::AccountsError;

use crate::audit::Audit;
use crate::clock::SharedClock;
use crate::configuration::LimitSettings;
use crate::db::{AccountEvent, Database, DbError, StaffAccount, StaffId};
use crate::domain::Pending;
use crate::domain::{verify_password, Password};
use crate::failure::Failure;
use crate::identity::StaffIdentity;
use crate::keys::KeyStore;
use crate::throttle::LoginThrottle;
use std::sync::Arc;
use totp_rs::{Algorithm, TOTP};
use zeroize::Zeroizing;

/// The staff's use case: accounts, their passwords and second factor, logins and
/// sessions (`login.rs`).
pub struct Accounts {
    db: Arc<dyn Database>,
    keys: KeyStore,
    clock: SharedClock,
    audit: Audit,
    limits: LimitSettings,
    login_throttle: LoginThrottle,
    /// At most this many password checks in flight, on…
    argon2_slots: Arc<tokio::sync::Semaphore>,
    /// …a pool of as many threads of their own, so that a login flood (19 MiB and ~50 ms
    /// of CPU per check) never occupies the blocking threads that file and database
    /// work need.
    argon2_pool: rayon::ThreadPool,
}

const TOTP_REQUIRED: &str = "totp_required";
const ISSUER: &str = "CLOE Connect";
const PASSWORD_RESET: &str = "password_reset";
const TOTP_REMOVED: &str = "totp_removed";
/// How long a password reset one admin asked for waits for a second admin.
const SECOND_ADMIN_WITHIN_MS: i64 = 24 * 3600 * 1000;
/// Who acts from the server's command line.
pub const OPERATOR: &str = "admin-cli";

/// What was done to an account since its owner last logged in, told at the next login.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AccountNotice {
    /// `password_reset` or `totp_removed`.
    pub action: String,
    /// The admin(s) who did it: the one who asked, then the one who confirmed.
    pub by: Vec<String>,
    pub at_ms: i64,
}

/// A successful login: the session, and what the owner must be told.
#[derive(Debug)]
pub struct Login {
    pub token: String,
    pub notices: Vec<AccountNotice>,
}

/// An admin's password reset: waiting for a second admin, or done (the temporary password,
/// shown to the second admin only).
#[derive(Debug)]
pub enum Reset {
    Pending,
    Done(String),
}

/// What an admin sees of an account (never its hash or secret).
#[derive(Debug, serde::Serialize)]
pub struct StaffSummary {
    pub login: String,
    pub role: &'static str,
    pub disabled: bool,
    pub must_change_password: bool,
    pub password_changed_at_ms: i64,
    pub totp: bool,
}

/// A TOTP enrolment in progress: the secret the person types into their app, which
/// comes back with the first code to confirm it.
pub struct TotpEnrolment {
    pub secret_base32: String,
    pub otpauth_url: String,
}

fn totp(secret: Vec<u8>, login: &str) -> Result<TOTP, AccountsError> {
    TOTP::new(
        Algorithm::SHA1,
        6,
        1,
        30,
        secret,
        Some(ISSUER.into()),
        login.replace(':', "_"),
    )
    .map_err(|e| AccountsError::InvalidTotpSecret(e.to_string()))
}

/// The time step a code belongs to, if it is valid now (± one step).
fn matching_step(t: &TOTP, code: &str, now_s: u64) -> Option<i64> {
    use subtle::ConstantTimeEq;
    let code = code.trim();
    let step = now_s / 30;
    [step.saturating_sub(1), step, step + 1]
        .into_iter()
        .find(|&s| bool::from(t.generate(s * 30).as_bytes().ct_eq(code.as_bytes())))
        .map(|s| s as i64)
}

impl Accounts {
    pub fn new(
        db: Arc<dyn Database>,
        keys: KeyStore,
        clock: SharedClock,
        audit: Audit,
        limits: &LimitSettings,
    ) -> anyhow::Result<Self> {
        let threads = limits.argon2_concurrency.max(1);
        Ok(Self {
            db,
            keys,
            clock,
            audit,
            login_throttle: LoginThrottle::new(limits),
            argon2_slots: Arc::new(tokio::sync::Semaphore::new(threads)),
            argon2_pool: rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .thread_name(|i| format!("argon2-{i}"))
                .build()?,
            limits: limits.clone(),
        })
    }

    pub(crate) async fn totp_required(&self) -> Result<bool, AccountsError> {
        Ok(self.db.setting(TOTP_REQUIRED).await?.as_deref() == Some("true"))
    }

    /// What the account must do before anything else, if anything.
    pub(crate) async fn pending_for(
        &self,
        a: &StaffAccount,
    ) -> Result<Option<Pending>, AccountsError> {
        let max_age = self.limits.staff_password_max_age.as_millis() as i64;
        if a.must_change_password || a.password_changed_at_ms + max_age <= self.clock.now_ms() {
            return Ok(Some(Pending::PasswordChange));
        }
        if a.totp_secret.is_none() && self.totp_required().await? {
            return Ok(Some(Pending::TotpEnrolment));
        }
        Ok(None)
    }

    /// Checks a TOTP code for an enrolled account and burns its time step.
    pub(crate) async fn check_totp(
        &self,
        a: &StaffAccount,
        code: Option<&str>,
    ) -> Result<bool, AccountsError> {
        let Some(sealed) = &a.totp_secret else {
            return Ok(true);
        };
        let Some(code) = code.filter(|c| !c.trim().is_empty()) else {
            return Err(AccountsError::TotpRequired);
        };
        let secret = self.keys.open_staff_secret(sealed, &a.id)?;
        let t = totp(secret.to_vec(), &a.login)?;
        match matching_step(&t, code, (self.clock.now_ms() / 1000) as u64) {
            Some(step) => Ok(self.db.use_totp_step(a.id, step).await?),
            None => Ok(false),
        }
    }

    /// Changes one's own password; every other session of the account ends (one that was
    /// stolen, too), the one that made the change goes on.
    pub async fn change_password(
        &self,
        who: &StaffIdentity,
        session: &str,
        current: &str,
        new: &str,
    ) -> Result<(), AccountsError> {
        let account = self.db.staff_by_id(who.id).await?;
        let hash = account.password_hash.clone();
        let current = Zeroizing::new(current.to_owned());
        if !self
            .argon2(move || verify_password(&current, &hash))
            .await?
        {
            return Err(AccountsError::WrongCurrentPassword);
        }
        let password = Password::parse(new, &account.login)?;
        let (same, old_hash) = (
            Zeroizing::new(new.to_owned()),
            account.password_hash.clone(),
        );
        if self
            .argon2(move || verify_password(&same, &old_hash))
            .await?
        {
            return Err(AccountsError::SamePassword);
        }
        let hash = self.argon2(move || password.hash()).await?;
        self.db
            .set_password(who.id, &hash, false, self.clock.now_ms())
            .await?;
        self.db
            .end_sessions_of(who.id, Some(crate::domain::hash_token(session)))
            .await?;
        self.audit
            .record(&who.login, "password_changed", None, serde_json::json!({}))
            .await
            .map_err(Into::into)
    }

    async fn account(&self, login: &str) -> Result<StaffAccount, AccountsError> {
        match self.db.staff_by_login(login).await {
            Err(DbError::NotFound) => Err(Failure::NotFound("staff member").into()),
            other => Ok(other?),
        }
    }

    /// An admin's password reset: no single admin may both reset a password and read the
    /// temporary one (then log in as its owner). The first admin's request waits for a
    /// second admin (24 hours at most); that one's confirmation resets it and is the only
    /// answer carrying the temporary password. The owner is told at their next login.
    pub async fn reset_password(
        &self,
        admin: &StaffIdentity,
        login: &str,
    ) -> Result<Reset, AccountsError> {
        admin.require_admin()?;
        let account = self.account(login).await?;
        let now = self.clock.now_ms();
        let pending = self
            .db
            .pending_account_event(account.id, PASSWORD_RESET, now - SECOND_ADMIN_WITHIN_MS)
            .await?;
        match pending {
            Some(asked) if asked.requested_by != admin.login => {
                if !self
                    .db
                    .complete_account_event(asked.id, &admin.login, now)
                    .await?
                {
                    return Ok(Reset::Pending);
                }
                let shown = self.set_temporary_password(&account).await?;
                self.audit
                    .record(
                        &admin.login,
                        "password_reset",
                        None,
                        serde_json::json!({ "login": account.login, "requested_by": asked.requested_by }),
                    )
                    .await?;
                Ok(Reset::Done(shown))
            }
            Some(_) => Ok(Reset::Pending),
            None => {
                self.db
                    .record_account_event(&AccountEvent {
                        id: uuid::Uuid::new_v4(),
                        staff_id: account.id,
                        action: PASSWORD_RESET.into(),
                        requested_by: admin.login.clone(),
                        requested_at_ms: now,
                        approved_by: None,
                        done_at_ms: None,
                    })
                    .await?;
                self.audit
                    .record(
                        &admin.login,
                        "password_reset_requested",
                        None,
                        serde_json::json!({ "login": account.login }),
                    )
                    .await?;
                Ok(Reset::Pending)
            }
        }
    }

    /// The operator's reset on the server (`staff reset-password`): whoever runs it holds
    /// the server's keys already. The owner is told at their next login all the same.
    pub async fn reset_password_by_operator(&self, login: &str) -> Result<String, AccountsError> {
        let account = self.account(login).await?;
        let shown = self.set_temporary_password(&account).await?;
        self.notice_done(&account, PASSWORD_RESET, OPERATOR).await?;
        self.audit
            .record(
                OPERATOR,
                "password_reset",
                None,
                serde_json::json!({ "login": account.login }),
            )
            .await?;
        Ok(shown)
    }

    /// A one-time password (the next login must change it); every session ends.
    async fn set_temporary_password(
        &self,
        account: &StaffAccount,
    ) -> Result<String, AccountsError> {
        let (password, shown) = Password::generate();
        let hash = self.argon2(move || password.hash()).await?;
        self.db
            .set_password(account.id, &hash, true, self.clock.now_ms())
            .await?;
        self.db.end_sessions_of(account.id, None).await?;
        Ok(shown)
    }

    /// Records an action done at once, for the owner to read at their next login.
    async fn notice_done(
        &self,
        account: &StaffAccount,
        action: &str,
        by: &str,
    ) -> Result<(), AccountsError> {
        let now = self.clock.now_ms();
        Ok(self
            .db
            .record_account_event(&AccountEvent {
                id: uuid::Uuid::new_v4(),
                staff_id: account.id,
                action: action.into(),
                requested_by: by.into(),
                requested_at_ms: now,
                approved_by: None,
                done_at_ms: Some(now),
            })
            .await?)
    }

    /// Disables (or re-enables) an account; disabling ends its sessions at once.
    pub async fn set_staff_disabled(
        &self,
        actor: &str,
        login: &str,
        disabled: bool,
    ) -> Result<(), AccountsError> {
        let account = self.account(login).await?;
        self.db
            .set_disabled(account.id, disabled.then(|| self.clock.now_ms()))
            .await?;
        if disabled {
            self.db.end_sessions_of(account.id, None).await?;
        }
        self.audit
            .record(
                actor,
                if disabled {
                    "staff_disabled"
                } else {
                    "staff_enabled"
                },
                None,
                serde_json::json!({ "login": account.login }),
            )
            .await
            .map_err(Into::into)
    }

    pub async fn set_totp_required(
        &self,
        actor: &str,
        required: bool,
    ) -> Result<(), AccountsError> {
        self.db
            .set_setting(TOTP_REQUIRED, if required { "true" } else { "false" })
            .await?;
        self.audit
            .record(
                actor,
                "totp_requirement_set",
                None,
                serde_json::json!({ "required": required }),
            )
            .await
            .map_err(Into::into)
    }

    pub async fn list_staff(
        &self,
        who: &StaffIdentity,
    ) -> Result<Vec<StaffSummary>, AccountsError> {
        who.require_admin()?;
        Ok(self
            .db
            .list_staff()
            .await?
            .into_iter()
            .map(|a| StaffSummary {
                login: a.login,
                role: a.role.as_str(),
                disabled: a.disabled_at_ms.is_some(),
                must_change_password: a.must_change_password,
                password_changed_at_ms: a.password_changed_at_ms,
                totp: a.totp_secret.is_some(),
            })
            .collect())
    }

    /// Whether the account has a second factor (replacing it asks for more).
    pub async fn has_totp(&self, who: &StaffIdentity) -> Result<bool, AccountsError> {
        Ok(self.db.staff_by_id(who.id).await?.totp_secret.is_some())
    }

    /// Starts a TOTP enrolment: a fresh secret, not stored until a code confirms it.
    pub fn begin_totp(&self, who: &StaffIdentity) -> Result<TotpEnrolment, AccountsError> {
        use rand::RngCore;
        let mut secret = vec![0u8; 20];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        let t = totp(secret, &who.login)?;
        Ok(TotpEnrolment {
            secret_base32: t.get_secret_base32(),
            otpauth_url: t.get_url(),
        })
    }

    /// Confirms an enrolment with a first code and stores the secret, sealed. Replacing a
    /// second factor in place takes the password and a current code of that one: a session
    /// alone (left open, or stolen) cannot swap the factor. A failed proof counts against
    /// the account like a failed login.
    pub async fn confirm_totp(
        &self,
        who: &StaffIdentity,
        secret_base32: &str,
        code: &str,
        replacing: Option<(&str, &str)>,
    ) -> Result<(), AccountsError> {
        let account = self.db.staff_by_id(who.id).await?;
        if account.totp_secret.is_some() {
            self.prove_replacement(&account, replacing).await?;
        }
        let secret = Zeroizing::new(
            totp_rs::Secret::Encoded(secret_base32.trim().to_owned())
                .to_bytes()
                .map_err(|_| AccountsError::TotpSecretNotBase32)?,
        );
        let t = totp(secret.to_vec(), &who.login)?;
        let Some(step) = matching_step(&t, code, (self.clock.now_ms() / 1000) as u64) else {
            return Err(AccountsError::TotpCodeMismatch);
        };
        self.db
            .set_totp(who.id, Some(self.keys.seal_staff_secret(&secret, &who.id)?))
            .await?;
        self.db.use_totp_step(who.id, step).await?;
        self.audit
            .record(
                &who.login,
                "totp_enrolled",
                None,
                serde_json::json!({ "replaced": account.totp_secret.is_some() }),
            )
            .await
            .map_err(Into::into)
    }

    async fn prove_replacement(
        &self,
        account: &StaffAccount,
        proof: Option<(&str, &str)>,
    ) -> Result<(), AccountsError> {
        const WHERE: &str = "second-factor replacement";
        let now = self.clock.now_ms();
        if let Err(locked) = self.login_throttle.check(&account.login, WHERE, now) {
            return Err(AccountsError::LoginLocked {
                retry_after_s: locked.0,
            });
        }
        let proven = match proof {
            Some((password, code)) if password.len() <= 1024 && code.len() <= 16 => {
                let (pw, hash) = (
                    Zeroizing::new(password.to_owned()),
                    account.password_hash.clone(),
                );
                self.argon2(move || verify_password(&pw, &hash)).await?
                    && self.check_totp(account, Some(code)).await?
            }
            _ => false,
        };
        if !proven {
            let locked = self.login_throttle.failed(&account.login, WHERE, now);
            self.audit
                .record(
                    &account.login,
                    "totp_replacement_refused",
                    None,
                    serde_json::json!({ "locked_out": locked }),
                )
                .await?;
            return Err(AccountsError::ReplacementNotProven);
        }
        Ok(())
    }

    /// An admin removes a lost second factor; the person enrols again at next login if
    /// it is required.
    pub async fn remove_totp(&self, actor: &str, login: &str) -> Result<(), AccountsError> {
        let account = self.account(login).await?;
        self.db.set_totp(account.id, None).await?;
        self.db.end_sessions_of(account.id, None).await?;
        self.notice_done(&account, TOTP_REMOVED, actor).await?;
        self.audit
            .record(
                actor,
                "totp_removed",
                None,
                serde_json::json!({ "login": account.login }),
            )
            .await
            .map_err(Into::into)
    }

    /// Runs an Argon2 job on the dedicated pool (bounded, away from the runtime).
    pub(crate) async fn argon2<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, AccountsError> {
        let _slot = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            self.argon2_slots.clone().acquire_owned(),
        )
        .await
        .map_err(|_| AccountsError::Busy)?
        .map_err(|e| Failure::Internal(e.into()))?;
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.argon2_pool.spawn(move || {
            let _ = tx.send(job());
        });
        rx.await.map_err(|e| Failure::Internal(e.into()).into())
    }

    /// The admin CLI's id for an account (tests and scripts).
    pub async fn staff_id(&self, login: &str) -> Result<StaffId, AccountsError> {
        Ok(self.account(login).await?.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_their_step_and_one_step_of_skew() {
        let t = totp(vec![7; 20], "relectrice").unwrap();
        let now = 1_800_000_000u64;
        let code = t.generate(now);
        assert_eq!(matching_step(&t, &code, now), Some((now / 30) as i64));
        assert_eq!(
            matching_step(&t, &code, now + 30),
            Some((now / 30) as i64),
            "one step late is accepted"
        );
        assert_eq!(
            matching_step(&t, &code, now + 90),
            None,
            "three steps late is not"
        );
        assert_eq!(
            matching_step(&t, "000000", now).is_some(),
            t.generate(now) == "000000"
        );
    }
}
