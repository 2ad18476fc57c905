//! SCENARIOS.md in headless mode: the real binary, real example programs on real PTYs.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{self, Run, count, example, is_notice, output_text, repl_text};

fn scen() -> String {
    example("scenarios")
}

#[test]
fn s01_pause_shows_banner_values_and_exit_code() {
    let mut run = Run::start(&scen(), &["pause_once"]);
    let req = run.wait_event("lock_requested");
    assert_eq!(req["reason"], "pause");
    assert!(
        req["location"]
            .as_str()
            .expect("loc")
            .contains("scenarios.rs")
    );
    run.wait_event("repl_ready");
    run.input("p answer\n");
    run.wait_event("repl_ready");
    run.input("locals\n");
    run.wait_event("repl_ready");
    run.input("c\n");
    let (code, events) = run.finish();
    assert_eq!(code, 0);
    let text = repl_text(&events, "1");
    assert!(
        text.contains("scenarios paused at"),
        "banner names actor: {text}"
    );
    assert!(
        text.contains("scenarios.rs:"),
        "banner has location: {text}"
    );
    assert!(text.contains("answer = 42"), "{text}");
    assert!(text.contains("name = \"deep thought\""), "{text}");
    let out = output_text(&events, "1");
    assert!(out.contains("after the pause (Ok(()))"), "{out}");
    assert!(
        !out.contains("answer = 42"),
        "REPL text leaked into PTY output"
    );
}

#[test]
fn s02_crash_opens_post_mortem_with_filtered_backtrace() {
    let mut run = Run::start(&scen(), &["crash"]);
    let req = run.wait_event("lock_requested");
    assert_eq!(req["reason"], "crash");
    run.wait_event("repl_ready");
    run.input("c\n");
    let (code, events) = run.finish();
    assert_ne!(code, 0);
    let text = repl_text(&events, "1");
    assert!(text.contains("crashed at"), "{text}");
    assert!(text.contains("the plan has no steps"), "{text}");
    assert!(
        text.contains("scenarios::Plan::first_step"),
        "user frame shown: {text}"
    );
    assert!(
        !text.contains("actor_tui::client"),
        "internal frames hidden: {text}"
    );
    assert!(text.contains("runtime-internal frames hidden"), "{text}");
}

#[test]
fn s03_recurrent_pause_then_quit_is_seen_by_parent() {
    let mut run = Run::start(&scen(), &["quit_parent"]);
    let looper = run.actor_named("looper");
    for round in 0..3 {
        run.wait_for("looper repl", |e| {
            e["event"] == "repl_ready" && e["actor"] == looper.as_str()
        });
        run.input("p i\n");
        run.wait_for("looper repl", |e| {
            e["event"] == "repl_ready" && e["actor"] == looper.as_str()
        });
        let text = repl_text(&run.events, &looper);
        assert!(text.contains(&format!("i = {round}")), "{text}");
        run.input("c\n");
    }
    run.wait_for("looper repl", |e| {
        e["event"] == "repl_ready" && e["actor"] == looper.as_str()
    });
    run.input("q\n");
    let (code, events) = run.finish();
    assert_eq!(code, 3, "parent saw quit from debugger");
    let exited = events
        .iter()
        .find(|e| e["event"] == "actor_exited" && e["actor"] == looper.as_str())
        .expect("looper exited");
    assert_eq!(exited["reason"], "quit");
    assert_eq!(exited["code"], 113);
    assert_eq!(
        count(&events, "lock_refused"),
        0,
        "re-entering never self-deadlocks"
    );
    let released: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "lock_released")
        .collect();
    assert_eq!(released.last().expect("released")["cause"], "quit");
}

#[test]
fn s04_without_a_root_pause_warns_and_continues() {
    let start = Instant::now();
    let out = std::process::Command::new(scen())
        .arg("pause_once")
        .env_remove("ACTOR_TUI_SOCKET")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run");
    assert!(start.elapsed() < Duration::from_secs(20), "never hangs");
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("skipped: no actor-tui root and no terminal"),
        "{stderr}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("after the pause (Err(NoTerminal))"),
        "{stdout}"
    );
}

