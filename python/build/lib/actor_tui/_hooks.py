"""Post-import hooks: run a patch on a module right after it is first imported, or at once if
it already is. This is how actor_tui reaches pdb, multiprocessing.pool and the process pool
executors without importing them at start-up (every Python process of the tree runs the
start-up code, and most never use them).

A finder at the front of sys.meta_path answers nothing itself: for a watched name it asks the
other finders for the spec and wraps that spec's loader so the patch runs after the module's
own code. The module keeps its real loader object (pdb's `list`, `inspect.getsource` and
`importlib.resources` read through it), only `exec_module` is wrapped on that instance.
"""

import os
import sys
import threading

from ._client import warn

_lock = threading.RLock()
_pending = {}  # module name -> [patch, ...] still to run
_finder = None


def _after_fork_in_child():
    # Another thread may have held the lock at the fork: the child's imports must not wait
    # for a thread it does not have.
    global _lock
    _lock = threading.RLock()
    if _finder is not None:
        _finder._busy = set()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _run(name, module, patches):
    for patch in patches:
        try:
            patch(module)
        except Exception as e:  # a patch that fails must never break the program's import
            warn("cannot hook %s: %r" % (name, e))


class _Finder(object):
    def __init__(self):
        self._busy = set()

    def find_spec(self, name, path=None, target=None):
        with _lock:
            if name not in _pending or name in self._busy:
                return None
            self._busy.add(name)
        try:
            import importlib.util

            spec = importlib.util.find_spec(name)
        except Exception:
            spec = None
        finally:
            with _lock:
                self._busy.discard(name)
        loader = getattr(spec, "loader", None) if spec is not None else None
        original = getattr(loader, "exec_module", None)
        if original is None:
            return None  # not found, or an old-style loader: leave it to the others

        def exec_module(module):
            original(module)
            if getattr(module, "__name__", None) != name:
                return  # a loader shared by several modules (zipimport): not ours to patch
            loader.exec_module = original
            with _lock:
                patches = _pending.pop(name, [])
            _run(name, module, patches)

        try:
            loader.exec_module = exec_module
        except (AttributeError, TypeError):
            return None
        return spec


def when_imported(name, patch):
    """Runs `patch(module)` once `name` is imported (now, if it already is)."""
    global _finder
    with _lock:
        module = sys.modules.get(name)
        if module is None:
            _pending.setdefault(name, []).append(patch)
            if _finder is None:
                _finder = _Finder()
                sys.meta_path.insert(0, _finder)
            return
    _run(name, module, [patch])
