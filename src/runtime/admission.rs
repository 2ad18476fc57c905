//! Admission rules: which pauses become sessions and which go on by themselves. A rule names
//! where it applies (a location, exact or by its tail such as `worker.py:42`, or `*`; an
//! actor by id or by name) and what it does: auto-continue every pause there, post-mortem
//! only the first N crashes at each location (the rest are recorded in the crash list), or
//! at most N sessions per period at each location. Rules come from the config file and from
//! commands at run time; each counts what it let go. Pure: time comes in as an argument.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::proto::{ActorId, Reason};

/// Rules at once (each is checked at every request).
pub const MAX_RULES: usize = 256;
/// Locations each rule keeps a count or a window for (by a hash of the location, so a
/// peer's long location strings cost 8 bytes each here, not 4 KiB).
const MAX_KEYS: usize = 4096;
/// Of each crash's text, what the crash list keeps (the `rules` event carries all of it).
const CRASH_TEXT: usize = 2048;
/// Crashes kept in the crash list; older ones are counted, not kept.
pub const MAX_CRASHES: usize = 1000;

/// What a rule does to the pauses it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Every pause goes on without a session.
    AutoContinue,
    /// Only the first `first` crashes at each location get a post-mortem.
    CrashLimit { first: u32 },
    /// At most `at_most` sessions every `per_ms` milliseconds at each location.
    RateLimit { at_most: u32, per_ms: u64 },
}

/// Where a rule applies: every field given must match (none given: everywhere).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Matcher {
    /// A location, or its tail (`worker.py:42`), or `*`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<ActorId>,
    /// An actor's name, exactly (config files cannot know ids).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor_name: Option<String>,
}

/// `location` is `named`, or ends with it at a path boundary (`/x/worker.py:42` and
/// `worker.py:42`); `*` matches every location.
pub fn location_matches(location: &str, named: &str) -> bool {
    if named == "*" || location == named {
        return true;
    }
    location
        .strip_suffix(named)
        .is_some_and(|head| head.ends_with(['/', '\\']))
}

impl Matcher {
    fn matches(&self, actor: ActorId, actor_name: &str, location: &str) -> bool {
        self.location
            .as_deref()
            .is_none_or(|l| location_matches(location, l))
            && self.actor.is_none_or(|a| a == actor)
            && self.actor_name.as_deref().is_none_or(|n| n == actor_name)
    }

    fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(l) = &self.location {
            parts.push(l.clone());
        }
        if let Some(a) = self.actor {
            parts.push(format!("actor {a}"));
        }
        if let Some(n) = &self.actor_name {
            parts.push(format!("actor {n:?}"));
        }
        if parts.is_empty() {
            "*".into()
        } else {
            parts.join(" ")
        }
    }
}

/// One rule and what it has done.
#[derive(Debug, Clone)]
pub struct Rule {
    pub matcher: Matcher,
    pub action: Action,
    /// Pauses it let go on.
    pub skipped: u64,
    /// Crashes seen per location (crash limit), by the location's hash.
    crashes: HashMap<u64, u32>,
    /// Session start times per location within the period (rate limit), by its hash.
    windows: HashMap<u64, VecDeque<Instant>>,
}

impl Rule {
    pub fn new(matcher: Matcher, action: Action) -> Self {
        Self {
            matcher,
            action,
            skipped: 0,
            crashes: HashMap::new(),
            windows: HashMap::new(),
        }
    }

    /// How it reads for people: `auto_continue worker.py:42`, `crash_limit 3 *`.
    pub fn describe(&self) -> String {
        let m = self.matcher.describe();
        match self.action {
            Action::AutoContinue => format!("auto_continue {m}"),
            Action::CrashLimit { first } => format!("crash_limit {first} {m}"),
            Action::RateLimit { at_most, per_ms } => {
                format!("rate_limit {at_most}/{}s {m}", per_ms as f64 / 1000.0)
            }
        }
    }

