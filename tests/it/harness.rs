//! Runs the real `actor-tui --headless` binary on real example programs, reads its JSON
//! event stream, sends commands, and checks the scenario invariants over the whole stream.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub const BIN: &str = env!("CARGO_BIN_EXE_actor-tui");

/// Path of a built example (cargo builds examples before running integration tests).
pub fn example(name: &str) -> String {
    let bin = Path::new(BIN);
    let dir = bin.parent().expect("target dir");
    let p = dir.join("examples").join(name);
    assert!(p.exists(), "example {name} not built at {}", p.display());
    p.to_string_lossy().into_owned()
}

/// A fresh private directory for this test's socket.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("actor-tui-it")
        .tempdir()
        .expect("tempdir")
}

pub struct Run {
    pub child: Child,
    stdin: Option<ChildStdin>,
    /// While set, the stdout reader stops reading: the root's stdout pipe fills up.
    paused: std::sync::Arc<std::sync::atomic::AtomicBool>,
    rx: mpsc::Receiver<Value>,
    pub events: Vec<Value>,
    pub socket: PathBuf,
    /// The run's directory (socket, log); `None` once [`Run::keep_dir`] took it.
    dir: Option<tempfile::TempDir>,
}

pub const TIMEOUT: Duration = Duration::from_secs(30);

/// The teardown grace period every headless run here uses.
pub const GRACE: Duration = Duration::from_millis(500);

impl Run {
    pub fn start(program: &str, args: &[&str]) -> Self {
        let dir = tempdir();
        let socket = dir.path().join("root.sock");
        Self::start_at(program, args, dir, socket)
    }

    /// Like [`Run::start`], with flags for the root before the program (`--listen ...`).
    pub fn start_flags(flags: &[&str], program: &str, args: &[&str]) -> Self {
        let dir = tempdir();
        let socket = dir.path().join("root.sock");
        let mut all: Vec<&str> = flags.to_vec();
        all.push(program);
        all.extend_from_slice(args);
        Self::start_at(all[0], &all[1..], dir, socket)
    }

    pub fn start_at(program: &str, args: &[&str], dir: tempfile::TempDir, socket: PathBuf) -> Self {
        Self::start_with(program, args, dir, socket, |_| {})
    }

    /// Like [`Run::start_at`], with a last say over the root's command (environment,
    /// limits, user).
    pub fn start_with(
        program: &str,
        args: &[&str],
        dir: tempfile::TempDir,
        socket: PathBuf,
        configure: impl FnOnce(&mut Command),
    ) -> Self {
        let mut cmd = Command::new(BIN);
        cmd.arg("--headless")
            .arg("--grace-ms")
            .arg(GRACE.as_millis().to_string())
            .arg("--socket")
            .arg(&socket)
            .arg("--log-file")
            .arg(dir.path().join("log"))
            .arg(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            // Snapshots and other state stay in the test's directory, not the user's.
            .env("XDG_STATE_HOME", dir.path().join("state"));
        configure(&mut cmd);
        Self::from_command(cmd, socket, Some(dir))
    }

    /// `actor-tui attach --headless ARGS SOCKET`: a viewer of a run, read like a run.
    pub fn attach(socket: &Path, args: &[&str]) -> Self {
        let mut cmd = Command::new(BIN);
        cmd.arg("attach")
            .arg("--headless")
            .args(args)
            .arg(socket)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        Self::from_command(cmd, socket.to_owned(), None)
    }

    fn from_command(mut cmd: Command, socket: PathBuf, dir: Option<tempfile::TempDir>) -> Self {
        let mut child = cmd.spawn().expect("start actor-tui");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        let paused = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader_paused = paused.clone();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            loop {
                while reader_paused.load(std::sync::atomic::Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(10));
                }
                let Some(line) = lines.next() else { break };
                let Ok(line) = line else { break };
                let v: Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("stdout line is not JSON ({e}): {line}"));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        Self {
            stdin: child.stdin.take(),
            paused,
            child,
            rx,
            events: Vec::new(),
            socket,
            dir,
        }
    }

    fn pull(&mut self, deadline: Instant) -> Option<Value> {
        let left = deadline.checked_duration_since(Instant::now())?;
        let v = self.rx.recv_timeout(left).ok()?;
        self.events.push(v.clone());
        Some(v)
    }

    /// The first event seen so far that matches, else the next one to arrive that does.
    pub fn seen_or_wait(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(v) = self.events.iter().find(|e| pred(e)) {
            return v.clone();
        }
        self.wait_for(what, pred)
    }

    /// Takes the run's directory out, so it outlives the run (to read the log after exit).
    pub fn keep_dir(&mut self) -> tempfile::TempDir {
        self.dir.take().expect("dir kept once")
    }

    /// Consumes events until one matches, for at most `within`; `None` if none did.
    pub fn wait_within(
        &mut self,
        within: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Option<Value> {
        let deadline = Instant::now() + within;
        loop {
            let v = self.pull(deadline)?;
            if pred(&v) {
                return Some(v);
            }
        }
    }

    /// Consumes events until one matches; panics with the log if none does in time.
    pub fn wait_for(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let Some(v) = self.pull(deadline) else {
                panic!("timed out waiting for {what}; events:\n{}", self.log());
            };
            if pred(&v) {
                return v;
            }
        }
    }

