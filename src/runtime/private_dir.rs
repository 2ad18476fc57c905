//! Directories and files only this user can reach: the socket directory, the extracted
//! Python client, the socket file itself. Every check here opens without following
//! symlinks and looks at what was opened (`fstat`/`lstat`), never at a path twice, and
//! nothing is deleted unless it is ours and of the kind we made.

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::sys::stat::{Mode, fchmod, fstat};
use nix::unistd::mkdir;

/// Why a directory or socket path cannot be used. Each message says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum PrivateDirError {
    #[error(
        "{path} is a symbolic link or not a directory; actor-tui needs a real directory it owns there (remove it, or set XDG_RUNTIME_DIR)"
    )]
    NotADirectory { path: PathBuf },
    #[error(
        "{path} belongs to uid {owner}, not to you (uid {me}); another user may have planted it: remove it, or set XDG_RUNTIME_DIR to a private directory"
    )]
    NotOwned { path: PathBuf, owner: u32, me: u32 },
    #[error(
        "{path} has mode {mode:04o}; others could have written into it: check its contents, then `chmod 700 {path}` (or remove it)"
    )]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io(path: &Path, e: impl Into<std::io::Error>) -> PrivateDirError {
    PrivateDirError::Io {
        path: path.to_owned(),
        source: e.into(),
    }
}

/// A directory verified to be a real directory (not a symlink), owned by our effective uid,
/// with mode 0700. The open descriptor is kept so the check refers to the directory we use.
#[derive(Debug)]
pub struct PrivateDir {
    path: PathBuf,
    _fd: OwnedFd,
}

impl PrivateDir {
    /// Creates `path` with mode 0700 if it does not exist (its parent must), or adopts an
    /// existing one only if it passes the checks. Refuses everything else.
    pub fn open_or_create(path: &Path) -> Result<Self, PrivateDirError> {
        let created = match mkdir(path, Mode::S_IRWXU) {
            Ok(()) => true,
            Err(Errno::EEXIST) => false,
            Err(e) => return Err(io(path, e)),
        };
        let fd = match open(
            path,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::ELOOP | Errno::ENOTDIR) => {
                return Err(PrivateDirError::NotADirectory {
                    path: path.to_owned(),
                });
            }
            Err(e) => return Err(io(path, e)),
        };
        let st = fstat(&fd).map_err(|e| io(path, e))?;
        let me = nix::unistd::geteuid().as_raw();
        if st.st_uid != me {
            return Err(PrivateDirError::NotOwned {
                path: path.to_owned(),
                owner: st.st_uid,
                me,
            });
        }
        let mode = st.st_mode & 0o7777;
        if created && mode != 0o700 {
            // Our own fresh directory under a strict umask (say 0277): fix what we made.
            fchmod(fd.as_fd(), Mode::S_IRWXU).map_err(|e| io(path, e))?;
        } else if mode != 0o700 {
            return Err(PrivateDirError::TooOpen {
                path: path.to_owned(),
                mode,
            });
        }
        Ok(Self {
            path: path.to_owned(),
            _fd: fd,
        })
    }

    /// Like [`PrivateDir::open_or_create`], making missing parents first, 0700 from the
    /// start (as the log's directory is made): for directories under the state directory.
    pub fn open_or_create_all(path: &Path) -> Result<Self, PrivateDirError> {
        if let Some(parent) = path.parent() {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(|e| io(parent, e))?;
        }
        Self::open_or_create(path)
    }

    /// A fresh directory `PREFIX-XXXXXX` under `parent`, created 0700 by `mkdtemp`. The
    /// caller owns it and removes it when done.
    pub fn fresh(parent: &Path, prefix: &str) -> Result<Self, PrivateDirError> {
        let template = parent.join(format!("{prefix}-XXXXXX"));
        let made = nix::unistd::mkdtemp(&template).map_err(|e| io(&template, e))?;
        Self::open_or_create(&made)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `body` as the file `name` in this directory, mode 0600, through no symlink.
    /// A new file must not exist yet; with `replace`, a file of ours is truncated and
    /// rewritten (the report, written again at the end of the run).
    pub fn write_file(&self, name: &str, body: &[u8], replace: bool) -> std::io::Result<PathBuf> {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.path.join(name);
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
        if replace {
            opts.create(true).truncate(true);
        } else {
            opts.create_new(true);
        }
        let mut f = opts
            .open(&path)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        f.write_all(body)?;
        Ok(path)
    }
}

/// What [`check_socket_path`] found at a socket path.
#[derive(Debug, PartialEq, Eq)]
pub enum SocketPath {
    /// Nothing there: bind.
    Free,
    /// Our own socket file that refuses connections (left by a killed run): it was removed.
    StaleRemoved,
}

