//! Console state to the `ui` crate's view-models. No drawing and no terminal here.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use actor_tui_ui::{
    BottomModel, BottomTab, LockEntry, LockModel, Overlay, Pane, ReplModel, ScreenModel,
    StatusModel, TreeModel, TreeRow,
};
use ratatui_textarea::TextArea;

use super::input::Mode;
use crate::proto::ActorId;

use super::state::{ConsoleState, Request};

/// The parts of the console that are about presentation, not the run.
#[derive(Debug)]
pub struct UiState {
    pub selected: Option<ActorId>,
    pub focus: Pane,
    pub mode: Mode,
    /// The open dialog; a confirmation holds what it will do.
    pub dialog: Dialog,
    /// Whose terminal has the keys in [`Mode::Terminal`].
    pub terminal: Option<ActorId>,
    pub tab: BottomTab,
    pub dump_scroll: u16,
    /// The waiter the queue keys act on (an index into the queue).
    pub queue_sel: usize,
    /// The Dump tab shows the latest tree-wide snapshot (`T`) instead of the selected
    /// actor's dump (`F5`).
    pub show_snapshot: bool,
    /// Scrollback offsets (lines up from the bottom) of the output and REPL screens.
    pub output_scroll: usize,
    pub repl_scroll: usize,
    pub input: TextArea<'static>,
    /// Position while browsing input history.
    pub history_pos: Option<usize>,
    /// A transient message for the status bar, newer than the state's.
    pub flash: Option<(Instant, String)>,
    /// A past session shown read-only in the REPL pane: its number and its text on a
    /// screen of its own.
    pub viewing: Option<(u64, Viewed)>,
    /// Text the Dump tab shows instead of a dump (the session list, the crash list,
    /// tree-wide search results), with its title.
    pub info: Option<(String, String)>,
    /// The input line holds a search query (`/`) or a rule (`R`), not a line for the
    /// session.
    pub prompt: Option<Prompt>,
    /// The last search, for `n` and `N`.
    pub search: Option<Search>,
    /// Text to open in `$EDITOR` at the next turn of the loop.
    pub editor: Option<String>,
    /// Key bindings from the config file.
    pub keys: super::input::Keymap,
}

/// What the input line is being used for, when not for the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prompt {
    Search,
    Rule,
}

/// A search of one pane: its matching lines as of the search (the pane had `lines` lines
/// then), and which of them is shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Search {
    pub query: String,
    pub pane: Pane,
    pub hits: Vec<usize>,
    pub at: usize,
    pub lines: usize,
}

/// A past session's text on a vt100 screen (so it scrolls and searches like the live one).
pub struct Viewed(pub vt100::Parser);

impl std::fmt::Debug for Viewed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Viewed")
    }
}

/// What a confirmation will do on `y`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pending {
    ForceRelease,
    Cancel {
        actor: ActorId,
        force: bool,
    },
    Quit,
    /// An attached console takes driving over from another viewer.
    TakeOver,
    /// A line typed with no session waiting, offered to an actor that reads its terminal.
    Stdin {
        actor: ActorId,
        data: String,
    },
}

/// A dialog over the screen: the one place a pending confirmation is kept.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Dialog {
    #[default]
    None,
    Help,
    Confirm {
        pending: Pending,
        question: String,
    },
}

impl Default for UiState {
    fn default() -> Self {
        Self::new()
    }
}

impl UiState {
    pub fn new() -> Self {
        Self {
            selected: None,
            focus: Pane::Repl,
            mode: Mode::Input,
            dialog: Dialog::None,
            terminal: None,
            tab: BottomTab::Output,
            dump_scroll: 0,
            queue_sel: 0,
            show_snapshot: false,
            output_scroll: 0,
            repl_scroll: 0,
            input: new_input(""),
            history_pos: None,
            flash: None,
            viewing: None,
            info: None,
            prompt: None,
            search: None,
            editor: None,
            keys: super::input::Keymap::default(),
        }
    }
}

/// A one-line input field holding `text`, cursor at the end.
pub fn new_input(text: &str) -> TextArea<'static> {
    let mut t = TextArea::new(vec![text.to_owned()]);
    t.move_cursor(ratatui_textarea::CursorMove::End);
    t.set_cursor_line_style(ratatui::style::Style::default());
    t
}

