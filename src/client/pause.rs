//! Pauses and post-mortems: ask the root for the lock, run the REPL while holding it, give
//! it back. SIGINT is ignored while the process is queued or in a session. Without a root
//! the REPL runs on the process's own terminal, or (no terminal) the pause is logged and
//! skipped, so a program never hangs in CI.

use std::backtrace::Backtrace;
use std::collections::VecDeque;
use std::io::{BufRead, Write as _};
use std::panic::Location;
use std::sync::{Arc, Mutex, Once};

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

use crate::proto::{ExitReason, Reason, ReleaseHow, ToRoot};

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
    #[error("the connection to the root closed")]
    Disconnected,
    #[error("no actor-tui root and no terminal: pause skipped")]
    NoTerminal,
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

/// The context of a deliberate pause: the backtrace is captured here, in the pausing thread.
fn pause_context(site: &PauseSite, task: u64, values: Vec<(String, String)>) -> PauseCtx {
    context(
        Reason::Pause,
        site,
        task,
        values,
        None,
        Backtrace::force_capture(),
    )
}

fn context(
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

fn local_repl_possible() -> bool {
    std::env::var_os("ACTOR_TUI_NO_REPL").is_none()
        // SAFETY: isatty only inspects the descriptor.
        && unsafe { libc::isatty(0) == 1 && libc::isatty(2) == 1 }
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
fn session(task: u64, ctx: PauseCtx) -> Result<(), PauseError> {
    let _shield = SigintShield::enter();
    match global() {
        Some(client) => remote_session(&client, task, ctx),
        None if local_repl_possible() => {
            local_session(&ctx);
            Ok(())
        }
        None => warn_skipped(&ctx),
    }
}

fn remote_session(client: &Arc<Client>, task: u64, ctx: PauseCtx) -> Result<(), PauseError> {
    let mb = client.lock_route(task);
    let result = remote_session_inner(client, task, &ctx, &mb);
    client.drop_lock_route(task, &mb);
    registry::set_state(task, TaskState::Running);
    result
}

fn remote_session_inner(
    client: &Arc<Client>,
    task: u64,
    ctx: &PauseCtx,
    mb: &Arc<Mailbox<LockMsg>>,
) -> Result<(), PauseError> {
    registry::set_state(task, TaskState::Queued(ctx.location.clone()));
    client
        .send(&ToRoot::LockRequest {
            task,
            task_name: ctx.task_name.clone(),
            reason: ctx.reason,
            location: ctx.location.clone(),
        })
        .map_err(|e| PauseError::Send(e.to_string()))?;
    let epoch = loop {
        match mb.recv() {
            Some(LockMsg::Granted(epoch)) => break epoch,
            Some(LockMsg::Refused(e)) => {
                tracing::warn!(error = %e, "debug lock refused");
                eprintln!("actor-tui: pause at {} refused: {e}", ctx.location);
                return Err(PauseError::Refused(e));
            }
            // Input or revocation cannot precede a grant; ignore anything out of order.
            Some(_) => continue,
            None => {
                eprintln!("actor-tui: lost the root while waiting for the debug lock; continuing");
                return Err(PauseError::Disconnected);
            }
        }
    };
    registry::set_state(task, TaskState::Debugging(ctx.location.clone()));
    client.set_completions(task, Some(repl::completions(ctx)));
    let mut t = Remote {
        client,
        task,
        epoch,
        mb,
        pending: VecDeque::new(),
    };
    let outcome = repl::run(&mut t, ctx);
    client.set_completions(task, None);
    let release = |how| {
        client
            .send(&ToRoot::LockRelease { task, epoch, how })
            .map_err(|e| PauseError::Send(e.to_string()))
    };
    match outcome {
        Outcome::Continue => release(ReleaseHow::Continue),
        Outcome::Quit => {
            client.announce_exit(QUIT_EXIT_CODE, ExitReason::Quit);
            // Best effort: the exit below releases the lock anyway when the socket closes.
            let _ = release(ReleaseHow::Quit);
            std::process::exit(QUIT_EXIT_CODE);
        }
        Outcome::Revoked => {
            eprintln!("actor-tui: the debug lock was force-released; continuing");
            Ok(())
        }
        Outcome::Closed => Err(PauseError::Disconnected),
    }
}

/// The session over the root connection.
struct Remote<'a> {
    client: &'a Arc<Client>,
    task: u64,
    epoch: u64,
    mb: &'a Arc<Mailbox<LockMsg>>,
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
                task: self.task,
                epoch: self.epoch,
                data: chunk.to_owned(),
            };
            if self.client.send(&msg).is_err() {
                return;
            }
        }
    }

    fn read_line(&mut self, prompt: &str) -> Input {
        if let Some(l) = self.pending.pop_front() {
            return Input::Line(l);
        }
        let waiting = ToRoot::ReplWaiting {
            task: self.task,
            epoch: self.epoch,
            prompt: prompt.into(),
        };
        if self.client.send(&waiting).is_err() {
            return Input::Closed;
        }
        loop {
            match self.mb.recv() {
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

// ---- SIGINT shield ----

/// While any session is open or queued in this process, SIGINT is ignored: a Ctrl-C meant
/// for the debugger must not kill the process (or, worse, only some of its threads' work).
struct SigintShield;

static SHIELD: Mutex<(usize, Option<SigAction>)> = Mutex::new((0, None));

impl SigintShield {
    fn enter() -> Self {
        let mut s = lock_ok(&SHIELD);
        if s.0 == 0 {
            let ignore = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
            // SAFETY: installing SIG_IGN runs no handler code.
            match unsafe { sigaction(Signal::SIGINT, &ignore) } {
                Ok(old) => s.1 = Some(old),
                Err(e) => tracing::warn!(error = %e, "cannot shield SIGINT"),
            }
        }
        s.0 += 1;
        Self
    }
}

impl Drop for SigintShield {
    fn drop(&mut self) {
        let mut s = lock_ok(&SHIELD);
        s.0 = s.0.saturating_sub(1);
        if s.0 == 0
            && let Some(old) = s.1.take()
        {
            // SAFETY: restores exactly the disposition that was in place before.
            if let Err(e) = unsafe { sigaction(Signal::SIGINT, &old) } {
                tracing::warn!(error = %e, "cannot restore SIGINT");
            }
        }
    }
}

// ---- crash handler ----

thread_local! {
    static IN_CRASH: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Installs (once) a panic hook that opens a post-mortem session for a panic in any thread,
/// then lets the panic proceed as before (the previous hook still runs).
pub fn install_crash_handler() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let reentered = IN_CRASH.with(|c| c.replace(true));
            let on_reader = std::thread::current().name() == Some("actor-tui-client");
            if !reentered && !on_reader {
                post_mortem(info);
            }
            IN_CRASH.with(|c| c.set(reentered));
            previous(info);
        }));
    });
}

