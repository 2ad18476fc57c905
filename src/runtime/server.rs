//! The root's socket: a private directory, stale-socket detection, the accept loop and one
//! reader and one writer task per connection. Frames go to the engine; nothing here decides
//! what they mean. A malformed frame ends that connection only.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use nix::sys::stat::{Mode, umask};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use super::bounds::{self, RateLimit};
use super::private_dir::{FileId, PrivateDirError, SocketPath, SocketPathError, check_socket_path};
use crate::proto::{self, FrameError, PROTOCOL_VERSION, ToActor, ToRoot};

pub use super::core::ConnId;

/// What the connection tasks tell the engine.
#[derive(Debug)]
pub enum ConnEvent {
    Opened {
        conn: ConnId,
        /// Frames to this peer, bounded in frames and bytes: a peer that stops reading is
        /// dropped by the engine instead of stalling everyone else.
        tx: PeerTx,
        /// The peer's pid from SO_PEERCRED, trusted over what it claims.
        peer_pid: Option<u32>,
        /// For a peer over a remote (TLS) link: its ticket's kind and its address.
        remote: Option<RemotePeer>,
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
    /// A connection was refused before it started (too many, another uid, a failed proof):
    /// for a notice. Sent without waiting; dropped if the engine is busy.
    Refused {
        why: String,
    },
}

/// A peer that came over a remote link and proved a ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemotePeer {
    pub kind: crate::remote::Kind,
    /// `ip:port` as the root sees it.
    pub addr: String,
}

/// The TCP side of the server (`--listen`): the listener, the TLS acceptor, the secrets the
/// proofs are checked against, and the link timeout.
pub struct TcpSide {
    pub listener: tokio::net::TcpListener,
    pub acceptor: tokio_rustls::TlsAcceptor,
    /// Secret of each ticket kind.
    pub secrets: Vec<(crate::remote::Kind, [u8; 32])>,
    /// SHA-256 of the root's certificate, for the `server_cert` binding.
    pub cert_fingerprint: [u8; 32],
    pub link_timeout: std::time::Duration,
}

impl std::fmt::Debug for TcpSide {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpSide")
            .field("listener", &self.listener)
            .finish_non_exhaustive()
    }
}

/// Errors setting up the socket.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot use the socket directory: {0}")]
    Dir(#[from] PrivateDirError),
    #[error(transparent)]
    Path(#[from] SocketPathError),
    #[error("cannot listen at {path}: {source}")]
    Bind {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The default socket directory: `$XDG_RUNTIME_DIR/actor-tui`, else `/tmp/actor-tui-UID`.
/// Either way it is used only after [`PrivateDir`](super::private_dir::PrivateDir) has verified it.
pub fn default_socket_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d).join("actor-tui"),
        _ => PathBuf::from(format!("/tmp/actor-tui-{}", nix::unistd::Uid::effective())),
    }
}

/// A bound root socket and the identity of the file `bind` created.
#[derive(Debug)]
pub struct Bound {
    pub listener: UnixListener,
    pub file: FileId,
}

/// Binds the root socket at `path`, mode 0600 from the first instant (the umask is set
/// around `bind`, so there is no window with a looser mode). What is at `path` already is
/// replaced only if it is our own socket that refuses connections; anything else (a file,
/// a FIFO, a symlink, a live root, another user's socket) is an error and left untouched.
pub fn bind(path: &Path) -> Result<Bound, ServerError> {
    if check_socket_path(path)? == SocketPath::StaleRemoved {
        tracing::warn!(path = %path.display(), "replaced a stale socket left by a previous run");
    }
    let listener = {
        // Process-wide, but nothing else creates files while the run starts.
        let old = umask(Mode::from_bits_truncate(0o177));
        let bound = UnixListener::bind(path);
        umask(old);
        bound.map_err(|source| ServerError::Bind {
            path: path.to_owned(),
            source,
        })?
    };
    let file = FileId::of(path).map_err(|source| ServerError::Bind {
        path: path.to_owned(),
        source,
    })?;
    Ok(Bound { listener, file })
}

