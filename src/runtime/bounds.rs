//! Everything a peer can make the root hold or do, and how much of it: the limits in one
//! place, the truncation and escaping applied to peer text, and the rate limit on
//! peer-caused notices. Pure: time comes in as an argument.

use std::time::{Duration, Instant};

/// Waiting lock requests one actor may have at once. A real process pauses in a handful of
/// tasks at a time; more is a runaway loop or an attack, refused with `lock_refused`.
pub const MAX_WAITING_PER_ACTOR: usize = 64;

/// Lock requests one connection may send at once, and then per second: a peer looping on
/// requests is refused instead of flooding the queue's refusals and the event stream.
pub const LOCK_REQUEST_BURST: u32 = 200;
pub const LOCK_REQUESTS_PER_SEC: u32 = 100;

/// Longest `task_name`, `location` or actor `name` kept, in bytes; longer ones are cut on a
/// character boundary and marked.
pub const MAX_FIELD: usize = 4096;

/// A lock request's peek (values, stack, locals) is cut to this.
pub const MAX_PEEK: usize = 8192;

/// Largest single `input` command. Bigger pastes are refused with a notice (the session
/// keeps running); nobody types 8 MiB into a debugger on purpose.
pub const MAX_INPUT: usize = 8 << 20;

/// Frames queued to one peer before it counts as not reading and is dropped. Only control
/// frames count against this in practice: input is refused (not queued) past [`PEER_BYTES`].
pub const PEER_FRAMES: usize = 4096;

/// Bytes queued to one peer. Input that would go past it is refused with a notice instead
/// of dropping the (healthy, merely busy) peer; other frames past it drop the peer.
pub const PEER_BYTES: usize = 16 << 20;

/// Time a peer has to deliver the rest of a frame once its length prefix arrived.
pub const FRAME_DEADLINE: Duration = Duration::from_secs(10);

/// Payload bytes being received over all connections at once. A reader waits for room
/// before reading a big payload, so stalled half-sent frames cannot add up past this.
pub const INFLIGHT_BYTES: usize = 64 << 20;

/// Connections accepted at once, given the soft descriptor limit: at most half the table,
/// so spawning actors (a PTY each) always finds descriptors.
pub fn max_connections(nofile_soft: u64) -> usize {
    usize::try_from(nofile_soft / 2)
        .unwrap_or(usize::MAX)
        .clamp(16, 8192)
}

/// Waiting requests remembered as having completed their peek, before the set is pruned.
pub const MAX_PEEKED: usize = 4096;

/// `s` cut to at most `max` bytes on a character boundary, with a marker saying how much
/// was cut. The result is a fresh allocation: `String::truncate` would keep the peer's
/// whole buffer alive behind the short string.
pub fn truncate(s: String, max: usize) -> String {
    if s.len() <= max {
        return s;
    }
    let cut = crate::proto::floor_char_boundary(&s, max);
    let marker = format!("…[{} bytes cut]", s.len() - cut);
    let mut out = String::with_capacity(cut + marker.len());
    out.push_str(&s[..cut]);
    out.push_str(&marker);
    out
}

/// Peer text made safe for a log line: control characters and newlines escaped, length
/// bounded, so a peer can neither forge log lines nor flood them.
pub fn escape(s: &str) -> String {
    const MAX: usize = 200;
    let mut out = String::with_capacity(s.len().min(MAX) + 8);
    for c in s.chars() {
        if out.len() >= MAX {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// A token bucket: `burst` events at once, then `per_sec` a second. Events over the rate
/// are counted, and the next one let through reports how many were held back.
#[derive(Debug, Clone)]
pub struct RateLimit {
    burst: f64,
    per_sec: f64,
    tokens: f64,
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimit {
    pub fn new(burst: u32, per_sec: u32) -> Self {
        Self {
            burst: f64::from(burst),
            per_sec: f64::from(per_sec),
            tokens: f64::from(burst),
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(n)` if this event may go out, `n` being how many were suppressed since the
    /// last one that did; `None` to suppress it.
    pub fn admit(&mut self, now: Instant) -> Option<u64> {
        if let Some(last) = self.last {
            let dt = now.saturating_duration_since(last).as_secs_f64();
            self.tokens = (self.tokens + dt * self.per_sec).min(self.burst);
        }
        self.last = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_cuts_on_a_char_boundary_and_says_so() {
        assert_eq!(truncate("short".into(), 10), "short");
        let t = truncate("ééééé".into(), 5);
        assert!(t.starts_with("éé"), "{t}");
        assert!(t.ends_with("[6 bytes cut]"), "{t}");
        let big = truncate("x".repeat(1 << 20), MAX_FIELD);
        assert!(big.len() < MAX_FIELD + 32);
        assert!(
            big.capacity() < MAX_FIELD + 64,
            "the peer's buffer is not kept"
        );
    }

    #[test]
    fn escape_keeps_one_line_and_bounds_length() {
        let e = escape("a\nb\x1b[2Jc");
        assert_eq!(e, "a\\nb\\u{1b}[2Jc");
        assert!(escape(&"y".repeat(10_000)).len() < 210);
    }

    #[test]
    fn rate_limit_lets_a_burst_through_then_counts_what_it_held() {
        let t = Instant::now();
        let mut r = RateLimit::new(3, 10);
        assert_eq!(r.admit(t), Some(0));
        assert_eq!(r.admit(t), Some(0));
        assert_eq!(r.admit(t), Some(0));
        for _ in 0..1000 {
            assert_eq!(r.admit(t), None);
        }
        // 100 ms later one token is back, and it reports the thousand held back.
        assert_eq!(r.admit(t + Duration::from_millis(100)), Some(1000));
        assert_eq!(r.admit(t + Duration::from_millis(100)), None);
    }

    #[test]
    fn connection_cap_follows_the_descriptor_limit() {
        assert_eq!(max_connections(1024), 512);
        assert_eq!(max_connections(20), 16);
        assert_eq!(max_connections(1 << 20), 8192);
    }
}
