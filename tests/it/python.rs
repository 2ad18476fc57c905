//! Python actors (issue 4): stock pdb through the console. The example programs in
//! examples/python are plain Python that calls breakpoint(); the root puts the bundled
//! `actor_tui` package on PYTHONPATH and sets PYTHONBREAKPOINT=actor_tui.set_trace, so each
//! pause becomes a lock request and a pdb session over the actor's connection.

use std::collections::HashSet;

use serde_json::{Value, json};

use crate::harness::{Run, ask, count, output_text, repl_text};

/// `python3` from PATH, checked once per test: 3.8 or newer (threading.excepthook,
/// os.register_at_fork). msgpack is optional: the client has a fallback codec.
fn python() -> &'static str {
    let ok = std::process::Command::new("python3")
        .args(["-c", "import sys; sys.exit(sys.version_info < (3, 8))"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "these tests need python3 >= 3.8 on PATH");
    "python3"
}

fn start(script: &str, args: &[&str]) -> Run {
    let path = format!("{}/examples/python/{script}", env!("CARGO_MANIFEST_DIR"));
    assert!(std::path::Path::new(&path).exists(), "missing {path}");
    let mut argv = vec![path.as_str()];
    argv.extend_from_slice(args);
    Run::start(python(), &argv)
}

fn started<'a>(events: &'a [Value], actor: &str) -> &'a Value {
    events
        .iter()
        .find(|e| e["event"] == "actor_started" && e["actor"] == actor)
        .unwrap_or_else(|| panic!("actor {actor} never started"))
}

/// The grant/release events in order, as their names.
fn lock_order(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .filter_map(|e| match e["event"].as_str() {
            Some(k @ ("lock_granted" | "lock_released")) => Some(k),
            _ => None,
        })
        .collect()
}

#[test]
fn py_three_processes_pausing_at_once_get_three_sessions_in_turn() {
    for method in ["fork", "spawn"] {
        let mut run = start("multiproc.py", &[method]);
        // All three ask while the first session is open (nobody has typed anything yet):
        // the pauses really collide and two of them wait in the queue.
        for n in 1..=3 {
            run.wait_for(&format!("lock request {n} ({method})"), |e| {
                e["event"] == "lock_requested"
            });
        }
        assert_eq!(count(&run.events, "lock_granted"), 1, "{}", run.log());
        let first = run.seen_or_wait("first prompt", |e| e["event"] == "repl_ready");
        let holder = first["actor"].as_str().expect("actor").to_owned();
        let share = ask(&mut run, &holder, "p share");
        assert!(share.trim().ends_with("00"), "p share: {share}");
        run.input("c\n");
        let code = run.continue_all();
        let (code2, events) = run.finish();
        assert_eq!((code, code2), (0, 0), "{method}");
        assert_eq!(count(&events, "lock_granted"), 3, "{method}");
        assert_eq!(
            lock_order(&events),
            ["lock_granted", "lock_released"].repeat(3),
            "one session at a time ({method})"
        );
        let actors: HashSet<&str> = events
            .iter()
            .filter(|e| e["event"] == "lock_granted")
            .filter_map(|e| e["actor"].as_str())
            .collect();
        assert_eq!(actors.len(), 3, "three processes, three actors ({method})");
        for actor in actors {
            let s = started(&events, actor);
            let name = s["name"].as_str().expect("name");
            assert!(
                name.starts_with("worker-"),
                "named after its Process: {name}"
            );
            assert_eq!(s["parent"], "1", "placed under the program ({method})");
            let text = repl_text(&events, actor);
            assert!(
                text.contains(&format!("--- actor-tui: {name} paused at")),
                "{text}"
            );
            assert!(text.contains("multiproc.py:"), "{text}");
        }
    }
}

