//! What the keeper holds: keys, their descriptors and who owns them. No I/O here; the
//! server turns requests into these calls and their outcomes into replies.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::protocol::{KeyState, Listed};
use super::Kept;

/// A client connection, numbered by the server in accept order.
pub(super) type ClientId = u64;

/// Who a key belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Owner {
    /// A connected client.
    Client(ClientId),
    /// Its client went away; aborted at `deadline` unless claimed first.
    Orphaned {
        /// When it is aborted.
        deadline: Instant,
    },
}

/// One key's deposit and owner.
pub(super) struct Entry {
    /// What was deposited.
    pub kept: Kept,
    /// Who owns it.
    pub owner: Owner,
}

/// Why a deposit or release was not done.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Refused {
    /// Another live client owns the key.
    Busy,
    /// No room for another key, or for this many descriptors.
    Full,
}

/// The outcome of a claim.
pub(super) enum Claim<'a> {
    /// No such key.
    Missing,
    /// Another live client owns it.
    Busy,
    /// Now owned by the claimant; `orphaned` if it was taken over rather than its own.
    Granted {
        /// The key's entry (its descriptors are what the claimant gets duplicates of).
        entry: &'a Entry,
        /// It had no live owner.
        orphaned: bool,
    },
}

/// The keys held.
pub(super) struct Table {
    entries: BTreeMap<String, Entry>,
    max_entries: usize,
    max_fds: usize,
    held_fds: usize,
}

impl Table {
    /// An empty table that holds at most `max_entries` keys and `max_fds` descriptors.
    pub fn new(max_entries: usize, max_fds: usize) -> Self {
        Table {
            entries: BTreeMap::new(),
            max_entries,
            max_fds,
            held_fds: 0,
        }
    }

    /// Stores `kept` under `key` for `client`. A key this client owns, or an orphaned one,
    /// is replaced: the old entry is returned, so that its descriptors close only after the
    /// new ones are stored.
    pub fn deposit(
        &mut self,
        client: ClientId,
        key: &str,
        kept: Kept,
    ) -> Result<Option<Entry>, Refused> {
        let old_fds = match self.entries.get(key) {
            Some(e) if e.owner != Owner::Client(client) && !e.is_orphaned() => {
                return Err(Refused::Busy)
            }
            Some(e) => e.kept.fds.len(),
            None if self.entries.len() >= self.max_entries => return Err(Refused::Full),
            None => 0,
        };
        let held = self.held_fds - old_fds + kept.fds.len();
        if held > self.max_fds {
            return Err(Refused::Full);
        }
        self.held_fds = held;
        let entry = Entry {
            kept,
            owner: Owner::Client(client),
        };
        Ok(self.entries.insert(key.to_owned(), entry))
    }

    /// Makes `client` the owner of `key` if it is orphaned (or already the client's).
    pub fn claim(&mut self, client: ClientId, key: &str) -> Claim<'_> {
        let Some(entry) = self.entries.get_mut(key) else {
            return Claim::Missing;
        };
        let orphaned = match entry.owner {
            Owner::Client(c) if c == client => false,
            Owner::Client(_) => return Claim::Busy,
            Owner::Orphaned { .. } => true,
        };
        entry.owner = Owner::Client(client);
        Claim::Granted { entry, orphaned }
    }

    /// Forgets `key` (owned by `client` or orphaned) and returns it; a missing key is no
    /// error (releasing twice is harmless).
    pub fn release(&mut self, client: ClientId, key: &str) -> Result<Option<Entry>, Refused> {
        match self.entries.get(key) {
            None => Ok(None),
            Some(e) if e.owner != Owner::Client(client) && !e.is_orphaned() => Err(Refused::Busy),
            Some(_) => Ok(self.remove(key)),
        }
    }

    /// Orphans every key `client` owns, to be aborted at `deadline`; returns them.
    pub fn orphan_all(&mut self, client: ClientId, deadline: Instant) -> Vec<(&str, &Entry)> {
        let mut orphaned = Vec::new();
        for (key, entry) in self.entries.iter_mut() {
            if entry.owner == Owner::Client(client) {
                entry.owner = Owner::Orphaned { deadline };
                orphaned.push((key.as_str(), &*entry));
            }
        }
        orphaned
    }

    /// Removes and returns the orphaned keys whose deadline is at or before `now`.
    pub fn take_due(&mut self, now: Instant) -> Vec<(String, Entry)> {
        let due: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| matches!(e.owner, Owner::Orphaned { deadline } if deadline <= now))
            .map(|(k, _)| k.clone())
            .collect();
        due.into_iter()
            .filter_map(|k| self.remove(&k).map(|e| (k, e)))
            .collect()
    }

    /// Removes and returns every key (the keeper is stopping).
    pub fn take_all(&mut self) -> Vec<(String, Entry)> {
        self.held_fds = 0;
        std::mem::take(&mut self.entries).into_iter().collect()
    }

    /// The earliest abort deadline, if any key is orphaned.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.entries
            .values()
            .filter_map(|e| match e.owner {
                Owner::Orphaned { deadline } => Some(deadline),
                Owner::Client(_) => None,
            })
            .min()
    }

    /// The keys after `after`, in order, as long as `fits` (asked about each one) says the
    /// page has room; the first always goes in.
    pub fn list(
        &self,
        now: Instant,
        after: Option<&str>,
        mut fits: impl FnMut(&Listed) -> bool,
    ) -> (Vec<Listed>, bool) {
        let range = match after {
            Some(a) => self
                .entries
                .range::<str, _>((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded)),
            None => self.entries.range::<str, _>(..),
        };
        let mut page = Vec::new();
        for (key, e) in range {
            let listed = Listed {
                key: key.clone(),
                mountpoint: e.kept.mountpoint.clone(),
                fusectl: e.kept.fusectl,
                fds: e.kept.fds.len(),
                state: match e.owner {
                    Owner::Client(_) => KeyState::Owned,
                    Owner::Orphaned { deadline } => KeyState::Orphaned {
                        abort_in: deadline.saturating_duration_since(now),
                    },
                },
            };
            // At least one per page, or a page could never move on.
            if !fits(&listed) && !page.is_empty() {
                return (page, true);
            }
            page.push(listed);
        }
        (page, false)
    }

    /// No key is held.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many descriptors the table holds.
    pub fn held_fds(&self) -> usize {
        self.held_fds
    }

    fn remove(&mut self, key: &str) -> Option<Entry> {
        let e = self.entries.remove(key)?;
        self.held_fds -= e.kept.fds.len();
        Some(e)
    }
}

