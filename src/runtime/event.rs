//! The one seam between the engine and its front ends: `RuntimeEvent` out, `RuntimeCommand`
//! in. Headless mode prints these as JSON lines; the console applies them to its state. Both
//! front ends can do exactly what these types allow, no more.

use crate::proto::{ActorId, Exit, Reason};

use super::lock::ReleaseCause;
use super::suspect::Why;

/// Something that happened in the tree, in the order the engine saw it.
#[derive(Debug, Clone, PartialEq)]
pub enum RuntimeEvent {
    ActorStarted {
        actor: ActorId,
        name: String,
        pid: u32,
        parent: Option<ActorId>,
    },
    ActorExited {
        actor: ActorId,
        exit: Exit,
    },
    LockRequested {
        actor: ActorId,
        task: u64,
        task_name: String,
        reason: Reason,
        location: String,
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
        since: std::time::Duration,
    },
    /// A suspect holder shows life again.
    LockHealthy {
        actor: ActorId,
        task: u64,
        epoch: u64,
    },
    ReplOutput {
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
        data: Vec<u8>,
    },
    Dump {
        actor: ActorId,
        text: String,
    },
    /// Completions for a line typed into the holder's session.
    Completions {
        actor: ActorId,
        line: String,
        matches: Vec<String>,
    },
    /// The actor (or a process in its terminal's foreground) waits for someone to type into
    /// its terminal; answer with the `stdin` command.
    WantsInput {
        actor: ActorId,
    },
    /// The actor no longer waits for input on its terminal (it read, or gave up).
    InputDone {
        actor: ActorId,
    },
    /// Teardown of `actor` waits because it (or a descendant) holds or waits for the lock.
    TeardownWaiting {
        actor: ActorId,
    },
    /// Teardown of `actor` has started: the Cancel frame was sent (or, forced, SIGKILL).
    Cancelling {
        actor: ActorId,
        force: bool,
    },
    /// Something the user should know that is not a state change (a dropped connection, an
    /// ignored late release, a command that could not apply).
    Notice {
        actor: Option<ActorId>,
        message: String,
    },
    /// The run is over; the last event.
    Exit {
        code: i32,
    },
}

/// What a front end asks of the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeCommand {
    /// Input for the lock holder's REPL session.
    Input { data: String },
    /// Ask the holder's session to complete a partly typed line.
    Complete { line: String },
    /// Take the lock from its holder and grant the next waiter.
    ForceRelease,
    /// Ask an actor for its task tree and threads.
    Dump { actor: ActorId },
    /// Cancel an actor's subtree; `force` skips waiting for debugging actors.
    Cancel { actor: ActorId, force: bool },
    /// End the run: revoke the lock and tear the whole tree down.
    Quit,
    /// Set the size of every actor's PTY (and of those spawned later); never zero.
    Resize { rows: u16, cols: u16 },
    /// Break in: ask the actor to pause where it is now, through the lock.
    Interrupt { actor: ActorId },
    /// Bytes typed into an actor's own terminal (its PTY), as a keyboard would: for programs
    /// that read their terminal themselves (`input()`, a shell, a prompt).
    Stdin { actor: ActorId, data: String },
}
