//! The connection to the root: connect and register from the environment, the one reader
//! thread that routes the root's frames to whoever waits for them (lock requests, spawns,
//! child exits, dumps, completions, cancellation), and sending.

use std::collections::HashMap;
use std::io::Write as _;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::proto::{self, ExitReason, PROTOCOL_VERSION, ToActor, ToRoot, env};

use super::mailbox::Mailbox;
use super::{CANCELLED_EXIT_CODE, ChildExit, ClientError, lock_ok, registry};

/// What the reader thread routes to one in-flight lock request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LockMsg {
    Granted(u64),
    Refused(String),
    /// The user let this pause go on without a session.
    Skipped(String),
    Input(String),
    Revoked,
}

/// `spawned` (actor id, pid) or `spawn_failed` (error).
type SpawnReply = Result<(String, u32), String>;

#[derive(Debug, Default)]
struct Routes {
    /// In-flight lock requests by task. Normally one per task; a second is a double
    /// request the root will refuse, and that refusal belongs to the newest entry.
    locks: HashMap<u64, Vec<Arc<Mailbox<LockMsg>>>>,
    spawns: HashMap<u64, Arc<Mailbox<SpawnReply>>>,
    children: HashMap<String, Arc<Mailbox<ChildExit>>>,
    closed: bool,
}

