"""Ray tasks and actors as sessions of the one console (README, "Ray").

Ray starts its workers itself and points their `PYTHONBREAKPOINT` at its own debugger, so the
variable actor-tui sets cannot reach them. Ray's documented way to run code in every worker
before user code is the job's `runtime_env["worker_process_setup_hook"]`; this module adds
actor-tui's hook there:

- in a driver run under actor-tui, `ray.init()` is patched on import to add it (nothing to
  change in the program; `ACTOR_TUI_RAY=0` turns that off);
- elsewhere, the one line is `ray.init(runtime_env=actor_tui.ray.runtime_env())` (merge your
  own runtime_env by passing it in).

The hook, in each worker: picks the way to the root (the Unix socket for a worker of the
driver's own local cluster, the `--listen` root's actor ticket for any other node, else the
socket if it exists on this machine), points `breakpoint()` and Ray's post-mortem at
actor-tui, makes `q` fail the task (pdb's BdbQuit, reported by Ray as the task's error) instead
of ending the worker, and names the process (the Ray actor it hosts, else `ray worker[PID]`),
its group (its Ray node) and each session (the Ray task, its id and job). A worker connects
only when it first pauses, so idle workers never appear in the tree. Ray ships this package
to every node as one of the job's `py_modules`, so other nodes need nothing installed.

Why not a bridge over Ray's legacy debugger (`RAY_DEBUG=legacy`)? It listens on a TCP port
per breakpoint with no authentication, and `ray debug` attaches to one at a time; the hook
keeps stock pdb on actor-tui's own authenticated links and its tree-wide queue.
"""

import os
import sys

from . import _client, _debugger, _hooks

SETUP_HOOK = "actor_tui.ray.setup_worker"

# Set in the job's env_vars by runtime_env(), read by setup_worker() in each worker.
_SOCKET = "ACTOR_TUI_RAY_SOCKET"
_TICKET = "ACTOR_TUI_RAY_TICKET"
_DRIVER = "ACTOR_TUI_RAY_DRIVER"  # "BOOT_ID:PID" of the driver, to know its own workers
_USER_HOOK = "ACTOR_TUI_RAY_USER_HOOK"  # the program's own hook, when it is a module path
_POST_MORTEM = "ACTOR_TUI_RAY_POST_MORTEM"
# "1": every worker connects at start-up (shown under its node, and dumped by a tree-wide
# dump even if it never pauses: for a job that hangs), instead of at its first pause.
_CONNECT = "ACTOR_TUI_RAY_CONNECT"

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))


def _boot_id():
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return ""


def _read_join_ticket():
    """The actor ticket of a root started with --listen, from the file it named, or None."""
    path = os.environ.get("ACTOR_TUI_JOIN_TICKET")
    if not path:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd) as f:
            text = f.read(4096).strip()
    except OSError as e:
        _client.warn("cannot read the root's actor ticket %s (%s): Ray workers on other nodes "
                     "will not reach the console" % (path, e))
        return None
    return text if text.startswith("actor-tui:") else None


def runtime_env(base=None):
    """`base` (a Ray runtime_env dict, or None) with actor-tui's worker hook added: pass the
    result to `ray.init(runtime_env=...)`. Unchanged without a root to reach. The program's
    own `worker_process_setup_hook` (a callable or a module path) still runs, after ours."""
    env = dict(base or {})
    if not _client.under_root():
        return env
    user_hook = env.get("worker_process_setup_hook")
    if user_hook == SETUP_HOOK or getattr(user_hook, "_actor_tui", False):
        return env  # already ours
    env_vars = dict(env.get("env_vars") or {})
    if callable(user_hook):
        env["worker_process_setup_hook"] = _chain(user_hook)
    else:
        if user_hook:
            env_vars[_USER_HOOK] = str(user_hook)
        env["worker_process_setup_hook"] = SETUP_HOOK
    socket_path = os.environ.get("ACTOR_TUI_SOCKET")
    if socket_path:
        env_vars[_SOCKET] = socket_path
    ticket = _read_join_ticket()
    if ticket is None and os.environ.get("ACTOR_TUI_TICKET", "").startswith("actor-tui:"):
        ticket = os.environ["ACTOR_TUI_TICKET"]  # a driver that itself joined over a ticket
    if ticket:
        env_vars[_TICKET] = ticket
    env_vars[_DRIVER] = "%s:%d" % (_boot_id(), os.getpid())
    for name in ("ACTOR_TUI_STEP_TIMEOUT", "ACTOR_TUI_PDB", _POST_MORTEM, _CONNECT):
        if name in os.environ and name not in env_vars:
            env_vars[name] = os.environ[name]
    env["env_vars"] = env_vars
    modules = list(env.get("py_modules") or [])
    if _PACKAGE_DIR not in modules:
        modules.append(_PACKAGE_DIR)
    env["py_modules"] = modules
    return env


def _chain(user_hook):
    def actor_tui_then_user_hook():
        setup_worker()
        user_hook()

    actor_tui_then_user_hook._actor_tui = True
    return actor_tui_then_user_hook


