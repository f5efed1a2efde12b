//! Integration tests: one binary, one module per concern.

mod bad_input;
mod cli;
mod common;
mod crash;
mod fixture;
mod incremental;
mod roundtrip;
mod server;
