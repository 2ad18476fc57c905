//! Scenario 7: top spawns mid, mid spawns leaf; leaf panics. Post-mortem in leaf; after `c`
//! mid sees the failure and panics naming leaf (its own post-mortem), then top. Non-zero
//! exit.
//!
//!     actor-tui --headless target/debug/examples/nested_crash

use actor_tui::client;

fn main() {
    client::init();
    match std::env::args().nth(1).as_deref() {
        Some("mid") => parent_of("leaf", "leaf"),
        Some("leaf") => {
            let sensors = [10_u8, 20, 30];
            let wanted = sensors.len() + std::env::args().count();
            println!("leaf: reading sensor {wanted}");
            let value = sensors[wanted];
            println!("unreachable {value}");
        }
        _ => parent_of("mid", "mid"),
    }
}

fn parent_of(name: &str, role: &str) {
    let child = client::spawn_self(name, &[role]).expect("spawn");
    let exit = child.wait().expect("wait");
    if !exit.success() {
        panic!("subactor {name} failed: {exit}");
    }
}
