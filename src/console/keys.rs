//! The keyboard, read on a thread of its own and handed to the console loop over a channel.
//!
//! crossterm's `EventStream` polls the terminal from the loop on every turn with a zero
//! timeout, on a reader lock that its own waker thread holds while it waits for input: under
//! a flood the loop turns thousands of times a second and each poll spins on that lock
//! (`sched_yield`), about a seventh of the console's CPU in a profile. Here only this thread
//! touches crossterm's reader; the loop waits on a channel.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crossterm::event::{self, Event};
use tokio::sync::mpsc;

/// How long the thread waits for a key before it looks at its flags again: the most a
/// pause (or the end of the console) waits for it.
const POLL: Duration = Duration::from_millis(20);

/// Keys waiting for the loop; the thread stops reading (and the terminal buffers) past it.
const QUEUED: usize = 256;

#[derive(Debug)]
pub struct KeyReader {
    rx: mpsc::Receiver<std::io::Result<Event>>,
    flags: Arc<Flags>,
    /// The thread, out of crossterm's reader, acknowledges a pause here.
    paused_rx: std::sync::mpsc::Receiver<()>,
    resume_tx: std::sync::mpsc::Sender<()>,
}

#[derive(Debug, Default)]
struct Flags {
    pause: AtomicBool,
    stop: AtomicBool,
}

impl KeyReader {
    pub fn start() -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel(QUEUED);
        let flags = Arc::new(Flags::default());
        let (paused_tx, paused_rx) = std::sync::mpsc::channel();
        let (resume_tx, resume_rx) = std::sync::mpsc::channel::<()>();
        let f = flags.clone();
        std::thread::Builder::new()
            .name("actor-tui-keys".into())
            .spawn(move || {
                loop {
                    if f.stop.load(Ordering::SeqCst) {
                        return;
                    }
                    if f.pause.load(Ordering::SeqCst) {
                        if paused_tx.send(()).is_err() || resume_rx.recv().is_err() {
                            return;
                        }
                        continue;
                    }
                    match event::poll(POLL) {
                        Ok(false) => {}
                        Ok(true) => {
                            if tx.blocking_send(event::read()).is_err() {
                                return;
                            }
                        }
                        Err(e) => {
                            // The terminal is gone: say so once, and stop.
                            let _ = tx.blocking_send(Err(e));
                            return;
                        }
                    }
                }
            })?;
        Ok(Self {
            rx,
            flags,
            paused_rx,
            resume_tx,
        })
    }

    /// The next key, resize or mouse event; None once the reader stopped for good.
    pub async fn next(&mut self) -> Option<std::io::Result<Event>> {
        self.rx.recv().await
    }

    /// Stops reading the terminal (for a program that takes it over, `$EDITOR`); returns
    /// once the thread is out of crossterm's reader. Keys read before stay queued.
    pub fn pause(&mut self) {
        self.flags.pause.store(true, Ordering::SeqCst);
        // At most one poll's wait; an error means the thread is gone, which is as good.
        let _ = self.paused_rx.recv();
    }

    pub fn resume(&mut self) {
        self.flags.pause.store(false, Ordering::SeqCst);
        let _ = self.resume_tx.send(());
    }
}

impl Drop for KeyReader {
    fn drop(&mut self) {
        // Within one poll's wait the thread leaves the terminal alone; a paused one ends
        // when its resume channel closes.
        self.flags.stop.store(true, Ordering::SeqCst);
    }
}
