//! Remote links: how a process on another host reaches a root that listens on TCP
//! (`actor-tui --listen HOST:PORT`). The root makes a self-signed certificate and three
//! secrets per run and hands out **tickets**; a client connects over TLS 1.3, pins the
//! certificate by the ticket's fingerprint, then proves it holds the ticket's secret:
//!
//! ```text
//! root -> client   challenge {nonce: 32 random bytes, hex}
//! client -> root   proof {kind, binding, mac: HMAC-SHA256(secret, transcript), hex}
//! root -> client   welcome | error {message}
//! ```
//!
//! `transcript` = `"actor-tui proof 1\0" kind "\0" nonce binding_value`. The binding ties
//! the proof to this TLS link: `exporter` is 32 bytes of TLS keying material exported with
//! label `EXPORTER-actor-tui-proof` (what Rust clients use); `server_cert` is the SHA-256 of
//! the root's certificate, for clients whose TLS library cannot export keying material
//! (Python's `ssl`). The secret never crosses the wire, and a recorded proof is worthless on
//! another connection (another nonce, other keying material). After `welcome` the ordinary
//! protocol starts with `hello`.
//!
//! Ticket: `actor-tui:1:KIND:FINGERPRINT:SECRET@HOST:PORT`, KIND `actor` (join as an actor),
//! `observer` or `driver` (attach as a viewer in that role); FINGERPRINT and SECRET are 64
//! hex digits. Each kind has its own secret, so an observer's ticket cannot drive.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::proto::{self, FrameError, ToActor, ToRoot};

/// Environment variable with a ticket (or a path to a file holding one) for remote actors.
pub const TICKET_ENV: &str = crate::proto::env::TICKET;
/// Exporter label of the `exporter` binding.
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-actor-tui-proof";
/// The name the root's certificate is issued for (clients check the pin, not the name).
pub const SERVER_NAME: &str = "actor-tui";
/// TCP connect, TLS handshake and proof must each finish within this.
pub const HANDSHAKE: Duration = Duration::from_secs(10);

/// What a ticket lets its holder be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Actor,
    Observer,
    Driver,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Actor => "actor",
            Self::Observer => "observer",
            Self::Driver => "driver",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "actor" => Some(Self::Actor),
            "observer" => Some(Self::Observer),
            "driver" => Some(Self::Driver),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    pub kind: Kind,
    pub fingerprint: [u8; 32],
    pub secret: [u8; 32],
    /// `host:port` (IPv6 in brackets).
    pub addr: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("not a ticket: {0}")]
    BadTicket(&'static str),
    #[error("cannot reach {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(std::io::Error),
    #[error("the root refused: {0}")]
    Refused(String),
    #[error("protocol: {0}")]
    Frame(#[from] FrameError),
    #[error("{0} did not finish within {secs}s", secs = HANDSHAKE.as_secs())]
    Timeout(&'static str),
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn unhex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

/// SHA-256 of a certificate's DER: the pin in tickets.
pub fn fingerprint(der: &[u8]) -> [u8; 32] {
    Sha256::digest(der).into()
}

/// 32 bytes from the OS's random source.
pub fn random32() -> [u8; 32] {
    let mut b = [0u8; 32];
    // The OS has no entropy source at all: nothing secure can be made; stop here.
    getrandom::fill(&mut b).expect("invariant: the OS random source works");
    b
}

impl std::fmt::Display for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "actor-tui:1:{}:{}:{}@{}",
            self.kind.as_str(),
            hex(&self.fingerprint),
            hex(&self.secret),
            self.addr
        )
    }
}

impl std::str::FromStr for Ticket {
    type Err = RemoteError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let rest = s
            .strip_prefix("actor-tui:1:")
            .ok_or(RemoteError::BadTicket(
                "it does not start with actor-tui:1:",
            ))?;
        let (head, addr) = rest
            .split_once('@')
            .ok_or(RemoteError::BadTicket("no @HOST:PORT"))?;
        let mut parts = head.split(':');
        let kind = parts
            .next()
            .and_then(Kind::parse)
            .ok_or(RemoteError::BadTicket("unknown kind"))?;
        let fingerprint = parts
            .next()
            .and_then(unhex32)
            .ok_or(RemoteError::BadTicket("bad fingerprint"))?;
        let secret = parts
            .next()
            .and_then(unhex32)
            .ok_or(RemoteError::BadTicket("bad secret"))?;
        if parts.next().is_some() || addr.is_empty() || !addr.contains(':') {
            return Err(RemoteError::BadTicket("bad address"));
        }
        Ok(Self {
            kind,
            fingerprint,
            secret,
            addr: addr.to_owned(),
        })
    }
}

