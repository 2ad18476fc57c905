//! The full-screen console: one `select!` loop over keys, runtime events, signals and the
//! frame timer. Events are applied to [`state::ConsoleState`] as they arrive (that is where
//! PTY output is parsed); frames are drawn only when something changed, at a capped rate,
//! so a flooding actor costs parsing time but never a redraw per chunk. Keys (read on a
//! thread of their own, `keys.rs`) are looked at first and trigger a quick redraw, so
//! typing stays responsive during a flood.

mod feed;
mod input;
mod keys;
pub mod outlog;
mod search;
pub mod state;
mod term;
pub mod update;
pub mod view;

use std::time::{Duration, Instant};

use actor_tui_ui::Theme;
use tokio::sync::mpsc;

use crate::runtime::{Runtime, RuntimeCommand, RuntimeEvent};
use input::Action;
use state::ConsoleState;
use update::Model;

/// Frame interval when only output changed (about 30 frames a second).
const OUTPUT_FRAME: Duration = Duration::from_millis(33);
/// Frame interval after a keystroke: echo should feel immediate.
const KEY_FRAME: Duration = Duration::from_millis(4);
/// How long after a key typed into an actor's terminal its output counts as the echo.
const ECHO_WINDOW: Duration = Duration::from_millis(250);
/// Runtime events applied per loop turn before keys get another look...
const EVENT_BATCH: usize = 256;
/// ...or this many bytes of PTY output, whichever is first, so a keystroke never waits long
/// behind a flood (applying output only keeps bytes: the parse waits for the frame).
const OUTPUT_BATCH_BYTES: usize = 1024 * 1024;

struct Console {
    model: Model,
    /// Time spent in each draw, for the frame-time figures logged at exit.
    frame_times: Vec<Duration>,
    theme: Theme,
    commands: mpsc::Sender<RuntimeCommand>,
}

fn output_len(ev: &RuntimeEvent) -> usize {
    match ev {
        RuntimeEvent::Output { data, .. } => data.len(),
        _ => 0,
    }
}

/// Pane sizes for a terminal size: (output rows, cols), (REPL rows, cols).
pub fn pane_sizes(cols: u16, rows: u16) -> ((u16, u16), (u16, u16)) {
    let a = actor_tui_ui::layout(ratatui::layout::Rect::new(0, 0, cols, rows));
    (a.output_size(), a.repl_size())
}

/// What the config file says of the console.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Key bindings over the defaults.
    pub keys: input::Keymap,
    /// Lines of scrollback per screen (default [`state::SCROLLBACK`]).
    pub scrollback: Option<usize>,
    /// No colours (as `NO_COLOR`).
    pub mono: bool,
}

/// Bindings from the config file's `[keys]` table (names already checked when read).
pub fn keymap<'a>(pairs: impl IntoIterator<Item = (&'a String, &'a String)>) -> input::Keymap {
    input::Keymap::from_names(pairs)
}

/// Runs the console until the run ends; returns the exit code. The terminal is restored
/// on every way out.
pub async fn run(rt: Runtime) -> i32 {
    run_with(rt, Options::default()).await
}