    /// Waits for a `notice` whose message contains `text`.
    pub fn wait_notice(&mut self, text: &str) -> Value {
        self.wait_for(&format!("a notice with `{text}`"), |e| is_notice(e, text))
    }

    pub fn wait_event(&mut self, event: &str) -> Value {
        self.wait_for(event, |v| v["event"] == event)
    }

    /// Stops reading the root's stdout (it fills up and the root's writes block) until
    /// [`Run::resume_reading`].
    pub fn pause_reading(&self) {
        self.paused.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn resume_reading(&self) {
        self.paused
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }

    /// The root's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn send(&mut self, cmd: Value) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{cmd}").expect("write command");
        stdin.flush().expect("flush");
    }

    pub fn input(&mut self, data: &str) {
        self.send(json!({"cmd": "input", "data": data}));
    }

    /// Answers every REPL with `c` until the run ends; returns the exit code. Panics if the
    /// run does not end in time.
    pub fn continue_all(&mut self) -> i32 {
        loop {
            let v = self.wait_for("repl_ready or exit", |v| {
                v["event"] == "repl_ready" || v["event"] == "exit"
            });
            if v["event"] == "exit" {
                return v["code"].as_i64().expect("code") as i32;
            }
            self.input("c\n");
        }
    }

    /// Waits for the `exit` event and for the process, and checks the invariants.
    pub fn finish(mut self) -> (i32, Vec<Value>) {
        let code = if let Some(e) = self.events.iter().find(|e| e["event"] == "exit") {
            e["code"].as_i64().expect("code") as i32
        } else {
            self.wait_event("exit")["code"].as_i64().expect("code") as i32
        };
        // Drain whatever is left until stdout closes. Stdin stays open: the root must exit
        // on its own, not because its input ended.
        while self.pull(Instant::now() + Duration::from_secs(5)).is_some() {}
        let status = wait_timeout(&mut self.child, TIMEOUT).expect("actor-tui did not exit");
        assert_eq!(
            status.code(),
            Some(code),
            "process exit code differs from exit event"
        );
        check_invariants(&self.events);
        (code, std::mem::take(&mut self.events))
    }

