//! The console end to end: the real binary on a real PTY, its screen reconstructed with
//! vt100, driven by real keystrokes. Every test also checks that the terminal was restored.

use std::time::{Duration, Instant};

use actor_tui::runtime::pty::{Mirror, SpawnSpec};

use crate::harness::{BIN, alive, example, tempdir};

const F5: &str = "\x1b[15~";
const F8: &str = "\x1b[19~";
const F9: &str = "\x1b[20~";
const F10: &str = "\x1b[21~";
const F6: &str = "\x1b[17~";

struct Console {
    rt: tokio::runtime::Runtime,
    term: Mirror,
    socket: String,
    _dir: tempfile::TempDir,
}

/// `actor-tui ARGV` on a 30x110 PTY of its own, with a runtime to drive it.
fn spawn_console(argv: &[String], env: &[(String, String)]) -> (tokio::runtime::Runtime, Mirror) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let term = rt
        .block_on(async {
            Mirror::spawn(&SpawnSpec {
                program: BIN,
                args: argv,
                env,
                cwd: None,
                rows: 30,
                cols: 110,
            })
        })
        .expect("spawn the console");
    (rt, term)
}

impl Console {
    fn start(program: &str, args: &[&str]) -> Self {
        Self::start_env(program, args, &[])
    }

    /// Like [`Console::start`], with more environment for the console (`EDITOR`).
    fn start_env(program: &str, args: &[&str], extra: &[(&str, &str)]) -> Self {
        let dir = tempdir();
        let socket = dir.path().join("root.sock").to_string_lossy().into_owned();
        let mut argv: Vec<String> = vec![
            "--grace-ms".into(),
            "500".into(),
            "--socket".into(),
            socket.clone(),
            "--log-file".into(),
            dir.path().join("log").to_string_lossy().into_owned(),
            program.into(),
        ];
        argv.extend(args.iter().map(|a| (*a).to_owned()));
        let env = vec![
            ("TERM".to_owned(), "xterm-256color".to_owned()),
            // Snapshots stay in the test's directory, not the user's state.
            (
                "XDG_STATE_HOME".to_owned(),
                dir.path().join("state").to_string_lossy().into_owned(),
            ),
        ];
        let env: Vec<(String, String)> = env
            .into_iter()
            .chain(
                extra
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
            )
            .collect();
        let (rt, term) = spawn_console(&argv, &env);
        Self {
            rt,
            term,
            socket,
            _dir: dir,
        }
    }

    /// `actor-tui attach SOCKET` on its own PTY: a console on a run started elsewhere.
    fn attach(socket: &std::path::Path) -> Self {
        let argv: Vec<String> = vec![
            "attach".into(),
            "--name".into(),
            "pty-viewer".into(),
            socket.to_string_lossy().into_owned(),
        ];
        let env = vec![("TERM".to_owned(), "xterm-256color".to_owned())];
        let (rt, term) = spawn_console(&argv, &env);
        Self {
            rt,
            term,
            socket: socket.to_string_lossy().into_owned(),
            _dir: tempdir(),
        }
    }

    fn contents(&self) -> String {
        self.term.contents()
    }

