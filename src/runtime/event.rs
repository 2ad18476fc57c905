//! The one seam between the engine and its front ends: `RuntimeEvent` out, `RuntimeCommand`
//! in. Headless mode prints these as JSON lines; the console applies them to its state. Both
//! front ends can do exactly what these types allow, no more.

use serde::{Deserialize, Serialize};

use crate::proto::{ActorId, Exit, Reason};

use super::lock::ReleaseCause;
use super::suspect::Why;

/// Something that happened in the tree, in the order the engine saw it. Its serde form is
/// the headless event schema (`{"event": "lock_granted", ...}`): headless prints it as JSON,
/// an attached viewer gets it as msgpack in `event` frames; only PTY output differs (lossy
/// UTF-8 text in JSON, the exact bytes in msgpack).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum RuntimeEvent {
    ActorStarted {
        actor: ActorId,
        name: String,
        pid: u32,
        parent: Option<ActorId>,
    },
    ActorExited {
        actor: ActorId,
        #[serde(flatten)]
        exit: Exit,
    },
    LockRequested {
        actor: ActorId,
        task: u64,
        task_name: String,
        reason: Reason,
        location: String,
        /// What the actor showed of its pause (values, stack, locals), to look at while it
        /// waits; absent if it sent none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        peek: Option<String>,
    },
    /// A waiting request's peek, completed while it waits (replaces the one in
    /// `lock_requested`).
    LockPeek {
        actor: ActorId,
        task: u64,
        peek: String,
    },
    LockGranted {
        actor: ActorId,
        task: u64,
        epoch: u64,
    },
    LockReleased {
        actor: ActorId,
        task: u64,
        epoch: u64,
        cause: ReleaseCause,
    },
    /// The holder's debugger stopped again in its session, at `location`, in task
    /// `task_name` (which may differ from the one that asked: asyncio moves between tasks).
    LockMoved {
        actor: ActorId,
        task: u64,
        task_name: String,
        location: String,
    },
    /// A waiting request left the queue without being granted (its actor went away).
    LockDropped {
        actor: ActorId,
        task: u64,
        cause: ReleaseCause,
    },
    LockRefused {
        actor: ActorId,
        task: u64,
        error: String,
    },
    /// The holder looks stuck (stopped, gone, or not answering input); `since` is the time
    /// since its last frame. A warning only: the lock stays where it is.
    LockSuspect {
        actor: ActorId,
        task: u64,
        epoch: u64,
        why: Why,
        #[serde(rename = "since_ms", with = "millis")]
        since: std::time::Duration,
    },
    /// A suspect holder shows life again.
    LockHealthy {
        actor: ActorId,
        task: u64,
        epoch: u64,
    },
    /// The holder sends leases (PROTOCOL.md 6.3): from now on its liveness is judged by
    /// them (`lock_suspect` with why `lease_lapsed` when they stop), not by its silence.
    LockLeased {
        actor: ActorId,
        task: u64,
        epoch: u64,
    },
    ReplOutput {
        actor: ActorId,
        task: u64,
        data: String,
    },
    /// A line sent into the holder's session (by whichever front end drives).
    ReplInput {
        actor: ActorId,
        task: u64,
        data: String,
    },
    ReplReady {
        actor: ActorId,
        task: u64,
        prompt: String,
    },
    /// Bytes the actor wrote to its own PTY.
    Output {
        actor: ActorId,
        #[serde(with = "output_bytes")]
        data: Vec<u8>,
    },
    Dump {
        actor: ActorId,
        text: String,
        /// Which step of the dump ladder answered: `cooperative`, `py-spy`, `native` or
        /// `facts` (see `runtime::dump`).
        #[serde(default)]
        step: Option<String>,
    },
    /// The user reordered the queue (`how`: `promote` or `defer`); `order` is the whole
    /// queue after it, in grant order.
    QueueReordered {
        actor: ActorId,
        task: u64,
        how: String,
        order: Vec<Waiter>,
    },
    /// A waiting request was let go on without a session (`why`: `skip`, `continue_all` or
    /// `auto_continue`); it left the queue.
    RequestSkipped {
        actor: ActorId,
        task: u64,
        location: String,
        why: String,
    },
    /// A REPL session ended; `path` is its transcript file, if one was written. Times are
    /// milliseconds since the run started.
    SessionEnded {
        session: u64,
        actor: ActorId,
        task: u64,
        epoch: u64,
        actor_name: String,
        task_name: String,
        reason: Reason,
        location: String,
        requested_ms: u64,
        waited_ms: u64,
        held_ms: u64,
        cause: ReleaseCause,
        lines_in: u64,
        path: Option<String>,
    },
    /// The admission rules in force, what each let go, and the crashes that went on
    /// without a post-mortem (after every change to the rules, and on the `rules` command).
    Rules {
        rules: Vec<RuleInfo>,
        crashes: Vec<super::admission::Crash>,
        crashes_forgotten: u64,
    },
    /// The run's report (timeline and sessions, HTML) was written to `path`.
    Report { path: String },
    /// An actor is possibly hung (`hung`: no CPU, output or frame for `still_ms` while
    /// others depend on it), or moves again. Shown, never acted on.
    Hung {
        actor: ActorId,
        hung: bool,
        still_ms: u64,
    },
    /// The tree was frozen (every actor stopped) or resumed.
    Frozen { frozen: bool },
    /// A tree-wide dump (`dump_all`): every live actor's step, identical stacks merged;
    /// `path` is where it was saved (text, and JSON next to it), if it could be.
    Snapshot { text: String, path: Option<String> },
    /// Completions for a line typed into the holder's session.
    Completions {
        actor: ActorId,
        line: String,
        matches: Vec<String>,
    },
    /// The actor (or a process in its terminal's foreground) waits for someone to type into
    /// its terminal; answer with the `stdin` command.
    WantsInput { actor: ActorId },
    /// The actor no longer waits for input on its terminal (it read, or gave up).
    InputDone { actor: ActorId },
    /// Teardown of `actor` waits because it (or a descendant) holds or waits for the lock.
    TeardownWaiting { actor: ActorId },
    /// Teardown of `actor` has started: the Cancel frame was sent (or, forced, SIGKILL).
    Cancelling { actor: ActorId, force: bool },
    /// Something the user should know that is not a state change (a dropped connection, an
    /// ignored late release, a command that could not apply).
    Notice {
        actor: Option<ActorId>,
        message: String,
    },
    /// An attached viewer came, changed role, or left (`role` gone).
    Viewer {
        viewer: u64,
        name: String,
        pid: Option<u32>,
        role: ViewerRole,
    },
    /// `--listen`: the root accepts remote actors and viewers; the first event. Never sent
    /// to attached viewers (it carries the tickets' secrets).
    Listening {
        address: String,
        ticket: String,
        observer_ticket: String,
        driver_ticket: String,
        /// The actor ticket's file (what a remote host needs), if one was written.
        ticket_file: Option<String>,
        /// All three ticket files (actor, observer, driver).
        ticket_files: Vec<String>,
    },
    /// The run is over; the last event.
    Exit { code: i32 },
}

