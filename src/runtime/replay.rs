//! What a viewer that attaches late must be told: a compact picture of the run built from
//! the event stream itself (pure: events in, events out), so it can never disagree with what
//! the other front ends saw. [`Replay::snapshot`] turns it back into events which, applied to
//! an empty console, give the same tree, lock, session and recent output.
//!
//! Bounded: output is kept as the last [`TAIL_BYTES`] of each actor, at most
//! [`TAIL_TOTAL`] in all (the actor written to least recently loses its tail first); the
//! holder's session transcript keeps its last [`TRANSCRIPT_BYTES`]; at most
//! [`MAX_EXITED`] exited actors are remembered.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::event::{RuntimeEvent, ViewerRole};
use crate::proto::ActorId;

/// Output kept per actor for a late viewer: enough to redraw a screen or two.
pub const TAIL_BYTES: usize = 32 << 10;
/// Output kept for all actors together.
pub const TAIL_TOTAL: usize = 8 << 20;
/// The holder's session output kept for a late viewer.
pub const TRANSCRIPT_BYTES: usize = 64 << 10;
/// Exited actors remembered (the oldest are forgotten first).
pub const MAX_EXITED: usize = 4096;

#[derive(Debug)]
struct Actor {
    started: RuntimeEvent,
    exited: Option<RuntimeEvent>,
    tail: VecDeque<u8>,
    /// When output last came (a counter), for evicting tails.
    written: u64,
    wants_input: bool,
    teardown_waiting: bool,
    cancelling: Option<RuntimeEvent>,
    hung: Option<RuntimeEvent>,
}

#[derive(Debug)]
struct Holder {
    actor: ActorId,
    epoch: u64,
    requested: RuntimeEvent,
    granted: RuntimeEvent,
    moved: Option<RuntimeEvent>,
    suspect: Option<RuntimeEvent>,
    leased: Option<RuntimeEvent>,
    /// `repl_output` and `repl_input` events of the session, oldest first.
    transcript: VecDeque<RuntimeEvent>,
    transcript_bytes: usize,
    ready: Option<RuntimeEvent>,
}

#[derive(Debug, Default)]
pub struct Replay {
    actors: BTreeMap<ActorId, Actor>,
    /// Exited actors in exit order, to forget the oldest.
    exited: VecDeque<ActorId>,
    /// Waiting requests by arrival: seq -> (actor, task, the request event).
    queue: BTreeMap<u64, (ActorId, u64, RuntimeEvent)>,
    seq: u64,
    holder: Option<Holder>,
    viewers: BTreeMap<u64, RuntimeEvent>,
    tail_total: usize,
    frozen: bool,
    /// (written, actor) for every actor with a tail, least recent first.
    by_write: BTreeSet<(u64, ActorId)>,
    /// The latest `session_ended` events, so a late viewer's session list has them.
    ended: VecDeque<RuntimeEvent>,
    /// The latest `rules` event (the rules in force and the crash list).
    rules: Option<RuntimeEvent>,
}

/// Ended sessions a late viewer is told of.
const ENDED_SESSIONS: usize = 256;

impl Replay {
    pub fn new() -> Self {
        Self::default()
    }

    /// Output bytes kept now (for tests and the bound).
    pub fn tail_bytes(&self) -> usize {
        self.tail_total
    }

