//! Attached viewers (issue 11): `actor-tui attach --headless` on a run started elsewhere.
//! The root is a headless run of real Python processes that pause at once; viewers are
//! the real `attach` binary over the root's real socket.

use serde_json::{Value, json};

use crate::harness::{Run, count, is_notice};

fn start() -> Run {
    let path = format!(
        "{}/examples/python/multiproc.py",
        env!("CARGO_MANIFEST_DIR")
    );
    Run::start("python3", &[path.as_str(), "fork"])
}

/// The viewer's own `viewer` event: the first live one after its replay.
fn wait_self(v: &mut Run, role: &str) -> u64 {
    let e = v.wait_for(&format!("own viewer event ({role})"), |e| {
        e["event"] == "viewer" && e["role"] == role
    });
    e["viewer"].as_u64().expect("viewer id")
}

/// (event, actor) of lock and tree events, the part of a stream two front ends must agree on.
fn shape(events: &[Value]) -> Vec<(String, String)> {
    events
        .iter()
        .filter(|e| {
            matches!(
                e["event"].as_str(),
                Some(
                    "actor_started"
                        | "actor_exited"
                        | "lock_requested"
                        | "lock_granted"
                        | "lock_released"
                        | "repl_ready"
                        | "exit"
                )
            )
        })
        .map(|e| {
            (
                e["event"].as_str().unwrap_or("").to_owned(),
                e["actor"].to_string(),
            )
        })
        .collect()
}

