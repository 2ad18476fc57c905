# actor-tui's start-up hook for Python actors. The root puts the directory holding this file
# on PYTHONPATH; `site` imports it in every Python process of the tree.
#
# First, best effort, it runs the next `sitecustomize` on the path (a virtualenv's or the
# distribution's), which ours shadows. Then, under a root (ACTOR_TUI_SOCKET set), it
# installs actor_tui's crash hooks and SIGINT shield.
#
# Written to also parse on old interpreters (no f-strings), since PYTHONPATH reaches every
# Python of the tree, whatever its version.
import os
import sys


def _actor_tui_install():
    under_root = os.environ.get("ACTOR_TUI_SOCKET") or os.environ.get("ACTOR_TUI_TICKET")
    if not under_root or sys.version_info < (3, 8):
        return
    try:
        import actor_tui

        actor_tui.install()
    except Exception as e:  # a broken hook must never stop the program from starting
        sys.stderr.write("actor-tui: cannot install the Python hooks: %r\n" % (e,))


def _chain_next_sitecustomize():
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        import importlib.machinery
        import importlib.util
    except ImportError:
        return
    rest = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # as site.py does for its own sitecustomize: report, carry on
        sys.stderr.write("actor-tui: error in %s: %r\n" % (spec.origin, e))


# The other sitecustomize first, so hooks it sets are the ones ours chain to.
_chain_next_sitecustomize()
_actor_tui_install()