/// [`run`] with the config file's console options.
pub async fn run_with(mut rt: Runtime, opts: Options) -> i32 {
    if let Some(n) = opts.scrollback {
        state::set_scrollback(n);
    }
    let mut guard = match term::TerminalGuard::enter() {
        Ok(g) => g,
        Err(e) => {
            eprintln!("actor-tui: cannot use this terminal ({e}); use --headless");
            // Nothing can be shown or typed: end the run. Nobody will read the events.
            drop(rt.events);
            let _ = rt.commands.send(RuntimeCommand::Quit).await;
            return rt.task.await.unwrap_or(1);
        }
    };
    let size = guard.terminal.size().unwrap_or_default();
    let (out, repl) = pane_sizes(size.width, size.height);
    let mut c = Console {
        model: Model::new(ConsoleState::new(out, repl), Instant::now()),
        frame_times: Vec::new(),
        theme: Theme {
            color: !opts.mono && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        },
        commands: rt.commands.clone(),
    };
    c.model.ui.keys = opts.keys;
    c.model.state.me = rt.viewer;
    c.send(RuntimeCommand::Resize {
        rows: out.0,
        cols: out.1,
    });

    let mut keys = match keys::KeyReader::start() {
        Ok(k) => k,
        Err(e) => {
            drop(guard);
            eprintln!("actor-tui: cannot start the key reader: {e}");
            return 1;
        }
    };
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
    // When a key last went to an actor's terminal (F6): its echo is output of that actor,
    // and is drawn as soon as a key's own effect would be, not at the flood's frame rate.
    let mut typed_at: Option<Instant> = None;

    loop {
        let wake = due.map(tokio::time::Instant::from_std);
        tokio::select! {
            biased;
            key = keys.next() => {
                let cmds = match key {
                    Some(Ok(ev)) => {
                        let action = input::map_with(&ev, c.model.ui.mode, c.model.overlay_kind(), &c.model.ui.keys);
                        if matches!(action, Action::Type(_)) {
                            typed_at = Some(Instant::now());
                        }
                        if action == Action::Resize {
                            match crossterm::terminal::size() {
                                Ok((cols, rows)) => c.model.resize(cols, rows),
                                Err(_) => Vec::new(),
                            }
                        } else {
                            c.model.on_action(action, Instant::now())
                        }
                    }
                    // The terminal is gone: nobody can drive the console any more.
                    _ => c.model.quit(),
                };
                c.send_all(cmds);
                if let Some(text) = c.model.ui.editor.take() {
                    // The editor has the terminal to itself: no key reader, normal modes.
                    keys.pause();
                    let said = edit(&text).await;
                    if let Err(e) = term::resume(&mut guard.terminal) {
                        tracing::warn!(error = %e, "cannot take the terminal back");
                    }
                    keys.resume();
                    c.model.flash(said);
                }
                due = Some(due.map_or(last_draw + KEY_FRAME, |d| d.min(last_draw + KEY_FRAME)));
            }
            // Before runtime events: under a flood they are always ready, and a frame that
            // is due must still be drawn.
            () = async { if let Some(w) = wake { tokio::time::sleep_until(w).await } }, if wake.is_some() => {
                c.draw(&mut guard.terminal);
                last_draw = Instant::now();
                due = None;
            }
            ev = rt.events.recv() => {
                let Some(ev) = ev else { break };
                let mut bytes = output_len(&ev);
                let mut batch = vec![ev];
                while batch.len() < EVENT_BATCH && bytes < OUTPUT_BATCH_BYTES {
                    match rt.events.try_recv() {
                        Ok(ev) => {
                            bytes += output_len(&ev);
                            batch.push(ev);
                        }
                        Err(_) => break,
                    }
                }
                let echo = typed_at.is_some_and(|t| t.elapsed() < ECHO_WINDOW)
                    && c.model.ui.terminal.is_some_and(|id| {
                        batch
                            .iter()
                            .any(|e| matches!(e, RuntimeEvent::Output { actor, .. } if *actor == id))
                    });
                let cmds = c.model.on_events(batch, Instant::now());
                c.send_all(cmds);
                let frame = if echo { KEY_FRAME } else { OUTPUT_FRAME };
                due = Some(due.map_or(last_draw + frame, |d| d.min(last_draw + frame)));
                if c.model.state.exit_code.is_some() {
                    break;
                }
                // Under a flood this branch is always ready, and the frame timer may not get
                // to fire until the task yields: draw here once the frame is due.
                if due.is_some_and(|d| Instant::now() >= d) {
                    c.draw(&mut guard.terminal);
                    last_draw = Instant::now();
                    due = None;
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
    // An attached console leaves the run as it found it: nothing to print.
    if c.model.state.exit_code.is_some() && rt.viewer.is_none() {
        print_final_screen(&mut c.model);
    }
    match c.model.state.exit_code {
        Some(code) => code,
        None => rt.task.await.unwrap_or(1),
    }
}

impl Console {
    fn send(&mut self, cmd: RuntimeCommand) {
        // Bounded (64): a full queue means the engine is far behind; say so, do not block keys.
        if self.commands.try_send(cmd).is_err() {
            self.model
                .flash("the runtime is busy; command dropped, try again".into());
        }
    }

    fn send_all(&mut self, cmds: Vec<RuntimeCommand>) {
        for cmd in cmds {
            self.send(cmd);
        }
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

    fn draw<B: ratatui::backend::Backend>(&mut self, terminal: &mut ratatui::Terminal<B>) {
        let now = Instant::now();
        if let Err(e) = draw_model(&mut self.model, terminal, &self.theme, now) {
            tracing::warn!(error = %e, "draw failed");
        }
        // Bounded: a long session keeps the most recent 100k frames (800 KB).
        if self.frame_times.len() >= 100_000 {
            self.frame_times.drain(..50_000);
        }
        self.frame_times.push(now.elapsed());
    }
}

/// Opens `text` in `$VISUAL` / `$EDITOR` (else `vi`) with the terminal restored to normal,
/// and waits for it. The file is 0600 in a fresh private directory, removed afterwards.
/// Returns what to tell the user.
async fn edit(text: &str) -> String {
    term::restore();
    let editor = ["VISUAL", "EDITOR"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|e| !e.trim().is_empty()))
        .unwrap_or_else(|| "vi".into());
    let dir = match crate::runtime::private_dir::PrivateDir::fresh(
        &std::env::temp_dir(),
        "actor-tui-edit",
    ) {
        Ok(d) => d,
        Err(e) => return format!("cannot open an editor: {e}"),
    };
    let said = match dir.write_file("pane.txt", text.as_bytes(), false) {
        Err(e) => format!("cannot open an editor: {e}"),
        Ok(path) => {
            // Through the shell, as git runs it: EDITOR may carry arguments (`code -w`).
            let status = tokio::process::Command::new("sh")
                .arg("-c")
                .arg(format!("{editor} \"$1\""))
                .arg("sh")
                .arg(&path)
                .status()
                .await;
            // Ours, in a directory made for it: removed whatever the editor did.
            let _ = std::fs::remove_file(&path);
            match status {
                Ok(s) if s.success() => format!("back from {editor}"),
                Ok(s) => format!("{editor} ended with {s}"),
                Err(e) => format!("cannot run {editor}: {e}"),
            }
        }
    };
    let _ = std::fs::remove_dir(dir.path());
    said
}

/// Once the console is gone, the end of the run stays visible: the first program's last
/// screen (what its output pane showed, as plain text) and how it ended are printed to the
/// restored terminal, so a test summary or a late traceback is not lost with the alternate
/// screen.
fn print_final_screen(model: &mut Model) {
    use std::io::Write;
    let first = crate::proto::ActorId(1);
    model.state.show(&[first]);
    let Some(a) = model.state.actor_mut(first) else {
        return;
    };
    let mut text = String::new();
    if let Some(p) = &mut a.output {
        // The user may have scrolled back: show the bottom, as the program left it.
        p.screen_mut().set_scrollback(0);
        let contents = p.screen().contents();
        let lines: Vec<&str> = contents.lines().map(str::trim_end).collect();
        let end = lines
            .iter()
            .rposition(|l| !l.is_empty())
            .map_or(0, |i| i + 1);
        for l in &lines[..end] {
            text.push_str(l);
            text.push('\n');
        }
    }
    if let Some(exit) = a.exited {
        text.push_str(&format!("actor-tui: {} ended: {exit}\n", a.name));
    }
    let mut out = std::io::stdout();
    // Nothing to do if the terminal is gone.
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}

/// Draws one frame of `model` on any ratatui backend (the real terminal, or `TestBackend`
/// in tests) and records where the panes went.
pub fn draw_model<B: ratatui::backend::Backend>(
    model: &mut Model,
    terminal: &mut ratatui::Terminal<B>,
    theme: &Theme,
    now: Instant,
) -> Result<(), B::Error> {
    view::apply_scroll(&mut model.state, &mut model.ui);
    let mut areas = model.areas;
    terminal.draw(|frame| {
        let m = view::model(&model.state, &model.ui, now);
        areas = actor_tui_ui::draw(frame, &m, theme);
    })?;
    model.areas = areas;
    Ok(())
}
