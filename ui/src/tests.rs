//! Snapshot tests: whole screens at 80×24 and 120×40 and each overlay, from fixtures that
//! look like a real run (a tree with a REPL open, a queue, output, a dump).

use std::time::Duration;

use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui_textarea::TextArea;

use super::*;

fn row(depth: u16, id: &str, name: &str, pid: u32, status: ActorStatus, kids: bool) -> TreeRow {
    TreeRow {
        depth,
        id: id.into(),
        name: name.into(),
        pid,
        status,
        has_children: kids,
        collapsed: false,
    }
}

fn entry(actor: &str, name: &str, task: &str, reason: &str, loc: &str, secs: u64) -> LockEntry {
    LockEntry {
        actor: actor.into(),
        name: name.into(),
        task: task.into(),
        reason: reason.into(),
        location: loc.into(),
        elapsed: Duration::from_millis(secs * 1000 + 300),
    }
}

struct Fixture {
    repl: vt100::Parser,
    output: vt100::Parser,
    input: TextArea<'static>,
    dump: String,
}

fn fixture(rows: u16, cols: u16) -> Fixture {
    let mut repl = vt100::Parser::new(rows, cols, 100);
    repl.process(
        b"\r\n--- actor-tui: worker-a paused at src/demo.rs:72:21 (task pauser) ---\r\n\
          type `help` for commands, `c` to continue\r\n(actor-tui) p round\r\nround = 1\r\n\
          (actor-tui) ",
    );
    let mut output = vt100::Parser::new(rows, cols, 100);
    output.process(
        b"worker-a: round 1, progress 50%\r\n\x1b[31mwarning:\x1b[0m disk almost full\r\n",
    );
    let mut input = TextArea::default();
    input.insert_str("locals");
    Fixture {
        repl,
        output,
        input,
        dump: "actor worker-a (pid 4845)\ntasks:\n  #1 main [thread tid 4845] running\n    #2 pauser [task] in debugger at src/demo.rs:72:21\nthreads:\n  tid 4845 worker-a [S]\n".into(),
    }
}

fn model<'a>(f: &'a Fixture, overlay: Overlay, tab: BottomTab) -> ScreenModel<'a> {
    ScreenModel {
        tree: TreeModel {
            rows: vec![
                row(0, "1", "demo", 4840, ActorStatus::Running, true),
                row(1, "2", "worker-a", 4845, ActorStatus::InRepl, false),
                row(1, "3", "worker-b", 4846, ActorStatus::Queued, false),
                row(1, "4", "crasher", 4847, ActorStatus::Crashed, false),
                row(
                    1,
                    "5",
                    "old",
                    4848,
                    ActorStatus::Exited {
                        code: Some(0),
                        signal: None,
                    },
                    false,
                ),
            ],
            selected: Some(1),
        },
        lock: LockModel {
            selected: None,
            holder: Some(entry(
                "2",
                "worker-a",
                "pauser",
                "pause",
                "src/demo.rs:72:21",
                3,
            )),
            warning: None,
            queue: vec![
                entry("3", "worker-b", "pauser", "pause", "src/demo.rs:72:21", 2),
                entry("4", "crasher", "main", "crash", "src/demo.rs:85:17", 1),
            ],
            timeline: Some("aaaa··bbb·a".into()),
            rules: Some("auto_continue w.py:3: 37".into()),
        },
        repl: ReplModel {
            title: " REPL · 2 worker-a · pause ".into(),
            screen: Some(f.repl.screen()),
            notice: None,
            input: &f.input,
            input_enabled: true,
        },
        bottom: BottomModel {
            tab,
            title: "2 worker-a".into(),
            output: Some(f.output.screen()),
            dump: Some(&f.dump),
            dump_scroll: 0,
        },
        status: StatusModel {
            mode: "INPUT".into(),
            message: Some("lock granted to 2 worker-a".into()),
        },
        focus: Pane::Repl,
        overlay,
    }
}

fn render(w: u16, h: u16, overlay: Overlay, tab: BottomTab, theme: Theme) -> TestBackend {
    let mut term = Terminal::new(TestBackend::new(w, h)).expect("terminal");
    let (rows, cols) = layout(Rect::new(0, 0, w, h)).output_size();
    let f = fixture(rows, cols);
    term.draw(|frame| {
        draw(frame, &model(&f, overlay.clone(), tab), &theme);
    })
    .expect("draw");
    term.backend().clone()
}

const COLOR: Theme = Theme { color: true };

#[test]
fn screen_80x24() {
    insta::assert_snapshot!(render(80, 24, Overlay::None, BottomTab::Output, COLOR));
}

#[test]
fn screen_120x40() {
    insta::assert_snapshot!(render(120, 40, Overlay::None, BottomTab::Output, COLOR));
}

#[test]
fn dump_tab_120x40() {
    insta::assert_snapshot!(render(120, 40, Overlay::None, BottomTab::Dump, COLOR));
}

