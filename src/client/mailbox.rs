//! A small multi-producer, single-consumer queue that can be received from blocking code
//! (any thread, including a tokio worker inside a panic hook) and from async code (any
//! executor). tokio's channels panic on `blocking_recv` inside a runtime, and std's cannot
//! be awaited; the debugger has to work from both.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

#[derive(Debug)]
struct State<T> {
    items: VecDeque<T>,
    closed: bool,
    waker: Option<Waker>,
}

/// See the module docs. Unbounded by design: producers are the client's reader thread,
/// which must never block on a slow consumer, and each mailbox carries one session's
/// frames (a few lines of input at a time).
#[derive(Debug)]
pub struct Mailbox<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
}

impl<T> Default for Mailbox<T> {
    fn default() -> Self {
        Self {
            state: Mutex::new(State {
                items: VecDeque::new(),
                closed: false,
                waker: None,
            }),
            ready: Condvar::new(),
        }
    }
}

impl<T> Mailbox<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panic while holding this lock cannot leave the queue inconsistent (every
        // critical section is a single push/pop), so a poisoned lock is still usable.
        crate::sync::lock(&self.state)
    }

    /// Adds an item; ignored once closed.
    pub fn push(&self, item: T) {
        let mut s = self.lock();
        if s.closed {
            return;
        }
        s.items.push_back(item);
        if let Some(w) = s.waker.take() {
            w.wake();
        }
        self.ready.notify_all();
    }

    /// No more items will come; receivers get `None` once the queue is drained.
    pub fn close(&self) {
        let mut s = self.lock();
        s.closed = true;
        if let Some(w) = s.waker.take() {
            w.wake();
        }
        self.ready.notify_all();
    }

    /// Blocks until an item arrives, the mailbox closes, or `timeout` passes.
    pub fn recv_timeout(&self, timeout: Option<Duration>) -> Option<T> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut s = self.lock();
        loop {
            if let Some(item) = s.items.pop_front() {
                return Some(item);
            }
            if s.closed {
                return None;
            }
            s = match deadline {
                None => self.ready.wait(s).unwrap_or_else(|p| p.into_inner()),
                Some(d) => {
                    let left = d.checked_duration_since(Instant::now())?;
                    self.ready
                        .wait_timeout(s, left)
                        .unwrap_or_else(|p| p.into_inner())
                        .0
                }
            };
        }
    }

    /// Blocks until an item arrives or the mailbox closes.
    pub fn recv(&self) -> Option<T> {
        self.recv_timeout(None)
    }

    /// Waits asynchronously for an item or the close.
    pub fn recv_async(&self) -> Recv<'_, T> {
        Recv { mailbox: self }
    }
}

/// Future returned by [`Mailbox::recv_async`].
#[derive(Debug)]
pub struct Recv<'a, T> {
    mailbox: &'a Mailbox<T>,
}

impl<T> Future for Recv<'_, T> {
    type Output = Option<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let mut s = self.mailbox.lock();
        if let Some(item) = s.items.pop_front() {
            return Poll::Ready(Some(item));
        }
        if s.closed {
            return Poll::Ready(None);
        }
        s.waker = Some(cx.waker().clone());
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn blocking_receiver_gets_items_then_none_after_close() {
        let m = Arc::new(Mailbox::default());
        let p = m.clone();
        let t = std::thread::spawn(move || {
            p.push(1);
            p.push(2);
            p.close();
            p.push(3);
        });
        assert_eq!(m.recv(), Some(1));
        assert_eq!(m.recv(), Some(2));
        assert_eq!(m.recv(), None);
        t.join().expect("producer");
        assert_eq!(m.recv_timeout(Some(Duration::from_millis(1))), None);
    }

    #[tokio::test]
    async fn async_receiver_is_woken_by_a_thread() {
        let m = Arc::new(Mailbox::default());
        let p = m.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            p.push("x");
        });
        assert_eq!(m.recv_async().await, Some("x"));
    }
}
