//! Console benchmarks, printing figures:
//! 1. frame rendering with 1,000 actors in the tree (TestBackend, 120×40);
//! 2. an actor flooding its PTY with log lines while it is shown in the real console (on a
//!    real PTY) and a REPL is open: flood throughput, the console's CPU time and peak
//!    memory, frame times, and keystroke-to-echo latency in the REPL input during the flood;
//! 3. the same flood with the keyboard in terminal mode (F6) on the other actor: keystroke
//!    to the PTY's own echo on screen;
//! 4. the console's resident memory with 1, 50 and 500 live actors that have each printed
//!    3,000 coloured log lines.
//!
//!     cargo bench --bench console [-- MEGABYTES]     (default 100)
#![allow(unsafe_code, reason = "libc calls in the bench harness")]

use std::time::{Duration, Instant};

use actor_tui::console::state::ConsoleState;
use actor_tui::console::view::{UiState, apply_scroll, model};
use actor_tui::proto::{ActorId, Reason};
use actor_tui::runtime::RuntimeEvent;
use actor_tui::runtime::pty::{Mirror, SpawnSpec};
use ratatui::Terminal;
use ratatui::backend::TestBackend;

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn render_1000() {
    let now = Instant::now();
    let mut s = ConsoleState::new((14, 80), (20, 80));
    for i in 1..=1000u32 {
        let parent = (i > 1).then(|| ActorId(u64::from((i - 2) / 10 + 1)));
        s.apply(
            RuntimeEvent::ActorStarted {
                actor: ActorId(u64::from(i)),
                name: format!("worker-{i}"),
                pid: 10_000 + i,
                parent,
            },
            now,
        );
        s.apply(
            RuntimeEvent::Output {
                actor: ActorId(u64::from(i)),
                data: format!("worker-{i}: started\r\n").into_bytes(),
            },
            now,
        );
        // Every actor but the holder waits: 999 queued waiters.
        if i != 7 {
            s.apply(
                RuntimeEvent::LockRequested {
                    actor: ActorId(u64::from(i)),
                    task: 1,
                    task_name: "main".into(),
                    reason: Reason::Pause,
                    location: "src/worker.rs:10:5".into(),
                    peek: None,
                },
                now,
            );
        }
    }
    // 100 past sessions, each with a transcript, before the current one.
    for epoch in 1..=100u64 {
        let actor = ActorId(7);
        s.apply(
            RuntimeEvent::LockGranted {
                actor,
                task: 1,
                epoch,
            },
            now,
        );
        for line in 0..50 {
            s.apply(
                RuntimeEvent::ReplOutput {
                    actor,
                    task: 1,
                    data: format!("> session {epoch} line {line}: x = {line}\n"),
                },
                now,
            );
        }
        s.apply(
            RuntimeEvent::ReplInput {
                actor,
                task: 1,
                data: "c\n".into(),
            },
            now,
        );
        s.apply(
            RuntimeEvent::LockReleased {
                actor,
                task: 1,
                epoch,
                cause: actor_tui::runtime::lock::ReleaseCause::Continue,
            },
            now,
        );
    }
    s.apply(
        RuntimeEvent::LockGranted {
            actor: ActorId(7),
            task: 1,
            epoch: 101,
        },
        now,
    );
    let mut ui = UiState::new();
    ui.selected = Some(ActorId(500));
    let mut term = Terminal::new(TestBackend::new(120, 40)).expect("terminal");
    let theme = actor_tui_ui::Theme { color: true };
    let mut times = Vec::new();
    for _ in 0..300 {
        let t = Instant::now();
        apply_scroll(&mut s, &mut ui);
        term.draw(|f| {
            actor_tui_ui::draw(f, &model(&s, &ui, Instant::now()), &theme);
        })
        .expect("draw");
        times.push(t.elapsed());
    }
    times.sort();
    println!(
        "render, 1000 actors (999 queued, 100 stored transcripts), 120x40: p50 {:.3} ms  p99 {:.3} ms  max {:.3} ms per frame",
        ms(pct(&times, 0.5)),
        ms(pct(&times, 0.99)),
        ms(times[times.len() - 1])
    );
}

fn proc_cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let f: Vec<&str> = stat
        .rfind(')')
        .map(|i| stat[i + 2..].split_whitespace().collect())
        .unwrap_or_default();
    let ticks: u64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

/// A `kB` field of /proc/PID/status (`VmHWM`, `VmRSS`), 0 if unreadable.
fn proc_status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.strip_prefix(field).is_some_and(|r| r.starts_with(':')))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

