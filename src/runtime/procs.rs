//! The root's hold on every process of the tree, actors or not: it is a child subreaper,
//! so anything an actor starts stays its descendant whatever it does (double fork, `setsid`,
//! a cleared environment); it reaps the orphans that land on it; at the end of a run it
//! kills every descendant; and it signals processes it did not spawn only through a pidfd
//! taken while they were known to be its descendants.
//!
//! Guarantee: when the run ends (normally, `quit`, SIGTERM/SIGINT/SIGHUP), no descendant of
//! the root is left. A root killed with SIGKILL cannot clean up: then the actors it spawned
//! die with it (PR_SET_PDEATHSIG), but non-actor processes that left their session and
//! ignore SIGHUP can survive.
#![allow(
    unsafe_code,
    reason = "prctl, pidfd syscalls and poll on a pidfd; each block says why it is sound"
)]

use std::collections::{HashMap, HashSet};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::OnceLock;

use nix::sys::signal::Signal;

/// The soft descriptor limit the root started with, restored in every actor it spawns.
static ORIGINAL_NOFILE: OnceLock<(u64, u64)> = OnceLock::new();

/// Raises the soft RLIMIT_NOFILE to the hard limit (many connections and PTYs), keeping
/// the old value for spawned actors. Returns the soft limit now in force.
pub fn raise_nofile_limit() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 1024;
    };
    ORIGINAL_NOFILE.get_or_init(|| (soft, hard));
    match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
        Ok(()) => hard,
        Err(e) => {
            tracing::debug!(error = %e, "cannot raise the descriptor limit");
            soft
        }
    }
}

/// The (soft, hard) descriptor limits to give spawned actors, if the root changed its own.
pub fn original_nofile() -> Option<(u64, u64)> {
    ORIGINAL_NOFILE.get().copied()
}

/// Makes orphaned descendants re-parent to the root instead of init.
pub fn become_subreaper() {
    // SAFETY: PR_SET_CHILD_SUBREAPER takes an integer flag and touches no memory of ours.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1) } < 0 {
        tracing::warn!(
            error = %std::io::Error::last_os_error(),
            "cannot become a child subreaper; processes that leave the tree may outlive it"
        );
    }
}

/// (parent pid, state letter, process group) from `/proc/PID/stat`: the one place the
/// root parses that file.
/// This host's name (`/proc/sys/kernel/hostname`), if it has one.
pub fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
}

/// The signal the bundled Python client arms faulthandler for (see python/actor_tui/_dump.py).
pub fn stacks_signal() -> libc::c_int {
    libc::SIGRTMIN() + 5
}

/// kill(2) with any signal number, for a process the root spawned and has not reaped.
pub fn kill_raw(pid: u32, signo: libc::c_int) -> std::io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| std::io::ErrorKind::InvalidInput)?;
    // SAFETY: kill(2) takes plain integers and touches no memory of ours.
    if unsafe { libc::kill(pid, signo) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The fields of `/proc/PID/stat` the root uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    pub state: char,
    pub ppid: u32,
    pub pgrp: u32,
    /// utime + stime, in clock ticks.
    pub cpu_ticks: u64,
    pub threads: u64,
}

pub fn proc_stat(pid: u32) -> Option<ProcStat> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields resume after the last ')'.
    let f: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok());
    Some(ProcStat {
        state: f.first()?.chars().next()?,
        ppid: u32::try_from(num(1)?).ok()?,
        pgrp: u32::try_from(num(2)?).ok()?,
        cpu_ticks: num(11)? + num(12)?,
        threads: num(17)?,
    })
}

fn stat_fields(pid: u32) -> Option<(u32, char, u32)> {
    proc_stat(pid).map(|s| (s.ppid, s.state, s.pgrp))
}

/// (parent pid, state letter) of `pid`.
fn stat(pid: u32) -> Option<(u32, char)> {
    stat_fields(pid).map(|(ppid, st, _)| (ppid, st))
}

/// utime + stime of a process, in clock ticks.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    proc_stat(pid).map(|s| s.cpu_ticks)
}

/// The parent pid of `pid` (None if the process is gone).
pub fn parent_pid(pid: u32) -> Option<u32> {
    stat(pid).map(|(ppid, _)| ppid)
}

/// The process state letter of `pid` (`R`, `S`, `D`, `T`, `t`, `Z`, ...), if it exists.
pub fn state(pid: u32) -> Option<char> {
    stat(pid).map(|(_, s)| s)
}

