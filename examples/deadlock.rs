//! Two threads that deadlock on two mutexes, in a program that links no actor-tui client:
//! the dump ladder has nothing cooperative to ask and reads every thread's native stack from
//! outside (issue 12). Prints `deadlocked` once both threads hold their first lock.
//!
//!     actor-tui --headless target/debug/examples/deadlock

use std::sync::{Arc, Barrier, Mutex};

#[inline(never)]
fn lock_a_then_b(a: &Mutex<u32>, b: &Mutex<u32>, both: &Barrier) {
    let _a = a.lock().expect("a");
    both.wait();
    let _b = b.lock().expect("b");
}

#[inline(never)]
fn lock_b_then_a(a: &Mutex<u32>, b: &Mutex<u32>, both: &Barrier) {
    let _b = b.lock().expect("b");
    both.wait();
    let _a = a.lock().expect("a");
}

fn main() {
    let a = Arc::new(Mutex::new(0));
    let b = Arc::new(Mutex::new(0));
    let both = Arc::new(Barrier::new(3));
    let t1 = {
        let (a, b, both) = (a.clone(), b.clone(), both.clone());
        std::thread::Builder::new()
            .name("first".into())
            .spawn(move || lock_a_then_b(&a, &b, &both))
            .expect("thread")
    };
    let t2 = {
        let (a, b, both) = (a.clone(), b.clone(), both.clone());
        std::thread::Builder::new()
            .name("second".into())
            .spawn(move || lock_b_then_a(&a, &b, &both))
            .expect("thread")
    };
    both.wait();
    println!("deadlocked");
    let _ = t1.join();
    let _ = t2.join();
}
