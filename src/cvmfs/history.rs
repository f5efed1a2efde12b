//! The history database (`H` object, `history_sql.cc`): named tags → root catalog hashes.

use rusqlite::{params, Connection, OptionalExtension};

use crate::cvmfs::hash::ContentHash;

/// The `schema` property of new history databases.
pub const SCHEMA_VERSION: &str = "1.0";
/// The `schema_revision` property of new databases; revision 3 has the `branches` table.
pub const SCHEMA_REVISION: u32 = 3;

/// The tag for the newest revision and the one before it, kept by every publish.
pub const TRUNK: &str = "trunk";
/// The tag for the revision before [`TRUNK`]: each publish moves the old `trunk` here.
pub const TRUNK_PREVIOUS: &str = "trunk-previous";

const CREATE: &str = "
CREATE TABLE tags (name TEXT, hash TEXT, revision INTEGER, timestamp INTEGER, channel INTEGER,
  description TEXT, size INTEGER, branch TEXT, CONSTRAINT pk_tags PRIMARY KEY (name));
CREATE INDEX idx_revision ON tags (revision);
CREATE TABLE recycle_bin (hash TEXT, flags INTEGER, CONSTRAINT pk_hash PRIMARY KEY (hash));
CREATE TABLE branches (branch TEXT, parent TEXT, initial_revision INTEGER,
  CONSTRAINT pk_branch PRIMARY KEY (branch));
INSERT INTO branches (branch, parent, initial_revision) VALUES ('', NULL, 0);
CREATE TABLE properties (key TEXT, value TEXT, CONSTRAINT pk_properties PRIMARY KEY (key));
";

/// Why a history database could not be read or changed.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// An SQLite error (a corrupt image, an unexpected schema).
    #[error("history database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A tag's hash column does not parse as a content hash.
    #[error("history database: tag {name:?} has an invalid hash {hash:?}")]
    BadHash {
        /// The tag.
        name: String,
        /// The stored hash text.
        hash: String,
    },
    /// A tag name outside the allowed characters or length (see [`validate_tag_name`]).
    #[error("tag name {0:?} is invalid: use letters, digits, '.', '_', '-' (at most 255)")]
    BadName(String),
}

/// One named tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    /// The tag's name, unique in the database.
    pub name: String,
    /// Root catalog hash of the tagged revision.
    pub root_hash: ContentHash,
    /// Revision number of the tagged revision.
    pub revision: u64,
    /// When the tag was made, in seconds since the Unix epoch.
    pub timestamp: i64,
    /// Free text (empty when none).
    pub description: String,
    /// Uncompressed size of the root catalog.
    pub size: u64,
}

/// An open history database (in memory).
pub struct History {
    conn: Connection,
}

/// Accepts 1–255 bytes of ASCII letters, digits, `.`, `_`, `-` and `:` (so that stock's
/// automatic `generic-<ISO 8601 time>` tags pass).
pub fn validate_tag_name(name: &str) -> Result<(), HistoryError> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'));
    if ok {
        Ok(())
    } else {
        Err(HistoryError::BadName(name.to_string()))
    }
}

impl History {
    /// A new, empty history database (schema 1.0, revision 3) for repository `fqrn`.
    pub fn create(fqrn: &str) -> Result<Self, HistoryError> {
        let conn = Connection::open_in_memory()?;
        conn.execute_batch(CREATE)?;
        conn.execute(
            "INSERT INTO properties (key, value) VALUES ('schema', ?1)",
            [SCHEMA_VERSION],
        )?;
        conn.execute(
            "INSERT INTO properties (key, value) VALUES ('schema_revision', ?1)",
            [SCHEMA_REVISION.to_string()],
        )?;
        conn.execute(
            "INSERT INTO properties (key, value) VALUES ('fqrn', ?1)",
            [fqrn],
        )?;
        Ok(History { conn })
    }

