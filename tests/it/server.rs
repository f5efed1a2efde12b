//! Server tests (being written).