impl Entry {
    /// Its owner went away.
    pub fn is_orphaned(&self) -> bool {
        matches!(self.owner, Owner::Orphaned { .. })
    }
}

/// How long until `deadline`, rounded to whole seconds for messages.
pub(super) fn secs_until(deadline: Instant, now: Instant) -> u64 {
    let left: Duration = deadline.saturating_duration_since(now);
    left.as_secs() + u64::from(left.subsec_nanos() >= 500_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::OwnedFd;

    fn kept(n: usize) -> Kept {
        let fds: Vec<OwnedFd> = (0..n)
            .map(|_| nix::unistd::pipe().unwrap().0)
            .collect::<Vec<_>>();
        Kept {
            mountpoint: "/mnt/x".into(),
            fusectl: None,
            fds,
        }
    }

    #[test]
    fn an_owner_replaces_and_others_are_busy() {
        let mut t = Table::new(10, 100);
        assert!(t.deposit(1, "k", kept(2)).unwrap().is_none());
        let old = t.deposit(1, "k", kept(1)).unwrap().unwrap();
        assert_eq!(old.kept.fds.len(), 2);
        assert_eq!(t.held_fds(), 1);
        assert_eq!(t.deposit(2, "k", kept(1)).err(), Some(Refused::Busy));
        assert_eq!(t.release(2, "k").err(), Some(Refused::Busy));
        assert!(matches!(t.claim(2, "k"), Claim::Busy));
        assert!(matches!(
            t.claim(1, "k"),
            Claim::Granted {
                orphaned: false,
                ..
            }
        ));
    }

    #[test]
    fn orphans_are_claimed_once_and_abort_when_due() {
        let mut t = Table::new(10, 100);
        t.deposit(1, "a", kept(2)).unwrap();
        t.deposit(1, "b", kept(2)).unwrap();
        t.deposit(3, "c", kept(1)).unwrap();
        let now = Instant::now();
        let later = now + Duration::from_secs(60);
        assert_eq!(t.orphan_all(1, later).len(), 2);
        assert_eq!(t.next_deadline(), Some(later));
        assert!(matches!(
            t.claim(2, "a"),
            Claim::Granted { orphaned: true, entry } if entry.kept.fds.len() == 2
        ));
        // The new owner is alive: a third client waits.
        assert!(matches!(t.claim(4, "a"), Claim::Busy));
        assert!(t.take_due(now).is_empty());
        let due = t.take_due(later);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].0, "b");
        assert_eq!(t.held_fds(), 3);
        assert!(matches!(t.claim(2, "b"), Claim::Missing));
    }

    #[test]
    fn a_deposit_over_an_orphan_takes_it_over() {
        let mut t = Table::new(10, 100);
        t.deposit(1, "k", kept(1)).unwrap();
        t.orphan_all(1, Instant::now());
        assert!(t.deposit(2, "k", kept(1)).unwrap().is_some());
        assert_eq!(t.next_deadline(), None);
        assert!(t.take_due(Instant::now()).is_empty());
    }

    #[test]
    fn limits_refuse_keys_and_descriptors() {
        let mut t = Table::new(1, 3);
        t.deposit(1, "a", kept(2)).unwrap();
        assert_eq!(t.deposit(1, "b", kept(1)).err(), Some(Refused::Full));
        assert_eq!(t.deposit(1, "a", kept(4)).err(), Some(Refused::Full));
        assert!(t.deposit(1, "a", kept(3)).is_ok());
        assert_eq!(t.held_fds(), 3);
        assert!(t.release(1, "a").unwrap().is_some());
        assert!(t.release(1, "a").unwrap().is_none());
        assert!(t.is_empty());
        assert_eq!(t.held_fds(), 0);
    }

    #[test]
    fn listing_pages_in_key_order() {
        let mut t = Table::new(10, 100);
        for k in ["c", "a", "b"] {
            t.deposit(1, k, kept(1)).unwrap();
        }
        let now = Instant::now();
        let mut n = 0;
        let (page, more) = t.list(now, None, |_| {
            n += 1;
            n <= 2
        });
        assert!(more);
        assert_eq!(
            page.iter().map(|l| &l.key[..]).collect::<Vec<_>>(),
            ["a", "b"]
        );
        let (page, more) = t.list(now, Some("b"), |_| true);
        assert!(!more);
        assert_eq!(page.len(), 1);
        assert_eq!(page[0].key, "c");
        assert_eq!(page[0].state, KeyState::Owned);
    }
}
