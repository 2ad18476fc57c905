//! The engine: the shell around the pure [`Core`]. It runs the one `select!` loop over
//! connections, timers, child exits and front-end commands, turns each into a core
//! [`Input`], and carries out the [`Effect`]s the core returns: frames to peers (with their
//! budgets), events to the front end, signals (process groups and pidfds), timers, spawns.
//! Anything an effect causes (a full peer, a spawn's result, refused input) is queued as the
//! next input, so the core is never re-entered mid-transition.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::sync::mpsc;

use super::RuntimeConfig;
use super::bounds;
use super::core::{ConnId, Core, EXIT_DEADLINE, Effect, INPUT_CHUNK, Input, Sig, SignalTarget};
use super::event::{RuntimeCommand, RuntimeEvent};
use super::event_queue::EventSender;
use super::inspect;
use super::private_dir::PrivateDir;
use super::procs::{self, PidFd};
use super::server::{ConnEvent, PeerSendError, PeerTx};
use super::spawn::{Output, Proc, Spawner};
use crate::proto::{ActorId, ToActor};

/// A watch tick's look at the actors (terminal readers, activity samples), sent back from
/// the blocking thread it ran on. It reads `/proc`: a pass over every process costs about
/// 1 ms here and grows with the machine's processes and the tree's actors, and on the loop
/// it held up every frame behind it. (Reaping orphans on the loop by a pass over `/proc`
/// at every SIGCHLD made a lock handoff that met an actor's exit 2-3x as slow.)
struct Looked {
    reading: Vec<(ActorId, bool)>,
    samples: Vec<(ActorId, u64, Option<u64>)>,
}

/// One look at the actors, prepared on the loop (what needs the engine's state: PTY handles,
/// output counts) and finished on a blocking thread (what reads `/proc`).
struct ActorsLook {
    /// Actor, its terminal and the terminal's foreground process group.
    terminals: Vec<(ActorId, PathBuf, u32)>,
    /// Actor, pid, output bytes so far (spawned actors).
    watched: Vec<(ActorId, u32, Option<u64>)>,
}

impl ActorsLook {
    fn run(self) -> Looked {
        let reading = if self.terminals.is_empty() {
            Vec::new()
        } else {
            // One pass over /proc for all actors, not one per actor.
            let groups = procs::process_groups();
            self.terminals
                .into_iter()
                .map(|(actor, tty, fg)| {
                    let reading = groups
                        .get(&fg)
                        .is_some_and(|m| m.iter().any(|&pid| procs::reading_terminal(pid, &tty)));
                    (actor, reading)
                })
                .collect()
        };
        let samples = self
            .watched
            .into_iter()
            .filter_map(|(actor, pid, output)| Some((actor, procs::cpu_ticks(pid)?, output)))
            .collect();
        Looked { reading, samples }
    }
}

/// A connection as the shell holds it: how to reach the peer, and how to signal it.
#[derive(Debug)]
struct Conn {
    tx: PeerTx,
    /// Set once the peer went over its budget, so it is reported once.
    full: bool,
    /// For a peer that descends from the root: the only way it is ever signalled.
    pidfd: Option<Arc<PidFd>>,
    /// The task waiting for that process's exit; aborted with the connection, so a process
    /// that reconnects many times does not pile up watchers and descriptors.
    watcher: Option<tokio::task::AbortHandle>,
    /// Dropping it makes the connection's reader stop.
    _hangup: tokio::sync::oneshot::Sender<()>,
}

/// Where this run's transcripts go.
#[derive(Debug)]
struct TranscriptDir {
    path: PathBuf,
    /// Under the state directory: its missing parents may be made.
    under_state: bool,
    /// The directory, once made and verified.
    made: Option<PrivateDir>,
}