    pub fn log(&self) -> String {
        self.events
            .iter()
            .map(|e| {
                let mut s = e.to_string();
                s.truncate(300);
                s
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Actor id of the actor with this name (from `actor_started`).
    pub fn actor_named(&mut self, name: &str) -> String {
        let e = self.seen_or_wait(&format!("actor {name}"), |e| {
            e["event"] == "actor_started" && e["name"] == name
        });
        e["actor"].as_str().expect("id").to_owned()
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        // A failed test must not leave the tree running.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            return Some(st);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The state letter of `pid` (`R`, `S`, `Z`...), from `/proc`; `None` if it is gone.
pub fn proc_state(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let i = stat.rfind(')')?;
    stat[i + 1..].split_whitespace().next().map(str::to_owned)
}

/// True if `pid` is still a live (non-zombie) process.
pub fn alive(pid: u32) -> bool {
    proc_state(pid).is_some_and(|s| s != "Z" && s != "X")
}

/// Waits until `pid`'s main thread is asleep (state `S`) on two looks 20 ms apart: a
/// program that printed that it is about to block may still be running towards the call
/// on a busy machine. Panics after [`TIMEOUT`].
pub fn wait_asleep(pid: u32) {
    let deadline = Instant::now() + TIMEOUT;
    let mut seen = 0;
    while seen < 2 {
        assert!(Instant::now() < deadline, "pid {pid} never went to sleep");
        seen = if proc_state(pid).as_deref() == Some("S") {
            seen + 1
        } else {
            0
        };
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn pids(events: &[Value]) -> Vec<u32> {
    events
        .iter()
        .filter(|e| e["event"] == "actor_started")
        .map(|e| e["pid"].as_u64().expect("pid") as u32)
        .collect()
}

/// The SCENARIOS.md invariants over a whole event stream.
pub fn check_invariants(events: &[Value]) {
    let dump = || {
        events
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    };
    let key = |e: &Value| {
        (
            e["actor"].as_str().unwrap_or("").to_owned(),
            e["task"].as_u64().unwrap_or(0),
        )
    };
    let mut holder: Option<((String, u64), u64)> = None;
    let mut waiting: VecDeque<(String, u64)> = VecDeque::new();
    let mut released: HashMap<u64, usize> = HashMap::new();
    let mut granted = Vec::new();
    for e in events {
        match e["event"].as_str().unwrap_or("") {
            "lock_requested" => waiting.push_back(key(e)),
            "lock_refused" => {
                // The refused request is the newest one with that key.
                let k = key(e);
                if let Some(i) = waiting.iter().rposition(|w| *w == k) {
                    waiting.remove(i);
                }
            }
            "lock_dropped" | "request_skipped" => {
                let k = key(e);
                if let Some(i) = waiting.iter().position(|w| *w == k) {
                    waiting.remove(i);
                }
            }
            // Request order, unless the user reordered: then the order the event gives.
            "queue_reordered" => {
                let order: Vec<(String, u64)> = e["order"]
                    .as_array()
                    .map(|o| o.iter().map(key).collect())
                    .unwrap_or_default();
                let mut sorted_before: Vec<_> = waiting.iter().cloned().collect();
                let mut sorted_after = order.clone();
                sorted_before.sort();
                sorted_after.sort();
                assert_eq!(
                    sorted_before,
                    sorted_after,
                    "a reorder lost or made a request:\n{}",
                    dump()
                );
                waiting = order.into();
            }
            "lock_granted" => {
                assert!(holder.is_none(), "two REPLs open at once:\n{}", dump());
                let k = key(e);
                assert_eq!(
                    waiting.pop_front(),
                    Some(k.clone()),
                    "grant out of request order:\n{}",
                    dump()
                );
                let epoch = e["epoch"].as_u64().expect("epoch");
                holder = Some((k, epoch));
                granted.push(epoch);
            }
            "lock_released" => {
                let epoch = e["epoch"].as_u64().expect("epoch");
                let (k, held) = holder
                    .take()
                    .unwrap_or_else(|| panic!("release without grant:\n{}", dump()));
                assert_eq!(
                    (k, held),
                    (key(e), epoch),
                    "release of a grant not held:\n{}",
                    dump()
                );
                *released.entry(epoch).or_default() += 1;
            }
            "repl_output" | "repl_ready" => {
                let h = holder.as_ref().map(|(k, _)| k.clone());
                assert_eq!(h, Some(key(e)), "REPL frame from a non-holder:\n{}", dump());
            }
            "output" => {
                let data = e["data"].as_str().unwrap_or("");
                assert!(
                    !data.contains("(actor-tui) "),
                    "REPL prompt leaked into PTY output"
                );
            }
            _ => {}
        }
    }
    if events.iter().any(|e| e["event"] == "exit") {
        assert!(
            holder.is_none(),
            "run ended with the lock held:\n{}",
            dump()
        );
        for g in &granted {
            assert_eq!(
                released.get(g),
                Some(&1),
                "grant {g} not released exactly once:\n{}",
                dump()
            );
        }
        // No process of the tree outlives the run (peers this test process played are
        // not of the tree, and must not have been killed).
        let deadline = Instant::now() + Duration::from_secs(5);
        for pid in pids(events)
            .into_iter()
            .filter(|p| *p != std::process::id())
        {
            while alive(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            assert!(!alive(pid), "actor pid {pid} outlived the run");
        }
    }
}

/// REPL text of one actor, concatenated.
/// Waits for the next prompt of `actor`; its whole REPL text so far.
pub fn prompt(run: &mut Run, actor: &str) -> String {
    run.wait_for(&format!("a prompt of {actor}"), |e| {
        e["event"] == "repl_ready" && e["actor"] == actor
    });
    repl_text(&run.events, actor)
}

/// Sends `line` to the session of `actor`; what its debugger printed before its next prompt.
pub fn ask(run: &mut Run, actor: &str, line: &str) -> String {
    let before = repl_text(&run.events, actor).len();
    run.input(&format!("{line}\n"));
    prompt(run, actor)[before..].to_owned()
}

/// The next session granted within `within`, once its prompt is up: (actor, the request
/// that was granted).
pub fn next_session_within(run: &mut Run, within: Duration) -> (String, Value) {
    let granted = run
        .wait_within(within, |e| e["event"] == "lock_granted")
        .unwrap_or_else(|| panic!("no session in time; events:\n{}", run.log()));
    let actor = granted["actor"].as_str().expect("actor").to_owned();
    let task = granted["task"].clone();
    let request = run
        .events
        .iter()
        .rev()
        .find(|e| e["event"] == "lock_requested" && e["actor"] == actor && e["task"] == task)
        .cloned()
        .expect("the request before its grant");
    prompt(run, &actor);
    (actor, request)
}

pub fn repl_text(events: &[Value], actor: &str) -> String {
    events
        .iter()
        .filter(|e| e["event"] == "repl_output" && e["actor"] == actor)
        .filter_map(|e| e["data"].as_str())
        .collect()
}

/// PTY output of one actor, concatenated.
pub fn output_text(events: &[Value], actor: &str) -> String {
    events
        .iter()
        .filter(|e| e["event"] == "output" && e["actor"] == actor)
        .filter_map(|e| e["data"].as_str())
        .collect()
}

/// Whether `e` is a `notice` whose message contains `text`.
pub fn is_notice(e: &Value, text: &str) -> bool {
    e["event"] == "notice" && e["message"].as_str().is_some_and(|m| m.contains(text))
}

pub fn count(events: &[Value], event: &str) -> usize {
    events.iter().filter(|e| e["event"] == event).count()
}

/// Reads until the root closes `s` (EOF or reset): true, or false when the read timeout of
/// `s` passes first.
pub fn closed_by_root(s: &mut std::os::unix::net::UnixStream) -> bool {
    use std::io::Read;
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}
