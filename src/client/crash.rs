//! The crash handler: a panic in any thread opens a post-mortem session (message and
//! backtrace) before the panic goes on as it would have.

use std::backtrace::Backtrace;
use std::sync::Once;

use crate::proto::Reason;

use super::global;
use super::pause::{PauseSite, context, local_repl_possible, session};
use super::registry;

thread_local! {
    static IN_CRASH: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Installs (once) a panic hook that opens a post-mortem session for a panic in any thread,
/// then lets the panic proceed as before (the previous hook still runs).
pub fn install_crash_handler() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let reentered = IN_CRASH.with(|c| c.replace(true));
            let on_reader = std::thread::current().name() == Some("actor-tui-client");
            if !reentered && !on_reader {
                post_mortem(info);
            }
            IN_CRASH.with(|c| c.set(reentered));
            previous(info);
        }));
    });
}

fn post_mortem(info: &std::panic::PanicHookInfo<'_>) {
    let message = if let Some(s) = info.payload().downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = info.payload().downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".to_owned()
    };
    let site = info
        .location()
        .map_or(PauseSite::new("<unknown>", 0, 0), |l| {
            PauseSite::new(
                // The location borrows from the panic; the site needs 'static, so leak the
                // file name once per crash (a handful of bytes, and the process is failing).
                Box::leak(l.file().to_owned().into_boxed_str()),
                l.line(),
                l.column(),
            )
        });
    let task = registry::current_task_id();
    let ctx = context(
        Reason::Crash,
        &site,
        task,
        Vec::new(),
        Some(message),
        Backtrace::force_capture(),
    );
    if global().is_none() && !local_repl_possible() {
        // No root, no terminal: the default hook prints the panic; nothing to add.
        return;
    }
    // Errors were already reported to stderr; the panic proceeds either way.
    let _ = session(task, ctx);
}
