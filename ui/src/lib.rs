//! Pure rendering of actor-tui's console: plain view-models in, ratatui widgets out. No
//! terminal, no runtime, no clocks: the console builds a [`ScreenModel`] from its state and
//! calls [`draw`]. Everything here is tested with snapshots over ratatui's `TestBackend`.

use std::time::Duration;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span, Text};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Wrap};
use ratatui_textarea::TextArea;
use tui_term::widget::{Cursor, PseudoTerminal};

/// What an actor is doing, as the tree shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActorStatus {
    Running,
    /// Waiting for the debug lock.
    Queued,
    /// Holds the lock: its REPL is open.
    InRepl,
    /// Asked for a post-mortem (waiting or in it) or died of a panic.
    Crashed,
    /// Teardown started.
    Cancelling,
    /// Teardown waits because it or a descendant is debugging.
    TeardownWaiting,
    /// Blocked reading its own terminal (`input()`, a prompt): type with F6 or the REPL line.
    WantsInput,
    Exited {
        code: Option<i32>,
        signal: Option<i32>,
    },
    /// Ended by `q` in its debugger.
    Quit,
    /// A remote actor whose link died without a word: how it ended is unknown.
    Lost,
    /// No CPU, output or frame for a while, while others depend on it.
    PossiblyHung,
}

/// One visible line of the actor tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeRow {
    pub depth: u16,
    pub id: String,
    pub name: String,
    pub pid: u32,
    pub status: ActorStatus,
    pub has_children: bool,
    pub collapsed: bool,
}

/// The actor tree pane.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TreeModel {
    pub rows: Vec<TreeRow>,
    pub selected: Option<usize>,
}

/// A holder or a waiter of the debug lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockEntry {
    pub actor: String,
    pub name: String,
    pub task: String,
    pub reason: String,
    pub location: String,
    /// How long it has held, or waited.
    pub elapsed: Duration,
}

/// The lock pane: holder, a warning about it (stale, suspect), and the queue in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LockModel {
    pub holder: Option<LockEntry>,
    pub warning: Option<String>,
    pub queue: Vec<LockEntry>,
    /// The waiter the queue keys act on (shown while the lock pane has the focus).
    pub selected: Option<usize>,
    /// Who held the lock over the run, one cell per column (a letter per holder, `·`
    /// free), once there has been a session.
    pub timeline: Option<String>,
    /// The admission rules in force with what each let go, on one line.
    pub rules: Option<String>,
}

/// The REPL pane: the holder's session, or (nobody holds) the selected actor's output.
#[derive(Debug)]
pub struct ReplModel<'a> {
    pub title: String,
    pub screen: Option<&'a vt100::Screen>,
    /// Shown above the screen when nobody holds the lock.
    pub notice: Option<String>,
    pub input: &'a TextArea<'static>,
    /// The session waits for a line: the input accepts typing.
    pub input_enabled: bool,
}

/// Which view the bottom pane shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BottomTab {
    Output,
    Dump,
}

/// The bottom pane: the selected actor's PTY output, or its latest task dump.
#[derive(Debug)]
pub struct BottomModel<'a> {
    pub tab: BottomTab,
    pub title: String,
    pub output: Option<&'a vt100::Screen>,
    pub dump: Option<&'a str>,
    pub dump_scroll: u16,
}

/// Panes that can have the focus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pane {
    Tree,
    Lock,
    Repl,
    Bottom,
}

/// What floats above the panes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Overlay {
    None,
    /// The key table, then the config file's own bindings (`key`, `action`).
    Help(Vec<(String, String)>),
    Confirm(String),
}

/// The status bar.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusModel {
    /// `INPUT` or `NAV`.
    pub mode: String,
    pub message: Option<String>,
}

/// Everything one frame shows.
#[derive(Debug)]
pub struct ScreenModel<'a> {
    pub tree: TreeModel,
    pub lock: LockModel,
    pub repl: ReplModel<'a>,
    pub bottom: BottomModel<'a>,
    pub status: StatusModel,
    pub focus: Pane,
    pub overlay: Overlay,
}

