//! The root's policy as a pure state machine: the actor tree, the lock, the connections'
//! identities, pending replies, the first program and teardown. One entry point,
//! [`Core::handle`], takes an [`Input`] (a frame, a closed connection, a child exit, a timer,
//! a front-end command) and returns the [`Effect`]s to carry out (send a frame, emit an event,
//! signal, arm a timer, spawn, close). No tokio, no nix, no `/proc`: time and the process
//! state come in as arguments, so every rule here is unit-tested with made-up inputs. The
//! engine is the shell that runs the loop and carries out the effects; whatever an effect
//! causes (a full peer, a spawn's result) comes back as a new input, so nothing re-enters.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use super::admission::{Action, Admission, Decision, Matcher, Rule};
use super::bounds::{self, RateLimit};
use super::event::{RuntimeCommand, RuntimeEvent, ViewerRole};
use super::hang::{HangWatch, Sample};
use super::lock::{LockKey, LockRequest, LockTable, ReleaseCause, Transition};
use super::server::RemotePeer;
use super::sessions::{Session, SessionLog};
use super::suspect::{HolderWatch, Verdict};
use super::tree::{ActorTree, CancelState};
use super::viewers::{self, Viewers};
use crate::proto::{ActorId, Exit, ReleaseHow, ToActor, ToRoot};
use crate::remote::Kind;

/// Connection id, unique within one run.
pub type ConnId = u64;

/// How long an exited actor's connection may stay open before the exit is handled anyway
/// (a forked child may hold its socket).
pub const EXIT_DEADLINE: Duration = Duration::from_millis(500);

/// How long the exit of an actor that never connected waits for a `register` that may
/// still be on its way.
pub const UNCONNECTED_EXIT_DEADLINE: Duration = Duration::from_millis(200);

/// The shortest re-check of a teardown that waits for a debugging session (the grace
/// period may be 0).
pub const PROTECTED_RECHECK: Duration = Duration::from_millis(100);

/// Dump requests that may wait for their replies at once; a hung actor is what gets
/// dumped, so requests must not pile up without bound.
pub const MAX_PENDING_DUMPS: usize = 64;

/// Largest `repl_input` payload, well under the frame limit.
pub const INPUT_CHUNK: usize = 256 * 1024;

/// A signal the core may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sig {
    Term,
    Kill,
    /// Freeze (SIGSTOP) and thaw (SIGCONT) the tree.
    Stop,
    Cont,
}

/// Who a signal goes to; the shell resolves it to a process group or a pidfd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignalTarget {
    /// A spawned actor's process group (its leader's pid), unless already reaped.
    Group { pid: u32 },
    /// An actor the root did not spawn, through the pidfd taken for its connection.
    Peer { conn: ConnId },
}

/// A process to start on its own PTY. The id is reserved: it goes into the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpawnRequest {
    pub id: ActorId,
    pub name: String,
    pub program: String,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<String>,
    pub parent: Option<ActorId>,
    /// The actor connection and request id to answer with `spawned`/`spawn_failed`.
    pub reply: Option<(ConnId, u64)>,
}

/// Something that happened, for the core to react to.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// A connection finished its handshake. `signalable`: the shell holds a pidfd for the
    /// peer (it descends from the root). `ancestry`: the peer's parent pids, nearest first,
    /// as read when it connected.
    Opened {
        conn: ConnId,
        peer_pid: Option<u32>,
        signalable: bool,
        ancestry: Vec<u32>,
        /// Set for a peer over a remote link: what its ticket lets it be, and where it is.
        remote: Option<RemotePeer>,
    },
    Frame {
        conn: ConnId,
        msg: ToRoot,
    },
    Closed {
        conn: ConnId,
        error: Option<String>,
    },
    /// The server refused a connection before it started (a limit, a uid, a proof).
    Refused {
        why: String,
    },
    /// The once-a-second activity samples of the live actors the shell can look at: CPU
    /// ticks and terminal output bytes (see [`Core::watched`]).
    Activity {
        samples: Vec<(ActorId, u64, Option<u64>)>,
    },
    /// The dump ladder for request `req` is done: what to show, which step answered, and
    /// the stacks' signature for merging (see `runtime::dump`).
    DumpDone {
        req: u64,
        actor: ActorId,
        text: String,
        step: String,
        signature: Option<String>,
    },
    /// The peer has not read what it was sent and is over its budget.
    PeerFull {
        conn: ConnId,
        why: String,
    },
    /// The shell tried a [`Effect::Spawn`]: the pid, or why it failed.
    Spawned {
        req: SpawnRequest,
        result: Result<u32, String>,
    },
    ChildExited {
        actor: ActorId,
        exit: Exit,
    },
    ExitDeadline {
        actor: ActorId,
    },
    Escalate {
        actor: ActorId,
        stage: CancelState,
    },
    /// The process that registered `conn` exited a while ago (its pidfd said so).
    PeerExited {
        conn: ConnId,
    },
    /// The shell refused input for the holder: over the peer's byte budget.
    InputRefused {
        actor: ActorId,
        len: usize,
        queued: usize,
    },
    Command(RuntimeCommand),
    /// Whether a spawned actor's terminal is being read by a blocked process right now.
    Reading {
        actor: ActorId,
        reading: bool,
    },
    /// The once-a-second look at the holder: its process state as the shell read it
    /// (`None`: no such process; `Some('?')`: cannot tell).
    Watch {
        holder_state: Option<char>,
    },
}

/// A tree-wide dump in progress: the requests not answered yet, and the answers.
#[derive(Debug, Default)]
struct Snapshot {
    waiting: HashSet<u64>,
    entries: Vec<super::dump::Entry>,
}

pub use super::admission::location_matches;

/// Still this long while others depend on it, an actor is marked possibly hung.
pub const HANG_AFTER: Duration = Duration::from_secs(30);

/// Remote hosts that get a node of their own in the tree.
pub const MAX_HOSTS: usize = 256;

/// Groups (`register`'s `group`) that get a node of their own in the tree.
pub const MAX_GROUPS: usize = 256;

/// The file name of a session's transcript: its number, the actor, and the actor's name
/// cut to what is safe in a file name.
pub fn transcript_file(s: &Session) -> String {
    let name: String = s
        .actor_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(40)
        .collect();
    format!("session-{:04}-actor{}-{name}.txt", s.n, s.actor)
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Send {
        conn: ConnId,
        msg: ToActor,
    },
    /// Input for the holder's session: the shell cuts it into [`INPUT_CHUNK`] frames if the
    /// peer's byte budget allows, else answers with [`Input::InputRefused`].
    SendInput {
        conn: ConnId,
        actor: ActorId,
        task: u64,
        epoch: u64,
        data: String,
    },
    Event(RuntimeEvent),
    Signal {
        actor: ActorId,
        target: SignalTarget,
        sig: Sig,
    },
    /// Feed `input` back after `delay`.
    After {
        delay: Duration,
        input: Input,
    },
    Spawn(SpawnRequest),
    Close {
        conn: ConnId,
    },
    Resize {
        rows: u16,
        cols: u16,
    },
    /// Write to a spawned actor's PTY.
    WritePty {
        actor: ActorId,
        data: Vec<u8>,
    },
    /// `conn` is an attached viewer now: tell it so (its id and role), send it the run's
    /// state, and from now on every event.
    Attach {
        conn: ConnId,
        role: ViewerRole,
    },
    /// A notice for one viewer only (why its command was refused).
    ViewerNotice {
        conn: ConnId,
        message: String,
    },
    /// Run the dump ladder for `actor` (request `req`): the core's own facts, then the
    /// shell's `/proc` facts and outside tools for a local `pid`, around the cooperative
    /// answer when `connected` (which arrives as [`Effect::DumpAnswer`]). Answered with
    /// [`Input::DumpDone`].
    Inspect {
        actor: ActorId,
        req: u64,
        pid: Option<u32>,
        /// Its connection, if any (a peer the root did not spawn is signalled only through
        /// that connection's pidfd).
        conn: Option<ConnId>,
        connected: bool,
        facts: Vec<(String, String)>,
    },
    /// The cooperative answer of dump request `req`.
    DumpAnswer {
        req: u64,
        text: String,
    },
    /// Save a tree-wide snapshot (text and JSON) under the state directory.
    SaveSnapshot {
        text: String,
        json: String,
    },
    /// Write a session's transcript as `file` in the run's transcript directory (if there
    /// is one), then emit `ended` (a `session_ended` event) with the path filled in.
    SaveTranscript {
        file: String,
        text: String,
        ended: RuntimeEvent,
    },
    /// Write the run's report (`report.html`) in the transcript directory.
    SaveReport {
        html: String,
    },
}

#[derive(Debug, Clone)]
struct Conn {
    actor: Option<ActorId>,
    peer_pid: Option<u32>,
    signalable: bool,
    ancestry: Vec<u32>,
    remote: Option<RemotePeer>,
    /// Lock requests from this connection, at most [`bounds::LOCK_REQUEST_BURST`] at once
    /// and [`bounds::LOCK_REQUESTS_PER_SEC`] a second.
    lock_rate: RateLimit,
    /// When its last frame came (a dump's facts say how long ago).
    last_frame: Instant,
}

/// The root's state.
#[derive(Debug)]
pub struct Core {
    grace: Duration,
    tree: ActorTree,
    lock: LockTable,
    conns: HashMap<ConnId, Conn>,
    /// actor id -> its connection, for actors that registered.
    actor_conn: HashMap<ActorId, ConnId>,
    /// Dumps in flight: req -> the asked actor.
    pending_dumps: HashMap<u64, ActorId>,
    /// Completion requests in flight: req -> (actor, line).
    pending_completions: HashMap<u64, (ActorId, String)>,
    next_req: u64,
    first: Option<ActorId>,
    first_code: Option<i32>,
    quitting: bool,
    /// Exits reaped while the actor's connection was still open: handled when it closes,
    /// so frames the actor sent before dying (its `exiting` reason) are seen first.
    pending_exits: HashMap<ActorId, Exit>,
    /// Actors whose teardown waits to start (CancelState::Pending), so each transition
    /// looks only at them.
    pending_cancels: HashSet<ActorId>,
    /// Actors whose terminal a process is blocked reading (reported once per wait).
    reading: HashSet<ActorId>,
    /// The current grant's liveness watch, keyed by its epoch.
    holder_watch: Option<(u64, HolderWatch)>,
    /// Peer-caused notices are rate-limited, so bogus frames cannot flood the front end
    /// or the log.
    notice_limit: RateLimit,
    /// Attached viewers and who of them drives.
    viewers: Viewers,
    /// One node per remote host (by IP), the parent of the actors that join from there.
    hosts: HashMap<std::net::IpAddr, ActorId>,
    /// One node per group label under one parent (`register`'s `group`).
    groups: HashMap<(Option<ActorId>, String), ActorId>,
    /// The tree-wide dump being gathered, if any.
    snapshot: Option<Snapshot>,
    /// The last one taken, to say what changed since.
    last_snapshot: Option<Vec<super::dump::Entry>>,
    /// The tree is frozen (every actor sent SIGSTOP): the holder is not suspect for being
    /// stopped, and nothing loses its place in the queue.
    frozen: bool,
    /// Who has been still for how long (possibly hung), and when to snapshot a still tree.
    hang: HangWatch,
    /// Which pauses go on by themselves (auto-continue, crash and rate limits), and the
    /// crashes that did.
    admission: Admission,
    /// Every session of the run: the open one's text until it is written out, and the
    /// summaries for the report.
    sessions: SessionLog,
    /// Whether the shell writes transcripts: if not, none is rendered.
    transcripts: bool,
    /// Waiting requests whose peek was completed (`lock_peek` is taken once each); pruned
    /// of requests no longer waiting when it fills.
    peeked: HashSet<LockKey>,
    started: Instant,
    now: Instant,
    out: Vec<Effect>,
}

impl Core {
    pub fn new(grace: Duration, now: Instant) -> Self {
        Self {
            grace,
            tree: ActorTree::new(),
            lock: LockTable::new(),
            conns: HashMap::new(),
            actor_conn: HashMap::new(),
            pending_dumps: HashMap::new(),
            pending_completions: HashMap::new(),
            next_req: 0,
            first: None,
            first_code: None,
            quitting: false,
            pending_exits: HashMap::new(),
            pending_cancels: HashSet::new(),
            reading: HashSet::new(),
            holder_watch: None,
            notice_limit: RateLimit::new(50, 20),
            viewers: Viewers::default(),
            hosts: HashMap::new(),
            groups: HashMap::new(),
            snapshot: None,
            last_snapshot: None,
            frozen: false,
            hang: HangWatch::new(HANG_AFTER, None),
            admission: Admission::default(),
            sessions: SessionLog::new(0),
            transcripts: true,
            peeked: HashSet::new(),
            started: now,
            now,
            out: Vec::new(),
        }
    }

    // ---- queries for the shell ----

    /// The run is over: the first program has exited and nothing of the tree is live.
    pub fn finished(&self) -> bool {
        self.first_code.is_some() && !self.tree.any_live()
    }

    /// The first program's exit code (128 + signal if killed); 1 if it never ran.
    pub fn exit_code(&self) -> i32 {
        self.first_code.unwrap_or(1)
    }

