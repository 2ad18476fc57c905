//! Every actor's recent PTY output as raw bytes, under one budget for the whole console.
//!
//! A terminal emulator with 2,000 lines of scrollback costs megabytes once full, so only
//! the few actors on screen have one (see `ConsoleState::show`); every other actor keeps
//! just the bytes it printed, compactly, and gets an emulator rebuilt from them when it is
//! shown again. The bytes are kept in chunks; one actor keeps at most `per_actor` bytes and
//! all actors together at most `budget`, the oldest chunk anywhere going first.

use std::collections::{BTreeMap, VecDeque};

use crate::proto::ActorId;

/// Bytes one actor keeps: about 2,000 lines of 500 characters, the emulator's scrollback.
pub const PER_ACTOR: usize = 1 << 20;
/// Bytes all actors keep together.
pub const BUDGET: usize = 48 << 20;
/// Chunks grow to this size before a new one starts (fewer, larger allocations).
const CHUNK: usize = 64 << 10;

#[derive(Debug, Default)]
struct Log {
    /// (sequence number of the chunk, bytes), oldest first.
    chunks: VecDeque<(u64, Vec<u8>)>,
    bytes: usize,
}

#[derive(Debug)]
pub struct OutputLogs {
    logs: BTreeMap<ActorId, Log>,
    /// Every chunk in the order it started: (sequence, actor). Entries whose chunk is gone
    /// already (trimmed by its actor's own cap, or forgotten) are skipped when met.
    order: VecDeque<(u64, ActorId)>,
    next: u64,
    total: usize,
    per_actor: usize,
    budget: usize,
}

impl Default for OutputLogs {
    fn default() -> Self {
        Self::with_limits(PER_ACTOR, BUDGET)
    }
}

impl OutputLogs {
    pub fn with_limits(per_actor: usize, budget: usize) -> Self {
        Self {
            logs: BTreeMap::new(),
            order: VecDeque::new(),
            next: 0,
            total: 0,
            per_actor,
            budget,
        }
    }

    /// Keeps `data` as `actor`'s newest output, then trims to the limits.
    pub fn push(&mut self, actor: ActorId, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let log = self.logs.entry(actor).or_default();
        match log.chunks.back_mut() {
            Some((_, last)) if last.len() + data.len() <= CHUNK => last.extend_from_slice(data),
            _ => {
                self.next += 1;
                log.chunks.push_back((self.next, data.to_vec()));
                self.order.push_back((self.next, actor));
            }
        }
        log.bytes += data.len();
        self.total += data.len();
        while log.bytes > self.per_actor && log.chunks.len() > 1 {
            if let Some((_, c)) = log.chunks.pop_front() {
                log.bytes -= c.len();
                self.total -= c.len();
            }
        }
        while self.total > self.budget {
            let Some((seq, owner)) = self.order.pop_front() else {
                break;
            };
            if let Some(l) = self.logs.get_mut(&owner)
                && l.chunks.front().is_some_and(|(s, _)| *s == seq)
                && let Some((_, c)) = l.chunks.pop_front()
            {
                l.bytes -= c.len();
                self.total -= c.len();
            }
        }
        // Entries of chunks trimmed by their actor's own cap pile up at the front only
        // until the budget pops them; bound them anyway.
        if self.order.len() > 4 * (self.budget / CHUNK + self.logs.len()) {
            let logs = &self.logs;
            self.order.retain(|(seq, a)| {
                logs.get(a)
                    .is_some_and(|l| l.chunks.iter().any(|(s, _)| s == seq))
            });
        }
    }

    /// `actor`'s kept output, oldest first.
    pub fn chunks(&self, actor: ActorId) -> impl Iterator<Item = &[u8]> {
        self.logs
            .get(&actor)
            .into_iter()
            .flat_map(|l| l.chunks.iter().map(|(_, c)| c.as_slice()))
    }

    /// Drops everything `actor` printed.
    pub fn forget(&mut self, actor: ActorId) {
        if let Some(l) = self.logs.remove(&actor) {
            self.total -= l.bytes;
        }
    }

    /// Bytes kept for all actors together.
    pub fn total(&self) -> usize {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(logs: &OutputLogs, a: u64) -> Vec<u8> {
        logs.chunks(ActorId(a)).flatten().copied().collect()
    }

    #[test]
    fn an_actor_keeps_its_newest_bytes_in_order() {
        let mut logs = OutputLogs::with_limits(200_000, 1 << 30);
        for i in 0..100_000u32 {
            logs.push(ActorId(1), format!("{i}\n").as_bytes());
        }
        let text = String::from_utf8(kept(&logs, 1)).expect("utf8");
        assert!(text.ends_with("99999\n"));
        assert!(logs.total() <= 200_000 + CHUNK, "{}", logs.total());
        assert!(logs.total() >= 200_000 - CHUNK);
        // What is kept is a contiguous tail.
        let first: u32 = text.lines().nth(1).and_then(|l| l.parse().ok()).expect("n");
        let all: Vec<u32> = text
            .lines()
            .skip(1)
            .filter_map(|l| l.parse().ok())
            .collect();
        assert_eq!(all, (first..100_000).collect::<Vec<_>>());
    }

    #[test]
    fn the_budget_evicts_the_oldest_chunks_of_anyone_first() {
        let mut logs = OutputLogs::with_limits(1 << 30, 4 * CHUNK);
        logs.push(ActorId(1), &vec![b'a'; CHUNK]);
        logs.push(ActorId(2), &vec![b'b'; CHUNK]);
        logs.push(ActorId(3), &vec![b'c'; 2 * CHUNK]);
        assert_eq!(logs.total(), 4 * CHUNK);
        // Over budget: actor 1's chunk was first, it goes first.
        logs.push(ActorId(2), &vec![b'd'; CHUNK]);
        assert!(kept(&logs, 1).is_empty());
        assert_eq!(kept(&logs, 2).len(), 2 * CHUNK);
        assert_eq!(logs.total(), 4 * CHUNK);
        logs.forget(ActorId(3));
        assert_eq!(logs.total(), 2 * CHUNK);
    }

    #[test]
    fn many_actors_stay_within_the_budget_and_the_index_stays_bounded() {
        let mut logs = OutputLogs::with_limits(100_000, 1_000_000);
        for round in 0..200u64 {
            for a in 0..500u64 {
                logs.push(ActorId(a), format!("actor {a} line {round}\n").as_bytes());
            }
        }
        assert!(logs.total() <= 1_000_000);
        assert!(logs.order.len() <= 4 * (1_000_000 / CHUNK + 500) + 1);
        let last = String::from_utf8(kept(&logs, 499)).expect("utf8");
        assert!(last.ends_with("actor 499 line 199\n"), "{last}");
    }
}
