//! Scenario 8: top → mid → leaf; leaf pauses; top cancels mid's subtree while leaf's
//! session is open. The root leaves leaf (and mid, its parent) alone until the user types
//! `c`; then both are cancelled and top ends with exit code 0. (Forcing the cancel instead,
//! F9 twice in the console, kills them at once; top accepts that too.)
//!
//!     actor-tui --headless target/debug/examples/cancel_during_debug

use std::path::PathBuf;
use std::time::Duration;

use actor_tui::{ExitReason, client, pause_sync};

fn marker() -> PathBuf {
    // One marker per run: the socket path is unique per root.
    let sock = std::env::var("ACTOR_TUI_SOCKET").unwrap_or_else(|_| "none".into());
    std::env::temp_dir().join(format!(
        "cancel-during-debug-{:x}",
        sock.bytes()
            .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(b.into()))
    ))
}

fn main() {
    client::init();
    match std::env::args().nth(1).as_deref() {
        Some("mid") => {
            let leaf = client::spawn_self("leaf", &["leaf"]).expect("spawn leaf");
            let exit = leaf.wait().expect("wait leaf");
            println!("mid: leaf ended: {exit}");
        }
        Some("leaf") => {
            // Tell top we are about to pause; it waits a little longer before cancelling.
            std::fs::write(marker(), b"pausing").expect("marker");
            let secret = 42;
            pause_sync!(secret).expect("pause");
            println!("leaf: continued; waiting to be cancelled");
            std::thread::sleep(Duration::from_secs(60));
        }
        _ => {
            let _ = std::fs::remove_file(marker());
            let mid = client::spawn_self("mid", &["mid"]).expect("spawn mid");
            while !marker().exists() {
                std::thread::sleep(Duration::from_millis(20));
            }
            std::thread::sleep(Duration::from_millis(500));
            let _ = std::fs::remove_file(marker());
            println!("top: cancelling mid's subtree");
            mid.cancel(false).expect("cancel");
            let exit = mid.wait().expect("wait mid");
            println!("top: mid ended: {exit}");
            // Politely cancelled, or killed if the user forced it (F9 twice in the console).
            let forced = exit.signal == Some(9);
            assert!(
                exit.reason == Some(ExitReason::Cancelled) || forced,
                "mid: {exit}"
            );
        }
    }
}