#[test]
fn s05_concurrent_pauses_from_subactors_and_threads() {
    let mut run = Run::start(&example("concurrent_pause"), &[]);
    let code = run.continue_all();
    let (code2, events) = run.finish();
    assert_eq!((code, code2), (0, 0));
    assert_eq!(count(&events, "lock_granted"), 6, "six sessions");
    // While one session is open, others were queued: the queue was really used.
    let mut max_waiting = 0usize;
    let mut waiting = 0isize;
    for e in &events {
        match e["event"].as_str() {
            Some("lock_requested") => waiting += 1,
            Some("lock_granted") => waiting -= 1,
            _ => {}
        }
        max_waiting = max_waiting.max(waiting.max(0) as usize);
    }
    assert!(
        max_waiting >= 2,
        "pauses collided (max queue {max_waiting})"
    );
    let names: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] == "actor_started")
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert_eq!(names, ["concurrent_pause", "a", "b"]);
}

#[test]
fn s06_threads_task_and_subactor_each_get_a_session() {
    let mut run = Run::start(&scen(), &["threads_tasks"]);
    let code = run.continue_all();
    let (_, events) = run.finish();
    assert_eq!(code, 0);
    let tasks: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] == "lock_granted")
        .filter_map(|e| {
            let actor = e["actor"].as_str()?;
            let task = e["task"].as_u64()?;
            events
                .iter()
                .find(|r| {
                    r["event"] == "lock_requested" && r["actor"] == actor && r["task"] == task
                })
                .and_then(|r| r["task_name"].as_str())
        })
        .collect();
    assert_eq!(tasks.len(), 4, "{tasks:?}");
    for want in ["thread-1", "thread-2", "async-worker"] {
        assert!(tasks.contains(&want), "{want} missing from {tasks:?}");
    }
}

#[test]
fn s07_crash_climbs_a_deep_tree() {
    let mut run = Run::start(&example("nested_crash"), &[]);
    let code = run.continue_all();
    let (_, events) = run.finish();
    assert_ne!(code, 0);
    let order: Vec<String> = events
        .iter()
        .filter(|e| e["event"] == "lock_granted")
        .map(|e| e["actor"].as_str().unwrap_or("").to_owned())
        .collect();
    let name_of = |id: &str| {
        events
            .iter()
            .find(|e| e["event"] == "actor_started" && e["actor"] == id)
            .and_then(|e| e["name"].as_str())
            .unwrap_or("")
            .to_owned()
    };
    let names: Vec<String> = order.iter().map(|a| name_of(a)).collect();
    assert_eq!(names, ["leaf", "mid", "nested_crash"]);
    for e in events.iter().filter(|e| e["event"] == "lock_requested") {
        assert_eq!(e["reason"], "crash");
    }
    let mid = &order[1];
    let mid_text = repl_text(&events, mid);
    assert!(
        mid_text.contains("mid crashed at"),
        "session names its actor: {mid_text}"
    );
    assert!(
        mid_text.contains("subactor leaf failed: exit code 101"),
        "{mid_text}"
    );
}

#[test]
fn s08_cancel_waits_for_the_debugging_leaf() {
    let mut run = Run::start(&example("cancel_during_debug"), &[]);
    let leaf = run.actor_named("leaf");
    let mid = run.actor_named("mid");
    run.wait_for("leaf repl", |e| {
        e["event"] == "repl_ready" && e["actor"] == leaf.as_str()
    });
    // top cancels mid's subtree while the session is open: teardown must wait for leaf.
    run.seen_or_wait("teardown waits for leaf", |e| {
        e["event"] == "teardown_waiting" && e["actor"] == leaf.as_str()
    });
    // A negative window: long enough for the whole escalation (Cancel, SIGTERM after one
    // grace period, SIGKILL after another; the harness runs with 500 ms) to have happened
    // if protection were broken. Then the session must still work.
    std::thread::sleep(harness::GRACE * 2 + Duration::from_millis(500));
    run.input("p secret\n");
    run.wait_for("leaf repl", |e| {
        e["event"] == "repl_ready" && e["actor"] == leaf.as_str()
    });
    assert!(repl_text(&run.events, &leaf).contains("secret = 42"));
    for e in &run.events {
        if e["event"] == "actor_exited" || e["event"] == "cancelling" {
            assert!(
                e["actor"] != leaf.as_str() && e["actor"] != mid.as_str(),
                "touched during REPL: {e}"
            );
        }
    }
    run.input("c\n");
    let (code, events) = run.finish();
    assert_eq!(code, 0);
    let cancelled: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "actor_exited" && e["reason"] == "cancelled")
        .collect();
    assert_eq!(
        cancelled.len(),
        2,
        "leaf and mid were cancelled after the session"
    );
}

