//! Taking a mutex, the one way this crate does it: poison-tolerant. Every critical section
//! here is a single update that cannot leave its data half-changed, so a panic in one thread
//! must not take every later user of the lock down with it.

use std::sync::{Mutex, MutexGuard, PoisonError};

pub(crate) fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
