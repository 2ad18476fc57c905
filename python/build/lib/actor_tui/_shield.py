"""SIGINT shielding while a thread waits for the debug lock or debugs (PROTOCOL.md 8.2).

A Ctrl-C meant for the debugger must not kill the process while it is queued or in a
session. `signal.signal` only works in the main thread, so the shield has two parts:

- `install()`, called once from the main thread at start-up, routes SIGINT through a
  handler that ignores it while any thread of the process is shielded (a count);
- `enter()` from the main thread additionally sets SIG_IGN for its own span when the
  program has replaced that handler since start-up.

Limit: if the program installs its own SIGINT handler after start-up, other threads'
sessions are no longer shielded (only the main thread's are): Python gives other threads
no way to change signal dispositions.
"""

import os
import signal
import threading

_lock = threading.Lock()
_count = 0
_previous = None
_SPAN_UNTOUCHED = object()
# A main-thread span's saved disposition, when another thread ended the span.
_deferred = None


# Set by `break_in`: run by the next SIGINT in the main thread, with the frame it interrupted.
_break_in = None


def _handler(signum, frame):
    global _break_in
    callback, _break_in = _break_in, None
    if callback is not None:
        callback(frame)
        return
    if _count > 0:
        return  # queued or debugging: this Ctrl-C is not for the program
    prev = _previous
    if callable(prev):
        return prev(signum, frame)
    if prev == signal.SIG_IGN:
        return
    # SIG_DFL (or unknown): die of the signal, as the process would have without us.
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def break_in(callback):
    """Makes the main thread run `callback(frame)` where it is now, from any thread: a SIGINT
    sent to the main thread interrupts what it is doing (a blocking call too) and runs our
    handler there. Returns None, or why it cannot (the program handles SIGINT itself, or
    its main thread has ended)."""
    global _break_in
    main = threading.main_thread()
    if not main.is_alive():
        return "its main thread has ended"
    try:
        if signal.getsignal(signal.SIGINT) is not _handler:
            return ("the program installed its own SIGINT handler, and a Python program can only "
                    "be stopped from outside through SIGINT in its main thread")
        _break_in = callback
        signal.pthread_kill(main.ident, signal.SIGINT)
    except (ValueError, OSError, AttributeError) as e:
        _break_in = None
        return "cannot signal the main thread (%s)" % (e,)
    return None


def _in_main_thread():
    return threading.current_thread() is threading.main_thread()


def install():
    """Routes SIGINT through the shield. Only replaces Python's own default handler, never
    one the program chose; returns whether it did."""
    global _previous
    if not _in_main_thread():
        return False
    try:
        current = signal.getsignal(signal.SIGINT)
        if current is not signal.default_int_handler:
            return False
        _previous = current
        signal.signal(signal.SIGINT, _handler)
    except (ValueError, OSError):  # embedded interpreters without signal support
        return False
    return True


def enter():
    """Starts one shielded span; pass the result to `leave`."""
    global _count
    with _lock:
        _count += 1
    if _in_main_thread():
        _restore_deferred()
        try:
            if signal.getsignal(signal.SIGINT) is not _handler:
                return signal.signal(signal.SIGINT, signal.SIG_IGN)
        except (ValueError, OSError, TypeError):
            pass
    return _SPAN_UNTOUCHED


def leave(token):
    """Ends a span. Usually called by the thread that started it; when another thread ends a
    main-thread span (a step that timed out), the disposition is restored by the main
    thread at its next shield operation."""
    global _count, _deferred
    with _lock:
        _count = max(0, _count - 1)
    if token is _SPAN_UNTOUCHED or token is None:
        return
    if not _in_main_thread():
        _deferred = token
        return
    try:
        signal.signal(signal.SIGINT, token)
    except (ValueError, OSError, TypeError):
        pass


def _restore_deferred():
    global _deferred
    token, _deferred = _deferred, None
    if token is not None:
        try:
            signal.signal(signal.SIGINT, token)
        except (ValueError, OSError, TypeError):
            pass


def reset_after_fork():
    """In a forked child: the parent's spans are not the child's."""
    global _lock, _count
    _lock = threading.Lock()
    _count = 0
    _restore_deferred()
