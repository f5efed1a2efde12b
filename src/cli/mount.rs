//! `lazyroot mount`: a repository revision through FUSE, fetched lazily over HTTP into the
//! shared cache, until SIGINT or SIGTERM (then unmounted cleanly) or an external umount.
//! The connection is kept by the keeper: a crash or SIGKILL leaves it for the next daemon
//! started with the same mount point, SIGUSR2 hands it to a new binary in place, SIGHUP
//! looks for a newer revision.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use lazyroot::cvmfs::hash::ContentHash;
use lazyroot::keeper::KeeperClient;
use lazyroot::mount::MountedTree;
use lazyroot::mount::{kept, upgrade};
use lazyroot::remote::cache::Cache;
use lazyroot::remote::stack::{Remote, RemoteSpec};
use lazyroot::remote::{self};
use lazyroot::repository::At;

#[derive(clap::Args)]
pub struct MountArgs {
    /// Repository name.
    pub fqrn: String,
    /// Where to mount (an existing directory).
    pub mountpoint: PathBuf,
    /// Server URLs in failover order, `;`-separated; `@fqrn@` is replaced.
    #[arg(long)]
    pub server: String,
    /// Proxy chain: `p1|p2;p3` (`|` load-balances, `;` fails over), `DIRECT` for none.
    #[arg(long, default_value = "DIRECT")]
    pub proxy: String,
    /// Trusted master public key (repeatable).
    #[arg(long = "key", required = true)]
    pub keys: Vec<PathBuf>,
    /// Mount this root catalog hash: pinned, it never changes.
    #[arg(long, conflicts_with = "tag")]
    pub root_hash: Option<String>,
    /// Show only this directory of the repository (an image) as the mount's root.
    #[arg(long, default_value = "/")]
    pub path: String,
    /// Mount the revision this tag names (pinned).
    #[arg(long)]
    pub tag: Option<String>,
    /// Cache directory, shared by every mount.
    #[arg(long, default_value = "/var/lib/lazyroot/cache")]
    pub cache: PathBuf,
    /// Soft cache limit in MB (0: unlimited).
    #[arg(long, default_value_t = 4000)]
    pub quota: u64,
    /// Let other users (and containers' uids) use the mount.
    #[arg(long)]
    pub allow_other: bool,
    /// Honour setuid bits.
    #[arg(long)]
    pub suid: bool,
    /// Honour device files.
    #[arg(long)]
    pub dev: bool,
    /// Whole files are read by the kernel straight from the cache (FUSE passthrough). Not
    /// with an overlay on top: copy-up from a passthrough file fails on some kernels.
    #[arg(long)]
    pub passthrough: bool,
    /// Connect timeout and low-speed window in seconds.
    #[arg(long, default_value_t = 5)]
    pub timeout: u64,
    /// Low-speed limit in bytes per second, averaged over --timeout: a slower server or
    /// proxy is left for the next one (CernVM-FS's default; 0: no limit).
    #[arg(long, default_value_t = 1024)]
    pub low_speed_limit: u64,
    /// The longest one attempt at one object may take, in seconds.
    #[arg(long, default_value_t = 600, value_parser = clap::value_parser!(u64).range(1..))]
    pub deadline: u64,
    /// The keeper that holds the mount's FUSE connection so that it outlives this process
    /// (a crash, SIGKILL or upgrade): started if none listens there.
    #[arg(long, default_value = lazyroot::keeper::DEFAULT_SOCKET, env = "LAZYROOT_KEEPER")]
    pub keeper: PathBuf,
    /// No keeper: the mount dies with this process.
    #[arg(long, conflicts_with = "keeper")]
    pub no_keeper: bool,
    /// How long a keeper this mount starts waits for a new daemon after this one died,
    /// before it aborts the connection (readers then get ENOTCONN), in seconds.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub takeover_timeout: u64,
}

/// Blocks SIGINT, SIGTERM, SIGHUP and SIGUSR2 in this thread and every thread started after it, so
/// they are only ever taken by `wait_for_signal`.
fn block_signals() -> nix::sys::signal::SigSet {
    use nix::sys::signal::{SigSet, SigmaskHow, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGHUP);
    set.add(Signal::SIGUSR2);
    let _ = nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&set), None);
    set
}

/// The signal taken within `timeout`, if any.
#[allow(unsafe_code)]
fn wait_for_signal(set: &nix::sys::signal::SigSet, timeout: Duration) -> Option<i32> {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: the set is a valid sigset_t and a null siginfo pointer is allowed.
    let n = unsafe { libc::sigtimedwait(set.as_ref(), std::ptr::null_mut(), &ts) };
    (n > 0).then_some(n)
}