fn entry(s: &ConsoleState, r: &Request, elapsed: Duration) -> LockEntry {
    LockEntry {
        actor: r.actor.to_string(),
        name: s.actor(r.actor).map(|a| a.name.clone()).unwrap_or_default(),
        task: r.task_name.clone(),
        reason: r.reason.as_str().into(),
        location: r.location.clone(),
        elapsed,
    }
}

/// Applies the scroll offsets to the screens about to be shown (vt100 keeps the view
/// offset inside the parser).
pub fn apply_scroll(s: &mut ConsoleState, ui: &mut UiState) {
    let holder = s.holder.as_ref().map(|h| h.request.actor);
    let selected = ui.selected;
    // The output screens this frame shows must exist (only these few are kept parsed).
    let shown: Vec<_> = [selected, ui.terminal].into_iter().flatten().collect();
    if let Some(id) = selected {
        s.keep_scrollback(id, ui.output_scroll > 0);
    }
    s.show(&shown);
    if let Some(a) = holder.and_then(|h| s.actor_mut(h))
        && let Some(p) = &mut a.repl
    {
        p.screen_mut().set_scrollback(ui.repl_scroll);
    }
    if let Some((_, v)) = &mut ui.viewing {
        v.0.screen_mut().set_scrollback(ui.repl_scroll);
    }
    if let Some(a) = selected.and_then(|id| s.actor_mut(id))
        && let Some(p) = &mut a.output
    {
        p.screen_mut().set_scrollback(ui.output_scroll);
    }
}

/// `NAME ▸ TASK`, with `+N` for the process's other requests. Built by hand: this runs for
/// every waiting actor on every frame (999 of them in the render bench), where `format!`
/// cost half a millisecond a frame.
fn with_task(name: &str, task: &str, requests: usize) -> String {
    let mut s = String::with_capacity(name.len() + task.len() + 8);
    s.push_str(name);
    s.push_str(" ▸ ");
    s.push_str(task);
    if requests > 1 {
        s.push_str(" +");
        s.push_str(&(requests - 1).to_string());
    }
    s
}

/// Per actor, the task that holds the lock or waits first, and how many of its requests
/// there are (holder first, then queue order).
fn paused_tasks(s: &ConsoleState) -> HashMap<ActorId, (&str, usize)> {
    let mut tasks: HashMap<ActorId, (&str, usize)> = HashMap::new();
    let held = s.holder.as_ref().map(|h| &h.request);
    for r in held.into_iter().chain(s.queue.iter()) {
        tasks
            .entry(r.actor)
            .and_modify(|(_, n)| *n += 1)
            .or_insert((r.task_name.as_str(), 1));
    }
    tasks
}

