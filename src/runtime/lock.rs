//! The tree-wide debug lock as a pure state machine: one holder, a FIFO of waiters, requests
//! keyed by (actor, task), epochs on grants. No I/O and no clocks: the engine task owns the
//! one `LockTable` and turns its transitions into frames and events.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::proto::{ActorId, Reason};

use super::bounds::MAX_WAITING_PER_ACTOR;

/// Identifies a request: the actor (root-assigned id) and the task or thread inside it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LockKey {
    pub actor: ActorId,
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseCause {
    Continue,
    /// The holder stepped and the step ran past its timeout: the lock moved on.
    StepTimeout,
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
            Self::StepTimeout => "step_timeout",
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

/// A waiting request that left the queue without being granted, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    pub request: LockRequest,
    pub cause: ReleaseCause,
}

/// Everything one operation changed, in the order it happened: at most one release, the
/// waiters that left the queue, then at most one new grant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transition {
    pub released: Option<Released>,
    pub dropped: Vec<Dropped>,
    pub granted: Option<Grant>,
}

/// Why a request or release was refused. Refusals change nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LockError {
    #[error("task {task} of actor {actor} already holds the debug lock (epoch {epoch})")]
    AlreadyHolding {
        actor: ActorId,
        task: u64,
        epoch: u64,
    },
    #[error("task {task} of actor {actor} is already waiting for the debug lock")]
    AlreadyQueued { actor: ActorId, task: u64 },
    #[error("task {task} of actor {actor} does not hold the debug lock")]
    NotHolder { actor: ActorId, task: u64 },
    #[error("release quotes epoch {quoted} but the current grant is epoch {current}")]
    StaleEpoch { quoted: u64, current: u64 },
    #[error("actor {actor} already has {limit} requests waiting for the debug lock")]
    TooManyWaiting { actor: ActorId, limit: usize },
    #[error("task {task} of actor {actor} is not waiting for the debug lock")]
    NotQueued { actor: ActorId, task: u64 },
}

/// Where arrival numbers start: promoted waiters get numbers below every other one.
const FIRST_SEQ: u64 = 1 << 62;

/// The lock: holder, FIFO queue and the epoch counter. Every operation costs O(log n) in
/// the queue's length (or O(k log n) for an actor with k waiters), so a peer queueing
/// thousands of requests cannot make the root quadratic.
#[derive(Debug)]
pub struct LockTable {
    holder: Option<Grant>,
    /// Waiters by arrival number: iteration order is grant order. New requests count up
    /// from [`FIRST_SEQ`], promoted ones count down below it.
    queue: BTreeMap<u64, LockRequest>,
    next_seq: u64,
    front_seq: u64,
    /// Index for duplicate checks.
    by_key: HashMap<LockKey, u64>,
    /// Arrival numbers of each actor's waiters, for the per-actor cap and fast removal.
    by_actor: HashMap<ActorId, BTreeSet<u64>>,
    max_per_actor: usize,
    last_epoch: u64,
}

impl Default for LockTable {
    fn default() -> Self {
        Self::with_limit(MAX_WAITING_PER_ACTOR)
    }
}