pub fn mount(a: MountArgs) -> anyhow::Result<ExitCode> {
    let signals = block_signals();
    let quota = (a.quota > 0).then_some(a.quota << 20);
    let cache = Arc::new(Cache::open(&a.cache, quota)?);
    let spec = RemoteSpec {
        fqrn: a.fqrn.clone(),
        servers: a.server.clone(),
        proxies: a.proxy.clone(),
        keys: a.keys.clone(),
        timeout: Duration::from_secs(a.timeout),
        low_speed_limit: a.low_speed_limit,
        deadline: Duration::from_secs(a.deadline),
    };
    let remote = Remote::new(&spec, cache)?;
    let opened = remote
        .open()
        .with_context(|| format!("opening {}", a.fqrn))?;
    let (repo, mode) = (&opened.repo, opened.mode);
    let at = match (&a.root_hash, &a.tag) {
        (Some(h), _) => At::RootHash(ContentHash::parse(h)?),
        (_, Some(t)) => At::Tag(t.clone()),
        _ => At::Latest,
    };
    let pinned = at != At::Latest;
    let (root, size) = repo.resolve(&at)?;
    let revision = repo.manifest().revision;
    let mut tree = MountedTree::new(remote.source.clone(), opened, root, size, pinned)?;
    if a.path != "/" {
        tree = tree
            .subtree(a.path.as_bytes(), lazyroot::mount::Skeleton::none())
            .with_context(|| format!("{}: {}", a.fqrn, a.path))?;
    }
    let tree = Arc::new(tree);

    let options = lazyroot::mount::fuse::MountOptions {
        name: a.fqrn.clone(),
        allow_other: a.allow_other,
        suid: a.suid,
        dev: a.dev,
        passthrough: a.passthrough,
        threads: 4,
    };
    let takeover_timeout = Duration::from_secs(a.takeover_timeout);
    let keeper = if a.no_keeper {
        None
    } else {
        Some(
            KeeperClient::connect_or_spawn(&a.keeper, takeover_timeout)
                .with_context(|| format!("the keeper at {}", a.keeper.display()))?,
        )
    };
    // Everything slow is done: a daemon we upgrade from may stop serving now.
    upgrade::announce_ready().context("telling the previous daemon we are ready")?;
    let (session, started) = kept::mount(
        tree.clone(),
        &a.mountpoint,
        &options,
        keeper.as_ref(),
        Duration::from_secs(30),
        kept::Stale::Keep,
    )
    .with_context(|| format!("mounting at {}", a.mountpoint.display()))?;
    println!(
        "mounted {} revision {revision} root {root}{} at {}{}{}",
        a.fqrn,
        if pinned { " (pinned)" } else { "" },
        a.mountpoint.display(),
        if mode == remote::Mode::Offline {
            " (offline: no server answered, using the cache)"
        } else {
            ""
        },
        match started {
            kept::Started::Mounted => "",
            kept::Started::TookOver { orphaned: true } =>
                " (took over the connection of a daemon that died)",
            kept::Started::TookOver { orphaned: false } =>
                " (took over the connection, handed over)",
        }
    );
    let mut keeper = keeper;
    loop {
        match wait_for_signal(&signals, Duration::from_millis(200)) {
            Some(libc::SIGHUP) => {
                tracing::info!("SIGHUP: looking for a newer revision now");
                tree.check_now();
            }
            Some(libc::SIGUSR2) => match upgrade::start_successor() {
                Ok(()) => {
                    // The new daemon is ready and waits for the connection: stop serving
                    // (every request read is answered first) and go without unmounting.
                    session.hand_over();
                    tracing::info!("handed {} over to the new daemon", a.mountpoint.display());
                    return Ok(ExitCode::SUCCESS);
                }
                Err(e) => tracing::error!("upgrade failed, serving on: {e:#}"),
            },
            Some(_) => break,
            None => {}
        }
        if session.is_finished() {
            tracing::info!("{} was unmounted", a.mountpoint.display());
            kept::release(keeper.as_ref(), &a.mountpoint);
            return Ok(ExitCode::SUCCESS);
        }
        if keeper.as_ref().is_some_and(|k| k.keeper_gone()) {
            // We still hold the connection; a new keeper must too, or our own crash would
            // take the mount with us.
            tracing::warn!("the keeper went away; starting a new one");
            keeper = KeeperClient::connect_or_spawn(&a.keeper, takeover_timeout)
                .and_then(|k| {
                    kept::deposit(&k, &kept::key_of(&a.mountpoint), &session)?;
                    Ok(k)
                })
                .map_err(|e| tracing::error!("no keeper now ({e}); trying again"))
                .ok()
                .or(keeper);
        }
    }
    unmount(&a.mountpoint, &signals)?;
    kept::release(keeper.as_ref(), &a.mountpoint);
    // The kernel closed the channel; the session threads have ended or are about to.
    drop(session);
    Ok(ExitCode::SUCCESS)
}

/// Unmounts without ever leaving a dead mount behind: while processes still use the
/// mount it keeps serving them and retries; a second signal detaches it at once (they
/// then see errors, as the operator asked).
fn unmount(mountpoint: &std::path::Path, signals: &nix::sys::signal::SigSet) -> anyhow::Result<()> {
    use nix::errno::Errno;
    use nix::mount::{umount2, MntFlags};
    let mut warned = false;
    loop {
        match umount2(mountpoint, MntFlags::empty()) {
            Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => return Ok(()),
            Err(Errno::EBUSY) => {
                if !warned {
                    tracing::warn!(
                        "{} is still in use; unmounting as soon as it is free (signal again to detach now)",
                        mountpoint.display()
                    );
                    warned = true;
                }
                if wait_for_signal(signals, Duration::from_secs(1)).is_some() {
                    umount2(mountpoint, MntFlags::MNT_DETACH)
                        .with_context(|| format!("detaching {}", mountpoint.display()))?;
                    return Ok(());
                }
            }
            Err(e) => return Err(anyhow::anyhow!("unmounting {}: {e}", mountpoint.display())),
        }
    }
}