/// How long a peer has for `hello` after connecting, and for `register` after `hello`.
const HANDSHAKE: std::time::Duration = std::time::Duration::from_secs(10);

/// Frames to one peer, already encoded, with what is queued counted in frames and bytes
/// (the writer task takes them off as it writes). The channel itself is unbounded: these
/// counters are the bound, checked on every send.
#[derive(Debug, Clone)]
pub struct PeerTx {
    tx: mpsc::UnboundedSender<Vec<u8>>,
    queued: Arc<Queued>,
}

#[derive(Debug, Default)]
struct Queued {
    frames: AtomicUsize,
    bytes: AtomicUsize,
}

/// Why a frame was not queued.
#[derive(Debug, thiserror::Error)]
pub enum PeerSendError {
    #[error("the peer has {frames} frames ({bytes} bytes) it has not read")]
    Full { frames: usize, bytes: usize },
    #[error("the connection is closed")]
    Closed,
    #[error(transparent)]
    Encode(#[from] FrameError),
}

impl PeerTx {
    fn new() -> (Self, mpsc::UnboundedReceiver<Vec<u8>>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Self {
                tx,
                queued: Arc::default(),
            },
            rx,
        )
    }

    /// Bytes queued and not yet written to the peer.
    pub fn queued_bytes(&self) -> usize {
        self.queued.bytes.load(Ordering::Relaxed)
    }

    /// Queues one frame unless the peer is over its budget ([`bounds::PEER_FRAMES`],
    /// [`bounds::PEER_BYTES`]).
    pub fn send(&self, msg: &ToActor) -> Result<(), PeerSendError> {
        self.send_bytes(proto::frame_bytes(msg)?)
    }

    /// Frames queued and not yet written to the peer.
    pub fn queued_frames(&self) -> usize {
        self.queued.frames.load(Ordering::Relaxed)
    }

    /// Queues one encoded frame ([`proto::frame_bytes`]) under the same budget as
    /// [`send`](Self::send).
    pub fn send_bytes(&self, bytes: Vec<u8>) -> Result<(), PeerSendError> {
        let frames = self.queued.frames.load(Ordering::Relaxed);
        let queued = self.queued_bytes();
        if frames >= bounds::PEER_FRAMES || queued + bytes.len() > bounds::PEER_BYTES {
            return Err(PeerSendError::Full {
                frames,
                bytes: queued,
            });
        }
        self.queued.frames.fetch_add(1, Ordering::Relaxed);
        self.queued.bytes.fetch_add(bytes.len(), Ordering::Relaxed);
        self.tx.send(bytes).map_err(|_| PeerSendError::Closed)
    }
}