    /// Whether this rule lets the pause go on. Counts what it must even when it admits.
    fn skips(&mut self, now: Instant, reason: Reason, location: u64) -> bool {
        match self.action {
            Action::AutoContinue => true,
            Action::CrashLimit { first } => {
                if reason != Reason::Crash {
                    return false;
                }
                if !self.crashes.contains_key(&location) && self.crashes.len() >= MAX_KEYS {
                    return false;
                }
                let seen = self.crashes.entry(location).or_default();
                *seen = seen.saturating_add(1);
                *seen > first
            }
            Action::RateLimit { at_most, per_ms } => {
                let per = Duration::from_millis(per_ms);
                if !self.windows.contains_key(&location) && self.windows.len() >= MAX_KEYS {
                    return false;
                }
                let w = self.windows.entry(location).or_default();
                while w
                    .front()
                    .is_some_and(|t| now.saturating_duration_since(*t) >= per)
                {
                    w.pop_front();
                }
                if w.len() >= at_most as usize {
                    return true;
                }
                w.push_back(now);
                false
            }
        }
    }
}

/// A crash that went on without a post-mortem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Crash {
    pub actor: ActorId,
    pub location: String,
    /// What the actor sent with its request: the message and the backtrace.
    pub text: String,
    /// The rule that let it go.
    pub rule: String,
}

/// What to do with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Admit,
    /// Let it go on: `rule` says which, `count` is how many that rule has let go.
    Skip {
        rule: String,
        count: u64,
    },
}

/// The rules in force and the crash list.
#[derive(Debug, Default)]
pub struct Admission {
    rules: Vec<Rule>,
    crashes: VecDeque<Crash>,
    /// Crashes recorded but no longer kept.
    pub crashes_forgotten: u64,
    /// Keys the per-location counts (seeded per run: nobody can aim at a collision).
    hasher: std::collections::hash_map::RandomState,
}

impl Admission {
    pub fn add(&mut self, rule: Rule) -> Result<(), String> {
        if let Action::RateLimit { per_ms: 0, .. } = rule.action {
            return Err("rate_limit: the period must be longer than 0".into());
        }
        if self.rules.len() >= MAX_RULES {
            return Err(format!("at most {MAX_RULES} rules"));
        }
        self.rules.push(rule);
        Ok(())
    }

