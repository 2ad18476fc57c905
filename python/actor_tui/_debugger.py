"""Stock pdb over the root's REPL session: `set_trace` (for PYTHONBREAKPOINT), post-mortems
from the exception hooks, and the session I/O that turns pdb's stdin/stdout into frames.

Lifetime of a session, per thread: the lock is requested when pdb is about to become
interactive and there is no open session for this thread; it is held across `n`, `s`, `r`,
`until` (the program runs briefly and pdb stops again); it is released when pdb lets the
program run freely (`c`, hooked through `set_continue`: a later breakpoint, or `breakpoint()`
call, asks again) or at the end of a post-mortem; `q` ends the process with status 113.
"""

import itertools
import os
import sys
import threading
import weakref

from . import _client
from ._client import warn

# ---- task identity ---------------------------------------------------------------------------

_ids_lock = threading.Lock()
_next_id = itertools.count(1)
_thread_ids = threading.local()
_task_ids = weakref.WeakKeyDictionary()


def _async_task():
    """The running asyncio or trio task of this thread and its name, else (None, None).
    Neither library is imported here: a program that does not use one has no task of it."""
    aio = sys.modules.get("asyncio")
    if aio is not None:
        try:
            task = aio.current_task()
        except RuntimeError:  # no running loop in this thread
            task = None
        if task is not None:
            return task, task.get_name() if hasattr(task, "get_name") else repr(task)
    trio = sys.modules.get("trio")
    if trio is not None:
        try:
            task = trio.lowlevel.current_task()
        except (RuntimeError, AttributeError):  # not inside trio.run
            task = None
        if task is not None:
            return task, getattr(task, "name", repr(task))
    return None, None


# Set by a runtime integration (actor_tui.ray): a callable naming the unit of work running
# now (a Ray task), or returning None to fall back to the async task or thread name.
task_namer = None

# What `q` does in set_trace's debugger: end the process with 113 (True), or pdb's own
# BdbQuit, which fails only the code that called breakpoint() (a Ray task, as Ray reports it).
quit_exits_default = True


def _named_task():
    if task_namer is None:
        return None
    try:
        return task_namer()
    except Exception:  # a name is never worth a failed pause
        return None


def current_task():
    """(task id, task name) for the lock request: the running async task if there is one,
    else the calling thread. Ids are small numbers, unique within the process. A runtime
    integration's `task_namer` names it when it can."""
    tid, name = _current_task()
    return tid, _named_task() or name


def _current_task():
    task, name = _async_task()
    if task is not None:
        with _ids_lock:
            try:
                tid = _task_ids.get(task)
                if tid is None:
                    tid = _task_ids[task] = next(_next_id)
                return tid, name
            except TypeError:  # a task type without weak references: key by thread below
                pass
    tid = getattr(_thread_ids, "id", None)
    if tid is None:
        with _ids_lock:
            tid = _thread_ids.id = next(_next_id)
    return tid, name or threading.current_thread().name


def _location(frame=None, tb=None):
    if tb is not None:
        while tb.tb_next is not None:
            tb = tb.tb_next
        return "%s:%d" % (tb.tb_frame.f_code.co_filename, tb.tb_lineno)
    if frame is not None:
        return "%s:%d" % (frame.f_code.co_filename, frame.f_lineno)
    return "?"


# ---- tab completion --------------------------------------------------------------------------
#
# `complete_request` (PROTOCOL.md 5.2, 6.3) asks for the full input lines the session would
# accept that start with what the user typed so far. This is what cmd.Cmd.complete does
# under readline, without readline: the console sends the whole line, so the word being
# completed and its position (readline's begidx and endidx) are worked out here, with the
# word delimiters pdb itself gives readline. pdb's own machinery then does the work:
# `completenames` for the first word, `complete_<command>` (or `completedefault`) for its
# arguments, the paused frame supplying the names in expressions.

# What pdb.Pdb.__init__ passes to readline.set_completer_delims: readline's default set
# without the characters that occur in file names (`~ ! - / .`), so `b dir/file.py:12` and
# `p obj.attr` complete as one word.
PDB_DELIMS = " \t\n`@#$%^&*()=+[{]}\\|;:'\",<>?"

# At most this many lines in one reply.
MAX_MATCHES = 200


def _word_start(line, delims=PDB_DELIMS):
    """readline's begidx for a cursor at the end of `line`: where the last word begins."""
    i = len(line)
    while i > 0 and line[i - 1] not in delims:
        i -= 1
    return i


