"""The process's one connection to the root: handshake, the reader thread that routes root
frames, lock requests and REPL sessions, cancellation and exit notices, and what happens to
all of that across os.fork().

Threads never read the socket themselves: only the reader thread does, and it hands lock
and REPL frames to the waiting thread through a per-task queue. So a thread blocked in the
debugger never stops dump requests, cancels or other threads' grants from being handled.
"""

import atexit
import collections
import os
import queue
import stat
import sys
import threading

# _dump is imported here, not lazily on the reader thread, so that answering a dump never
# waits for an import lock a paused thread may hold.
from . import _dump, _shield, _wire

# How long to wait for each handshake reply (PROTOCOL.md 4.1): a root that accepts but
# never answers must not hang the program.
HANDSHAKE_TIMEOUT = 10.0
# Largest repl_output piece, in characters: at most 4 bytes each, far below 1 MiB.
OUTPUT_PIECE = 64 * 1024

# How long a completion may take before the reply goes out empty (PROTOCOL.md 6.3).
COMPLETE_TIMEOUT = 2.0

CANCEL_EXIT = 143
QUIT_EXIT = 113

# A lease for each open session goes to the root this often (PROTOCOL.md 6.3); the root
# marks a holder suspect after three missed ones.
LEASE_EVERY = 1.0


def warn(text):
    """One line on the process's own stderr (its output pane under actor-tui)."""
    try:
        sys.stderr.write("actor-tui: %s\n" % text)
        sys.stderr.flush()
    except Exception:  # stderr closed or broken: nothing better to do
        pass


