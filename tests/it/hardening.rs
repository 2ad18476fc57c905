//! Regression tests for the hardening issue: each reproduces an attack or fault from the
//! review with real processes, sockets and (where needed) a second unix user, and checks
//! that it no longer works. Numbers refer to the items.
#![allow(
    unsafe_code,
    reason = "pre_exec hooks that set the umask and rlimits of the root under test"
)]

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use actor_tui::proto::{self, PROTOCOL_VERSION, Reason, ReleaseHow, ToActor, ToRoot};
use serde_json::json;

use crate::harness::{
    self, BIN, Run, TIMEOUT, alive, closed_by_root, count, example, is_notice, repl_text,
};

fn scen() -> String {
    example("scenarios")
}

/// A second unix user for the two-user attacks, created on first use. `None` (with the
/// reason printed) when this is not root or `useradd` is missing.
pub(crate) fn other_user() -> Option<(u32, u32)> {
    const NAME: &str = "actor-tui-it";
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipping the two-user part: needs root to create and switch to a second user");
        return None;
    }
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").arg(flag).arg(NAME).output().ok()?;
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    if id("-u").is_none() {
        let made = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                NAME,
            ])
            .status();
        match made {
            Ok(st) if st.success() => {}
            // Another test created it at the same moment.
            Ok(_) if id("-u").is_some() => {}
            other => {
                eprintln!("skipping the two-user part: useradd unavailable or failed ({other:?})");
                return None;
            }
        }
    }
    Some((id("-u")?, id("-g")?))
}

/// A raw protocol peer in this test process (not a descendant of the root).
struct Peer {
    s: UnixStream,
    actor: String,
}

impl Peer {
    fn connect(socket: &Path) -> UnixStream {
        let s = UnixStream::connect(socket).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(15)))
            .expect("timeout");
        s
    }

    fn join(socket: &Path, name: &str) -> Self {
        let mut s = Self::connect(socket);
        proto::write_frame_sync(
            &mut s,
            &ToRoot::Hello {
                protocol: PROTOCOL_VERSION,
                agent: "it".into(),
            },
        )
        .expect("hello");
        match proto::read_frame_sync::<_, ToActor>(&mut s).expect("hello back") {
            Some(ToActor::Hello { .. }) => {}
            other => panic!("expected hello, got {other:?}"),
        }
        proto::write_frame_sync(
            &mut s,
            &ToRoot::Register {
                name: name.into(),
                pid: std::process::id(),
                actor: None,
                group: None,
            },
        )
        .expect("register");
        let actor = match proto::read_frame_sync::<_, ToActor>(&mut s).expect("registered") {
            Some(ToActor::Registered { actor, .. }) => actor,
            other => panic!("expected registered, got {other:?}"),
        };
        Self { s, actor }
    }

    fn send(&mut self, msg: &ToRoot) {
        proto::write_frame_sync(&mut self.s, msg).expect("send");
    }

    /// The next frame that matches, skipping others; panics on close or timeout.
    fn recv_until(&mut self, what: &str, pred: impl Fn(&ToActor) -> bool) -> ToActor {
        loop {
            match proto::read_frame_sync::<_, ToActor>(&mut self.s) {
                Ok(Some(m)) if pred(&m) => return m,
                Ok(Some(_)) => {}
                other => panic!("waiting for {what}: {other:?}"),
            }
        }
    }

    fn lock_request(&mut self, task: u64, location: String) {
        self.send(&ToRoot::LockRequest {
            task,
            task_name: format!("t{task}"),
            reason: Reason::Pause,
            location,
            peek: None,
        });
    }
}

