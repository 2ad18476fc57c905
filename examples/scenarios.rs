//! One program, many small roles: the actor side of the acceptance scenarios that need no
//! example of their own. `scenarios ROLE`; the integration tests drive each role through
//! `actor-tui --headless`.
//!
//! Roles: `pause_once`, `crash`, `loop_pause`, `quit_parent`, `threads_tasks`, `pair`,
//! `dump_tree`, `busy`, `unspawned_child`, `winsize`, `late_joiner`, `daemon`, `flood`.
#![allow(unsafe_code, reason = "setsid and ioctl in test roles")]

use std::time::{Duration, Instant};

use actor_tui::{client, pause, pause_sync};

fn main() {
    let role = std::env::args().nth(1).unwrap_or_default();
    // `late_helper` connects later, on purpose.
    if role != "late_helper" {
        client::init();
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let code = rt.block_on(run(&role));
    std::process::exit(code);
}

async fn run(role: &str) -> i32 {
    match role {
        "pause_once" => {
            let answer = 42;
            let name = "deep thought";
            println!("pause_once: before the pause");
            let r = pause!(answer, name).await;
            println!("pause_once: after the pause ({r:?})");
            0
        }
        "crash" => {
            let plan = Plan { steps: vec![] };
            plan.first_step();
            0
        }
        "loop_pause" => {
            for i in 0.. {
                pause_sync!(i).expect("pause");
            }
            0
        }
        "quit_parent" => {
            let child = client::spawn_self("looper", &["loop_pause"]).expect("spawn");
            let exit = child.wait_async().await.expect("wait");
            println!("quit_parent: child ended: {exit}");
            if exit.quit_from_debugger() { 3 } else { 4 }
        }
        "threads_tasks" => {
            let sub = client::spawn_self("sub", &["pause_once"]).expect("spawn");
            let threads: Vec<_> = (1..=2)
                .map(|n| {
                    client::spawn_thread(format!("thread-{n}"), move || {
                        pause_sync!(n).expect("thread pause");
                    })
                    .expect("thread")
                })
                .collect();
            let task = client::spawn_task("async-worker", async {
                let in_task = "yes";
                pause!(in_task).await.expect("task pause");
            });
            task.await.expect("task");
            for t in threads {
                t.join().expect("join");
            }
            let exit = sub.wait_async().await.expect("wait");
            if exit.success() { 0 } else { 1 }
        }
        "pair" => {
            let a = client::spawn_self("first", &["pause_once"]).expect("spawn");
            let b = client::spawn_self("second", &["pause_once"]).expect("spawn");
            let ea = a.wait_async().await.expect("wait");
            let eb = b.wait_async().await.expect("wait");
            println!("pair: first {ea}, second {eb}");
            0
        }
        "dump_tree" => {
            let busy = client::spawn_self("busy", &["busy"]).expect("spawn");
            let note = "dump busy while I am paused";
            pause!(note).await.expect("pause");
            busy.cancel(false).expect("cancel");
            let exit = busy.wait_async().await.expect("wait");
            println!("dump_tree: busy ended: {exit}");
            0
        }
        "busy" => {
            let server = client::spawn_task("server", async {
                let conns: Vec<_> = (1..=2)
                    .map(|n| {
                        client::spawn_task(format!("conn-{n}"), async {
                            tokio::time::sleep(Duration::from_secs(3600)).await;
                        })
                    })
                    .collect();
                for c in conns {
                    let _ = c.await;
                }
            });
            let _worker = client::spawn_thread("hasher", || {
                let start = Instant::now();
                while start.elapsed() < Duration::from_secs(3600) {
                    std::thread::sleep(Duration::from_millis(50));
                }
            });
            let _ = server.await;
            0
        }
        "unspawned_child" => {
            // Started directly, not through the root: it inherits our environment and
            // must still land in the tree under us.
            let exe = std::env::current_exe().expect("exe");
            let status = std::process::Command::new(exe)
                .arg("pause_once")
                .status()
                .expect("start child");
            i32::from(!status.success())
        }
        #[allow(
            clippy::zombie_processes,
            reason = "the helper must outlive us: the root, not we, tears it down"
        )]
        "late_joiner" => {
            // Exits at once, leaving a subactor that is slow to go (it ignores the polite
            // cancel) and a helper that connects only while that teardown is under way.
            let _slow = client::spawn_self("slow", &["slow"]).expect("spawn");
            let exe = std::env::current_exe().expect("exe");
            std::process::Command::new(exe)
                .arg("late_helper")
                .spawn()
                .expect("start helper");
            // Let `slow` install its cancel hook before the teardown begins.
            std::thread::sleep(Duration::from_millis(300));
            0
        }
        "slow" => {
            if let Some(c) = client::global() {
                c.on_cancel(|| println!("slow: ignoring the cancel"));
            }
            // Only SIGKILL (two grace periods after the cancel) ends it.
            // SAFETY: installing SIG_IGN runs no code.
            unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
            std::thread::sleep(Duration::from_secs(60));
            0
        }
        "late_helper" => {
            // Survive our session leader's exit (SIGHUP), as daemons and helpers do.
            // SAFETY: installing SIG_IGN runs no code.
            unsafe { libc::signal(libc::SIGHUP, libc::SIG_IGN) };
            std::thread::sleep(Duration::from_millis(600));
            let _connected = client::global();
            std::thread::sleep(Duration::from_secs(60));
            0
        }
        #[allow(
            clippy::zombie_processes,
            reason = "the daemon must outlive us: the root, not we, tears it down"
        )]
        "daemon" => {
            // A grandchild that leaves the session but keeps the PTY open.
            let exe = std::env::current_exe().expect("exe");
            let child = std::process::Command::new(exe)
                .arg("daemon_child")
                .spawn()
                .expect("start daemon");
            println!("daemon pid {}", child.id());
            std::thread::sleep(Duration::from_millis(300));
            0
        }
        "daemon_child" => {
            // SAFETY: setsid only changes this process's session.
            unsafe { libc::setsid() };
            std::thread::sleep(Duration::from_secs(60));
            0
        }
        "flood" => {
            // Writes numbered lines as fast as its terminal takes them, until cancelled.
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            for n in 0u64.. {
                if writeln!(
                    out,
                    "flood line {n} .............................................."
                )
                .is_err()
                {
                    break;
                }
            }
            0
        }
        "winsize" => {
            // Reports its terminal size until it is 33x99 (set by a resize command).
            for _ in 0..200 {
                let mut ws = libc::winsize {
                    ws_row: 0,
                    ws_col: 0,
                    ws_xpixel: 0,
                    ws_ypixel: 0,
                };
                // SAFETY: TIOCGWINSZ writes one winsize into the struct we own.
                unsafe { libc::ioctl(1, libc::TIOCGWINSZ, &mut ws) };
                println!("size {}x{}", ws.ws_row, ws.ws_col);
                if (ws.ws_row, ws.ws_col) == (33, 99) {
                    return 0;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            1
        }
        other => {
            eprintln!("unknown role {other:?}");
            2
        }
    }
}

struct Plan {
    steps: Vec<String>,
}

impl Plan {
    fn first_step(&self) -> &str {
        self.steps
            .first()
            .map(String::as_str)
            .expect("the plan has no steps")
    }
}