def _flush_std_streams():
    """Flushes what the program printed before an immediate exit. Not into a pipe or a
    socket, where a reader that does not read could block the exit for ever (a terminal or
    a file cannot)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            mode = os.fstat(stream.fileno()).st_mode
            if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
                stream.flush()
        except Exception:  # no stream, no descriptor, or a broken one: nothing to save
            pass


class Disconnected(Exception):
    """The connection to the root is gone."""


class Session:
    """One grant of the debug lock to one task of this process."""

    def __init__(self, task, task_name, epoch, channel, shield_token):
        self.task = task
        self.task_name = task_name
        self.epoch = epoch
        self.channel = channel
        self.thread = threading.get_ident()
        # Lines of a multi-line repl_input chunk not read yet.
        self.lines = collections.deque()
        # Set when the root revoked the grant or the connection closed: the session is
        # over and no lock_release may be sent for it.
        self.over = False
        self.shield_token = shield_token
        self.ended = False
        # The user stepped and the program is running until pdb stops again. If it does not
        # stop soon, the lock is given back (see Client.start_stepping); `step_gen` tells a
        # stale timer from the current one.
        self.stepping = False
        self.step_gen = 0
        # (task name, location) last reported by repl_where, or given at the request.
        self.where = None
        # Tab completion (Client.complete): while the session thread is blocked waiting for
        # a line at the debugger's own prompt, `reading` is set and `completer` is that
        # debugger's completion function (typed line -> full lines). `input_lock` is held
        # by a completion in progress, and by the session thread while it sets or clears
        # those two, so pdb does not move on (to another frame, or out of the session)
        # while a completion looks at it.
        self.input_lock = threading.Lock()
        self.reading = False
        self.completer = None


class _Channel:
    """Root frames for one task, handed from the reader thread to the thread that waits."""

    def __init__(self):
        self.queue = queue.Queue()
        self.thread = threading.get_ident()
        self.session = None
        # The waiting thread gave up (an exception interrupted it): a late grant is given
        # straight back instead of leaving the whole tree stuck on it.
        self.abandoned = False


def _split_lines(data):
    """A repl_input chunk as lines (PROTOCOL.md 6.3): a trailing piece without a newline is a
    line, and an empty chunk is one empty line."""
    parts = data.split("\n")
    if parts[-1] == "":
        parts.pop()
    if not parts:
        parts = [""]
    return [p + "\n" for p in parts]


class Client:
    def __init__(self, sock, actor, parent, sent_name):
        self._sock = sock
        self.actor = actor
        self.parent = parent
        self.pid = os.getpid()
        reserved = os.environ.get("ACTOR_TUI_ACTOR")
        # A reserved actor keeps the name its spawner chose; a new one the name we sent.
        self.name = (os.environ.get("ACTOR_TUI_NAME") or sent_name) if actor == reserved else sent_name
        self.closed = False
        # One frame at a time on the socket, whichever thread sends it (PROTOCOL.md 2).
        self._write_lock = threading.Lock()
        # Guards _channels and _sessions, shared by the reader and the debugging threads.
        self._lock = threading.Lock()
        self._channels = {}  # task id -> _Channel, from lock_request to the session's end
        self._sessions = {}  # thread ident -> Session that thread holds
        self._reader = threading.Thread(target=self._read_loop, name="actor-tui-reader", daemon=True)
        # Started with the first session: leases every open session while any is open.
        self._leaser = None
        self._lease_beat = threading.Event()  # slept on between leases
        # The program ended with a session still open (stepped off the end of the script):
        # release it properly instead of leaving it to the root's disconnect handling.
        atexit.register(self._end_all_sessions)

    # ---- connecting --------------------------------------------------------------------

    @classmethod
    def connect(cls, path, name):
        return cls.connect_over(_wire.connect_unix(path, HANDSHAKE_TIMEOUT), name,
                                os.environ.get("ACTOR_TUI_ACTOR") or None)

    @classmethod
    def connect_remote(cls, ticket, name):
        """Over a remote link (a root on another host): no reservation to claim."""
        from . import _remote

        sock = _remote.connect(ticket)
        sock.settimeout(HANDSHAKE_TIMEOUT)
        return cls.connect_over(sock, name, None)

    @classmethod
    def connect_over(cls, sock, name, claimed):
        try:
            sock.sendall(_wire.frame({"type": "hello", "protocol": _wire.PROTOCOL_VERSION, "agent": _wire.AGENT}))
            hello = cls._expect(sock, "hello")
            if hello.get("protocol") != _wire.PROTOCOL_VERSION:
                raise ConnectionError("the root speaks protocol %r, this client %d"
                                      % (hello.get("protocol"), _wire.PROTOCOL_VERSION))
            register = {
                "type": "register",
                "name": name,
                "pid": os.getpid(),
                # Always what we inherited, unchanged: the root decides (PROTOCOL.md 1.2).
                "actor": claimed,
            }
            group = register_group()
            if group:
                register["group"] = group
            sock.sendall(_wire.frame(register))
            registered = cls._expect(sock, "registered")
            sock.settimeout(None)
        except BaseException:
            sock.close()
            raise
        client = cls(sock, str(registered.get("actor")), registered.get("parent"), name)
        # Dispatch starts at once: `cancel` may follow `registered` immediately.
        client._reader.start()
        return client

    @staticmethod
    def _expect(sock, kind):
        while True:
            msg = _wire.read_frame(sock)
            if msg is None:
                raise ConnectionError("the root closed the connection during the handshake")
            if msg["type"] == "error":
                raise ConnectionError("the root refused us: %s" % msg.get("message"))
            if msg["type"] == kind:
                return msg
            # Anything else before registration is from a newer root: skip it.

    # ---- sending -----------------------------------------------------------------------

    def send(self, msg):
        data = _wire.frame(msg)
        with self._write_lock:
            if self.closed:
                raise Disconnected()
            try:
                self._sock.sendall(data)
            except OSError:
                self.closed = True
                raise Disconnected()

    def send_quietly(self, msg):
        """Best effort: for frames whose loss changes nothing (the root is gone). False if
        the root is gone."""
        try:
            self.send(msg)
            return True
        except Disconnected:
            return False

    # ---- the reader thread ---------------------------------------------------------------

    def _read_loop(self):
        reader = _wire.FrameReader(self._sock)
        try:
            while True:
                msg = reader.read()
                if msg is None:
                    break
                try:
                    self._dispatch(msg)
                except Disconnected:
                    break
                except Exception as e:  # a bug here must not kill the reader
                    warn("internal error handling %s: %r" % (msg.get("type"), e))
        except _wire.FrameError as e:
            warn("bad frame from the root (%s); continuing without it" % e)
        except OSError:
            pass  # reset or closed: the root is gone
        finally:
            self._on_closed()

    def _dispatch(self, msg):
        kind = msg["type"]
        if kind in ("lock_granted", "lock_refused", "lock_revoked", "repl_input"):
            self._route(kind, msg)
        elif kind == "dump_request":
            try:
                text = _dump.build(self)
            except Exception as e:
                text = "actor %s (pid %d): dump failed: %r\n" % (self.name, self.pid, e)
            self.send({"type": "dump_reply", "req": msg.get("req"), "text": text})
        elif kind == "complete_request":
            matches = self.complete(msg.get("task"), msg.get("epoch"), msg.get("line"))
            self.send({"type": "complete_reply", "req": msg.get("req"), "matches": matches})
        elif kind == "cancel":
            self._on_cancel(bool(msg.get("force")))
        elif kind == "interrupt":
            from . import _debugger

            why_not = _shield.break_in(_debugger.break_in)
            if why_not is not None:
                self.send_quietly({"type": "notice", "message": "%s (pid %d) cannot break in: %s"
                                   % (self.name, self.pid, why_not)})
        elif kind == "error":
            warn("the root reported a protocol error: %s" % msg.get("message"))
        # spawned, spawn_failed, child_exited (this client has no spawn API yet), and types
        # from a newer root: nothing to do (PROTOCOL.md 9).

    def _route(self, kind, msg):
        task = msg.get("task")
        give_back = None
        with self._lock:
            ch = self._channels.get(task)
            if ch is None or ch.abandoned:
                if kind == "lock_granted":
                    give_back = msg.get("epoch")
                    if ch is not None:
                        del self._channels[task]
            else:
                if kind == "lock_revoked" and ch.session is not None and ch.session.epoch == msg.get("epoch"):
                    ch.session.over = True  # output stops at once, before the thread wakes
                ch.queue.put(msg)
        if give_back is not None:
            # Nobody waits for this grant any more: hand it on rather than hold the tree.
            self.send({"type": "lock_release", "task": task, "epoch": give_back, "how": "continue"})

    def _on_closed(self):
        with self._write_lock:
            self.closed = True
        with self._lock:
            channels = list(self._channels.values())
            for s in self._sessions.values():
                s.over = True
        for ch in channels:
            ch.queue.put({"type": "closed"})
        try:
            self._sock.close()
        except OSError:
            pass

    # ---- cancellation and exits ------------------------------------------------------------

    def _on_cancel(self, force):
        handler = _cancel_handler
        if handler is not None and not force:
            # The program's own handler runs on its own thread, so this reader keeps
            # serving frames (the program may want to pause while shutting down).
            threading.Thread(target=handler, name="actor-tui-cancel", daemon=True).start()
            return
        self.exit_now(CANCEL_EXIT, "cancelled")

    def exit_now(self, code, reason=None):
        """Announces the exit (unless `reason` is None: already announced) and ends the
        process at once, running no more program code."""
        if reason is not None:
            self.send_quietly({"type": "exiting", "code": code, "reason": reason})
        _flush_std_streams()
        os._exit(code)

    # ---- the debug lock ------------------------------------------------------------------

    def claim_session(self):
        """The session the calling thread holds, if any, taken back from a step in progress
        so that its timer can no longer end it."""
        with self._lock:
            session = self._sessions.get(threading.get_ident())
            if session is not None:
                session.stepping = False
                session.step_gen += 1
            return session

    def start_stepping(self, session, timeout):
        """The user stepped (`n`, `s`, `r`, `until`): the session stays open while the program
        runs to the next stop. A step that never stops (stepping off the end of a coroutine,
        or of a thread, which then ends), or a long call, must not hold the tree's lock:
        after `timeout` seconds the lock is given back, and the next stop asks again."""
        with self._lock:
            session.stepping = True
            session.step_gen += 1
            gen = session.step_gen
        timer = threading.Timer(timeout, self._step_expired, (session, gen))
        timer.daemon = True
        timer.start()

    def _step_expired(self, session, gen):
        with self._lock:
            if session.ended or not session.stepping or session.step_gen != gen:
                return
            self._mark_ended(session)
        self._finish_end(session, "continue", timed_out=True)

    def moved(self, session, task_name, location):
        """The session's debugger stopped again, maybe in another task (asyncio: `n` at an
        await resumes in whichever task runs next): the root's lock pane follows it."""
        if session.over or (task_name, location) == session.where:
            return
        session.where = (task_name, location)
        self.send_quietly({"type": "repl_where", "task": session.task, "epoch": session.epoch,
                           "task_name": task_name, "location": location})

    def request_lock(self, task, task_name, reason, location, meanwhile=None, peek=None):
        """Asks for the lock and waits as long as the queue takes. Returns the Session, or
        None (after a warning on stderr) if the root refused or went away. `meanwhile()`
        runs right after the request is sent: work the session needs (building the
        debugger, `import pdb`) is then done while others debug, not after the grant."""
        ch = _Channel()
        with self._lock:
            if self.closed:
                return None
            self._channels[task] = ch
        token = _shield.enter()
        session = None
        try:
            msg = {"type": "lock_request", "task": task, "task_name": task_name,
                   "reason": reason, "location": location}
            if peek:
                msg["peek"] = peek[:8192]
            self.send(msg)
            # The lease thread starts while the request waits, and sends on its own clock:
            # neither its start nor a first lease competes with the first prompt.
            self._start_leasing()
            if meanwhile is not None:
                try:
                    meanwhile()
                except Exception as e:  # preparing is an optimisation: the session goes on
                    warn("could not prepare the debugger while waiting: %r" % (e,))
            while session is None:
                msg = ch.queue.get()
                kind = msg["type"]
                if kind == "lock_granted":
                    session = Session(task, task_name, msg.get("epoch"), ch, token)
                    session.where = (task_name, location)
                    with self._lock:
                        ch.session = session
                        self._sessions[session.thread] = session
                elif kind == "lock_refused":
                    # Skipped by the user: the pause just goes on, no warning.
                    if not msg.get("skipped"):
                        warn("debug lock refused at %s: %s" % (location, msg.get("error")))
                    return None
                elif kind == "closed":
                    warn("lost the actor-tui root while waiting for the debug lock at %s; continuing"
                         % location)
                    return None
                # Anything else (a stale revoke or input) belongs to no session: skip it.
            return session
        except Disconnected:
            warn("lost the actor-tui root; the pause at %s is skipped" % location)
            return None
        except BaseException:
            self._abandon(task, ch)
            raise
        finally:
            if session is None:
                with self._lock:
                    if self._channels.get(task) is ch:
                        del self._channels[task]
                _shield.leave(token)

    def _start_leasing(self):
        if self._leaser is None:
            self._leaser = threading.Thread(target=self._lease_loop, name="actor-tui-lease", daemon=True)
            self._leaser.start()

    def _lease_loop(self):
        # Runs only on the GIL like any thread: if program code holds it for good (a C call
        # that never returns), the leases stop, which is what the root should hear.
        while not self.closed:
            # A grant's first lease goes out on the next beat, not at the grant: waking this
            # thread then would compete with the first prompt for the GIL.
            self._lease_beat.wait(LEASE_EVERY)
            with self._lock:
                held = [(s.task, s.epoch) for s in self._sessions.values() if not (s.over or s.ended)]
            for task, epoch in held:
                if not self.send_quietly({"type": "lease", "task": task, "epoch": epoch}):
                    return

    def _abandon(self, task, ch):
        with self._lock:
            ch.abandoned = True
            if self._channels.get(task) is ch:
                del self._channels[task]
        # A grant already queued for us must not stay held by nobody.
        while True:
            try:
                msg = ch.queue.get_nowait()
            except queue.Empty:
                break
            if msg["type"] == "lock_granted":
                self.send_quietly({"type": "lock_release", "task": task, "epoch": msg.get("epoch"),
                                   "how": "continue"})

    def next_line(self, session, prompt, completer=None):
        """One line of user input for the session, or None once the session is over
        (revoked, or the root is gone). `completer`: the completion function (typed line ->
        full lines) that answers completion requests while this call waits (None: no
        completion at this prompt)."""
        self._take_queued_input(session)
        if session.lines:
            return session.lines.popleft()
        if session.over:
            return None
        # Ready for completion requests before the root hears that we wait: it may pass one
        # on the moment it has seen repl_waiting.
        self._set_reading(session, completer)
        try:
            self.send({"type": "repl_waiting", "task": session.task, "epoch": session.epoch,
                       "prompt": prompt})
        except Disconnected:
            self._set_reading(session, None)
            session.over = True
            return None
        try:
            while not session.lines:
                if not self._handle_session_frame(session, session.channel.queue.get()):
                    return None
            return session.lines.popleft()
        finally:
            # Waits for a completion in progress: pdb must not move on under it.
            self._set_reading(session, None)

    # ---- tab completion --------------------------------------------------------------------

    @staticmethod
    def _set_reading(session, completer):
        # Waits for a completion in progress, but not for ever: one stuck in program code
        # has had its empty reply sent already, and must not hang the session as well.
        locked = session.input_lock.acquire(timeout=2 * COMPLETE_TIMEOUT)
        try:
            session.completer = completer
            session.reading = completer is not None
        finally:
            if locked:
                session.input_lock.release()

    def complete(self, task, epoch, line):
        """The matches for `complete_request`, computed on behalf of the reader thread: pdb's
        completion of `line` in the open session of `task`, as full input lines. Empty when
        the task has no session with that epoch, when the session is not waiting at its
        debugger's prompt, on any error, or when completing takes longer than
        COMPLETE_TIMEOUT (it runs on a helper thread: completing `p obj.attr.` reads
        attributes, which runs program code that could block)."""
        if not isinstance(line, str):
            return []
        with self._lock:
            ch = self._channels.get(task)
            session = ch.session if ch is not None else None
            if session is None or session.ended or session.over or session.epoch != epoch:
                return []
        result = []

        def work():
            _completing.active = True
            try:
                if not session.input_lock.acquire(timeout=COMPLETE_TIMEOUT):
                    return
                try:
                    # Checked under input_lock: the session thread is still blocked waiting
                    # for input, and cannot return to pdb until the lock is released.
                    completer = session.completer
                    if session.reading and completer is not None and not (session.ended or session.over):
                        result.extend(completer(line))
                finally:
                    session.input_lock.release()
            except BaseException:  # whatever program code did: no matches
                del result[:]

        worker = threading.Thread(target=work, name="actor-tui-complete", daemon=True)
        worker.start()
        worker.join(COMPLETE_TIMEOUT)
        if worker.is_alive():
            return []
        return list(result)

    def _take_queued_input(self, session):
        # Input the user typed ahead is answered without another repl_waiting.
        while not session.lines and not session.over:
            try:
                msg = session.channel.queue.get_nowait()
            except queue.Empty:
                return
            self._handle_session_frame(session, msg)

    def _handle_session_frame(self, session, msg):
        kind = msg["type"]
        if kind == "repl_input" and msg.get("epoch") == session.epoch:
            data = msg.get("data")
            session.lines.extend(_split_lines(data if isinstance(data, str) else ""))
        elif kind == "lock_revoked" and msg.get("epoch") == session.epoch:
            session.over = True
            return False
        elif kind == "closed":
            session.over = True
            return False
        return True

    def output(self, session, text):
        if session.over or not text:
            return
        try:
            for i in range(0, len(text), OUTPUT_PIECE):
                self.send({"type": "repl_output", "task": session.task, "epoch": session.epoch,
                           "data": text[i:i + OUTPUT_PIECE]})
        except Disconnected:
            session.over = True

    def end_session(self, session, how=None):
        """Ends the session: sends lock_release with `how` unless the session is already over
        (revoked or disconnected), then lifts the SIGINT shield."""
        with self._lock:
            if session.ended:
                return
            self._mark_ended(session)
        self._finish_end(session, how)

    def _mark_ended(self, session):
        # Under self._lock: from here on no thread can claim the session.
        session.ended = True
        if self._channels.get(session.task) is session.channel:
            del self._channels[session.task]
        if self._sessions.get(session.thread) is session:
            del self._sessions[session.thread]

    def _finish_end(self, session, how, timed_out=False):
        if how is not None and not session.over:
            msg = {"type": "lock_release", "task": session.task, "epoch": session.epoch, "how": how}
            if timed_out:
                # Still how "continue" for roots that predate `step_timeout` (PROTOCOL.md 6.4).
                msg["step_timeout"] = True
            self.send_quietly(msg)
        session.over = True
        _shield.leave(session.shield_token)

    def quit_process(self, session):
        """`q` in the debugger: exiting, then lock_release, then exit 113 (PROTOCOL.md 8.1)."""
        self.send_quietly({"type": "exiting", "code": QUIT_EXIT, "reason": "quit"})
        if not session.over:
            self.send_quietly({"type": "lock_release", "task": session.task, "epoch": session.epoch,
                               "how": "quit"})
        self.exit_now(QUIT_EXIT)

    def _end_all_sessions(self):
        with self._lock:
            sessions = list(self._sessions.values())
        for session in sessions:
            self.end_session(session, "continue")

    def busy_with_lock(self):
        """Whether the calling thread waits for the lock or holds a session."""
        me = threading.get_ident()
        with self._lock:
            return me in self._sessions or any(ch.thread == me for ch in self._channels.values())

    def lock_states(self):
        """thread ident -> what it is doing with the lock, for dumps."""
        out = {}
        with self._lock:
            for task, ch in self._channels.items():
                if ch.session is None:
                    out[ch.thread] = "waiting for the debug lock (task %d)" % task
            for ident, s in self._sessions.items():
                out[ident] = "in a debugger session (task %d, epoch %d)" % (s.task, s.epoch)
        return out

    def forget_after_fork(self):
        """In a forked child: this connection is the parent's. Close our copy of the socket
        (never shutdown(), which would cut the parent off) and never use it again."""
        self.closed = True
        try:
            self._sock.close()
        except OSError:
            pass