def _completion_candidates(debugger, line):
    """(begidx in `line`, pdb's matches for the word that ends the line), as
    cmd.Cmd.complete computes them from readline's buffer."""
    stripped = line.lstrip()  # cmd.Cmd.complete drops leading blanks from the buffer
    lead = len(line) - len(stripped)
    begidx = _word_start(stripped)
    endidx = len(stripped)
    text = stripped[begidx:]
    if begidx > 0:
        cmd, _arg, _ = debugger.parseline(stripped)
        compfunc = getattr(debugger, "complete_" + cmd, None) if cmd else None
        if compfunc is None:
            compfunc = debugger.completedefault
    else:
        compfunc = debugger.completenames
    return lead + begidx, compfunc(text, stripped, begidx, endidx)


def complete_line(debugger, line):
    """Every full input line starting with `line` that `debugger` (a pdb.Pdb, stopped and
    waiting for a command) completes it to: `line` up to the word being completed, followed
    by each of pdb's matches for that word. In pdb's order, without duplicates, at most
    MAX_MATCHES. Never raises: any failure means no matches."""
    try:
        if not isinstance(line, str):
            return []
        begidx, found = _completion_candidates(debugger, line)
        head = line[:begidx]
        out = []
        seen = set()
        for match in found or ():
            if not isinstance(match, str) or not match:
                continue
            full = head + match
            if full in seen or not full.startswith(line):
                continue
            seen.add(full)
            out.append(full)
            if len(out) >= MAX_MATCHES:
                break
        return out
    except Exception:
        return []


# ---- pdb's stdin and stdout ---------------------------------------------------------------------


class _SessionIO(object):
    """pdb's stdin and stdout. Complete lines go out as repl_output; whatever pdb wrote
    without a newline just before reading is its prompt, sent as repl_waiting's `prompt`
    instead of as output. Text written while no session is attached (pdb's "--Return--"
    before the lock is granted) waits and follows the banner."""

    encoding = "utf-8"
    errors = "replace"
    closed = False

    def __init__(self, pdb):
        self._pdb = pdb
        self._buf = ""
        self.session = None

    # -- stdout
    def write(self, text):
        if not isinstance(text, str):
            text = str(text)
        self._buf += text
        # Coalesced: pdb's answer to a command goes out as one frame when it reads the next
        # line; only long output (a loop printing under `!`) is sent as it comes.
        if len(self._buf) > 8192:
            self._send_complete_lines()
        return len(text)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self):
        # Cmd flushes right after writing the prompt: keep that tail for repl_waiting.
        self._send_complete_lines()

    def _send_complete_lines(self):
        cut = self._buf.rfind("\n") + 1
        if cut and self.session is not None:
            text, self._buf = self._buf[:cut], self._buf[cut:]
            self._send(text)

    def _send(self, text):
        client = _client.current(connect=False)
        if client is not None and self.session is not None:
            client.output(self.session, text)

    def attach(self, session, banner):
        # Sent with what pdb prints next, as one frame, when it first reads a line.
        self.session = session
        self._buf = banner + self._buf

    def finish(self):
        """Sends everything left, at the end of an interaction."""
        if self._buf and self.session is not None:
            text, self._buf = self._buf, ""
            self._send(text)

    def detach(self):
        self.finish()
        self.session = None
        self._buf = ""

    # -- stdin
    def readline(self, size=-1):
        cut = self._buf.rfind("\n") + 1
        text, prompt = self._buf[:cut], self._buf[cut:]
        self._buf = ""
        if text:
            self._send(text)
        client = _client.current(connect=False)
        line = None
        if client is not None and self.session is not None:
            # At pdb's own prompt, completion requests are answered by this debugger (not in
            # a continuation line, nor in input() called from `!`).
            completer = None
            if prompt.endswith(self._pdb.prompt):
                pdb = self._pdb
                completer = lambda typed: complete_line(pdb, typed)  # noqa: E731
            line = client.next_line(self.session, prompt, completer)
        if line is None:
            # Revoked or disconnected: at pdb's own prompt, continue (the program goes on,
            # and the session's end is noticed afterwards); in any other read (a
            # continuation line, input() under `!`) an empty read ends that read only.
            return "continue\n" if prompt.endswith(self._pdb.prompt) else ""
        return line

    def isatty(self):
        return False

    def readable(self):
        return True

    def writable(self):
        return True

    def fileno(self):
        import io

        raise io.UnsupportedOperation("the actor-tui session has no file descriptor")


# ---- pdb itself ------------------------------------------------------------------------------------
#
# Every debugger built on pdb.Pdb goes through the lock: `pdb.Pdb.interaction` (where any Pdb,
# or subclass, stops and reads commands) is wrapped once, when pdb is imported. So
# `pdb.set_trace()`, `pdb.Pdb().set_trace()`, `pdb.post_mortem()`, `pdb.pm()`, `python -m pdb`,
# pytest's `--pdb`/`--trace`, and subclasses (pdbp, tractor's REPL) all become sessions.
# Two kinds of instance:
# - ours (`ActorTuiPdb`, made by set_trace/post_mortem here): `q` ends the process with
#   status 113, as breakpoint() under actor-tui always did;
# - anybody else's: the first stop under a root switches its stdin/stdout to the session,
#   and `q` is pdb's own (BdbQuit, which `python -m pdb` and pytest expect), the lock being
#   released with how "quit".