/// Colours on or off (`NO_COLOR`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Theme {
    pub color: bool,
}

impl Theme {
    fn fg(&self, c: Color) -> Style {
        if self.color {
            Style::default().fg(c)
        } else {
            Style::default()
        }
    }

    fn border(&self, focused: bool) -> Style {
        match (focused, self.color) {
            (true, true) => Style::default().fg(Color::Cyan),
            (true, false) => Style::default().add_modifier(Modifier::BOLD),
            (false, _) => Style::default(),
        }
    }
}

/// Where each pane is, for mouse hits and for sizing PTYs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Areas {
    pub tree: Rect,
    pub lock: Rect,
    pub repl: Rect,
    pub input: Rect,
    pub bottom: Rect,
    pub status: Rect,
}

impl Areas {
    /// The pane under a screen position.
    pub fn pane_at(&self, x: u16, y: u16) -> Option<Pane> {
        let pos = ratatui::layout::Position::new(x, y);
        [
            (self.tree, Pane::Tree),
            (self.lock, Pane::Lock),
            (self.repl, Pane::Repl),
            (self.bottom, Pane::Bottom),
        ]
        .into_iter()
        .find(|(r, _)| r.contains(pos))
        .map(|(_, p)| p)
    }

    /// Rows and columns inside the bottom pane's border: the size actor PTYs are given.
    /// Rows and columns inside the REPL pane's text area (its borders and the input line
    /// taken off).
    pub fn repl_size(&self) -> (u16, u16) {
        (
            self.repl.height.saturating_sub(3).max(1),
            self.repl.width.saturating_sub(2).max(1),
        )
    }

    /// The row of the tree's visible list at screen row `y`, given the selected row (the
    /// tree scrolls to keep it shown); `None` on the borders.
    pub fn tree_row_at(&self, y: u16, selected: Option<usize>) -> Option<usize> {
        let inner_h = self.tree.height.saturating_sub(2);
        if y <= self.tree.y || y > self.tree.y + inner_h {
            return None;
        }
        Some(usize::from(y - self.tree.y - 1) + tree_offset(selected, inner_h))
    }

    pub fn output_size(&self) -> (u16, u16) {
        (
            self.bottom.height.saturating_sub(2).max(1),
            self.bottom.width.saturating_sub(2).max(1),
        )
    }
}

/// Splits the screen: tree and lock on the left, REPL and output/dump on the right, a status
/// line at the bottom. Works from 80×24 up.
pub fn layout(area: Rect) -> Areas {
    let [main, status] = Layout::vertical([Constraint::Min(3), Constraint::Length(1)]).areas(area);
    let left_w = (main.width * 32 / 100).clamp(24.min(main.width), 44);
    let [left, right] =
        Layout::horizontal([Constraint::Length(left_w), Constraint::Min(10)]).areas(main);
    let [tree, lock] =
        Layout::vertical([Constraint::Percentage(58), Constraint::Percentage(42)]).areas(left);
    let [repl_all, bottom] =
        Layout::vertical([Constraint::Percentage(60), Constraint::Percentage(40)]).areas(right);
    let inner = repl_all.inner(ratatui::layout::Margin::new(1, 1));
    let input = Rect {
        x: inner.x,
        y: inner.bottom().saturating_sub(1),
        width: inner.width,
        height: u16::from(inner.height > 0),
    };
    Areas {
        tree,
        lock,
        repl: repl_all,
        input,
        bottom,
        status,
    }
}

