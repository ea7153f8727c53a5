//! Enrolment: sittings and candidates for the exam platform (idempotent: the platform's
//! reference is the key, so a retried call gets the same answer), launch tokens (derived,
//! revocable, reissuable) and codes, the attempt's end and status.

mod error;

pub use error::EnrolmentError;

use crate::attempts::Attempts;
use crate::audit::Audit;
use crate::clock::SharedClock;
use crate::clock::{from_unix_ms, rfc3339, unix_ms};
use crate::configuration::LimitSettings;
use crate::db::*;
use crate::db::{AttemptId, SittingId};
use crate::domain::{hash_token, Reference};
use crate::failure::Failure;
use crate::keys::KeyStore;
use crate::lifecycle::{AttemptState, Transition};
use base64::Engine;
use protocol::api::*;
use protocol::{AttemptKey, LaunchToken};
use std::sync::Arc;

/// The exam platform's use case: sittings, candidates, their launch tokens and codes, the
/// attempt's end.
pub struct Enrolment {
    db: Arc<dyn Database>,
    keys: KeyStore,
    clock: SharedClock,
    audit: Audit,
    attempts: Attempts,
    limits: LimitSettings,
    /// Where the links handed out point (`Settings::public_base`).
    public_base: String,
}

/// A created resource, or the same one again for a retried request.
pub struct Created<T> {
    pub value: T,
    pub replayed: bool,
}

/// The launch token of one generation: derived from the attempt key, never stored (only
/// the hash of its credential is). It carries the attempt's public key, so that the agent
/// can record with the server unreachable from the first second.
fn launch_token(dek: &AttemptKey, attempt: &AttemptId, generation: u32) -> LaunchToken {
    LaunchToken::new(
        &dek.launch_secret(&attempt.as_uuid(), generation),
        attempt.as_uuid(),
        dek.recipient(&attempt.as_uuid()).1,
    )
}

fn launch_response(
    attempt_id: AttemptId,
    token: &LaunchToken,
    expires: time::OffsetDateTime,
    public_base: &str,
) -> AddCandidateResponse {
    AddCandidateResponse {
        browser_link: token
            .offline
            .is_some()
            .then(|| format!("{public_base}/launch#{}", token.expose())),
        attempt_id: attempt_id.into(),
        launch_token: token.expose(),
        attempt_public_key: token
            .offline
            .map(|(_, pk)| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(pk.0))
            .unwrap_or_default(),
        token_expires_at: rfc3339(expires),
    }
}

impl Enrolment {
    pub fn new(
        db: Arc<dyn Database>,
        keys: KeyStore,
        clock: SharedClock,
        audit: Audit,
        attempts: Attempts,
        settings: &crate::configuration::Settings,
    ) -> Self {
        let l = &settings.limits;
        Self {
            db,
            keys,
            clock,
            audit,
            attempts,
            limits: l.clone(),
            public_base: settings.public_base(),
        }
    }

    pub async fn create_sitting(
        &self,
        reference: &str,
        actor: &str,
    ) -> Result<Created<CreateSittingResponse>, EnrolmentError> {
        let reference = Reference::parse(reference).map_err(EnrolmentError::InvalidReference)?;
        let id = SittingId::random();
        match self
            .db
            .create_sitting(id, reference.as_str(), self.clock.now_ms())
            .await
        {
            Ok(()) => {}
            Err(DbError::Conflict) => {
                let existing = self.db.sitting_by_ref(reference.as_str()).await?;
                return Ok(Created {
                    value: CreateSittingResponse {
                        sitting_id: existing.into(),
                    },
                    replayed: true,
                });
            }
            Err(e) => return Err(e.into()),
        }
        self.audit
            .record(
                actor,
                "sitting_created",
                None,
                serde_json::json!({ "sitting_id": id }),
            )
            .await?;
        Ok(Created {
            value: CreateSittingResponse {
                sitting_id: id.into(),
            },
            replayed: false,
        })
    }

