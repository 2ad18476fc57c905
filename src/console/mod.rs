//! The full-screen console: one `select!` loop over keys, runtime events, signals and the
//! frame timer. Events are applied to [`state::ConsoleState`] as they arrive (that is where
//! PTY output is parsed); frames are drawn only when something changed, at a capped rate,
//! so a flooding actor costs parsing time but never a redraw per chunk. Keys are polled
//! first and trigger a quick redraw, so typing stays responsive during a flood.

mod input;
pub mod state;
mod term;
pub mod view;

use std::time::{Duration, Instant};

use actor_tui_ui::{Areas, BottomTab, Overlay, Pane, Theme};
use crossterm::event::EventStream;
use futures_util::StreamExt;
use tokio::sync::mpsc;

use crate::runtime::{Runtime, RuntimeCommand};
use input::{Action, Mode, OverlayKind};
use state::ConsoleState;
use view::{UiState, new_input};

/// Frame interval when only output changed (about 30 frames a second).
const OUTPUT_FRAME: Duration = Duration::from_millis(33);
/// Frame interval after a keystroke: echo should feel immediate.
const KEY_FRAME: Duration = Duration::from_millis(4);
/// Runtime events applied per loop turn before keys get another look...
const EVENT_BATCH: usize = 256;
/// ...or this many bytes of PTY output (about 5 ms of vt100 parsing), whichever is first,
/// so a keystroke never waits long behind a flood.
const OUTPUT_BATCH_BYTES: usize = 256 * 1024;

/// What the user asked to confirm.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Pending {
    ForceRelease,
    Cancel { actor: String, force: bool },
    Quit,
}

struct Console {
    /// Time spent in each draw, for the frame-time figures logged at exit.
    frame_times: Vec<Duration>,
    state: ConsoleState,
    ui: UiState,
    pending: Option<Pending>,
    areas: Areas,
    theme: Theme,
    commands: mpsc::Sender<RuntimeCommand>,
    quitting: bool,
    /// Whether the holder's session waited for a line at the last look (to notice new prompts).
    session_waiting: bool,
}

/// The longest prefix shared by all `words` (on character boundaries).
fn common_prefix(words: &[String]) -> String {
    let Some(first) = words.first() else {
        return String::new();
    };
    let mut end = first.len();
    for w in &words[1..] {
        end = end.min(
            first
                .char_indices()
                .zip(w.chars())
                .find(|((_, a), b)| a != b)
                .map_or(first.len().min(w.len()), |((i, _), _)| i),
        );
    }
    first[..end].to_owned()
}

fn output_len(ev: &crate::runtime::RuntimeEvent) -> usize {
    match ev {
        crate::runtime::RuntimeEvent::Output { data, .. } => data.len(),
        _ => 0,
    }
}

/// Pane sizes for a terminal size: (output rows, cols), (REPL rows, cols).
pub fn pane_sizes(cols: u16, rows: u16) -> ((u16, u16), (u16, u16)) {
    let a = actor_tui_ui::layout(ratatui::layout::Rect::new(0, 0, cols, rows));
    let repl = (
        a.repl.height.saturating_sub(3).max(1),
        a.repl.width.saturating_sub(2).max(1),
    );
    (a.output_size(), repl)
}

