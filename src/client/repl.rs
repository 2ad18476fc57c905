//! The debugger REPL that runs inside an actor: banner, commands and their answers. It
//! talks to a [`Transport`], which is the root's session frames when connected and the
//! process's own terminal otherwise, so both paths run the same commands.

use std::backtrace::Backtrace;
use std::fmt::Write as _;

use crate::proto::Reason;

use super::registry;

/// Everything the REPL shows about one pause or crash.
#[derive(Debug)]
pub struct PauseCtx {
    pub actor_name: String,
    pub reason: Reason,
    pub location: String,
    pub task_name: String,
    /// The panic message, for crashes.
    pub message: Option<String>,
    /// Values captured by `pause!(a, b)`: name and `Debug` rendering.
    pub values: Vec<(String, String)>,
    pub backtrace: Backtrace,
}

/// One input event for the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Line(String),
    /// The root took the lock away (force-release): the session is over.
    Revoked,
    /// The root or the terminal went away.
    Closed,
}

/// Where the session's text goes and its input comes from.
pub trait Transport {
    fn write(&mut self, text: &str);
    fn read_line(&mut self, prompt: &str) -> Input;
}

/// How the session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Continue,
    Quit,
    Revoked,
    Closed,
}

pub const PROMPT: &str = "(actor-tui) ";

const HELP: &str = "\
commands:
  c, continue     leave the debugger and let the program go on
  q, quit         end this actor (its parent sees \"quit from debugger\")
  bt, backtrace   where the pause or crash happened
  p NAME          print a value captured by pause!(NAME, ...)
  locals          print every captured value
  tasks           this process's task tree
  threads         this process's OS threads
  help            this text
";

fn banner(ctx: &PauseCtx) -> String {
    let what = match ctx.reason {
        Reason::Pause => "paused",
        Reason::Crash => "crashed",
    };
    let mut s = format!(
        "\n--- actor-tui: {} {what} at {} (task {}) ---\n",
        ctx.actor_name, ctx.location, ctx.task_name
    );
    match (&ctx.message, ctx.reason) {
        (Some(msg), Reason::Crash) => {
            let _ = writeln!(s, "panic: {msg}");
        }
        (Some(msg), Reason::Pause) => {
            let _ = writeln!(s, "{msg}");
        }
        (None, _) => {}
    }
    if ctx.reason == Reason::Crash {
        s.push_str("backtrace:\n");
        s.push_str(&filter_backtrace(&ctx.backtrace));
    }
    s.push_str("type `help` for commands, `c` to continue\n");
    s
}

/// Runs the session until continue, quit, revocation or disconnect.
pub fn run(t: &mut dyn Transport, ctx: &PauseCtx) -> Outcome {
    t.write(&banner(ctx));
    loop {
        let line = match t.read_line(PROMPT) {
            Input::Line(l) => l,
            Input::Revoked => return Outcome::Revoked,
            Input::Closed => return Outcome::Closed,
        };
        let line = line.trim();
        let (cmd, arg) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let arg = arg.trim();
        let reply = match cmd {
            "" => continue,
            "c" | "cont" | "continue" => return Outcome::Continue,
            "q" | "quit" | "exit" => return Outcome::Quit,
            "help" | "h" | "?" => HELP.to_owned(),
            "bt" | "backtrace" | "where" | "w" => filter_backtrace(&ctx.backtrace),
            "p" | "print" => print_value(ctx, arg),
            "locals" => locals(ctx),
            "tasks" => registry::task_tree(),
            "threads" => registry::os_threads(),
            other => format!("unknown command `{other}`; type `help`\n"),
        };
        t.write(&reply);
    }
}

/// Every full input line worth offering for tab completion in this session.
pub fn completions(ctx: &PauseCtx) -> Vec<String> {
    let mut out: Vec<String> = [
        "continue",
        "quit",
        "backtrace",
        "locals",
        "tasks",
        "threads",
        "help",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    for (name, _) in &ctx.values {
        out.push(format!("p {name}"));
        out.push(format!("print {name}"));
    }
    out
}

fn print_value(ctx: &PauseCtx, name: &str) -> String {
    if name.is_empty() {
        return "usage: p NAME\n".into();
    }
    match ctx.values.iter().find(|(n, _)| n == name) {
        Some((n, v)) => format!("{n} = {v}\n"),
        None if ctx.values.is_empty() => {
            format!("no value named `{name}`: nothing was captured; use pause!({name})\n")
        }
        None => format!(
            "no value named `{name}`; captured: {}\n",
            ctx.values
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn locals(ctx: &PauseCtx) -> String {
    if ctx.values.is_empty() {
        return "no captured values\n".into();
    }
    ctx.values
        .iter()
        .map(|(n, v)| format!("{n} = {v}\n"))
        .collect()
}

/// Frames that belong to the debugger machinery, the panic runtime or the backtrace
/// capture itself: hidden so the first frame shown is the user's.
fn is_internal(func: &str) -> bool {
    const HIDDEN: &[&str] = &[
        "actor_tui::client",
        "std::backtrace",
        "std::panicking",
        "core::panicking",
        "std::panic::",
        "std::sys::backtrace",
        "std::rt::",
        "std::sys::pal",
        "std::sys::",
        "rust_begin_unwind",
        "__rustc::",
        "core::ops::function",
        "__libc_start",
        "_start",
    ];
    // Closure-call shims (`<Box<dyn Fn..> as Fn>::call`) and the C entry point say nothing
    // about the user's code.
    let shim = func.starts_with('<') && func.contains(" as core::ops::function::Fn");
    shim || func == "main" || HIDDEN.iter().any(|h| func.starts_with(h))
}

/// Renders `bt` with internal frames removed and the rest renumbered.
pub fn filter_backtrace(bt: &Backtrace) -> String {
    let text = bt.to_string();
    let mut out = String::new();
    let mut keep = false;
    let mut n = 0usize;
    let mut hidden = 0usize;
    for line in text.lines() {
        let trimmed = line.trim_start();
        let frame = trimmed
            .split_once(": ")
            .filter(|(num, _)| !num.is_empty() && num.bytes().all(|b| b.is_ascii_digit()));
        if let Some((_, func)) = frame {
            keep = !is_internal(func);
            if keep {
                let _ = writeln!(out, "{n:4}: {func}");
                n += 1;
            } else {
                hidden += 1;
            }
        } else if keep && trimmed.starts_with("at ") {
            let _ = writeln!(out, "        {trimmed}");
        }
    }
    if n == 0 {
        out.push_str("  (no frames: build with debug info for a backtrace)\n");
    }
    if hidden > 0 {
        let _ = writeln!(out, "  ({hidden} runtime-internal frames hidden)");
    }
    out
}