# Set on the thread that runs a completion: program code it runs (an attribute's getter)
# must not pause there (see _debugger.set_trace).
_completing = threading.local()


def in_completion():
    return getattr(_completing, "active", False)


# ---- the process's client ---------------------------------------------------------------------

_cancel_handler = None


def on_cancel(handler):
    """Installs `handler()` to run (on its own thread) when the root asks this actor politely
    to stop, instead of the default exit with status 143. It should make the program finish
    within the grace period and may call `announce_exit(143, "cancelled")` first. A forced
    cancel always exits at once. Pass None to restore the default."""
    global _cancel_handler
    _cancel_handler = handler


class _State:
    def __init__(self, forked):
        self.lock = threading.Lock()
        self.client = None
        # Connecting failed or the connection was lost: warned once, never retried.
        self.given_up = False
        self.forked = forked
        self.pid = os.getpid()


_state = _State(forked=False)


def _after_fork_in_child():
    global _state
    old = _state
    _state = _State(forked=True)
    if old.client is not None:
        old.client.forget_after_fork()
    _shield.reset_after_fork()
    if _dump._stacks_file is not None:
        _dump.arm_stacks_signal()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def under_root():
    """A root's socket (a local root) or a ticket (a root on another host) is set."""
    return bool(os.environ.get("ACTOR_TUI_SOCKET") or os.environ.get("ACTOR_TUI_TICKET"))