    fn next(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    pub fn apply(&mut self, ev: &RuntimeEvent) {
        match ev {
            RuntimeEvent::ActorStarted { actor, .. } => {
                self.actors.insert(
                    *actor,
                    Actor {
                        started: ev.clone(),
                        exited: None,
                        tail: VecDeque::new(),
                        written: 0,
                        wants_input: false,
                        teardown_waiting: false,
                        cancelling: None,
                        hung: None,
                    },
                );
            }
            RuntimeEvent::ActorExited { actor, .. } => {
                if let Some(a) = self.actors.get_mut(actor) {
                    a.exited = Some(ev.clone());
                    a.wants_input = false;
                    a.teardown_waiting = false;
                    a.cancelling = None;
                    self.exited.push_back(*actor);
                }
                while self.exited.len() > MAX_EXITED {
                    if let Some(old) = self.exited.pop_front() {
                        self.forget(old);
                    }
                }
            }
            RuntimeEvent::LockRequested { actor, task, .. } => {
                let seq = self.next();
                self.queue.insert(seq, (*actor, *task, ev.clone()));
            }
            RuntimeEvent::LockGranted { actor, task, epoch } => {
                let seq = self
                    .queue
                    .iter()
                    .find(|(_, (a, t, _))| a == actor && t == task)
                    .map(|(s, _)| *s);
                let Some((_, _, requested)) = seq.and_then(|s| self.queue.remove(&s)) else {
                    return;
                };
                self.holder = Some(Holder {
                    actor: *actor,
                    epoch: *epoch,
                    requested,
                    granted: ev.clone(),
                    moved: None,
                    suspect: None,
                    leased: None,
                    transcript: VecDeque::new(),
                    transcript_bytes: 0,
                    ready: None,
                });
            }
            RuntimeEvent::LockReleased { epoch, .. } => {
                if self.holder.as_ref().is_some_and(|h| h.epoch == *epoch) {
                    self.holder = None;
                }
            }
            RuntimeEvent::LockDropped { actor, task, .. }
            | RuntimeEvent::RequestSkipped { actor, task, .. } => {
                self.queue.retain(|_, (a, t, _)| !(a == actor && t == task));
            }
            RuntimeEvent::LockPeek { actor, task, peek } => {
                // The waiter's request event carries the completed peek from now on.
                if let Some((_, _, RuntimeEvent::LockRequested { peek: p, .. })) = self
                    .queue
                    .values_mut()
                    .find(|(a, t, _)| a == actor && t == task)
                {
                    *p = Some(peek.clone());
                }
            }
            RuntimeEvent::QueueReordered { order, .. } => {
                // Renumber the queue in the new order (the replay sends it in this order).
                let mut old: Vec<(ActorId, u64, RuntimeEvent)> =
                    std::mem::take(&mut self.queue).into_values().collect();
                for w in order {
                    if let Some(i) = old
                        .iter()
                        .position(|(a, t, _)| *a == w.actor && *t == w.task)
                    {
                        let entry = old.remove(i);
                        let seq = self.next();
                        self.queue.insert(seq, entry);
                    }
                }
                for entry in old {
                    let seq = self.next();
                    self.queue.insert(seq, entry);
                }
            }
            RuntimeEvent::LockMoved { actor, .. } => {
                if let Some(h) = self.holder.as_mut().filter(|h| h.actor == *actor) {
                    h.moved = Some(ev.clone());
                }
            }
            RuntimeEvent::LockSuspect { epoch, .. } => {
                if let Some(h) = self.holder.as_mut().filter(|h| h.epoch == *epoch) {
                    h.suspect = Some(ev.clone());
                }
            }
            RuntimeEvent::LockHealthy { epoch, .. } => {
                if let Some(h) = self.holder.as_mut().filter(|h| h.epoch == *epoch) {
                    h.suspect = None;
                }
            }
            RuntimeEvent::Rules { .. } => self.rules = Some(ev.clone()),
            RuntimeEvent::SessionEnded { .. } => {
                self.ended.push_back(ev.clone());
                if self.ended.len() > ENDED_SESSIONS {
                    self.ended.pop_front();
                }
            }
            RuntimeEvent::LockLeased { epoch, .. } => {
                if let Some(h) = self.holder.as_mut().filter(|h| h.epoch == *epoch) {
                    h.leased = Some(ev.clone());
                }
            }
            RuntimeEvent::ReplOutput { actor, data, .. }
            | RuntimeEvent::ReplInput { actor, data, .. } => {
                if let Some(h) = self.holder.as_mut().filter(|h| h.actor == *actor) {
                    h.ready = None;
                    h.transcript.push_back(ev.clone());
                    h.transcript_bytes += data.len();
                    while h.transcript_bytes > TRANSCRIPT_BYTES && h.transcript.len() > 1 {
                        if let Some(
                            RuntimeEvent::ReplOutput { data: old, .. }
                            | RuntimeEvent::ReplInput { data: old, .. },
                        ) = h.transcript.pop_front()
                        {
                            h.transcript_bytes -= old.len();
                        }
                    }
                }
            }
            RuntimeEvent::ReplReady { actor, .. } => {
                if let Some(h) = self.holder.as_mut().filter(|h| h.actor == *actor) {
                    h.ready = Some(ev.clone());
                }
            }
            RuntimeEvent::Output { actor, data } => self.output(*actor, data),
            RuntimeEvent::WantsInput { actor } | RuntimeEvent::InputDone { actor } => {
                if let Some(a) = self.actors.get_mut(actor) {
                    a.wants_input = matches!(ev, RuntimeEvent::WantsInput { .. });
                }
            }
            RuntimeEvent::TeardownWaiting { actor } => {
                if let Some(a) = self.actors.get_mut(actor) {
                    a.teardown_waiting = true;
                }
            }
            RuntimeEvent::Cancelling { actor, .. } => {
                if let Some(a) = self.actors.get_mut(actor) {
                    a.teardown_waiting = false;
                    a.cancelling = Some(ev.clone());
                }
            }
            RuntimeEvent::Viewer { viewer, role, .. } => {
                if *role == ViewerRole::Gone {
                    self.viewers.remove(viewer);
                } else {
                    self.viewers.insert(*viewer, ev.clone());
                }
            }
            RuntimeEvent::Frozen { frozen } => self.frozen = *frozen,
            RuntimeEvent::Hung { actor, hung, .. } => {
                if let Some(a) = self.actors.get_mut(actor) {
                    a.hung = hung.then(|| ev.clone());
                }
            }
            RuntimeEvent::LockRefused { .. }
            | RuntimeEvent::Dump { .. }
            | RuntimeEvent::Completions { .. }
            | RuntimeEvent::Notice { .. }
            | RuntimeEvent::Listening { .. }
            | RuntimeEvent::Snapshot { .. }
            | RuntimeEvent::Report { .. }
            | RuntimeEvent::Exit { .. } => {}
        }
    }

    fn forget(&mut self, actor: ActorId) {
        if let Some(a) = self.actors.remove(&actor) {
            self.tail_total -= a.tail.len();
            self.by_write.remove(&(a.written, actor));
        }
    }

    /// PTY output of `actor` (what [`apply`](Self::apply) does with an output event).
    pub fn output(&mut self, actor: ActorId, data: &[u8]) {
        let seq = self.next();
        let Some(a) = self.actors.get_mut(&actor) else {
            return;
        };
        self.by_write.remove(&(a.written, actor));
        a.written = seq;
        let data = &data[data.len().saturating_sub(TAIL_BYTES)..];
        let before = a.tail.len();
        a.tail.extend(data);
        let over = a.tail.len().saturating_sub(TAIL_BYTES);
        a.tail.drain(..over);
        self.tail_total = self.tail_total - before + a.tail.len();
        self.by_write.insert((seq, actor));
        while self.tail_total > TAIL_TOTAL {
            let Some((w, oldest)) = self.by_write.pop_first() else {
                break;
            };
            if let Some(a) = self.actors.get_mut(&oldest) {
                self.tail_total -= a.tail.len();
                a.tail = VecDeque::new();
                debug_assert_eq!(a.written, w);
            }
        }
    }

    /// The run as events, in an order that rebuilds it: actors (parents first), their
    /// recent output, ended sessions, exits, terminal waits, the lock (holder, its session,
    /// the queue in order), viewers.
    pub fn snapshot(&self) -> Vec<RuntimeEvent> {
        let mut out = Vec::new();
        for a in self.actors.values() {
            out.push(a.started.clone());
        }
        for (id, a) in &self.actors {
            if !a.tail.is_empty() {
                let (x, y) = a.tail.as_slices();
                out.push(RuntimeEvent::Output {
                    actor: *id,
                    data: [x, y].concat(),
                });
            }
        }
        out.extend(self.ended.iter().cloned());
        out.extend(self.rules.clone());
        for (id, a) in &self.actors {
            out.extend(a.exited.clone());
            if a.wants_input {
                out.push(RuntimeEvent::WantsInput { actor: *id });
            }
            if a.teardown_waiting {
                out.push(RuntimeEvent::TeardownWaiting { actor: *id });
            }
            out.extend(a.cancelling.clone());
            out.extend(a.hung.clone());
        }
        if let Some(h) = &self.holder {
            out.push(h.requested.clone());
            out.push(h.granted.clone());
            out.extend(h.moved.clone());
            out.extend(h.leased.clone());
            out.extend(h.transcript.iter().cloned());
            out.extend(h.ready.clone());
            out.extend(h.suspect.clone());
        }
        out.extend(self.queue.values().map(|(_, _, ev)| ev.clone()));
        out.extend(self.viewers.values().cloned());
        if self.frozen {
            out.push(RuntimeEvent::Frozen { frozen: true });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Exit, Reason};
    use crate::runtime::lock::ReleaseCause;

    fn started(id: u64, parent: Option<u64>) -> RuntimeEvent {
        RuntimeEvent::ActorStarted {
            actor: ActorId(id),
            name: format!("a{id}"),
            pid: 100 + id as u32,
            parent: parent.map(ActorId),
        }
    }

    fn requested(id: u64, task: u64) -> RuntimeEvent {
        RuntimeEvent::LockRequested {
            actor: ActorId(id),
            task,
            task_name: "main".into(),
            reason: Reason::Pause,
            location: "x.py:1".into(),
            peek: None,
        }
    }

    fn output(id: u64, data: &[u8]) -> RuntimeEvent {
        RuntimeEvent::Output {
            actor: ActorId(id),
            data: data.to_vec(),
        }
    }

    #[test]
    fn snapshot_rebuilds_tree_lock_session_and_queue() {
        let mut r = Replay::new();
        let granted = RuntimeEvent::LockGranted {
            actor: ActorId(2),
            task: 1,
            epoch: 5,
        };
        let ready = RuntimeEvent::ReplReady {
            actor: ActorId(2),
            task: 1,
            prompt: "(Pdb) ".into(),
        };
        let exited = RuntimeEvent::ActorExited {
            actor: ActorId(4),
            exit: Exit {
                code: Some(0),
                signal: None,
                reason: None,
            },
        };
        let events = vec![
            started(1, None),
            started(2, Some(1)),
            started(3, Some(1)),
            started(4, Some(1)),
            output(2, b"hello "),
            output(2, b"world\n"),
            requested(2, 1),
            requested(3, 1),
            granted.clone(),
            RuntimeEvent::ReplOutput {
                actor: ActorId(2),
                task: 1,
                data: "> x.py(1)\n".into(),
            },
            ready.clone(),
            exited.clone(),
            RuntimeEvent::WantsInput { actor: ActorId(3) },
        ];
        for ev in &events {
            r.apply(ev);
        }
        let snap = r.snapshot();
        let want = vec![
            started(1, None),
            started(2, Some(1)),
            started(3, Some(1)),
            started(4, Some(1)),
            output(2, b"hello world\n"),
            RuntimeEvent::WantsInput { actor: ActorId(3) },
            exited,
            requested(2, 1),
            granted,
            RuntimeEvent::ReplOutput {
                actor: ActorId(2),
                task: 1,
                data: "> x.py(1)\n".into(),
            },
            ready,
            requested(3, 1),
        ];
        assert_eq!(snap, want);
    }

    #[test]
    fn release_and_drop_leave_the_snapshot() {
        let mut r = Replay::new();
        for ev in [
            started(1, None),
            requested(1, 1),
            requested(1, 2),
            RuntimeEvent::LockGranted {
                actor: ActorId(1),
                task: 1,
                epoch: 1,
            },
            RuntimeEvent::LockDropped {
                actor: ActorId(1),
                task: 2,
                cause: ReleaseCause::Cancel,
            },
            RuntimeEvent::LockReleased {
                actor: ActorId(1),
                task: 1,
                epoch: 1,
                cause: ReleaseCause::Continue,
            },
        ] {
            r.apply(&ev);
        }
        assert_eq!(r.snapshot(), vec![started(1, None)]);
    }

    #[test]
    fn output_is_bounded_per_actor_and_in_total() {
        let mut r = Replay::new();
        r.apply(&started(1, None));
        r.apply(&output(1, &vec![b'a'; TAIL_BYTES * 3]));
        r.apply(&output(1, b"end"));
        assert_eq!(r.tail_bytes(), TAIL_BYTES);
        let snap = r.snapshot();
        let RuntimeEvent::Output { data, .. } = &snap[1] else {
            panic!("no output in {snap:?}");
        };
        assert!(data.ends_with(b"aend"));
        // Many chatty actors: the total stays bounded; the most recent keep their tails.
        let n = (TAIL_TOTAL / TAIL_BYTES) as u64 + 10;
        for id in 2..2 + n {
            r.apply(&started(id, Some(1)));
            r.apply(&output(id, &vec![b'x'; TAIL_BYTES]));
        }
        assert!(r.tail_bytes() <= TAIL_TOTAL);
        let snap = r.snapshot();
        let has_tail = |id: u64| {
            snap.iter()
                .any(|e| matches!(e, RuntimeEvent::Output { actor, .. } if *actor == ActorId(id)))
        };
        assert!(!has_tail(1), "the least recently written lost its tail");
        assert!(has_tail(1 + n), "the latest kept its tail");
    }

    #[test]
    fn exited_actors_are_forgotten_oldest_first_past_the_bound() {
        let mut r = Replay::new();
        for id in 1..=(MAX_EXITED as u64 + 5) {
            r.apply(&started(id, None));
            r.apply(&output(id, b"x"));
            r.apply(&RuntimeEvent::ActorExited {
                actor: ActorId(id),
                exit: Exit::default(),
            });
        }
        let snap = r.snapshot();
        let starts = snap
            .iter()
            .filter(|e| matches!(e, RuntimeEvent::ActorStarted { .. }))
            .count();
        assert_eq!(starts, MAX_EXITED);
        assert_eq!(snap[0], started(6, None));
        assert_eq!(r.tail_bytes(), MAX_EXITED);
    }

    #[test]
    fn viewers_are_listed_until_they_leave() {
        let mut r = Replay::new();
        let v = |role| RuntimeEvent::Viewer {
            viewer: 3,
            name: "v".into(),
            pid: None,
            role,
        };
        r.apply(&v(ViewerRole::Observer));
        r.apply(&v(ViewerRole::Driver));
        assert_eq!(r.snapshot(), vec![v(ViewerRole::Driver)]);
        r.apply(&v(ViewerRole::Gone));
        assert!(r.snapshot().is_empty());
    }
}