pub(super) struct Engine {
    core: Core,
    spawner: Spawner,
    /// Never awaited: control events must not wait on a slow front end.
    events: EventSender,
    /// Kept so the server's accept loop lives as long as the engine does.
    _conn_tx: mpsc::Sender<ConnEvent>,
    /// Timers, child waiters and pidfd watchers send their inputs here. Bounded (256):
    /// those helper tasks wait if the engine is busy.
    inputs_tx: mpsc::Sender<Input>,
    inputs_rx: Option<mpsc::Receiver<Input>>,
    conns: HashMap<ConnId, Conn>,
    /// Spawned actors' processes, for signals, input and resize.
    procs: HashMap<ActorId, Proc>,
    /// Inputs waiting for the core, in order.
    pending: VecDeque<Input>,
    /// Output readers of actors just spawned, started once their `actor_started` is out.
    unstarted: HashMap<ActorId, Output>,
    /// Dumps whose ladder waits for the actor's cooperative answer, by request.
    dumps: HashMap<u64, tokio::sync::oneshot::Sender<String>>,
    /// Where tree-wide snapshots are saved (`STATE/snapshots`), if there is a state dir.
    snapshot_dir: Option<PathBuf>,
    /// This run's transcript directory, made at the first session's end, not before.
    transcripts: Option<TranscriptDir>,
    /// Outside tools (py-spy, gdb) run a few at a time: a tree-wide dump of a frozen tree of
    /// hundreds must not start hundreds of debuggers at once.
    tools: Arc<tokio::sync::Semaphore>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("socket", &self.spawner.socket)
            .field("core", &self.core)
            .finish_non_exhaustive()
    }
}

/// Parent pids of `pid`, nearest first (bounded: a racing `/proc` read must not loop).
fn ancestry(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut cur = pid;
    while out.len() < 64 {
        match procs::parent_pid(cur) {
            Some(p) if p > 1 => {
                out.push(p);
                cur = p;
            }
            _ => break,
        }
    }
    out
}

