//! The xattr blob of a catalog row (`xattr.cc`): `[u8 version=1][u8 count]` then, ordered by
//! key, `[u8 key_len][u8 value_len][key][value]` per attribute.

use std::collections::BTreeMap;

/// The extended attributes of one entry: name to value, ordered by name as the blob is.
pub type Xattrs = BTreeMap<Vec<u8>, Vec<u8>>;

/// Largest key or value the u8 lengths can carry.
pub const MAX_LEN: usize = 255;
/// Most attributes the u8 count can carry.
pub const MAX_COUNT: usize = 255;

/// Why attributes cannot be encoded or a blob cannot be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum XattrError {
    /// A name or value is longer than [`MAX_LEN`] bytes, or a name is empty; carries the name.
    #[error("extended attribute {0:?}: name or value longer than 255 bytes, which the catalog format cannot store")]
    TooLong(String),
    /// More than [`MAX_COUNT`] attributes.
    #[error("more than 255 extended attributes, which the catalog format cannot store")]
    TooMany,
    /// The blob does not follow the layout; says where it breaks.
    #[error("malformed xattr blob: {0}")]
    Malformed(&'static str),
}

/// Encodes attributes as a version-1 blob; fails on what the u8 lengths and count cannot hold
/// and on empty names.
pub fn encode(attrs: &Xattrs) -> Result<Vec<u8>, XattrError> {
    if attrs.len() > MAX_COUNT {
        return Err(XattrError::TooMany);
    }
    let mut out = vec![1u8, attrs.len() as u8];
    for (k, v) in attrs {
        if k.len() > MAX_LEN || v.len() > MAX_LEN || k.is_empty() {
            return Err(XattrError::TooLong(String::from_utf8_lossy(k).into_owned()));
        }
        out.push(k.len() as u8);
        out.push(v.len() as u8);
        out.extend_from_slice(k);
        out.extend_from_slice(v);
    }
    Ok(out)
}

/// Decodes a version-1 blob; rejects other versions, empty names, truncated attributes and
/// trailing bytes.
pub fn decode(blob: &[u8]) -> Result<Xattrs, XattrError> {
    let (&version, rest) = blob.split_first().ok_or(XattrError::Malformed("empty"))?;
    if version != 1 {
        return Err(XattrError::Malformed("unknown version"));
    }
    let (&count, mut rest) = rest
        .split_first()
        .ok_or(XattrError::Malformed("no count"))?;
    let mut out = Xattrs::new();
    for _ in 0..count {
        if rest.len() < 2 {
            return Err(XattrError::Malformed("truncated header"));
        }
        let (kl, vl) = (rest[0] as usize, rest[1] as usize);
        // No attribute has an empty name; `encode` refuses one, so accepting it here would
        // give rows a publisher cannot write back (and an empty entry in `listxattr`).
        if kl == 0 {
            return Err(XattrError::Malformed("empty name"));
        }
        rest = &rest[2..];
        if rest.len() < kl + vl {
            return Err(XattrError::Malformed("truncated attribute"));
        }
        out.insert(rest[..kl].to_vec(), rest[kl..kl + vl].to_vec());
        rest = &rest[kl + vl..];
    }
    if !rest.is_empty() {
        return Err(XattrError::Malformed("trailing bytes"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let mut a = Xattrs::new();
        assert_eq!(encode(&a).unwrap(), vec![1, 0]);
        a.insert(b"user.b".to_vec(), b"".to_vec());
        a.insert(b"security.capability".to_vec(), vec![1, 0, 0, 2]);
        let blob = encode(&a).unwrap();
        assert_eq!(&blob[..4], &[1, 2, 19, 4]);
        assert_eq!(decode(&blob).unwrap(), a);
        for bad in [
            &[][..],
            &[2, 0],
            &[1, 1, 5],
            &[1, 1, 1, 1, b'k'],
            &[1, 0, 9],
        ] {
            assert!(decode(bad).is_err(), "{bad:?}");
        }
        a.insert(vec![b'k'; 256], vec![]);
        assert!(matches!(encode(&a), Err(XattrError::TooLong(_))));
    }
}