/// Runs the root to completion with `args`, stdin closed; returns (code, stderr).
fn run_root(args: &[&str], configure: impl FnOnce(&mut Command)) -> (Option<i32>, String) {
    let mut cmd = Command::new(BIN);
    cmd.arg("--headless")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    configure(&mut cmd);
    let child = cmd.spawn().expect("start actor-tui");
    let out = child.wait_with_output().expect("wait");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The name the Python client's directory gets (`python-<hash>`), learned from a real run,
/// as an attacker would.
fn python_dir_name(base: &Path) -> String {
    let xdg = base.join("learn");
    std::fs::create_dir(&xdg).expect("mkdir");
    let sock = base.join("learn.sock");
    let (code, err) = run_root(&["--socket", sock.to_str().expect("utf8"), "true"], |c| {
        c.env("XDG_RUNTIME_DIR", &xdg);
    });
    assert_eq!(code, Some(0), "{err}");
    std::fs::read_dir(xdg.join("actor-tui"))
        .expect("default dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("python-"))
        .expect("python dir")
}

/// Plants a package directory whose `sitecustomize` leaves `marker` when it runs.
fn plant(dir: &Path, marker: &Path) {
    std::fs::create_dir_all(dir.join("actor_tui")).expect("mkdir");
    std::fs::write(
        dir.join("sitecustomize.py"),
        format!("open({:?}, 'w').write('ran')\n", marker.display()),
    )
    .expect("plant");
    std::fs::write(dir.join("actor_tui/__init__.py"), "").expect("plant");
}

fn chown_r(path: &Path, uid: u32, gid: u32) {
    let st = Command::new("chown")
        .arg("-R")
        .arg(format!("{uid}:{gid}"))
        .arg(path)
        .status()
        .expect("chown");
    assert!(st.success());
}

// ---- 1. the default socket directory ----

#[test]
fn h01_default_dir_planted_by_another_user_is_refused_and_its_package_never_runs() {
    let Some((uid, gid)) = other_user() else {
        return;
    };
    let base = harness::tempdir();
    let name = python_dir_name(base.path());
    let xdg = base.path().join("xdg");
    let dir = xdg.join("actor-tui");
    let marker = base.path().join("planted-ran");
    plant(&dir.join(&name), &marker);
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    chown_r(&dir, uid, gid);
    let (code, err) = run_root(&["python3", "-c", "print('hello')"], |c| {
        c.env("XDG_RUNTIME_DIR", &xdg);
    });
    assert_eq!(code, Some(2), "refused: {err}");
    assert!(err.contains(&format!("belongs to uid {uid}")), "{err}");
    assert!(!marker.exists(), "the planted sitecustomize ran");
    assert_eq!(
        std::fs::metadata(&dir).expect("meta").uid(),
        uid,
        "left alone"
    );
}

#[test]
fn h01b_symlinked_or_loose_default_dir_is_refused_and_untouched() {
    let base = harness::tempdir();
    let xdg = base.path().join("xdg");
    std::fs::create_dir(&xdg).expect("mkdir");
    // A symlink to a directory of the user's own: it must not be chmodded or written into.
    let own = base.path().join("www");
    std::fs::create_dir(&own).expect("mkdir");
    std::fs::set_permissions(&own, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::os::unix::fs::symlink(&own, xdg.join("actor-tui")).expect("symlink");
    let (code, err) = run_root(&["true"], |c| {
        c.env("XDG_RUNTIME_DIR", &xdg);
    });
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("symbolic link"), "{err}");
    let meta = std::fs::metadata(&own).expect("meta");
    assert_eq!(meta.permissions().mode() & 0o777, 0o755, "not chmodded");
    assert_eq!(
        std::fs::read_dir(&own).expect("ls").count(),
        0,
        "nothing written"
    );

    // Our own directory, but open to others: refused with what to do.
    std::fs::remove_file(xdg.join("actor-tui")).expect("rm");
    std::fs::create_dir(xdg.join("actor-tui")).expect("mkdir");
    std::fs::set_permissions(
        xdg.join("actor-tui"),
        std::fs::Permissions::from_mode(0o777),
    )
    .expect("chmod");
    let (code, err) = run_root(&["true"], |c| {
        c.env("XDG_RUNTIME_DIR", &xdg);
    });
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("chmod 700"), "{err}");
}

// ---- 2. the Python package never lives next to a --socket path ----

#[test]
fn h02_socket_in_a_shared_dir_never_uses_a_planted_package() {
    let base = harness::tempdir();
    let name = python_dir_name(base.path());
    let shared = base.path().join("shared");
    std::fs::create_dir(&shared).expect("mkdir");
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
    let marker = base.path().join("planted-ran");
    plant(&shared.join(&name), &marker);
    if let Some((uid, gid)) = other_user() {
        chown_r(&shared.join(&name), uid, gid);
    }
    let xdg = base.path().join("xdg");
    std::fs::create_dir(&xdg).expect("mkdir");
    let socket = shared.join("dbg.sock");
    let print_path = "import os; print('PP=' + os.environ['PYTHONPATH'].split(':')[0])";
    let mut run = Run::start_with(
        "python3",
        &["-c", print_path],
        harness::tempdir(),
        socket.clone(),
        |c| {
            c.env("XDG_RUNTIME_DIR", &xdg);
        },
    );
    let (code, events) = {
        run.wait_event("actor_exited");
        run.finish()
    };
    assert_eq!(code, 0);
    assert!(!marker.exists(), "the planted sitecustomize ran");
    let out = harness::output_text(&events, "1");
    let pp = out
        .split("PP=")
        .nth(1)
        .and_then(|l| l.split_whitespace().next())
        .expect("PYTHONPATH printed");
    assert!(
        pp.starts_with(&xdg.join("actor-tui").display().to_string()),
        "package in the private default dir, not next to the socket: {pp}"
    );

    // With the default directory unusable, a fresh private one serves this run only.
    let bad = base.path().join("bad");
    std::fs::create_dir(&bad).expect("mkdir");
    std::fs::write(bad.join("actor-tui"), b"not a dir").expect("write");
    let mut run = Run::start_with(
        "python3",
        &["-c", print_path],
        harness::tempdir(),
        shared.join("dbg2.sock"),
        |c| {
            c.env("XDG_RUNTIME_DIR", &bad);
        },
    );
    run.wait_event("actor_exited");
    let (code, events) = run.finish();
    assert_eq!(code, 0);
    let out = harness::output_text(&events, "1");
    let pp = PathBuf::from(
        out.split("PP=")
            .nth(1)
            .and_then(|l| l.split_whitespace().next())
            .expect("PYTHONPATH printed"),
    );
    assert!(!pp.starts_with(&shared), "{}", pp.display());
    let fresh = pp.parent().expect("fresh dir");
    assert!(
        fresh
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("actor-tui-py-")),
        "{}",
        pp.display()
    );
    assert!(
        !fresh.exists(),
        "the run's own package directory is removed at the end"
    );
    assert!(!marker.exists());
}

