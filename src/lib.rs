//! lazyroot: container root filesystems from CernVM-FS repositories, fetched lazily.
//!
//! # Layout
//! - [`hash`]: content hashes (SHA-1, RIPEMD-160, SHAKE-128) with hex suffixes; MD5 path keys.
//! - [`object`]: object names `data/XX/…[suffix]`, zlib streams, verify-while-reading.
//! - [`store`]: a repository directory on disk: atomic object writes, bounded reads.
//! - [`letter`], [`signature`], [`certificate`], [`whitelist`], [`manifest`]: the trust chain.
//! - [`catalog`]: SQLite catalogs: schema, rows, reader, writer, counters, xattr blobs.
//! - [`history`], [`reflog`]: the tag database and the list of every published root object.
//! - [`remote`]: a repository behind HTTP: downloads into the cache, rollback refusal, offline mode.
//! - [`repository`]: the read side: open, verify the chain, resolve paths through nested catalogs.
//! - [`server`]: HTTP/1.1 server for repositories under `/cvmfs/<fqrn>/`, with proxy-friendly cache headers.
//! - [`publish`]: the write side: walk a tree, chunk, hash and compress in parallel, write
//!   catalogs, sign, commit the manifest last.
//! - [`cache`]: the shared, verified, content-addressed cache with an LRU quota and breadcrumbs.
//! - [`client`]: the mounted tree without the kernel: lookups, listings, reads, xattrs.
//! - [`fuse`]: the fuser adapter: attribute conversion, errno mapping, kernel cache lifetimes;
//!   mounting and unmounting (shared by `mount` and the provisioner).
//! - [`provisioner`]: the daemon for Mesos: images mounted per root hash, appc store entries,
//!   pins in SQLite, the control API on a Unix socket, restart recovery, idle release.
//! - [`csi`]: the CSI v1 Identity and Node services (tonic) over a volume publisher.
//! - [`download`]: the download manager: host and proxy failover, streaming hash checks.
//! - [`keys`]: the key files of a repository (stock names): generation and loading. `mkfs`,
//!   `resign` and tag edits live in [`publish::mkfs`].
//! - [`check`]: audit every object reachable from the manifest.
//! - [`listing`]: a tab-separated listing of a snapshot, comparable across implementations.
//! - [`sqlite`]: database images in memory (catalogs, history, reflog from verified bytes).
//! - [`timefmt`]: UTC timestamps in the format's textual forms.

pub mod cache;
pub mod catalog;
pub mod certificate;
pub mod check;
pub mod client;
pub mod csi;
pub mod download;
pub mod fuse;
pub mod hash;
pub mod history;
pub mod keys;
pub mod letter;
pub mod listing;
pub mod manifest;
pub mod object;
pub mod provisioner;
pub mod publish;
pub mod reflog;
pub mod remote;
pub mod repository;
pub mod server;
pub mod signature;
pub mod sqlite;
pub mod store;
pub mod timefmt;
pub mod whitelist;
