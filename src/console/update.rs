//! What the user's actions do to the console's state, apart from the loop and the
//! terminal: a pure update over ([`ConsoleState`], [`UiState`]) that returns the commands
//! for the runtime. The loop feeds it key actions and batches of events and sends what comes
//! back; tests drive it directly and draw it on ratatui's `TestBackend`.

use std::time::Instant;

use actor_tui_ui::{Areas, BottomTab, Pane};

use super::input::{Action, Mode, OverlayKind};
use super::pane_sizes;
use super::state::{self, ConsoleState};
use super::view::{Dialog, Pending, Prompt, Search, UiState, new_input};
use crate::proto::ActorId;
use crate::runtime::event::ViewerRole;
use crate::runtime::{RuntimeCommand, RuntimeEvent};

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

/// What `R` accepts, as the status bar says it.
const RULE_SYNTAX: &str = "rule: auto_continue LOCATION | auto_continue actor ID | crash_limit N [LOCATION] | rate_limit N/SECS [LOCATION] | clear [RULE]";

/// A rule typed after `R` (the config file's rules, in one line) as the command for it.
pub fn parse_rule(line: &str) -> Result<RuntimeCommand, String> {
    let mut words = line.split_whitespace();
    let bad = |why: &str| format!("{why}; {RULE_SYNTAX}");
    let rest = |words: std::str::SplitWhitespace<'_>| {
        let r: Vec<&str> = words.collect();
        (!r.is_empty()).then(|| r.join(" "))
    };
    match words.next() {
        Some("auto_continue") => match (words.next(), words.next()) {
            (Some("actor"), Some(id)) => Ok(RuntimeCommand::AutoContinue {
                location: None,
                actor: Some(id.parse().map_err(|e| bad(&format!("{e}")))?),
            }),
            (Some(location), None) => Ok(RuntimeCommand::AutoContinue {
                location: Some(location.into()),
                actor: None,
            }),
            _ => Err(bad("auto_continue takes a location, or `actor ID`")),
        },
        Some("crash_limit") => {
            let first = words
                .next()
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| bad("crash_limit needs a number of crashes"))?;
            Ok(RuntimeCommand::CrashLimit {
                location: rest(words),
                first,
            })
        }
        Some("rate_limit") => {
            let (n, secs) = words
                .next()
                .and_then(|r| r.split_once('/'))
                .ok_or_else(|| bad("rate_limit needs N/SECS"))?;
            let at_most = n
                .parse()
                .map_err(|_| bad("rate_limit: N is a whole number"))?;
            let secs: f64 = secs
                .trim_end_matches('s')
                .parse()
                .map_err(|_| bad("rate_limit: SECS is a number"))?;
            if !(secs.is_finite() && secs > 0.0 && secs < 1e9) {
                return Err(bad("rate_limit: SECS must be positive"));
            }
            Ok(RuntimeCommand::RateLimit {
                location: rest(words),
                at_most,
                per_ms: (secs * 1000.0).round().max(1.0) as u64,
            })
        }
        Some("clear") => Ok(RuntimeCommand::ClearRules { rule: rest(words) }),
        _ => Err(bad("unknown rule")),
    }
}

/// The console's state and what the user does to it.
#[derive(Debug)]
pub struct Model {
    pub state: ConsoleState,
    pub ui: UiState,
    /// Where the last frame put each pane (for clicks and the wheel).
    pub areas: Areas,
    quitting: bool,
    /// Whether the holder's session waited for a line at the last look (to notice new prompts).
    session_waiting: bool,
    now: Instant,
    out: Vec<RuntimeCommand>,
}

impl Model {
    pub fn new(state: ConsoleState, now: Instant) -> Self {
        Self {
            state,
            ui: UiState::new(),
            areas: Areas::default(),
            quitting: false,
            session_waiting: false,
            now,
            out: Vec::new(),
        }
    }

    /// Applies runtime events that arrived together, then what follows from them: a first
    /// selection, a completion answer, a note that a session now waits for input.
    pub fn on_events(
        &mut self,
        events: impl IntoIterator<Item = RuntimeEvent>,
        now: Instant,
    ) -> Vec<RuntimeCommand> {
        self.now = now;
        for ev in events {
            self.state.apply(ev, now);
        }
        if self.ui.selected.is_none() {
            self.ui.selected = self.state.actors().next().map(|a| a.id);
        }
        if let Some((_, line, matches)) = self.state.completion.take() {
            self.apply_completion(&line, &matches);
        }
        let waiting = self.state.holder.as_ref().is_some_and(|h| h.waiting);
        if waiting && !self.session_waiting && self.ui.mode == Mode::Nav {
            self.flash("a session waits for input: press i to type".into());
        }
        self.session_waiting = waiting;
        std::mem::take(&mut self.out)
    }

