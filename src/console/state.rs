//! The console's picture of the run, built only from runtime events: actors and their
//! terminals, the lock holder and queue, dumps, messages. Pure: no terminal, and time comes
//! in as an argument, so every rule here is unit-tested.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use actor_tui_ui::ActorStatus;

use crate::proto::{ActorId, Exit, ExitReason, Reason};
use crate::runtime::RuntimeEvent;
use crate::runtime::event::ViewerRole;
use crate::runtime::lock::ReleaseCause;
use crate::runtime::sessions::SessionLog;

/// Lines of scrollback kept per actor terminal. Bounded so a flooding actor cannot grow the
/// console's memory: 2,000 lines of 120 columns is about 5 MB of cells at most.
pub const SCROLLBACK: usize = 2_000;

/// The scrollback in force (`scrollback` in the config file), set once when the console
/// starts; one setting for the whole process, read wherever an emulator is made.
static SCROLLBACK_LINES: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(SCROLLBACK);

/// Lines of scrollback per actor terminal and REPL screen.
pub fn scrollback() -> usize {
    SCROLLBACK_LINES.load(std::sync::atomic::Ordering::Relaxed)
}

/// Sets [`scrollback`] (before the first event is applied).
pub fn set_scrollback(lines: usize) {
    SCROLLBACK_LINES.store(lines, std::sync::atomic::Ordering::Relaxed);
}

/// A holder that shows no sign of life (no REPL output or prompt) for this long is marked
/// suspect in the lock pane.
pub const SUSPECT_AFTER: Duration = Duration::from_secs(5);

/// Exited actors whose terminals are kept (the most recent ones); older ones drop their
/// scrollback so a long run with many short-lived chatty actors stays bounded.
const KEEP_EXITED_SCREENS: usize = 32;

/// How long the lock pane keeps saying that the last holder vanished.
const STALE_NOTE_FOR: Duration = Duration::from_secs(15);

pub struct Actor {
    pub id: ActorId,
    pub name: String,
    pub pid: u32,
    pub parent: Option<ActorId>,
    pub children: Vec<ActorId>,
    pub exited: Option<Exit>,
    /// Asked for a post-mortem at some point.
    pub crashed: bool,
    pub cancelling: bool,
    pub teardown_waiting: bool,
    /// Blocked reading its own terminal (from `wants_input` until `input_done`).
    pub wants_input: bool,
    /// Possibly hung (a `hung` event): still while others depend on it.
    pub hung: bool,
    pub collapsed: bool,
    /// Its own PTY output; created on first output so idle actors cost nothing.
    pub output: Option<vt100::Parser>,
    /// What feeding its emulator needs to know of earlier output (see feed.rs).
    output_feed: super::feed::FeedState,
    /// Output that came since the last frame, for the live emulator: it is parsed when a
    /// frame shows it (`show`), once per frame, so a flood's head can be left out.
    output_pending: Vec<u8>,
    /// Someone reads the emulator's scrollback (scrolled back, searching): every line must
    /// be parsed. Otherwise only the screen's are (feed.rs).
    output_scrollback: bool,
    /// Its REPL sessions, one after the other, with scrollback.
    pub repl: Option<vt100::Parser>,
    pub dump: Option<String>,
    /// Lines typed into its sessions, oldest first.
    pub history: Vec<String>,
}

impl std::fmt::Debug for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Actor")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub actor: ActorId,
    pub task: u64,
    pub task_name: String,
    pub reason: Reason,
    pub location: String,
    pub since: Instant,
    /// What the actor showed of its pause, to look at while it waits.
    pub peek: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub request: Request,
    pub epoch: u64,
    pub granted: Instant,
    /// Last REPL output or prompt from the holder.
    pub last_sign: Instant,
    /// The session waits for a line (a prompt came and no line was sent since).
    pub waiting: bool,
    /// The engine's verdict that the holder looks stuck: (why, time since its last frame
    /// as of `at`, `at`). Cleared by `lock_healthy`.
    pub suspect: Option<(&'static str, Duration, Instant)>,
    /// It sends leases: the engine's verdict is the signal, the console does not guess
    /// from its silence.
    pub leased: bool,
}