/// What a front end asks of the engine: defined with the wire contract, because an attached
/// viewer sends these in `command` frames (see `proto::command`).
pub use crate::proto::RuntimeCommand;

/// One admission rule as the `rules` event lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleInfo {
    /// What it is, as people read it (`auto_continue worker.py:42`).
    pub rule: String,
    /// Pauses it let go on.
    pub skipped: u64,
}

/// A waiting request, as `queue_reordered` lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiter {
    pub actor: ActorId,
    pub task: u64,
}

/// What an attached viewer may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ViewerRole {
    /// Sees everything, changes nothing (dumps are allowed: they only read).
    Observer,
    /// May do whatever the root's own front end can.
    Driver,
    /// Detached (only in `viewer` events).
    Gone,
}

impl ViewerRole {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Observer => "observer",
            Self::Driver => "driver",
            Self::Gone => "gone",
        }
    }
}

/// A duration as whole milliseconds.
mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// PTY output: text (invalid UTF-8 replaced) for human-readable formats such as the
/// headless JSON, the exact bytes for binary ones such as a viewer's msgpack frames.
mod output_bytes {
    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(data: &[u8], s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&String::from_utf8_lossy(data))
        } else {
            s.serialize_bytes(data)
        }
    }

    struct Bytes;

    impl<'de> Visitor<'de> for Bytes {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("bytes or a string")
        }

        fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }

        fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<u8>, E> {
            Ok(v.as_bytes().to_vec())
        }

        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut out = Vec::new();
            while let Some(b) = seq.next_element::<u8>()? {
                out.push(b);
            }
            Ok(out)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_any(Bytes)
    }
}
