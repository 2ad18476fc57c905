//! The headless front end: runtime events as JSON lines on stdout, commands as JSON lines on
//! stdin. It is the contract scripts and CI rely on (documented in the README), so field
//! names here only grow.

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::mpsc;

use crate::proto::ExitReason;
use crate::runtime::{Runtime, RuntimeCommand, RuntimeEvent};

/// One event as the JSON object printed for it.
pub fn event_json(ev: &RuntimeEvent) -> Value {
    match ev {
        RuntimeEvent::ActorStarted {
            actor,
            name,
            pid,
            parent,
        } => {
            json!({"event": "actor_started", "actor": actor, "name": name, "pid": pid, "parent": parent})
        }
        RuntimeEvent::ActorExited { actor, exit } => {
            json!({"event": "actor_exited", "actor": actor, "code": exit.code, "signal": exit.signal,
                    "reason": exit.reason.map(ExitReason::as_str)})
        }
        RuntimeEvent::LockRequested {
            actor,
            task,
            task_name,
            reason,
            location,
        } => {
            json!({"event": "lock_requested", "actor": actor, "task": task, "task_name": task_name,
                    "reason": reason.as_str(), "location": location})
        }
        RuntimeEvent::LockGranted { actor, task, epoch } => {
            json!({"event": "lock_granted", "actor": actor, "task": task, "epoch": epoch})
        }
        RuntimeEvent::LockReleased {
            actor,
            task,
            epoch,
            cause,
        } => json!({"event": "lock_released", "actor": actor, "task": task, "epoch": epoch,
                    "cause": cause.as_str()}),
        RuntimeEvent::LockDropped { actor, task, cause } => {
            json!({"event": "lock_dropped", "actor": actor, "task": task, "cause": cause.as_str()})
        }
        RuntimeEvent::LockRefused { actor, task, error } => {
            json!({"event": "lock_refused", "actor": actor, "task": task, "error": error})
        }
        RuntimeEvent::LockSuspect {
            actor,
            task,
            epoch,
            why,
            since,
        } => json!({"event": "lock_suspect", "actor": actor, "task": task, "epoch": epoch,
                    "why": why.as_str(), "since_ms": since.as_millis() as u64}),
        RuntimeEvent::LockHealthy { actor, task, epoch } => {
            json!({"event": "lock_healthy", "actor": actor, "task": task, "epoch": epoch})
        }
        RuntimeEvent::ReplOutput { actor, task, data } => {
            json!({"event": "repl_output", "actor": actor, "task": task, "data": data})
        }
        RuntimeEvent::ReplReady {
            actor,
            task,
            prompt,
        } => json!({"event": "repl_ready", "actor": actor, "task": task, "prompt": prompt}),
        RuntimeEvent::Output { actor, data } => {
            json!({"event": "output", "actor": actor, "data": String::from_utf8_lossy(data)})
        }
        RuntimeEvent::Dump { actor, text } => {
            json!({"event": "dump", "actor": actor, "text": text})
        }
        RuntimeEvent::Completions {
            actor,
            line,
            matches,
        } => json!({"event": "completions", "actor": actor, "line": line, "matches": matches}),
        RuntimeEvent::WantsInput { actor } => json!({"event": "wants_input", "actor": actor}),
        RuntimeEvent::InputDone { actor } => json!({"event": "input_done", "actor": actor}),
        RuntimeEvent::LockMoved {
            actor,
            task,
            task_name,
            location,
        } => {
            json!({"event": "lock_moved", "actor": actor, "task": task, "task_name": task_name, "location": location})
        }
        RuntimeEvent::TeardownWaiting { actor } => {
            json!({"event": "teardown_waiting", "actor": actor})
        }
        RuntimeEvent::Cancelling { actor, force } => {
            json!({"event": "cancelling", "actor": actor, "force": force})
        }
        RuntimeEvent::Notice { actor, message } => {
            json!({"event": "notice", "actor": actor, "message": message})
        }
        RuntimeEvent::Exit { code } => json!({"event": "exit", "code": code}),
    }
}

