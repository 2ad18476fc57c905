//! The wire contract between the root and its actors: message types, framing, versioning and
//! the environment variables that carry connection details. No policy lives here: what a
//! message *means* for the lock or the tree is decided in `runtime` and `client`.
//!
//! The prose specification, complete enough to write a client in another language, is
//! `docs/PROTOCOL.md`; keep the two in step (the golden tests pin the bytes).

mod codec;
mod command;
mod msg;

pub use codec::{
    FrameError, MAX_FRAME, decode, encode, floor_char_boundary, frame_bytes, read_frame,
    read_frame_len, read_frame_sync, split_utf8, write_frame, write_frame_sync,
};
pub use command::RuntimeCommand;
pub use msg::{ActorId, BadActorId, Exit, ExitReason, Reason, ReleaseHow, ToActor, ToRoot};

/// Version of the protocol spoken by this build. Both sides send it in their first frame;
/// a mismatch ends the connection with an `error` frame that says both versions.
pub const PROTOCOL_VERSION: u32 = 1;

/// Environment variables the root sets for every actor it spawns (and that children of
/// actors inherit). See the table in the crate docs.
pub mod env {
    /// Path of the root's Unix socket.
    pub const SOCKET: &str = "ACTOR_TUI_SOCKET";
    /// Actor id the root reserved for the process it spawned. A process whose pid does not
    /// match the reservation (a fork or a child of an actor) is registered as a new actor.
    pub const ACTOR: &str = "ACTOR_TUI_ACTOR";
    /// Display name the spawner chose for the actor.
    pub const NAME: &str = "ACTOR_TUI_NAME";
    /// For a process on another host: a ticket of a root started with `--listen` (or the
    /// path of a file holding one). Used only when `ACTOR_TUI_SOCKET` is not set.
    pub const TICKET: &str = "ACTOR_TUI_TICKET";
    /// Set by a `--listen` root for the actors it starts: the path of its actor ticket's
    /// file, for a program that starts processes on other hosts itself (a Ray driver).
    pub const JOIN_TICKET: &str = "ACTOR_TUI_JOIN_TICKET";
}