// ---- 3 and 13. --socket never deletes what is not our stale socket, never hangs ----

#[test]
fn h03_socket_path_at_a_file_fifo_or_symlink_is_refused_and_kept() {
    let base = harness::tempdir();
    let notes = base.path().join("notes.txt");
    std::fs::write(&notes, b"my notes").expect("write");
    let fifo = base.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
    let link = base.path().join("link");
    std::os::unix::fs::symlink(&notes, &link).expect("symlink");
    for (path, kind) in [
        (&notes, "a regular file"),
        (&fifo, "a FIFO"),
        (&link, "a symbolic link"),
    ] {
        let (code, err) = run_root(&["--socket", path.to_str().expect("utf8"), "true"], |_| {});
        assert_eq!(code, Some(2), "{err}");
        assert!(err.contains(&format!("is {kind}, not a socket")), "{err}");
        assert!(std::fs::symlink_metadata(path).is_ok(), "{kind} kept");
    }
    assert_eq!(std::fs::read(&notes).expect("read"), b"my notes");
}

#[test]
fn h13_socket_check_does_not_hang_on_a_live_root_with_a_full_backlog() {
    let base = harness::tempdir();
    let path = base.path().join("busy.sock");
    // A listener with a backlog of one that never accepts.
    let listener = nix::sys::socket::socket(
        nix::sys::socket::AddressFamily::Unix,
        nix::sys::socket::SockType::Stream,
        nix::sys::socket::SockFlag::empty(),
        None,
    )
    .expect("socket");
    nix::sys::socket::bind(
        std::os::fd::AsRawFd::as_raw_fd(&listener),
        &nix::sys::socket::UnixAddr::new(&path).expect("addr"),
    )
    .expect("bind");
    nix::sys::socket::listen(
        &listener,
        nix::sys::socket::Backlog::new(1).expect("backlog"),
    )
    .expect("listen");
    // Fill the listener's backlog: nobody accepts, so connects pile up until EAGAIN.
    let mut held = Vec::new();
    for _ in 0..10_000 {
        let fd = nix::sys::socket::socket(
            nix::sys::socket::AddressFamily::Unix,
            nix::sys::socket::SockType::Stream,
            nix::sys::socket::SockFlag::SOCK_NONBLOCK,
            None,
        )
        .expect("socket");
        let addr = nix::sys::socket::UnixAddr::new(&path).expect("addr");
        match nix::sys::socket::connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &addr) {
            Ok(()) => held.push(fd),
            Err(nix::errno::Errno::EAGAIN) => break,
            Err(e) => panic!("connect: {e}"),
        }
    }
    let mut child = Command::new(BIN)
        .args(["--headless", "--socket"])
        .arg(&path)
        .arg("true")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start");
    let status = harness::wait_timeout(&mut child, TIMEOUT);
    if status.is_none() {
        child.kill().ok();
    }
    let mut err = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("read");
    assert_eq!(status.and_then(|s| s.code()), Some(2), "{err}");
    assert!(err.contains("already listening"), "{err}");
    assert!(path.exists(), "the live socket is not unlinked");
    drop((listener, held));
}

// ---- 4. socket mode, log file, peer uid, log escaping and rate limits ----