/// Draws one frame and returns where the panes went.
pub fn draw(frame: &mut Frame<'_>, m: &ScreenModel<'_>, theme: &Theme) -> Areas {
    let areas = layout(frame.area());
    draw_tree(frame, areas.tree, &m.tree, m.focus == Pane::Tree, theme);
    draw_lock(frame, areas.lock, &m.lock, m.focus == Pane::Lock, theme);
    draw_repl(frame, &areas, &m.repl, m.focus == Pane::Repl, theme);
    draw_bottom(
        frame,
        areas.bottom,
        &m.bottom,
        m.focus == Pane::Bottom,
        theme,
    );
    draw_status(frame, areas.status, &m.status, theme);
    match &m.overlay {
        Overlay::None => {}
        Overlay::Help(bound) => draw_help(frame, bound, theme),
        Overlay::Confirm(q) => draw_confirm(frame, q, theme),
    }
    areas
}

fn block<'a>(title: impl Into<Line<'a>>, focused: bool, theme: &Theme) -> Block<'a> {
    Block::default()
        .borders(Borders::ALL)
        .border_style(theme.border(focused))
        .title(title)
}

/// Short label and style for a status.
pub fn status_label(s: ActorStatus, theme: &Theme) -> (String, Style) {
    match s {
        ActorStatus::Running => ("running".into(), theme.fg(Color::Green)),
        ActorStatus::Queued => ("queued".into(), theme.fg(Color::Yellow)),
        ActorStatus::InRepl => (
            "in REPL".into(),
            theme.fg(Color::Magenta).add_modifier(Modifier::BOLD),
        ),
        ActorStatus::Crashed => ("crashed".into(), theme.fg(Color::Red)),
        ActorStatus::Cancelling => ("cancelling".into(), theme.fg(Color::Yellow)),
        ActorStatus::TeardownWaiting => ("teardown waits".into(), theme.fg(Color::Yellow)),
        ActorStatus::WantsInput => (
            "wants input".into(),
            theme.fg(Color::Cyan).add_modifier(Modifier::BOLD),
        ),
        ActorStatus::Quit => ("quit".into(), theme.fg(Color::Cyan)),
        ActorStatus::Lost => ("lost".into(), theme.fg(Color::Red)),
        ActorStatus::PossiblyHung => ("hung?".into(), theme.fg(Color::Red)),
        ActorStatus::Exited {
            code: Some(0),
            signal: None,
        } => (
            "exited 0".into(),
            theme.fg(Color::DarkGray).add_modifier(Modifier::DIM),
        ),
        ActorStatus::Exited {
            code: Some(c),
            signal: None,
        } => (format!("exited {c}"), theme.fg(Color::Red)),
        ActorStatus::Exited {
            signal: Some(s), ..
        } => (format!("killed ({s})"), theme.fg(Color::Red)),
        ActorStatus::Exited {
            code: None,
            signal: None,
        } => ("gone".into(), theme.fg(Color::DarkGray)),
    }
}

/// First visible tree row for a selection and a pane height (the console maps clicks with it).
pub fn tree_offset(selected: Option<usize>, height: u16) -> usize {
    let height = usize::from(height);
    match selected {
        Some(s) if height > 0 && s >= height => s + 1 - height,
        _ => 0,
    }
}

fn draw_tree(frame: &mut Frame<'_>, area: Rect, m: &TreeModel, focused: bool, theme: &Theme) {
    let title = format!(" Actors ({}) ", m.rows.len());
    let b = block(title, focused, theme);
    let inner = b.inner(area);
    frame.render_widget(b, area);
    let offset = tree_offset(m.selected, inner.height);
    let lines: Vec<Line<'_>> = m
        .rows
        .iter()
        .enumerate()
        .skip(offset)
        .take(usize::from(inner.height))
        .map(|(i, r)| tree_line(r, m.selected == Some(i), usize::from(inner.width), theme))
        .collect();
    frame.render_widget(Paragraph::new(lines), inner);
}

