//! Reviewing a recording: the timeline a player lays out (streams on wall-clock time,
//! gaps, missing and broken fragments, every one with its reason) and playback one
//! fragment at a time, decrypted in memory and checked against the chain before it
//! leaves. Every fetch is audited, with the media time range it covers, before the
//! first byte is sent.

pub mod activity;
pub mod decision;
pub mod error;
pub mod playback;
pub mod queue;
pub mod recording;
mod served;
mod sittings;
pub mod timeline;

pub use error::ReviewError;

use crate::attempts::Attempts;
use crate::audit::Audit;
use crate::blobs::BlobStore;
use crate::clock::SharedClock;
use crate::db::Database;
use crate::keys::KeyStore;
use crate::retention::Policy;
use std::sync::Arc;

/// The reviewers' use case (and the jury's reading): the queue, the timeline, playback,
/// flags and reviews, reports. Every reader of a recording decrypts through `playback`.
pub struct Review {
    db: Arc<dyn Database>,
    blobs: BlobStore,
    keys: KeyStore,
    clock: SharedClock,
    audit: Audit,
    attempts: Attempts,
    policy: Policy,
    settings: crate::configuration::ReviewSettings,
}

/// What `Review` is built from besides its settings.
pub struct Parts {
    pub db: Arc<dyn Database>,
    pub blobs: BlobStore,
    pub keys: KeyStore,
    pub clock: SharedClock,
    pub audit: Audit,
    pub attempts: Attempts,
    pub policy: Policy,
}

impl Review {
    pub fn new(p: Parts, settings: &crate::configuration::ReviewSettings) -> Self {
        Self {
            db: p.db,
            blobs: p.blobs,
            keys: p.keys,
            clock: p.clock,
            audit: p.audit,
            attempts: p.attempts,
            policy: p.policy,
            settings: settings.clone(),
        }
    }
}
