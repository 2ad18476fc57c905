//! End-to-end handoff latency over the real socket: N actors × K pauses, all queued at
//! once. Measures, per handoff, the time from writing `{"cmd":"input","data":"c\n"}` to
//! the headless front end's stdin until its stdout shows `repl_ready` of the next actor.
//!
//!     cargo bench --bench handoff [-- [python] N K [ROUNDS]]   (default 4 actors × 50 pauses, 1 round)
//!
//! Handoffs to an actor's first session (its debugger is built, pdb imported), handoffs
//! from an actor's last pause (its process exits while the next prompt comes up) and the
//! rest are reported apart as well as together. With `ACTOR_TUI_SETTLE=1` the first
//! prompt is answered only once every actor has asked for the lock, and 2 s later.
//!
//! With `python`, the actors are Python processes calling `breakpoint()` (stock pdb through
//! the bundled client, `examples/python/bench_handoff.py`) instead of Rust actors.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Handoff samples of one or more runs, by kind.
#[derive(Default)]
struct Samples {
    /// To the next actor's first session.
    first: Vec<Duration>,
    /// From an actor's last pause: its exit runs beside the next actor's prompt.
    exiting: Vec<Duration>,
    /// Every other handoff.
    later: Vec<Duration>,
}

/// One run of the tree: its handoff samples and its wall time.
fn run_tree(python: bool, n: u32, k: u32, out: &mut Samples) -> Duration {
    let bin = env!("CARGO_BIN_EXE_actor-tui");
    let dir = std::env::temp_dir().join(format!("actor-tui-bench-{}", std::process::id()));
    let mut child = Command::new(bin)
        .args(["--headless", "--socket"])
        .arg(dir.join("root.sock"))
        .arg("--log-file")
        .arg(dir.join("log"))
        .args(if python {
            vec![
                "python3".to_owned(),
                format!(
                    "{}/examples/python/bench_handoff.py",
                    env!("CARGO_MANIFEST_DIR")
                ),
            ]
        } else {
            vec![bin.to_owned(), "__demo".into(), "bench_top".into()]
        })
        .args([n.to_string(), k.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start actor-tui");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    // Sessions per actor so far.
    let mut seen = std::collections::HashMap::<String, u32>::new();
    let mut sent: Option<(Instant, String)> = None;
    let mut sessions = 0u32;
    let mut requested = 0u32;
    let settle = std::env::var_os("ACTOR_TUI_SETTLE").is_some_and(|v| v == "1");
    let start = Instant::now();
    while let Some(line) = lines.next() {
        let line = line.expect("read");
        let v: serde_json::Value = serde_json::from_str(&line).expect("json");
        match v["event"].as_str() {
            Some("lock_requested") => requested += 1,
            Some("repl_ready") if settle && sessions == 0 => {
                // Settled: answer the first prompt once every actor has asked, and 2 s later,
                // so the first handoffs do not race the actors' own start-up.
                while requested < n {
                    let Some(Ok(line)) = lines.next() else { break };
                    let v: serde_json::Value = serde_json::from_str(&line).expect("json");
                    requested += u32::from(v["event"] == "lock_requested");
                }
                std::thread::sleep(Duration::from_secs(2));
                sessions += 1;
                *seen
                    .entry(v["actor"].as_str().unwrap_or("").to_owned())
                    .or_default() += 1;
                stdin
                    .write_all(b"{\"cmd\":\"input\",\"data\":\"c\\n\"}\n")
                    .expect("write");
                stdin.flush().expect("flush");
                sent = Some((Instant::now(), v["actor"].as_str().unwrap_or("").to_owned()));
            }
            Some("repl_ready") => {
                let now = Instant::now();
                let actor = v["actor"].as_str().unwrap_or("").to_owned();
                if let Some((t0, prev)) = sent.take()
                    && prev != actor
                {
                    if !seen.contains_key(&actor) {
                        out.first.push(now - t0);
                    } else if seen.get(&prev) == Some(&k) {
                        out.exiting.push(now - t0);
                    } else {
                        out.later.push(now - t0);
                    }
                }
                *seen.entry(actor.clone()).or_default() += 1;
                sessions += 1;
                let t0 = Instant::now();
                stdin
                    .write_all(b"{\"cmd\":\"input\",\"data\":\"c\\n\"}\n")
                    .expect("write");
                stdin.flush().expect("flush");
                sent = Some((t0, actor));
            }
            Some("exit") => break,
            _ => {}
        }
    }
    let status = child.wait().expect("wait");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(status.success(), "bench tree failed: {status}");
    assert_eq!(sessions, n * k, "every pause got a session");
    start.elapsed()
}

fn report(what: &str, mut samples: Vec<Duration>) {
    if samples.is_empty() {
        println!("  {what}: none");
        return;
    }
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "  {what} ({}): p50 {:.3} ms  p90 {:.3} ms  max {:.3} ms",
        samples.len(),
        ms(percentile(&samples, 0.5)),
        ms(percentile(&samples, 0.9)),
        ms(*samples.last().expect("samples")),
    );
}

fn main() {
    let mut args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let python = args.first().is_some_and(|a| a == "python");
    if python {
        args.remove(0);
    }
    let n: u32 = args.first().and_then(|a| a.parse().ok()).unwrap_or(4);
    let k: u32 = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(50);
    let rounds: u32 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(1);
    let mut samples = Samples::default();
    let mut wall = Duration::ZERO;
    for _ in 0..rounds {
        wall += run_tree(python, n, k, &mut samples);
    }
    let mut all: Vec<Duration> = [&samples.first, &samples.exiting, &samples.later]
        .into_iter()
        .flatten()
        .copied()
        .collect();
    all.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "handoff latency, {n} {} actors x {k} pauses x {rounds} rounds ({} handoffs, {:.1} s total): p50 {:.3} ms  p90 {:.3} ms  max {:.3} ms",
        if python { "Python" } else { "Rust" },
        all.len(),
        wall.as_secs_f64(),
        ms(percentile(&all, 0.5)),
        ms(percentile(&all, 0.9)),
        ms(*all.last().expect("samples")),
    );
    report("to an actor's first session", samples.first);
    report("from an actor's last pause (it exits)", samples.exiting);
    report("every other handoff", samples.later);
}
