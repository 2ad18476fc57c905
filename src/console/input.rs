//! Keys and mouse to actions. Pure: which action a key means depends only on the mode and
//! on whether an overlay is open; what an action does is the console loop's business.

use crossterm::event::{
    Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseButton, MouseEventKind,
};

/// Where keystrokes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Typing into the REPL input line.
    Input,
    /// Moving around the panes.
    Nav,
    /// Keys go raw to the selected actor's own terminal (F6 gives them back).
    Terminal,
}

/// What an overlay is open, as far as keys are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverlayKind {
    None,
    Help,
    Confirm,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    None,
    Help,
    CloseOverlay,
    Confirmed,
    Dump,
    /// Break in: pause the selected actor where it is.
    Interrupt,
    ForceRelease,
    Cancel,
    Quit,
    ToNav,
    ToInput,
    Submit,
    /// Ask the session to complete the input line.
    Complete,
    ClearLine,
    HistoryPrev,
    HistoryNext,
    /// A key for the input line's editor.
    Edit(KeyEvent),
    Move(i32),
    Collapse,
    Expand,
    CyclePane,
    /// Scroll the focused pane (positive: towards older lines).
    Scroll(i32),
    /// Scroll the pane under the mouse.
    Wheel {
        up: bool,
        x: u16,
        y: u16,
    },
    Click {
        x: u16,
        y: u16,
    },
    Resize,
    /// F6: the keyboard to the selected actor's terminal, or back to the console.
    ToggleTerminal,
    /// Bytes for the actor's terminal, as a terminal would send them for a key.
    Type(String),
    /// An attached console asks to drive (or, driving, gives it up).
    Drive,
    /// Dump every actor at once into one snapshot.
    DumpAll,
    /// Freeze the whole tree, or resume it.
    Freeze,
    /// Act on the selected waiter of the lock pane.
    Queue(QueueOp),
    /// The list of past sessions (open one read-only).
    Sessions,
    /// The crash list and the admission rules, in the Dump tab.
    Crashes,
    /// Search the focused pane's text (`/`; `n`/`N` for the next and previous match).
    Search,
    SearchNext,
    SearchPrev,
    /// Open the focused pane's text in `$EDITOR`.
    Editor,
    /// Type an admission rule (`R`).
    Rule,
}

/// Keys bound in the config file (`[keys]`), over the defaults: an F-key in any mode but
/// the actor's terminal, a character in navigation mode.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Keymap {
    bound: std::collections::HashMap<KeyCode, Action>,
    /// `key = action` as the help overlay lists them.
    pub listed: Vec<(String, String)>,
}

impl Keymap {
    /// From the config's `key -> action name` table (names checked when it was read; an
    /// unknown one here binds nothing).
    pub fn from_names<'a>(pairs: impl IntoIterator<Item = (&'a String, &'a String)>) -> Self {
        let mut m = Self::default();
        for (key, name) in pairs {
            let code = match key.strip_prefix('F').and_then(|n| n.parse::<u8>().ok()) {
                Some(n) => KeyCode::F(n),
                None => match key.chars().next() {
                    Some(c) => KeyCode::Char(c),
                    None => continue,
                },
            };
            let Some(action) = action_named(name) else {
                continue;
            };
            m.bound.insert(code, action);
            m.listed.push((key.clone(), name.clone()));
        }
        m
    }

    fn get(&self, code: KeyCode, mode: Mode) -> Option<Action> {
        let a = self.bound.get(&code)?;
        match (code, mode) {
            (KeyCode::F(_), Mode::Input | Mode::Nav) | (_, Mode::Nav) => Some(a.clone()),
            _ => None,
        }
    }
}

