//! The debug lock from an actor's side, as one conversation: ask for it on the task's
//! route, wait for the grant (or a refusal, or the root going away), give it back. A REPL
//! session and a [`LockGuard`] are both a [`Grant`] with something on top.

use std::sync::Arc;

use crate::proto::{Reason, ReleaseHow, ToRoot};

use super::mailbox::Mailbox;
use super::pause::PauseError;
use super::{Client, LockMsg, global, registry};

/// A grant of the lock to one task. Dropping it gives the lock back (`continue`).
#[derive(Debug)]
pub(crate) struct Grant {
    pub client: Arc<Client>,
    pub task: u64,
    pub epoch: u64,
    /// The task's route: session input and revocation arrive here.
    pub mb: Arc<Mailbox<LockMsg>>,
    done: bool,
}

/// A wait this long without a grant means the request is queued: the rest of the peek
/// ([`request`]'s `later_peek`) is gathered and sent then.
const QUEUED_AFTER: std::time::Duration = std::time::Duration::from_millis(20);

/// Asks for the lock for `task` and blocks until it is granted or refused. `later_peek`
/// makes the rest of the peek, too slow to make before the request went out (the queue
/// order must be the order of the pauses); it runs only if the request has to wait, and
/// its result goes out as `lock_peek`.
pub(crate) fn request(
    client: &Arc<Client>,
    task: u64,
    task_name: String,
    reason: Reason,
    location: String,
    peek: Option<String>,
    later_peek: Option<Box<dyn FnOnce() -> String + '_>>,
) -> Result<Grant, PauseError> {
    let mb = client.lock_route(task);
    client.leases.ready(client);
    let sent = client.send(&ToRoot::LockRequest {
        task,
        task_name,
        reason,
        location,
        peek,
    });
    if let Err(e) = sent {
        client.drop_lock_route(task, &mb);
        return Err(PauseError::Send(e.to_string()));
    }
    let mut later_peek = later_peek;
    loop {
        let msg = match later_peek.take() {
            Some(make) => mb.recv_timeout(Some(QUEUED_AFTER)).or_else(|| {
                // Queued (or the root is gone, and the send fails quietly): the wait is idle
                // time, spent on the rest of the peek.
                let _ = client.send(&ToRoot::LockPeek { task, peek: make() });
                mb.recv()
            }),
            None => mb.recv(),
        };
        match msg {
            Some(LockMsg::Granted(epoch)) => {
                client.leases.start(client, task, epoch);
                return Ok(Grant {
                    client: client.clone(),
                    task,
                    epoch,
                    mb,
                    done: false,
                });
            }
            Some(LockMsg::Refused(e)) => {
                client.drop_lock_route(task, &mb);
                return Err(PauseError::Refused(e));
            }
            Some(LockMsg::Skipped(why)) => {
                client.drop_lock_route(task, &mb);
                return Err(PauseError::Skipped(why));
            }
            // Input or revocation cannot precede a grant; ignore anything out of order.
            Some(_) => continue,
            None => {
                client.drop_lock_route(task, &mb);
                return Err(PauseError::Disconnected);
            }
        }
    }
}

impl Grant {
    /// Gives the lock back, saying how the session ended.
    pub fn release(&mut self, how: ReleaseHow) -> Result<(), PauseError> {
        if self.done {
            return Ok(());
        }
        self.forget();
        self.client
            .send(&ToRoot::LockRelease {
                task: self.task,
                epoch: self.epoch,
                how,
                step_timeout: false,
            })
            .map_err(|e| PauseError::Send(e.to_string()))
    }

    /// Ends the grant without a release: it was revoked, or the root is gone (a release
    /// would only be ignored).
    pub fn forget(&mut self) {
        if !self.done {
            self.done = true;
            self.client.leases.end(self.task);
            self.client.drop_lock_route(self.task, &self.mb);
        }
    }
}

impl Drop for Grant {
    fn drop(&mut self) {
        // Errors mean the root is gone, and with it the lock.
        let _ = self.release(ReleaseHow::Continue);
    }
}

/// The debug lock held without a REPL, for code that needs the console to itself for a
/// while. Released on [`LockGuard::release`] or drop. If it is force-released meanwhile,
/// the later release quotes an old epoch and the root ignores it.
#[derive(Debug)]
pub struct LockGuard {
    grant: Grant,
}

/// Blocks until the calling task holds the tree-wide debug lock.
pub fn acquire_lock(reason: Reason, location: &str) -> Result<LockGuard, PauseError> {
    let client = global().ok_or(PauseError::NoRoot)?;
    let task = registry::current_task_id();
    let grant = request(
        &client,
        task,
        registry::task_name(task),
        reason,
        location.into(),
        None,
        None,
    )?;
    Ok(LockGuard { grant })
}

impl LockGuard {
    /// The grant's epoch.
    pub fn epoch(&self) -> u64 {
        self.grant.epoch
    }

    /// Gives the lock back.
    pub fn release(mut self) -> Result<(), PauseError> {
        self.grant.release(ReleaseHow::Continue)
    }
}
