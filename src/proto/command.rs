//! What a front end asks of the root. The root's own front ends pass these to the engine in
//! process; an attached viewer sends them in `command` frames. Their serde form is the
//! headless command schema (`{"cmd": "dump", "actor": "2"}`), one definition for both.

use serde::{Deserialize, Serialize};

use super::ActorId;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum RuntimeCommand {
    /// Input for the lock holder's REPL session.
    Input { data: String },
    /// Ask the holder's session to complete a partly typed line.
    Complete {
        #[serde(rename = "data")]
        line: String,
    },
    /// Take the lock from its holder and grant the next waiter.
    ForceRelease,
    /// Ask an actor for its task tree and threads.
    Dump { actor: ActorId },
    /// Dump every live actor at once and gather the answers into one snapshot.
    DumpAll,
    /// Stop every actor (SIGSTOP to each process group) for a consistent look.
    Freeze,
    /// Resume a frozen tree (SIGCONT).
    #[serde(rename = "resume")]
    Thaw,
    /// Move a waiting request to the front of the queue: it is granted next.
    Promote { actor: ActorId, task: u64 },
    /// Move a waiting request to the back of the queue.
    Defer { actor: ActorId, task: u64 },
    /// Let a waiting request go on without a session (its task continues).
    Skip { actor: ActorId, task: u64 },
    /// Skip every waiter paused at `location` (an exact location or its tail, such as
    /// `worker.py:42`), or every waiter of `actor`.
    ContinueAll {
        #[serde(default)]
        location: Option<String>,
        #[serde(default)]
        actor: Option<ActorId>,
    },
    /// From now on, skip every pause at `location` (or of `actor`), and the waiters there
    /// now.
    AutoContinue {
        #[serde(default)]
        location: Option<String>,
        #[serde(default)]
        actor: Option<ActorId>,
    },
    /// Post-mortem only the first `first` crashes at each location matching `location`
    /// (default `*`); the rest go on and are recorded in the crash list.
    CrashLimit {
        #[serde(default)]
        location: Option<String>,
        first: u32,
    },
    /// At most `at_most` sessions every `per_ms` ms at each location matching `location`
    /// (default `*`); the rest go on.
    RateLimit {
        #[serde(default)]
        location: Option<String>,
        at_most: u32,
        per_ms: u64,
    },
    /// Remove the rule described `rule` (as the `rules` event writes it), or every rule.
    ClearRules {
        #[serde(default)]
        rule: Option<String>,
    },
    /// Ask for a `rules` event: the rules in force, their counts, the crash list.
    Rules,
    /// Write the run's report (lock timeline and sessions, HTML) now; it is also written
    /// when the run ends.
    Report,
    /// Cancel an actor's subtree; `force` skips waiting for debugging actors.
    Cancel {
        actor: ActorId,
        #[serde(default)]
        force: bool,
    },
    /// End the run: revoke the lock and tear the whole tree down.
    Quit,
    /// Set the size of every actor's PTY (and of those spawned later); never zero.
    Resize { rows: u16, cols: u16 },
    /// Break in: ask the actor to pause where it is now, through the lock.
    Interrupt { actor: ActorId },
    /// Bytes typed into an actor's own terminal (its PTY), as a keyboard would: for programs
    /// that read their terminal themselves (`input()`, a shell, a prompt).
    Stdin { actor: ActorId, data: String },
    /// An attached viewer asks to drive; `take_over` takes it from the current driver.
    Drive {
        #[serde(default)]
        take_over: bool,
    },
    /// An attached driver gives driving up (back to observer).
    Observe,
    /// An attached driver hands driving to another viewer (by its id in `viewer` events).
    HandOver { to: u64 },
}

impl RuntimeCommand {
    /// Commands an observer may send: they change nothing in the tree.
    pub fn read_only(&self) -> bool {
        matches!(
            self,
            Self::Dump { .. }
                | Self::DumpAll
                | Self::Rules
                | Self::Drive { .. }
                | Self::Observe
                | Self::HandOver { .. }
        )
    }
}
