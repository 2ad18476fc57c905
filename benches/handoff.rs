//! End-to-end handoff latency over the real socket: N actors × K pauses, all queued at
//! once. Measures, per handoff, the time from writing `{"cmd":"input","data":"c\n"}` to
//! the headless front end's stdin until its stdout shows `repl_ready` of the next actor.
//!
//!     cargo bench --bench handoff [-- [python] N K]     (default 4 actors × 50 pauses)
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
    let mut samples = Vec::new();
    let mut sent: Option<(Instant, String)> = None;
    let mut sessions = 0u32;
    let start = Instant::now();
    for line in lines.by_ref() {
        let line = line.expect("read");
        let v: serde_json::Value = serde_json::from_str(&line).expect("json");
        match v["event"].as_str() {
            Some("repl_ready") => {
                let now = Instant::now();
                let actor = v["actor"].as_str().unwrap_or("").to_owned();
                if let Some((t0, prev)) = sent.take()
                    && prev != actor
                {
                    samples.push(now - t0);
                }
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
    samples.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "handoff latency, {n} {} actors x {k} pauses ({} handoffs, {:.1} s total): p50 {:.3} ms  p90 {:.3} ms  max {:.3} ms",
        if python { "Python" } else { "Rust" },
        samples.len(),
        start.elapsed().as_secs_f64(),
        ms(percentile(&samples, 0.5)),
        ms(percentile(&samples, 0.9)),
        ms(*samples.last().expect("samples")),
    );
}
