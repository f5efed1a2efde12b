//! Writing one catalog database from its in-memory content.

use rusqlite::types::ToSqlOutput;
use rusqlite::{params, Connection};

use super::counters::{Counters, FIELDS};
use super::schema::{CREATE, SCHEMA_REVISION, SCHEMA_VERSION};
use super::{CatalogContent, CatalogError};
use crate::cvmfs::hash::PathKey;

/// Properties written next to the rows.
#[derive(Debug, Clone)]
pub struct CatalogProperties {
    /// The `revision` property: the repository revision being published.
    pub revision: u64,
    /// The `last_modified` property, Unix seconds.
    pub last_modified: i64,
    /// Hex hash of the catalog this one replaces at the same mountpoint (40 zeros for a new
    /// nested catalog), as stock records it.
    pub previous_revision: Option<String>,
    /// TTL in seconds (root catalog only).
    pub ttl: Option<u64>,
}

/// Names are bound as TEXT when they are UTF-8 and as BLOB otherwise: SQLite keeps the
/// bytes either way and stock clients read both through `sqlite3_column_text`.
fn text_or_blob(b: &[u8]) -> ToSqlOutput<'_> {
    match std::str::from_utf8(b) {
        Ok(s) => ToSqlOutput::from(s),
        Err(_) => ToSqlOutput::from(b),
    }
}

