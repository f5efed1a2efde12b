//! The keeper's loop: one thread, `poll()` over a signalfd, the listening socket and every
//! client. One thread is enough because no step blocks: a request is a few system calls
//! on in-memory state, client sockets are non-blocking and replies are sent with
//! `MSG_DONTWAIT` (a client that does not read its replies is dropped). It also keeps
//! the table free of locks, and every deadline in one place.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::MsgFlags;

use super::abort::abort;
use super::error::KeeperError;
use super::listen::Listener;
use super::protocol::{
    decode, encode, Refusal, Reply, Request, MAX_FDS, MAX_KEY, MAX_MESSAGE, MAX_PATH,
};
use super::table::{secs_until, Claim, ClientId, Entry, Refused, Table};
use super::{wire, KeeperOptions, Kept};

/// The most keys held at once.
const MAX_ENTRIES: usize = 65536;
/// The most client connections at once (a daemon needs one).
const MAX_CLIENTS: usize = 256;
/// Descriptors kept free of deposits: one message's worth of SCM_RIGHTS (the kernel's
/// maximum, so a message is never cut short for want of descriptors), plus the keeper's
/// own (listener, signalfd, lock, standard streams).
const FD_RESERVE: usize = 253 + 64;

/// Runs the keeper at `socket` until SIGTERM or SIGINT, or until it has been idle for
/// `options.idle_exit`. See the [module documentation](super) for what happens to the
/// descriptors it holds when it stops.
///
/// SIGTERM and SIGINT are taken through a signalfd, so they are blocked in the calling
/// thread (and unblocked again on return): call this from the process's only thread, as
/// `lazyroot keeper` does, or the signal may go to another thread and end the process
/// with its default action.
pub fn run(socket: &Path, options: &KeeperOptions) -> Result<(), KeeperError> {
    let nofile = raise_open_file_limit();
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGTERM);
    mask.add(Signal::SIGINT);
    let old_mask = mask
        .thread_swap_mask(SigmaskHow::SIG_BLOCK)
        .map_err(|e| setup("blocking signals for", socket, e))?;
    let result = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(|e| setup("a signalfd for", socket, e))
        .and_then(|signals| {
            let listener = Listener::bind(socket)?;
            tracing::info!(
                "keeper: serving {}; a connection whose daemon dies is aborted after {} s unless claimed",
                socket.display(),
                options.takeover_timeout.as_secs_f64()
            );
            let mut server = Server {
                listener,
                signals,
                clients: Vec::new(),
                table: Table::new(MAX_ENTRIES, nofile.saturating_sub(FD_RESERVE + MAX_CLIENTS)),
                options,
                next_id: 0,
            };
            server.serve()
        });
    let _ = old_mask.thread_set_mask();
    result
}

fn setup(what: &'static str, path: &Path, e: Errno) -> KeeperError {
    KeeperError::Setup {
        what,
        path: path.to_owned(),
        source: e.into(),
    }
}

/// One client connection.
struct Conn {
    id: ClientId,
    fd: OwnedFd,
}

struct Server<'a> {
    listener: Listener,
    signals: SignalFd,
    clients: Vec<Conn>,
    table: Table,
    options: &'a KeeperOptions,
    next_id: ClientId,
}

