//! The engine task: owns the lock table, the actor tree and every connection's sender, and
//! turns frames, child exits, timers and front-end commands into frames and events. One task
//! owns all of it, so there are no locks and every transition is seen in one order.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::sync::mpsc;

use super::RuntimeConfig;
use super::bounds::{self, RateLimit};
use super::event::{RuntimeCommand, RuntimeEvent};
use super::event_queue::EventSender;
use super::lock::{LockKey, LockRequest, LockTable, ReleaseCause, Transition};
use super::procs::{self, PidFd};
use super::pty::{self, PtyMaster, SpawnSpec};
use super::server::{ConnEvent, ConnId, PeerSendError, PeerTx};
use super::suspect::{HolderWatch, Verdict};
use super::tree::{ActorTree, CancelState, ExitInfo};
use crate::proto::{ReleaseHow, ToActor, ToRoot, env};

/// Messages the engine sends itself from helper tasks.
#[derive(Debug)]
enum Internal {
    ChildExited {
        actor: String,
        status: ExitStatus,
    },
    /// The connection of an exited actor did not close in time (a forked child may hold
    /// its socket): finish the exit anyway.
    ExitDeadline {
        actor: String,
    },
    Escalate {
        actor: String,
        stage: CancelState,
    },
    /// An actor the root did not spawn has exited (its pidfd said so) some time ago, and
    /// its connection may be held open by a fork: close it.
    PeerExited {
        actor: String,
    },
}

#[derive(Debug)]
struct Conn {
    tx: PeerTx,
    actor: Option<String>,
    peer_pid: Option<u32>,
    /// Dropping it makes the connection's reader stop.
    _hangup: tokio::sync::oneshot::Sender<()>,
}

pub(super) struct Engine {
    grace: Duration,
    rows: u16,
    cols: u16,
    socket: PathBuf,
    /// Where the bundled Python client was written, for every actor's PYTHONPATH.
    python_dir: Option<PathBuf>,
    /// Never awaited: control events must not wait on a slow front end.
    events: EventSender,
    /// Kept so the server's accept loop lives as long as the engine does.
    _conn_tx: mpsc::Sender<ConnEvent>,
    internal_tx: mpsc::Sender<Internal>,
    internal_rx: Option<mpsc::Receiver<Internal>>,
    tree: ActorTree,
    lock: LockTable,
    conns: HashMap<ConnId, Conn>,
    /// actor id -> its connection, for actors that registered.
    actor_conn: HashMap<String, ConnId>,
    /// PTY masters of spawned actors, kept for input and resize.
    ptys: HashMap<String, Arc<PtyMaster>>,
    /// Set by a spawned actor's waiter the moment it reaps the process: from then on its
    /// pid (and process group id) may belong to somebody else, so it is never signalled.
    reaped: HashMap<String, Arc<AtomicBool>>,
    /// Handles of actors the root did not spawn but that descend from it: the only way
    /// such an actor is ever signalled. Actors outside the tree have none and are only
    /// asked (Cancel) and then disconnected.
    pidfds: HashMap<String, Arc<PidFd>>,
    /// Actors whose teardown waits to start (CancelState::Pending), so each transition
    /// looks only at them.
    pending_cancels: HashSet<String>,
    /// The current grant's liveness watch, keyed by its epoch.
    holder_watch: Option<(u64, HolderWatch)>,
    /// Peer-caused notices are rate-limited, so bogus frames cannot flood the front end
    /// or the log.
    notice_limit: RateLimit,
    pending_dumps: HashMap<u64, String>,
    /// Completion requests in flight: req -> (actor, line).
    pending_completions: HashMap<u64, (String, String)>,
    next_dump: u64,
    first: Option<String>,
    first_code: Option<i32>,
    quitting: bool,
    /// Exits reaped while the actor's connection was still open: handled when it closes,
    /// so frames the actor sent before dying (its `exiting` reason) are seen first.
    pending_exits: HashMap<String, ExitStatus>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("socket", &self.socket)
            .field("lock", &self.lock)
            .finish_non_exhaustive()
    }
}

/// Largest `repl_input` payload, well under the frame limit.
const INPUT_CHUNK: usize = 256 * 1024;

/// Splits `s` into pieces of at most `max` bytes, on character boundaries.
fn chunks(s: &str, max: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = s;
    while rest.len() > max {
        let mut cut = max;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (head, tail) = rest.split_at(cut);
        out.push(head);
        rest = tail;
    }
    out.push(rest);
    out
}

fn exit_info(status: ExitStatus) -> ExitInfo {
    use std::os::unix::process::ExitStatusExt;
    ExitInfo {
        code: status.code(),
        signal: status.signal(),
    }
}