/// Serializes `content` into a catalog database; `self_counters` count its own rows,
/// `below` everything in the catalogs nested below it.
pub fn write(
    content: &CatalogContent,
    props: &CatalogProperties,
    self_counters: &Counters,
    below: &Counters,
) -> Result<Vec<u8>, CatalogError> {
    let mut conn = Connection::open_in_memory()?;
    conn.execute_batch("PRAGMA page_size=4096; PRAGMA journal_mode=OFF;")?;
    conn.execute_batch(CREATE)?;
    let tx = conn.transaction()?;
    {
        let mut ins = tx.prepare(
            "INSERT INTO catalog (md5path_1, md5path_2, parent_1, parent_2, hardlinks, hash, size, mode, mtime, mtimens,
              flags, name, symlink, uid, gid, xattr) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14,?15,?16)",
        )?;
        // Stock clients number a catalog's entries by SQLite row id and give the mount's
        // root a fixed inode that equals the root catalog's first row: the root entry must
        // be row 1, as stock's writer (`InsertInitialValues`) always makes it. Every catalog
        // gets its own root entry first, so nested catalogs look as stock writes them too.
        let root_key = PathKey::of(&content.root_prefix);
        let root = content.rows.get(&root_key);
        let rest = content.rows.values().filter(|r| r.key != root_key);
        for row in root.into_iter().chain(rest) {
            let e = &row.entry;
            // NULL, not an empty blob, where there is no content hash (as upstream binds it).
            let hash = e.hash.map(|h| h.digest.to_vec());
            let xattr = e.xattr_blob().map_err(|err| {
                CatalogError::Invalid(format!("{:?}: {err}", String::from_utf8_lossy(&e.name)))
            })?;
            ins.execute(params![
                row.key.0,
                row.key.1,
                row.parent.0,
                row.parent.1,
                e.hardlinks as i64,
                hash,
                e.size as i64,
                e.mode,
                e.mtime,
                e.mtime_ns,
                e.flags,
                text_or_blob(&e.name),
                text_or_blob(&e.symlink),
                e.uid,
                e.gid,
                xattr,
            ])?;
        }
        let mut ins = tx.prepare(
            "INSERT INTO chunks (md5path_1, md5path_2, offset, size, hash) VALUES (?1,?2,?3,?4,?5)",
        )?;
        for (key, chunks) in &content.chunks {
            for c in chunks {
                ins.execute(params![
                    key.0,
                    key.1,
                    c.offset as i64,
                    c.size as i64,
                    c.hash.digest.to_vec()
                ])?;
            }
        }
        let mut ins =
            tx.prepare("INSERT INTO nested_catalogs (path, sha1, size) VALUES (?1,?2,?3)")?;
        for n in content.nested.values() {
            ins.execute(params![
                text_or_blob(&n.path),
                n.hash.to_hex(),
                n.size as i64
            ])?;
        }
        let mut ins = tx.prepare("INSERT INTO statistics (counter, value) VALUES (?1, ?2)")?;
        for f in FIELDS {
            ins.execute(params![format!("self_{f}"), self_counters.get(f)])?;
            ins.execute(params![format!("subtree_{f}"), below.get(f)])?;
        }
        let mut ins = tx.prepare("INSERT INTO properties (key, value) VALUES (?1, ?2)")?;
        ins.execute(params!["schema", SCHEMA_VERSION])?;
        ins.execute(params!["schema_revision", SCHEMA_REVISION.to_string()])?;
        ins.execute(params!["revision", props.revision.to_string()])?;
        ins.execute(params!["last_modified", props.last_modified.to_string()])?;
        if let Some(p) = &props.previous_revision {
            ins.execute(params!["previous_revision", p])?;
        }
        if let Some(ttl) = props.ttl {
            ins.execute(params!["TTL", ttl.to_string()])?;
        }
        if !content.root_prefix.is_empty() {
            ins.execute(params!["root_prefix", text_or_blob(&content.root_prefix)])?;
        }
    }
    tx.commit()?;
    Ok(crate::cvmfs::sqlite::to_bytes(&conn)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cvmfs::catalog::entry::{Chunk, Entry, EntryKind, Row};
    use crate::cvmfs::catalog::reader::CatalogDb;
    use crate::cvmfs::catalog::schema::flags;
    use crate::cvmfs::catalog::NestedRef;
    use crate::cvmfs::hash::HashAlgo;

    fn entry(name: &[u8], mode: u32, fl: u32) -> Entry {
        Entry {
            name: name.to_vec(),
            mode,
            uid: 1000,
            gid: 100,
            size: 0,
            mtime: 1_445_428_515,
            mtime_ns: Some(123_456_789),
            flags: fl,
            hardlinks: 1,
            hash: None,
            symlink: Vec::new(),
            xattrs: None,
        }
    }

    /// Stock clients give the root catalog's row 1 the mount root's inode: whatever the
    /// path keys, every catalog's own root entry is written first.
    #[test]
    fn the_root_entry_is_row_one_in_every_catalog() {
        for prefix in [&b""[..], b"/img", b"/a/b/c"] {
            let mut c = CatalogContent::new(prefix.to_vec());
            let root_key = PathKey::of(prefix);
            let parent = match prefix.iter().rposition(|&b| b == b'/') {
                None => PathKey::NONE,
                Some(i) => PathKey::of(&prefix[..i]),
            };
            let fl = if prefix.is_empty() {
                flags::DIR
            } else {
                flags::DIR | flags::NESTED_ROOT
            };
            c.rows.insert(
                root_key,
                Row {
                    key: root_key,
                    parent,
                    entry: entry(
                        prefix.rsplit(|&b| b == b'/').next().unwrap_or_default(),
                        libc::S_IFDIR | 0o755,
                        fl,
                    ),
                },
            );
            // Enough names that some path keys sort before the root's.
            for i in 0..64 {
                let name = format!("f{i}").into_bytes();
                let key = PathKey::of(&[prefix, b"/", &name].concat());
                c.rows.insert(
                    key,
                    Row {
                        key,
                        parent: root_key,
                        entry: entry(&name, libc::S_IFIFO | 0o644, flags::FILE | flags::SPECIAL),
                    },
                );
            }
            assert!(
                c.rows.keys().next() != Some(&root_key),
                "the test needs a key below the root's"
            );
            let props = CatalogProperties {
                revision: 1,
                last_modified: 0,
                previous_revision: None,
                ttl: None,
            };
            let bytes = write(&c, &props, &Counters::of(&c), &Counters::default()).unwrap();
            let db = CatalogDb::from_bytes(&bytes).unwrap();
            assert_eq!(db.rowid_of(root_key).unwrap(), Some(1), "{prefix:?}");
            assert_eq!(CatalogContent::load(&db).unwrap(), c);
        }
    }

    #[test]
    fn every_kind_of_row_round_trips_through_sqlite() {
        let h = HashAlgo::Shake128.digest(b"content");
        let mut file = entry(
            b"file",
            libc::S_IFREG | 0o4755,
            flags::FILE | (2 << flags::HASH_SHIFT),
        );
        file.hash = Some(h);
        file.size = 7;
        file.hardlinks = (3 << 32) | 2;
        file.xattrs = Some(
            [(b"security.capability".to_vec(), vec![1, 2, 3])]
                .into_iter()
                .collect(),
        );
        let mut chunked = entry(
            b"big",
            libc::S_IFREG | 0o644,
            flags::FILE | flags::CHUNKED | (2 << flags::HASH_SHIFT),
        );
        chunked.size = 30;
        let mut link = entry(b"l\xffnk", libc::S_IFLNK | 0o777, flags::FILE | flags::LINK);
        link.symlink = b"../target\nwith newline".to_vec();
        link.size = link.symlink.len() as u64;
        let mut dev = entry(b"null", libc::S_IFCHR | 0o666, flags::FILE | flags::SPECIAL);
        dev.size = libc::makedev(1, 3);
        let fifo = entry(b"fifo", libc::S_IFIFO | 0o600, flags::FILE | flags::SPECIAL);
        let mut mount = entry(
            b"sub",
            libc::S_IFDIR | 0o755,
            flags::DIR | flags::NESTED_MOUNTPOINT,
        );
        mount.hardlinks = 2;
        let mut root = entry(
            b"img",
            libc::S_IFDIR | 0o1777,
            flags::DIR | flags::NESTED_ROOT,
        );
        root.hardlinks = 3;

        let prefix = b"/img".to_vec();
        let mut c = CatalogContent::new(prefix.clone());
        let root_key = PathKey::of(&prefix);
        c.rows.insert(
            root_key,
            Row {
                key: root_key,
                parent: PathKey::of(b""),
                entry: root,
            },
        );
        let mut want = Vec::new();
        for e in [file, chunked, link, dev, fifo, mount] {
            let mut p = prefix.clone();
            p.push(b'/');
            p.extend_from_slice(&e.name);
            let key = PathKey::of(&p);
            want.push((p, e.clone()));
            c.rows.insert(
                key,
                Row {
                    key,
                    parent: root_key,
                    entry: e,
                },
            );
        }
        let big = PathKey::of(b"/img/big");
        c.chunks.insert(
            big,
            vec![
                Chunk {
                    offset: 0,
                    size: 10,
                    hash: h,
                },
                Chunk {
                    offset: 10,
                    size: 20,
                    hash: h,
                },
            ],
        );
        c.nested.insert(
            b"/img/sub".to_vec(),
            NestedRef {
                path: b"/img/sub".to_vec(),
                hash: h,
                size: 4096,
            },
        );

        let props = CatalogProperties {
            revision: 9,
            last_modified: 5,
            previous_revision: None,
            ttl: Some(240),
        };
        let own = Counters::of(&c);
        let bytes = write(&c, &props, &own, &Counters::default()).unwrap();
        let db = CatalogDb::from_bytes(&bytes).unwrap();
        assert_eq!(CatalogContent::load(&db).unwrap(), c);
        assert_eq!(db.schema_revision().unwrap(), 7);
        assert_eq!(db.property("revision").unwrap().as_deref(), Some("9"));
        assert_eq!(db.property("TTL").unwrap().as_deref(), Some("240"));
        for (p, e) in &want {
            assert_eq!(
                db.lookup(PathKey::of(p)).unwrap().as_ref(),
                Some(e),
                "{}",
                String::from_utf8_lossy(p)
            );
        }
        let kinds: Vec<EntryKind> = db
            .children(root_key)
            .unwrap()
            .iter()
            .map(|r| r.entry.kind())
            .collect();
        assert_eq!(kinds.len(), 6);
        assert_eq!(db.chunks(big, HashAlgo::Shake128).unwrap().len(), 2);
        let stats = db.statistics().unwrap();
        assert_eq!(
            (
                stats["self_regular"],
                stats["self_chunked"],
                stats["self_special"],
                stats["self_nested"]
            ),
            (2, 1, 2, 1)
        );
        assert_eq!(stats["self_xattr"], 1);
        assert_eq!(
            stats.len(),
            24,
            "12 self_ and 12 subtree_ counters, as upstream"
        );
    }
}
