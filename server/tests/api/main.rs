mod access;
mod accounts;
mod agent;
mod candidate;
#[path = "../support/garage.rs"]
mod garage;
mod hardening;
mod helpers;
mod integration;
mod lifecycle;
mod liveness;
mod own_key;
mod packing;
#[path = "../support/pg.rs"]
mod pg;
mod production_storage;
mod retention;
mod review;
mod staff;
mod staff_powers;
mod store_and_forward;