/// The action a config file's name stands for (see `config::KEY_ACTIONS`).
pub fn action_named(name: &str) -> Option<Action> {
    Some(match name {
        "help" => Action::Help,
        "dump" => Action::Dump,
        "dump_all" => Action::DumpAll,
        "interrupt" => Action::Interrupt,
        "force_release" => Action::ForceRelease,
        "cancel" => Action::Cancel,
        "quit" => Action::Quit,
        "drive" => Action::Drive,
        "freeze" => Action::Freeze,
        "promote" => Action::Queue(QueueOp::Promote),
        "defer" => Action::Queue(QueueOp::Defer),
        "skip" => Action::Queue(QueueOp::Skip),
        "continue_here" => Action::Queue(QueueOp::ContinueHere),
        "auto_continue_here" => Action::Queue(QueueOp::AutoContinueHere),
        "sessions" => Action::Sessions,
        "crashes" => Action::Crashes,
        "search" => Action::Search,
        "editor" => Action::Editor,
        "rule" => Action::Rule,
        "none" => Action::None,
        _ => return None,
    })
}

/// What the lock pane's keys do to its selected waiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueOp {
    Promote,
    Defer,
    Skip,
    /// Skip every waiter at its location.
    ContinueHere,
    /// Skip every pause at its location, from now on.
    AutoContinueHere,
}

/// What a terminal sends for `k`: characters as UTF-8, Ctrl-letter as the control byte
/// (so Ctrl-C reaches the actor's line discipline and becomes its SIGINT), and the usual
/// escape sequences for the editing keys.
pub fn key_bytes(k: KeyEvent) -> Option<String> {
    let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
    let alt = k.modifiers.contains(KeyModifiers::ALT);
    let s = match k.code {
        KeyCode::Char(c) if ctrl && c.is_ascii_alphabetic() => {
            char::from((c.to_ascii_lowercase() as u8) & 0x1f).to_string()
        }
        KeyCode::Char(c) => c.to_string(),
        KeyCode::Enter => "\r".into(),
        KeyCode::Tab => "\t".into(),
        KeyCode::BackTab => "\x1b[Z".into(),
        KeyCode::Backspace => "\x7f".into(),
        KeyCode::Esc => "\x1b".into(),
        KeyCode::Up => "\x1b[A".into(),
        KeyCode::Down => "\x1b[B".into(),
        KeyCode::Right => "\x1b[C".into(),
        KeyCode::Left => "\x1b[D".into(),
        KeyCode::Home => "\x1b[H".into(),
        KeyCode::End => "\x1b[F".into(),
        KeyCode::Delete => "\x1b[3~".into(),
        KeyCode::Insert => "\x1b[2~".into(),
        _ => return None,
    };
    // Alt sends ESC first, as xterm does.
    Some(if alt { format!("\x1b{s}") } else { s })
}

fn global(code: KeyCode) -> Option<Action> {
    Some(match code {
        KeyCode::F(1) => Action::Help,
        KeyCode::F(5) => Action::Dump,
        KeyCode::F(7) => Action::Interrupt,
        KeyCode::F(8) => Action::ForceRelease,
        KeyCode::F(9) => Action::Cancel,
        KeyCode::F(10) => Action::Quit,
        KeyCode::PageUp => Action::Scroll(10),
        KeyCode::PageDown => Action::Scroll(-10),
        _ => return None,
    })
}

/// The action for one terminal event, with the default bindings.
#[cfg(test)]
pub fn map(ev: &Event, mode: Mode, overlay: OverlayKind) -> Action {
    map_with(ev, mode, overlay, &Keymap::default())
}

/// The action for one terminal event, the config's bindings first.
pub fn map_with(ev: &Event, mode: Mode, overlay: OverlayKind, keys: &Keymap) -> Action {
    match ev {
        Event::Key(k) if k.kind != KeyEventKind::Release => {
            if overlay == OverlayKind::None
                && let Some(a) = keys.get(k.code, mode)
            {
                return a;
            }
            map_key(*k, mode, overlay)
        }
        Event::Mouse(m) => match m.kind {
            MouseEventKind::Down(MouseButton::Left) => Action::Click {
                x: m.column,
                y: m.row,
            },
            MouseEventKind::ScrollUp => Action::Wheel {
                up: true,
                x: m.column,
                y: m.row,
            },
            MouseEventKind::ScrollDown => Action::Wheel {
                up: false,
                x: m.column,
                y: m.row,
            },
            _ => Action::None,
        },
        Event::Resize(..) => Action::Resize,
        _ => Action::None,
    }
}

