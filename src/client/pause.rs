//! Pauses and post-mortems: take the lock (see `lock.rs`), run the REPL while holding it,
//! give it back. SIGINT is shielded while the process is queued or in a session. Without a
//! root the REPL runs on the process's own terminal, or (no terminal) the pause is logged
//! and skipped, so a program never hangs in CI.

use std::backtrace::Backtrace;
use std::collections::VecDeque;
use std::io::{BufRead, Write as _};
use std::panic::Location;
use std::sync::{Arc, Mutex};

use crate::proto::{ExitReason, Reason, ReleaseHow, ToRoot};

use super::lock;
use super::mailbox::Mailbox;
use super::registry::{self, TaskState};
use super::repl::{self, Input, Outcome, PauseCtx, Transport};
use super::{Client, LockMsg, global, lock_ok};

/// Exit code of an actor whose user typed `q` in its debugger. The parent also gets the
/// reason `quit` with the exit notice, so it can tell this from an ordinary failure.
pub const QUIT_EXIT_CODE: i32 = 113;

/// Why a pause did not open a session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PauseError {
    #[error("the root refused the debug lock: {0}")]
    Refused(String),
    /// The user skipped this pause from the console (not an error: `pause!` returns `Ok`).
    #[error("the pause was skipped: {0}")]
    Skipped(String),
    #[error("the connection to the root closed")]
    Disconnected,
    #[error("no actor-tui root and no terminal: pause skipped")]
    NoTerminal,
    #[error("not running under actor-tui: there is no debug lock to take")]
    NoRoot,
    #[error("cannot talk to the root: {0}")]
    Send(String),
}

/// Where a pause was written in the source.
#[derive(Debug, Clone, Copy)]
pub struct PauseSite {
    pub file: &'static str,
    pub line: u32,
    pub column: u32,
}

impl PauseSite {
    pub const fn new(file: &'static str, line: u32, column: u32) -> Self {
        Self { file, line, column }
    }

    fn from_location(l: &'static Location<'static>) -> Self {
        Self::new(l.file(), l.line(), l.column())
    }

    fn render(&self) -> String {
        format!("{}:{}:{}", self.file, self.line, self.column)
    }
}

/// Pauses the calling thread (blocking) at the caller's location. For async code prefer
/// [`pause_here`], which suspends only the task.
#[track_caller]
pub fn pause_here_sync() -> Result<(), PauseError> {
    pause_at_sync(PauseSite::from_location(Location::caller()), Vec::new())
}

/// Pauses the calling task at the caller's location.
#[track_caller]
pub fn pause_here() -> impl std::future::Future<Output = Result<(), PauseError>> {
    pause_at(PauseSite::from_location(Location::caller()), Vec::new())
}

/// What `pause_sync!` expands to.
pub fn pause_at_sync(site: PauseSite, values: Vec<(String, String)>) -> Result<(), PauseError> {
    let task = registry::current_task_id();
    let ctx = pause_context(&site, task, values);
    session(task, ctx)
}

/// What `pause!` expands to. The REPL runs on a helper thread while the task is suspended,
/// so the executor keeps running the program's other tasks.
pub async fn pause_at(site: PauseSite, values: Vec<(String, String)>) -> Result<(), PauseError> {
    let (task, anonymous) = match registry::current_async_task() {
        Some(id) => (id, false),
        None => (
            registry::anonymous_task(format!("async task at {}", site.render())),
            true,
        ),
    };
    let ctx = pause_context(&site, task, values);
    if global().is_none() && !local_repl_possible() {
        return warn_skipped(&ctx);
    }
    let done: Arc<Mailbox<Result<(), PauseError>>> = Arc::new(Mailbox::default());
    let tx = done.clone();
    let spawned = std::thread::Builder::new()
        .name("actor-tui-repl".into())
        .spawn(move || tx.push(registry::with_task_override(task, || session(task, ctx))));
    let result = match spawned {
        Ok(_) => done
            .recv_async()
            .await
            .unwrap_or(Err(PauseError::Disconnected)),
        Err(e) => Err(PauseError::Send(e.to_string())),
    };
    if anonymous {
        registry::forget(task);
    }
    result
}