#[derive(Debug)]
pub struct ConsoleState {
    actors: BTreeMap<ActorId, Actor>,
    pub holder: Option<Holder>,
    pub queue: Vec<Request>,
    /// The last grant that ended because its holder vanished: (actor, cause, when).
    pub stale: Option<(ActorId, &'static str, Instant)>,
    pub messages: VecDeque<(Instant, String)>,
    pub exit_code: Option<i32>,
    /// The latest completion answer (actor, line, matches), for the console to apply.
    pub completion: Option<(ActorId, String, Vec<String>)>,
    /// Exited actors, oldest first (see KEEP_EXITED_SCREENS).
    exit_order: VecDeque<ActorId>,
    /// Size of actor PTYs (the output pane) and of REPL screens (the REPL pane).
    pub output_size: (u16, u16),
    pub repl_size: (u16, u16),
    /// Every actor's recent output as bytes; only the actors in `live` (most recently
    /// shown last) have an emulator (`Actor::output`), rebuilt from these when shown.
    logs: super::outlog::OutputLogs,
    live: VecDeque<ActorId>,
    /// Attached viewers: id -> (name, role).
    pub viewers: BTreeMap<u64, (String, ViewerRole)>,
    /// This console's own viewer id, when it is attached to a run started elsewhere.
    pub me: Option<u64>,
    /// The latest tree-wide snapshot's text (shown in the Dump tab by `T`).
    pub snapshot: Option<String>,
    /// The tree is frozen (`Z`): every actor stopped.
    pub frozen: bool,
    /// Every REPL session seen, with its text (the session list, the timeline).
    pub sessions: SessionLog,
    /// When the first event came: the run's time zero as far as this console knows.
    start: Option<Instant>,
    /// Transcript files of ended sessions, by epoch.
    pub transcript_paths: HashMap<u64, String>,
    /// Sessions that ended before this console attached (from the replay): summary lines.
    pub earlier_sessions: Vec<String>,
    /// Pauses let go without a session, by why (`skip`, `auto_continue worker.py:42`, ...).
    pub skipped: BTreeMap<String, u64>,
    /// The admission rules in force with their counts, and the crash list (the latest
    /// `rules` event).
    pub rules: Vec<crate::runtime::event::RuleInfo>,
    pub crashes: Vec<crate::runtime::admission::Crash>,
}

/// Text of ended sessions the console keeps in memory (the oldest lose theirs first; the
/// files on disk keep everything).
pub const SESSION_TEXT_BUDGET: usize = 64 << 20;

/// Actors whose output emulator is kept while they are off screen (the ones just shown).
const LIVE_MAX: usize = 4;
/// Output waiting for a live emulator's next frame is parsed at once past this size.
const PENDING_MAX: usize = 1 << 20;

impl Actor {
    /// Parses the output that came since the last frame.
    fn flush_output(&mut self) {
        if let Some(parser) = &mut self.output
            && !self.output_pending.is_empty()
        {
            super::feed::feed(
                parser,
                &mut self.output_feed,
                &self.output_pending,
                self.output_scrollback,
            );
            self.output_pending.clear();
        }
    }
}

/// The size of a vt100 screen for a pane of `size`: at least 2×2, because the emulator
/// cannot wrap a line on one row or fit a wide character in one column (it overflows). A
/// terminal that small (or one that reports no size) shows a clipped view, but never
/// brings the console down.
fn screen_size((rows, cols): (u16, u16)) -> (u16, u16) {
    (rows.max(2), cols.max(2))
}

/// REPL text arrives with bare `\n`; a terminal needs `\r\n` to return to column 0.
fn crlf(data: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 16);
    let mut prev = 0u8;
    for &b in data.as_bytes() {
        if b == b'\n' && prev != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        prev = b;
    }
    out
}

impl ConsoleState {
    pub fn new(output_size: (u16, u16), repl_size: (u16, u16)) -> Self {
        let (output_size, repl_size) = (screen_size(output_size), screen_size(repl_size));
        Self {
            actors: BTreeMap::new(),
            holder: None,
            queue: Vec::new(),
            stale: None,
            messages: VecDeque::new(),
            exit_code: None,
            completion: None,
            exit_order: VecDeque::new(),
            logs: super::outlog::OutputLogs::default(),
            live: VecDeque::new(),
            viewers: BTreeMap::new(),
            me: None,
            snapshot: None,
            frozen: false,
            sessions: SessionLog::new(SESSION_TEXT_BUDGET),
            start: None,
            transcript_paths: HashMap::new(),
            earlier_sessions: Vec::new(),
            skipped: BTreeMap::new(),
            rules: Vec::new(),
            crashes: Vec::new(),
            output_size,
            repl_size,
        }
    }

    pub fn actor(&self, id: ActorId) -> Option<&Actor> {
        self.actors.get(&id)
    }

    pub fn actor_mut(&mut self, id: ActorId) -> Option<&mut Actor> {
        self.actors.get_mut(&id)
    }

    pub fn actors(&self) -> impl Iterator<Item = &Actor> {
        self.actors.values()
    }

    fn note(&mut self, now: Instant, msg: String) {
        self.messages.push_back((now, msg));
        // Only the latest few are ever shown.
        while self.messages.len() > 50 {
            self.messages.pop_front();
        }
    }

    /// Time since the first event: the run's clock for sessions and the timeline.
    pub fn run_time(&self, now: Instant) -> Duration {
        self.start
            .map_or(Duration::ZERO, |s| now.saturating_duration_since(s))
    }

