//! What actor processes link: connect to the root from the environment, register, spawn
//! subactors, pause (async, sync, from any thread), post-mortem on panic, answer dumps and
//! cancellation. It never installs a tracing subscriber and never writes to the terminal
//! except as the no-root fallback.
//!
//! The client needs no async runtime of its own: one reader thread per process routes the
//! root's frames into [`mailbox::Mailbox`]es that blocking and async callers both wait on.

mod conn;
mod crash;
mod lease;
mod lock;
mod mailbox;
mod pause;
pub mod registry;
pub mod repl;
mod shield;
mod spawn;

use std::sync::{Arc, OnceLock};

use crate::proto::{self, env};

pub use conn::Client;
pub(crate) use conn::LockMsg;
pub use crash::install_crash_handler;
pub use lock::{LockGuard, acquire_lock};
pub use mailbox::Mailbox;
pub use pause::{
    PauseError, PauseSite, QUIT_EXIT_CODE, pause_at, pause_at_sync, pause_here, pause_here_sync,
};
pub use registry::{spawn_task, spawn_thread};
pub use spawn::{ActorHandle, spawn_actor, spawn_self};

/// Exit code of an actor that complied with a cancel request.
pub const CANCELLED_EXIT_CODE: i32 = 143;

/// Errors of the client API.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "not running under actor-tui (neither {} nor {TICKET_ENV} is set)",
        env::SOCKET
    )]
    NoRoot,
    #[error("cannot connect to the root at {path}: {source}")]
    Connect {
        path: String,
        source: std::io::Error,
    },
    #[error("protocol error: {0}")]
    Protocol(String),
    #[error(transparent)]
    Frame(#[from] proto::FrameError),
    #[error("the root closed the connection")]
    Disconnected,
    #[error("spawn of {name} failed: {error}")]
    Spawn { name: String, error: String },
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

/// How a subactor ended, as its parent sees it.
pub type ChildExit = crate::proto::Exit;

pub(crate) use crate::sync::lock as lock_ok;

/// Where a remote actor finds its ticket (read only with the `remote` feature).
const TICKET_ENV: &str = env::TICKET;

static GLOBAL: OnceLock<Option<Arc<Client>>> = OnceLock::new();

/// Connects to the root named by the environment (once per process), registers, installs
/// the crash handler, and names the calling thread "main" in dumps. Returns `None` when not
/// running under actor-tui or when the root cannot be reached (logged); pauses then fall
/// back to the process's own terminal.
pub fn init() -> Option<Arc<Client>> {
    install_crash_handler();
    global()
}

/// The process's client, connecting on first use.
pub fn global() -> Option<Arc<Client>> {
    GLOBAL
        .get_or_init(|| {
            let remote = std::env::var_os(TICKET_ENV).is_some_and(|t| !t.is_empty());
            if std::env::var_os(env::SOCKET).is_none() && !remote {
                return None;
            }
            registry::register_current_thread();
            match Client::connect_from_env() {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::warn!(error = %e, "actor-tui: cannot reach the root");
                    eprintln!("actor-tui: cannot reach the root: {e}");
                    None
                }
            }
        })
        .clone()
}
