//! The terminal guard: raw mode, alternate screen and mouse capture on the way in, all of
//! it undone on the way out: on drop, on panic (in any thread), and from signal handling in
//! the console loop. The only module that changes terminal modes.

use std::io::{Stdout, Write};
use std::sync::Once;
use std::sync::atomic::{AtomicBool, Ordering};

use crossterm::event::{DisableMouseCapture, EnableMouseCapture};
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use crossterm::{cursor, execute};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;

/// Whether the terminal is currently in console mode (so restoring twice is harmless).
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// Puts the terminal back as it was. Safe to call any number of times, from anywhere.
pub fn restore() {
    if ACTIVE.swap(false, Ordering::SeqCst) {
        let mut out = std::io::stdout();
        // Each step is best effort: a dead terminal must not stop the others.
        let _ = execute!(out, DisableMouseCapture, LeaveAlternateScreen, cursor::Show);
        let _ = disable_raw_mode();
        let _ = out.flush();
    }
}

fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            // Restore first, so the panic message lands on a normal screen.
            restore();
            previous(info);
        }));
    });
}

/// Owns the terminal while the console runs.
pub struct TerminalGuard {
    pub terminal: Terminal<CrosstermBackend<Stdout>>,
}

impl std::fmt::Debug for TerminalGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TerminalGuard")
    }
}

impl TerminalGuard {
    pub fn enter() -> std::io::Result<Self> {
        install_panic_hook();
        enable_raw_mode()?;
        ACTIVE.store(true, Ordering::SeqCst);
        let mut out = std::io::stdout();
        if let Err(e) = execute!(out, EnterAlternateScreen, EnableMouseCapture, cursor::Hide) {
            restore();
            return Err(e);
        }
        match Terminal::new(CrosstermBackend::new(out)) {
            Ok(terminal) => Ok(Self { terminal }),
            Err(e) => {
                restore();
                Err(e)
            }
        }
    }
}

/// Takes the terminal back after [`restore`] (an editor ran): console modes again, a
/// cleared screen, and a new `Terminal` whose blank buffers make the next frame draw
/// everything. Not `Terminal::clear`: it asks the terminal for the cursor position first,
/// and with the key reader just restarted that answer does not come in time.
pub fn resume(terminal: &mut Terminal<CrosstermBackend<Stdout>>) -> std::io::Result<()> {
    // Every step is tried (and the first error reported).
    let raw = enable_raw_mode();
    ACTIVE.store(true, Ordering::SeqCst);
    let modes = execute!(
        std::io::stdout(),
        EnterAlternateScreen,
        EnableMouseCapture,
        cursor::Hide,
        crossterm::terminal::Clear(crossterm::terminal::ClearType::All)
    );
    let fresh = Terminal::new(CrosstermBackend::new(std::io::stdout())).map(|t| *terminal = t);
    raw.and(modes).and(fresh)
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore();
    }
}