#[test]
fn s08b_forced_cancel_does_not_wait() {
    let mut run = Run::start(&scen(), &["pair"]);
    run.wait_event("repl_ready");
    let holder = run
        .events
        .iter()
        .rev()
        .find(|e| e["event"] == "lock_granted")
        .and_then(|e| e["actor"].as_str())
        .expect("holder")
        .to_owned();
    run.send(json!({"cmd": "cancel", "actor": holder, "force": true}));
    let rel = run.wait_event("lock_released");
    assert_eq!(rel["cause"], "cancel");
    run.wait_for("holder killed", |e| {
        e["event"] == "actor_exited" && e["actor"] == holder.as_str()
    });
    run.seen_or_wait("the other actor's session", |e| {
        e["event"] == "repl_ready" && e["actor"] != holder.as_str()
    });
    run.input("c\n");
    let (code, events) = run.finish();
    assert_eq!(code, 0);
    assert_eq!(count(&events, "lock_granted"), 2);
}

#[test]
fn s09_double_request_is_refused() {
    let run = Run::start(&example("double_request"), &[]);
    let (code, events) = run.finish();
    assert_eq!(code, 0);
    let refused: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "lock_refused")
        .collect();
    assert_eq!(refused.len(), 1);
    assert!(
        refused[0]["error"]
            .as_str()
            .expect("error")
            .contains("already holds")
    );
    assert!(output_text(&events, "1").contains("second request refused as expected"));
}

#[test]
fn s10_holder_killed_releases_within_100ms() {
    let mut run = Run::start(&scen(), &["pair"]);
    let ready = run.wait_event("repl_ready");
    let holder = ready["actor"].as_str().expect("actor").to_owned();
    // Make sure the other actor is queued before the kill.
    run.seen_or_wait("second request", |e| {
        e["event"] == "lock_requested" && e["actor"] != holder.as_str()
    });
    let pid = run
        .events
        .iter()
        .find(|e| e["event"] == "actor_started" && e["actor"] == holder.as_str())
        .and_then(|e| e["pid"].as_u64())
        .expect("pid");
    let killed = Instant::now();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill");
    let rel = run.wait_event("lock_released");
    assert_eq!(rel["actor"], holder.as_str());
    assert!(
        rel["cause"] == "disconnect" || rel["cause"] == "exit",
        "{rel}"
    );
    let next = run.wait_event("repl_ready");
    // How fast is the handoff bench's business (`cargo bench --bench handoff`); here only
    // that it happens, to the other actor.
    eprintln!("handoff after SIGKILL: {:?}", killed.elapsed());
    assert_ne!(next["actor"], holder.as_str());
    run.input("c\n");
    let (code, _) = run.finish();
    assert_eq!(code, 0);
}

#[test]
fn s11_force_release_of_a_hung_holder_ignores_its_late_release() {
    let mut run = Run::start(&example("stale_lock"), &[]);
    let hung = run.actor_named("hung");
    let waiter = run.actor_named("waiter");
    run.seen_or_wait("hung holds", |e| {
        e["event"] == "lock_granted" && e["actor"] == hung.as_str()
    });
    run.seen_or_wait("waiter queued", |e| {
        e["event"] == "lock_requested" && e["actor"] == waiter.as_str()
    });
    run.send(json!({"cmd": "force_release"}));
    let rel = run.wait_event("lock_released");
    assert_eq!(
        (rel["actor"].as_str(), rel["cause"].as_str()),
        (Some(hung.as_str()), Some("force"))
    );
    run.wait_for("waiter repl", |e| {
        e["event"] == "repl_ready" && e["actor"] == waiter.as_str()
    });
    // The late release arrives while the waiter's session is open and changes nothing.
    run.wait_for("late release ignored", |e| {
        e["event"] == "notice" && e["actor"] == hung.as_str()
    });
    run.input("p turn\n");
    run.wait_for("waiter still in repl", |e| {
        e["event"] == "repl_ready" && e["actor"] == waiter.as_str()
    });
    assert!(repl_text(&run.events, &waiter).contains("turn = \"after the force-release\""));
    run.input("c\n");
    let (code, events) = run.finish();
    assert_eq!(code, 0);
    assert_eq!(count(&events, "lock_released"), 2);
}