/// One tree row: indentation, fold marker, id and name on the left, status flush right.
/// The name is shortened before the status is, since the status is what changes.
fn tree_line<'a>(r: &'a TreeRow, selected: bool, width: usize, theme: &Theme) -> Line<'a> {
    let marker = match (r.has_children, r.collapsed) {
        (false, _) => "  ",
        (true, false) => "▾ ",
        (true, true) => "▸ ",
    };
    let indent = "  ".repeat(usize::from(r.depth));
    let (label, style) = status_label(r.status, theme);
    let fixed = indent.chars().count() + 2 + r.id.len() + 1 + label.chars().count() + 1;
    let room = width.saturating_sub(fixed);
    let name: String = if r.name.chars().count() > room {
        let keep = room.saturating_sub(1);
        r.name
            .chars()
            .take(keep)
            .chain(std::iter::once('…'))
            .collect()
    } else {
        r.name.clone()
    };
    let used = fixed + name.chars().count();
    let pad = " ".repeat(width.saturating_sub(used) + 1);
    let mut line = Line::from(vec![
        Span::raw(indent),
        Span::raw(marker),
        Span::styled(
            format!("{} {name}", r.id),
            Style::default().add_modifier(Modifier::BOLD),
        ),
        Span::raw(pad),
        Span::styled(label, style),
    ]);
    if selected {
        line = line.style(Style::default().add_modifier(Modifier::REVERSED));
    }
    line
}

