//! The daemon's main loop: control API, release of idle images, clean stop on SIGTERM or
//! SIGINT (every image unmounted; state kept for the next start), upgrade in place on
//! SIGUSR2 (with a keeper: every mount handed to the new binary).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

use super::{control, Config, Provisioner};

/// The daemon's threads, apart from the FUSE sessions' (two per mounted image) and the
/// prepares' (one per prepare in flight, see `lanes`): main, the async workers, at most
/// `BLOCKING` for the quick control calls and the release of idle images.
pub const WORKERS: usize = 2;
/// Most threads of the blocking pool (see [`WORKERS`]).
pub const BLOCKING: usize = 4;

/// Runs the daemon until SIGTERM or SIGINT: control API, CSI node service (if configured)
/// and idle-image release; then unmounts everything. Fails if another daemon holds the state.
pub fn run(config: Config) -> anyhow::Result<()> {
    let control_socket = config.control_socket.clone();
    let csi_socket = config.csi_socket.clone();
    let discovery_listen = config.discovery_listen;
    let grace = Duration::from_secs(config.grace_secs);
    // One daemon per state: a second one would remount (and so break) the first one's images.
    let _lock = lock_state(&config.state)?;
    if crate::mount::upgrade::is_successor() {
        tracing::info!("taking over from the daemon that started this one");
    }
    let p = Provisioner::start(config).context("starting the provisioner")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        // Bounded: pins, unpins, lists and releases; prepares have their own lane.
        .max_blocking_threads(BLOCKING)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let served = rt.block_on(async {
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut usr2 = signal(SignalKind::user_defined2())?;
        let listener = control::bind(&control_socket)
            .with_context(|| format!("binding {}", control_socket.display()))?;
        let (stop_tx, stop) = watch::channel(false);
        let mut tasks = vec![tokio::spawn(control::serve(
            listener,
            p.clone(),
            stop.clone(),
        ))];
        tasks.push(tokio::spawn(release_loop(p.clone(), grace, stop.clone())));
        tasks.push(tokio::spawn(watch_loop(p.clone(), stop.clone())));
        let discovery = match discovery_listen {
            Some(addr) => {
                let l = super::discovery::http::bind(addr).await?;
                let at = l.local_addr()?;
                tasks.push(tokio::spawn(super::discovery::http::serve(
                    l,
                    p.clone(),
                    stop.clone(),
                )));
                Some(at)
            }
            None => None,
        };
        if let Some(socket) = csi_socket.clone() {
            let publisher = Arc::new(super::csi::Volumes(p.clone()));
            let mut stop = stop.clone();
            let shutdown = async move {
                let _ = stop.changed().await;
            };
            // Bound before "ready" is said: a CO that connects at once finds the socket.
            let listener = crate::csi::bind(&socket)?;
            tasks.push(tokio::spawn(async move {
                if let Err(e) = crate::csi::serve_on(listener, &socket, publisher, shutdown).await {
                    tracing::error!("CSI node service on {}: {e:#}", socket.display());
                }
            }));
        }
        println!(
            "provisioner ready: control {}{}{} (pid {})",
            control_socket.display(),
            csi_socket
                .as_ref()
                .map(|s| format!(", CSI {}", s.display()))
                .unwrap_or_default(),
            discovery
                .map(|a| format!(", discovery http://{a}/"))
                .unwrap_or_default(),
            std::process::id()
        );
        let handed = loop {
            tokio::select! {
                _ = term.recv() => break false,
                _ = int.recv() => break false,
                _ = usr2.recv() => {
                    if !p.keeps_mounts() {
                        tracing::error!("SIGUSR2: no upgrade without a keeper (keeper_socket): the images' mounts would die with this daemon");
                        continue;
                    }
                    match tokio::task::spawn_blocking(crate::mount::upgrade::start_successor).await {
                        Ok(Ok(())) => break true,
                        Ok(Err(e)) => tracing::error!("upgrade failed, serving on: {e}"),
                        Err(e) => tracing::error!("upgrade failed, serving on: {e}"),
                    }
                }
            }
        };
        let _ = stop_tx.send(true);
        for t in tasks {
            let _ = t.await;
        }
        anyhow::Ok(handed)
    });
    if let Ok(true) = served {
        // The new daemon waits for the state lock, which goes with this process.
        p.hand_over();
        let _ = std::fs::remove_file(&control_socket);
        tracing::info!("provisioner handed every image over to the new daemon");
        return Ok(());
    }
    // Whatever happened above, nothing stays mounted by a daemon that is gone.
    p.shutdown();
    let _ = std::fs::remove_file(&control_socket);
    served?;
    tracing::info!("provisioner stopped; every image unmounted");
    Ok(())
}

