//! The integration suite: one binary, a module per feature. Every test runs
//! the real service or the real store against a real database.

#[allow(dead_code)] // each module uses a different part of the harness
mod helpers;

mod accounts;
mod actors;
mod architecture;
mod cli;
mod cluster;
mod config;
mod conformance;
mod deploy;
mod faults;
mod health;
mod hostaway_client;
mod isolation;
mod limits;
mod openapi;
mod process;
mod registration;
mod replicas;
mod storage;
mod sync;
mod telemetry;
mod webhooks;
