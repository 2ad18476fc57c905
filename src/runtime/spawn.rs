//! Starting an actor for the engine: its environment (socket, reserved id, name, the
//! bundled Python client), its PTY, the task that forwards its output to the front end and
//! the task that reaps it and reports the exit. Policy (who may spawn, what id) is the
//! core's; this only carries a [`SpawnRequest`] out.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;

use super::core::{Input, SpawnRequest};
use super::event::RuntimeEvent;
use super::event_queue::EventSender;
use super::pty::{self, PtyMaster, SpawnSpec};
use crate::proto::{ActorId, env};

/// The output reader of a spawned actor, not started yet: the engine starts it once the
/// actor's `actor_started` is out, so no `output` event can come before it.
#[derive(Debug)]
pub struct Output {
    actor: ActorId,
    master: Arc<PtyMaster>,
    events: EventSender,
    eof: tokio::sync::oneshot::Sender<()>,
    /// Bytes read so far (the hang watch's sign of life).
    count: Arc<std::sync::atomic::AtomicU64>,
    /// When output last came, in ms since the Unix epoch (0: never), for dumps.
    last: Arc<std::sync::atomic::AtomicU64>,
}

/// Now, in ms since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Output {
    /// Forwards the actor's PTY output to the front end until the PTY closes.
    pub fn start(self) {
        tokio::spawn(async move {
            // Up to 16 KiB a read; the event queue bounds what waits in total. The buffer is
            // held only while output comes (read_buf frees it while the actor is quiet).
            let mut buf = Vec::new();
            loop {
                match self.master.read_buf(&mut buf, 16 * 1024).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        self.count.fetch_add(n as u64, Ordering::Relaxed);
                        self.last.store(now_ms(), Ordering::Relaxed);
                        if !self.events.output(self.actor, &buf[..n]).await {
                            break;
                        }
                    }
                }
            }
            // The waiter may have given up on us already.
            let _ = self.eof.send(());
        });
    }
}

/// A spawned actor's process as the shell keeps it.
#[derive(Debug)]
pub struct Proc {
    pub pid: u32,
    /// Set by the waiter the moment it reaps the process: from then on its pid (and
    /// process group id) may belong to somebody else, so it is never signalled.
    pub reaped: Arc<AtomicBool>,
    /// The PTY, for input and resize; dropped when the actor exits.
    pub pty: Option<Arc<PtyMaster>>,
    /// Bytes of output read from its terminal so far.
    pub output_bytes: Arc<std::sync::atomic::AtomicU64>,
    /// When it last wrote to its terminal (ms since the Unix epoch, 0: never).
    pub last_output: Arc<std::sync::atomic::AtomicU64>,
    /// Keystrokes for the PTY, written in order by one task (started on first use), and how
    /// many bytes of them the program has not taken yet.
    stdin: Option<(
        tokio::sync::mpsc::UnboundedSender<Vec<u8>>,
        Arc<std::sync::atomic::AtomicUsize>,
    )>,
}

/// Bytes typed into one actor's terminal that it may leave unread before more is refused.
pub const STDIN_BUDGET: usize = 1 << 20;

impl Proc {
    /// Queues `data` for the actor's terminal. `Err(queued)` if it is over its budget (the
    /// program is not reading) or its terminal is gone.
    pub fn type_in(&mut self, data: Vec<u8>) -> Result<(), usize> {
        use std::sync::atomic::AtomicUsize;
        let Some(pty) = self.pty.clone() else {
            return Err(0);
        };
        let (tx, queued) = self.stdin.get_or_insert_with(|| {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
            let queued = Arc::new(AtomicUsize::new(0));
            let left = queued.clone();
            tokio::spawn(async move {
                while let Some(bytes) = rx.recv().await {
                    let r = pty.write_all(&bytes).await;
                    left.fetch_sub(bytes.len(), Ordering::Relaxed);
                    if r.is_err() {
                        // The terminal is gone (the actor exited): nothing more to type.
                        break;
                    }
                }
            });
            (tx, queued)
        });
        let now = queued.load(Ordering::Relaxed);
        if now + data.len() > STDIN_BUDGET {
            return Err(now);
        }
        queued.fetch_add(data.len(), Ordering::Relaxed);
        tx.send(data).map_err(|_| now)
    }
}

