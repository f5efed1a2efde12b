//! Catalogs (SQLite): rows, chunk lists, nested references, properties and xattr blobs
//! given random values, then read by the catalog reader and by a snapshot over the real
//! objects. The reader refuses or returns what the rows say, consistently (a lookup finds
//! the row a scan listed, children name their parent); a snapshot refuses or reads files of
//! exactly their size, from chunk lists that cover them exactly. Also: damaged database
//! files, and the history and reflog databases that ride along with a repository.

use lazyroot::cvmfs::catalog::{CatalogContent, CatalogDb, Entry, EntryKind, Row};
use lazyroot::cvmfs::hash::{ContentHash, PathKey};
use lazyroot::cvmfs::history::History;
use lazyroot::cvmfs::object::ObjectKind;
use lazyroot::cvmfs::reflog::{RefType, Reflog};
use lazyroot::publish::{self, ChunkSizes, NoProgress};
use lazyroot::repository::covers;
use lazyroot::repository::local::LocalStore;
use proptest::prelude::*;
use rusqlite::types::Value as Sql;

use super::*;
use crate::common::*;

/// A value put into a column.
#[derive(Debug, Clone)]
enum Value {
    Int(i64),
    /// Added to what the column holds (offsets and sizes a little off).
    Delta(i64),
    Blob(Vec<u8>),
    Text(Vec<u8>),
    Null,
    /// The same column of another row (another file's hash, another chunk's offset).
    FromRow(usize),
}

