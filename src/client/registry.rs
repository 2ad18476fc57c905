//! The task registry: named tasks and threads of this process, with parent links, state and
//! spawn location, so a dump can show what a hung actor is doing. Also hands out the task
//! ids that key lock requests.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;
use std::panic::Location;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};

/// What a registry entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskKind {
    Thread,
    Task,
}

/// What a task is doing, as far as the debugger knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskState {
    Running,
    /// Waiting for the debug lock.
    Queued(String),
    /// In a REPL session.
    Debugging(String),
    Finished,
}

#[derive(Debug, Clone)]
struct Entry {
    name: String,
    kind: TaskKind,
    parent: Option<u64>,
    state: TaskState,
    spawned_at: String,
    os_tid: Option<i32>,
}

#[derive(Debug, Default)]
struct Registry {
    entries: BTreeMap<u64, Entry>,
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn registry() -> MutexGuard<'static, Registry> {
    static REG: OnceLock<Mutex<Registry>> = OnceLock::new();
    crate::sync::lock(REG.get_or_init(Default::default))
}

thread_local! {
    /// This thread's own id (threads are tasks too for the lock).
    static THREAD_ID: Cell<Option<u64>> = const { Cell::new(None) };
    /// Set while a thread acts on behalf of a task (an async pause runs its REPL on a helper
    /// thread, which must use the pausing task's id so re-entry is seen as the same task).
    static OVERRIDE: Cell<Option<u64>> = const { Cell::new(None) };
}

tokio::task_local! {
    static TASK_ID: u64;
}

fn os_tid() -> i32 {
    nix::unistd::gettid().as_raw()
}

fn fresh_id() -> u64 {
    NEXT_ID.fetch_add(1, Ordering::Relaxed)
}

fn add(
    name: String,
    kind: TaskKind,
    parent: Option<u64>,
    at: Option<&Location<'_>>,
    tid: Option<i32>,
) -> u64 {
    let id = fresh_id();
    registry().entries.insert(
        id,
        Entry {
            name,
            kind,
            parent,
            state: TaskState::Running,
            // Empty for threads and tasks not spawned through us: no site worth showing.
            spawned_at: at.map_or_else(String::new, |l| format!("{}:{}", l.file(), l.line())),
            os_tid: tid,
        },
    );
    id
}

/// The id of the calling thread, registering it (as `thread NAME`) on first use.
pub fn thread_task_id() -> u64 {
    THREAD_ID.with(|c| {
        if let Some(id) = c.get() {
            return id;
        }
        let t = std::thread::current();
        let name = t.name().unwrap_or("unnamed").to_owned();
        let id = add(name, TaskKind::Thread, None, None, Some(os_tid()));
        c.set(Some(id));
        id
    })
}

/// The id that keys this caller's lock requests: an override, then the registered async
/// task, then the thread.
pub fn current_task_id() -> u64 {
    if let Some(id) = OVERRIDE.with(Cell::get) {
        return id;
    }
    TASK_ID
        .try_with(|id| *id)
        .unwrap_or_else(|_| thread_task_id())
}

/// The registered async task the caller runs in, if any.
pub fn current_async_task() -> Option<u64> {
    TASK_ID.try_with(|id| *id).ok()
}

/// A fresh id for an async pause outside any registered task (two such tasks may share a
/// worker thread, so the thread id would wrongly make them one task).
pub fn anonymous_task(name: String) -> u64 {
    add(name, TaskKind::Task, None, None, None)
}

/// Runs `f` with the caller's task id set to `id`.
pub fn with_task_override<R>(id: u64, f: impl FnOnce() -> R) -> R {
    let prev = OVERRIDE.with(|c| c.replace(Some(id)));
    let out = f();
    OVERRIDE.with(|c| c.set(prev));
    out
}

pub fn task_name(id: u64) -> String {
    registry()
        .entries
        .get(&id)
        .map_or_else(|| format!("task {id}"), |e| e.name.clone())
}

/// Finished entries kept for dumps; older ones are forgotten so a program that spawns
/// many short tasks does not grow the registry (or its dumps) without bound.
const KEEP_FINISHED: usize = 256;

pub fn set_state(id: u64, state: TaskState) {
    let mut reg = registry();
    let finished = state == TaskState::Finished;
    if let Some(e) = reg.entries.get_mut(&id) {
        e.state = state;
    }
    if finished {
        let done: Vec<u64> = reg
            .entries
            .iter()
            .filter(|(_, e)| e.state == TaskState::Finished)
            .map(|(id, _)| *id)
            .collect();
        if done.len() > KEEP_FINISHED {
            for old in &done[..done.len() - KEEP_FINISHED] {
                reg.entries.remove(old);
            }
        }
    }
}