/// A ticket from `ACTOR_TUI_TICKET`: the ticket itself, or the path of a file holding one.
pub fn ticket_from_env() -> Option<Result<Ticket, RemoteError>> {
    let v = std::env::var(TICKET_ENV).ok().filter(|v| !v.is_empty())?;
    if v.starts_with("actor-tui:") {
        return Some(v.parse());
    }
    Some(match std::fs::read_to_string(&v) {
        Ok(text) => text.parse(),
        Err(_) => Err(RemoteError::BadTicket(
            "ACTOR_TUI_TICKET is neither a ticket nor a readable file",
        )),
    })
}

fn keyed(secret: &[u8; 32], kind: Kind, nonce: &[u8; 32], binding: &[u8]) -> Hmac<Sha256> {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .expect("invariant: HMAC takes a key of any length");
    m.update(b"actor-tui proof 1\0");
    m.update(kind.as_str().as_bytes());
    m.update(b"\0");
    m.update(nonce);
    m.update(binding);
    m
}

/// The proof's MAC.
pub fn mac(secret: &[u8; 32], kind: Kind, nonce: &[u8; 32], binding: &[u8]) -> [u8; 32] {
    keyed(secret, kind, nonce, binding)
        .finalize()
        .into_bytes()
        .into()
}

/// Checks a proof in constant time.
pub fn verify(
    secret: &[u8; 32],
    kind: Kind,
    nonce: &[u8; 32],
    binding: &[u8],
    mac_hex: &str,
) -> bool {
    unhex32(mac_hex).is_some_and(|given| {
        keyed(secret, kind, nonce, binding)
            .verify_slice(&given)
            .is_ok()
    })
}

/// Accepts exactly the certificate whose SHA-256 is the pin; signatures are checked as usual.
#[derive(Debug)]
struct Pinned {
    pin: [u8; 32],
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for Pinned {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        if fingerprint(end_entity) == self.pin {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "the root's certificate is not the one in the ticket".into(),
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2 is not offered".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// TLS 1.3 only, the ring provider (no process-wide default is installed).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Keepalive and a user timeout on a TCP link, so a peer whose network vanished is noticed
/// within about `timeout` whether the link is idle or has data in flight.
pub fn set_link_timeout(stream: &TcpStream, timeout: Duration) {
    use nix::sys::socket::{setsockopt, sockopt};
    let secs = u32::try_from(timeout.as_secs().max(1)).unwrap_or(u32::MAX);
    let idle = (secs / 3).max(1);
    let fd = std::os::fd::AsFd::as_fd(stream);
    let results = [
        setsockopt(&fd, sockopt::KeepAlive, &true),
        setsockopt(&fd, sockopt::TcpKeepIdle, &idle),
        setsockopt(&fd, sockopt::TcpKeepInterval, &1),
        setsockopt(&fd, sockopt::TcpKeepCount, &(secs - idle).max(1)),
        setsockopt(
            &fd,
            sockopt::TcpUserTimeout,
            &u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX),
        ),
    ];
    for r in results {
        if let Err(e) = r {
            tracing::debug!(error = %e, "cannot set a TCP keepalive option");
        }
    }
}

/// Default bound on noticing a dead remote link.
pub const LINK_TIMEOUT: Duration = Duration::from_secs(5);

/// The client's TLS configuration: TLS 1.3 only, the root's certificate pinned by `pin`.
pub fn client_config(pin: [u8; 32]) -> Result<rustls::ClientConfig, RemoteError> {
    let provider = provider();
    Ok(
        rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| RemoteError::Tls(std::io::Error::other(e)))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Pinned { pin, provider }))
            .with_no_client_auth(),
    )
}

