//! The root's socket: a private directory, stale-socket detection, the accept loop and one
//! reader and one writer task per connection. Frames go to the engine; nothing here decides
//! what they mean. A malformed frame ends that connection only.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

use crate::proto::{self, FrameError, PROTOCOL_VERSION, ToActor, ToRoot};

/// Connection id, unique within one run.
pub type ConnId = u64;

/// What the connection tasks tell the engine.
#[derive(Debug)]
pub enum ConnEvent {
    Opened {
        conn: ConnId,
        /// Frames to this peer. Bounded (256): a peer that stops reading that long is
        /// dropped by the engine instead of stalling everyone else.
        tx: mpsc::Sender<ToActor>,
        /// The peer's pid from SO_PEERCRED, trusted over what it claims.
        peer_pid: Option<u32>,
        /// Dropped by the engine to close the connection (after a protocol error).
        hangup: oneshot::Sender<()>,
    },
    Frame {
        conn: ConnId,
        msg: ToRoot,
    },
    Closed {
        conn: ConnId,
        error: Option<String>,
    },
}

/// Errors setting up the socket.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot prepare socket directory {path}: {source}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("another actor-tui is already listening at {0}")]
    InUse(PathBuf),
    #[error("cannot listen at {path}: {source}")]
    Bind {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The default socket directory: `$XDG_RUNTIME_DIR/actor-tui`, else `/tmp/actor-tui-UID`.
pub fn default_socket_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d).join("actor-tui"),
        _ => PathBuf::from(format!("/tmp/actor-tui-{}", nix::unistd::Uid::current())),
    }
}

/// Binds the root socket at `path` with mode 0600. With `private_dir` (our default
/// directory) the directory is created with mode 0700; a directory the user chose with
/// `--socket` is left as it is. A socket file that nobody answers on (left by a killed run)
/// is replaced; one that answers is an error.
pub fn bind(path: &Path, private_dir: bool) -> Result<UnixListener, ServerError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if private_dir {
        std::fs::create_dir_all(dir).map_err(|source| ServerError::Dir {
            path: dir.to_owned(),
            source,
        })?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(
            |source| ServerError::Dir {
                path: dir.to_owned(),
                source,
            },
        )?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(ServerError::InUse(path.to_owned()));
        }
        tracing::warn!(path = %path.display(), "replacing stale socket left by a previous run");
        std::fs::remove_file(path).map_err(|source| ServerError::Bind {
            path: path.to_owned(),
            source,
        })?;
    }
    let listener = UnixListener::bind(path).map_err(|source| ServerError::Bind {
        path: path.to_owned(),
        source,
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|source| {
        ServerError::Bind {
            path: path.to_owned(),
            source,
        }
    })?;
    Ok(listener)
}

/// Accepts connections until the engine goes away. Each connection gets its own tasks.
pub async fn serve(listener: UnixListener, engine: mpsc::Sender<ConnEvent>) {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let conn = NEXT.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(connection(conn, stream, engine.clone()));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    // EMFILE and friends: back off instead of spinning.
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            () = engine.closed() => return,
        }
    }
}

async fn connection(conn: ConnId, stream: UnixStream, engine: mpsc::Sender<ConnEvent>) {
    let peer_pid = stream
        .peer_cred()
        .ok()
        .and_then(|c| c.pid())
        .and_then(|p| u32::try_from(p).ok());
    let (mut rd, mut wr) = stream.into_split();

    match handshake(&mut rd, &mut wr).await {
        Ok(()) => {}
        Err(e) => {
            tracing::warn!(conn, error = %e, "handshake failed; dropping connection");
            return;
        }
    }

    let (tx, mut rx) = mpsc::channel::<ToActor>(256);
    let (hangup, mut hung_up) = oneshot::channel();
    if engine
        .send(ConnEvent::Opened {
            conn,
            tx,
            peer_pid,
            hangup,
        })
        .await
        .is_err()
    {
        return;
    }
    let writer = tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            if let Err(e) = proto::write_frame(&mut wr, &msg).await {
                tracing::debug!(conn, error = %e, "write failed");
                break;
            }
        }
    });

    let error = loop {
        let frame = tokio::select! {
            f = proto::read_frame::<_, ToRoot>(&mut rd) => f,
            // The engine dropped this connection: let the writer flush its last frame (an
            // error message, usually), then close.
            _ = &mut hung_up => {
                let abort = writer.abort_handle();
                if tokio::time::timeout(std::time::Duration::from_secs(1), writer).await.is_err() {
                    // A peer that does not read must not keep the socket open.
                    abort.abort();
                }
                return;
            }
        };
        match frame {
            Ok(Some(msg)) => {
                if engine.send(ConnEvent::Frame { conn, msg }).await.is_err() {
                    break None;
                }
            }
            Ok(None) => break None,
            // A peer killed mid-connection resets it; that is an ordinary end.
            Err(FrameError::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                break None;
            }
            Err(e) => {
                tracing::warn!(conn, error = %e, "dropping connection");
                break Some(e.to_string());
            }
        }
    };
    // The writer ends when the engine drops its sender for this connection.
    drop(writer);
    // Engine gone means the run is over: nothing left to tell.
    let _ = engine.send(ConnEvent::Closed { conn, error }).await;
}

async fn handshake(
    rd: &mut tokio::net::unix::OwnedReadHalf,
    wr: &mut tokio::net::unix::OwnedWriteHalf,
) -> Result<(), FrameError> {
    let hello = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        proto::read_frame::<_, ToRoot>(rd),
    )
    .await
    .map_err(|_| FrameError::Io(std::io::ErrorKind::TimedOut.into()))??;
    let ours = ToActor::Hello {
        protocol: PROTOCOL_VERSION,
        agent: format!("actor-tui {}", env!("CARGO_PKG_VERSION")),
    };
    match hello {
        Some(ToRoot::Hello { protocol, .. }) if protocol == PROTOCOL_VERSION => {
            proto::write_frame(wr, &ours).await
        }
        Some(ToRoot::Hello { protocol, agent }) => {
            let message = format!(
                "protocol version mismatch: {agent} speaks {protocol}, this root speaks {PROTOCOL_VERSION}"
            );
            proto::write_frame(wr, &ours).await?;
            proto::write_frame(
                wr,
                &ToActor::Error {
                    message: message.clone(),
                },
            )
            .await?;
            Err(FrameError::Io(std::io::Error::other(message)))
        }
        Some(other) => Err(FrameError::Io(std::io::Error::other(format!(
            "first frame must be hello, got {other:?}"
        )))),
        None => Err(FrameError::Truncated),
    }
}