/// Removes an anonymous entry once its pause is over.
pub fn forget(id: u64) {
    registry().entries.remove(&id);
}

/// Names the calling thread in dumps (the main thread calls this through `init`).
pub fn register_current_thread() -> u64 {
    thread_task_id()
}

/// Spawns a named tokio task that shows up in dumps, its parent being the calling task.
#[track_caller]
pub fn spawn_task<F>(name: impl Into<String>, fut: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let parent = Some(current_task_id());
    let id = add(
        name.into(),
        TaskKind::Task,
        parent,
        Some(Location::caller()),
        None,
    );
    tokio::spawn(TASK_ID.scope(id, async move {
        let _done = Finished(id);
        fut.await
    }))
}

/// Spawns a named OS thread that shows up in dumps, its parent being the calling task.
#[track_caller]
pub fn spawn_thread<F, T>(
    name: impl Into<String>,
    f: F,
) -> std::io::Result<std::thread::JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let name = name.into();
    let parent = Some(current_task_id());
    let at = Location::caller();
    let id = add(name.clone(), TaskKind::Thread, parent, Some(at), None);
    std::thread::Builder::new().name(name).spawn(move || {
        THREAD_ID.with(|c| c.set(Some(id)));
        if let Some(e) = registry().entries.get_mut(&id) {
            e.os_tid = Some(os_tid());
        }
        let _done = Finished(id);
        f()
    })
}

/// Marks a task finished when it ends, by return or by unwinding.
struct Finished(u64);

impl Drop for Finished {
    fn drop(&mut self) {
        set_state(self.0, TaskState::Finished);
    }
}

/// The task tree (registered tasks and threads) as indented text.
pub fn task_tree() -> String {
    let reg = registry();
    let mut out = String::new();
    let roots: Vec<u64> = reg
        .entries
        .iter()
        .filter(|(_, e)| e.parent.is_none_or(|p| !reg.entries.contains_key(&p)))
        .map(|(id, _)| *id)
        .collect();
    let mut stack: Vec<(u64, usize)> = roots.into_iter().rev().map(|id| (id, 0)).collect();
    while let Some((id, depth)) = stack.pop() {
        let Some(e) = reg.entries.get(&id) else {
            continue;
        };
        let kind = match e.kind {
            TaskKind::Thread => "thread",
            TaskKind::Task => "task",
        };
        let state = match &e.state {
            TaskState::Running => "running".to_owned(),
            TaskState::Queued(at) => format!("waiting for the debug lock at {at}"),
            TaskState::Debugging(at) => format!("in debugger at {at}"),
            TaskState::Finished => "finished".to_owned(),
        };
        let tid = e.os_tid.map(|t| format!(" tid {t}")).unwrap_or_default();
        let at = if e.spawned_at.is_empty() {
            String::new()
        } else {
            format!(" (spawned at {})", e.spawned_at)
        };
        let _ = writeln!(
            out,
            "{:indent$}#{id} {} [{kind}{tid}] {state}{at}",
            "",
            e.name,
            indent = depth * 2
        );
        let children: Vec<u64> = reg
            .entries
            .iter()
            .filter(|(_, c)| c.parent == Some(id))
            .map(|(cid, _)| *cid)
            .collect();
        stack.extend(children.into_iter().rev().map(|c| (c, depth + 1)));
    }
    out
}

/// Every OS thread of this process, from /proc: tid, name and scheduler state.
pub fn os_threads() -> String {
    let mut out = String::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return "threads: /proc/self/task not readable\n".into();
    };
    let mut tids: Vec<i32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    tids.sort_unstable();
    for tid in tids {
        let comm =
            std::fs::read_to_string(format!("/proc/self/task/{tid}/comm")).unwrap_or_default();
        let stat =
            std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap_or_default();
        let state = stat
            .rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .unwrap_or("?");
        let _ = writeln!(out, "  tid {tid} {} [{state}]", comm.trim());
    }
    out
}

/// Largest dump sent; the frame limit is 1 MiB.
const MAX_DUMP: usize = 512 * 1024;

/// The full dump sent in reply to a dump request (truncated, with a note, if huge).
pub fn dump(actor_name: &str) -> String {
    let mut text = format!(
        "actor {actor_name} (pid {})\ntasks:\n{}threads:\n{}",
        std::process::id(),
        indent(&task_tree()),
        os_threads()
    );
    if text.len() > MAX_DUMP {
        text.truncate(crate::proto::floor_char_boundary(&text, MAX_DUMP));
        text.push_str("\n... (dump truncated)\n");
    }
    text
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("  {l}\n")).collect()
}
