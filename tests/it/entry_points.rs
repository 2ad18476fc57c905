//! Issue 9: every way a Python program enters pdb goes through the lock (pdb.set_trace,
//! python -m pdb, pytest --pdb, pytest-xdist workers, pool workers), break-in, and the
//! step timeout's own release cause. Real interpreters, real pytest, real pools.

use std::path::PathBuf;

use serde_json::{Value, json};

use crate::harness::{Run, ask, count, is_notice, prompt, repl_text};

/// Writes `body` as `name` into a fresh directory that lives as long as the returned guard.
fn script(name: &str, body: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = crate::harness::tempdir();
    let path = dir.path().join(name);
    std::fs::write(&path, body).expect("write script");
    (dir, path)
}

/// Whether `python3` can import `modules`. Under CI (`.ci/run` installs them) a missing
/// module fails the test; elsewhere the test says why it does not run.
fn python_has(modules: &str, test: &str) -> bool {
    let ok = std::process::Command::new("python3")
        .args(["-c", &format!("import {modules}")])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: python3 cannot import {modules}; .ci/run installs them"
        );
        eprintln!(
            "SKIPPED {test}: python3 cannot import {modules} (pip install pytest pytest-xdist)"
        );
    }
    ok
}

/// The next granted session: (actor, its lock_requested event).
fn next_session(run: &mut Run) -> (String, Value) {
    crate::harness::next_session_within(run, crate::harness::TIMEOUT)
}

/// A `lock_requested` event's location, `file:line`.
fn location(req: &Value) -> &str {
    req["location"].as_str().unwrap_or("")
}

fn name_of(run: &Run, actor: &str) -> String {
    run.events
        .iter()
        .find(|e| e["event"] == "actor_started" && e["actor"] == actor)
        .and_then(|e| e["name"].as_str())
        .unwrap_or("?")
        .to_owned()
}

#[test]
fn ep01_pdb_set_trace_in_two_multiprocessing_children_gives_two_sessions_in_order() {
    let (_dir, path) = script(
        "two.py",
        "import multiprocessing as mp, subprocess, sys\n\
         def child(i):\n    x = i * 10\n    import pdb; pdb.set_trace()\n    print('child', i, x)\n\
         if __name__ == '__main__':\n\
         \x20   ps = [mp.Process(target=child, args=(i,), name='kid-%d' % i) for i in range(2)]\n\
         \x20   for p in ps: p.start()\n\
         \x20   for p in ps: p.join()\n\
         \x20   subprocess.run([sys.executable, '-c', 'import pdb; y = 7; pdb.Pdb().set_trace()'])\n\
         \x20   print('done')\n",
    );
    let mut run = Run::start("python3", &[path.to_str().expect("path")]);
    let mut xs = Vec::new();
    for _ in 0..2 {
        let (actor, _) = next_session(&mut run);
        assert!(name_of(&run, &actor).starts_with("kid-"), "{}", run.log());
        // The other child waits its turn: it asked, or will, but holds nothing.
        xs.push(ask(&mut run, &actor, "p x").trim().to_owned());
        run.input("c\n");
    }
    xs.sort();
    assert_eq!(xs, ["0", "10"], "each child's own frame");
    // pdb.Pdb().set_trace() in a `subprocess` child: named after its script and pid.
    let (actor, _) = next_session(&mut run);
    assert!(name_of(&run, &actor).starts_with("python[") || name_of(&run, &actor).contains('['));
    assert_eq!(ask(&mut run, &actor, "p y").trim(), "7");
    run.input("c\n");
    let (code, events) = run.finish();
    assert_eq!(code, 0);
    assert_eq!(count(&events, "lock_granted"), 3);
    crate::harness::check_invariants(&events);
}

