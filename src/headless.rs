//! The headless front end: runtime events as JSON lines on stdout, commands as JSON lines on
//! stdin. It is the contract scripts and CI rely on (documented in the README), so field
//! names here only grow.

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use crate::runtime::{Runtime, RuntimeCommand, RuntimeEvent};

/// One event as the JSON object printed for it (its serde form: see [`RuntimeEvent`]).
pub fn event_json(ev: &RuntimeEvent) -> Value {
    // Every field is a string, number, bool, null, list or map of those: cannot fail.
    serde_json::to_value(ev)
        .unwrap_or_else(|e| json!({"event": "notice", "actor": null, "message": e.to_string()}))
}

/// Why a command line was not understood.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct CommandError(#[from] serde_json::Error);

/// Parses one stdin line into a command (the schema is [`RuntimeCommand`]'s serde form).
pub fn parse_command(line: &str) -> Result<RuntimeCommand, CommandError> {
    Ok(serde_json::from_str(line)?)
}

/// Runs the headless front end until the run ends; returns the exit code.
pub async fn run(mut rt: Runtime) -> i32 {
    let commands = rt.commands.clone();
    // A CI timeout (SIGTERM) or Ctrl-C tears the tree down like `quit`, within a bound.
    if let Err(e) = crate::runtime::quit_on_signals(commands.clone(), rt.grace, || {}) {
        eprintln!("actor-tui: cannot install signal handlers: {e}");
    }
    // A closed stdin (CI, `< /dev/null`) is not a request to quit: the run goes on.
    let reader = tokio::spawn(read_commands(commands, None));
    let mut out = Lines::start();
    let mut code = None;
    while let Some(ev) = rt.events.recv().await {
        if let RuntimeEvent::Exit { code: c } = ev {
            code = Some(c);
        }
        // A failed write: nobody reads our stdout any more; keep draining so the run still
        // ends cleanly.
        out.event(&ev).await;
        // `exit` is the last line, even if an escaped daemon still holds a PTY open.
        if code.is_some() {
            break;
        }
    }
    out.finish().await;
    reader.abort();
    match code {
        Some(c) => c,
        None => rt.task.await.unwrap_or(1),
    }
}

/// The headless front end of `actor-tui attach --headless`: the same lines out, the same
/// commands in, plus `{"cmd":"detach"}`. Detaching (that line, SIGINT, SIGTERM, SIGHUP)
/// only closes this viewer's connection; the run goes on. Returns the run's exit code if it
/// ended while attached, 0 after a detach, 1 if the link to the root was lost.
pub async fn run_attached(mut rt: Runtime) -> i32 {
    let (detach_tx, mut detach_rx) = mpsc::channel::<()>(1);
    let reader = tokio::spawn(read_commands(rt.commands.clone(), Some(detach_tx)));
    let signalled = any_signal();
    tokio::pin!(signalled);
    let mut out = Lines::start();
    let code = loop {
        let ev = tokio::select! {
            ev = rt.events.recv() => ev,
            Some(()) = detach_rx.recv() => break 0,
            () = &mut signalled => break 0,
        };
        let Some(ev) = ev else { break 1 };
        out.event(&ev).await;
        if let RuntimeEvent::Exit { code } = ev {
            break code;
        }
    };
    out.finish().await;
    reader.abort();
    rt.task.abort();
    code
}

/// SIGINT, SIGTERM or SIGHUP (whichever can be listened for).
async fn any_signal() {
    use tokio::signal::unix::{Signal, SignalKind, signal};
    async fn next(s: &mut Option<Signal>) {
        match s {
            Some(s) => {
                s.recv().await;
            }
            None => std::future::pending().await,
        }
    }
    let mut int = signal(SignalKind::interrupt()).ok();
    let mut term = signal(SignalKind::terminate()).ok();
    let mut hup = signal(SignalKind::hangup()).ok();
    tokio::select! {
        () = next(&mut int) => {}
        () = next(&mut term) => {}
        () = next(&mut hup) => {}
    }
}

/// Event lines to stdout, written by a thread of their own and flushed as soon as they are
/// written (a driving script stays in lock-step with the tree); lines that queued up meanwhile
/// go out in one write. tokio's stdout would send every write and every flush through its
/// blocking pool, two thread handoffs per event: a measured third of the root's CPU per
/// lock handoff. Bounded: a stdout nobody reads stops the loop that feeds it, as before.
struct Lines {
    tx: Option<mpsc::Sender<Vec<u8>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Lines waiting for the writer thread.
const LINES_QUEUED: usize = 1024;

impl Lines {
    fn start() -> Self {
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(LINES_QUEUED);
        let thread = std::thread::Builder::new()
            .name("actor-tui-stdout".into())
            .spawn(move || {
                use std::io::Write;
                let mut out = std::io::stdout().lock();
                let mut gone = false;
                while let Some(mut buf) = rx.blocking_recv() {
                    while let Ok(more) = rx.try_recv() {
                        buf.extend_from_slice(&more);
                    }
                    // Once stdout is gone, lines are taken and dropped: the run still ends.
                    gone = gone || out.write_all(&buf).and_then(|()| out.flush()).is_err();
                }
            })
            .ok();
        Self {
            tx: thread.is_some().then_some(tx),
            thread,
        }
    }

