//! Scenario 11: `hung` takes the debug lock and stops responding without opening a REPL;
//! `waiter` queues behind it. A force-release hands the lock to `waiter`. Seconds later
//! `hung` wakes up and sends its late release, which the root ignores. Exit code 0.
//!
//!     actor-tui --headless target/debug/examples/stale_lock

use std::time::Duration;

use actor_tui::{Reason, client, pause_sync};

fn main() {
    client::init();
    match std::env::args().nth(1).as_deref() {
        Some("hung") => {
            let guard = client::acquire_lock(Reason::Pause, "stale_lock.rs: hung").expect("lock");
            println!(
                "hung: holding the lock (epoch {}) and hanging",
                guard.epoch()
            );
            std::thread::sleep(Duration::from_secs(4));
            println!("hung: woke up, releasing late");
            guard.release().expect("release");
        }
        Some("waiter") => {
            std::thread::sleep(Duration::from_millis(300));
            let turn = "after the force-release";
            pause_sync!(turn).expect("pause");
        }
        _ => {
            let hung = client::spawn_self("hung", &["hung"]).expect("spawn");
            let waiter = client::spawn_self("waiter", &["waiter"]).expect("spawn");
            for h in [hung, waiter] {
                let exit = h.wait().expect("wait");
                assert!(exit.success(), "{}: {exit}", h.name());
            }
        }
    }
}