# What the banner says `q` does when it does not end the process.
quit_text_session = "`q` quits the debugger"


def _banner(client, session, reason, location, crash_text, quit_exits=True, what=None):
    what = what or ("crashed" if reason == "crash" else "paused")
    text = "\n--- actor-tui: %s %s at %s (task %s) ---\n" % (client.name, what, location, session.task_name)
    quit_text = "`q` ends the process (status 113)" if quit_exits else quit_text_session
    if crash_text:
        text += crash_text if crash_text.endswith("\n") else crash_text + "\n"
        text += "post-mortem pdb: `c` lets the exception proceed, %s\n" % quit_text
    else:
        text += "pdb: `c` continues, `n`/`s` step, `p EXPR` prints, %s\n" % quit_text
    return text


class _PdbState(object):
    """What actor_tui keeps on one Pdb instance (as `_actor_tui`)."""

    def __init__(self, p, quit_exits):
        self.io = _SessionIO(p)
        self.quit_exits = quit_exits
        # The next stop's reason, location, crash report and task name, when the caller
        # knows better than the frame (a post-mortem, the pytest plugin).
        self.reason = "pause"
        self.where = None
        self.crash_text = None
        self.task_name = None
        self.end = None  # how the user left the last command loop: continue, quit, None


def _on_the_terminal(p):
    """Whether a debugger talks to the process's own terminal (so the console should have it),
    rather than to streams its program gave it (a test's StringIO, remote_pdb's socket)."""
    std = (sys.stdin, sys.__stdin__, sys.stdout, sys.__stdout__)
    return any(p.stdin is s for s in std[:2]) and any(p.stdout is s for s in std[2:])


def _reads_the_tty_itself(p):
    # IPython's TerminalPdb (ipdb) reads with prompt_toolkit and refuses use_rawinput=False:
    # it keeps its own terminal and only takes the lock.
    return any(c.__module__.split(".")[0] == "IPython" for c in type(p).__mro__)


def _adopt(p):
    """The state of a Pdb instance, taking over its I/O on a stop where it uses the terminal
    (another program's debugger, or a subclass we did not build). None: leave it alone."""
    st = p.__dict__.get("_actor_tui")
    if st is not None and p.stdin is st.io:
        return st
    if not _on_the_terminal(p):
        return None
    if st is None:
        st = p._actor_tui = _PdbState(p, quit_exits=False)
        # The shield owns SIGINT; pdb's own handler would turn a Ctrl-C into a stop.
        p.nosigint = True
        skip = set(p.skip or ())
        skip.update(("actor_tui", "actor_tui.*"))
        p.skip = skip
    if not _reads_the_tty_itself(p):
        p.stdin = p.stdout = st.io
        p.use_rawinput = False
    return st


# Command loops running on this thread: pdb's `debug` command runs a nested debugger inside
# the outer one's session, which must neither ask for the lock nor end it; a breakpoint()
# or a break-in reached from code run at the prompt is ignored.
_loops = threading.local()


def _in_command_loop():
    return getattr(_loops, "depth", 0) > 0


def _exception_of(tb):
    """(traceback, exception) for what pdb was given: 3.13+ passes the exception itself;
    for a bare traceback, the exception that owns it if Python still knows it."""
    if isinstance(tb, BaseException):
        return tb.__traceback__, tb
    if tb is None:
        return None, None
    for exc in (sys.exc_info()[1], getattr(sys, "last_exc", None), getattr(sys, "last_value", None)):
        if exc is not None and exc.__traceback__ is tb:
            return tb, exc
    return tb, None


def _stop_debugging(p):
    # Like `c`, but nobody is told: the program runs on, breakpoints stay set.
    import bdb

    bdb.Bdb.set_continue(p)