/// One edit of the catalog database.
#[derive(Debug, Clone)]
enum Edit {
    Catalog(usize, &'static str, Value),
    Chunk(usize, &'static str, Value),
    /// Gives a row another row's key as its parent (perhaps its own, or a child's).
    Reparent(usize, usize),
    /// Copies a chunk row with its offset moved (an extra, overlapping or gapped chunk).
    CopyChunk(usize, i64),
    Delete(&'static str, usize),
    Property(&'static str, Value),
    Nested(Vec<u8>, Value, Value),
}

const CATALOG_COLUMNS: &[&str] = &[
    "md5path_1",
    "md5path_2",
    "parent_1",
    "parent_2",
    "hardlinks",
    "hash",
    "size",
    "mode",
    "mtime",
    "mtimens",
    "flags",
    "name",
    "symlink",
    "uid",
    "gid",
    "xattr",
];

fn int() -> impl Strategy<Value = i64> {
    prop_oneof![
        Just(0i64),
        Just(1),
        Just(-1),
        Just(i64::MIN),
        Just(i64::MAX),
        Just(u32::MAX as i64),
        Just(1 << 32),
        Just(4096),
        -100i64..70_000,
        any::<i64>(),
    ]
}

fn flags() -> impl Strategy<Value = i64> {
    // Any mix of the defined bits, hash and compression fields included, or anything.
    let bits = [1i64, 2, 4, 8, 16, 32, 64, 128, 0x4000, 0x8000, 0x10000];
    prop_oneof![
        (
            proptest::sample::subsequence(bits.to_vec(), 0..=4),
            0i64..8,
            0i64..8
        )
            .prop_map(|(b, h, c)| b.iter().sum::<i64>() | (h << 8) | (c << 11)),
        any::<u32>().prop_map(i64::from),
    ]
}

fn xattr_blob() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        random_bytes(40),
        Just(vec![1, 0]),
        Just(vec![1, 1, 0, 0]), // one attribute with an empty name
        Just(vec![1, 1, 1, 0, b'k', 9]),
        Just(vec![1, 2, 1, 1, b'b', b'x', 1, 1, b'a', b'y']), // out of order
        Just(vec![1, 2, 1, 1, b'a', b'x', 1, 1, b'a', b'y']), // a name twice
        mutated(vec![
            1, 1, 6, 3, b'u', b's', b'e', b'r', b'.', b'a', b'v', b'a', b'l'
        ]),
    ]
}

fn value(column: &'static str) -> BoxedStrategy<Value> {
    let generic = prop_oneof![
        3 => int().prop_map(Value::Int),
        2 => (-4096i64..4096).prop_map(Value::Delta),
        1 => random_bytes(24).prop_map(Value::Blob),
        1 => random_bytes(12).prop_map(Value::Text),
        1 => Just(Value::Null),
        2 => any::<usize>().prop_map(Value::FromRow),
    ];
    match column {
        "flags" => prop_oneof![3 => flags().prop_map(Value::Int), 1 => generic].boxed(),
        "xattr" => prop_oneof![3 => xattr_blob().prop_map(Value::Blob), 1 => generic].boxed(),
        "hash" => prop_oneof![
            2 => proptest::collection::vec(any::<u8>(), 20).prop_map(Value::Blob),
            1 => generic,
        ]
        .boxed(),
        "name" | "symlink" => prop_oneof![
            1 => Just(Value::Text(b".".to_vec())),
            1 => Just(Value::Text(b"a/b".to_vec())),
            1 => Just(Value::Text(vec![b'n'; 5000])),
            1 => Just(Value::Text(b"small".to_vec())),
            2 => generic,
        ]
        .boxed(),
        _ => generic.boxed(),
    }
}

fn edit() -> impl Strategy<Value = Edit> {
    let row = any::<usize>();
    let col = proptest::sample::select(CATALOG_COLUMNS);
    let chunk_col = proptest::sample::select(&["md5path_1", "offset", "size", "hash"][..]);
    prop_oneof![
        8 => (row, col).prop_flat_map(|(r, c)| value(c).prop_map(move |v| Edit::Catalog(r, c, v))),
        5 => (row, chunk_col)
            .prop_flat_map(|(r, c)| value(c).prop_map(move |v| Edit::Chunk(r, c, v))),
        2 => (row, row).prop_map(|(a, b)| Edit::Reparent(a, b)),
        2 => (row, -5000i64..5000).prop_map(|(r, d)| Edit::CopyChunk(r, d)),
        1 => (proptest::sample::select(&["catalog", "chunks"][..]), row)
            .prop_map(|(t, r)| Edit::Delete(t, r)),
        1 => (
            proptest::sample::select(&["schema", "schema_revision", "root_prefix", "revision"][..]),
            prop_oneof![
                Just(Value::Text(b"2.5".to_vec())),
                Just(Value::Text(b"9.9".to_vec())),
                Just(Value::Text(b"x".to_vec())),
                int().prop_map(Value::Int),
                Just(Value::Text(b"/a".to_vec())),
                Just(Value::Null),
            ]
        )
            .prop_map(|(k, v)| Edit::Property(k, v)),
        1 => (
            prop_oneof![Just(b"/dir".to_vec()), Just(b"".to_vec()), random_bytes(8)],
            prop_oneof![
                Just(Value::Text(ContentHash::parse("aa".repeat(20).as_str()).unwrap().to_hex().into_bytes())),
                random_bytes(44).prop_map(Value::Text),
                Just(Value::Null),
            ],
            int().prop_map(Value::Int),
        )
            .prop_map(|(p, h, s)| Edit::Nested(p, h, s)),
    ]
}

fn sql(v: &Value) -> Sql {
    match v {
        Value::Int(i) | Value::Delta(i) => Sql::Integer(*i),
        Value::Blob(b) => Sql::Blob(b.clone()),
        Value::Text(t) => Sql::Text(String::from_utf8_lossy(t).into_owned()),
        Value::Null | Value::FromRow(_) => Sql::Null,
    }
}

/// Applies `e`; an edit the schema refuses (a duplicate key) is skipped, as a publisher
/// could not have written it either.
fn apply_edit(conn: &rusqlite::Connection, e: &Edit) {
    let count = |table: &str| -> i64 {
        conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    };
    let nth = |table: &str, i: usize| -> Option<i64> {
        let n = count(table);
        (n > 0).then(|| (i as i64).rem_euclid(n))
    };
    let rowid = |table: &str, i: i64| {
        format!("(SELECT rowid FROM {table} ORDER BY rowid LIMIT 1 OFFSET {i})")
    };
    let update = |table: &str, i: usize, col: &str, v: &Value| {
        let Some(i) = nth(table, i) else { return };
        let target = rowid(table, i);
        let _ = match v {
            Value::Delta(d) => conn.execute(
                &format!("UPDATE {table} SET {col} = {col} + ?1 WHERE rowid = {target}"),
                [d],
            ),
            Value::FromRow(j) => {
                let source = rowid(table, (*j as i64).rem_euclid(count(table)));
                conn.execute(
                    &format!(
                        "UPDATE {table} SET {col} = (SELECT {col} FROM {table} WHERE rowid = {source}) WHERE rowid = {target}"
                    ),
                    [],
                )
            }
            v => conn.execute(
                &format!("UPDATE {table} SET {col} = ?1 WHERE rowid = {target}"),
                [sql(v)],
            ),
        };
    };
    match e {
        Edit::Catalog(i, col, v) => update("catalog", *i, col, v),
        Edit::Chunk(i, col, v) => update("chunks", *i, col, v),
        Edit::Reparent(a, b) => {
            let (Some(a), Some(b)) = (nth("catalog", *a), nth("catalog", *b)) else {
                return;
            };
            let (ta, tb) = (rowid("catalog", a), rowid("catalog", b));
            let _ = conn.execute(
                &format!(
                    "UPDATE catalog SET (parent_1, parent_2) = (SELECT md5path_1, md5path_2 FROM catalog WHERE rowid = {tb}) WHERE rowid = {ta}"
                ),
                [],
            );
        }
        Edit::CopyChunk(i, d) => {
            let Some(i) = nth("chunks", *i) else { return };
            let _ = conn.execute(
                &format!(
                    "INSERT INTO chunks SELECT md5path_1, md5path_2, offset + ?1, size, hash FROM chunks WHERE rowid = {}",
                    rowid("chunks", i)
                ),
                [d],
            );
        }
        Edit::Delete(table, i) => {
            let Some(i) = nth(table, *i) else { return };
            let _ = conn.execute(
                &format!("DELETE FROM {table} WHERE rowid = {}", rowid(table, i)),
                [],
            );
        }
        Edit::Property(key, v) => {
            let _ = conn.execute(
                "INSERT OR REPLACE INTO properties (key, value) VALUES (?1, ?2)",
                rusqlite::params![key, sql(v)],
            );
        }
        Edit::Nested(path, hash, size) => {
            let _ = conn.execute(
                "INSERT OR REPLACE INTO nested_catalogs (path, sha1, size) VALUES (?1, ?2, ?3)",
                rusqlite::params![String::from_utf8_lossy(path), sql(hash), sql(size)],
            );
        }
    }
}

/// A published repository with a chunked file, small and empty files, a symlink and
/// nested directories; its root catalog is the seed.
fn seed_repo() -> (TestRepo, Vec<u8>) {
    let repo = TestRepo::new();
    let src = tempfile::tempdir().unwrap();
    write(&src.path().join("big"), &noise(3, 30_000));
    write(&src.path().join("small"), b"fine\n");
    write(&src.path().join("empty"), b"");
    write(&src.path().join("dir/sub/file"), &noise(4, 3000));
    std::os::unix::fs::symlink("small", src.path().join("link")).unwrap();
    let mut o = repo.options(src.path());
    o.chunking = Some(ChunkSizes {
        min: 1024,
        avg: 4096,
        max: 8192,
    });
    publish::publish(&o, &NoProgress).unwrap();
    let r = repo.open();
    let m = r.manifest().clone();
    let bytes = r
        .catalog_bytes(&m.root_catalog, m.root_catalog_size)
        .unwrap();
    (repo, bytes)
}

/// The reader on `bytes` directly: refuses, or answers consistently. In a `damaged` file
/// (bytes changed under SQLite) a lookup may miss a row a scan lists: the primary key's
/// index lacks it, and only `PRAGMA integrity_check`, a read of the whole file, would tell.
/// It must never return another row.
fn check_reader(bytes: &[u8], damaged: bool) -> Result<Verdict, TestCaseError> {
    let Ok(db) = CatalogDb::from_bytes(bytes) else {
        return Ok(Verdict::Caught);
    };
    let _ = db.properties();
    let _ = db.statistics();
    let _ = db.schema_revision();
    let Ok(content) = CatalogContent::load(&db) else {
        return Ok(Verdict::Caught);
    };
    for (key, row) in &content.rows {
        prop_assert_eq!(&row.key, key);
        // Refusing (a damaged index seen) is fine; answering with another row is not.
        let Ok(found) = db.lookup(*key) else {
            return Ok(Verdict::Caught);
        };
        if !(damaged && found.is_none()) {
            prop_assert_eq!(found.as_ref(), Some(&row.entry), "lookup and scan disagree");
        }
        if row.entry.is_dir() {
            if let Ok(children) = db.children(*key) {
                for c in children {
                    prop_assert_eq!(c.parent, *key);
                }
            }
        }
        if let Some(x) = &row.entry.xattrs {
            prop_assert!(row.entry.xattr_blob().is_ok(), "unwritable xattrs {x:?}");
        }
    }
    for chunks in content.chunks.values() {
        prop_assert!(chunks.windows(2).all(|w| w[0].offset <= w[1].offset));
    }
    // Parent links can form cycles in a hostile catalog; the walk must still end.
    let dirs: Vec<PathKey> = content
        .rows
        .values()
        .filter(|r| r.entry.is_dir())
        .map(|r| r.key)
        .collect();
    for d in dirs.into_iter().chain([PathKey::of(b"")]) {
        let keys = content.subtree_keys(d);
        prop_assert!(
            keys.len() <= content.rows.len(),
            "subtree_keys repeats keys"
        );
    }
    Ok(Verdict::Accepted)
}

/// A snapshot over `bytes` as the root catalog: every file reads back at its size or not at
/// all. Returns whether anything was refused.
fn check_snapshot(repo: &TestRepo, bytes: &[u8]) -> Result<bool, TestCaseError> {
    let r = repo.open();
    let original = r.manifest().root_catalog;
    let store = LocalStore::new(&repo.repo);
    let name = store
        .put(ObjectKind::Catalog, original.algo, bytes)
        .unwrap();
    let result = (|| {
        let Ok(snap) = r.snapshot_of(name.hash, bytes.len() as u64) else {
            return Ok(true);
        };
        let mut found = Vec::new();
        let mut refused = snap
            .walk(b"", &mut |f| {
                found.push(f.clone());
                Ok(())
            })
            .is_err();
        for f in found.iter().filter(|f| f.entry.kind() == EntryKind::File) {
            if f.entry.is_chunked() {
                if let Ok(chunks) = snap.chunks(f) {
                    prop_assert!(covers(&chunks, f.entry.size).is_ok());
                }
            }
            let mut out = Vec::new();
            match snap.read_found(f, &mut out) {
                Ok(n) => {
                    prop_assert_eq!(n, f.entry.size);
                    prop_assert_eq!(out.len() as u64, n, "a read of the wrong length");
                }
                Err(_) => refused = true,
            }
        }
        Ok(refused)
    })();
    if name.hash != original {
        let _ = std::fs::remove_file(repo.repo.join(name.path()));
    }
    result
}

#[test]
fn mutated_catalog_rows_are_refused_or_read_consistently() {
    let (repo, seed) = seed_repo();
    let edits = proptest::collection::vec(edit(), 1..=4);
    fuzz("catalog/rows", 150, edits, |edits| {
        let conn = lazyroot::cvmfs::sqlite::from_bytes(&seed, false).unwrap();
        for e in &edits {
            apply_edit(&conn, e);
        }
        let bytes = lazyroot::cvmfs::sqlite::to_bytes(&conn).unwrap();
        let reader = check_reader(&bytes, false)?;
        let refused = check_snapshot(&repo, &bytes)?;
        Ok(if reader == Verdict::Caught || refused {
            Verdict::Caught
        } else {
            Verdict::Accepted
        })
    });
}

#[test]
fn damaged_catalog_files_are_refused_or_read_consistently() {
    let (_repo, seed) = seed_repo();
    let input = prop_oneof![
        1 => random_bytes(2000),
        4 => proptest::collection::vec(
            (any::<usize>(), any::<u8>()).prop_map(|(p, b)| Mutation::SetByte(p, b)),
            1..=8
        )
        .prop_map(move |ms| apply(&seed, &ms)),
    ];
    fuzz("catalog/file", 300, input, |b| check_reader(&b, true));
}

#[test]
fn damaged_history_and_reflog_databases_are_refused_or_read() {
    let history = {
        let h = History::create("fuzz.example.org").unwrap();
        h.to_bytes().unwrap()
    };
    let reflog = {
        let r = Reflog::create("fuzz.example.org").unwrap();
        r.to_bytes().unwrap()
    };
    let input = prop_oneof![
        1 => random_bytes(1000),
        2 => (any::<bool>(), proptest::collection::vec(
            (any::<usize>(), any::<u8>()).prop_map(|(p, b)| Mutation::SetByte(p, b)),
            1..=8
        ))
        .prop_map(move |(h, ms)| apply(if h { &history } else { &reflog }, &ms)),
    ];
    fuzz("history+reflog", 300, input, |b| {
        let mut verdict = Verdict::Caught;
        if let Ok(h) = History::from_bytes(&b) {
            if h.tags().is_ok() && h.consistency().is_ok() && h.fqrn().is_ok() {
                verdict = Verdict::Accepted;
            }
        }
        if let Ok(r) = Reflog::from_bytes(&b) {
            if r.count(RefType::Catalog).is_ok() {
                verdict = Verdict::Accepted;
            }
        }
        Ok(verdict)
    });
}

#[test]
fn seed_catalog_reads_whole() {
    // The properties above start from this: a valid catalog every check accepts.
    let (repo, seed) = seed_repo();
    assert_eq!(check_reader(&seed, false).unwrap(), Verdict::Accepted);
    assert!(!check_snapshot(&repo, &seed).unwrap());
    let db = CatalogDb::from_bytes(&seed).unwrap();
    let content = CatalogContent::load(&db).unwrap();
    assert!(!content.chunks.is_empty(), "the seed has a chunked file");
}

#[test]
fn subtree_keys_ends_on_a_cycle_of_parent_links() {
    // Found by `mutated_catalog_rows_are_refused_or_read_consistently`: a directory given
    // its own child as parent made `subtree_keys` loop, its output growing until memory ran
    // out (publishing a graft over such a catalog).
    let dir = |name: &[u8]| Entry {
        name: name.to_vec(),
        mode: 0o40755,
        uid: 0,
        gid: 0,
        size: 4096,
        mtime: 0,
        mtime_ns: None,
        flags: 1,
        hardlinks: 2,
        hash: None,
        symlink: Vec::new(),
        xattrs: None,
    };
    let (d, e) = (PathKey::of(b"/d"), PathKey::of(b"/d/e"));
    let mut c = CatalogContent::new(Vec::new());
    for (key, parent, name) in [(d, e, &b"d"[..]), (e, d, &b"e"[..])] {
        c.rows.insert(
            key,
            Row {
                key,
                parent,
                entry: dir(name),
            },
        );
    }
    let mut keys = c.subtree_keys(d);
    keys.sort();
    let mut want = vec![d, e];
    want.sort();
    assert_eq!(keys, want);
}

#[test]
fn an_index_that_disagrees_with_its_rows_is_refused() {
    // Found by `damaged_catalog_files_are_refused_or_read_consistently`: one byte changed in
    // a table page gave a row another parent than the parent index has for it, and
    // `children` returned that row for the index's parent. Made here the same way: the
    // root's key, as SQLite stores it (8 bytes big-endian), gets its last byte zeroed at
    // each place it occurs in the file, the index's copies and the rows' alike.
    let (_repo, seed) = seed_repo();
    let root = PathKey::of(b"");
    let needle = root.0.to_be_bytes();
    let mut refused = 0;
    for at in (0..seed.len() - 8).filter(|&i| seed[i..i + 8] == needle) {
        let mut b = seed.clone();
        b[at + 7] = 0;
        let Ok(db) = CatalogDb::from_bytes(&b) else {
            continue;
        };
        match db.children(root) {
            Ok(rows) => assert!(rows.iter().all(|r| r.parent == root), "{rows:?}"),
            Err(e) if e.to_string().contains("index disagrees") => refused += 1,
            Err(_) => {}
        }
    }
    assert!(
        refused > 0,
        "no damaged copy of the root key reached the check"
    );
}

#[test]
fn chunks_out_of_offset_order_are_refused() {
    // Found by `damaged_catalog_files_are_refused_or_read_consistently` in a long run: a
    // changed byte in a chunk entry of the chunks table's primary key index gave an offset
    // out of the index's order, and `chunks` (ORDER BY offset, answered from that index)
    // returned them out of order. Made here the same way: one bit of each byte of the
    // index's page flipped in turn.
    let (_repo, seed) = seed_repo();
    let conn = lazyroot::cvmfs::sqlite::from_bytes(&seed, false).unwrap();
    let page_size: usize = conn
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .unwrap();
    let root: usize = conn
        .query_row(
            "SELECT rootpage FROM sqlite_master WHERE type = 'index' AND tbl_name = 'chunks'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    drop(conn);
    let db = CatalogDb::from_bytes(&seed).unwrap();
    let content = CatalogContent::load(&db).unwrap();
    let (key, row) = content
        .rows
        .iter()
        .find(|(_, r)| r.entry.is_chunked())
        .unwrap();
    let algo = row.entry.hash_algo();
    let mut refused = 0;
    for at in (root - 1) * page_size..root * page_size {
        let mut b = seed.clone();
        b[at] ^= 0x40;
        let Ok(db) = CatalogDb::from_bytes(&b) else {
            continue;
        };
        match db.chunks(*key, algo) {
            Ok(c) => assert!(c.windows(2).all(|w| w[0].offset <= w[1].offset), "{c:?}"),
            Err(e) if e.to_string().contains("chunk index disagrees") => refused += 1,
            Err(_) => {}
        }
    }
    assert!(refused > 0, "no damaged index entry reached the check");
}