    /// Applies one runtime event.
    pub fn apply(&mut self, ev: RuntimeEvent, now: Instant) {
        let start = *self.start.get_or_insert(now);
        self.sessions
            .apply(&ev, now.saturating_duration_since(start));
        match ev {
            RuntimeEvent::SessionEnded {
                session,
                actor,
                epoch,
                actor_name,
                location,
                waited_ms,
                held_ms,
                path,
                ..
            } => {
                let known = self.sessions.sessions().any(|s| s.epoch == epoch);
                if let Some(p) = &path {
                    self.transcript_paths.insert(epoch, p.clone());
                }
                if !known && self.earlier_sessions.len() < 256 {
                    self.earlier_sessions.push(format!(
                        "#{session} {actor} {actor_name} at {location}: waited {waited_ms} ms, held {held_ms} ms{}",
                        path.map(|p| format!(" ({p})")).unwrap_or_default()
                    ));
                }
            }
            RuntimeEvent::Rules { rules, crashes, .. } => {
                self.rules = rules;
                self.crashes = crashes;
            }
            RuntimeEvent::Report { path } => self.note(now, format!("report written: {path}")),
            RuntimeEvent::ActorStarted {
                actor,
                name,
                pid,
                parent,
            } => {
                if let Some(p) = parent.and_then(|p| self.actor_mut(p)) {
                    p.children.push(actor);
                }
                self.actors.insert(
                    actor,
                    Actor {
                        id: actor,
                        name,
                        pid,
                        parent,
                        children: Vec::new(),
                        exited: None,
                        crashed: false,
                        cancelling: false,
                        teardown_waiting: false,
                        wants_input: false,
                        hung: false,
                        collapsed: false,
                        output: None,
                        output_feed: super::feed::FeedState::default(),
                        output_pending: Vec::new(),
                        output_scrollback: false,
                        repl: None,
                        dump: None,
                        history: Vec::new(),
                    },
                );
            }
            RuntimeEvent::ActorExited { actor, exit } => {
                if let Some(a) = self.actor_mut(actor) {
                    a.exited = Some(exit);
                    a.teardown_waiting = false;
                    a.wants_input = false;
                }
                self.exit_order.push_back(actor);
                while self.exit_order.len() > KEEP_EXITED_SCREENS {
                    if let Some(old) = self.exit_order.pop_front()
                        && let Some(a) = self.actor_mut(old)
                    {
                        a.output = None;
                        a.repl = None;
                        self.logs.forget(old);
                        self.live.retain(|l| *l != old);
                    }
                }
            }
            RuntimeEvent::LockRequested {
                actor,
                task,
                task_name,
                reason,
                location,
                peek,
            } => {
                if reason == Reason::Crash
                    && let Some(a) = self.actor_mut(actor)
                {
                    a.crashed = true;
                }
                self.queue.push(Request {
                    actor,
                    task,
                    task_name,
                    reason,
                    location,
                    since: now,
                    peek,
                });
            }
            RuntimeEvent::LockGranted { actor, task, epoch } => {
                let pos = self
                    .queue
                    .iter()
                    .position(|r| r.actor == actor && r.task == task);
                let request = match pos {
                    Some(i) => self.queue.remove(i),
                    None => Request {
                        actor,
                        task,
                        task_name: format!("task {task}"),
                        reason: Reason::Pause,
                        location: String::new(),
                        since: now,
                        peek: None,
                    },
                };
                self.holder = Some(Holder {
                    request,
                    epoch,
                    granted: now,
                    last_sign: now,
                    waiting: false,
                    suspect: None,
                    leased: false,
                });
                self.stale = None;
                let name = self
                    .actor(actor)
                    .map(|a| a.name.clone())
                    .unwrap_or_default();
                self.note(now, format!("lock granted to {actor} {name}"));
            }
            RuntimeEvent::LockReleased {
                actor,
                epoch,
                cause,
                ..
            } => {
                if self.holder.as_ref().is_some_and(|h| h.epoch == epoch) {
                    self.holder = None;
                }
                if matches!(cause, ReleaseCause::Disconnect | ReleaseCause::Exit) {
                    self.stale = Some((actor, cause.as_str(), now));
                }
                self.note(
                    now,
                    format!("lock released by {actor} ({})", cause.as_str()),
                );
            }
            RuntimeEvent::LockSuspect {
                epoch, why, since, ..
            } => {
                if let Some(h) = self.holder.as_mut().filter(|h| h.epoch == epoch) {
                    h.suspect = Some((why.as_str(), since, now));
                }
            }
            RuntimeEvent::LockHealthy { epoch, .. } => {
                if let Some(h) = self.holder.as_mut().filter(|h| h.epoch == epoch) {
                    h.suspect = None;
                }
            }
            RuntimeEvent::LockLeased { epoch, .. } => {
                if let Some(h) = self.holder.as_mut().filter(|h| h.epoch == epoch) {
                    h.leased = true;
                }
            }
            RuntimeEvent::ReplInput { actor, data, .. } => {
                if let Some(h) = self.holder.as_mut().filter(|h| h.request.actor == actor) {
                    h.waiting = false;
                }
                if let Some(p) = self.actor_mut(actor).and_then(|a| a.repl.as_mut()) {
                    p.process(&crlf(&data));
                }
            }
            RuntimeEvent::QueueReordered {
                actor, how, order, ..
            } => {
                // The queue in the order given; requests not named keep their place after.
                let mut rest = std::mem::take(&mut self.queue);
                for w in &order {
                    if let Some(i) = rest
                        .iter()
                        .position(|r| r.actor == w.actor && r.task == w.task)
                    {
                        self.queue.push(rest.remove(i));
                    }
                }
                self.queue.extend(rest);
                self.note(now, format!("queue: {how} {actor}"));
            }
            RuntimeEvent::RequestSkipped {
                actor,
                task,
                location,
                why,
            } => {
                if let Some(i) = self
                    .queue
                    .iter()
                    .position(|r| r.actor == actor && r.task == task)
                {
                    self.queue.remove(i);
                }
                // Counted by why, so the lock pane can say "auto_continue X: 37".
                if self.skipped.len() < 256 || self.skipped.contains_key(&why) {
                    *self.skipped.entry(why.clone()).or_default() += 1;
                }
                self.note(
                    now,
                    format!("{actor} at {location} goes on without a session ({why})"),
                );
            }
            RuntimeEvent::LockPeek { actor, task, peek } => {
                if let Some(r) = self
                    .queue
                    .iter_mut()
                    .find(|r| r.actor == actor && r.task == task)
                {
                    r.peek = Some(peek);
                }
            }
            RuntimeEvent::LockDropped { actor, task, .. }
            | RuntimeEvent::LockRefused { actor, task, .. } => {
                // A refusal concerns the newest request with that key.
                if let Some(i) = self
                    .queue
                    .iter()
                    .rposition(|r| r.actor == actor && r.task == task)
                {
                    self.queue.remove(i);
                }
            }
            RuntimeEvent::ReplOutput { actor, data, .. } => {
                self.sign_of_life(actor, now);
                let size = self.repl_size;
                if let Some(a) = self.actor_mut(actor) {
                    a.repl
                        .get_or_insert_with(|| vt100::Parser::new(size.0, size.1, scrollback()))
                        .process(&crlf(&data));
                }
            }
            RuntimeEvent::ReplReady { actor, prompt, .. } => {
                self.sign_of_life(actor, now);
                if let Some(h) = &mut self.holder {
                    h.waiting = true;
                }
                let size = self.repl_size;
                if let Some(a) = self.actor_mut(actor) {
                    a.repl
                        .get_or_insert_with(|| vt100::Parser::new(size.0, size.1, scrollback()))
                        .process(prompt.as_bytes());
                }
            }
            RuntimeEvent::Output { actor, data } => {
                if !self.actors.contains_key(&actor) {
                    return;
                }
                self.logs.push(actor, &data);
                if let Some(a) = self.actors.get_mut(&actor)
                    && a.output.is_some()
                {
                    a.output_pending.extend_from_slice(&data);
                    if a.output_pending.len() > PENDING_MAX {
                        a.flush_output();
                    }
                }
            }
            RuntimeEvent::Dump { actor, text, step } => {
                if let Some(a) = self.actor_mut(actor) {
                    a.dump = Some(text);
                }
                let by = step
                    .map(|s| format!(" (answered by: {s})"))
                    .unwrap_or_default();
                self.note(now, format!("dump of {actor} received{by}"));
            }
            RuntimeEvent::Hung {
                actor,
                hung,
                still_ms,
            } => {
                if let Some(a) = self.actor_mut(actor) {
                    a.hung = hung;
                }
                if hung {
                    self.note(
                        now,
                        format!(
                            "actor {actor} may be hung: still for {} s while others depend on it (F5 dumps it)",
                            still_ms / 1000
                        ),
                    );
                }
            }
            RuntimeEvent::Frozen { frozen } => {
                self.frozen = frozen;
                self.note(
                    now,
                    if frozen {
                        "the tree is frozen (every actor stopped): T snapshots it, Z resumes"
                    } else {
                        "the tree runs again"
                    }
                    .into(),
                );
            }
            RuntimeEvent::Snapshot { text, path } => {
                self.snapshot = Some(text);
                self.note(
                    now,
                    match path {
                        Some(p) => format!("snapshot of the tree saved: {p}"),
                        None => "snapshot of the tree taken (not saved: no state directory)".into(),
                    },
                );
            }
            RuntimeEvent::InputDone { actor } => {
                if let Some(a) = self.actor_mut(actor) {
                    a.wants_input = false;
                }
            }
            RuntimeEvent::LockMoved {
                actor,
                task,
                task_name,
                location,
            } => {
                if let Some(h) = self
                    .holder
                    .as_mut()
                    .filter(|h| h.request.actor == actor && h.request.task == task)
                {
                    h.request.task_name = task_name;
                    h.request.location = location;
                }
            }
            RuntimeEvent::WantsInput { actor } => {
                if let Some(a) = self.actor_mut(actor) {
                    a.wants_input = true;
                }
                let name = self
                    .actor(actor)
                    .map(|a| a.name.clone())
                    .unwrap_or_default();
                self.note(
                    now,
                    format!("{actor} {name} waits for input on its terminal"),
                );
            }
            RuntimeEvent::TeardownWaiting { actor } => {
                if let Some(a) = self.actor_mut(actor) {
                    a.teardown_waiting = true;
                }
                self.note(
                    now,
                    format!("teardown of {actor} waits for a debugging session (F9 again forces)"),
                );
            }
            RuntimeEvent::Cancelling { actor, .. } => {
                if let Some(a) = self.actor_mut(actor) {
                    a.cancelling = true;
                    a.teardown_waiting = false;
                }
            }
            RuntimeEvent::Completions {
                actor,
                line,
                matches,
            } => self.completion = Some((actor, line, matches)),
            RuntimeEvent::Notice { message, .. } => self.note(now, message),
            RuntimeEvent::Listening {
                address,
                ticket_files,
                ..
            } => self.note(
                now,
                format!(
                    "listening on {address} (TLS); tickets: {}",
                    ticket_files.join(", ")
                ),
            ),
            RuntimeEvent::Viewer {
                viewer, name, role, ..
            } => {
                let who = if self.me == Some(viewer) {
                    "you".to_owned()
                } else {
                    format!("viewer {viewer} {name}")
                };
                let before = self.viewers.get(&viewer).map(|v| v.1);
                let what = match (before, role) {
                    (_, ViewerRole::Gone) => "detached",
                    (None, ViewerRole::Observer) => "attached, observing",
                    (None, ViewerRole::Driver) => "attached, driving",
                    (Some(_), ViewerRole::Driver) => "now driving",
                    (Some(_), ViewerRole::Observer) => "now observing",
                };
                self.note(now, format!("{who}: {what}"));
                if role == ViewerRole::Gone {
                    self.viewers.remove(&viewer);
                } else {
                    self.viewers.insert(viewer, (name, role));
                }
            }
            RuntimeEvent::Exit { code } => self.exit_code = Some(code),
        }
    }

