//! Whether the lock holder still looks alive, decided without waiting for the user to type:
//! a holder whose process is stopped (SIGSTOP, a debugger's trace stop) or gone while its
//! connection stays open, or that has left input unanswered for [`SILENT_AFTER`], is
//! *suspect*. Suspect is a warning, never a release: the user decides (force-release).
//! Pure: time and the process state come in as arguments.

use std::time::{Duration, Instant};

/// Input sent to the holder and not answered by any frame for this long makes it suspect.
pub const SILENT_AFTER: Duration = Duration::from_secs(5);

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
}

impl Why {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stopped => "stopped",
            Self::Gone => "gone",
            Self::Silent => "silent",
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
    reported: Option<Why>,
}

impl HolderWatch {
    pub fn new(now: Instant) -> Self {
        Self {
            last_sign: now,
            unanswered_since: None,
            reported: None,
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