    pub async fn add_candidate(
        &self,
        sitting: SittingId,
        reference: &str,
        actor: &str,
    ) -> Result<Created<AddCandidateResponse>, EnrolmentError> {
        let reference = Reference::parse(reference).map_err(EnrolmentError::InvalidReference)?;
        if !self.db.sitting_exists(sitting).await? {
            return Err(Failure::NotFound("sitting").into());
        }
        let pseudonym = self.keys.reference_pseudonym(sitting, reference.as_str())?;
        // By its pseudonym; an earlier version's row by the clear reference until sealed
        // (a reference spelt like another's pseudonym finds nothing).
        let existing = match self.db.attempt_by_ref(sitting, &pseudonym, true).await {
            Err(DbError::NotFound) => {
                self.db
                    .attempt_by_ref(sitting, reference.as_str(), false)
                    .await
            }
            found => found,
        };
        if let Ok(existing) = existing {
            return Ok(Created {
                value: self.current_launch(&existing).await?,
                replayed: true,
            });
        }
        if self.db.pv_decision(sitting).await?.is_some() {
            return Err(EnrolmentError::PvDecided);
        }
        let now = self.clock.now();
        let id = AttemptId::random();
        let dek = AttemptKey::generate();
        let wrapped = self.keys.wrap(&dek, &id, now)?;
        let token = launch_token(&dek, &id, 0);
        let expires = self.launch_token_expiry(now);
        let row = NewAttempt {
            id,
            sitting_id: sitting,
            reference: self
                .keys
                .store_reference(&dek, id, sitting, reference.as_str())?,
            token_hash: hash_token(token.credential()),
            token_expires_at_ms: unix_ms(expires),
            kek_epoch: wrapped.epoch,
            wrapped_dek: wrapped.blob,
            dek_fingerprint: dek.fingerprint().to_string(),
            created_at_ms: unix_ms(now),
        };
        match self.db.create_attempt(row).await {
            Ok(()) => {}
            // A concurrent retry won the race: answer what it answered.
            Err(DbError::Conflict) => {
                let existing = self.db.attempt_by_ref(sitting, &pseudonym, true).await?;
                return Ok(Created {
                    value: self.current_launch(&existing).await?,
                    replayed: true,
                });
            }
            Err(e) => return Err(e.into()),
        }
        self.audit
            .record(
                actor,
                "candidate_added",
                Some(id.into()),
                serde_json::json!({ "sitting_id": sitting }),
            )
            .await?;
        Ok(Created {
            value: launch_response(id.into(), &token, expires, &self.public_base.clone()),
            replayed: false,
        })
    }

    /// When a launch token issued `now` expires, to the millisecond that is stored: the
    /// first answer must read exactly as a retried one will.
    fn launch_token_expiry(&self, now: time::OffsetDateTime) -> time::OffsetDateTime {
        from_unix_ms(unix_ms(now + self.limits.launch_token_ttl))
    }

    /// The answer `add_candidate` gave (or would give now) for an existing attempt.
    async fn current_launch(&self, a: &Attempt) -> Result<AddCandidateResponse, EnrolmentError> {
        if a.state == AttemptState::Destroyed {
            return Err(Failure::Gone.into());
        }
        let issued = self.db.token_of(a.id, a.token_generation).await?;
        if issued.revoked_at_ms.is_some() {
            return Err(EnrolmentError::TokenRevoked);
        }
        let dek = self.keys.attempt_key(a)?;
        Ok(launch_response(
            a.id,
            &launch_token(&dek, &a.id, a.token_generation),
            from_unix_ms(issued.expires_at_ms),
            &self.public_base.clone(),
        ))
    }

    /// Revokes every launch token of the attempt: it can no longer consent or open a
    /// stream. Chunks of streams already open still land (they are the recording).
    pub async fn revoke_launch_tokens(
        &self,
        attempt_id: AttemptId,
        actor: &str,
    ) -> Result<u64, EnrolmentError> {
        let a = self.attempts.get(attempt_id).await?;
        let n = self.db.revoke_tokens(a.id, self.clock.now_ms()).await?;
        self.audit
            .record(
                actor,
                "launch_token_revoked",
                Some(a.id),
                serde_json::json!({ "revoked": n }),
            )
            .await?;
        Ok(n)
    }

    /// Issues the next generation of launch token, revoking the earlier ones.
    pub async fn reissue_launch_token(
        &self,
        attempt_id: AttemptId,
        actor: &str,
    ) -> Result<AddCandidateResponse, EnrolmentError> {
        let a = self.attempts.get(attempt_id).await?;
        if !matches!(
            a.state,
            AttemptState::Enrolled | AttemptState::Consented | AttemptState::Recording
        ) {
            return Err(EnrolmentError::NoTokenInState(a.state));
        }
        let generation = a
            .token_generation
            .checked_add(1)
            .ok_or(EnrolmentError::TokensExhausted)?;
        let dek = self.keys.attempt_key(&a)?;
        let token = launch_token(&dek, &a.id, generation);
        let now = self.clock.now();
        let expires = self.launch_token_expiry(now);
        self.db
            .issue_token(
                a.id,
                generation,
                hash_token(token.credential()),
                unix_ms(now),
                unix_ms(expires),
            )
            .await?;
        self.audit
            .record(
                actor,
                "launch_token_issued",
                Some(a.id),
                serde_json::json!({ "generation": generation }),
            )
            .await?;
        Ok(launch_response(
            a.id,
            &token,
            expires,
            &self.public_base.clone(),
        ))
    }