    /// Ends the run (once).
    pub fn quit(&mut self) -> Vec<RuntimeCommand> {
        self.quit_once();
        std::mem::take(&mut self.out)
    }

    fn quit_once(&mut self) {
        if !self.quitting {
            self.quitting = true;
            self.send(RuntimeCommand::Quit);
            if self.state.me.is_some() {
                self.flash("detaching".into());
            } else {
                self.flash("quitting: tearing the tree down".into());
            }
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

    /// What keys mean right now depends on the dialog that is open.
    pub fn overlay_kind(&self) -> OverlayKind {
        match self.ui.dialog {
            Dialog::None => OverlayKind::None,
            Dialog::Help => OverlayKind::Help,
            Dialog::Confirm { .. } => OverlayKind::Confirm,
        }
    }

    fn ask(&mut self, pending: Pending, question: String) {
        self.ui.dialog = Dialog::Confirm { pending, question };
    }

    /// The actor a line typed with no session waiting is offered to: the selected actor if
    /// it wants input, else the first one that does.
    fn reader_for_line(&self) -> Option<(ActorId, String)> {
        let wants = |id: ActorId| {
            self.state
                .actor(id)
                .filter(|a| a.wants_input && a.exited.is_none())
                .map(|a| (id, a.name.clone()))
        };
        self.ui.selected.and_then(wants).or_else(|| {
            self.state
                .actors()
                .filter(|a| a.wants_input && a.exited.is_none())
                .map(|a| a.id)
                .min()
                .and_then(wants)
        })
    }

    fn selected_name(&self) -> Option<(ActorId, String)> {
        let id = self.ui.selected?;
        let name = self
            .state
            .actor(id)
            .map(|a| a.name.clone())
            .unwrap_or_default();
        Some((id, name))
    }

    /// The terminal is now `cols` x `rows`: re-lay out and resize every actor's PTY.
    pub fn resize(&mut self, cols: u16, rows: u16) -> Vec<RuntimeCommand> {
        let (out, repl) = pane_sizes(cols, rows);
        self.state.resize(out, repl);
        self.send(RuntimeCommand::Resize {
            rows: out.0,
            cols: out.1,
        });
        std::mem::take(&mut self.out)
    }

    fn move_selection(&mut self, delta: i32) {
        let ids = self.state.visible_ids();
        if ids.is_empty() {
            return;
        }
        let cur = self
            .ui
            .selected
            .and_then(|s| ids.iter().position(|i| *i == s))
            .unwrap_or(0) as i64;
        let next = (cur + i64::from(delta)).clamp(0, ids.len() as i64 - 1) as usize;
        self.ui.selected = Some(ids[next]);
        self.ui.output_scroll = 0;
        self.ui.dump_scroll = 0;
    }

    fn scroll(&mut self, pane: Pane, lines: i32) {
        let add = |v: usize| (v as i64 + i64::from(lines)).max(0) as usize;
        match pane {
            Pane::Tree => self.move_selection(-lines.signum()),
            Pane::Repl => self.ui.repl_scroll = add(self.ui.repl_scroll).min(state::scrollback()),
            Pane::Bottom => match self.ui.tab {
                BottomTab::Output => {
                    self.ui.output_scroll = add(self.ui.output_scroll).min(state::scrollback());
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

    /// Shows the session before the one viewed (the latest ended one first); past the
    /// oldest, back to the live pane. The Dump tab lists them all.
    fn older_session(&mut self) {
        let ended: Vec<u64> = self
            .state
            .sessions
            .sessions()
            .filter(|x| x.ended.is_some())
            .map(|x| x.n)
            .collect();
        let next = match self.ui.viewing.as_ref().map(|(n, _)| *n) {
            None => ended.last().copied(),
            Some(n) => ended.iter().rev().find(|m| **m < n).copied(),
        };
        self.ui.repl_scroll = 0;
        let Some(n) = next else {
            self.ui.viewing = None;
            self.flash(if ended.is_empty() {
                "no session has ended yet".into()
            } else {
                "back to the live REPL".into()
            });
            return;
        };
        let Some(x) = self.state.sessions.get(n) else {
            return;
        };
        let (rows, cols) = self.state.repl_size;
        let mut p = vt100::Parser::new(rows, cols, state::scrollback());
        let text = if x.evicted() {
            let path = self.state.transcript_paths.get(&x.epoch);
            format!(
                "(this session's text is no longer kept in memory{})
",
                path.map(|p| format!("; it is in {p}")).unwrap_or_default()
            )
        } else {
            x.transcript()
        };
        p.process(text.replace('\n', "\r\n").as_bytes());
        self.ui.viewing = Some((n, super::view::Viewed(p)));
        let mut list = String::new();
        let now = self.state.run_time(self.now);
        for x in self.state.sessions.sessions().rev() {
            list.push_str(&format!(
                "{} #{} {} {} · {} at {} · waited {} · held {} · {}{}
",
                if x.n == n { "▸" } else { " " },
                x.n,
                x.actor,
                x.actor_name,
                x.reason.as_str(),
                x.location,
                crate::runtime::sessions::secs(x.waited()),
                crate::runtime::sessions::secs(x.held(now)),
                x.cause.map_or("open", |c| c.as_str()),
                self.state
                    .transcript_paths
                    .get(&x.epoch)
                    .map(|p| format!(" · {p}"))
                    .unwrap_or_default()
            ));
        }
        for e in &self.state.earlier_sessions {
            list.push_str(&format!(
                "  {e}
"
            ));
        }
        self.ui.info = Some((
            format!(
                "{} sessions · H older · Esc back",
                self.state.sessions.len()
            ),
            list,
        ));
        self.ui.tab = BottomTab::Dump;
        self.ui.dump_scroll = 0;
    }

    /// The admission rules and the crash list, in the Dump tab.
    fn show_crashes(&mut self) {
        let mut text = String::from("rules:\n");
        if self.state.rules.is_empty() {
            text.push_str("  (none)\n");
        }
        for r in &self.state.rules {
            text.push_str(&format!("  {} · let go {}\n", r.rule, r.skipped));
        }
        text.push_str(&format!(
            "\ncrashes that went on without a post-mortem: {}\n",
            self.state.crashes.len()
        ));
        for c in self.state.crashes.iter().rev() {
            text.push_str(&format!(
                "\n── {} at {} ({})\n{}\n",
                c.actor, c.location, c.rule, c.text
            ));
        }
        self.ui.info = Some(("rules and crash list".into(), text));
        self.ui.tab = BottomTab::Dump;
        self.ui.dump_scroll = 0;
    }

    /// The text of the focused pane (the REPL screen or session viewed, or the selected
    /// actor's output), every line of its scrollback.
    fn pane_text(&mut self, pane: Pane) -> Option<Vec<String>> {
        if pane == Pane::Repl {
            if let Some((_, v)) = &mut self.ui.viewing {
                return Some(super::search::all_lines(&mut v.0));
            }
            // With nobody holding the lock the pane shows the selected actor's output,
            // which is what is searched then (below).
            if let Some(holder) = self.state.holder.as_ref().map(|h| h.request.actor) {
                let p = self.state.actor_mut(holder)?.repl.as_mut()?;
                return Some(super::search::all_lines(p));
            }
        }
        if pane == Pane::Bottom
            && let Some((_, text)) = &self.ui.info
            && self.ui.tab == BottomTab::Dump
        {
            return Some(text.lines().map(str::to_owned).collect());
        }
        let id = self.ui.selected?;
        // Every line of the scrollback, rebuilt first if only the screen was kept.
        self.state.keep_scrollback(id, true);
        self.state.show(&[id]);
        let p = self.state.actor_mut(id)?.output.as_mut()?;
        let lines = super::search::all_lines(p);
        self.state.keep_scrollback(id, self.ui.output_scroll > 0);
        Some(lines)
    }

    fn search(&mut self, query: String) {
        if query.is_empty() {
            return;
        }
        let pane = self.ui.focus;
        if matches!(pane, Pane::Tree | Pane::Lock) {
            // Tree-wide: every actor's recent output, matches listed by actor.
            let found = self.state.search_outputs(&query, 500);
            let n: usize = found.iter().map(|(_, l)| l.len()).sum();
            let mut text = String::new();
            for (who, lines) in &found {
                text.push_str(&format!("── {who}: {} lines\n", lines.len()));
                for l in lines {
                    text.push_str(&format!("  {l}\n"));
                }
            }
            self.ui.info = Some((
                format!("search {query:?}: {n} lines in {} actors", found.len()),
                text,
            ));
            self.ui.tab = BottomTab::Dump;
            self.ui.dump_scroll = 0;
            self.flash(format!(
                "{n} matching lines in {} actors (Dump tab)",
                found.len()
            ));
            return;
        }
        let Some(lines) = self.pane_text(pane) else {
            self.flash("nothing to search here".into());
            return;
        };
        let hits = super::search::matches(&lines, &query);
        if hits.is_empty() {
            self.flash(format!("{query:?}: not found"));
            return;
        }
        // The newest match first, as a terminal search from the bottom finds it.
        let at = hits.len() - 1;
        self.ui.search = Some(Search {
            query,
            pane,
            hits,
            at,
            lines: lines.len(),
        });
        self.show_match();
    }

    fn step_search(&mut self, forward: bool) {
        let Some(x) = &mut self.ui.search else {
            self.flash("no search yet: press /".into());
            return;
        };
        let n = x.hits.len();
        x.at = if forward {
            (x.at + 1) % n
        } else {
            (x.at + n - 1) % n
        };
        self.show_match();
    }

    /// Scrolls the searched pane so the current match is in view, and says which it is.
    fn show_match(&mut self) {
        let Some(Search {
            query,
            pane,
            hits,
            at: i,
            lines: total,
        }) = self.ui.search.clone()
        else {
            return;
        };
        let line = hits[i];
        let rows = usize::from(match pane {
            Pane::Repl => self.state.repl_size.0,
            _ => self.state.output_size.0,
        });
        let depth = total.saturating_sub(rows);
        let offset = super::search::offset_showing(depth, line);
        match pane {
            Pane::Repl => self.ui.repl_scroll = offset,
            Pane::Bottom if self.ui.tab == BottomTab::Dump => {
                self.ui.dump_scroll = u16::try_from(line).unwrap_or(u16::MAX);
            }
            _ => self.ui.output_scroll = offset,
        }
        self.flash(format!(
            "{query:?}: match {} of {} (line {}) · n next, N previous",
            i + 1,
            hits.len(),
            line + 1
        ));
    }

    /// Asks the loop to open the focused pane's text in `$EDITOR`.
    fn open_in_editor(&mut self) {
        let pane = self.ui.focus;
        match self.pane_text(pane) {
            Some(mut lines) => {
                while lines.last().is_some_and(String::is_empty) {
                    lines.pop();
                }
                let mut text = lines.join("\n");
                text.push('\n');
                self.ui.editor = Some(text);
            }
            None => self.flash("nothing to open here".into()),
        }
    }

    /// What the user's `action` does at `now`; the commands for the runtime, in order.
    pub fn on_action(&mut self, action: Action, now: Instant) -> Vec<RuntimeCommand> {
        self.now = now;
        self.act(action);
        std::mem::take(&mut self.out)
    }

    fn act(&mut self, action: Action) {
        match action {
            Action::None => {}
            Action::Help => self.ui.dialog = Dialog::Help,
            Action::CloseOverlay => self.ui.dialog = Dialog::None,
            Action::Confirmed => match std::mem::take(&mut self.ui.dialog) {
                Dialog::Confirm {
                    pending: Pending::ForceRelease,
                    ..
                } => self.send(RuntimeCommand::ForceRelease),
                Dialog::Confirm {
                    pending: Pending::Cancel { actor, force },
                    ..
                } => self.send(RuntimeCommand::Cancel { actor, force }),
                Dialog::Confirm {
                    pending: Pending::Quit,
                    ..
                } => self.quit_once(),
                Dialog::Confirm {
                    pending: Pending::TakeOver,
                    ..
                } => self.send(RuntimeCommand::Drive { take_over: true }),
                Dialog::Confirm {
                    pending: Pending::Stdin { actor, data },
                    ..
                } => {
                    self.send(RuntimeCommand::Stdin { actor, data });
                    self.ui.input = new_input("");
                    self.ui.history_pos = None;
                }
                Dialog::None | Dialog::Help => {}
            },
            Action::Dump => match self.ui.selected {
                Some(actor) => {
                    self.ui.show_snapshot = false;
                    self.send(RuntimeCommand::Dump { actor });
                    self.ui.tab = BottomTab::Dump;
                    self.ui.dump_scroll = 0;
                }
                None => self.flash("no actor selected".into()),
            },
            Action::ForceRelease => match &self.state.holder {
                Some(h) => {
                    let who = h.request.actor;
                    let name = self
                        .state
                        .actor(who)
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
                let force_now = matches!(
                    self.ui.dialog,
                    Dialog::Confirm {
                        pending: Pending::Cancel { .. },
                        ..
                    }
                );
                let Some((id, name)) = self.selected_name() else {
                    self.flash("no actor selected".into());
                    return;
                };
                let waiting = self
                    .state
                    .actor(id)
                    .is_some_and(|a| a.teardown_waiting || a.cancelling);
                if force_now || waiting {
                    self.ask(
                        Pending::Cancel {
                            actor: id,
                            force: true,
                        },
                        format!("Force-cancel {id} {name} and its subtree now (SIGKILL)?"),
                    );
                } else {
                    self.ask(
                        Pending::Cancel {
                            actor: id,
                            force: false,
                        },
                        format!("Cancel {id} {name} and its subtree?"),
                    );
                }
            }
            Action::Quit if self.state.me.is_some() => self.ask(
                Pending::Quit,
                "Detach from this run? It goes on; attach again at any time.".into(),
            ),
            Action::Quit => self.ask(
                Pending::Quit,
                "Quit actor-tui and tear the tree down?".into(),
            ),
            Action::Drive => self.drive(),
            Action::Freeze => self.send(if self.state.frozen {
                RuntimeCommand::Thaw
            } else {
                RuntimeCommand::Freeze
            }),
            Action::DumpAll => {
                self.send(RuntimeCommand::DumpAll);
                self.ui.tab = BottomTab::Dump;
                self.ui.dump_scroll = 0;
                self.ui.show_snapshot = true;
                self.flash("dumping every actor…".into());
            }
            Action::ToNav if self.ui.prompt.is_some() => {
                self.ui.prompt = None;
                self.ui.input = new_input("");
                self.ui.mode = Mode::Nav;
            }
            Action::ToNav if self.ui.mode == Mode::Nav && self.ui.viewing.is_some() => {
                self.ui.viewing = None;
                self.ui.repl_scroll = 0;
            }
            Action::ToNav if self.ui.mode == Mode::Nav && self.ui.info.is_some() => {
                self.ui.info = None;
            }
            Action::ToNav => self.ui.mode = Mode::Nav,
            Action::ToInput => {
                self.ui.mode = Mode::Input;
                self.ui.focus = Pane::Repl;
            }
            Action::Interrupt => match self.selected_name() {
                Some((actor, name)) => {
                    self.send(RuntimeCommand::Interrupt { actor });
                    self.flash(format!("asked {actor} {name} to break in"));
                }
                None => self.flash("no actor selected".into()),
            },
            Action::Submit if self.ui.prompt.is_some() => {
                let text = self.ui.input.lines().join(" ");
                let prompt = self.ui.prompt.take();
                self.ui.input = new_input("");
                self.ui.mode = Mode::Nav;
                match prompt {
                    Some(Prompt::Rule) => match parse_rule(&text) {
                        Ok(cmd) => self.send(cmd),
                        Err(e) => self.flash(e),
                    },
                    _ => self.search(text),
                }
            }
            Action::Rule => {
                self.ui.prompt = Some(Prompt::Rule);
                self.ui.mode = Mode::Input;
                self.ui.input = new_input("");
                self.flash(RULE_SYNTAX.into());
            }
            Action::Search => {
                self.ui.prompt = Some(Prompt::Search);
                self.ui.mode = Mode::Input;
                self.ui.input = new_input("");
                let what = match self.ui.focus {
                    Pane::Tree | Pane::Lock => "every actor's output",
                    Pane::Repl => "the REPL pane",
                    Pane::Bottom => "the selected actor's output",
                };
                self.flash(format!("search {what}: type, then Enter (Esc cancels)"));
            }
            Action::SearchNext | Action::SearchPrev => {
                self.step_search(action == Action::SearchNext)
            }
            Action::Sessions => self.older_session(),
            Action::Crashes => self.show_crashes(),
            Action::Editor => self.open_in_editor(),
            Action::Submit => {
                if self.observing() {
                    // The line stays: D, then Enter sends it.
                    self.flash("you are observing: press D to drive".into());
                    return;
                }
                if !self.state.holder.as_ref().is_some_and(|h| h.waiting) {
                    // Not thrown away: an actor blocked reading its terminal is offered.
                    match self.reader_for_line() {
                        Some((actor, name)) => {
                            let line = self.ui.input.lines().join(" ");
                            self.ask(
                                Pending::Stdin {
                                    actor,
                                    data: format!("{line}\n"),
                                },
                                format!(
                                    "No session waits. Type this line into {actor} {name}'s terminal? (y)"
                                ),
                            );
                        }
                        None => self.flash("no session waits for input".into()),
                    }
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
                let Some(holder) = self.state.holder.as_ref().map(|h| h.request.actor) else {
                    return;
                };
                let history = self
                    .state
                    .actor(holder)
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
            Action::Move(d) if self.ui.focus == Pane::Lock => {
                let last = self.state.queue.len().saturating_sub(1);
                let cur = self.ui.queue_sel.min(last);
                self.ui.queue_sel = if d < 0 {
                    cur.saturating_sub(d.unsigned_abs() as usize)
                } else {
                    (cur + d as usize).min(last)
                };
            }
            Action::Move(d) => {
                self.ui.focus = Pane::Tree;
                self.move_selection(d);
            }
            Action::Queue(op) => self.queue_op(op),
            Action::Collapse | Action::Expand => {
                let collapse = action == Action::Collapse;
                if let Some(id) = self.ui.selected
                    && let Some(a) = self.state.actor_mut(id)
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
                    let visible = self.state.visible_ids();
                    let sel = self
                        .ui
                        .selected
                        .and_then(|s| visible.iter().position(|i| *i == s));
                    let row = self.areas.tree_row_at(y, sel);
                    if let Some(id) = row.and_then(|r| visible.get(r)) {
                        self.ui.selected = Some(*id);
                        self.ui.output_scroll = 0;
                    }
                } else if p == Pane::Repl {
                    self.ui.mode = Mode::Input;
                }
            }
            // The loop asks the terminal for its size and calls `resize`.
            Action::Resize => {}
            Action::ToggleTerminal => {
                if self.ui.mode == Mode::Terminal {
                    self.ui.mode = Mode::Input;
                    self.ui.terminal = None;
                    self.flash("the keys are the console's again".into());
                    return;
                }
                let Some(id) = self.ui.selected else {
                    self.flash("no actor selected".into());
                    return;
                };
                let live = self.state.actor(id).is_some_and(|a| a.exited.is_none());
                if !live {
                    self.flash(format!("{id} has ended: no terminal to type into"));
                    return;
                }
                self.ui.mode = Mode::Terminal;
                self.ui.terminal = Some(id);
                self.ui.focus = Pane::Repl;
                self.flash(format!("keys go to {id}'s terminal; F6 gives them back"));
            }
            Action::Type(data) => {
                if let Some(actor) = self.ui.terminal {
                    self.send(RuntimeCommand::Stdin { actor, data });
                }
            }
        }
    }

    /// A transient message in the status bar.
    pub fn flash(&mut self, msg: String) {
        self.ui.flash = Some((self.now, msg));
    }

    fn send(&mut self, cmd: RuntimeCommand) {
        // An attached observer's commands would be refused by the root: say why here.
        let local = matches!(cmd, RuntimeCommand::Quit | RuntimeCommand::Resize { .. });
        if self.observing() && !local && !cmd.read_only() {
            self.flash("you are observing: press D to drive".into());
            return;
        }
        self.out.push(cmd);
    }

    fn queue_op(&mut self, op: super::input::QueueOp) {
        use super::input::QueueOp;
        if self.ui.focus != Pane::Lock {
            self.flash("Tab to the lock pane, pick a waiter with j/k, then p d s C A".into());
            return;
        }
        let Some(r) = self
            .state
            .queue
            .get(
                self.ui
                    .queue_sel
                    .min(self.state.queue.len().saturating_sub(1)),
            )
            .cloned()
        else {
            self.flash("nobody waits for the lock".into());
            return;
        };
        let (actor, task) = (r.actor, r.task);
        self.send(match op {
            QueueOp::Promote => RuntimeCommand::Promote { actor, task },
            QueueOp::Defer => RuntimeCommand::Defer { actor, task },
            QueueOp::Skip => RuntimeCommand::Skip { actor, task },
            QueueOp::ContinueHere => RuntimeCommand::ContinueAll {
                location: Some(r.location.clone()),
                actor: None,
            },
            QueueOp::AutoContinueHere => RuntimeCommand::AutoContinue {
                actor: None,
                location: Some(r.location.clone()),
            },
        });
    }

    /// This console is attached to a run elsewhere and does not drive it.
    fn observing(&self) -> bool {
        self.state
            .me
            .is_some_and(|me| self.state.viewers.get(&me).map(|v| v.1) != Some(ViewerRole::Driver))
    }

    fn drive(&mut self) {
        let Some(me) = self.state.me else {
            self.flash("this is the root's own console: it always drives".into());
            return;
        };
        if !self.observing() {
            self.send(RuntimeCommand::Observe);
            return;
        }
        let driver = self
            .state
            .viewers
            .iter()
            .find(|(id, v)| **id != me && v.1 == ViewerRole::Driver)
            .map(|(id, v)| format!("{id} {}", v.0));
        match driver {
            Some(who) => self.ask(
                Pending::TakeOver,
                format!("Viewer {who} drives. Take driving over?"),
            ),
            None => self.send(RuntimeCommand::Drive { take_over: false }),
        }
    }
}

#[cfg(test)]
mod tests {
    //! The real update and the real drawing, on ratatui's `TestBackend`: what a user would
    //! see after each action, without a terminal.

    use super::*;
    use crate::proto::Reason;
    use actor_tui_ui::Theme;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    #[test]
    fn a_typed_rule_becomes_its_command_and_a_bad_one_says_the_syntax() {
        assert_eq!(
            parse_rule("auto_continue worker.py:42"),
            Ok(RuntimeCommand::AutoContinue {
                location: Some("worker.py:42".into()),
                actor: None
            })
        );
        assert_eq!(
            parse_rule("auto_continue actor 3"),
            Ok(RuntimeCommand::AutoContinue {
                location: None,
                actor: Some(ActorId(3))
            })
        );
        assert_eq!(
            parse_rule("crash_limit 2"),
            Ok(RuntimeCommand::CrashLimit {
                location: None,
                first: 2
            })
        );
        assert_eq!(
            parse_rule("rate_limit 1/2.5s loop.py:10"),
            Ok(RuntimeCommand::RateLimit {
                location: Some("loop.py:10".into()),
                at_most: 1,
                per_ms: 2500
            })
        );
        assert_eq!(
            parse_rule("clear auto_continue x.py:3"),
            Ok(RuntimeCommand::ClearRules {
                rule: Some("auto_continue x.py:3".into())
            })
        );
        for bad in [
            "",
            "explode",
            "crash_limit many",
            "rate_limit 3",
            "rate_limit 1/0",
        ] {
            let e = parse_rule(bad).expect_err(bad);
            assert!(e.contains("auto_continue LOCATION"), "{bad}: {e}");
        }
    }

    fn started(id: &str, name: &str, parent: Option<&str>) -> RuntimeEvent {
        RuntimeEvent::ActorStarted {
            actor: id.parse().expect("id"),
            name: name.into(),
            pid: 100,
            parent: parent.map(|p| p.parse().expect("id")),
        }
    }

    /// top (1) with mid (2) and leaf (3); leaf holds the lock at a prompt.
    fn tree() -> (Model, Terminal<TestBackend>, Instant) {
        let t = Instant::now();
        let (out, repl) = pane_sizes(100, 30);
        let mut m = Model::new(ConsoleState::new(out, repl), t);
        m.on_events(
            [
                started("1", "top", None),
                started("2", "mid", Some("1")),
                started("3", "leaf", Some("2")),
                RuntimeEvent::LockRequested {
                    actor: ActorId(3),
                    task: 1,
                    task_name: "main".into(),
                    reason: Reason::Pause,
                    location: "leaf.rs:9".into(),
                    peek: None,
                },
                RuntimeEvent::LockGranted {
                    actor: ActorId(3),
                    task: 1,
                    epoch: 1,
                },
                RuntimeEvent::ReplReady {
                    actor: ActorId(3),
                    task: 1,
                    prompt: "(Pdb) ".into(),
                },
            ],
            t,
        );
        let term = Terminal::new(TestBackend::new(100, 30)).expect("terminal");
        (m, term, t)
    }

    fn screen(m: &mut Model, term: &mut Terminal<TestBackend>, t: Instant) -> String {
        crate::console::draw_model(m, term, &Theme { color: false }, t).expect("draw");
        let buf = term.backend().buffer();
        (0..buf.area.height)
            .map(|y| {
                (0..buf.area.width)
                    .map(|x| buf[(x, y)].symbol())
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn common_prefix_of_completions() {
        let w = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(common_prefix(&w(&["tasks", "threads"])), "t");
        assert_eq!(common_prefix(&w(&["p round", "p rounds"])), "p round");
        assert_eq!(common_prefix(&w(&["p é1", "p é2"])), "p é");
        assert_eq!(common_prefix(&[]), "");
    }

    #[test]
    fn cancel_asks_then_f9_again_forces_and_y_sends_one_command() {
        let (mut m, mut term, t) = tree();
        m.on_action(Action::ToNav, t);
        m.on_action(Action::Move(1), t);
        assert_eq!(m.ui.selected, Some(ActorId(2)));
        assert!(m.on_action(Action::Cancel, t).is_empty(), "asks first");
        let s = screen(&mut m, &mut term, t);
        assert!(s.contains("Cancel 2 mid and its subtree?"), "{s}");
        // F9 on the open question turns it into a forced cancel.
        m.on_action(Action::Cancel, t);
        let s = screen(&mut m, &mut term, t);
        assert!(s.contains("Force-cancel 2 mid"), "{s}");
        let cmds = m.on_action(Action::Confirmed, t);
        assert_eq!(
            cmds,
            vec![RuntimeCommand::Cancel {
                actor: ActorId(2),
                force: true
            }]
        );
        let s = screen(&mut m, &mut term, t);
        assert!(!s.contains("Confirm"), "the dialog closed: {s}");
        // Any other key dismisses without a command.
        m.on_action(Action::Quit, t);
        assert!(m.on_action(Action::CloseOverlay, t).is_empty());
        assert_eq!(m.ui.dialog, Dialog::None);
    }

    #[test]
    fn a_click_on_a_tree_row_selects_that_actor() {
        let (mut m, mut term, t) = tree();
        screen(&mut m, &mut term, t);
        let tree = m.areas.tree;
        // Rows start inside the border: the third row is leaf.
        m.on_action(
            Action::Click {
                x: tree.x + 2,
                y: tree.y + 3,
            },
            t,
        );
        assert_eq!(m.ui.selected, Some(ActorId(3)));
        // The border selects nothing.
        m.on_action(
            Action::Click {
                x: tree.x + 2,
                y: tree.y,
            },
            t,
        );
        assert_eq!(m.ui.selected, Some(ActorId(3)));
    }

    #[test]
    fn a_line_goes_to_the_session_only_when_it_waits() {
        let (mut m, mut term, t) = tree();
        m.ui.input = new_input("p x");
        let cmds = m.on_action(Action::Submit, t);
        assert_eq!(
            cmds,
            vec![RuntimeCommand::Input {
                data: "p x\n".into()
            }]
        );
        // The prompt was answered: the next line waits for the next prompt.
        m.ui.input = new_input("p y");
        assert!(m.on_action(Action::Submit, t).is_empty());
        let s = screen(&mut m, &mut term, t);
        assert!(s.contains("no session waits for input"), "{s}");
    }

    #[test]
    fn a_line_with_no_session_is_offered_to_the_actor_that_reads_its_terminal() {
        let (mut m, mut term, t) = tree();
        // Nobody waits in a session; actor 2 blocks reading its terminal.
        m.state.holder = None;
        m.on_events(vec![RuntimeEvent::WantsInput { actor: ActorId(2) }], t);
        let s = screen(&mut m, &mut term, t);
        assert!(s.contains("wants input"), "{s}");
        m.ui.input = new_input("blue");
        assert!(m.on_action(Action::Submit, t).is_empty());
        let s = screen(&mut m, &mut term, t);
        assert!(s.contains("terminal? (y)"), "{s}");
        let cmds = m.on_action(Action::Confirmed, t);
        assert_eq!(
            cmds,
            vec![RuntimeCommand::Stdin {
                actor: ActorId(2),
                data: "blue\n".into()
            }]
        );
        // It read: the mark goes, and the next line is not offered to it.
        m.on_events(vec![RuntimeEvent::InputDone { actor: ActorId(2) }], t);
        m.ui.input = new_input("again");
        assert!(m.on_action(Action::Submit, t).is_empty());
        let s = screen(&mut m, &mut term, t);
        assert!(s.contains("no session waits for input"), "{s}");
    }

    #[test]
    fn break_in_asks_the_selected_actor() {
        let (mut m, _term, t) = tree();
        m.ui.selected = Some(ActorId(3));
        assert_eq!(
            m.on_action(Action::Interrupt, t),
            vec![RuntimeCommand::Interrupt { actor: ActorId(3) }]
        );
    }
}