/// Break in (the root's `interrupt`). A Rust program cannot be stopped at an arbitrary line
/// (there is no tracer to stop it with, and stopping a thread that holds a lock could hang
/// the rest), so the session shows where its tasks and threads are now and waits for `c`.
pub(super) fn break_in() {
    let task = registry::anonymous_task("break-in".into());
    let name = global().map_or_else(|| "actor".to_owned(), |c| c.name().to_owned());
    let message = format!(
        "interrupted from the console. A Rust program cannot be stopped at an arbitrary \
         line; this is its tasks' and threads' state now (`c` continues):\n{}",
        registry::dump(&name)
    );
    let site = PauseSite::new("break-in", 0, 0);
    let mut ctx = context(
        Reason::Pause,
        &site,
        task,
        Vec::new(),
        Some(message),
        Backtrace::disabled(),
    );
    ctx.location = "(break-in)".into();
    if let Err(e) = session(task, ctx) {
        tracing::debug!(error = %e, "break-in session did not open");
    }
    registry::forget(task);
}

/// The context of a deliberate pause: the backtrace is captured here, in the pausing thread.
pub(super) fn pause_context(
    site: &PauseSite,
    task: u64,
    values: Vec<(String, String)>,
) -> PauseCtx {
    context(
        Reason::Pause,
        site,
        task,
        values,
        None,
        Backtrace::force_capture(),
    )
}

pub(super) fn context(
    reason: Reason,
    site: &PauseSite,
    task: u64,
    values: Vec<(String, String)>,
    message: Option<String>,
    backtrace: Backtrace,
) -> PauseCtx {
    let actor_name = global().map_or_else(
        || std::env::args().next().unwrap_or_else(|| "actor".into()),
        |c| c.name().to_owned(),
    );
    PauseCtx {
        actor_name,
        reason,
        location: site.render(),
        task_name: registry::task_name(task),
        message,
        values,
        backtrace,
    }
}

pub(super) fn local_repl_possible() -> bool {
    use std::io::IsTerminal;
    std::env::var_os("ACTOR_TUI_NO_REPL").is_none()
        && std::io::stdin().is_terminal()
        && std::io::stderr().is_terminal()
}

fn warn_skipped(ctx: &PauseCtx) -> Result<(), PauseError> {
    tracing::warn!(location = %ctx.location, "pause skipped: no actor-tui root and no terminal");
    eprintln!(
        "actor-tui: {} at {} skipped: no actor-tui root and no terminal",
        match ctx.reason {
            Reason::Pause => "pause",
            Reason::Crash => "post-mortem",
        },
        ctx.location
    );
    Err(PauseError::NoTerminal)
}

/// Runs one session to its end on the calling thread.
pub(super) fn session(task: u64, ctx: PauseCtx) -> Result<(), PauseError> {
    let _shield = super::shield::SigintShield::enter();
    match global() {
        Some(client) => remote_session(&client, task, ctx),
        None if local_repl_possible() => {
            local_session(&ctx);
            Ok(())
        }
        None => warn_skipped(&ctx),
    }
}

/// What the console shows of this pause while it waits: the panic message and the captured
/// values, bounded (the root cuts it to 8 KiB anyway). A pause's backtrace is not in it:
/// symbolizing costs hundreds of milliseconds in a debug build, and the request must not
/// wait for that (it would reorder who asked first, and slow every handoff); it follows in
/// `lock_peek` once the request is queued. A crash's is in: the crash list keeps it when a
/// rule lets the crash go on without a session, and its banner would symbolize it anyway.
fn peek_of(ctx: &PauseCtx) -> String {
    let mut out = String::new();
    if let Some(m) = &ctx.message {
        out.push_str(&format!("panic: {m}\n"));
    }
    if ctx.reason == Reason::Crash {
        out.push_str("backtrace:\n");
        out.push_str(&repl::filter_backtrace(&ctx.backtrace));
    }
    if !ctx.values.is_empty() {
        out.push_str("values:\n");
        for (name, value) in ctx.values.iter().take(32) {
            let v: String = value.chars().take(200).collect();
            out.push_str(&format!("  {name} = {v}\n"));
        }
    }
    out.push_str(&format!("at {} (task {})\n", ctx.location, ctx.task_name));
    out
}

