//! The CernVM-FS 2.x format: bytes in, types out. No network and no repository directory:
//! what is read here was fetched and bounded by the layers above.
//!
//! - [`fqrn`]: repository names, by stock's rule.
//! - [`hash`]: content hashes (SHA-1, RIPEMD-160, SHAKE-128) with hex suffixes; MD5 path keys.
//! - [`object`]: object names `data/XX/…[suffix]`, zlib streams, verify-while-reading.
//! - [`letter`], [`signature`], [`certificate`], [`whitelist`], [`manifest`]: the trust chain.
//! - [`keys`]: the key files of a repository (stock names): generation and loading.
//! - [`catalog`]: SQLite catalogs: schema, rows, reader, writer, counters, xattr blobs.
//! - [`history`], [`reflog`]: the tag database and the list of every published root object.
//! - [`sqlite`]: database images in memory (catalogs, history, reflog from verified bytes).
//! - [`timefmt`]: UTC timestamps in the format's textual forms.

pub mod catalog;
pub mod certificate;
pub mod fqrn;
pub mod hash;
pub mod history;
pub mod keys;
pub mod letter;
pub mod manifest;
pub mod object;
pub mod reflog;
pub mod signature;
pub mod sqlite;
pub mod timefmt;
pub mod whitelist;
