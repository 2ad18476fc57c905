//! The dump ladder's steps that need the system: free facts from `/proc`, and reads from
//! outside as the actor's ancestor (the root is a subreaper, so every actor it spawned, and
//! every process those start, descends from it; Yama's `ptrace_scope` 1 lets an ancestor
//! trace). Python stacks come from py-spy (its binary, when installed: a CPython memory
//! reader is not something to write again); native stacks of every thread from eu-stack
//! (elfutils: fast, no stop longer than the unwind) when installed, else gdb in batch mode.
//! Each tool runs with a timeout; a tool that is missing or refused says so, and what would
//! allow it.

use std::time::Duration;

use tokio::process::Command;

use super::dump::Tool;

/// How long a cooperative dump may take before the ladder goes on.
pub const COOP_TIMEOUT: Duration = Duration::from_secs(2);
/// Outside tools running at once (each is a debugger process).
pub const TOOLS_AT_ONCE: usize = 4;
/// How long one outside tool may take.
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(10);
/// Output of a tool kept (a process with thousands of threads prints a lot).
const TOOL_OUTPUT_MAX: usize = 256 << 10;

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// (state letter, utime + stime in ticks, threads) from `/proc/PID/stat`.
fn stat(pid: u32) -> Option<(char, u64, u64)> {
    super::procs::proc_stat(pid).map(|s| (s.state, s.cpu_ticks, s.threads))
}

fn state_name(c: char) -> &'static str {
    match c {
        'R' => "running",
        'S' => "sleeping",
        'D' => "in uninterruptible wait (disk, NFS, a driver)",
        'T' => "stopped",
        't' => "stopped by a tracer",
        'Z' => "zombie (exited, not reaped)",
        'X' => "dead",
        'I' => "idle",
        _ => "?",
    }
}

fn ticks_per_sec() -> f64 {
    match nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK) {
        Ok(Some(t)) if t > 0 => t as f64,
        _ => 100.0,
    }
}

/// Whether the process runs a Python interpreter (its executable's name).
pub fn is_python(pid: u32) -> bool {
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .is_some_and(|n| n.starts_with("python") || n.starts_with("pypy"))
}

/// State, wchan, threads, CPU (total, and over a 200 ms look now).
pub async fn facts(pid: u32) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Some((state, t0, threads)) = stat(pid) else {
        out.push(("process".into(), format!("{pid} is gone")));
        return out;
    };
    let wchan = read(&format!("/proc/{pid}/wchan"))
        .filter(|w| !w.is_empty() && w != "0")
        .unwrap_or_else(|| "-".into());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let t1 = stat(pid).map_or(t0, |s| s.1);
    let hz = ticks_per_sec();
    out.push(("state".into(), format!("{state} ({})", state_name(state))));
    out.push(("blocked in".into(), wchan));
    out.push(("threads".into(), threads.to_string()));
    out.push((
        "cpu".into(),
        format!(
            "{:.2} s in all, {:.0}% now",
            t1 as f64 / hz,
            (t1.saturating_sub(t0)) as f64 / hz / 0.2 * 100.0
        ),
    ));
    out
}

async fn run(name: &'static str, cmd: &mut Command, hint: &str) -> Tool {
    cmd.kill_on_drop(true)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let result = match tokio::time::timeout(TOOL_TIMEOUT, cmd.output()).await {
        Err(_) => Err(format!("no answer within {} s", TOOL_TIMEOUT.as_secs())),
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(format!("not installed ({hint})"))
        }
        Ok(Err(e)) => Err(format!("cannot run it: {e}")),
        Ok(Ok(out)) => {
            let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
            if out.status.success() && !text.trim().is_empty() {
                if text.len() > TOOL_OUTPUT_MAX {
                    let cut = crate::proto::floor_char_boundary(&text, TOOL_OUTPUT_MAX);
                    text.truncate(cut);
                    text.push_str("\n… (cut)\n");
                }
                Ok(text)
            } else {
                let err = String::from_utf8_lossy(&out.stderr);
                let first: Vec<&str> = err
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .take(3)
                    .collect();
                let why = if first.is_empty() {
                    format!("exited with {}", out.status)
                } else {
                    first.join(" / ")
                };
                let denied =
                    err.contains("ermission") || err.contains("ptrace") || err.contains("EPERM");
                Err(if denied {
                    format!(
                        "refused by the OS: {why} (tracing needs the same uid and kernel.yama.ptrace_scope ≤ 1, or CAP_SYS_PTRACE in a container)"
                    )
                } else {
                    why
                })
            }
        }
    };
    Tool { name, result }
}

/// Python stacks of every thread, read from the process's memory (works with the GIL held).
pub async fn py_spy(pid: u32) -> Tool {
    run(
        "py-spy",
        Command::new("py-spy").args(["dump", "--pid", &pid.to_string()]),
        "pip install py-spy",
    )
    .await
}

/// Native stacks of every thread: eu-stack if installed, else gdb.
pub async fn native(pid: u32) -> Tool {
    let eu = run(
        "native",
        Command::new("eu-stack").args(["-p", &pid.to_string()]),
        "",
    )
    .await;
    if !matches!(&eu.result, Err(e) if e.starts_with("not installed")) {
        return eu;
    }
    run(
        "native",
        Command::new("gdb").args([
            "-p",
            &pid.to_string(),
            "-batch",
            "-nx",
            "-ex",
            "set pagination off",
            "-ex",
            "thread apply all bt",
        ]),
        "apt-get install gdb (or elfutils for eu-stack)",
    )
    .await
}