/// Builds one frame's model.
pub fn model<'a>(s: &'a ConsoleState, ui: &'a UiState, now: Instant) -> ScreenModel<'a> {
    let visible = s.visible();
    let tasks = paused_tasks(s);
    let rows: Vec<TreeRow> = visible
        .iter()
        .map(|(depth, a)| TreeRow {
            depth: *depth,
            id: a.id.to_string(),
            // A process that runs many tasks (a Ray or pool worker) shows which one paused;
            // a second request of the same process is counted.
            name: tasks
                .get(&a.id)
                .map_or_else(|| a.name.clone(), |&(task, n)| with_task(&a.name, task, n)),
            pid: a.pid,
            status: s.status(a),
            has_children: !a.children.is_empty(),
            collapsed: a.collapsed,
        })
        .collect();
    let selected_idx = ui
        .selected
        .and_then(|sel| visible.iter().position(|(_, a)| a.id == sel));
    let lock = LockModel {
        holder: s
            .holder
            .as_ref()
            .map(|h| entry(s, &h.request, now.saturating_duration_since(h.granted))),
        warning: s.lock_warning(now),
        queue: s
            .queue
            .iter()
            .map(|r| entry(s, r, now.saturating_duration_since(r.since)))
            .collect(),
        selected: (ui.focus == Pane::Lock && !s.queue.is_empty())
            .then(|| ui.queue_sel.min(s.queue.len() - 1)),
        timeline: timeline(s, now),
        rules: rules_line(s),
    };
    let selected = ui.selected.and_then(|id| s.actor(id));
    let terminal = ui.terminal.and_then(|id| s.actor(id));
    let viewed = ui.viewing.as_ref().map(|(n, v)| {
        let what = s.sessions.get(*n).map_or_else(String::new, |x| {
            format!(
                "{} {} · {} at {}",
                x.actor,
                x.actor_name,
                x.reason.as_str(),
                x.location
            )
        });
        ReplModel {
            title: format!(" Session #{n} (read-only) · {what} · H older, Esc back "),
            screen: Some(v.0.screen()),
            notice: None,
            input: &ui.input,
            input_enabled: ui.prompt.is_some(),
        }
    });
    let repl = match (terminal, &s.holder) {
        _ if viewed.is_some() => viewed.expect("invariant: checked just above"),
        (Some(a), _) => ReplModel {
            title: format!(
                " Terminal · {} {} · your keys go here (F6 gives them back) ",
                a.id, a.name
            ),
            screen: a.output.as_ref().map(vt100::Parser::screen),
            notice: None,
            input: &ui.input,
            input_enabled: false,
        },
        (None, holder) => match holder {
            Some(h) => {
                let a = s.actor(h.request.actor);
                ReplModel {
                    title: format!(
                        " REPL #{} · {} {} · {} · {} at {} ",
                        h.epoch,
                        h.request.actor,
                        a.map(|a| a.name.as_str()).unwrap_or(""),
                        h.request.task_name,
                        h.request.reason.as_str(),
                        h.request.location
                    ),
                    screen: a.and_then(|a| a.repl.as_ref()).map(vt100::Parser::screen),
                    notice: None,
                    input: &ui.input,
                    input_enabled: h.waiting || ui.prompt.is_some(),
                }
            }
            None => ReplModel {
                title: " REPL · lock free ".into(),
                screen: selected
                    .and_then(|a| a.output.as_ref())
                    .map(vt100::Parser::screen),
                notice: Some(match selected {
                    Some(a) => format!(
                        "Nobody holds the debug lock. Output of {} {}:",
                        a.id, a.name
                    ),
                    None => "Nobody holds the debug lock.".into(),
                }),
                input: &ui.input,
                input_enabled: ui.prompt.is_some(),
            },
        },
    };
    // A waiter picked in the lock pane: its peek, without taking the lock.
    let peeked = (ui.focus == Pane::Lock && !s.queue.is_empty())
        .then(|| &s.queue[ui.queue_sel.min(s.queue.len() - 1)])
        .filter(|r| r.peek.is_some());
    let info = ui.info.as_ref().filter(|_| ui.tab == BottomTab::Dump);
    let bottom = match (peeked, info) {
        (None, Some((title, text))) => BottomModel {
            tab: BottomTab::Dump,
            title: format!("· {title}"),
            output: None,
            dump: Some(text.as_str()),
            dump_scroll: ui.dump_scroll,
        },
        (peeked, _) => match peeked {
            Some(r) => BottomModel {
                tab: BottomTab::Dump,
                title: format!(
                    "· peek of {} {} · waiting at {}",
                    r.actor,
                    s.actor(r.actor).map(|a| a.name.as_str()).unwrap_or(""),
                    r.location
                ),
                output: None,
                dump: r.peek.as_deref(),
                dump_scroll: ui.dump_scroll,
            },
            None => BottomModel {
                tab: ui.tab,
                title: selected.map_or_else(String::new, |a| {
                    format!("· {} {} · pid {}", a.id, a.name, a.pid)
                }),
                output: selected
                    .and_then(|a| a.output.as_ref())
                    .map(vt100::Parser::screen),
                dump: if ui.show_snapshot {
                    s.snapshot.as_deref()
                } else {
                    selected.and_then(|a| a.dump.as_deref())
                },
                dump_scroll: ui.dump_scroll,
            },
        },
    };
    let fresh = |t: &Instant| now.saturating_duration_since(*t) < Duration::from_secs(8);
    let message = ui
        .flash
        .as_ref()
        .filter(|(t, _)| fresh(t))
        .map(|(_, m)| m.clone())
        .or_else(|| {
            s.messages
                .back()
                .filter(|(t, _)| fresh(t))
                .map(|(_, m)| m.clone())
        });
    ScreenModel {
        tree: TreeModel {
            rows,
            selected: selected_idx,
        },
        lock,
        repl,
        bottom,
        status: StatusModel {
            mode: {
                let mode = match ui.mode {
                    Mode::Input => "INPUT".into(),
                    Mode::Nav => "NAV".into(),
                    Mode::Terminal => match ui.terminal {
                        Some(id) => format!("TERM {id}"),
                        None => "TERM".into(),
                    },
                };
                let mode = if s.frozen {
                    format!("{mode} · FROZEN")
                } else {
                    mode
                };
                match viewers_badge(s) {
                    Some(b) => format!("{mode} · {b}"),
                    None => mode,
                }
            },
            message,
        },
        focus: ui.focus,
        overlay: match &ui.dialog {
            Dialog::None => Overlay::None,
            Dialog::Help => Overlay::Help(ui.keys.listed.clone()),
            Dialog::Confirm { question, .. } => Overlay::Confirm(question.clone()),
        },
    }
}

