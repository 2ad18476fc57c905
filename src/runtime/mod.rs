//! The root engine: socket server, lock, actor tree, PTYs and teardown. No terminal code:
//! front ends talk to it only through [`event`]'s `RuntimeEvent`/`RuntimeCommand`.

pub mod admission;
pub mod bounds;
pub mod core;
pub mod dump;
mod engine;
pub mod event;
pub mod event_queue;
pub mod hang;
pub mod hub;
mod inspect;
pub mod listen;
pub mod lock;
pub mod private_dir;
pub mod procs;
pub mod pty;
pub mod python;
pub mod replay;
pub mod server;
pub mod sessions;
mod spawn;
pub mod suspect;
pub mod tree;
pub mod viewers;

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use event::{RuntimeCommand, RuntimeEvent};
use private_dir::PrivateDir;

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
    /// `--listen HOST:PORT`: accept remote actors and viewers over TLS.
    pub listen: Option<String>,
    /// `--advertise HOST:PORT`: the address written into tickets.
    pub advertise: Option<String>,
    /// How soon a remote link whose peer vanished is given up.
    pub link_timeout: Duration,
    /// Still this long while others depend on it: marked possibly hung.
    pub hang_after: Duration,
    /// `--dump-on-hang SECS`: the whole tree still that long takes a snapshot by itself.
    pub dump_on_hang: Option<Duration>,
    /// actor-tui's state directory (`$XDG_STATE_HOME/actor-tui`): tree-wide snapshots go
    /// into its `snapshots/`. `None`: snapshots are shown, not saved.
    pub state_dir: Option<PathBuf>,
    /// Where this run's session transcripts and report go. `Default` is
    /// `STATE/transcripts/run-STAMP-PID` (nothing is written without a state directory).
    pub transcripts: Transcripts,
    /// Admission rules in force from the start (the config file's `[[rules]]`).
    pub rules: Vec<admission::Rule>,
}

/// Where transcripts go (`--transcript-dir`, `--no-transcripts`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Transcripts {
    /// Under the state directory, one directory per run.
    #[default]
    Default,
    /// This directory (made 0700 if it does not exist; refused if it is not private).
    Dir(PathBuf),
    /// Kept in memory for the console only.
    Off,
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
            listen: None,
            advertise: None,
            link_timeout: crate::remote::LINK_TIMEOUT,
            state_dir: None,
            transcripts: Transcripts::Default,
            rules: Vec::new(),
            hang_after: core::HANG_AFTER,
            dump_on_hang: None,
        }
    }
}

/// Errors that stop a run before it starts.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    Server(#[from] server::ServerError),
    #[error(transparent)]
    Listen(#[from] listen::ListenError),
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
}

/// A running engine: its events, its command inbox and the task that ends with the exit code.
#[derive(Debug)]
pub struct Runtime {
    /// Events in order. When the front end falls behind, PTY output waits (and flooding
    /// actors block on their own output) but control events never do: see [`event_queue`].
    pub events: event_queue::EventReceiver,
    /// Commands from the front end. Separate from everything else so keystrokes never queue
    /// behind output.
    pub commands: mpsc::Sender<RuntimeCommand>,
    pub socket: PathBuf,
    /// The teardown grace period (front ends bound their own waiting with it).
    pub grace: Duration,
    pub task: JoinHandle<i32>,
    /// This front end's viewer id when it is attached to a run started elsewhere
    /// (`actor-tui attach`); `None` for the root's own front end.
    pub viewer: Option<u64>,
}

/// SIGTERM, SIGHUP and SIGINT end the run like `quit`: the engine is asked to quit, and the
/// polite teardown gets a bounded time (twice the grace period plus 2 s). If the run is
/// still not over then, `before_exit` runs (the console restores the terminal) and the
/// process exits with 128 + the signal; the actors die with it (PR_SET_PDEATHSIG).
pub fn quit_on_signals(
    commands: mpsc::Sender<RuntimeCommand>,
    grace: Duration,
    before_exit: fn(),
) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term_sig = signal(SignalKind::terminate())?;
    let mut hup_sig = signal(SignalKind::hangup())?;
    let mut int_sig = signal(SignalKind::interrupt())?;
    tokio::spawn(async move {
        let code = tokio::select! {
            _ = term_sig.recv() => 143,
            _ = hup_sig.recv() => 129,
            _ = int_sig.recv() => 130,
        };
        tracing::info!(code, "signalled: quitting");
        // Full queue or engine gone: the deadline below still ends the process.
        let _ = commands.try_send(RuntimeCommand::Quit);
        tokio::time::sleep(grace * 2 + Duration::from_secs(2)).await;
        before_exit();
        std::process::exit(code);
    });
    Ok(())
}