#[test]
fn s12_vanished_waiter_leaves_the_queue() {
    let mut run = Run::start(&scen(), &["pair"]);
    let ready = run.wait_event("repl_ready");
    let holder = ready["actor"].as_str().expect("actor").to_owned();
    let waiter = run.seen_or_wait("second request", |e| {
        e["event"] == "lock_requested" && e["actor"] != holder.as_str()
    })["actor"]
        .as_str()
        .expect("actor")
        .to_owned();
    run.send(json!({"cmd": "cancel", "actor": waiter, "force": true}));
    let dropped = run.wait_event("lock_dropped");
    assert_eq!(dropped["actor"], waiter.as_str());
    run.input("c\n");
    let (code, events) = run.finish();
    assert_eq!(code, 0);
    assert_eq!(count(&events, "lock_granted"), 1);
}

#[test]
fn s14_task_dump_does_not_disturb_the_repl() {
    let mut run = Run::start(&scen(), &["dump_tree"]);
    let busy = run.actor_named("busy");
    run.wait_event("repl_ready");
    // Busy connects and registers its tasks as it starts: ask again until the dump shows
    // them all. Until it is connected the root answers with a notice instead of a dump.
    let wanted = ["server", "conn-1", "conn-2", "hasher"];
    let mut text = String::new();
    let deadline = Instant::now() + harness::TIMEOUT;
    while Instant::now() < deadline {
        run.send(json!({"cmd": "dump", "actor": busy}));
        let answer = run.wait_for("a dump or a not-connected notice", |e| {
            e["event"] == "dump" || is_notice(e, "is not connected")
        });
        if answer["event"] == "notice" {
            // Not connected yet: let its start-up go on for a moment (events keep flowing).
            run.wait_within(Duration::from_millis(100), |_| false);
            continue;
        }
        text = answer["text"].as_str().expect("text").to_owned();
        if wanted.iter().all(|w| text.contains(w)) {
            break;
        }
    }
    for want in ["server", "conn-1", "conn-2", "hasher", "threads:", "tid "] {
        assert!(text.contains(want), "{want} missing from dump:\n{text}");
    }
    // Children are indented under their parent.
    assert!(
        text.contains("\n      #"),
        "conn tasks nested under server:\n{text}"
    );
    run.input("p note\n");
    run.wait_event("repl_ready");
    run.input("c\n");
    let (code, events) = run.finish();
    assert_eq!(code, 0);
    assert!(repl_text(&events, "1").contains("note = \"dump busy while I am paused\""));
}

#[test]
fn s15_stale_socket_file_is_replaced() {
    let dir = harness::tempdir();
    let socket = dir.path().join("root.sock");
    // A listener that dies without unlinking leaves exactly what a killed run leaves.
    drop(std::os::unix::net::UnixListener::bind(&socket).expect("bind"));
    assert!(socket.exists());
    let mut run = Run::start_at(&scen(), &["pause_once"], dir, socket);
    run.wait_event("repl_ready");
    run.input("c\n");
    let (code, _) = run.finish();
    assert_eq!(code, 0);
}

#[test]
fn s15b_live_socket_is_not_stolen() {
    let mut first = Run::start(&scen(), &["pause_once"]);
    first.wait_event("repl_ready");
    let out = std::process::Command::new(harness::BIN)
        .args(["--headless", "--socket"])
        .arg(&first.socket)
        .arg(scen())
        .arg("pause_once")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("second run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already listening"));
    first.input("c\n");
    assert_eq!(first.finish().0, 0);
}

#[test]
fn s17_root_killed_leaves_no_actor_behind() {
    let mut run = Run::start(&scen(), &["pair"]);
    run.wait_event("repl_ready");
    while count(&run.events, "actor_started") < 3 {
        run.wait_event("actor_started");
    }
    let pids = harness::pids(&run.events);
    run.child.kill().expect("kill -9 actor-tui");
    run.child.wait().expect("reap");
    let deadline = Instant::now() + Duration::from_secs(5);
    for pid in pids {
        while harness::alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!harness::alive(pid), "actor {pid} outlived the root");
    }
}

#[test]
fn unspawned_process_joins_under_its_nearest_actor() {
    let mut run = Run::start(&scen(), &["unspawned_child"]);
    let started = run.wait_for("the child connecting", |e| {
        e["event"] == "actor_started" && e["actor"] != "1"
    });
    assert_eq!(
        started["parent"], "1",
        "placed under the process that started it"
    );
    let child = started["actor"].as_str().expect("id").to_owned();
    run.wait_for("child's session", |e| {
        e["event"] == "repl_ready" && e["actor"] == child.as_str()
    });
    run.input("p answer\n");
    run.wait_event("repl_ready");
    run.input("c\n");
    let (code, events) = run.finish();
    assert_eq!(code, 0);
    assert!(repl_text(&events, &child).contains("answer = 42"));
}

