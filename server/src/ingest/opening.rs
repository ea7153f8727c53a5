//! Store-and-forward: streams an agent keyed itself while the server may have been
//! unreachable. The first chunk that reaches the server opens its stream, whatever the
//! transport; consent kept in the agent's spool is recorded with its original time.
//!
//! Times come from the agent's clock: each is kept within what the server knows (not
//! before the attempt existed or consent was given, not after now), so a wrong clock
//! moves a stream on the timeline but never lets it claim more recording time.

use super::Ingest;
use super::IngestError;
use crate::db::StreamId;
use crate::db::*;
use crate::failure::Failure;
use crate::identity::AgentIdentity;
use crate::identity::TokenRefused;
use crate::lifecycle::{AttemptState, Transition};
use protocol::api::{OfflineConsent, CONSENT_PURPOSE};
use protocol::ChunkHeader;

/// How a chunk reached the server: the transport, and what the connection says about the
/// agent (kept sealed as the stream's connection data).
#[derive(Debug, Clone)]
pub struct Via {
    pub transport: Transport,
    pub client_ip: String,
    /// `cloe-capture-agent/VERSION (OS ARCH)`, as the agent's HTTP client sends it.
    pub user_agent: Option<String>,
}

impl Via {
    fn connection(&self) -> ConnectionInfo {
        let printable = |s: &str| {
            let t = s.trim();
            if t.is_empty() || t.len() > 200 || t.chars().any(char::is_control) {
                "unknown".to_owned()
            } else {
                t.to_owned()
            }
        };
        let ua = self.user_agent.as_deref().unwrap_or("");
        let (product, os) = match ua.split_once(" (") {
            Some((p, rest)) => (p, rest.strip_suffix(')').unwrap_or(rest)),
            None => (ua, ""),
        };
        let version = product
            .strip_prefix("cloe-capture-agent/")
            .unwrap_or(product);
        ConnectionInfo {
            client_ip: self.client_ip.clone(),
            agent_version: printable(version),
            os: printable(os),
        }
    }
}

/// `t` (agent's clock) kept within [lower, now].
fn within(t: i64, lower: i64, now: i64) -> i64 {
    t.clamp(lower.min(now), now)
}