def current(connect=True):
    """This process's client, connecting on first use. None without a root, or when the
    root cannot be reached (warned once)."""
    st = _state
    if st.pid != os.getpid():
        # A fork that bypassed os.register_at_fork (a C extension calling fork()).
        _after_fork_in_child()
        st = _state
    path = os.environ.get("ACTOR_TUI_SOCKET")
    ticket = None if path else os.environ.get("ACTOR_TUI_TICKET")
    if not path and not ticket:
        return None
    c = st.client
    if c is None and connect and not st.given_up:
        with st.lock:
            if st.client is None and not st.given_up:
                try:
                    if path:
                        st.client = Client.connect(path, register_name())
                    else:
                        from . import _remote

                        t = _remote.ticket_from_env()
                        st.client = Client.connect_remote(t, register_name())
                except Exception as e:
                    st.given_up = True
                    where = path or "the ticket's root"
                    warn("cannot reach the actor-tui root at %s (%s); breakpoints will be skipped"
                         % (where, e))
            c = st.client
    if c is None:
        return None
    if c.closed:
        if not st.given_up:
            st.given_up = True
            warn("the connection to the actor-tui root is gone; breakpoints will be skipped")
        return None
    return c


def announce_exit(code, reason):
    """Sends `exiting {code, reason}` if connected; best effort."""
    c = current(connect=False)
    if c is not None:
        c.send_quietly({"type": "exiting", "code": code, "reason": reason})