impl Engine {
    pub(super) fn new(
        cfg: RuntimeConfig,
        socket: PathBuf,
        python_dir: Option<PathBuf>,
        events: EventSender,
        conn_tx: mpsc::Sender<ConnEvent>,
    ) -> Self {
        // Bounded (256): helper tasks (child waiters, timers) wait if the engine is busy.
        let (internal_tx, internal_rx) = mpsc::channel(256);
        Self {
            grace: cfg.grace,
            rows: cfg.rows,
            cols: cfg.cols,
            socket,
            python_dir,
            events,
            _conn_tx: conn_tx,
            internal_tx,
            internal_rx: Some(internal_rx),
            tree: ActorTree::new(),
            lock: LockTable::new(),
            conns: HashMap::new(),
            actor_conn: HashMap::new(),
            ptys: HashMap::new(),
            reaped: HashMap::new(),
            pidfds: HashMap::new(),
            pending_cancels: HashSet::new(),
            holder_watch: None,
            notice_limit: RateLimit::new(50, 20),
            pending_dumps: HashMap::new(),
            pending_completions: HashMap::new(),
            next_dump: 0,
            first: None,
            first_code: None,
            quitting: false,
            pending_exits: HashMap::new(),
        }
    }

    pub(super) fn spawn_first(&mut self, cfg: &RuntimeConfig) -> std::io::Result<()> {
        let name = cfg.name.clone().unwrap_or_else(|| {
            Path::new(&cfg.program)
                .file_name()
                .map_or_else(|| cfg.program.clone(), |n| n.to_string_lossy().into_owned())
        });
        let id = self.spawn_actor(&name, &cfg.program, &cfg.args, &cfg.env, None, None)?;
        self.first = Some(id);
        Ok(())
    }