def _interaction(p, frame, traceback, run):
    """pdb.Pdb.interaction under a root: one session per task, held across steps."""
    # connect=True: a breakpoint inherited across a fork fires in the child, which then
    # connects as a new actor.
    if _in_command_loop():
        return run(p, frame, traceback)  # nested (`debug`): the outer session goes on
    client = _client.current()
    st = p.__dict__.get("_actor_tui")
    if client is None:
        if st is None:
            return run(p, frame, traceback)  # not ours and no root: pdb as it would be
        st.io.detach()
        _stop_debugging(p)
        return
    st = _adopt(p)
    if st is None:
        return run(p, frame, traceback)  # talks to its own streams: not the console's
    tb, exc = _exception_of(traceback)
    if traceback is not None and st.reason == "pause":
        # A post-mortem we did not start (pdb.post_mortem, pytest --pdb).
        st.reason = "crash"
        st.crash_text = st.crash_text or _exception_text(exc, tb) or None
    session = client.claim_session()
    if session is not None and session.over:
        # Revoked, or the root went away, while the program ran between two steps:
        # the user's session is gone, so stop stepping instead of asking again.
        client.end_session(session)
        if st.reason != "crash":
            st.io.detach()
            _stop_debugging(p)
            return
        session = None
    location = st.where or _location(frame, tb)
    if session is None:
        task, task_name = current_task()
        task_name = st.task_name or task_name
        # A crash's peek is its traceback: what the crash list keeps if a rule skips it.
        peek = st.crash_text if st.reason == "crash" and st.crash_text else _peek(frame)
        session = client.request_lock(task, task_name, st.reason, location, peek=peek)
        if session is None:
            st.io.detach()
            st.reason, st.where, st.crash_text, st.task_name = "pause", None, None, None
            _stop_debugging(p)
            return
        st.io.attach(session, _banner(client, session, st.reason, location, st.crash_text, st.quit_exits))
    else:
        banner = ""
        if st.reason == "crash":
            # A crash inside an open session (stepped into an uncaught exception).
            banner = _banner(client, session, "crash", location, st.crash_text, st.quit_exits)
        if st.io.session is not session:
            # Another debugger of this thread (a post-mortem, a nested pause) joins the
            # session this thread already holds.
            st.io.attach(session, banner)
        elif banner:
            st.io.write(banner)
        client.moved(session, current_task()[1], location)
    st.reason, st.where, st.crash_text, st.task_name = "pause", None, None, None
    st.end = None
    _loops.depth = getattr(_loops, "depth", 0) + 1
    try:
        run(p, frame, traceback)
    except BaseException:
        # The command loop raised (pytest's `q` raises its Exit from there): the session
        # ends with it, or the tree would wait for a release that never comes.
        st.io.finish()
        client.end_session(session, "quit" if st.end == "quit" else "continue")
        st.io.detach()
        raise
    finally:
        _loops.depth -= 1
    st.io.finish()
    if session.over:
        client.end_session(session)
        st.io.detach()
    elif st.end == "quit":
        if st.quit_exits:
            client.quit_process(session)
        client.end_session(session, "quit")
        st.io.detach()
    elif st.end == "continue" or traceback is not None:
        client.end_session(session, "continue")
        st.io.detach()
    else:
        # The user stepped: the session stays open until pdb stops again, or until
        # the step has run too long to be worth holding the tree's lock for.
        client.start_stepping(session, _step_timeout())


def _patch_pdb(pdb):
    cls = pdb.Pdb
    if cls.__dict__.get("_actor_tui_patched"):
        return
    original_interaction = cls.interaction
    original_set_continue = cls.set_continue
    original_set_quit = cls.set_quit

    def interaction(self, frame, traceback):
        return _interaction(self, frame, traceback, original_interaction)

    def set_continue(self):
        original_set_continue(self)
        st = self.__dict__.get("_actor_tui")
        if st is not None and st.end is None:
            st.end = "continue"

    def set_quit(self):
        original_set_quit(self)
        st = self.__dict__.get("_actor_tui")
        if st is not None:
            st.end = "quit"

    cls.interaction = interaction
    cls.set_continue = set_continue
    cls.set_quit = set_quit
    cls._actor_tui_patched = True
    # pdb.set_trace() is breakpoint() by another name: the same session, the same `q`.
    pdb.set_trace = set_trace


class _ActorPdbMixin(object):
    """Put before a stock Pdb class (stdlib pdb or pdbp): the debugger of set_trace and
    post_mortem here, reused per thread so breakpoints and settings persist."""

    def __init__(self, completekey="tab", stdin=None, stdout=None, **kwargs):
        # stdin/stdout are accepted (pdb's `debug` command passes them when it creates a
        # nested debugger) but always replaced: this debugger talks to the session.
        kwargs["completekey"] = completekey
        st = _PdbState(self, quit_exits=quit_exits_default)
        # nosigint: pdb must not install its own SIGINT handler; the shield owns SIGINT.
        kwargs.setdefault("nosigint", True)
        # Never stop inside this package (its atexit and timer code may run while the user
        # steps off the end of the program).
        kwargs.setdefault("skip", ["actor_tui", "actor_tui.*"])
        super(_ActorPdbMixin, self).__init__(stdin=st.io, stdout=st.io, **kwargs)
        self.use_rawinput = False
        self._actor_tui = st

    @property
    def _io(self):
        return self._actor_tui.io

    def do_interact(self, arg):
        # code.interact() reads the process's own stdin (its PTY), which nobody types into
        # under actor-tui: refuse rather than hang.
        self.error("`interact` is not available under actor-tui; use `!statement` or `p expr`")


