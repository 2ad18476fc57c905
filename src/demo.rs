//! The built-in demo tree (`actor-tui demo`, and `examples/demo.rs`): the executable
//! re-runs itself in several roles (`EXE __demo ROLE`), so the demo needs nothing built
//! beyond `actor-tui`. It shows concurrent pauses from
//! subactors and threads, a queue, a crash with a post-mortem, and output while debugging.

use std::time::Duration;

use crate::{client, pause, pause_sync};

/// First argument that selects a demo role.
pub const ROLE_FLAG: &str = "__demo";

/// Runs one role of the demo tree; returns the process exit code.
pub fn run_role(role: &str) -> i32 {
    client::init();
    match role {
        "top" => top(),
        "worker" => worker(),
        "crasher" => crasher(),
        "crash_top" => crash_top(),
        // Used by the handoff benchmark (`cargo bench --bench handoff`).
        "bench_top" => bench_top(),
        "bench_pauser" => bench_pauser(),
        // Used by the console flood benchmark (`cargo bench --bench console`).
        "flood_top" => flood_top(),
        "flooder" => flooder(),
        // Used by the console memory benchmark (`cargo bench --bench console`).
        "chatty_top" => chatty_top(),
        "chatty" => chatty(),
        other => {
            eprintln!("unknown demo role {other}");
            2
        }
    }
}

fn top() -> i32 {
    println!("demo: starting two workers, a crasher and a background thread");
    let spawn = |name: &str, role: &str| client::spawn_self(name, &[ROLE_FLAG, role]);
    let handles: Vec<_> = [
        ("worker-a", "worker"),
        ("worker-b", "worker"),
        ("crasher", "crasher"),
    ]
    .into_iter()
    .filter_map(|(n, r)| match spawn(n, r) {
        Ok(h) => Some(h),
        Err(e) => {
            eprintln!("demo: cannot spawn {n}: {e}");
            None
        }
    })
    .collect();
    let bg = client::spawn_thread("bg-indexer", || {
        let indexed_files = 1234_u32;
        std::thread::sleep(Duration::from_millis(200));
        // A pause from a plain std::thread: the thread blocks, the process goes on.
        let _ = pause_sync!(indexed_files);
    });
    for h in &handles {
        match h.wait() {
            Ok(exit) => println!("demo: {} ended: {exit}", h.name()),
            Err(e) => println!("demo: lost {}: {e}", h.name()),
        }
    }
    if let Ok(t) = bg {
        // A panic in the thread was already shown in its post-mortem.
        let _ = t.join();
    }
    println!("demo: done");
    0
}

fn worker() -> i32 {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("worker: {e}");
            return 1;
        }
    };
    rt.block_on(async {
        let name = client::global()
            .map(|c| c.name().to_owned())
            .unwrap_or_default();
        // A named task: dumps and the lock pane show "pauser" instead of an address.
        let pauser = client::spawn_task("pauser", async move {
            for round in 1..=2u32 {
                let progress = round * 50;
                println!("{name}: round {round}, progress {progress}%");
                tokio::time::sleep(Duration::from_millis(100)).await;
                // Errors (refused, no root) are reported by the library; the worker goes on.
                let _ = pause!(round, progress).await;
            }
            println!("{name}: finished");
        });
        // A panic in the task was already shown in its post-mortem.
        let _ = pauser.await;
    });
    0
}

fn crasher() -> i32 {
    let readings = [3_u32, 1, 4];
    std::thread::sleep(Duration::from_millis(300));
    println!("crasher: reading sensor 7 of {}", readings.len());
    let index = readings.len() + 4;
    // A real out-of-bounds panic: opens a post-mortem session, then the process fails.
    let value = readings[index.min(7)];
    println!("never printed: {value}");
    0
}

/// `__demo crash_top N`: N crashers at once, all failing at the same line (for crash
/// admission rules).
fn crash_top() -> i32 {
    let n = arg(3, 4);
    let handles: Vec<_> = (0..n)
        .filter_map(|i| client::spawn_self(&format!("crasher-{i}"), &[ROLE_FLAG, "crasher"]).ok())
        .collect();
    // Each crasher fails; the top ends well once all of them have ended.
    for h in &handles {
        let _ = h.wait();
    }
    0
}