impl LockTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// A table that lets each actor have at most `max_per_actor` waiting requests.
    pub fn with_limit(max_per_actor: usize) -> Self {
        Self {
            holder: None,
            queue: BTreeMap::new(),
            next_seq: FIRST_SEQ,
            front_seq: FIRST_SEQ - 1,
            by_key: HashMap::new(),
            by_actor: HashMap::new(),
            max_per_actor,
            last_epoch: 0,
        }
    }

    pub fn holder(&self) -> Option<&Grant> {
        self.holder.as_ref()
    }

    /// Waiters in the order they will be granted.
    pub fn queue(&self) -> impl ExactSizeIterator<Item = &LockRequest> {
        self.queue.values()
    }

    /// True when nobody holds or waits: teardown may proceed freely.
    /// Whether the request of `key` waits in the queue (not granted, not gone).
    pub fn is_waiting(&self, key: &LockKey) -> bool {
        self.by_key.contains_key(key)
    }

    pub fn is_idle(&self) -> bool {
        self.holder.is_none() && self.queue.is_empty()
    }

    /// True when `actor` holds the lock or has a request waiting.
    pub fn involves(&self, actor: ActorId) -> bool {
        self.holder
            .as_ref()
            .is_some_and(|g| g.request.key.actor == actor)
            || self.by_actor.contains_key(&actor)
    }

    /// Each actor that holds or waits, once.
    pub fn involved_actors(&self) -> impl Iterator<Item = ActorId> + '_ {
        let holder = self.holder.as_ref().map(|g| g.request.key.actor);
        holder.into_iter().chain(
            self.by_actor
                .keys()
                .copied()
                .filter(move |a| Some(*a) != holder),
        )
    }

    /// Adds a request. The transition holds the grant if the lock was free, nothing if the
    /// request was queued. A second request from a key that holds or waits is refused:
    /// queueing it would deadlock the task against itself.
    pub fn request(&mut self, req: LockRequest) -> Result<Transition, LockError> {
        if let Some(g) = &self.holder
            && g.request.key == req.key
        {
            return Err(LockError::AlreadyHolding {
                actor: req.key.actor,
                task: req.key.task,
                epoch: g.epoch,
            });
        }
        if self.by_key.contains_key(&req.key) {
            return Err(LockError::AlreadyQueued {
                actor: req.key.actor,
                task: req.key.task,
            });
        }
        if self
            .by_actor
            .get(&req.key.actor)
            .is_some_and(|w| w.len() >= self.max_per_actor)
        {
            return Err(LockError::TooManyWaiting {
                actor: req.key.actor,
                limit: self.max_per_actor,
            });
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.by_key.insert(req.key.clone(), seq);
        self.by_actor.entry(req.key.actor).or_default().insert(seq);
        self.queue.insert(seq, req);
        Ok(Transition {
            granted: self.grant_next(),
            ..Transition::default()
        })
    }

    /// Moves a waiter to the front of the queue (it is granted next). O(log n).
    pub fn promote(&mut self, key: &LockKey) -> Result<(), LockError> {
        let seq = self.front_seq;
        self.front_seq -= 1;
        self.requeue(key, seq)
    }

    /// Moves a waiter to the back of the queue. O(log n).
    pub fn defer(&mut self, key: &LockKey) -> Result<(), LockError> {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.requeue(key, seq)
    }

    fn requeue(&mut self, key: &LockKey, seq: u64) -> Result<(), LockError> {
        let old = self.by_key.get(key).copied().ok_or(LockError::NotQueued {
            actor: key.actor,
            task: key.task,
        })?;
        let req = self.unqueue(old).ok_or(LockError::NotQueued {
            actor: key.actor,
            task: key.task,
        })?;
        self.by_key.insert(req.key.clone(), seq);
        self.by_actor.entry(req.key.actor).or_default().insert(seq);
        self.queue.insert(seq, req);
        Ok(())
    }

    /// Takes a waiter out of the queue without granting it (the user skips it). O(log n).
    pub fn take(&mut self, key: &LockKey) -> Result<LockRequest, LockError> {
        let not = LockError::NotQueued {
            actor: key.actor,
            task: key.task,
        };
        let seq = self.by_key.get(key).copied().ok_or(not.clone())?;
        self.unqueue(seq).ok_or(not)
    }

    /// Takes a waiter out of the queue and the indexes.
    fn unqueue(&mut self, seq: u64) -> Option<LockRequest> {
        let req = self.queue.remove(&seq)?;
        self.by_key.remove(&req.key);
        if let Some(w) = self.by_actor.get_mut(&req.key.actor) {
            w.remove(&seq);
            if w.is_empty() {
                self.by_actor.remove(&req.key.actor);
            }
        }
        Some(req)
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
                    actor: key.actor,
                    task: key.task,
                });
            }
        }
        Ok(self.end_grant(cause, Vec::new()))
    }

    /// The holder's debugger stopped somewhere else during its session: the grant now
    /// names that task and location. False (nothing changes) unless `key` holds `epoch`.
    pub fn moved(
        &mut self,
        key: &LockKey,
        epoch: u64,
        task_name: String,
        location: String,
    ) -> bool {
        match &mut self.holder {
            Some(g) if g.request.key == *key && g.epoch == epoch => {
                g.request.task_name = task_name;
                g.request.location = location;
                true
            }
            _ => false,
        }
    }

    /// Takes the lock away from whoever holds it and grants the next waiter.
    pub fn force_release(&mut self) -> Option<Transition> {
        self.holder.as_ref()?;
        Some(self.end_grant(ReleaseCause::Force, Vec::new()))
    }

    /// Forgets everything of `actor`: its queued requests leave the queue and, if it holds
    /// the lock, the grant ends with `cause`.
    pub fn remove_actor(&mut self, actor: ActorId, cause: ReleaseCause) -> Transition {
        self.remove_actors(&[actor], cause)
    }

    /// Forgets everything of several actors at once. All their waiters leave the queue
    /// before the grant ends, so the lock never passes from one of them to another (which
    /// would open a session only to revoke it).
    pub fn remove_actors(&mut self, actors: &[ActorId], cause: ReleaseCause) -> Transition {
        let mut seqs: Vec<u64> = actors
            .iter()
            .filter_map(|a| self.by_actor.get(a))
            .flatten()
            .copied()
            .collect();
        // Reported in queue order.
        seqs.sort_unstable();
        seqs.dedup();
        let dropped: Vec<Dropped> = seqs
            .into_iter()
            .filter_map(|q| self.unqueue(q))
            .map(|request| Dropped { request, cause })
            .collect();
        let holds = self
            .holder
            .as_ref()
            .is_some_and(|g| actors.contains(&g.request.key.actor));
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

    fn end_grant(&mut self, cause: ReleaseCause, dropped: Vec<Dropped>) -> Transition {
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
        let seq = *self.queue.keys().next()?;
        let request = self.unqueue(seq)?;
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
    use std::collections::VecDeque;

    /// A made-up actor id per name, so the tests read by name.
    fn id(name: &str) -> ActorId {
        ActorId(
            name.bytes()
                .fold(7, |h: u64, b| h.wrapping_mul(31) + u64::from(b)),
        )
    }

    fn req(actor: &str, task: u64) -> LockRequest {
        LockRequest {
            key: LockKey {
                actor: id(actor),
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
        let g = t
            .request(req("a", 1))
            .expect("free lock")
            .granted
            .expect("granted");
        assert_eq!(g.epoch, 1);
        assert_eq!(t.request(req("b", 1)).map(|tr| tr.granted), Ok(None));
        assert_eq!(t.request(req("c", 1)).map(|tr| tr.granted), Ok(None));
        let tr = t
            .release(&g.request.key, 1, ReleaseCause::Continue)
            .expect("holder");
        assert_eq!(tr.granted.expect("next").request.key.actor, id("b"));
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
        assert_eq!(t.request(req("a", 2)).map(|tr| tr.granted), Ok(None));
    }

    #[test]
    fn late_release_with_old_epoch_changes_nothing() {
        let mut t = LockTable::new();
        let g1 = t
            .request(req("a", 1))
            .expect("ok")
            .granted
            .expect("granted");
        t.request(req("b", 1)).expect("ok");
        let tr = t.force_release().expect("held");
        assert_eq!(tr.released.expect("released").cause, ReleaseCause::Force);
        let g2 = tr.granted.expect("b granted");
        assert_eq!(
            t.release(&g1.request.key, g1.epoch, ReleaseCause::Continue),
            Err(LockError::NotHolder {
                actor: id("a"),
                task: 1
            })
        );
        assert_eq!(t.holder(), Some(&g2));
    }

    #[test]
    fn same_key_regranted_refuses_old_epoch() {
        let mut t = LockTable::new();
        let g1 = t
            .request(req("a", 1))
            .expect("ok")
            .granted
            .expect("granted");
        t.force_release().expect("held");
        let g2 = t
            .request(req("a", 1))
            .expect("ok")
            .granted
            .expect("granted");
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
        let tr = t.remove_actor(id("a"), ReleaseCause::Disconnect);
        assert_eq!(tr.released.expect("a held").cause, ReleaseCause::Disconnect);
        assert_eq!(tr.dropped.len(), 1);
        assert_eq!(tr.granted.expect("b next").request.key.actor, id("b"));
        assert!(!t.involves(id("a")));
        let tr = t.remove_actor(id("c"), ReleaseCause::Exit);
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
        let tr = t.remove_actors(&[id("a"), id("b")], ReleaseCause::Cancel);
        assert_eq!(tr.released.expect("a held").cause, ReleaseCause::Cancel);
        assert_eq!(tr.dropped.len(), 2);
        assert_eq!(tr.granted.expect("c next").request.key.actor, id("c"));
    }

    #[test]
    fn an_actor_may_not_queue_past_its_cap_but_others_still_may() {
        let mut t = LockTable::with_limit(3);
        t.request(req("holder", 0)).expect("ok");
        for task in 1..=3 {
            assert_eq!(t.request(req("a", task)).map(|tr| tr.granted), Ok(None));
        }
        assert_eq!(
            t.request(req("a", 4)),
            Err(LockError::TooManyWaiting {
                actor: id("a"),
                limit: 3
            })
        );
        assert_eq!(t.request(req("b", 1)).map(|tr| tr.granted), Ok(None));
        // Once one is granted, there is room again.
        let g = t.holder().cloned().expect("held");
        t.release(&g.request.key, g.epoch, ReleaseCause::Continue)
            .expect("release");
        assert_eq!(t.request(req("a", 4)).map(|tr| tr.granted), Ok(None));
        let mut inv: Vec<ActorId> = t.involved_actors().collect();
        inv.sort_unstable();
        let mut want = vec![id("a"), id("b")];
        want.sort_unstable();
        assert_eq!(inv, want);
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
                    expected_order.retain(|k| *k != d.request.key);
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
                            Ok(tr) => {
                                expected_order.push_back(key);
                                apply(tr, &mut expected_order, &mut open)?;
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
                        let key = LockKey { actor: id(&a.to_string()), task: task.into() };
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
                        let tr = t.remove_actor(id(&a.to_string()), ReleaseCause::Disconnect);
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

    #[test]
    fn promote_defer_and_take_reorder_the_queue_but_never_the_grant() {
        let mut t = LockTable::new();
        let k = |n: &str| LockKey {
            actor: id(n),
            task: 1,
        };
        let req = |n: &str| LockRequest {
            key: k(n),
            task_name: "main".into(),
            reason: Reason::Pause,
            location: format!("{n}.rs:1"),
        };
        for n in ["h", "a", "b", "c"] {
            t.request(req(n)).expect("request");
        }
        let order = |t: &LockTable| t.queue().map(|r| r.key.actor).collect::<Vec<_>>();
        assert_eq!(order(&t), vec![id("a"), id("b"), id("c")]);
        t.promote(&k("c")).expect("promote");
        t.defer(&k("a")).expect("defer");
        assert_eq!(order(&t), vec![id("c"), id("b"), id("a")]);
        assert_eq!(t.take(&k("b")).expect("take").key, k("b"));
        assert!(t.take(&k("b")).is_err(), "once");
        assert!(t.promote(&k("h")).is_err(), "the holder is not queued");
        // The next grant is the promoted one; the holder was not disturbed.
        let h = t.holder().expect("holder").clone();
        let tr = t
            .release(&h.request.key, h.epoch, ReleaseCause::Continue)
            .expect("release");
        assert_eq!(tr.granted.expect("granted").request.key, k("c"));
        // A request that comes later goes behind everything, promoted or not.
        t.request(req("d")).expect("request");
        t.promote(&k("d")).expect("promote again");
        assert_eq!(order(&t), vec![id("d"), id("a")]);
    }
}
