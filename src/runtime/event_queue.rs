//! The queue that carries [`RuntimeEvent`]s from the engine and the PTY readers to the front
//! end, in one order. Control events (lock, tree, REPL, notices) are pushed without ever
//! waiting, so a front end that stops reading (an unread headless stdout) cannot stall
//! grants, force-release, timers or quit. PTY output is what may wait: its producers block
//! while too much output is queued, which makes a flooding actor block in `write`, and
//! consecutive chunks of one actor are coalesced.
//!
//! Bounds: output bytes queued are capped by [`OUTPUT_BYTES`] (lossless backpressure).
//! Control events are capped by [`CONTROL_EVENTS`] and [`CONTROL_BYTES`]; past that they are
//! dropped and counted, and the front end gets a notice with the count when it catches up.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use super::core::ConnId;
use super::event::{RuntimeEvent, ViewerRole};
use super::hub::Hub;
use super::server::PeerTx;
use crate::proto::ActorId;

/// Output bytes queued before output producers wait. More only adds latency and memory:
/// at 4 MiB the console bench showed +5 MB of peak RSS and no more throughput.
pub const OUTPUT_BYTES: usize = 1 << 20;
/// Largest coalesced output chunk: small writes are merged up to the PTY reader's own
/// chunk size, never beyond (growing a chunk past it only costs memory: measured +5 MB of
/// peak RSS in the console bench at 64 KiB).
pub const COALESCE_BYTES: usize = 16 << 10;
/// Control events queued before new ones are dropped (the front end is not reading).
pub const CONTROL_EVENTS: usize = 65_536;
/// Bytes of control events (REPL output, dumps) queued before new ones are dropped.
pub const CONTROL_BYTES: usize = 64 << 20;

#[derive(Debug, Default)]
struct State {
    queue: VecDeque<RuntimeEvent>,
    output_bytes: usize,
    control_events: usize,
    control_bytes: usize,
    dropped: u64,
    senders: usize,
    receiver_alive: bool,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    /// Attached viewers and the replay for late ones. Locked only while `state` is held
    /// (or alone, to attach), so viewers see events in exactly the queue's order.
    hub: Mutex<Hub>,
    /// Wakes the receiver: something was queued, or the last sender left.
    readable: Notify,
    /// Wakes output producers: output left the queue, or the receiver left.
    room: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves a consistent queue (every update is one
        // push or pop); keep going.
        crate::sync::lock(&self.state)
    }
}

/// Rough size of a control event, for the byte bound.
fn control_size(ev: &RuntimeEvent) -> usize {
    64 + match ev {
        RuntimeEvent::ReplOutput { data, .. } => data.len(),
        RuntimeEvent::Dump { text, .. } | RuntimeEvent::Snapshot { text, .. } => text.len(),
        RuntimeEvent::LockRequested {
            task_name,
            location,
            peek,
            ..
        } => task_name.len() + location.len() + peek.as_ref().map_or(0, String::len),
        RuntimeEvent::Notice { message, .. } => message.len(),
        RuntimeEvent::Completions { matches, .. } => matches.iter().map(String::len).sum(),
        _ => 0,
    }
}

fn dropped_notice(n: u64) -> RuntimeEvent {
    RuntimeEvent::Notice {
        actor: None,
        message: format!("{n} events were dropped: the front end fell behind"),
    }
}

/// The producing end; clone it for every producer.
#[derive(Debug)]
pub struct EventSender {
    shared: Arc<Shared>,
}

/// The consuming end (one front end).
#[derive(Debug)]
pub struct EventReceiver {
    shared: Arc<Shared>,
}

/// A new queue.
pub fn channel() -> (EventSender, EventReceiver) {
    let shared = Arc::new(Shared::default());
    {
        let mut st = shared.lock();
        st.senders = 1;
        st.receiver_alive = true;
    }
    (
        EventSender {
            shared: shared.clone(),
        },
        EventReceiver { shared },
    )
}

