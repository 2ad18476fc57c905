//! Scenario 5 and 6: `top` spawns subactors `a` and `b`, each pausing twice, starting at
//! the same moment; meanwhile two plain `std::thread`s of `top` pause once each. Six
//! sessions in all, strictly one at a time. Exit code 0.
//!
//!     actor-tui --headless target/debug/examples/concurrent_pause

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actor_tui::{client, pause, pause_sync};

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// Sleeps until the wall-clock deadline shared by every process, so pauses collide.
fn sleep_until(deadline_ms: u128) {
    let now = now_ms();
    if deadline_ms > now {
        std::thread::sleep(Duration::from_millis((deadline_ms - now) as u64));
    }
}

fn main() {
    client::init();
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("child") => child(args.get(2).and_then(|d| d.parse().ok()).unwrap_or(0)),
        _ => top(),
    }
}

fn top() {
    let deadline = now_ms() + 1500;
    let d = deadline.to_string();
    let a = client::spawn_self("a", &["child", &d]).expect("spawn a");
    let b = client::spawn_self("b", &["child", &d]).expect("spawn b");
    let threads: Vec<_> = (1..=2)
        .map(|n| {
            client::spawn_thread(format!("bg-{n}"), move || {
                sleep_until(deadline);
                let thread_no = n;
                pause_sync!(thread_no).expect("pause from a thread");
            })
            .expect("spawn thread")
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
    for h in [a, b] {
        let exit = h.wait().expect("wait");
        assert!(exit.success(), "{} failed: {exit}", h.name());
    }
    println!("top: all six sessions done");
}

fn child(deadline: u128) {
    sleep_until(deadline);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        client::spawn_task("pauser", async {
            for round in 1..=2 {
                pause!(round).await.expect("pause");
            }
        })
        .await
        .expect("task");
    });
}