#[test]
fn ep02_python_m_pdb_stops_at_the_first_line_then_at_breakpoints_and_the_post_mortem() {
    let (_dir, path) = script(
        "prog.py",
        "def f(a):\n    b = a + 1\n    return b * 2\nx = f(1)\nraise ValueError('boom %d' % x)\n",
    );
    let mut run = Run::start("python3", &["-m", "pdb", path.to_str().expect("path")]);
    let (actor, first) = next_session(&mut run);
    assert!(location(&first).ends_with("prog.py:1"));
    assert!(ask(&mut run, &actor, "b 2").contains("Breakpoint 1"));
    run.input("c\n");
    let (actor, at_break) = next_session(&mut run);
    assert!(location(&at_break).ends_with("prog.py:2"));
    assert_eq!(ask(&mut run, &actor, "p a").trim(), "1");
    run.input("c\n");
    let (actor, crash) = next_session(&mut run);
    assert_eq!(crash["reason"], "crash");
    assert!(repl_text(&run.events, &actor).contains("ValueError: boom 4"));
    assert_eq!(ask(&mut run, &actor, "p x").trim(), "4");
    // pdb restarts the program after the post-mortem, as in a terminal; `q` there ends it.
    run.input("q\n");
    let (actor, restart) = next_session(&mut run);
    assert!(location(&restart).ends_with("prog.py:1"));
    run.input("q\n");
    let (code, events) = run.finish();
    assert_eq!(code, 0, "pdb's own `q`: the program ends normally");
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "lock_released" && e["actor"] == actor && e["cause"] == "quit")
    );
}

const FAILING_TESTS: &str = "def test_ok():\n    assert 1 + 1 == 2\n\n\
     def test_fails():\n    local_state = {'n': 41}\n    assert local_state['n'] == 42\n\n\
     def test_fails_too():\n    items = [1, 2]\n    assert len(items) == 3\n";

/// `python3 -m pytest -q OPTIONS test_x.py` on [`FAILING_TESTS`] under the root (plain
/// output, no cache dir in the temporary directory).
fn pytest_on_failing_tests(options: &[&str]) -> (tempfile::TempDir, Run) {
    let (dir, path) = script("test_x.py", FAILING_TESTS);
    let mut args = vec!["-m", "pytest", "-q", "-p", "no:cacheprovider", "--color=no"];
    args.extend_from_slice(options);
    args.push(path.to_str().expect("path"));
    let run = Run::start("python3", &args);
    (dir, run)
}

#[test]
fn ep03_pytest_pdb_opens_each_failing_tests_post_mortem_and_the_summary_stays() {
    if !python_has("pytest", "ep03") {
        return;
    }
    let (_dir, mut run) = pytest_on_failing_tests(&["--pdb"]);
    let (actor, req) = next_session(&mut run);
    assert_eq!(req["reason"], "crash");
    assert_eq!(ask(&mut run, &actor, "p local_state").trim(), "{'n': 41}");
    run.input("c\n");
    let (actor, _) = next_session(&mut run);
    assert_eq!(ask(&mut run, &actor, "p items").trim(), "[1, 2]");
    run.input("c\n");
    let (code, events) = run.finish();
    assert_eq!(code, 1, "pytest's own exit code: tests failed");
    let out = crate::harness::output_text(&events, "1");
    assert!(out.contains("2 failed, 1 passed"), "{out}");
}

#[test]
fn ep04_pytest_xdist_failures_open_one_post_mortem_in_each_worker() {
    if !python_has("pytest, xdist", "ep04") {
        return;
    }
    let (_dir, mut run) = pytest_on_failing_tests(&["-n", "2"]);
    let mut seen = Vec::new();
    for _ in 0..2 {
        let (actor, req) = next_session(&mut run);
        let name = name_of(&run, &actor);
        assert!(name.starts_with("gw"), "xdist worker name: {name}");
        let title = req["task_name"].as_str().unwrap_or("").to_owned();
        assert!(title.starts_with(&format!("{name} ")), "{title}");
        let answer = if title.ends_with("::test_fails") {
            ask(&mut run, &actor, "p local_state")
        } else {
            ask(&mut run, &actor, "p items")
        };
        seen.push((
            title.rsplit("::").next().unwrap_or("").to_owned(),
            answer.trim().to_owned(),
        ));
        run.input("c\n");
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            ("test_fails".to_owned(), "{'n': 41}".to_owned()),
            ("test_fails_too".to_owned(), "[1, 2]".to_owned())
        ]
    );
    let (code, events) = run.finish();
    assert_eq!(code, 1);
    assert!(crate::harness::output_text(&events, "1").contains("2 failed, 1 passed"));
}

