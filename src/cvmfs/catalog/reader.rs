//! Reading one catalog database: lookups by path key, directory listings by parent key,
//! chunk lists, nested catalog references, properties and counters. Accepts every schema
//! revision from 2 on (columns are chosen by what the table has).

use std::collections::BTreeMap;
use std::path::Path;

use rusqlite::types::ValueRef;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use crate::cvmfs::hash::{ContentHash, HashAlgo, PathKey};

use super::entry::{Chunk, Entry, Row};
use super::schema::flags;
use super::xattr;
use super::{CatalogError, NestedRef};

/// An open catalog database.
pub struct CatalogDb {
    conn: Connection,
    has_mtimens: bool,
    has_xattr: bool,
    has_bind_mountpoints: bool,
}

const MAX_NAME: usize = 4096;

impl CatalogDb {
    /// Opens a decompressed catalog held in memory.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CatalogError> {
        if bytes.is_empty() {
            return Err(CatalogError::Invalid(
                "empty catalog database (0 bytes)".into(),
            ));
        }
        Self::init(crate::cvmfs::sqlite::from_bytes(bytes, true)?)
    }

    /// Opens an open, verified, decompressed catalog file read-only: SQLite opens the same
    /// file through `/proc/self/fd`, so a name the cache has since unlinked does not matter.
    pub fn open_verified_file(file: &std::fs::File) -> Result<Self, CatalogError> {
        use std::os::fd::AsRawFd;
        let len = file.metadata()?.len();
        if len == 0 {
            return Err(CatalogError::Invalid(
                "empty catalog database (0 bytes)".into(),
            ));
        }
        Self::open_file(Path::new(&format!("/proc/self/fd/{}", file.as_raw_fd())))
    }

    /// Opens a decompressed catalog file read-only.
    pub fn open_file(path: &Path) -> Result<Self, CatalogError> {
        // A cached catalog was verified against its hash and never changes: `immutable`
        // spares every query the file locks and journal checks of a shared database.
        let uri = format!("file:{}?immutable=1", uri_escape(path));
        let conn = Connection::open_with_flags(
            uri,
            OpenFlags::SQLITE_OPEN_READ_ONLY
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_URI,
        )?;
        // The kernel's page cache already holds the file; a small page cache per open
        // catalog keeps a mount with dozens of catalogs within a few MiB of memory.
        conn.execute_batch("PRAGMA cache_size=-256;")?;
        Self::init(conn)
    }

    fn init(conn: Connection) -> Result<Self, CatalogError> {
        // Catalog content is verified by hash before it gets here, but a database file can
        // still carry triggers or views: never run schema code from it.
        conn.execute_batch("PRAGMA trusted_schema=OFF; PRAGMA query_only=ON;")?;
        let cols: Vec<String> = conn
            .prepare("SELECT name FROM pragma_table_info('catalog')")?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        if cols.is_empty() {
            return Err(CatalogError::Invalid("no `catalog` table".into()));
        }
        let has_bind_mountpoints = conn.query_row(
            "SELECT count(*) FROM sqlite_master WHERE type='table' AND name='bind_mountpoints'",
            [],
            |r| r.get::<_, i64>(0),
        )? > 0;
        let db = CatalogDb {
            has_mtimens: cols.iter().any(|c| c == "mtimens"),
            has_xattr: cols.iter().any(|c| c == "xattr"),
            has_bind_mountpoints,
            conn,
        };
        db.check_schema()?;
        Ok(db)
    }

    /// Refuses a schema newer than this reader knows: its rows may mean what it cannot
    /// tell (stock checks the same, `CatalogDatabase::CheckSchemaCompatibility`).
    fn check_schema(&self) -> Result<(), CatalogError> {
        let version = self.property("schema")?;
        let newer = match version.as_deref().map(str::parse::<f64>) {
            None => false,
            Some(Ok(v)) => v > 2.5 + 1e-6,
            Some(Err(_)) => true,
        };
        let revision = self.property("schema_revision")?;
        let too_new_revision = match revision.as_deref().map(str::parse::<u32>) {
            None => false,
            Some(Ok(r)) => r > super::schema::SCHEMA_REVISION,
            Some(Err(_)) => true,
        };
        if newer || too_new_revision {
            return Err(CatalogError::Invalid(format!(
                "catalog schema {} revision {} is not one this reader knows (up to {} revision {})",
                version.as_deref().unwrap_or("?"),
                revision.as_deref().unwrap_or("?"),
                super::schema::SCHEMA_VERSION,
                super::schema::SCHEMA_REVISION
            )));
        }
        Ok(())
    }

    fn columns(&self) -> String {
        format!(
            "md5path_1, md5path_2, parent_1, parent_2, hardlinks, hash, size, mode, mtime, flags, name, symlink, uid, gid, {}, {}",
            if self.has_mtimens { "mtimens" } else { "NULL" },
            if self.has_xattr { "xattr" } else { "NULL" },
        )
    }

    /// A property as text (invalid UTF-8 replaced); `None` if the key is absent.
    pub fn property(&self, key: &str) -> Result<Option<String>, CatalogError> {
        Ok(self
            .property_bytes(key)?
            .map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    /// A property's raw bytes.
    pub fn property_bytes(&self, key: &str) -> Result<Option<Vec<u8>>, CatalogError> {
        Ok(self
            .conn
            .query_row("SELECT value FROM properties WHERE key = ?1", [key], |r| {
                Ok(match r.get_ref(0)? {
                    ValueRef::Integer(i) => i.to_string().into_bytes(),
                    ValueRef::Real(f) => f.to_string().into_bytes(),
                    ValueRef::Text(t) | ValueRef::Blob(t) => t.to_vec(),
                    ValueRef::Null => Vec::new(),
                })
            })
            .optional()?)
    }

    /// Every property, values cast to text (NULL as the empty string).
    pub fn properties(&self) -> Result<BTreeMap<String, String>, CatalogError> {
        let mut st = self
            .conn
            .prepare("SELECT key, CAST(value AS TEXT) FROM properties")?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<String>>(1)?.unwrap_or_default(),
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The `schema_revision` property; 0 when absent or not a number.
    pub fn schema_revision(&self) -> Result<u32, CatalogError> {
        Ok(self
            .property("schema_revision")?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0))
    }

    /// The path this catalog is mounted at ("" for the root catalog); raw bytes, as a
    /// mountpoint need not be UTF-8.
    pub fn root_prefix(&self) -> Result<Vec<u8>, CatalogError> {
        Ok(self.property_bytes("root_prefix")?.unwrap_or_default())
    }

    /// The `statistics` table as stored: counter name (`self_*`, `subtree_*`) to value.
    pub fn statistics(&self) -> Result<BTreeMap<String, i64>, CatalogError> {
        let mut st = self.conn.prepare("SELECT counter, value FROM statistics")?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The row at `key`, with its parent key, if this catalog holds it.
    pub fn lookup_row(&self, key: PathKey) -> Result<Option<Row>, CatalogError> {
        let sql = format!(
            "SELECT {} FROM catalog WHERE md5path_1 = ?1 AND md5path_2 = ?2",
            self.columns()
        );
        let mut st = self.conn.prepare_cached(&sql)?;
        let row = st
            .query_row(params![key.0, key.1], read_row)
            .optional()?
            .transpose()?;
        match row {
            Some(r) if r.key != key => Err(index_disagrees("path", &r)),
            row => Ok(row),
        }
    }

    /// The entry whose path has key `key`, if this catalog holds it.
    pub fn lookup(&self, key: PathKey) -> Result<Option<Entry>, CatalogError> {
        Ok(self.lookup_row(key)?.map(|r| r.entry))
    }

    /// The SQLite row id of the entry at `key`. Stock clients derive inode numbers from
    /// row ids and expect a catalog's own root entry in row 1.
    pub fn rowid_of(&self, key: PathKey) -> Result<Option<i64>, CatalogError> {
        Ok(self
            .conn
            .query_row(
                "SELECT rowid FROM catalog WHERE md5path_1 = ?1 AND md5path_2 = ?2",
                params![key.0, key.1],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// The rows whose parent is `parent`, ordered by name.
    pub fn children(&self, parent: PathKey) -> Result<Vec<Row>, CatalogError> {
        let sql = format!(
            "SELECT {} FROM catalog WHERE parent_1 = ?1 AND parent_2 = ?2",
            self.columns()
        );
        let mut st = self.conn.prepare_cached(&sql)?;
        let mut rows = st
            .query_map(params![parent.0, parent.1], read_row)?
            .collect::<Result<Result<Vec<_>, _>, _>>()??;
        if let Some(r) = rows.iter().find(|r| r.parent != parent) {
            return Err(index_disagrees("parent", r));
        }
        rows.retain(|r| r.key != parent); // the root row is its own child nowhere, but be safe
        rows.sort_by(|a, b| a.entry.name.cmp(&b.entry.name));
        Ok(rows)
    }

    /// Every row, ordered by path key.
    pub fn all_rows(&self) -> Result<Vec<Row>, CatalogError> {
        let sql = format!(
            "SELECT {} FROM catalog ORDER BY md5path_1, md5path_2",
            self.columns()
        );
        let mut st = self.conn.prepare(&sql)?;
        let rows = st
            .query_map([], read_row)?
            .collect::<Result<Result<Vec<_>, _>, _>>()??;
        Ok(rows)
    }

    /// The chunks of the file at `key`, by offset. `algo` is the entry's hash algorithm: chunk
    /// hash blobs do not say which one they are.
    pub fn chunks(&self, key: PathKey, algo: HashAlgo) -> Result<Vec<Chunk>, CatalogError> {
        let mut st = self
            .conn
            .prepare_cached("SELECT offset, size, hash FROM chunks WHERE md5path_1 = ?1 AND md5path_2 = ?2 ORDER BY offset")?;
        let rows = st.query_map(params![key.0, key.1], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, Vec<u8>>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (offset, size, blob) = row?;
            // Offsets and sizes become file positions: a negative one is never cast.
            let (Ok(offset), Ok(size)) = (u64::try_from(offset), u64::try_from(size)) else {
                return Err(CatalogError::Invalid(format!(
                    "chunk at offset {offset} has a negative offset or size ({size})"
                )));
            };
            // ORDER BY walks the primary key's index; in a damaged file its order need not
            // be the rows' (see `index_disagrees`), and callers rely on offset order.
            if out.last().is_some_and(|c: &Chunk| c.offset > offset) {
                return Err(CatalogError::Invalid(format!(
                    "chunk at offset {offset} is listed after a later one: the chunk index disagrees with the rows; the database is damaged"
                )));
            }
            let hash = ContentHash::from_blob(algo, &blob)
                .ok()
                .flatten()
                .ok_or_else(|| {
                    CatalogError::Invalid(format!("chunk at offset {offset} has no valid hash"))
                })?;
            out.push(Chunk { offset, size, hash });
        }
        Ok(out)
    }

    /// References to the catalogs nested directly below this one (bind mountpoints too).
    pub fn nested(&self) -> Result<Vec<NestedRef>, CatalogError> {
        let mut sql = "SELECT path, sha1, size FROM nested_catalogs".to_string();
        if self.has_bind_mountpoints {
            sql.push_str(" UNION ALL SELECT path, sha1, size FROM bind_mountpoints");
        }
        let mut st = self.conn.prepare(&sql)?;
        let rows = st.query_map([], |r| {
            Ok((
                text_bytes(r.get_ref(0)?),
                text_bytes(r.get_ref(1)?),
                r.get::<_, Option<i64>>(2)?.unwrap_or(0),
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (path, hash, size) = row?;
            let hash_text = String::from_utf8_lossy(&hash);
            let hash = ContentHash::parse(&hash_text).map_err(|e| {
                CatalogError::Invalid(format!(
                    "nested catalog {}: {e}",
                    String::from_utf8_lossy(&path)
                ))
            })?;
            out.push(NestedRef {
                path,
                hash,
                size: size.max(0) as u64,
            });
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }
}

/// A damaged database file whose index (`what`: path or parent keys) no longer matches the
/// rows: SQLite answers from the index without checking it against the table, so the reader
/// does, rather than return a row under a key it does not have.
fn index_disagrees(what: &str, r: &Row) -> CatalogError {
    CatalogError::Invalid(format!(
        "entry {:?}: the {what} index disagrees with the row; the database is damaged",
        String::from_utf8_lossy(&r.entry.name)
    ))
}

fn text_bytes(v: ValueRef<'_>) -> Vec<u8> {
    match v {
        ValueRef::Text(t) | ValueRef::Blob(t) => t.to_vec(),
        ValueRef::Integer(i) => i.to_string().into_bytes(),
        _ => Vec::new(),
    }
}

/// Converts one SELECT row; the outer Result is SQLite's, the inner one the format's.
fn read_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Row, CatalogError>> {
    let key = PathKey(r.get(0)?, r.get(1)?);
    let parent = PathKey(r.get(2)?, r.get(3)?);
    let hardlinks: i64 = r.get::<_, Option<i64>>(4)?.unwrap_or(1);
    let hash_blob: Option<Vec<u8>> = r.get(5)?;
    let size: i64 = r.get::<_, Option<i64>>(6)?.unwrap_or(0);
    let mode: i64 = r.get(7)?;
    let mtime: i64 = r.get::<_, Option<i64>>(8)?.unwrap_or(0);
    let fl: i64 = r.get(9)?;
    let name = text_bytes(r.get_ref(10)?);
    let symlink = text_bytes(r.get_ref(11)?);
    let uid: i64 = r.get::<_, Option<i64>>(12)?.unwrap_or(0);
    let gid: i64 = r.get::<_, Option<i64>>(13)?.unwrap_or(0);
    let mtimens: Option<i64> = r.get(14)?;
    let xattr_blob: Option<Vec<u8>> = r.get(15)?;
    Ok((|| {
        let bad = |why: String| {
            CatalogError::Invalid(format!("entry {:?}: {why}", String::from_utf8_lossy(&name)))
        };
        if name.len() > MAX_NAME || symlink.len() > MAX_NAME {
            return Err(bad("name or symlink target too long".into()));
        }
        if name.contains(&b'/')
            || (key != PathKey::of(b"") && (name.is_empty() || name == b"." || name == b".."))
        {
            return Err(bad("invalid name".into()));
        }
        let flags = fl as u32;
        let algo = HashAlgo::from_flag_bits((flags & flags::HASH_MASK) >> flags::HASH_SHIFT)
            .ok_or_else(|| bad("unknown hash algorithm in flags".into()))?;
        let hash = ContentHash::from_blob(algo, hash_blob.as_deref().unwrap_or(&[]))
            .map_err(|e| bad(e.to_string()))?;
        let xattrs = match xattr_blob {
            Some(b) if !b.is_empty() => Some(xattr::decode(&b).map_err(|e| bad(e.to_string()))?),
            _ => None,
        };
        Ok(Row {
            key,
            parent,
            entry: Entry {
                name,
                mode: mode as u32,
                uid: uid as u32,
                gid: gid as u32,
                size: size.max(0) as u64,
                mtime,
                mtime_ns: mtimens.map(|n| n.clamp(0, 999_999_999) as u32),
                flags,
                hardlinks: hardlinks as u64,
                hash,
                symlink,
                xattrs,
            },
        })
    })())
}

/// Percent-encodes what a SQLite URI path cannot hold literally.
fn uri_escape(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut out = String::new();
    for &b in path.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || b"/-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
