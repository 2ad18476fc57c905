//! 1,000 actors, each asking for the lock once, at once: over the Unix socket and over TLS
//! (`--listen 127.0.0.1:0`), against the real root binary. One load-generator process holds
//! every connection; each actor, when granted, releases at once, so the run measures the
//! root's grant path under a long queue. Reported per transport: grants per second (from
//! the moment every request is sent to the last grant), the root's peak RSS and its CPU
//! time, and the check that every request was granted exactly once, in arrival order (from
//! the root's own headless event stream).
//!
//!     cargo bench --bench load [-- ACTORS [ROUNDS]]     (default 1,000 actors, 3 rounds)
#![allow(unsafe_code, reason = "sysconf for the clock tick")]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Barrier;

use actor_tui::proto::{self, PROTOCOL_VERSION, Reason, ReleaseHow, ToActor, ToRoot};
use actor_tui::remote::Ticket;

const BIN: &str = env!("CARGO_BIN_EXE_actor-tui");

fn clock_ticks() -> f64 {
    // SAFETY: sysconf reads a constant of the system.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

/// (user + system CPU seconds, peak RSS in MB) of a live process.
fn usage(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let cpu = (ticks(11) + ticks(12)) / clock_ticks();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let hwm = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|k| k.parse::<f64>().ok())
        .unwrap_or(0.0);
    (cpu, hwm / 1024.0)
}

async fn actor<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, n: usize, go: Arc<Barrier>) {
    proto::write_frame(
        &mut s,
        &ToRoot::Hello {
            protocol: PROTOCOL_VERSION,
            agent: "load".into(),
        },
    )
    .await
    .expect("hello");
    let _: Option<ToActor> = proto::read_frame(&mut s).await.expect("hello back");
    proto::write_frame(
        &mut s,
        &ToRoot::Register {
            name: format!("load-{n}"),
            pid: std::process::id(),
            actor: None,
            group: None,
        },
    )
    .await
    .expect("register");
    let _: Option<ToActor> = proto::read_frame(&mut s).await.expect("registered");
    go.wait().await;
    proto::write_frame(
        &mut s,
        &ToRoot::LockRequest {
            task: 1,
            task_name: "main".into(),
            reason: Reason::Pause,
            location: format!("load.rs:{n}"),
            peek: None,
        },
    )
    .await
    .expect("request");
    loop {
        match proto::read_frame::<_, ToActor>(&mut s)
            .await
            .expect("frame")
        {
            Some(ToActor::LockGranted { task, epoch }) => {
                proto::write_frame(
                    &mut s,
                    &ToRoot::LockRelease {
                        task,
                        epoch,
                        how: ReleaseHow::Continue,
                        step_timeout: false,
                    },
                )
                .await
                .expect("release");
                break;
            }
            Some(_) => {}
            None => panic!("the root closed actor {n}"),
        }
    }
    // Stay connected until every actor is done (a close would count as an exit).
    go.wait().await;
}

struct Round {
    grants_per_sec: f64,
    cpu: f64,
    rss_mb: f64,
    in_order: bool,
}

fn round(actors: usize, tls: bool) -> Round {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("root.sock");
    let mut cmd = Command::new(BIN);
    cmd.args(["--headless", "--grace-ms", "200", "--socket"])
        .arg(&socket)
        .arg("--log-file")
        .arg(dir.path().join("log"));
    if tls {
        cmd.args(["--listen", "127.0.0.1:0"]);
    }
    let mut child = cmd
        .args(["sleep", "600"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("root");
    let pid = child.id();
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut ticket: Option<Ticket> = None;
    let mut events = Vec::new();
    loop {
        let v: Value =
            serde_json::from_str(&lines.next().expect("line").expect("read")).expect("json");
        if v["event"] == "listening" {
            ticket = Some(v["ticket"].as_str().expect("t").parse().expect("ticket"));
        }
        if v["event"] == "actor_started" {
            break;
        }
    }
    let (cpu0, _) = usage(pid);
    // Read the root's events on a thread: lock_requested and lock_granted, in order.
    let (tx, rx) = std::sync::mpsc::channel::<Value>();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if let Ok(v) = serde_json::from_str::<Value>(&line)
                && tx.send(v).is_err()
            {
                break;
            }
        }
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let go = Arc::new(Barrier::new(actors + 1));
    let sent = rt.block_on(async {
        for n in 0..actors {
            let go = go.clone();
            if let Some(t) = &ticket {
                let s = actor_tui::remote::connect(t).await.expect("tls connect");
                tokio::spawn(actor(s, n, go));
            } else {
                let s = tokio::net::UnixStream::connect(&socket)
                    .await
                    .expect("connect");
                tokio::spawn(actor(s, n, go));
            }
        }
        go.wait().await;
        Instant::now()
    });
    let mut grants = 0;
    let mut last = sent;
    let deadline = Instant::now() + Duration::from_secs(120);
    while grants < actors {
        let v = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("grants in time");
        if v["event"] == "lock_granted" {
            grants += 1;
            last = Instant::now();
        }
        events.push(v);
    }
    let (cpu1, rss) = usage(pid);
    rt.block_on(go.wait());
    let requested: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "lock_requested")
        .map(|e| &e["actor"])
        .collect();
    let granted: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "lock_granted")
        .map(|e| &e["actor"])
        .collect();
    let mut unique = granted.clone();
    unique.sort_by_key(|v| v.to_string());
    unique.dedup();
    let in_order = requested == granted && unique.len() == actors;
    let _ = child.kill();
    let _ = child.wait();
    rt.shutdown_background();
    Round {
        grants_per_sec: actors as f64 / last.duration_since(sent).as_secs_f64(),
        cpu: cpu1 - cpu0,
        rss_mb: rss,
        in_order,
    }
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let actors: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let rounds: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(3);
    // Two descriptors per actor here, one each at the root (it raises its own limit).
    let _ = nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, 8192, 8192);
    println!("load: {actors} actors, each one lock request at once, released when granted");
    for r in 1..=rounds {
        for tls in [false, true] {
            let x = round(actors, tls);
            println!(
                "round {r} {:>4}: {:>7.0} grants/s, root CPU {:.2} s, root peak RSS {:.1} MB, every request once and in order: {}",
                if tls { "TLS" } else { "unix" },
                x.grants_per_sec,
                x.cpu,
                x.rss_mb,
                x.in_order
            );
            assert!(x.in_order, "grants out of order or missing");
        }
    }
}