    /// Pids of spawned actors not yet reaped (the shell must not reap them itself).
    pub fn managed_pids(&self) -> HashSet<u32> {
        self.tree
            .iter()
            .filter(|n| n.spawned && n.exited.is_none())
            .map(|n| n.pid)
            .collect()
    }

    /// The lock holder's pid, if it is known (0 means another pid namespace).
    pub fn holder_pid(&self) -> Option<u32> {
        let g = self.lock.holder()?;
        self.tree
            .get(g.request.key.actor)
            .map(|n| n.pid)
            .filter(|p| *p != 0)
    }

    pub fn tree(&self) -> &ActorTree {
        &self.tree
    }

    pub fn lock(&self) -> &LockTable {
        &self.lock
    }

    /// The request that starts the first program (its id is reserved now).
    pub fn first_spawn(
        &mut self,
        name: String,
        program: String,
        args: Vec<String>,
        env: Vec<(String, String)>,
    ) -> SpawnRequest {
        let id = self.tree.reserve_id();
        self.first = Some(id);
        SpawnRequest {
            id,
            name,
            program,
            args,
            env,
            cwd: None,
            parent: None,
            reply: None,
        }
    }

    // ---- the entry point ----

    /// Reacts to one input at time `now`; returns what to do, in order.
    pub fn handle(&mut self, now: Instant, input: Input) -> Vec<Effect> {
        self.now = now;
        match input {
            Input::Opened {
                conn,
                peer_pid,
                signalable,
                ancestry,
                remote,
            } => {
                self.conns.insert(
                    conn,
                    Conn {
                        actor: None,
                        peer_pid,
                        signalable,
                        ancestry,
                        remote,
                        lock_rate: RateLimit::new(
                            bounds::LOCK_REQUEST_BURST,
                            bounds::LOCK_REQUESTS_PER_SEC,
                        ),
                        last_frame: now,
                    },
                );
            }
            Input::Frame { conn, msg } => self.on_frame(conn, msg),
            Input::Closed { conn, error } => self.close_conn(conn, error),
            // Rate-limited like every peer-caused notice.
            Input::Refused { why } => self.notice(None, why),
            Input::DumpDone {
                req,
                actor,
                text,
                step,
                signature,
            } => self.dump_done(req, actor, text, step, signature),
            Input::Activity { samples } => self.activity(samples),
            Input::PeerFull { conn, why } => {
                if let Some(c) = self.conns.get(&conn) {
                    let actor = c.actor;
                    self.notice(
                        actor,
                        format!("connection {conn} stopped reading ({why}); dropped"),
                    );
                    self.close_conn(conn, None);
                }
            }
            Input::Spawned { req, result } => self.spawned(req, result),
            Input::ChildExited { actor, exit } => {
                // Held back for a moment either way: frames it sent before dying (its
                // `register`, its `exiting` reason) may still be on their way on another
                // channel, and must be seen first.
                self.pending_exits.insert(actor, exit);
                let wait = if self.actor_conn.contains_key(&actor) {
                    EXIT_DEADLINE
                } else {
                    UNCONNECTED_EXIT_DEADLINE
                };
                self.after(wait, Input::ExitDeadline { actor });
            }
            Input::ExitDeadline { actor } => {
                if !self.pending_exits.contains_key(&actor) {
                    return std::mem::take(&mut self.out);
                }
                match self.actor_conn.get(&actor).copied() {
                    // Still connected: another process (a fork) holds its socket. The actor
                    // is gone, so is the connection; closing it finishes the exit.
                    Some(conn) => self.close_conn(
                        conn,
                        Some("its process exited; the connection another process kept open is closed".into()),
                    ),
                    None => {
                        if let Some(exit) = self.pending_exits.remove(&actor) {
                            self.child_exited(actor, exit);
                        }
                    }
                }
            }
            Input::Escalate { actor, stage } => self.escalate(actor, stage),
            Input::PeerExited { conn } => {
                // Spawned actors end through their exit (above); a connection that never
                // registered, or an unspawned actor's, ends with the process that opened it.
                let spawned = self
                    .conns
                    .get(&conn)
                    .and_then(|c| c.actor)
                    .and_then(|a| self.tree.get(a))
                    .is_some_and(|n| n.spawned);
                if self.conns.contains_key(&conn) && !spawned {
                    self.close_conn(
                        conn,
                        Some("its process exited; the connection another process kept open is closed".into()),
                    );
                }
            }
            Input::InputRefused { actor, len, queued } => self.notice(
                Some(actor),
                format!(
                    "input of {len} bytes refused: actor {actor} has not read {queued} bytes sent earlier yet"
                ),
            ),
            Input::Command(cmd) => self.on_command(cmd),
            Input::Reading { actor, reading } => {
                if !reading {
                    if self.reading.remove(&actor) {
                        self.event(RuntimeEvent::InputDone { actor });
                    }
                } else if self.reading.insert(actor) {
                    self.event(RuntimeEvent::WantsInput { actor });
                }
            }
            Input::Watch { holder_state } => self.watch_holder(holder_state),
        }
        std::mem::take(&mut self.out)
    }

    // ---- effects ----

    fn event(&mut self, ev: RuntimeEvent) {
        let ended = self
            .sessions
            .apply(&ev, self.now.saturating_duration_since(self.started));
        self.out.push(Effect::Event(ev));
        if let Some(n) = ended {
            self.session_ended(n);
        }
    }

    /// A session ended: its transcript goes to a file, then `session_ended` says where.
    fn session_ended(&mut self, n: u64) {
        let Some(s) = self.sessions.get(n) else {
            return;
        };
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let ended = RuntimeEvent::SessionEnded {
            session: s.n,
            actor: s.actor,
            task: s.task,
            epoch: s.epoch,
            actor_name: s.actor_name.clone(),
            task_name: s.task_name.clone(),
            reason: s.reason,
            location: s.location.clone(),
            requested_ms: ms(s.requested),
            waited_ms: ms(s.waited()),
            held_ms: ms(s.held(self.now.saturating_duration_since(self.started))),
            cause: s.cause.unwrap_or(ReleaseCause::Continue),
            lines_in: s.lines_in,
            path: None,
        };
        // Without a transcript directory the text would be rendered for nothing.
        let text = if self.transcripts {
            s.transcript()
        } else {
            String::new()
        };
        self.out.push(Effect::SaveTranscript {
            file: transcript_file(s),
            text,
            ended,
        });
        self.sessions.evict(n);
    }

    /// Adds an admission rule (from the config file, or a command); refused with a notice
    /// past the bound or when it makes no sense.
    pub fn add_rule(&mut self, rule: Rule) {
        self.add_rules(vec![rule]);
    }

    /// Adds several rules (the config file's), then says once what is in force.
    pub fn add_rules(&mut self, rules: Vec<Rule>) {
        for rule in rules {
            let what = rule.describe();
            if let Err(e) = self.admission.add(rule) {
                self.notice(None, format!("rule {what} not added: {e}"));
            }
        }
        self.emit_rules();
    }

    /// The rules in force with their counts, and the crash list.
    fn emit_rules(&mut self) {
        let rules = self
            .admission
            .rules()
            .iter()
            .map(|r| super::event::RuleInfo {
                rule: r.describe(),
                skipped: r.skipped,
            })
            .collect();
        let crashes = self.admission.crashes().cloned().collect();
        self.event(RuntimeEvent::Rules {
            rules,
            crashes,
            crashes_forgotten: self.admission.crashes_forgotten,
        });
    }

    /// Whether the shell writes transcripts (`--no-transcripts`, no state directory: not).
    pub fn set_transcripts(&mut self, written: bool) {
        self.transcripts = written;
    }

    /// Sessions the run has had (kept ones).
    pub fn sessions_held(&self) -> usize {
        self.sessions.len()
    }

    /// The run's report so far (HTML): the lock timeline and every session.
    pub fn report_html(&self) -> String {
        let now = self.now.saturating_duration_since(self.started);
        self.sessions
            .report_html("actor-tui: the run's debug sessions", now, transcript_file)
    }

    fn after(&mut self, delay: Duration, input: Input) {
        self.out.push(Effect::After { delay, input });
    }

    /// A notice for the user. Rate-limited (a peer's bogus frames must not flood the front
    /// end or the log); the next notice let through says how many were held back. The log
    /// line escapes peer text.
    fn notice(&mut self, actor: Option<ActorId>, message: String) {
        let Some(suppressed) = self.notice_limit.admit(self.now) else {
            return;
        };
        let message = if suppressed > 0 {
            format!("{message} ({suppressed} similar notices suppressed)")
        } else {
            message
        };
        tracing::info!(actor = ?actor, message = %bounds::escape(&message), "notice");
        self.event(RuntimeEvent::Notice { actor, message });
    }

    /// Break in: the actor pauses where it is, through the lock. Refused with a notice when
    /// there is nobody to ask or it is in the debugger already.
    fn interrupt(&mut self, actor: ActorId) {
        let why_not = match self.tree.get(actor) {
            None => Some(format!("interrupt: no actor {actor}")),
            Some(n) if n.exited.is_some() => Some(format!("interrupt: actor {actor} has exited")),
            Some(_) if self.lock.involves(actor) => Some(format!(
                "interrupt: actor {actor} already holds or waits for the debug lock"
            )),
            Some(_) => None,
        };
        let why_not = why_not.or_else(|| {
            (!self.send_to_actor(actor, ToActor::Interrupt)).then(|| {
                format!(
                    "interrupt: actor {actor} is not connected to the root (a Python actor \
                     connects at start-up if the root started it, other processes at their \
                     first pause), so nothing can pause it"
                )
            })
        });
        if let Some(message) = why_not {
            self.notice(Some(actor), message);
        }
    }

    /// Queues a frame to `actor`; false if it has no connection.
    fn send_to_actor(&mut self, actor: ActorId, msg: ToActor) -> bool {
        let Some(conn) = self.actor_conn.get(&actor).copied() else {
            return false;
        };
        self.out.push(Effect::Send { conn, msg });
        true
    }

    fn send_to_conn(&mut self, conn: ConnId, msg: ToActor) {
        self.out.push(Effect::Send { conn, msg });
    }

    // ---- connections ----

