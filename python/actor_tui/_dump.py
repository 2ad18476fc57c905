"""The text of a `dump_reply`: every thread's stack, the asyncio tasks of every running loop
that can be found, and trio task trees through stackscope when it is installed.

Runs on the reader thread while the other threads keep running, so everything here reads
shared state defensively: a structure that changes under us yields a note, not a crash.
"""

import os
import sys
import threading
import traceback

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _debugger_files():
    # pdb's own machinery under a thread that is in a session: noise in a dump.
    out = set()
    for name in ("bdb", "pdb", "cmd"):
        mod = sys.modules.get(name)
        if mod is not None and getattr(mod, "__file__", None):
            out.add(os.path.abspath(mod.__file__))
    return out


def _is_ours(filename, hidden):
    path = os.path.abspath(filename)
    return os.path.dirname(path) == _PACKAGE_DIR or path in hidden


def _stack_lines(frame, indent):
    """A thread's stack, outermost first, without this package's frames nor pdb's (a thread
    in the debugger shows where the program stopped, not the plumbing)."""
    out = []
    hidden = _debugger_files()
    for fs in traceback.extract_stack(frame):
        if _is_ours(fs.filename, hidden):
            continue
        out.append("%s%s:%d in %s" % (indent, fs.filename, fs.lineno, fs.name))
        if fs.line:
            out.append("%s    %s" % (indent, fs.line.strip()))
    return out


def _running_loops(frames):
    """Running asyncio loops, found on their threads' stacks (a loop runs inside
    run_forever with the loop as `self`): asyncio keeps no registry of loops."""
    aio = sys.modules.get("asyncio")
    if aio is None:
        return []
    loops = []
    for ident, frame in frames.items():
        f = frame
        while f is not None:
            if f.f_code.co_name == "run_forever":
                loop = f.f_locals.get("self")
                if isinstance(loop, aio.AbstractEventLoop) and all(loop is not seen for seen, _ in loops):
                    loops.append((loop, ident))
                    break
            f = f.f_back
    return loops


def _task_lines(aio, loop, indent):
    out = []
    for _ in range(3):
        try:
            tasks = list(aio.all_tasks(loop))
            break
        except RuntimeError:  # the task set changed while we copied it: try again
            tasks = None
    if tasks is None:
        return [indent + "(tasks changing too fast to list)"]
    current = getattr(aio.tasks, "_current_tasks", {}).get(loop)
    for task in sorted(tasks, key=lambda t: t.get_name() if hasattr(t, "get_name") else ""):
        name = task.get_name() if hasattr(task, "get_name") else repr(task)
        if task is current:
            state = "running"
        elif task.done():
            state = "done"
        else:
            state = "pending"
        coro = task.get_coro() if hasattr(task, "get_coro") else None
        out.append("%s%s [%s] %s" % (indent, name, state, getattr(coro, "__qualname__", "")))
        try:
            stack = task.get_stack()
        except Exception:
            stack = []
        for f in stack:
            out.append("%s    %s:%d in %s" % (indent, f.f_code.co_filename, f.f_lineno, f.f_code.co_name))
    return out


def _trio_lines(frames):
    """trio task trees, if trio runs here and stackscope is installed (optional)."""
    if "trio" not in sys.modules:
        return []
    runners = []
    for ident, frame in frames.items():
        f = frame
        while f is not None:
            # trio.run keeps its Runner in a local named `runner` (in `run` or, in older
            # versions, `unrolled_run`); its init task is the root of the task tree.
            if "/trio/_core/" in f.f_code.co_filename.replace(os.sep, "/") and "runner" in f.f_code.co_varnames:
                root = getattr(f.f_locals.get("runner"), "init_task", None)
                if root is not None:
                    runners.append((ident, root))
                    break
            f = f.f_back
    if not runners:
        return []
    try:
        import stackscope
    except ImportError as e:
        return ["trio is running; install `stackscope` to see its task tree (%s)" % e]
    out = []
    for ident, root in runners:
        out.append("trio run in thread %s:" % _thread_name(ident))
        try:
            try:
                stack = stackscope.extract(root, recurse_child_tasks=True)
            except TypeError:  # stackscope before 0.2: no recursion option
                stack = stackscope.extract(root)
            text = str(stack)
        except Exception as e:
            text = "stackscope failed: %r" % (e,)
        out.extend("  " + line for line in text.splitlines())
    return out


def _thread_name(ident):
    for t in threading.enumerate():
        if t.ident == ident:
            return t.name
    return "thread %d" % ident


def build(client):
    frames = sys._current_frames()
    threads = {t.ident: t for t in threading.enumerate()}
    states = client.lock_states()
    me = threading.get_ident()
    out = ["actor %s (pid %d, python %s)" % (client.name, os.getpid(), sys.version.split()[0])]

    out.append("tasks:")
    aio = sys.modules.get("asyncio")
    loops = _running_loops(frames)
    for loop, ident in loops:
        out.append("  asyncio loop in thread %s:" % _thread_name(ident))
        out.extend(_task_lines(aio, loop, "    "))
    trio = _trio_lines(frames)
    out.extend("  " + line for line in trio)
    if not loops and not trio:
        out.append("  (no async tasks)")

    out.append("threads:")
    main = threading.main_thread().ident
    for ident, frame in sorted(frames.items(), key=lambda kv: (kv[0] != main, kv[0])):
        if ident == me:
            continue  # this reader thread, answering the dump
        t = threads.get(ident)
        name = t.name if t is not None else "(not a threading.Thread)"
        flags = []
        if ident == main:
            flags.append("main")
        if t is not None and t.daemon:
            flags.append("daemon")
        if ident in states:
            flags.append(states[ident])
        out.append("%s [%s]" % (name, ", ".join(flags) if flags else "running"))
        out.extend(_stack_lines(frame, "    "))
    return "\n".join(out) + "\n"


# ---- the signal-safe step of the root's dump ladder --------------------------------------

# The root sends this signal when the cooperative dump does not come (the GIL held in C
# code, a deadlock): faulthandler's C handler writes every thread's Python stack to the
# file the root reads, without the GIL and never into the actor's terminal.
STACKS_SIGNAL_OFFSET = 5  # SIGRTMIN + 5: real-time signals are rarely used by programs
_stacks_file = None


def arm_stacks_signal():
    """Opens this process's `stacks-PID` file in ACTOR_TUI_STACKS_DIR (a private directory
    of the root) and registers faulthandler for the signal. Again after a fork: the child
    gets its own file. Does nothing without the directory or on platforms without it."""
    global _stacks_file
    directory = os.environ.get("ACTOR_TUI_STACKS_DIR")
    rtmin = getattr(__import__("signal"), "SIGRTMIN", None)
    if not directory or rtmin is None:
        return
    try:
        import faulthandler

        path = os.path.join(directory, "stacks-%d" % os.getpid())
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(path, flags, 0o600)
        old = _stacks_file
        _stacks_file = os.fdopen(fd, "w")
        faulthandler.register(rtmin + STACKS_SIGNAL_OFFSET, file=_stacks_file, all_threads=True, chain=False)
        if old is not None:
            try:
                old.close()
            except OSError:
                pass
    except (OSError, RuntimeError, ValueError, AttributeError):
        pass  # the ladder goes on to py-spy and the native unwinder