fn pids() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .collect()
}

/// Every process on the system with its parent and state.
fn process_table() -> HashMap<u32, (u32, char)> {
    pids()
        .into_iter()
        .filter_map(|pid| Some((pid, stat(pid)?)))
        .collect()
}

/// Every process group on the system with its members, from one pass over `/proc`.
pub fn process_groups() -> HashMap<u32, Vec<u32>> {
    let mut groups: HashMap<u32, Vec<u32>> = HashMap::new();
    for pid in pids() {
        if let Some((_, _, pgrp)) = stat_fields(pid) {
            groups.entry(pgrp).or_default().push(pid);
        }
    }
    groups
}

/// True if `pid` is blocked in `read(2)` on a descriptor that is the terminal `tty`: a
/// program waiting for someone to type (`input()`, a shell prompt). Needs
/// `/proc/PID/syscall`, which the parent may read; where it is not readable, says no.
pub fn reading_terminal(pid: u32, tty: &std::path::Path) -> bool {
    let Ok(sc) = std::fs::read_to_string(format!("/proc/{pid}/syscall")) else {
        return false;
    };
    let mut f = sc.split_whitespace();
    let is_read = f.next().and_then(|n| n.parse::<i64>().ok()) == Some(libc::SYS_read);
    let fd = f
        .next()
        .and_then(|h| u64::from_str_radix(h.trim_start_matches("0x"), 16).ok());
    match fd {
        Some(fd) if is_read => {
            std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).is_ok_and(|target| target == tty)
        }
        _ => false,
    }
}

/// All descendants of `root` in `table`, with their states.
fn descendants_in(table: &HashMap<u32, (u32, char)>, root: u32) -> Vec<(u32, u32, char)> {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for (&pid, &(ppid, _)) in table {
        children.entry(ppid).or_default().push(pid);
    }
    let mut out = Vec::new();
    let mut stack = vec![root];
    let mut seen = HashSet::new();
    while let Some(p) = stack.pop() {
        for &c in children.get(&p).map_or(&[][..], Vec::as_slice) {
            if seen.insert(c) {
                let (ppid, st) = table[&c];
                out.push((c, ppid, st));
                stack.push(c);
            }
        }
    }
    out
}

/// True if `pid` descends from this process (walking parent pids; bounded).
pub fn is_descendant(pid: u32) -> bool {
    let me = std::process::id();
    let mut cur = pid;
    for _ in 0..128 {
        match stat(cur) {
            Some((ppid, _)) if ppid == me => return true,
            Some((ppid, _)) if ppid > 1 => cur = ppid,
            _ => return false,
        }
    }
    false
}

/// Reaps zombie children of ours that nobody else waits for, without a pass over `/proc`
/// (about 1 ms here, on the engine's loop): it peeks (`WNOWAIT`) at the first child that
/// has exited, reaps it if it is an orphan, and peeks again. Not orphans, never touched so
/// that no exit status is stolen: `managed` (the pids tokio waits for, spawned actors), and
/// any child in the root's own session (the dump tools and the editor it runs, whose
/// waiters reap them; actors are session leaders, so whatever they leave behind is in a
/// session of theirs). It stops at one of those; an orphan behind it is reaped on a later
/// call (the engine calls this at every SIGCHLD and once a second).
pub fn reap_orphans(managed: &HashSet<u32>) -> usize {
    use nix::sys::wait::{Id, WaitPidFlag, waitid};
    use nix::unistd::getsid;
    let peek = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    let Ok(ours) = getsid(None) else { return 0 };
    let mut reaped = 0;
    // Bounded: each turn reaps one zombie, and a fork bomb must not keep the loop here.
    for _ in 0..1024 {
        let Some(pid) = waitid(Id::All, peek).ok().and_then(|st| st.pid()) else {
            break;
        };
        // A zombie keeps its session until it is reaped.
        let orphan = !managed.contains(&(pid.as_raw() as u32))
            && getsid(Some(pid)).is_ok_and(|sid| sid != ours);
        if !orphan || !reap(pid.as_raw() as u32) {
            break;
        }
        reaped += 1;
    }
    reaped
}

fn reap(pid: u32) -> bool {
    use nix::sys::wait::{WaitPidFlag, waitpid};
    waitpid(
        nix::unistd::Pid::from_raw(pid as i32),
        Some(WaitPidFlag::WNOHANG),
    )
    .is_ok()
}

