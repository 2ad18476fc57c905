//! The queue you can act on (issue 13, first part): promote, skip, continue all at a
//! location, auto-continue, on twenty real Rust pausers queued at one line.

use serde_json::json;

use crate::harness::{BIN, Run, count};

#[test]
fn q01_promote_skip_and_continue_all_on_twenty_identical_pausers() {
    let mut run = Run::start(BIN, &["__demo", "bench_top", "20", "1"]);
    let mut requests = Vec::new();
    while requests.len() < 20 {
        let e = run.wait_event("lock_requested");
        requests.push((
            e["actor"].as_str().expect("actor").to_owned(),
            e["location"].as_str().expect("loc").to_owned(),
        ));
    }
    let first = run.seen_or_wait("the first grant", |e| e["event"] == "lock_granted");
    let holder = first["actor"].as_str().expect("actor").to_owned();
    let waiters: Vec<String> = requests
        .iter()
        .map(|r| r.0.clone())
        .filter(|a| *a != holder)
        .collect();
    // Promote the last waiter: it is granted next.
    let last = waiters.last().expect("waiters").clone();
    run.send(json!({"cmd": "promote", "actor": last, "task": 1}));
    let re = run.wait_event("queue_reordered");
    assert_eq!(re["order"][0]["actor"], last.as_str());
    // Skip another: it goes on without a session and its process ends well.
    let skipped = waiters[0].clone();
    run.send(json!({"cmd": "skip", "actor": skipped, "task": 1}));
    run.wait_for("skipped", |e| {
        e["event"] == "request_skipped" && e["actor"] == skipped.as_str() && e["why"] == "skip"
    });
    run.wait_for("the skipped pauser exits 0", |e| {
        e["event"] == "actor_exited" && e["actor"] == skipped.as_str() && e["code"] == 0
    });
    run.seen_or_wait("the holder's prompt", |e| {
        e["event"] == "repl_ready" && e["actor"] == holder.as_str()
    });
    run.input("c\n");
    let next = run.wait_event("lock_granted");
    assert_eq!(
        next["actor"],
        last.as_str(),
        "the promoted waiter came next"
    );
    // Every other waiter is at the same line: one command lets them all go on.
    let location = &requests[0].1;
    let tail = location.rsplit('/').next().expect("tail").to_owned();
    run.send(json!({"cmd": "continue_all", "location": tail}));
    run.wait_notice("continue all: 17 waiting pauses");
    run.seen_or_wait("the promoted one's prompt", |e| {
        e["event"] == "repl_ready" && e["actor"] == last.as_str()
    });
    run.input("c\n");
    let (code, events) = run.finish();
    assert_eq!(code, 0);
    assert_eq!(count(&events, "lock_granted"), 2);
    assert_eq!(count(&events, "request_skipped"), 18);
    assert!(!events.iter().any(|e| e["event"] == "actor_exited"
        && e["code"] != 0
        && e["code"] != serde_json::Value::Null));
}

#[test]
fn q02_auto_continue_lets_every_later_pause_at_a_location_go_on() {
    let mut run = Run::start(BIN, &["__demo", "bench_top", "6", "3"]);
    let first = run.wait_event("lock_granted");
    let location = run
        .events
        .iter()
        .find(|e| e["event"] == "lock_requested")
        .expect("request")["location"]
        .as_str()
        .expect("loc")
        .to_owned();
    run.send(json!({"cmd": "auto_continue", "location": location}));
    run.wait_notice("every pause there goes on from now");
    run.seen_or_wait("the holder's prompt", |e| {
        e["event"] == "repl_ready" && e["actor"] == first["actor"]
    });
    run.input("c\n");
    // Every one of the remaining 17 pauses (6 actors × 3, minus the one that held) goes on.
    let (code, events) = run.finish();
    assert_eq!(code, 0);
    assert_eq!(count(&events, "lock_granted"), 1);
    assert_eq!(count(&events, "request_skipped"), 17);
    assert!(
        events
            .iter()
            .any(|e| crate::harness::is_notice(e, "pauses went on without a session"))
    );
}

