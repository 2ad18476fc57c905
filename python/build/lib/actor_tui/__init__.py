"""actor-tui client for Python: stock pdb through the actor-tui console.

Under actor-tui the root puts this package's directory on PYTHONPATH and sets
PYTHONBREAKPOINT=actor_tui.set_trace, so `breakpoint()` anywhere in the process tree asks
the root for the tree-wide debug lock and runs an unmodified pdb whose input and output
travel over the root's socket (docs/PROTOCOL.md). The bundled `sitecustomize` calls
`install()` at start-up, which adds post-mortem sessions for uncaught exceptions.

Without a root (ACTOR_TUI_SOCKET unset) `set_trace()` is plain pdb on the terminal, or,
with no terminal, a warning on stderr: it never hangs.

Public API:
    set_trace()          pause here (PYTHONBREAKPOINT target)
    post_mortem(tb, exc) a post-mortem session on a traceback
    install()            crash hooks + SIGINT shield (+ connect, for the root's own child)
    connect()            connect now instead of at the first pause; the actor id or None
    on_cancel(handler)   run `handler()` instead of exiting 143 on a polite cancel
    announce_exit(code, reason)  send `exiting` before an exit of your own
"""

from ._client import announce_exit, on_cancel
from ._debugger import install, post_mortem, set_trace

__all__ = ["announce_exit", "connect", "install", "on_cancel", "post_mortem", "set_trace"]
__version__ = "0.1.0"


def connect():
    """Connects to the root now (for dumps and cancels before the first pause). Returns this
    process's actor id, or None without a reachable root."""
    from . import _client

    client = _client.current()
    return client.actor if client is not None else None
