mod agent;
mod hardening;
mod helpers;
mod integration;
mod lifecycle;
mod staff;
