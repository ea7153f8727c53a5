#[path = "../support/garage.rs"]
mod garage;
#[path = "../support/pg.rs"]
mod pg;
mod production_storage;
mod retention;
mod review;
mod access;
mod accounts;
mod agent;
mod candidate;
mod hardening;
mod helpers;
mod integration;
mod lifecycle;
mod liveness;
mod staff;
mod store_and_forward;