fn post_mortem(info: &std::panic::PanicHookInfo<'_>) {
    let message = if let Some(s) = info.payload().downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = info.payload().downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".to_owned()
    };
    let site = info
        .location()
        .map_or(PauseSite::new("<unknown>", 0, 0), |l| {
            PauseSite::new(
                // The location borrows from the panic; the site needs 'static, so leak the
                // file name once per crash (a handful of bytes, and the process is failing).
                Box::leak(l.file().to_owned().into_boxed_str()),
                l.line(),
                l.column(),
            )
        });
    let task = registry::current_task_id();
    let ctx = context(
        Reason::Crash,
        &site,
        task,
        Vec::new(),
        Some(message),
        Backtrace::force_capture(),
    );
    if global().is_none() && !local_repl_possible() {
        // No root, no terminal: the default hook prints the panic; nothing to add.
        return;
    }
    // Errors were already reported to stderr; the panic proceeds either way.
    let _ = session(task, ctx);
}

// ---- the lock without a REPL ----

/// The debug lock held without a REPL, for code that needs the console to itself for a
/// while. Released on [`LockGuard::release`] or drop. If it is force-released meanwhile,
/// the later release quotes an old epoch and the root ignores it.
#[derive(Debug)]
pub struct LockGuard {
    client: Arc<Client>,
    task: u64,
    epoch: u64,
    mb: Arc<Mailbox<LockMsg>>,
    released: bool,
}

/// Blocks until the calling task holds the tree-wide debug lock.
pub fn acquire_lock(reason: Reason, location: &str) -> Result<LockGuard, PauseError> {
    let client = global().ok_or(PauseError::NoTerminal)?;
    let task = registry::current_task_id();
    let mb = client.lock_route(task);
    let sent = client.send(&ToRoot::LockRequest {
        task,
        task_name: registry::task_name(task),
        reason,
        location: location.into(),
    });
    if let Err(e) = sent {
        client.drop_lock_route(task, &mb);
        return Err(PauseError::Send(e.to_string()));
    }
    loop {
        match mb.recv() {
            Some(LockMsg::Granted(epoch)) => {
                return Ok(LockGuard {
                    client,
                    task,
                    epoch,
                    mb,
                    released: false,
                });
            }
            Some(LockMsg::Refused(e)) => {
                client.drop_lock_route(task, &mb);
                return Err(PauseError::Refused(e));
            }
            Some(_) => continue,
            None => return Err(PauseError::Disconnected),
        }
    }
}

impl LockGuard {
    /// The grant's epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Gives the lock back.
    pub fn release(mut self) -> Result<(), PauseError> {
        self.release_inner()
    }

    fn release_inner(&mut self) -> Result<(), PauseError> {
        if self.released {
            return Ok(());
        }
        self.released = true;
        self.client.drop_lock_route(self.task, &self.mb);
        self.client
            .send(&ToRoot::LockRelease {
                task: self.task,
                epoch: self.epoch,
                how: ReleaseHow::Continue,
            })
            .map_err(|e| PauseError::Send(e.to_string()))
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        // Errors mean the root is gone, and with it the lock.
        let _ = self.release_inner();
    }
}
