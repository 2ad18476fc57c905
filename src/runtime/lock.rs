//! The tree-wide debug lock as a pure state machine: one holder, a FIFO of waiters, requests
//! keyed by (actor, task), epochs on grants. No I/O and no clocks: the engine task owns the
//! one `LockTable` and turns its transitions into frames and events.

use std::collections::VecDeque;

use crate::proto::Reason;

/// Identifies a request: the actor (root-assigned id) and the task or thread inside it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LockKey {
    pub actor: String,
    pub task: u64,
}

/// A request as the table keeps it, waiting or granted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockRequest {
    pub key: LockKey,
    pub task_name: String,
    pub reason: Reason,
    pub location: String,
}

/// The current grant. The epoch increases with every grant, so a release that quotes an old
/// epoch can never free a newer grant, even one to the same (actor, task).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub request: LockRequest,
    pub epoch: u64,
}

/// Why a grant ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReleaseCause {
    Continue,
    Quit,
    Disconnect,
    Exit,
    Force,
    Cancel,
}

impl ReleaseCause {
    /// The name used in events (`lock_released.cause`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Continue => "continue",
            Self::Quit => "quit",
            Self::Disconnect => "disconnect",
            Self::Exit => "exit",
            Self::Force => "force",
            Self::Cancel => "cancel",
        }
    }
}

/// A grant that ended, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Released {
    pub grant: Grant,
    pub cause: ReleaseCause,
}

/// Everything one operation changed, in the order it happened: at most one release, the
/// waiters that left the queue, then at most one new grant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transition {
    pub released: Option<Released>,
    pub dropped: Vec<LockRequest>,
    pub granted: Option<Grant>,
}

/// Why a request or release was refused. Refusals change nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LockError {
    #[error("task {task} of actor {actor} already holds the debug lock (epoch {epoch})")]
    AlreadyHolding {
        actor: String,
        task: u64,
        epoch: u64,
    },
    #[error("task {task} of actor {actor} is already waiting for the debug lock")]
    AlreadyQueued { actor: String, task: u64 },
    #[error("task {task} of actor {actor} does not hold the debug lock")]
    NotHolder { actor: String, task: u64 },
    #[error("release quotes epoch {quoted} but the current grant is epoch {current}")]
    StaleEpoch { quoted: u64, current: u64 },
}

/// The lock: holder, FIFO queue and the epoch counter.
#[derive(Debug, Default)]
pub struct LockTable {
    holder: Option<Grant>,
    queue: VecDeque<LockRequest>,
    last_epoch: u64,
}

impl LockTable {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn holder(&self) -> Option<&Grant> {
        self.holder.as_ref()
    }

    /// Waiters in the order they will be granted.
    pub fn queue(&self) -> impl ExactSizeIterator<Item = &LockRequest> {
        self.queue.iter()
    }

    /// True when nobody holds or waits: teardown may proceed freely.
    pub fn is_idle(&self) -> bool {
        self.holder.is_none() && self.queue.is_empty()
    }

    /// True when `actor` holds the lock or has a request waiting.
    pub fn involves(&self, actor: &str) -> bool {
        self.holder
            .as_ref()
            .is_some_and(|g| g.request.key.actor == actor)
            || self.queue.iter().any(|r| r.key.actor == actor)
    }

    /// Adds a request. Returns the grant if the lock was free; `Ok(None)` if queued.
    /// A second request from a key that holds or waits is refused: queueing it would
    /// deadlock the task against itself.
    pub fn request(&mut self, req: LockRequest) -> Result<Option<Grant>, LockError> {
        if let Some(g) = &self.holder
            && g.request.key == req.key
        {
            return Err(LockError::AlreadyHolding {
                actor: req.key.actor,
                task: req.key.task,
                epoch: g.epoch,
            });
        }
        if self.queue.iter().any(|r| r.key == req.key) {
            return Err(LockError::AlreadyQueued {
                actor: req.key.actor,
                task: req.key.task,
            });
        }
        self.queue.push_back(req);
        Ok(self.grant_next())
    }

    /// Releases the grant held by `key` if `epoch` is current.
    pub fn release(
        &mut self,
        key: &LockKey,
        epoch: u64,
        cause: ReleaseCause,
    ) -> Result<Transition, LockError> {
        match &self.holder {
            Some(g) if g.request.key == *key && g.epoch == epoch => {}
            Some(g) if g.request.key == *key => {
                return Err(LockError::StaleEpoch {
                    quoted: epoch,
                    current: g.epoch,
                });
            }
            _ => {
                return Err(LockError::NotHolder {
                    actor: key.actor.clone(),
                    task: key.task,
                });
            }
        }
        Ok(self.end_grant(cause, Vec::new()))
    }

    /// Takes the lock away from whoever holds it and grants the next waiter.
    pub fn force_release(&mut self) -> Option<Transition> {
        self.holder.as_ref()?;
        Some(self.end_grant(ReleaseCause::Force, Vec::new()))
    }