impl Ingest {
    /// Opens the stream whose first chunk this is, after checking that the chunk opens
    /// under the key it carries: a forged or damaged first chunk creates nothing.
    pub(super) async fn open_agent_stream(
        &self,
        who: &AgentIdentity,
        stream_id: StreamId,
        header: &ChunkHeader,
        chunk: &bytes::Bytes,
        via: &Via,
    ) -> Result<Stream, IngestError> {
        let a = &who.attempt;
        let now = self.clock.now_ms();
        let Some(opening) = header.opening.as_ref().filter(|_| header.index == 0) else {
            return Err(IngestError::StreamNotOpened);
        };
        if who.token.revoked_at_ms.is_some() {
            return Err(TokenRefused::Revoked.into());
        }
        // Nothing is recorded before consent, whatever the state says.
        let Some(consented) = a.consent_at_ms else {
            return Err(IngestError::ConsentRequired);
        };
        let started = within(
            i64::try_from(opening.started_at_ms).unwrap_or(i64::MAX),
            self.earliest_agent_time(a, now).max(consented),
            now,
        );
        // A stream recorded before the token expired may arrive after: it is the recording.
        if who.token.expires_at_ms <= started {
            return Err(TokenRefused::Expired.into());
        }
        match a.state {
            AttemptState::Enrolled => return Err(IngestError::ConsentRequired),
            AttemptState::Consented | AttemptState::Recording => {}
            // Recorded before the end, uploaded after it (an outage): still the recording.
            // `earliest_agent_time` bounds how long after the end that can be.
            AttemptState::Ended if a.ended_at_ms.is_some_and(|end| started < end) => {}
            AttemptState::Destroyed => return Err(Failure::Gone.into()),
            AttemptState::Withdrawn => {
                return Err(crate::lifecycle::InvalidTransition {
                    from: a.state,
                    transition: Transition::StartRecording,
                }
                .into())
            }
            _ => return Err(IngestError::AttemptEnded),
        }
        self.require_undecided(a.sitting_id).await?;

        let dek = self.keys.attempt_key(a)?;
        let key = opening
            .open(
                &dek.recipient(&a.id.as_uuid()).0,
                &a.id.as_uuid(),
                &stream_id.as_uuid(),
            )
            .map_err(IngestError::Unauthentic)?;
        let (attempt_id, input) = (a.id, chunk.clone());
        tokio::task::spawn_blocking(move || {
            protocol::verify_chunk(&key, attempt_id.into(), stream_id.into(), &input)
        })
        .await
        .map_err(|e| Failure::Internal(e.into()))?
        .map_err(IngestError::Unauthentic)?;
        let stream = Stream {
            id: stream_id,
            attempt_id: a.id,
            keying: StreamKeying::Opening(opening.encode().to_vec()),
            opened_at_ms: started,
            ended_at_ms: None,
            final_index: None,
        };
        // The first chunk's own window and quotas, before anything is written.
        self.check_window(who, &stream, header, chunk.len() as u64)
            .await?;
        let sealed = crate::keys::seal_connection(&dek, &a.id, &stream_id, &via.connection())?;
        drop(dek);
        let max_streams = self.limits.max_streams_per_attempt;
        if !self
            .db
            .open_stream(stream.clone(), sealed, max_streams)
            .await?
        {
            // The same first chunk by another transport, at the same time: one row won.
            return match self.db.stream(stream_id).await {
                Ok(s) if s.attempt_id == a.id && s.keying == stream.keying => Ok(s),
                Ok(_) => Err(IngestError::StreamNotOpened),
                Err(DbError::NotFound) => {
                    self.incident(a.id, "stream_quota_exceeded").await;
                    Err(IngestError::StreamQuota(max_streams))
                }
                Err(e) => Err(e.into()),
            };
        }
        if a.state == AttemptState::Consented {
            match self
                .attempts
                .transition(a.id, Transition::StartRecording, "candidate")
                .await
            {
                Ok(_) | Err(Failure::InvalidTransition(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let offline_ms = now - started;
        tracing::info!(attempt = %a.id, stream = %stream_id, offline_ms, transport = via.transport.as_str(), "stream opened by its first chunk");
        crate::metrics::stream_opened();
        Ok(stream)
    }

    /// How far back an agent's clock may place anything (consent, a stream's start): not
    /// before the attempt existed, nor more than `[limits] max_offline` ago. The byte quota
    /// and the index and media-time windows count from these times, so a lie cannot buy
    /// more than that; a recording that waited longer still lands, its start moved later.
    pub(super) fn earliest_agent_time(&self, a: &crate::db::Attempt, now: i64) -> i64 {
        a.created_at_ms
            .max(now - self.limits.max_offline.as_millis() as i64)
    }

    /// Opens consent the agent sealed in its spool: what was accepted, and when. The time is
    /// the agent's, kept within [`earliest_agent_time`, now].
    pub(super) fn offline_consent(
        &self,
        who: &AgentIdentity,
        sealed: &str,
    ) -> Result<OfflineConsent, IngestError> {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(sealed.trim())
            .map_err(|_| IngestError::ConsentNotBase64)?;
        let dek = self.keys.attempt_key(&who.attempt)?;
        let json = protocol::open_from_attempt(
            &dek.recipient(&who.attempt.id.as_uuid()).0,
            &who.attempt.id.as_uuid(),
            CONSENT_PURPOSE,
            &bytes,
        )
        .map_err(|_| IngestError::ConsentDoesNotOpen)?;
        let mut consent: OfflineConsent =
            serde_json::from_slice(&json).map_err(|_| IngestError::ConsentMalformed)?;
        let now = self.clock.now_ms();
        consent.given_at_ms = within(
            consent.given_at_ms,
            self.earliest_agent_time(&who.attempt, now),
            now,
        );
        Ok(consent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agent_says_its_version_and_os_in_its_user_agent() {
        let via = |ua: Option<&str>| Via {
            transport: Transport::Https,
            client_ip: "192.0.2.1".into(),
            user_agent: ua.map(str::to_owned),
        };
        let c = via(Some("cloe-capture-agent/0.1.0 (linux x86_64)")).connection();
        assert_eq!(
            (c.agent_version.as_str(), c.os.as_str()),
            ("0.1.0", "linux x86_64")
        );
        let c = via(None).connection();
        assert_eq!(
            (c.agent_version.as_str(), c.os.as_str()),
            ("unknown", "unknown")
        );
        let c = via(Some("curl/8\u{7}")).connection();
        assert_eq!(c.agent_version, "unknown");
    }

    #[test]
    fn agent_times_stay_within_what_the_server_knows() {
        assert_eq!(within(5, 10, 100), 10);
        assert_eq!(within(500, 10, 100), 100);
        assert_eq!(within(50, 10, 100), 50);
        // A lower bound after now (a clock jump on the server) never inverts the range.
        assert_eq!(within(50, 200, 100), 100);
    }
}