    /// Queues one event's line.
    async fn event(&mut self, ev: &RuntimeEvent) {
        let mut line = event_json(ev).to_string().into_bytes();
        line.push(b'\n');
        match &self.tx {
            Some(tx) => {
                let _ = tx.send(line).await;
            }
            None => {
                // No thread could be started: write here, as a last resort.
                let mut out = tokio::io::stdout();
                let _ = out.write_all(&line).await;
                let _ = out.flush().await;
            }
        }
    }

    /// Waits until every queued line is written (the process may end right after).
    async fn finish(mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

/// Command lines from stdin to the engine; a bad line is reported on stderr and skipped.
/// With `detach`, `{"cmd":"detach"}` says so and ends the reading (an attached viewer's).
async fn read_commands(commands: mpsc::Sender<RuntimeCommand>, detach: Option<mpsc::Sender<()>>) {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut err = tokio::io::stderr();
    // Keep our sender alive after stdin ends: dropping it would tell the engine to quit.
    let _keep = commands.clone();
    while let Ok(Some(line)) = lines.next_line().await {
        if line.trim().is_empty() {
            continue;
        }
        if let Some(tx) = &detach
            && serde_json::from_str::<Value>(&line)
                .ok()
                .is_some_and(|v| v.get("cmd").and_then(Value::as_str) == Some("detach"))
        {
            let _ = tx.send(()).await;
            return;
        }
        match parse_command(&line) {
            Ok(cmd) => {
                if commands.send(cmd).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                let msg = json!({"event": "command_error", "line": line, "error": e.to_string()});
                let _ = err.write_all(format!("{msg}\n").as_bytes()).await;
            }
        }
    }
    std::future::pending::<()>().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::ActorId;
    use crate::proto::{ExitReason, Reason};
    use crate::runtime::lock::ReleaseCause;
    use crate::runtime::suspect::Why;

    /// The headless contract, one line per event: field names and shapes only grow. A
    /// change here is a change for every script that reads actor-tui's stdout.
    #[test]
    fn every_event_prints_as_one_pinned_line() {
        let events = vec![
            RuntimeEvent::ActorStarted {
                actor: ActorId(2),
                name: "worker".into(),
                pid: 42,
                parent: Some(ActorId(1)),
            },
            RuntimeEvent::ActorExited {
                actor: ActorId(2),
                exit: crate::proto::Exit {
                    code: Some(113),
                    signal: None,
                    reason: Some(ExitReason::Quit),
                },
            },
            RuntimeEvent::LockRequested {
                actor: ActorId(2),
                task: 1,
                task_name: "main".into(),
                reason: Reason::Crash,
                location: "a.rs:1".into(),
                peek: None,
            },
            RuntimeEvent::LockGranted {
                actor: ActorId(2),
                task: 1,
                epoch: 3,
            },
            RuntimeEvent::LockReleased {
                actor: ActorId(2),
                task: 1,
                epoch: 3,
                cause: ReleaseCause::Force,
            },
            RuntimeEvent::LockDropped {
                actor: ActorId(2),
                task: 1,
                cause: ReleaseCause::Cancel,
            },
            RuntimeEvent::LockRefused {
                actor: ActorId(2),
                task: 1,
                error: "e".into(),
            },
            RuntimeEvent::LockSuspect {
                actor: ActorId(2),
                task: 1,
                epoch: 3,
                why: Why::Stopped,
                since: std::time::Duration::from_millis(1500),
            },
            RuntimeEvent::LockHealthy {
                actor: ActorId(2),
                task: 1,
                epoch: 3,
            },
            RuntimeEvent::ReplOutput {
                actor: ActorId(2),
                task: 1,
                data: "x = 1\n".into(),
            },
            RuntimeEvent::ReplReady {
                actor: ActorId(2),
                task: 1,
                prompt: "(Pdb) ".into(),
            },
            RuntimeEvent::Output {
                actor: ActorId(2),
                data: b"log \xff\n".to_vec(),
            },
            RuntimeEvent::Dump {
                actor: ActorId(2),
                text: "tasks".into(),
                step: Some("cooperative".into()),
            },
            RuntimeEvent::Snapshot {
                text: "snapshot of 1 actors".into(),
                path: Some("/state/snapshots/s.txt".into()),
            },
            RuntimeEvent::QueueReordered {
                actor: ActorId(3),
                task: 1,
                how: "promote".into(),
                order: vec![crate::runtime::event::Waiter {
                    actor: ActorId(3),
                    task: 1,
                }],
            },
            RuntimeEvent::RequestSkipped {
                actor: ActorId(4),
                task: 1,
                location: "w.py:9".into(),
                why: "continue_all".into(),
            },
            RuntimeEvent::Hung {
                actor: ActorId(2),
                hung: true,
                still_ms: 31000,
            },
            RuntimeEvent::Frozen { frozen: true },
            RuntimeEvent::Completions {
                actor: ActorId(2),
                line: "p a".into(),
                matches: vec!["p answer".into()],
            },
            RuntimeEvent::WantsInput { actor: ActorId(2) },
            RuntimeEvent::InputDone { actor: ActorId(2) },
            RuntimeEvent::LockMoved {
                actor: ActorId(2),
                task: 1,
                task_name: "Task-2".into(),
                location: "app.py:9".into(),
            },
            RuntimeEvent::TeardownWaiting { actor: ActorId(2) },
            RuntimeEvent::Cancelling {
                actor: ActorId(2),
                force: false,
            },
            RuntimeEvent::Notice {
                actor: None,
                message: "m".into(),
            },
            RuntimeEvent::Viewer {
                viewer: 7,
                name: "ann@host".into(),
                pid: Some(99),
                role: crate::runtime::event::ViewerRole::Driver,
            },
            RuntimeEvent::Exit { code: 0 },
        ];
        let lines: Vec<String> = events.iter().map(|e| event_json(e).to_string()).collect();
        insta::assert_snapshot!(lines.join("\n"));
        // The viewer's form: msgpack, read back as the same events, output bytes exact.
        for ev in &events {
            let bytes = crate::proto::encode(ev).expect("encode");
            let back: RuntimeEvent = crate::proto::decode(&bytes).expect("decode");
            assert_eq!(&back, ev);
        }
        // And JSON read back, as `attach --headless` consumers and tests do.
        for (ev, line) in events.iter().zip(&lines) {
            let back: RuntimeEvent = serde_json::from_str(line).expect(line);
            if !matches!(ev, RuntimeEvent::Output { .. }) {
                assert_eq!(&back, ev);
            }
        }
    }

    #[test]
    fn every_command_parses() {
        let cases = [
            (
                r#"{"cmd":"input","data":"c\n"}"#,
                RuntimeCommand::Input { data: "c\n".into() },
            ),
            (
                r#"{"cmd":"complete","data":"p a"}"#,
                RuntimeCommand::Complete { line: "p a".into() },
            ),
            (r#"{"cmd":"force_release"}"#, RuntimeCommand::ForceRelease),
            (
                r#"{"cmd":"cancel","actor":"2"}"#,
                RuntimeCommand::Cancel {
                    actor: ActorId(2),
                    force: false,
                },
            ),
            (
                r#"{"cmd":"drive","take_over":true}"#,
                RuntimeCommand::Drive { take_over: true },
            ),
            (r#"{"cmd":"observe"}"#, RuntimeCommand::Observe),
            (
                r#"{"cmd":"promote","actor":"3","task":1}"#,
                RuntimeCommand::Promote {
                    actor: ActorId(3),
                    task: 1,
                },
            ),
            (
                r#"{"cmd":"continue_all","location":"w.py:9"}"#,
                RuntimeCommand::ContinueAll {
                    location: Some("w.py:9".into()),
                    actor: None,
                },
            ),
            (r#"{"cmd":"resume"}"#, RuntimeCommand::Thaw),
            (r#"{"cmd":"dump_all"}"#, RuntimeCommand::DumpAll),
            (
                r#"{"cmd":"dump","actor":"2"}"#,
                RuntimeCommand::Dump { actor: ActorId(2) },
            ),
            (
                r#"{"cmd":"cancel","actor":"2","force":true}"#,
                RuntimeCommand::Cancel {
                    actor: ActorId(2),
                    force: true,
                },
            ),
            (r#"{"cmd":"quit"}"#, RuntimeCommand::Quit),
            (
                r#"{"cmd":"interrupt","actor":"2"}"#,
                RuntimeCommand::Interrupt { actor: ActorId(2) },
            ),
            (
                r#"{"cmd":"stdin","actor":"2","data":"blue\n"}"#,
                RuntimeCommand::Stdin {
                    actor: ActorId(2),
                    data: "blue\n".into(),
                },
            ),
            (
                r#"{"cmd":"resize","rows":30,"cols":100}"#,
                RuntimeCommand::Resize {
                    rows: 30,
                    cols: 100,
                },
            ),
        ];
        for (line, want) in cases {
            assert_eq!(parse_command(line).expect(line), want);
        }
        let err = |line| parse_command(line).expect_err(line).to_string();
        assert!(err(r#"{"cmd":"nap"}"#).contains("unknown variant `nap`"));
        assert!(err(r#"{"cmd":"dump"}"#).contains("missing field `actor`"));
        assert!(err(r#"{"cmd":"dump","actor":"01"}"#).contains("not an actor id"));
        assert!(err("dump 2").contains("expected value"));
    }
}
