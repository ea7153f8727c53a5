//! JSON payloads of the agent and integration APIs, shared by both ends.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub use crate::notice::NOTICE_VERSION;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConsentRequest {
    pub notice_version: String,
    /// The consent as the agent kept it in its spool, sealed to the attempt's public key
    /// (`seal_to_attempt`, purpose `CONSENT_PURPOSE`, an `OfflineConsent` in JSON): given
    /// while the server may have been unreachable, recorded with its original time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<String>,
}

pub const CONSENT_PURPOSE: &str = "consent";

/// What the candidate accepted, and when by the agent's clock.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OfflineConsent {
    pub notice_version: String,
    pub given_at_ms: i64,
}

/// What an agent needs to record without the server (and what the launch token carries).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttemptInfo {
    pub attempt_id: Uuid,
    /// The attempt's X25519 public key, base64url: stream keys are sealed to it.
    pub public_key: String,
    pub notice_version: String,
    pub fragment_ms: u32,
    pub max_chunk_bytes: u64,
    /// The attempt's state (`recording`, `ended`, `withdrawn`…): an agent that reads
    /// `ended` stops capturing, nothing is recorded after the end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OpenStreamRequest {
    pub agent_version: String,
    pub os: String,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct OpenStreamResponse {
    pub attempt_id: Uuid,
    pub stream_id: Uuid,
    /// Stream key ‖ nonce prefix, base64; only ever sent over TLS or loopback.
    pub stream_key: String,
    /// Fragment length the server asks for, in milliseconds.
    pub fragment_ms: u32,
    /// Largest chunk the server accepts, in bytes.
    pub max_chunk_bytes: u64,
}

impl std::fmt::Debug for OpenStreamResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenStreamResponse")
            .field("attempt_id", &self.attempt_id)
            .field("stream_id", &self.stream_id)
            .field("stream_key", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChunkAck {
    pub stream_id: Uuid,
    pub index: u32,
    pub digest: String,
    /// false when the same bytes were already stored (idempotent replay).
    pub created: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EndStreamRequest {
    pub final_index: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateSittingRequest {
    #[serde(rename = "ref")]
    pub reference: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateSittingResponse {
    pub sitting_id: Uuid,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AddCandidateRequest {
    #[serde(rename = "ref")]
    pub reference: String,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct AddCandidateResponse {
    pub attempt_id: Uuid,
    /// `clt_<secret>.<attempt ‖ public key>`: the agent needs nothing else to record.
    pub launch_token: String,
    /// The attempt's X25519 public key, base64url (also inside the launch token), for a
    /// launch link.
    pub attempt_public_key: String,
    /// RFC 3339.
    pub token_expires_at: String,
    /// `https://SERVER/launch#TOKEN`: the browser agent, nothing to install; the token
    /// stays in the fragment, which no browser sends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub browser_link: Option<String>,
}

impl std::fmt::Debug for AddCandidateResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AddCandidateResponse")
            .field("attempt_id", &self.attempt_id)
            .finish_non_exhaustive()
    }
}

/// Where an attempt stands in its lifecycle, for the exam platform.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttemptStatus {
    pub attempt_id: Uuid,
    /// enrolled, consented, recording, ended, in_review, reviewed, decided, destroyed, withdrawn.
    pub state: String,
    /// RFC 3339, once ended.
    pub ended_at: Option<String>,
    /// RFC 3339: until then the launch token may still open a stream to upload a backlog.
    pub new_streams_until: Option<String>,
    /// RFC 3339: the exam's agent has said nothing since then (`[liveness] silent_after`
    /// ago at least). It may still be recording, offline: this is not a hole.
    #[serde(default)]
    pub agent_silent_since: Option<String>,
}

/// A short launch code for the candidate to type (`capture-agent launch K7F4-3QX9`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LaunchCodeResponse {
    pub attempt_id: Uuid,
    pub code: String,
    /// RFC 3339; used once, or not at all past this.
    pub expires_at: String,
}

/// What the agent sends to trade a code for its launch token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RedeemCodeRequest {
    pub code: String,
}

/// The candidate refused the notice: nothing was recorded, nothing will be.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefusalRequest {
    pub notice_version: String,
}

/// What the upload test measured at the server's end.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UploadTestResult {
    pub bytes: u64,
    pub server_ms: u64,
}

/// Largest body the upload test takes.
pub const UPLOAD_TEST_MAX_BYTES: u64 = 2 * 1024 * 1024;

/// The agent's heartbeat (every 5 s): it is there, and this much of its recording waits.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Heartbeat {
    pub backlog_chunks: u64,
    pub backlog_bytes: u64,
}

/// Every 4xx/5xx body: a stable machine code and a human sentence.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    pub message: String,
}
