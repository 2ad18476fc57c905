//! Issue 14: Ray tasks and actors in one console. Real Ray (a venv `.ci/run` makes, found
//! through ACTOR_TUI_TEST_RAY_PYTHON): a local cluster started by the driver's `ray.init()`,
//! and a second node (`ray start --address`) joining the console over the TLS ticket.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;

use crate::harness::{Run, ask, next_session_within, repl_text, tempdir};

/// Ray clusters are heavy on two cores: one test at a time.
static ONE_CLUSTER: Mutex<()> = Mutex::new(());

/// How long a cluster may take to start and run its first task on a busy machine.
const RAY_START: Duration = Duration::from_secs(180);

/// The interpreter with Ray installed. Under CI a missing one fails the test; elsewhere the
/// test says why it does not run.
fn ray_python(test: &str) -> Option<String> {
    let python = std::env::var("ACTOR_TUI_TEST_RAY_PYTHON").ok();
    if python.is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: ACTOR_TUI_TEST_RAY_PYTHON is not set; .ci/run sets it"
        );
        eprintln!(
            "SKIPPED {test}: set ACTOR_TUI_TEST_RAY_PYTHON to a python with `ray` installed \
             (.ci/run makes one)"
        );
    }
    python
}

/// A run of `python script` under actor-tui with Ray's state kept in `dir` (its token and
/// logs stay out of the user's home).
fn start(python: &str, flags: &[&str], script: &Path, home: &Path) -> Run {
    let dir = tempdir();
    let socket = dir.path().join("root.sock");
    let mut args: Vec<&str> = flags.to_vec();
    args.push(python);
    args.push(script.to_str().expect("path"));
    let home = home.to_owned();
    Run::start_with(args[0], &args[1..], dir, socket, move |cmd| {
        ray_env(cmd, &home);
    })
}

fn ray_env(cmd: &mut Command, home: &Path) {
    cmd.env("HOME", home)
        .env("RAY_USAGE_STATS_ENABLED", "0")
        .env("RAY_DEDUP_LOGS", "0");
}

fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, body).expect("write script");
    path
}

/// The event that started `actor`.
fn started<'a>(events: &'a [Value], actor: &str) -> &'a Value {
    events
        .iter()
        .find(|e| e["event"] == "actor_started" && e["actor"] == actor)
        .unwrap_or_else(|| panic!("no actor_started for {actor}"))
}

