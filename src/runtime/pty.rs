//! Starting actors on their own pseudo-terminals and reading what they write. The only
//! module with `unsafe`: the `pre_exec` hook that makes the child a session leader with the
//! PTY as its controlling terminal and ties its life to the root's.
#![allow(
    unsafe_code,
    reason = "the pre_exec hook and PTY ioctls; each block says why it is sound"
)]

use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use std::process::Stdio;

use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
use nix::pty::{Winsize, openpty};
use tokio::io::unix::AsyncFd;
use tokio::process::{Child, Command};

/// What to start.
#[derive(Debug, Clone)]
pub struct SpawnSpec<'a> {
    pub program: &'a str,
    pub args: &'a [String],
    pub env: &'a [(String, String)],
    pub cwd: Option<&'a Path>,
    pub rows: u16,
    pub cols: u16,
}

/// The root's end of an actor's PTY.
#[derive(Debug)]
pub struct PtyMaster {
    fd: AsyncFd<OwnedFd>,
}

fn set_cloexec(fd: &OwnedFd) -> nix::Result<()> {
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)).map(drop)
}

/// Spawns `spec` on a fresh PTY in its own session and process group. The child gets
/// SIGKILL if the root dies (PR_SET_PDEATHSIG), so no actor outlives the root.
pub fn spawn_on_pty(spec: &SpawnSpec<'_>) -> std::io::Result<(Child, PtyMaster)> {
    let size = Winsize {
        ws_row: spec.rows.max(1),
        ws_col: spec.cols.max(1),
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = openpty(Some(&size), None).map_err(std::io::Error::from)?;
    // Neither end may leak into other children: a leaked slave would keep the PTY open
    // after the actor exits and hide its end of output.
    set_cloexec(&pty.master)?;
    set_cloexec(&pty.slave)?;
    let root_pid = std::process::id();
    // The root raised its own descriptor limit; actors get the one the user had.
    let nofile = super::procs::original_nofile();

    let mut cmd = Command::new(spec.program);
    cmd.args(spec.args)
        .envs(spec.env.iter().map(|(k, v)| (OsStr::new(k), OsStr::new(v))))
        .stdin(Stdio::from(pty.slave.try_clone()?))
        .stdout(Stdio::from(pty.slave.try_clone()?))
        .stderr(Stdio::from(pty.slave.try_clone()?))
        .kill_on_drop(false);
    if let Some(cwd) = spec.cwd {
        cmd.current_dir(cwd);
    }
    // SAFETY: the closure runs in the forked child before exec and calls only
    // async-signal-safe functions (setrlimit, setsid, ioctl, prctl, getppid, _exit).
    unsafe {
        cmd.pre_exec(move || {
            if let Some((soft, hard)) = nofile {
                let lim = libc::rlimit {
                    rlim_cur: soft,
                    rlim_max: hard,
                };
                // Best effort: an actor with the raised limit still works.
                libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
            }
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // stdin is the PTY slave by now: make it our controlling terminal.
            if libc::ioctl(0, libc::TIOCSCTTY as _, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The root may have died between fork and prctl; then nobody would kill us.
            if libc::getppid() != root_pid as libc::pid_t {
                libc::_exit(137);
            }
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    drop(pty.slave);
    let flags = OFlag::from_bits_truncate(fcntl(&pty.master, FcntlArg::F_GETFL)?);
    fcntl(&pty.master, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
    // SAFETY: `OwnedFd` owns the master descriptor for the AsyncFd's whole life and always
    // reports the same fd.
    let fd = unsafe { AsyncFd::register(pty.master) }.map_err(std::io::Error::from)?;
    Ok((child, PtyMaster { fd }))
}

impl PtyMaster {
    /// Reads what the actor wrote. `Ok(0)` means every writer has closed the slave (EIO on
    /// Linux is how a PTY master reports that).
    pub async fn read(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|fd| {
                nix::unistd::read(fd.get_ref().as_fd(), buf).map_err(std::io::Error::from)
            }) {
                Ok(Ok(n)) => return Ok(n),
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => return Ok(0),
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }

    /// Like [`PtyMaster::read`], into the first bytes of `buf` (made `chunk` long when it is
    /// not). While there is nothing to read, `buf` gives its memory back: an idle actor (most
    /// of a 500-actor tree) holds no read buffer; a flooding one keeps reusing its own,
    /// zeroed once.
    pub async fn read_buf(&self, buf: &mut Vec<u8>, chunk: usize) -> std::io::Result<usize> {
        loop {
            let mut guard = self.fd.readable().await?;
            if buf.len() != chunk {
                buf.resize(chunk, 0);
            }
            match guard.try_io(|fd| {
                nix::unistd::read(fd.get_ref().as_fd(), buf).map_err(std::io::Error::from)
            }) {
                Ok(Ok(n)) => return Ok(n),
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => return Ok(0),
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => *buf = Vec::new(),
            }
        }
    }

    /// Writes keystrokes to the actor's terminal.
    pub async fn write_all(&self, mut data: &[u8]) -> std::io::Result<()> {
        while !data.is_empty() {
            let mut guard = self.fd.writable().await?;
            match guard.try_io(|fd| {
                nix::unistd::write(fd.get_ref().as_fd(), data).map_err(std::io::Error::from)
            }) {
                Ok(Ok(n)) => data = &data[n..],
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
        Ok(())
    }

    /// The path of the slave side (`/dev/pts/N`): what the actor's descriptors point to.
    pub fn slave_path(&self) -> std::io::Result<std::path::PathBuf> {
        let mut name = [0 as libc::c_char; 128];
        // SAFETY: ptsname_r writes a NUL-terminated name of at most `name.len()` bytes.
        let rc = unsafe {
            libc::ptsname_r(self.fd.get_ref().as_raw_fd(), name.as_mut_ptr(), name.len())
        };
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc));
        }
        // SAFETY: ptsname_r succeeded, so `name` holds a NUL-terminated string.
        let path = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) };
        Ok(std::path::PathBuf::from(
            path.to_string_lossy().into_owned(),
        ))
    }

    /// The terminal's foreground process group.
    pub fn foreground_group(&self) -> Option<u32> {
        nix::unistd::tcgetpgrp(self.fd.get_ref())
            .ok()
            .and_then(|p| u32::try_from(p.as_raw()).ok())
    }

    /// True when the terminal is in canonical mode with echo on: what a shell expects, and
    /// what a full-screen program must leave behind.
    pub fn is_cooked(&self) -> std::io::Result<bool> {
        use nix::sys::termios::{LocalFlags, tcgetattr};
        let t = tcgetattr(self.fd.get_ref()).map_err(std::io::Error::from)?;
        Ok(t.local_flags
            .contains(LocalFlags::ICANON | LocalFlags::ECHO))
    }

    /// Tells the actor its terminal changed size (never to zero).
    pub fn resize(&self, rows: u16, cols: u16) -> std::io::Result<()> {
        let size = Winsize {
            ws_row: rows.max(1),
            ws_col: cols.max(1),
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads one `winsize` from the pointer, which lives on our stack.
        let rc = unsafe {
            libc::ioctl(
                self.fd.get_ref().as_raw_fd(),
                libc::TIOCSWINSZ as _,
                &size as *const Winsize,
            )
        };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Output read from a mirrored program, with the time since it started.
#[cfg(feature = "testing")]
pub type TimedChunk = (std::time::Duration, Vec<u8>);

/// A program on its own PTY whose screen is reconstructed with vt100 as it writes: what a
/// user would see, for driving terminal programs (the console itself) from tests,
/// benchmarks and the asset recorder.
#[cfg(feature = "testing")]
pub struct Mirror {
    pub child: Child,
    master: std::sync::Arc<PtyMaster>,
    screen: std::sync::Arc<std::sync::Mutex<vt100::Parser>>,
    /// Every chunk read, with the time since the start (for recordings).
    log: std::sync::Arc<std::sync::Mutex<Vec<TimedChunk>>>,
    /// Set when the reader saw the end of the program's output (every slave closed).
    eof: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

#[cfg(feature = "testing")]
impl std::fmt::Debug for Mirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mirror")
            .field("child", &self.child)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "testing")]
impl Mirror {
    /// Starts `spec` on a PTY of `spec.rows`×`spec.cols` and mirrors its output. Call it
    /// inside a tokio runtime.
    pub fn spawn(spec: &SpawnSpec<'_>) -> std::io::Result<Self> {
        use std::sync::{Arc, Mutex};
        let (child, master) = spawn_on_pty(spec)?;
        let master = Arc::new(master);
        let screen = Arc::new(Mutex::new(vt100::Parser::new(spec.rows, spec.cols, 0)));
        let log = Arc::new(Mutex::new(Vec::new()));
        let eof = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (m, s, l, e) = (master.clone(), screen.clone(), log.clone(), eof.clone());
        let start = std::time::Instant::now();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 65536];
            while let Ok(n) = m.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                // A poisoned lock only means a reader panicked; the data is still whole.
                crate::sync::lock(&s).process(&buf[..n]);
                crate::sync::lock(&l).push((start.elapsed(), buf[..n].to_vec()));
            }
            e.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        Ok(Self {
            child,
            master,
            screen,
            log,
            eof,
        })
    }

    /// True once the program's output has ended and everything it wrote was read.
    pub fn at_eof(&self) -> bool {
        self.eof.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Runs `f` on the current screen.
    pub fn with_screen<R>(&self, f: impl FnOnce(&vt100::Screen) -> R) -> R {
        f(crate::sync::lock(&self.screen).screen())
    }

    /// The screen's text.
    pub fn contents(&self) -> String {
        self.with_screen(vt100::Screen::contents)
    }

    /// Everything the program wrote so far, as timed chunks.
    pub fn output(&self) -> Vec<TimedChunk> {
        crate::sync::lock(&self.log).clone()
    }

    /// Types `bytes` into the program's terminal.
    pub async fn write(&self, bytes: &[u8]) -> std::io::Result<()> {
        self.master.write_all(bytes).await
    }

    /// The PTY itself (for its terminal modes).
    pub fn master(&self) -> &PtyMaster {
        &self.master
    }
}