/// Runs the console until the run ends; returns the exit code. The terminal is restored
/// on every way out.
pub async fn run(mut rt: Runtime) -> i32 {
    let mut guard = match term::TerminalGuard::enter() {
        Ok(g) => g,
        Err(e) => {
            eprintln!("actor-tui: cannot use this terminal ({e}); use --headless");
            // Nothing can be shown or typed: end the run. Nobody will read the events, so
            // drop them or the engine would wait on a full channel forever.
            drop(rt.events);
            let _ = rt.commands.send(RuntimeCommand::Quit).await;
            return rt.task.await.unwrap_or(1);
        }
    };
    let size = guard.terminal.size().unwrap_or_default();
    let (out, repl) = pane_sizes(size.width, size.height);
    let mut c = Console {
        frame_times: Vec::new(),
        state: ConsoleState::new(out, repl),
        ui: UiState::new(),
        pending: None,
        areas: Areas::default(),
        theme: Theme {
            color: std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        },
        commands: rt.commands.clone(),
        quitting: false,
        session_waiting: false,
    };
    c.send(RuntimeCommand::Resize {
        rows: out.0,
        cols: out.1,
    });

    let mut keys = EventStream::new();
    // Raw mode turns Ctrl-C into a key, so a SIGINT comes only from `kill`. The watchdog
    // runs apart from this loop on purpose: when the terminal is gone (SIGHUP), crossterm's
    // event stream may never yield again, and the loop with it.
    if let Err(e) = crate::runtime::quit_on_signals(rt.commands.clone(), rt.grace, term::restore) {
        drop(guard);
        eprintln!("actor-tui: cannot install signal handlers: {e}");
        return 1;
    }
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut last_draw = Instant::now() - OUTPUT_FRAME;
    let mut due: Option<Instant> = Some(Instant::now());

    loop {
        let wake = due.map(tokio::time::Instant::from_std);
        tokio::select! {
            biased;
            key = keys.next() => match key {
                Some(Ok(ev)) => {
                    c.on_action(input::map(&ev, c.ui.mode, c.overlay_kind()));
                    due = Some(due.map_or(last_draw + KEY_FRAME, |d| d.min(last_draw + KEY_FRAME)));
                }
                // The terminal is gone: nobody can drive the console any more.
                _ => c.quit(),
            },
            // Before runtime events: under a flood they are always ready, and a frame that
            // is due must still be drawn.
            () = async { if let Some(w) = wake { tokio::time::sleep_until(w).await } }, if wake.is_some() => {
                c.draw(&mut guard);
                last_draw = Instant::now();
                due = None;
            }
            ev = rt.events.recv() => {
                let Some(ev) = ev else { break };
                let now = Instant::now();
                let mut bytes = output_len(&ev);
                c.state.apply(ev, now);
                for _ in 0..EVENT_BATCH {
                    if bytes >= OUTPUT_BATCH_BYTES {
                        break;
                    }
                    match rt.events.try_recv() {
                        Ok(ev) => {
                            bytes += output_len(&ev);
                            c.state.apply(ev, now);
                        }
                        Err(_) => break,
                    }
                }
                if c.ui.selected.is_none() {
                    c.ui.selected = c.state.actors().next().map(|a| a.id.clone());
                }
                if let Some((_, line, matches)) = c.state.completion.take() {
                    c.apply_completion(&line, &matches);
                }
                let waiting = c.state.holder.as_ref().is_some_and(|h| h.waiting);
                if waiting && !c.session_waiting && c.ui.mode == Mode::Nav {
                    c.flash("a session waits for input: press i to type".into());
                }
                c.session_waiting = waiting;
                due.get_or_insert(last_draw + OUTPUT_FRAME);
                if c.state.exit_code.is_some() {
                    break;
                }
            }
            _ = tick.tick() => {
                // Elapsed times and the suspect-lock rule change with the clock alone.
                due.get_or_insert(last_draw + OUTPUT_FRAME);
            }
        }
    }
    drop(guard);
    c.log_frame_stats();
    match c.state.exit_code {
        Some(code) => code,
        None => rt.task.await.unwrap_or(1),
    }
}

impl Console {
    fn send(&mut self, cmd: RuntimeCommand) {
        // Bounded (64): a full queue means the engine is far behind; say so, do not block keys.
        if self.commands.try_send(cmd).is_err() {
            self.flash("the runtime is busy; command dropped, try again".into());
        }
    }

    fn flash(&mut self, msg: String) {
        self.ui.flash = Some((Instant::now(), msg));
    }

