//! The daemon's persistent state: images and pins, in SQLite, so that a restarted daemon
//! serves the same images at the same paths and keeps every pin. Written before the daemon
//! answers, so an answer the caller saw survives a crash.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};

use super::image::ImageKey;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS images (
  id         TEXT PRIMARY KEY,
  fqrn       TEXT NOT NULL,
  path       TEXT NOT NULL,
  root_hash  TEXT NOT NULL,
  revision   INTEGER NOT NULL,
  -- seconds since the epoch when it was last prepared or last unpinned: the grace time
  -- before an unpinned image is released counts from here
  touched    INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS pins (
  container_id TEXT PRIMARY KEY,
  image_id     TEXT NOT NULL REFERENCES images(id),
  created      INTEGER NOT NULL,
  -- 1: made by an operator (lazyroot pin); SyncPins keeps it
  operator     INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS pins_by_image ON pins(image_id);
-- CSI volumes: a repository directory at one revision mounted at a target path
CREATE TABLE IF NOT EXISTS volumes (
  target     TEXT PRIMARY KEY,
  fqrn       TEXT NOT NULL,
  path       TEXT NOT NULL,
  root_hash  TEXT NOT NULL
);
-- appc entries the agent wrote from an ACI this daemon served through simple discovery:
-- the daemon knows their ids (its ACIs are deterministic) and removes them with the image
CREATE TABLE IF NOT EXISTS discovered (
  entry      TEXT PRIMARY KEY,
  image_id   TEXT NOT NULL,
  -- the discovery request it answered (`<name>-<version>-<os>-<arch>.aci`): a container
  -- that names its image by name is pinned through it
  request    TEXT NOT NULL DEFAULT ''
);
";

/// Indexes, made after [`MIGRATIONS`] added the columns they cover.
const INDEXES: &str = "
CREATE INDEX IF NOT EXISTS discovered_by_request ON discovered(request);
";

/// The schema version [`SCHEMA`] makes; older databases are brought up to it by
/// [`MIGRATIONS`] (columns added with defaults, so every row stays).
const VERSION: i64 = 2;

/// Columns added since version 1, as (table, column, definition).
const MIGRATIONS: &[(&str, &str, &str)] = &[
    ("pins", "operator", "INTEGER NOT NULL DEFAULT 0"),
    ("discovered", "request", "TEXT NOT NULL DEFAULT ''"),
];

/// One prepared image, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRow {
    /// The image id ([`ImageKey::id`]).
    pub id: String,
    /// The image: fqrn, path and root hash.
    pub key: ImageKey,
    /// The manifest revision its root hash was resolved in (0 if unknown).
    pub revision: u64,
    /// When it was last prepared or unpinned, in seconds since the epoch: its grace
    /// time counts from here.
    pub touched: i64,
}

/// A container's pin on an image (a container pins at most one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinRow {
    /// The Mesos container id.
    pub container_id: String,
    /// The id of the pinned image.
    pub image_id: String,
    /// Made by an operator (`lazyroot pin`): SyncPins keeps it.
    pub operator: bool,
}

const SELECT_IMAGE: &str = "SELECT id, fqrn, path, root_hash, revision, touched FROM images";

fn image_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ImageRow> {
    Ok(ImageRow {
        id: r.get(0)?,
        key: ImageKey {
            fqrn: r.get(1)?,
            path: r.get(2)?,
            root_hash: r.get(3)?,
        },
        revision: r.get::<_, i64>(4)? as u64,
        touched: r.get(5)?,
    })
}

/// The open state database.
pub struct State {
    db: Connection,
}