#[test]
fn ep05_a_pool_workers_post_mortem_opens_in_the_worker_with_its_locals() {
    let (_dir, path) = script(
        "pool.py",
        "import multiprocessing as mp, sys\n\
         from concurrent.futures import ProcessPoolExecutor\n\
         def work(n):\n    local_state = {'n': n}\n    if n == 2:\n        raise RuntimeError('bad item %d' % n)\n    return n\n\
         if __name__ == '__main__':\n\
         \x20   try:\n\
         \x20       if sys.argv[1] == 'pool':\n\
         \x20           with mp.Pool(2) as pool: print(pool.map(work, range(4)))\n\
         \x20       else:\n\
         \x20           with ProcessPoolExecutor(2) as ex: print(list(ex.map(work, range(4))))\n\
         \x20   except RuntimeError as e:\n\
         \x20       print('parent caught:', e)\n",
    );
    for kind in ["pool", "futures"] {
        let mut run = Run::start("python3", &[path.to_str().expect("path"), kind]);
        let (actor, req) = next_session(&mut run);
        assert_ne!(
            actor, "1",
            "{kind}: the post-mortem is in the worker, not the parent"
        );
        assert_eq!(req["reason"], "crash");
        assert!(location(&req).ends_with("pool.py:6"), "{req}");
        assert_eq!(ask(&mut run, &actor, "p local_state").trim(), "{'n': 2}");
        run.input("c\n");
        let (code, events) = run.finish();
        assert_eq!(code, 0, "{kind}");
        // The parent gets the error as usual, and no second post-mortem on its copy.
        assert!(crate::harness::output_text(&events, "1").contains("parent caught: bad item 2"));
        assert_eq!(count(&events, "lock_granted"), 1, "{kind}");
    }
}

#[test]
fn ep06_break_in_pauses_a_busy_loop_and_a_blocked_sleep_where_they_are() {
    let (_dir, path) = script(
        "busy.py",
        "import time\nn = 0\nprint('started', flush=True)\nwhile n >= 0:\n    n += 1\n    if n == 10**6:\n        break\n\
         print('looped', flush=True)\ntime.sleep(600)\nprint('woke')\n",
    );
    let mut run = Run::start("python3", &[path.to_str().expect("path")]);
    // Not before `n` exists: on a loaded machine the break-in could land in the imports.
    run.wait_for("the program started", |e| {
        e["event"] == "output" && e["data"].as_str().is_some_and(|d| d.contains("started"))
    });
    interrupt_first(&mut run);
    let text = prompt(&mut run, "1");
    assert!(text.contains("interrupted at"), "{text}");
    assert_eq!(ask(&mut run, "1", "p n >= 0").trim(), "True");
    run.input("c\n");
    run.wait_event("lock_released");
    run.wait_for("the loop ended", |e| {
        e["event"] == "output" && e["data"].as_str().is_some_and(|d| d.contains("looped"))
    });
    // Blocked in time.sleep: the break-in still opens at once, in the sleeping frame (or
    // on the line before, if it lands while `print` returns).
    run.send(json!({"cmd": "interrupt", "actor": "1"}));
    let (_, req) = next_session(&mut run);
    let at = location(&req);
    assert!(
        at.ends_with("busy.py:9") || at.ends_with("busy.py:8"),
        "{req}"
    );
    // Already in the debugger: a second interrupt is refused with a reason.
    run.send(json!({"cmd": "interrupt", "actor": "1"}));
    run.wait_notice("already holds");
    run.input("q\n");
    let (code, _) = run.finish();
    assert_eq!(code, 113);
}

#[test]
fn ep07_a_step_past_the_step_timeout_hands_the_lock_on_with_its_own_cause() {
    let (_dir, path) = script(
        "slow.py",
        "import time\nbreakpoint()\ntime.sleep(3)\nprint('after')\n",
    );
    let dir = crate::harness::tempdir();
    let socket = dir.path().join("root.sock");
    let mut run = Run::start_with(
        "python3",
        &[path.to_str().expect("path")],
        dir,
        socket,
        |c| {
            c.env("ACTOR_TUI_STEP_TIMEOUT", "0.2");
        },
    );
    next_session(&mut run);
    run.input("n\n");
    let released = run.wait_event("lock_released");
    assert_eq!(released["cause"], "step_timeout", "{}", run.log());
    run.wait_notice("step timeout");
    // The step ends after the sleep: pdb stops again and asks anew.
    let (actor, _) = next_session(&mut run);
    run.input("c\n");
    let (code, _) = run.finish();
    assert_eq!((code, actor.as_str()), (0, "1"));
}

