//! Message enums. Every frame is one msgpack map with a `type` field in snake_case; fields
//! are named. Messages only grow: new fields must be `Option` with `#[serde(default)]`, and
//! nothing is renamed or renumbered.

use serde::{Deserialize, Serialize};

/// Why an actor asks for the debug lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// A deliberate breakpoint (`pause!`, `breakpoint()`).
    Pause,
    /// A post-mortem session after a panic or an uncaught exception.
    Crash,
}

impl Reason {
    /// The wire name, also used in events and on screen.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pause => "pause",
            Self::Crash => "crash",
        }
    }
}

/// How the holder ended its session, as it reports it in `lock_release`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseHow {
    /// The user typed `c`/`continue`: the program goes on.
    Continue,
    /// The user typed `q`/`quit`: the actor is about to exit with status "quit".
    Quit,
}

/// What an actor says about its coming exit, so its parent can tell a debugger quit from a
/// crash or a normal end even when exit codes collide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitReason {
    /// The program finished on its own.
    Normal,
    /// The user quit from the debugger.
    Quit,
    /// A panic or uncaught exception ends the process.
    Crash,
    /// The root cancelled the actor and it is complying.
    Cancelled,
    /// Set by the root, never sent by an actor: the remote link died without a clean close
    /// (its host or network vanished), so how the actor ended is unknown.
    Lost,
}

impl ExitReason {
    /// The wire name, also used in events.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::Quit => "quit",
            Self::Crash => "crash",
            Self::Cancelled => "cancelled",
            Self::Lost => "lost",
        }
    }
}

/// Frames an actor sends to the root.
/// An actor's id: a number the root hands out ("1" is the first program). On the wire and
/// in the headless stream it is the decimal string; only that canonical spelling parses
/// (`"01"`, `"+1"`, `" 1"` name no actor), so two spellings can never mean one actor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ActorId(pub u64);

impl std::fmt::Display for ActorId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Why a string is not an actor id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an actor id (ids are decimal numbers without sign or leading zero)")]
pub struct BadActorId(pub String);

impl std::str::FromStr for ActorId {
    type Err = BadActorId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let canonical = !s.is_empty()
            && s.bytes().all(|b| b.is_ascii_digit())
            && (s == "0" || !s.starts_with('0'));
        canonical
            .then(|| s.parse().ok())
            .flatten()
            .map(Self)
            .ok_or_else(|| BadActorId(s.to_owned()))
    }
}

impl Serialize for ActorId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ActorId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// How a process ended: its exit code or the signal that killed it (one of the two), and
/// the reason it announced with `exiting`, if any. The one shape of an exit everywhere (the
/// tree, events, `child_exited`, a parent's view of its subactor). On the wire its fields sit
/// flat in the message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exit {
    #[serde(default)]
    pub code: Option<i32>,
    #[serde(default)]
    pub signal: Option<i32>,
    #[serde(default)]
    pub reason: Option<ExitReason>,
}

impl Exit {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// The user typed `q` in the process's debugger.
    pub fn quit_from_debugger(&self) -> bool {
        self.reason == Some(ExitReason::Quit)
    }

    /// The shell's way to put it in one number: the code, or 128 + the signal.
    pub fn status_code(&self) -> i32 {
        self.code.unwrap_or_else(|| 128 + self.signal.unwrap_or(0))
    }
}

