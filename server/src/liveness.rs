//! Is the agent of an exam in progress still there? Every heartbeat and every chunk says
//! it is; an exam whose agent has said nothing for `[liveness] silent_after` is marked
//! silent, and the silence is kept as a gap on record (audited when it starts and when it
//! ends). Nobody watches live: this is a fact for the timeline and the platform, not an
//! alarm. Recording goes on through a silence (store-and-forward), so a silence is not a
//! hole in the recording.
//!
//! The state is in the database, so that several instances behind a load balancer agree;
//! each instance writes "heard" for an attempt at most every quarter of `silent_after`.

use crate::audit::Audit;
use crate::clock::SharedClock;
use crate::clock::{from_unix_ms, rfc3339};
use crate::db::AttemptId;
use crate::db::Database;
use crate::failure::Failure;
use crate::identity::AgentIdentity;
use protocol::api::Heartbeat;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Hears agents and marks the silent ones.
pub struct Liveness {
    db: Arc<dyn Database>,
    audit: Audit,
    clock: SharedClock,
    silent_after: std::time::Duration,
    /// When this instance last wrote that it heard each attempt's agent (writes are
    /// spaced out).
    heard: Mutex<HashMap<AttemptId, i64>>,
}

/// One silence of an attempt's agent.
#[derive(Debug, Clone, Serialize)]
pub struct Silence {
    pub from: String,
    /// `None` while it lasts.
    pub to: Option<String>,
    pub seconds: Option<f64>,
}

impl Liveness {
    pub fn new(
        db: Arc<dyn Database>,
        audit: Audit,
        clock: SharedClock,
        settings: &crate::configuration::LivenessSettings,
    ) -> Self {
        Self {
            db,
            audit,
            clock,
            silent_after: settings.silent_after,
            heard: Mutex::default(),
        }
    }

    fn write_every_ms(&self) -> i64 {
        (self.silent_after.as_millis() / 4).max(1) as i64
    }

    /// The agent of `attempt` gave a sign of life now.
    pub async fn agent_heard(&self, attempt: AttemptId) -> Result<(), Failure> {
        let now = self.clock.now_ms();
        {
            let mut heard = self.heard.lock().unwrap_or_else(|p| p.into_inner());
            if heard
                .get(&attempt)
                .is_some_and(|t| now - t < self.write_every_ms())
            {
                return Ok(());
            }
            if heard.len() > 100_000 {
                let horizon = now - self.silent_after.as_millis() as i64;
                heard.retain(|_, t| *t > horizon);
            }
            heard.insert(attempt, now);
        }
        if let Some(since) = self.db.agent_heard(attempt, now).await? {
            let seconds = (now - since) as f64 / 1000.0;
            tracing::info!(attempt = %attempt, seconds, "agent heard again");
            self.audit
                .record(
                    "candidate",
                    "agent_back",
                    Some(attempt),
                    serde_json::json!({ "silent_from_ms": since, "seconds": seconds }),
                )
                .await?;
        }
        Ok(())
    }

    /// A heartbeat: the agent is there, and says how much of its recording waits.
    pub async fn heartbeat(
        &self,
        who: &AgentIdentity,
        beat: Heartbeat,
    ) -> Result<(), LivenessError> {
        if who.attempt.state == crate::lifecycle::AttemptState::Destroyed {
            return Err(Failure::Gone.into());
        }
        if beat.backlog_chunks > 1_000_000 || beat.backlog_bytes > 1 << 40 {
            return Err(LivenessError::BacklogOutOfRange);
        }
        who.may_carry_on(self.db.as_ref(), self.clock.now_ms())
            .await
            .map_err(Failure::from)??;
        crate::metrics::agent_backlog(beat.backlog_bytes);
        Ok(self.agent_heard(who.attempt.id).await?)
    }

    /// Marks silent the agents not heard from for `silent_after`; returns how many.
    pub async fn mark_silent_agents(&self) -> Result<usize, Failure> {
        let before = self.clock.now_ms() - self.silent_after.as_millis() as i64;
        let silent = self.db.mark_silent_agents(before).await?;
        for (attempt, since) in &silent {
            tracing::warn!(attempt = %attempt, "agent silent");
            self.audit
                .record(
                    "system",
                    "agent_silent",
                    Some(*attempt),
                    serde_json::json!({ "since_ms": since }),
                )
                .await?;
            // The next sign of life must be written at once, whatever this instance wrote.
            self.heard
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(attempt);
        }
        Ok(silent.len())
    }
}

/// Checks for silent agents four times per `silent_after`.
pub fn spawn_watch(liveness: Arc<Liveness>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let every = liveness.silent_after / 4;
        loop {
            tokio::time::sleep(every).await;
            if let Err(e) = liveness.mark_silent_agents().await {
                tracing::error!(error = %e, "liveness check failed; retrying at the next one");
            }
        }
    })
}

/// What a heartbeat is refused for; `routes/errors.rs` gives each its HTTP answer.
#[derive(Debug, thiserror::Error)]
pub enum LivenessError {
    #[error(transparent)]
    Failure(#[from] Failure),
    #[error("backlog out of range")]
    BacklogOutOfRange,
    #[error(transparent)]
    Token(#[from] crate::identity::TokenRefused),
}

/// The attempt's silences; one still open when the exam ended ends there.
pub async fn silences(db: &dyn Database, attempt: AttemptId) -> Result<Vec<Silence>, Failure> {
    let ended = db.attempt(attempt).await.ok().and_then(|a| a.ended_at_ms);
    Ok(db
        .agent_silences(attempt)
        .await?
        .into_iter()
        .map(|(from, to)| (from, to.or(ended.filter(|e| *e > from))))
        .map(|(from, to)| Silence {
            from: rfc3339(from_unix_ms(from)),
            to: to.map(|t| rfc3339(from_unix_ms(t))),
            seconds: to.map(|t| (t - from) as f64 / 1000.0),
        })
        .collect())
}