/// Why a command line was not understood.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("not JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("missing or mistyped field `{0}`")]
    Field(&'static str),
    #[error("unknown cmd `{0}`")]
    Unknown(String),
    #[error(transparent)]
    Actor(#[from] crate::proto::BadActorId),
}

/// Parses one stdin line into a command.
pub fn parse_command(line: &str) -> Result<RuntimeCommand, CommandError> {
    let v: Value = serde_json::from_str(line)?;
    let field = |name: &'static str| {
        v.get(name)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or(CommandError::Field(name))
    };
    let cmd = field("cmd")?;
    Ok(match cmd.as_str() {
        "input" => RuntimeCommand::Input {
            data: field("data")?,
        },
        "complete" => RuntimeCommand::Complete {
            line: field("data")?,
        },
        "force_release" => RuntimeCommand::ForceRelease,
        "stdin" => RuntimeCommand::Stdin {
            actor: field("actor")?.parse()?,
            data: field("data")?,
        },
        "dump" => RuntimeCommand::Dump {
            actor: field("actor")?.parse()?,
        },
        "interrupt" => RuntimeCommand::Interrupt {
            actor: field("actor")?.parse()?,
        },
        "cancel" => RuntimeCommand::Cancel {
            actor: field("actor")?.parse()?,
            force: v.get("force").and_then(Value::as_bool).unwrap_or(false),
        },
        "quit" => RuntimeCommand::Quit,
        "resize" => {
            let dim = |name: &'static str| {
                v.get(name)
                    .and_then(Value::as_u64)
                    .and_then(|n| u16::try_from(n).ok())
                    .ok_or(CommandError::Field(name))
            };
            RuntimeCommand::Resize {
                rows: dim("rows")?,
                cols: dim("cols")?,
            }
        }
        _ => return Err(CommandError::Unknown(cmd)),
    })
}

/// Runs the headless front end until the run ends; returns the exit code.
pub async fn run(mut rt: Runtime) -> i32 {
    let commands = rt.commands.clone();
    // A CI timeout (SIGTERM) or Ctrl-C tears the tree down like `quit`, within a bound.
    if let Err(e) = crate::runtime::quit_on_signals(commands.clone(), rt.grace, || {}) {
        eprintln!("actor-tui: cannot install signal handlers: {e}");
    }
    // A closed stdin (CI, `< /dev/null`) is not a request to quit: the run goes on.
    let reader = tokio::spawn(read_commands(commands));
    let mut out = tokio::io::stdout();
    let mut code = None;
    while let Some(ev) = rt.events.recv().await {
        let last = matches!(ev, RuntimeEvent::Exit { .. });
        if let RuntimeEvent::Exit { code: c } = ev {
            code = Some(c);
        }
        let mut line = event_json(&ev).to_string();
        line.push('\n');
        if out.write_all(line.as_bytes()).await.is_err() {
            // Nobody reads our stdout any more; keep draining so the run still ends cleanly.
            continue;
        }
        // Flushing per event keeps a driving script in lock-step with the tree.
        let _ = out.flush().await;
        // `exit` is the last line, even if an escaped daemon still holds a PTY open.
        if last {
            break;
        }
    }
    reader.abort();
    match code {
        Some(c) => c,
        None => rt.task.await.unwrap_or(1),
    }
}

async fn read_commands(commands: mpsc::Sender<RuntimeCommand>) {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut err = tokio::io::stderr();
    // Keep our sender alive after stdin ends: dropping it would tell the engine to quit.
    let _keep = commands.clone();
    while let Ok(Some(line)) = lines.next_line().await {
        if line.trim().is_empty() {
            continue;
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
    use crate::proto::Reason;
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
            },
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
            RuntimeEvent::Exit { code: 0 },
        ];
        let lines: Vec<String> = events.iter().map(|e| event_json(e).to_string()).collect();
        insta::assert_snapshot!(lines.join("\n"));
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
        assert!(matches!(
            parse_command(r#"{"cmd":"nap"}"#),
            Err(CommandError::Unknown(_))
        ));
        assert!(matches!(
            parse_command(r#"{"cmd":"dump"}"#),
            Err(CommandError::Field("actor"))
        ));
    }
}