/// Where the bundled Python client goes: the default private directory when it checks out
/// (so the copy and its bytecode are reused between runs), else a fresh 0700 directory for
/// this run only, removed at the end. Never next to a `--socket` path the user chose.
fn python_home(default_dir: Option<&PrivateDir>) -> (Option<PathBuf>, Option<PrivateDir>) {
    let fresh = match default_dir {
        Some(_) => None,
        None => PrivateDir::fresh(&std::env::temp_dir(), "actor-tui-py")
            .map_err(|e| tracing::warn!(error = %e, "no private directory for the Python client"))
            .ok(),
    };
    let Some(parent) = default_dir.or(fresh.as_ref()) else {
        return (None, None);
    };
    match python::extract(parent) {
        Ok(dir) => (Some(dir), fresh),
        Err(e) => {
            tracing::warn!(error = %e, "cannot write the Python client; Python actors get plain pdb");
            (None, fresh)
        }
    }
}

/// Binds the socket, spawns the first actor and starts the engine.
pub async fn start(cfg: RuntimeConfig) -> Result<Runtime, RuntimeError> {
    let nofile = procs::raise_nofile_limit();
    procs::become_subreaper();
    // The default directory is verified before anything goes into it; with `--socket` it
    // is only a home for the Python client, so a bad one is not fatal there.
    let (socket, socket_dir) = match &cfg.socket {
        Some(path) => (
            path.clone(),
            PrivateDir::open_or_create(&server::default_socket_dir()).ok(),
        ),
        None => {
            let dir = PrivateDir::open_or_create(&server::default_socket_dir())
                .map_err(server::ServerError::Dir)?;
            (
                dir.path().join(format!("root-{}.sock", std::process::id())),
                Some(dir),
            )
        }
    };
    let bound = server::bind(&socket)?;
    let (python_dir, python_tmp) = python_home(socket_dir.as_ref());
    let (ev_tx, ev_rx) = event_queue::channel();
    let (tcp, ticket_files) = match &cfg.listen {
        Some(addr) => {
            let (side, l) = listen::listen(
                addr,
                cfg.advertise.as_deref(),
                socket_dir.as_ref().map(PrivateDir::path),
                cfg.link_timeout,
            )
            .await?;
            tracing::info!(address = %l.address, "listening for remote actors and viewers");
            ev_tx.control(RuntimeEvent::Listening {
                address: l.address.clone(),
                ticket: l.actor.to_string(),
                observer_ticket: l.observer.to_string(),
                driver_ticket: l.driver.to_string(),
                ticket_file: l.files.first().map(|f| f.display().to_string()),
                ticket_files: l.files.iter().map(|f| f.display().to_string()).collect(),
            });
            (Some(side), l.files)
        }
        None => (None, Vec::new()),
    };
    // Bounded (1024) like every inbox: connection readers wait when the engine is busy.
    let (conn_tx, conn_rx) = mpsc::channel(1024);
    let (cmd_tx, cmd_rx) = mpsc::channel(64);
    tokio::spawn(server::serve(
        bound.listener,
        tcp,
        conn_tx.clone(),
        bounds::max_connections(nofile),
    ));
    // Where Python actors write their stacks when a dump signals them: fresh for the run,
    // 0700, removed at its end.
    let stacks = PrivateDir::fresh(
        socket_dir
            .as_ref()
            .map_or_else(std::env::temp_dir, |d| d.path().to_owned())
            .as_path(),
        "stacks",
    )
    .map_err(
        |e| tracing::warn!(error = %e, "no stacks directory; dumps skip the faulthandler step"),
    )
    .ok();
    let mut engine = engine::Engine::new(
        cfg.clone(),
        socket.clone(),
        python_dir,
        stacks.as_ref().map(|d| d.path().to_owned()),
        ev_tx,
        conn_tx,
    );
    // The actor ticket's file, for a program that starts processes on other hosts itself
    // (a Ray driver hands it to its workers).
    engine.set_join_ticket(
        ticket_files
            .iter()
            .find(|f| f.to_string_lossy().ends_with(".actor.ticket"))
            .cloned(),
    );
    engine
        .spawn_first(&cfg)
        .map_err(|source| RuntimeError::Spawn {
            program: cfg.program.clone(),
            source,
        })?;
    let path = socket.clone();
    let file = bound.file;
    let cleanup = move || {
        // Ours and useless once the run is over; a file someone else put there stays.
        file.remove_if_same(&path);
        // Made by this run with create_new in our private directory.
        for f in &ticket_files {
            let _ = std::fs::remove_file(f);
        }
        if let Some(dir) = &stacks
            && let Err(e) = std::fs::remove_dir_all(dir.path())
        {
            tracing::warn!(dir = %dir.path().display(), error = %e, "cannot remove the run's stacks directory");
        }
        if let Some(tmp) = python_tmp
            && let Err(e) = std::fs::remove_dir_all(tmp.path())
        {
            tracing::warn!(dir = %tmp.path().display(), error = %e, "cannot remove the run's Python client");
        }
        drop(socket_dir);
    };
    let task = tokio::spawn(async move { engine.run(conn_rx, cmd_rx, cleanup).await });
    Ok(Runtime {
        events: ev_rx,
        commands: cmd_tx,
        socket,
        grace: cfg.grace,
        task,
        viewer: None,
    })
}