def _step_timeout():
    try:
        return max(0.0, float(os.environ.get("ACTOR_TUI_STEP_TIMEOUT", "")))
    except ValueError:
        return 2.0


_pdb_class_cache = None


def _base_pdb_class():
    if os.environ.get("ACTOR_TUI_PDB", "").strip().lower() == "pdbp":
        try:
            import pdbp

            return pdbp.Pdb
        except Exception as e:
            warn("ACTOR_TUI_PDB=pdbp but pdbp cannot be used (%r); using pdb" % (e,))
    import pdb

    return pdb.Pdb


def pdb_class():
    global _pdb_class_cache
    if _pdb_class_cache is None:
        import pdb

        _patch_pdb(pdb)
        base = _base_pdb_class()
        _pdb_class_cache = type("ActorTuiPdb", (_ActorPdbMixin, base), {})
    return _pdb_class_cache


_tls = threading.local()


def _prepare(frame):
    """What a session needs before its first prompt, done while the request waits: the
    thread's debugger (importing pdb on first use) and the source lines its first stop
    prints."""
    _thread_pdb()
    import linecache

    linecache.getlines(frame.f_code.co_filename, frame.f_globals)


def _thread_pdb():
    """The calling thread's debugger, reused so breakpoints and settings persist."""
    p = getattr(_tls, "pdb", None)
    if p is None:
        p = _tls.pdb = pdb_class()()
    return p


def _after_fork_in_child():
    global _ids_lock
    _ids_lock = threading.Lock()  # another thread may have held it at the fork
    # The forking thread may have been stepping in the parent's session: the child must
    # not stop at its next line and ask for a session of its own. Breakpoints stay set.
    p = getattr(_tls, "pdb", None)
    if p is not None and sys.gettrace() == p.trace_dispatch:
        _stop_debugging(p)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


# ---- entry points ---------------------------------------------------------------------------------


def _can_use_terminal():
    if os.environ.get("ACTOR_TUI_NO_REPL"):
        return False
    try:
        return sys.stdin is not None and sys.stdin.isatty() and sys.stdout is not None and sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


def set_trace(*, header=None, commands=None):
    """Pause here: a pdb session in the actor-tui console, one at a time tree-wide. Use as
    PYTHONBREAKPOINT=actor_tui.set_trace, or call directly. `header` is printed first and
    `commands` (a list of pdb commands) run first, as with pdb.set_trace."""
    frame = sys._getframe(1)
    if _client.in_completion():
        # Program code run to complete `p obj.attr.` at the prompt reached breakpoint(): the
        # session is already open on the paused thread, and a pause here would hold up the
        # completion (and the session waiting for it).
        return
    if not _client.under_root():
        if _can_use_terminal():
            import pdb

            p = _base_pdb_class()() if os.environ.get("ACTOR_TUI_PDB") else pdb.Pdb()
            if header is not None:
                p.message(header)
            if commands:
                p.cmdqueue.extend(commands)
            p.set_trace(frame)
        else:
            warn("breakpoint at %s skipped: no actor-tui root and no terminal" % _location(frame))
        return
    current = getattr(_tls, "pdb", None)
    if current is not None and _in_command_loop():
        # Code run from the pdb prompt (`p f()`, `!f()`) reached breakpoint(): pdb cannot
        # nest in the same thread, so say so in the session and carry on.
        current.message("--- breakpoint() at %s ignored: this thread is already in the debugger ---"
                        % _location(frame))
        return
    # Reached while pdb already traces this thread (stepping onto breakpoint(), or running
    # with breakpoints set): stop that tracing first, or pdb would stop inside its own
    # set_trace once it resets its stepping state.
    sys.settrace(None)
    client = _client.current()
    if client is None:
        # Under a root that cannot be reached: never fall back to the terminal, which is a
        # PTY nobody types into.
        warn("breakpoint at %s skipped: no connection to the actor-tui root" % _location(frame))
        return
    session = client.claim_session()
    if session is not None and session.over:
        client.end_session(session)
        session = None
    fresh = session is None
    if fresh:
        # Ask first, build the debugger while others debug: the queue then reflects the
        # order in which breakpoints were hit, not how long `import pdb` took, and the
        # first prompt of a process after a handoff is as quick as a later one.
        task, task_name = current_task()
        location = _location(frame)
        session = client.request_lock(task, task_name, "pause", location,
                                      meanwhile=lambda: _prepare(frame), peek=_peek(frame))
        if session is None:
            return
    p = _thread_pdb()
    if fresh:
        p._io.attach(session, _banner(client, session, "pause", location, None,
                                      quit_exits=p._actor_tui.quit_exits))
    if header is not None:
        p.message(header)
    if commands:
        p.cmdqueue.extend(commands)
    p.set_trace(frame)