#[test]
fn ep08_stepping_into_another_asyncio_task_moves_the_lock_pane_with_it() {
    let (_dir, path) = script(
        "tasks.py",
        "import asyncio\n\
         async def a():\n    breakpoint()\n    await asyncio.sleep(0)\n    return 1\n\
         async def b():\n    await asyncio.sleep(0)\n    x = 2\n    return x\n\
         async def main():\n\
         \x20   await asyncio.gather(asyncio.create_task(a(), name='task-a'), asyncio.create_task(b(), name='task-b'))\n\
         asyncio.run(main())\n",
    );
    let mut run = Run::start("python3", &[path.to_str().expect("path")]);
    let (actor, req) = next_session(&mut run);
    assert_eq!(req["task_name"], "task-a");
    // `s` walks through the event loop into the other task; bounded, never a fixed wait.
    for _ in 0..400 {
        ask(&mut run, &actor, "s");
        if run
            .events
            .iter()
            .any(|e| e["event"] == "lock_moved" && e["task_name"] == "task-b")
        {
            break;
        }
    }
    assert!(
        run.events
            .iter()
            .any(|e| e["event"] == "lock_moved" && e["task_name"] == "task-b"),
        "{}",
        run.log()
    );
    run.input("c\n");
    let (code, _) = run.finish();
    assert_eq!(code, 0);
}

/// Sends `interrupt` to actor 1 until it is taken (a grant), retrying while the root says
/// the actor has not connected yet.
fn interrupt_first(run: &mut Run) {
    let started = std::time::Instant::now();
    loop {
        run.send(json!({"cmd": "interrupt", "actor": "1"}));
        let got = run.wait_for("granted, or refused for now", |e| {
            e["event"] == "lock_granted" || is_notice(e, "not connected")
        });
        if got["event"] == "lock_granted" {
            return;
        }
        assert!(started.elapsed() < crate::harness::TIMEOUT, "{}", run.log());
        // Polling the connection: a short back-off between asks, not a wait for an event.
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn ep09_a_rust_actor_breaks_in_with_its_tasks_and_threads() {
    let mut run = Run::start(&crate::harness::example("scenarios"), &["busy"]);
    let parts = ["server", "conn-1", "hasher"];
    // The program may be interrupted before it has started its tasks and thread (it
    // connects first): break in again, a bounded number of times, until they are there.
    for attempt in 1.. {
        interrupt_first(&mut run);
        let text = prompt(&mut run, "1");
        assert!(text.contains("cannot be stopped at an arbitrary"), "{text}");
        let all = parts.iter().all(|p| text.contains(p));
        if !all && attempt < 20 {
            run.input("c\n");
            run.wait_for("the release", |e| e["event"] == "lock_released");
            continue;
        }
        for part in parts {
            assert!(text.contains(part), "{part} in {text}");
        }
        break;
    }
    run.input("c\n");
    let released = run.wait_event("lock_released");
    assert_eq!(released["cause"], "continue");
    run.send(json!({"cmd": "quit"}));
    let (_, events) = run.finish();
    crate::harness::check_invariants(&events);
}

/// The interpreter with tractor installed (`.ci/run` makes it: tractor's newest release
/// needs Python 3.9, see tests/python/tractor-requirements.txt).
fn tractor_python() -> Option<String> {
    let python = std::env::var("ACTOR_TUI_TEST_TRACTOR_PYTHON").ok();
    if python.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "ACTOR_TUI_TEST_TRACTOR_PYTHON is not set; .ci/run sets it"
        );
        eprintln!(
            "SKIPPED ep10: set ACTOR_TUI_TEST_TRACTOR_PYTHON to a python with \
             tests/python/tractor-requirements.txt installed"
        );
    }
    python
}