/// A connection to the root. One per process, shared by every thread and task.
pub struct Client {
    actor: String,
    parent: Option<String>,
    name: String,
    writer: Mutex<UnixStream>,
    routes: Mutex<Routes>,
    next_req: AtomicU64,
    cancelled: AtomicBool,
    /// Tab-completion candidates (full input lines) of each open session, by task; the
    /// reader thread answers completion requests from here while the session thread waits.
    completions: Mutex<HashMap<u64, Vec<String>>>,
    /// Set when the program handles cancellation itself (see [`Client::on_cancel`]).
    cancel_hook: Mutex<Option<Box<dyn Fn() + Send + Sync>>>,
    /// The grants held now, leased to the root by one thread.
    pub(crate) leases: Arc<super::lease::Leases>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("actor", &self.actor)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Client {
    pub(crate) fn connect_from_env() -> Result<Arc<Self>, ClientError> {
        let claimed = std::env::var(env::ACTOR).ok();
        let name = std::env::var(env::NAME).ok().unwrap_or_else(|| {
            std::env::args()
                .next()
                .and_then(|a| {
                    Path::new(&a)
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                })
                .unwrap_or_else(|| "actor".into())
        });
        // A local root's socket first; else a ticket for a root on another host.
        if let Some(path) = std::env::var_os(env::SOCKET) {
            return Self::connect(Path::new(&path), &name, claimed);
        }
        #[cfg(feature = "remote")]
        if let Some(ticket) = crate::remote::ticket_from_env() {
            let ticket = ticket.map_err(|e| ClientError::Protocol(e.to_string()))?;
            let stream = crate::remote::bridge(&ticket).map_err(|e| ClientError::Connect {
                path: ticket.addr.clone(),
                source: std::io::Error::other(e.to_string()),
            })?;
            // A reservation is a local root's; a remote one gives a fresh id.
            return Self::connect_over(stream, &name, None);
        }
        Err(ClientError::NoRoot)
    }

    /// Connects to the root at `path` and registers as `name`.
    pub fn connect(
        path: &Path,
        name: &str,
        claimed: Option<String>,
    ) -> Result<Arc<Self>, ClientError> {
        let stream = UnixStream::connect(path).map_err(|source| ClientError::Connect {
            path: path.display().to_string(),
            source,
        })?;
        Self::connect_over(stream, name, claimed)
    }

    /// Registers over a stream that reaches a root (its socket, or a remote link's bridge).
    pub fn connect_over(
        stream: UnixStream,
        name: &str,
        claimed: Option<String>,
    ) -> Result<Arc<Self>, ClientError> {
        // A root that accepts but never answers must not hang the actor.
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut reader = stream.try_clone()?;
        let mut writer = stream;
        proto::write_frame_sync(
            &mut writer,
            &ToRoot::Hello {
                protocol: PROTOCOL_VERSION,
                agent: format!("actor-tui-rust {}", env!("CARGO_PKG_VERSION")),
            },
        )?;
        match proto::read_frame_sync::<_, ToActor>(&mut reader)? {
            Some(ToActor::Hello { protocol, .. }) if protocol == PROTOCOL_VERSION => {}
            Some(ToActor::Hello { protocol, agent }) => {
                return Err(ClientError::Protocol(format!(
                    "root {agent} speaks protocol {protocol}, this client speaks {PROTOCOL_VERSION}"
                )));
            }
            other => {
                return Err(ClientError::Protocol(format!(
                    "expected hello, got {other:?}"
                )));
            }
        }
        proto::write_frame_sync(
            &mut writer,
            &ToRoot::Register {
                name: name.into(),
                pid: std::process::id(),
                actor: claimed,
                group: None,
            },
        )?;
        let (actor, parent) = match proto::read_frame_sync::<_, ToActor>(&mut reader)? {
            Some(ToActor::Registered { actor, parent }) => (actor, parent),
            Some(ToActor::Error { message }) => return Err(ClientError::Protocol(message)),
            other => {
                return Err(ClientError::Protocol(format!(
                    "expected registered, got {other:?}"
                )));
            }
        };
        reader.set_read_timeout(None)?;
        let client = Arc::new(Self {
            actor,
            parent,
            name: name.into(),
            writer: Mutex::new(writer),
            routes: Mutex::new(Routes::default()),
            next_req: AtomicU64::new(1),
            cancelled: AtomicBool::new(false),
            completions: Mutex::new(HashMap::new()),
            cancel_hook: Mutex::new(None),
            leases: Arc::default(),
        });
        let weak = Arc::downgrade(&client);
        std::thread::Builder::new()
            .name("actor-tui-client".into())
            .spawn(move || reader_loop(reader, weak))?;
        Ok(client)
    }

    /// This actor's id in the tree.
    pub fn actor(&self) -> &str {
        &self.actor
    }

    pub fn parent(&self) -> Option<&str> {
        self.parent.as_deref()
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// True once the root asked this actor to stop.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }

    /// Handle cancellation yourself: `hook` runs (on the client's reader thread) when the
    /// root sends Cancel, instead of the default, which exits with [`CANCELLED_EXIT_CODE`].
    /// The root still escalates to SIGTERM and SIGKILL after its grace period.
    pub fn on_cancel(&self, hook: impl Fn() + Send + Sync + 'static) {
        *lock_ok(&self.cancel_hook) = Some(Box::new(hook));
    }

    pub(crate) fn send(&self, msg: &ToRoot) -> Result<(), ClientError> {
        let bytes = proto::frame_bytes(msg)?;
        let mut w = lock_ok(&self.writer);
        w.write_all(&bytes)?;
        Ok(())
    }

    fn next_req(&self) -> u64 {
        self.next_req.fetch_add(1, Ordering::Relaxed)
    }

    /// Sets (or, with `None`, clears) the completion candidates of `task`'s session.
    pub(crate) fn set_completions(&self, task: u64, candidates: Option<Vec<String>>) {
        let mut c = lock_ok(&self.completions);
        match candidates {
            Some(v) => c.insert(task, v),
            None => c.remove(&task),
        };
    }

    /// Registers a mailbox for a lock request of `task` before the request is sent.
    pub(crate) fn lock_route(&self, task: u64) -> Arc<Mailbox<LockMsg>> {
        let mb = Arc::new(Mailbox::default());
        let mut r = lock_ok(&self.routes);
        if r.closed {
            mb.close();
        } else {
            r.locks.entry(task).or_default().push(mb.clone());
        }
        mb
    }

    pub(crate) fn drop_lock_route(&self, task: u64, mb: &Arc<Mailbox<LockMsg>>) {
        let mut r = lock_ok(&self.routes);
        if let Some(v) = r.locks.get_mut(&task) {
            v.retain(|m| !Arc::ptr_eq(m, mb));
            if v.is_empty() {
                r.locks.remove(&task);
            }
        }
    }

    /// Asks the root to start `program` as a subactor of this one; the new actor's id and
    /// pid, and the mailbox its exit will arrive in.
    pub(crate) fn request_spawn(
        &self,
        name: &str,
        program: &str,
        args: &[String],
    ) -> Result<(String, u32, Arc<Mailbox<ChildExit>>), ClientError> {
        let req = self.next_req();
        let mb = Arc::new(Mailbox::default());
        {
            let mut r = lock_ok(&self.routes);
            if r.closed {
                return Err(ClientError::Disconnected);
            }
            r.spawns.insert(req, mb.clone());
        }
        self.send(&ToRoot::Spawn {
            req,
            name: name.into(),
            program: program.into(),
            args: args.to_vec(),
            env: None,
            cwd: None,
        })?;
        match mb.recv() {
            Some(Ok((actor, pid))) => {
                let exit = lock_ok(&self.routes)
                    .children
                    .get(&actor)
                    .cloned()
                    .unwrap_or_default();
                Ok((actor, pid, exit))
            }
            Some(Err(error)) => Err(ClientError::Spawn {
                name: name.into(),
                error,
            }),
            None => Err(ClientError::Disconnected),
        }
    }

    /// Asks the root to cancel `actor` and its subtree.
    pub fn cancel(&self, actor: &str, force: bool) -> Result<(), ClientError> {
        self.send(&ToRoot::Cancel {
            actor: actor.into(),
            force,
        })
    }

    /// Tells the root how this process is about to end (best effort).
    pub fn announce_exit(&self, code: i32, reason: ExitReason) {
        // Best effort: if the root is gone there is nobody to tell.
        let _ = self.send(&ToRoot::Exiting { code, reason });
    }

    fn on_frame(&self, msg: ToActor) {
        match msg {
            ToActor::LockGranted { task, epoch } => {
                self.route_lock(task, LockMsg::Granted(epoch), false)
            }
            ToActor::LockRefused {
                task,
                error,
                skipped,
            } => {
                let msg = if skipped {
                    LockMsg::Skipped(error)
                } else {
                    LockMsg::Refused(error)
                };
                self.route_lock(task, msg, true)
            }
            ToActor::ReplInput { task, data, .. } => {
                self.route_lock(task, LockMsg::Input(data), false)
            }
            ToActor::LockRevoked { task, .. } => self.route_lock(task, LockMsg::Revoked, false),
            ToActor::Spawned { req, actor, pid } => {
                let mut r = lock_ok(&self.routes);
                // The exit mailbox must exist before the spawner sees the handle, since
                // `child_exited` may be the very next frame.
                r.children.entry(actor.clone()).or_default();
                if let Some(mb) = r.spawns.remove(&req) {
                    mb.push(Ok((actor, pid)));
                }
            }
            ToActor::SpawnFailed { req, error } => {
                if let Some(mb) = lock_ok(&self.routes).spawns.remove(&req) {
                    mb.push(Err(error));
                }
            }
            ToActor::ChildExited { actor, exit } => {
                let mb = lock_ok(&self.routes)
                    .children
                    .entry(actor)
                    .or_default()
                    .clone();
                mb.push(exit);
            }
            ToActor::DumpRequest { req } => {
                let text = registry::dump(&self.name);
                if let Err(e) = self.send(&ToRoot::DumpReply { req, text }) {
                    tracing::debug!(error = %e, "dump reply not sent");
                }
            }
            ToActor::Cancel { force } => {
                self.cancelled.store(true, Ordering::SeqCst);
                let hook = lock_ok(&self.cancel_hook).take();
                match hook {
                    Some(h) if !force => {
                        h();
                        *lock_ok(&self.cancel_hook) = Some(h);
                    }
                    _ => {
                        self.announce_exit(CANCELLED_EXIT_CODE, ExitReason::Cancelled);
                        std::process::exit(CANCELLED_EXIT_CODE);
                    }
                }
            }
            ToActor::Interrupt => {
                // The session runs on its own thread: this reader must keep serving frames
                // (the grant, the user's input) while it lasts.
                let spawned = std::thread::Builder::new()
                    .name("actor-tui-break-in".into())
                    .spawn(super::pause::break_in);
                if let Err(e) = spawned {
                    let message = format!("cannot break in: no thread for the session ({e})");
                    // Best effort: the root only loses a notice.
                    let _ = self.send(&ToRoot::Notice { message });
                }
            }
            ToActor::Error { message } => {
                tracing::error!(%message, "actor-tui root reported an error");
            }
            ToActor::CompleteRequest {
                task, req, line, ..
            } => {
                let matches: Vec<String> = lock_ok(&self.completions)
                    .get(&task)
                    .map(|c| c.iter().filter(|m| m.starts_with(&line)).cloned().collect())
                    .unwrap_or_default();
                if let Err(e) = self.send(&ToRoot::CompleteReply { req, matches }) {
                    tracing::debug!(error = %e, "completion reply not sent");
                }
            }
            ToActor::Unknown => tracing::debug!("ignoring a message type from a newer root"),
            // The link layer's, handled before `hello` (see `remote`).
            ToActor::Challenge { .. } | ToActor::Welcome => {}
            ToActor::Hello { .. } | ToActor::Registered { .. } => {
                tracing::warn!("unexpected handshake frame after registration");
            }
        }
    }

    fn route_lock(&self, task: u64, msg: LockMsg, newest: bool) {
        let mut r = lock_ok(&self.routes);
        let Some(v) = r.locks.get_mut(&task) else {
            tracing::debug!(task, ?msg, "frame for a task with no request; ignored");
            return;
        };
        let mb = if newest { v.pop() } else { v.first().cloned() };
        if v.is_empty() {
            r.locks.remove(&task);
        }
        if let Some(mb) = mb {
            mb.push(msg);
        }
    }

    fn close_routes(&self) {
        let mut r = lock_ok(&self.routes);
        r.closed = true;
        for mb in r.locks.drain().flat_map(|(_, v)| v) {
            mb.close();
        }
        for (_, mb) in r.spawns.drain() {
            mb.close();
        }
        for mb in r.children.values() {
            mb.close();
        }
    }
}

fn reader_loop(mut reader: UnixStream, client: std::sync::Weak<Client>) {
    loop {
        let frame = proto::read_frame_sync::<_, ToActor>(&mut reader);
        let Some(client) = client.upgrade() else {
            return;
        };
        match frame {
            Ok(Some(msg)) => client.on_frame(msg),
            Ok(None) => {
                tracing::warn!("actor-tui root closed the connection");
                client.close_routes();
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "actor-tui connection failed");
                client.close_routes();
                return;
            }
        }
    }
}