    fn close_conn(&mut self, conn: ConnId, error: Option<String>) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        self.out.push(Effect::Close { conn });
        if self.viewers.is_viewer(conn) {
            let changes = self.viewers.detach(conn);
            self.announce_viewers(changes);
            if let Some(e) = error {
                self.notice(None, format!("viewer {conn} dropped: {e}"));
            }
            return;
        }
        let Some(actor) = c.actor else {
            if let Some(e) = error {
                self.notice(None, format!("dropped unregistered connection: {e}"));
            }
            return;
        };
        self.actor_conn.remove(&actor);
        let had_error = error.is_some();
        // Requests it will never answer.
        self.pending_dumps.retain(|_, a| *a != actor);
        self.pending_completions.retain(|_, (a, _)| *a != actor);
        if let Some(e) = error {
            self.notice(Some(actor), format!("dropped connection: {e}"));
        }
        if let Some(exit) = self.pending_exits.remove(&actor) {
            self.child_exited(actor, exit);
        }
        let tr = self.lock.remove_actor(actor, ReleaseCause::Disconnect);
        self.apply(tr);
        let Some(node) = self.tree.get_mut(actor) else {
            return;
        };
        node.connected = false;
        if !node.spawned {
            // We cannot reap a process we did not start: its connection is its life, and
            // what it announced is all we know of how it ended. A remote link that died
            // without a word (no `exiting`, an I/O error) is a lost actor.
            let lost = c.remote.is_some() && node.exit_reason.is_none() && had_error;
            let exit = Exit {
                code: node.announced_code,
                signal: None,
                reason: if lost {
                    Some(crate::proto::ExitReason::Lost)
                } else {
                    node.exit_reason
                },
            };
            self.event(RuntimeEvent::ActorExited { actor, exit });
            self.pending_cancels.remove(&actor);
            self.tree.retire(actor);
            self.progress_cancels();
        }
    }

    fn protocol_error(&mut self, conn: ConnId, message: String) {
        self.send_to_conn(
            conn,
            ToActor::Error {
                message: message.clone(),
            },
        );
        self.close_conn(conn, Some(message));
    }

    fn on_frame(&mut self, conn: ConnId, msg: ToRoot) {
        let now = self.now;
        let Some(c) = self.conns.get_mut(&conn) else {
            // Frames already in flight from a connection we dropped.
            return;
        };
        c.last_frame = now;
        let c = &*c;
        if self.viewers.is_viewer(conn) {
            self.on_viewer_frame(conn, msg);
            return;
        }
        // A remote peer is what its ticket says, nothing else.
        let kind = c.remote.as_ref().map(|r| r.kind);
        let refused = match (&msg, kind) {
            (ToRoot::Register { .. }, Some(Kind::Observer | Kind::Driver)) => {
                Some("a viewer's ticket cannot register an actor")
            }
            (ToRoot::Attach { .. }, Some(Kind::Actor)) => {
                Some("an actor's ticket cannot attach a viewer")
            }
            _ => None,
        };
        if let Some(why) = refused {
            self.protocol_error(conn, why.into());
            return;
        }
        let actor = match (msg, c.actor) {
            (
                ToRoot::Attach {
                    name,
                    driver,
                    take_over,
                },
                None,
            ) => {
                let pid = c.peer_pid;
                let may_drive = kind != Some(Kind::Observer);
                let name = match &c.remote {
                    Some(r) => format!("{name} ({})", r.addr),
                    None => name,
                };
                self.attach(conn, name, pid, driver && may_drive, take_over, may_drive);
                return;
            }
            (ToRoot::Command { .. }, _) => {
                self.protocol_error(
                    conn,
                    "command frames come only from attached viewers".into(),
                );
                return;
            }
            (
                ToRoot::Register {
                    name,
                    pid,
                    actor: claimed,
                    group,
                },
                None,
            ) => {
                self.register(conn, name, pid, claimed, group);
                return;
            }
            (ToRoot::Register { .. }, Some(_)) => {
                self.protocol_error(conn, "register sent twice".into());
                return;
            }
            (ToRoot::Hello { .. }, _) => {
                self.protocol_error(conn, "hello sent twice".into());
                return;
            }
            (_, None) => {
                self.protocol_error(
                    conn,
                    "first frame after hello must be register (or attach)".into(),
                );
                return;
            }
            (msg, Some(actor)) => (msg, actor),
        };
        let (msg, actor) = actor;
        if let Some((epoch, w)) = &mut self.holder_watch
            && self
                .lock
                .holder()
                .is_some_and(|g| g.epoch == *epoch && g.request.key.actor == actor)
        {
            w.frame(self.now);
        }
        match msg {
            ToRoot::Hello { .. }
            | ToRoot::Register { .. }
            | ToRoot::Command { .. }
            | ToRoot::Proof { .. } => {}
            ToRoot::Attach { .. } => {
                self.protocol_error(
                    conn,
                    "attach after register: an actor cannot be a viewer".into(),
                );
            }
            ToRoot::Unknown => {
                tracing::debug!(%actor, "ignoring a message type from a newer client")
            }
            ToRoot::Spawn { req, .. }
                if self.conns.get(&conn).is_some_and(|c| c.remote.is_some()) =>
            {
                // Starting programs on the root's host is not something a ticket grants.
                self.send_to_conn(
                    conn,
                    ToActor::SpawnFailed {
                        req,
                        error: "a remote actor cannot spawn on the root's host; start the process where you are".into(),
                    },
                );
            }
            ToRoot::Spawn {
                req,
                name,
                program,
                args,
                env,
                cwd,
            } => {
                let going = self.quitting
                    || self
                        .tree
                        .get(actor)
                        .is_some_and(|n| n.cancel != CancelState::None);
                if going {
                    self.send_to_conn(
                        conn,
                        ToActor::SpawnFailed {
                            req,
                            error: "the tree is being torn down".into(),
                        },
                    );
                } else {
                    let id = self.tree.reserve_id();
                    self.out.push(Effect::Spawn(SpawnRequest {
                        id,
                        name: bounds::truncate(name, bounds::MAX_FIELD),
                        program,
                        args,
                        env: env.unwrap_or_default(),
                        cwd,
                        parent: Some(actor),
                        reply: Some((conn, req)),
                    }));
                }
            }
            ToRoot::Cancel {
                actor: target,
                force,
            } => match target.parse::<ActorId>() {
                Ok(target) => self.cancel_subtree(target, force),
                Err(_) => self.notice(
                    Some(actor),
                    format!("cancel: no actor {}", bounds::escape(&target)),
                ),
            },
            ToRoot::LockRequest {
                task,
                task_name,
                reason,
                location,
                peek,
            } => {
                let now = self.now;
                let admitted = self
                    .conns
                    .get_mut(&conn)
                    .is_none_or(|c| c.lock_rate.admit(now).is_some());
                if !admitted {
                    // Only the peer hears of each one; the front end gets a (rate-limited)
                    // notice, not an event per request.
                    self.send_to_conn(
                        conn,
                        ToActor::LockRefused {
                            task,
                            error: format!(
                                "too many lock requests: at most {} a second from one connection",
                                bounds::LOCK_REQUESTS_PER_SEC
                            ),
                            skipped: false,
                        },
                    );
                    self.notice(
                        Some(actor),
                        format!(
                            "actor {actor} sends lock requests faster than {} a second; refused",
                            bounds::LOCK_REQUESTS_PER_SEC
                        ),
                    );
                    return;
                }
                // Bounded before anything keeps them (the queue, events, the console).
                let task_name = bounds::truncate(task_name, bounds::MAX_FIELD);
                let location = bounds::truncate(location, bounds::MAX_FIELD);
                let peek = peek.map(|p| bounds::truncate(p, bounds::MAX_PEEK));
                self.event(RuntimeEvent::LockRequested {
                    actor,
                    task,
                    task_name: task_name.clone(),
                    reason,
                    location: location.clone(),
                    peek: peek.clone(),
                });
                if self.quitting {
                    self.refuse(actor, task, "actor-tui is quitting".into());
                    return;
                }
                let name = self.tree.get(actor).map_or("", |n| n.name.as_str());
                let decision = self.admission.decide(
                    self.now,
                    actor,
                    name,
                    reason,
                    &location,
                    peek.as_deref(),
                );
                if let Decision::Skip { rule, count } = decision {
                    self.send_to_actor(
                        actor,
                        ToActor::LockRefused {
                            task,
                            error: format!("skipped by a rule ({rule})"),
                            skipped: true,
                        },
                    );
                    self.event(RuntimeEvent::RequestSkipped {
                        actor,
                        task,
                        location,
                        why: rule.clone(),
                    });
                    let what = if reason == crate::proto::Reason::Crash {
                        "crashes went on without a post-mortem (see the crash list)"
                    } else {
                        "pauses went on without a session"
                    };
                    self.notice(None, format!("{rule}: {count} {what}"));
                    return;
                }
                let req = LockRequest {
                    key: LockKey { actor, task },
                    task_name,
                    reason,
                    location,
                };
                match self.lock.request(req) {
                    Ok(tr) => self.apply(tr),
                    Err(e) => self.refuse(actor, task, e.to_string()),
                }
            }
            ToRoot::LockRelease {
                task,
                epoch,
                how,
                step_timeout,
            } => {
                let cause = match how {
                    ReleaseHow::Continue if step_timeout => ReleaseCause::StepTimeout,
                    ReleaseHow::Continue => ReleaseCause::Continue,
                    ReleaseHow::Quit => ReleaseCause::Quit,
                };
                let key = LockKey { actor, task };
                match self.lock.release(&key, epoch, cause) {
                    Ok(tr) => {
                        self.apply(tr);
                        if step_timeout {
                            self.notice(
                                Some(actor),
                                "a step ran past the step timeout: the lock is handed on, and \
                                 the next stop asks for it again"
                                    .into(),
                            );
                        }
                    }
                    Err(e) => self.notice(Some(actor), format!("ignored release: {e}")),
                }
            }
            ToRoot::ReplWhere {
                task,
                epoch,
                task_name,
                location,
            } => {
                let task_name = bounds::truncate(task_name, bounds::MAX_FIELD);
                let location = bounds::truncate(location, bounds::MAX_FIELD);
                let key = LockKey { actor, task };
                if self
                    .lock
                    .moved(&key, epoch, task_name.clone(), location.clone())
                {
                    self.event(RuntimeEvent::LockMoved {
                        actor,
                        task,
                        task_name,
                        location,
                    });
                }
            }
            ToRoot::Notice { message } => {
                let message = bounds::truncate(message, bounds::MAX_FIELD);
                self.notice(Some(actor), message);
            }
            ToRoot::LockPeek { task, peek } => {
                let key = LockKey { actor, task };
                // Once per waiting request: a peer cannot turn it into a stream of events.
                if self.lock.is_waiting(&key) && !self.peeked.contains(&key) {
                    if self.peeked.len() >= bounds::MAX_PEEKED {
                        let lock = &self.lock;
                        self.peeked.retain(|k| lock.is_waiting(k));
                    }
                    self.peeked.insert(key);
                    self.event(RuntimeEvent::LockPeek {
                        actor,
                        task,
                        peek: bounds::truncate(peek, bounds::MAX_PEEK),
                    });
                }
            }
            ToRoot::Lease { task, epoch } => {
                // Only the current grant's lease counts; a stale one (after force-release)
                // says nothing about the new holder.
                let current = self.is_current(actor, task, epoch);
                let first = match &mut self.holder_watch {
                    Some((e, w)) if *e == epoch && current => w.lease(self.now),
                    _ => false,
                };
                if first {
                    self.event(RuntimeEvent::LockLeased { actor, task, epoch });
                }
            }
            ToRoot::ReplOutput { task, epoch, data } => {
                if self.is_current(actor, task, epoch) {
                    self.event(RuntimeEvent::ReplOutput { actor, task, data });
                }
            }
            ToRoot::ReplWaiting {
                task,
                epoch,
                prompt,
            } => {
                if self.is_current(actor, task, epoch) {
                    self.event(RuntimeEvent::ReplReady {
                        actor,
                        task,
                        prompt,
                    });
                }
            }
            ToRoot::DumpReply { req, text } => {
                // Only the asked actor may answer: another one must not pass its text off
                // as the dump of a hung actor.
                if self.pending_dumps.get(&req) == Some(&actor) {
                    // The ladder's job shows it, with its facts, and says it answered.
                    self.out.push(Effect::DumpAnswer { req, text });
                } else if self.pending_dumps.contains_key(&req) {
                    self.notice(
                        Some(actor),
                        format!(
                            "ignored a dump reply for request {req}, which was not sent to actor {actor}"
                        ),
                    );
                }
            }
            ToRoot::CompleteReply { req, matches } => {
                // Only the asked actor's reply counts, and only it removes the request.
                let asked = self
                    .pending_completions
                    .get(&req)
                    .is_some_and(|(target, _)| *target == actor);
                if asked && let Some((_, line)) = self.pending_completions.remove(&req) {
                    self.event(RuntimeEvent::Completions {
                        actor,
                        line,
                        matches,
                    });
                }
            }
            ToRoot::Exiting { code, reason } => {
                if let Some(n) = self.tree.get_mut(actor) {
                    n.exit_reason = Some(reason);
                    n.announced_code = Some(code);
                }
            }
        }
    }

    /// Frames from an old holder (after force-release) are dropped: its session is over.
    fn is_current(&self, actor: ActorId, task: u64, epoch: u64) -> bool {
        self.lock.holder().is_some_and(|g| {
            g.request.key.actor == actor && g.request.key.task == task && g.epoch == epoch
        })
    }

    fn refuse(&mut self, actor: ActorId, task: u64, error: String) {
        self.send_to_actor(
            actor,
            ToActor::LockRefused {
                task,
                error: error.clone(),
                skipped: false,
            },
        );
        self.event(RuntimeEvent::LockRefused { actor, task, error });
    }

    fn register(
        &mut self,
        conn: ConnId,
        name: String,
        claimed_pid: u32,
        claimed: Option<String>,
        group: Option<String>,
    ) {
        let name = bounds::truncate(name, bounds::MAX_FIELD);
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        // A remote actor's pid means nothing here (0: "another pid namespace", so nothing
        // reads /proc for it); its name says where it runs; it claims no reservation; it
        // goes under its host's node.
        let remote_addr = c.remote.as_ref().map(|r| r.addr.clone());
        let (pid, name, claimed) = match &remote_addr {
            Some(addr) => (0, format!("{name}@{addr}"), None),
            None => (c.peer_pid.unwrap_or(claimed_pid), name, claimed),
        };
        let ancestry = c.ancestry.clone();
        let host = remote_addr.and_then(|a| self.host_node(&a));
        // Parsed once here: only the canonical spelling of an id can claim it.
        let reserved = claimed
            .and_then(|c| c.parse::<ActorId>().ok())
            .filter(|&id| {
                self.tree.get(id).is_some_and(|n| {
                    n.spawned && n.pid == pid && !n.connected && n.exited.is_none()
                })
            });
        let id = match reserved {
            Some(id) => id,
            None => {
                // Not started by us (a fork, or a child an actor started itself): it goes
                // under its nearest live actor by pid: itself if it already is one, else
                // the actor it descends from. The parent pids were read by the shell.
                let parent = host.or_else(|| self.tree.nearest_ancestor_in(pid, &ancestry));
                let parent = match group {
                    Some(label) => self.group_node(parent, &label).or(parent),
                    None => parent,
                };
                let id = self.tree.add(&name, pid, parent, false);
                self.event(RuntimeEvent::ActorStarted {
                    actor: id,
                    name,
                    pid,
                    parent,
                });
                id
            }
        };
        let parent = self.tree.get(id).and_then(|n| n.parent);
        if let Some(n) = self.tree.get_mut(id) {
            n.connected = true;
        }
        if let Some(c) = self.conns.get_mut(&conn) {
            c.actor = Some(id);
        }
        self.actor_conn.insert(id, conn);
        self.send_to_conn(
            conn,
            ToActor::Registered {
                actor: id.to_string(),
                parent: parent.map(|p| p.to_string()),
            },
        );
        // An actor that registers after its teardown was asked for gets the word now.
        if self
            .tree
            .get(id)
            .is_some_and(|n| n.cancel == CancelState::Requested)
        {
            self.send_to_conn(conn, ToActor::Cancel { force: false });
        }
        self.join_teardown_if_going(id, parent);
    }

    /// The node of the group `label` under `parent` (a Ray node under the driver, say),
    /// made on its first actor and, like a host's node, never live. Keyed by the parent too,
    /// so two drivers' groups of one name stay apart. At most [`MAX_GROUPS`]; past that,
    /// actors go under `parent` itself.
    fn group_node(&mut self, parent: Option<ActorId>, label: &str) -> Option<ActorId> {
        let label = bounds::truncate(label.to_owned(), bounds::MAX_FIELD);
        let key = (parent, label);
        if let Some(id) = self.groups.get(&key) {
            return Some(*id);
        }
        if self.groups.len() >= MAX_GROUPS {
            return None;
        }
        let id = self.tree.add(&key.1, 0, parent, false);
        self.event(RuntimeEvent::ActorStarted {
            actor: id,
            name: key.1.clone(),
            pid: 0,
            parent,
        });
        self.groups.insert(key, id);
        Some(id)
    }

    /// The node of the host at `addr` (`ip:port`), made on its first actor: an entry in the
    /// tree with no process and no connection (never live, so the run never waits for it;
    /// cancelling it cancels its actors). At most [`MAX_HOSTS`]; past that, remote actors
    /// go at the top.
    fn host_node(&mut self, addr: &str) -> Option<ActorId> {
        let ip = addr.parse::<std::net::SocketAddr>().ok()?.ip();
        if let Some(id) = self.hosts.get(&ip) {
            return Some(*id);
        }
        if self.hosts.len() >= MAX_HOSTS {
            return None;
        }
        let name = format!("host {ip}");
        let id = self.tree.add(&name, 0, None, false);
        self.hosts.insert(ip, id);
        self.event(RuntimeEvent::ActorStarted {
            actor: id,
            name,
            pid: 0,
            parent: None,
        });
        Some(id)
    }

    /// One that appears while the run or its parent is being torn down is torn down too, or
    /// the run would wait for it forever.
    fn join_teardown_if_going(&mut self, id: ActorId, parent: Option<ActorId>) {
        let parent_going = parent
            .and_then(|p| self.tree.get(p))
            .is_some_and(|p| p.cancel != CancelState::None || p.exited.is_some());
        if (self.quitting || self.first_code.is_some() || parent_going)
            && let Some(n) = self.tree.get_mut(id)
            && n.cancel == CancelState::None
        {
            n.cancel = CancelState::Pending;
            self.pending_cancels.insert(id);
            self.progress_cancels();
        }
    }

    fn spawned(&mut self, req: SpawnRequest, result: Result<u32, String>) {
        match result {
            Ok(pid) => {
                self.tree
                    .add_reserved(req.id, &req.name, pid, req.parent, true);
                self.event(RuntimeEvent::ActorStarted {
                    actor: req.id,
                    name: req.name.clone(),
                    pid,
                    parent: req.parent,
                });
                if let Some((conn, r)) = req.reply {
                    self.send_to_conn(
                        conn,
                        ToActor::Spawned {
                            req: r,
                            actor: req.id.to_string(),
                            pid,
                        },
                    );
                }
                // A parent cancelled while the spawn was under way takes its child along.
                self.join_teardown_if_going(req.id, req.parent);
            }
            Err(error) => {
                if let Some((conn, r)) = req.reply {
                    self.send_to_conn(conn, ToActor::SpawnFailed { req: r, error });
                }
            }
        }
    }

    // ---- the lock ----

    /// Turns a lock transition into frames and events, then lets waiting teardowns move.
    fn apply(&mut self, tr: Transition) {
        if let Some(r) = tr.released {
            let key = &r.grant.request.key;
            if matches!(r.cause, ReleaseCause::Force | ReleaseCause::Cancel) {
                self.send_to_actor(
                    key.actor,
                    ToActor::LockRevoked {
                        task: key.task,
                        epoch: r.grant.epoch,
                    },
                );
            }
            self.event(RuntimeEvent::LockReleased {
                actor: key.actor,
                task: key.task,
                epoch: r.grant.epoch,
                cause: r.cause,
            });
            self.holder_watch = None;
            // Completions belong to the session that ended.
            self.pending_completions.clear();
        }
        for d in tr.dropped {
            if d.cause == ReleaseCause::Cancel {
                // The actor may still be alive and waiting: tell it instead of leaving it
                // blocked until the kill.
                self.send_to_actor(
                    d.request.key.actor,
                    ToActor::LockRefused {
                        task: d.request.key.task,
                        error: "request dropped: the actor is being cancelled".into(),
                        skipped: false,
                    },
                );
            }
            self.event(RuntimeEvent::LockDropped {
                actor: d.request.key.actor,
                task: d.request.key.task,
                cause: d.cause,
            });
        }
        if let Some(g) = tr.granted {
            self.holder_watch = Some((g.epoch, HolderWatch::new(self.now)));
            let key = g.request.key.clone();
            self.event(RuntimeEvent::LockGranted {
                actor: key.actor,
                task: key.task,
                epoch: g.epoch,
            });
            if !self.send_to_actor(
                key.actor,
                ToActor::LockGranted {
                    task: key.task,
                    epoch: g.epoch,
                },
            ) {
                // Cannot happen while connection close removes the actor from the lock,
                // but if it does, do not leave the tree stuck on a holder that is gone.
                let tr = self.lock.remove_actor(key.actor, ReleaseCause::Disconnect);
                self.apply(tr);
            }
        }
        self.progress_cancels();
    }

    /// Marks the holder suspect (or healthy again) from its process state and whether it
    /// answers input.
    fn watch_holder(&mut self, state: Option<char>) {
        let Some(g) = self.lock.holder().cloned() else {
            return;
        };
        // Stopped on purpose: say so, not "stuck".
        if self.frozen {
            return;
        }
        let now = self.now;
        let verdict = match &mut self.holder_watch {
            Some((epoch, w)) if *epoch == g.epoch => w.check(now, state),
            _ => return,
        };
        let (actor, task, epoch) = (g.request.key.actor, g.request.key.task, g.epoch);
        match verdict {
            Some(Verdict::Suspect { why, since }) => self.event(RuntimeEvent::LockSuspect {
                actor,
                task,
                epoch,
                why,
                since,
            }),
            Some(Verdict::Healthy) => self.event(RuntimeEvent::LockHealthy { actor, task, epoch }),
            None => {}
        }
    }

    // ---- children and teardown ----

    fn child_exited(&mut self, actor: ActorId, exit: Exit) {
        self.pending_cancels.remove(&actor);
        let tr = self.lock.remove_actor(actor, ReleaseCause::Exit);
        self.apply(tr);
        let Some(node) = self.tree.get_mut(actor) else {
            return;
        };
        // The status says how it ended; the reason is what it announced before.
        let exit = Exit {
            reason: node.exit_reason,
            ..exit
        };
        node.exited = Some(exit);
        let parent = node.parent;
        if let Some(parent) = parent {
            self.send_to_actor(
                parent,
                ToActor::ChildExited {
                    actor: actor.to_string(),
                    exit,
                },
            );
        }
        self.event(RuntimeEvent::ActorExited { actor, exit });
        if self.first == Some(actor) {
            self.first_code = Some(exit.status_code());
            // The program is over: whatever it left running is torn down, gently.
            let live = self.tree.live_ids();
            for id in live {
                self.cancel_subtree(id, false);
            }
        }
        self.progress_cancels();
    }

    /// Actors that must not be signalled now: those that hold or wait for the lock, and all
    /// their ancestors (killing a parent would take the debugging child's session with it).
    /// Costs one lineage walk per distinct involved actor, not per request.
    fn protected(&self) -> HashSet<ActorId> {
        if self.quitting {
            return HashSet::new();
        }
        let mut out = HashSet::new();
        for a in self.lock.involved_actors() {
            if out.contains(&a) {
                continue;
            }
            out.extend(self.tree.lineage(a));
        }
        out
    }

    fn cancel_subtree(&mut self, target: ActorId, force: bool) {
        // A stopped process cannot act on a Cancel frame or SIGTERM: resume the tree first.
        if self.frozen {
            self.freeze(false);
        }
        if self.tree.get(target).is_none() {
            self.notice(None, format!("cancel: no actor {target}"));
            return;
        }
        let live: Vec<ActorId> = self
            .tree
            .subtree(target)
            .into_iter()
            .filter(|&id| self.tree.get(id).is_some_and(|n| n.is_live()))
            .collect();
        if force {
            // The whole subtree leaves the lock at once, so no member is granted it on the
            // way out.
            let tr = self.lock.remove_actors(&live, ReleaseCause::Cancel);
            self.apply(tr);
        }
        for id in live {
            if force {
                self.send_to_actor(id, ToActor::Cancel { force: true });
                self.signal(id, Sig::Kill);
                if let Some(n) = self.tree.get_mut(id) {
                    n.cancel = CancelState::Killed;
                }
                self.pending_cancels.remove(&id);
                self.disconnect_unspawned(id);
                self.event(RuntimeEvent::Cancelling { actor: id, force });
            } else if let Some(n) = self.tree.get_mut(id)
                && n.cancel == CancelState::None
            {
                n.cancel = CancelState::Pending;
                self.pending_cancels.insert(id);
            }
        }
        self.progress_cancels();
    }

    /// Starts every pending teardown that the lock no longer protects. Looks only at the
    /// pending ones, so a transition with no teardown under way costs nothing here.
    fn progress_cancels(&mut self) {
        if self.pending_cancels.is_empty() {
            return;
        }
        let protected = self.protected();
        let mut pending: Vec<ActorId> = self.pending_cancels.iter().copied().collect();
        // Parents first, in the order actors arrived.
        pending.sort_unstable();
        for id in pending {
            let live = self
                .tree
                .get(id)
                .is_some_and(|n| n.cancel == CancelState::Pending && n.is_live());
            if !live {
                self.pending_cancels.remove(&id);
                continue;
            }
            if protected.contains(&id) {
                let Some(n) = self.tree.get_mut(id) else {
                    continue;
                };
                if !n.teardown_waiting {
                    n.teardown_waiting = true;
                    self.event(RuntimeEvent::TeardownWaiting { actor: id });
                }
                continue;
            }
            self.pending_cancels.remove(&id);
            if let Some(n) = self.tree.get_mut(id) {
                n.cancel = CancelState::Requested;
                n.teardown_waiting = false;
            }
            self.send_to_actor(id, ToActor::Cancel { force: false });
            self.event(RuntimeEvent::Cancelling {
                actor: id,
                force: false,
            });
            self.schedule(id, CancelState::Terminated);
        }
    }

    fn schedule(&mut self, actor: ActorId, stage: CancelState) {
        let grace = self.grace;
        self.after(grace, Input::Escalate { actor, stage });
    }

    fn escalate(&mut self, actor: ActorId, stage: CancelState) {
        let Some(n) = self.tree.get(actor) else {
            return;
        };
        if !n.is_live() || n.cancel == CancelState::Killed {
            return;
        }
        if self.protected().contains(&actor) {
            // It entered the debugger while being torn down: wait for that session.
            if !n.teardown_waiting {
                self.event(RuntimeEvent::TeardownWaiting { actor });
                if let Some(n) = self.tree.get_mut(actor) {
                    n.teardown_waiting = true;
                }
            }
            let wait = self.grace.max(PROTECTED_RECHECK);
            self.after(wait, Input::Escalate { actor, stage });
            return;
        }
        if let Some(n) = self.tree.get_mut(actor) {
            n.teardown_waiting = false;
            n.cancel = stage;
        }
        match stage {
            CancelState::Terminated => {
                self.signal(actor, Sig::Term);
                self.schedule(actor, CancelState::Killed);
            }
            _ => {
                self.signal(actor, Sig::Kill);
                self.disconnect_unspawned(actor);
            }
        }
    }

    /// The last step of tearing down an actor the root did not spawn: it was asked, and
    /// signalled if it is ours; its connection is now closed, so a process outside the
    /// tree (or a fork holding the connection) cannot keep the run from ending.
    fn disconnect_unspawned(&mut self, actor: ActorId) {
        if self.tree.get(actor).is_some_and(|n| !n.spawned)
            && let Some(conn) = self.actor_conn.get(&actor).copied()
        {
            self.close_conn(conn, Some("torn down".into()));
        }
    }

    /// Asks the shell to signal a spawned actor's process group, or an unspawned actor
    /// through its pidfd. An actor with neither (outside the tree) is never signalled.
    fn signal(&mut self, actor: ActorId, sig: Sig) {
        let Some(n) = self.tree.get(actor) else {
            return;
        };
        let target = if n.spawned {
            if n.pid == 0 || n.exited.is_some() {
                return;
            }
            SignalTarget::Group { pid: n.pid }
        } else {
            match self.actor_conn.get(&actor) {
                Some(&conn) if self.conns.get(&conn).is_some_and(|c| c.signalable) => {
                    SignalTarget::Peer { conn }
                }
                _ => return,
            }
        };
        self.out.push(Effect::Signal { actor, target, sig });
    }

    // ---- commands ----

    // ---- hangs ----

    /// How long an actor must be still to be marked possibly hung, and (if set) how long
    /// the whole tree must be still for a snapshot to be taken by itself.
    pub fn set_hang_watch(&mut self, after: Duration, dump_after: Option<Duration>) {
        self.hang = HangWatch::new(after, dump_after);
    }

    /// Live actors whose process the shell may sample: (id, pid, spawned by the root).
    pub fn watched(&self) -> Vec<(ActorId, u32, bool)> {
        self.tree
            .iter()
            .filter(|n| n.exited.is_none() && n.pid != 0)
            .filter(|n| {
                n.spawned
                    || self
                        .actor_conn
                        .get(&n.id)
                        .and_then(|c| self.conns.get(c))
                        .is_some_and(|c| c.signalable)
            })
            .map(|n| (n.id, n.pid, n.spawned))
            .collect()
    }

    fn activity(&mut self, samples: Vec<(ActorId, u64, Option<u64>)>) {
        // Stopped on purpose: nobody is hung, and time frozen does not count.
        if self.frozen {
            return;
        }
        let samples: Vec<Sample> = samples
            .into_iter()
            .map(|(actor, cpu, output)| Sample {
                actor,
                cpu,
                output,
                frame: self
                    .actor_conn
                    .get(&actor)
                    .and_then(|c| self.conns.get(c))
                    .map(|c| c.last_frame),
            })
            .collect();
        let holder = self
            .lock
            .holder()
            .filter(|_| self.lock.queue().len() > 0)
            .map(|g| g.request.key.actor);
        let v = self.hang.observe(self.now, &samples, holder);
        for (actor, still) in v.hung {
            self.event(RuntimeEvent::Hung {
                actor,
                hung: true,
                still_ms: u64::try_from(still.as_millis()).unwrap_or(u64::MAX),
            });
        }
        for actor in v.active {
            self.event(RuntimeEvent::Hung {
                actor,
                hung: false,
                still_ms: 0,
            });
        }
        if v.dump_all {
            let secs = self.hang.dump_after.map_or(0, |d| d.as_secs());
            self.notice(
                None,
                format!(
                    "the whole tree has been still for {secs} s: taking a snapshot (--dump-on-hang)"
                ),
            );
            self.dump_all();
        }
    }

    // ---- the queue, as the user arranges it ----

    fn queue_order(&self) -> Vec<super::event::Waiter> {
        self.lock
            .queue()
            .map(|r| super::event::Waiter {
                actor: r.key.actor,
                task: r.key.task,
            })
            .collect()
    }

    fn reorder(&mut self, actor: ActorId, task: u64, front: bool) {
        let key = LockKey { actor, task };
        let done = if front {
            self.lock.promote(&key)
        } else {
            self.lock.defer(&key)
        };
        match done {
            Ok(()) => {
                let order = self.queue_order();
                self.event(RuntimeEvent::QueueReordered {
                    actor,
                    task,
                    how: if front { "promote" } else { "defer" }.into(),
                    order,
                });
            }
            Err(e) => self.notice(Some(actor), format!("reorder: {e}")),
        }
    }

    /// Lets one waiter go on without a session; false if it is not waiting.
    fn skip(&mut self, key: &LockKey, why: &str) -> bool {
        let Ok(req) = self.lock.take(key) else {
            return false;
        };
        self.send_to_actor(
            key.actor,
            ToActor::LockRefused {
                task: key.task,
                error: format!("skipped by the user ({why})"),
                skipped: true,
            },
        );
        self.event(RuntimeEvent::RequestSkipped {
            actor: key.actor,
            task: key.task,
            location: req.location,
            why: why.into(),
        });
        true
    }

    /// Skips every waiter at `location` (exact, or ending with it) or of `actor`.
    fn skip_matching(
        &mut self,
        location: Option<&str>,
        actor: Option<ActorId>,
        why: &str,
    ) -> usize {
        let keys: Vec<LockKey> = self
            .lock
            .queue()
            .filter(|r| match (location, actor) {
                (Some(l), _) => location_matches(&r.location, l),
                (None, Some(a)) => r.key.actor == a,
                (None, None) => false,
            })
            .map(|r| r.key.clone())
            .collect();
        keys.iter().filter(|k| self.skip(k, why)).count()
    }

    // ---- freezing ----

    /// Stops (or resumes) every live actor's process group, and every descendant peer.
    fn freeze(&mut self, on: bool) {
        if self.frozen == on {
            self.notice(
                None,
                if on {
                    "freeze: the tree is frozen already"
                } else {
                    "resume: the tree is not frozen"
                }
                .into(),
            );
            return;
        }
        self.frozen = on;
        if !on && let Some((_, w)) = &mut self.holder_watch {
            w.resumed(self.now);
        }
        let live = self.tree.live_ids();
        for id in live {
            self.signal(id, if on { Sig::Stop } else { Sig::Cont });
        }
        self.event(RuntimeEvent::Frozen { frozen: on });
    }

    // ---- dumps ----

    /// Starts the dump ladder for `actor`; `None` if it cannot be (bound, no such actor).
    /// A tree-wide dump is not bound by [`MAX_PENDING_DUMPS`] (it is one at a time, and the
    /// shell runs outside tools a few at a time).
    fn start_dump(&mut self, actor: ActorId) -> Option<u64> {
        if self.snapshot.is_none() && self.pending_dumps.len() >= MAX_PENDING_DUMPS {
            self.notice(
                Some(actor),
                format!("dump: {MAX_PENDING_DUMPS} dumps are still running; not starting another"),
            );
            return None;
        }
        let Some(node) = self.tree.get(actor) else {
            self.notice(None, format!("dump: no actor {actor}"));
            return None;
        };
        if node.exited.is_some() {
            self.notice(Some(actor), format!("dump: actor {actor} has exited"));
            return None;
        }
        // A pid the shell may read: a process it spawned and has not reaped, or a peer that
        // descends from the root (not a remote one: pid 0).
        let conn = self.actor_conn.get(&actor).copied();
        let signalable = conn
            .and_then(|c| self.conns.get(&c))
            .is_some_and(|c| c.signalable);
        let pid = (node.pid != 0 && (node.spawned || signalable)).then_some(node.pid);
        let mut facts = vec![("actor".to_owned(), format!("{actor} {}", node.name))];
        match conn.and_then(|c| self.conns.get(&c)) {
            Some(c) => {
                let ago = self.now.saturating_duration_since(c.last_frame);
                facts.push((
                    "last frame".into(),
                    format!("{:.1} s ago", ago.as_secs_f64()),
                ));
                if let Some(r) = &c.remote {
                    facts.push(("remote".into(), r.addr.clone()));
                }
            }
            None => facts.push(("connection".into(), "none (no client, or not yet)".into())),
        }
        facts.push(("lock".into(), self.lock_state_of(actor)));
        if pid.is_none() && conn.is_none() {
            self.notice(
                Some(actor),
                format!("dump: actor {actor} is neither connected nor a process of ours"),
            );
            return None;
        }
        self.next_req += 1;
        let req = self.next_req;
        // A frozen actor cannot answer (all its threads are stopped): go straight on.
        let connected = !self.frozen && self.send_to_actor(actor, ToActor::DumpRequest { req });
        if self.frozen {
            facts.push((
                "frozen".into(),
                "yes: not asked for a cooperative dump".into(),
            ));
        }
        self.pending_dumps.insert(req, actor);
        self.out.push(Effect::Inspect {
            actor,
            req,
            pid,
            conn,
            connected,
            facts,
        });
        Some(req)
    }

    fn lock_state_of(&self, actor: ActorId) -> String {
        if let Some(g) = self.lock.holder().filter(|g| g.request.key.actor == actor) {
            return format!("holds it (epoch {}, {})", g.epoch, g.request.task_name);
        }
        let waiting: Vec<usize> = self
            .lock
            .queue()
            .enumerate()
            .filter(|(_, r)| r.key.actor == actor)
            .map(|(i, _)| i + 1)
            .collect();
        match waiting.as_slice() {
            [] => "-".into(),
            [n] => format!("waits (number {n} in the queue)"),
            many => format!(
                "{} requests wait (the first is number {})",
                many.len(),
                many[0]
            ),
        }
    }

    fn dump_done(
        &mut self,
        req: u64,
        actor: ActorId,
        text: String,
        step: String,
        signature: Option<String>,
    ) {
        self.pending_dumps.remove(&req);
        let in_snapshot = self
            .snapshot
            .as_mut()
            .is_some_and(|s| s.waiting.remove(&req));
        if in_snapshot {
            let name = self
                .tree
                .get(actor)
                .map(|n| n.name.clone())
                .unwrap_or_default();
            if let Some(s) = self.snapshot.as_mut() {
                s.entries.push(super::dump::Entry {
                    actor,
                    name,
                    step: step.clone(),
                    signature,
                    text: text.clone(),
                });
            }
            self.finish_snapshot_if_done();
        }
        self.event(RuntimeEvent::Dump {
            actor,
            text,
            step: Some(step),
        });
    }

    fn dump_all(&mut self) {
        if self.snapshot.is_some() {
            self.notice(None, "dump all: a snapshot is being taken already".into());
            return;
        }
        let live = self.tree.live_ids();
        self.snapshot = Some(Snapshot::default());
        for actor in live {
            if let Some(req) = self.start_dump(actor)
                && let Some(s) = self.snapshot.as_mut()
            {
                s.waiting.insert(req);
            }
        }
        self.finish_snapshot_if_done();
    }

    fn finish_snapshot_if_done(&mut self) {
        if !self.snapshot.as_ref().is_some_and(|s| s.waiting.is_empty()) {
            return;
        }
        let Some(mut s) = self.snapshot.take() else {
            return;
        };
        s.entries.sort_by_key(|e| e.actor);
        let (mut text, json) = super::dump::snapshot(&s.entries);
        if let Some(before) = &self.last_snapshot {
            let changes = super::dump::diff(before, &s.entries);
            let summary = if changes.is_empty() {
                "nothing changed since the last snapshot\n".to_owned()
            } else {
                format!(
                    "since the last snapshot:\n{}\n",
                    changes
                        .iter()
                        .map(|c| format!("  {c}"))
                        .collect::<Vec<_>>()
                        .join("\n")
                )
            };
            // First, where a user looks: what moved (or did not) is the question.
            text = format!("{summary}\n{text}");
        }
        self.last_snapshot = Some(s.entries);
        self.out.push(Effect::SaveSnapshot { text, json });
    }

    // ---- viewers ----

    fn attach(
        &mut self,
        conn: ConnId,
        name: String,
        pid: Option<u32>,
        driver: bool,
        take_over: bool,
        may_drive: bool,
    ) {
        let name = bounds::truncate(name, bounds::MAX_FIELD);
        match self
            .viewers
            .attach(conn, name, pid, driver, take_over, may_drive)
        {
            Ok(attached) => {
                let role = self
                    .viewers
                    .get(conn)
                    .map_or(ViewerRole::Observer, |v| v.role);
                // Its state first, then the announcement of itself, live like any event.
                self.out.push(Effect::Attach { conn, role });
                self.announce_viewers(attached.changes);
                if let Some(message) = attached.note {
                    self.out.push(Effect::ViewerNotice { conn, message });
                }
            }
            Err(e) => self.protocol_error(conn, e),
        }
    }

    fn announce_viewers(&mut self, changes: Vec<viewers::Change>) {
        for c in changes {
            self.event(RuntimeEvent::Viewer {
                viewer: c.conn,
                name: c.name,
                pid: c.pid,
                role: c.role,
            });
        }
    }

    fn on_viewer_frame(&mut self, conn: ConnId, msg: ToRoot) {
        let cmd = match msg {
            ToRoot::Command { command } => command,
            ToRoot::Unknown => return,
            other => {
                let kind = format!("{other:?}");
                let kind = kind.split([' ', '{']).next().unwrap_or("?").to_owned();
                self.protocol_error(conn, format!("a viewer may send only commands, not {kind}"));
                return;
            }
        };
        match cmd {
            RuntimeCommand::Drive { take_over } => match self.viewers.drive(conn, take_over) {
                Ok(changes) => self.announce_viewers(changes),
                Err(message) => self.out.push(Effect::ViewerNotice { conn, message }),
            },
            RuntimeCommand::Observe => {
                let changes = self.viewers.observe(conn);
                self.announce_viewers(changes);
            }
            RuntimeCommand::HandOver { to } => match self.viewers.hand_over(conn, to) {
                Ok(changes) => self.announce_viewers(changes),
                Err(message) => self.out.push(Effect::ViewerNotice { conn, message }),
            },
            // A viewer's terminal does not decide the size of the actors' terminals.
            RuntimeCommand::Resize { .. } => {}
            cmd => match self.viewers.may(conn, &cmd) {
                Ok(()) => self.on_command(cmd),
                Err(message) => self.out.push(Effect::ViewerNotice { conn, message }),
            },
        }
    }

    fn on_command(&mut self, cmd: RuntimeCommand) {
        match cmd {
            RuntimeCommand::Drive { .. }
            | RuntimeCommand::Observe
            | RuntimeCommand::HandOver { .. } => self.notice(
                None,
                "drive/observe: the root's own front end always drives; these are for attached viewers".into(),
            ),
            RuntimeCommand::Input { data } => match self.lock.holder().cloned() {
                Some(g) => {
                    let actor = g.request.key.actor;
                    // Refused, not queued: a healthy session must never be dropped because
                    // somebody pasted a lot into it.
                    if data.len() > bounds::MAX_INPUT {
                        self.notice(
                            Some(actor),
                            format!(
                                "input of {} bytes refused: the limit is {} bytes",
                                data.len(),
                                bounds::MAX_INPUT
                            ),
                        );
                        return;
                    }
                    let Some(conn) = self.actor_conn.get(&actor).copied() else {
                        return;
                    };
                    if let Some((epoch, w)) = &mut self.holder_watch
                        && *epoch == g.epoch
                    {
                        w.input(self.now);
                    }
                    // Every front end (and the transcript) sees what was typed, whoever
                    // typed it.
                    self.event(RuntimeEvent::ReplInput {
                        actor,
                        task: g.request.key.task,
                        data: data.clone(),
                    });
                    self.out.push(Effect::SendInput {
                        conn,
                        actor,
                        task: g.request.key.task,
                        epoch: g.epoch,
                        data,
                    });
                }
                None => self.notice(None, "input ignored: nobody holds the debug lock".into()),
            },
            RuntimeCommand::Complete { line } => match self.lock.holder().cloned() {
                Some(g) => {
                    self.next_req += 1;
                    let req = self.next_req;
                    let actor = g.request.key.actor;
                    let msg = ToActor::CompleteRequest {
                        task: g.request.key.task,
                        epoch: g.epoch,
                        req,
                        line: line.clone(),
                    };
                    if self.send_to_actor(actor, msg) {
                        self.pending_completions.insert(req, (actor, line));
                    }
                }
                None => self.notice(None, "complete: nobody holds the debug lock".into()),
            },
            RuntimeCommand::ForceRelease => match self.lock.force_release() {
                Some(tr) => {
                    let old = tr.released.as_ref().map(|r| r.grant.request.key.clone());
                    let connected = old
                        .as_ref()
                        .is_some_and(|k| self.actor_conn.contains_key(&k.actor));
                    self.apply(tr);
                    // Say what becomes of the old holder, so the user knows what was done.
                    if let Some(k) = old {
                        let fate = if connected {
                            "was told its lock is revoked: its debugger continues the program \
                             (both clients do), and a later pause asks again"
                        } else {
                            "is not connected, so nothing was told"
                        };
                        self.notice(
                            Some(k.actor),
                            format!(
                                "force release: actor {} (task {}) {fate}; the queue keeps its order",
                                k.actor, k.task
                            ),
                        );
                    }
                }
                None => self.notice(None, "force release: the lock is free".into()),
            },
            RuntimeCommand::Dump { actor } => {
                self.start_dump(actor);
            }
            RuntimeCommand::DumpAll => self.dump_all(),
            RuntimeCommand::Promote { actor, task } => self.reorder(actor, task, true),
            RuntimeCommand::Defer { actor, task } => self.reorder(actor, task, false),
            RuntimeCommand::Skip { actor, task } => {
                if !self.skip(&LockKey { actor, task }, "skip") {
                    self.notice(Some(actor), format!("skip: task {task} of actor {actor} is not waiting"));
                }
            }
            RuntimeCommand::ContinueAll { location, actor } => {
                let n = self.skip_matching(location.as_deref(), actor, "continue_all");
                let what = match (&location, actor) {
                    (Some(l), _) => format!("at {l}"),
                    (None, Some(a)) => format!("of actor {a}"),
                    (None, None) => "(say a location or an actor)".into(),
                };
                self.notice(None, format!("continue all: {n} waiting pauses {what} go on"));
            }
            RuntimeCommand::AutoContinue { location, actor } => {
                if location.is_none() && actor.is_none() {
                    self.notice(None, "auto-continue: say a location or an actor".into());
                    return;
                }
                let n = self.skip_matching(location.as_deref(), actor, "auto_continue");
                let rule = Rule::new(
                    Matcher {
                        location,
                        actor,
                        actor_name: None,
                    },
                    Action::AutoContinue,
                );
                let what = rule.describe();
                self.add_rule(rule);
                self.notice(
                    None,
                    format!("{what}: every pause there goes on from now ({n} waiting now)"),
                );
            }
            RuntimeCommand::CrashLimit { location, first } => {
                let rule = Rule::new(
                    Matcher {
                        location: Some(location.unwrap_or_else(|| "*".into())),
                        ..Matcher::default()
                    },
                    Action::CrashLimit { first },
                );
                self.add_rule(rule);
            }
            RuntimeCommand::RateLimit {
                location,
                at_most,
                per_ms,
            } => {
                let rule = Rule::new(
                    Matcher {
                        location: Some(location.unwrap_or_else(|| "*".into())),
                        ..Matcher::default()
                    },
                    Action::RateLimit { at_most, per_ms },
                );
                self.add_rule(rule);
            }
            RuntimeCommand::ClearRules { rule } => {
                let n = self.admission.clear(rule.as_deref());
                self.notice(None, format!("rules: {n} removed"));
                self.emit_rules();
            }
            RuntimeCommand::Rules => self.emit_rules(),
            RuntimeCommand::Report => {
                let html = self.report_html();
                self.out.push(Effect::SaveReport { html });
            }
            RuntimeCommand::Freeze => self.freeze(true),
            RuntimeCommand::Thaw => self.freeze(false),
            RuntimeCommand::Cancel { actor, force } => self.cancel_subtree(actor, force),
            RuntimeCommand::Interrupt { actor } => self.interrupt(actor),
            RuntimeCommand::Stdin { actor, data } => {
                let has_terminal = self
                    .tree
                    .get(actor)
                    .is_some_and(|n| n.spawned && n.exited.is_none());
                if !has_terminal {
                    self.notice(
                        Some(actor),
                        format!("stdin: actor {actor} has no terminal of ours (not spawned by the root, or gone)"),
                    );
                } else if data.len() > bounds::MAX_INPUT {
                    self.notice(
                        Some(actor),
                        format!(
                            "stdin of {} bytes refused: the limit is {} bytes",
                            data.len(),
                            bounds::MAX_INPUT
                        ),
                    );
                } else {
                    self.out.push(Effect::WritePty {
                        actor,
                        data: data.into_bytes(),
                    });
                }
            }
            RuntimeCommand::Resize { rows, cols } => self.out.push(Effect::Resize {
                rows: rows.max(1),
                cols: cols.max(1),
            }),
            RuntimeCommand::Quit => {
                if self.frozen {
                    self.freeze(false);
                }
                self.quitting = true;
                let involved: Vec<ActorId> = self.lock.involved_actors().collect();
                let tr = self.lock.remove_actors(&involved, ReleaseCause::Cancel);
                self.apply(tr);
                let tops: Vec<ActorId> = self
                    .tree
                    .iter()
                    .filter(|n| n.parent.is_none())
                    .map(|n| n.id)
                    .collect();
                for id in tops {
                    self.cancel_subtree(id, false);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! The core driven with made-up inputs and virtual time: `After` effects become timers
    //! that `advance` fires in order, so grace periods cost nothing.

    use super::*;
    use crate::proto::Reason;
    use std::collections::VecDeque;

    const GRACE: Duration = Duration::from_secs(2);

    struct Sim {
        core: Core,
        now: Instant,
        timers: Vec<(Instant, Input)>,
        /// Every effect so far, in order.
        log: Vec<Effect>,
    }

    impl Sim {
        fn new() -> Self {
            let now = Instant::now();
            Self {
                core: Core::new(GRACE, now),
                now,
                timers: Vec::new(),
                log: Vec::new(),
            }
        }

        /// Feeds one input; effects that come back as inputs (spawns) are answered at once.
        fn feed(&mut self, input: Input) -> Vec<Effect> {
            let mut out = Vec::new();
            let mut queue = VecDeque::from([input]);
            while let Some(i) = queue.pop_front() {
                for e in self.core.handle(self.now, i) {
                    match &e {
                        Effect::After { delay, input } => {
                            self.timers.push((self.now + *delay, input.clone()))
                        }
                        Effect::Spawn(req) => {
                            // Pids follow ids: actor N gets pid 100 * N.
                            let pid = 100 * u32::try_from(req.id.0).expect("small id");
                            queue.push_front(Input::Spawned {
                                req: req.clone(),
                                result: Ok(pid),
                            });
                        }
                        _ => {}
                    }
                    out.push(e);
                }
            }
            self.log.extend(out.iter().cloned());
            out
        }

        /// Moves the clock, firing due timers in time order.
        fn advance(&mut self, d: Duration) -> Vec<Effect> {
            let until = self.now + d;
            let mut out = Vec::new();
            loop {
                self.timers.sort_by_key(|(t, _)| *t);
                match self.timers.first() {
                    Some((t, _)) if *t <= until => {
                        let (t, input) = self.timers.remove(0);
                        self.now = t;
                        out.extend(self.feed(input));
                    }
                    _ => break,
                }
            }
            self.now = until;
            out
        }

        /// Starts the first program (actor 1, pid 100), not connected yet.
        fn spawn_first(&mut self) {
            let req = self
                .core
                .first_spawn("top".into(), "top".into(), vec![], vec![]);
            self.feed(Input::Spawned {
                req,
                result: Ok(100),
            });
        }

        /// Starts the first program and connects it on conn 1.
        fn first(&mut self) {
            self.spawn_first();
            self.connect(1, 100, Some("1"), true);
        }

        /// The first program exits with `code`.
        fn first_exits(&mut self, code: i32) -> Vec<Effect> {
            self.feed(Input::ChildExited {
                actor: ActorId(1),
                exit: Exit {
                    code: Some(code),
                    ..Exit::default()
                },
            })
        }

        /// A connection from `pid` that registers, claiming `claim`.
        fn connect(
            &mut self,
            conn: ConnId,
            pid: u32,
            claim: Option<&str>,
            signalable: bool,
        ) -> String {
            self.connect_under(conn, pid, claim, signalable, vec![])
        }

        fn connect_under(
            &mut self,
            conn: ConnId,
            pid: u32,
            claim: Option<&str>,
            signalable: bool,
            ancestry: Vec<u32>,
        ) -> String {
            self.connect_in(conn, pid, claim, signalable, ancestry, None)
        }

        /// Like [`Sim::connect_under`], registering in `group` (`register`'s `group`).
        fn connect_in(
            &mut self,
            conn: ConnId,
            pid: u32,
            claim: Option<&str>,
            signalable: bool,
            ancestry: Vec<u32>,
            group: Option<&str>,
        ) -> String {
            self.feed(Input::Opened {
                conn,
                peer_pid: Some(pid),
                signalable,
                ancestry,
                remote: None,
            });
            let out = self.feed(Input::Frame {
                conn,
                msg: ToRoot::Register {
                    name: format!("p{pid}"),
                    pid,
                    actor: claim.map(str::to_owned),
                    group: group.map(str::to_owned),
                },
            });
            out.iter()
                .find_map(|e| match e {
                    Effect::Send {
                        msg: ToActor::Registered { actor, .. },
                        ..
                    } => Some(actor.clone()),
                    _ => None,
                })
                .expect("registered")
        }

        /// Actor on `conn` spawns a child; returns its id. The child connects on `child_conn`.
        fn spawn_child(&mut self, conn: ConnId, child_conn: ConnId) -> String {
            let out = self.feed(Input::Frame {
                conn,
                msg: ToRoot::Spawn {
                    req: 1,
                    name: "child".into(),
                    program: "child".into(),
                    args: vec![],
                    env: None,
                    cwd: None,
                },
            });
            let id = out
                .iter()
                .find_map(|e| match e {
                    Effect::Send {
                        msg: ToActor::Spawned { actor, .. },
                        ..
                    } => Some(actor.clone()),
                    _ => None,
                })
                .expect("spawned");
            let pid = 100 * id.parse::<u32>().expect("id");
            assert_eq!(self.connect(child_conn, pid, Some(&id), true), id);
            id
        }

        fn request(&mut self, conn: ConnId, task: u64) -> Vec<Effect> {
            self.feed(Input::Frame {
                conn,
                msg: ToRoot::LockRequest {
                    task,
                    task_name: "main".into(),
                    reason: Reason::Pause,
                    location: "x.rs:1".into(),
                    peek: None,
                },
            })
        }

        fn release(&mut self, conn: ConnId, task: u64, epoch: u64) -> Vec<Effect> {
            self.feed(Input::Frame {
                conn,
                msg: ToRoot::LockRelease {
                    task,
                    epoch,
                    how: ReleaseHow::Continue,
                    step_timeout: false,
                },
            })
        }
    }

    fn signals(effects: &[Effect]) -> Vec<(ActorId, Sig)> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Signal { actor, sig, .. } => Some((*actor, *sig)),
                _ => None,
            })
            .collect()
    }

    fn events(effects: &[Effect]) -> Vec<&RuntimeEvent> {
        effects
            .iter()
            .filter_map(|e| match e {
                Effect::Event(ev) => Some(ev),
                _ => None,
            })
            .collect()
    }

    fn granted_epoch(effects: &[Effect]) -> Option<u64> {
        events(effects).into_iter().find_map(|ev| match ev {
            RuntimeEvent::LockGranted { epoch, .. } => Some(*epoch),
            _ => None,
        })
    }

    fn cancel_sent(effects: &[Effect], conn: ConnId) -> bool {
        effects.iter().any(
            |e| matches!(e, Effect::Send { conn: c, msg: ToActor::Cancel { .. } } if *c == conn),
        )
    }

    /// top (1) -> mid (2) -> leaf (3), each connected on the conn of its number.
    fn three_levels() -> Sim {
        let mut s = Sim::new();
        s.first();
        assert_eq!(s.spawn_child(1, 2), "2");
        assert_eq!(s.spawn_child(2, 3), "3");
        s
    }

    /// Registers conn `conn` from `pid` (descending from the first program) in `group`;
    /// its new actor id.
    fn register_in_group(s: &mut Sim, conn: ConnId, pid: u32, group: &str) -> ActorId {
        s.connect_in(conn, pid, None, true, vec![pid - 1, 100], Some(group))
            .parse()
            .expect("an actor id")
    }

    #[test]
    fn actors_of_one_group_share_one_node_under_their_parent() {
        let mut s = Sim::new();
        s.first();
        let a = register_in_group(&mut s, 2, 201, "ray node a");
        let b = register_in_group(&mut s, 3, 301, "ray node a");
        let c = register_in_group(&mut s, 4, 401, "ray node b");
        let parent_in = |s: &Sim, id: ActorId| s.core.tree.get(id).and_then(|n| n.parent);
        let parent = |id: ActorId| parent_in(&s, id);
        let node_a = parent(a).expect("a has a parent");
        assert_eq!(parent(b), Some(node_a), "one node per group");
        let node_b = parent(c).expect("c has a parent");
        assert_ne!(node_a, node_b);
        for node in [node_a, node_b] {
            let n = s.core.tree.get(node).expect("group node");
            assert_eq!(
                parent(node),
                Some(ActorId(1)),
                "under the actor they descend from"
            );
            assert_eq!((n.pid, n.connected), (0, false), "no process of its own");
        }
        assert_eq!(
            s.core.tree.get(node_a).map(|n| n.name.as_str()),
            Some("ray node a")
        );
        // Past the bound, actors go under their parent itself.
        for i in 0..MAX_GROUPS {
            s.core
                .groups
                .insert((None, format!("filler {i}")), ActorId(1));
        }
        let d = register_in_group(&mut s, 5, 501, "ray node c");
        assert_eq!(parent_in(&s, d), Some(ActorId(1)));
    }

    #[test]
    fn a_holders_lineage_is_never_signalled_until_the_session_ends() {
        let mut s = three_levels();
        let epoch = granted_epoch(&s.request(3, 1)).expect("leaf granted");
        let out = s.feed(Input::Command(RuntimeCommand::Cancel {
            actor: ActorId(1),
            force: false,
        }));
        let waiting: Vec<&RuntimeEvent> = events(&out)
            .into_iter()
            .filter(|e| matches!(e, RuntimeEvent::TeardownWaiting { .. }))
            .collect();
        assert_eq!(waiting.len(), 3, "top, mid and leaf all wait");
        assert!(!cancel_sent(&out, 1) && !cancel_sent(&out, 3));
        let later = s.advance(GRACE * 10);
        assert!(
            signals(&later).is_empty(),
            "nothing signalled while debugging"
        );
        // The session ends: teardown goes on, polite first.
        let out = s.release(3, 1, epoch);
        assert!(cancel_sent(&out, 1) && cancel_sent(&out, 2) && cancel_sent(&out, 3));
        assert!(signals(&out).is_empty());
        let term = s.advance(GRACE);
        assert_eq!(
            signals(&term),
            vec![
                (ActorId(1), Sig::Term),
                (ActorId(2), Sig::Term),
                (ActorId(3), Sig::Term)
            ]
        );
        let kill = s.advance(GRACE);
        assert_eq!(signals(&kill).len(), 3);
        assert!(signals(&kill).iter().all(|(_, sig)| *sig == Sig::Kill));
    }

    #[test]
    fn escalation_waits_while_protected_and_resumes_after_release() {
        let mut s = three_levels();
        let out = s.feed(Input::Command(RuntimeCommand::Cancel {
            actor: ActorId(3),
            force: false,
        }));
        assert!(cancel_sent(&out, 3), "nobody debugs yet: asked at once");
        // It enters the debugger before the grace period is over.
        let epoch = granted_epoch(&s.request(3, 1)).expect("granted");
        let out = s.advance(GRACE * 5);
        assert!(signals(&out).is_empty(), "no SIGTERM into a session");
        assert!(
            events(&out).iter().any(
                |e| matches!(e, RuntimeEvent::TeardownWaiting { actor } if *actor == ActorId(3))
            )
        );
        s.release(3, 1, epoch);
        let out = s.advance(GRACE);
        assert_eq!(signals(&out), vec![(ActorId(3), Sig::Term)]);
    }

    #[test]
    fn an_actor_that_joins_during_teardown_is_cancelled() {
        let mut s = Sim::new();
        s.first();
        s.first_exits(0);
        s.feed(Input::Closed {
            conn: 1,
            error: None,
        });
        // A helper the program left behind connects late.
        s.feed(Input::Opened {
            conn: 9,
            peer_pid: Some(900),
            signalable: true,
            ancestry: vec![],
            remote: None,
        });
        let out = s.feed(Input::Frame {
            conn: 9,
            msg: ToRoot::Register {
                name: "late".into(),
                pid: 900,
                actor: None,
                group: None,
            },
        });
        assert!(cancel_sent(&out, 9), "the late joiner is told to go");
        assert!(!s.core.finished(), "the run waits for it");
        let out = s.advance(GRACE * 2);
        assert_eq!(
            signals(&out).len(),
            2,
            "SIGTERM then SIGKILL through its pidfd"
        );
        assert!(out.contains(&Effect::Close { conn: 9 }));
        assert!(s.core.finished());
        assert_eq!(s.core.exit_code(), 0);
    }

    #[test]
    fn a_stale_epoch_release_is_ignored() {
        let mut s = Sim::new();
        s.first();
        s.connect(5, 500, None, true);
        let old = granted_epoch(&s.request(1, 1)).expect("first granted");
        s.request(5, 1);
        let out = s.feed(Input::Command(RuntimeCommand::ForceRelease));
        assert!(out.contains(&Effect::Send {
            conn: 1,
            msg: ToActor::LockRevoked {
                task: 1,
                epoch: old
            }
        }));
        let new = granted_epoch(&out).expect("waiter granted");
        let out = s.release(1, 1, old);
        assert!(events(&out).iter().any(
            |e| matches!(e, RuntimeEvent::Notice { message, .. } if message.contains("ignored release"))
        ));
        let holder = s.core.lock().holder().expect("held");
        assert_eq!((holder.request.key.actor, holder.epoch), (ActorId(2), new));
    }

    #[test]
    fn a_registration_takes_its_reservation_once_and_aliases_take_none() {
        let mut s = Sim::new();
        s.first();
        // The reservation is taken: a second claim of "1", even from its pid, is a new actor.
        let again = s.connect(2, 100, Some("1"), true);
        assert_eq!(again, "2");
        // A non-canonical spelling matches nothing.
        let mut s = Sim::new();
        s.spawn_first();
        assert_eq!(s.connect(1, 100, Some("01"), true), "2");
        assert_eq!(
            s.connect(2, 100, Some("1"), true),
            "1",
            "the real one still can"
        );
    }

    #[test]
    fn placement_by_pid_survives_an_extra_connection_going_away() {
        let mut s = Sim::new();
        s.first();
        // The program opens an extra connection, which closes again.
        let extra = s.connect(2, 100, None, true);
        assert_eq!(
            s.core
                .tree()
                .get(extra.parse().expect("id"))
                .and_then(|n| n.parent),
            Some(ActorId(1))
        );
        s.feed(Input::Closed {
            conn: 2,
            error: None,
        });
        // A subprocess of the program connects: it still lands under the program.
        let child = s.connect_under(3, 150, None, true, vec![100, 1]);
        assert_eq!(
            s.core
                .tree()
                .get(child.parse().expect("id"))
                .and_then(|n| n.parent),
            Some(ActorId(1))
        );
    }

    #[test]
    fn quit_with_a_queue_revokes_refuses_and_tears_down_without_waiting() {
        let mut s = Sim::new();
        s.first();
        s.connect(2, 200, None, true);
        s.connect(3, 300, None, true);
        let epoch = granted_epoch(&s.request(1, 1)).expect("granted");
        s.request(2, 1);
        s.request(3, 1);
        let out = s.feed(Input::Command(RuntimeCommand::Quit));
        assert!(out.contains(&Effect::Send {
            conn: 1,
            msg: ToActor::LockRevoked { task: 1, epoch }
        }));
        for conn in [2, 3] {
            assert!(out.iter().any(|e| matches!(e,
                Effect::Send { conn: c, msg: ToActor::LockRefused { .. } } if *c == conn)));
        }
        let dropped = events(&out)
            .iter()
            .filter(|e| {
                matches!(
                    e,
                    RuntimeEvent::LockDropped {
                        cause: ReleaseCause::Cancel,
                        ..
                    }
                )
            })
            .count();
        assert_eq!(dropped, 2);
        assert!(cancel_sent(&out, 1) && cancel_sent(&out, 2) && cancel_sent(&out, 3));
        assert!(s.core.lock().is_idle());
        // New requests are refused while quitting.
        let out = s.request(2, 2);
        assert!(events(&out).iter().any(
            |e| matches!(e, RuntimeEvent::LockRefused { error, .. } if error.contains("quitting"))
        ));
    }

    #[test]
    fn a_stopped_holder_is_suspect_and_force_release_hands_over() {
        let mut s = Sim::new();
        s.first();
        s.connect(2, 200, None, true);
        granted_epoch(&s.request(1, 1)).expect("granted");
        s.request(2, 1);
        let out = s.feed(Input::Watch {
            holder_state: Some('T'),
        });
        assert!(events(&out).iter().any(|e| matches!(e,
            RuntimeEvent::LockSuspect { actor, why: crate::runtime::suspect::Why::Stopped, .. } if *actor == ActorId(1))));
        assert_eq!(
            s.core.lock().holder().map(|g| g.request.key.actor),
            Some(ActorId(1)),
            "suspect is a warning, not a release"
        );
        let out = s.feed(Input::Command(RuntimeCommand::ForceRelease));
        assert!(events(&out).iter().any(|e| matches!(
            e,
            RuntimeEvent::LockReleased {
                cause: ReleaseCause::Force,
                ..
            }
        )));
        assert!(
            events(&out).iter().any(
                |e| matches!(e, RuntimeEvent::LockGranted { actor, .. } if *actor == ActorId(2))
            )
        );
    }

    #[test]
    fn a_full_peer_is_dropped_through_a_new_input_and_the_lock_moves_on() {
        let mut s = Sim::new();
        s.first();
        s.connect(2, 200, None, true);
        granted_epoch(&s.request(1, 1)).expect("granted");
        s.request(2, 1);
        let out = s.feed(Input::PeerFull {
            conn: 1,
            why: "4096 frames unread".into(),
        });
        assert!(out.contains(&Effect::Close { conn: 1 }));
        assert!(events(&out).iter().any(|e| matches!(
            e,
            RuntimeEvent::LockReleased {
                cause: ReleaseCause::Disconnect,
                ..
            }
        )));
        assert_eq!(granted_epoch(&out), Some(2));
    }

    #[test]
    fn an_actor_from_outside_the_tree_is_asked_then_disconnected_never_signalled() {
        let mut s = Sim::new();
        s.first();
        s.connect(7, 7000, None, false);
        let mut out = s.feed(Input::Command(RuntimeCommand::Quit));
        out.extend(s.advance(GRACE * 3));
        assert!(cancel_sent(&out, 7));
        assert!(
            !signals(&out).iter().any(|(a, _)| *a == ActorId(2)),
            "the outsider got a signal: {:?}",
            signals(&out)
        );
        assert!(out.contains(&Effect::Close { conn: 7 }));
    }

    #[test]
    fn a_dump_reply_counts_only_from_the_asked_actor() {
        let mut s = Sim::new();
        s.first();
        s.connect(2, 200, None, true);
        let out = s.feed(Input::Command(RuntimeCommand::Dump { actor: ActorId(1) }));
        let req = out
            .iter()
            .find_map(|e| match e {
                Effect::Send {
                    msg: ToActor::DumpRequest { req },
                    ..
                } => Some(*req),
                _ => None,
            })
            .expect("asked");
        let forged = s.feed(Input::Frame {
            conn: 2,
            msg: ToRoot::DumpReply {
                req,
                text: "forged".into(),
            },
        });
        assert!(
            !events(&forged)
                .iter()
                .any(|e| matches!(e, RuntimeEvent::Dump { .. }))
        );
        let real = s.feed(Input::Frame {
            conn: 1,
            msg: ToRoot::DumpReply {
                req,
                text: "real".into(),
            },
        });
        // The real answer goes to the dump's ladder, which shows it with its facts.
        assert!(real.iter().any(
            |e| matches!(e, Effect::DumpAnswer { req: r, text } if *r == req && text == "real")
        ));
        assert!(
            !forged
                .iter()
                .any(|e| matches!(e, Effect::DumpAnswer { .. }))
        );
        let done = s.feed(Input::DumpDone {
            req,
            actor: ActorId(1),
            text: "answered by: cooperative\nreal".into(),
            step: "cooperative".into(),
            signature: None,
        });
        assert!(events(&done).iter().any(|e| matches!(e,
            RuntimeEvent::Dump { actor, step: Some(st), .. } if *actor == ActorId(1) && st == "cooperative")));
    }

    #[test]
    fn an_exit_that_overtakes_its_register_still_finds_its_reservation() {
        let mut s = Sim::new();
        s.spawn_first();
        // The exit is handled before the frames it sent first.
        s.first_exits(2);
        assert_eq!(
            s.connect(1, 100, Some("1"), true),
            "1",
            "not a phantom actor"
        );
        s.feed(Input::Frame {
            conn: 1,
            msg: ToRoot::Exiting {
                code: 2,
                reason: crate::proto::ExitReason::Crash,
            },
        });
        let out = s.advance(EXIT_DEADLINE);
        assert!(
            out.contains(&Effect::Close { conn: 1 }),
            "the exited actor's socket is closed"
        );
        assert!(events(&out).iter().any(|e| matches!(e,
            RuntimeEvent::ActorExited { actor, exit } if *actor == ActorId(1)
                && exit.reason == Some(crate::proto::ExitReason::Crash))));
        assert!(s.core.finished());
        assert_eq!(s.core.exit_code(), 2);
    }

    #[test]
    fn a_fork_holding_a_spawned_actors_socket_is_cut_off_after_the_exit() {
        let mut s = Sim::new();
        s.first();
        s.first_exits(0);
        // A fork keeps the connection and asks for the lock as the dead actor.
        let out = s.advance(EXIT_DEADLINE);
        assert!(out.contains(&Effect::Close { conn: 1 }));
        let late = s.request(1, 1);
        assert!(
            granted_epoch(&late).is_none(),
            "a closed connection gets nothing"
        );
        assert!(s.core.finished());
    }

    #[test]
    fn a_protected_teardown_rechecks_at_a_bounded_rate_even_with_no_grace() {
        let mut s = Sim {
            core: Core::new(Duration::ZERO, Instant::now()),
            ..Sim::new()
        };
        s.first();
        s.feed(Input::Command(RuntimeCommand::Cancel {
            actor: ActorId(1),
            force: false,
        }));
        // It enters the debugger during its teardown.
        granted_epoch(&s.request(1, 1)).expect("granted");
        s.advance(Duration::ZERO);
        let rechecks = s
            .timers
            .iter()
            .filter(|(t, i)| matches!(i, Input::Escalate { .. }) && *t >= s.now + PROTECTED_RECHECK)
            .count();
        assert_eq!(rechecks, 1, "one re-check, not a busy loop: {:?}", s.timers);
    }

    #[test]
    fn an_actor_we_did_not_spawn_ends_with_the_code_it_announced() {
        let mut s = Sim::new();
        s.first();
        let id = s.connect(5, 500, None, true);
        s.feed(Input::Frame {
            conn: 5,
            msg: ToRoot::Exiting {
                code: 3,
                reason: crate::proto::ExitReason::Crash,
            },
        });
        let out = s.feed(Input::Closed {
            conn: 5,
            error: None,
        });
        let id: ActorId = id.parse().expect("id");
        assert!(events(&out).iter().any(|e| matches!(e,
            RuntimeEvent::ActorExited { actor, exit } if *actor == id
                && exit.code == Some(3)
                && exit.reason == Some(crate::proto::ExitReason::Crash))));
    }

    fn notice_text(effects: &[Effect]) -> Vec<String> {
        events(effects)
            .into_iter()
            .filter_map(|e| match e {
                RuntimeEvent::Notice { message, .. } => Some(message.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn an_interrupt_reaches_a_connected_actor_and_is_refused_with_a_reason_otherwise() {
        let mut s = Sim::new();
        s.spawn_first();
        let interrupt = |s: &mut Sim, id: u64| {
            s.feed(Input::Command(RuntimeCommand::Interrupt {
                actor: ActorId(id),
            }))
        };
        let out = interrupt(&mut s, 1);
        assert!(notice_text(&out)[0].contains("not connected"), "{out:?}");
        assert!(notice_text(&interrupt(&mut s, 9))[0].contains("no actor 9"));
        s.connect(1, 100, Some("1"), true);
        let out = interrupt(&mut s, 1);
        assert!(
            out.iter().any(|e| matches!(
                e,
                Effect::Send {
                    conn: 1,
                    msg: ToActor::Interrupt
                }
            )),
            "{out:?}"
        );
        // Already in the debugger: nothing is sent.
        s.request(1, 7);
        let out = interrupt(&mut s, 1);
        assert!(notice_text(&out)[0].contains("already holds"), "{out:?}");
        assert!(!out.iter().any(|e| matches!(e, Effect::Send { .. })));
    }

    #[test]
    fn a_step_timeout_release_has_its_own_cause_and_a_notice() {
        let mut s = Sim::new();
        s.first();
        let epoch = granted_epoch(&s.request(1, 1)).expect("granted");
        let out = s.feed(Input::Frame {
            conn: 1,
            msg: ToRoot::LockRelease {
                task: 1,
                epoch,
                how: ReleaseHow::Continue,
                step_timeout: true,
            },
        });
        assert!(events(&out).iter().any(|e| matches!(
            e,
            RuntimeEvent::LockReleased {
                cause: ReleaseCause::StepTimeout,
                ..
            }
        )));
        assert!(notice_text(&out)[0].contains("step timeout"));
    }

    #[test]
    fn the_holder_moving_to_another_task_updates_the_grant_but_a_stale_epoch_does_not() {
        let mut s = Sim::new();
        s.first();
        let epoch = granted_epoch(&s.request(1, 1)).expect("granted");
        let moved = |s: &mut Sim, epoch: u64| {
            s.feed(Input::Frame {
                conn: 1,
                msg: ToRoot::ReplWhere {
                    task: 1,
                    epoch,
                    task_name: "Task-2".into(),
                    location: "app.py:9".into(),
                },
            })
        };
        assert!(events(&moved(&mut s, epoch + 1)).is_empty());
        let out = moved(&mut s, epoch);
        assert!(events(&out).iter().any(|e| matches!(
            e,
            RuntimeEvent::LockMoved { task_name, location, .. }
                if task_name == "Task-2" && location == "app.py:9"
        )));
        let holder = s.core.lock.holder().expect("held");
        assert_eq!(holder.request.task_name, "Task-2");
        assert_eq!(holder.request.location, "app.py:9");
    }

    #[test]
    fn remote_peers_are_what_their_ticket_says() {
        use crate::remote::Kind;
        let mut s = Sim::new();
        s.first();
        let open = |s: &mut Sim, conn: ConnId, kind: Kind| {
            s.feed(Input::Opened {
                conn,
                peer_pid: None,
                signalable: false,
                ancestry: vec![],
                remote: Some(RemotePeer {
                    kind,
                    addr: "10.0.0.2:5000".into(),
                }),
            });
        };
        let register = |name: &str| ToRoot::Register {
            name: name.into(),
            pid: 4242,
            actor: Some("1".into()),
            group: None,
        };
        // An actor's ticket registers, with no pid of ours, its address in its name, and no
        // claim on a local reservation.
        open(&mut s, 20, Kind::Actor);
        let out = s.feed(Input::Frame {
            conn: 20,
            msg: register("w"),
        });
        let starts: Vec<_> = out
            .iter()
            .filter_map(|e| match e {
                Effect::Event(RuntimeEvent::ActorStarted {
                    actor,
                    name,
                    pid,
                    parent,
                }) => Some((*actor, name.clone(), *pid, *parent)),
                _ => None,
            })
            .collect();
        // First its host's node, then the actor under it.
        assert_eq!(starts.len(), 2, "{starts:?}");
        let (host, hname, hpid, hparent) = starts[0].clone();
        assert_eq!((hname.as_str(), hpid, hparent), ("host 10.0.0.2", 0, None));
        let (id, name, pid, parent) = starts[1].clone();
        assert_ne!(id, ActorId(1));
        assert_eq!(
            (name.as_str(), pid, parent),
            ("w@10.0.0.2:5000", 0, Some(host))
        );
        // A second actor from that host joins the same node.
        open(&mut s, 24, Kind::Actor);
        let out = s.feed(Input::Frame {
            conn: 24,
            msg: register("w2"),
        });
        assert!(out.iter().any(|e| matches!(e, Effect::Event(RuntimeEvent::ActorStarted { parent, .. }) if *parent == Some(host))));
        assert_eq!(
            out.iter()
                .filter(|e| matches!(e, Effect::Event(RuntimeEvent::ActorStarted { .. })))
                .count(),
            1
        );
        // It cannot have the root spawn programs.
        let out = s.feed(Input::Frame {
            conn: 20,
            msg: ToRoot::Spawn {
                req: 3,
                name: "x".into(),
                program: "/bin/sh".into(),
                args: vec![],
                env: None,
                cwd: None,
            },
        });
        assert!(out.iter().any(|e| matches!(
            e,
            Effect::Send {
                msg: ToActor::SpawnFailed { req: 3, .. },
                ..
            }
        )));
        assert!(!out.iter().any(|e| matches!(e, Effect::Spawn(_))));
        // A viewer's ticket cannot register, an actor's cannot attach.
        open(&mut s, 21, Kind::Observer);
        let out = s.feed(Input::Frame {
            conn: 21,
            msg: register("sneaky"),
        });
        assert!(out.iter().any(|e| matches!(e, Effect::Close { conn: 21 })));
        open(&mut s, 22, Kind::Actor);
        let out = s.feed(Input::Frame {
            conn: 22,
            msg: ToRoot::Attach {
                name: "v".into(),
                driver: true,
                take_over: true,
            },
        });
        assert!(out.iter().any(|e| matches!(e, Effect::Close { conn: 22 })));
        // An observer's ticket attaches, and stays an observer whatever it asks.
        open(&mut s, 23, Kind::Observer);
        let out = s.feed(Input::Frame {
            conn: 23,
            msg: ToRoot::Attach {
                name: "o".into(),
                driver: true,
                take_over: true,
            },
        });
        assert!(out.iter().any(|e| matches!(
            e,
            Effect::Attach {
                conn: 23,
                role: ViewerRole::Observer
            }
        )));
        let out = s.feed(Input::Frame {
            conn: 23,
            msg: ToRoot::Command {
                command: RuntimeCommand::Drive { take_over: true },
            },
        });
        assert!(out.iter().any(|e| matches!(e, Effect::ViewerNotice { conn: 23, message } if message.contains("observer's ticket"))));
    }

    #[test]
    fn lock_requests_past_the_rate_are_refused_to_the_peer_only() {
        let mut s = Sim::new();
        s.first();
        let burst = bounds::LOCK_REQUEST_BURST as u64;
        let (mut requested, mut rated) = (0, 0);
        for task in 0..burst + 50 {
            let out = s.feed(Input::Frame {
                conn: 1,
                msg: ToRoot::LockRequest {
                    task,
                    task_name: "t".into(),
                    reason: Reason::Pause,
                    location: "x".into(),
                    peek: None,
                },
            });
            for e in &out {
                match e {
                    Effect::Event(RuntimeEvent::LockRequested { .. }) => requested += 1,
                    Effect::Send {
                        msg: ToActor::LockRefused { error, .. },
                        ..
                    } if error.contains("too many lock requests") => rated += 1,
                    _ => {}
                }
            }
        }
        assert_eq!((requested, rated), (burst, 50));
        // A second later there is room again.
        s.now += Duration::from_secs(1);
        let out = s.feed(Input::Frame {
            conn: 1,
            msg: ToRoot::LockRequest {
                task: 9999,
                task_name: "t".into(),
                reason: Reason::Pause,
                location: "x".into(),
                peek: None,
            },
        });
        assert!(
            out.iter()
                .any(|e| matches!(e, Effect::Event(RuntimeEvent::LockRequested { .. })))
        );
    }

    #[test]
    fn a_frozen_tree_stops_every_actor_and_its_holder_is_not_suspect() {
        let mut s = Sim::new();
        s.first();
        let out = s.feed(Input::Frame {
            conn: 1,
            msg: ToRoot::LockRequest {
                task: 1,
                task_name: "main".into(),
                reason: Reason::Pause,
                location: "x".into(),
                peek: None,
            },
        });
        assert!(
            events(&out)
                .iter()
                .any(|e| matches!(e, RuntimeEvent::LockGranted { .. }))
        );
        let out = s.feed(Input::Command(RuntimeCommand::Freeze));
        assert!(
            out.iter()
                .any(|e| matches!(e, Effect::Signal { sig: Sig::Stop, .. }))
        );
        assert!(events(&out).contains(&&RuntimeEvent::Frozen { frozen: true }));
        // Stopped for minutes on purpose: never suspect.
        s.now += Duration::from_secs(120);
        let out = s.feed(Input::Watch {
            holder_state: Some('T'),
        });
        assert!(
            !events(&out)
                .iter()
                .any(|e| matches!(e, RuntimeEvent::LockSuspect { .. }))
        );
        // Cancelling thaws first, so the Cancel frame and SIGTERM can be acted on.
        let out = s.feed(Input::Command(RuntimeCommand::Cancel {
            actor: ActorId(1),
            force: false,
        }));
        assert!(
            out.iter()
                .any(|e| matches!(e, Effect::Signal { sig: Sig::Cont, .. }))
        );
        assert!(events(&out).contains(&&RuntimeEvent::Frozen { frozen: false }));
    }
}
