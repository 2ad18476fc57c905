"""actor-tui's pytest plugin: post-mortems in pytest-xdist workers.

Loaded by itself under actor-tui: the start-up hook adds this module to pytest's default
plugins when `_pytest.config` is imported, so every pytest of the tree (xdist's workers
too, which run the same start-up code) loads it. pytest-xdist refuses `--pdb` ("incompatible with
distributing tests"), because its workers have no terminal; under actor-tui they have the
console. So in an xdist worker a failing test opens a post-mortem session in that worker,
on the test's own frames, titled `gw0 test_x.py::test_y`. `c` lets pytest report the
failure and go on; `q` ends the session and turns post-mortems off in that worker for the
rest of the run. ACTOR_TUI_PYTEST_POST_MORTEM=0 turns them off altogether.

Without xdist nothing here acts: `pytest --pdb` and `--trace` use pdb.Pdb, which actor_tui
routes through the lock already.

Plain hook functions (no decorators, no f-strings): importing this never depends on the
pytest version, nor on the interpreter being one actor_tui supports.
"""

import os

_quit = False


def _worker():
    if not (os.environ.get("ACTOR_TUI_SOCKET") or os.environ.get("ACTOR_TUI_TICKET")):
        return None
    if os.environ.get("ACTOR_TUI_PYTEST_POST_MORTEM", "1").strip() == "0":
        return None
    return os.environ.get("PYTEST_XDIST_WORKER") or None


def pytest_exception_interact(node, call, report):
    global _quit
    worker = _worker()
    excinfo = getattr(call, "excinfo", None)
    if _quit or worker is None or excinfo is None:
        return
    from . import _debugger

    title = "%s %s" % (worker, getattr(node, "nodeid", "?"))
    how = _debugger.post_mortem(excinfo.tb, excinfo.value, task_name=title,
                                crash_text=getattr(report, "longreprtext", None), quit_exits=False)
    if how == "quit":
        _quit = True