    /// Removes every rule (`None`) or those whose description is `which`; how many went.
    pub fn clear(&mut self, which: Option<&str>) -> usize {
        let before = self.rules.len();
        self.rules
            .retain(|r| which.is_some_and(|w| r.describe() != w));
        before - self.rules.len()
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn crashes(&self) -> impl Iterator<Item = &Crash> {
        self.crashes.iter()
    }

    /// Decides a lock request. Every matching rule counts it; the first that skips it
    /// decides. A skipped crash goes into the crash list.
    pub fn decide(
        &mut self,
        now: Instant,
        actor: ActorId,
        actor_name: &str,
        reason: Reason,
        location: &str,
        peek: Option<&str>,
    ) -> Decision {
        let mut decision = Decision::Admit;
        let key = std::hash::BuildHasher::hash_one(&self.hasher, location);
        for r in &mut self.rules {
            if !r.matcher.matches(actor, actor_name, location) {
                continue;
            }
            if r.skips(now, reason, key) && decision == Decision::Admit {
                r.skipped += 1;
                decision = Decision::Skip {
                    rule: r.describe(),
                    count: r.skipped,
                };
            }
        }
        if let Decision::Skip { rule, .. } = &decision
            && reason == Reason::Crash
        {
            self.crashes.push_back(Crash {
                actor,
                location: location.to_owned(),
                text: super::bounds::truncate(peek.unwrap_or("").to_owned(), CRASH_TEXT),
                rule: rule.clone(),
            });
            if self.crashes.len() > MAX_CRASHES {
                self.crashes.pop_front();
                self.crashes_forgotten += 1;
            }
        }
        decision
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(l: &str) -> Matcher {
        Matcher {
            location: Some(l.into()),
            ..Matcher::default()
        }
    }

    #[test]
    fn locations_match_exactly_by_tail_at_a_path_boundary_or_by_star() {
        assert!(location_matches("/src/w.py:3", "w.py:3"));
        assert!(location_matches("/src/w.py:3", "/src/w.py:3"));
        assert!(!location_matches("/src/xw.py:3", "w.py:3"));
        assert!(!location_matches("/src/w.py:30", "w.py:3"));
        assert!(location_matches("anything", "*"));
    }

    #[test]
    fn auto_continue_skips_every_match_and_counts() {
        let t = Instant::now();
        let mut a = Admission::default();
        a.add(Rule::new(at("w.py:3"), Action::AutoContinue))
            .expect("add");
        for i in 1..=3 {
            assert_eq!(
                a.decide(t, ActorId(2), "w", Reason::Pause, "/x/w.py:3", None),
                Decision::Skip {
                    rule: "auto_continue w.py:3".into(),
                    count: i
                }
            );
        }
        assert_eq!(
            a.decide(t, ActorId(2), "w", Reason::Pause, "/x/w.py:4", None),
            Decision::Admit
        );
        // By actor name.
        let mut a = Admission::default();
        let m = Matcher {
            actor_name: Some("noisy".into()),
            ..Matcher::default()
        };
        a.add(Rule::new(m, Action::AutoContinue)).expect("add");
        assert!(matches!(
            a.decide(t, ActorId(5), "noisy", Reason::Pause, "l", None),
            Decision::Skip { .. }
        ));
        assert_eq!(
            a.decide(t, ActorId(6), "quiet", Reason::Pause, "l", None),
            Decision::Admit
        );
    }

    #[test]
    fn only_the_first_n_crashes_per_location_get_a_post_mortem_the_rest_are_listed() {
        let t = Instant::now();
        let mut a = Admission::default();
        a.add(Rule::new(at("*"), Action::CrashLimit { first: 2 }))
            .expect("add");
        // Pauses are not crashes.
        assert_eq!(
            a.decide(t, ActorId(2), "w", Reason::Pause, "a:1", None),
            Decision::Admit
        );
        for _ in 0..2 {
            assert_eq!(
                a.decide(t, ActorId(2), "w", Reason::Crash, "a:1", None),
                Decision::Admit
            );
        }
        assert!(matches!(
            a.decide(
                t,
                ActorId(3),
                "w",
                Reason::Crash,
                "a:1",
                Some("panic: boom")
            ),
            Decision::Skip { count: 1, .. }
        ));
        // Another location has its own two.
        assert_eq!(
            a.decide(t, ActorId(2), "w", Reason::Crash, "b:9", None),
            Decision::Admit
        );
        let list: Vec<&Crash> = a.crashes().collect();
        assert_eq!(list.len(), 1);
        assert_eq!(
            (list[0].actor, list[0].text.as_str()),
            (ActorId(3), "panic: boom")
        );
        assert_eq!(list[0].rule, "crash_limit 2 *");
    }

    #[test]
    fn a_rate_limit_admits_at_most_n_per_period_per_location() {
        let t = Instant::now();
        let s = Duration::from_secs;
        let mut a = Admission::default();
        let rule = Rule::new(
            at("*"),
            Action::RateLimit {
                at_most: 2,
                per_ms: 10_000,
            },
        );
        a.add(rule).expect("add");
        let d =
            |a: &mut Admission, when| a.decide(when, ActorId(2), "w", Reason::Pause, "l:1", None);
        assert_eq!(d(&mut a, t), Decision::Admit);
        assert_eq!(d(&mut a, t + s(1)), Decision::Admit);
        assert!(matches!(d(&mut a, t + s(2)), Decision::Skip { .. }));
        assert!(matches!(d(&mut a, t + s(9)), Decision::Skip { .. }));
        // The first one left the window.
        assert_eq!(d(&mut a, t + s(10)), Decision::Admit);
        assert!(
            a.add(Rule::new(
                at("*"),
                Action::RateLimit {
                    at_most: 1,
                    per_ms: 0
                }
            ))
            .is_err()
        );
    }

    #[test]
    fn the_crash_list_and_rules_are_bounded_and_rules_can_be_cleared() {
        let t = Instant::now();
        let mut a = Admission::default();
        a.add(Rule::new(at("*"), Action::CrashLimit { first: 0 }))
            .expect("add");
        for i in 0..(MAX_CRASHES + 5) {
            a.decide(t, ActorId(2), "w", Reason::Crash, &format!("l:{i}"), None);
        }
        assert_eq!(a.crashes().count(), MAX_CRASHES);
        assert_eq!(a.crashes_forgotten, 5);
        for _ in 1..MAX_RULES {
            a.add(Rule::new(at("x"), Action::AutoContinue))
                .expect("add");
        }
        assert!(a.add(Rule::new(at("x"), Action::AutoContinue)).is_err());
        assert_eq!(a.clear(Some("auto_continue x")), MAX_RULES - 1);
        assert_eq!(a.rules().len(), 1);
        assert_eq!(a.clear(None), 1);
    }
}