/// The ladder for one actor: `facts` from the core, `/proc` facts for a local `pid`, the
/// cooperative `answer` (if it was asked) within [`COOP_TIMEOUT`], and when that does not
/// come, py-spy (Python) or a native unwinder. `reaped` says the pid is no longer ours to
/// read (it may belong to another process now).
pub async fn ladder(
    pid: Option<u32>,
    reaped: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
    mut facts: Vec<(String, String)>,
    answer: Option<tokio::sync::oneshot::Receiver<String>>,
    poke: Option<Poke>,
    tools_at_once: std::sync::Arc<tokio::sync::Semaphore>,
) -> super::dump::Report {
    use super::dump::{Coop, Report};
    let gone = || {
        reaped
            .as_ref()
            .is_some_and(|r| r.load(std::sync::atomic::Ordering::SeqCst))
    };
    let started = std::time::Instant::now();
    // The /proc look and the cooperative answer run side by side.
    let proc_facts = async {
        match pid {
            Some(p) if !gone() => facts_of(p).await,
            _ => Vec::new(),
        }
    };
    let coop = async {
        match answer {
            None => Coop::NotConnected,
            Some(rx) => match tokio::time::timeout(COOP_TIMEOUT, rx).await {
                Ok(Ok(text)) => Coop::Answered {
                    text,
                    took: started.elapsed(),
                },
                // The connection went away meanwhile.
                Ok(Err(_)) => Coop::NotConnected,
                Err(_) => Coop::TimedOut(COOP_TIMEOUT),
            },
        }
    };
    let (more, coop) = tokio::join!(proc_facts, coop);
    facts.extend(more);
    let mut tools = Vec::new();
    if !matches!(coop, Coop::Answered { .. })
        && let Some(p) = poke.filter(|p| p.file.exists())
    {
        tools.push(faulthandler(p).await);
    }
    if !matches!(coop, Coop::Answered { .. })
        && !tools.iter().any(|t| t.result.is_ok())
        && let Some(p) = pid.filter(|_| !gone())
    {
        // Closed only if the engine is gone; then there is no one to tell anyway.
        let _turn = tools_at_once.acquire().await;
        if is_python(p) {
            tools.push(py_spy(p).await);
        }
        if !tools.iter().any(|t| t.result.is_ok()) && !gone() {
            tools.push(native(p).await);
        }
    }
    Report { facts, coop, tools }
}

/// How to make a Python actor with the bundled client write its stacks: the signal its
/// faulthandler is armed for, and the file it writes to (in the root's private stacks
/// directory, named by pid; it exists once the client armed it).
pub struct Poke {
    pub file: std::path::PathBuf,
    pub send: Box<dyn FnOnce() -> std::io::Result<()> + Send>,
}

impl std::fmt::Debug for Poke {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Poke")
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

/// The signal-safe step: poke, then read what faulthandler appended (it writes from its
/// signal handler, without the GIL, so it answers when the interpreter cannot).
async fn faulthandler(poke: Poke) -> Tool {
    let name = "faulthandler";
    // Not through a link: the file must be the one the client made in our directory.
    let len = |p: &std::path::Path| {
        std::fs::symlink_metadata(p)
            .ok()
            .filter(|m| m.is_file())
            .map_or(0, |m| m.len())
    };
    let before = len(&poke.file);
    if let Err(e) = (poke.send)() {
        return Tool {
            name,
            result: Err(format!("cannot signal it: {e}")),
        };
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    let mut seen = before;
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = len(&poke.file);
        // Written and settled (the handler writes everything at once).
        if now > before && now == seen {
            break;
        }
        seen = now;
        if tokio::time::Instant::now() >= deadline {
            break;
        }
    }
    let result = match read_appended(&poke.file, before) {
        Ok(text) if !text.is_empty() => Ok(text),
        Ok(_) => Err("no answer to the signal within 1 s (stopped, or not armed)".into()),
        Err(e) => Err(format!("cannot read {}: {e}", poke.file.display())),
    };
    Tool { name, result }
}

/// What was written to `path` past `offset`, at most [`TOOL_OUTPUT_MAX`] bytes of it: a
/// process cannot make the root hold more by writing a huge file, nor point it elsewhere
/// with a symlink.
fn read_appended(path: &std::path::Path, offset: u64) -> std::io::Result<String> {
    use std::io::{Read, Seek};
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)?;
    f.seek(std::io::SeekFrom::Start(offset))?;
    let mut buf = Vec::new();
    f.take(TOOL_OUTPUT_MAX as u64).read_to_end(&mut buf)?;
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// `facts` under the name the ladder uses (kept apart so it reads as a step).
async fn facts_of(pid: u32) -> Vec<(String, String)> {
    let mut f = facts(pid).await;
    f.insert(0, ("pid".into(), pid.to_string()));
    f
}

/// Writes `snapshot-TIME-PID.txt` and `.json` into `dir` (made 0700 if missing, and
/// verified like every private directory); returns the text file's path.
pub fn save_snapshot(
    dir: &std::path::Path,
    text: &str,
    json: &str,
) -> Result<std::path::PathBuf, String> {
    let private =
        super::private_dir::PrivateDir::open_or_create_all(dir).map_err(|e| e.to_string())?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let base = format!("snapshot-{stamp}-{}", std::process::id());
    let write = |name: String, body: &str| {
        private
            .write_file(&name, body.as_bytes(), false)
            .map_err(|e| e.to_string())
    };
    write(format!("{base}.json"), json)?;
    write(format!("{base}.txt"), text)
}
