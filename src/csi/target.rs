//! The target directory of a published volume: validated, created when only its parent
//! exists, recognised as a mount point, removed when the volume is gone.
//!
//! Everything here blocks (file system calls); the node service runs it on the blocking pool.

use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tonic::Status;

/// An absolute, normalised path other than `/`, without NUL.
pub(super) fn validate(target: &str) -> Result<PathBuf, Status> {
    let bad = |why: &str| {
        Err(Status::invalid_argument(format!(
            "target path {target:?} {why}"
        )))
    };
    if target.is_empty() {
        return Err(Status::invalid_argument("target path missing"));
    }
    if target.contains('\0') {
        return bad("contains NUL");
    }
    let path = Path::new(target);
    if !path.is_absolute() {
        return bad("is not absolute");
    }
    // Path::components() drops inner `.` components: look at the text.
    if target.split('/').any(|c| c == "." || c == "..") {
        return bad("has . or .. components");
    }
    if path.parent().is_none() {
        return bad("is the root directory");
    }
    Ok(path.to_path_buf())
}

/// Makes sure `target` is a directory: creates it (mode 0755) when only its parent exists.
/// Returns whether it was created here.
pub(super) fn prepare(target: &Path) -> Result<bool, Status> {
    let shown = target.display();
    match std::fs::symlink_metadata(target) {
        Ok(m) if m.is_dir() => return Ok(false),
        Ok(_) => {
            return Err(Status::invalid_argument(format!(
                "target path {shown} exists and is not a directory"
            )))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(Status::internal(format!("target path {shown}: {e}"))),
    }
    let parent = target.parent().unwrap_or(Path::new("/"));
    match std::fs::metadata(parent) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(Status::invalid_argument(format!(
                "parent of target path {shown} is not a directory"
            )))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(Status::not_found(format!(
                "parent of target path {shown} does not exist"
            )))
        }
        Err(e) => return Err(Status::internal(format!("parent of {shown}: {e}"))),
    }
    match std::fs::DirBuilder::new().mode(0o755).create(target) {
        Ok(()) => {
            // The umask may have narrowed the mode.
            std::fs::set_permissions(target, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| Status::internal(format!("chmod {shown}: {e}")))?;
            Ok(true)
        }
        // Created concurrently: the existing-directory case again.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => prepare(target),
        Err(e) => Err(Status::internal(format!("mkdir {shown}: {e}"))),
    }
}

/// Whether something is mounted at `path`, from `/proc/self/mountinfo`. The target itself is
/// never touched (a hung FUSE mount would block); its parent is canonicalised.
pub(super) fn is_mount_point(path: &Path) -> io::Result<bool> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Ok(true);
    };
    let wanted = std::fs::canonicalize(parent)?.join(name);
    Ok(crate::mount::mountinfo::read()?
        .iter()
        .any(|m| m.mount_point == wanted))
}

/// Removes `target` if it is an empty directory that nothing is mounted on; anything else
/// (gone already, not empty, not a directory) is left as it is.
pub(super) fn remove_if_unused(target: &Path) -> Result<(), Status> {
    let shown = target.display();
    match is_mount_point(target) {
        Ok(false) => {}
        Ok(true) => {
            return Err(Status::internal(format!(
                "target path {shown} is still a mount point after unpublishing"
            )))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Status::internal(format!("mount table for {shown}: {e}"))),
    }
    match std::fs::remove_dir(target) {
        Ok(()) => Ok(()),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::NotFound
                    | io::ErrorKind::DirectoryNotEmpty
                    | io::ErrorKind::NotADirectory
            ) =>
        {
            Ok(())
        }
        Err(e) => Err(Status::internal(format!("rmdir {shown}: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_targets() {
        assert!(validate("/var/lib/x/target").is_ok());
        for bad in ["", "rel/x", "/", "/a/../b", "/a/./b", "/a\0b"] {
            assert!(validate(bad).is_err(), "{bad:?}");
        }
    }
}
