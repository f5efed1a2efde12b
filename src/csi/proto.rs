//! Types generated from `proto/csi/v1/csi.proto` (package `csi.v1`) by `build.rs`.

#![allow(clippy::all, missing_docs)]

include!(concat!(env!("OUT_DIR"), "/csi.v1.rs"));
