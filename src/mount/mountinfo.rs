//! `/proc/self/mountinfo`, the one parser: which filesystems are mounted where in this
//! mount namespace (proc(5)). Fields are space-separated; a mount point's space, tab,
//! newline and backslash are octal escapes (`\040`), undone here byte for byte, so paths
//! that are not UTF-8 compare exactly.

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

/// One mount: its device number and where it is mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// Major number of the mounted filesystem's device (`st_dev`).
    pub major: u32,
    /// Minor number of the mounted filesystem's device (`st_dev`).
    pub minor: u32,
    /// Where it is mounted, unescaped, in this namespace.
    pub mount_point: PathBuf,
}

/// The mounts of this process's mount namespace.
pub fn read() -> std::io::Result<Vec<MountEntry>> {
    Ok(parse(&std::fs::read("/proc/self/mountinfo")?))
}

/// Parses mountinfo text; malformed lines are skipped.
pub fn parse(text: &[u8]) -> Vec<MountEntry> {
    text.split(|&b| b == b'\n')
        .filter_map(|line| {
            let mut fields = line.split(|&b| b == b' ');
            let dev = fields.nth(2)?;
            let mount_point = fields.nth(1)?;
            let dev = std::str::from_utf8(dev).ok()?;
            let (major, minor) = dev.split_once(':')?;
            Some(MountEntry {
                major: major.parse().ok()?,
                minor: minor.parse().ok()?,
                mount_point: PathBuf::from(OsString::from_vec(unescape(mount_point))),
            })
        })
        .collect()
}

/// Undoes mountinfo's octal escapes (`\040` for a space, and so on); a backslash not
/// followed by three octal digits stays as it is.
fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let octal = field
            .get(i + 1..i + 4)
            .filter(|d| field[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal {
            Some(d) => {
                out.push(d.iter().fold(0u8, |n, b| n.wrapping_mul(8) + (b - b'0')));
                i += 4;
            }
            None => {
                out.push(field[i]);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescapes_mount_points() {
        assert_eq!(unescape(br"/a\040b\134c\011d\012e"), b"/a b\\c\td\ne");
        assert_eq!(unescape(br"/x\04"), br"/x\04");
        assert_eq!(unescape(b"/\xff"), b"/\xff");
    }

    #[test]
    fn parses_lines() {
        let text = b"36 35 0:42 / /mnt/a\\040b rw,relatime shared:1 - fuse lazyroot rw\n\
                     garbage\n\
                     37 35 8:1 /sub /srv ro - ext4 /dev/sda1 ro\n";
        assert_eq!(
            parse(text),
            vec![
                MountEntry {
                    major: 0,
                    minor: 42,
                    mount_point: "/mnt/a b".into()
                },
                MountEntry {
                    major: 8,
                    minor: 1,
                    mount_point: "/srv".into()
                },
            ]
        );
    }
}