impl Clone for EventSender {
    fn clone(&self) -> Self {
        self.shared.lock().senders += 1;
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for EventSender {
    fn drop(&mut self) {
        let last = {
            let mut st = self.shared.lock();
            st.senders -= 1;
            st.senders == 0
        };
        if last {
            self.shared.readable.notify_one();
        }
    }
}

impl EventSender {
    /// The run's last event: to the viewers first, with up to `wait` for their frames to
    /// be written (the front end may end the process as soon as it sees `exit`), then to
    /// the front end.
    pub async fn finish(&self, ev: RuntimeEvent, wait: std::time::Duration) {
        crate::sync::lock(&self.shared.hub).event(&ev);
        let deadline = tokio::time::Instant::now() + wait;
        while !crate::sync::lock(&self.shared.hub).flushed()
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        self.push(ev, false);
    }

    /// Queues a control event. Never waits. Returns false if the front end is gone.
    pub fn control(&self, ev: RuntimeEvent) -> bool {
        self.push(ev, true)
    }

    fn push(&self, ev: RuntimeEvent, tee: bool) -> bool {
        let size = control_size(&ev);
        {
            let mut st = self.shared.lock();
            if !st.receiver_alive {
                return false;
            }
            if tee {
                crate::sync::lock(&self.shared.hub).event(&ev);
            }
            if st.control_events >= CONTROL_EVENTS || st.control_bytes + size > CONTROL_BYTES {
                st.dropped += 1;
                return true;
            }
            if st.dropped > 0 {
                // The gap is reported where it happened.
                let gap = dropped_notice(std::mem::take(&mut st.dropped));
                st.control_events += 1;
                st.control_bytes += control_size(&gap);
                st.queue.push_back(gap);
            }
            st.control_events += 1;
            st.control_bytes += size;
            st.queue.push_back(ev);
        }
        self.shared.readable.notify_one();
        true
    }

    /// Queues PTY output of `actor`, waiting while [`OUTPUT_BYTES`] are already queued.
    /// Returns false if the front end is gone.
    pub async fn output(&self, actor: ActorId, data: &[u8]) -> bool {
        loop {
            let room = self.shared.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            {
                let mut st = self.shared.lock();
                if !st.receiver_alive {
                    return false;
                }
                if st.output_bytes < OUTPUT_BYTES {
                    st.output_bytes += data.len();
                    crate::sync::lock(&self.shared.hub).output(actor, data);
                    let merged = match st.queue.back_mut() {
                        Some(RuntimeEvent::Output { actor: a, data: d })
                            if *a == actor && d.len() + data.len() <= COALESCE_BYTES =>
                        {
                            d.extend_from_slice(data);
                            true
                        }
                        _ => false,
                    };
                    if !merged {
                        st.queue.push_back(RuntimeEvent::Output {
                            actor,
                            data: data.to_vec(),
                        });
                    }
                    drop(st);
                    self.shared.readable.notify_one();
                    return true;
                }
            }
            room.await;
        }
    }
}

/// The viewers' side of the queue (see [`Hub`]).
impl EventSender {
    /// `conn` is a viewer now: it gets the run's state, then every event.
    pub fn attach(&self, conn: ConnId, tx: PeerTx, role: ViewerRole) {
        crate::sync::lock(&self.shared.hub).attach(conn, tx, role);
    }

    /// An event for one viewer only.
    pub fn to_viewer(&self, conn: ConnId, ev: &RuntimeEvent) {
        crate::sync::lock(&self.shared.hub).to_viewer(conn, ev);
    }

    pub fn detach(&self, conn: ConnId) {
        crate::sync::lock(&self.shared.hub).detach(conn);
    }

    /// Viewers the hub dropped for being over budget, and why.
    pub fn take_overflowed(&self) -> Vec<(ConnId, String)> {
        crate::sync::lock(&self.shared.hub).take_overflowed()
    }
}

/// Why [`EventReceiver::try_recv`] returned nothing.
#[derive(Debug, PartialEq, Eq)]
pub enum TryRecvError {
    Empty,
    Closed,
}

impl EventReceiver {
    fn pop(&self) -> Result<RuntimeEvent, TryRecvError> {
        let mut st = self.shared.lock();
        if st.queue.is_empty() && st.dropped > 0 {
            return Ok(dropped_notice(std::mem::take(&mut st.dropped)));
        }
        let Some(ev) = st.queue.pop_front() else {
            return Err(if st.senders == 0 {
                TryRecvError::Closed
            } else {
                TryRecvError::Empty
            });
        };
        if let RuntimeEvent::Output { data, .. } = &ev {
            st.output_bytes -= data.len();
            drop(st);
            self.shared.room.notify_waiters();
        } else {
            st.control_events -= 1;
            st.control_bytes -= control_size(&ev);
        }
        Ok(ev)
    }

    /// The next event, if one is queued now.
    pub fn try_recv(&mut self) -> Result<RuntimeEvent, TryRecvError> {
        self.pop()
    }

    /// The next event; `None` once every sender is gone and the queue is empty.
    pub async fn recv(&mut self) -> Option<RuntimeEvent> {
        // Take part in tokio's cooperative budget as its channels do: a consumer that always
        // finds an event ready must still yield now and then, or its timers (the console's
        // frame deadline) would starve behind a flood. Measured: keystroke echo during a flood
        // went from p90 4 ms to 10-30 ms without this.
        tokio::task::coop::consume_budget().await;
        loop {
            let readable = self.shared.readable.notified();
            tokio::pin!(readable);
            readable.as_mut().enable();
            match self.pop() {
                Ok(ev) => return Some(ev),
                Err(TryRecvError::Closed) => return None,
                Err(TryRecvError::Empty) => readable.await,
            }
        }
    }
}

impl Drop for EventReceiver {
    fn drop(&mut self) {
        {
            let mut st = self.shared.lock();
            st.receiver_alive = false;
            st.queue.clear();
        }
        self.shared.room.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::ActorId;

    fn notice(i: usize) -> RuntimeEvent {
        RuntimeEvent::Notice {
            actor: None,
            message: i.to_string(),
        }
    }

    #[tokio::test]
    async fn control_never_waits_on_unread_output_and_order_is_kept() {
        let (tx, mut rx) = channel();
        let out = tx.clone();
        // Fill the output budget; the next output producer must wait.
        assert!(out.output(ActorId(1), &vec![b'x'; OUTPUT_BYTES]).await);
        let blocked = tokio::spawn(async move { out.output(ActorId(2), b"late").await });
        tokio::task::yield_now().await;
        assert!(!blocked.is_finished(), "output waits for room");
        // Control goes through at once.
        assert!(tx.control(notice(1)));
        let first = rx.recv().await.expect("output");
        assert!(matches!(first, RuntimeEvent::Output { actor, .. } if actor == ActorId(1)));
        assert!(blocked.await.expect("join"), "room made, output queued");
        assert_eq!(rx.recv().await, Some(notice(1)));
        assert!(
            matches!(rx.recv().await, Some(RuntimeEvent::Output { data, .. }) if data == b"late")
        );
        drop(tx);
        assert_eq!(rx.recv().await, None, "closed once every sender is gone");
    }

    #[tokio::test]
    async fn consecutive_output_of_one_actor_is_coalesced() {
        let (tx, mut rx) = channel();
        tx.output(ActorId(1), b"ab").await;
        tx.output(ActorId(1), b"cd").await;
        tx.output(ActorId(2), b"ef").await;
        assert_eq!(
            rx.try_recv(),
            Ok(RuntimeEvent::Output {
                actor: ActorId(1),
                data: b"abcd".to_vec()
            })
        );
        assert!(
            matches!(rx.try_recv(), Ok(RuntimeEvent::Output { actor, .. }) if actor == ActorId(2))
        );
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    }

    #[tokio::test]
    async fn control_past_the_bound_is_dropped_and_counted() {
        let (tx, mut rx) = channel();
        for i in 0..CONTROL_EVENTS + 10 {
            assert!(tx.control(notice(i)));
        }
        for i in 0..CONTROL_EVENTS {
            assert_eq!(rx.try_recv(), Ok(notice(i)));
        }
        match rx.try_recv() {
            Ok(RuntimeEvent::Notice { message, .. }) => {
                assert!(message.starts_with("10 events were dropped"), "{message}")
            }
            other => panic!("expected the drop notice after the kept events, got {other:?}"),
        }
        assert_eq!(rx.try_recv(), Err(TryRecvError::Empty));
    }

    #[tokio::test]
    async fn a_gone_receiver_releases_waiting_producers() {
        let (tx, rx) = channel();
        assert!(tx.output(ActorId(1), &vec![0; OUTPUT_BYTES]).await);
        let waiting = tokio::spawn(async move { tx.output(ActorId(1), b"x").await });
        tokio::task::yield_now().await;
        drop(rx);
        assert!(!waiting.await.expect("join"));
    }
}
