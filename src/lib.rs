//! lazyroot: container root filesystems from CernVM-FS repositories, fetched lazily.
//!
//! # Layout
//! One folder per layer, in dependency order; each imports only from those above it.
//! - [`cvmfs`]: the format: hashes, objects, the trust chain, catalogs, history, reflog.
//! - [`repository`]: the read side over any object source: open and verify the chain,
//!   snapshots, paths, the local Stratum-0 directory, `check`, listings.
//! - [`publish`]: the write side: walk, chunk, hash and compress in parallel, write catalogs,
//!   sign, commit the manifest last; repository lifecycle (mkfs, resign, tags) and repair.
//! - [`ingest`]: container images in: layers read once (objects stored while streaming)
//!   and applied with OCI semantics onto an in-memory tree, which publish takes as it is.
//! - [`server`]: HTTP/1.1 server for repositories under `/cvmfs/<fqrn>/`, with proxy-friendly
//!   cache headers.
//! - [`ingest`]: container images in: references, digests, image documents, and the
//!   sources (registries, OCI layouts, docker-save archives) that deliver verified blobs.
//! - [`remote`]: what a client fetches through: the download manager, the shared verified
//!   cache, rollback refusal, offline mode.
//! - [`keeper`]: a small process that holds FUSE connections' descriptors across daemon
//!   crashes, for a restarted daemon to claim, and aborts those nobody claims.
//! - [`mount`]: the mounted tree without the kernel, its journal, and its FUSE session.
//! - [`csi`]: the CSI v1 Identity and Node services (tonic) over a volume publisher.
//! - [`provisioner`]: the daemon for Mesos: images mounted per root hash, appc store entries,
//!   pins in SQLite, the control API on a Unix socket, restart recovery, idle release; it
//!   publishes CSI volumes.
//!
//! The command line (`src/cli/`) sits on top of all of them.

pub mod csi;
pub mod cvmfs;
pub mod ingest;
pub mod keeper;
pub mod mount;
pub mod provisioner;
pub mod publish;
pub mod remote;
pub mod repository;
pub mod server;