#[test]
fn ep10_each_tractor_subactor_pause_is_a_session_in_the_repl_pane() {
    let Some(python) = tractor_python() else {
        return;
    };
    let (_dir, path) = script(
        "tree.py",
        "import trio, tractor\n\
         async def child(i):\n    x = 42 + i\n    await tractor.breakpoint()\n    return x\n\
         async def main():\n\
         \x20   async with tractor.open_nursery(debug_mode=True) as n:\n\
         \x20       ps = [await n.run_in_actor(child, i=i, name='kid-%d' % i) for i in range(2)]\n\
         \x20       print('results', sorted([await p.result() for p in ps]), flush=True)\n\
         if __name__ == '__main__':\n    trio.run(main)\n",
    );
    let mut run = Run::start(&python, &[path.to_str().expect("path")]);
    let mut xs = Vec::new();
    for _ in 0..2 {
        let (actor, req) = next_session(&mut run);
        let name = name_of(&run, &actor);
        assert!(
            name.starts_with("kid-"),
            "named as tractor named it: {name}"
        );
        assert_eq!(req["task_name"], "child");
        xs.push(ask(&mut run, &actor, "p x").trim().to_owned());
        run.input("c\n");
    }
    xs.sort();
    assert_eq!(xs, ["42", "43"]);
    let (code, events) = run.finish();
    assert_eq!(code, 0, "{}", crate::harness::output_text(&events, "1"));
    assert!(crate::harness::output_text(&events, "1").contains("results [42, 43]"));
    crate::harness::check_invariants(&events);
}

#[test]
fn ep11_pdb_debug_runs_inside_the_session_and_a_scripted_pdb_is_left_alone() {
    let (_dir, path) = script(
        "nested.py",
        "import io, pdb\n\
         def g():\n    inner = 5\n    return inner\n\
         buf = io.StringIO()\n\
         pdb.Pdb(stdin=io.StringIO('p 6 * 7\\nc\\n'), stdout=buf).set_trace()\n\
         print('scripted said', '42' in buf.getvalue().split(), flush=True)\n\
         breakpoint()\n\
         print('done')\n",
    );
    let mut run = Run::start("python3", &[path.to_str().expect("path")]);
    // The scripted debugger ran on its own streams, without the lock: the only request is
    // the breakpoint() after it (its output and that request travel apart, in any order).
    run.wait_for("the scripted debugger's answer", |e| {
        e["event"] == "output"
            && e["data"]
                .as_str()
                .is_some_and(|d| d.contains("scripted said"))
    });
    // (Already seen, maybe: the grant and prompt can come before that output.)
    let granted = run.seen_or_wait("the breakpoint's grant", |e| e["event"] == "lock_granted");
    let actor = granted["actor"].as_str().expect("actor").to_owned();
    run.seen_or_wait("its prompt", |e| e["event"] == "repl_ready");
    let req = run.seen_or_wait("its request", |e| e["event"] == "lock_requested");
    assert!(location(&req).ends_with("nested.py:8"), "{req}");
    assert_eq!(count(&run.events, "lock_requested"), 1, "{}", run.log());
    // `debug` starts a nested debugger in the same session; its `c` returns to the outer one.
    let nested = ask(&mut run, &actor, "debug g()");
    assert!(nested.contains("ENTERING RECURSIVE DEBUGGER"), "{nested}");
    ask(&mut run, &actor, "s");
    // Step in g() until `inner` is set (the nested debugger steps like any pdb).
    let mut inner = String::new();
    for _ in 0..4 {
        ask(&mut run, &actor, "n");
        inner = ask(&mut run, &actor, "p inner").trim().to_owned();
        if inner == "5" {
            break;
        }
    }
    assert_eq!(inner, "5");
    let back = ask(&mut run, &actor, "c");
    assert!(back.contains("LEAVING RECURSIVE DEBUGGER"), "{back}");
    assert_eq!(
        count(&run.events, "lock_released"),
        0,
        "the outer session goes on"
    );
    run.input("c\n");
    let (code, events) = run.finish();
    assert_eq!(code, 0);
    let out = crate::harness::output_text(&events, "1");
    assert!(
        out.contains("scripted said True") && out.contains("done"),
        "{out}"
    );
}