#[test]
fn q03_waiting_requests_carry_a_peek_of_their_pause() {
    // Rust: the values `pause!` captured.
    let mut run = Run::start(BIN, &["__demo", "bench_top", "2", "1"]);
    for _ in 0..2 {
        let e = run.wait_event("lock_requested");
        let peek = e["peek"].as_str().unwrap_or_else(|| panic!("no peek: {e}"));
        assert!(peek.contains("round = 0"), "{peek}");
    }
    // The one that waits completes its peek with its backtrace, without taking the lock.
    let more = run.seen_or_wait("the waiter's backtrace", |e| e["event"] == "lock_peek");
    let peek = more["peek"].as_str().expect("peek");
    assert!(
        peek.contains("round = 0") && peek.contains("backtrace:") && peek.contains("bench_pauser"),
        "{peek}"
    );
    let granted: Vec<&serde_json::Value> = run
        .events
        .iter()
        .filter(|e| e["event"] == "lock_granted")
        .collect();
    assert_eq!(granted.len(), 1, "a peek takes no lock");
    assert_ne!(
        granted[0]["actor"], more["actor"],
        "only a waiter completes its peek"
    );
    run.seen_or_wait("the first prompt", |e| e["event"] == "repl_ready");
    run.input("c\n");
    run.continue_all();
    run.finish();
    // Python: pdb's `where` and the frame's locals.
    let path = format!(
        "{}/examples/python/multiproc.py",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut run = Run::start("python3", &[path.as_str(), "fork"]);
    for _ in 0..3 {
        let e = run.wait_event("lock_requested");
        let peek = e["peek"].as_str().unwrap_or_else(|| panic!("no peek: {e}"));
        assert!(
            peek.contains("where:") && peek.contains("multiproc.py"),
            "{peek}"
        );
        assert!(
            peek.contains("locals:") && peek.contains("share = "),
            "{peek}"
        );
    }
    run.seen_or_wait("the first prompt", |e| e["event"] == "repl_ready");
    run.input("c\n");
    run.continue_all();
    run.finish();
}

#[test]
fn q04_holders_lease_their_grant_and_a_lapsed_lease_is_suspect_not_released() {
    // Rust: the holder leases its grant.
    let mut run = Run::start(BIN, &["__demo", "bench_top", "1", "1"]);
    let g = run.wait_event("lock_granted");
    run.wait_for("the Rust holder's lease", |e| {
        e["event"] == "lock_leased" && e["epoch"] == g["epoch"]
    });
    run.seen_or_wait("the prompt", |e| e["event"] == "repl_ready");
    run.input("c\n");
    run.finish();

    // Python: a long step that lets the process run is not suspect (the leases go on);
    // a step that holds the GIL for good stops the leases, and the holder is suspect.
    let dir = crate::harness::tempdir();
    let script = dir.path().join("lease.py");
    std::fs::write(&script, "x = 1\nbreakpoint()\nprint('after', x)\n").expect("script");
    let mut run = Run::start("python3", &[script.to_str().expect("path")]);
    let g = run.wait_event("lock_granted");
    let (actor, epoch) = (g["actor"].clone(), g["epoch"].clone());
    run.seen_or_wait("the Python holder's lease", |e| {
        e["event"] == "lock_leased" && e["epoch"] == epoch
    });
    run.seen_or_wait("the prompt", |e| e["event"] == "repl_ready");
    // Longer than the 5 s the old "unanswered input" rule allowed.
    run.input("!import time; time.sleep(5.5)\n");
    run.wait_for("the prompt after the sleep", |e| {
        e["event"] == "repl_ready" || e["event"] == "lock_suspect"
    });
    assert!(
        !run.events.iter().any(|e| e["event"] == "lock_suspect"),
        "a leasing holder running a step was marked suspect:\n{}",
        run.log()
    );
    // A C loop that never lets go of the GIL: the lease thread cannot run.
    run.input("!sum(range(10**13))\n");
    let s = run.wait_event("lock_suspect");
    assert_eq!(s["why"], "lease_lapsed", "{s}");
    assert_eq!(s["actor"], actor);
    // `since_ms` counts from the holder's last frame (README), not its last lease: the
    // prompt after the sleep may have come up to a beat after that lease, so the silence is
    // over LEASE_LAPSE (3 s) less one beat (1 s).
    assert!(s["since_ms"].as_u64().expect("since") > 2000, "{s}");
    // Suspect is a warning: the lock stays until the user says so.
    assert!(!run.events.iter().any(|e| e["event"] == "lock_released"));
    run.send(json!({"cmd": "force_release"}));
    let r = run.wait_event("lock_released");
    assert_eq!(r["cause"], "force");
    run.wait_notice("was told its lock is revoked");
    run.send(json!({"cmd": "quit"}));
    run.finish();
}

#[test]
fn q05_every_session_is_kept_as_a_transcript_and_the_run_gets_a_report() {
    let mut run = Run::start(BIN, &["__demo", "bench_top", "2", "1"]);
    let mut typed = Vec::new();
    for _ in 0..2 {
        let g = run.wait_event("lock_granted");
        run.wait_for("the prompt", |e| {
            e["event"] == "repl_ready" && e["actor"] == g["actor"]
        });
        run.input("p round\n");
        run.wait_for("the answer", |e| {
            e["event"] == "repl_output"
                && e["data"].as_str().is_some_and(|d| d.contains("round = 0"))
        });
        // The next prompt first: a line typed ahead of it is kept where it was typed.
        run.wait_for("the next prompt", |e| {
            e["event"] == "repl_ready" && e["actor"] == g["actor"]
        });
        run.input("c\n");
        let ended = run.wait_event("session_ended");
        assert_eq!(ended["actor"], g["actor"]);
        assert_eq!(ended["epoch"], g["epoch"]);
        assert_eq!(ended["cause"], "continue");
        assert_eq!(ended["lines_in"], 2);
        typed.push(ended);
    }
    // The files live in the run's state directory, which outlives the run here.
    let _dir = run.keep_dir();
    let (code, events) = run.finish();
    assert_eq!(code, 0);
    for ended in &typed {
        let path = ended["path"]
            .as_str()
            .unwrap_or_else(|| panic!("no path: {ended}"));
        let text = std::fs::read_to_string(path).expect("transcript");
        // Exactly what the session showed: the prompt, the typed line, the answer.
        assert!(
            text.contains("(actor-tui) p round\nround = 0\n(actor-tui) c\n"),
            "{text}"
        );
        assert!(
            text.starts_with(&format!("# actor-tui session {}", ended["session"])),
            "{text}"
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{path}");
    }
    let report = events
        .iter()
        .find(|e| e["event"] == "report")
        .expect("a report at the end");
    let html = std::fs::read_to_string(report["path"].as_str().expect("path")).expect("report");
    assert!(
        html.contains("2 sessions") && html.contains("<svg"),
        "{html}"
    );
    for ended in &typed {
        let file = std::path::Path::new(ended["path"].as_str().expect("path"))
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        assert!(html.contains(&file), "{file} not linked from the report");
    }
}

#[test]
fn q06_a_config_file_sets_admission_rules_and_a_bad_line_is_named() {
    let dir = crate::harness::tempdir();
    // A mistake: the error names the file and the line, and nothing runs.
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "grace_ms = 100\n\n[[rules]]\nlocation = \"*\"\naction = \"explode\"\n",
    )
    .expect("write");
    let out = std::process::Command::new(BIN)
        .args(["config", "--config"])
        .arg(&bad)
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("bad.toml:3:") && err.contains("unknown action `explode`"),
        "{err}"
    );
    let out = std::process::Command::new(BIN)
        .args(["--headless", "--config"])
        .arg(&bad)
        .args(["true"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.toml:3:"));

    // Only the first crash at the line gets a post-mortem; the other three go on and are
    // listed with their message and backtrace.
    let good = dir.path().join("good.toml");
    std::fs::write(
        &good,
        "[[rules]]\nlocation = \"*\"\naction = \"crash_limit\"\nfirst = 1\n",
    )
    .expect("write");
    let out = std::process::Command::new(BIN)
        .args(["config", "--config"])
        .arg(&good)
        .output()
        .expect("run");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains("crash_limit") && printed.contains("first = 1"),
        "{printed}"
    );
    let good = good.to_str().expect("path").to_owned();
    let mut run = Run::start_flags(&["--config", &good], BIN, &["__demo", "crash_top", "4"]);
    run.wait_for("the rule in force", |e| {
        e["event"] == "rules" && e["rules"][0]["rule"] == "crash_limit 1 *"
    });
    let g = run.wait_event("lock_granted");
    run.seen_or_wait("the post-mortem prompt", |e| {
        e["event"] == "repl_ready" && e["actor"] == g["actor"]
    });
    // The other three crash meanwhile (before or after that prompt) and are let go.
    let skipped = |events: &[serde_json::Value]| {
        events
            .iter()
            .filter(|e| e["event"] == "request_skipped" && e["why"] == "crash_limit 1 *")
            .count()
    };
    while skipped(&run.events) < 3 {
        run.wait_for("a skipped crash", |e| e["event"] == "request_skipped");
    }
    run.send(json!({"cmd": "rules"}));
    let rules = run.wait_for("the crash list", |e| {
        e["event"] == "rules" && e["crashes"].as_array().is_some_and(|c| c.len() == 3)
    });
    assert_eq!(rules["rules"][0]["skipped"], 3);
    let text = rules["crashes"][0]["text"].as_str().expect("text");
    assert!(
        text.contains("panic: index out of bounds") && text.contains("backtrace:"),
        "{text}"
    );
    run.input("c\n");
    let (code, events) = run.finish();
    assert_eq!(code, 0);
    assert_eq!(count(&events, "lock_granted"), 1);
}