def break_in(frame):
    """The root's `interrupt`, run by the SIGINT shield in the main thread at the line it
    interrupted: a session right there, as Ctrl-C under `python -m pdb` gives, but through
    the lock. Tracing is armed only after the first command (arming it first would trace
    the debugger itself, since this does not run inside a trace function)."""
    if _client.in_completion() or _in_command_loop():
        return
    client = _client.current(connect=False)
    if client is None or _in_start_up(frame):
        # The interrupt came while the process was still connecting (its reader thread
        # runs before `connect` returns): the program has not started; try again shortly.
        _retry_break_in()
        return
    _break_in_retries[0] = 0
    if client.busy_with_lock() or _inside_actor_tui(frame):
        # The thread already waits for the lock or debugs (the root's check raced with a
        # pause): a second request from the same task would be refused, and lose the first.
        client.send_quietly({"type": "notice", "message": "%s (pid %d): not interrupted, it is "
                             "already pausing" % (client.name, client.pid)})
        return
    task, task_name = current_task()
    location = _location(frame)
    session = client.request_lock(task, task_name, "pause", location)
    if session is None:
        return
    try:
        sys.settrace(None)
        p = _thread_pdb()
        p._io.attach(session, _banner(client, session, "pause", location, None, what="interrupted"))
        p.reset()
        p.interaction(frame, None)
    except BaseException:
        # The session must not outlive this (an import that fails here, a KeyboardInterrupt):
        # hand the lock on, then let the exception surface where the program was.
        client.end_session(session, "continue")
        raise
    st = p._actor_tui
    if st.end is None or (st.end == "continue" and p.breaks):
        # Stepping (`n`, `s`): trace this frame and its callers as Bdb.set_trace would,
        # keeping the stop the command asked for; with breakpoints set, `c` runs to them.
        p.botframe = None
        f = frame
        while f is not None:
            f.f_trace = p.trace_dispatch
            p.botframe = f
            f = f.f_back
        if st.end == "continue":
            p._set_stopinfo(p.botframe, None, -1)
        sys.settrace(p.trace_dispatch)


_START_UP_MODULES = ("actor_tui", "sitecustomize", "site", "importlib", "_frozen_importlib")
_break_in_retries = [0]


def _in_modules(frame, names):
    name = frame.f_globals.get("__name__", "") if frame is not None else ""
    return any(name == m or name.startswith(m + ".") for m in names)


def _inside_actor_tui(frame):
    while frame is not None:
        if _in_modules(frame, ("actor_tui",)):
            return True
        frame = frame.f_back
    return False


def _in_start_up(frame):
    return _in_modules(frame, _START_UP_MODULES)


def _retry_break_in():
    _break_in_retries[0] += 1
    if _break_in_retries[0] > 100:  # 5 s of start-up: give up, say so
        _break_in_retries[0] = 0
        warn("break-in given up: the program did not start running")
        return
    from . import _shield

    timer = threading.Timer(0.05, _shield.break_in, (break_in,))
    # (break_in checks again when it runs: by then the program may be pausing by itself.)
    timer.daemon = True
    timer.start()


def _exception_text(value, tb):
    import traceback

    if value is None:
        return ""
    return "".join(traceback.format_exception(type(value), value, tb))


def post_mortem(tb=None, exc=None, task_name=None, crash_text=None, quit_exits=True):
    """A post-mortem pdb session (reason "crash") on a traceback; returns when the user
    continues, with how the session ended ("continue", "quit", or None when there was no
    session). Without arguments, the exception being handled. `task_name` names the session
    instead of the thread or task; `crash_text` replaces the formatted traceback in the
    banner; with `quit_exits` False, `q` ends only the session instead of the process."""
    if tb is None:
        _, exc, tb = sys.exc_info()
        if tb is None:
            raise ValueError("post_mortem() needs a traceback, or an exception being handled")
    if not _client.under_root():
        if _can_use_terminal():
            import pdb

            pdb.post_mortem(tb)
        return None
    client = _client.current()
    if client is None:
        warn("post-mortem at %s skipped: no connection to the actor-tui root" % _location(tb=tb))
        return None
    # A fresh instance: the thread's own one may be tracing (stepping, or breakpoints set).
    p = pdb_class()()
    st = p._actor_tui
    st.quit_exits = quit_exits
    st.reason, st.where, st.task_name = "crash", _location(tb=tb), task_name
    st.crash_text = crash_text or _exception_text(exc, tb)
    p.reset()
    # Python 3.13+ accepts the exception itself, which adds the `exceptions` command.
    target = exc if sys.version_info >= (3, 13) and exc is not None and exc.__traceback__ is tb else tb
    p.interaction(None, target)
    if exc is not None:
        _mark_debugged(exc)
    return st.end