#[test]
fn py_thread_pair_gets_two_sessions_never_interleaved() {
    let mut run = start("threads.py", &[]);
    run.wait_for("first request", |e| e["event"] == "lock_requested");
    run.wait_for("second request", |e| e["event"] == "lock_requested");
    let first = run.seen_or_wait("first prompt", |e| e["event"] == "repl_ready");
    let task = first["task"].clone();

    let p = ask(&mut run, "1", "p answer");
    assert!(p.contains("41") || p.contains("42"), "p answer: {p}");
    let w = ask(&mut run, "1", "w");
    assert!(w.contains("worker()"), "w: {w}");
    let n = ask(&mut run, "1", "n");
    assert!(n.contains("threads.py"), "n: {n}");
    // Stepping keeps the session: same task, no release, no second grant yet.
    assert_eq!(count(&run.events, "lock_released"), 0, "{}", run.log());
    assert_eq!(count(&run.events, "lock_granted"), 1, "{}", run.log());
    let last = run
        .events
        .iter()
        .rev()
        .find(|e| e["event"] == "repl_ready")
        .expect("prompt");
    assert_eq!(last["task"], task);

    run.input("c\n");
    let code = run.continue_all();
    let (_, events) = run.finish();
    assert_eq!(code, 0);
    let granted: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "lock_granted")
        .collect();
    assert_eq!(granted.len(), 2);
    assert_ne!(
        granted[0]["task"], granted[1]["task"],
        "one task per thread"
    );
    let names: HashSet<&str> = events
        .iter()
        .filter(|e| e["event"] == "lock_requested")
        .filter_map(|e| e["task_name"].as_str())
        .collect();
    assert_eq!(names, HashSet::from(["pauser-1", "pauser-2"]));
    assert_eq!(
        lock_order(&events),
        [
            "lock_granted",
            "lock_released",
            "lock_granted",
            "lock_released"
        ]
    );
    for g in granted {
        let text: String = events
            .iter()
            .filter(|e| e["event"] == "repl_output" && e["task"] == g["task"])
            .filter_map(|e| e["data"].as_str())
            .collect();
        assert_eq!(
            text.matches("--- actor-tui:").count(),
            1,
            "one banner per session: {text}"
        );
    }
    let out = output_text(&events, "1");
    assert!(out.contains("both threads done"), "{out}");
}

/// Asks the console's completion of `line` and returns the matches of the reply.
fn complete(run: &mut Run, line: &str) -> Vec<String> {
    run.send(json!({"cmd": "complete", "data": line}));
    let c = run.wait_for(&format!("completions of `{line}`"), |e| {
        e["event"] == "completions" && e["line"] == line
    });
    assert_eq!(c["actor"], "1", "{c}");
    c["matches"]
        .as_array()
        .unwrap_or_else(|| panic!("matches: {c}"))
        .iter()
        .map(|m| m.as_str().expect("a match is a string").to_owned())
        .collect()
}

#[test]
fn py_tab_completion_comes_from_the_paused_pdb() {
    let mut run = start("threads.py", &[]);
    run.seen_or_wait("prompt", |e| e["event"] == "repl_ready");
    // `answer` is a local of the paused frame: pdb's expression completion sees it.
    let m = complete(&mut run, "p ans");
    assert!(m.iter().any(|l| l == "p answer"), "p ans: {m:?}");
    assert!(
        m.iter().all(|l| l.starts_with("p ans")),
        "full lines: {m:?}"
    );
    // A command name.
    let m = complete(&mut run, "whe");
    assert!(m.iter().any(|l| l == "where"), "whe: {m:?}");
    // Nothing fits: an empty reply, still sent.
    assert_eq!(complete(&mut run, "zzz"), Vec::<String>::new());
    // The session goes on undisturbed.
    let p = ask(&mut run, "1", "p answer");
    assert!(p.contains("41") || p.contains("42"), "p answer: {p}");
    run.input("c\n");
    let code = run.continue_all();
    let (_, events) = run.finish();
    assert_eq!(code, 0);
    assert_eq!(count(&events, "completions"), 3);
}