/// Where the keystrokes of the echo measurement go.
#[derive(Clone, Copy, PartialEq, Eq)]
enum EchoIn {
    /// The console's REPL input line (the console echoes the key itself).
    Repl,
    /// Terminal mode (F6) on the first actor: the key goes to its PTY and the echo is the
    /// kernel's, read back through the root like any output.
    Terminal,
}

/// The console on a real 120x40 PTY, running the demo role `role ARGS` as its first actor,
/// its socket and log in `dir`.
fn console_on_pty(dir: &std::path::Path, role_args: &[&str]) -> (tokio::runtime::Runtime, Mirror) {
    let bin = env!("CARGO_BIN_EXE_actor-tui");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let mut args: Vec<String> = vec![
        "--socket".into(),
        dir.join("root.sock").to_string_lossy().into_owned(),
        "--log-file".into(),
        dir.join("log").to_string_lossy().into_owned(),
        bin.into(),
        "__demo".into(),
    ];
    args.extend(role_args.iter().map(|a| (*a).to_owned()));
    let env = vec![("TERM".to_owned(), "xterm-256color".to_owned())];
    let term = rt
        .block_on(async {
            Mirror::spawn(&SpawnSpec {
                program: bin,
                args: &args,
                env: &env,
                cwd: None,
                rows: 40,
                cols: 120,
            })
        })
        .expect("spawn console");
    (rt, term)
}