    fn sign_of_life(&mut self, actor: ActorId, now: Instant) {
        if let Some(h) = &mut self.holder
            && h.request.actor == actor
        {
            h.last_sign = now;
        }
    }

    /// Records a line the user sent to the holder in that actor's history (the session
    /// shows it when the `repl_input` event comes, as it does for lines another front end
    /// sent). Returns the holder's id.
    pub fn sent_line(&mut self, line: &str) -> Option<ActorId> {
        let h = self.holder.as_mut()?;
        h.waiting = false;
        let actor = h.request.actor;
        if let Some(a) = self.actor_mut(actor)
            && !line.trim().is_empty()
            && a.history.last().map(String::as_str) != Some(line)
        {
            a.history.push(line.to_owned());
        }
        Some(actor)
    }

    /// Lines of every actor's recent output that contain `query` (smartcase), by actor, at
    /// most `limit` lines in all.
    pub fn search_outputs(&self, query: &str, limit: usize) -> Vec<(String, Vec<String>)> {
        let mut out = Vec::new();
        let mut left = limit;
        for a in self.actors.values() {
            if left == 0 {
                break;
            }
            let bytes: Vec<u8> = self.logs.chunks(a.id).flatten().copied().collect();
            let lines = super::search::plain_lines(&bytes);
            let hits: Vec<String> = super::search::matches(&lines, query)
                .into_iter()
                .take(left)
                .map(|i| lines[i].clone())
                .collect();
            if !hits.is_empty() {
                left -= hits.len();
                out.push((format!("{} {}", a.id, a.name), hits));
            }
        }
        out
    }