fn parent_of(events: &[Value], actor: &str) -> String {
    started(events, actor)["parent"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

fn name_of(events: &[Value], actor: &str) -> String {
    started(events, actor)["name"]
        .as_str()
        .unwrap_or("")
        .to_owned()
}

fn driver_output(events: &[Value]) -> String {
    crate::harness::output_text(events, "1")
}

const LOCAL_JOB: &str = r#"
import ray

ray.init(address="local", num_cpus=2, include_dashboard=False)

@ray.remote
def square(i):
    x = i * i
    breakpoint()
    return x

@ray.remote
class Counter:
    def __init__(self):
        self.n = 0

    def step(self, by):
        self.n += by
        breakpoint()
        return self.n

    def boom(self):
        y = 42
        raise ValueError("boom %d" % y)

counters = [Counter.remote() for _ in range(2)]
print("boom goes to actor", counters[0]._actor_id.hex()[:8], flush=True)
refs = [square.remote(i) for i in range(8)] + [c.step.remote(10) for c in counters]
print("results", sorted(ray.get(refs)), flush=True)
try:
    ray.get(counters[0].boom.remote())
except ray.exceptions.RayTaskError as e:
    print("boom reported:", type(e.cause).__name__, e.cause, flush=True)
try:
    ray.get(square.remote(100))
except ray.exceptions.RayTaskError as e:
    print("quit reported:", type(e.cause).__name__, flush=True)
"#;

#[test]
fn ray01_every_task_and_actor_breakpoint_is_one_session_in_order() {
    let Some(python) = ray_python("ray01") else {
        return;
    };
    let _one = ONE_CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempdir();
    let script = write(dir.path(), "job.py", LOCAL_JOB);
    let mut run = start(&python, &[], &script, dir.path());

    // 8 tasks and 2 actor methods pause: 10 sessions, one at a time, each named by its task.
    let mut tasks = Vec::new();
    let mut actors_of_counters = Vec::new();
    for n in 0..10 {
        let wait = if n == 0 {
            RAY_START
        } else {
            Duration::from_secs(60)
        };
        let (actor, req) = next_session_within(&mut run, wait);
        let task = req["task_name"].as_str().expect("task_name").to_owned();
        assert_eq!(req["reason"], "pause", "events:\n{}", run.log());
        assert!(
            req["location"].as_str().unwrap_or("").contains("job.py:"),
            "{req}"
        );
        if task.starts_with("square task ") {
            // The task's own frame, with its argument.
            let x = ask(&mut run, &actor, "p x == i * i, i < 8");
            assert!(x.contains("(True, True)"), "{x}");
            if tasks.is_empty() {
                // A dump of the worker while it debugs: it answers itself.
                run.send(serde_json::json!({"cmd": "dump", "actor": actor}));
                let dump = run.wait_for("the worker's dump", |e| {
                    e["event"] == "dump" && e["actor"] == actor
                });
                assert_eq!(dump["step"], "cooperative", "{dump}");
                assert!(
                    dump["text"].as_str().unwrap_or("").contains("square"),
                    "{dump}"
                );
            }
        } else {
            assert!(task.starts_with("Counter.step task "), "{task}");
            let n = ask(&mut run, &actor, "p self.n, by");
            assert!(n.contains("(10, 10)"), "{n}");
            actors_of_counters.push(actor.clone());
        }
        assert!(task.contains(" job "), "named with its job: {task}");
        tasks.push(task);
        run.input("c\n");
    }
    let mut unique = tasks.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 10, "one session per task: {tasks:?}");
    assert_eq!(tasks.iter().filter(|t| t.starts_with("square")).count(), 8);

    // An exception in an actor method: a post-mortem in that worker, on its own frames.
    let (actor, req) = next_session_within(&mut run, Duration::from_secs(60));
    assert_eq!(req["reason"], "crash", "{req}");
    assert!(
        req["task_name"]
            .as_str()
            .unwrap_or("")
            .starts_with("Counter.boom task ")
    );
    // In the worker that hosts that actor (named with its id), which paused before.
    let out = driver_output(&run.events);
    let boom_id = out
        .split("boom goes to actor ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("the driver names the actor: {out}"))
        .to_owned();
    let name = name_of(&run.events, &actor);
    assert!(
        name.contains(&format!("actor {boom_id}[")),
        "{name} hosts {boom_id}"
    );
    assert!(
        actors_of_counters.contains(&actor),
        "the actor's own worker"
    );
    let text = repl_text(&run.events, &actor);
    assert!(text.contains("ValueError: boom 42"), "{text}");
    let y = ask(&mut run, &actor, "p y");
    assert!(y.contains("42"), "{y}");
    run.input("c\n");

    // `q` fails the task as Ray reports it: BdbQuit, the worker lives on.
    let (actor, req) = next_session_within(&mut run, Duration::from_secs(60));
    assert!(
        req["task_name"]
            .as_str()
            .unwrap_or("")
            .starts_with("square task ")
    );
    let text = repl_text(&run.events, &actor);
    assert!(text.contains("`q` fails this Ray task"), "{text}");
    run.input("q\n");

    let (code, events) = run.finish();
    assert_eq!(code, 0, "{}", driver_output(&events));
    let out = driver_output(&events);
    assert!(
        out.contains("results [0, 1, 4, 9, 10, 10, 16, 25, 36, 49]"),
        "{out}"
    );
    assert!(out.contains("boom reported: ValueError boom 42"), "{out}");
    assert!(out.contains("quit reported: BdbQuit"), "{out}");

    // The tree: driver -> its Ray node -> worker processes, the actors' named as actors.
    let mut nodes: Vec<String> = Vec::new();
    for e in events.iter().filter(|e| e["event"] == "lock_granted") {
        let actor = e["actor"].as_str().expect("actor");
        let node = parent_of(&events, actor);
        assert!(
            name_of(&events, &node).starts_with("ray node "),
            "{}",
            name_of(&events, &node)
        );
        assert_eq!(
            parent_of(&events, &node),
            "1",
            "the node is under the driver"
        );
        nodes.push(node);
    }
    nodes.dedup();
    assert_eq!(nodes.len(), 1, "one node: {nodes:?}");
    for a in &actors_of_counters {
        let name = name_of(&events, a);
        assert!(name.starts_with("Counter actor "), "{name}");
    }
    // Idle workers never connected: every actor in the tree paused, or is a node.
    for e in events.iter().filter(|e| e["event"] == "actor_started") {
        let id = e["actor"].as_str().expect("id");
        let paused = events
            .iter()
            .any(|g| g["event"] == "lock_requested" && g["actor"] == id);
        let is_node = e["pid"] == 0;
        assert!(
            paused || is_node || id == "1",
            "idle actor in the tree: {e}"
        );
    }
}

/// `ray start --address ... --block`: a second node, its own process group, stopped (with
/// every process it started) when dropped.
struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        // `--block` stops its node's processes when it is asked to end.
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let ended = crate::harness::wait_timeout(&mut self.0, Duration::from_secs(30)).is_some();
        // Whatever of its group is left (it was given its chance to stop them).
        let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
        if !ended {
            let _ = self.0.wait();
        }
    }
}