    /// A short code the candidate can type instead of clicking the link
    /// (`protocol::launch_code`), usable once within `[limits] launch_code_ttl`.
    pub async fn issue_launch_code(
        &self,
        attempt_id: AttemptId,
        actor: &str,
    ) -> Result<LaunchCodeResponse, EnrolmentError> {
        let a = self.attempts.get(attempt_id).await?;
        if !matches!(
            a.state,
            AttemptState::Enrolled | AttemptState::Consented | AttemptState::Recording
        ) {
            return Err(EnrolmentError::NoCodeInState(a.state));
        }
        // The code buys the current token: none while it is revoked.
        self.current_launch(&a).await?;
        let code = {
            use rand::RngCore;
            let mut rng = rand::thread_rng();
            protocol::launch_code::generate(|| (rng.next_u32() & 0xff) as u8)
        };
        let plain = protocol::launch_code::normalise(&code).expect("a generated code is a code");
        let expires = from_unix_ms(unix_ms(self.clock.now() + self.limits.launch_code_ttl));
        self.db
            .create_launch_code(hash_token(&plain), a.id, unix_ms(expires))
            .await?;
        self.audit
            .record(
                actor,
                "launch_code_issued",
                Some(a.id),
                serde_json::json!({ "expires_at": rfc3339(expires) }),
            )
            .await?;
        Ok(LaunchCodeResponse {
            attempt_id: a.id.into(),
            code,
            expires_at: rfc3339(expires),
        })
    }

    /// Trades a launch code for the attempt's current launch token, once. Wrong codes are
    /// counted per address; past `login_max_failures_per_address` the address waits.
    pub async fn redeem_launch_code(
        &self,
        typed: &str,
        client_addr: &str,
    ) -> Result<AddCandidateResponse, EnrolmentError> {
        let now = self.clock.now_ms();
        let l = &self.limits;
        // Per network (an IPv6 candidate has a whole /64 to draw addresses from) and for
        // everyone, in the database every instance shares.
        let keys = [format!("net:{}", network_of(client_addr)), "all".to_owned()];
        for key in &keys {
            if let Some(until) = self.db.code_guess_lock(key, now).await? {
                let retry_after_s = ((until - now).max(0) as u64).div_ceil(1000).max(1);
                return Err(EnrolmentError::CodeLocked { retry_after_s });
            }
        }
        let attempt = match protocol::launch_code::normalise(typed) {
            Some(plain) => self.db.redeem_launch_code(hash_token(&plain), now).await?,
            None => None,
        };
        let Some(attempt) = attempt else {
            let (window, lockout) = (
                l.login_failure_window.as_millis() as i64,
                l.login_lockout.as_millis() as i64,
            );
            let maxima = [l.login_max_failures_per_address, l.launch_code_max_failures];
            for (key, max) in keys.iter().zip(maxima) {
                self.db
                    .code_guess_failed(key, now, window, max, lockout)
                    .await?;
            }
            return Err(Failure::NotFound("launch code (unknown, used or expired)").into());
        };
        let a = self.attempts.get(attempt).await?;
        self.audit
            .record(
                "candidate",
                "launch_code_used",
                Some(a.id),
                serde_json::json!({}),
            )
            .await?;
        self.current_launch(&a).await
    }

    /// Ends the attempt (the exam platform's call). Ending an ended attempt again answers
    /// the same, so a retried call is harmless.
    pub async fn end_attempt(
        &self,
        attempt_id: AttemptId,
        actor: &str,
    ) -> Result<AttemptStatus, EnrolmentError> {
        let a = self.attempts.get(attempt_id).await?;
        if a.state != AttemptState::Ended {
            self.attempts
                .transition(attempt_id, Transition::End, actor)
                .await?;
        }
        self.attempt_status(attempt_id).await
    }

    pub async fn attempt_status(
        &self,
        attempt_id: AttemptId,
    ) -> Result<AttemptStatus, EnrolmentError> {
        let a = self.attempts.get(attempt_id).await?;
        let grace = self.limits.upload_grace;
        let silent = self
            .db
            .agent_silences(a.id)
            .await?
            .into_iter()
            .rev()
            .find(|(_, to)| to.is_none());
        Ok(AttemptStatus {
            attempt_id: a.id.into(),
            state: a.state.as_str().to_owned(),
            ended_at: a.ended_at_ms.map(|t| rfc3339(from_unix_ms(t))),
            new_streams_until: a.ended_at_ms.map(|t| rfc3339(from_unix_ms(t) + grace)),
            agent_silent_since: silent.map(|(from, _)| rfc3339(from_unix_ms(from))),
        })
    }
}

/// The network a client address stands for: itself for IPv4, its /64 for IPv6 (one
/// household or one device's whole range), the text itself if it is no address.
pub fn network_of(client_addr: &str) -> String {
    match client_addr.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_none() => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        Ok(std::net::IpAddr::V6(v6)) => v6.to_ipv4_mapped().expect("checked").to_string(),
        Ok(v4) => v4.to_string(),
        Err(_) => client_addr.to_owned(),
    }
}

#[cfg(test)]
mod network_tests {
    #[test]
    fn an_ipv6_client_is_counted_by_its_64() {
        use super::network_of;
        assert_eq!(network_of("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(network_of("2001:db8:1:2:ffff:1:2:3"), "2001:db8:1:2::/64");
        assert_ne!(network_of("2001:db8:1:3::1"), network_of("2001:db8:1:2::1"));
        assert_eq!(network_of("192.0.2.7"), "192.0.2.7");
        assert_eq!(network_of("::ffff:192.0.2.7"), "192.0.2.7");
    }
}