    /// Forgets everything of `actor`: its queued requests leave the queue and, if it holds
    /// the lock, the grant ends with `cause`.
    pub fn remove_actor(&mut self, actor: &str, cause: ReleaseCause) -> Transition {
        self.remove_actors(&[actor], cause)
    }

    /// Forgets everything of several actors at once. All their waiters leave the queue
    /// before the grant ends, so the lock never passes from one of them to another (which
    /// would open a session only to revoke it).
    pub fn remove_actors(&mut self, actors: &[&str], cause: ReleaseCause) -> Transition {
        let gone = |a: &str| actors.contains(&a);
        let mut dropped = Vec::new();
        self.queue.retain(|r| {
            let keep = !gone(&r.key.actor);
            if !keep {
                dropped.push(r.clone());
            }
            keep
        });
        let holds = self
            .holder
            .as_ref()
            .is_some_and(|g| gone(&g.request.key.actor));
        if holds {
            self.end_grant(cause, dropped)
        } else {
            Transition {
                released: None,
                dropped,
                granted: None,
            }
        }
    }

    fn end_grant(&mut self, cause: ReleaseCause, dropped: Vec<LockRequest>) -> Transition {
        let released = self.holder.take().map(|grant| Released { grant, cause });
        Transition {
            released,
            dropped,
            granted: self.grant_next(),
        }
    }

