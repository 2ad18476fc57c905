//! The dump ladder (issue 12) on real processes that cannot answer: Python holding the GIL
//! in C code (py-spy reads its stack), a Rust program whose threads deadlock and a shell
//! with no client (a native unwinder reads them), and a tree-wide snapshot that merges
//! twenty identical workers into one entry and is saved.

use serde_json::{Value, json};

use crate::harness::{Run, example};

/// Needs py-spy and gdb; under CI a missing one fails (`.ci/run` installs both).
fn tools_or_skip(test: &str) -> bool {
    let have = |cmd: &str, arg: &str| {
        std::process::Command::new(cmd)
            .arg(arg)
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let missing: Vec<&str> = [("py-spy", "--version"), ("gdb", "--version")]
        .into_iter()
        .filter(|(c, a)| !have(c, a))
        .map(|(c, _)| c)
        .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: CI must install {missing:?}"
    );
    println!("SKIPPED: {test} needs {missing:?}");
    false
}

fn dump(run: &mut Run, actor: &str) -> Value {
    run.send(json!({"cmd": "dump", "actor": actor}));
    run.wait_for(&format!("dump of {actor}"), |e| {
        e["event"] == "dump" && e["actor"] == actor
    })
}

/// Waits until the actor's output so far contains `text` (a busy machine may split it
/// over two output events).
fn wait_output(run: &mut Run, actor: &str, text: &str) {
    while !crate::harness::output_text(&run.events, actor).contains(text) {
        run.wait_for(&format!("`{text}` from {actor}"), |e| {
            e["event"] == "output" && e["actor"] == actor
        });
    }
}

/// Waits for `text` in the actor's output, then for its process to be asleep in the call
/// that follows the print (the state the test dumps).
fn wait_blocked(run: &mut Run, actor: &str, text: &str) {
    wait_output(run, actor, text);
    let started = run.seen_or_wait(&format!("actor {actor} started"), |e| {
        e["event"] == "actor_started" && e["actor"] == actor
    });
    crate::harness::wait_asleep(started["pid"].as_u64().expect("pid") as u32);
}

#[test]
fn d01_python_holding_the_gil_in_c_answers_through_faulthandler_or_py_spy_at_its_line() {
    if !tools_or_skip("d01") {
        return;
    }
    // With the bundled client: its faulthandler, armed for the root's signal, writes the
    // stacks from its C handler although the GIL is held.
    let script = "import actor_tui, ctypes\nactor_tui.connect()\nprint('ready', flush=True)\nctypes.PyDLL(None).sleep(60)\n";
    let mut run = Run::start("python3", &["-c", script]);
    wait_blocked(&mut run, "1", "ready");
    let d = dump(&mut run, "1");
    let text = d["text"].as_str().expect("text");
    assert_eq!(d["step"], "faulthandler", "{text}");
    assert!(
        text.contains("no answer within"),
        "the cooperative step timed out: {text}"
    );
    assert!(
        text.contains("line 4 in <module>"),
        "the main thread at the sleep line: {text}"
    );
    run.send(json!({"cmd": "quit"}));
    run.finish();

    // Without any client (`-I` ignores the root's PYTHONPATH): py-spy reads its memory.
    let bare = "import ctypes\nprint('ready', flush=True)\nctypes.PyDLL(None).sleep(60)\n";
    let mut run = Run::start("python3", &["-I", "-c", bare]);
    wait_blocked(&mut run, "1", "ready");
    let d = dump(&mut run, "1");
    let text = d["text"].as_str().expect("text");
    assert_eq!(d["step"], "py-spy", "{text}");
    assert!(text.contains("not connected"), "{text}");
    assert!(
        text.contains("(<string>:3)"),
        "the main thread at the sleep line: {text}"
    );
    run.send(json!({"cmd": "quit"}));
    run.finish();
}

#[test]
fn d02_deadlocked_rust_threads_and_a_shell_without_client_get_native_stacks() {
    if !tools_or_skip("d02") {
        return;
    }
    let mut run = Run::start(&example("deadlock"), &[]);
    wait_blocked(&mut run, "1", "deadlocked");
    let d = dump(&mut run, "1");
    let text = d["text"].as_str().expect("text");
    assert_eq!(d["step"], "native", "{text}");
    assert!(text.contains("not connected"), "{text}");
    assert!(
        text.contains("lock_a_then_b") && text.contains("lock_b_then_a"),
        "both threads' frames by name: {text}"
    );
    assert!(text.contains("threads      3"), "{text}");
    run.send(json!({"cmd": "quit"}));
    run.finish();

    let mut run = Run::start("sh", &["-c", "echo waiting; sleep 100"]);
    wait_blocked(&mut run, "1", "waiting");
    let d = dump(&mut run, "1");
    let text = d["text"].as_str().expect("text");
    assert_eq!(d["step"], "native", "{text}");
    assert!(text.contains("state        S (sleeping)"), "{text}");
    assert!(text.contains("blocked in"), "{text}");
    assert!(text.contains("#0"), "a native frame: {text}");
    run.send(json!({"cmd": "quit"}));
    run.finish();
}

