//! The reflog (`.cvmfsreflog`, `reflog_sql.cc`): every root catalog, certificate, history
//! and meta-info object ever published, for garbage collection. Stored uncompressed; the
//! manifest's `Y` is the hash of its file bytes.

use rusqlite::{params, Connection};

use crate::cvmfs::hash::ContentHash;

/// Where the reflog lives, relative to the repository root (outside `data/`).
pub const PATH: &str = ".cvmfsreflog";

const CREATE: &str = "
CREATE TABLE properties (key TEXT, value TEXT, CONSTRAINT pk_properties PRIMARY KEY (key));
CREATE TABLE refs (hash TEXT, type INTEGER, timestamp INTEGER, CONSTRAINT pk_refs PRIMARY KEY (hash));
INSERT INTO properties (key, value) VALUES ('schema', '1.0');
INSERT INTO properties (key, value) VALUES ('schema_revision', '0');
";

/// Reference types (`reflog_sql.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefType {
    /// A root catalog (`C` object).
    Catalog = 0,
    /// A repository certificate (`X` object).
    Certificate = 1,
    /// A history database (`H` object).
    History = 2,
    /// A repository meta-info object (`M`).
    MetaInfo = 3,
}

/// An SQLite error on the reflog database.
#[derive(Debug, thiserror::Error)]
#[error("reflog database: {0}")]
pub struct ReflogError(#[from] rusqlite::Error);

/// An open reflog database (in memory).
pub struct Reflog {
    conn: Connection,
}

impl Reflog {
    /// A new, empty reflog (schema 1.0, revision 0) for repository `fqrn`.
    pub fn create(fqrn: &str) -> Result<Self, ReflogError> {
        let conn = Connection::open_in_memory()?;
        conn.execute_batch(CREATE)?;
        conn.execute(
            "INSERT INTO properties (key, value) VALUES ('fqrn', ?1)",
            [fqrn],
        )?;
        Ok(Reflog { conn })
    }

    /// Opens a reflog from the bytes of its file (stored uncompressed).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ReflogError> {
        Ok(Reflog {
            conn: crate::cvmfs::sqlite::from_bytes(bytes, false)?,
        })
    }

    /// Records `hash` as a reference of `kind` made at `timestamp` (Unix seconds), replacing
    /// any earlier row for the same hash.
    pub fn add(
        &self,
        hash: &ContentHash,
        kind: RefType,
        timestamp: i64,
    ) -> Result<(), ReflogError> {
        self.conn.execute(
            "INSERT OR REPLACE INTO refs (hash, type, timestamp) VALUES (?1, ?2, ?3)",
            params![hash.to_hex(), kind as i64, timestamp],
        )?;
        Ok(())
    }

    /// How many references of `kind` the reflog holds.
    pub fn count(&self, kind: RefType) -> Result<u64, ReflogError> {
        Ok(self.conn.query_row(
            "SELECT count(*) FROM refs WHERE type = ?1",
            [kind as i64],
            |r| r.get::<_, i64>(0),
        )? as u64)
    }

    /// Whether the reflog lists `hash` as a reference of `kind`.
    pub fn contains(&self, hash: &ContentHash, kind: RefType) -> Result<bool, ReflogError> {
        Ok(self.conn.query_row(
            "SELECT count(*) FROM refs WHERE hash = ?1 AND type = ?2",
            params![hash.to_hex(), kind as i64],
            |r| r.get::<_, i64>(0),
        )? > 0)
    }

    /// The database image, as written to [`PATH`].
    pub fn to_bytes(&self) -> Result<Vec<u8>, ReflogError> {
        Ok(crate::cvmfs::sqlite::to_bytes(&self.conn)?)
    }
}
