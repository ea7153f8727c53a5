//! Which way a chunk goes: the WebRTC data channel, HTTPS, or the first that works
//! (`auto`, the default). In `auto`, a channel that does not open within a few seconds
//! (UDP blocked, say) or that stalls hands over to HTTPS, which drains the spool; the
//! channel is tried again every `RETRY_CHANNEL`, and carries on when it opens. Whatever
//! carries a chunk, the server answers it the same (same ingest, same refusals).

use crate::client::{Api, Failure, Outcome};
use crate::datachannel::DataChannel;
use protocol::api::{ChunkAck, Heartbeat};
use protocol::channel::{self, Answered, ResultMessage};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The data channel when it opens, HTTPS otherwise.
    #[default]
    Auto,
    /// The data channel only (signalling and consent still go over HTTPS).
    Webrtc,
    /// HTTPS only.
    Https,
}

/// How long a chunk's result may take on the channel before it counts as stalled.
const STALL: Duration = Duration::from_secs(30);
/// After a failed or lost channel, how long before trying again.
const RETRY_CHANNEL: Duration = Duration::from_secs(10);

pub struct Link {
    api: Api,
    mode: Mode,
    channel: Mutex<Option<std::sync::Arc<DataChannel>>>,
    last_try: std::sync::Mutex<Option<Instant>>,
    /// A heartbeat is waiting on the channel: the next one goes over HTTPS rather than
    /// queue behind it (an outage would otherwise pile them up for the server).
    heartbeat_waiting: std::sync::atomic::AtomicBool,
    /// Chunks each transport carried in this run (the server counts too).
    pub carried: std::sync::Mutex<std::collections::BTreeMap<&'static str, u64>>,
}

fn outcome(r: ResultMessage) -> Result<u16, Failure> {
    if (200..300).contains(&r.status) {
        return Ok(r.status);
    }
    let retry_after =
        (r.retry_after_s > 0).then(|| Duration::from_secs(u64::from(r.retry_after_s).min(3600)));
    Err(Failure {
        status: r.status,
        code: r.code,
        message: "refused on the data channel".into(),
        retry_after,
    })
}

impl Link {
    pub fn new(api: Api, mode: Mode) -> Self {
        Self {
            api,
            mode,
            channel: Mutex::new(None),
            last_try: std::sync::Mutex::new(None),
            heartbeat_waiting: Default::default(),
            carried: Default::default(),
        }
    }

    pub fn api(&self) -> &Api {
        &self.api
    }

    fn count(&self, transport: &'static str) {
        *self
            .carried
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(transport)
            .or_default() += 1;
    }

    /// Sends over the channel if it is (or can now be) open. `None`: it is not; the
    /// caller uses HTTPS (auto) or reports the network down (webrtc).
    async fn over_channel(
        &self,
        of: Answered,
        stream: Uuid,
        index: u32,
        messages: Vec<Vec<u8>>,
    ) -> Option<Outcome<ResultMessage>> {
        if self.mode == Mode::Https {
            return None;
        }
        let channel = {
            let mut slot = self.channel.lock().await;
            if !slot.as_ref().is_some_and(|c| c.is_alive()) {
                if let Some(dead) = slot.take() {
                    dead.close(&self.api).await;
                }
                let due = self
                    .last_try
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .is_none_or(|t| t.elapsed() >= RETRY_CHANNEL);
                if !due {
                    return None;
                }
                *self.last_try.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
                let within = if self.mode == Mode::Webrtc {
                    crate::datachannel::CONNECT_TIMEOUT_ALONE
                } else {
                    crate::datachannel::CONNECT_TIMEOUT
                };
                match DataChannel::connect(&self.api, within).await {
                    Ok(c) => {
                        tracing::info!("data channel open");
                        *slot = Some(std::sync::Arc::new(c));
                    }
                    Err(f) => {
                        tracing::info!(failure = %f, "no data channel; HTTPS carries on");
                        return None;
                    }
                }
            }
            slot.clone().expect("opened above")
        };
        let failed =
            match tokio::time::timeout(STALL, channel.request(of, stream, index, messages)).await {
                Ok(Ok(r)) => return Some(Ok(r)),
                Ok(Err(f)) => format!("lost: {f}"),
                Err(_) => "stalled".to_owned(),
            };
        tracing::info!(why = %failed, "data channel dropped");
        // The next try waits RETRY_CHANNEL from now: a channel that stalls is not reopened
        // for every chunk while HTTPS works.
        *self.last_try.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        channel.close(&self.api).await;
        let mut slot = self.channel.lock().await;
        if slot
            .as_ref()
            .is_some_and(|c| std::sync::Arc::ptr_eq(c, &channel))
        {
            *slot = None;
        }
        None
    }

    fn channel_down() -> Failure {
        Failure {
            status: 0,
            code: "network".into(),
            message: "the data channel is down".into(),
            retry_after: None,
        }
    }

    pub async fn put_chunk(&self, stream: Uuid, index: u32, chunk: Vec<u8>) -> Outcome<ChunkAck> {
        let messages = channel::chunk_messages(stream, index, &chunk).collect();
        match self
            .over_channel(Answered::Chunk, stream, index, messages)
            .await
        {
            Some(r) => {
                let status = outcome(r?)?;
                self.count("webrtc");
                return Ok(ChunkAck {
                    stream_id: stream,
                    index,
                    digest: String::new(),
                    created: status == 201,
                });
            }
            None if self.mode == Mode::Webrtc => return Err(Self::channel_down()),
            None => {}
        }
        let ack = self.api.put_chunk(stream, index, chunk).await?;
        self.count("https");
        Ok(ack)
    }

    pub async fn end_stream(&self, stream: Uuid, final_index: u32) -> Outcome<()> {
        match self
            .over_channel(
                Answered::End,
                stream,
                final_index,
                vec![channel::end_message(stream, final_index)],
            )
            .await
        {
            Some(r) => outcome(r?).map(|_| ()),
            None if self.mode == Mode::Webrtc => Err(Self::channel_down()),
            None => self.api.end_stream(stream, final_index).await,
        }
    }

    /// Over the channel when it is open (never opens one for a heartbeat), else HTTPS. A
    /// heartbeat that goes unanswered says nothing about the channel: chunks judge it.
    pub async fn heartbeat(&self, beat: Heartbeat) -> Outcome<()> {
        // Never wait behind a channel being opened (up to 15 s): HTTPS says it now.
        use std::sync::atomic::Ordering;
        let open = self
            .channel
            .try_lock()
            .ok()
            .and_then(|slot| slot.clone())
            .filter(|c| c.is_alive());
        if let Some(c) = open.filter(|_| !self.heartbeat_waiting.swap(true, Ordering::SeqCst)) {
            let message = vec![channel::heartbeat_message(
                beat.backlog_chunks,
                beat.backlog_bytes,
            )];
            let answered = tokio::time::timeout(
                Duration::from_secs(5),
                c.request(Answered::Heartbeat, Uuid::nil(), 0, message),
            )
            .await;
            self.heartbeat_waiting.store(false, Ordering::SeqCst);
            return match answered {
                Ok(r) => outcome(r?).map(|_| ()),
                Err(_) => Err(Failure {
                    status: 0,
                    code: "network".into(),
                    message: "heartbeat unanswered".into(),
                    retry_after: None,
                }),
            };
        }
        self.api.heartbeat(&beat).await
    }
}