def is_session_leader():
    try:
        return os.getsid(0) == os.getpid()
    except OSError:
        return False


def program_name():
    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else ""
    if argv0 in ("", "-c", "-m", "-"):
        return "python"
    base = os.path.basename(argv0)
    if base == "__main__.py":  # python -m package
        return os.path.basename(os.path.dirname(argv0)) or "python"
    return base


def _tractor_actor_name():
    """A tractor subactor (`python -m tractor._child --uid "('name', 'uuid')"`) is named as
    its program named it."""
    argv = sys.argv or []
    if not argv or not argv[0].replace(os.sep, "/").endswith("tractor/_child.py") or "--uid" not in argv:
        return None
    try:
        import ast

        uid = ast.literal_eval(argv[argv.index("--uid") + 1])
        return str(uid[0]) if isinstance(uid, tuple) and uid else None
    except (ValueError, SyntaxError, IndexError):
        return None


# Set by a runtime integration (actor_tui.ray) that knows better than the process what it
# is: a callable returning (name, group), either None to keep the default. Called once, when
# the process connects.
identity = None


def _identity():
    if identity is None:
        return None, None
    try:
        return identity()
    except Exception as e:  # naming must never stop the connection
        warn("cannot name this process: %r" % (e,))
        return None, None


def register_group():
    """The `group` sent in `register` (PROTOCOL.md 5.1): a node of the program's own that
    the root shows this actor under, or None."""
    return _identity()[1]