def _mark_debugged(exc):
    # Travels with the exception when a pool pickles it back to the parent (an exception's
    # __dict__ is part of its pickle), so the parent does not open a second post-mortem on
    # the copy it re-raises.
    try:
        exc._actor_tui_debugged = True
    except Exception:
        pass


def _debugged(exc):
    return bool(getattr(exc, "_actor_tui_debugged", False))


def _wants_post_mortem(exc_type):
    import bdb

    # BdbQuit: the user typed `q` in a debugger whose `q` is pdb's own; not a crash.
    return exc_type is not None and not issubclass(exc_type, (SystemExit, KeyboardInterrupt, bdb.BdbQuit))


_original_excepthook = None
_original_threading_excepthook = None


def _excepthook(exc_type, value, tb):
    if _wants_post_mortem(exc_type) and tb is not None and not _debugged(value):
        try:
            post_mortem(tb, value)
        except Exception as e:  # the crash must still be reported below
            warn("post-mortem failed: %r" % (e,))
    _original_excepthook(exc_type, value, tb)
    try:
        sys._getframe(1)
        called_from_python = True
    except ValueError:
        called_from_python = False
    # Only the interpreter's own top-level report (no Python caller) ends the process.
    if not called_from_python and not sys.flags.interactive and _wants_post_mortem(exc_type):
        _client.announce_exit(1, "crash")


def _threading_excepthook(args):
    if (_wants_post_mortem(args.exc_type) and args.exc_traceback is not None
            and not _debugged(args.exc_value)):
        try:
            post_mortem(args.exc_traceback, args.exc_value)
        except Exception as e:
            warn("post-mortem failed: %r" % (e,))
    _original_threading_excepthook(args)


def _patch_multiprocessing(mp_process):
    # multiprocessing catches exceptions from Process.run itself (prints them and exits 1),
    # so sys.excepthook never sees a worker's crash: wrap run() at bootstrap instead.
    original = getattr(mp_process.BaseProcess, "_bootstrap", None)
    if original is None or getattr(original, "_actor_tui", False):
        return

    def _bootstrap(self, *args, **kwargs):
        # A Process's own `q` ends the process with 113, as after breakpoint().
        run = self.run = _PostMortemCall(self.run, quit_exits=True)
        code = original(self, *args, **kwargs)
        if isinstance(code, int):
            # The root did not start this process and cannot wait for it: say how it
            # ends, so the tree shows its code (only if it ever connected).
            _client.announce_exit(code, "crash" if run.crashed else "normal")
        return code

    _bootstrap._actor_tui = True
    mp_process.BaseProcess._bootstrap = _bootstrap


# ---- post-mortems inside pool workers -----------------------------------------------------------
#
# multiprocessing.Pool, concurrent.futures.ProcessPoolExecutor and loky (joblib's backend)
# catch a task's exception in the worker and ship it to the parent, which re-raises a copy
# where the task's frames and locals are gone. Each worker's loop is replaced by one that
# takes its tasks through `_Inbox`, which wraps every task's function in `_PostMortemCall`:
# the post-mortem runs in the worker, on the real frames, before the pool sees the
# exception. The worker functions are module-level here, so pools that pickle their
# worker by name (the spawn and forkserver start methods, loky) find them in the child.


class _PostMortemCall(object):
    """`fn` with a post-mortem, in this process, on what it raises. In a pool worker `q`
    ends the session, not the worker (a worker that exits loses its task, and Pool.map
    would wait for it for ever)."""

    def __init__(self, fn, quit_exits=False):
        self.fn = fn
        self.quit_exits = quit_exits
        self.crashed = False

    def __call__(self, *args, **kwargs):
        try:
            return self.fn(*args, **kwargs)
        except BaseException as e:
            if _wants_post_mortem(type(e)) and e.__traceback__ is not None and not _debugged(e):
                # From the caller's own frame on, for the post-mortem and for the report
                # printed after it: this wrapper is not the user's code.
                e.__traceback__ = e.__traceback__.tb_next or e.__traceback__
                self.crashed = True
                try:
                    post_mortem(e.__traceback__, e, quit_exits=self.quit_exits)
                except Exception as pm_error:
                    warn("post-mortem failed: %r" % (pm_error,))
                _mark_debugged(e)
            raise


class _Inbox(object):
    """A worker's task queue whose tasks come out with their function wrapped."""

    def __init__(self, queue, wrap):
        self._queue = queue
        self._wrap = wrap

    def get(self, *args, **kwargs):
        task = self._queue.get(*args, **kwargs)
        if task is None:
            return task
        try:
            return self._wrap(task)
        except Exception:
            return task  # a task shape this version does not know: run it unwrapped

    def __getattr__(self, name):
        return getattr(self._queue, name)