/// "1.2s", "42s", "3m05s": short enough for a narrow pane.
pub fn short_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s < 10 {
        format!("{:.1}s", d.as_secs_f64())
    } else if s < 60 {
        format!("{s}s")
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

/// `s` cut from the left to at most `width` columns (a leading `…` says so), so the end of
/// a long path, `file.py:line`, stays visible.
pub fn fit_tail(s: &str, width: usize) -> String {
    use unicode_width::UnicodeWidthStr;
    if s.width() <= width {
        return s.to_owned();
    }
    let mut tail = String::new();
    let mut used = 1;
    for c in s.chars().rev() {
        let w = unicode_width::UnicodeWidthChar::width(c).unwrap_or(0);
        if used + w > width {
            break;
        }
        used += w;
        tail.insert(0, c);
    }
    format!("…{tail}")
}

/// Columns a waiter's location keeps before its task name gets any.
const LOCATION_MIN: usize = 16;

/// `s` cut to `width` columns from the right, with an ellipsis: the start stays.
pub fn fit_head(s: &str, width: usize) -> String {
    use unicode_width::UnicodeWidthStr;
    if s.width() <= width {
        return s.to_owned();
    }
    let mut head = String::new();
    let mut used = 1;
    for c in s.chars() {
        let w = unicode_width::UnicodeWidthChar::width(c).unwrap_or(0);
        if used + w > width {
            break;
        }
        used += w;
        head.push(c);
    }
    format!("{head}…")
}

fn draw_lock(frame: &mut Frame<'_>, area: Rect, m: &LockModel, focused: bool, theme: &Theme) {
    let title = format!(" Lock · {} waiting ", m.queue.len());
    // Inside the borders, after the indent.
    let room = usize::from(area.width.saturating_sub(2));
    let b = block(title, focused, theme);
    let mut lines: Vec<Line<'_>> = Vec::new();
    match &m.holder {
        Some(h) => {
            lines.push(Line::from(vec![
                Span::styled(
                    "holder ",
                    theme.fg(Color::Magenta).add_modifier(Modifier::BOLD),
                ),
                Span::styled(
                    format!("{} {}", h.actor, h.name),
                    Style::default().add_modifier(Modifier::BOLD),
                ),
                Span::raw(format!(" {}", short_duration(h.elapsed))),
            ]));
            lines.push(Line::from(format!("  {} · {}", h.reason, h.task)));
            lines.push(Line::from(format!(
                "  {}",
                fit_tail(&h.location, room.saturating_sub(2))
            )));
        }
        None => lines.push(Line::styled("free", theme.fg(Color::Green))),
    }
    if let Some(w) = &m.warning {
        lines.push(Line::styled(
            format!("⚠ {w}"),
            theme.fg(Color::Red).add_modifier(Modifier::BOLD),
        ));
    }
    if let Some(t) = &m.timeline {
        lines.push(Line::from(vec![
            Span::styled("held ", Style::default().add_modifier(Modifier::DIM)),
            Span::styled(
                fit_tail(t, room.saturating_sub(5)),
                theme.fg(Color::Magenta),
            ),
        ]));
    }
    if let Some(r) = &m.rules {
        lines.push(Line::styled(fit_head(r, room), theme.fg(Color::Cyan)));
    }
    if !m.queue.is_empty() {
        lines.push(Line::styled(
            "queue",
            Style::default().add_modifier(Modifier::BOLD),
        ));
    }
    // Only what fits is laid out: a queue of thousands costs a screenful per frame. The
    // selected waiter stays in view.
    let fits = usize::from(area.height.saturating_sub(2)).saturating_sub(lines.len()) / 2 + 1;
    let skip = m.selected.map_or(0, |s| (s + 1).saturating_sub(fits));
    for (i, w) in m.queue.iter().enumerate().skip(skip).take(fits) {
        let mark = if m.selected == Some(i) { "▸" } else { "" };
        lines.push(Line::from(vec![
            Span::styled(
                format!("{mark}{}. ", i + 1),
                if mark.is_empty() {
                    Style::default()
                } else {
                    theme.fg(Color::Yellow).add_modifier(Modifier::REVERSED)
                },
            ),
            Span::styled(
                format!("{} {}", w.actor, w.name),
                Style::default().add_modifier(Modifier::BOLD),
            ),
            Span::raw(format!(" {} {}", w.reason, short_duration(w.elapsed))),
        ]));
        // Which task waits, then where: the task keeps at most half the room, the
        // location's end (file:line) the rest; a narrow pane shows only the location.
        let room = room.saturating_sub(3);
        let task_room = (room / 2).min(room.saturating_sub(LOCATION_MIN + 3));
        let line = if task_room >= 4 {
            let task = fit_head(&w.task, task_room);
            let rest = room - unicode_width::UnicodeWidthStr::width(task.as_str()) - 3;
            format!("   {task} · {}", fit_tail(&w.location, rest))
        } else {
            format!("   {}", fit_tail(&w.location, room))
        };
        lines.push(Line::from(line));
    }
    frame.render_widget(Paragraph::new(lines).block(b), area);
}

fn draw_repl(
    frame: &mut Frame<'_>,
    areas: &Areas,
    m: &ReplModel<'_>,
    focused: bool,
    theme: &Theme,
) {
    let area = areas.repl;
    let b = block(m.title.clone(), focused, theme);
    let inner = b.inner(area);
    frame.render_widget(b, area);
    let mut body = Rect {
        height: inner.height.saturating_sub(1),
        ..inner
    };
    if let Some(n) = &m.notice {
        let note = Rect { height: 1, ..body };
        frame.render_widget(
            Paragraph::new(Line::styled(n.clone(), theme.fg(Color::Yellow))),
            note,
        );
        body.y += 1;
        body.height = body.height.saturating_sub(1);
    }
    if let Some(screen) = m.screen {
        let mut cursor = Cursor::default();
        cursor.hide();
        frame.render_widget(PseudoTerminal::new(screen).cursor(cursor), body);
    }
    if areas.input.height == 0 {
        return;
    }
    let [prompt, field] =
        Layout::horizontal([Constraint::Length(2), Constraint::Min(1)]).areas(areas.input);
    if m.input_enabled {
        frame.render_widget(
            Paragraph::new(Span::styled(
                "› ",
                theme.fg(Color::Cyan).add_modifier(Modifier::BOLD),
            )),
            prompt,
        );
        frame.render_widget(m.input, field);
    } else {
        frame.render_widget(
            Paragraph::new(Span::styled(
                "  (input opens when a session waits for a line)",
                Style::default().add_modifier(Modifier::DIM),
            )),
            areas.input,
        );
    }
}

fn draw_bottom(
    frame: &mut Frame<'_>,
    area: Rect,
    m: &BottomModel<'_>,
    focused: bool,
    theme: &Theme,
) {
    let tab = |name: &'static str, on: bool| {
        if on {
            Span::styled(
                name,
                Style::default().add_modifier(Modifier::BOLD | Modifier::REVERSED),
            )
        } else {
            Span::raw(name)
        }
    };
    let title = Line::from(vec![
        Span::raw(" "),
        tab("Output", m.tab == BottomTab::Output),
        Span::raw(" "),
        tab("Dump", m.tab == BottomTab::Dump),
        Span::raw(format!(" {} ", m.title)),
    ]);
    let b = block(title, focused, theme);
    match m.tab {
        BottomTab::Output => {
            let inner = b.inner(area);
            frame.render_widget(b, area);
            if let Some(screen) = m.output {
                let mut cursor = Cursor::default();
                cursor.hide();
                frame.render_widget(PseudoTerminal::new(screen).cursor(cursor), inner);
            } else {
                frame.render_widget(
                    Paragraph::new(Span::styled(
                        "no output yet",
                        Style::default().add_modifier(Modifier::DIM),
                    )),
                    inner,
                );
            }
        }
        BottomTab::Dump => {
            let text = m.dump.map_or_else(
                || Text::raw("no dump yet: press F5 (or t) to ask this actor"),
                Text::raw,
            );
            frame.render_widget(
                Paragraph::new(text)
                    .block(b)
                    .wrap(Wrap { trim: false })
                    .scroll((m.dump_scroll, 0)),
                area,
            );
        }
    }
}

