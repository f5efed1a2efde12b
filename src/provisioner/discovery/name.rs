//! What an appc simple-discovery request names. Mesos's appc fetcher asks for
//! `<prefix><name>-<version>-<os>-<arch>.aci`; lazyroot's image names are `<fqrn><path>`
//! (e.g. `images.example.org/team/app`). Names and versions (tags) may both hold dashes, so
//! a request can be read several ways: [`candidates`] lists them, the one whose version
//! has no dash first (root hashes and `latest` never have one).

/// One reading of a request: which image, at which version, for which platform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The repository (the name up to its first `/`).
    pub fqrn: String,
    /// The image's path in the repository, starting with `/`.
    pub path: String,
    /// The version asked for: `latest`, a root hash or a tag, exactly as sent.
    pub version: String,
    /// The `os` label asked for.
    pub os: String,
    /// The `arch` label asked for.
    pub arch: String,
}

impl Request {
    /// The image's appc name, as the agent sent it.
    pub fn name(&self) -> String {
        format!("{}{}", self.fqrn, self.path)
    }
}

/// Why a request path names no image at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The path does not end in `.aci`.
    #[error("{0:?}: not an ACI (the path must end in .aci)")]
    NotAci(String),
    /// Fewer than the four dash-separated parts `<name>-<version>-<os>-<arch>`.
    #[error("{0:?}: not <name>-<version>-<os>-<arch>.aci")]
    Shape(String),
    /// The name has no `/`: lazyroot names are `<repository>/<path>`.
    #[error("{0:?}: an image name is <repository>/<path in the repository>")]
    NoPath(String),
    /// Percent-escapes or characters a name never has.
    #[error("{0:?}: characters outside letters, digits and . _ - / ~ +")]
    Characters(String),
}

/// Longest request path accepted: names are repository paths, not essays.
const MAX_LEN: usize = 4096;

/// Every reading of `path` (the URL path after the discovery prefix), most likely first.
pub fn candidates(path: &str) -> Result<Vec<Request>, NameError> {
    let p = path.trim_start_matches('/');
    if p.len() > MAX_LEN
        || !p
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-/~+".contains(&b))
        || p.split('/').any(|c| c == ".." || c == ".")
    {
        return Err(NameError::Characters(path.to_string()));
    }
    let stem = p
        .strip_suffix(".aci")
        .ok_or_else(|| NameError::NotAci(path.to_string()))?;
    let mut parts = stem.rsplitn(3, '-');
    let (Some(arch), Some(os), Some(rest)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(NameError::Shape(path.to_string()));
    };
    let mut out = Vec::new();
    // Each dash of `rest` could end the name; the rightmost first.
    for (i, _) in rest.match_indices('-').rev() {
        let (name, version) = (&rest[..i], &rest[i + 1..]);
        let Some((fqrn, sub)) = name.split_once('/') else {
            continue;
        };
        if fqrn.is_empty() || sub.is_empty() || version.is_empty() {
            continue;
        }
        out.push(Request {
            fqrn: fqrn.to_string(),
            path: format!("/{sub}"),
            version: version.to_string(),
            os: os.to_string(),
            arch: arch.to_string(),
        });
    }
    if out.is_empty() {
        return Err(if rest.contains('/') {
            NameError::Shape(path.to_string())
        } else {
            NameError::NoPath(path.to_string())
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(p: &str) -> Vec<(String, String, String)> {
        candidates(p)
            .unwrap()
            .into_iter()
            .map(|r| (r.fqrn, r.path, r.version))
            .collect()
    }

    #[test]
    fn requests_are_read_every_way_rightmost_dash_first() {
        let s = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
        assert_eq!(
            read("/demo.example.org/images/busybox-latest-linux-amd64.aci"),
            [s("demo.example.org", "/images/busybox", "latest")]
        );
        assert_eq!(
            read("demo.example.org/team/my-app-v1-rc-linux-amd64.aci"),
            [
                s("demo.example.org", "/team/my-app-v1", "rc"),
                s("demo.example.org", "/team/my-app", "v1-rc"),
                s("demo.example.org", "/team/my", "app-v1-rc"),
            ]
        );
        let r = &candidates("/a.org/x-latest-linux-aarch64.aci").unwrap()[0];
        assert_eq!((r.os.as_str(), r.arch.as_str()), ("linux", "aarch64"));
        assert_eq!(r.name(), "a.org/x");
    }

    #[test]
    fn what_is_not_a_request_is_named() {
        for (p, why) in [
            ("/a.org/x-latest-linux-amd64.tar", "not an ACI"),
            ("/a.org/x-linux.aci", "not <name>"),
            ("/busybox-latest-linux-amd64.aci", "<repository>/<path"),
            ("/a.org/../etc-latest-linux-amd64.aci", "characters"),
            ("/a.org/x%2e-latest-linux-amd64.aci", "characters"),
        ] {
            let e = candidates(p).unwrap_err().to_string();
            assert!(e.contains(why), "{p}: {e}");
        }
    }
}