def _descends_from(pid):
    """Whether this process descends from `pid` (read from /proc, parent by parent)."""
    cur = os.getpid()
    for _ in range(64):
        if cur == pid:
            return True
        try:
            with open("/proc/%d/stat" % cur) as f:
                stat = f.read()
            cur = int(stat[stat.rindex(")") + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            return False
        if cur <= 1:
            return False
    return False


def _choose_link():
    """Sets ACTOR_TUI_SOCKET or ACTOR_TUI_TICKET for this worker; False when neither can
    reach the root."""
    socket_path = os.environ.get(_SOCKET)
    ticket = os.environ.get(_TICKET)
    boot, _, pid = os.environ.get(_DRIVER, "").rpartition(":")
    ours = bool(boot) and boot == _boot_id() and pid.isdigit() and _descends_from(int(pid))
    if socket_path and (ours or not ticket) and os.path.exists(socket_path):
        # The driver's own local cluster, or a cluster on this machine with no ticket.
        os.environ["ACTOR_TUI_SOCKET"] = socket_path
        os.environ.pop("ACTOR_TUI_TICKET", None)
        return True
    if ticket:
        os.environ["ACTOR_TUI_TICKET"] = ticket
        os.environ.pop("ACTOR_TUI_SOCKET", None)
        return True
    return False


def _short(hex_id):
    return (hex_id or "")[:8]


def _context():
    import ray

    return ray.get_runtime_context()


def task_name():
    """The Ray task running now, as sessions name it: `NAME task ID8 job JOB`."""
    ctx = _context()
    name = ctx.get_task_name() or "task"
    return "%s task %s job %s" % (name, _short(ctx.get_task_id()), ctx.get_job_id())


def _identity():
    ctx = _context()
    actor = ctx.get_actor_id()
    if actor:
        task = ctx.get_task_name() or ""
        cls = task.split(".")[0] if "." in task else "actor"
        named = ctx.get_actor_name() if hasattr(ctx, "get_actor_name") else None
        label = "%s %s" % (named, cls) if named else cls
        name = "%s actor %s[%d]" % (label, _short(actor), os.getpid())
    else:
        name = "ray worker[%d]" % os.getpid()
    import ray

    try:
        ip = ray.util.get_node_ip_address()
    except Exception:
        ip = "?"
    group = "ray node %s %s" % (_short(ctx.get_node_id()), ip)
    return name, group


def _is_ray_frame(frame):
    import ray

    name = frame.f_code.co_filename
    return name.startswith(os.path.dirname(ray.__file__) + os.sep) or name.startswith("python/ray/")


def _post_mortem():
    """Ray's post-mortem hook (called in the worker while the task's exception is being
    handled): an actor-tui post-mortem on the task's own frames; `q` ends the session only."""
    _, exc, tb = sys.exc_info()
    if tb is None or not _debugger._wants_post_mortem(type(exc)) or _debugger._debugged(exc):
        return
    # The session starts at the first frame that is not Ray's own (its task executor);
    # Ray's report of the error is left as Ray makes it.
    first = tb
    while first is not None and _is_ray_frame(first.tb_frame):
        first = first.tb_next
    tb = first or tb
    try:
        name = task_name()
    except Exception:
        name = None
    _debugger.post_mortem(tb, exc, task_name=name, quit_exits=False)


def _patch_ray_debugger():
    import ray.util.rpdb as rpdb

    rpdb.set_trace = _debugger.set_trace
    rpdb._post_mortem = _post_mortem
    if os.environ.get(_POST_MORTEM, "1") != "0":
        # On unless turned off, as for every other process of the tree.
        rpdb._is_ray_debugger_post_mortem_enabled = lambda: True


def setup_worker():
    """Ray's worker_process_setup_hook: runs in every worker of the job before user code."""
    try:
        if _choose_link():
            _debugger.install(connect=False)
            _client.identity = _identity
            _debugger.task_namer = task_name
            _debugger.quit_exits_default = False
            _debugger.quit_text_session = "`q` fails this Ray task (BdbQuit)"
            sys.breakpointhook = _debugger.set_trace
            _patch_ray_debugger()
            if os.environ.get(_CONNECT) == "1":
                _client.current()
        else:
            _client.warn("this Ray node cannot reach the actor-tui root (no socket here and no "
                         "ticket: start actor-tui with --listen); Ray's own debugger stays")
    except Exception as e:  # never keep a worker from starting
        _client.warn("cannot set up the Ray worker for actor-tui: %r" % (e,))
    user_hook = os.environ.get(_USER_HOOK)
    if user_hook:
        module, _, attr = user_hook.rpartition(".")
        import importlib

        getattr(importlib.import_module(module), attr)()


def _patch_ray(ray):
    """Wraps `ray.init` in a driver under actor-tui: the job's workers get the hook, and this
    driver's `breakpoint()` stays actor-tui's (Ray points it at its own)."""
    original = getattr(ray, "init", None)
    if original is None or getattr(original, "_actor_tui", False):
        return

    def init(*args, **kwargs):
        if os.environ.get("ACTOR_TUI_RAY", "1") != "0" and _client.under_root():
            kwargs["runtime_env"] = runtime_env(kwargs.get("runtime_env"))
        before = os.environ.get("PYTHONBREAKPOINT")
        try:
            return original(*args, **kwargs)
        finally:
            if before is not None and os.environ.get("PYTHONBREAKPOINT") != before:
                os.environ["PYTHONBREAKPOINT"] = before

    init._actor_tui = True
    init.__doc__ = original.__doc__
    init.__wrapped__ = original
    ray.init = init


def install():
    """Patches `ray.init` when (or if) Ray is imported. Called by actor_tui.install()."""
    _hooks.when_imported("ray", _patch_ray)
