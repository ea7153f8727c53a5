//! Reviewing a recording: the timeline a player lays out (streams on wall-clock time,
//! gaps, missing and broken fragments, every one with its reason) and playback one
//! fragment at a time, decrypted in memory and checked against the chain before it
//! leaves. Every fetch is audited, with the media time range it covers, before the
//! first byte is sent.

pub mod activity;
pub mod decision;
pub mod playback;
pub mod queue;
pub mod timeline;
