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
    /// `SUM(size)` of the table, kept up to date by every insert and remove: the quota is
    /// checked after every download, and a full sum there would scan the table each time.
    total: u64,
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
        // A damaged database (a torn write, a disk error) can still open; its pages fail
        // only later, in the middle of a download. Found here, it is rebuilt instead.
        let verdict: String = conn.query_row("PRAGMA quick_check(1)", [], |r| r.get(0))?;
        if verdict != "ok" {
            return Err(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT),
                Some(verdict),
            ));
        }
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
        let mut quota = Quota {
            conn,
            seq,
            total: 0,
        };
        quota.recount()?;
        Ok(quota)
    }

    /// Replaces the database at `path` (moved aside to `<path>.corrupt`, for a look) with
    /// one listing every object file under `objects`, with its size and no digest: the
    /// quota accounts for them again at once, and each is checked before it is used (an
    /// object without a recorded digest is fetched again on first use, so nothing the
    /// damaged database vouched for is taken on trust). Catalog roles are lost: those
    /// objects age out as data.
    pub fn rebuild(path: &Path, objects: &Path) -> rusqlite::Result<Self> {
        let aside = path.with_extension("sqlite.corrupt");
        let _ = std::fs::rename(path, &aside);
        for ext in ["sqlite-wal", "sqlite-shm"] {
            let _ = std::fs::remove_file(path.with_extension(ext));
        }
        let mut quota = Quota::open(path)?;
        let tx = quota.conn.transaction()?;
        let mut n = 0i64;
        {
            let mut ins = tx.prepare(
                "INSERT OR REPLACE INTO objects (hash, size, acseq, superseded, digest) VALUES (?1, ?2, ?3, 0, NULL)",
            )?;
            for prefix in std::fs::read_dir(objects).into_iter().flatten().flatten() {
                let p = prefix.file_name().to_string_lossy().into_owned();
                for e in std::fs::read_dir(prefix.path())
                    .into_iter()
                    .flatten()
                    .flatten()
                {
                    let name = format!("{p}{}", e.file_name().to_string_lossy());
                    let (Ok(hash), Ok(md)) = (ContentHash::parse(&name), e.metadata()) else {
                        continue;
                    };
                    n += 1;
                    ins.execute(params![hash.to_hex(), md.len() as i64, n])?;
                }
            }
        }
        tx.commit()?;
        quota.seq = n;
        quota.recount()?;
        Ok(quota)
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
        // A replaced record (an object fetched again) must not be counted twice.
        let before = self.size_of(hash)?.unwrap_or(0);
        self.conn.execute(
            "INSERT OR REPLACE INTO objects (hash, size, acseq, catalog_of, mountpoint, superseded, digest) VALUES (?1,?2,?3,?4,?5,0,?6)",
            params![hash.to_hex(), size as i64, self.seq, fqrn, mp, &digest[..]],
        )?;
        self.total = self.total.saturating_sub(before) + size;
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

    /// Bytes of all recorded objects (by this process's count; see [`Quota::recount`]).
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Counts the recorded bytes again from the table: other processes sharing the cache
    /// add and remove objects this process's running count does not see.
    pub fn recount(&mut self) -> rusqlite::Result<u64> {
        self.total = self
            .conn
            .query_row("SELECT COALESCE(SUM(size), 0) FROM objects", [], |r| {
                r.get::<_, i64>(0)
            })?
            .max(0) as u64;
        Ok(self.total)
    }

    /// Chooses objects to evict, in eviction order (superseded catalogs first, then least
    /// recently used), skipping those `keep` says to keep, until their sizes add up to
    /// `bytes`; forgets them in one transaction and returns them (their files are removed
    /// by the caller). The index is walked only as far as needed, not the whole table.
    pub fn evict(
        &mut self,
        bytes: u64,
        keep: impl Fn(&ContentHash) -> bool,
    ) -> rusqlite::Result<Vec<ContentHash>> {
        let mut victims = Vec::new();
        let mut freed = 0u64;
        {
            let mut st = self
                .conn
                .prepare_cached("SELECT hash, size FROM objects ORDER BY superseded DESC, acseq")?;
            let mut rows = st.query([])?;
            while freed < bytes {
                let Some(row) = rows.next()? else { break };
                let (hex, size): (String, i64) = (row.get(0)?, row.get(1)?);
                // A record whose name does not parse cannot have a file: it only goes.
                match ContentHash::parse(&hex) {
                    Ok(h) if keep(&h) => continue,
                    Ok(h) => victims.push((Some(h), hex, size.max(0) as u64)),
                    Err(_) => victims.push((None, hex, size.max(0) as u64)),
                }
                freed += size.max(0) as u64;
            }
        }
        let tx = self.conn.transaction()?;
        {
            let mut del = tx.prepare_cached("DELETE FROM objects WHERE hash = ?1")?;
            for (_, hex, _) in &victims {
                del.execute([hex])?;
            }
        }
        tx.commit()?;
        self.total = self.total.saturating_sub(freed);
        Ok(victims.into_iter().filter_map(|(h, _, _)| h).collect())
    }

    /// Forgets object `hash` (its file is removed by the caller).
    pub fn remove(&mut self, hash: &ContentHash) -> rusqlite::Result<()> {
        let size = self.size_of(hash)?.unwrap_or(0);
        self.conn
            .execute("DELETE FROM objects WHERE hash = ?1", [hash.to_hex()])?;
        self.total = self.total.saturating_sub(size);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cvmfs::hash::HashAlgo;

    /// The running count is what `SUM(size)` says after inserts, replacements, removals
    /// and evictions, and eviction takes the least recently used first, skipping the kept.
    #[test]
    fn running_total_and_eviction_order() {
        let d = tempfile::tempdir().unwrap();
        let mut q = Quota::open(&d.path().join("db")).unwrap();
        let h = |i: u32| HashAlgo::Sha1.digest(&i.to_le_bytes());
        for i in 0..10 {
            q.insert(&h(i), 100, &Kind::Data, &[0; 32]).unwrap();
        }
        q.insert(&h(3), 250, &Kind::Data, &[0; 32]).unwrap(); // fetched again, larger
        q.remove(&h(9)).unwrap();
        assert_eq!(q.total(), 8 * 100 + 250);
        assert_eq!(q.total(), q.recount().unwrap());
        // Oldest first: 0, 1, 2 (kept), 4 — 3 was used last but one.
        let gone = q.evict(300, |x| *x == h(2)).unwrap();
        assert_eq!(gone, vec![h(0), h(1), h(4)]);
        assert_eq!(q.total(), 1050 - 300);
        assert_eq!(q.total(), q.recount().unwrap());
        // Reopened, the count is read back.
        drop(q);
        assert_eq!(Quota::open(&d.path().join("db")).unwrap().total(), 750);
    }
}
