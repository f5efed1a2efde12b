//! The previous revision as the publisher sees it: catalogs by mountpoint, their content
//! and their stored counters.

use crate::cvmfs::catalog::{CatalogContent, Counters, NestedRef};
use crate::repository::path::is_within;
use crate::repository::{RepoError, Repository};

use super::build::OldCatalogs;
use super::PublishError;

/// A repository's current revision, read as the previous one while publishing.
pub struct OldRevision<'r> {
    repo: &'r Repository,
}

impl<'r> OldRevision<'r> {
    /// Reads catalogs of `repo`'s current revision.
    pub fn new(repo: &'r Repository) -> Self {
        OldRevision { repo }
    }

    fn catalog_err(
        r: &NestedRef,
    ) -> impl Fn(crate::cvmfs::catalog::CatalogError) -> PublishError + '_ {
        move |source| {
            PublishError::Repo(RepoError::Catalog {
                what: format!("catalog {}", r.hash.to_hex()),
                source,
            })
        }
    }
}

impl OldCatalogs for OldRevision<'_> {
    fn at(&self, mountpoint: &[u8]) -> Result<Option<NestedRef>, PublishError> {
        let m = self.repo.manifest();
        let mut cur = NestedRef {
            path: Vec::new(),
            hash: m.root_catalog,
            size: m.root_catalog_size,
        };
        loop {
            if cur.path == mountpoint {
                return Ok(Some(cur));
            }
            let db = self.repo.catalog(&cur.hash, cur.size)?;
            let nested = db
                .lock()
                .expect("catalog")
                .nested()
                .map_err(Self::catalog_err(&cur))?;
            match nested.into_iter().find(|n| is_within(mountpoint, &n.path)) {
                Some(n) => cur = n,
                None => return Ok(None),
            }
        }
    }

    fn load(&self, r: &NestedRef) -> Result<CatalogContent, PublishError> {
        let db = self.repo.catalog(&r.hash, r.size)?;
        let c = CatalogContent::load(&db.lock().expect("catalog")).map_err(Self::catalog_err(r))?;
        Ok(c)
    }

    fn root_is_first_row(&self, r: &NestedRef) -> Result<bool, PublishError> {
        let db = self.repo.catalog(&r.hash, r.size)?;
        let rowid = db
            .lock()
            .expect("catalog")
            .rowid_of(crate::cvmfs::hash::PathKey::of(&r.path))
            .map_err(Self::catalog_err(r))?;
        Ok(rowid == Some(1))
    }

    fn totals(&self, r: &NestedRef) -> Result<Counters, PublishError> {
        let db = self.repo.catalog(&r.hash, r.size)?;
        let stats = db
            .lock()
            .expect("catalog")
            .statistics()
            .map_err(Self::catalog_err(r))?;
        Ok(Counters::totals_from(&stats))
    }
}