#[test]
fn at01_an_observer_gets_the_run_so_far_and_every_event_after_and_cannot_type() {
    let mut root = start();
    for n in 1..=3 {
        root.wait_for(&format!("lock request {n}"), |e| {
            e["event"] == "lock_requested"
        });
    }
    let first = root.seen_or_wait("first prompt", |e| e["event"] == "repl_ready");
    let holder = first["actor"].as_str().expect("actor").to_owned();

    let mut obs = Run::attach(&root.socket, &[]);
    let me = wait_self(&mut obs, "observer");
    // The replay: the whole tree, the holder's session up to its prompt, both waiters.
    let replay_len = obs.events.len() - 1;
    let replay = &obs.events[..replay_len];
    assert_eq!(count(replay, "actor_started"), 4, "{}", obs.log());
    assert_eq!(count(replay, "lock_requested"), 3, "{}", obs.log());
    assert_eq!(count(replay, "lock_granted"), 1, "{}", obs.log());
    assert!(
        replay
            .iter()
            .any(|e| e["event"] == "repl_ready" && e["actor"] == holder.as_str()),
        "{}",
        obs.log()
    );
    // The root's own front end sees the viewer come.
    root.wait_for("viewer event at the root", |e| {
        e["event"] == "viewer" && e["viewer"] == me && e["role"] == "observer"
    });

    // Typing as an observer is refused, and nothing moves.
    obs.send(json!({"cmd": "input", "data": "c\n"}));
    obs.wait_for("refusal", |e| is_notice(e, "you are observing"));
    obs.send(json!({"cmd": "force_release"}));
    obs.wait_for("second refusal", |e| is_notice(e, "you are observing"));
    assert_eq!(count(&root.events, "lock_released"), 0, "{}", root.log());
    // Reading is allowed: a dump.
    obs.send(json!({"cmd": "dump", "actor": holder}));
    obs.wait_for("dump", |e| {
        e["event"] == "dump" && e["actor"] == holder.as_str()
    });

    // The root drives; the observer sees the same lock and tree events in the same order.
    let mark = root.events.len();
    root.input("c\n");
    let code = root.continue_all();
    assert_eq!(code, 0);
    let oexit = obs.wait_event("exit");
    assert_eq!(oexit["code"], 0);
    let (code, events) = root.finish();
    assert_eq!(code, 0);
    let root_after = shape(&events[mark..]);
    let obs_all = shape(&obs.events);
    assert!(
        obs_all.ends_with(&root_after),
        "observer stream differs\nroot: {root_after:?}\nobserver: {obs_all:?}"
    );
    assert_eq!(count(&events, "lock_granted"), 3);
    let status = crate::harness::wait_timeout(&mut obs.child, crate::harness::TIMEOUT)
        .expect("attach did not exit");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn at02_one_driver_at_a_time_and_take_over_is_announced_to_everyone() {
    let mut root = start();
    let first = root.wait_for("first prompt", |e| e["event"] == "repl_ready");
    let holder = first["actor"].as_str().expect("actor").to_owned();

    let mut a = Run::attach(&root.socket, &["--driver", "--name", "ann"]);
    let ann = wait_self(&mut a, "driver");
    let mut b = Run::attach(&root.socket, &["--driver", "--name", "bob"]);
    // Bob asked to drive while Ann does: he is an observer, and told why.
    let bob = wait_self(&mut b, "observer");
    b.wait_for("why not driving", |e| is_notice(e, "ann) drives"));
    a.wait_for("bob seen by ann", |e| {
        e["event"] == "viewer" && e["viewer"] == bob
    });

    // Ann drives: her `c` moves the lock.
    a.send(json!({"cmd": "input", "data": "c\n"}));
    root.wait_for("release by ann's input", |e| {
        e["event"] == "lock_released" && e["actor"] == holder.as_str()
    });
    let second = root.wait_for("second prompt", |e| e["event"] == "repl_ready");

    // Bob takes over; all three front ends see it.
    b.send(json!({"cmd": "drive", "take_over": true}));
    for (who, run) in [("root", &mut root), ("ann", &mut a), ("bob", &mut b)] {
        run.wait_for(&format!("{who} sees bob drive"), |e| {
            e["event"] == "viewer" && e["viewer"] == bob && e["role"] == "driver"
        });
        run.seen_or_wait(&format!("{who} sees ann observe"), |e| {
            e["event"] == "viewer" && e["viewer"] == ann && e["role"] == "observer"
        });
    }
    // Now Ann is refused and Bob is obeyed.
    a.send(json!({"cmd": "input", "data": "c\n"}));
    a.wait_for("ann refused", |e| is_notice(e, "you are observing: viewer"));
    b.send(json!({"cmd": "input", "data": "c\n"}));
    root.wait_for("release by bob's input", |e| {
        e["event"] == "lock_released" && e["actor"] == second["actor"]
    });

    // Bob detaches: driving is free again, and the root says he left.
    b.send(json!({"cmd": "detach"}));
    root.wait_for("bob gone", |e| {
        e["event"] == "viewer" && e["viewer"] == bob && e["role"] == "gone"
    });
    let status = crate::harness::wait_timeout(&mut b.child, crate::harness::TIMEOUT)
        .expect("bob's attach did not exit");
    assert_eq!(status.code(), Some(0), "detach exits 0");
    a.send(json!({"cmd": "drive"}));
    a.wait_for("ann drives again", |e| {
        e["event"] == "viewer" && e["viewer"] == ann && e["role"] == "driver"
    });
    // Ann hands driving to a newcomer by its id; then that driver ends the run, and every
    // front end sees the exit.
    let mut c = Run::attach(&root.socket, &["--name", "cy"]);
    let cy = wait_self(&mut c, "observer");
    a.send(json!({"cmd": "hand_over", "to": cy}));
    c.wait_for("cy drives", |e| {
        e["event"] == "viewer" && e["viewer"] == cy && e["role"] == "driver"
    });
    a.wait_for("ann sees it", |e| {
        e["event"] == "viewer" && e["viewer"] == cy && e["role"] == "driver"
    });
    c.send(json!({"cmd": "quit"}));
    c.wait_event("exit");
    a.wait_event("exit");
    root.finish();
}

#[test]
fn at03_frames_out_of_role_drop_that_connection_only() {
    use std::os::unix::net::UnixStream;
    let mut root = start();
    root.wait_for("first prompt", |e| e["event"] == "repl_ready");
    let hello = actor_tui::proto::ToRoot::Hello {
        protocol: actor_tui::proto::PROTOCOL_VERSION,
        agent: "it".into(),
    };
    // A viewer that asks for the lock, and a connection that sends a command without
    // attaching: each is told and dropped.
    let cases = [
        (
            vec![
                actor_tui::proto::ToRoot::Attach {
                    name: "v".into(),
                    driver: true,
                    take_over: false,
                },
                actor_tui::proto::ToRoot::LockRequest {
                    task: 1,
                    task_name: "t".into(),
                    reason: actor_tui::proto::Reason::Pause,
                    location: "x".into(),
                    peek: None,
                },
            ],
            "a viewer may send only commands",
        ),
        (
            vec![actor_tui::proto::ToRoot::Command {
                command: actor_tui::proto::RuntimeCommand::Quit,
            }],
            "command frames come only from attached viewers",
        ),
    ];
    for (frames, want) in cases {
        let mut s = UnixStream::connect(&root.socket).expect("connect");
        actor_tui::proto::write_frame_sync(&mut s, &hello).expect("hello");
        for f in &frames {
            actor_tui::proto::write_frame_sync(&mut s, f).expect("frame");
        }
        root.wait_for(want, |e| is_notice(e, want));
        assert!(
            crate::harness::closed_by_root(&mut s),
            "{want}: connection still open"
        );
    }
    // The run is untouched: the session still answers.
    root.input("p 1 + 1\n");
    root.wait_for("pdb answers", |e| {
        e["event"] == "repl_output" && e["data"].as_str().is_some_and(|d| d.contains('2'))
    });
    assert_eq!(count(&root.events, "exit"), 0);
    root.continue_all();
    root.finish();
}

#[test]
fn at04_another_uid_can_neither_attach_nor_join_even_through_a_loosened_socket() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let Some((uid, gid)) = crate::hardening::other_user() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs as root with useradd"
        );
        println!("SKIPPED: at04 needs root and useradd for a second user");
        return;
    };
    let mut root = start();
    root.wait_for("first prompt", |e| e["event"] == "repl_ready");
    // Loosen everything the file system checks, so only the peer-credential check is left.
    let dir = root.socket.parent().expect("dir").to_owned();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711)).expect("chmod dir");
    std::fs::set_permissions(&root.socket, std::fs::Permissions::from_mode(0o666))
        .expect("chmod socket");
    let as_other = |args: &[&str]| {
        std::process::Command::new(crate::harness::BIN)
            .args(args)
            .uid(uid)
            .gid(gid)
            .env_remove("XDG_RUNTIME_DIR")
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run as the other user")
    };
    let sock = root.socket.to_string_lossy().into_owned();
    // The attach client refuses a root of another user before drawing anything...
    let out = as_other(&["attach", "--headless", "--driver", &sock]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("is not a root of this user"), "{err}");
    // ...and the root refuses the other user's peer whatever it is (here an actor).
    let out = std::process::Command::new(crate::harness::example("remote_worker"))
        .arg("1")
        .uid(uid)
        .gid(gid)
        .env("ACTOR_TUI_SOCKET", &root.socket)
        .env_remove("ACTOR_TUI_TICKET")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("worker as the other user");
    assert!(!out.status.success() || !String::from_utf8_lossy(&out.stderr).is_empty());
    // The root says so (the peer itself may see only a closed socket: it is refused before
    // its hello is read).
    root.wait_for("the root's notice", |e| {
        is_notice(e, &format!("connections from uid {uid} are refused"))
    });
    // The run is untouched: nobody new attached, the session still answers.
    assert!(!root.events.iter().any(|e| e["event"] == "viewer"));
    root.input("c\n");
    assert_eq!(root.continue_all(), 0);
    root.finish();
}