/// What every spawn needs to know about the run.
#[derive(Debug)]
pub struct Spawner {
    pub socket: PathBuf,
    /// Where the bundled Python client was written, for every actor's PYTHONPATH.
    pub python_dir: Option<PathBuf>,
    pub rows: u16,
    pub cols: u16,
    pub events: EventSender,
    /// Exits go back to the engine as inputs.
    pub inputs: mpsc::Sender<Input>,
    /// The notice about a user's own PYTHONBREAKPOINT went out (once per run, not per spawn).
    pub breakpoint_noticed: AtomicBool,
    /// A private directory where Python actors' faulthandler writes its stacks when the dump
    /// ladder signals it (`ACTOR_TUI_STACKS_DIR`).
    pub stacks_dir: Option<PathBuf>,
    /// With `--listen`: the actor ticket's 0600 file (`ACTOR_TUI_JOIN_TICKET`), so a program
    /// that starts processes on other hosts itself can hand them the ticket.
    pub join_ticket: Option<PathBuf>,
}

impl Spawner {
    /// Starts `req` on its own PTY and wires its exit into the engine; its output is wired
    /// when the caller starts the returned [`Output`].
    pub fn spawn(&self, req: &SpawnRequest) -> std::io::Result<(Proc, Output)> {
        let mut envs: Vec<(String, String)> = req.env.clone();
        if let Some(dir) = &self.python_dir {
            let (py, kept) = super::python::env_for(dir, &envs);
            envs.extend(py);
            if let Some(value) = kept
                && !self.breakpoint_noticed.swap(true, Ordering::Relaxed)
            {
                self.events.control(RuntimeEvent::Notice {
                    actor: Some(req.id),
                    message: super::python::kept_breakpoint_notice(&value),
                });
            }
        }
        envs.push((
            env::SOCKET.into(),
            self.socket.to_string_lossy().into_owned(),
        ));
        envs.push((env::ACTOR.into(), req.id.to_string()));
        if let Some(dir) = &self.stacks_dir {
            envs.push((
                "ACTOR_TUI_STACKS_DIR".into(),
                dir.to_string_lossy().into_owned(),
            ));
        }
        envs.push((env::NAME.into(), req.name.clone()));
        if let Some(file) = &self.join_ticket {
            envs.push((env::JOIN_TICKET.into(), file.to_string_lossy().into_owned()));
        }
        let spec = SpawnSpec {
            program: &req.program,
            args: &req.args,
            env: &envs,
            cwd: req.cwd.as_deref().map(Path::new),
            rows: self.rows,
            cols: self.cols,
        };
        let (mut child, master) = pty::spawn_on_pty(&spec)?;
        let pid = child.id().unwrap_or(0);
        let master = Arc::new(master);
        let reaped = Arc::new(AtomicBool::new(false));

        // Output reader: straight to the front end, so output never waits on the engine.
        let (eof_tx, eof_rx) = tokio::sync::oneshot::channel::<()>();
        let count = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let last = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let output = Output {
            actor: req.id,
            master: master.clone(),
            events: self.events.clone(),
            eof: eof_tx,
            count: count.clone(),
            last: last.clone(),
        };

        // Waiter: reap, then give the output a moment to drain so `actor_exited` comes
        // after the actor's last output (a non-actor grandchild may hold the PTY open).
        let inputs = self.inputs.clone();
        let actor = req.id;
        let flag = reaped.clone();
        tokio::spawn(async move {
            let status = child.wait().await;
            flag.store(true, Ordering::SeqCst);
            // Timed out: a grandchild keeps the PTY open; the exit is reported anyway.
            let _ = tokio::time::timeout(Duration::from_millis(200), eof_rx).await;
            match status {
                Ok(status) => {
                    let exit = crate::proto::Exit::from(status);
                    // Engine gone: the run is over and nobody needs the status.
                    let _ = inputs.send(Input::ChildExited { actor, exit }).await;
                }
                Err(e) => {
                    // Still report an exit (status unknown), or the run would wait for this
                    // actor for ever.
                    tracing::error!(%actor, error = %e, "wait failed");
                    let exit = crate::proto::Exit::default();
                    // Engine gone: nobody needs it.
                    let _ = inputs.send(Input::ChildExited { actor, exit }).await;
                }
            }
        });
        Ok((
            Proc {
                pid,
                reaped,
                pty: Some(master),
                output_bytes: count,
                last_output: last,
                stdin: None,
            },
            output,
        ))
    }
}