#[test]
fn resize_command_reaches_the_actor_pty() {
    let mut run = Run::start(&scen(), &["winsize"]);
    run.wait_for("first size report", |e| {
        e["event"] == "output" && e["data"].as_str().is_some_and(|d| d.contains("size 24x80"))
    });
    run.send(json!({"cmd": "resize", "rows": 33, "cols": 99}));
    let (code, events) = run.finish();
    assert_eq!(code, 0);
    assert!(output_text(&events, "1").contains("size 33x99"));
}

#[test]
fn an_actor_joining_during_teardown_is_torn_down_too() {
    let mut run = Run::start(&scen(), &["late_joiner"]);
    let joined = run.wait_for("the late helper", |e| {
        e["event"] == "actor_started" && e["actor"] != "1"
    });
    let pid = joined["pid"].as_u64().expect("pid") as u32;
    let (code, events) = run.finish();
    assert_eq!(code, 0);
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "cancelling" && e["actor"] == joined["actor"]),
        "the late actor was cancelled"
    );
    assert!(!harness::alive(pid));
}

#[test]
fn a_daemon_holding_the_pty_neither_hangs_the_run_nor_outlives_it() {
    let mut run = Run::start(&scen(), &["daemon"]);
    let line = run.wait_for("daemon pid", |e| {
        e["event"] == "output" && e["data"].as_str().is_some_and(|d| d.contains("daemon pid"))
    });
    let pid: u32 = line["data"]
        .as_str()
        .and_then(|d| d.split("daemon pid ").nth(1))
        .and_then(|d| d.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .expect("pid");
    let (code, events) = run.finish();
    assert_eq!(code, 0);
    assert_eq!(
        events.last().expect("events")["event"],
        "exit",
        "exit is the last line"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while harness::alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!harness::alive(pid), "the daemon outlived the run");
}

#[test]
fn tab_completion_asks_the_holders_session() {
    let mut run = Run::start(&scen(), &["pause_once"]);
    run.wait_event("repl_ready");
    run.send(json!({"cmd": "complete", "data": "p a"}));
    let c = run.wait_event("completions");
    assert_eq!(c["matches"], json!(["p answer"]));
    run.send(json!({"cmd": "complete", "data": "t"}));
    let c = run.wait_event("completions");
    assert_eq!(c["matches"], json!(["tasks", "threads"]));
    run.input("c\n");
    assert_eq!(run.finish().0, 0);
}

#[test]
fn a_first_program_that_never_connects_is_announced_before_its_output() {
    let mut run = Run::start("sh", &["-c", "echo from-sh"]);
    run.wait_event("actor_exited");
    let (code, events) = run.finish();
    assert_eq!(code, 0);
    let started = events
        .iter()
        .position(|e| e["event"] == "actor_started")
        .expect("actor_started");
    let output = events
        .iter()
        .position(|e| e["event"] == "output")
        .expect("output");
    assert!(started < output, "actor_started after its output");
}

#[test]
fn a_program_reading_its_terminal_is_reported_and_answered_through_stdin() {
    let mut run = Run::start(
        "python3",
        &["-c", "name = input('name? '); print('hello', name)"],
    );
    run.wait_for("wants_input", |e| {
        e["event"] == "wants_input" && e["actor"] == "1"
    });
    run.send(json!({"cmd": "stdin", "actor": "1", "data": "blue\n"}));
    let (code, events) = run.finish();
    assert_eq!(code, 0);
    assert!(output_text(&events, "1").contains("hello blue"));
}

#[test]
fn input_in_a_subprocess_child_is_answered_through_the_actors_terminal() {
    let child = "print('got', input('q? '))";
    let script = format!(
        "import subprocess, sys; subprocess.run([sys.executable, '-c', {child:?}]); print('parent done')"
    );
    let mut run = Run::start("python3", &["-c", &script]);
    run.wait_for("wants_input", |e| {
        e["event"] == "wants_input" && e["actor"] == "1"
    });
    run.send(json!({"cmd": "stdin", "actor": "9", "data": "x\n"}));
    run.wait_notice("actor 9 has no terminal");
    run.send(json!({"cmd": "stdin", "actor": "1", "data": "forty-two\n"}));
    let (code, events) = run.finish();
    assert_eq!(code, 0);
    let out = output_text(&events, "1");
    assert!(
        out.contains("got forty-two") && out.contains("parent done"),
        "{out}"
    );
}
