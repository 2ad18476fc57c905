//! Subactors: asking the root to spawn one (or running it as a plain child without a
//! root), and the handle its parent waits on.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::mailbox::Mailbox;
use super::{ChildExit, Client, ClientError, global, lock_ok};

impl Client {
    /// Asks the root to start `program` as a subactor of this one, on its own PTY.
    pub fn spawn(
        &self,
        name: &str,
        program: &str,
        args: &[String],
    ) -> Result<ActorHandle, ClientError> {
        let (actor, pid, exit) = self.request_spawn(name, program, args)?;
        Ok(ActorHandle {
            name: name.into(),
            pid,
            inner: HandleInner::Remote { actor, exit },
        })
    }
}

#[derive(Debug)]
enum HandleInner {
    Remote {
        actor: String,
        exit: Arc<Mailbox<ChildExit>>,
    },
    /// Without a root, subactors are plain child processes.
    Local(Mutex<std::process::Child>),
}

/// A subactor this process started: wait for it or cancel it.
#[derive(Debug)]
pub struct ActorHandle {
    name: String,
    pid: u32,
    inner: HandleInner,
}

impl ActorHandle {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The subactor's id in the tree (None without a root).
    pub fn actor(&self) -> Option<&str> {
        match &self.inner {
            HandleInner::Remote { actor, .. } => Some(actor),
            HandleInner::Local(_) => None,
        }
    }

    /// Blocks until the subactor exits.
    pub fn wait(&self) -> Result<ChildExit, ClientError> {
        match &self.inner {
            HandleInner::Remote { exit, .. } => exit.recv().ok_or(ClientError::Disconnected),
            HandleInner::Local(child) => Ok(lock_ok(child).wait()?.into()),
        }
    }

    /// Waits asynchronously until the subactor exits.
    pub async fn wait_async(&self) -> Result<ChildExit, ClientError> {
        match &self.inner {
            HandleInner::Remote { exit, .. } => {
                exit.recv_async().await.ok_or(ClientError::Disconnected)
            }
            HandleInner::Local(_) => {
                // Rare path (no root): poll without blocking the executor.
                loop {
                    if let HandleInner::Local(child) = &self.inner
                        && let Some(st) = lock_ok(child).try_wait()?
                    {
                        return Ok(st.into());
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }

    /// Cancels the subactor and its subtree (see the README on teardown).
    pub fn cancel(&self, force: bool) -> Result<(), ClientError> {
        match &self.inner {
            HandleInner::Remote { actor, .. } => match global() {
                Some(c) => c.cancel(actor, force),
                None => Err(ClientError::Disconnected),
            },
            HandleInner::Local(child) => {
                let sig = if force {
                    nix::sys::signal::Signal::SIGKILL
                } else {
                    nix::sys::signal::Signal::SIGTERM
                };
                let pid = nix::unistd::Pid::from_raw(lock_ok(child).id() as i32);
                nix::sys::signal::kill(pid, sig).map_err(|e| ClientError::Io(e.into()))
            }
        }
    }
}

/// Starts a subactor: through the root when running under actor-tui, else as a plain child
/// process (so the same program runs without the console).
pub fn spawn_actor(name: &str, program: &str, args: &[String]) -> Result<ActorHandle, ClientError> {
    match global() {
        Some(c) => c.spawn(name, program, args),
        None => {
            let child = std::process::Command::new(program).args(args).spawn()?;
            Ok(ActorHandle {
                name: name.into(),
                pid: child.id(),
                inner: HandleInner::Local(Mutex::new(child)),
            })
        }
    }
}

/// Starts this same executable again as a subactor, with `args` (the usual way an example
/// program plays several roles).
pub fn spawn_self(name: &str, args: &[&str]) -> Result<ActorHandle, ClientError> {
    let exe = std::env::current_exe()?;
    let args: Vec<String> = args.iter().map(|s| (*s).to_owned()).collect();
    spawn_actor(name, &exe.to_string_lossy(), &args)
}
