//! The connection table: every client's slot, the caps per server and per address, which
//! connections are idle (and may give their slot to a newcomer), and the timeouts that
//! shrink under pressure.

use super::*;

/// How often timeouts are checked; a timeout hits at most this much late.
pub(super) const SWEEP_INTERVAL: Duration = Duration::from_millis(250);
/// Refusals and reclaims are summed up in the log at most this often, not one line each.
pub(super) const REPORT_INTERVAL: Duration = Duration::from_secs(10);

/// The table, even if a panic poisoned its lock: the worst a panic there leaves is a
/// counter off by one, better than every later connection panicking too.
pub(super) fn lock(table: &Mutex<Table>) -> MutexGuard<'_, Table> {
    table
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Every open connection, for admission and timeouts. Connections that were asked to close
/// but have not yet are no longer counted against the limits: they are on their way out,
/// and the client that asked for their slot should not wait for that.
pub(super) struct Table {
    pub(super) limits: Limits,
    pub(super) next_id: u64,
    pub(super) conns: HashMap<u64, Slot>,
    /// Counted connections per client address; an address with none has no entry.
    pub(super) per_client: HashMap<IpAddr, usize>,
    /// Connections counted against `limits`: open and not asked to close.
    pub(super) counted: usize,
    /// Since the last report: clients refused, idle connections closed for a newcomer.
    pub(super) refused: u64,
    pub(super) reclaimed: u64,
    pub(super) reported: Instant,
}

pub(super) struct Slot {
    pub(super) client: IpAddr,
    /// Since when the connection has been idle (waiting for a request head); `None` while
    /// it answers one.
    pub(super) idle_since: Option<Instant>,
    /// Whether it has answered a request: a keep-alive connection, held to `idle_timeout`.
    pub(super) answered: bool,
    /// Asked to close, and no longer counted.
    pub(super) closing: bool,
    pub(super) kick: Arc<Notify>,
}

/// A connection's place in the table; it leaves the table when this is dropped.
pub(super) struct Ticket {
    pub(super) table: Arc<Mutex<Table>>,
    pub(super) id: u64,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        lock(&self.table).remove(self.id);
    }
}

impl Table {
    pub(super) fn new(limits: Limits) -> Self {
        Table {
            limits,
            next_id: 0,
            conns: HashMap::new(),
            per_client: HashMap::new(),
            counted: 0,
            refused: 0,
            reclaimed: 0,
            reported: Instant::now(),
        }
    }

    /// Takes a new connection from `client`, making room by closing the oldest idle
    /// connection (of that client, if it is the client that is at its limit); `None` if
    /// every connection that would have to go is answering a request.
    pub(super) fn admit(&mut self, client: IpAddr, now: Instant) -> Option<(u64, Arc<Notify>)> {
        let own = self.per_client.get(&client).copied().unwrap_or(0);
        let victim = if own >= self.limits.max_connections_per_client {
            Some(self.oldest_idle(Some(client)))
        } else if self.counted >= self.limits.max_connections {
            Some(self.oldest_idle(None))
        } else {
            None
        };
        match victim {
            Some(Some(id)) => {
                self.close(id);
                self.reclaimed += 1;
            }
            Some(None) => {
                self.refused += 1;
                self.report(now);
                return None;
            }
            None => {}
        }
        self.report(now);
        let id = self.next_id;
        self.next_id += 1;
        let kick = Arc::new(Notify::new());
        self.conns.insert(
            id,
            Slot {
                client,
                idle_since: Some(now),
                answered: false,
                closing: false,
                kick: kick.clone(),
            },
        );
        self.count(client, 1);
        Some((id, kick))
    }

    /// The counted connection idle the longest, of `client` or of anyone. A linear scan:
    /// it runs only when the server is full, and a few thousand entries take microseconds.
    pub(super) fn oldest_idle(&self, client: Option<IpAddr>) -> Option<u64> {
        self.conns
            .iter()
            .filter(|(_, s)| !s.closing && client.is_none_or(|c| c == s.client))
            .filter_map(|(&id, s)| s.idle_since.map(|t| (t, id)))
            .min()
            .map(|(_, id)| id)
    }

