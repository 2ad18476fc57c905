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


def current_task():
    """(task id, task name) for the lock request: the running async task if there is one,
    else the calling thread. Ids are small numbers, unique within the process."""
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
        self.session = session
        pending, self._buf = self._buf, ""
        self._send(banner + pending)

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


# ---- the Pdb subclass ----------------------------------------------------------------------------


def _banner(client, session, reason, location, crash_text):
    what = "crashed" if reason == "crash" else "paused"
    text = "\n--- actor-tui: %s %s at %s (task %s) ---\n" % (client.name, what, location, session.task_name)
    if crash_text:
        text += crash_text if crash_text.endswith("\n") else crash_text + "\n"
        text += "post-mortem pdb: `c` lets the exception proceed, `q` ends the process (status 113)\n"
    else:
        text += "pdb: `c` continues, `n`/`s` step, `p EXPR` prints, `q` ends the process (status 113)\n"
    return text


class _ActorPdbMixin(object):
    """Put before a stock Pdb class (stdlib pdb or pdbp); overrides only the hooks named
    below, so every pdb command behaves as usual."""

    def __init__(self, completekey="tab", stdin=None, stdout=None, **kwargs):
        # stdin/stdout are accepted (pdb's `debug` command passes them when it creates a
        # nested debugger) but always replaced: this debugger talks to the session.
        kwargs["completekey"] = completekey
        io = _SessionIO(self)
        # nosigint: pdb must not install its own SIGINT handler; the shield owns SIGINT.
        kwargs.setdefault("nosigint", True)
        # Never stop inside this package (its atexit and timer code may run while the user
        # steps off the end of the program).
        kwargs.setdefault("skip", ["actor_tui", "actor_tui.*"])
        super(_ActorPdbMixin, self).__init__(stdin=io, stdout=io, **kwargs)
        self.use_rawinput = False
        self._io = io
        self._reason = "pause"
        self._where = None
        self._crash_text = None
        self._end = None
        self._depth = 0

    # Hooks: how the user left the command loop.
    def set_continue(self):
        super(_ActorPdbMixin, self).set_continue()
        if self._end is None:
            self._end = "continue"

    def set_quit(self):
        super(_ActorPdbMixin, self).set_quit()
        self._end = "quit"

    def do_interact(self, arg):
        # code.interact() reads the process's own stdin (its PTY), which nobody types into
        # under actor-tui: refuse rather than hang.
        self.error("`interact` is not available under actor-tui; use `!statement` or `p expr`")

    def _stop_debugging(self):
        # Like `c`, but nobody is told: the program runs on, breakpoints stay set.
        import bdb

        bdb.Bdb.set_continue(self)

    def _open(self, client, frame, tb):
        """Requests the lock for the calling task; attaches the session and sends the banner."""
        task, task_name = current_task()
        location = self._where or _location(frame, tb)
        reason, crash_text = self._reason, self._crash_text
        self._where = None
        session = client.request_lock(task, task_name, reason, location)
        if session is None:
            self._io.detach()
            return None
        self._io.attach(session, _banner(client, session, reason, location, crash_text))
        return session

    def interaction(self, frame, traceback):
        # connect=True: a breakpoint inherited across a fork fires in the child, which then
        # connects as a new actor.
        client = _client.current()
        session = client.claim_session() if client is not None else None
        if session is not None and session.over:
            # Revoked, or the root went away, while the program ran between two steps:
            # the user's session is gone, so stop stepping instead of asking again.
            client.end_session(session)
            if self._reason != "crash":
                self._io.detach()
                self._stop_debugging()
                return
            session = None
        if client is None:
            self._io.detach()
            self._stop_debugging()
            return
        if session is None:
            session = self._open(client, frame, traceback)
            if session is None:
                self._stop_debugging()
                return
        else:
            banner = ""
            if self._reason == "crash":
                # A crash inside an open session (stepped into an uncaught exception).
                location = self._where or _location(frame, traceback)
                banner = _banner(client, session, "crash", location, self._crash_text)
            if self._io.session is not session:
                # Another debugger of this thread (a post-mortem, a nested pause) joins the
                # session this thread already holds.
                self._io.attach(session, banner)
            elif banner:
                self._io.write(banner)
        self._reason, self._where, self._crash_text = "pause", None, None
        self._end = None
        self._depth += 1
        try:
            super(_ActorPdbMixin, self).interaction(frame, traceback)
        finally:
            self._depth -= 1
            self._io.finish()
        if session.over:
            client.end_session(session)
            self._io.detach()
        elif self._end == "quit":
            client.quit_process(session)
        elif self._end == "continue" or traceback is not None:
            client.end_session(session, "continue")
            self._io.detach()
        else:
            # The user stepped: the session stays open until pdb stops again, or until
            # the step has run too long to be worth holding the tree's lock for.
            client.start_stepping(session, _step_timeout())


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
        base = _base_pdb_class()
        _pdb_class_cache = type("ActorTuiPdb", (_ActorPdbMixin, base), {})
    return _pdb_class_cache