    fn quit(&mut self) {
        if !self.quitting {
            self.quitting = true;
            self.send(RuntimeCommand::Quit);
            self.flash("quitting: tearing the tree down".into());
        }
    }

    /// Applies a completion answer if the line has not changed meanwhile: a single match
    /// replaces the line, several extend it to their common prefix and are listed.
    fn apply_completion(&mut self, line: &str, matches: &[String]) {
        if self.ui.input.lines().join(" ") != line {
            return;
        }
        match matches {
            [] => self.flash("no completions".into()),
            [one] => self.ui.input = new_input(one),
            many => {
                let prefix = common_prefix(many);
                if prefix.len() > line.len() {
                    self.ui.input = new_input(&prefix);
                }
                let shown: Vec<&str> = many.iter().take(12).map(String::as_str).collect();
                let more = if many.len() > 12 { " …" } else { "" };
                self.flash(format!("{}{more}", shown.join("  ")));
            }
        }
    }

    fn overlay_kind(&self) -> OverlayKind {
        match self.ui.overlay {
            Overlay::None => OverlayKind::None,
            Overlay::Help => OverlayKind::Help,
            Overlay::Confirm(_) => OverlayKind::Confirm,
        }
    }

    fn ask(&mut self, pending: Pending, question: String) {
        self.pending = Some(pending);
        self.ui.overlay = Overlay::Confirm(question);
    }

    fn selected_name(&self) -> Option<(String, String)> {
        let id = self.ui.selected.clone()?;
        let name = self
            .state
            .actor(&id)
            .map(|a| a.name.clone())
            .unwrap_or_default();
        Some((id, name))
    }

    fn log_frame_stats(&mut self) {
        let t = &mut self.frame_times;
        if t.is_empty() {
            return;
        }
        t.sort_unstable();
        let us = |d: Duration| d.as_micros();
        let mean = t.iter().sum::<Duration>() / t.len() as u32;
        tracing::info!(
            frames = t.len(),
            mean_us = us(mean),
            p50_us = us(t[t.len() / 2]),
            p99_us = us(t[t.len() * 99 / 100]),
            max_us = us(t[t.len() - 1]),
            "frame stats"
        );
    }

    fn draw(&mut self, guard: &mut term::TerminalGuard) {
        let now = Instant::now();
        view::apply_scroll(&mut self.state, &self.ui);
        let mut areas = self.areas;
        let result = guard.terminal.draw(|frame| {
            let m = view::model(&self.state, &self.ui, now);
            areas = actor_tui_ui::draw(frame, &m, &self.theme);
        });
        if let Err(e) = result {
            tracing::warn!(error = %e, "draw failed");
        }
        // Bounded: a long session keeps the most recent 100k frames (800 KB).
        if self.frame_times.len() >= 100_000 {
            self.frame_times.drain(..50_000);
        }
        self.frame_times.push(now.elapsed());
        self.areas = areas;
    }

    fn on_resize(&mut self) {
        let Ok((cols, rows)) = crossterm::terminal::size() else {
            return;
        };
        let (out, repl) = pane_sizes(cols, rows);
        self.state.resize(out, repl);
        self.send(RuntimeCommand::Resize {
            rows: out.0,
            cols: out.1,
        });
    }

    fn move_selection(&mut self, delta: i32) {
        let ids: Vec<String> = self
            .state
            .visible()
            .iter()
            .map(|(_, a)| a.id.clone())
            .collect();
        if ids.is_empty() {
            return;
        }
        let cur = self
            .ui
            .selected
            .as_deref()
            .and_then(|s| ids.iter().position(|i| i == s))
            .unwrap_or(0) as i64;
        let next = (cur + i64::from(delta)).clamp(0, ids.len() as i64 - 1) as usize;
        self.ui.selected = Some(ids[next].clone());
        self.ui.output_scroll = 0;
        self.ui.dump_scroll = 0;
    }

