//! Staff accounts and sessions: creation under the CNIL password rule, login (throttled,
//! Argon2 bounded by a semaphore, every outcome audited), session lookup.

use super::Accounts;
use super::AccountsError;
use crate::clock::unix_ms;
use crate::db::SittingId;
use crate::db::*;
use crate::domain::{hash_token, verify_password, Password, Reference, Role, Secret};
use crate::failure::Failure;
use crate::identity::StaffIdentity;
use crate::throttle::sanitise_login;

impl Accounts {
    pub async fn add_staff(
        &self,
        login: &str,
        role: &str,
        password: &str,
    ) -> Result<StaffId, AccountsError> {
        self.add_staff_as("admin-cli", login, role, password).await
    }

    /// Creates an account whose first login must change `password`.
    pub async fn add_staff_as(
        &self,
        actor: &str,
        login: &str,
        role: &str,
        password: &str,
    ) -> Result<StaffId, AccountsError> {
        let role = Role::parse(role).map_err(AccountsError::InvalidField)?;
        let login = Reference::parse(login).map_err(AccountsError::InvalidField)?;
        let password = Password::parse(password, login.as_str())?;
        let id = StaffId::random();
        let hash = self.argon2(move || password.hash()).await?;
        let account = StaffAccount::new(id, login.as_str().into(), role, hash, self.clock.now_ms());
        match self.db.create_staff(account, self.clock.now_ms()).await {
            Err(DbError::Conflict) => return Err(AccountsError::LoginTaken),
            other => other?,
        }
        self.audit
            .record(
                actor,
                "staff_added",
                None,
                serde_json::json!({ "login": login.as_str(), "role": role.as_str() }),
            )
            .await?;
        Ok(id)
    }

    /// Lets a reviewer or a jury member see a sitting (the admin's act; idempotent).
    pub async fn assign_sitting(
        &self,
        login: &str,
        sitting: SittingId,
        actor: &str,
    ) -> Result<(), AccountsError> {
        let staff = match self.db.staff_by_login(login).await {
            Err(DbError::NotFound) => return Err(Failure::NotFound("staff member").into()),
            other => other?,
        };
        if !self.db.sitting_exists(sitting).await? {
            return Err(Failure::NotFound("sitting").into());
        }
        self.db
            .assign_sitting(staff.id, sitting, self.clock.now_ms())
            .await?;
        self.audit
            .record(
                actor,
                "sitting_assigned",
                None,
                serde_json::json!({ "login": staff.login, "sitting_id": sitting }),
            )
            .await?;
        Ok(())
    }

    /// Takes a sitting away from a staff member: their next request already cannot see it
    /// (assignments are read at each request, never cached in a session).
    pub async fn unassign_sitting(
        &self,
        login: &str,
        sitting: SittingId,
        actor: &str,
    ) -> Result<(), AccountsError> {
        let staff = match self.db.staff_by_login(login).await {
            Err(DbError::NotFound) => return Err(Failure::NotFound("staff member").into()),
            other => other?,
        };
        if !self.db.unassign_sitting(staff.id, sitting).await? {
            return Err(Failure::NotFound("assignment").into());
        }
        self.audit
            .record(
                actor,
                "sitting_unassigned",
                None,
                serde_json::json!({ "login": staff.login, "sitting_id": sitting }),
            )
            .await?;
        Ok(())
    }

