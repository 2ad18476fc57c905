//! `actor-tui attach` and `actor-tui ls`: a second front end on a run started elsewhere.
//! [`connect`] attaches to a root as a viewer and returns a [`Runtime`] whose events come
//! from the root and whose commands go to it, so the same console and headless front ends
//! run on it unchanged.
//!
//! What is local to an attached front end: `quit` from the console detaches (the run goes
//! on); a resize is the viewer's own business (the root ignores it); a closed connection
//! ends the front end with a notice and exit code 1.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::mpsc;

use crate::proto::{self, FrameError, PROTOCOL_VERSION, RuntimeCommand, ToRoot};
use crate::runtime::event_queue::{self, EventSender};
use crate::runtime::hub::ToViewer;
use crate::runtime::{Runtime, RuntimeEvent, server};

/// How long the root has to answer `hello` and `attach`.
const HANDSHAKE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("cannot connect to {path}: {source}")]
    Connect {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} is not a root of this user (it belongs to uid {1})")]
    NotOurs(PathBuf, u32),
    #[error("the root refused: {0}")]
    Refused(String),
    #[error("protocol: {0}")]
    Frame(#[from] FrameError),
    #[error("the root did not answer within {}s", HANDSHAKE.as_secs())]
    Timeout,
    #[error("{0}")]
    Target(String),
}

/// What to attach as.
#[derive(Debug, Clone)]
pub struct AttachOptions {
    pub name: String,
    pub driver: bool,
    pub take_over: bool,
    /// `quit` from the front end detaches instead of ending the run (the console's way; a
    /// headless driver's `quit` ends the run, and `detach` detaches).
    pub quit_detaches: bool,
}

/// `user@host`, the name other consoles show for this viewer.
pub fn default_name() -> String {
    let user = std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| nix::unistd::geteuid().to_string());
    match crate::runtime::procs::hostname() {
        Some(host) => format!("{user}@{host}"),
        None => user,
    }
}

/// A root of this user found in the default socket directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    pub socket: PathBuf,
    pub pid: u32,
    /// Its command line, if its process can be read.
    pub command: Option<String>,
}

/// The roots listening in the default socket directory (`root-PID.sock` whose process is
/// alive). Roots started with `--socket` live elsewhere and are not listed. Nothing is
/// connected to: a directory that does not pass the private-directory checks lists nothing.
pub fn list_roots() -> Vec<Root> {
    let dir = server::default_socket_dir();
    // Listing must not create the directory (there is no root then anyway).
    if !dir.is_dir() {
        return Vec::new();
    }
    let Ok(private) = crate::runtime::private_dir::PrivateDir::open_or_create(&dir) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(private.path()) else {
        return Vec::new();
    };
    let mut roots: Vec<Root> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let pid: u32 = name
                .strip_prefix("root-")?
                .strip_suffix(".sock")?
                .parse()
                .ok()?;
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let command = cmdline
                .split(|b| *b == 0)
                .filter(|a| !a.is_empty())
                .map(String::from_utf8_lossy)
                .collect::<Vec<_>>()
                .join(" ");
            Some(Root {
                socket: e.path(),
                pid,
                command: Some(command).filter(|c| !c.is_empty()),
            })
        })
        .collect();
    roots.sort_by_key(|r| r.pid);
    roots
}

/// Resolves `attach`'s target: a socket path, a root's pid, or nothing (the only root).
pub fn resolve(target: Option<&str>) -> Result<PathBuf, AttachError> {
    match target {
        Some(t) if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) => {
            let pid: u32 = t
                .parse()
                .map_err(|_| AttachError::Target(format!("`{t}` is not a pid")))?;
            list_roots()
                .into_iter()
                .find(|r| r.pid == pid)
                .map(|r| r.socket)
                .ok_or_else(|| {
                    AttachError::Target(format!("no root with pid {pid} (see `actor-tui ls`)"))
                })
        }
        Some(t) => Ok(PathBuf::from(t)),
        None => {
            let mut roots = list_roots();
            match roots.len() {
                0 => Err(AttachError::Target(
                    "no running root found; give its socket path".into(),
                )),
                1 => Ok(roots.remove(0).socket),
                n => Err(AttachError::Target(format!(
                    "{n} roots are running; say which (a pid or a socket path):\n{}",
                    roots
                        .iter()
                        .map(|r| format!("  {}  {}", r.pid, r.command.as_deref().unwrap_or("?")))
                        .collect::<Vec<_>>()
                        .join("\n")
                ))),
            }
        }
    }
}

/// A ticket, given as itself or as the path of a file holding one; `None` if `target` is
/// neither (then it is a socket path).
pub fn ticket_target(target: &str) -> Option<Result<crate::remote::Ticket, AttachError>> {
    let text = if target.starts_with("actor-tui:") {
        target.to_owned()
    } else {
        let t = std::fs::read_to_string(target).ok()?;
        if !t.trim_start().starts_with("actor-tui:") {
            return None;
        }
        t
    };
    Some(
        text.parse()
            .map_err(|e: crate::remote::RemoteError| AttachError::Target(e.to_string())),
    )
}

/// Attaches over a remote link with a viewer's ticket (its kind sets the most it may be).
pub async fn connect_ticket(
    ticket: &crate::remote::Ticket,
    mut opts: AttachOptions,
) -> Result<Runtime, AttachError> {
    use crate::remote::Kind;
    match ticket.kind {
        Kind::Actor => {
            return Err(AttachError::Target(
                "that is an actor's ticket; attach takes an observer's or a driver's".into(),
            ));
        }
        Kind::Observer => {
            opts.driver = false;
            opts.take_over = false;
        }
        Kind::Driver => {}
    }
    let tls = crate::remote::connect(ticket)
        .await
        .map_err(|e| AttachError::Refused(e.to_string()))?;
    let (rd, wr) = tokio::io::split(tls);
    attach_over(rd, wr, PathBuf::from(&ticket.addr), opts).await
}

