//! PAX extended header records (`LEN KEY=VALUE\n`), parsed by their length so that values
//! may hold any byte (binary xattr values do hold newlines), and PAX times.

/// One record: the key and the raw value.
pub type Record = (Vec<u8>, Vec<u8>);

/// Parses the records of a PAX header's data, in order. Each record says its own length
/// (the decimal length, a space, `KEY=VALUE` and a newline); anything else is refused.
pub fn parse(mut data: &[u8]) -> Result<Vec<Record>, String> {
    let mut out = Vec::new();
    // Trailing NUL padding is not a record.
    while !data.is_empty() && data.iter().any(|&b| b != 0) {
        let space = data
            .iter()
            .take(20)
            .position(|&b| b == b' ')
            .ok_or("PAX record without a length")?;
        let len: usize = std::str::from_utf8(&data[..space])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or("PAX record with a bad length")?;
        if len <= space + 1 || len > data.len() || data[len - 1] != b'\n' {
            return Err("PAX record whose length does not match".into());
        }
        let body = &data[space + 1..len - 1];
        let eq = body
            .iter()
            .position(|&b| b == b'=')
            .ok_or("PAX record without `=`")?;
        out.push((body[..eq].to_vec(), body[eq + 1..].to_vec()));
        data = &data[len..];
    }
    Ok(out)
}

/// A PAX time (`mtime`): decimal seconds, optionally negative, with an optional fraction;
/// digits past nanoseconds are dropped. Returns (seconds, nanoseconds) with the
/// nanoseconds always non-negative, as `struct timespec` has them.
pub fn time(value: &[u8]) -> Option<(i64, u32)> {
    let s = std::str::from_utf8(value).ok()?;
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    if secs.is_empty() || !secs.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: i64 = secs.parse().ok()?;
    let mut ns: u32 = 0;
    for (i, d) in frac.bytes().take(9).enumerate() {
        ns += u32::from(d - b'0') * 10u32.pow(8 - i as u32);
    }
    if !neg {
        return Some((secs, ns));
    }
    if ns == 0 {
        Some((-secs, 0))
    } else {
        Some((-secs - 1, 1_000_000_000 - ns))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(k: &[u8], v: &[u8]) -> Vec<u8> {
        let body = [k, b"=", v, b"\n"].concat();
        let mut len = body.len() + 2;
        loop {
            let l = format!("{len} ");
            if l.len() + body.len() == len {
                return [l.as_bytes(), &body].concat();
            }
            len = l.len() + body.len();
        }
    }

    #[test]
    fn records_with_binary_values_parse() {
        let data = [
            record(b"path", b"a/b"),
            record(b"SCHILY.xattr.user.x", b"\n\0\xff="),
        ]
        .concat();
        assert_eq!(
            parse(&data).unwrap(),
            vec![
                (b"path".to_vec(), b"a/b".to_vec()),
                (b"SCHILY.xattr.user.x".to_vec(), b"\n\0\xff=".to_vec()),
            ]
        );
        assert!(parse(b"99 path=x\n").is_err());
        assert!(parse(b"5 x\n").is_err());
        assert!(parse(b"path=x\n").is_err());
    }

    #[test]
    fn times() {
        assert_eq!(
            time(b"1700000000.123456789"),
            Some((1_700_000_000, 123_456_789))
        );
        assert_eq!(time(b"12.5"), Some((12, 500_000_000)));
        assert_eq!(time(b"12.1234567891"), Some((12, 123_456_789)));
        assert_eq!(time(b"-1.25"), Some((-2, 750_000_000)));
        assert_eq!(time(b"7"), Some((7, 0)));
        assert_eq!(time(b"x"), None);
        assert_eq!(time(b"1.x"), None);
    }
}
