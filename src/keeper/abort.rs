//! Aborting a FUSE connection nobody serves any more: processes using the mount get
//! `ENOTCONN` instead of hanging, and the mount point is detached.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::mount::{umount2, MntFlags};

use super::Kept;

/// Where the kernel lists FUSE connections (the `fusectl` filesystem).
const FUSECTL: &str = "/sys/fs/fuse/connections";

/// Aborts `kept` (held under `key`) and says why in the log. In this order: the fusectl
/// `abort` file while the keeper still holds `/dev/fuse` (so the connection number cannot
/// have been reused by another mount), then the descriptors are closed (the last
/// `/dev/fuse` one closing aborts the connection too, even without fusectl), then the
/// mount point is detached.
pub(super) fn abort(key: &str, kept: Kept, why: &str) {
    let Kept {
        mountpoint,
        fusectl,
        fds,
    } = kept;
    if let Some(n) = fusectl {
        let file = Path::new(FUSECTL).join(n.to_string()).join("abort");
        if file.exists() {
            if let Err(e) = std::fs::write(&file, b"1") {
                tracing::warn!("keeper: writing {}: {e}", file.display());
            }
        }
    }
    drop(fds);
    detach(&mountpoint);
    tracing::warn!(
        "keeper: aborted {key} (FUSE mount at {}): {why}",
        mountpoint.display()
    );
}

/// Lazily unmounts `mountpoint` if this namespace has a FUSE filesystem mounted exactly
/// there. The check matters: a deposit names any path, and a keeper running as root must
/// not detach, say, `/` because a client said so or a FUSE mount went away by itself.
fn detach(mountpoint: &Path) {
    if !is_fuse_mount(mountpoint) {
        return;
    }
    match umount2(mountpoint, MntFlags::MNT_DETACH) {
        // Not (or no longer) a mount point, or gone: nothing is left to detach.
        Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => {}
        Err(e) => tracing::warn!("keeper: detaching {}: {e}", mountpoint.display()),
    }
}

/// Whether `/proc/self/mountinfo` lists a `fuse`/`fuse.*`/`fuseblk` mount at `mountpoint`.
fn is_fuse_mount(mountpoint: &Path) -> bool {
    let Ok(text) = std::fs::read("/proc/self/mountinfo") else {
        return false;
    };
    fuse_mounted_at(&text, &escape(mountpoint.as_os_str().as_bytes()))
}

/// Whether mountinfo `text` has a FUSE mount whose (escaped) mount point is `escaped`.
fn fuse_mounted_at(text: &[u8], escaped: &[u8]) -> bool {
    text.split(|&b| b == b'\n').any(|line| {
        // " - " ends the optional fields; an escaped mount point has no spaces.
        let Some(sep) = line.windows(3).position(|w| w == b" - ") else {
            return false;
        };
        let (head, tail) = (&line[..sep], &line[sep + 3..]);
        let point = head.split(|&b| b == b' ').nth(4);
        let fstype = tail.split(|&b| b == b' ').find(|f| !f.is_empty());
        point == Some(escaped) && fstype.is_some_and(|t| t.starts_with(b"fuse"))
    })
}

/// A path as mountinfo writes it: space, tab, newline and backslash as octal escapes.
fn escape(path: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len());
    for &b in path {
        match b {
            b' ' | b'\t' | b'\n' | b'\\' => out.extend(format!("\\{b:03o}").bytes()),
            _ => out.push(b),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &[u8] = b"22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw\n\
        36 22 0:42 / /mnt/a\\040b rw,nosuid shared:9 - fuse.lazyroot lazyroot rw,user_id=0\n\
        37 22 0:43 / /run/x-y rw - fuse lazyroot rw\n\
        38 22 0:44 / /tmp rw - tmpfs tmpfs rw\n";

    #[test]
    fn finds_fuse_mounts_only() {
        assert!(fuse_mounted_at(MOUNTINFO, &escape(b"/mnt/a b")));
        // The '-' inside a mount point is not the separator.
        assert!(fuse_mounted_at(MOUNTINFO, &escape(b"/run/x-y")));
        assert!(!fuse_mounted_at(MOUNTINFO, &escape(b"/")));
        assert!(!fuse_mounted_at(MOUNTINFO, &escape(b"/tmp")));
        assert!(!fuse_mounted_at(MOUNTINFO, &escape(b"/mnt/a")));
    }

    #[test]
    fn escapes_like_the_kernel() {
        assert_eq!(escape(b"/a b\\c\td\ne"), b"/a\\040b\\134c\\011d\\012e");
    }
}
