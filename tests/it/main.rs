//! Integration tests: one binary, one module per concern.

mod bad_input;
mod cli;
mod common;
mod crash;
mod faults;
mod faulty;
mod fixture;
mod incremental;
mod mount;
mod net;
mod revisions;
mod rootfs;
mod roundtrip;
mod server;