/// Errors for a socket path.
#[derive(Debug, thiserror::Error)]
pub enum SocketPathError {
    #[error("{path} exists and is {kind}, not a socket; refusing to replace it")]
    NotASocket { path: PathBuf, kind: &'static str },
    #[error("{path} is a socket of uid {owner}, not yours; refusing to replace it")]
    NotOwned { path: PathBuf, owner: u32 },
    #[error("another actor-tui is already listening at {0}")]
    InUse(PathBuf),
    #[error("cannot tell whether {path} is in use ({source}); refusing to replace it")]
    Probe {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn file_kind(ft: std::fs::FileType) -> &'static str {
    if ft.is_symlink() {
        "a symbolic link"
    } else if ft.is_dir() {
        "a directory"
    } else if ft.is_file() {
        "a regular file"
    } else if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_block_device() || ft.is_char_device() {
        "a device"
    } else {
        "something else"
    }
}

/// Makes `path` ready for `bind`: free, or our own stale socket, which is removed. Only a
/// socket we own that refuses connections counts as stale. The probe is a non-blocking
/// connect, so a live root with a full backlog (EAGAIN) counts as in use and never hangs us.
pub fn check_socket_path(path: &Path) -> Result<SocketPath, SocketPathError> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(SocketPath::Free),
        Err(source) => {
            return Err(SocketPathError::Io {
                path: path.to_owned(),
                source,
            });
        }
    };
    if !meta.file_type().is_socket() {
        return Err(SocketPathError::NotASocket {
            path: path.to_owned(),
            kind: file_kind(meta.file_type()),
        });
    }
    let me = nix::unistd::geteuid().as_raw();
    if meta.uid() != me {
        return Err(SocketPathError::NotOwned {
            path: path.to_owned(),
            owner: meta.uid(),
        });
    }
    match probe_connect(path) {
        Ok(()) | Err(Errno::EAGAIN) => Err(SocketPathError::InUse(path.to_owned())),
        Err(Errno::ECONNREFUSED) => {
            std::fs::remove_file(path).map_err(|source| SocketPathError::Io {
                path: path.to_owned(),
                source,
            })?;
            Ok(SocketPath::StaleRemoved)
        }
        Err(e) => Err(SocketPathError::Probe {
            path: path.to_owned(),
            source: e.into(),
        }),
    }
}

fn probe_connect(path: &Path) -> Result<(), Errno> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr, connect, socket};
    let fd = socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    let addr = UnixAddr::new(path)?;
    connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr)
}

/// Identity of a file we created (device and inode), so we delete only that file later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    /// The identity of whatever is at `path` now (without following a symlink).
    pub fn of(path: &Path) -> std::io::Result<Self> {
        let m = std::fs::symlink_metadata(path)?;
        Ok(Self {
            dev: m.dev(),
            ino: m.ino(),
        })
    }

    /// Removes `path` only if it is still this file: a socket someone else put there after
    /// ours was removed is left alone.
    pub fn remove_if_same(self, path: &Path) -> bool {
        match Self::of(path) {
            Ok(now) if now == self => std::fs::remove_file(path).is_ok(),
            _ => false,
        }
    }
}

/// Opens a log file for appending: never through a symlink, created 0600, its directory
/// created 0700 if missing.
pub fn open_log(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn creates_a_private_dir_and_refuses_loose_modes_and_symlinks() {
        let base = tempfile::tempdir().expect("tempdir");
        let d = base.path().join("p");
        let pd = PrivateDir::open_or_create(&d).expect("create");
        let mode = std::fs::metadata(pd.path())
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o700);
        // Adopting our own 0700 directory again is fine.
        PrivateDir::open_or_create(&d).expect("again");
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        assert!(matches!(
            PrivateDir::open_or_create(&d),
            Err(PrivateDirError::TooOpen { mode: 0o777, .. })
        ));
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        let link = base.path().join("link");
        std::os::unix::fs::symlink(&d, &link).expect("symlink");
        assert!(matches!(
            PrivateDir::open_or_create(&link),
            Err(PrivateDirError::NotADirectory { .. })
        ));
        let file = base.path().join("file");
        std::fs::write(&file, b"x").expect("write");
        assert!(matches!(
            PrivateDir::open_or_create(&file),
            Err(PrivateDirError::NotADirectory { .. })
        ));
    }

    #[test]
    fn socket_path_check_never_removes_what_is_not_a_stale_socket_of_ours() {
        let base = tempfile::tempdir().expect("tempdir");
        let file = base.path().join("notes.txt");
        std::fs::write(&file, b"keep me").expect("write");
        assert!(matches!(
            check_socket_path(&file),
            Err(SocketPathError::NotASocket { .. })
        ));
        assert_eq!(std::fs::read(&file).expect("still there"), b"keep me");
        let link = base.path().join("link");
        std::os::unix::fs::symlink(&file, &link).expect("symlink");
        assert!(matches!(
            check_socket_path(&link),
            Err(SocketPathError::NotASocket {
                kind: "a symbolic link",
                ..
            })
        ));
        let sock = base.path().join("s");
        let live = std::os::unix::net::UnixListener::bind(&sock).expect("bind");
        assert!(matches!(
            check_socket_path(&sock),
            Err(SocketPathError::InUse(_))
        ));
        drop(live);
        assert_eq!(
            check_socket_path(&sock).expect("stale"),
            SocketPath::StaleRemoved
        );
        assert_eq!(check_socket_path(&sock).expect("free"), SocketPath::Free);
    }

    #[test]
    fn file_id_removes_only_the_same_file() {
        let base = tempfile::tempdir().expect("tempdir");
        let p = base.path().join("f");
        std::fs::write(&p, b"1").expect("write");
        let id = FileId::of(&p).expect("id");
        // A second link keeps the inode allocated, so the new file cannot reuse its number.
        std::fs::hard_link(&p, base.path().join("keep")).expect("link");
        std::fs::remove_file(&p).expect("rm");
        std::fs::write(base.path().join("other"), b"2").expect("write");
        std::fs::rename(base.path().join("other"), &p).expect("mv");
        assert!(
            !id.remove_if_same(&p),
            "a different file at the same path stays"
        );
        assert!(p.exists());
    }

    #[test]
    fn log_is_never_opened_through_a_symlink() {
        let base = tempfile::tempdir().expect("tempdir");
        let target = base.path().join("victim");
        std::fs::write(&target, b"").expect("write");
        let log = base.path().join("log");
        std::os::unix::fs::symlink(&target, &log).expect("symlink");
        assert!(open_log(&log).is_err());
        assert_eq!(std::fs::read(&target).expect("read"), b"");
    }
}
