//! Layers already ingested, in the publisher's private state (`<repo>/.lazyroot/`): a layer
//! whose uncompressed digest (`diff_id`) is here is neither downloaded nor read again; its
//! entries are applied from here, once every object they name is checked to be in the
//! repository with the length it was stored with.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};

use crate::repository::local::LocalStore;

use super::layer::LayerEntries;

/// The open layer cache.
pub struct SeenLayers {
    db: Connection,
}

impl SeenLayers {
    /// Opens (or creates) the cache at `path`. A cache that does not open is started anew:
    /// it only saves work.
    pub fn open(path: &Path) -> SeenLayers {
        let open = || -> rusqlite::Result<Connection> {
            let db = Connection::open(path)?;
            db.execute_batch(
                "CREATE TABLE IF NOT EXISTS layers (
                   diff_id TEXT PRIMARY KEY,
                   entries BLOB NOT NULL
                 );",
            )?;
            Ok(db)
        };
        let db = open().unwrap_or_else(|e| {
            tracing::warn!("layer cache {}: {e}; starting it anew", path.display());
            let _ = std::fs::remove_file(path);
            open().unwrap_or_else(|_| Connection::open_in_memory().expect("in-memory sqlite"))
        });
        SeenLayers { db }
    }

    /// The entries of layer `diff_id`, if it was ingested before and every object it names
    /// is still in `store`.
    pub fn get(&self, diff_id: &str, store: &LocalStore) -> Option<LayerEntries> {
        let bytes: Vec<u8> = self
            .db
            .query_row(
                "SELECT entries FROM layers WHERE diff_id = ?1",
                [diff_id],
                |r| r.get(0),
            )
            .optional()
            .ok()??;
        let entries = match LayerEntries::from_json(&bytes) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(
                    "layer cache: entries of {diff_id} unreadable ({e}); reading it again"
                );
                return None;
            }
        };
        let complete = entries
            .objects()
            .iter()
            .all(|o| store.stored_len(o).is_some_and(|n| n > 0));
        if !complete {
            tracing::info!("layer cache: objects of {diff_id} are gone; reading it again");
            return None;
        }
        Some(entries)
    }

    /// Remembers the entries of layer `diff_id`.
    pub fn put(&self, diff_id: &str, entries: &LayerEntries) -> rusqlite::Result<()> {
        self.db.execute(
            "INSERT OR REPLACE INTO layers (diff_id, entries) VALUES (?1, ?2)",
            params![diff_id, entries.to_json()],
        )?;
        Ok(())
    }
}