    /// Asks connection `id` to close if it is idle, and stops counting it.
    pub(super) fn close(&mut self, id: u64) {
        let Some(slot) = self.conns.get_mut(&id) else {
            return;
        };
        if slot.closing {
            return;
        }
        slot.closing = true;
        // A stored permit: the connection sees the request even if it is not waiting now.
        slot.kick.notify_one();
        let client = slot.client;
        self.count(client, -1);
    }

    /// Connection `id` was asked to close but had started answering a request meanwhile
    /// (a request that arrived as the decision was made): it stays, and counts again.
    pub(super) fn keep(&mut self, id: u64) {
        if let Some(slot) = self.conns.get_mut(&id) {
            if slot.closing {
                slot.closing = false;
                let client = slot.client;
                self.count(client, 1);
            }
        }
    }

    /// Connection `id` went idle (`true`) or started answering a request.
    pub(super) fn set_idle(&mut self, id: u64, idle: bool, now: Instant) {
        if let Some(slot) = self.conns.get_mut(&id) {
            if idle {
                slot.idle_since = Some(now);
                slot.answered = true;
            } else {
                slot.idle_since = None;
            }
        }
    }

    pub(super) fn remove(&mut self, id: u64) {
        if let Some(slot) = self.conns.remove(&id) {
            if !slot.closing {
                self.count(slot.client, -1);
            }
        }
    }

    pub(super) fn count(&mut self, client: IpAddr, delta: isize) {
        self.counted = self.counted.saturating_add_signed(delta);
        let n = self.per_client.entry(client).or_insert(0);
        *n = n.saturating_add_signed(delta);
        if *n == 0 {
            self.per_client.remove(&client);
        }
    }

    /// Under pressure: more than half the slots held. Then every timeout for idle
    /// connections is `pressure_timeout`, as nginx-style servers shed keep-alive clients
    /// first when they run short of connections.
    pub(super) fn under_pressure(&self) -> bool {
        self.counted > self.limits.max_connections / 2
    }

    /// Closes the idle connections that waited longer than they may.
    pub(super) fn sweep(&mut self, now: Instant) {
        let l = &self.limits;
        let pressure = self.under_pressure();
        let expired: Vec<u64> = self
            .conns
            .iter()
            .filter(|(_, s)| !s.closing)
            .filter_map(|(&id, s)| {
                let since = s.idle_since?;
                let mut limit = if s.answered {
                    l.idle_timeout
                } else {
                    l.header_timeout
                };
                if pressure {
                    limit = limit.min(l.pressure_timeout);
                }
                (now.duration_since(since) >= limit).then_some(id)
            })
            .collect();
        for id in expired {
            self.close(id);
        }
        self.report(now);
    }

    /// Logs refusals and reclaims of the last interval, if any: under a flood one line per
    /// client would be a flood of its own.
    pub(super) fn report(&mut self, now: Instant) {
        if now.duration_since(self.reported) < REPORT_INTERVAL {
            return;
        }
        if self.refused > 0 {
            tracing::warn!(
                "{} client(s) refused: all {} connection slots busy answering requests \
                 (--max-connections, --max-connections-per-client)",
                self.refused,
                self.counted
            );
        }
        if self.reclaimed > 0 {
            tracing::info!(
                "{} idle connection(s) closed to make room for new clients",
                self.reclaimed
            );
        }
        self.refused = 0;
        self.reclaimed = 0;
        self.reported = now;
    }
}

/// A client the server cannot take: told so in one write that never waits, then closed.
/// A CernVM-FS client moves on to its next server or proxy on a 503 or a closed
/// connection alike; the write is only a courtesy.
pub(super) fn refuse(stream: TcpStream) {
    const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\
        Retry-After: 1\r\nConnection: close\r\n\r\n";
    let _ = stream.try_write(BUSY);
}