/// Connects to the root of `ticket` and passes the proof; the stream is ready for `hello`.
pub async fn connect(
    ticket: &Ticket,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, RemoteError> {
    let tcp = tokio::time::timeout(HANDSHAKE, TcpStream::connect(&ticket.addr))
        .await
        .map_err(|_| RemoteError::Timeout("connecting"))?
        .map_err(|source| RemoteError::Connect {
            addr: ticket.addr.clone(),
            source,
        })?;
    set_link_timeout(&tcp, LINK_TIMEOUT);
    let _ = tcp.set_nodelay(true);
    let config = client_config(ticket.fingerprint)?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = ServerName::try_from(SERVER_NAME).expect("invariant: a valid DNS name");
    let mut tls = tokio::time::timeout(HANDSHAKE, connector.connect(name, tcp))
        .await
        .map_err(|_| RemoteError::Timeout("the TLS handshake"))?
        .map_err(RemoteError::Tls)?;
    let mut binding = [0u8; 32];
    tls.get_ref()
        .1
        .export_keying_material(&mut binding, EXPORTER_LABEL, None)
        .map_err(|e| RemoteError::Tls(std::io::Error::other(e)))?;
    prove(&mut tls, ticket, "exporter", &binding).await?;
    Ok(tls)
}

/// The client's side of challenge/proof/welcome over an established TLS stream.
pub async fn prove<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    ticket: &Ticket,
    binding_kind: &str,
    binding: &[u8],
) -> Result<(), RemoteError> {
    tokio::time::timeout(HANDSHAKE, async {
        let nonce = match proto::read_frame::<_, ToActor>(stream).await? {
            Some(ToActor::Challenge { nonce }) => {
                unhex32(&nonce).ok_or(RemoteError::Refused("a malformed challenge".into()))?
            }
            Some(ToActor::Error { message }) => return Err(RemoteError::Refused(message)),
            _ => return Err(RemoteError::Refused("no challenge from the root".into())),
        };
        let proof = ToRoot::Proof {
            kind: ticket.kind.as_str().into(),
            binding: binding_kind.into(),
            mac: hex(&mac(&ticket.secret, ticket.kind, &nonce, binding)),
        };
        proto::write_frame(stream, &proof).await?;
        match proto::read_frame::<_, ToActor>(stream).await? {
            Some(ToActor::Welcome) => Ok(()),
            Some(ToActor::Error { message }) => Err(RemoteError::Refused(message)),
            _ => Err(RemoteError::Refused("no answer to the proof".into())),
        }
    })
    .await
    .map_err(|_| RemoteError::Timeout("the proof"))?
}

/// For the blocking client: a Unix socket whose other end is carried over the remote link
/// by a thread of its own, so everything above the transport is the same as for a local
/// root. Returns once the proof is accepted.
pub fn bridge(ticket: &Ticket) -> Result<std::os::unix::net::UnixStream, RemoteError> {
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().map_err(RemoteError::Tls)?;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let ticket = ticket.clone();
    std::thread::Builder::new()
        .name("actor-tui-link".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(RemoteError::Tls(e)));
                    return;
                }
            };
            rt.block_on(async move {
                let mut tls = match connect(&ticket).await {
                    Ok(t) => t,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let Ok(std_end) = theirs.set_nonblocking(true).map(|()| theirs) else {
                    return;
                };
                let Ok(mut local) = tokio::net::UnixStream::from_std(std_end) else {
                    return;
                };
                let _ = ready_tx.send(Ok(()));
                // Either side closing (or the link timing out) ends both.
                let _ = tokio::io::copy_bidirectional(&mut local, &mut tls).await;
            });
        })
        .map_err(RemoteError::Tls)?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(ours),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(RemoteError::Refused("the link thread ended".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_round_trip_and_bad_ones_say_why() {
        let t = Ticket {
            kind: Kind::Observer,
            fingerprint: [0xab; 32],
            secret: [0x01; 32],
            addr: "[fd00::1]:7000".into(),
        };
        let s = t.to_string();
        assert!(s.starts_with("actor-tui:1:observer:abab"));
        assert_eq!(s.parse::<Ticket>().expect("parse"), t);
        for bad in [
            "actor-tui:2:actor:00:00@h:1",
            &s.replace("observer", "root"),
            &s.replace("@[fd00::1]:7000", ""),
            &s.replace(":0101", ":zz01"),
        ] {
            assert!(bad.parse::<Ticket>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_proof_holds_only_for_its_secret_kind_nonce_and_binding() {
        let (secret, nonce, binding) = ([7u8; 32], [9u8; 32], [3u8; 32]);
        let m = hex(&mac(&secret, Kind::Actor, &nonce, &binding));
        assert!(verify(&secret, Kind::Actor, &nonce, &binding, &m));
        assert!(!verify(&[8u8; 32], Kind::Actor, &nonce, &binding, &m));
        assert!(!verify(&secret, Kind::Driver, &nonce, &binding, &m));
        assert!(!verify(&secret, Kind::Actor, &[1u8; 32], &binding, &m));
        assert!(!verify(&secret, Kind::Actor, &nonce, &[4u8; 32], &m));
        assert!(!verify(&secret, Kind::Actor, &nonce, &binding, "not hex"));
    }
}