fn flood(mb: u32, echo_in: EchoIn) {
    let dir = std::env::temp_dir().join(format!("actor-tui-flood-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let result = dir.join("result");
    let log = dir.join("log");
    let (rt, mut term) = console_on_pty(
        &dir,
        &["flood_top", &mb.to_string(), &result.to_string_lossy()],
    );
    let pid = term.child.id().expect("pid");
    let contents = || term.contents();
    let wait = |what: &str, pred: &dyn Fn(&str) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !pred(&contents()) {
            assert!(
                Instant::now() < deadline,
                "timed out: {what}\n{}",
                contents()
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    let keys = |k: &str| rt.block_on(term.write(k.as_bytes())).expect("keys");
    wait("REPL open", &|c| c.contains("› ") && c.contains("flooder"));
    // Show the flooder's output: leave the input, select it, come back to the input.
    keys("\x1b");
    std::thread::sleep(Duration::from_millis(100));
    keys("j");
    std::thread::sleep(Duration::from_millis(100));
    keys("i");
    wait("flood running", &|c| c.contains("INFO flood"));
    if echo_in == EchoIn::Terminal {
        // The keyboard to the first actor's own terminal; the flood goes on in the other.
        keys("\x1b");
        std::thread::sleep(Duration::from_millis(100));
        keys("k");
        std::thread::sleep(Duration::from_millis(100));
        keys("\x1b[17~");
        wait("terminal mode", &|c| c.contains("TERM 1"));
    }
    let cpu0 = proc_cpu(pid);
    let t0 = Instant::now();
    // The input line as the console draws it: after the "› " marker.
    let input_line = |c: &str| {
        c.lines()
            .find_map(|l| {
                l.split_once("› ")
                    .map(|(_, r)| r.trim_end_matches(['│', ' ']).to_owned())
            })
            .unwrap_or_default()
    };
    // Shown: the REPL input line ends with the key, or (terminal mode) the key is on the
    // screen at all ('@' is in no flood line and nowhere in the console's own text).
    let key = match echo_in {
        EchoIn::Repl => "x",
        EchoIn::Terminal => "@",
    };
    let shown = |c: &str| match echo_in {
        EchoIn::Repl => input_line(c).ends_with('x'),
        EchoIn::Terminal => c.contains('@'),
    };
    let mut echo = Vec::new();
    while !result.exists() {
        let typed = Instant::now();
        keys(key);
        let deadline = typed + Duration::from_secs(5);
        while !shown(&contents()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(200));
        }
        if Instant::now() >= deadline {
            eprintln!("no echo within 5 s; screen:\n{}", contents());
        }
        echo.push(typed.elapsed());
        // Backspace: the console's editor, or the PTY's line discipline, erases it again.
        keys("\x7f");
        while shown(&contents()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_micros(200));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let wall = t0.elapsed();
    let cpu = proc_cpu(pid) - cpu0;
    let hwm = proc_status_kb(pid, "VmHWM");
    let r = std::fs::read_to_string(&result).expect("result");
    let mut it = r.split_whitespace();
    let bytes: f64 = it.next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
    let secs: f64 = it.next().and_then(|v| v.parse().ok()).unwrap_or(1.0);
    if echo_in == EchoIn::Terminal {
        keys("\x1b[17~");
        wait("back to the console", &|c| !c.contains("TERM 1"));
        // The flooder's output again, for its last line.
        keys("\x1b");
        std::thread::sleep(Duration::from_millis(100));
        keys("j");
        std::thread::sleep(Duration::from_millis(100));
        keys("i");
    }
    wait("flood tail visible", &|c| c.contains("flood done"));
    keys("c\r");
    let child = &mut term.child;
    let status = rt
        .block_on(async { tokio::time::timeout(Duration::from_secs(60), child.wait()).await })
        .expect("console exit")
        .expect("wait");
    echo.sort();
    println!(
        "flood {:.0} MB through a shown PTY: {:.1} MB/s; console CPU {:.1} s over {:.1} s ({:.0}% of one core); peak RSS {:.1} MB",
        bytes / 1e6,
        bytes / 1e6 / secs,
        cpu.as_secs_f64(),
        wall.as_secs_f64(),
        100.0 * cpu.as_secs_f64() / wall.as_secs_f64(),
        hwm as f64 / 1024.0
    );
    println!(
        "keystroke echo in the {} during the flood ({} samples): p50 {:.1} ms  p90 {:.1} ms  max {:.1} ms",
        match echo_in {
            EchoIn::Repl => "REPL input",
            EchoIn::Terminal => "terminal mode (F6, PTY echo)",
        },
        echo.len(),
        ms(pct(&echo, 0.5)),
        ms(pct(&echo, 0.9)),
        ms(echo[echo.len() - 1])
    );
    let stats = std::fs::read_to_string(&log).unwrap_or_default();
    if let Some(line) = stats.lines().rev().find(|l| l.contains("frame stats")) {
        let fields = line.split("frame stats").nth(1).unwrap_or("").trim();
        println!("frame times over the run: {fields}");
    }
    let _ = std::fs::remove_dir_all(&dir);
    assert!(status.success(), "console run failed: {status}");
}

/// The console with `n` live actors that have each printed 3,000 coloured log lines
/// (`__demo chatty_top`): its resident memory once they all have. Returns (RSS, HWM) in KiB.
fn chatty(n: u32) -> (u64, u64) {
    let dir = std::env::temp_dir().join(format!("actor-tui-chatty-{}-{n}", std::process::id()));
    let done = dir.join("done");
    std::fs::create_dir_all(&done).expect("dir");
    let (rt, mut term) = console_on_pty(
        &dir,
        &[
            "chatty_top",
            &n.to_string(),
            "3000",
            &done.to_string_lossy(),
        ],
    );
    let pid = term.child.id().expect("pid");
    let deadline = Instant::now() + Duration::from_secs(300);
    // The pause opens once every actor has printed all its lines.
    let ready = format!("Actors ({})", n + 1);
    while !(term.contents().contains(&ready) && term.contents().contains("(actor-tui)")) {
        assert!(Instant::now() < deadline, "timed out:\n{}", term.contents());
        std::thread::sleep(Duration::from_millis(20));
    }
    // Let the last output batches reach the console.
    std::thread::sleep(Duration::from_millis(500));
    let (rss, hwm) = (proc_status_kb(pid, "VmRSS"), proc_status_kb(pid, "VmHWM"));
    rt.block_on(term.write(b"\x1b[21~")).expect("F10");
    std::thread::sleep(Duration::from_millis(100));
    rt.block_on(term.write(b"y")).expect("confirm");
    let child = &mut term.child;
    let _ =
        rt.block_on(async { tokio::time::timeout(Duration::from_secs(60), child.wait()).await });
    let _ = std::fs::remove_dir_all(&dir);
    (rss, hwm)
}

fn main() {
    let mb: u32 = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .and_then(|a| a.parse().ok())
        .unwrap_or(100);
    render_1000();
    // `cargo bench --bench console -- render`: the frame-time figure alone.
    if std::env::args().any(|a| a == "render") {
        return;
    }
    flood(mb, EchoIn::Repl);
    flood(mb, EchoIn::Terminal);
    let runs: Vec<(u32, (u64, u64))> = [1, 50, 500].into_iter().map(|n| (n, chatty(n))).collect();
    let base = runs[0].1.0;
    for (n, (rss, hwm)) in &runs {
        let per = if *n > 1 {
            format!(
                ", {:.2} MB per actor over the 1-actor run",
                rss.saturating_sub(base) as f64 / 1024.0 / f64::from(n - 1)
            )
        } else {
            String::new()
        };
        println!(
            "console RSS, {n} chatty actors (3,000 coloured lines each): {:.1} MB (peak {:.1} MB){per}",
            *rss as f64 / 1024.0,
            *hwm as f64 / 1024.0
        );
    }
}