/// What a connection's parts tell each other about its requests: how many were handed to
/// the service and how many responses were sent whole, and whether a write waits for the
/// client. The connection is idle when every request has been answered and written.
#[derive(Default)]
pub(super) struct Activity {
    pub(super) started: AtomicU64,
    pub(super) finished: AtomicU64,
    pub(super) write_pending: AtomicBool,
}

impl Activity {
    pub(super) fn idle(&self) -> bool {
        self.started.load(Ordering::Relaxed) == self.finished.load(Ordering::Relaxed)
            && !self.write_pending.load(Ordering::Relaxed)
    }
}

/// One client connection and what it needs from the server.
pub(super) struct Connection {
    pub(super) repos: Arc<Repos>,
    pub(super) stop: watch::Receiver<bool>,
    pub(super) table: Arc<Mutex<Table>>,
    pub(super) ticket: (u64, Arc<Notify>),
    pub(super) write_stall: Duration,
}

impl Connection {
    /// Requests in order over keep-alive until the client leaves, the connection is
    /// closed while idle (a timeout, or its slot given to a newcomer), or shutdown asks it
    /// to end after its current response.
    pub(super) async fn serve(self, stream: TcpStream) {
        let (id, kick) = self.ticket;
        let _ticket = Ticket {
            table: self.table.clone(),
            id,
        };
        // Responses are written whole by hyper; waiting for ACKs (Nagle) would only add
        // latency.
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Activity::default());
        let io = TokioIo::new(WriteStall::new(stream, self.write_stall, activity.clone()));
        let repos = self.repos;
        let counter = activity.clone();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            // Counted when hyper hands the request over, in the same poll that parsed its
            // head: from then on the connection is answering, not idle.
            counter.started.fetch_add(1, Ordering::Relaxed);
            let repos = repos.clone();
            let done = Finished(counter.clone());
            async move {
                let resp = respond(&repos, &req).await;
                Ok::<_, Infallible>(resp.map(|body| CountedBody { body, _done: done }))
            }
        });
        // Header and idle timeouts are the table's sweep (they shrink under pressure);
        // hyper's own header timeout is fixed per connection, so it is off.
        let conn = http1::Builder::new()
            .keep_alive(true)
            .timer(TokioTimer::new())
            .header_read_timeout(None)
            .serve_connection(io, service);
        let mut conn = pin!(conn);
        let mut stop = self.stop;
        let mut stopped = pin!(async move {
            // The guard `wait_for` returns is not Send; only the wake-up matters.
            let _ = stop.wait_for(|stopped| *stopped).await;
        });
        let mut kicked = pin!(kick.notified());
        let mut stopping = false;
        let mut idle = true;
        // A hand-written poll so the connection's state is looked at between polls of
        // hyper's future, when it cannot change: a connection found idle there has no
        // response half written, and closing it loses nothing but the keep-alive.
        let result = poll_fn(|cx| {
            if !stopping && stopped.as_mut().poll(cx).is_ready() {
                stopping = true;
                if activity.idle() {
                    return Poll::Ready(Ok(()));
                }
                conn.as_mut().graceful_shutdown();
            }
            while kicked.as_mut().poll(cx).is_ready() {
                if activity.idle() {
                    return Poll::Ready(Ok(()));
                }
                lock(&self.table).keep(id);
                kicked.set(kick.notified());
            }
            let r = conn.as_mut().poll(cx);
            if r.is_pending() {
                let now_idle = activity.idle();
                if now_idle != idle {
                    idle = now_idle;
                    lock(&self.table).set_idle(id, idle, Instant::now());
                }
            }
            r
        })
        .await;
        // Client-side failures (resets, timeouts, garbage) are the client's business and
        // would flood the log; a user error means this module built an invalid response.
        if let Err(e) = result {
            if e.is_user() {
                tracing::debug!("connection: {e}");
            }
        }
    }
}

/// Counts a response as sent whole when hyper drops its body: after the last frame, which
/// hyper writes (or leaves pending in [`WriteStall`]) in the same poll.
pub(super) struct Finished(Arc<Activity>);

