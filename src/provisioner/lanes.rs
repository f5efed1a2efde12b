//! Two lanes for control calls. Prepares (and discovery, which prepares) may wait on a dead
//! server for as long as the download deadlines allow; pins, unpins, sync, list and health
//! are the agent module's path at every container start and stop and must never queue
//! behind them. So the slow lane runs each call on a thread of its own (at most
//! [`SLOW_MAX`] at once, the rest wait without holding a thread), and the fast lane keeps
//! the runtime's blocking pool to itself.

use tokio::sync::Semaphore;

use super::error::ProvisionError;

/// Calls in the slow lane at once; more wait for a slot (holding no thread).
pub const SLOW_MAX: usize = 64;

static SLOTS: Semaphore = Semaphore::const_new(SLOW_MAX);

/// Runs `f` in the slow lane: a thread of its own, once one of [`SLOW_MAX`] slots is free.
pub async fn slow<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ProvisionError> + Send + 'static,
) -> Result<T, ProvisionError> {
    let permit = SLOTS
        .acquire()
        .await
        .map_err(|e| ProvisionError::Internal(format!("slow lane: {e}")))?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("prepare".into())
        .spawn(move || {
            let r = f();
            drop(permit);
            let _ = tx.send(r);
        })
        .map_err(|e| ProvisionError::Internal(format!("starting a prepare thread: {e}")))?;
    rx.await
        .map_err(|_| ProvisionError::Internal("a prepare thread ended without an answer".into()))?
}

/// Runs `f` in the fast lane: the runtime's blocking pool, which slow calls never use.
pub async fn fast<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ProvisionError> + Send + 'static,
) -> Result<T, ProvisionError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ProvisionError::Internal(format!("handler: {e}")))?
}