/// Kills every descendant of the root and reaps them, until none is left or `deadline`
/// passes. Processes forking while this runs are caught on the next pass: SIGKILL stops
/// them, and their children re-parent to us. Returns how many were killed.
pub async fn sweep(managed: &HashSet<u32>, deadline: std::time::Duration) -> usize {
    let me = std::process::id();
    let until = std::time::Instant::now() + deadline;
    let mut killed = HashSet::new();
    loop {
        let left = descendants_in(&process_table(), me);
        let mut waiting = false;
        for &(pid, ppid, st) in &left {
            if st == 'Z' {
                if ppid == me && !managed.contains(&pid) {
                    reap(pid);
                }
                // A managed zombie is tokio's to reap; a zombie elsewhere is its parent's.
                waiting |= ppid == me && !managed.contains(&pid);
                continue;
            }
            waiting = true;
            // Only our own children: their pids cannot be reused while we have not reaped
            // them. A grandchild's parent may reap it and its pid go to a stranger; once that
            // parent is killed, the grandchild re-parents to us (a subreaper) and the next
            // pass gets it.
            if ppid != me || managed.contains(&pid) {
                continue;
            }
            if killed.insert(pid) {
                tracing::info!(pid, "killing a leftover process of the tree");
            }
            // ESRCH: it ended on its own meanwhile.
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), Signal::SIGKILL);
        }
        if !waiting || std::time::Instant::now() >= until {
            return killed.len();
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// A process handle that cannot point at a recycled pid: signals go through it, and it
/// reports when the process is gone.
#[derive(Debug)]
pub struct PidFd {
    fd: OwnedFd,
}

impl PidFd {
    /// Opens a pidfd for `pid`, but only if `pid` is a descendant of ours, checked after the
    /// descriptor exists (so the check and the descriptor are about the same process).
    pub fn open_descendant(pid: u32) -> Option<Self> {
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
        let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        if raw < 0 {
            return None;
        }
        // SAFETY: the syscall returned a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw as i32) };
        let me = Self { fd };
        (me.is_alive() && is_descendant(pid)).then_some(me)
    }

    /// False once the process has exited (the pidfd turns readable).
    pub fn is_alive(&self) -> bool {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one pollfd that lives on our stack, zero timeout.
        let rc = unsafe { libc::poll(&mut pfd, 1, 0) };
        rc == 0
    }

    /// Sends `sig` to exactly the process this pidfd was opened for.
    pub fn signal(&self, sig: Signal) -> std::io::Result<()> {
        self.signal_raw(sig as libc::c_int)
    }

    /// Like [`signal`](Self::signal), for any signal number (real-time ones included).
    pub fn signal_raw(&self, signo: libc::c_int) -> std::io::Result<()> {
        // SAFETY: pidfd_send_signal with a null siginfo behaves like kill(2) on our pidfd.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.fd.as_raw_fd(),
                signo,
                std::ptr::null::<libc::siginfo_t>(),
                0,
            )
        };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Waits until the process exits.
    pub async fn exited(&self) {
        let Ok(dup) = self.fd.try_clone() else {
            return std::future::pending().await;
        };
        // SAFETY: `OwnedFd` owns the duplicate for the AsyncFd's whole life and always
        // reports the same descriptor.
        let registered = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(dup, tokio::io::Interest::READABLE)
        };
        match registered {
            Ok(afd) => {
                // Readable means exited; an error means the same for our purposes.
                let _ = afd.readable().await;
            }
            Err(_) => std::future::pending().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descendants_follow_parent_links_transitively() {
        let table = HashMap::from([
            (10, (1, 'S')),
            (11, (10, 'S')),
            (12, (11, 'Z')),
            (13, (1, 'S')),
        ]);
        let mut d: Vec<u32> = descendants_in(&table, 10).iter().map(|t| t.0).collect();
        d.sort_unstable();
        assert_eq!(d, vec![11, 12]);
    }

    #[test]
    fn a_pidfd_is_only_given_for_a_descendant_and_sees_its_exit() {
        assert!(
            PidFd::open_descendant(1).is_none(),
            "init is nobody's descendant"
        );
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep");
        let fd = PidFd::open_descendant(child.id()).expect("our child");
        assert!(fd.is_alive());
        fd.signal(Signal::SIGKILL).expect("signal");
        child.wait().expect("wait");
        assert!(!fd.is_alive());
        // A pid that is gone cannot be signalled through its old pidfd, whoever reuses it.
        assert!(fd.signal(Signal::SIGTERM).is_err());
    }
}