    /// Waits until the screen satisfies `pred`; panics with the screen if it never does.
    fn wait(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let c = self.contents();
            if pred(&c) {
                return c;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; screen:\n{c}"
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Like [`Console::wait`], but `None` after `within` instead of a panic.
    fn wait_within(&self, within: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + within;
        loop {
            let c = self.contents();
            if pred(&c) {
                return Some(c);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn wait_text(&self, text: &str) -> String {
        self.wait(text, |c| c.contains(text))
    }

    /// Waits for `text` and for the session to wait for a line again (its input line is
    /// open, `› `): the answer and the next prompt are two frames, and a line typed
    /// between them is not sent (the console sends lines only to a waiting session).
    fn wait_answer(&self, text: &str) -> String {
        self.wait(&format!("{text}, then the prompt"), |c| {
            c.contains(text) && c.contains("› ")
        })
    }

    fn keys(&self, keys: &str) {
        self.rt
            .block_on(self.term.write(keys.as_bytes()))
            .expect("write keys");
        // A lone Esc followed at once by another key reads as Alt+key: wait until the
        // console shows it took the Esc (it leaves the input for navigation).
        if keys == "\x1b" {
            self.wait("navigation mode", |c| c.contains(" NAV "));
        }
    }

    /// Waits for the console to exit; checks that it left the terminal as it found it.
    fn finish(self) -> i32 {
        self.finish_with_screen().0
    }

    /// Like [`Console::finish`], and what the terminal shows after the console is gone.
    fn finish_with_screen(mut self) -> (i32, String) {
        let child = &mut self.term.child;
        let status = self
            .rt
            .block_on(async { tokio::time::timeout(Duration::from_secs(30), child.wait()).await })
            .expect("console did not exit")
            .expect("wait");
        // Everything it wrote on the way out (the terminal restore) must have been read.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.term.at_eof() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let raw: Vec<u8> = self
            .term
            .output()
            .into_iter()
            .flat_map(|(_, b)| b)
            .collect();
        let text = String::from_utf8_lossy(&raw);
        let enter = text
            .rfind("\x1b[?1049h")
            .expect("entered the alternate screen");
        let leave = text
            .rfind("\x1b[?1049l")
            .expect("left the alternate screen");
        assert!(leave > enter, "alternate screen left after entering");
        assert!(text[enter..].contains("\x1b[?25h"), "cursor shown again");
        assert!(text[enter..].contains("\x1b[?1000l"), "mouse capture off");
        assert!(
            self.term.master().is_cooked().expect("termios"),
            "raw mode undone"
        );
        (status.code().unwrap_or(-1), self.contents())
    }
}

/// The actor id of the second waiter in the lock pane (`│2. ID pauser-N ...`), once that
/// row is drawn whole (a frame can be read half-written).
fn second_waiter(con: &Console) -> String {
    let parse = |screen: &str| {
        screen.lines().find_map(|l| {
            let mut words = l.split("│2. ").nth(1)?.split_whitespace();
            let id = words.next()?;
            let named = words.next()?.starts_with("pauser-");
            (named && id.bytes().all(|b| b.is_ascii_digit())).then(|| id.to_owned())
        })
    };
    let s = con.wait("two waiting, the second drawn", |c| {
        c.contains("Lock · 2 waiting") && parse(c).is_some()
    });
    parse(&s).expect("checked by the wait")
}

/// The session number in the REPL pane's title (`REPL #3 · ...`), if a session is shown.
fn session(screen: &str) -> Option<u64> {
    let title = screen.lines().next()?;
    let rest = title.split("REPL #").nth(1)?;
    rest.split_whitespace().next()?.parse().ok()
}

#[test]
fn c01_tree_lock_queue_and_handoff_by_typing_c() {
    let con = Console::start(&example("concurrent_pause"), &[]);
    let s = con.wait("a REPL and a queue", |c| {
        c.contains("in REPL") && c.contains("queued")
    });
    assert!(
        s.contains("concurrent_pause") && s.contains(" a ") && s.contains(" b "),
        "{s}"
    );
    assert!(s.contains("holder"), "lock pane shows the holder:\n{s}");
    let mut last = 0;
    let mut holders = Vec::new();
    for _ in 0..6 {
        let s = con.wait("the next session waiting for input", |c| {
            c.contains("› ") && session(c).is_some_and(|n| n > last)
        });
        last = session(&s).unwrap_or(last);
        holders.push(s.lines().next().unwrap_or("").to_owned());
        con.keys("c\r");
    }
    assert_eq!(con.finish(), 0);
    assert!(holders.iter().any(|h| h.contains(" 2 a ")), "{holders:#?}");
    assert!(holders.iter().any(|h| h.contains(" 3 b ")), "{holders:#?}");
    assert!(holders.iter().any(|h| h.contains("bg-1")), "{holders:#?}");
}

#[test]
fn c02_force_release_a_stale_lock_with_f8() {
    let con = Console::start(&example("stale_lock"), &[]);
    con.wait("hung holds, waiter queued", |c| {
        c.contains("holder 2 hung") && c.contains("1. 3 waiter")
    });
    con.keys(F8);
    con.wait_text("Force-release the lock held by 2 hung?");
    con.keys("y");
    let s = con.wait("waiter's session", |c| {
        c.contains("waiter paused at") && c.contains("› ")
    });
    assert!(s.contains(" 3 waiter · "), "{s}");
    con.keys("p turn\r");
    con.wait_answer("turn = \"after the force-release\"");
    con.keys("c\r");
    assert_eq!(con.finish(), 0);
}

#[test]
fn c03_dump_with_f5_while_a_repl_is_open() {
    let con = Console::start(&example("scenarios"), &["dump_tree"]);
    con.wait("top in REPL and busy running", |c| {
        c.contains("in REPL") && c.contains("busy")
    });
    // Leave the input, select `busy` (second row), ask for its dump; busy registers its
    // tasks as it starts, so ask again until they all show.
    con.keys("\x1b");
    con.keys("j");
    let mut s = String::new();
    for _ in 0..50 {
        con.keys(F5);
        let seen = con.wait_within(Duration::from_secs(2), |c| {
            c.contains("conn-1") && c.contains("hasher")
        });
        if let Some(screen) = seen {
            s = screen;
            break;
        }
    }
    assert!(s.contains("conn-1"), "the dump never showed busy's tasks");
    assert!(s.contains("server"), "{s}");
    // Back to the input: the session was not disturbed.
    con.keys("i");
    con.keys("p note\r");
    con.wait_answer("note = \"dump busy while I am paused\"");
    con.keys("c\r");
    assert_eq!(con.finish(), 0);
}

#[test]
fn c04_ctrl_c_clears_the_line_and_signals_nobody() {
    let con = Console::start(&example("scenarios"), &["pause_once"]);
    con.wait("a session", |c| c.contains("› ") && c.contains("paused at"));
    con.keys("p nothing-to-see");
    con.wait_text("nothing-to-see");
    con.keys("\x03");
    con.wait("the line cleared", |c| !c.contains("nothing-to-see"));
    con.keys("p answer\r");
    con.wait_answer("answer = 42");
    con.keys("c\r");
    assert_eq!(con.finish(), 0);
}

#[test]
fn c05_quit_with_f10_tears_the_tree_down() {
    let con = Console::start(&example("scenarios"), &["pair"]);
    let s = con.wait("two actors, one in REPL", |c| {
        c.contains("in REPL") && c.contains("queued")
    });
    let pids: Vec<u32> = std::fs::read_dir("/proc")
        .expect("proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        // This run's processes only (tests run in parallel): they carry its socket.
        .filter(|pid: &u32| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|e| String::from_utf8_lossy(&e).contains(&con.socket))
        })
        .collect();
    assert!(pids.len() >= 3, "tree running: {pids:?}\n{s}");
    con.keys(F10);
    con.wait_text("Quit actor-tui and tear the tree down?");
    con.keys("y");
    let code = con.finish();
    assert_ne!(code, 0, "the first actor was cancelled");
    let deadline = Instant::now() + Duration::from_secs(5);
    for pid in pids {
        while alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!alive(pid), "{pid} outlived the console");
    }
}

#[test]
fn c06_cancel_with_f9_waits_then_forces() {
    let con = Console::start(&example("cancel_during_debug"), &[]);
    con.wait("leaf in REPL", |c| {
        c.contains("leaf paused at") && c.contains("› ")
    });
    con.wait("teardown waits", |c| c.contains("teardown waits"));
    // Select mid (second row) and force its cancel: F9 on a waiting teardown forces.
    con.keys("\x1b");
    con.keys("j");
    con.keys(F9);
    con.wait_text("Force-cancel 2 mid");
    con.keys("y");
    // Without the force, teardown would wait for leaf's open session for ever. Forced, leaf
    // and mid go at once (by SIGKILL, or by the forced Cancel frame if it lands first), top
    // accepts that, and the run ends.
    assert_eq!(con.finish(), 0);
}

#[test]
fn c07_flood_while_a_repl_is_open() {
    let dir = tempdir();
    let result = dir.path().join("flood");
    let result = result.to_string_lossy().into_owned();
    let con = Console::start(BIN, &["__demo", "flood_top", "10", &result]);
    con.wait("REPL open", |c| c.contains("› ") && c.contains("flooder"));
    // Show the flooder's output, then type into the REPL while it floods.
    con.keys("\x1b");
    con.keys("j");
    con.keys("i");
    con.wait("flood running", |c| c.contains("INFO flood"));
    con.keys("p flooding\r");
    con.wait_text("flooding = \"yes\"");
    // The tail of the flood is what the output pane shows at the end.
    con.wait("flood tail", |c| {
        c.contains("flood done: 10000") && c.contains("› ")
    });
    con.keys("c\r");
    assert_eq!(con.finish(), 0);
}

#[test]
fn c08_tab_completes_in_the_repl_input() {
    let con = Console::start(&example("scenarios"), &["pause_once"]);
    con.wait("a session", |c| c.contains("› ") && c.contains("paused at"));
    con.keys("p ans\t");
    con.wait_text("› p answer");
    con.keys("\r");
    con.wait_answer("answer = 42");
    con.keys("c\r");
    assert_eq!(con.finish(), 0);
}

#[test]
fn c09_the_end_of_the_run_stays_on_the_terminal() {
    let con = Console::start("sh", &["-c", "echo 4 passed in 0.01s; exit 3"]);
    let (code, screen) = con.finish_with_screen();
    assert_eq!(code, 3, "the program's exit code");
    assert!(screen.contains("4 passed in 0.01s"), "{screen}");
    assert!(screen.contains("sh ended: exit code 3"), "{screen}");
}

#[test]
fn c10_f6_gives_the_keyboard_to_an_actors_own_terminal() {
    let con = Console::start(
        "python3",
        &["-c", "name = input('name? '); print('hello', name)"],
    );
    con.wait("the question", |c| c.contains("name?"));
    con.keys(F6);
    con.wait("terminal mode", |c| {
        c.contains("TERM 1") && c.contains("Terminal · 1")
    });
    con.keys("blue\r");
    let (code, screen) = con.finish_with_screen();
    assert_eq!(code, 0);
    assert!(screen.contains("hello blue"), "{screen}");
}

#[test]
fn c11_ctrl_c_in_terminal_mode_interrupts_that_actor_as_a_terminal_would() {
    let script = "import time\nprint('sleeping', flush=True)\ntry:\n    time.sleep(60)\nexcept KeyboardInterrupt:\n    print('interrupted')\n";
    let con = Console::start("python3", &["-c", script]);
    con.wait("the program", |c| c.contains("sleeping"));
    con.keys(F6);
    con.wait("terminal mode", |c| c.contains("TERM 1"));
    con.keys("\x03");
    let (code, screen) = con.finish_with_screen();
    assert_eq!(code, 0);
    assert!(screen.contains("interrupted"), "{screen}");
}

#[test]
fn c12_f7_breaks_into_a_running_python_loop_through_the_lock() {
    const F7: &str = "\x1b[18~";
    let script = "import time\nprint('working', flush=True)\nn = 0\nwhile True:\n    n += 1\n";
    let con = Console::start("python3", &["-c", script]);
    con.wait("the program", |c| c.contains("working"));
    // The first actor is selected; until its client has connected the console says it
    // cannot be interrupted yet, so ask again until the session opens.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        con.keys(F7);
        if con
            .wait_within(Duration::from_secs(1), |c| c.contains("interrupted at"))
            .is_some()
        {
            break;
        }
        assert!(Instant::now() < deadline, "{}", con.contents());
    }
    con.wait("the pdb prompt", |c| c.contains("(Pdb)"));
    con.keys("p n > 0\r");
    con.wait_answer("True");
    con.keys("q\r");
    assert_eq!(con.finish(), 113);
}

#[test]
fn c13_an_attached_console_observes_drives_with_d_and_detaches_with_q() {
    use crate::harness::{Run, is_notice};
    let path = format!(
        "{}/examples/python/multiproc.py",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut root = Run::start("python3", &[path.as_str(), "fork"]);
    let first = root.wait_for("first prompt", |e| e["event"] == "repl_ready");
    let holder = first["actor"].as_str().expect("actor").to_owned();
    let con = Console::attach(&root.socket);
    // The run so far: the tree, the holder's session at its prompt, the observer badge.
    con.wait("the attached console", |c| {
        c.contains("OBSERVING") && c.contains("worker-") && c.contains("(Pdb)")
    });
    root.wait_for("the viewer at the root", |e| {
        e["event"] == "viewer" && e["name"] == "pty-viewer"
    });
    // An observer's line is not sent (the console starts in the input line).
    con.keys("c\r");
    con.wait_text("you are observing: press D to drive");
    con.keys("\x1b");
    con.keys("D");
    con.wait_text("DRIVING");
    // The refused line is still there: Enter sends it now.
    con.keys("i");
    con.keys("\r");
    root.wait_for("release by the attached driver", |e| {
        e["event"] == "lock_released" && e["actor"] == holder.as_str()
    });
    // The screen must have caught up with `i` first, or the wait for NAV after Esc would
    // pass on a stale frame and `q` would follow Esc closely enough to read as Alt+q.
    con.wait("input mode", |c| c.contains(" INPUT "));
    con.keys("\x1b");
    con.keys("q");
    con.wait_text("Detach from this run?");
    con.keys("y");
    assert_eq!(con.finish(), 0);
    root.wait_for("the viewer gone", |e| {
        e["event"] == "viewer" && e["role"] == "gone"
    });
    // Detaching left the run alone: it is still there to be finished.
    assert!(
        !root
            .events
            .iter()
            .any(|e| e["event"] == "exit" || is_notice(e, "quit"))
    );
    root.input("c\n");
    root.continue_all();
    let (code, _) = root.finish();
    assert_eq!(code, 0);
}

#[test]
fn c14_t_snapshots_the_whole_tree_in_the_dump_tab_and_z_freezes_it() {
    let con = Console::start(&example("deadlock"), &[]);
    con.wait("the program", |c| c.contains("deadlocked"));
    con.keys("\x1b");
    // The whole tree at once: the deadlocked threads' frames, read from outside.
    con.keys("T");
    let s = con.wait("the snapshot in the dump tab", |c| {
        c.contains("snapshot of 1 actors") && c.contains("native")
    });
    assert!(s.contains("Dump"), "{s}");
    // Saved under the state directory the test gave it.
    let saved = con._dir.path().join("state/actor-tui/snapshots");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_dir(&saved).is_ok_and(|mut d| d.next().is_some()) {
        assert!(
            Instant::now() < deadline,
            "no snapshot in {}",
            saved.display()
        );
        std::thread::sleep(Duration::from_millis(25));
    }
    con.keys("Z");
    con.wait_text("FROZEN");
    con.keys("Z");
    con.wait("resumed", |c| !c.contains("FROZEN"));
    con.keys(F10);
    con.wait_text("Quit actor-tui");
    con.keys("y");
    assert_ne!(con.finish(), -1);
}

#[test]
fn c15_the_lock_pane_keys_promote_a_waiter_and_auto_continue_the_rest() {
    let con = Console::start(BIN, &["__demo", "bench_top", "3", "1"]);
    // Which waiter is second in the queue now.
    let second = second_waiter(&con);
    con.keys("\x1b");
    // Tab cycles the panes; the lock pane shows its selection once it has the focus.
    let mut focused = false;
    for _ in 0..4 {
        con.keys("\t");
        if con
            .wait_within(Duration::from_secs(2), |c| c.contains("▸1."))
            .is_some()
        {
            focused = true;
            break;
        }
    }
    assert!(focused, "{}", con.contents());
    // Picking a waiter shows its peek, without taking the lock.
    con.wait("the waiter's peek", |c| {
        c.contains("peek of") && c.contains("round = 0")
    });
    con.keys("j");
    con.wait("the second waiter selected", |c| c.contains("▸2."));
    con.keys("p");
    con.wait("promoted to the front", |c| {
        c.lines().any(|l| l.contains(&format!("1. {second} ")))
    });
    con.keys("A");
    con.wait("every waiter gone", |c| c.contains("Lock · 0 waiting"));
    con.keys("i");
    con.keys("c\r");
    assert_eq!(con.finish(), 0);
}

#[test]
fn c16_search_finds_a_line_in_a_2000_line_scrollback_and_e_opens_the_pane_in_editor() {
    let dir = tempdir();
    let out = dir.path().join("edited.txt");
    let editor = dir.path().join("editor.sh");
    std::fs::write(&editor, format!("#!/bin/sh\ncp \"$1\" {}\n", out.display())).expect("editor");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&editor, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let editor = editor.to_string_lossy().into_owned();
    let done = dir.path().to_string_lossy().into_owned();
    let con = Console::start_env(
        BIN,
        &["__demo", "chatty", "2000", &done],
        &[("EDITOR", &editor), ("VISUAL", "")],
    );
    con.wait("the last line", |c| c.contains("id=1999 "));
    // To the output pane (the bottom), then search it.
    con.keys("\x1b");
    con.keys("\t");
    con.keys("/");
    con.wait("the search prompt", |c| {
        c.contains("search the selected actor's output")
    });
    con.keys("id=1234 \r");
    con.wait("the match, scrolled into view", |c| {
        c.contains("match 1 of 1") && c.contains("id=1234 in")
    });
    // The pane's whole text in $EDITOR; the console comes back, every pane drawn again.
    con.keys("E");
    con.wait("back from the editor, panes and all", |c| {
        c.contains("back from") && c.contains("Lock · 0 waiting") && c.contains("id=1234 in")
    });
    let text = std::fs::read_to_string(&out).expect("the editor got the pane's text");
    assert!(
        text.contains("id=0 ") && text.contains("id=1999 "),
        "{} lines",
        text.lines().count()
    );
    con.keys("q");
    con.wait("the quit question", |c| c.contains("Quit actor-tui"));
    con.keys("y");
    con.finish();
}

#[test]
fn c17_r_adds_a_rule_by_key_and_k_lists_the_rules() {
    let con = Console::start(BIN, &["__demo", "bench_top", "3", "1"]);
    let second = second_waiter(&con);
    con.keys("\x1b");
    con.keys("R");
    con.wait("the rule prompt", |c| {
        c.contains("rule: auto_continue LOCATION")
    });
    con.keys(&format!("auto_continue actor {second}\r"));
    // The waiter goes on by itself, and the lock pane says what the rule let go.
    con.wait("one waiter left, the rule counted", |c| {
        c.contains("Lock · 1 waiting") && c.contains(&format!("auto_continue actor {second}"))
    });
    con.keys("K");
    con.wait("the rules in the Dump tab", |c| {
        c.contains("rules and crash list")
            && c.contains(&format!("auto_continue actor {second} · let go"))
    });
    con.keys("i");
    con.keys("c\r");
    con.wait("the last one's session, waiting for a line", |c| {
        c.contains("Lock · 0 waiting") && c.contains("› ")
    });
    con.keys("c\r");
    assert_eq!(con.finish(), 0);
}
