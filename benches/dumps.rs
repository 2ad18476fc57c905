//! Tree-wide dumps (`dump_all`) on the real binary: N Rust actors (the demo's pausers: one
//! holds the lock, the rest wait in the queue, every one connected and able to answer), and
//! the same tree frozen (every actor stopped, so no cooperative answer comes and every
//! dump climbs to the native unwinder). Reported: time from `dump_all` to the `snapshot`
//! event (p50 and max over the rounds) and the root's CPU time for it.
//!
//!     cargo bench --bench dumps [-- ROUNDS [N...]]     (default 3 rounds, N = 50 200)
#![allow(unsafe_code, reason = "sysconf for the clock tick")]

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Instant;

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_actor-tui");

fn cpu(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let f: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let t = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf reads a constant of the system.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (t(11) + t(12)) / hz
}

/// (seconds to the snapshot, root CPU seconds) for one tree-wide dump of `n` actors.
fn round(n: usize, frozen: bool) -> (f64, f64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(BIN)
        .args(["--headless", "--grace-ms", "200", "--socket"])
        .arg(dir.path().join("root.sock"))
        .arg("--log-file")
        .arg(dir.path().join("log"))
        .env("XDG_STATE_HOME", dir.path())
        .args([
            "--name",
            "bench",
            BIN,
            "__demo",
            "bench_top",
            &n.to_string(),
            "1",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("root");
    let pid = child.id();
    let mut stdin = child.stdin.take().expect("stdin");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut next = || -> Value {
        serde_json::from_str(&lines.next().expect("line").expect("read")).expect("json")
    };
    // Every pauser asked (one holds, n-1 wait).
    let mut requested = 0;
    while requested < n {
        if next()["event"] == "lock_requested" {
            requested += 1;
        }
    }
    let mut send = |cmd: &str| {
        writeln!(stdin, "{cmd}").expect("command");
        stdin.flush().expect("flush");
    };
    if frozen {
        send(r#"{"cmd":"freeze"}"#);
        while next()["event"] != "frozen" {}
    }
    let cpu0 = cpu(pid);
    let t0 = Instant::now();
    send(r#"{"cmd":"dump_all"}"#);
    loop {
        let v = next();
        if v["event"] == "snapshot" {
            let text = v["text"].as_str().unwrap_or("");
            assert!(
                text.contains(&format!("snapshot of {} actors", n + 1)),
                "{text}"
            );
            break;
        }
    }
    let took = t0.elapsed().as_secs_f64();
    let used = cpu(pid) - cpu0;
    let _ = child.kill();
    let _ = child.wait();
    (took, used)
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let rounds = args.first().copied().unwrap_or(3);
    let sizes: Vec<usize> = if args.len() > 1 {
        args[1..].to_vec()
    } else {
        vec![50, 200]
    };
    for &n in &sizes {
        for frozen in [false, true] {
            let mut times = Vec::new();
            let mut cpus = Vec::new();
            for _ in 0..rounds {
                let (t, c) = round(n, frozen);
                times.push(t);
                cpus.push(c);
            }
            times.sort_by(f64::total_cmp);
            cpus.sort_by(f64::total_cmp);
            println!(
                "dump_all of {n} actors{}: p50 {:.2} s, max {:.2} s; root CPU p50 {:.2} s",
                if frozen {
                    " (frozen: native unwinder for each)"
                } else {
                    ""
                },
                times[times.len() / 2],
                times[times.len() - 1],
                cpus[cpus.len() / 2],
            );
        }
    }
}