impl From<std::process::ExitStatus> for Exit {
    fn from(st: std::process::ExitStatus) -> Self {
        use std::os::unix::process::ExitStatusExt;
        Self {
            code: st.code(),
            signal: st.signal(),
            reason: None,
        }
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.reason, self.code, self.signal) {
            (Some(ExitReason::Quit), _, _) => write!(f, "quit from debugger"),
            (Some(ExitReason::Cancelled), _, _) => write!(f, "cancelled"),
            (Some(ExitReason::Lost), _, _) => write!(f, "lost (its link died)"),
            (_, Some(c), _) => write!(f, "exit code {c}"),
            (_, _, Some(s)) => write!(f, "killed by signal {s}"),
            _ => write!(f, "unknown exit"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToRoot {
    /// First frame on every connection.
    Hello { protocol: u32, agent: String },
    /// Second frame: who this process is. `actor` is the id from `ACTOR_TUI_ACTOR` if set.
    Register {
        name: String,
        pid: u32,
        #[serde(default)]
        actor: Option<String>,
        /// A node of the program's own (a Ray node, say) to show this actor under, beside
        /// its siblings of the same group. Left out when there is none, so a frame without
        /// it is byte for byte what it was before the field existed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        group: Option<String>,
    },
    /// Ask the root to start a subactor on its own PTY, as a child of the sender.
    Spawn {
        req: u64,
        name: String,
        program: String,
        args: Vec<String>,
        #[serde(default)]
        env: Option<Vec<(String, String)>>,
        #[serde(default)]
        cwd: Option<String>,
    },
    /// Ask the root to cancel an actor and its subtree.
    Cancel { actor: String, force: bool },
    /// Ask for the tree-wide debug lock on behalf of one task (or thread) of the sender.
    LockRequest {
        task: u64,
        task_name: String,
        reason: Reason,
        location: String,
        /// A small look at the pause, shown while the request waits (captured values and
        /// the stack: Rust; `where` and the frame's locals: Python). Cut to 8 KiB.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        peek: Option<String>,
    },
    /// More of a waiting request's peek, sent once while it waits (what was too slow to
    /// gather before the request went out: a Rust pause's symbolized backtrace). Cut to
    /// 8 KiB; ignored unless the request still waits, and after the first.
    LockPeek { task: u64, peek: String },
    /// Give the lock back. `epoch` is the one from `lock_granted`; a stale epoch is ignored.
    LockRelease {
        task: u64,
        epoch: u64,
        how: ReleaseHow,
        /// The debugger was stepping and the step ran past the step timeout, so the lock is
        /// handed on (sent with how `continue`, which is what a root that predates this
        /// field sees).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        step_timeout: bool,
    },
    /// Text the holder's debugger printed.
    ReplOutput { task: u64, epoch: u64, data: String },
    /// The holder's session is still open and its process alive: sent every second or so
    /// while the grant lasts (PROTOCOL.md 6.3). A holder that stops sending them is marked
    /// suspect; a client that never sends one is judged by the older rules.
    Lease { task: u64, epoch: u64 },
    /// The holder's debugger waits for one line of input; `prompt` is shown before it.
    ReplWaiting {
        task: u64,
        epoch: u64,
        prompt: String,
    },
    /// The holder's debugger stopped again during its session (a step), maybe in another
    /// task (asyncio resumes whichever task is next): the lock pane follows it.
    ReplWhere {
        task: u64,
        epoch: u64,
        task_name: String,
        location: String,
    },
    /// Something the actor wants the user to know (it cannot be interrupted, for example);
    /// shown as a notice.
    Notice { message: String },
    /// Answer to `dump_request`.
    DumpReply { req: u64, text: String },
    /// Answer to `complete_request`: every full input line the session would accept that
    /// starts with the requested line (empty when there is nothing to offer).
    CompleteReply { req: u64, matches: Vec<String> },
    /// The actor is about to exit; sent best-effort before the process ends.
    Exiting { code: i32, reason: ExitReason },
    /// Instead of `register`: this connection is a viewer (another console, a script), not
    /// an actor. From then on the root sends it `attached`, the run's state and every event;
    /// the viewer sends `command`s. `driver`: it asks to drive; `take_over`: even if
    /// another viewer drives.
    Attach {
        name: String,
        #[serde(default)]
        driver: bool,
        #[serde(default)]
        take_over: bool,
    },
    /// A viewer's command, in the headless command schema.
    Command { command: super::RuntimeCommand },
    /// Remote links only, the answer to `challenge`, before `hello`: proof that the client
    /// holds the ticket's secret (see `remote`). `kind` is the ticket's kind (`actor`,
    /// `observer`, `driver`), `binding` what the MAC is bound to (`exporter` or
    /// `server_cert`), `mac` the HMAC in lowercase hex.
    Proof {
        kind: String,
        binding: String,
        mac: String,
    },
    /// A message type from a newer protocol revision: ignored, never sent.
    #[serde(other)]
    Unknown,
}

/// Frames the root sends to an actor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToActor {
    /// First frame on every connection.
    Hello { protocol: u32, agent: String },
    /// The actor's id in the tree and its parent's id.
    Registered {
        actor: String,
        #[serde(default)]
        parent: Option<String>,
    },
    /// A `spawn` succeeded.
    Spawned { req: u64, actor: String, pid: u32 },
    /// A `spawn` failed; nothing was started.
    SpawnFailed { req: u64, error: String },
    /// The lock is the task's; the REPL may open. Every later frame of the session quotes
    /// `epoch`.
    LockGranted { task: u64, epoch: u64 },
    /// The request was refused (for example: the task already holds or waits for the lock).
    /// `skipped`: not an error: the user chose to let this pause go on without a session
    /// (skip, continue all, auto-continue); the client resumes the task as if continued.
    LockRefused {
        task: u64,
        error: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        skipped: bool,
    },
    /// The lock was taken away from the task (force-release); end the session.
    LockRevoked { task: u64, epoch: u64 },
    /// One chunk of user input for the session; usually one line ending in `\n`.
    ReplInput { task: u64, epoch: u64, data: String },
    /// Report the task tree and threads with `dump_reply`.
    DumpRequest { req: u64 },
    /// Tab completion for the session of `task`: `line` is what the user typed so far.
    CompleteRequest {
        task: u64,
        epoch: u64,
        req: u64,
        line: String,
    },
    /// Stop: finish up and exit. `force` means the root will not wait long.
    Cancel { force: bool },
    /// The user asks to break in: pause where the program is now (Python: the main
    /// thread's current line) through the lock, as Ctrl-C would in a terminal. An actor
    /// that cannot answers with a `notice` saying why.
    Interrupt,
    /// A subactor this actor spawned has exited.
    ChildExited {
        actor: String,
        #[serde(flatten)]
        exit: Exit,
    },
    /// A fatal protocol error; the root closes the connection after it.
    Error { message: String },
    /// Remote links only, the root's first frame: a fresh random nonce (hex) for `proof`.
    Challenge { nonce: String },
    /// Remote links only: the proof holds; the ordinary protocol (`hello`) starts now.
    Welcome,
    /// A message type from a newer protocol revision: ignored, never sent.
    #[serde(other)]
    Unknown,
}
