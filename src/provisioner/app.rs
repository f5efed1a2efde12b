//! The appc `app` section of an ingested image's manifest, from its OCI config
//! ([`ImageMeta`]): Mesos's `appc/runtime` isolator runs `exec` when the task gives no
//! command, with the image's `environment` and `workingDirectory`, so a task that names an
//! image and nothing else runs the image's own entrypoint as `docker run` would.

use crate::ingest::meta::ImageMeta;

/// The `app` object, or `None` when the image names no command (appc requires `exec` to
/// run anything). `primary_group` gives a user's group from the image's `/etc/passwd`,
/// for a `User` without one (as Docker does); without it, a non-root user's group falls
/// back to the user's own number or name, never to root's group.
pub fn app(
    meta: &ImageMeta,
    primary_group: impl Fn(&str) -> Option<String>,
) -> Option<serde_json::Value> {
    let exec = meta.command();
    if exec.is_empty() {
        return None;
    }
    let (user, group) = match meta.user.split_once(':') {
        Some((u, g)) => (u.to_string(), g.to_string()),
        None if meta.user.is_empty() || meta.user == "0" || meta.user == "root" => {
            ("0".to_string(), "0".to_string())
        }
        None => {
            let g = primary_group(&meta.user).unwrap_or_else(|| meta.user.clone());
            (meta.user.clone(), g)
        }
    };
    let environment: Vec<serde_json::Value> = meta
        .env
        .iter()
        .filter_map(|e| e.split_once('='))
        .map(|(name, value)| serde_json::json!({ "name": name, "value": value }))
        .collect();
    let mut app = serde_json::json!({
        "exec": exec,
        "user": user,
        "group": group,
        "environment": environment,
    });
    if !meta.working_dir.is_empty() {
        app["workingDirectory"] = meta.working_dir.clone().into();
    }
    Some(app)
}

/// The primary group of `user` (a name or a uid) in the text of an `/etc/passwd`.
pub fn passwd_group(passwd: &str, user: &str) -> Option<String> {
    passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.len() >= 4 && (f[0] == user || f[2] == user)).then(|| f[3].to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(user: &str) -> ImageMeta {
        ImageMeta {
            source: "r/app:1".into(),
            manifest_digest: String::new(),
            config_digest: String::new(),
            platform: "linux/amd64".into(),
            entrypoint: vec!["/usr/bin/python3".into()],
            cmd: vec!["-c".into(), "print(1)".into()],
            env: vec!["PATH=/usr/bin:/bin".into(), "A=b=c".into(), "junk".into()],
            working_dir: "/srv".into(),
            user: user.into(),
            labels: Default::default(),
        }
    }

    #[test]
    fn the_image_config_becomes_the_app() {
        let a = app(&meta(""), |_| None).unwrap();
        assert_eq!(
            a["exec"],
            serde_json::json!(["/usr/bin/python3", "-c", "print(1)"])
        );
        assert_eq!(a["user"], "0");
        assert_eq!(a["group"], "0");
        assert_eq!(a["workingDirectory"], "/srv");
        assert_eq!(
            a["environment"],
            serde_json::json!([
                {"name": "PATH", "value": "/usr/bin:/bin"},
                {"name": "A", "value": "b=c"}
            ])
        );
        let passwd = "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/srv:/bin/sh\n";
        let a = app(&meta("app"), |u| passwd_group(passwd, u)).unwrap();
        assert_eq!(
            (a["user"].as_str(), a["group"].as_str()),
            (Some("app"), Some("1001"))
        );
        let a = app(&meta("1000"), |u| passwd_group(passwd, u)).unwrap();
        assert_eq!(a["group"], "1001");
        let a = app(&meta("nobody"), |_| None).unwrap();
        assert_eq!(a["group"], "nobody", "never root's group by default");
        let a = app(&meta("5:6"), |_| None).unwrap();
        assert_eq!(
            (a["user"].as_str(), a["group"].as_str()),
            (Some("5"), Some("6"))
        );
        let mut none = meta("");
        none.entrypoint.clear();
        none.cmd.clear();
        assert!(app(&none, |_| None).is_none());
    }
}
