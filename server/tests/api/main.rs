mod agent;
mod helpers;
mod integration;
mod staff;