/// The daemon holding the state lock of `state` (its pid is written into the lock file).
pub fn running_pid(state: &std::path::Path) -> Option<i32> {
    std::fs::read_to_string(state.with_extension("lock"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Holds an exclusive lock on `<state>.lock` for the daemon's life.
fn lock_state(state: &std::path::Path) -> anyhow::Result<nix::fcntl::Flock<std::fs::File>> {
    use nix::fcntl::{Flock, FlockArg};
    if let Some(dir) = state.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let path = state.with_extension("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    // A daemon started by an upgrade waits for the one it replaces to let go.
    let wait_until = crate::mount::upgrade::is_successor()
        .then(|| std::time::Instant::now() + Duration::from_secs(120));
    if wait_until.is_some() {
        crate::mount::upgrade::announce_ready().context("telling the previous daemon")?;
    }
    let mut file = file;
    let mut locked = loop {
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(l) => break l,
            Err((f, e)) => {
                if wait_until.is_some_and(|t| std::time::Instant::now() < t) {
                    file = f;
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
                anyhow::bail!(
                    "another provisioner is running with the state {} ({}: {e})",
                    state.display(),
                    path.display()
                );
            }
        }
    };
    // Who holds it, for `lazyroot provisioner --upgrade`.
    {
        use std::io::{Seek, Write};
        let f: &mut std::fs::File = &mut locked;
        let _ = f.set_len(0);
        let _ = f.rewind();
        let _ = writeln!(f, "{}", std::process::id());
    }
    Ok(locked)
}

/// How often mounts are checked for life: an entry of a dead mount is visible to the agent
/// for at most this long (it reads ENOTCONN or an empty directory meanwhile).
const WATCH_EVERY: Duration = Duration::from_secs(2);

/// Checks the mounts now and then ([`Provisioner::dead_mounts`], in the fast lane) and
/// mounts dead ones again (in the slow lane: that may wait on the servers).
async fn watch_loop(p: Arc<Provisioner>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(WATCH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let found = p.clone();
                let dead = match super::lanes::fast(move || {
                    found.check_keeper();
                    found.dead_mounts()
                })
                .await
                {
                    Ok(dead) if dead.is_empty() => continue,
                    Ok(dead) => dead,
                    Err(e) => {
                        tracing::error!("checking mounts: {e}");
                        continue;
                    }
                };
                let p = p.clone();
                if let Ok(ids) = super::lanes::slow(move || Ok(p.remount_dead(dead))).await {
                    for id in ids {
                        println!("mount of image {id} died; mounted again");
                    }
                }
            }
            _ = stop.changed() => return,
        }
    }
}

/// Releases idle images now and then: a quarter of the grace time, between 1 and 30 s.
async fn release_loop(p: Arc<Provisioner>, grace: Duration, mut stop: watch::Receiver<bool>) {
    let every = (grace / 4).clamp(Duration::from_secs(1), Duration::from_secs(30));
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let p = p.clone();
                match tokio::task::spawn_blocking(move || p.release_idle()).await {
                    Ok(Ok(ids)) => for id in ids { println!("released image {id}"); },
                    Ok(Err(e)) => tracing::error!("releasing idle images: {e}"),
                    Err(e) => tracing::error!("releasing idle images: {e}"),
                }
            }
            _ = stop.changed() => return,
        }
    }
}
