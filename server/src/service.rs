//! The server's domain: what the HTTP routes and the CLI both call. Holds no SQL (that is
//! `db`) and no HTTP (that is `routes`).

use crate::blobs::{chunk_path, BlobStore};
use crate::clock::{rfc3339, unix_ms, SharedClock};
use crate::configuration::Settings;
use crate::db::*;
use crate::domain::{hash_token, verify_password, Password, Reference, Role, Secret};
use crate::error::AppError;
use crate::keys::{KeyStore, WrappedKey};
use bytes::Bytes;
use protocol::api::*;
use protocol::{AttemptKey, ChunkHeader, StreamKey, StreamSalt};
use std::sync::Arc;
use uuid::Uuid;

pub struct Proctor {
    pub db: Arc<dyn Database>,
    pub blobs: BlobStore,
    pub keys: KeyStore,
    pub clock: SharedClock,
    pub settings: Settings,
}

/// A candidate authenticated by their launch token: can only write to this attempt.
pub struct AgentIdentity {
    pub attempt: Attempt,
}

/// An authenticated staff member.
#[derive(Debug, Clone)]
pub struct StaffIdentity {
    pub id: Uuid,
    pub login: String,
    pub role: Role,
}

impl Proctor {
    pub fn open(settings: Settings, clock: SharedClock) -> anyhow::Result<Self> {
        let dir = &settings.server.data_dir;
        std::fs::create_dir_all(dir)?;
        let db = SqliteDatabase::open(&dir.join("proctor.sqlite"))?;
        Ok(Self {
            db: Arc::new(db),
            blobs: BlobStore::open_local(&dir.join("blobs"))?,
            keys: KeyStore::open(&dir.join("keys"))?,
            clock,
            settings,
        })
    }

    fn now_ms(&self) -> i64 {
        unix_ms(self.clock.now())
    }

    pub async fn audit(&self, actor: &str, action: &str, attempt: Option<Uuid>, detail: serde_json::Value) -> Result<(), AppError> {
        self.db.append_audit(AuditEvent { at_ms: self.now_ms(), actor: actor.into(), action: action.into(), attempt_id: attempt, detail }).await?;
        Ok(())
    }

    // ---- integration -------------------------------------------------------------------

    pub async fn create_sitting(&self, reference: &str, actor: &str) -> Result<CreateSittingResponse, AppError> {
        let reference = Reference::parse(reference).map_err(AppError::BadRequest)?;
        let id = Uuid::new_v4();
        match self.db.create_sitting(id, reference.as_str(), self.now_ms()).await {
            Err(DbError::Conflict) => return Err(AppError::Conflict("a sitting with this reference already exists".into())),
            other => other?,
        }
        self.audit(actor, "sitting_created", None, serde_json::json!({ "sitting_id": id })).await?;
        Ok(CreateSittingResponse { sitting_id: id })
    }

    pub async fn add_candidate(&self, sitting: Uuid, reference: &str, actor: &str) -> Result<AddCandidateResponse, AppError> {
        let reference = Reference::parse(reference).map_err(AppError::BadRequest)?;
        if !self.db.sitting_exists(sitting).await? {
            return Err(AppError::NotFound("sitting"));
        }
        let now = self.clock.now();
        let id = Uuid::new_v4();
        let dek = AttemptKey::generate();
        let wrapped = self.keys.wrap(&dek, &id, now)?;
        let token = Secret::generate("clt");
        let expires = now + self.settings.limits.launch_token_ttl;
        let row = NewAttempt {
            id,
            sitting_id: sitting,
            reference: reference.as_str().to_owned(),
            token_hash: token.hash(),
            token_expires_at_ms: unix_ms(expires),
            kek_epoch: wrapped.epoch,
            wrapped_dek: wrapped.blob,
            dek_fingerprint: dek.fingerprint().to_string(),
            created_at_ms: unix_ms(now),
        };
        match self.db.create_attempt(row).await {
            Err(DbError::Conflict) => return Err(AppError::Conflict("this candidate reference already exists in the sitting".into())),
            other => other?,
        }
        self.audit(actor, "candidate_added", Some(id), serde_json::json!({ "sitting_id": sitting })).await?;
        Ok(AddCandidateResponse { attempt_id: id, launch_token: token.reveal(), token_expires_at: rfc3339(expires) })
    }

    // ---- agent ---------------------------------------------------------------------------

    pub async fn authenticate_agent(&self, token: &str) -> Result<AgentIdentity, AppError> {
        let attempt = match self.db.attempt_by_token(hash_token(token)).await {
            Err(DbError::NotFound) => return Err(AppError::Unauthorized),
            other => other?,
        };
        if attempt.token_expires_at_ms <= self.now_ms() {
            return Err(AppError::TokenExpired);
        }
        Ok(AgentIdentity { attempt })
    }

