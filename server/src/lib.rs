//! CLOE Connect proctoring server. See ARCHITECTURE.md for the map.

pub mod blobs;
pub mod cli;
pub mod clock;
pub mod configuration;
pub mod db;
pub mod domain;
pub mod error;
pub mod keys;
pub mod recording;
pub mod routes;
pub mod service;
pub mod startup;
pub mod telemetry;
