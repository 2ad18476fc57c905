//! The line-mode front end (`--plain`), for dumb terminals, screen readers and logs: events
//! as readable lines, REPL prompts inline, typed lines go to the lock holder, and a few `/`
//! commands reach the rest of the runtime seam.

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use actor_tui::runtime::{Runtime, RuntimeCommand, RuntimeEvent};

const HELP: &str = "commands: /force (force-release the lock)  /dump ID  /break ID  /cancel ID  /kill ID  /stdin ID TEXT  /quit\n\
                    any other line goes to the REPL of the lock holder\n";

fn parse(line: &str) -> Result<RuntimeCommand, String> {
    let mut words = line.split_whitespace();
    let cmd = words.next().unwrap_or("");
    let arg = words.next().map(str::to_owned);
    let need = |a: Option<String>| -> Result<actor_tui::proto::ActorId, String> {
        let a = a.ok_or_else(|| format!("{cmd} needs an actor id\n"))?;
        a.parse().map_err(|e| format!("{e}\n"))
    };
    match cmd {
        "/force" => Ok(RuntimeCommand::ForceRelease),
        "/dump" => Ok(RuntimeCommand::Dump { actor: need(arg)? }),
        "/break" => Ok(RuntimeCommand::Interrupt { actor: need(arg)? }),
        "/cancel" => Ok(RuntimeCommand::Cancel {
            actor: need(arg)?,
            force: false,
        }),
        "/kill" => Ok(RuntimeCommand::Cancel {
            actor: need(arg)?,
            force: true,
        }),
        "/quit" => Ok(RuntimeCommand::Quit),
        "/stdin" => {
            let actor = need(arg)?;
            // The rest of the line, as typed, then Enter.
            let rest = line.splitn(3, char::is_whitespace).nth(2).unwrap_or("");
            Ok(RuntimeCommand::Stdin {
                actor,
                data: format!("{rest}\n"),
            })
        }
        _ => Err(HELP.to_owned()),
    }
}