impl Server<'_> {
    fn serve(&mut self) -> Result<(), KeeperError> {
        let mut idle_since: Option<Instant> = None;
        loop {
            let now = Instant::now();
            for (key, entry) in self.table.take_due(now) {
                let why = format!(
                    "no daemon took it over within {} s",
                    self.options.takeover_timeout.as_secs_f64()
                );
                abort(&key, entry.kept, &why);
            }
            let idle_deadline = if self.table.is_empty() && self.clients.is_empty() {
                let since = *idle_since.get_or_insert(now);
                self.options.idle_exit.map(|d| since + d)
            } else {
                idle_since = None;
                None
            };
            if idle_deadline.is_some_and(|d| d <= now) {
                tracing::info!("keeper: holding nothing and nobody connected; exiting");
                return Ok(());
            }
            let wake = [self.table.next_deadline(), idle_deadline]
                .into_iter()
                .flatten()
                .min();
            let Some(ready) = self.poll(wake.map(|w| w.saturating_duration_since(now)))? else {
                continue;
            };
            if ready.signal {
                if let Ok(Some(info)) = self.signals.read_signal() {
                    self.stop(info.ssi_signo);
                    return Ok(());
                }
            }
            if ready.listener {
                self.accept();
            }
            // Oldest first (clients stay in accept order): a daemon that died before its
            // successor connected has its keys orphaned before the successor's request
            // is served, so the successor's claim or deposit finds them orphaned.
            let mut gone = Vec::new();
            for (i, events) in ready.clients.iter().enumerate() {
                let keep = if events.contains(PollFlags::POLLIN) {
                    self.serve_one(i)
                } else {
                    !events.intersects(PollFlags::POLLHUP | PollFlags::POLLERR)
                };
                if !keep {
                    self.disconnect(i);
                    gone.push(i);
                }
            }
            for i in gone.into_iter().rev() {
                self.clients.remove(i);
            }
        }
    }

    /// Waits up to `timeout` (forever if `None`); `None` if interrupted.
    fn poll(&self, timeout: Option<Duration>) -> Result<Option<Ready>, KeeperError> {
        let mut fds = Vec::with_capacity(2 + self.clients.len());
        fds.push(PollFd::new(self.signals.as_fd(), PollFlags::POLLIN));
        fds.push(PollFd::new(self.listener.as_fd(), PollFlags::POLLIN));
        for c in &self.clients {
            fds.push(PollFd::new(c.fd.as_fd(), PollFlags::POLLIN));
        }
        match poll(&mut fds, poll_timeout(timeout)) {
            Ok(_) => {}
            Err(Errno::EINTR) => return Ok(None),
            Err(source) => {
                return Err(KeeperError::Io {
                    what: "polling",
                    source,
                })
            }
        }
        let events: Vec<PollFlags> = fds
            .iter()
            .map(|f| f.revents().unwrap_or(PollFlags::empty()))
            .collect();
        Ok(Some(Ready {
            signal: !events[0].is_empty(),
            listener: !events[1].is_empty(),
            clients: events[2..].to_vec(),
        }))
    }

    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok(Some(fd)) if self.clients.len() >= MAX_CLIENTS => {
                    tracing::warn!("keeper: {MAX_CLIENTS} clients connected; refusing another");
                    drop(fd);
                }
                Ok(Some(fd)) => {
                    let id = self.next_id;
                    self.next_id += 1;
                    tracing::debug!("keeper: client {id} connected");
                    self.clients.push(Conn { id, fd });
                }
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!("keeper: accepting a connection: {e}");
                    return;
                }
            }
        }
    }

    /// Serves one request of client `i`; false if the client is to be dropped.
    fn serve_one(&mut self, i: usize) -> bool {
        let conn = &self.clients[i];
        let packet = match wire::recv(conn.fd.as_fd(), MsgFlags::MSG_DONTWAIT) {
            Ok(Some(p)) => p,
            Ok(None) => return false,
            Err(Errno::EAGAIN) => return true,
            Err(e) => {
                tracing::debug!("keeper: receiving from client {}: {e}", conn.id);
                return false;
            }
        };
        if packet.fds_lost {
            // Those that were installed cannot be seen (nix hides truncated control data);
            // the reserve in FD_RESERVE is what keeps this from happening.
            tracing::error!(
                "keeper: descriptors from client {} were lost (open-file limit); dropping it",
                conn.id
            );
            return false;
        }
        let now = Instant::now();
        match respond(&mut self.table, conn.id, conn.fd.as_fd(), packet, now) {
            Ok(()) => true,
            Err(e) => {
                tracing::debug!("keeper: replying to client {}: {e}", conn.id);
                false
            }
        }
    }

    /// Orphans every key client `i` owns (the caller then removes the client).
    fn disconnect(&mut self, i: usize) {
        let conn = &self.clients[i];
        let timeout = self.options.takeover_timeout;
        let now = Instant::now();
        let deadline = now + timeout;
        let wall = crate::cvmfs::timefmt::iso8601(
            crate::cvmfs::timefmt::now() + secs_until(deadline, now) as i64,
        );
        for (key, entry) in self.table.orphan_all(conn.id, deadline) {
            tracing::warn!(
                "keeper: the daemon serving {key} (FUSE mount at {}) went away; its connection is kept until {wall} ({} s) for a new daemon to claim, then aborted",
                entry.kept.mountpoint.display(),
                timeout.as_secs_f64()
            );
        }
        tracing::debug!("keeper: client {} disconnected", conn.id);
    }

    /// Stops on signal `signo`: orphaned keys are aborted (nobody serves them), owned ones
    /// only lose the keeper's copies (their daemons hold their own).
    fn stop(&mut self, signo: u32) {
        let name = i32::try_from(signo)
            .ok()
            .and_then(|s| Signal::try_from(s).ok())
            .map_or_else(|| signo.to_string(), |s| s.as_str().to_owned());
        let all = self.table.take_all();
        tracing::info!(
            "keeper: stopping on {name}; closing {} key(s) (owned ones keep working in their daemons)",
            all.len()
        );
        for (key, entry) in all {
            if entry.is_orphaned() {
                let why = format!("the keeper stopped ({name}) before a daemon claimed it");
                abort(&key, entry.kept, &why);
            }
        }
    }
}