fn remote_session(client: &Arc<Client>, task: u64, ctx: PauseCtx) -> Result<(), PauseError> {
    registry::set_state(task, TaskState::Queued(ctx.location.clone()));
    let result = match lock::request(
        client,
        task,
        ctx.task_name.clone(),
        ctx.reason,
        ctx.location.clone(),
        Some(peek_of(&ctx)),
        // A pause's backtrace, once it is queued (a crash's is in its first peek).
        (ctx.reason == Reason::Pause).then(|| {
            Box::new(|| {
                format!(
                    "{}backtrace:\n{}",
                    peek_of(&ctx),
                    repl::filter_backtrace(&ctx.backtrace)
                )
            }) as Box<dyn FnOnce() -> String + '_>
        }),
    ) {
        Ok(grant) => run_session(grant, &ctx),
        Err(PauseError::Skipped(why)) => {
            tracing::info!(why = %why, "pause skipped by the user");
            Ok(())
        }
        Err(PauseError::Refused(e)) => {
            tracing::warn!(error = %e, "debug lock refused");
            eprintln!("actor-tui: pause at {} refused: {e}", ctx.location);
            Err(PauseError::Refused(e))
        }
        Err(PauseError::Disconnected) => {
            eprintln!("actor-tui: lost the root while waiting for the debug lock; continuing");
            Err(PauseError::Disconnected)
        }
        Err(e) => Err(e),
    };
    registry::set_state(task, TaskState::Running);
    result
}

/// The REPL over a grant, then the grant's end as the session says.
fn run_session(mut grant: lock::Grant, ctx: &PauseCtx) -> Result<(), PauseError> {
    let (client, task) = (grant.client.clone(), grant.task);
    registry::set_state(task, TaskState::Debugging(ctx.location.clone()));
    client.set_completions(task, Some(repl::completions(ctx)));
    let outcome = {
        let mut t = Remote {
            grant: &grant,
            pending: VecDeque::new(),
        };
        repl::run(&mut t, ctx)
    };
    client.set_completions(task, None);
    match outcome {
        Outcome::Continue => grant.release(ReleaseHow::Continue),
        Outcome::Quit => {
            client.announce_exit(QUIT_EXIT_CODE, ExitReason::Quit);
            // Best effort: the exit below releases the lock anyway when the socket closes.
            let _ = grant.release(ReleaseHow::Quit);
            std::process::exit(QUIT_EXIT_CODE);
        }
        Outcome::Revoked => {
            grant.forget();
            eprintln!("actor-tui: the debug lock was force-released; continuing");
            Ok(())
        }
        Outcome::Closed => {
            grant.forget();
            Err(PauseError::Disconnected)
        }
    }
}

/// The session over the root connection.
struct Remote<'a> {
    grant: &'a lock::Grant,
    /// Lines that arrived in one chunk and are not consumed yet.
    pending: VecDeque<String>,
}

/// Output is split below the frame limit so long dumps never break the connection.
const OUTPUT_CHUNK: usize = 256 * 1024;

impl Transport for Remote<'_> {
    fn write(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        for chunk in crate::proto::split_utf8(text, OUTPUT_CHUNK) {
            let msg = ToRoot::ReplOutput {
                task: self.grant.task,
                epoch: self.grant.epoch,
                data: chunk.to_owned(),
            };
            if self.grant.client.send(&msg).is_err() {
                return;
            }
        }
    }

    fn read_line(&mut self, prompt: &str) -> Input {
        if let Some(l) = self.pending.pop_front() {
            return Input::Line(l);
        }
        let waiting = ToRoot::ReplWaiting {
            task: self.grant.task,
            epoch: self.grant.epoch,
            prompt: prompt.into(),
        };
        if self.grant.client.send(&waiting).is_err() {
            return Input::Closed;
        }
        loop {
            match self.grant.mb.recv() {
                Some(LockMsg::Input(data)) => {
                    self.pending.extend(data.lines().map(str::to_owned));
                    if let Some(l) = self.pending.pop_front() {
                        return Input::Line(l);
                    }
                    // An empty chunk: still waiting, and still say so.
                    return Input::Line(String::new());
                }
                Some(LockMsg::Revoked) => return Input::Revoked,
                Some(_) => continue,
                None => return Input::Closed,
            }
        }
    }
}

/// Serialises local sessions so threads of one process never share the terminal at once.
static LOCAL_TTY: Mutex<()> = Mutex::new(());

fn local_session(ctx: &PauseCtx) {
    let _tty = lock_ok(&LOCAL_TTY);
    let mut t = Local;
    if repl::run(&mut t, ctx) == Outcome::Quit {
        std::process::exit(QUIT_EXIT_CODE);
    }
}

/// The session on the process's own terminal (no root).
struct Local;

impl Transport for Local {
    fn write(&mut self, text: &str) {
        // The terminal is gone if this fails; the session then ends at the next read.
        let _ = std::io::stderr().write_all(text.as_bytes());
    }

    fn read_line(&mut self, prompt: &str) -> Input {
        self.write(prompt);
        let mut line = String::new();
        match std::io::stdin().lock().read_line(&mut line) {
            Ok(0) | Err(_) => Input::Closed,
            Ok(_) => Input::Line(line),
        }
    }
}