fn describe(ev: &RuntimeEvent) -> Option<String> {
    Some(match ev {
        RuntimeEvent::ActorStarted {
            actor,
            name,
            pid,
            parent,
        } => format!(
            "[actor {actor}] {name} started (pid {pid}{})",
            parent
                .as_ref()
                .map(|p| format!(", child of {p}"))
                .unwrap_or_default()
        ),
        RuntimeEvent::ActorExited { actor, exit } => format!("[actor {actor}] exited ({exit})"),
        RuntimeEvent::LockRequested {
            actor,
            task_name,
            reason,
            location,
            ..
        } => format!(
            "[actor {actor}] {task_name} asks for the debug lock ({} at {location})",
            reason.as_str()
        ),
        RuntimeEvent::LockGranted { actor, epoch, .. } => {
            format!("[lock] granted to actor {actor} (epoch {epoch})")
        }
        RuntimeEvent::LockReleased { actor, cause, .. } => {
            format!("[lock] released by actor {actor} ({})", cause.as_str())
        }
        RuntimeEvent::LockDropped { actor, .. } => format!("[lock] actor {actor} left the queue"),
        RuntimeEvent::LockRefused { actor, error, .. } => {
            format!("[lock] refused actor {actor}: {error}")
        }
        RuntimeEvent::LockSuspect {
            actor, why, since, ..
        } => format!(
            "[lock] holder {actor} looks stuck ({}, no sign of life for {}s): /force frees the lock",
            why.as_str(),
            since.as_secs()
        ),
        RuntimeEvent::LockHealthy { actor, .. } => {
            format!("[lock] holder {actor} shows life again")
        }
        RuntimeEvent::ReplOutput { data, .. } => return Some(data.clone()),
        RuntimeEvent::ReplReady { actor, prompt, .. } => {
            return Some(format!("[{actor}] {prompt}"));
        }
        RuntimeEvent::Output { actor, data } => String::from_utf8_lossy(data)
            .lines()
            .map(|l| format!("  {actor} | {l}"))
            .collect::<Vec<_>>()
            .join("\n"),
        RuntimeEvent::Dump { actor, text, .. } => format!("[dump of actor {actor}]\n{text}"),
        RuntimeEvent::Hung {
            actor,
            hung,
            still_ms,
        } => {
            if *hung {
                format!(
                    "[actor {actor}] may be hung: still for {} s",
                    still_ms / 1000
                )
            } else {
                format!("[actor {actor}] moves again")
            }
        }
        RuntimeEvent::QueueReordered { actor, how, .. } => format!("[lock] {how} {actor}"),
        RuntimeEvent::RequestSkipped {
            actor,
            location,
            why,
            ..
        } => format!("[lock] actor {actor} at {location} goes on without a session ({why})"),
        RuntimeEvent::Frozen { frozen } => {
            format!("[tree] {}", if *frozen { "frozen" } else { "resumed" })
        }
        RuntimeEvent::Snapshot { text, path } => format!(
            "[snapshot{}]\n{text}",
            path.as_ref()
                .map(|p| format!(" saved to {p}"))
                .unwrap_or_default()
        ),
        RuntimeEvent::Completions { matches, .. } => {
            format!("[completions] {}", matches.join("  "))
        }
        RuntimeEvent::WantsInput { actor } => {
            format!("[actor {actor}] waits for input on its terminal: /stdin {actor} TEXT")
        }
        RuntimeEvent::InputDone { .. } => return None,
        // The user's own terminal echoed what was typed; leases change nothing to read.
        RuntimeEvent::ReplInput { .. } | RuntimeEvent::LockLeased { .. } => return None,
        // Peeks are for picking a waiter in the console; a line log has no such pane.
        RuntimeEvent::LockPeek { .. } => return None,
        // Every step moves it: too chatty for a line log; the session's own text says where.
        RuntimeEvent::LockMoved { .. } => return None,
        RuntimeEvent::TeardownWaiting { actor } => {
            format!("[teardown] actor {actor} waits: a debugger session is open in its subtree")
        }
        RuntimeEvent::Cancelling { actor, force } => {
            format!(
                "[teardown] cancelling actor {actor}{}",
                if *force { " (forced)" } else { "" }
            )
        }
        RuntimeEvent::Notice { message, .. } => format!("[note] {message}"),
        RuntimeEvent::Viewer {
            viewer, name, role, ..
        } => format!("[viewer {viewer}] {name}: {}", role.as_str()),
        RuntimeEvent::Listening {
            address, ticket, ..
        } => format!("[listening] {address}; actor ticket: {ticket}"),
        RuntimeEvent::SessionEnded {
            session,
            actor,
            waited_ms,
            held_ms,
            path,
            ..
        } => format!(
            "[session {session}] actor {actor}: waited {waited_ms} ms, held {held_ms} ms{}",
            path.as_ref()
                .map(|p| format!("; transcript {p}"))
                .unwrap_or_default()
        ),
        RuntimeEvent::Report { path } => format!("[report] {path}"),
        RuntimeEvent::Rules { rules, crashes, .. } => format!(
            "[rules] {}; {} crashes listed",
            rules
                .iter()
                .map(|r| format!("{} ({} let go)", r.rule, r.skipped))
                .collect::<Vec<_>>()
                .join(", "),
            crashes.len()
        ),
        RuntimeEvent::Exit { code } => format!("[exit] code {code}"),
    })
}

pub async fn run(mut rt: Runtime) -> i32 {
    let commands = rt.commands.clone();
    if let Err(e) = actor_tui::runtime::quit_on_signals(commands.clone(), rt.grace, || {}) {
        eprintln!("actor-tui: cannot install signal handlers: {e}");
    }
    let input = tokio::spawn(async move {
        let mut lines = BufReader::new(tokio::io::stdin()).lines();
        let mut err = tokio::io::stderr();
        while let Ok(Some(line)) = lines.next_line().await {
            let cmd = if line.starts_with('/') {
                match parse(&line) {
                    Ok(c) => c,
                    Err(help) => {
                        // Nothing to do if stderr is gone.
                        let _ = err.write_all(help.as_bytes()).await;
                        continue;
                    }
                }
            } else {
                RuntimeCommand::Input {
                    data: format!("{line}\n"),
                }
            };
            if commands.send(cmd).await.is_err() {
                return;
            }
        }
        // End of input (Ctrl-D, or no terminal at all): nobody can answer a REPL any more,
        // so end the run instead of waiting forever at the next prompt.
        let _ = commands.send(RuntimeCommand::Quit).await;
        std::future::pending::<()>().await;
    });
    let mut out = tokio::io::stdout();
    let mut code = 1;
    while let Some(ev) = rt.events.recv().await {
        let last = matches!(ev, RuntimeEvent::Exit { .. });
        if let RuntimeEvent::Exit { code: c } = ev {
            code = c;
        }
        if let Some(mut text) = describe(&ev) {
            if !matches!(
                ev,
                RuntimeEvent::ReplReady { .. } | RuntimeEvent::ReplOutput { .. }
            ) {
                text.push('\n');
            }
            // A closed stdout only loses the display; the run itself goes on.
            let _ = out.write_all(text.as_bytes()).await;
            let _ = out.flush().await;
        }
        if last {
            break;
        }
    }
    input.abort();
    code
}