    pub async fn staff_login(
        &self,
        login: &str,
        password: &str,
        totp: Option<&str>,
        client_addr: &str,
    ) -> Result<super::Login, AccountsError> {
        let now = self.clock.now_ms();
        if let Err(locked) = self.login_throttle.check(login, client_addr, now) {
            return Err(AccountsError::LoginLocked {
                retry_after_s: locked.0,
            });
        }
        if login.len() > 256 || password.len() > 1024 || totp.is_some_and(|t| t.len() > 16) {
            return Err(AccountsError::CredentialsTooLong);
        }
        let account = self.db.staff_by_login(login).await.ok();
        let hash = account.as_ref().map(|a| a.password_hash.clone());
        let pw = zeroize::Zeroizing::new(password.to_owned());
        // Verify even for an unknown login so that timing does not tell which logins exist.
        let ok = self
            .argon2(move || match hash {
                Some(h) => verify_password(&pw, &h),
                None => {
                    verify_password(&pw, "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$W9Rz9j0xD8s2s0+RpX3b3kQ3m9jwW1rWcYy4Q4y5o2I");
                    false
                }
            })
            .await?;
        // A disabled account fails exactly like a wrong password (and is audited as such).
        let account = match (ok, account) {
            (true, Some(a)) if a.disabled_at_ms.is_none() => a,
            (ok, account) => {
                let locked = self.login_throttle.failed(login, client_addr, now);
                let shown = sanitise_login(login);
                let disabled = ok && account.is_some();
                self.audit
                    .record(
                        &shown,
                        "staff_login_failed",
                        None,
                        serde_json::json!({ "locked_out": locked, "disabled": disabled }),
                    )
                    .await?;
                return Err(AccountsError::BadCredentials);
            }
        };
        // The password was right: a missing code says so (the form asks for it); a missing,
        // wrong or replayed one counts as a failure.
        // A missing code counts too: otherwise "code required" would confirm a guessed
        // password for free.
        let checked = self.check_totp(&account, totp).await;
        if !matches!(checked, Ok(true)) {
            let missing = matches!(checked, Err(AccountsError::TotpRequired));
            if !missing {
                checked?;
            }
            let locked = self.login_throttle.failed(login, client_addr, now);
            self.audit
                .record(
                    &account.login,
                    "staff_login_failed",
                    None,
                    serde_json::json!({ "locked_out": locked, "totp": if missing { "missing" } else { "wrong" } }),
                )
                .await?;
            return Err(if missing {
                AccountsError::TotpRequired
            } else {
                AccountsError::BadCredentials
            });
        }
        // Guesses checked in parallel all passed the first look; one that succeeds after the
        // lock-out began is refused like the others.
        if let Err(locked) = self
            .login_throttle
            .check(login, client_addr, self.clock.now_ms())
        {
            return Err(AccountsError::LoginLocked {
                retry_after_s: locked.0,
            });
        }
        self.login_throttle.succeeded(login);
        let token = Secret::generate("cls");
        let expires = self.clock.now() + self.limits.staff_session_ttl;
        self.db
            .create_staff_session(
                token.hash(),
                account.id,
                self.clock.now_ms(),
                unix_ms(expires),
            )
            .await?;
        self.audit
            .record(
                &account.login,
                "staff_login",
                None,
                serde_json::json!({ "totp": account.totp_secret.is_some() }),
            )
            .await?;
        let notices = self
            .db
            .take_account_notices(account.id, self.clock.now_ms())
            .await?
            .into_iter()
            .map(|e| super::AccountNotice {
                action: e.action,
                by: std::iter::once(e.requested_by)
                    .chain(e.approved_by)
                    .collect(),
                at_ms: e.done_at_ms.unwrap_or(e.requested_at_ms),
            })
            .collect();
        Ok(super::Login {
            token: token.reveal(),
            notices,
        })
    }

    pub async fn authenticate_staff(&self, token: &str) -> Result<StaffIdentity, AccountsError> {
        let idle = self.limits.staff_session_idle.as_millis() as i64;
        match self
            .db
            .staff_by_session(hash_token(token), self.clock.now_ms(), idle)
            .await
        {
            Ok(a) if a.disabled_at_ms.is_some() => Err(AccountsError::BadCredentials),
            Ok(a) => Ok(StaffIdentity {
                id: a.id,
                role: a.role,
                pending: self.pending_for(&a).await?,
                login: a.login,
                terminal: None,
            }),
            Err(DbError::NotFound) => Err(AccountsError::BadCredentials),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn staff_logout(
        &self,
        staff: &StaffIdentity,
        token: &str,
    ) -> Result<(), AccountsError> {
        self.db.end_staff_session(hash_token(token)).await?;
        self.audit
            .record(&staff.login, "staff_logout", None, serde_json::json!({}))
            .await
            .map_err(Into::into)
    }
}
