//! Hang detection, pure: once a second the shell samples each live actor's CPU time and
//! output bytes; with the time of its last protocol frame, that says whether it did
//! anything. An actor still for [`HangWatch::after`] is marked *possibly hung* (shown, never
//! acted on) when somebody depends on it: it holds the lock while others wait, or the whole
//! tree is still (a deadlock, or everybody waiting on someone who is). With `dump_after`,
//! a tree still that long asks for one tree-wide snapshot (again only after it moved).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::proto::ActorId;

/// One actor's activity counters at a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub actor: ActorId,
    /// CPU time in clock ticks.
    pub cpu: u64,
    /// Bytes it wrote to its terminal (none for actors that share another's terminal).
    pub output: Option<u64>,
    /// When its last frame came, if it is connected.
    pub frame: Option<Instant>,
}

#[derive(Debug, Clone)]
struct Still {
    last: Sample,
    since: Instant,
    marked: bool,
}

/// What changed at an observation.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Verdicts {
    /// Newly possibly hung, and for how long they have been still.
    pub hung: Vec<(ActorId, Duration)>,
    /// Marked before, moving again.
    pub active: Vec<ActorId>,
    /// The whole tree has been still for `dump_after`: take a snapshot.
    pub dump_all: bool,
}

#[derive(Debug)]
pub struct HangWatch {
    pub after: Duration,
    pub dump_after: Option<Duration>,
    actors: HashMap<ActorId, Still>,
    dumped: bool,
}

impl HangWatch {
    pub fn new(after: Duration, dump_after: Option<Duration>) -> Self {
        Self {
            after,
            dump_after,
            actors: HashMap::new(),
            dumped: false,
        }
    }

    /// One round of samples (every live actor); `holder_with_waiters` is the lock holder if
    /// requests wait behind it.
    pub fn observe(
        &mut self,
        now: Instant,
        samples: &[Sample],
        holder_with_waiters: Option<ActorId>,
    ) -> Verdicts {
        let mut v = Verdicts::default();
        self.actors
            .retain(|id, _| samples.iter().any(|s| s.actor == *id));
        let mut moved_any = false;
        for s in samples {
            match self.actors.get_mut(&s.actor) {
                None => {
                    self.actors.insert(
                        s.actor,
                        Still {
                            last: *s,
                            since: now,
                            marked: false,
                        },
                    );
                    moved_any = true;
                }
                Some(st) => {
                    let moved = st.last.cpu != s.cpu
                        || st.last.output != s.output
                        || st.last.frame != s.frame;
                    st.last = *s;
                    if moved {
                        moved_any = true;
                        st.since = now;
                        if st.marked {
                            st.marked = false;
                            v.active.push(s.actor);
                        }
                    }
                }
            }
        }
        let still_for = |st: &Still| now.saturating_duration_since(st.since);
        let tree_still_for = self
            .actors
            .values()
            .map(still_for)
            .min()
            .unwrap_or(Duration::ZERO);
        let tree_still = !self.actors.is_empty() && tree_still_for >= self.after;
        let mut hung: Vec<(ActorId, Duration)> = Vec::new();
        for (id, st) in &mut self.actors {
            let d = now.saturating_duration_since(st.since);
            let depended_on = tree_still || holder_with_waiters == Some(*id);
            if !st.marked && d >= self.after && depended_on {
                st.marked = true;
                hung.push((*id, d));
            }
        }
        hung.sort_by_key(|(id, _)| *id);
        v.hung = hung;
        if moved_any {
            self.dumped = false;
        }
        if let Some(d) = self.dump_after
            && !self.dumped
            && !self.actors.is_empty()
            && tree_still_for >= d
        {
            self.dumped = true;
            v.dump_all = true;
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(id: u64, cpu: u64) -> Sample {
        Sample {
            actor: ActorId(id),
            cpu,
            output: Some(0),
            frame: None,
        }
    }

    #[test]
    fn a_still_holder_others_wait_for_is_marked_and_unmarked_when_it_moves() {
        let t0 = Instant::now();
        let mut w = HangWatch::new(Duration::from_secs(5), None);
        let at = |s: u64| t0 + Duration::from_secs(s);
        // Actor 2 busy, actor 1 still and holding the lock with waiters.
        assert_eq!(
            w.observe(at(0), &[sample(1, 10), sample(2, 0)], Some(ActorId(1))),
            Verdicts::default()
        );
        let v = w.observe(at(6), &[sample(1, 10), sample(2, 50)], Some(ActorId(1)));
        assert_eq!(v.hung, vec![(ActorId(1), Duration::from_secs(6))]);
        // Marked once, not again.
        assert!(
            w.observe(at(7), &[sample(1, 10), sample(2, 60)], Some(ActorId(1)))
                .hung
                .is_empty()
        );
        let v = w.observe(at(8), &[sample(1, 11), sample(2, 70)], Some(ActorId(1)));
        assert_eq!(v.active, vec![ActorId(1)]);
    }

    #[test]
    fn a_still_actor_nobody_waits_for_is_not_marked_but_a_still_tree_is() {
        let t0 = Instant::now();
        let mut w = HangWatch::new(Duration::from_secs(5), Some(Duration::from_secs(10)));
        let at = |s: u64| t0 + Duration::from_secs(s);
        w.observe(at(0), &[sample(1, 1), sample(2, 1)], None);
        // 2 keeps working: 1 is idle, not hung.
        let v = w.observe(at(6), &[sample(1, 1), sample(2, 9)], None);
        assert!(v.hung.is_empty());
        // Now both still for 5 s: both marked (a deadlock, or everyone waiting).
        let v = w.observe(at(12), &[sample(1, 1), sample(2, 9)], None);
        assert_eq!(
            v.hung.iter().map(|h| h.0).collect::<Vec<_>>(),
            vec![ActorId(1), ActorId(2)]
        );
        assert!(!v.dump_all, "still 6 s, the dump waits for 10");
        let v = w.observe(at(16), &[sample(1, 1), sample(2, 9)], None);
        assert!(v.dump_all);
        assert!(
            !w.observe(at(30), &[sample(1, 1), sample(2, 9)], None)
                .dump_all,
            "once"
        );
        // It moves, and goes still again: another snapshot after another 10 s.
        w.observe(at(31), &[sample(1, 2), sample(2, 9)], None);
        assert!(
            w.observe(at(42), &[sample(1, 2), sample(2, 9)], None)
                .dump_all
        );
    }

    #[test]
    fn frames_and_output_count_as_life() {
        let t0 = Instant::now();
        let mut w = HangWatch::new(Duration::from_secs(5), None);
        let mut s = sample(1, 1);
        w.observe(t0, &[s], Some(ActorId(1)));
        s.frame = Some(t0 + Duration::from_secs(4));
        assert!(
            w.observe(t0 + Duration::from_secs(6), &[s], Some(ActorId(1)))
                .hung
                .is_empty()
        );
        s.output = Some(100);
        assert!(
            w.observe(t0 + Duration::from_secs(10), &[s], Some(ActorId(1)))
                .hung
                .is_empty()
        );
        assert_eq!(
            w.observe(t0 + Duration::from_secs(16), &[s], Some(ActorId(1)))
                .hung
                .len(),
            1
        );
    }
}
