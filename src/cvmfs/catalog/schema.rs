//! The catalog schema (2.5, revision 7): the only place with CREATE TABLE for catalogs.

/// The `schema` property of new catalogs.
pub const SCHEMA_VERSION: &str = "2.5";
/// The `schema_revision` property of new catalogs.
pub const SCHEMA_REVISION: u32 = 7;

/// DDL of a new catalog, as `CatalogDatabase::CreateEmptyDatabase` (catalog_sql.cc).
pub const CREATE: &str = "
CREATE TABLE catalog (md5path_1 INTEGER, md5path_2 INTEGER, parent_1 INTEGER, parent_2 INTEGER,
  hardlinks INTEGER, hash BLOB, size INTEGER, mode INTEGER, mtime INTEGER, mtimens INTEGER,
  flags INTEGER, name TEXT, symlink TEXT, uid INTEGER, gid INTEGER, xattr BLOB,
  CONSTRAINT pk_catalog PRIMARY KEY (md5path_1, md5path_2));
CREATE INDEX idx_catalog_parent ON catalog (parent_1, parent_2);
CREATE TABLE chunks (md5path_1 INTEGER, md5path_2 INTEGER, offset INTEGER, size INTEGER, hash BLOB,
  CONSTRAINT pk_chunks PRIMARY KEY (md5path_1, md5path_2, offset, size),
  FOREIGN KEY (md5path_1, md5path_2) REFERENCES catalog(md5path_1, md5path_2));
CREATE TABLE nested_catalogs (path TEXT, sha1 TEXT, size INTEGER,
  CONSTRAINT pk_nested_catalogs PRIMARY KEY (path));
CREATE TABLE bind_mountpoints (path TEXT, sha1 TEXT, size INTEGER,
  CONSTRAINT pk_bind_mountpoints PRIMARY KEY (path));
CREATE TABLE statistics (counter TEXT, value INTEGER, CONSTRAINT pk_statistics PRIMARY KEY (counter));
CREATE TABLE properties (key TEXT, value TEXT, CONSTRAINT pk_properties PRIMARY KEY (key));
";

/// The name of the (empty) file that marks a nested catalog's root directory: stock's
/// publisher cuts a catalog where it finds one and writes one into every nested catalog.
pub const MARKER: &[u8] = b".cvmfscatalog";

/// Default catalog TTL in seconds (`Catalog::kDefaultTTL`).
pub const DEFAULT_TTL: u64 = 240;

/// Row flags (catalog_sql.h).
pub mod flags {
    /// A directory.
    pub const DIR: u32 = 1;
    /// A directory where a nested catalog is mounted (set in the parent catalog).
    pub const NESTED_MOUNTPOINT: u32 = 2;
    /// Not a directory: set on regular files, and on symlinks and special files too.
    pub const FILE: u32 = 4;
    /// A symbolic link (stored together with `FILE`).
    pub const LINK: u32 = 8;
    /// A FIFO, socket or device (stored together with `FILE`); schema revision 5.
    pub const SPECIAL: u32 = 16;
    /// The root directory of a nested catalog (set in the nested catalog itself).
    pub const NESTED_ROOT: u32 = 32;
    /// A file stored as the chunks listed in the `chunks` table.
    pub const CHUNKED: u32 = 64;
    /// An external file: clients fetch it by path from an external URL, not as an object.
    pub const EXTERNAL: u32 = 128;
    /// First bit of the hash-algorithm field (algorithm - 1, see
    /// [`HashAlgo::flag_bits`](crate::cvmfs::hash::HashAlgo::flag_bits)).
    pub const HASH_SHIFT: u32 = 8;
    /// The 3-bit hash-algorithm field (bits 8-10).
    pub const HASH_MASK: u32 = 7 << HASH_SHIFT;
    /// First bit of the compression field (0 zlib, 1 none).
    pub const COMPRESSION_SHIFT: u32 = 11;
    /// The 3-bit compression field (bits 11-13).
    pub const COMPRESSION_MASK: u32 = 7 << COMPRESSION_SHIFT;
    /// A bind mountpoint: links an old root catalog (stock's `/.cvmfs/snapshots`).
    pub const BIND_MOUNTPOINT: u32 = 0x4000;
    /// Left out of directory listings (stock's `/.cvmfs`).
    pub const HIDDEN: u32 = 0x8000;
    /// Clients open the file with FUSE direct I/O (schema revision 6).
    pub const DIRECT_IO: u32 = 0x10000;
}
