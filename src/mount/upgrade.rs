//! Upgrading a daemon in place: it starts the binary now installed at its own path, with
//! its own arguments, and waits until that one is ready to take its connections over; then
//! it stops serving (answering what it read first) and exits, and the new one claims the
//! connections from the keeper.

use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Set for the new daemon: the file to create once it is ready to take over.
const READY: &str = "LAZYROOT_UPGRADE_READY";

/// How long the new daemon may take to be ready.
const READY_WITHIN: Duration = Duration::from_secs(120);

/// Why an upgrade did not happen (the old daemon serves on).
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    /// The running program's path could not be found.
    #[error("finding the program: {0}")]
    Exe(#[source] std::io::Error),
    /// The new binary could not be started.
    #[error("starting {0}: {1}")]
    Spawn(PathBuf, #[source] std::io::Error),
    /// It exited before it was ready.
    #[error("the new daemon exited ({0}) before it was ready")]
    Exited(std::process::ExitStatus),
    /// It was not ready in time (and was killed).
    #[error("the new daemon was not ready within {READY_WITHIN:?}")]
    Timeout,
    /// Waiting for it failed.
    #[error("waiting for the new daemon: {0}")]
    Wait(#[source] std::io::Error),
}

/// Whether this process was started by [`start_successor`].
pub fn is_successor() -> bool {
    std::env::var_os(READY).is_some()
}

/// Tells the daemon that started this one (if any) that this one is ready.
pub fn announce_ready() -> std::io::Result<()> {
    match std::env::var_os(READY) {
        Some(path) => std::fs::write(path, b""),
        None => Ok(()),
    }
}

/// Starts this program again and waits until it is ready (see [`announce_ready`]).
pub fn start_successor() -> Result<(), UpgradeError> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().map_err(UpgradeError::Exe)?;
    // A binary replaced by a package upgrade shows as "<path> (deleted)": run what is at
    // the path now.
    let exe = PathBuf::from(
        exe.to_string_lossy()
            .trim_end_matches(" (deleted)")
            .to_string(),
    );
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let ready =
        std::env::temp_dir().join(format!("lazyroot-upgrade-{}-{nanos}", std::process::id()));
    tracing::info!("upgrading to {}", exe.display());
    let mut child = std::process::Command::new(&exe)
        .args(std::env::args_os().skip(1))
        .env(READY, &ready)
        // Not in our process group: what stops us must not stop it.
        .process_group(0)
        .spawn()
        .map_err(|e| UpgradeError::Spawn(exe.clone(), e))?;
    let deadline = Instant::now() + READY_WITHIN;
    loop {
        if ready.exists() {
            let _ = std::fs::remove_file(&ready);
            return Ok(());
        }
        if let Some(status) = child.try_wait().map_err(UpgradeError::Wait)? {
            return Err(UpgradeError::Exited(status));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(UpgradeError::Timeout);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