/// The current time in whole seconds since the Unix epoch (0 if the clock is before it).
pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl State {
    /// Opens (or creates) the database at `path`, durable (WAL, synchronous writes).
    pub fn open(path: &Path) -> rusqlite::Result<State> {
        let db = Connection::open(path)?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "FULL")?;
        db.pragma_update(None, "foreign_keys", "ON")?;
        let tx = db.unchecked_transaction()?;
        // Tables first (an old database keeps its own), then the columns it lacks, then
        // the indexes over them.
        tx.execute_batch(SCHEMA)?;
        for (table, column, definition) in MIGRATIONS {
            let has: bool = tx.query_row(
                &format!("SELECT COUNT(*) > 0 FROM pragma_table_info('{table}') WHERE name = ?1"),
                [column],
                |r| r.get(0),
            )?;
            if !has {
                tx.execute_batch(&format!(
                    "ALTER TABLE {table} ADD COLUMN {column} {definition}"
                ))?;
            }
        }
        tx.execute_batch(INDEXES)?;
        tx.pragma_update(None, "user_version", VERSION)?;
        tx.commit()?;
        Ok(State { db })
    }

    /// Every image, ordered by id.
    pub fn images(&self) -> rusqlite::Result<Vec<ImageRow>> {
        let mut st = self.db.prepare(&format!("{SELECT_IMAGE} ORDER BY id"))?;
        let rows = st.query_map([], image_row)?;
        rows.collect()
    }

    /// The image with id `id`, if any.
    pub fn image(&self, id: &str) -> rusqlite::Result<Option<ImageRow>> {
        self.db
            .query_row(&format!("{SELECT_IMAGE} WHERE id = ?1"), [id], image_row)
            .optional()
    }

    /// Adds an image; for an id already there only `touched` is updated.
    pub fn put_image(&self, row: &ImageRow) -> rusqlite::Result<()> {
        self.db.execute(
            "INSERT INTO images (id, fqrn, path, root_hash, revision, touched) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(id) DO UPDATE SET touched = excluded.touched",
            params![
                row.id,
                row.key.fqrn,
                row.key.path,
                row.key.root_hash,
                row.revision as i64,
                row.touched
            ],
        )?;
        Ok(())
    }

    /// Deletes the image with id `id` (its pins must be gone first).
    pub fn remove_image(&self, id: &str) -> rusqlite::Result<()> {
        self.db.execute("DELETE FROM images WHERE id = ?1", [id])?;
        Ok(())
    }

    /// Records that the agent's appc entry `entry` is of image `image_id` (served by
    /// discovery): the daemon owns it.
    pub fn add_discovered(
        &self,
        entry: &str,
        image_id: &str,
        request: &str,
    ) -> rusqlite::Result<()> {
        self.db.execute(
            "INSERT OR REPLACE INTO discovered (entry, image_id, request) VALUES (?1, ?2, ?3)",
            [entry, image_id, request],
        )?;
        Ok(())
    }

    /// The image of the newest discovered entry that answered `request`, if any (the
    /// image a container that names it by name runs on).
    pub fn discovered_image(&self, request: &str) -> rusqlite::Result<Option<String>> {
        self.db
            .query_row(
                "SELECT image_id FROM discovered WHERE request = ?1 ORDER BY rowid DESC LIMIT 1",
                [request],
                |r| r.get(0),
            )
            .optional()
    }

    /// Whether `entry` is an appc entry this daemon served through discovery.
    pub fn discovered_entry(&self, entry: &str) -> rusqlite::Result<Option<String>> {
        self.db
            .query_row(
                "SELECT image_id FROM discovered WHERE entry = ?1",
                [entry],
                |r| r.get(0),
            )
            .optional()
    }

    /// The discovered appc entries of image `image_id`.
    pub fn discovered_of(&self, image_id: &str) -> rusqlite::Result<Vec<String>> {
        let mut st = self
            .db
            .prepare("SELECT entry FROM discovered WHERE image_id = ?1 ORDER BY entry")?;
        let rows = st.query_map([image_id], |r| r.get(0))?;
        rows.collect()
    }

    /// Forgets discovered entry `entry`.
    pub fn remove_discovered(&self, entry: &str) -> rusqlite::Result<()> {
        self.db
            .execute("DELETE FROM discovered WHERE entry = ?1", [entry])?;
        Ok(())
    }

    /// Every pin, ordered by container id.
    pub fn pins(&self) -> rusqlite::Result<Vec<PinRow>> {
        let mut st = self
            .db
            .prepare("SELECT container_id, image_id, operator FROM pins ORDER BY container_id")?;
        let rows = st.query_map([], |r| {
            Ok(PinRow {
                container_id: r.get(0)?,
                image_id: r.get(1)?,
                operator: r.get(2)?,
            })
        })?;
        rows.collect()
    }

    /// The id of the image container `container_id` pins, if any.
    pub fn pin_of(&self, container_id: &str) -> rusqlite::Result<Option<String>> {
        self.db
            .query_row(
                "SELECT image_id FROM pins WHERE container_id = ?1",
                [container_id],
                |r| r.get(0),
            )
            .optional()
    }

    /// Records that `container_id` pins `image_id`; fails if the container already has a
    /// pin or the image is unknown.
    pub fn add_pin(
        &self,
        container_id: &str,
        image_id: &str,
        operator: bool,
    ) -> rusqlite::Result<()> {
        self.db.execute(
            "INSERT INTO pins (container_id, image_id, created, operator) VALUES (?1, ?2, ?3, ?4)",
            params![container_id, image_id, now(), operator],
        )?;
        Ok(())
    }

    /// Drops a pin; its image's grace time starts now. The image it pinned, if any.
    pub fn remove_pin(&mut self, container_id: &str) -> rusqlite::Result<Option<String>> {
        let tx = self.db.transaction()?;
        let image: Option<String> = tx
            .query_row(
                "SELECT image_id FROM pins WHERE container_id = ?1",
                [container_id],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(image) = &image {
            tx.execute("DELETE FROM pins WHERE container_id = ?1", [container_id])?;
            tx.execute(
                "UPDATE images SET touched = ?2 WHERE id = ?1",
                params![image, now()],
            )?;
        }
        tx.commit()?;
        Ok(image)
    }

    /// Every published CSI volume: its target path and what is mounted there.
    pub fn volumes(&self) -> rusqlite::Result<Vec<(String, ImageKey)>> {
        let mut st = self
            .db
            .prepare("SELECT target, fqrn, path, root_hash FROM volumes ORDER BY target")?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get(0)?,
                ImageKey {
                    fqrn: r.get(1)?,
                    path: r.get(2)?,
                    root_hash: r.get(3)?,
                },
            ))
        })?;
        rows.collect()
    }

    /// Records (or replaces) the CSI volume at `target`.
    pub fn put_volume(&self, target: &str, key: &ImageKey) -> rusqlite::Result<()> {
        self.db.execute(
            "INSERT OR REPLACE INTO volumes (target, fqrn, path, root_hash) VALUES (?1, ?2, ?3, ?4)",
            params![target, key.fqrn, key.path, key.root_hash],
        )?;
        Ok(())
    }

    /// Forgets the CSI volume at `target`.
    pub fn remove_volume(&self, target: &str) -> rusqlite::Result<()> {
        self.db
            .execute("DELETE FROM volumes WHERE target = ?1", [target])?;
        Ok(())
    }

    /// How many containers pin image `image_id`.
    pub fn pin_count(&self, image_id: &str) -> rusqlite::Result<u64> {
        self.db.query_row(
            "SELECT COUNT(*) FROM pins WHERE image_id = ?1",
            [image_id],
            |r| r.get::<_, i64>(0).map(|n| n as u64),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str) -> ImageRow {
        ImageRow {
            id: id.into(),
            key: ImageKey {
                fqrn: "a.org".into(),
                path: "/x".into(),
                root_hash: "00".into(),
            },
            revision: 3,
            touched: 10,
        }
    }

    #[test]
    fn survives_reopen_and_counts_pins() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.sqlite");
        {
            let mut s = State::open(&p).unwrap();
            s.put_image(&row("i1")).unwrap();
            s.add_pin("c1", "i1", false).unwrap();
            s.add_pin("c2", "i1", true).unwrap();
            assert!(
                s.add_pin("c1", "i1", false).is_err(),
                "one pin per container"
            );
            assert!(
                s.add_pin("c3", "nope", false).is_err(),
                "pins name known images"
            );
            assert_eq!(s.remove_pin("c2").unwrap().as_deref(), Some("i1"));
            assert_eq!(s.remove_pin("c2").unwrap(), None);
        }
        let s = State::open(&p).unwrap();
        assert_eq!(s.images().unwrap()[0].key, row("i1").key);
        assert!(
            s.images().unwrap()[0].touched > 10,
            "unpin restarts the grace time"
        );
        assert_eq!(s.pin_count("i1").unwrap(), 1);
        assert_eq!(s.pin_of("c1").unwrap().as_deref(), Some("i1"));
    }

    /// A database of schema 1 (before operator pins and discovery requests) opens with
    /// every row kept: its pins are the agent's, its discovered entries answer no request.
    #[test]
    fn a_version_1_database_is_migrated_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.sqlite");
        {
            let db = Connection::open(&p).unwrap();
            db.execute_batch(
                "CREATE TABLE images (id TEXT PRIMARY KEY, fqrn TEXT NOT NULL, path TEXT NOT NULL,
                   root_hash TEXT NOT NULL, revision INTEGER NOT NULL, touched INTEGER NOT NULL);
                 CREATE TABLE pins (container_id TEXT PRIMARY KEY,
                   image_id TEXT NOT NULL REFERENCES images(id), created INTEGER NOT NULL);
                 CREATE TABLE discovered (entry TEXT PRIMARY KEY, image_id TEXT NOT NULL);
                 INSERT INTO images VALUES ('i1', 'a.org', '/x', '00', 3, 10);
                 INSERT INTO pins VALUES ('c1', 'i1', 10);
                 INSERT INTO discovered VALUES ('e1', 'i1');
                 PRAGMA user_version = 1;",
            )
            .unwrap();
        }
        let s = State::open(&p).unwrap();
        let pins = s.pins().unwrap();
        assert_eq!(pins.len(), 1);
        assert!(!pins[0].operator);
        assert_eq!(s.discovered_of("i1").unwrap(), ["e1"]);
        assert_eq!(s.discovered_image("").unwrap().as_deref(), Some("i1"));
        s.add_discovered("e2", "i1", "a.org/x-latest-linux-amd64.aci")
            .unwrap();
        assert_eq!(
            s.discovered_image("a.org/x-latest-linux-amd64.aci")
                .unwrap()
                .as_deref(),
            Some("i1")
        );
        let version: i64 =
            s.db.query_row("PRAGMA user_version", [], |r| r.get(0))
                .unwrap();
        assert_eq!(version, VERSION);
        drop(s);
        // Opening again changes nothing.
        assert_eq!(State::open(&p).unwrap().pins().unwrap(), pins);
    }
}