    /// Opens a decompressed history database (any schema revision from 1 on).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, HistoryError> {
        Ok(History {
            conn: crate::cvmfs::sqlite::from_bytes(bytes, false)?,
        })
    }

    /// Records the hash of the previous revision's history database (`previous_revision`).
    pub fn set_previous(&self, previous: &ContentHash) -> Result<(), HistoryError> {
        self.conn.execute(
            "INSERT OR REPLACE INTO properties (key, value) VALUES ('previous_revision', ?1)",
            [previous.to_hex()],
        )?;
        Ok(())
    }

    /// All tags, newest revision first, then by name.
    pub fn tags(&self) -> Result<Vec<Tag>, HistoryError> {
        let mut st = self.conn.prepare(
            "SELECT name, hash, revision, timestamp, description, size FROM tags ORDER BY revision DESC, name",
        )?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, Option<String>>(4)?.unwrap_or_default(),
                r.get::<_, Option<i64>>(5)?.unwrap_or(0),
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (name, hash, revision, timestamp, description, size) = row?;
            let root_hash = ContentHash::parse(&hash).map_err(|_| HistoryError::BadHash {
                name: name.clone(),
                hash,
            })?;
            out.push(Tag {
                name,
                root_hash,
                revision: revision as u64,
                timestamp,
                description,
                size: size as u64,
            });
        }
        Ok(out)
    }

    /// What `cvmfs_swissknife check` finds wrong with the branches (schema revision 3 on):
    /// invalid branch names, tags on unknown branches or below their branch's initial
    /// revision, branches no tag uses. Older databases have no branches and pass.
    pub fn consistency(&self) -> Result<Vec<String>, HistoryError> {
        let has = |sql: &str| -> Result<bool, HistoryError> {
            Ok(self.conn.query_row(sql, [], |r| r.get::<_, i64>(0))? > 0)
        };
        if !has("SELECT count(*) FROM sqlite_master WHERE type='table' AND name='branches'")?
            || !has("SELECT count(*) FROM pragma_table_info('tags') WHERE name='branch'")?
        {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        let mut st = self
            .conn
            .prepare("SELECT branch, initial_revision FROM branches")?;
        let branches: std::collections::HashMap<String, i64> = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, Option<String>>(0)?.unwrap_or_default(),
                    r.get::<_, Option<i64>>(1)?.unwrap_or(0),
                ))
            })?
            .collect::<Result<_, _>>()?;
        for b in branches.keys() {
            // Stock's BranchSanitizer: letters, digits, '-', '_', '.' (and "" for the trunk).
            if !b
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
            {
                out.push(format!("invalid branch name {b:?}"));
            }
        }
        let mut used = std::collections::HashSet::new();
        let mut st = self
            .conn
            .prepare("SELECT name, branch, revision FROM tags")?;
        let tags = st.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<String>>(1)?.unwrap_or_default(),
                r.get::<_, i64>(2)?,
            ))
        })?;
        for t in tags {
            let (name, branch, revision) = t?;
            match branches.get(&branch) {
                None => out.push(format!("tag {name:?} is on an unknown branch {branch:?}")),
                Some(&initial) if revision < initial => out.push(format!(
                    "tag {name:?} has revision {revision}, below its branch's initial revision {initial}"
                )),
                Some(_) => {}
            }
            used.insert(branch);
        }
        if used.len() != branches.len() {
            out.push("branches that no tag uses are stored".into());
        }
        Ok(out)
    }

    /// The tag named `name`, if any.
    pub fn get(&self, name: &str) -> Result<Option<Tag>, HistoryError> {
        Ok(self.tags()?.into_iter().find(|t| t.name == name))
    }

    /// Adds a tag, replacing one of the same name; its name is validated first. Where the schema
    /// has branches, the tag goes on the trunk branch (`""`).
    pub fn insert(&self, tag: &Tag) -> Result<(), HistoryError> {
        validate_tag_name(&tag.name)?;
        let has_branch: bool = self
            .conn
            .query_row(
                "SELECT count(*) FROM pragma_table_info('tags') WHERE name='branch'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n > 0)?;
        let sql = if has_branch {
            "INSERT OR REPLACE INTO tags (name, hash, revision, timestamp, channel, description, size, branch)
             VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6, '')"
        } else {
            "INSERT OR REPLACE INTO tags (name, hash, revision, timestamp, channel, description, size)
             VALUES (?1, ?2, ?3, ?4, 0, ?5, ?6)"
        };
        self.conn.execute(
            sql,
            params![
                tag.name,
                tag.root_hash.to_hex(),
                tag.revision as i64,
                tag.timestamp,
                tag.description,
                tag.size as i64
            ],
        )?;
        Ok(())
    }

    /// Removes a tag; returns whether it existed.
    pub fn remove(&self, name: &str) -> Result<bool, HistoryError> {
        Ok(self
            .conn
            .execute("DELETE FROM tags WHERE name = ?1", [name])?
            > 0)
    }

    /// The repository name recorded in the database (`fqrn` property), if any.
    pub fn fqrn(&self) -> Result<Option<String>, HistoryError> {
        Ok(self
            .conn
            .query_row("SELECT value FROM properties WHERE key='fqrn'", [], |r| {
                r.get(0)
            })
            .optional()?)
    }

    /// The database image, to be stored (compressed) as an `H` object.
    pub fn to_bytes(&self) -> Result<Vec<u8>, HistoryError> {
        Ok(crate::cvmfs::sqlite::to_bytes(&self.conn)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cvmfs::hash::HashAlgo;

    #[test]
    fn tags_round_trip_through_bytes() {
        let h = History::create("a.example.org").unwrap();
        let t = Tag {
            name: "v1".into(),
            root_hash: HashAlgo::Sha1.digest(b"r"),
            revision: 3,
            timestamp: 10,
            description: "first".into(),
            size: 4096,
        };
        h.insert(&t).unwrap();
        let h2 = History::from_bytes(&h.to_bytes().unwrap()).unwrap();
        assert_eq!(h2.get("v1").unwrap(), Some(t));
        assert_eq!(h2.fqrn().unwrap().as_deref(), Some("a.example.org"));
        assert!(h2.remove("v1").unwrap());
        assert!(!h2.remove("v1").unwrap());
        for bad in ["", "a b", "x/y", "ä"] {
            assert!(validate_tag_name(bad).is_err(), "{bad}");
        }
    }
}
