//! actor-tui: a terminal console for debugging multi-process programs ("actor trees").
//!
//! `actor-tui PROGRAM` starts `PROGRAM` as the first actor of a tree. The `actor-tui`
//! process is the **root**: it owns the terminal, listens on a private Unix socket, and
//! grants a tree-wide debug lock to one REPL session at a time, in request order.
//!
//! ```text
//! actor process (links actor_tui::client)        root process: the `actor-tui` binary
//!  pause!/panic -> Client --frames--> runtime::server --> runtime::engine (shell)
//!                  Client <--frames--    (Unix)        <--   | Input      ^ Effect
//!                                                            v            |
//!                                                     runtime::core (pure policy)
//!                              RuntimeEvent (event_queue) |  ^ RuntimeCommand
//!                                                         v  |
//!                        headless (JSON lines), plain (text lines), console (TUI over `ui`)
//! ```
//!
//! # Environment
//!
//! | variable            | set by        | meaning                                            |
//! |---------------------|---------------|----------------------------------------------------|
//! | `ACTOR_TUI_SOCKET`  | root          | path of the root's Unix socket                     |
//! | `ACTOR_TUI_ACTOR`   | root          | actor id reserved for the spawned process          |
//! | `ACTOR_TUI_NAME`    | root          | display name chosen by the spawner                 |
//! | `ACTOR_TUI_NO_REPL` | user          | in an actor without a root: never open a local REPL |
//! | `ACTOR_TUI_TICKET`  | user          | on another host: a `--listen` root's actor ticket  |
//! | `ACTOR_TUI_JOIN_TICKET` | root      | with `--listen`: the path of the actor ticket file |
//!
//! Actor programs depend on this crate with `default-features = false`, which builds only
//! [`proto`] and [`client`].

pub mod client;
/// The built-in demo tree's actors (`actor-tui demo`); the binary's, not an API.
#[cfg(feature = "runtime")]
#[doc(hidden)]
pub mod demo;
pub mod proto;
#[cfg(feature = "remote")]
pub mod remote;
mod sync;

#[cfg(feature = "runtime")]
pub mod attach;
#[cfg(feature = "runtime")]
pub mod config;
#[cfg(feature = "runtime")]
pub mod console;
#[cfg(feature = "runtime")]
pub mod headless;
#[cfg(feature = "runtime")]
pub mod runtime;

pub use client::{
    ActorHandle, ChildExit, Client, ClientError, LockGuard, PauseError, acquire_lock, pause_here,
    pause_here_sync, spawn_actor, spawn_self, spawn_task, spawn_thread,
};
pub use proto::{ExitReason, Reason};

/// Pauses the calling async task in the debugger: `pause!()` or `pause!(a, b)` to capture
/// values (by `Debug`) for `p a` / `locals`. Evaluates to a future of
/// `Result<(), PauseError>`; the task is suspended, the executor keeps running.
#[macro_export]
macro_rules! pause {
    ($($name:ident),* $(,)?) => {
        $crate::client::pause_at(
            $crate::client::PauseSite::new(file!(), line!(), column!()),
            ::std::vec![$((
                ::std::string::String::from(stringify!($name)),
                ::std::format!("{:?}", &$name),
            )),*],
        )
    };
}

/// Blocking twin of [`pause!`] for sync code and plain `std::thread`s: blocks the calling
/// thread until the session ends. Evaluates to `Result<(), PauseError>`.
#[macro_export]
macro_rules! pause_sync {
    ($($name:ident),* $(,)?) => {
        $crate::client::pause_at_sync(
            $crate::client::PauseSite::new(file!(), line!(), column!()),
            ::std::vec![$((
                ::std::string::String::from(stringify!($name)),
                ::std::format!("{:?}", &$name),
            )),*],
        )
    };
}