fn draw_status(frame: &mut Frame<'_>, area: Rect, m: &StatusModel, theme: &Theme) {
    let mode_style = theme
        .fg(Color::Black)
        .bg(if theme.color {
            Color::Cyan
        } else {
            Color::Reset
        })
        .add_modifier(
            Modifier::BOLD
                | if theme.color {
                    Modifier::empty()
                } else {
                    Modifier::REVERSED
                },
        );
    let mut spans = vec![Span::styled(format!(" {} ", m.mode), mode_style)];
    // The latest message comes before the key hints: on a narrow terminal the hints (in
    // F1 anyway) are what is cut, not the news.
    if let Some(msg) = &m.message {
        spans.push(Span::styled(format!(" {msg} │"), theme.fg(Color::Yellow)));
    }
    spans.push(Span::raw(status_keys()));
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// One line of the key table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyHelp {
    /// The keys, as written for people (`"F5 / t"`); the first one is the F-key, if any.
    pub keys: &'static str,
    pub what: &'static str,
    /// The word for it in the status bar, for the few keys shown there.
    pub bar: Option<&'static str>,
}

const fn key(keys: &'static str, what: &'static str, bar: Option<&'static str>) -> KeyHelp {
    KeyHelp { keys, what, bar }
}

/// Every key: the help overlay and the status bar are drawn from this one table (and the
/// console's keymap is tested against it).
pub const KEYS: &[KeyHelp] = &[
    key("F1 / ?", "this help", Some("help")),
    key(
        "F5 / t",
        "dump the selected actor's tasks and threads",
        Some("dump"),
    ),
    key(
        "F6",
        "type into the selected actor's own terminal (F6 again: back)",
        Some("terminal"),
    ),
    key(
        "F7 / b",
        "break in: pause the selected actor where it runs, via the lock",
        Some("break"),
    ),
    key(
        "F8 / r",
        "force-release the debug lock (confirm with y)",
        Some("release"),
    ),
    key(
        "F9 / x",
        "cancel the selected actor's subtree (confirm; again to force)",
        Some("cancel"),
    ),
    key(
        "F10 / q",
        "quit: tear the tree down, or detach if attached (y)",
        Some("quit"),
    ),
    key(
        "T / Z / D",
        "(nav) snapshot all actors · freeze/resume · drive (attached)",
        None,
    ),
    key(
        "p d s C A",
        "(lock pane) promote, defer, skip, continue or auto-continue",
        None,
    ),
    key(
        "H K R E",
        "(nav) sessions · rules, crashes · add a rule · $EDITOR",
        None,
    ),
    key(
        "/ n N",
        "(nav) search the pane, next, previous (tree: all output)",
        None,
    ),
    key(
        "Esc / i",
        "(input) to navigation · (nav) back to the input",
        None,
    ),
    key("Enter", "(input) send the line to the session", None),
    key("Up / Down", "(input) history of this actor's lines", None),
    key("Tab", "(input) complete the line", None),
    key(
        "Ctrl-C",
        "(input) clear the line; never signals anyone",
        None,
    ),
    key(
        "↑↓←→ hjkl",
        "(nav) move in the tree; collapse / expand",
        None,
    ),
    key(
        "Tab",
        "(nav) cycle panes; Output/Dump switch in the bottom pane",
        None,
    ),
    key(
        "PgUp / PgDn",
        "scroll the focused pane (mouse wheel too)",
        None,
    ),
    key("click", "select an actor or focus a pane", None),
];