#[test]
fn h04_socket_is_0600_even_under_umask_000() {
    let dir = harness::tempdir();
    let socket = dir.path().join("root.sock");
    let mut run = Run::start_with(&scen(), &["pause_once"], dir, socket.clone(), |c| {
        // SAFETY: umask is async-signal-safe and only changes the child's mask.
        unsafe {
            c.pre_exec(|| {
                libc::umask(0);
                Ok(())
            });
        }
    });
    run.wait_event("repl_ready");
    let mode = std::fs::metadata(&socket)
        .expect("socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "socket mode {mode:o}");
    run.input("c\n");
    assert_eq!(run.finish().0, 0);
}

#[test]
fn h04b_log_never_follows_a_planted_symlink_and_has_no_tmp_fallback() {
    let base = harness::tempdir();
    let victim = base.path().join("bashrc");
    std::fs::write(&victim, b"").expect("write");
    // What the old fallback used: $TMPDIR/actor-tui/actor-tui.log.
    let tmp = base.path().join("tmp");
    std::fs::create_dir_all(tmp.join("actor-tui")).expect("mkdir");
    std::os::unix::fs::symlink(&victim, tmp.join("actor-tui/actor-tui.log")).expect("symlink");
    let sock = base.path().join("s.sock");
    let (code, err) = run_root(&["--socket", sock.to_str().expect("utf8"), "true"], |c| {
        c.env_remove("HOME")
            .env_remove("XDG_STATE_HOME")
            .env("TMPDIR", &tmp)
            .env("ACTOR_TUI_LOG", "debug");
    });
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(
        std::fs::read(&victim).expect("read"),
        b"",
        "nothing logged into it"
    );

    let (code, err) = run_root(
        &[
            "--socket",
            sock.to_str().expect("utf8"),
            "--log-file",
            tmp.join("actor-tui/actor-tui.log").to_str().expect("utf8"),
            "true",
        ],
        |_| {},
    );
    assert_eq!(
        code,
        Some(2),
        "an explicit log file behind a symlink is refused"
    );
    assert!(err.contains("cannot open the log file"), "{err}");
    assert_eq!(std::fs::read(&victim).expect("read"), b"");
}

#[test]
fn h04c_peer_text_is_escaped_in_the_log_and_bogus_frames_are_rate_limited() {
    let mut run = Run::start(&scen(), &["pause_once"]);
    run.wait_event("repl_ready");
    let mut peer = Peer::join(&run.socket, "noisy");
    peer.send(&ToRoot::Cancel {
        actor: "nobody\nFORGED log line".into(),
        force: false,
    });
    for epoch in 0..20_000 {
        peer.send(&ToRoot::LockRelease {
            task: 1,
            epoch,
            how: ReleaseHow::Continue,
            step_timeout: false,
        });
    }
    // The victim's session still answers.
    run.input("p answer\n");
    run.wait_for("the victim's answer", |e| {
        e["event"] == "repl_output" && e["data"].as_str().is_some_and(|d| d.contains("42"))
    });
    // Once the rate allows another notice, it says how many were held back.
    let suppressed = |e: &serde_json::Value| is_notice(e, "similar notices suppressed");
    let mut counted = run.events.iter().any(suppressed);
    for epoch in 0..100 {
        if counted {
            break;
        }
        peer.send(&ToRoot::LockRelease {
            task: 1,
            epoch,
            how: ReleaseHow::Continue,
            step_timeout: false,
        });
        counted = run
            .wait_within(Duration::from_millis(200), suppressed)
            .is_some();
    }
    assert!(counted, "the suppressed notices are counted");
    drop(peer);
    run.input("c\n");
    let dir = run.keep_dir();
    let log = dir.path().join("log");
    let (code, events) = run.finish();
    assert_eq!(code, 0);
    let notices = count(&events, "notice");
    assert!(notices < 200, "{notices} notices for 20,000 bogus frames");
    let text = std::fs::read_to_string(log).expect("log");
    assert!(
        !text.lines().any(|l| l.starts_with("FORGED")),
        "a peer forged a log line"
    );
    assert!(text.contains("FORGED"), "the text is logged, escaped");
    assert!(
        text.lines().count() < 500,
        "{} log lines",
        text.lines().count()
    );
}

#[test]
fn h04d_connections_from_another_user_are_refused() {
    let Some((uid, gid)) = other_user() else {
        return;
    };
    let dir = harness::tempdir();
    let socket = dir.path().join("root.sock");
    let dir_path = dir.path().to_owned();
    let mut run = Run::start_at(&scen(), &["pause_once"], dir, socket.clone());
    run.wait_event("repl_ready");
    // Loosen the file permissions as a careless user might: the uid check still holds.
    std::fs::set_permissions(&dir_path, std::fs::Permissions::from_mode(0o711)).expect("chmod");
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    let probe = "import socket,sys\n\
                 s=socket.socket(socket.AF_UNIX); s.settimeout(10); s.connect(sys.argv[1])\n\
                 data=b''\n\
                 while True:\n    b=s.recv(4096)\n    if not b: break\n    data+=b\n\
                 print(repr(data))";
    let out = Command::new("python3")
        .args(["-c", probe])
        .arg(&socket)
        .uid(uid)
        .gid(gid)
        .output()
        .expect("probe");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("are refused"), "{text} {:?}", out.stderr);
    run.input("c\n");
    assert_eq!(run.finish().0, 0);
}

// ---- 5. the lock queue is bounded ----

