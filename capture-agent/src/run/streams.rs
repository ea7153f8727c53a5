//! Streams keyed by the agent, without asking the server: a random stream key sealed to
//! the attempt's public key travels in the stream's first chunk.

use protocol::{AttemptPublicKey, StreamKey, StreamOpening, StreamSealer};
use uuid::Uuid;

/// A stream being sealed into.
pub(super) struct LiveStream {
    pub sealer: StreamSealer,
    pub id: Uuid,
}

/// Opens streams without the server: a random key sealed to the attempt's public key.
pub(super) struct Streams {
    pub attempt: Uuid,
    pub public: AttemptPublicKey,
}

impl Streams {
    pub fn open(&self) -> LiveStream {
        let (id, key) = (Uuid::new_v4(), StreamKey::generate());
        let opening = StreamOpening::seal(&self.public, &self.attempt, &id, unix_ms(), &key);
        LiveStream {
            sealer: StreamSealer::with_opening(key, self.attempt, id, opening),
            id,
        }
    }
}

pub(super) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