#[test]
fn d03_twenty_identical_workers_are_one_entry_in_a_saved_snapshot() {
    let state = crate::harness::tempdir();
    let worker = "import actor_tui, queue\nactor_tui.connect()\nprint('worker up', flush=True)\nqueue.Queue().get()\n";
    let top = format!(
        "import subprocess, sys\nws = [subprocess.Popen([sys.executable, '-c', {worker:?}]) for _ in range(20)]\nprint('all started', flush=True)\nfor w in ws: w.wait()\n"
    );
    let dir = crate::harness::tempdir();
    let socket = dir.path().join("root.sock");
    let state_path = state.path().to_owned();
    let mut run = Run::start_with("python3", &["-c", &top], dir, socket, |c| {
        c.env("XDG_STATE_HOME", &state_path);
    });
    // Twenty workers connected (each says so by registering).
    for n in 1..=20 {
        run.wait_for(&format!("worker {n}"), |e| {
            e["event"] == "actor_started" && e["parent"] == "1"
        });
    }
    // All blocked: twenty `worker up` lines (output chunks may carry several).
    let ups = |events: &[Value]| {
        crate::harness::output_text(events, "1")
            .matches("worker up")
            .count()
    };
    while ups(&run.events) < 20 {
        run.wait_for("more workers up", |e| e["event"] == "output");
    }
    // And each of them blocked in `queue.get`, past its print.
    let workers: Vec<u32> = run
        .events
        .iter()
        .filter(|e| e["event"] == "actor_started" && e["parent"] == "1")
        .map(|e| e["pid"].as_u64().expect("pid") as u32)
        .collect();
    for pid in workers {
        crate::harness::wait_asleep(pid);
    }
    run.send(json!({"cmd": "dump_all"}));
    let snap = run.wait_event("snapshot");
    let text = snap["text"].as_str().expect("text");
    assert!(text.contains("snapshot of 21 actors"), "{text}");
    assert!(text.contains("20 actors ("), "the workers merged: {text}");
    assert!(text.contains("queue.py"), "at queue.get: {text}");
    let path = snap["path"].as_str().expect("saved");
    assert!(path.starts_with(&*state.path().to_string_lossy()), "{path}");
    let saved = std::fs::read_to_string(path).expect("the saved text");
    assert_eq!(saved, text);
    let json: Value = serde_json::from_str(
        &std::fs::read_to_string(path.replace(".txt", ".json")).expect("the saved JSON"),
    )
    .expect("json");
    assert_eq!(
        json["groups"][0]["actors"].as_array().map(Vec::len),
        Some(20)
    );
    run.send(json!({"cmd": "quit"}));
    run.finish();
}

#[test]
fn d04_freeze_snapshot_resume_and_the_run_completes() {
    let script = "import time\nfor i in range(40):\n    print('tick', i, flush=True)\n    time.sleep(0.05)\nprint('finished', flush=True)\n";
    let mut run = Run::start("python3", &["-c", script]);
    wait_output(&mut run, "1", "tick 3");
    let pid = run.events[0]["pid"].as_u64().expect("pid");
    run.send(json!({"cmd": "freeze"}));
    run.wait_for("frozen", |e| e["event"] == "frozen" && e["frozen"] == true);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while crate::harness::proc_state(pid as u32).as_deref() != Some("T") {
        assert!(std::time::Instant::now() < deadline, "never stopped");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // Frozen: the snapshot sees every actor where it stopped.
    run.send(json!({"cmd": "dump_all"}));
    let snap = run.wait_event("snapshot");
    let text = snap["text"].as_str().expect("text");
    assert!(text.contains("snapshot of 1 actors"), "{text}");
    assert!(text.contains("T (stopped)"), "{text}");
    run.send(json!({"cmd": "resume"}));
    run.wait_for("resumed", |e| {
        e["event"] == "frozen" && e["frozen"] == false
    });
    // A second snapshot says what changed since the first.
    run.send(json!({"cmd": "dump_all"}));
    let again = run.wait_event("snapshot");
    let text = again["text"].as_str().expect("text");
    assert!(
        text.starts_with("since the last snapshot:") || text.starts_with("nothing changed"),
        "{text}"
    );
    wait_output(&mut run, "1", "finished");
    let (code, events) = run.finish();
    assert_eq!(code, 0);
    assert!(crate::harness::output_text(&events, "1").contains("tick 39"));
}

#[test]
fn d05_dump_on_hang_snapshots_a_deadlocked_tree_by_itself_and_prints_where() {
    let state = crate::harness::tempdir();
    let dir = crate::harness::tempdir();
    let socket = dir.path().join("root.sock");
    let state_path = state.path().to_owned();
    let mut run = Run::start_with(
        "--hang-after",
        &["1", "--dump-on-hang", "2", &example("deadlock")],
        dir,
        socket,
        |c| {
            c.env("XDG_STATE_HOME", &state_path);
        },
    );
    wait_blocked(&mut run, "1", "deadlocked");
    let hung = run.wait_for("marked possibly hung", |e| {
        e["event"] == "hung" && e["hung"] == true
    });
    assert_eq!(hung["actor"], "1");
    run.wait_for("the notice", |e| {
        crate::harness::is_notice(e, "--dump-on-hang")
    });
    let snap = run.wait_event("snapshot");
    let path = snap["path"].as_str().expect("saved");
    let text = std::fs::read_to_string(path).expect("snapshot file");
    assert!(text.contains("lock_a_then_b"), "{text}");
    // Once per stillness: no second snapshot while nothing moves.
    assert!(
        run.wait_within(std::time::Duration::from_secs(3), |e| e["event"]
            == "snapshot")
            .is_none()
    );
    run.send(json!({"cmd": "quit"}));
    run.finish();
}
