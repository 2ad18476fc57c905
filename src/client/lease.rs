//! Leases: while a task holds the debug lock, one thread of the process tells the root every
//! [`LEASE_EVERY`] that the grant is alive (PROTOCOL.md 6.3). The root marks a holder whose
//! leases stop as suspect, instead of guessing from its silence. The thread starts with the
//! first lock request and stays, idle, for the life of the client. A grant's first lease
//! goes out on the thread's next beat (within [`LEASE_EVERY`]), never at the grant itself:
//! a handoff is a few hundred microseconds, and waking a thread and sending a frame then
//! would be in its way (measured: Rust handoffs 0.3 ms -> 0.8 ms p50 with a lease at once).

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::Duration;

use crate::proto::ToRoot;

use super::{Client, lock_ok};

/// How often a lease is sent; the root's lapse is three of these.
pub const LEASE_EVERY: Duration = Duration::from_secs(1);

/// The grants this process holds (task -> epoch), and whether the thread runs.
#[derive(Debug, Default)]
pub(crate) struct Leases {
    state: Mutex<(HashMap<u64, u64>, bool)>,
    /// What the thread sleeps on between beats.
    beat: Condvar,
}

impl Leases {
    /// A lock request is about to wait: the thread must run by the time it is granted.
    pub(crate) fn ready(self: &Arc<Self>, client: &Arc<Client>) {
        let mut st = lock_ok(&self.state);
        if !st.1 {
            let leases = self.clone();
            let weak = Arc::downgrade(client);
            let spawned = std::thread::Builder::new()
                .name("actor-tui-lease".into())
                .spawn(move || beat(&leases, &weak));
            // Without the thread the root judges the holder by the older rules: no lease is
            // not a failure of the session.
            st.1 = spawned.is_ok();
        }
    }

    /// A grant starts: lease it every [`LEASE_EVERY`] until [`Leases::end`].
    pub(crate) fn start(self: &Arc<Self>, client: &Arc<Client>, task: u64, epoch: u64) {
        // Normally running since the request; this covers a grant without one (none today).
        self.ready(client);
        lock_ok(&self.state).0.insert(task, epoch);
    }

    /// The grant of `task` ended (released, revoked, or the root went away).
    pub(crate) fn end(&self, task: u64) {
        lock_ok(&self.state).0.remove(&task);
    }
}

fn beat(leases: &Leases, client: &Weak<Client>) {
    let mut st = lock_ok(&leases.state);
    loop {
        st = match leases.beat.wait_timeout(st, LEASE_EVERY) {
            Ok((g, _)) => g,
            Err(poisoned) => poisoned.into_inner().0,
        };
        let held: Vec<(u64, u64)> = st.0.iter().map(|(t, e)| (*t, *e)).collect();
        if !held.is_empty() {
            drop(st);
            let Some(c) = client.upgrade() else { return };
            for (task, epoch) in held {
                if c.send(&ToRoot::Lease { task, epoch }).is_err() {
                    // The root is gone: nothing to lease to.
                    return;
                }
            }
            drop(c);
            st = lock_ok(&leases.state);
        }
    }
}
