//! Scenario 9: a task that already holds the debug lock asks again. The root refuses the
//! second request with a clear error instead of queueing it (which would deadlock the task
//! against itself). Exit code 0.
//!
//!     actor-tui --headless target/debug/examples/double_request

use actor_tui::{PauseError, Reason, client, pause_sync};

fn main() {
    client::init();
    let guard = client::acquire_lock(Reason::Pause, "double_request.rs: first").expect("lock");
    match pause_sync!() {
        Err(PauseError::Refused(e)) => println!("second request refused as expected: {e}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    guard.release().expect("release");
}