impl Engine {
    pub(super) fn new(
        cfg: RuntimeConfig,
        socket: PathBuf,
        python_dir: Option<PathBuf>,
        stacks_dir: Option<PathBuf>,
        events: EventSender,
        conn_tx: mpsc::Sender<ConnEvent>,
    ) -> Self {
        let (inputs_tx, inputs_rx) = mpsc::channel(256);
        let mut core = Core::new(cfg.grace, Instant::now());
        core.set_hang_watch(cfg.hang_after, cfg.dump_on_hang);
        if !cfg.rules.is_empty() {
            // The `rules` event (and any refusal) goes out with the first effects.
            core.add_rules(cfg.rules.clone());
        }
        let mut engine = Self {
            core,
            spawner: Spawner {
                socket,
                python_dir,
                rows: cfg.rows,
                cols: cfg.cols,
                events: events.clone(),
                inputs: inputs_tx.clone(),
                breakpoint_noticed: Default::default(),
                stacks_dir,
                join_ticket: None,
            },
            events,
            _conn_tx: conn_tx,
            inputs_tx,
            inputs_rx: Some(inputs_rx),
            conns: HashMap::new(),
            procs: HashMap::new(),
            pending: VecDeque::new(),
            unstarted: HashMap::new(),
            dumps: HashMap::new(),
            snapshot_dir: cfg.state_dir.as_ref().map(|d| d.join("snapshots")),
            transcripts: match &cfg.transcripts {
                super::Transcripts::Off => None,
                super::Transcripts::Dir(d) => Some(TranscriptDir {
                    path: d.clone(),
                    under_state: false,
                    made: None,
                }),
                super::Transcripts::Default => cfg.state_dir.as_ref().map(|d| {
                    let stamp = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_secs());
                    let run = format!("run-{stamp}-{}", std::process::id());
                    TranscriptDir {
                        path: d.join("transcripts").join(run),
                        under_state: true,
                        made: None,
                    }
                }),
            },
            tools: Arc::new(tokio::sync::Semaphore::new(inspect::TOOLS_AT_ONCE)),
        };
        let written = engine.transcripts.is_some();
        engine.core.set_transcripts(written);
        engine
    }

    /// Where every spawned actor finds the actor ticket (`ACTOR_TUI_JOIN_TICKET`).
    pub(super) fn set_join_ticket(&mut self, file: Option<PathBuf>) {
        self.spawner.join_ticket = file;
    }

    /// Starts the first program; its `actor_started` goes out at once.
    pub(super) fn spawn_first(&mut self, cfg: &RuntimeConfig) -> std::io::Result<()> {
        let name = cfg.name.clone().unwrap_or_else(|| {
            Path::new(&cfg.program)
                .file_name()
                .map_or_else(|| cfg.program.clone(), |n| n.to_string_lossy().into_owned())
        });
        let req =
            self.core
                .first_spawn(name, cfg.program.clone(), cfg.args.clone(), cfg.env.clone());
        let (proc, output) = self.spawner.spawn(&req)?;
        let pid = proc.pid;
        self.procs.insert(req.id, proc);
        self.unstarted.insert(req.id, output);
        self.pending.push_back(Input::Spawned {
            req,
            result: Ok(pid),
        });
        self.drain();
        Ok(())
    }

    /// Runs until the run is over. `cleanup` runs after the last process is gone and before
    /// the `exit` event, so a front end that ends the process at `exit` loses nothing.
    pub(super) async fn run(
        mut self,
        mut conn_rx: mpsc::Receiver<ConnEvent>,
        mut cmd_rx: mpsc::Receiver<RuntimeCommand>,
        cleanup: impl FnOnce(),
    ) -> i32 {
        let Some(mut inputs_rx) = self.inputs_rx.take() else {
            return 1;
        };
        // Orphans of the tree re-parent to us (we are a subreaper): reap them as they die.
        let mut sigchld =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child()).ok();
        // The holder's liveness is looked at once a second, whether or not anyone types.
        let mut watch = tokio::time::interval(Duration::from_secs(1));
        watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut commands_open = true;
        // One actors' look at a time, off the loop: a tick during one is skipped (the next
        // second looks again).
        let (looked_tx, mut looked_rx) = mpsc::channel::<Looked>(1);
        let mut looking = false;
        while !self.core.finished() {
            tokio::select! {
                Some(ev) = conn_rx.recv() => self.on_conn(ev),
                Some(input) = inputs_rx.recv() => {
                    if let Input::DumpDone { req, .. } = &input {
                        self.dumps.remove(req);
                    }
                    if let Input::ChildExited { actor, .. } = &input
                        && let Some(p) = self.procs.get_mut(actor)
                    {
                        p.pty = None;
                    }
                    self.pending.push_back(input);
                }
                cmd = cmd_rx.recv(), if commands_open => match cmd {
                    Some(cmd) => self.pending.push_back(Input::Command(cmd)),
                    // The front end stopped listening: end the run as if it said quit.
                    None => {
                        commands_open = false;
                        self.pending.push_back(Input::Command(RuntimeCommand::Quit));
                    }
                },
                Some(()) = async { match sigchld.as_mut() { Some(s) => s.recv().await, None => None } } => {
                    procs::reap_orphans(&self.core.managed_pids());
                }
                Some(Looked { reading, samples }) = looked_rx.recv() => {
                    looking = false;
                    for (actor, reading) in reading {
                        self.pending.push_back(Input::Reading { actor, reading });
                    }
                    self.pending.push_back(Input::Activity { samples });
                }
                _ = watch.tick() => {
                    // Orphans that were behind an actor's zombie at their SIGCHLD.
                    procs::reap_orphans(&self.core.managed_pids());
                    if !looking {
                        looking = true;
                        let (job, tx) = (self.actors_look(), looked_tx.clone());
                        // The answer is dropped if the run is over by then.
                        tokio::task::spawn_blocking(move || {
                            let _ = tx.blocking_send(job.run());
                        });
                    }
                    // A pid we cannot see (another pid namespace) says nothing.
                    let holder_state = match self.core.holder_pid() {
                        Some(pid) => procs::state(pid),
                        None => Some('?'),
                    };
                    self.pending.push_back(Input::Watch { holder_state });
                }
            }
            self.drain();
        }
        // Whatever the tree left running (helpers, daemons that left the session or cleared
        // their environment) descends from us: kill and reap all of it.
        let killed = procs::sweep(&self.core.managed_pids(), Duration::from_secs(2)).await;
        if killed > 0 {
            tracing::info!(killed, "killed leftover processes of the tree");
        }
        // The run's report, with every session in it, next to the transcripts.
        if self.transcripts.is_some() && self.core.sessions_held() > 0 {
            let html = self.core.report_html();
            if let Some(path) = self.write_transcript("report.html", html.as_bytes(), true) {
                self.events.control(RuntimeEvent::Report { path });
            }
        }
        cleanup();
        let code = self.core.exit_code();
        self.events
            .finish(RuntimeEvent::Exit { code }, Duration::from_secs(1))
            .await;
        code
    }

    /// What a watch tick looks at, as far as the engine's own state tells: which actors'
    /// terminals a blocked process may be reading (their foreground group's members in
    /// `read(2)` on the PTY), and the CPU ticks and output bytes of every live actor the
    /// core lets us look at. The `/proc` reads are left to [`ActorsLook::run`].
    fn actors_look(&self) -> ActorsLook {
        let terminals = self
            .procs
            .iter()
            .filter_map(|(&actor, p)| {
                let pty = p.pty.as_ref()?;
                Some((actor, pty.slave_path().ok()?, pty.foreground_group()?))
            })
            .collect();
        let watched = self
            .core
            .watched()
            .into_iter()
            .filter_map(|(actor, pid, spawned)| {
                let proc = spawned.then(|| self.procs.get(&actor)).flatten();
                if proc.is_some_and(|p| p.reaped.load(Ordering::SeqCst)) {
                    return None;
                }
                Some((
                    actor,
                    pid,
                    proc.map(|p| p.output_bytes.load(Ordering::Relaxed)),
                ))
            })
            .collect();
        ActorsLook { terminals, watched }
    }

    /// Feeds every pending input to the core and carries out what it says.
    fn drain(&mut self) {
        for (conn, why) in self.events.take_overflowed() {
            self.pending.push_back(Input::PeerFull { conn, why });
        }
        while let Some(input) = self.pending.pop_front() {
            let spawned = match &input {
                Input::Spawned { req, .. } => Some(req.id),
                _ => None,
            };
            for effect in self.core.handle(Instant::now(), input) {
                self.perform(effect);
            }
            // Its `actor_started` is out now: its output may follow.
            if let Some(output) = spawned.and_then(|id| self.unstarted.remove(&id)) {
                output.start();
            }
        }
    }

    fn on_conn(&mut self, ev: ConnEvent) {
        match ev {
            ConnEvent::Opened {
                conn,
                tx,
                peer_pid,
                remote,
                hangup,
            } => {
                let pidfd = peer_pid.and_then(PidFd::open_descendant).map(Arc::new);
                let watcher = pidfd.as_ref().map(|fd| {
                    let fd = fd.clone();
                    let inputs = self.inputs_tx.clone();
                    tokio::spawn(async move {
                        fd.exited().await;
                        // Frames it sent before dying are still on their way: give them
                        // the same moment as a spawned actor's.
                        tokio::time::sleep(EXIT_DEADLINE).await;
                        // Engine gone: nothing left to close.
                        let _ = inputs.send(Input::PeerExited { conn }).await;
                    })
                    .abort_handle()
                });
                self.pending.push_back(Input::Opened {
                    conn,
                    peer_pid,
                    signalable: pidfd.is_some(),
                    ancestry: peer_pid.map(ancestry).unwrap_or_default(),
                    remote,
                });
                self.conns.insert(
                    conn,
                    Conn {
                        tx,
                        full: false,
                        pidfd,
                        watcher,
                        _hangup: hangup,
                    },
                );
            }
            ConnEvent::Frame { conn, msg } => self.pending.push_back(Input::Frame { conn, msg }),
            ConnEvent::Closed { conn, error } => {
                self.pending.push_back(Input::Closed { conn, error })
            }
            ConnEvent::Refused { why } => self.pending.push_back(Input::Refused { why }),
        }
    }

    /// Queues a frame; a peer over its budget becomes an input for the core.
    fn send(&mut self, conn: ConnId, msg: &ToActor) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        match c.tx.send(msg) {
            Ok(()) | Err(PeerSendError::Closed) => {}
            Err(e @ PeerSendError::Full { .. }) => {
                if !c.full {
                    c.full = true;
                    self.pending.push_back(Input::PeerFull {
                        conn,
                        why: e.to_string(),
                    });
                }
            }
            Err(PeerSendError::Encode(e)) => {
                tracing::warn!(conn, error = %e, "cannot encode a frame; not sent");
            }
        }
    }

    fn perform(&mut self, effect: Effect) {
        match effect {
            Effect::Send { conn, msg } => self.send(conn, &msg),
            Effect::SendInput {
                conn,
                actor,
                task,
                epoch,
                data,
            } => {
                let queued = self.conns.get(&conn).map_or(0, |c| c.tx.queued_bytes());
                // Refused, not queued: a healthy but busy peer must never be dropped
                // because somebody pasted a lot into it.
                if queued + data.len() + 4096 > bounds::PEER_BYTES {
                    self.pending.push_back(Input::InputRefused {
                        actor,
                        len: data.len(),
                        queued,
                    });
                    return;
                }
                // Frames have a size limit; a big paste goes out in pieces.
                for chunk in crate::proto::split_utf8(&data, INPUT_CHUNK) {
                    let msg = ToActor::ReplInput {
                        task,
                        epoch,
                        data: chunk.to_owned(),
                    };
                    self.send(conn, &msg);
                }
            }
            Effect::Event(ev) => {
                // false: no front end left; the run goes on so the tree is torn down.
                self.events.control(ev);
            }
            Effect::Signal { actor, target, sig } => self.signal(actor, target, sig),
            Effect::After { delay, input } => {
                let inputs = self.inputs_tx.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    // Engine gone: the run is over, the timer with it.
                    let _ = inputs.send(input).await;
                });
            }
            Effect::Spawn(req) => {
                let result = match self.spawner.spawn(&req) {
                    Ok((proc, output)) => {
                        let pid = proc.pid;
                        self.procs.insert(req.id, proc);
                        self.unstarted.insert(req.id, output);
                        Ok(pid)
                    }
                    Err(e) => Err(format!("cannot start {}: {e}", req.program)),
                };
                // Next, before anything else can refer to the new actor.
                self.pending.push_front(Input::Spawned { req, result });
            }
            Effect::Attach { conn, role } => {
                if let Some(c) = self.conns.get(&conn) {
                    self.events.attach(conn, c.tx.clone(), role);
                }
            }
            Effect::ViewerNotice { conn, message } => self.events.to_viewer(
                conn,
                &RuntimeEvent::Notice {
                    actor: None,
                    message,
                },
            ),
            Effect::Inspect {
                actor,
                req,
                pid,
                conn,
                connected,
                facts,
            } => {
                // The signal-safe step: how to poke the process, and where it answers.
                let poke: Option<inspect::Poke> = pid.and_then(|pid| {
                    let file = self
                        .spawner
                        .stacks_dir
                        .as_ref()?
                        .join(format!("stacks-{pid}"));
                    if let Some(p) = self.procs.get(&actor).filter(|p| p.pid == pid) {
                        let reaped = p.reaped.clone();
                        return Some(inspect::Poke {
                            file,
                            send: Box::new(move || {
                                if reaped.load(Ordering::SeqCst) {
                                    return Err(std::io::ErrorKind::NotFound.into());
                                }
                                procs::kill_raw(pid, procs::stacks_signal())
                            }),
                        });
                    }
                    let fd = conn.and_then(|c| self.conns.get(&c))?.pidfd.clone()?;
                    Some(inspect::Poke {
                        file,
                        send: Box::new(move || fd.signal_raw(procs::stacks_signal())),
                    })
                });
                let answer = connected.then(|| {
                    let (tx, rx) = tokio::sync::oneshot::channel();
                    self.dumps.insert(req, tx);
                    rx
                });
                let reaped = self.procs.get(&actor).map(|p| p.reaped.clone());
                let mut facts = facts;
                if let Some(p) = self.procs.get(&actor) {
                    let last = p.last_output.load(Ordering::Relaxed);
                    let ago = super::spawn::now_ms().saturating_sub(last);
                    facts.push((
                        "last output".into(),
                        if last == 0 {
                            "none yet".into()
                        } else {
                            format!("{:.1} s ago", ago as f64 / 1000.0)
                        },
                    ));
                }
                let inputs = self.inputs_tx.clone();
                let tools = self.tools.clone();
                tokio::spawn(async move {
                    let report = inspect::ladder(pid, reaped, facts, answer, poke, tools).await;
                    let done = Input::DumpDone {
                        req,
                        actor,
                        text: report.render(),
                        step: report.answered_by().to_owned(),
                        signature: report.signature(),
                    };
                    // Engine gone: the run is over.
                    let _ = inputs.send(done).await;
                });
            }
            Effect::DumpAnswer { req, text } => {
                if let Some(tx) = self.dumps.remove(&req) {
                    // The ladder gave up on it already: nothing to do.
                    let _ = tx.send(text);
                }
            }
            Effect::SaveSnapshot { text, json } => {
                let path = self.snapshot_dir.as_deref().and_then(|dir| {
                    inspect::save_snapshot(dir, &text, &json)
                        .map_err(|e| tracing::warn!(error = %e, "cannot save the snapshot"))
                        .ok()
                });
                self.events.control(RuntimeEvent::Snapshot {
                    text,
                    path: path.map(|p| p.display().to_string()),
                });
            }
            Effect::SaveTranscript {
                file,
                text,
                mut ended,
            } => {
                let path = self.write_transcript(&file, text.as_bytes(), false);
                if let RuntimeEvent::SessionEnded { path: p, .. } = &mut ended {
                    *p = path;
                }
                self.events.control(ended);
            }
            Effect::SaveReport { html } => {
                if let Some(path) = self.write_transcript("report.html", html.as_bytes(), true) {
                    self.events.control(RuntimeEvent::Report { path });
                }
            }
            Effect::Close { conn } => {
                self.events.detach(conn);
                // Dropping the sender and the hangup ends the connection's tasks once the
                // writer has flushed what was queued (the last error or cancel frame).
                if let Some(w) = self.conns.remove(&conn).and_then(|c| c.watcher) {
                    w.abort();
                }
            }
            Effect::WritePty { actor, data } => {
                let len = data.len();
                let refused = match self.procs.get_mut(&actor) {
                    Some(p) => p.type_in(data).err(),
                    None => Some(0),
                };
                if let Some(queued) = refused {
                    self.pending
                        .push_back(Input::InputRefused { actor, len, queued });
                }
            }
            Effect::Resize { rows, cols } => {
                self.spawner.rows = rows;
                self.spawner.cols = cols;
                for (actor, p) in &self.procs {
                    if let Some(pty) = &p.pty
                        && let Err(e) = pty.resize(rows, cols)
                    {
                        tracing::debug!(%actor, error = %e, "resize failed");
                    }
                }
            }
        }
    }

    /// Writes a file into this run's transcript directory, making and checking it first;
    /// the path, or `None` (with a notice, once) if it cannot be written.
    fn write_transcript(&mut self, name: &str, body: &[u8], replace: bool) -> Option<String> {
        let t = self.transcripts.as_mut()?;
        if t.made.is_none() {
            // The user's own --transcript-dir is made only if its parent exists.
            let dir = if t.under_state {
                PrivateDir::open_or_create_all(&t.path)
            } else {
                PrivateDir::open_or_create(&t.path)
            };
            match dir {
                Ok(d) => t.made = Some(d),
                Err(e) => {
                    self.transcripts = None;
                    self.core.set_transcripts(false);
                    self.events.control(RuntimeEvent::Notice {
                        actor: None,
                        message: format!("transcripts are not written: {e}"),
                    });
                    return None;
                }
            }
        }
        let dir = t.made.as_ref()?;
        match dir.write_file(name, body, replace) {
            Ok(p) => Some(p.display().to_string()),
            Err(e) => {
                tracing::warn!(error = %e, "cannot write a transcript");
                self.events.control(RuntimeEvent::Notice {
                    actor: None,
                    message: format!("cannot write {name}: {e}"),
                });
                None
            }
        }
    }

    fn signal(&self, actor: ActorId, target: SignalTarget, sig: Sig) {
        let sig = match sig {
            Sig::Term => Signal::SIGTERM,
            Sig::Kill => Signal::SIGKILL,
            Sig::Stop => Signal::SIGSTOP,
            Sig::Cont => Signal::SIGCONT,
        };
        match target {
            SignalTarget::Group { pid } => {
                // Not once reaped: the pid, and the group id, may belong to someone else.
                let live = self
                    .procs
                    .get(&actor)
                    .is_some_and(|p| p.pid == pid && !p.reaped.load(Ordering::SeqCst));
                if live {
                    // ESRCH: the group is already gone, which is what we wanted.
                    let _ = killpg(Pid::from_raw(pid as i32), sig);
                }
            }
            SignalTarget::Peer { conn } => {
                if let Some(fd) = self.conns.get(&conn).and_then(|c| c.pidfd.as_ref()) {
                    // ESRCH: it exited, which is what we wanted.
                    let _ = fd.signal(sig);
                }
            }
        }
    }
}