fn map_key(k: KeyEvent, mode: Mode, overlay: OverlayKind) -> Action {
    match overlay {
        OverlayKind::Confirm => {
            return match k.code {
                KeyCode::Char('y') | KeyCode::Char('Y') => Action::Confirmed,
                // F9 twice means "force": the loop turns a pending cancel into a forced one.
                KeyCode::F(9) => Action::Cancel,
                _ => Action::CloseOverlay,
            };
        }
        OverlayKind::Help => return Action::CloseOverlay,
        OverlayKind::None => {}
    }
    if k.code == KeyCode::F(6) {
        return Action::ToggleTerminal;
    }
    if let Some(a) = global(k.code) {
        return a;
    }
    let ctrl = k.modifiers.contains(KeyModifiers::CONTROL);
    match mode {
        Mode::Input => match k.code {
            KeyCode::Esc => Action::ToNav,
            KeyCode::Enter => Action::Submit,
            KeyCode::Tab => Action::Complete,
            KeyCode::Char('c') if ctrl => Action::ClearLine,
            KeyCode::Up => Action::HistoryPrev,
            KeyCode::Down => Action::HistoryNext,
            _ => Action::Edit(k),
        },
        Mode::Terminal => key_bytes(k).map_or(Action::None, Action::Type),
        Mode::Nav => match k.code {
            KeyCode::Char('i') | KeyCode::Enter => Action::ToInput,
            KeyCode::Char('?') => Action::Help,
            KeyCode::Char('t') => Action::Dump,
            KeyCode::Char('b') => Action::Interrupt,
            KeyCode::Char('r') => Action::ForceRelease,
            KeyCode::Char('x') => Action::Cancel,
            KeyCode::Char('q') => Action::Quit,
            KeyCode::Char('D') => Action::Drive,
            KeyCode::Char('T') => Action::DumpAll,
            KeyCode::Char('Z') => Action::Freeze,
            KeyCode::Char('p') => Action::Queue(QueueOp::Promote),
            KeyCode::Char('d') => Action::Queue(QueueOp::Defer),
            KeyCode::Char('s') => Action::Queue(QueueOp::Skip),
            KeyCode::Char('C') => Action::Queue(QueueOp::ContinueHere),
            KeyCode::Char('A') => Action::Queue(QueueOp::AutoContinueHere),
            KeyCode::Char('H') => Action::Sessions,
            KeyCode::Char('E') => Action::Editor,
            // Leaves a past session (or search results) for the live view.
            KeyCode::Esc => Action::ToNav,
            KeyCode::Char('K') => Action::Crashes,
            KeyCode::Char('R') => Action::Rule,
            KeyCode::Char('/') => Action::Search,
            KeyCode::Char('n') => Action::SearchNext,
            KeyCode::Char('N') => Action::SearchPrev,
            KeyCode::Up | KeyCode::Char('k') => Action::Move(-1),
            KeyCode::Down | KeyCode::Char('j') => Action::Move(1),
            KeyCode::Left | KeyCode::Char('h') => Action::Collapse,
            KeyCode::Right | KeyCode::Char('l') => Action::Expand,
            KeyCode::Tab => Action::CyclePane,
            _ => Action::None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(code: KeyCode) -> Event {
        Event::Key(KeyEvent::new(code, KeyModifiers::NONE))
    }

    #[test]
    fn function_keys_work_in_both_modes() {
        for mode in [Mode::Input, Mode::Nav] {
            assert_eq!(
                map(&key(KeyCode::F(8)), mode, OverlayKind::None),
                Action::ForceRelease
            );
            assert_eq!(
                map(&key(KeyCode::F(10)), mode, OverlayKind::None),
                Action::Quit
            );
        }
    }

    #[test]
    fn letters_type_in_input_mode_and_navigate_otherwise() {
        let q = key(KeyCode::Char('q'));
        assert!(matches!(
            map(&q, Mode::Input, OverlayKind::None),
            Action::Edit(_)
        ));
        assert_eq!(map(&q, Mode::Nav, OverlayKind::None), Action::Quit);
        assert_eq!(
            map(&key(KeyCode::Esc), Mode::Input, OverlayKind::None),
            Action::ToNav
        );
        assert_eq!(
            map(&key(KeyCode::Char('i')), Mode::Nav, OverlayKind::None),
            Action::ToInput
        );
    }

    #[test]
    fn ctrl_c_only_clears_the_line() {
        let ev = Event::Key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
        assert_eq!(map(&ev, Mode::Input, OverlayKind::None), Action::ClearLine);
        assert_eq!(map(&ev, Mode::Nav, OverlayKind::None), Action::None);
    }

    #[test]
    fn confirmation_needs_y() {
        assert_eq!(
            map(&key(KeyCode::Char('y')), Mode::Nav, OverlayKind::Confirm),
            Action::Confirmed
        );
        assert_eq!(
            map(&key(KeyCode::Char('n')), Mode::Nav, OverlayKind::Confirm),
            Action::CloseOverlay
        );
        assert_eq!(
            map(&key(KeyCode::F(9)), Mode::Nav, OverlayKind::Confirm),
            Action::Cancel
        );
    }

    #[test]
    fn every_key_in_the_status_bar_does_something_from_anywhere() {
        let bar = actor_tui_ui::status_keys();
        for k in actor_tui_ui::KEYS.iter().filter(|k| k.bar.is_some()) {
            let f: u8 = k
                .keys
                .split(" / ")
                .next()
                .and_then(|f| f.strip_prefix('F'))
                .and_then(|n| n.parse().ok())
                .expect("status-bar keys are F-keys");
            assert!(bar.contains(&format!("F{f} ")), "{bar}");
            for mode in [Mode::Input, Mode::Nav] {
                assert_ne!(
                    map(&key(KeyCode::F(f)), mode, OverlayKind::None),
                    Action::None,
                    "F{f} listed in the key table but does nothing in {mode:?}"
                );
            }
        }
    }

    #[test]
    fn config_bindings_come_first_and_none_unbinds() {
        let pairs = [
            ("F4".to_owned(), "force_release".to_owned()),
            ("q".to_owned(), "none".to_owned()),
            ("g".to_owned(), "dump_all".to_owned()),
        ];
        let keys = Keymap::from_names(pairs.iter().map(|(a, b)| (a, b)));
        let m = |code, mode| map_with(&key(code), mode, OverlayKind::None, &keys);
        assert_eq!(m(KeyCode::F(4), Mode::Input), Action::ForceRelease);
        assert_eq!(m(KeyCode::Char('q'), Mode::Nav), Action::None);
        assert_eq!(m(KeyCode::Char('g'), Mode::Nav), Action::DumpAll);
        // Characters still type in the input line.
        assert!(matches!(
            m(KeyCode::Char('g'), Mode::Input),
            Action::Edit(_)
        ));
        assert_eq!(keys.listed.len(), 3);
    }

    #[test]
    fn terminal_mode_sends_keys_as_a_terminal_would() {
        let k = |code, m| KeyEvent::new(code, m);
        assert_eq!(
            key_bytes(k(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Some("\x03".into())
        );
        assert_eq!(
            key_bytes(k(KeyCode::Enter, KeyModifiers::NONE)),
            Some("\r".into())
        );
        assert_eq!(
            key_bytes(k(KeyCode::Up, KeyModifiers::NONE)),
            Some("\x1b[A".into())
        );
        assert_eq!(
            key_bytes(k(KeyCode::Char('x'), KeyModifiers::ALT)),
            Some("\x1bx".into())
        );
        assert_eq!(
            key_bytes(k(KeyCode::Char('é'), KeyModifiers::NONE)),
            Some("é".into())
        );
        let f6 = Event::Key(k(KeyCode::F(6), KeyModifiers::NONE));
        for mode in [Mode::Input, Mode::Nav, Mode::Terminal] {
            assert_eq!(map(&f6, mode, OverlayKind::None), Action::ToggleTerminal);
        }
        // In the terminal, Esc and Ctrl-C are bytes for the actor, not console keys.
        let esc = Event::Key(k(KeyCode::Esc, KeyModifiers::NONE));
        assert_eq!(
            map(&esc, Mode::Terminal, OverlayKind::None),
            Action::Type("\x1b".into())
        );
    }
}
