//! The publish index: for every file of the last publish, the inode, size, mtime and ctime
//! it had and the content it became. A file whose stat is unchanged (ctime included, which
//! no one can set by hand) is not read again: this is what makes a 1 % republish cheap.
//! It lives in the spool, outside the served tree; losing it only costs a full re-read.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use rusqlite::{params, Connection};

use crate::cvmfs::hash::HashAlgo;
use crate::cvmfs::object::ObjectName;

use super::content::FileContent;
use super::walk::{FileJob, Meta};

#[derive(Debug, Clone)]
struct Record {
    stat: [i64; 7],
    content: FileContent,
    /// The stored length of each of the content's objects, in order: reuse checks them, so
    /// an object cut short since (a crash that lost unsynced data) is written again.
    stored: Vec<u64>,
}

fn stat_key(m: &Meta) -> [i64; 7] {
    [
        m.dev as i64,
        m.ino as i64,
        m.size as i64,
        m.mtime,
        m.mtime_ns as i64,
        m.ctime,
        m.ctime_ns as i64,
    ]
}

/// Stat and content of each file of the last publish, by repository path. The default is
/// empty and bound to no file, so saving it does nothing (as with `full`).
#[derive(Default)]
pub struct PublishIndex {
    records: HashMap<Vec<u8>, Record>,
    path: Option<PathBuf>,
}

/// Writing the publish index failed; the publish itself stands.
#[derive(Debug, thiserror::Error)]
#[error("publish index {path}: {source}")]
pub struct IndexError {
    path: String,
    source: rusqlite::Error,
}

impl PublishIndex {
    /// Loads the index at `path`; a missing or unreadable index is an empty one.
    pub fn load(path: &Path) -> Self {
        let mut idx = PublishIndex {
            records: HashMap::new(),
            path: Some(path.to_path_buf()),
        };
        let Ok(conn) = Connection::open(path) else {
            return idx;
        };
        // An index from before stored lengths were recorded has no `stored` column: it does
        // not load, and the next publish reads every file once.
        let Ok(mut st) = conn.prepare(
            "SELECT path, dev, ino, size, mtime, mtime_ns, ctime, ctime_ns, content, stored FROM files",
        ) else {
            return idx;
        };
        let rows = st.query_map([], |r| {
            let mut stat = [0i64; 7];
            for (i, s) in stat.iter_mut().enumerate() {
                *s = r.get(i + 1)?;
            }
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                stat,
                r.get::<_, String>(8)?,
                r.get::<_, String>(9)?,
            ))
        });
        if let Ok(rows) = rows {
            for (path, stat, content, stored) in rows.flatten() {
                let stored: Option<Vec<u64>> = stored
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| s.parse().ok())
                    .collect();
                if let (Some(content), Some(stored)) = (FileContent::decode(&content), stored) {
                    if stored.len() == content.objects().len() {
                        idx.records.insert(
                            path,
                            Record {
                                stat,
                                content,
                                stored,
                            },
                        );
                    }
                }
            }
        }
        idx
    }

    /// The content recorded for `repo_path` if the file's stat is exactly as recorded, the
    /// algorithm is the same and every object is stored at the length it had when recorded
    /// (`stored_len`: an object's current length, `None` if absent).
    pub fn reusable(
        &self,
        repo_path: &[u8],
        meta: &Meta,
        algo: HashAlgo,
        stored_len: impl Fn(&ObjectName) -> Option<u64>,
    ) -> Option<FileContent> {
        let r = self.records.get(repo_path)?;
        let algo_ok = match &r.content {
            FileContent::Whole { hash, .. } => hash.algo == algo,
            FileContent::Chunked { chunks, .. } => chunks.iter().all(|c| c.hash.algo == algo),
        };
        let stored_ok = || {
            r.content
                .objects()
                .iter()
                .zip(&r.stored)
                .all(|(o, len)| stored_len(o) == Some(*len))
        };
        (r.stat == stat_key(meta) && algo_ok && stored_ok()).then(|| r.content.clone())
    }

    /// Replaces the index with this publish's files (those below `prefix` are replaced,
    /// the rest kept), written to a temporary file and renamed.
    /// `stored_len` gives each new object's stored length (see [`PublishIndex::reusable`]).
    pub fn save(
        &self,
        prefix: &[u8],
        jobs: &[FileJob],
        contents: &[FileContent],
        stored_len: impl Fn(&ObjectName) -> Option<u64>,
    ) -> Result<(), IndexError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let err = |source| IndexError {
            path: path.display().to_string(),
            source,
        };
        let tmp = path.with_extension("tmp");
        let _ = std::fs::remove_file(&tmp);
        let mut conn = Connection::open(&tmp).map_err(err)?;
        conn.execute_batch(
            "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;
             CREATE TABLE files (path BLOB PRIMARY KEY, dev, ino, size, mtime, mtime_ns, ctime, ctime_ns, content TEXT, stored TEXT);",
        )
        .map_err(err)?;
        let tx = conn.transaction().map_err(err)?;
        {
            let mut ins = tx
                .prepare("INSERT OR REPLACE INTO files VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)")
                .map_err(err)?;
            let mut put = |path: &[u8], s: [i64; 7], c: &FileContent, stored: &[u64]| {
                let stored: Vec<String> = stored.iter().map(u64::to_string).collect();
                ins.execute(params![
                    path,
                    s[0],
                    s[1],
                    s[2],
                    s[3],
                    s[4],
                    s[5],
                    s[6],
                    c.encode(),
                    stored.join(",")
                ])
                .map(|_| ())
                .map_err(err)
            };
            for (p, r) in &self.records {
                if !crate::repository::path::is_within(p, prefix) {
                    put(p, r.stat, &r.content, &r.stored)?;
                }
            }
            for (job, c) in jobs.iter().zip(contents) {
                // An object whose length cannot be read now is not recorded: its file is
                // read again next time rather than trusted blindly.
                let stored: Option<Vec<u64>> = c.objects().iter().map(&stored_len).collect();
                if let Some(stored) = stored {
                    put(&job.repo_path, stat_key(&job.meta), c, &stored)?;
                }
            }
        }
        tx.commit().map_err(err)?;
        drop(conn);
        std::fs::rename(&tmp, path)
            .map_err(|e| err(rusqlite::Error::ToSqlConversionFailure(Box::new(e))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cvmfs::catalog::Chunk;

    #[test]
    fn content_encoding_round_trips() {
        let h = HashAlgo::Shake128.digest(b"x");
        for c in [
            FileContent::Whole { hash: h, size: 3 },
            FileContent::Chunked {
                size: 9,
                chunks: vec![
                    Chunk {
                        offset: 0,
                        size: 4,
                        hash: h,
                    },
                    Chunk {
                        offset: 4,
                        size: 5,
                        hash: h,
                    },
                ],
            },
        ] {
            assert_eq!(FileContent::decode(&c.encode()), Some(c));
        }
        assert_eq!(FileContent::decode("X 1 2"), None);
    }
}