/// Attaches to the root listening at `path`.
pub async fn connect(path: &Path, opts: AttachOptions) -> Result<Runtime, AttachError> {
    let stream = UnixStream::connect(path)
        .await
        .map_err(|source| AttachError::Connect {
            path: path.to_owned(),
            source,
        })?;
    // Whoever owns that socket gets to draw on our screen: only a root of our own uid.
    let me = nix::unistd::geteuid().as_raw();
    match stream.peer_cred().map(|c| c.uid()) {
        Ok(uid) if uid == me => {}
        Ok(uid) => return Err(AttachError::NotOurs(path.to_owned(), uid)),
        Err(source) => {
            return Err(AttachError::Connect {
                path: path.to_owned(),
                source,
            });
        }
    }
    let (rd, wr) = stream.into_split();
    attach_over(rd, wr, path.to_owned(), opts).await
}

/// Attaches over any stream that reaches a root (a Unix socket; a TLS link).
pub async fn attach_over<R, W>(
    mut rd: R,
    mut wr: W,
    socket: PathBuf,
    opts: AttachOptions,
) -> Result<Runtime, AttachError>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let hello = ToRoot::Hello {
        protocol: PROTOCOL_VERSION,
        agent: format!("actor-tui attach {}", env!("CARGO_PKG_VERSION")),
    };
    proto::write_frame(&mut wr, &hello).await?;
    let attach = ToRoot::Attach {
        name: opts.name.clone(),
        driver: opts.driver,
        take_over: opts.take_over,
    };
    proto::write_frame(&mut wr, &attach).await?;
    let (ev_tx, ev_rx) = event_queue::channel();
    // The replay arrives before `attached`: it goes into the queue as it comes, so the
    // front end starts from it.
    let viewer = tokio::time::timeout(HANDSHAKE, async {
        loop {
            match proto::read_frame::<_, ToViewer>(&mut rd).await? {
                Some(ToViewer::Hello { protocol, .. }) if protocol != PROTOCOL_VERSION => {}
                Some(ToViewer::Hello { .. } | ToViewer::Unknown) => {}
                Some(ToViewer::Event { event }) => forward(&ev_tx, event).await,
                Some(ToViewer::Attached { viewer, .. }) => return Ok(viewer),
                Some(ToViewer::Error { message }) => return Err(AttachError::Refused(message)),
                None => {
                    return Err(AttachError::Refused(
                        "the root closed the connection".into(),
                    ));
                }
            }
        }
    })
    .await
    .map_err(|_| AttachError::Timeout)??;

    let (cmd_tx, mut cmd_rx) = mpsc::channel::<RuntimeCommand>(64);
    let reader = {
        let ev_tx = ev_tx.clone();
        tokio::spawn(async move {
            loop {
                match proto::read_frame::<_, ToViewer>(&mut rd).await {
                    Ok(Some(ToViewer::Event { event })) => {
                        let exit = match &event {
                            RuntimeEvent::Exit { code } => Some(*code),
                            _ => None,
                        };
                        forward(&ev_tx, event).await;
                        if let Some(code) = exit {
                            return code;
                        }
                    }
                    Ok(Some(ToViewer::Error { message })) => {
                        return lost(&ev_tx, format!("the root dropped this viewer: {message}"));
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => return lost(&ev_tx, "the root closed the connection".into()),
                    Err(FrameError::Io(e)) if e.kind() == ErrorKind::ConnectionReset => {
                        return lost(&ev_tx, "the connection to the root was reset".into());
                    }
                    Err(e) => return lost(&ev_tx, format!("bad frame from the root: {e}")),
                }
            }
        })
    };
    let quit_detaches = opts.quit_detaches;
    let task = tokio::spawn(async move {
        let reader_abort = reader.abort_handle();
        let mut reader = reader;
        loop {
            tokio::select! {
                code = &mut reader => return code.unwrap_or(1),
                cmd = cmd_rx.recv() => {
                    let detach = match &cmd {
                        None => true,
                        Some(RuntimeCommand::Quit) => quit_detaches,
                        Some(_) => false,
                    };
                    if detach {
                        let _ = wr.shutdown().await;
                        reader_abort.abort();
                        ev_tx.control(RuntimeEvent::Exit { code: 0 });
                        return 0;
                    }
                    let Some(command) = cmd else { continue };
                    if let Err(e) = proto::write_frame(&mut wr, &ToRoot::Command { command }).await {
                        reader_abort.abort();
                        return lost(&ev_tx, format!("cannot write to the root: {e}"));
                    }
                }
            }
        }
    });
    Ok(Runtime {
        events: ev_rx,
        commands: cmd_tx,
        socket,
        grace: Duration::from_secs(2),
        task,
        viewer: Some(viewer),
    })
}

async fn forward(ev_tx: &EventSender, event: RuntimeEvent) {
    match event {
        RuntimeEvent::Output { actor, data } => {
            ev_tx.output(actor, &data).await;
        }
        ev => {
            ev_tx.control(ev);
        }
    }
}

/// The link is gone: the front end is told and ends with code 1.
fn lost(ev_tx: &EventSender, message: String) -> i32 {
    ev_tx.control(RuntimeEvent::Notice {
        actor: None,
        message,
    });
    ev_tx.control(RuntimeEvent::Exit { code: 1 });
    1
}
