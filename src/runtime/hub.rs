//! The event stream for attached viewers. Every event the front end gets passes through
//! here first, in the same order (the event queue calls [`Hub::event`] under its own lock):
//! it updates the [`Replay`] a late viewer starts from and goes to each viewer as an
//! `event` frame. A viewer that attaches gets the replay, then `attached` (its id and role,
//! and the mark that what follows is live), then the live stream, with nothing lost or
//! doubled in between (both happen under the hub's lock).
//!
//! A slow viewer never slows the run: past [`OUTPUT_SKIP_BYTES`] queued, PTY output to it
//! is skipped (and it is told how much); a viewer that cannot even take control events
//! within its peer budget is dropped (the engine closes it).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::core::ConnId;
use super::event::{RuntimeEvent, ViewerRole};
use super::replay::Replay;
use super::server::{PeerSendError, PeerTx};
use crate::proto::{self, ActorId};

/// Bytes queued to a viewer past which its PTY output is skipped until it catches up.
pub const OUTPUT_SKIP_BYTES: usize = 4 << 20;
/// Frames queued to a viewer past which its PTY output is skipped.
pub const OUTPUT_SKIP_FRAMES: usize = 1024;

/// Frames the root sends a viewer (after `hello`). `error` has the same shape as an actor's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToViewer {
    Hello {
        protocol: u32,
        agent: String,
    },
    /// The root took the attach: the viewer's id (as in `viewer` events) and role. Sent
    /// after the replay of the run's state: the events after it are live.
    Attached {
        viewer: u64,
        role: ViewerRole,
    },
    /// One event of the run (the headless event schema; output as bytes).
    Event {
        event: RuntimeEvent,
    },
    Error {
        message: String,
    },
    #[serde(other)]
    Unknown,
}

/// The borrowed twin of [`ToViewer::Event`], so an event is encoded without a copy.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum EventRef<'a> {
    Event { event: &'a RuntimeEvent },
}

fn event_frame(ev: &RuntimeEvent) -> Option<Vec<u8>> {
    match proto::frame_bytes(&EventRef::Event { event: ev }) {
        Ok(b) => Some(b),
        Err(e) => {
            tracing::warn!(error = %e, "cannot encode an event for viewers");
            None
        }
    }
}

#[derive(Debug)]
struct Viewer {
    tx: PeerTx,
    /// Output bytes skipped since the viewer last kept up, per actor.
    skipped: BTreeMap<ActorId, usize>,
}

#[derive(Debug, Default)]
pub struct Hub {
    replay: Replay,
    viewers: BTreeMap<ConnId, Viewer>,
    /// Viewers dropped for being over budget, for the engine to close.
    overflowed: Vec<(ConnId, String)>,
}

impl Hub {
    /// PTY output: like [`event`](Self::event), without building the event when nobody
    /// is attached.
    pub fn output(&mut self, actor: ActorId, data: &[u8]) {
        if self.viewers.is_empty() {
            self.replay.output(actor, data);
        } else {
            self.event(&RuntimeEvent::Output {
                actor,
                data: data.to_vec(),
            });
        }
    }

    /// One event, to the replay and every viewer.
    pub fn event(&mut self, ev: &RuntimeEvent) {
        // The tickets are for whoever started the run, not for its viewers.
        if matches!(ev, RuntimeEvent::Listening { .. }) {
            return;
        }
        self.replay.apply(ev);
        if self.viewers.is_empty() {
            return;
        }
        let Some(bytes) = event_frame(ev) else {
            return;
        };
        let mut dropped = Vec::new();
        for (conn, v) in &mut self.viewers {
            if let RuntimeEvent::Output { actor, data } = ev {
                let behind = v.tx.queued_bytes() + bytes.len() > OUTPUT_SKIP_BYTES
                    || v.tx.queued_frames() >= OUTPUT_SKIP_FRAMES;
                if behind {
                    *v.skipped.entry(*actor).or_default() += data.len();
                    continue;
                }
                if let Some(n) = v.skipped.remove(actor) {
                    let gap = RuntimeEvent::Notice {
                        actor: Some(*actor),
                        message: format!(
                            "{n} bytes of output of actor {actor} were not sent to this viewer: it fell behind"
                        ),
                    };
                    if let Some(b) = event_frame(&gap)
                        && let Err(e) = v.tx.send_bytes(b)
                    {
                        dropped.push((*conn, e));
                        continue;
                    }
                }
            }
            if let Err(e) = v.tx.send_bytes(bytes.clone()) {
                dropped.push((*conn, e));
            }
        }
        for (conn, e) in dropped {
            self.drop_viewer(conn, e);
        }
    }

    fn drop_viewer(&mut self, conn: ConnId, e: PeerSendError) {
        if self.viewers.remove(&conn).is_some() && !matches!(e, PeerSendError::Closed) {
            self.overflowed.push((conn, e.to_string()));
        }
    }

    /// A new viewer: the replay, `attached`, then (from the next event on) the live stream.
    pub fn attach(&mut self, conn: ConnId, tx: PeerTx, role: ViewerRole) {
        let welcome = ToViewer::Attached { viewer: conn, role };
        let sent = (|| {
            for ev in self.replay.snapshot() {
                if let Some(b) = event_frame(&ev) {
                    tx.send_bytes(b)?;
                }
            }
            // Last: it marks where the replay ends and the live stream begins.
            tx.send_bytes(proto::frame_bytes(&welcome)?)?;
            Ok::<(), PeerSendError>(())
        })();
        match sent {
            Ok(()) => {
                self.viewers.insert(
                    conn,
                    Viewer {
                        tx,
                        skipped: BTreeMap::new(),
                    },
                );
            }
            Err(e) => self
                .overflowed
                .push((conn, format!("cannot send the run's state: {e}"))),
        }
    }

    /// Only to one viewer (a refused command, say).
    pub fn to_viewer(&mut self, conn: ConnId, ev: &RuntimeEvent) {
        let Some(v) = self.viewers.get(&conn) else {
            return;
        };
        if let Some(b) = event_frame(ev)
            && let Err(e) = v.tx.send_bytes(b)
        {
            self.drop_viewer(conn, e);
        }
    }

    /// Every viewer has read what it was sent.
    pub fn flushed(&self) -> bool {
        self.viewers.values().all(|v| v.tx.queued_frames() == 0)
    }

    pub fn detach(&mut self, conn: ConnId) {
        self.viewers.remove(&conn);
    }

    /// Viewers dropped since the last call, and why.
    pub fn take_overflowed(&mut self) -> Vec<(ConnId, String)> {
        std::mem::take(&mut self.overflowed)
    }
}
