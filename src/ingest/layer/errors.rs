//! Why a layer was refused: the layer's digest, the member (when one is to blame) and the
//! reason, with the underlying error kept as the source.

use crate::repository::source::IoError;

/// A layer that cannot be read or applied. Nothing of it may be published.
#[derive(Debug, thiserror::Error)]
#[error("layer {layer}: {}{problem}", member_prefix(.member))]
pub struct LayerError {
    /// The layer's digest (`sha256:…`), as the caller named it.
    pub layer: String,
    /// The member's name as the tar stream gives it (non-printable bytes escaped), or
    /// `None` when the stream as a whole is at fault (a digest mismatch, a broken stream
    /// between members).
    pub member: Option<String>,
    /// What is wrong.
    #[source]
    pub problem: Problem,
}

fn member_prefix(member: &Option<String>) -> String {
    match member {
        Some(m) => format!("member {m:?}: "),
        None => String::new(),
    }
}

impl LayerError {
    /// An error of `layer` about member `member` (raw name bytes).
    pub fn member(layer: &str, member: &[u8], problem: Problem) -> Self {
        LayerError {
            layer: layer.to_string(),
            member: Some(crate::repository::listing::escape(member)),
            problem,
        }
    }

    /// An error of `layer` as a whole.
    pub fn stream(layer: &str, problem: Problem) -> Self {
        LayerError {
            layer: layer.to_string(),
            member: None,
            problem,
        }
    }
}

/// The reason a layer is refused.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    /// The name is empty.
    #[error("empty name")]
    EmptyName,
    /// The name is absolute: it would land outside the image root.
    #[error("absolute name: it escapes the image root")]
    Absolute,
    /// The name has a `..` component: it would land outside the image root.
    #[error("name with a `..` component: it escapes the image root")]
    DotDot,
    /// The name has more components than the publisher nests directories.
    #[error("name more than {0} directories deep")]
    TooDeep(usize),
    /// The name holds a NUL byte.
    #[error("name with a NUL byte")]
    NulInName,
    /// A parent of the member is a symlink of the image. Following it is how members
    /// escape the root, so members are never placed through one.
    #[error(
        "its parent {0:?} is a symlink in the image; members are never placed through symlinks"
    )]
    ThroughSymlink(String),
    /// A parent of the member is neither a directory nor a symlink.
    #[error("its parent {0:?} is not a directory")]
    ParentNotDirectory(String),
    /// The root directory would become something else.
    #[error("the image root can only be a directory, not a {0}")]
    RootType(&'static str),
    /// A hard link whose target is absolute or climbs out with `..`.
    #[error("hard link to {0:?}, which is outside the image")]
    LinkOutside(String),
    /// A hard link to an entry that does not exist (in this layer so far or below it).
    #[error("hard link to {0:?}, which does not exist")]
    LinkMissing(String),
    /// A hard link to a directory.
    #[error("hard link to {0:?}, which is a directory")]
    LinkToDirectory(String),
    /// A whiteout of `.`, `..` or of nothing (`.wh.` alone).
    #[error("whiteout of {0:?}, which is not a name")]
    BadWhiteout(String),
    /// A symlink with an empty target (no filesystem can hold one).
    #[error("symlink with an empty target")]
    EmptySymlink,
    /// A member type this reader does not apply (GNU sparse files, volume labels, …).
    #[error("unsupported member type {0:?}")]
    Unsupported(char),
    /// A PAX or GNU long-name header larger than the limit.
    #[error("{what} header of {size} bytes is larger than the limit of {limit} bytes")]
    HeaderTooLarge {
        /// Which header: `PAX`, `GNU long name`, …
        what: &'static str,
        /// Its size as declared.
        size: u64,
        /// [`super::ReadLimits::max_header_bytes`].
        limit: u64,
    },
    /// A header block or PAX record that does not parse.
    #[error("malformed header: {0}")]
    BadHeader(String),
    /// More members than the limit.
    #[error("more than {0} members")]
    TooManyMembers(u64),
    /// The uncompressed stream outgrew the limit: a decompression bomb, or a layer larger
    /// than this publisher accepts.
    #[error(
        "decompression bomb: {uncompressed} bytes uncompressed from {compressed} compressed \
         bytes, over the limit ({limit})"
    )]
    Expansion {
        /// Uncompressed bytes read when the limit tripped.
        uncompressed: u64,
        /// Compressed bytes read by then.
        compressed: u64,
        /// The limit, in words.
        limit: String,
    },
    /// The uncompressed stream's SHA-256 is not the layer's diff_id.
    #[error("the uncompressed stream has digest {got}, the image says its diff_id is {want}")]
    DiffId {
        /// What the image configuration says.
        want: String,
        /// What the stream hashed to.
        got: String,
    },
    /// Reading the stream failed: truncated, corrupt compression, or the source failed.
    #[error("reading the layer: {0}")]
    Read(#[source] std::io::Error),
    /// Storing a file's content as objects failed.
    #[error("storing its content: {0}")]
    Store(#[source] IoError),
    /// Remembered entries that do not decode.
    #[error("remembered entries do not decode: {0}")]
    Decode(#[source] serde_json::Error),
}