fn arg(n: usize, default: u32) -> u32 {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

/// `__demo chatty_top N LINES DIR`: N subactors that each print LINES coloured log lines
/// and stay alive; once all have printed (each leaves `DIR/done-ID`), a pause opens, so a
/// REPL on screen says the tree is ready to be measured.
fn chatty_top() -> i32 {
    let (n, lines) = (arg(3, 50), arg(4, 3000));
    let Some(dir) = std::env::args().nth(5) else {
        return 2;
    };
    let children: Vec<_> = (0..n)
        .filter_map(|i| {
            client::spawn_self(
                &format!("chatty-{i}"),
                &[ROLE_FLAG, "chatty", &lines.to_string(), &dir],
            )
            .ok()
        })
        .collect();
    while std::fs::read_dir(&dir).map_or(0, Iterator::count) < children.len() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let chatty = children.len();
    let _ = pause_sync!(chatty);
    0
}

/// `__demo chatty LINES DIR`: prints LINES coloured log lines, marks itself done in DIR,
/// then waits to be cancelled.
fn chatty() -> i32 {
    use std::io::Write as _;
    let lines = arg(3, 3000);
    let dir = std::env::args().nth(4).unwrap_or_else(|| ".".into());
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for n in 0..lines {
        let colour = 31 + n % 6;
        if writeln!(
            out,
            "\x1b[{colour}m{n:>6} INFO\x1b[0m worker: handled request id={n} in 0.{:03} ms",
            n % 1000
        )
        .is_err()
        {
            return 1;
        }
    }
    if out.flush().is_err() {
        return 1;
    }
    drop(out);
    let _ = std::fs::write(format!("{dir}/done-{}", std::process::id()), b"");
    std::thread::sleep(Duration::from_secs(3600));
    0
}

/// `__demo bench_top N K`: N subactors that each pause K times, all queueing at once.
fn bench_top() -> i32 {
    let (n, k) = (arg(3, 4), arg(4, 50));
    let handles: Vec<_> = (0..n)
        .filter_map(|i| {
            client::spawn_self(
                &format!("pauser-{i}"),
                &[ROLE_FLAG, "bench_pauser", &k.to_string()],
            )
            .ok()
        })
        .collect();
    let failed = handles
        .iter()
        .filter(|h| !h.wait().is_ok_and(|e| e.success()))
        .count();
    i32::from(failed > 0 || handles.len() != n as usize)
}

fn bench_pauser() -> i32 {
    for round in 0..arg(3, 50) {
        if pause_sync!(round).is_err() {
            return 1;
        }
    }
    0
}

/// `__demo flood_top MB RESULT_FILE`: spawns `flooder`, then pauses (a REPL stays open while
/// the flood runs); after `c`, waits for the flooder.
fn flood_top() -> i32 {
    let mb = arg(3, 100);
    let result = std::env::args()
        .nth(4)
        .unwrap_or_else(|| "/dev/null".into());
    let Ok(flooder) =
        client::spawn_self("flooder", &[ROLE_FLAG, "flooder", &mb.to_string(), &result])
    else {
        return 1;
    };
    let flooding = "yes";
    let _ = pause_sync!(flooding);
    i32::from(!flooder.wait().is_ok_and(|e| e.success()))
}

/// `__demo flooder MB RESULT_FILE`: writes MB megabytes of log lines to its terminal as fast
/// as the terminal takes them, then records the seconds it took in RESULT_FILE.
fn flooder() -> i32 {
    use std::io::Write as _;
    let total = u64::from(arg(3, 100)) * 1_000_000;
    let result = std::env::args()
        .nth(4)
        .unwrap_or_else(|| "/dev/null".into());
    // Give the console a moment to show this actor before the flood starts.
    std::thread::sleep(Duration::from_millis(1500));
    let start = std::time::Instant::now();
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock());
    let mut written = 0u64;
    let mut n = 0u64;
    while written < total {
        let line = format!(
            "{n:>10} INFO flood: request served in 0.{:03} ms, status=200 path=/api/items/{}\n",
            n % 1000,
            n % 97
        );
        if out.write_all(line.as_bytes()).is_err() {
            return 1;
        }
        written += line.len() as u64;
        n += 1;
    }
    if out.flush().is_err() {
        return 1;
    }
    let secs = start.elapsed().as_secs_f64();
    println!("flood done: {written} bytes in {secs:.2} s");
    i32::from(std::fs::write(&result, format!("{written} {secs}\n")).is_err())
}