/// What poll reported.
struct Ready {
    signal: bool,
    listener: bool,
    clients: Vec<PollFlags>,
}

/// `timeout` in whole milliseconds, rounded up so that a deadline is never polled for
/// in a busy loop of zero-length waits.
fn poll_timeout(timeout: Option<Duration>) -> PollTimeout {
    match timeout {
        None => PollTimeout::NONE,
        Some(t) => {
            let ms = t.as_nanos().div_ceil(1_000_000);
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
        }
    }
}

/// Carries out one request of client `id` and sends its one reply.
fn respond(
    table: &mut Table,
    id: ClientId,
    conn: BorrowedFd<'_>,
    packet: wire::Packet,
    now: Instant,
) -> Result<(), KeeperError> {
    let refuse = |reason, message: String| {
        tracing::debug!("keeper: refused a request of client {id}: {message}");
        reply(conn, &Reply::Refused { reason, message }, &[])
    };
    // Refusals drop `packet`, and with it any descriptors it brought.
    if packet.truncated {
        return refuse(
            Refusal::TooLarge,
            format!("messages are at most {MAX_MESSAGE} bytes"),
        );
    }
    if packet.fds.len() > MAX_FDS {
        return refuse(
            Refusal::TooManyFds,
            format!(
                "{} descriptors; a deposit carries at most {MAX_FDS}",
                packet.fds.len()
            ),
        );
    }
    let request: Request = match decode(&packet.body) {
        Ok(r) => r,
        Err(e) => return refuse(Refusal::Malformed, e.to_string()),
    };
    if !matches!(request, Request::Deposit { .. }) && !packet.fds.is_empty() {
        return refuse(
            Refusal::UnexpectedFds,
            "only a deposit carries descriptors".into(),
        );
    }
    let key = match &request {
        Request::Deposit { key, .. } | Request::Claim { key } | Request::Release { key } => {
            Some(key)
        }
        Request::List { .. } => None,
    };
    if key.is_some_and(|k| k.is_empty() || k.len() > MAX_KEY) {
        return refuse(Refusal::BadKey, format!("a key is 1 to {MAX_KEY} bytes"));
    }
    match request {
        Request::Deposit {
            key,
            mountpoint,
            fusectl,
        } => {
            if !mountpoint.is_absolute() || mountpoint.as_os_str().len() > MAX_PATH {
                return refuse(
                    Refusal::BadMountpoint,
                    format!("a mount point is an absolute path of at most {MAX_PATH} bytes"),
                );
            }
            let kept = Kept {
                mountpoint,
                fusectl,
                fds: packet.fds,
            };
            match table.deposit(id, &key, kept) {
                Ok(old) => {
                    log_deposit(&key, id, old.as_ref());
                    let sent = reply(conn, &Reply::Done, &[]);
                    // Only now, with the new ones stored, do the old descriptors close.
                    drop(old);
                    sent
                }
                Err(Refused::Busy) => reply(conn, &Reply::Busy, &[]),
                Err(Refused::Full) => refuse(
                    Refusal::Full,
                    format!(
                        "the keeper holds as many keys ({}) or descriptors ({}) as it may",
                        MAX_ENTRIES,
                        table.held_fds()
                    ),
                ),
            }
        }
        Request::Claim { key } => match table.claim(id, &key) {
            Claim::Missing => reply(conn, &Reply::Missing, &[]),
            Claim::Busy => reply(conn, &Reply::Busy, &[]),
            Claim::Granted { entry, orphaned } => {
                if orphaned {
                    tracing::info!(
                        "keeper: {key} (FUSE mount at {}) taken over by a new daemon",
                        entry.kept.mountpoint.display()
                    );
                }
                let fds: Vec<BorrowedFd<'_>> = entry.kept.fds.iter().map(AsFd::as_fd).collect();
                let answer = Reply::Claimed {
                    mountpoint: entry.kept.mountpoint.clone(),
                    fusectl: entry.kept.fusectl,
                    orphaned,
                };
                reply(conn, &answer, &fds)
            }
        },
        Request::Release { key } => match table.release(id, &key) {
            Ok(old) => {
                if old.is_some() {
                    tracing::debug!("keeper: {key} released");
                }
                drop(old);
                reply(conn, &Reply::Done, &[])
            }
            Err(_) => reply(conn, &Reply::Busy, &[]),
        },
        Request::List { after } => {
            // Room for the envelope; each entry costs its JSON and a comma.
            let mut budget = MAX_MESSAGE - 64;
            let (entries, more) = table.list(now, after.as_deref(), |l| {
                let cost = serde_json::to_vec(l).map_or(MAX_MESSAGE, |v| v.len() + 1);
                let fits = cost <= budget;
                budget = budget.saturating_sub(cost);
                fits
            });
            reply(conn, &Reply::Listed { entries, more }, &[])
        }
    }
}

fn log_deposit(key: &str, id: ClientId, old: Option<&Entry>) {
    match old {
        Some(e) if e.is_orphaned() => {
            tracing::info!("keeper: {key} taken over by a new deposit (client {id})")
        }
        Some(_) => tracing::debug!("keeper: {key} replaced by client {id}"),
        None => tracing::debug!("keeper: {key} deposited by client {id}"),
    }
}

fn reply(conn: BorrowedFd<'_>, reply: &Reply, fds: &[BorrowedFd<'_>]) -> Result<(), KeeperError> {
    let body = encode(reply)?;
    wire::send(conn, &body, fds, MsgFlags::MSG_DONTWAIT).map_err(|source| KeeperError::Io {
        what: "sending",
        source,
    })
}

/// Raises the soft open-file limit to the hard one; returns the limit in force.
fn raise_open_file_limit() -> usize {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 1024;
    };
    let limit = match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
        Ok(()) => hard,
        Err(e) => {
            tracing::debug!("keeper: cannot raise the open-file limit: {e}");
            soft
        }
    };
    usize::try_from(limit).unwrap_or(usize::MAX)
}
