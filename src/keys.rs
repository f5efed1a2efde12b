//! Key files