const TWO_NODE_JOB: &str = r#"
import os, sys, time
import ray

info = ray.init(address="local", num_cpus=1, include_dashboard=False, resources={"head": 1})
addr_file = sys.argv[1]
with open(addr_file + ".tmp", "w") as f:
    f.write(info.address_info["gcs_address"])
os.rename(addr_file + ".tmp", addr_file)
while not any(n["Alive"] and n["Resources"].get("node2") for n in ray.nodes()):
    time.sleep(0.2)

@ray.remote
def where(tag):
    breakpoint()
    return tag

print("results", ray.get([where.options(resources={"head": 1}).remote("head"),
                          where.options(resources={"node2": 1}).remote("node2")]), flush=True)
"#;

#[test]
fn ray02_a_second_node_joins_the_console_over_the_tls_ticket() {
    let Some(python) = ray_python("ray02") else {
        return;
    };
    let _one = ONE_CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempdir();
    let addr_file = dir.path().join("gcs-address");
    let script = write(dir.path(), "job.py", TWO_NODE_JOB);
    let dir_path = dir.path().to_owned();
    let run_dir = tempdir();
    let socket = run_dir.path().join("root.sock");
    let mut run = Run::start_with(
        "--listen",
        &[
            "127.0.0.1:0",
            &python,
            script.to_str().expect("path"),
            addr_file.to_str().expect("path"),
        ],
        run_dir,
        socket,
        move |cmd| ray_env(cmd, &dir_path),
    );
    run.wait_event("listening");
    // The driver's cluster is up once it wrote its address.
    let deadline = std::time::Instant::now() + RAY_START;
    while !addr_file.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "the driver's cluster did not start; events:\n{}",
            run.log()
        );
        // Reading events is what waits here (the driver prints as Ray starts).
        let _ = run.wait_within(Duration::from_millis(200), |_| false);
    }
    let address = std::fs::read_to_string(&addr_file).expect("address");
    let ray = Path::new(&python).with_file_name("ray");
    let mut cmd = Command::new(&ray);
    cmd.args([
        "start",
        "--block",
        "--address",
        address.trim(),
        "--num-cpus=1",
        "--resources={\"node2\": 1}",
        "--disable-usage-stats",
    ])
    // Ray's token authentication is on for the driver's cluster; the node reads the same
    // token from the same home.
    .env("RAY_AUTH_MODE", "token")
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .process_group(0);
    ray_env(&mut cmd, dir.path());
    let _node = Node(cmd.spawn().expect("ray start"));

    let mut seen = Vec::new();
    for _ in 0..2 {
        let (actor, req) = next_session_within(&mut run, RAY_START);
        assert!(
            req["task_name"]
                .as_str()
                .unwrap_or("")
                .starts_with("where task ")
        );
        let tag = ask(&mut run, &actor, "p tag");
        seen.push((actor, tag));
        run.input("c\n");
    }
    let (code, events) = run.finish();
    assert_eq!(code, 0, "{}", driver_output(&events));
    assert!(
        driver_output(&events).contains("results ['head', 'node2']"),
        "{}",
        driver_output(&events)
    );
    for (actor, tag) in &seen {
        let name = name_of(&events, actor);
        let node = parent_of(&events, actor);
        assert!(name_of(&events, &node).starts_with("ray node "));
        if tag.contains("'node2'") {
            // Over TLS: a remote actor (its link's address in its name), its node under the
            // host's.
            assert!(name.contains("@127.0.0.1:"), "{name}");
            let host = parent_of(&events, &node);
            assert_eq!(name_of(&events, &host), "host 127.0.0.1");
        } else {
            assert!(tag.contains("'head'"), "{tag}");
            assert!(
                !name.contains('@'),
                "the driver's own node uses the socket: {name}"
            );
            assert_eq!(parent_of(&events, &node), "1");
        }
    }
    assert_ne!(
        parent_of(&events, &seen[0].0),
        parent_of(&events, &seen[1].0),
        "two Ray nodes, two groups"
    );
}

