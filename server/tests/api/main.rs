#[path = "../support/garage.rs"]
mod garage;
mod agent;
mod hardening;
mod helpers;
mod integration;
mod lifecycle;
mod staff;
