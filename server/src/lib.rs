//! CLOE Connect proctoring server. See ARCHITECTURE.md for the map.

pub mod accounts;
pub mod audit;
pub mod blobs;
pub mod cli;
pub mod clock;
pub mod configuration;
pub mod db;
pub mod domain;
pub mod enrolment;
pub mod error;
pub mod faults;
pub mod ingest;
pub mod keys;
pub use proctor_db::lifecycle;
pub mod memory;
pub mod metrics;
pub mod recording;
pub mod retention;
pub mod review;
pub mod routes;
pub mod service;
pub mod staff_auth;
pub mod startup;
pub mod telemetry;
pub mod terminals;
pub mod throttle;