#[test]
fn h05_lock_request_flood_is_capped_and_fields_truncated() {
    let mut run = Run::start(&scen(), &["pause_once"]);
    run.wait_event("repl_ready");
    let mut peer = Peer::join(&run.socket, "flooder");
    let big = "L".repeat(1_000_000);
    for task in 1..=100 {
        peer.lock_request(task, big.clone());
    }
    let refused = peer.recv_until("the cap", |m| matches!(m, ToActor::LockRefused { .. }));
    match refused {
        ToActor::LockRefused { task, error, .. } => {
            assert_eq!(task, 65, "64 wait, the 65th is refused");
            assert!(error.contains("64 requests waiting"), "{error}");
        }
        other => panic!("{other:?}"),
    }
    run.input("p answer\n");
    run.wait_for("the victim's answer", |e| {
        e["event"] == "repl_output" && e["data"].as_str().is_some_and(|d| d.contains("42"))
    });
    for e in run
        .events
        .iter()
        .filter(|e| e["event"] == "lock_requested" && e["actor"] == peer.actor.as_str())
    {
        let loc = e["location"].as_str().expect("location");
        assert!(loc.len() < 4200, "location kept at {} bytes", loc.len());
        assert!(loc.ends_with("bytes cut]"), "truncation is marked");
    }
    while count(&run.events, "lock_refused") < 36 {
        run.wait_event("lock_refused");
    }
    let requested = run
        .events
        .iter()
        .filter(|e| e["event"] == "lock_requested" && e["actor"] == peer.actor.as_str())
        .count();
    assert_eq!(requested, 100);
    drop(peer);
    run.input("c\n");
    assert_eq!(run.finish().0, 0);
}

// ---- 6. connections: frame deadline, cap, descriptors ----

#[test]
fn h06_a_frame_stalled_after_its_prefix_is_dropped() {
    let mut run = Run::start(&scen(), &["pause_once"]);
    run.wait_event("repl_ready");
    let mut peer = Peer::join(&run.socket, "staller");
    peer.s.write_all(&1000u32.to_be_bytes()).expect("prefix");
    peer.s.write_all(&[0x80; 10]).expect("some bytes");
    assert!(
        closed_by_root(&mut peer.s),
        "dropped after the frame deadline"
    );
    run.wait_notice("not complete within");
    run.input("c\n");
    assert_eq!(run.finish().0, 0);
}