def _wrap_pool_task(task):
    job, i, func, args, kwds = task
    import multiprocessing.pool as mp_pool

    if func is getattr(mp_pool, "_helper_reraises_exception", None):
        return task  # the parent's iterable raised: pool internals, not a task of the user's
    return (job, i, _PostMortemCall(func), args, kwds)


def _wrap_call_item(item):
    item.fn = _PostMortemCall(item.fn)
    return item


_original_workers = {}


def _original_worker(module_name):
    import importlib

    module = importlib.import_module(module_name)  # runs the hook that records the original
    if module_name not in _original_workers:
        _patch_worker(module)  # install() did not run in this process (python -I, -S)
    return _original_workers[module_name]


def _pool_worker(inqueue, outqueue, *args, **kwargs):
    original = _original_worker("multiprocessing.pool")
    return original(_Inbox(inqueue, _wrap_pool_task), outqueue, *args, **kwargs)


def _futures_worker(call_queue, *args, **kwargs):
    original = _original_worker("concurrent.futures.process")
    return original(_Inbox(call_queue, _wrap_call_item), *args, **kwargs)


def _joblib_loky_worker(call_queue, *args, **kwargs):
    original = _original_worker("joblib.externals.loky.process_executor")
    return original(_Inbox(call_queue, _wrap_call_item), *args, **kwargs)


def _loky_worker(call_queue, *args, **kwargs):
    original = _original_worker("loky.process_executor")
    return original(_Inbox(call_queue, _wrap_call_item), *args, **kwargs)


_WORKERS = {
    "multiprocessing.pool": ("worker", _pool_worker),
    "concurrent.futures.process": ("_process_worker", _futures_worker),
    "joblib.externals.loky.process_executor": ("_process_worker", _joblib_loky_worker),
    "loky.process_executor": ("_process_worker", _loky_worker),
}


def _patch_worker(module):
    attr, ours = _WORKERS[module.__name__]
    original = getattr(module, attr, None)
    if original is None or original is ours:
        return
    _original_workers[module.__name__] = original
    setattr(module, attr, ours)


def _add_pytest_plugin(config_module):
    # In-process, among pytest's default plugins: every pytest under the root (xdist's
    # workers too) runs this start-up code, and nothing leaks into the environment of a
    # process that could not import actor_tui.
    name = "actor_tui.pytest_plugin"
    defaults = getattr(config_module, "default_plugins", None)
    if isinstance(defaults, tuple) and name not in defaults:
        config_module.default_plugins = defaults + (name,)


_installed = False


def _peek(frame):
    """What the console shows of this pause while it waits: pdb's `where` (the innermost
    frames) and the frame's locals, each cut short. Never raises."""
    try:
        import reprlib
        import traceback

        lines = ["where:"]
        for entry in traceback.format_stack(frame)[-8:]:
            lines.extend("  " + l for l in entry.rstrip("\n").split("\n"))
        short = reprlib.Repr()
        short.maxstring = short.maxother = 120
        local = sorted(frame.f_locals.items())
        if local:
            lines.append("locals:")
            for name, value in local[:30]:
                if name.startswith("__") and name.endswith("__"):
                    continue
                try:
                    text = short.repr(value)
                except Exception:
                    text = "<unprintable>"
                lines.append("  %s = %s" % (name, text))
        return "\n".join(lines)
    except Exception:
        return None


def install(connect=None):
    """Installs the crash hooks (post-mortem, then the original hook), the SIGINT shield, the
    multiprocessing and pool-worker crash hooks, and the hook that routes every pdb.Pdb
    through the lock (those three when their modules are imported). Call from the main thread at start-up; sitecustomize
    does it when ACTOR_TUI_SOCKET is set. `connect`: connect now rather than at the first
    pause; by default only the process the root started (the leader of its session) does,
    so that it answers dumps and cancels from the start."""
    global _installed, _original_excepthook, _original_threading_excepthook
    if not _installed:
        _installed = True
        _original_excepthook = sys.excepthook
        sys.excepthook = _excepthook
        _original_threading_excepthook = threading.excepthook
        threading.excepthook = _threading_excepthook
        from . import _hooks, _shield

        _hooks.when_imported("multiprocessing.process", _patch_multiprocessing)
        for name in _WORKERS:
            _hooks.when_imported(name, _patch_worker)
        _hooks.when_imported("pdb", _patch_pdb)
        _hooks.when_imported("_pytest.config", _add_pytest_plugin)
        from . import ray as ray_integration

        ray_integration.install()

        _shield.install()
        from . import _dump

        _dump.arm_stacks_signal()
    if connect is None:
        connect = bool(os.environ.get("ACTOR_TUI_ACTOR")) and _client.is_session_leader()
    if connect:
        _client.current()
