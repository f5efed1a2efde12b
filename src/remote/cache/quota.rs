//! Cache bookkeeping in SQLite: size and last use of every object, which catalogs belong to
//! which repository mountpoint (so superseded versions go first), and LRU eviction.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};

use crate::cvmfs::hash::ContentHash;

/// The bookkeeping database: every cached object's decompressed size, last use (a sequence
/// number, not a time) and, for catalogs, repository, mountpoint and whether superseded.
pub struct Quota {
    conn: Connection,
    seq: i64,
}

/// What an object is to the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// Anything but a catalog: file contents, chunks.
    Data,
    /// A catalog of repository `fqrn` mounted at `mountpoint`.
    Catalog {
        /// The repository.
        fqrn: String,
        /// The catalog's mountpoint in the repository; empty for the root catalog.
        mountpoint: Vec<u8>,
    },
}

impl Quota {
    /// Opens (creating) the database at `path`. Writes are not synced: losing the last ones
    /// costs only a few LRU positions.
    pub fn open(path: &Path) -> rusqlite::Result<Self> {
        let conn = Connection::open(path)?;
        // Bookkeeping, not data: losing the last writes costs a few LRU positions only.
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF;
             CREATE TABLE IF NOT EXISTS objects (hash TEXT PRIMARY KEY, size INTEGER, acseq INTEGER,
               catalog_of TEXT, mountpoint BLOB, superseded INTEGER DEFAULT 0, digest BLOB);
             CREATE INDEX IF NOT EXISTS idx_lru ON objects (superseded DESC, acseq);",
        )?;
        // Caches from before content digests were recorded: their objects have none and are
        // fetched again on first use.
        let has_digest: i64 = conn.query_row(
            "SELECT count(*) FROM pragma_table_info('objects') WHERE name = 'digest'",
            [],
            |r| r.get(0),
        )?;
        if has_digest == 0 {
            conn.execute_batch("ALTER TABLE objects ADD COLUMN digest BLOB")?;
        }
        let seq = conn.query_row("SELECT COALESCE(MAX(acseq), 0) FROM objects", [], |r| {
            r.get(0)
        })?;
        Ok(Quota { conn, seq })
    }

    /// Records object `hash` of `size` bytes (decompressed), whose decompressed bytes have
    /// the SHA-256 `digest`, as just used. A catalog marks the other catalogs of its
    /// repository and mountpoint superseded.
    pub fn insert(
        &mut self,
        hash: &ContentHash,
        size: u64,
        kind: &Kind,
        digest: &[u8; 32],
    ) -> rusqlite::Result<()> {
        self.seq += 1;
        let (fqrn, mp): (Option<&str>, Option<&[u8]>) = match kind {
            Kind::Data => (None, None),
            Kind::Catalog { fqrn, mountpoint } => (Some(fqrn), Some(mountpoint)),
        };
        if let (Some(f), Some(m)) = (fqrn, mp) {
            // A newer catalog of the same mountpoint makes the older ones first to go.
            self.conn.execute(
                "UPDATE objects SET superseded = 1 WHERE catalog_of = ?1 AND mountpoint = ?2 AND hash != ?3",
                params![f, m, hash.to_hex()],
            )?;
        }
        self.conn.execute(
            "INSERT OR REPLACE INTO objects (hash, size, acseq, catalog_of, mountpoint, superseded, digest) VALUES (?1,?2,?3,?4,?5,0,?6)",
            params![hash.to_hex(), size as i64, self.seq, fqrn, mp, &digest[..]],
        )?;
        Ok(())
    }

    /// Marks several objects used, in order, in one transaction.
    pub fn touch_all(&mut self, hashes: &[ContentHash]) -> rusqlite::Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut st = tx.prepare_cached("UPDATE objects SET acseq = ?1 WHERE hash = ?2")?;
            for h in hashes {
                self.seq += 1;
                st.execute(params![self.seq, h.to_hex()])?;
            }
        }
        tx.commit()
    }

    /// Bytes of all recorded objects.
    pub fn total(&self) -> rusqlite::Result<u64> {
        Ok(self
            .conn
            .query_row("SELECT COALESCE(SUM(size), 0) FROM objects", [], |r| {
                r.get::<_, i64>(0)
            })? as u64)
    }

    /// Objects in eviction order: superseded catalogs first, then least recently used.
    pub fn eviction_order(&self) -> rusqlite::Result<Vec<(ContentHash, u64)>> {
        let mut st = self
            .conn
            .prepare("SELECT hash, size FROM objects ORDER BY superseded DESC, acseq")?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (h, s) = row?;
            if let Ok(h) = ContentHash::parse(&h) {
                out.push((h, s as u64));
            }
        }
        Ok(out)
    }

    /// Forgets object `hash` (its file is removed by the caller).
    pub fn remove(&mut self, hash: &ContentHash) -> rusqlite::Result<()> {
        self.conn
            .execute("DELETE FROM objects WHERE hash = ?1", [hash.to_hex()])?;
        Ok(())
    }

    /// The SHA-256 of object `hash`'s decompressed bytes, recorded when it was downloaded
    /// and verified; `None` if nothing is recorded.
    pub fn digest_of(&self, hash: &ContentHash) -> rusqlite::Result<Option<Vec<u8>>> {
        Ok(self
            .conn
            .query_row(
                "SELECT digest FROM objects WHERE hash = ?1",
                [hash.to_hex()],
                |r| r.get::<_, Option<Vec<u8>>>(0),
            )
            .optional()?
            .flatten())
    }

    /// The recorded size of object `hash` in bytes; `None` if it is not recorded.
    pub fn size_of(&self, hash: &ContentHash) -> rusqlite::Result<Option<u64>> {
        self.conn
            .query_row(
                "SELECT size FROM objects WHERE hash = ?1",
                [hash.to_hex()],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map(|o| o.map(|s| s as u64))
    }
}
