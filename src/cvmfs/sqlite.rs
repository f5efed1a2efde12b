//! SQLite databases held in memory: how catalogs, history and reflog are opened from the
//! bytes of a verified object, and turned back into bytes after editing.

use rusqlite::Connection;

/// Opens a database image in memory. Its content came from the network or a repository,
/// so schema code in it (triggers, views) is never trusted to run.
pub fn from_bytes(bytes: &[u8], read_only: bool) -> rusqlite::Result<Connection> {
    let mut conn = Connection::open_in_memory()?;
    conn.deserialize_read_exact(rusqlite::MAIN_DB, bytes, bytes.len(), read_only)?;
    conn.execute_batch("PRAGMA trusted_schema=OFF;")?;
    Ok(conn)
}

/// The database image, as it would be on disk.
pub fn to_bytes(conn: &Connection) -> rusqlite::Result<Vec<u8>> {
    Ok(conn.serialize(rusqlite::MAIN_DB)?.to_vec())
}