    /// What the tree shows for an actor.
    pub fn status(&self, a: &Actor) -> ActorStatus {
        if let Some(exit) = a.exited {
            return match exit.reason {
                Some(ExitReason::Quit) => ActorStatus::Quit,
                Some(ExitReason::Lost) => ActorStatus::Lost,
                _ => ActorStatus::Exited {
                    code: exit.code,
                    signal: exit.signal,
                },
            };
        }
        if self
            .holder
            .as_ref()
            .is_some_and(|h| h.request.actor == a.id)
        {
            return ActorStatus::InRepl;
        }
        if a.teardown_waiting {
            return ActorStatus::TeardownWaiting;
        }
        if self.queue.iter().any(|r| r.actor == a.id) {
            return if a.crashed {
                ActorStatus::Crashed
            } else {
                ActorStatus::Queued
            };
        }
        if a.cancelling {
            return ActorStatus::Cancelling;
        }
        if a.crashed {
            return ActorStatus::Crashed;
        }
        if a.wants_input {
            return ActorStatus::WantsInput;
        }
        if a.hung {
            return ActorStatus::PossiblyHung;
        }
        ActorStatus::Running
    }

    /// Why the lock deserves attention, if it does.
    pub fn lock_warning(&self, now: Instant) -> Option<String> {
        if let Some(h) = &self.holder {
            if let Some((why, since, at)) = h.suspect {
                let quiet = since + now.saturating_duration_since(at);
                return Some(format!(
                    "suspect: {why}, no sign of life for {}s (F8 releases)",
                    quiet.as_secs()
                ));
            }
            let quiet = now.saturating_duration_since(h.last_sign);
            if !h.leased && !h.waiting && quiet >= SUSPECT_AFTER {
                return Some(format!(
                    "suspect: no sign of life for {}s (F8 releases)",
                    quiet.as_secs()
                ));
            }
            return None;
        }
        let (actor, cause, when) = self.stale.as_ref()?;
        (now.saturating_duration_since(*when) < STALE_NOTE_FOR)
            .then(|| format!("last holder {actor} gone ({cause}): released"))
    }

