//! The catalog schema (2.5, revision 7): the only place with CREATE TABLE for catalogs.

pub const SCHEMA_VERSION: &str = "2.5";
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
    pub const DIR: u32 = 1;
    pub const NESTED_MOUNTPOINT: u32 = 2;
    pub const FILE: u32 = 4;
    pub const LINK: u32 = 8;
    pub const SPECIAL: u32 = 16;
    pub const NESTED_ROOT: u32 = 32;
    pub const CHUNKED: u32 = 64;
    pub const EXTERNAL: u32 = 128;
    pub const HASH_SHIFT: u32 = 8;
    pub const HASH_MASK: u32 = 7 << HASH_SHIFT;
    pub const COMPRESSION_SHIFT: u32 = 11;
    pub const COMPRESSION_MASK: u32 = 7 << COMPRESSION_SHIFT;
    pub const BIND_MOUNTPOINT: u32 = 0x4000;
    pub const HIDDEN: u32 = 0x8000;
    pub const DIRECT_IO: u32 = 0x10000;
}
