//! Integration tests: one binary, one module per concern.

mod bad_input;
mod cli;
mod common;
mod crash;
mod csi;
mod examples;
mod faults;
mod faulty;
mod fixture;
mod fuzz;
mod hostile;
mod incremental;
mod ingest;
mod keeper;
mod loader;
mod long_mount;
mod mount;
mod net;
mod provision;
mod publisher_state;
mod restart;
mod revisions;
mod rootfs;
mod roundtrip;
mod server;
mod stock_rules;
