//! What abusive peers cost the root, measured on the real binary over its real socket while
//! a Python actor holds the lock at a pdb prompt:
//!
//! - **flood**: C connections (default 157) each queue 64 lock requests (10,048 in all),
//!   then all disconnect; root CPU time for each phase, and how long the holder's session
//!   takes to answer `p x + 1` while the requests arrive;
//! - **big**: 4 connections each queue 50 requests with 1 MiB `location`s (200 MB sent);
//!   root RSS after they are queued and after they are dropped, and its high-water mark.
//!
//!     cargo bench --bench abuse [-- ROUNDS [C]]      (default 3 rounds, 157 connections)
//!
//! With `ACTOR_TUI_ANCHOR=/path/to/an/older/actor-tui`, every round runs that binary too,
//! alternating with this one, and the report gives both side by side.
#![allow(unsafe_code, reason = "sysconf for the clock tick")]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use actor_tui::proto::{self, PROTOCOL_VERSION, Reason, ToActor, ToRoot};

struct Root {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
    socket: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Root {
    fn start(bin: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("root.sock");
        let mut child = Command::new(bin)
            .args(["--headless", "--grace-ms", "200", "--socket"])
            .arg(&socket)
            .arg("--log-file")
            .arg(dir.path().join("log"))
            .args(["python3", "-c", "x = 1\nbreakpoint()\n"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start actor-tui");
        let stdin = child.stdin.take().expect("stdin");
        let out = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines() {
                let Ok(l) = l else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let mut root = Self {
            child,
            stdin,
            lines,
            socket,
            _dir: dir,
        };
        root.wait(|l| l.contains("\"repl_ready\""));
        root
    }

    fn wait(&mut self, pred: impl Fn(&str) -> bool) -> String {
        loop {
            let l = self
                .lines
                .recv_timeout(Duration::from_secs(120))
                .expect("root went quiet");
            if pred(&l) {
                return l;
            }
        }
    }

    /// Waits until `n` lines match.
    fn wait_n(&mut self, n: usize, pred: impl Fn(&str) -> bool) {
        let mut seen = 0;
        while seen < n {
            if pred(&self.wait(&pred)) {
                seen += 1;
            }
        }
    }

    fn input(&mut self, data: &str) {
        let cmd = serde_json::json!({"cmd": "input", "data": data});
        writeln!(self.stdin, "{cmd}").expect("write");
        self.stdin.flush().expect("flush");
    }

    /// utime + stime of the root, in seconds.
    fn cpu(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).expect("stat");
        let rest = &stat[stat.rfind(')').expect(")") + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        // Fields 14 and 15 of stat (utime, stime), counted after the command name.
        let ticks: u64 =
            f[11].parse::<u64>().expect("utime") + f[12].parse::<u64>().expect("stime");
        // SAFETY: sysconf takes a constant and returns a number.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        ticks as f64 / hz
    }

    /// (VmRSS, VmHWM) in MB.
    fn mem(&self) -> (f64, f64) {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).expect("status");
        let kb = |key: &str| {
            status
                .lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
                / 1024.0
        };
        (kb("VmRSS:"), kb("VmHWM:"))
    }

    fn stop(mut self) {
        writeln!(self.stdin, "{}", serde_json::json!({"cmd": "quit"})).ok();
        self.stdin.flush().ok();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.child.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

fn join(socket: &Path, name: &str) -> UnixStream {
    let mut s = UnixStream::connect(socket).expect("connect");
    proto::write_frame_sync(
        &mut s,
        &ToRoot::Hello {
            protocol: PROTOCOL_VERSION,
            agent: "bench".into(),
        },
    )
    .expect("hello");
    let _: Option<ToActor> = proto::read_frame_sync(&mut s).expect("hello back");
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
    let _: Option<ToActor> = proto::read_frame_sync(&mut s).expect("registered");
    // Replies to the requests are never read: the root must cope with that too.
    s
}

fn request(s: &mut UnixStream, task: u64, location: &str) {
    proto::write_frame_sync(
        s,
        &ToRoot::LockRequest {
            task,
            task_name: format!("t{task}"),
            reason: Reason::Pause,
            location: location.to_owned(),
            peek: None,
        },
    )
    .expect("request");
}

#[derive(Debug, Default, Clone)]
struct Flood {
    queue_cpu: f64,
    drop_cpu: f64,
    answer_ms: f64,
}

fn flood(bin: &str, conns_n: usize) -> Flood {
    let mut root = Root::start(bin);
    let socket = root.socket.clone();
    let cpu0 = root.cpu();
    let sender = std::thread::spawn(move || {
        let mut conns = Vec::new();
        for c in 0..conns_n {
            let mut s = join(&socket, &format!("flood-{c}"));
            for task in 0..64 {
                request(&mut s, task, "abuse.rs:1");
            }
            conns.push(s);
        }
        conns
    });
    // The holder's session, asked while the requests pour in.
    let asked = Instant::now();
    root.input("p x + 1\n");
    root.wait(|l| l.contains("\"repl_output\"") && l.contains('2'));
    let answer_ms = asked.elapsed().as_secs_f64() * 1e3;
    let conns = sender.join().expect("sender");
    root.wait_n(conns_n * 64, |l| l.contains("\"lock_requested\""));
    let cpu1 = root.cpu();
    drop(conns);
    root.wait_n(conns_n * 64, |l| l.contains("\"lock_dropped\""));
    let cpu2 = root.cpu();
    root.stop();
    Flood {
        queue_cpu: cpu1 - cpu0,
        drop_cpu: cpu2 - cpu1,
        answer_ms,
    }
}

#[derive(Debug, Default, Clone)]
struct Big {
    rss_queued: f64,
    rss_dropped: f64,
    hwm: f64,
}

fn big(bin: &str) -> Big {
    let mut root = Root::start(bin);
    let location = "L".repeat(1_000_000);
    let mut conns: Vec<UnixStream> = (0..4)
        .map(|c| join(&root.socket, &format!("big-{c}")))
        .collect();
    for (c, s) in conns.iter_mut().enumerate() {
        for task in 0..50 {
            request(s, (c * 100 + task) as u64, &location);
        }
    }
    root.wait_n(200, |l| l.contains("\"lock_requested\""));
    let (rss_queued, _) = root.mem();
    drop(conns);
    root.wait_n(200, |l| l.contains("\"lock_dropped\""));
    let (rss_dropped, hwm) = root.mem();
    root.stop();
    Big {
        rss_queued,
        rss_dropped,
        hwm,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .filter_map(|a| a.parse().ok())
        .collect();
    let rounds = args.first().copied().unwrap_or(3);
    let conns_n = args.get(1).copied().unwrap_or(157);
    let ours = env!("CARGO_BIN_EXE_actor-tui").to_owned();
    let anchor = std::env::var("ACTOR_TUI_ANCHOR").ok();
    let mut bins = vec![("this build", ours)];
    if let Some(a) = anchor {
        bins.push(("anchor", a));
    }
    let mut floods: Vec<Vec<Flood>> = vec![Vec::new(); bins.len()];
    let mut bigs: Vec<Vec<Big>> = vec![Vec::new(); bins.len()];
    for round in 0..rounds {
        // Alternate which binary goes first, so drift over the run hits both alike.
        let order: Vec<usize> = if round % 2 == 0 {
            (0..bins.len()).collect()
        } else {
            (0..bins.len()).rev().collect()
        };
        for &i in &order {
            let f = flood(&bins[i].1, conns_n);
            let b = big(&bins[i].1);
            eprintln!("round {round} {}: {f:?} {b:?}", bins[i].0);
            floods[i].push(f);
            bigs[i].push(b);
        }
    }
    println!("medians over {rounds} rounds:");
    for (i, (name, bin)) in bins.iter().enumerate() {
        let f = &floods[i];
        let b = &bigs[i];
        println!("{name} ({bin}):");
        println!(
            "  {} lock requests from {conns_n} connections: root CPU {:.3} s to queue, {:.3} s to drop; holder answered in {:.1} ms",
            conns_n * 64,
            median(f.iter().map(|x| x.queue_cpu).collect()),
            median(f.iter().map(|x| x.drop_cpu).collect()),
            median(f.iter().map(|x| x.answer_ms).collect()),
        );
        println!(
            "  200 requests with 1 MiB locations: RSS {:.1} MB queued, {:.1} MB after the drop, high-water {:.1} MB",
            median(b.iter().map(|x| x.rss_queued).collect()),
            median(b.iter().map(|x| x.rss_dropped).collect()),
            median(b.iter().map(|x| x.hwm).collect()),
        );
    }
}