/// The status bar's key hints, from [`KEYS`]: " F1 help  F5 dump ... ".
pub fn status_keys() -> String {
    let hints: Vec<String> = KEYS
        .iter()
        .filter_map(|k| {
            let first = k.keys.split(" / ").next()?;
            Some(format!("{first} {}", k.bar?))
        })
        .collect();
    format!(" {} ", hints.join("  "))
}

fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

fn draw_help(frame: &mut Frame<'_>, bound: &[(String, String)], theme: &Theme) {
    let mut lines: Vec<Line<'_>> = KEYS
        .iter()
        .map(|k| {
            Line::from(vec![
                Span::styled(
                    format!("{:<12}", k.keys),
                    theme.fg(Color::Cyan).add_modifier(Modifier::BOLD),
                ),
                Span::raw(k.what),
            ])
        })
        .collect();
    if !bound.is_empty() {
        lines.push(Line::styled(
            "your bindings (config file), over the keys above:",
            Style::default().add_modifier(Modifier::BOLD),
        ));
        for (k, action) in bound {
            lines.push(Line::from(vec![
                Span::styled(
                    format!("{k:<12}"),
                    theme.fg(Color::Cyan).add_modifier(Modifier::BOLD),
                ),
                Span::raw(action.clone()),
            ]));
        }
    }
    let area = centered(frame.area(), 76, lines.len() as u16 + 2);
    frame.render_widget(Clear, area);
    frame.render_widget(
        Paragraph::new(lines).block(block(" Keys (any key closes) ", true, theme)),
        area,
    );
}

fn draw_confirm(frame: &mut Frame<'_>, question: &str, theme: &Theme) {
    let area = centered(frame.area(), (question.len() as u16 + 6).max(30), 4);
    frame.render_widget(Clear, area);
    frame.render_widget(
        Paragraph::new(vec![
            Line::from(question.to_owned()),
            Line::styled(
                "y = yes, any other key = no",
                Style::default().add_modifier(Modifier::DIM),
            ),
        ])
        .block(block(" Confirm ", true, theme)),
        area,
    );
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod fit_tests {
    use super::{fit_head, fit_tail};

    #[test]
    fn a_long_location_keeps_its_end() {
        let loc = "/home/someone/projects/app/src/deeply/nested/module.py:123";
        let cut = fit_tail(loc, 20);
        assert!(cut.ends_with("module.py:123"), "{cut}");
        assert!(cut.starts_with('…'));
        assert_eq!(unicode_width::UnicodeWidthStr::width(cut.as_str()), 20);
        assert_eq!(fit_tail("a.py:1", 20), "a.py:1");
    }

    #[test]
    fn a_long_task_name_keeps_its_start() {
        let cut = fit_head("gw0 tests/test_something_long.py::test_y", 12);
        assert_eq!(cut, "gw0 tests/t…");
        assert_eq!(fit_head("main", 12), "main");
    }
}