const HANGING_JOB: &str = r#"
import time
import ray

ray.init(address="local", num_cpus=1, include_dashboard=False)

@ray.remote
def stuck_in_c():
    import re
    # Backtracking for ages inside one C call, the GIL held: the worker's own client
    # cannot answer a dump.
    re.match(r"(a+)+$", "a" * 64 + "b")

ref = stuck_in_c.remote()
ready, _ = ray.wait([ref], timeout=600)
"#;

#[test]
fn ray03_a_task_hung_in_c_that_never_paused_is_read_from_outside_in_a_tree_wide_dump() {
    let Some(python) = ray_python("ray03") else {
        return;
    };
    let _one = ONE_CLUSTER.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempdir();
    let script = write(dir.path(), "job.py", HANGING_JOB);
    let run_dir = tempdir();
    let socket = run_dir.path().join("root.sock");
    let home = dir.path().to_owned();
    let mut run = Run::start_with(
        &python,
        &[script.to_str().expect("path")],
        run_dir,
        socket,
        move |cmd| {
            ray_env(cmd, &home);
            cmd.env("ACTOR_TUI_RAY_CONNECT", "1");
        },
    );
    // Workers connect at start-up, under their node, though none pauses.
    let worker = run
        .wait_within(RAY_START, |e| {
            e["event"] == "actor_started"
                && e["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("ray worker["))
        })
        .unwrap_or_else(|| panic!("no worker connected; events:\n{}", run.log()));
    let node = worker["parent"].as_str().expect("under a node").to_owned();
    assert!(name_of(&run.events, &node).starts_with("ray node "));
    // Until the task is in its loop, a snapshot may not show it: ask until one does.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        run.send(serde_json::json!({"cmd": "dump_all"}));
        let snap = run.wait_event("snapshot");
        let text = snap["text"].as_str().unwrap_or("").to_owned();
        if text.contains("stuck_in_c") {
            assert!(text.contains("job.py"), "{text}");
            // Read from outside: the root is the worker's ancestor (the driver's cluster).
            assert!(
                text.contains("faulthandler") || text.contains("py-spy"),
                "{text}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no snapshot showed the hanging task; last:\n{text}"
        );
    }
    run.send(serde_json::json!({"cmd": "quit"}));
    run.finish();
}