    pub async fn record_consent(&self, who: &AgentIdentity, req: ConsentRequest) -> Result<(), AppError> {
        if req.notice_version != NOTICE_VERSION {
            return Err(AppError::BadRequest(format!("unknown notice version; the current one is {NOTICE_VERSION}")));
        }
        self.db.record_consent(who.attempt.id, &req.notice_version, self.now_ms()).await?;
        self.audit("candidate", "consent_recorded", Some(who.attempt.id), serde_json::json!({ "notice_version": req.notice_version })).await
    }

    pub(crate) async fn attempt_or_404(&self, id: Uuid) -> Result<Attempt, AppError> {
        match self.db.attempt(id).await {
            Err(DbError::NotFound) => Err(AppError::NotFound("attempt")),
            other => Ok(other?),
        }
    }

    fn attempt_key(&self, attempt: &Attempt) -> Result<AttemptKey, AppError> {
        let wrapped = WrappedKey { epoch: attempt.kek_epoch.clone(), blob: attempt.wrapped_dek.clone() };
        Ok(self.keys.unwrap(&wrapped, &attempt.id)?)
    }

    pub(crate) fn stream_key(&self, attempt: &Attempt, stream: &Stream) -> Result<StreamKey, AppError> {
        Ok(self.attempt_key(attempt)?.derive_stream_key(&StreamSalt(stream.salt), &attempt.id, &stream.id))
    }

    pub async fn open_stream(&self, who: &AgentIdentity, req: OpenStreamRequest, client_ip: String) -> Result<OpenStreamResponse, AppError> {
        if who.attempt.consent_at_ms.is_none() {
            return Err(AppError::ConsentRequired);
        }
        let field = |s: &str, name: &str| -> Result<String, AppError> {
            let t = s.trim();
            if t.is_empty() || t.len() > 200 || t.chars().any(char::is_control) {
                return Err(AppError::BadRequest(format!("{name} must be 1 to 200 printable characters")));
            }
            Ok(t.to_owned())
        };
        let conn = ConnectionInfo { client_ip, agent_version: field(&req.agent_version, "agent_version")?, os: field(&req.os, "os")? };
        let stream = Stream {
            id: Uuid::new_v4(),
            attempt_id: who.attempt.id,
            salt: StreamSalt::generate().0,
            opened_at_ms: self.now_ms(),
            ended_at_ms: None,
            final_index: None,
        };
        let key = self.stream_key(&who.attempt, &stream)?;
        self.db.open_stream(stream.clone(), conn).await?;
        tracing::info!(attempt = %who.attempt.id, stream = %stream.id, "stream opened");
        use base64::Engine;
        Ok(OpenStreamResponse {
            attempt_id: who.attempt.id,
            stream_id: stream.id,
            stream_key: base64::engine::general_purpose::STANDARD.encode(key.to_bytes().as_slice()),
            fragment_ms: self.settings.capture.fragment_ms,
            max_chunk_bytes: self.settings.limits.max_chunk_bytes,
        })
    }

    async fn own_stream(&self, who: &AgentIdentity, stream_id: Uuid) -> Result<Stream, AppError> {
        match self.db.stream(stream_id).await {
            Ok(s) if s.attempt_id == who.attempt.id => Ok(s),
            // Another attempt's stream looks exactly like an unknown one: no probing.
            Ok(_) | Err(DbError::NotFound) => Err(AppError::NotFound("stream")),
            Err(e) => Err(e.into()),
        }
    }

    /// The one ingest path, whatever the transport: verify, store durably, then acknowledge.
    pub async fn ingest_chunk(&self, who: &AgentIdentity, stream_id: Uuid, index: u32, chunk: Bytes) -> Result<ChunkAck, AppError> {
        let stream = self.own_stream(who, stream_id).await?;
        let (header, _) = ChunkHeader::parse(&chunk).map_err(AppError::MalformedChunk)?;
        if header.attempt != who.attempt.id {
            return Err(AppError::Forbidden("chunk is sealed for another attempt".into()));
        }
        if header.stream != stream_id || header.index != index {
            return Err(AppError::BadRequest("chunk header does not match the stream and index of the URL".into()));
        }
        if stream.final_index.is_some_and(|f| index > f) {
            return Err(AppError::Conflict(format!("stream ended at index {}", stream.final_index.unwrap_or_default())));
        }
        let key = self.stream_key(&who.attempt, &stream)?;
        let opened = protocol::open_chunk(&key, who.attempt.id, stream_id, &chunk).map_err(AppError::Unauthentic)?;
        drop(opened.plaintext);
        let row = ChunkRow {
            stream_id,
            index,
            digest: opened.digest,
            prev_digest: header.prev_digest,
            size: chunk.len() as u64,
            media_start_us: header.media_start_us,
            media_end_us: header.media_end_us,
            last: header.last,
        };
        // Fast paths that need no blob write: a replay, or a conflict.
        if let Ok(existing) = self.db.chunk(stream_id, index).await {
            return self.replay_or_conflict(who, existing, row).await;
        }
        self.blobs.put_durable(&chunk_path(who.attempt.id, stream_id, index), chunk).await?;
        match self.db.insert_chunk(row.clone(), self.now_ms()).await? {
            ChunkInsert::Created => Ok(ChunkAck { stream_id, index, digest: hex::encode(row.digest), created: true }),
            ChunkInsert::Duplicate | ChunkInsert::Conflict => {
                let existing = self.db.chunk(stream_id, index).await?;
                self.replay_or_conflict(who, existing, row).await
            }
        }
    }