#[test]
fn h06b_idle_connections_cannot_fill_the_descriptor_table() {
    let dir = harness::tempdir();
    let socket = dir.path().join("root.sock");
    let mut run = Run::start_with(&scen(), &["pause_once"], dir, socket, |c| {
        // SAFETY: setrlimit is async-signal-safe and only changes the child's limits.
        unsafe {
            c.pre_exec(|| {
                let lim = libc::rlimit {
                    rlim_cur: 64,
                    rlim_max: 64,
                };
                libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
                Ok(())
            });
        }
    });
    run.wait_event("repl_ready");
    let mut peers = Vec::new();
    let mut refused = 0;
    for _ in 0..60 {
        let mut s = Peer::connect(&run.socket);
        // A refused connection may be closed before our hello is written (EPIPE): its
        // error frame is still there to read.
        let _ = proto::write_frame_sync(
            &mut s,
            &ToRoot::Hello {
                protocol: PROTOCOL_VERSION,
                agent: "it".into(),
            },
        );
        match proto::read_frame_sync::<_, ToActor>(&mut s) {
            Ok(Some(ToActor::Hello { .. })) => {
                proto::write_frame_sync(
                    &mut s,
                    &ToRoot::Register {
                        name: "idle".into(),
                        pid: std::process::id(),
                        actor: None,
                        group: None,
                    },
                )
                .expect("register");
                peers.push(s);
            }
            Ok(Some(ToActor::Error { message })) => {
                assert!(message.contains("too many connections"), "{message}");
                refused += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(
        refused > 0,
        "the cap refused some of 60 connections at 64 fds"
    );
    // With descriptors to spare, an actor can still start a subactor.
    let mut spawner = Peer {
        s: peers.remove(0),
        actor: String::new(),
    };
    spawner.recv_until("registered", |m| matches!(m, ToActor::Registered { .. }));
    spawner.send(&ToRoot::Spawn {
        req: 7,
        name: "late".into(),
        program: "true".into(),
        args: vec![],
        env: None,
        cwd: None,
    });
    match spawner.recv_until("spawn reply", |m| {
        matches!(m, ToActor::Spawned { .. } | ToActor::SpawnFailed { .. })
    }) {
        ToActor::Spawned { req, .. } => assert_eq!(req, 7),
        other => panic!("spawn failed with the fd table full: {other:?}"),
    }
    drop((peers, spawner));
    run.input("c\n");
    assert_eq!(run.finish().0, 0);
}

// ---- 7. a big paste is refused, the holder stays ----

#[test]
fn h07_a_huge_paste_is_refused_and_the_session_lives_on() {
    let mut run = Run::start(&scen(), &["pause_once"]);
    run.wait_event("repl_ready");
    let mut paste = "x".repeat(20 << 20);
    paste.push('\n');
    run.input(&paste);
    drop(paste);
    run.wait_notice("refused: the limit is");
    run.input("p answer\n");
    run.wait_for("the answer", |e| {
        e["event"] == "repl_output" && e["data"].as_str().is_some_and(|d| d.contains("42"))
    });
    run.input("c\n");
    let (code, events) = run.finish();
    assert_eq!(code, 0);
    assert!(
        !events.iter().any(|e| e["message"]
            .as_str()
            .is_some_and(|m| m.contains("stopped reading"))),
        "the healthy holder was dropped"
    );
    assert!(repl_text(&events, "1").contains("answer = 42"));
}

// ---- 8. an unread stdout does not stop the lock ----

#[test]
fn h08_unread_headless_stdout_does_not_stall_the_lock() {
    let mut run = Run::start(&scen(), &["flood"]);
    run.wait_event("output");
    let flooder = harness::pids(&run.events)[0];
    run.pause_reading();
    // Everything between the flooder and our unread pipe is full once it blocks writing
    // its terminal (the root stopped reading its PTY).
    let blocked = || {
        let wchan = std::fs::read_to_string(format!("/proc/{flooder}/wchan")).unwrap_or_default();
        let stat = std::fs::read_to_string(format!("/proc/{flooder}/stat")).unwrap_or_default();
        let state = stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .unwrap_or("?")
            .to_owned();
        wchan.contains("wait_woken") && state == "S"
    };
    let deadline = Instant::now() + TIMEOUT;
    while !blocked() {
        assert!(Instant::now() < deadline, "the flooder never blocked");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The flood fills the pipe and the output budget at once; then a lock request must
    // still be answered.
    let mut peer = Peer::join(&run.socket, "asker");
    peer.lock_request(1, "h08".into());
    let epoch = match peer.recv_until("the grant", |m| matches!(m, ToActor::LockGranted { .. })) {
        ToActor::LockGranted { epoch, .. } => epoch,
        other => panic!("{other:?}"),
    };
    peer.send(&ToRoot::LockRelease {
        task: 1,
        epoch,
        how: ReleaseHow::Continue,
        step_timeout: false,
    });
    drop(peer);
    // Quit works with stdout still unread, and the flood stops before we drain it.
    run.send(json!({"cmd": "quit"}));
    run.resume_reading();
    let (_, events) = run.finish();
    assert_eq!(count(&events, "lock_granted"), 1);
}

// ---- 10 and 11. nothing left running ----

/// A first actor that starts four non-actor children: plain, SIGHUP-ignoring, in a new
/// session, in a new session with an empty environment. Each writes its own pid once it is
/// set up (the pid `exec sleep` keeps); the script waits for all four, then does `then`.
fn escapee_script(pids: &Path, then: &str) -> String {
    format!(
        "sh -c 'echo $$ >> {p}; exec sleep 300' &\n\
         sh -c 'trap \"\" HUP; echo $$ >> {p}; exec sleep 301' &\n\
         setsid sh -c 'trap \"\" HUP; echo $$ >> {p}; exec sleep 302' &\n\
         setsid env -i /bin/sh -c 'trap \"\" HUP; echo $$ >> {p}; exec /bin/sleep 303' &\n\
         while [ \"$(wc -l < {p} 2>/dev/null || echo 0)\" -lt 4 ]; do sleep 0.05; done\n\
         echo children-started\n\
         {then}\n",
        p = pids.display()
    )
}

fn read_pids(path: &Path) -> Vec<u32> {
    std::fs::read_to_string(path)
        .expect("pids")
        .split_whitespace()
        .map(|p| p.parse().expect("pid"))
        .collect()
}

fn assert_all_gone(pids: &[u32]) {
    let deadline = Instant::now() + Duration::from_secs(5);
    for &pid in pids {
        while alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!alive(pid), "process {pid} outlived the run");
    }
}

#[test]
fn h10_headless_sigterm_tears_the_tree_down_politely() {
    let base = harness::tempdir();
    let pids = base.path().join("pids");
    let script = escapee_script(&pids, "exec sleep 600");
    let mut run = Run::start("sh", &["-c", &script]);
    run.wait_for("children", |e| {
        e["event"] == "output"
            && e["data"]
                .as_str()
                .is_some_and(|d| d.contains("children-started"))
    });
    let children = read_pids(&pids);
    assert_eq!(children.len(), 4);
    let socket = run.socket.clone();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(run.pid() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    run.wait_event("cancelling");
    let (_, events) = run.finish();
    assert_eq!(events.last().expect("events")["event"], "exit");
    assert_all_gone(&children);
    assert!(!socket.exists(), "the socket file is removed");
}

#[test]
fn h11_escaped_descendants_are_killed_when_the_run_ends() {
    let base = harness::tempdir();
    let pids = base.path().join("pids");
    // The first actor leaves its escapees behind and exits normally.
    let script = escapee_script(&pids, "exit 0");
    let mut run = Run::start("sh", &["-c", &script]);
    run.wait_event("actor_exited");
    let (code, _) = run.finish();
    assert_eq!(code, 0);
    assert_all_gone(&read_pids(&pids));
}

// ---- 12. nobody outside the tree is signalled; a held connection does not hang quit ----

#[test]
fn h12_an_outside_process_that_connects_is_never_signalled() {
    let mut run = Run::start(&scen(), &["pause_once"]);
    run.wait_event("repl_ready");
    // A watcher started by hand (by us, not under the root), reading until disconnected.
    let probe = "import os,sys\n\
                 sys.path.insert(0, sys.argv[2])\n\
                 from actor_tui import _wire\n\
                 s=_wire.connect_unix(sys.argv[1], 10); s.settimeout(None)\n\
                 s.sendall(_wire.frame({'type':'hello','protocol':_wire.PROTOCOL_VERSION,'agent':'w'}))\n\
                 r=_wire.FrameReader(s); r.read()\n\
                 s.sendall(_wire.frame({'type':'register','name':'watcher','pid':os.getpid()}))\n\
                 while True:\n    m=r.read()\n    if m is None: break\n\
                 print('disconnected', flush=True)";
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("python");
    let mut watcher = Command::new("python3")
        .args(["-c", probe])
        .arg(&run.socket)
        .arg(&python)
        .stdout(Stdio::piped())
        .spawn()
        .expect("watcher");
    run.wait_for("the watcher", |e| {
        e["event"] == "actor_started" && e["name"] == "watcher"
    });
    run.send(json!({"cmd": "quit"}));
    let (_, events) = run.finish();
    let status = harness::wait_timeout(&mut watcher, TIMEOUT).expect("watcher ends");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        None,
        "the outsider was signalled: {status:?}"
    );
    assert!(status.success());
    let mut out = String::new();
    watcher
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("read");
    assert!(out.contains("disconnected"), "{out}");
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "actor_exited" && e["actor"] != "1"),
        "the watcher left the tree"
    );
}

#[test]
fn h12b_a_fork_holding_a_dead_actors_connection_does_not_hang_the_run() {
    // The first actor connects, forks and exits; the fork keeps the connection, leaves the
    // session, ignores SIGTERM and SIGHUP, and never reads.
    let script = "import os,signal,time\n\
                  from actor_tui import _wire\n\
                  s=_wire.connect_unix(os.environ['ACTOR_TUI_SOCKET'], 10)\n\
                  s.sendall(_wire.frame({'type':'hello','protocol':_wire.PROTOCOL_VERSION,'agent':'f'}))\n\
                  r=_wire.FrameReader(s); r.read()\n\
                  s.sendall(_wire.frame({'type':'register','name':'forker','pid':os.getpid()}))\n\
                  r.read()\n\
                  pid=os.fork()\n\
                  if pid == 0:\n    signal.signal(signal.SIGTERM, signal.SIG_IGN)\n    signal.signal(signal.SIGHUP, signal.SIG_IGN)\n    os.setsid()\n    print('fork', os.getpid(), flush=True)\n    time.sleep(120)\n\
                  else:\n    time.sleep(0.2)\n    os._exit(0)\n";
    let mut run = Run::start("python3", &["-c", script]);
    // The line may come in several output chunks: read until it is whole.
    let fork_pid = |events: &[serde_json::Value]| -> Option<u32> {
        let out = harness::output_text(events, "1");
        let rest = out.split("fork ").nth(1)?;
        let (digits, tail) = rest.split_at(rest.find(|c: char| !c.is_ascii_digit())?);
        tail.starts_with(['\r', '\n'])
            .then(|| digits.parse().ok())
            .flatten()
    };
    while fork_pid(&run.events).is_none() {
        run.wait_event("output");
    }
    let fork = fork_pid(&run.events).expect("fork pid");
    let (code, _) = run.finish();
    assert_eq!(code, 0);
    assert_all_gone(&[fork]);
}

// ---- 13. ids are canonical; dumps come from the asked actor ----

#[test]
fn h13_an_alias_id_does_not_escape_the_debugging_protection() {
    // The first actor registers as "01" (an alias of its reservation "1") and takes the lock.
    let script = "import os,time\n\
                  from actor_tui import _wire\n\
                  s=_wire.connect_unix(os.environ['ACTOR_TUI_SOCKET'], 10); s.settimeout(None)\n\
                  s.sendall(_wire.frame({'type':'hello','protocol':_wire.PROTOCOL_VERSION,'agent':'a'}))\n\
                  r=_wire.FrameReader(s); r.read()\n\
                  s.sendall(_wire.frame({'type':'register','name':'alias','pid':os.getpid(),'actor':'01'}))\n\
                  print('registered as', r.read()['actor'], flush=True)\n\
                  s.sendall(_wire.frame({'type':'lock_request','task':1,'task_name':'main','reason':'pause','location':'x.py:1'}))\n\
                  while True:\n    m=r.read()\n    if m is None: break\n";
    // `-S`: no sitecustomize, so the bundled client does not register "1" first.
    let mut run = Run::start("python3", &["-S", "-c", script]);
    let granted = run.wait_event("lock_granted");
    assert_ne!(granted["actor"], "01", "an alias is not an id");
    let pid = harness::pids(&run.events)[0];
    run.send(json!({"cmd": "cancel", "actor": "1"}));
    run.wait_for("teardown waits", |e| {
        e["event"] == "teardown_waiting" && e["actor"] == "1"
    });
    assert!(alive(pid), "the debugging actor was signalled");
    assert!(
        !run.events
            .iter()
            .any(|e| e["event"] == "cancelling" && e["actor"] == "1"),
        "teardown started while debugging"
    );
    run.send(json!({"cmd": "force_release"}));
    run.finish();
}

#[test]
fn h13b_a_dump_reply_is_accepted_only_from_the_asked_actor() {
    let mut run = Run::start(&scen(), &["pause_once"]);
    run.wait_event("repl_ready");
    let mut target = Peer::join(&run.socket, "target");
    let mut forger = Peer::join(&run.socket, "forger");
    run.send(json!({"cmd": "dump", "actor": target.actor}));
    let req = match target.recv_until("dump request", |m| matches!(m, ToActor::DumpRequest { .. }))
    {
        ToActor::DumpRequest { req } => req,
        other => panic!("{other:?}"),
    };
    forger.send(&ToRoot::DumpReply {
        req,
        text: "FORGED by the forger".into(),
    });
    target.send(&ToRoot::DumpReply {
        req,
        text: "the real dump".into(),
    });
    let dump = run.wait_event("dump");
    assert_eq!(dump["actor"], target.actor.as_str());
    let text = dump["text"].as_str().expect("text");
    assert!(
        text.contains("the real dump") && !text.contains("FORGED"),
        "{text}"
    );
    assert_eq!(dump["step"], "cooperative");
    drop((target, forger));
    run.input("c\n");
    let (code, events) = run.finish();
    assert_eq!(code, 0);
    assert_eq!(count(&events, "dump"), 1);
}

// ---- 14. a stopped holder is reported without anyone typing ----

#[test]
fn h14_a_holder_stopped_at_its_prompt_is_reported_suspect() {
    let mut run = Run::start(&scen(), &["pause_once"]);
    run.wait_event("repl_ready");
    let pid = nix::unistd::Pid::from_raw(harness::pids(&run.events)[0] as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).expect("stop");
    let s = run.wait_event("lock_suspect");
    assert_eq!(s["why"], "stopped");
    assert_eq!(s["actor"], "1");
    assert!(s["since_ms"].is_u64());
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).expect("cont");
    run.wait_event("lock_healthy");
    run.input("c\n");
    assert_eq!(run.finish().0, 0);
}

