//! The signed-letter layout shared by the manifest and the whitelist:
//! `body` (lines), `--\n`, the hex hash of the body, `\n`, then the binary signature.

/// Why bytes do not split into a signed letter.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LetterError {
    /// No `--` line; carries what was being read.
    #[error("{0}: no `--` separator line, so it is not signed")]
    NoSeparator(&'static str),
    /// Nothing newline-terminated after `--`; carries what was being read.
    #[error("{0}: no hash line after the `--` separator")]
    NoHash(&'static str),
    /// Larger than [`MAX_LETTER`].
    #[error("{what}: larger than {limit} bytes")]
    TooLarge {
        /// What was being read (`manifest`, `whitelist`).
        what: &'static str,
        /// The limit in bytes.
        limit: usize,
    },
}

/// A letter split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Letter<'a> {
    /// Everything up to and including the newline before `--`.
    pub body: &'a [u8],
    /// The hex hash written after `--`.
    pub hash_hex: &'a [u8],
    /// The signature bytes after the hash line (possibly empty: unsigned).
    pub signature: &'a [u8],
}

/// Largest letter accepted, in bytes (1 MiB): a bound on what a server can make us parse.
pub const MAX_LETTER: usize = 1 << 20;

impl<'a> Letter<'a> {
    /// Splits `bytes` at the first `--` line; `what` names the document in errors. Checks neither
    /// the hash nor the signature.
    pub fn split(what: &'static str, bytes: &'a [u8]) -> Result<Self, LetterError> {
        if bytes.len() > MAX_LETTER {
            return Err(LetterError::TooLarge {
                what,
                limit: MAX_LETTER,
            });
        }
        // The separator is a line of its own: at the start, or after a newline.
        let sep = if bytes.starts_with(b"--\n") {
            0
        } else {
            bytes
                .windows(4)
                .position(|w| w == b"\n--\n")
                .map(|p| p + 1)
                .ok_or(LetterError::NoSeparator(what))?
        };
        let body = &bytes[..sep];
        let rest = &bytes[sep + 3..];
        let nl = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or(LetterError::NoHash(what))?;
        Ok(Letter {
            body,
            hash_hex: &rest[..nl],
            signature: &rest[nl + 1..],
        })
    }

    /// Assembles a letter from a body (ending in a newline), hash line and signature: the inverse
    /// of [`split`](Self::split).
    pub fn compose(body: &[u8], hash_hex: &str, signature: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(body.len() + hash_hex.len() + signature.len() + 8);
        out.extend_from_slice(body);
        out.extend_from_slice(b"--\n");
        out.extend_from_slice(hash_hex.as_bytes());
        out.push(b'\n');
        out.extend_from_slice(signature);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_and_compose() {
        let raw = Letter::compose(b"Cabc\nS2\n", "ff00", b"\x00--\n\x01");
        let l = Letter::split("manifest", &raw).unwrap();
        assert_eq!(
            (l.body, l.hash_hex, l.signature),
            (&b"Cabc\nS2\n"[..], &b"ff00"[..], &b"\x00--\n\x01"[..])
        );
        assert_eq!(
            Letter::split("manifest", b"Cabc\nS2\n"),
            Err(LetterError::NoSeparator("manifest"))
        );
        assert_eq!(
            Letter::split("manifest", b"Cabc\n--\nff"),
            Err(LetterError::NoHash("manifest"))
        );
    }
}