#[test]
fn help_overlay_80x24() {
    insta::assert_snapshot!(render(
        80,
        24,
        Overlay::Help(Vec::new()),
        BottomTab::Output,
        COLOR
    ));
}

#[test]
fn help_overlay_lists_the_config_files_bindings() {
    let bound = vec![("F4".to_owned(), "force_release".to_owned())];
    let screen = format!(
        "{:?}",
        render(100, 40, Overlay::Help(bound), BottomTab::Output, COLOR)
    );
    assert!(screen.contains("your bindings"), "{screen}");
    assert!(
        screen.contains("F4") && screen.contains("force_release"),
        "{screen}"
    );
}

#[test]
fn confirm_overlay_80x24() {
    let q = Overlay::Confirm("Force-release the lock held by 2 worker-a?".into());
    insta::assert_snapshot!(render(80, 24, q, BottomTab::Output, COLOR));
}

#[test]
fn no_color_uses_no_colours() {
    let b = render(
        80,
        24,
        Overlay::None,
        BottomTab::Output,
        Theme { color: false },
    );
    let a = layout(Rect::new(0, 0, 80, 24));
    // PTY content keeps the program's own colours; everything we style stays uncoloured.
    for area in [a.tree, a.lock, a.status] {
        for pos in area.positions() {
            let cell = &b.buffer()[pos];
            assert_eq!(
                cell.fg,
                ratatui::style::Color::Reset,
                "coloured {cell:?} at {pos:?}"
            );
            assert!(
                matches!(cell.bg, ratatui::style::Color::Reset),
                "coloured background {cell:?} at {pos:?}"
            );
        }
    }
}

#[test]
fn lock_pane_marks_a_stale_holder() {
    let mut term = Terminal::new(TestBackend::new(40, 12)).expect("terminal");
    let m = LockModel {
        selected: None,
        holder: Some(entry("7", "hung", "main", "pause", "src/x.rs:1:1", 42)),
        warning: Some("suspect: no sign of life for 42s".into()),
        queue: vec![entry("8", "waiter", "main", "pause", "src/y.rs:2:2", 40)],
        timeline: None,
        rules: None,
    };
    term.draw(|f| draw_lock(f, f.area(), &m, false, &COLOR))
        .expect("draw");
    insta::assert_snapshot!(term.backend());
}

#[test]
fn tree_scrolls_to_keep_the_selection_visible() {
    let mut term = Terminal::new(TestBackend::new(40, 6)).expect("terminal");
    let rows: Vec<TreeRow> = (1..=50)
        .map(|i| {
            row(
                1,
                &i.to_string(),
                &format!("actor-{i}"),
                1000 + i,
                ActorStatus::Running,
                false,
            )
        })
        .collect();
    let m = TreeModel {
        rows,
        selected: Some(40),
    };
    term.draw(|f| draw_tree(f, f.area(), &m, true, &COLOR))
        .expect("draw");
    let text = format!("{}", term.backend());
    assert!(text.contains("41 actor-41"), "{text}");
    assert!(!text.contains("actor-1 "), "{text}");
}

#[test]
fn pane_hits_and_output_size() {
    let a = layout(Rect::new(0, 0, 80, 24));
    assert_eq!(a.pane_at(1, 1), Some(Pane::Tree));
    assert_eq!(
        a.pane_at(a.bottom.x + 1, a.bottom.y + 1),
        Some(Pane::Bottom)
    );
    let (rows, cols) = a.output_size();
    assert!(rows >= 5 && cols >= 40, "{rows}x{cols}");
    assert_eq!(a.input.y, a.repl.bottom() - 2);
}

#[test]
fn tree_pane_every_status_and_a_collapsed_subtree() {
    let mut term = Terminal::new(TestBackend::new(36, 12)).expect("terminal");
    let mut collapsed = row(1, "6", "pool", 4849, ActorStatus::Running, true);
    collapsed.collapsed = true;
    let m = TreeModel {
        rows: vec![
            row(0, "1", "top", 4840, ActorStatus::TeardownWaiting, true),
            row(
                1,
                "2",
                "a-very-long-actor-name-indeed",
                4841,
                ActorStatus::InRepl,
                false,
            ),
            row(1, "3", "waiter", 4842, ActorStatus::Queued, false),
            row(1, "4", "leaf", 4843, ActorStatus::Cancelling, false),
            row(1, "5", "quitter", 4844, ActorStatus::Quit, false),
            collapsed,
            row(
                1,
                "7",
                "killed",
                4850,
                ActorStatus::Exited {
                    code: None,
                    signal: Some(9),
                },
                false,
            ),
            row(
                1,
                "8",
                "failed",
                4851,
                ActorStatus::Exited {
                    code: Some(101),
                    signal: None,
                },
                false,
            ),
        ],
        selected: Some(2),
    };
    term.draw(|f| draw_tree(f, f.area(), &m, true, &COLOR))
        .expect("draw");
    insta::assert_snapshot!(term.backend());
}