def register_name():
    """The `name` sent in `register`. It only names *new* actors (the root keeps the spawn-time
    name of a reserved one), and a new actor is a process that merely inherited
    ACTOR_TUI_NAME from its parent: naming it like the parent would mislead, so a
    pytest-xdist worker is its worker id (gw0), a multiprocessing child uses its Process
    name, and a fork or any other process that is not the session leader the root created
    uses its program name with its pid."""
    named = _identity()[0]
    if named:
        return named
    tractor = _tractor_actor_name()
    if tractor:
        return tractor
    xdist = os.environ.get("PYTEST_XDIST_WORKER")
    # The variable is inherited by whatever a worker starts; only the worker runs xdist.
    if xdist and "xdist" in sys.modules and not (os.environ.get("ACTOR_TUI_ACTOR") and is_session_leader()):
        return xdist  # pytest-xdist's worker id: gw0, gw1, ...
    mp = sys.modules.get("multiprocessing.process")
    if mp is not None:
        try:
            name = mp.current_process().name
        except Exception:
            name = None
        if name and name != "MainProcess":
            return name
    inherited = os.environ.get("ACTOR_TUI_NAME")
    if _state.forked:
        return "%s[%d]" % (inherited or program_name(), os.getpid())
    if inherited and is_session_leader():
        return inherited
    return "%s[%d]" % (program_name(), os.getpid())
