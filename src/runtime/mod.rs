//! The root engine: socket server, lock, actor tree, PTYs and teardown. No terminal code:
//! front ends talk to it only through [`event`]'s `RuntimeEvent`/`RuntimeCommand`.

mod engine;
pub mod event;
pub mod lock;
pub mod pty;
pub mod python;
pub mod server;
pub mod tree;

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use event::{RuntimeCommand, RuntimeEvent};

/// How to start a run.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// The first actor: program and arguments.
    pub program: String,
    pub args: Vec<String>,
    /// Display name of the first actor (default: the program's file name).
    pub name: Option<String>,
    /// Socket path; default: a per-run path in [`server::default_socket_dir`].
    pub socket: Option<PathBuf>,
    /// Wait between Cancel and SIGTERM, and between SIGTERM and SIGKILL.
    pub grace: Duration,
    /// Size of every actor's PTY.
    pub rows: u16,
    pub cols: u16,
    /// Extra environment for the first actor (its children inherit it).
    pub env: Vec<(String, String)>,
}

impl RuntimeConfig {
    pub fn new(program: impl Into<String>, args: Vec<String>) -> Self {
        Self {
            program: program.into(),
            args,
            name: None,
            socket: None,
            grace: Duration::from_secs(2),
            rows: 24,
            cols: 80,
            env: Vec::new(),
        }
    }
}

/// Errors that stop a run before it starts.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Server(#[from] server::ServerError),
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
}

/// A running engine: its events, its command inbox and the task that ends with the exit code.
#[derive(Debug)]
pub struct Runtime {
    /// Events in order. Bounded (256; output chunks are at most 16 KiB, so at most 4 MB
    /// waits here): when the front end falls behind, the engine and the PTY readers wait,
    /// which in turn makes flooding actors block on their own output.
    pub events: mpsc::Receiver<RuntimeEvent>,
    /// Commands from the front end. Separate from everything else so keystrokes never queue
    /// behind output.
    pub commands: mpsc::Sender<RuntimeCommand>,
    pub socket: PathBuf,
    /// The teardown grace period (front ends bound their own waiting with it).
    pub grace: Duration,
    pub task: JoinHandle<i32>,
}

/// Binds the socket, spawns the first actor and starts the engine.
pub async fn start(cfg: RuntimeConfig) -> Result<Runtime, RuntimeError> {
    let socket = cfg.socket.clone().unwrap_or_else(|| {
        server::default_socket_dir().join(format!("root-{}.sock", std::process::id()))
    });
    let listener = server::bind(&socket, cfg.socket.is_none())?;
    // The socket's directory is private (0700): a safe home for the Python client too.
    let python_dir = match socket.parent().map(python::extract) {
        Some(Ok(dir)) => Some(dir),
        Some(Err(e)) => {
            tracing::warn!(error = %e, "cannot write the Python client; Python actors get plain pdb");
            None
        }
        None => None,
    };
    let (ev_tx, ev_rx) = mpsc::channel(256);
    // Bounded (1024) like every inbox: connection readers wait when the engine is busy.
    let (conn_tx, conn_rx) = mpsc::channel(1024);
    let (cmd_tx, cmd_rx) = mpsc::channel(64);
    tokio::spawn(server::serve(listener, conn_tx.clone()));
    let mut engine = engine::Engine::new(cfg.clone(), socket.clone(), python_dir, ev_tx, conn_tx);
    engine
        .spawn_first(&cfg)
        .map_err(|source| RuntimeError::Spawn {
            program: cfg.program.clone(),
            source,
        })?;
    let path = socket.clone();
    let task = tokio::spawn(async move {
        let code = engine.run(conn_rx, cmd_rx).await;
        // Best effort: the socket file is ours and useless once the run is over.
        let _ = std::fs::remove_file(&path);
        code
    });
    Ok(Runtime {
        events: ev_rx,
        commands: cmd_tx,
        socket,
        grace: cfg.grace,
        task,
    })
}