/// Columns of the lock pane's timeline strip.
const TIMELINE_WIDTH: usize = 40;

/// Who held the lock over the run: a letter per holder (`a` for the first actor to hold
/// it, `b` for the next...), `·` while it was free. `None` before the first session.
fn timeline(s: &ConsoleState, now: Instant) -> Option<String> {
    if s.sessions.is_empty() {
        return None;
    }
    // Letters in the order actors first held the lock (a map: this runs every frame, over
    // up to 10,000 sessions).
    let mut letter: std::collections::HashMap<ActorId, char> = std::collections::HashMap::new();
    for x in s.sessions.sessions() {
        let next = letter.len();
        letter
            .entry(x.actor)
            .or_insert_with(|| char::from(b'a' + (next % 26) as u8));
    }
    let cells = s.sessions.timeline(s.run_time(now), TIMELINE_WIDTH);
    Some(
        cells
            .iter()
            .map(|c| c.and_then(|a| letter.get(&a).copied()).unwrap_or('·'))
            .collect(),
    )
}

/// The admission rules with what each let go, or the skip counts by why.
fn rules_line(s: &ConsoleState) -> Option<String> {
    let parts: Vec<String> = if s.rules.is_empty() {
        s.skipped
            .iter()
            .map(|(why, n)| format!("{why}: {n}"))
            .collect()
    } else {
        s.rules
            .iter()
            .map(|r| format!("{}: {}", r.rule, r.skipped))
            .collect()
    };
    (!parts.is_empty()).then(|| format!("let go · {}", parts.join(" · ")))
}

/// Who else watches, for the status bar: an attached console shows its own role, the
/// root's console how many viewers there are and who of them drives.
fn viewers_badge(s: &ConsoleState) -> Option<String> {
    use crate::runtime::event::ViewerRole;
    let driver = s
        .viewers
        .iter()
        .find(|(_, (_, r))| *r == ViewerRole::Driver);
    if let Some(me) = s.me {
        let mine = s.viewers.get(&me).map(|v| v.1);
        return Some(match (mine, driver) {
            (Some(ViewerRole::Driver), _) => "DRIVING".into(),
            (_, Some((id, (name, _)))) => format!("OBSERVING (driver: {id} {name})"),
            _ => "OBSERVING (D: drive)".into(),
        });
    }
    if s.viewers.is_empty() {
        return None;
    }
    let n = s.viewers.len();
    let plural = if n == 1 { "" } else { "s" };
    Some(match driver {
        Some((id, (name, _))) => format!("{n} viewer{plural}, {id} {name} drives"),
        None => format!("{n} viewer{plural}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Reason;
    use crate::runtime::RuntimeEvent;

    fn request(actor: u64, task: u64, name: &str) -> RuntimeEvent {
        RuntimeEvent::LockRequested {
            actor: ActorId(actor),
            task,
            task_name: name.into(),
            reason: Reason::Pause,
            location: "job.py:7".into(),
            peek: None,
        }
    }

    #[test]
    fn a_tree_row_names_the_task_its_process_paused_in() {
        let mut s = ConsoleState::new((10, 40), (10, 40));
        let t = Instant::now();
        for (id, parent) in [(1, None), (2, Some(1)), (3, Some(1))] {
            s.apply(
                RuntimeEvent::ActorStarted {
                    actor: ActorId(id),
                    name: format!("w{id}"),
                    pid: 100 + u32::try_from(id).expect("small"),
                    parent: parent.map(ActorId),
                },
                t,
            );
        }
        s.apply(request(2, 1, "square task 1a2b3c4d"), t);
        s.apply(request(3, 1, "Counter.step task 99aa"), t);
        s.apply(request(2, 2, "other thread"), t);
        s.apply(
            RuntimeEvent::LockGranted {
                actor: ActorId(3),
                task: 1,
                epoch: 1,
            },
            t,
        );
        let ui = UiState::default();
        let m = model(&s, &ui, t);
        let names: Vec<&str> = m.tree.rows.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "w1",
                "w2 ▸ square task 1a2b3c4d +1",
                "w3 ▸ Counter.step task 99aa"
            ]
        );
    }
}