    async fn replay_or_conflict(&self, who: &AgentIdentity, existing: ChunkRow, new: ChunkRow) -> Result<ChunkAck, AppError> {
        if existing.digest == new.digest {
            return Ok(ChunkAck { stream_id: new.stream_id, index: new.index, digest: hex::encode(new.digest), created: false });
        }
        tracing::warn!(attempt = %who.attempt.id, stream = %new.stream_id, index = new.index, "conflicting chunk refused");
        self.audit(
            "candidate",
            "chunk_conflict",
            Some(who.attempt.id),
            serde_json::json!({ "stream_id": new.stream_id, "index": new.index, "stored_digest": hex::encode(existing.digest), "refused_digest": hex::encode(new.digest) }),
        )
        .await?;
        Err(AppError::Conflict(format!("another chunk is already stored at index {}", new.index)))
    }

    pub async fn end_stream(&self, who: &AgentIdentity, stream_id: Uuid, req: EndStreamRequest) -> Result<(), AppError> {
        let stream = self.own_stream(who, stream_id).await?;
        if let Some(f) = stream.final_index {
            if f != req.final_index {
                return Err(AppError::Conflict(format!("stream already ended at index {f}")));
            }
        }
        let last = match self.db.chunk(stream_id, req.final_index).await {
            Ok(c) => c,
            Err(DbError::NotFound) => return Err(AppError::Conflict("the final chunk has not been stored yet".into())),
            Err(e) => return Err(e.into()),
        };
        if !last.last {
            return Err(AppError::Conflict("the chunk at final_index is not sealed as final".into()));
        }
        self.db.end_stream(stream_id, req.final_index, self.now_ms()).await?;
        tracing::info!(attempt = %who.attempt.id, stream = %stream_id, "stream ended");
        Ok(())
    }

    // ---- staff -------------------------------------------------------------------------

    pub async fn add_staff(&self, login: &str, role: &str, password: &str) -> Result<Uuid, AppError> {
        let role = Role::parse(role).map_err(AppError::BadRequest)?;
        let login = Reference::parse(login).map_err(AppError::BadRequest)?;
        let password = Password::parse(password).map_err(AppError::BadRequest)?;
        let id = Uuid::new_v4();
        let account = StaffAccount { id, login: login.as_str().into(), role: role.as_str().into(), password_hash: password.hash() };
        match self.db.create_staff(account, self.now_ms()).await {
            Err(DbError::Conflict) => return Err(AppError::Conflict("this login already exists".into())),
            other => other?,
        }
        self.audit("admin-cli", "staff_added", None, serde_json::json!({ "login": login.as_str(), "role": role.as_str() })).await?;
        Ok(id)
    }

    pub async fn staff_login(&self, login: &str, password: &str) -> Result<String, AppError> {
        let account = self.db.staff_by_login(login).await.ok();
        let hash = account.as_ref().map(|a| a.password_hash.clone());
        let pw = password.to_owned();
        // Verify even for an unknown login so that timing does not tell which logins exist.
        let ok = tokio::task::spawn_blocking(move || match hash {
            Some(h) => verify_password(&pw, &h),
            None => {
                verify_password(&pw, "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$W9Rz9j0xD8s2s0+RpX3b3kQ3m9jwW1rWcYy4Q4y5o2I");
                false
            }
        })
        .await
        .map_err(|e| AppError::Internal(e.into()))?;
        let account = match (ok, account) {
            (true, Some(a)) => a,
            _ => {
                self.audit(login, "staff_login_failed", None, serde_json::json!({})).await?;
                return Err(AppError::Unauthorized);
            }
        };
        let token = Secret::generate("cls");
        let expires = self.clock.now() + self.settings.limits.staff_session_ttl;
        self.db.create_staff_session(token.hash(), account.id, unix_ms(expires)).await?;
        self.audit(&account.login, "staff_login", None, serde_json::json!({})).await?;
        Ok(token.reveal())
    }

    pub async fn authenticate_staff(&self, token: &str) -> Result<StaffIdentity, AppError> {
        match self.db.staff_by_session(hash_token(token), self.now_ms()).await {
            Ok(a) => Ok(StaffIdentity { id: a.id, role: Role::parse(&a.role).map_err(|e| AppError::Internal(anyhow::anyhow!(e)))?, login: a.login }),
            Err(DbError::NotFound) => Err(AppError::Unauthorized),
            Err(e) => Err(e.into()),
        }
    }
}