    /// Starts an actor on its own PTY and wires its output and exit into the engine.
    fn spawn_actor(
        &mut self,
        name: &str,
        program: &str,
        args: &[String],
        extra_env: &[(String, String)],
        cwd: Option<&str>,
        parent: Option<&str>,
    ) -> std::io::Result<String> {
        // The id is reserved before the process exists so it can be put in its environment.
        let id = self.tree.peek_next_id();
        let mut envs: Vec<(String, String)> = extra_env.to_vec();
        if let Some(dir) = &self.python_dir {
            let py = super::python::env_for(dir, &envs);
            envs.extend(py);
        }
        envs.push((
            env::SOCKET.into(),
            self.socket.to_string_lossy().into_owned(),
        ));
        envs.push((env::ACTOR.into(), id.clone()));
        envs.push((env::NAME.into(), name.into()));
        let spec = SpawnSpec {
            program,
            args,
            env: &envs,
            cwd: cwd.map(Path::new),
            rows: self.rows,
            cols: self.cols,
        };
        let (mut child, master) = pty::spawn_on_pty(&spec)?;
        let pid = child.id().unwrap_or(0);
        let added = self.tree.add(name, pid, parent, true);
        debug_assert_eq!(added, id);
        let master = Arc::new(master);
        self.ptys.insert(id.clone(), master.clone());
        let reaped = Arc::new(AtomicBool::new(false));
        self.reaped.insert(id.clone(), reaped.clone());
        self.queue_event(RuntimeEvent::ActorStarted {
            actor: id.clone(),
            name: name.into(),
            pid,
            parent: parent.map(str::to_owned),
        });

        // Output reader: straight to the front end, so output never waits on the engine.
        let events = self.events.clone();
        let out_actor = id.clone();
        let (eof_tx, eof_rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            // 16 KiB reads; the event queue bounds what waits in total.
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                match master.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if !events.output(&out_actor, &buf[..n]).await {
                            break;
                        }
                    }
                }
            }
            // The waiter may have given up on us already.
            let _ = eof_tx.send(());
        });

        // Waiter: reap, then give the output a moment to drain so `actor_exited` comes
        // after the actor's last output (a non-actor grandchild may hold the PTY open).
        let internal = self.internal_tx.clone();
        let wait_actor = id.clone();
        tokio::spawn(async move {
            let status = child.wait().await;
            reaped.store(true, Ordering::SeqCst);
            let _ = tokio::time::timeout(Duration::from_millis(200), eof_rx).await;
            match status {
                Ok(status) => {
                    // Engine gone: the run is over and nobody needs the status.
                    let _ = internal
                        .send(Internal::ChildExited {
                            actor: wait_actor,
                            status,
                        })
                        .await;
                }
                Err(e) => tracing::error!(actor = %wait_actor, error = %e, "wait failed"),
            }
        });
        Ok(id)
    }

    /// Runs until the run is over. `cleanup` runs after the last process is gone and before
    /// the `exit` event, so a front end that ends the process at `exit` loses nothing.
    pub(super) async fn run(
        mut self,
        mut conn_rx: mpsc::Receiver<ConnEvent>,
        mut cmd_rx: mpsc::Receiver<RuntimeCommand>,
        cleanup: impl FnOnce(),
    ) -> i32 {
        let Some(mut internal_rx) = self.internal_rx.take() else {
            return 1;
        };
        // Orphans of the tree re-parent to us (we are a subreaper): reap them as they die.
        let mut sigchld =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::child()).ok();
        // The holder's liveness is looked at once a second, whether or not anyone types.
        let mut watch = tokio::time::interval(Duration::from_secs(1));
        watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut commands_open = true;
        loop {
            tokio::select! {
                Some(ev) = conn_rx.recv() => self.on_conn(ev),
                Some(msg) = internal_rx.recv() => self.on_internal(msg),
                cmd = cmd_rx.recv(), if commands_open => match cmd {
                    Some(cmd) => self.on_command(cmd),
                    // The front end stopped listening: end the run as if it said quit.
                    None => { commands_open = false; self.on_command(RuntimeCommand::Quit) }
                },
                Some(()) = async { match sigchld.as_mut() { Some(s) => s.recv().await, None => None } } => {
                    procs::reap_orphans(&self.managed_pids());
                }
                _ = watch.tick() => self.watch_holder(Instant::now()),
            }
            if self.finished() {
                break;
            }
        }
        // Whatever the tree left running (helpers, daemons that left the session or cleared
        // their environment) descends from us: kill and reap all of it.
        let killed = procs::sweep(&self.managed_pids(), Duration::from_secs(2)).await;
        if killed > 0 {
            tracing::info!(killed, "killed leftover processes of the tree");
        }
        cleanup();
        let code = self.first_code.unwrap_or(1);
        self.queue_event(RuntimeEvent::Exit { code });
        code
    }

    fn finished(&self) -> bool {
        self.first_code.is_some() && !self.tree.any_live()
    }

    /// Pids tokio waits for (spawned actors not yet reaped): nobody else may reap them.
    fn managed_pids(&self) -> HashSet<u32> {
        self.tree
            .iter()
            .filter(|n| n.spawned && n.exited.is_none())
            .map(|n| n.pid)
            .collect()
    }

    /// Marks the holder suspect (or healthy again) from its process state and whether it
    /// answers input.
    fn watch_holder(&mut self, now: Instant) {
        let Some(g) = self.lock.holder().cloned() else {
            return;
        };
        let pid = self
            .tree
            .get(&g.request.key.actor)
            .map(|n| n.pid)
            .filter(|p| *p != 0);
        let state = pid.and_then(procs::state);
        let watch = match &mut self.holder_watch {
            Some((epoch, w)) if *epoch == g.epoch => w,
            _ => return,
        };
        // A pid we cannot see (another pid namespace) says nothing about the process.
        let state = if pid.is_none() { Some('?') } else { state };
        match watch.check(now, state) {
            Some(Verdict::Suspect { why, since }) => self.queue_event(RuntimeEvent::LockSuspect {
                actor: g.request.key.actor.clone(),
                task: g.request.key.task,
                epoch: g.epoch,
                why,
                since,
            }),
            Some(Verdict::Healthy) => self.queue_event(RuntimeEvent::LockHealthy {
                actor: g.request.key.actor.clone(),
                task: g.request.key.task,
                epoch: g.epoch,
            }),
            None => {}
        }
    }

    // ---- events ----

    fn queue_event(&mut self, ev: RuntimeEvent) {
        // false: no front end left; keep running so the tree is still torn down properly.
        self.events.control(ev);
    }

    /// A notice for the user. Rate-limited (a peer's bogus frames must not flood the front
    /// end or the log); the next notice let through says how many were held back. The log
    /// line escapes peer text.
    fn notice(&mut self, actor: Option<&str>, message: String) {
        let Some(suppressed) = self.notice_limit.admit(Instant::now()) else {
            return;
        };
        let message = if suppressed > 0 {
            format!("{message} ({suppressed} similar notices suppressed)")
        } else {
            message
        };
        tracing::info!(actor, message = %bounds::escape(&message), "notice");
        self.queue_event(RuntimeEvent::Notice {
            actor: actor.map(str::to_owned),
            message,
        });
    }

    fn send_to_actor(&mut self, actor: &str, msg: ToActor) -> bool {
        let Some(conn) = self.actor_conn.get(actor).copied() else {
            return false;
        };
        self.send_to_conn(conn, msg)
    }

    fn send_to_conn(&mut self, conn: ConnId, msg: ToActor) -> bool {
        let Some(c) = self.conns.get(&conn) else {
            return false;
        };
        match c.tx.send(&msg) {
            Ok(()) => true,
            Err(e @ PeerSendError::Full { .. }) => {
                // The peer has not read what it was sent: treat it as gone rather than stall.
                let actor = c.actor.clone();
                self.notice(
                    actor.as_deref(),
                    format!("connection {conn} stopped reading ({e}); dropped"),
                );
                self.close_conn(conn, None);
                false
            }
            Err(PeerSendError::Encode(e)) => {
                let actor = c.actor.clone();
                self.notice(actor.as_deref(), format!("cannot send a frame: {e}"));
                false
            }
            Err(PeerSendError::Closed) => false,
        }
    }

    // ---- connections ----

    fn on_conn(&mut self, ev: ConnEvent) {
        match ev {
            ConnEvent::Opened {
                conn,
                tx,
                peer_pid,
                hangup,
            } => {
                self.conns.insert(
                    conn,
                    Conn {
                        tx,
                        actor: None,
                        peer_pid,
                        _hangup: hangup,
                    },
                );
            }
            ConnEvent::Frame { conn, msg } => self.on_frame(conn, msg),
            ConnEvent::Closed { conn, error } => self.close_conn(conn, error),
        }
    }

    fn close_conn(&mut self, conn: ConnId, error: Option<String>) {
        let Some(c) = self.conns.remove(&conn) else {
            return;
        };
        let Some(actor) = c.actor else {
            if let Some(e) = error {
                self.notice(None, format!("dropped unregistered connection: {e}"));
            }
            return;
        };
        self.actor_conn.remove(&actor);
        self.pidfds.remove(&actor);
        // Dumps it will never answer.
        self.pending_dumps.retain(|_, a| *a != actor);
        self.pending_completions.retain(|_, (a, _)| *a != actor);
        if let Some(e) = error {
            self.notice(Some(&actor), format!("dropped connection: {e}"));
        }
        if let Some(status) = self.pending_exits.remove(&actor) {
            self.child_exited(&actor, status);
        }
        let tr = self.lock.remove_actor(&actor, ReleaseCause::Disconnect);
        self.apply(tr, ReleaseCause::Disconnect);
        let Some(node) = self.tree.get_mut(&actor) else {
            return;
        };
        node.connected = false;
        if !node.spawned {
            // We cannot reap a process we did not start: its connection is its life.
            let reason = node.exit_reason;
            self.queue_event(RuntimeEvent::ActorExited {
                actor: actor.clone(),
                code: None,
                signal: None,
                reason,
            });
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
        let Some(c) = self.conns.get(&conn) else {
            // Frames already in flight from a connection we dropped.
            return;
        };
        let actor = c.actor.clone();
        let actor = match (msg, actor) {
            (
                ToRoot::Register {
                    name,
                    pid,
                    actor: claimed,
                },
                None,
            ) => {
                self.register(conn, name, pid, claimed);
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
                self.protocol_error(conn, "first frame after hello must be register".into());
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
            w.frame(Instant::now());
        }
        match msg {
            ToRoot::Hello { .. } | ToRoot::Register { .. } => {}
            ToRoot::Unknown => {
                tracing::debug!(%actor, "ignoring a message type from a newer client")
            }
            ToRoot::Spawn {
                req,
                name,
                program,
                args,
                env,
                cwd,
            } => {
                let reply = if self.quitting
                    || self
                        .tree
                        .get(&actor)
                        .is_some_and(|n| n.cancel != CancelState::None)
                {
                    ToActor::SpawnFailed {
                        req,
                        error: "the tree is being torn down".into(),
                    }
                } else {
                    let env = env.unwrap_or_default();
                    match self.spawn_actor(
                        &name,
                        &program,
                        &args,
                        &env,
                        cwd.as_deref(),
                        Some(&actor),
                    ) {
                        Ok(id) => ToActor::Spawned {
                            req,
                            pid: self.tree.get(&id).map_or(0, |n| n.pid),
                            actor: id,
                        },
                        Err(e) => ToActor::SpawnFailed {
                            req,
                            error: format!("cannot start {program}: {e}"),
                        },
                    }
                };
                self.send_to_conn(conn, reply);
            }
            ToRoot::Cancel {
                actor: target,
                force,
            } => self.cancel_subtree(&target, force),
            ToRoot::LockRequest {
                task,
                task_name,
                reason,
                location,
            } => {
                // Bounded before anything keeps them (the queue, events, the console).
                let task_name = bounds::truncate(task_name, bounds::MAX_FIELD);
                let location = bounds::truncate(location, bounds::MAX_FIELD);
                self.queue_event(RuntimeEvent::LockRequested {
                    actor: actor.clone(),
                    task,
                    task_name: task_name.clone(),
                    reason,
                    location: location.clone(),
                });
                if self.quitting {
                    self.refuse(&actor, task, "actor-tui is quitting".into());
                    return;
                }
                let req = LockRequest {
                    key: LockKey {
                        actor: actor.clone(),
                        task,
                    },
                    task_name,
                    reason,
                    location,
                };
                match self.lock.request(req) {
                    Ok(granted) => self.apply(
                        Transition {
                            granted,
                            ..Transition::default()
                        },
                        ReleaseCause::Disconnect,
                    ),
                    Err(e) => self.refuse(&actor, task, e.to_string()),
                }
            }
            ToRoot::LockRelease { task, epoch, how } => {
                let cause = match how {
                    ReleaseHow::Continue => ReleaseCause::Continue,
                    ReleaseHow::Quit => ReleaseCause::Quit,
                };
                let key = LockKey {
                    actor: actor.clone(),
                    task,
                };
                match self.lock.release(&key, epoch, cause) {
                    Ok(tr) => self.apply(tr, cause),
                    Err(e) => self.notice(Some(&actor), format!("ignored release: {e}")),
                }
            }
            ToRoot::ReplOutput { task, epoch, data } => {
                if self.is_current(&actor, task, epoch) {
                    self.queue_event(RuntimeEvent::ReplOutput { actor, task, data });
                }
            }
            ToRoot::ReplWaiting {
                task,
                epoch,
                prompt,
            } => {
                if self.is_current(&actor, task, epoch) {
                    self.queue_event(RuntimeEvent::ReplReady {
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
                    self.pending_dumps.remove(&req);
                    self.queue_event(RuntimeEvent::Dump { actor, text });
                } else if self.pending_dumps.contains_key(&req) {
                    self.notice(
                        Some(&actor),
                        format!("ignored a dump reply for request {req}, which was not sent to actor {actor}"),
                    );
                }
            }
            ToRoot::CompleteReply { req, matches } => {
                if let Some((target, line)) = self.pending_completions.remove(&req)
                    && target == actor
                {
                    self.queue_event(RuntimeEvent::Completions {
                        actor,
                        line,
                        matches,
                    });
                }
            }
            ToRoot::Exiting { reason, .. } => {
                if let Some(n) = self.tree.get_mut(&actor) {
                    n.exit_reason = Some(reason);
                }
            }
        }
    }

    /// Frames from an old holder (after force-release) are dropped: its session is over.
    fn is_current(&self, actor: &str, task: u64, epoch: u64) -> bool {
        self.lock.holder().is_some_and(|g| {
            g.request.key.actor == actor && g.request.key.task == task && g.epoch == epoch
        })
    }

    fn refuse(&mut self, actor: &str, task: u64, error: String) {
        self.send_to_actor(
            actor,
            ToActor::LockRefused {
                task,
                error: error.clone(),
            },
        );
        self.queue_event(RuntimeEvent::LockRefused {
            actor: actor.into(),
            task,
            error,
        });
    }

    fn register(&mut self, conn: ConnId, name: String, claimed_pid: u32, claimed: Option<String>) {
        let name = bounds::truncate(name, bounds::MAX_FIELD);
        let peer_pid = self.conns.get(&conn).and_then(|c| c.peer_pid);
        let pid = peer_pid.unwrap_or(claimed_pid);
        let reserved = claimed.filter(|id| {
            self.tree
                .get(id)
                .is_some_and(|n| n.spawned && n.pid == pid && !n.connected && n.exited.is_none())
        });
        let id = match reserved {
            Some(id) => id,
            None => {
                // Not started by us (a fork, or a child an actor started itself): it goes
                // under its nearest connected ancestor.
                let parent = self.tree.nearest_ancestor(pid, pty::parent_pid);
                let id = self.tree.add(&name, pid, parent.as_deref(), false);
                // Signalled later only through a pidfd, and only if it is one of ours.
                if let Some(fd) = peer_pid.and_then(PidFd::open_descendant) {
                    let fd = Arc::new(fd);
                    self.pidfds.insert(id.clone(), fd.clone());
                    let tx = self.internal_tx.clone();
                    let actor = id.clone();
                    tokio::spawn(async move {
                        fd.exited().await;
                        // Frames it sent before dying are still on their way: give them a
                        // moment, as for spawned actors.
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        // Engine gone: nothing left to close.
                        let _ = tx.send(Internal::PeerExited { actor }).await;
                    });
                }
                self.queue_event(RuntimeEvent::ActorStarted {
                    actor: id.clone(),
                    name,
                    pid,
                    parent,
                });
                id
            }
        };
        let parent = self.tree.get(&id).and_then(|n| n.parent.clone());
        if let Some(n) = self.tree.get_mut(&id) {
            n.connected = true;
        }
        if let Some(c) = self.conns.get_mut(&conn) {
            c.actor = Some(id.clone());
        }
        self.actor_conn.insert(id.clone(), conn);
        self.send_to_conn(
            conn,
            ToActor::Registered {
                actor: id.clone(),
                parent: parent.clone(),
            },
        );
        // An actor that registers after its teardown was asked for gets the word now.
        if self
            .tree
            .get(&id)
            .is_some_and(|n| n.cancel == CancelState::Requested)
        {
            self.send_to_conn(conn, ToActor::Cancel { force: false });
        }
        // One that appears while the run or its parent is being torn down is torn down too,
        // or the run would wait for it forever.
        let parent_going = parent
            .as_deref()
            .and_then(|p| self.tree.get(p))
            .is_some_and(|p| p.cancel != CancelState::None || p.exited.is_some());
        if (self.quitting || self.first_code.is_some() || parent_going)
            && let Some(n) = self.tree.get_mut(&id)
            && n.cancel == CancelState::None
        {
            n.cancel = CancelState::Pending;
            self.pending_cancels.insert(id);
            self.progress_cancels();
        }
    }

    /// Turns a lock transition into frames and events, then lets waiting teardowns move.
    fn apply(&mut self, tr: Transition, drop_cause: ReleaseCause) {
        if let Some(r) = tr.released {
            let key = &r.grant.request.key;
            if matches!(r.cause, ReleaseCause::Force | ReleaseCause::Cancel) {
                self.send_to_actor(
                    &key.actor.clone(),
                    ToActor::LockRevoked {
                        task: key.task,
                        epoch: r.grant.epoch,
                    },
                );
            }
            self.queue_event(RuntimeEvent::LockReleased {
                actor: key.actor.clone(),
                task: key.task,
                epoch: r.grant.epoch,
                cause: r.cause,
            });
        }
        for d in tr.dropped {
            if drop_cause == ReleaseCause::Cancel {
                // The actor may still be alive and waiting: tell it instead of leaving it
                // blocked until the kill.
                self.send_to_actor(
                    &d.key.actor,
                    ToActor::LockRefused {
                        task: d.key.task,
                        error: "request dropped: the actor is being cancelled".into(),
                    },
                );
            }
            self.queue_event(RuntimeEvent::LockDropped {
                actor: d.key.actor,
                task: d.key.task,
                cause: drop_cause,
            });
        }
        if let Some(g) = tr.granted {
            self.holder_watch = Some((g.epoch, HolderWatch::new(Instant::now())));
            let key = g.request.key.clone();
            self.queue_event(RuntimeEvent::LockGranted {
                actor: key.actor.clone(),
                task: key.task,
                epoch: g.epoch,
            });
            if !self.send_to_actor(
                &key.actor,
                ToActor::LockGranted {
                    task: key.task,
                    epoch: g.epoch,
                },
            ) {
                // Cannot happen while connection close removes the actor from the lock,
                // but if it does, do not leave the tree stuck on a holder that is gone.
                let tr = self.lock.remove_actor(&key.actor, ReleaseCause::Disconnect);
                self.apply(tr, ReleaseCause::Disconnect);
            }
        }
        self.progress_cancels();
    }

    // ---- children and teardown ----

    fn on_internal(&mut self, msg: Internal) {
        match msg {
            Internal::ChildExited { actor, status } => {
                if self.actor_conn.contains_key(&actor) {
                    self.pending_exits.insert(actor.clone(), status);
                    let tx = self.internal_tx.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(500)).await;
                        // Engine gone: nothing left to finish.
                        let _ = tx.send(Internal::ExitDeadline { actor }).await;
                    });
                } else {
                    self.child_exited(&actor, status);
                }
            }
            Internal::ExitDeadline { actor } => {
                if let Some(status) = self.pending_exits.remove(&actor) {
                    self.child_exited(&actor, status);
                }
            }
            Internal::Escalate { actor, stage } => self.escalate(&actor, stage),
            Internal::PeerExited { actor } => {
                if let Some(conn) = self.actor_conn.get(&actor).copied() {
                    self.close_conn(
                        conn,
                        Some("its process exited; the connection another process kept open is closed".into()),
                    );
                }
            }
        }
    }

    fn child_exited(&mut self, actor: &str, status: ExitStatus) {
        let info = exit_info(status);
        self.ptys.remove(actor);
        self.reaped.remove(actor);
        self.pending_cancels.remove(actor);
        let tr = self.lock.remove_actor(actor, ReleaseCause::Exit);
        self.apply(tr, ReleaseCause::Exit);
        let Some(node) = self.tree.get_mut(actor) else {
            return;
        };
        node.exited = Some(info);
        let reason = node.exit_reason;
        let parent = node.parent.clone();
        if let Some(parent) = parent {
            self.send_to_actor(
                &parent,
                ToActor::ChildExited {
                    actor: actor.into(),
                    code: info.code,
                    signal: info.signal,
                    reason,
                },
            );
        }
        self.queue_event(RuntimeEvent::ActorExited {
            actor: actor.into(),
            code: info.code,
            signal: info.signal,
            reason,
        });
        if self.first.as_deref() == Some(actor) {
            self.first_code = Some(info.code.unwrap_or_else(|| 128 + info.signal.unwrap_or(0)));
            // The program is over: whatever it left running is torn down, gently.
            let live: Vec<String> = self
                .tree
                .iter()
                .filter(|n| n.is_live())
                .map(|n| n.id.clone())
                .collect();
            for id in live {
                self.cancel_subtree(&id, false);
            }
        }
        self.progress_cancels();
    }

    /// Actors that must not be signalled now: those that hold or wait for the lock, and all
    /// their ancestors (killing a parent would take the debugging child's session with it).
    /// Costs one lineage walk per distinct involved actor, not per request.
    fn protected(&self) -> HashSet<String> {
        if self.quitting {
            return HashSet::new();
        }
        let mut out = HashSet::new();
        for a in self.lock.involved_actors() {
            if out.contains(a) {
                // Its lineage is in already (an ancestor of it was involved too).
                continue;
            }
            out.extend(self.tree.lineage(a));
        }
        out
    }

    fn cancel_subtree(&mut self, target: &str, force: bool) {
        if self.tree.get(target).is_none() {
            self.notice(None, format!("cancel: no actor {target}"));
            return;
        }
        let live: Vec<String> = self
            .tree
            .subtree(target)
            .into_iter()
            .filter(|id| self.tree.get(id).is_some_and(|n| n.is_live()))
            .collect();
        if force {
            // The whole subtree leaves the lock at once, so no member is granted it on the
            // way out.
            let refs: Vec<&str> = live.iter().map(String::as_str).collect();
            let tr = self.lock.remove_actors(&refs, ReleaseCause::Cancel);
            self.apply(tr, ReleaseCause::Cancel);
        }
        for id in live {
            if force {
                self.send_to_actor(&id, ToActor::Cancel { force: true });
                self.signal(&id, Signal::SIGKILL);
                if let Some(n) = self.tree.get_mut(&id) {
                    n.cancel = CancelState::Killed;
                }
                self.pending_cancels.remove(&id);
                self.disconnect_unsignalled(&id);
                self.queue_event(RuntimeEvent::Cancelling { actor: id, force });
            } else if let Some(n) = self.tree.get_mut(&id)
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
        let mut pending: Vec<String> = self.pending_cancels.iter().cloned().collect();
        // Parents first, in the order actors arrived: ids are numbers.
        pending.sort_by_key(|id| id.parse::<u64>().unwrap_or(u64::MAX));
        for id in pending {
            let live = self
                .tree
                .get(&id)
                .is_some_and(|n| n.cancel == CancelState::Pending && n.is_live());
            if !live {
                self.pending_cancels.remove(&id);
                continue;
            }
            if protected.contains(&id) {
                let Some(n) = self.tree.get_mut(&id) else {
                    continue;
                };
                if !n.teardown_waiting {
                    n.teardown_waiting = true;
                    self.queue_event(RuntimeEvent::TeardownWaiting { actor: id });
                }
                continue;
            }
            self.pending_cancels.remove(&id);
            if let Some(n) = self.tree.get_mut(&id) {
                n.cancel = CancelState::Requested;
                n.teardown_waiting = false;
            }
            self.send_to_actor(&id, ToActor::Cancel { force: false });
            self.queue_event(RuntimeEvent::Cancelling {
                actor: id.clone(),
                force: false,
            });
            self.schedule(id, CancelState::Terminated);
        }
    }

    fn schedule(&self, actor: String, stage: CancelState) {
        let tx = self.internal_tx.clone();
        let grace = self.grace;
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            // Engine gone: the run is over, nothing to escalate.
            let _ = tx.send(Internal::Escalate { actor, stage }).await;
        });
    }

    fn escalate(&mut self, actor: &str, stage: CancelState) {
        let Some(n) = self.tree.get(actor) else {
            return;
        };
        if !n.is_live() || n.cancel == CancelState::Killed {
            return;
        }
        if self.protected().contains(actor) {
            // It entered the debugger while being torn down: wait for that session.
            if !n.teardown_waiting {
                self.queue_event(RuntimeEvent::TeardownWaiting {
                    actor: actor.into(),
                });
                if let Some(n) = self.tree.get_mut(actor) {
                    n.teardown_waiting = true;
                }
            }
            self.schedule(actor.into(), stage);
            return;
        }
        if let Some(n) = self.tree.get_mut(actor) {
            n.teardown_waiting = false;
            n.cancel = stage;
        }
        match stage {
            CancelState::Terminated => {
                self.signal(actor, Signal::SIGTERM);
                self.schedule(actor.into(), CancelState::Killed);
            }
            _ => {
                self.signal(actor, Signal::SIGKILL);
                self.disconnect_unsignalled(actor);
            }
        }
    }

    /// The last step of tearing down an actor the root did not spawn: it was asked, and
    /// signalled if it is ours; its connection is now closed, so a process outside the
    /// tree (or a fork holding the connection) cannot keep the run from ending.
    fn disconnect_unsignalled(&mut self, actor: &str) {
        if self.tree.get(actor).is_some_and(|n| !n.spawned)
            && let Some(conn) = self.actor_conn.get(actor).copied()
        {
            self.close_conn(conn, Some("torn down".into()));
        }
    }

    /// Signals a spawned actor's whole process group (unless it has been reaped, when its
    /// ids may belong to someone else), or an unspawned actor through its pidfd. An actor
    /// with neither is outside the tree and is never signalled.
    fn signal(&self, actor: &str, sig: Signal) {
        let Some(n) = self.tree.get(actor) else {
            return;
        };
        if n.spawned {
            let reaped = self
                .reaped
                .get(actor)
                .is_none_or(|r| r.load(Ordering::SeqCst));
            if n.pid == 0 || reaped {
                return;
            }
            // ESRCH: the group is already gone, which is what we wanted. The leader is not
            // reaped yet, so its pid, and the group id, cannot have been reused.
            let _ = killpg(Pid::from_raw(n.pid as i32), sig);
        } else if let Some(fd) = self.pidfds.get(actor) {
            // ESRCH: it exited, which is what we wanted.
            let _ = fd.signal(sig);
        }
    }

    // ---- commands ----

    fn on_command(&mut self, cmd: RuntimeCommand) {
        match cmd {
            RuntimeCommand::Input { data } => match self.lock.holder().cloned() {
                Some(g) => {
                    let actor = g.request.key.actor.clone();
                    let queued = self
                        .actor_conn
                        .get(&actor)
                        .and_then(|c| self.conns.get(c))
                        .map_or(0, |c| c.tx.queued_bytes());
                    // Refused, not queued: a healthy session must never be dropped because
                    // somebody pasted a lot into it.
                    if data.len() > bounds::MAX_INPUT {
                        self.notice(
                            Some(&actor),
                            format!(
                                "input of {} bytes refused: the limit is {} bytes",
                                data.len(),
                                bounds::MAX_INPUT
                            ),
                        );
                        return;
                    }
                    if queued + data.len() + 4096 > bounds::PEER_BYTES {
                        self.notice(
                            Some(&actor),
                            format!(
                                "input of {} bytes refused: actor {actor} has not read {queued} bytes sent earlier yet",
                                data.len()
                            ),
                        );
                        return;
                    }
                    if let Some((epoch, w)) = &mut self.holder_watch
                        && *epoch == g.epoch
                    {
                        w.input(Instant::now());
                    }
                    // Frames have a size limit; a huge paste goes out in pieces.
                    for chunk in chunks(&data, INPUT_CHUNK) {
                        self.send_to_actor(
                            &actor,
                            ToActor::ReplInput {
                                task: g.request.key.task,
                                epoch: g.epoch,
                                data: chunk.to_owned(),
                            },
                        );
                    }
                }
                None => self.notice(None, "input ignored: nobody holds the debug lock".into()),
            },
            RuntimeCommand::Complete { line } => match self.lock.holder().cloned() {
                Some(g) => {
                    self.next_dump += 1;
                    let req = self.next_dump;
                    let actor = g.request.key.actor.clone();
                    let msg = ToActor::CompleteRequest {
                        task: g.request.key.task,
                        epoch: g.epoch,
                        req,
                        line: line.clone(),
                    };
                    if self.send_to_actor(&actor, msg) {
                        self.pending_completions.insert(req, (actor, line));
                    }
                }
                None => self.notice(None, "complete: nobody holds the debug lock".into()),
            },
            RuntimeCommand::ForceRelease => match self.lock.force_release() {
                Some(tr) => self.apply(tr, ReleaseCause::Force),
                None => self.notice(None, "force release: the lock is free".into()),
            },
            RuntimeCommand::Dump { actor } => {
                self.next_dump += 1;
                let req = self.next_dump;
                if self.send_to_actor(&actor, ToActor::DumpRequest { req }) {
                    self.pending_dumps.insert(req, actor);
                } else {
                    self.notice(
                        Some(&actor),
                        format!("dump: actor {actor} is not connected"),
                    );
                }
            }
            RuntimeCommand::Cancel { actor, force } => self.cancel_subtree(&actor, force),
            RuntimeCommand::Resize { rows, cols } => {
                self.rows = rows.max(1);
                self.cols = cols.max(1);
                for (actor, pty) in &self.ptys {
                    if let Err(e) = pty.resize(self.rows, self.cols) {
                        tracing::debug!(%actor, error = %e, "resize failed");
                    }
                }
            }
            RuntimeCommand::Quit => {
                self.quitting = true;
                let involved: Vec<String> = self
                    .lock
                    .queue()
                    .map(|r| r.key.actor.clone())
                    .chain(self.lock.holder().map(|g| g.request.key.actor.clone()))
                    .collect();
                let refs: Vec<&str> = involved.iter().map(String::as_str).collect();
                let tr = self.lock.remove_actors(&refs, ReleaseCause::Cancel);
                self.apply(tr, ReleaseCause::Cancel);
                let tops: Vec<String> = self
                    .tree
                    .iter()
                    .filter(|n| n.parent.is_none())
                    .map(|n| n.id.clone())
                    .collect();
                for id in tops {
                    self.cancel_subtree(&id, false);
                }
            }
        }
    }
}