/// (parent pid, state letter) of `pid` from `/proc`; `None` once it is gone (reaped).
fn parent_and_state(pid: u32) -> Option<(u32, String)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut f = stat[stat.rfind(')')? + 1..].split_whitespace();
    let state = f.next()?.to_owned();
    Some((f.next()?.parse().ok()?, state))
}

#[test]
fn h15_an_orphan_of_the_tree_is_reaped_while_the_run_goes_on() {
    // A subshell starts `sleep` in the background and exits at once: the sleep re-parents
    // to the root (a subreaper) and exits a moment later. Nobody else will reap it: the
    // root must, without waiting for the end of the run, and without taking the exit
    // status of anything it waits for itself (d02 covers its dump tools).
    let script = "(sleep 0.5 & echo orphan $!); echo ready; sleep 60";
    let mut run = Run::start("sh", &["-c", script]);
    let root = run.pid();
    let orphan = loop {
        let text = crate::harness::output_text(&run.events, "1");
        if text.contains("ready") {
            let pid = text
                .split_whitespace()
                .skip_while(|w| *w != "orphan")
                .nth(1)
                .and_then(|p| p.parse::<u32>().ok());
            break pid.expect("the orphan's pid");
        }
        run.wait_for("the script's output", |e| e["event"] == "output");
    };
    let deadline = Instant::now() + crate::harness::TIMEOUT;
    let mut adopted = false;
    loop {
        match parent_and_state(orphan) {
            // Reaped (gone, or its pid already reused by a process that is not ours).
            None => break,
            Some((ppid, _)) if ppid != root => {
                assert!(!adopted, "pid {orphan} was ours and is now someone else's");
            }
            Some((_, state)) => {
                adopted = true;
                assert!(
                    Instant::now() < deadline,
                    "the orphan {orphan} is still there (state {state}) {:?} after it was \
                     adopted",
                    crate::harness::TIMEOUT
                );
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    run.send(json!({"cmd": "quit"}));
    run.finish();
}
