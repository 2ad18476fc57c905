//! The SIGINT shield: while any session of this process is open or queued, SIGINT is
//! ignored. The one place in the client that changes a signal disposition, hence `unsafe`.
#![allow(unsafe_code, reason = "sigaction; each block says why it is sound")]

use std::sync::Mutex;

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

use super::lock_ok;

/// While any session is open or queued in this process, SIGINT is ignored: a Ctrl-C meant
/// for the debugger must not kill the process (or, worse, only some of its threads' work).
pub(crate) struct SigintShield;

static SHIELD: Mutex<(usize, Option<SigAction>)> = Mutex::new((0, None));

impl SigintShield {
    pub(crate) fn enter() -> Self {
        let mut s = lock_ok(&SHIELD);
        if s.0 == 0 {
            let ignore = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
            // SAFETY: installing SIG_IGN runs no handler code.
            match unsafe { sigaction(Signal::SIGINT, &ignore) } {
                Ok(old) => s.1 = Some(old),
                Err(e) => tracing::warn!(error = %e, "cannot shield SIGINT"),
            }
        }
        s.0 += 1;
        Self
    }
}

impl Drop for SigintShield {
    fn drop(&mut self) {
        let mut s = lock_ok(&SHIELD);
        s.0 = s.0.saturating_sub(1);
        if s.0 == 0
            && let Some(old) = s.1.take()
        {
            // SAFETY: restores exactly the disposition that was in place before.
            if let Err(e) = unsafe { sigaction(Signal::SIGINT, &old) } {
                tracing::warn!(error = %e, "cannot restore SIGINT");
            }
        }
    }
}
