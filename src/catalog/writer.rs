//! Writing one catalog database from its in-memory content.

use rusqlite::types::ToSqlOutput;
use rusqlite::{params, Connection};

use super::counters::{Counters, FIELDS};
use super::schema::{CREATE, SCHEMA_REVISION, SCHEMA_VERSION};
use super::{CatalogContent, CatalogError};

/// Properties written next to the rows.
#[derive(Debug, Clone)]
pub struct CatalogProperties {
    pub revision: u64,
    pub last_modified: i64,
    /// Hex hash of the previous root catalog (root catalog only).
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
        for row in content.rows.values() {
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
    Ok(conn.serialize(rusqlite::MAIN_DB)?.to_vec())
}