    /// The tree in display order (parents before children, collapsed subtrees hidden), with
    /// depths.
    /// The ids of [`ConsoleState::visible`], in display order.
    pub fn visible_ids(&self) -> Vec<ActorId> {
        self.visible().into_iter().map(|(_, a)| a.id).collect()
    }

    pub fn visible(&self) -> Vec<(u16, &Actor)> {
        let mut out = Vec::with_capacity(self.actors.len());
        let mut stack: Vec<(u16, &Actor)> = self
            .actors
            .values()
            .filter(|a| a.parent.and_then(|p| self.actor(p)).is_none())
            .rev()
            .map(|a| (0, a))
            .collect();
        while let Some((depth, a)) = stack.pop() {
            out.push((depth, a));
            if !a.collapsed {
                for c in a.children.iter().rev() {
                    if let Some(child) = self.actor(*c) {
                        stack.push((depth + 1, child));
                    }
                }
            }
        }
        out
    }

    /// Whether the output scrollback of `id` is being read (scrolled back, searched, edited).
    /// Turned on, a scrollback left stale by screen-only feeding is rebuilt from the actor's
    /// kept bytes at once (the next `show` does it), so what is read is whole.
    pub fn keep_scrollback(&mut self, id: ActorId, on: bool) {
        if let Some(a) = self.actors.get_mut(&id) {
            a.output_scrollback = on;
            if on && a.output_feed.scrollback_stale {
                a.output = None;
                a.output_pending.clear();
                a.output_feed = super::feed::FeedState::default();
            }
        }
    }

    /// Makes sure the actors in `ids` have an output emulator (rebuilt from their kept bytes
    /// if they had none), and drops the emulators of actors shown least recently beyond
    /// [`LIVE_MAX`]. Called before every frame with the actors that frame shows.
    pub fn show(&mut self, ids: &[ActorId]) {
        let size = self.output_size;
        for &id in ids {
            let Some(a) = self.actors.get_mut(&id) else {
                continue;
            };
            if a.output.is_none() {
                // All of it at once, so a long log's head need not be parsed.
                let kept = self.logs.chunks(id).collect::<Vec<_>>().concat();
                let mut parser = vt100::Parser::new(size.0, size.1, scrollback());
                let mut feed = super::feed::FeedState::default();
                super::feed::feed(&mut parser, &mut feed, &kept, a.output_scrollback);
                a.output = Some(parser);
                a.output_feed = feed;
                a.output_pending.clear();
            }
            a.flush_output();
            self.live.retain(|l| *l != id);
            self.live.push_back(id);
        }
        while self.live.len() > LIVE_MAX {
            let Some(pos) = self.live.iter().position(|l| !ids.contains(l)) else {
                break;
            };
            if let Some(old) = self.live.remove(pos)
                && let Some(a) = self.actors.get_mut(&old)
            {
                a.output = None;
                a.output_pending = Vec::new();
            }
        }
    }