/// Accepts connections until the engine goes away. Each connection gets its own tasks;
/// at most `max_conns` exist at once, and those past it are told so and closed.
pub async fn serve(
    listener: UnixListener,
    tcp: Option<TcpSide>,
    engine: mpsc::Sender<ConnEvent>,
    max_conns: usize,
) {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let slots = Arc::new(Semaphore::new(max_conns));
    let inflight = Arc::new(Semaphore::new(bounds::INFLIGHT_BYTES / 1024));
    // Refusals are logged at a bounded rate: a flood of them must not flood the log.
    let refusals = Arc::new(std::sync::Mutex::new(RateLimit::new(20, 2)));
    let tcp = tcp.map(Arc::new);
    let refusing = Arc::new(Semaphore::new(16));
    loop {
        tokio::select! {
            accepted = async {
                match &tcp {
                    Some(t) => t.listener.accept().await,
                    None => std::future::pending().await,
                }
            } => match accepted {
                Ok((stream, addr)) => {
                    let conn = NEXT.fetch_add(1, Ordering::Relaxed);
                    let Some(t) = tcp.clone() else { continue };
                    let Ok(slot) = slots.clone().try_acquire_owned() else {
                        let why = format!("too many connections (limit {max_conns}); try again later");
                        let _ = engine.try_send(ConnEvent::Refused { why: format!("refused {addr}: {why}") });
                        let admitted = crate::sync::lock(&refusals).admit(std::time::Instant::now());
                        if let Some(suppressed) = admitted {
                            tracing::warn!(conn, %addr, suppressed, "refused a TCP connection: {why}");
                        }
                        // Told over TLS (nothing goes out in clear text), by a few tasks at
                        // most: refusing must not cost what serving would.
                        if let Ok(permit) = refusing.clone().try_acquire_owned() {
                            tokio::spawn(async move {
                                let _permit = permit;
                                let told = async {
                                    let mut tls = t.acceptor.accept(stream).await.ok()?;
                                    proto::write_frame(&mut tls, &ToActor::Error { message: why }).await.ok()
                                };
                                let _ = tokio::time::timeout(std::time::Duration::from_secs(2), told).await;
                            });
                        }
                        continue;
                    };
                    tokio::spawn(remote_connection(conn, stream, addr, t, engine.clone(), inflight.clone(), slot));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "TCP accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let conn = NEXT.fetch_add(1, Ordering::Relaxed);
                    let Ok(slot) = slots.clone().try_acquire_owned() else {
                        refuse(&refusals, &engine, conn, stream, format!(
                            "too many connections (limit {max_conns}); try again later"));
                        continue;
                    };
                    let me = nix::unistd::geteuid().as_raw();
                    match stream.peer_cred().map(|c| c.uid()) {
                        Ok(uid) if uid == me => {}
                        Ok(uid) => {
                            refuse(&refusals, &engine, conn, stream, format!(
                                "connections from uid {uid} are refused: this root belongs to uid {me}"));
                            continue;
                        }
                        Err(e) => {
                            refuse(&refusals, &engine, conn, stream, format!("cannot identify the peer: {e}"));
                            continue;
                        }
                    }
                    let peer_pid = stream
                        .peer_cred()
                        .ok()
                        .and_then(|c| c.pid())
                        .and_then(|p| u32::try_from(p).ok());
                    let (rd, wr) = stream.into_split();
                    tokio::spawn(connection(conn, rd, wr, peer_pid, None, engine.clone(), inflight.clone(), slot));
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

/// Tells a peer why it is refused (best effort, without waiting) and closes it.
fn refuse(
    limit: &std::sync::Mutex<RateLimit>,
    engine: &mpsc::Sender<ConnEvent>,
    conn: ConnId,
    stream: UnixStream,
    why: String,
) {
    let _ = engine.try_send(ConnEvent::Refused {
        why: format!("refused a connection: {why}"),
    });
    if let Ok(bytes) = proto::frame_bytes(&ToActor::Error {
        message: why.clone(),
    }) {
        // A peer that cannot take one small frame right now learns nothing; that is fine.
        let _ = stream.try_write(&bytes);
    }
    let admitted = crate::sync::lock(limit).admit(std::time::Instant::now());
    if let Some(suppressed) = admitted {
        tracing::warn!(conn, suppressed, "refused a connection: {why}");
    }
}

/// Reads one frame like [`proto::read_frame`], but a frame whose prefix has arrived must be
/// complete within [`bounds::FRAME_DEADLINE`], its buffer grows only as bytes arrive, and big
/// payloads wait for room in the shared in-flight budget first.
async fn read_frame_bounded<R: AsyncRead + Unpin>(
    reader: &mut R,
    inflight: &Semaphore,
) -> Result<Option<ToRoot>, FrameError> {
    let Some(len) = proto::read_frame_len(reader).await? else {
        return Ok(None);
    };
    let body = async {
        // One permit per started KiB; small frames take one and never wait in practice.
        let permits = u32::try_from(len.div_ceil(1024).max(1)).unwrap_or(u32::MAX);
        let _room = inflight
            .acquire_many(permits)
            .await
            .map_err(|_| FrameError::Io(std::io::Error::other("server closing")))?;
        let mut buf = Vec::new();
        let got = (&mut *reader)
            .take(len as u64)
            .read_to_end(&mut buf)
            .await?;
        if got < len {
            return Err(FrameError::Truncated);
        }
        proto::decode(&buf)
    };
    match tokio::time::timeout(bounds::FRAME_DEADLINE, body).await {
        Ok(r) => r.map(Some),
        Err(_) => Err(FrameError::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!(
                "frame of {len} bytes not complete within {}s",
                bounds::FRAME_DEADLINE.as_secs()
            ),
        ))),
    }
}

/// A TCP peer: TLS, then challenge and proof, then an ordinary connection. Every step has
/// [`crate::remote::HANDSHAKE`]; a peer that fails one is dropped (and logged, rate-limited).
async fn remote_connection(
    conn: ConnId,
    stream: tokio::net::TcpStream,
    addr: std::net::SocketAddr,
    tcp: Arc<TcpSide>,
    engine: mpsc::Sender<ConnEvent>,
    inflight: Arc<Semaphore>,
    slot: OwnedSemaphorePermit,
) {
    use crate::remote::{self, HANDSHAKE as STEP};
    crate::remote::set_link_timeout(&stream, tcp.link_timeout);
    let _ = stream.set_nodelay(true);
    let tls = match tokio::time::timeout(STEP, tcp.acceptor.accept(stream)).await {
        Ok(Ok(t)) => t,
        Ok(Err(e)) => {
            tracing::warn!(conn, %addr, error = %bounds::escape(&e.to_string()), "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::warn!(conn, %addr, "TLS handshake timed out");
            return;
        }
    };
    let mut exporter = [0u8; 32];
    if let Err(e) =
        tls.get_ref()
            .1
            .export_keying_material(&mut exporter, remote::EXPORTER_LABEL, None)
    {
        tracing::warn!(conn, %addr, error = %e, "cannot export TLS keying material");
        return;
    }
    let (mut rd, mut wr) = tokio::io::split(tls);
    let nonce = remote::random32();
    let proof = async {
        proto::write_frame(
            &mut wr,
            &ToActor::Challenge {
                nonce: remote::hex(&nonce),
            },
        )
        .await?;
        let msg: Option<ToRoot> = read_frame_bounded(&mut rd, &inflight).await?;
        Ok::<_, FrameError>(msg)
    };
    let verdict = match tokio::time::timeout(STEP, proof).await {
        Ok(Ok(Some(ToRoot::Proof { kind, binding, mac }))) => {
            let kind = remote::Kind::parse(&kind);
            let bound: Option<&[u8]> = match binding.as_str() {
                "exporter" => Some(&exporter),
                "server_cert" => Some(&tcp.cert_fingerprint),
                _ => None,
            };
            match (kind, bound) {
                (Some(kind), Some(bound)) => {
                    let ok = tcp.secrets.iter().any(|(k, secret)| {
                        *k == kind && remote::verify(secret, kind, &nonce, bound, &mac)
                    });
                    if ok {
                        Ok(kind)
                    } else {
                        Err("the proof does not match this run's ticket".to_owned())
                    }
                }
                (None, _) => Err("unknown ticket kind".to_owned()),
                (_, None) => Err(format!("unknown binding `{}`", bounds::escape(&binding))),
            }
        }
        Ok(Ok(Some(_))) => Err("the first frame on a remote link must be proof".into()),
        Ok(Ok(None)) => return,
        Ok(Err(e)) => Err(format!("bad frame: {e}")),
        Err(_) => Err(format!("no proof within {}s", STEP.as_secs())),
    };
    let kind = match verdict {
        Ok(kind) => kind,
        Err(why) => {
            tracing::warn!(conn, %addr, "refused a remote peer: {why}");
            let _ = engine.try_send(ConnEvent::Refused {
                why: format!("refused {addr}: {why}"),
            });
            let _ = tokio::time::timeout(
                std::time::Duration::from_secs(1),
                proto::write_frame(&mut wr, &ToActor::Error { message: why }),
            )
            .await;
            return;
        }
    };
    if proto::write_frame(&mut wr, &ToActor::Welcome)
        .await
        .is_err()
    {
        return;
    }
    let remote = RemotePeer {
        kind,
        addr: addr.to_string(),
    };
    connection(conn, rd, wr, None, Some(remote), engine, inflight, slot).await;
}

#[allow(clippy::too_many_arguments)]
async fn connection<R, W>(
    conn: ConnId,
    mut rd: R,
    mut wr: W,
    peer_pid: Option<u32>,
    remote: Option<RemotePeer>,
    engine: mpsc::Sender<ConnEvent>,
    inflight: Arc<Semaphore>,
    _slot: OwnedSemaphorePermit,
) where
    R: AsyncRead + Unpin + Send + 'static,
    W: tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    match handshake(&mut rd, &mut wr, &inflight).await {
        Ok(()) => {}
        Err(e) => {
            tracing::warn!(conn, error = %bounds::escape(&e.to_string()), "handshake failed; dropping connection");
            return;
        }
    }

    let (tx, mut rx) = PeerTx::new();
    let queued = tx.queued.clone();
    let (hangup, mut hung_up) = oneshot::channel();
    if engine
        .send(ConnEvent::Opened {
            conn,
            tx,
            peer_pid,
            remote,
            hangup,
        })
        .await
        .is_err()
    {
        return;
    }
    let writer = tokio::spawn(async move {
        while let Some(bytes) = rx.recv().await {
            let r = wr.write_all(&bytes).await;
            queued.frames.fetch_sub(1, Ordering::Relaxed);
            queued.bytes.fetch_sub(bytes.len(), Ordering::Relaxed);
            if let Err(e) = r {
                tracing::debug!(conn, error = %e, "write failed");
                break;
            }
        }
    });

    // `register` must follow `hello` as promptly as `hello` followed the connect.
    let mut registered = false;
    let error = loop {
        let frame = tokio::select! {
            f = async {
                if registered {
                    return read_frame_bounded(&mut rd, &inflight).await;
                }
                tokio::time::timeout(HANDSHAKE, read_frame_bounded(&mut rd, &inflight))
                    .await
                    .unwrap_or_else(|_| Err(FrameError::Io(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no register within {}s of hello", HANDSHAKE.as_secs()),
                    ))))
            } => f,
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
                registered = true;
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
                let e = bounds::escape(&e.to_string());
                tracing::warn!(conn, error = %e, "dropping connection");
                break Some(e);
            }
        }
    };
    // Engine gone means the run is over: nothing left to tell.
    let _ = engine.send(ConnEvent::Closed { conn, error }).await;
    // The engine answers by dropping this connection (its sender and the hangup); then the
    // writer flushes what was queued, but a peer that does not read must not keep the task
    // and its queue alive.
    // Err: the engine is gone, which ends the connection just the same.
    let _ = hung_up.await;
    let abort = writer.abort_handle();
    if tokio::time::timeout(std::time::Duration::from_secs(1), writer)
        .await
        .is_err()
    {
        abort.abort();
    }
}

async fn handshake<R: AsyncRead + Unpin, W: tokio::io::AsyncWrite + Unpin>(
    rd: &mut R,
    wr: &mut W,
    inflight: &Semaphore,
) -> Result<(), FrameError> {
    // Bounded like every other frame: hellos of many connections count against the same
    // in-flight budget.
    let hello = tokio::time::timeout(HANDSHAKE, read_frame_bounded(rd, inflight))
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
