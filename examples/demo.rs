//! The demo tree of `actor-tui demo`, as an example program: two workers pausing, a
//! background thread pausing, a crasher with a post-mortem.
//!
//!     actor-tui target/debug/examples/demo

use actor_tui::demo;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let role = match args.get(1).map(String::as_str) {
        Some(flag) if flag == demo::ROLE_FLAG => args.get(2).map_or("top", String::as_str),
        _ => "top",
    };
    std::process::exit(demo::run_role(role));
}
