//! A remote actor (issue 11): it reaches the root through the ticket in `ACTOR_TUI_TICKET`
//! (the root runs with `--listen`), pauses `PAUSES` times (default 2) and exits 0. Its own
//! tasks are dumpable like any actor's; a cancel ends it with the cancelled status.
//!
//!     actor-tui --headless --listen 127.0.0.1:0 sleep 60        # prints `listening`
//!     ACTOR_TUI_TICKET='actor-tui:1:actor:...' target/debug/examples/remote_worker

use actor_tui::{client, pause_sync};

fn main() {
    client::init();
    let pauses: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host = host.trim();
    for round in 1..=pauses {
        println!("remote_worker on {host}: pause {round}");
        // A root that vanished mid-session ends the pause with an error: the program goes
        // on, as it would with no root at all.
        if let Err(e) = pause_sync!(round) {
            eprintln!("remote_worker: pause {round}: {e}; going on");
        }
    }
    println!("remote_worker: done");
}
