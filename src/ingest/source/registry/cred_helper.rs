//! Docker credential helpers (`credHelpers` and `credsStore` in `config.json`): the
//! program `docker-credential-<name>` is run with `get`, the registry's server URL on
//! standard input, and answers `{"ServerURL","Username","Secret"}`. This is how ECR, GCR,
//! ACR and desktop keychains hand out credentials, so an operator's existing Docker
//! login works unchanged. The helper's answer is untrusted like any input: bounded in time
//! and size, and a malformed one is an error naming the helper.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Longest a helper may take (it may ask a cloud API for a token).
const HELPER_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest answer read from a helper.
const MAX_ANSWER: u64 = 64 << 10;

/// Why a credential helper gave nothing usable.
#[derive(Debug, thiserror::Error)]
pub enum HelperFault {
    /// The helper's name could reach another program (`/`, `..`, or empty).
    #[error("the helper name is not a plain name")]
    BadName,
    /// The helper could not be started or talked to.
    #[error("running it: {0}")]
    Run(#[source] std::io::Error),
    /// The helper did not answer in time (it was killed).
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The helper failed for another reason than "not found".
    #[error("it exited with {status}: {stderr}")]
    Failed {
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it said (the first line, bounded).
        stderr: String,
    },
    /// The helper printed more than an answer can be.
    #[error("its answer is larger than {0} bytes")]
    TooLarge(u64),
    /// The answer is not the helper protocol's JSON.
    #[error("its answer is not {{\"Username\", \"Secret\"}} JSON: {0}")]
    Answer(#[source] serde_json::Error),
    /// An identity token (`Username` `<token>`), which needs an OAuth2 exchange this
    /// client does not make.
    #[error("it gave an identity token, which is not supported; log in with a password or an access token")]
    IdentityToken,
}

/// The server URL a helper knows `registry` by: Docker Hub's historical URL for Docker
/// Hub, else the host itself (as `docker login HOST` stores it).
pub fn server_url(registry: &str) -> String {
    match registry {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => {
            "https://index.docker.io/v1/".to_string()
        }
        other => other.to_string(),
    }
}

/// Asks `docker-credential-<helper>` for `registry`'s credentials; `None` when the helper
/// has none for it.
pub fn get(helper: &str, registry: &str) -> Result<Option<(String, String)>, HelperFault> {
    if helper.is_empty() || helper.contains('/') || helper.starts_with('.') {
        return Err(HelperFault::BadName);
    }
    let mut child = Command::new(format!("docker-credential-{helper}"))
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(HelperFault::Run)?;
    let mut stdin = child.stdin.take().expect("piped");
    // A helper that does not read its input must not block us: the write is small, and a
    // broken pipe is the helper's answer to judge, not ours.
    let _ = stdin.write_all(server_url(registry).as_bytes());
    drop(stdin);
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    // Read both pipes on threads so a chatty helper cannot fill one and stall; their
    // results come back on channels, so that a process the helper left holding a pipe
    // open cannot keep us past the deadline.
    let reader = |pipe: Box<dyn Read + Send>| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut b = Vec::new();
            let _ = pipe.take(MAX_ANSWER + 1).read_to_end(&mut b);
            let _ = tx.send(b);
        });
        rx
    };
    let out = reader(Box::new(stdout));
    let err = reader(Box::new(stderr));
    let deadline = Instant::now() + HELPER_TIMEOUT;
    let status = loop {
        if let Some(s) = child.try_wait().map_err(HelperFault::Run)? {
            break s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(HelperFault::Timeout(HELPER_TIMEOUT));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let collect = |rx: std::sync::mpsc::Receiver<Vec<u8>>| {
        rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .map_err(|_| HelperFault::Timeout(HELPER_TIMEOUT))
    };
    let out = collect(out)?;
    let err = collect(err)?;
    if out.len() as u64 > MAX_ANSWER {
        return Err(HelperFault::TooLarge(MAX_ANSWER));
    }
    let said = String::from_utf8_lossy(&err);
    let said = said.lines().next().unwrap_or("").trim();
    if !status.success() {
        // The protocol's "nothing stored for this server" (docker-credential-helpers'
        // ErrCredentialsNotFound) is printed on stdout; some helpers use stderr.
        let text = format!("{} {said}", String::from_utf8_lossy(&out));
        if text.contains("credentials not found") {
            return Ok(None);
        }
        return Err(HelperFault::Failed {
            status,
            stderr: said.chars().take(200).collect(),
        });
    }
    #[derive(serde::Deserialize)]
    struct Answer {
        #[serde(rename = "Username")]
        username: String,
        #[serde(rename = "Secret")]
        secret: String,
    }
    let a: Answer = serde_json::from_slice(&out).map_err(HelperFault::Answer)?;
    if a.username == "<token>" {
        return Err(HelperFault::IdentityToken);
    }
    Ok(Some((a.username, a.secret)))
}