impl Drop for Finished {
    fn drop(&mut self) {
        self.0.finished.fetch_add(1, Ordering::Relaxed);
    }
}

/// A [`ServeBody`] that counts itself finished when dropped.
pub(super) struct CountedBody {
    pub(super) body: ServeBody,
    pub(super) _done: Finished,
}

impl Body for CountedBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: usize, per_client: usize) -> Limits {
        Limits {
            max_connections: max,
            max_connections_per_client: per_client,
            ..Limits::default()
        }
    }

    #[test]
    fn a_full_table_gives_the_oldest_idle_slot_away_and_never_a_busy_one() {
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut t = Table::new(limits(3, 10));
        let ids: Vec<u64> = (0..3).map(|i| t.admit(a, at(i)).unwrap().0).collect();
        // 0 is answering a request; 2 went idle again after one, later than 1 was admitted.
        t.set_idle(ids[0], false, at(3));
        t.set_idle(ids[2], false, at(4));
        t.set_idle(ids[2], true, at(5));
        let (d, _) = t.admit(b, at(6)).expect("1 is idle");
        assert!(t.conns[&ids[1]].closing && !t.conns[&ids[2]].closing);
        assert_eq!(t.counted, 3);
        // 1 is on its way out; 2 is the only idle one left, then none.
        let (e, _) = t.admit(b, at(7)).unwrap();
        assert!(t.conns[&ids[2]].closing);
        t.set_idle(d, false, at(8));
        t.set_idle(e, false, at(8));
        assert!(
            t.admit(b, at(9)).is_none(),
            "busy connections are never cut"
        );
        // A connection that raced into a request keeps its slot and counts again.
        t.keep(ids[2]);
        assert_eq!(t.counted, 4);
        for id in ids {
            t.remove(id);
        }
        assert_eq!(t.counted, 2);
        assert_eq!(t.per_client.get(&a), None);
    }

    #[test]
    fn a_client_at_its_limit_gives_up_its_own_idle_slot() {
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let now = Instant::now();
        let mut t = Table::new(limits(100, 2));
        let other = t.admit(b, now).unwrap().0;
        let first = t.admit(a, now).unwrap().0;
        let second = t.admit(a, now).unwrap().0;
        assert!(t.admit(a, now).is_some());
        assert!(t.conns[&first].closing);
        assert!(!t.conns[&other].closing, "other clients keep theirs");
        t.set_idle(second, false, now);
        let third = t.conns.keys().copied().max().unwrap();
        t.set_idle(third, false, now);
        assert!(t.admit(a, now).is_none(), "both of a's are busy");
        assert!(t.admit(b, now).is_some());
    }

    #[test]
    fn timeouts_shrink_under_pressure() {
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let t0 = Instant::now();
        let mut t = Table::new(limits(4, 4));
        let first = t.admit(a, t0).unwrap().0;
        let keep_alive = t.admit(a, t0).unwrap().0;
        t.set_idle(keep_alive, false, t0);
        t.set_idle(keep_alive, true, t0);
        // Two of four: no pressure; the header timeout applies to the new connection,
        // the idle timeout to the keep-alive one.
        t.sweep(t0 + PRESSURE_TIMEOUT * 2);
        assert_eq!(t.counted, 2);
        t.sweep(t0 + HEADER_READ_TIMEOUT);
        assert!(t.conns[&first].closing && !t.conns[&keep_alive].closing);
        t.sweep(t0 + IDLE_TIMEOUT);
        assert!(t.conns[&keep_alive].closing);
        // Three of four: pressure; anything idle past the short timeout goes.
        let mut t = Table::new(limits(4, 4));
        let ids: Vec<u64> = (0..3).map(|_| t.admit(a, t0).unwrap().0).collect();
        t.sweep(t0 + PRESSURE_TIMEOUT / 2);
        assert_eq!(t.counted, 3);
        t.sweep(t0 + PRESSURE_TIMEOUT);
        assert!(ids.iter().all(|id| t.conns[id].closing));
    }
}
