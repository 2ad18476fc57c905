//! `--listen HOST:PORT`: the root's TCP side. Per run: a self-signed certificate (rcgen),
//! one secret per ticket kind, and the tickets that carry them (see [`crate::remote`]).
//! There is no plain-TCP mode at all, so no address, loopback or not, is ever served
//! without TLS and a proof.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::server::TcpSide;
use crate::remote::{self, Kind, Ticket};

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("--listen {0}: not HOST:PORT with HOST an IP address")]
    Address(String),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot make the run's certificate: {0}")]
    Cert(String),
    #[error("cannot write the ticket file {path}: {source}")]
    TicketFile {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What `--listen` set up: what to tell the user, and the files to remove at the end.
#[derive(Debug, Clone)]
pub struct Listening {
    pub address: String,
    pub actor: Ticket,
    pub observer: Ticket,
    pub driver: Ticket,
    /// `root-PID.KIND.ticket` files (0600) in the private directory, one per kind.
    pub files: Vec<PathBuf>,
}

/// Binds `addr`, makes the certificate and secrets, writes the ticket files into `dir` (if
/// given). `advertise` is the `HOST:PORT` written into tickets (default: the bound address,
/// or this host's name if bound to all addresses).
pub async fn listen(
    addr: &str,
    advertise: Option<&str>,
    dir: Option<&Path>,
    link_timeout: Duration,
) -> Result<(TcpSide, Listening), ListenError> {
    let sock: SocketAddr = addr
        .parse()
        .map_err(|_| ListenError::Address(addr.to_owned()))?;
    let listener = tokio::net::TcpListener::bind(sock)
        .await
        .map_err(|source| ListenError::Bind {
            addr: addr.to_owned(),
            source,
        })?;
    let bound = listener.local_addr().map_err(|source| ListenError::Bind {
        addr: addr.to_owned(),
        source,
    })?;
    let certified = rcgen::generate_simple_self_signed(vec![remote::SERVER_NAME.to_owned()])
        .map_err(|e| ListenError::Cert(e.to_string()))?;
    let cert_der: CertificateDer<'static> = certified.cert.der().clone();
    let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        certified.signing_key.serialize_der(),
    ));
    let config = rustls::ServerConfig::builder_with_provider(remote::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| ListenError::Cert(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(vec![cert_der.clone()], key_der)
        .map_err(|e| ListenError::Cert(e.to_string()))?;
    let fingerprint = remote::fingerprint(&cert_der);
    let advertised = match advertise {
        Some(a) => a.to_owned(),
        None if bound.ip().is_unspecified() => {
            let host = super::procs::hostname().unwrap_or_else(|| "localhost".into());
            format!("{host}:{}", bound.port())
        }
        None => bound.to_string(),
    };
    let secrets: Vec<(Kind, [u8; 32])> = [Kind::Actor, Kind::Observer, Kind::Driver]
        .into_iter()
        .map(|k| (k, remote::random32()))
        .collect();
    let ticket = |kind: Kind| Ticket {
        kind,
        fingerprint,
        secret: secrets
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, s)| *s)
            .expect("invariant: a secret per kind"),
        addr: advertised.clone(),
    };
    let mut listening = Listening {
        address: bound.to_string(),
        actor: ticket(Kind::Actor),
        observer: ticket(Kind::Observer),
        driver: ticket(Kind::Driver),
        files: Vec::new(),
    };
    if let Some(dir) = dir {
        for t in [&listening.actor, &listening.observer, &listening.driver] {
            let path = dir.join(format!(
                "root-{}.{}.ticket",
                std::process::id(),
                t.kind.as_str()
            ));
            write_private(&path, &format!("{t}\n")).map_err(|source| ListenError::TicketFile {
                path: path.clone(),
                source,
            })?;
            listening.files.push(path);
        }
    }
    let side = TcpSide {
        listener,
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
        secrets,
        cert_fingerprint: fingerprint,
        link_timeout,
    };
    Ok((side, listening))
}

/// A new file, 0600, never through a symlink. The name carries our pid, in our own 0700
/// directory: a file already there was left by a root of ours with this pid that died
/// without cleaning up (SIGKILL), so a regular file of ours is replaced; anything else
/// (a symlink, another owner's file) is refused.
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let open = || {
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
    };
    let mut f = match open() {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let m = std::fs::symlink_metadata(path)?;
            if !m.file_type().is_file() || m.uid() != nix::unistd::geteuid().as_raw() {
                return Err(e);
            }
            tracing::info!(path = %path.display(), "replacing a ticket file a dead root left");
            std::fs::remove_file(path)?;
            open()?
        }
        other => other?,
    };
    f.write_all(text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::write_private;

    #[test]
    fn a_stale_ticket_file_of_ours_is_replaced_but_a_symlink_is_not_followed() {
        let dir = tempfile::tempdir().expect("tmp");
        let p = dir.path().join("root-1.actor.ticket");
        std::fs::write(&p, "old").expect("stale");
        write_private(&p, "new").expect("replaces it");
        assert_eq!(std::fs::read_to_string(&p).expect("read"), "new");
        let target = dir.path().join("elsewhere");
        std::fs::write(&target, "keep").expect("target");
        let link = dir.path().join("root-2.actor.ticket");
        std::os::unix::fs::symlink(&target, &link).expect("link");
        assert!(write_private(&link, "x").is_err());
        assert_eq!(std::fs::read_to_string(&target).expect("read"), "keep");
    }
}
