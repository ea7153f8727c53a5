//! Admission of chunk uploads, before their bodies are read: a cap on uploads at once, a
//! memory budget reserved from each upload's Content-Length, and a cap per attempt, so
//! that a flood gets a fast 503/429 instead of growing the server's memory.

use super::IngestError;
use crate::db::AttemptId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub struct IngestGate {
    slots: Arc<Semaphore>,
    /// One permit per KiB of body, so the budget fits the semaphore's u32 acquisitions.
    kib: Arc<Semaphore>,
    per_attempt: Mutex<HashMap<AttemptId, usize>>,
    max_per_attempt: usize,
}

/// Held while one upload is read, verified and stored.
pub struct IngestPermit {
    _slot: Option<OwnedSemaphorePermit>,
    _kib: Option<OwnedSemaphorePermit>,
    gate: Arc<IngestGate>,
    attempt: AttemptId,
}

impl IngestGate {
    pub fn new(max_uploads: usize, buffer_bytes: u64, max_per_attempt: usize) -> Self {
        let kib = usize::try_from(buffer_bytes.div_ceil(1024))
            .unwrap_or(usize::MAX)
            .min(Semaphore::MAX_PERMITS);
        Self {
            slots: Arc::new(Semaphore::new(max_uploads.max(1))),
            kib: Arc::new(Semaphore::new(kib.max(1))),
            per_attempt: Mutex::new(HashMap::new()),
            max_per_attempt: max_per_attempt.max(1),
        }
    }

    pub fn admit(
        self: &Arc<Self>,
        attempt: AttemptId,
        content_length: u64,
    ) -> Result<IngestPermit, IngestError> {
        {
            let mut map = self.per_attempt.lock().unwrap_or_else(|p| p.into_inner());
            let n = map.entry(attempt).or_insert(0);
            if *n >= self.max_per_attempt {
                return Err(IngestError::TooManyUploads);
            }
            *n += 1;
        }
        // From here on, dropping `permit` gives the attempt's place back on every path.
        let mut permit = IngestPermit {
            _slot: None,
            _kib: None,
            gate: self.clone(),
            attempt,
        };
        permit._slot = Some(
            self.slots
                .clone()
                .try_acquire_owned()
                .map_err(|_| IngestError::Busy)?,
        );
        let need = u32::try_from(content_length.div_ceil(1024).max(1))
            .map_err(|_| IngestError::TooLarge(content_length))?;
        permit._kib = Some(
            self.kib
                .clone()
                .try_acquire_many_owned(need)
                .map_err(|_| IngestError::Busy)?,
        );
        Ok(permit)
    }

    fn release(&self, attempt: AttemptId) {
        let mut map = self.per_attempt.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&attempt) {
            *n -= 1;
            if *n == 0 {
                map.remove(&attempt);
            }
        }
    }
}

impl Drop for IngestPermit {
    fn drop(&mut self) {
        self.gate.release(self.attempt);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_attempt_cap_byte_budget_and_release() {
        let gate = Arc::new(IngestGate::new(10, 1024 * 1024, 2));
        let (a, b) = (AttemptId::random(), AttemptId::random());
        let p1 = gate.admit(a, 1000).unwrap();
        let _p2 = gate.admit(a, 1000).unwrap();
        assert!(matches!(
            gate.admit(a, 1000),
            Err(IngestError::TooManyUploads)
        ));
        drop(p1);
        let _p3 = gate.admit(a, 1000).unwrap();
        // Budget: 1 MiB in all, 2 KiB of it held; a 1,023 KiB body does not fit now.
        assert!(matches!(gate.admit(b, 1023 * 1024), Err(IngestError::Busy)));
        // A refusal for lack of budget gives the attempt's place back.
        assert_eq!(gate.per_attempt.lock().unwrap().get(&b), None);
        let _p4 = gate.admit(b, 100 * 1024).unwrap();
    }
}

/// Upload tests served at once; more get 503 with Retry-After.
pub const UPLOAD_TEST_SLOTS: usize = 8;
