//! Whether the lock holder still looks alive, decided without waiting for the user to type:
//! a holder whose process is stopped (SIGSTOP, a debugger's trace stop) or gone while its
//! connection stays open, or that has left input unanswered for [`SILENT_AFTER`], is
//! *suspect*. Suspect is a warning, never a release: the user decides (force-release).
//! Pure: time and the process state come in as arguments.

use std::time::{Duration, Instant};

/// Input sent to the holder and not answered by any frame for this long makes it suspect.
pub const SILENT_AFTER: Duration = Duration::from_secs(5);

/// A holder that has sent a lease (every second, PROTOCOL.md 6.3) and sends none for this
/// long is suspect. Three missed beats: one late beat on a busy machine is not a verdict.
pub const LEASE_LAPSE: Duration = Duration::from_secs(3);

/// Why a holder is suspect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Why {
    /// Its process is stopped (state `T` or `t`).
    Stopped,
    /// Its process is gone (or a zombie) but its connection is still open.
    Gone,
    /// Input went unanswered for [`SILENT_AFTER`].
    Silent,
    /// It sends leases, and none came for [`LEASE_LAPSE`].
    LeaseLapsed,
}

impl Why {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stopped => "stopped",
            Self::Gone => "gone",
            Self::Silent => "silent",
            Self::LeaseLapsed => "lease_lapsed",
        }
    }
}

/// What changed at a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Became suspect (or suspect for another reason); `since` is the time since the last
    /// frame from the holder.
    Suspect { why: Why, since: Duration },
    /// Was suspect, looks fine again.
    Healthy,
}

/// Watch over one grant.
#[derive(Debug, Clone)]
pub struct HolderWatch {
    last_sign: Instant,
    unanswered_since: Option<Instant>,
    /// The last lease, once the holder has sent one: from then on the lease is the signal,
    /// and unanswered input alone is no longer a reason (a step may run for minutes while
    /// the process is plainly alive).
    last_lease: Option<Instant>,
    reported: Option<Why>,
}

impl HolderWatch {
    pub fn new(now: Instant) -> Self {
        Self {
            last_sign: now,
            unanswered_since: None,
            last_lease: None,
            reported: None,
        }
    }

    /// A lease from the holder. True for the first one of the grant (the holder supports
    /// leases: front ends stop guessing from its silence).
    pub fn lease(&mut self, now: Instant) -> bool {
        self.last_sign = now;
        self.last_lease.replace(now).is_none()
    }

    /// The tree was stopped and resumed: a lease missed while stopped is not a lapse.
    pub fn resumed(&mut self, now: Instant) {
        if self.last_lease.is_some() {
            self.last_lease = Some(now);
        }
    }

    /// A frame from the holder: a sign of life that answers any input sent before it.
    pub fn frame(&mut self, now: Instant) {
        self.last_sign = now;
        self.unanswered_since = None;
    }

    /// Input was sent to the holder.
    pub fn input(&mut self, now: Instant) {
        self.unanswered_since.get_or_insert(now);
    }

    /// Looks at the holder's process state (`None`: no such process) and reports a change.
    pub fn check(&mut self, now: Instant, state: Option<char>) -> Option<Verdict> {
        let why = match state {
            None | Some('Z' | 'X') => Some(Why::Gone),
            Some('T' | 't') => Some(Why::Stopped),
            _ if self
                .last_lease
                .is_some_and(|t| now.saturating_duration_since(t) >= LEASE_LAPSE) =>
            {
                Some(Why::LeaseLapsed)
            }
            _ if self.last_lease.is_none()
                && self
                    .unanswered_since
                    .is_some_and(|t| now.saturating_duration_since(t) >= SILENT_AFTER) =>
            {
                Some(Why::Silent)
            }
            _ => None,
        };
        if why == self.reported {
            return None;
        }
        self.reported = why;
        Some(match why {
            Some(why) => Verdict::Suspect {
                why,
                since: now.saturating_duration_since(self.last_sign),
            },
            None => Verdict::Healthy,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stopped_holder_is_suspect_at_once_and_healthy_when_it_runs_again() {
        let t = Instant::now();
        let mut w = HolderWatch::new(t);
        assert_eq!(w.check(t, Some('S')), None);
        let v = w.check(t + Duration::from_secs(1), Some('T'));
        assert_eq!(
            v,
            Some(Verdict::Suspect {
                why: Why::Stopped,
                since: Duration::from_secs(1)
            })
        );
        assert_eq!(w.check(t + Duration::from_secs(2), Some('T')), None, "once");
        assert_eq!(
            w.check(t + Duration::from_secs(3), Some('S')),
            Some(Verdict::Healthy)
        );
    }

    #[test]
    fn unanswered_input_makes_it_silent_and_any_frame_clears_that() {
        let t = Instant::now();
        let mut w = HolderWatch::new(t);
        // Sitting at a prompt with nothing typed is not suspicious, however long.
        assert_eq!(w.check(t + Duration::from_secs(600), Some('S')), None);
        w.input(t + Duration::from_secs(600));
        assert_eq!(w.check(t + Duration::from_secs(604), Some('S')), None);
        assert!(matches!(
            w.check(t + Duration::from_secs(606), Some('S')),
            Some(Verdict::Suspect {
                why: Why::Silent,
                ..
            })
        ));
        w.frame(t + Duration::from_secs(607));
        assert_eq!(
            w.check(t + Duration::from_secs(607), Some('S')),
            Some(Verdict::Healthy)
        );
    }

    #[test]
    fn a_leasing_holder_is_judged_by_its_leases_not_by_unanswered_input() {
        let t = Instant::now();
        let s = Duration::from_secs;
        let mut w = HolderWatch::new(t);
        assert!(w.lease(t + s(1)), "the first lease says the holder leases");
        assert!(!w.lease(t + s(2)));
        // A long step: input unanswered for a minute, leases still coming.
        w.input(t + s(2));
        for i in 3..60 {
            w.lease(t + s(i));
            assert_eq!(w.check(t + s(i), Some('R')), None, "at {i} s");
        }
        // The leases stop (the process is wedged): suspect after LEASE_LAPSE, once.
        assert_eq!(w.check(t + s(61), Some('S')), None);
        assert_eq!(
            w.check(t + s(62), Some('S')),
            Some(Verdict::Suspect {
                why: Why::LeaseLapsed,
                since: s(3)
            })
        );
        assert_eq!(w.check(t + s(63), Some('S')), None);
        w.lease(t + s(64));
        assert_eq!(w.check(t + s(64), Some('S')), Some(Verdict::Healthy));
        // Stopped on purpose and resumed: the gap is not a lapse.
        w.resumed(t + s(100));
        assert_eq!(w.check(t + s(101), Some('S')), None);
    }

    #[test]
    fn a_vanished_process_with_an_open_connection_is_gone() {
        let t = Instant::now();
        let mut w = HolderWatch::new(t);
        assert!(matches!(
            w.check(t, None),
            Some(Verdict::Suspect { why: Why::Gone, .. })
        ));
        let mut w = HolderWatch::new(t);
        assert!(matches!(
            w.check(t, Some('Z')),
            Some(Verdict::Suspect { why: Why::Gone, .. })
        ));
    }
}