_tls = threading.local()


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
        p._stop_debugging()


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
    if current is not None and current._depth > 0:
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
        # order in which breakpoints were hit, not how long `import pdb` took.
        task, task_name = current_task()
        location = _location(frame)
        session = client.request_lock(task, task_name, "pause", location)
        if session is None:
            return
    p = _thread_pdb()
    if fresh:
        p._io.attach(session, _banner(client, session, "pause", location, None))
    if header is not None:
        p.message(header)
    if commands:
        p.cmdqueue.extend(commands)
    p.set_trace(frame)


def _exception_text(value, tb):
    import traceback

    if value is None:
        return ""
    return "".join(traceback.format_exception(type(value), value, tb))


def post_mortem(tb=None, exc=None):
    """A post-mortem pdb session (reason "crash") on a traceback; returns when the user
    continues. Without arguments, the exception being handled."""
    if tb is None:
        _, exc, tb = sys.exc_info()
        if tb is None:
            raise ValueError("post_mortem() needs a traceback, or an exception being handled")
    if not _client.under_root():
        if _can_use_terminal():
            import pdb

            pdb.post_mortem(tb)
        return
    client = _client.current()
    if client is None:
        warn("post-mortem at %s skipped: no connection to the actor-tui root" % _location(tb=tb))
        return
    # A fresh instance: the thread's own one may be tracing (stepping, or breakpoints set).
    p = pdb_class()()
    p._reason, p._where, p._crash_text = "crash", _location(tb=tb), _exception_text(exc, tb)
    p.reset()
    # Python 3.13+ accepts the exception itself, which adds the `exceptions` command.
    target = exc if sys.version_info >= (3, 13) and exc is not None and exc.__traceback__ is tb else tb
    p.interaction(None, target)


def _wants_post_mortem(exc_type):
    return exc_type is not None and not issubclass(exc_type, (SystemExit, KeyboardInterrupt))


_original_excepthook = None
_original_threading_excepthook = None


def _excepthook(exc_type, value, tb):
    if _wants_post_mortem(exc_type) and tb is not None:
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
    if _wants_post_mortem(args.exc_type) and args.exc_traceback is not None:
        try:
            post_mortem(args.exc_traceback, args.exc_value)
        except Exception as e:
            warn("post-mortem failed: %r" % (e,))
    _original_threading_excepthook(args)


def _patch_multiprocessing():
    # multiprocessing catches exceptions from Process.run itself (prints them and exits 1),
    # so sys.excepthook never sees a worker's crash: wrap run() at bootstrap instead.
    try:
        from multiprocessing import process as mp_process
    except Exception:
        return
    original = getattr(mp_process.BaseProcess, "_bootstrap", None)
    if original is None or getattr(original, "_actor_tui", False):
        return

    def _bootstrap(self, *args, **kwargs):
        run = self.run

        def run_with_post_mortem():
            try:
                return run()
            except BaseException as e:
                if _wants_post_mortem(type(e)) and e.__traceback__ is not None:
                    # Drop this wrapper's frame from the traceback, for the post-mortem
                    # and for the report multiprocessing prints after it.
                    e.__traceback__ = e.__traceback__.tb_next or e.__traceback__
                    post_mortem(e.__traceback__, e)
                    _client.announce_exit(1, "crash")
                raise

        self.run = run_with_post_mortem
        return original(self, *args, **kwargs)

    _bootstrap._actor_tui = True
    mp_process.BaseProcess._bootstrap = _bootstrap


_installed = False


def install(connect=None):
    """Installs the crash hooks (post-mortem, then the original hook), the SIGINT shield and
    the multiprocessing crash hook. Call from the main thread at start-up; sitecustomize
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
        _patch_multiprocessing()
        from . import _shield

        _shield.install()
    if connect is None:
        connect = bool(os.environ.get("ACTOR_TUI_ACTOR")) and _client.is_session_leader()
    if connect:
        _client.current()