#[test]
fn py_grandchild_crash_opens_post_mortems_up_the_tree() {
    let mut run = start("grandchild_crash.py", &[]);
    let req = run.wait_for("first crash", |e| e["event"] == "lock_requested");
    assert_eq!(req["reason"], "crash");
    let leaf = run.actor_named("leaf");
    assert_eq!(
        req["actor"],
        leaf.as_str(),
        "the grandchild's own post-mortem"
    );
    run.seen_or_wait("leaf prompt", |e| e["event"] == "repl_ready");
    let p = ask(&mut run, &leaf, "p plan");
    assert!(p.contains("[]"), "p plan: {p}");
    run.input("c\n");
    let code = run.continue_all();
    let (_, events) = run.finish();
    assert_eq!(code, 1, "the crash reaches the program");

    // A process the root did not start is named after its script and pid.
    let mid = events
        .iter()
        .find(|e| {
            e["event"] == "actor_started"
                && e["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("grandchild_crash.py["))
        })
        .and_then(|e| e["actor"].as_str())
        .expect("mid")
        .to_owned();
    let crashes: Vec<(&str, &str)> = events
        .iter()
        .filter(|e| e["event"] == "lock_requested")
        .filter_map(|e| Some((e["actor"].as_str()?, e["reason"].as_str()?)))
        .collect();
    assert_eq!(
        crashes,
        [
            (leaf.as_str(), "crash"),
            (mid.as_str(), "crash"),
            ("1", "crash")
        ],
        "leaf first, then mid, then top"
    );
    let top_pid = &started(&events, "1")["pid"];
    for actor in [&leaf, &mid] {
        let s = started(&events, actor);
        assert_ne!(&s["pid"], top_pid, "its own process");
        assert!(!s["parent"].is_null(), "placed in the tree: {s}");
    }
    let leaf_text = repl_text(&events, &leaf);
    assert!(
        leaf_text.contains("--- actor-tui: leaf crashed at"),
        "{leaf_text}"
    );
    assert!(leaf_text.contains("IndexError"), "{leaf_text}");
    assert!(leaf_text.contains("grandchild_crash.py:"), "{leaf_text}");
    let mid_text = repl_text(&events, &mid);
    assert!(
        mid_text.contains("leaf failed with exit code 1"),
        "{mid_text}"
    );
    let top_text = repl_text(&events, "1");
    assert!(
        top_text.contains("mid failed with exit code 1"),
        "{top_text}"
    );
    let leaf_exit = events
        .iter()
        .find(|e| e["event"] == "actor_exited" && e["actor"] == leaf.as_str())
        .expect("leaf exited");
    assert_eq!(leaf_exit["reason"], "crash");
}

#[test]
fn py_pause_inside_an_asyncio_task() {
    let mut run = start("async_pause.py", &[]);
    let req = run.wait_for("request", |e| e["event"] == "lock_requested");
    assert_eq!(req["reason"], "pause");
    assert_eq!(req["task_name"], "pauser", "keyed by the asyncio task");
    assert!(
        req["location"]
            .as_str()
            .expect("location")
            .contains("async_pause.py:"),
        "{req}"
    );
    run.seen_or_wait("prompt", |e| e["event"] == "repl_ready");
    let p = ask(&mut run, "1", "p progress");
    assert!(p.contains("50"), "p progress: {p}");
    run.input("c\n");
    let (code, events) = run.finish();
    assert_eq!(code, 0);
    assert!(repl_text(&events, "1").contains("(task pauser)"));
    let out = output_text(&events, "1");
    assert!(out.contains("pauser returned 51"), "{out}");
}

#[test]
fn py_quit_from_pdb_ends_the_actor_with_113() {
    let mut run = start("threads.py", &[]);
    run.wait_event("repl_ready");
    run.input("q\n");
    let (code, events) = run.finish();
    assert_eq!(code, 113);
    let exited = events
        .iter()
        .find(|e| e["event"] == "actor_exited" && e["actor"] == "1")
        .expect("exited");
    assert_eq!(exited["reason"], "quit");
    let released = events
        .iter()
        .find(|e| e["event"] == "lock_released")
        .expect("released");
    assert_eq!(released["cause"], "quit");
}

#[test]
fn py_dump_answers_while_one_thread_debugs_and_one_waits() {
    let mut run = start("threads.py", &[]);
    run.wait_for("first request", |e| e["event"] == "lock_requested");
    run.wait_for("second request", |e| e["event"] == "lock_requested");
    run.seen_or_wait("prompt", |e| e["event"] == "repl_ready");
    run.send(json!({"cmd": "dump", "actor": "1"}));
    let dump = run.wait_event("dump");
    let text = dump["text"].as_str().expect("text");
    for want in [
        "MainThread",
        "pauser-1",
        "pauser-2",
        "in a debugger session",
        "waiting for the debug lock",
    ] {
        assert!(text.contains(want), "{want} missing from the dump:\n{text}");
    }
    run.input("c\n");
    let code = run.continue_all();
    let (_, events) = run.finish();
    assert_eq!(code, 0);
    assert_eq!(count(&events, "lock_granted"), 2);
}

#[test]
fn py_quitting_the_console_refuses_waiters_and_cancels_everyone() {
    let mut run = start("multiproc.py", &["fork"]);
    for n in 1..=3 {
        run.wait_for(&format!("lock request {n}"), |e| {
            e["event"] == "lock_requested"
        });
    }
    run.seen_or_wait("prompt", |e| e["event"] == "repl_ready");
    run.send(json!({"cmd": "quit"}));
    let (code, events) = run.finish();
    // The program (blocked in join) complies with its cancel at once. Each worker is woken
    // by its revocation or refusal just before its own cancel, so how far it gets first is
    // a race; only the program's outcome is checked.
    assert_eq!(code, 143, "the program complied with the cancel");
    let top = events
        .iter()
        .find(|e| e["event"] == "actor_exited" && e["actor"] == "1")
        .expect("program exited");
    assert_eq!(top["reason"], "cancelled");
    assert_eq!(count(&events, "lock_dropped"), 2, "the two waiters");
    assert_eq!(
        count(&events, "lock_granted"),
        1,
        "nobody is granted after quit"
    );
}