    fn scroll(&mut self, pane: Pane, lines: i32) {
        let add = |v: usize| (v as i64 + i64::from(lines)).max(0) as usize;
        match pane {
            Pane::Tree => self.move_selection(-lines.signum()),
            Pane::Repl => self.ui.repl_scroll = add(self.ui.repl_scroll).min(state::SCROLLBACK),
            Pane::Bottom => match self.ui.tab {
                BottomTab::Output => {
                    self.ui.output_scroll = add(self.ui.output_scroll).min(state::SCROLLBACK);
                }
                // Dump text scrolls the other way: positive means further down the text.
                BottomTab::Dump => {
                    self.ui.dump_scroll = (i64::from(self.ui.dump_scroll) - i64::from(lines))
                        .clamp(0, i64::from(u16::MAX))
                        as u16;
                }
            },
            Pane::Lock => {}
        }
    }

    fn on_action(&mut self, action: Action) {
        match action {
            Action::None => {}
            Action::Help => self.ui.overlay = Overlay::Help,
            Action::CloseOverlay => {
                self.ui.overlay = Overlay::None;
                self.pending = None;
            }
            Action::Confirmed => {
                self.ui.overlay = Overlay::None;
                match self.pending.take() {
                    Some(Pending::ForceRelease) => self.send(RuntimeCommand::ForceRelease),
                    Some(Pending::Cancel { actor, force }) => {
                        self.send(RuntimeCommand::Cancel { actor, force })
                    }
                    Some(Pending::Quit) => self.quit(),
                    None => {}
                }
            }
            Action::Dump => match self.ui.selected.clone() {
                Some(actor) => {
                    self.send(RuntimeCommand::Dump { actor });
                    self.ui.tab = BottomTab::Dump;
                    self.ui.dump_scroll = 0;
                }
                None => self.flash("no actor selected".into()),
            },
            Action::ForceRelease => match &self.state.holder {
                Some(h) => {
                    let who = h.request.actor.clone();
                    let name = self
                        .state
                        .actor(&who)
                        .map(|a| a.name.clone())
                        .unwrap_or_default();
                    self.ask(
                        Pending::ForceRelease,
                        format!("Force-release the lock held by {who} {name}?"),
                    );
                }
                None => self.flash("the lock is free".into()),
            },
            Action::Cancel => {
                // F9 on an open cancel question, or on a subtree whose teardown already
                // waits, means "force".
                let force_now = matches!(self.pending, Some(Pending::Cancel { .. }));
                let Some((id, name)) = self.selected_name() else {
                    self.flash("no actor selected".into());
                    return;
                };
                let waiting = self
                    .state
                    .actor(&id)
                    .is_some_and(|a| a.teardown_waiting || a.cancelling);
                if force_now || waiting {
                    self.ask(
                        Pending::Cancel {
                            actor: id.clone(),
                            force: true,
                        },
                        format!("Force-cancel {id} {name} and its subtree now (SIGKILL)?"),
                    );
                } else {
                    self.ask(
                        Pending::Cancel {
                            actor: id.clone(),
                            force: false,
                        },
                        format!("Cancel {id} {name} and its subtree?"),
                    );
                }
            }
            Action::Quit => self.ask(
                Pending::Quit,
                "Quit actor-tui and tear the tree down?".into(),
            ),
            Action::ToNav => self.ui.mode = Mode::Nav,
            Action::ToInput => {
                self.ui.mode = Mode::Input;
                self.ui.focus = Pane::Repl;
            }
            Action::Submit => {
                if !self.state.holder.as_ref().is_some_and(|h| h.waiting) {
                    self.flash("no session waits for input".into());
                    return;
                }
                let line = self.ui.input.lines().join(" ");
                self.send(RuntimeCommand::Input {
                    data: format!("{line}\n"),
                });
                self.state.sent_line(&line);
                self.ui.input = new_input("");
                self.ui.history_pos = None;
                self.ui.repl_scroll = 0;
            }
            Action::Complete => {
                if self.state.holder.as_ref().is_some_and(|h| h.waiting) {
                    let line = self.ui.input.lines().join(" ");
                    self.send(RuntimeCommand::Complete { line });
                } else {
                    self.flash("no session waits for input".into());
                }
            }
            Action::ClearLine => {
                self.ui.input = new_input("");
                self.ui.history_pos = None;
            }
            Action::HistoryPrev | Action::HistoryNext => {
                let Some(holder) = self.state.holder.as_ref().map(|h| h.request.actor.clone())
                else {
                    return;
                };
                let history = self
                    .state
                    .actor(&holder)
                    .map(|a| a.history.clone())
                    .unwrap_or_default();
                if history.is_empty() {
                    return;
                }
                // A position from another holder's history is meaningless here.
                let start = self.ui.history_pos.filter(|p| *p < history.len());
                let pos = match (action, start) {
                    (Action::HistoryPrev, None) => Some(history.len() - 1),
                    (Action::HistoryPrev, Some(p)) => Some(p.saturating_sub(1)),
                    (_, Some(p)) if p + 1 < history.len() => Some(p + 1),
                    _ => None,
                };
                self.ui.history_pos = pos;
                let line = pos.and_then(|p| history.get(p)).map_or("", String::as_str);
                self.ui.input = new_input(line);
            }
            Action::Edit(key) => {
                self.ui.input.input(key);
            }
            Action::Move(d) => {
                self.ui.focus = Pane::Tree;
                self.move_selection(d);
            }
            Action::Collapse | Action::Expand => {
                let collapse = action == Action::Collapse;
                if let Some(id) = self.ui.selected.clone()
                    && let Some(a) = self.state.actor_mut(&id)
                {
                    a.collapsed = collapse && !a.children.is_empty();
                }
            }
            Action::CyclePane => {
                self.ui.focus = match self.ui.focus {
                    Pane::Tree => Pane::Lock,
                    Pane::Lock => Pane::Repl,
                    Pane::Repl => Pane::Bottom,
                    Pane::Bottom => {
                        // Tab on the bottom pane flips Output/Dump before moving on.
                        if self.ui.tab == BottomTab::Output {
                            self.ui.tab = BottomTab::Dump;
                            Pane::Bottom
                        } else {
                            self.ui.tab = BottomTab::Output;
                            Pane::Tree
                        }
                    }
                };
            }
            Action::Scroll(n) => self.scroll(self.ui.focus, n),
            Action::Wheel { up, x, y } => {
                if let Some(p) = self.areas.pane_at(x, y) {
                    self.scroll(p, if up { 3 } else { -3 });
                }
            }
            Action::Click { x, y } => {
                let Some(p) = self.areas.pane_at(x, y) else {
                    return;
                };
                self.ui.focus = p;
                if p == Pane::Tree {
                    let visible: Vec<String> = self
                        .state
                        .visible()
                        .iter()
                        .map(|(_, a)| a.id.clone())
                        .collect();
                    let sel = self
                        .ui
                        .selected
                        .as_deref()
                        .and_then(|s| visible.iter().position(|i| i == s));
                    let inner_h = self.areas.tree.height.saturating_sub(2);
                    let offset = actor_tui_ui::tree_offset(sel, inner_h);
                    let row = usize::from(y.saturating_sub(self.areas.tree.y + 1)) + offset;
                    if let Some(id) = visible.get(row) {
                        self.ui.selected = Some(id.clone());
                        self.ui.output_scroll = 0;
                    }
                } else if p == Pane::Repl {
                    self.ui.mode = Mode::Input;
                }
            }
            Action::Resize => self.on_resize(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::common_prefix;

    #[test]
    fn common_prefix_of_completions() {
        let w = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(common_prefix(&w(&["tasks", "threads"])), "t");
        assert_eq!(common_prefix(&w(&["p round", "p rounds"])), "p round");
        assert_eq!(common_prefix(&w(&["p é1", "p é2"])), "p é");
        assert_eq!(common_prefix(&[]), "");
    }
}