    /// Resizes every actor terminal of one kind (output or REPL).
    pub fn resize(&mut self, output: (u16, u16), repl: (u16, u16)) {
        let (output, repl) = (screen_size(output), screen_size(repl));
        self.output_size = output;
        self.repl_size = repl;
        for a in self.actors.values_mut() {
            // What came before the resize was written for the old size.
            a.flush_output();
            if let Some(p) = &mut a.output {
                p.screen_mut().set_size(output.0, output.1);
            }
            if let Some(p) = &mut a.repl {
                p.screen_mut().set_size(repl.0, repl.1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aid(s: &str) -> ActorId {
        s.parse().expect("actor id")
    }

    fn started(id: &str, parent: Option<&str>) -> RuntimeEvent {
        RuntimeEvent::ActorStarted {
            actor: aid(id),
            name: format!("n{id}"),
            pid: 100 + u32::try_from(aid(id).0).expect("small id"),
            parent: parent.map(aid),
        }
    }

    fn requested(id: &str, reason: Reason) -> RuntimeEvent {
        RuntimeEvent::LockRequested {
            actor: aid(id),
            task: 1,
            task_name: "main".into(),
            reason,
            location: "x.rs:1".into(),
            peek: None,
        }
    }

    fn granted(id: &str, epoch: u64) -> RuntimeEvent {
        RuntimeEvent::LockGranted {
            actor: aid(id),
            task: 1,
            epoch,
        }
    }

    fn released(id: &str, epoch: u64, cause: ReleaseCause) -> RuntimeEvent {
        RuntimeEvent::LockReleased {
            actor: aid(id),
            task: 1,
            epoch,
            cause,
        }
    }

    fn state() -> (ConsoleState, Instant) {
        let mut s = ConsoleState::new((10, 40), (10, 40));
        let t = Instant::now();
        s.apply(started("1", None), t);
        s.apply(started("2", Some("1")), t);
        s.apply(started("3", Some("2")), t);
        s.apply(started("4", Some("1")), t);
        (s, t)
    }

    #[test]
    fn scrolling_back_after_a_flood_rebuilds_the_whole_scrollback() {
        let (mut s, t) = state();
        let id = ActorId(2);
        s.show(&[id]);
        let output = |from: usize, to: usize| RuntimeEvent::Output {
            actor: id,
            data: (from..to)
                .map(|i| format!("line {i}\r\n"))
                .collect::<String>()
                .into_bytes(),
        };
        // A first screenful (the cursor then stays on the bottom row), then the flood.
        s.apply(output(0, 20), t);
        s.show(&[id]);
        s.apply(output(20, 3000), t);
        let deepest = |s: &mut ConsoleState| {
            s.show(&[id]);
            let p = s
                .actor_mut(id)
                .and_then(|a| a.output.as_mut())
                .expect("live");
            p.screen_mut().set_scrollback(usize::MAX);
            let text = p.screen().contents();
            p.screen_mut().set_scrollback(0);
            text
        };
        // At the bottom, only the screen was parsed.
        let top = deepest(&mut s);
        assert!(!top.contains("line 991\n"), "{top}");
        assert!(s.actor(id).expect("2").output_feed.scrollback_stale);
        // Scrolled back: the whole scrollback, as a full parse has it (2,000 lines above a
        // 10-row screen whose last row is empty).
        s.keep_scrollback(id, true);
        let top = deepest(&mut s);
        assert!(top.starts_with("line 991\nline 992\n"), "{top}");
        assert!(!s.actor(id).expect("2").output_feed.scrollback_stale);
    }

    #[test]
    fn tree_order_and_collapse() {
        let (mut s, _) = state();
        let ids: Vec<(u16, u64)> = s.visible().iter().map(|(d, a)| (*d, a.id.0)).collect();
        assert_eq!(ids, [(0, 1), (1, 2), (2, 3), (1, 4)]);
        s.actor_mut(ActorId(2)).expect("2").collapsed = true;
        let ids: Vec<u64> = s.visible().iter().map(|(_, a)| a.id.0).collect();
        assert_eq!(ids, [1, 2, 4]);
    }

    #[test]
    fn holder_and_queue_follow_lock_events() {
        let (mut s, t) = state();
        s.apply(requested("2", Reason::Pause), t);
        s.apply(requested("3", Reason::Crash), t);
        s.apply(granted("2", 1), t);
        assert_eq!(s.queue.len(), 1);
        let a2 = s.actor(ActorId(2)).expect("2");
        assert_eq!(s.status(a2), ActorStatus::InRepl);
        assert_eq!(
            s.status(s.actor(ActorId(3)).expect("3")),
            ActorStatus::Crashed
        );
        assert_eq!(
            s.status(s.actor(ActorId(4)).expect("4")),
            ActorStatus::Running
        );
        s.apply(released("2", 1, ReleaseCause::Continue), t);
        assert!(s.holder.is_none());
        assert_eq!(s.lock_warning(t), None);
    }

    #[test]
    fn silent_holder_becomes_suspect_but_a_waiting_one_does_not() {
        let (mut s, t) = state();
        s.apply(requested("2", Reason::Pause), t);
        s.apply(granted("2", 1), t);
        assert_eq!(s.lock_warning(t + Duration::from_secs(1)), None);
        let w = s.lock_warning(t + Duration::from_secs(7)).expect("suspect");
        assert!(w.contains("no sign of life for 7s"), "{w}");
        s.apply(
            RuntimeEvent::ReplReady {
                actor: ActorId(2),
                task: 1,
                prompt: "(actor-tui) ".into(),
            },
            t + Duration::from_secs(8),
        );
        assert_eq!(s.lock_warning(t + Duration::from_secs(60)), None);
    }

    #[test]
    fn the_engines_suspect_verdict_shows_even_at_a_prompt_until_healthy() {
        let (mut s, t) = state();
        s.apply(requested("2", Reason::Pause), t);
        s.apply(granted("2", 1), t);
        s.apply(
            RuntimeEvent::ReplReady {
                actor: ActorId(2),
                task: 1,
                prompt: "(Pdb) ".into(),
            },
            t,
        );
        s.apply(
            RuntimeEvent::LockSuspect {
                actor: ActorId(2),
                task: 1,
                epoch: 1,
                why: crate::runtime::suspect::Why::Stopped,
                since: Duration::from_secs(1),
            },
            t + Duration::from_secs(1),
        );
        let w = s.lock_warning(t + Duration::from_secs(3)).expect("suspect");
        assert!(w.contains("stopped, no sign of life for 3s"), "{w}");
        s.apply(
            RuntimeEvent::LockHealthy {
                actor: ActorId(2),
                task: 1,
                epoch: 1,
            },
            t + Duration::from_secs(4),
        );
        assert_eq!(s.lock_warning(t + Duration::from_secs(5)), None);
    }

    #[test]
    fn vanished_holder_is_reported_stale() {
        let (mut s, t) = state();
        s.apply(requested("2", Reason::Pause), t);
        s.apply(granted("2", 1), t);
        s.apply(released("2", 1, ReleaseCause::Disconnect), t);
        let w = s.lock_warning(t).expect("stale note");
        assert!(w.contains("gone (disconnect)"), "{w}");
        assert_eq!(s.lock_warning(t + Duration::from_secs(60)), None);
    }

    #[test]
    fn repl_text_gets_carriage_returns_and_history_dedups() {
        let (mut s, t) = state();
        s.apply(requested("2", Reason::Pause), t);
        s.apply(granted("2", 1), t);
        s.apply(
            RuntimeEvent::ReplOutput {
                actor: ActorId(2),
                task: 1,
                data: "one\ntwo\n".into(),
            },
            t,
        );
        let screen = s
            .actor(ActorId(2))
            .and_then(|a| a.repl.as_ref())
            .expect("repl")
            .screen();
        assert!(
            screen.contents().starts_with("one\ntwo"),
            "{:?}",
            screen.contents()
        );
        assert_eq!(s.sent_line("p x"), Some(ActorId(2)));
        s.sent_line("p x");
        assert_eq!(s.actor(ActorId(2)).expect("2").history, ["p x"]);
    }

    #[test]
    fn a_tiny_or_sizeless_terminal_does_not_bring_the_console_down() {
        let t = Instant::now();
        let mut s = ConsoleState::new((0, 0), (1, 1));
        s.apply(started("1", None), t);
        for data in ["line one\nline two\n", "漢字 wide\n", "\x1b[5;5Hx\n"] {
            s.apply(
                RuntimeEvent::Output {
                    actor: ActorId(1),
                    data: data.as_bytes().to_vec(),
                },
                t,
            );
        }
        s.resize((1, 1), (0, 3));
        s.apply(
            RuntimeEvent::Output {
                actor: ActorId(1),
                data: "漢字漢字\n".as_bytes().to_vec(),
            },
            t,
        );
        s.show(&[ActorId(1)]);
        assert!(s.actor(ActorId(1)).expect("1").output.is_some());
    }

    #[test]
    fn only_shown_actors_keep_an_emulator_and_a_shown_one_looks_as_if_always_parsed() {
        let t = Instant::now();
        let mut s = ConsoleState::new((10, 40), (10, 40));
        let ids: Vec<String> = (1..=8).map(|i| i.to_string()).collect();
        for id in &ids {
            s.apply(started(id, None), t);
        }
        let mut reference = vt100::Parser::new(10, 40, SCROLLBACK);
        for n in 0..3_000 {
            let line = format!("\x1b[3{}mline {n}\r\n", n % 8);
            reference.process(line.as_bytes());
            for id in &ids {
                s.apply(
                    RuntimeEvent::Output {
                        actor: aid(id),
                        data: line.clone().into_bytes(),
                    },
                    t,
                );
            }
        }
        // Nobody was shown: no emulator anywhere, only bytes.
        assert!(s.actors().all(|a| a.output.is_none()));
        for id in &ids {
            s.show(&[aid(id)]);
        }
        let live = s.actors().filter(|a| a.output.is_some()).count();
        assert_eq!(live, LIVE_MAX, "the least recently shown lost theirs");
        let a = s.actor(aid("8")).expect("8");
        let shown = a.output.as_ref().expect("8 was shown last").screen();
        assert_eq!(
            shown.contents_formatted(),
            reference.screen().contents_formatted()
        );
        // Output to a live actor is parsed once per frame, when the frame shows it.
        s.apply(
            RuntimeEvent::Output {
                actor: aid("8"),
                data: b"fresh\r\n".to_vec(),
            },
            t,
        );
        let screen = |s: &ConsoleState| {
            let a = s.actor(aid("8")).expect("8");
            a.output.as_ref().expect("live").screen().contents()
        };
        assert!(!screen(&s).contains("fresh"));
        s.show(&[aid("8")]);
        assert!(screen(&s).contains("fresh"));
    }
}