    fn grant_next(&mut self) -> Option<Grant> {
        if self.holder.is_some() {
            return None;
        }
        let request = self.queue.pop_front()?;
        self.last_epoch += 1;
        let grant = Grant {
            request,
            epoch: self.last_epoch,
        };
        self.holder = Some(grant.clone());
        Some(grant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn req(actor: &str, task: u64) -> LockRequest {
        LockRequest {
            key: LockKey {
                actor: actor.into(),
                task,
            },
            task_name: format!("t{task}"),
            reason: Reason::Pause,
            location: "here.rs:1".into(),
        }
    }

    #[test]
    fn first_request_is_granted_and_others_queue_in_order() {
        let mut t = LockTable::new();
        let g = t.request(req("a", 1)).expect("free lock").expect("granted");
        assert_eq!(g.epoch, 1);
        assert_eq!(t.request(req("b", 1)), Ok(None));
        assert_eq!(t.request(req("c", 1)), Ok(None));
        let tr = t
            .release(&g.request.key, 1, ReleaseCause::Continue)
            .expect("holder");
        assert_eq!(tr.granted.expect("next").request.key.actor, "b");
        assert_eq!(t.queue().len(), 1);
    }

    #[test]
    fn double_request_is_refused_while_holding_or_waiting() {
        let mut t = LockTable::new();
        t.request(req("a", 1)).expect("ok");
        assert!(matches!(
            t.request(req("a", 1)),
            Err(LockError::AlreadyHolding { .. })
        ));
        t.request(req("b", 7)).expect("ok");
        assert!(matches!(
            t.request(req("b", 7)),
            Err(LockError::AlreadyQueued { .. })
        ));
        // Another task of the same actor is a different key and may queue.
        assert_eq!(t.request(req("a", 2)), Ok(None));
    }

    #[test]
    fn late_release_with_old_epoch_changes_nothing() {
        let mut t = LockTable::new();
        let g1 = t.request(req("a", 1)).expect("ok").expect("granted");
        t.request(req("b", 1)).expect("ok");
        let tr = t.force_release().expect("held");
        assert_eq!(tr.released.expect("released").cause, ReleaseCause::Force);
        let g2 = tr.granted.expect("b granted");
        assert_eq!(
            t.release(&g1.request.key, g1.epoch, ReleaseCause::Continue),
            Err(LockError::NotHolder {
                actor: "a".into(),
                task: 1
            })
        );
        assert_eq!(t.holder(), Some(&g2));
    }

    #[test]
    fn same_key_regranted_refuses_old_epoch() {
        let mut t = LockTable::new();
        let g1 = t.request(req("a", 1)).expect("ok").expect("granted");
        t.force_release().expect("held");
        let g2 = t.request(req("a", 1)).expect("ok").expect("granted");
        assert_eq!(
            t.release(&g1.request.key, g1.epoch, ReleaseCause::Continue),
            Err(LockError::StaleEpoch {
                quoted: g1.epoch,
                current: g2.epoch
            })
        );
    }

    #[test]
    fn removing_an_actor_drops_its_waiters_and_frees_its_grant() {
        let mut t = LockTable::new();
        t.request(req("a", 1)).expect("ok");
        t.request(req("b", 1)).expect("ok");
        t.request(req("a", 2)).expect("ok");
        t.request(req("c", 1)).expect("ok");
        let tr = t.remove_actor("a", ReleaseCause::Disconnect);
        assert_eq!(tr.released.expect("a held").cause, ReleaseCause::Disconnect);
        assert_eq!(tr.dropped.len(), 1);
        assert_eq!(tr.granted.expect("b next").request.key.actor, "b");
        assert!(!t.involves("a"));
        let tr = t.remove_actor("c", ReleaseCause::Exit);
        assert!(tr.released.is_none() && tr.granted.is_none());
        assert_eq!(tr.dropped.len(), 1);
        assert!(!t.is_idle());
    }

    #[test]
    fn removing_several_actors_never_hands_the_lock_between_them() {
        let mut t = LockTable::new();
        t.request(req("a", 1)).expect("ok");
        t.request(req("a", 2)).expect("ok");
        t.request(req("b", 1)).expect("ok");
        t.request(req("c", 1)).expect("ok");
        let tr = t.remove_actors(&["a", "b"], ReleaseCause::Cancel);
        assert_eq!(tr.released.expect("a held").cause, ReleaseCause::Cancel);
        assert_eq!(tr.dropped.len(), 2);
        assert_eq!(tr.granted.expect("c next").request.key.actor, "c");
    }

    #[derive(Debug, Clone)]
    enum Op {
        Request(u8, u8),
        ReleaseHolder,
        ReleaseStale(u8, u8, u64),
        Force,
        Remove(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u8..4, 0u8..3).prop_map(|(a, t)| Op::Request(a, t)),
            3 => Just(Op::ReleaseHolder),
            1 => (0u8..4, 0u8..3, 0u64..20).prop_map(|(a, t, e)| Op::ReleaseStale(a, t, e)),
            1 => Just(Op::Force),
            1 => (0u8..4).prop_map(Op::Remove),
        ]
    }

    proptest! {
        /// Never two holders, grants in request order, every grant released exactly once.
        #[test]
        fn invariants_hold_for_any_sequence(ops in proptest::collection::vec(op(), 0..200)) {
            let mut t = LockTable::new();
            // Model: the FIFO of accepted requests not yet granted or dropped.
            let mut expected_order: VecDeque<LockKey> = VecDeque::new();
            let mut open: Option<Grant> = None;
            let mut granted_epochs = Vec::new();
            let mut released_epochs = Vec::new();
            let mut apply = |tr: Transition,
                             expected_order: &mut VecDeque<LockKey>,
                             open: &mut Option<Grant>| {
                if let Some(r) = tr.released {
                    prop_assert_eq!(Some(&r.grant), open.as_ref());
                    released_epochs.push(r.grant.epoch);
                    *open = None;
                }
                for d in tr.dropped {
                    expected_order.retain(|k| *k != d.key);
                }
                if let Some(g) = tr.granted {
                    prop_assert!(open.is_none(), "two holders");
                    prop_assert_eq!(expected_order.pop_front(), Some(g.request.key.clone()));
                    granted_epochs.push(g.epoch);
                    *open = Some(g);
                }
                Ok(())
            };
            for op in ops {
                match op {
                    Op::Request(a, task) => {
                        let r = req(&a.to_string(), task.into());
                        let key = r.key.clone();
                        match t.request(r) {
                            Ok(g) => {
                                expected_order.push_back(key);
                                apply(Transition { granted: g, ..Default::default() },
                                      &mut expected_order, &mut open)?;
                            }
                            Err(_) => {
                                let dup = open.as_ref().is_some_and(|g| g.request.key == key)
                                    || expected_order.contains(&key);
                                prop_assert!(dup, "refused a fresh request");
                            }
                        }
                    }
                    Op::ReleaseHolder => {
                        if let Some(g) = open.clone() {
                            let tr = t.release(&g.request.key, g.epoch, ReleaseCause::Continue);
                            prop_assert!(tr.is_ok());
                            apply(tr.expect("checked"), &mut expected_order, &mut open)?;
                        }
                    }
                    Op::ReleaseStale(a, task, epoch) => {
                        let key = LockKey { actor: a.to_string(), task: task.into() };
                        let current = open.as_ref().is_some_and(|g| g.request.key == key && g.epoch == epoch);
                        if !current {
                            let before = t.holder().cloned();
                            prop_assert!(t.release(&key, epoch, ReleaseCause::Continue).is_err());
                            prop_assert_eq!(t.holder().cloned(), before);
                        }
                    }
                    Op::Force => {
                        if let Some(tr) = t.force_release() {
                            apply(tr, &mut expected_order, &mut open)?;
                        } else {
                            prop_assert!(open.is_none());
                        }
                    }
                    Op::Remove(a) => {
                        let tr = t.remove_actor(&a.to_string(), ReleaseCause::Disconnect);
                        apply(tr, &mut expected_order, &mut open)?;
                    }
                }
                prop_assert_eq!(t.holder(), open.as_ref());
                prop_assert_eq!(t.queue().len(), expected_order.len());
                // The lock is never left free while someone waits.
                prop_assert!(t.holder().is_some() || t.queue().len() == 0);
            }
            // Epochs strictly increase and each grant was released at most once.
            prop_assert!(granted_epochs.windows(2).all(|w| w[0] < w[1]));
            let mut seen = released_epochs.clone();
            seen.sort_unstable();
            seen.dedup();
            prop_assert_eq!(seen.len(), released_epochs.len());
            prop_assert_eq!(released_epochs.len() + usize::from(open.is_some()), granted_epochs.len());
        }
    }
}
