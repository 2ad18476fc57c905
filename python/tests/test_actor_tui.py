"""Unit tests of the Python client, runnable without the Rust root:

    python3 -m unittest discover -s python/tests -v

The codec against the golden bytes of docs/PROTOCOL.md (with msgpack and with the built-in
fallback), and a whole pause against a minimal root written here, so the client's side of
the protocol is checked frame by frame. End-to-end runs against the real root are in
tests/it/python.rs.
"""

import os
import socket
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
PYDIR = os.path.dirname(HERE)
sys.path.insert(0, PYDIR)

from actor_tui import _client, _debugger, _wire  # noqa: E402

GOLDEN = [
    ({"type": "hello", "protocol": 1, "agent": "x"},
     "0000001e83a474797065a568656c6c6fa870726f746f636f6c01a56167656e74a178"),
    ({"type": "registered", "actor": "1", "parent": None},
     "0000002183a474797065aa72656769737465726564a56163746f72a131a6706172656e74c0"),
    ({"type": "lock_granted", "task": 1, "epoch": 1},
     "0000002083a474797065ac6c6f636b5f6772616e746564a47461736b01a565706f636801"),
    ({"type": "exiting", "code": 143, "reason": "cancelled"},
     "0000002683a474797065a765786974696e67a4636f6465cc8fa6726561736f6ea963616e63656c6c6564"),
]


class Codec:
    """Runs a test body once with msgpack (if installed) and once with the fallback."""

    def each_codec(self, body):
        saved = _wire._msgpack
        try:
            codecs = [("fallback", None)] + ([("msgpack", saved)] if saved is not None else [])
            for name, impl in codecs:
                _wire._msgpack = impl
                with self.subTest(codec=name):
                    body()
        finally:
            _wire._msgpack = saved


class WireTest(unittest.TestCase, Codec):
    def test_golden_bytes(self):
        def body():
            for msg, hexa in GOLDEN:
                self.assertEqual(_wire.frame(msg).hex(), hexa)
                self.assertEqual(_wire.unpack(bytes.fromhex(hexa)[4:]), msg)
        self.each_codec(body)

    def test_round_trip_of_every_kind_of_value(self):
        value = {
            "type": "x", "ints": [0, 1, 127, 128, 255, 256, 65535, 65536, 2**32, 2**64 - 1,
                                  -1, -32, -33, -128, -129, -2**31, -2**63],
            "s": "é" * 40 + "x" * 300, "long": "y" * 70000, "b": b"\x00\x01", "t": True,
            "f": False, "n": None, "env": [["A", "1"], ["B", "2"]], "m": {str(i): i for i in range(20)},
            "float": 1.5,
        }
        self.each_codec(lambda: self.assertEqual(_wire.unpack(_wire.pack(value)), value))

    def test_fallback_matches_msgpack(self):
        if _wire._msgpack is None:
            self.skipTest("msgpack is not installed")
        value = {"type": "repl_output", "task": 2**40, "epoch": 300, "data": "z" * 70000, "neg": -70000}
        ours = _wire._pack_into
        out = []
        ours(out, value)
        self.assertEqual(b"".join(out), _wire._msgpack.packb(value, use_bin_type=True))

    def test_bad_frames(self):
        a, b = socket.socketpair()
        with a, b:
            a.sendall(b"\x00\x10\x00\x01")  # 1 MiB + 1
            with self.assertRaises(_wire.FrameError):
                _wire.read_frame(b)
        a, b = socket.socketpair()
        with a, b:
            a.sendall(b"\x00\x00\x00\x05\x81")
            a.shutdown(socket.SHUT_WR)
            with self.assertRaises(_wire.FrameError):
                _wire.read_frame(b)
        a, b = socket.socketpair()
        with a, b:
            a.sendall(_wire.frame([1, 2]))
            with self.assertRaises(_wire.FrameError):
                _wire.read_frame(b)
        with self.assertRaises(_wire.FrameError):
            _wire.frame({"type": "repl_output", "data": "x" * (1 << 20)})


class LinesTest(unittest.TestCase):
    def test_split(self):
        self.assertEqual(_client._split_lines("p x\nbt\n"), ["p x\n", "bt\n"])
        self.assertEqual(_client._split_lines("c"), ["c\n"])
        self.assertEqual(_client._split_lines(""), ["\n"])
        self.assertEqual(_client._split_lines("\n"), ["\n"])
        self.assertEqual(_client._split_lines("a\n\nb"), ["a\n", "\n", "b\n"])


class _Boom(object):
    @property
    def bad(self):
        raise RuntimeError("a getter that fails")


class CompleteLineTest(unittest.TestCase):
    """_debugger.complete_line on a stock pdb stopped in a frame of this test."""

    def debugger(self):
        import pdb

        answer, answers, boom = 42, [41, 42], _Boom()  # noqa: F841 (completed below)
        p = pdb.Pdb(stdin=None, stdout=open(os.devnull, "w"), nosigint=True)
        self.addCleanup(p.stdout.close)
        p.reset()
        p.setup(sys._getframe(), None)
        return p

    def test_commands_arguments_and_expressions(self):
        p = self.debugger()
        self.assertEqual(_debugger.complete_line(p, "whe"), ["where"])
        self.assertEqual(_debugger.complete_line(p, "p answ"), ["p answer", "p answers"])
        self.assertEqual(_debugger.complete_line(p, "  p  answ"), ["  p  answer", "  p  answers"])
        self.assertEqual(_debugger.complete_line(p, "p (answer+answ"),
                         ["p (answer+answer", "p (answer+answers"])
        self.assertIn("p answers.append", _debugger.complete_line(p, "p answers.ap"))
        self.assertIn("help where", _debugger.complete_line(p, "help whe"))
        self.assertEqual(_debugger.complete_line(p, "nonsense_command x"), [])
        every = _debugger.complete_line(p, "")
        self.assertIn("continue", every)
        self.assertEqual(len(every), len(set(every)), "no duplicates")

    def test_failures_and_caps(self):
        p = self.debugger()
        self.assertEqual(_debugger.complete_line(p, "p boom.bad.x"), [], "the getter raised")
        self.assertEqual(_debugger.complete_line(p, None), [])
        p.completenames = lambda *a: ["x%d" % (i // 2) for i in range(1000)]
        many = _debugger.complete_line(p, "x")
        self.assertEqual(len(many), _debugger.MAX_MATCHES)
        self.assertEqual(many[:3], ["x0", "x1", "x2"], "deduplicated, in pdb's order")


def _env(**extra):
    env = dict(os.environ)
    for k in ("ACTOR_TUI_SOCKET", "ACTOR_TUI_ACTOR", "ACTOR_TUI_NAME"):
        env.pop(k, None)
    env["PYTHONPATH"] = PYDIR
    env["PYTHONBREAKPOINT"] = "actor_tui.set_trace"
    env.update(extra)
    return env


class WithoutRootTest(unittest.TestCase):
    def test_pause_without_root_or_terminal_warns_and_continues(self):
        done = subprocess.run([sys.executable, "-c", "x = 5\nbreakpoint()\nprint('after', x)"],
                              env=_env(), stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=30)
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertIn("after 5", done.stdout)
        self.assertIn("skipped: no actor-tui root and no terminal", done.stderr)

    def test_unreachable_root_warns_once_and_continues(self):
        code = "for i in range(3):\n    breakpoint()\nprint('done')"
        done = subprocess.run([sys.executable, "-c", code],
                              env=_env(ACTOR_TUI_SOCKET="/nonexistent/actor-tui.sock"),
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
        self.assertEqual(done.returncode, 0, done.stderr)
        self.assertIn("done", done.stdout)
        self.assertEqual(done.stderr.count("cannot reach the actor-tui root"), 1, done.stderr)


class FakeRoot:
    """Just enough of a root for one actor connection: frames in, frames out."""

    def __init__(self, test):
        self.wheres = []
        self.test = test
        self.dir = tempfile.mkdtemp(prefix="actor-tui-py-")
        self.path = os.path.join(self.dir, "root.sock")
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(4)
        self.listener.settimeout(20)
        self.conn = None
        # Leases (PROTOCOL.md 6.3) come on their own clock, between any two frames: kept
        # here, out of the way of the conversation a test reads.
        self.leases = []

    def accept(self):
        self.conn, _ = self.listener.accept()
        self.conn.settimeout(20)
        hello = self.recv("hello")
        self.test.assertEqual(hello["protocol"], 1)
        self.send({"type": "hello", "protocol": 1, "agent": "fake-root"})
        register = self.recv("register")
        self.send({"type": "registered", "actor": "7", "parent": None})
        return register

    def send(self, msg):
        self.conn.sendall(_wire.frame(msg))

    def recv(self, kind=None):
        msg = _wire.read_frame(self.conn)
        while msg is not None and msg.get("type") == "lease":
            self.leases.append(msg)
            msg = _wire.read_frame(self.conn)
        self.test.assertIsNotNone(msg, "actor closed the connection")
        if kind is not None:
            self.test.assertEqual(msg["type"], kind, msg)
        return msg

    def wait_lease(self):
        """The first lease, read now if it has not come yet (nothing else is due at a
        prompt that waits)."""
        if not self.leases:
            msg = _wire.read_frame(self.conn)
            self.test.assertIsNotNone(msg, "actor closed the connection")
            self.test.assertEqual(msg["type"], "lease", msg)
            self.leases.append(msg)
        return self.leases[0]

    def output_until_waiting(self, task, epoch):
        text = ""
        while True:
            msg = self.recv()
            self.test.assertEqual((msg.get("task"), msg.get("epoch")), (task, epoch), msg)
            if msg["type"] == "repl_waiting":
                return text, msg["prompt"]
            if msg["type"] == "repl_where":
                # Where pdb stopped (the line after the call, or a later step).
                self.wheres.append((msg["task_name"], msg["location"]))
                continue
            self.test.assertEqual(msg["type"], "repl_output", msg)
            text += msg["data"]

    def close(self):
        for s in (self.conn, self.listener):
            if s is not None:
                s.close()
        try:
            os.unlink(self.path)
            os.rmdir(self.dir)
        except OSError:
            pass


class FakeRootTest(unittest.TestCase):
    def start(self, code, **env):
        """Runs `code` in a Python process connected to a fresh fake root; returns the root,
        the process and its register frame."""
        root = FakeRoot(self)
        self.addCleanup(root.close)
        proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=_env(ACTOR_TUI_SOCKET=root.path, **env))
        self.addCleanup(proc.kill)
        return root, proc, root.accept()

    def test_pause_session_frame_by_frame(self):
        code = "x = 5\nbreakpoint()\nprint('after', x, flush=True)\n"
        root, proc, register = self.start(code, ACTOR_TUI_ACTOR="7", ACTOR_TUI_NAME="demo")
        self.assertEqual((register["actor"], register["pid"]), ("7", proc.pid))

        req = root.recv("lock_request")
        self.assertEqual(req["reason"], "pause")
        self.assertEqual(req["location"], "<string>:2")
        self.assertEqual(req["task_name"], "MainThread")
        task = req["task"]

        # A dump is answered while the program waits for the lock.
        root.send({"type": "dump_request", "req": 9})
        dump = root.recv("dump_reply")
        self.assertEqual(dump["req"], 9)
        self.assertIn("waiting for the debug lock", dump["text"])

        root.send({"type": "some_future_frame", "x": 1})  # ignored (PROTOCOL.md 9)
        root.send({"type": "lock_granted", "task": task, "epoch": 3})
        text, prompt = root.output_until_waiting(task, 3)
        self.assertIn("--- actor-tui: demo paused at <string>:2", text)
        self.assertEqual(prompt, "(Pdb) ")
        self.assertNotIn("(Pdb)", text, "the prompt goes in repl_waiting, not in the output")

        # Two lines in one chunk: answered from the queue, one repl_waiting after both.
        root.send({"type": "repl_input", "task": task, "epoch": 3, "data": "p x\np x * 2\n"})
        text, _ = root.output_until_waiting(task, 3)
        self.assertEqual(text.split(), ["5", "10"])

        # The grant is leased while the session is open, with its own task and epoch.
        root.wait_lease()
        self.assertEqual({(l["task"], l["epoch"]) for l in root.leases}, {(task, 3)})
        root.send({"type": "repl_input", "task": task, "epoch": 3, "data": "c\n"})
        release = root.recv("lock_release")
        self.assertEqual((release["task"], release["epoch"], release["how"]), (task, 3, "continue"))
        out, err = proc.communicate(timeout=20)
        self.assertEqual(proc.returncode, 0, err)
        self.assertIn("after 5", out)

    def test_completion_requests_are_answered_from_the_paused_frame(self):
        code = ("class Slow(object):\n"
                "    @property\n"
                "    def pause(self):\n"
                "        breakpoint()\n"
                "        return 1\n"
                "answer = 42\nslow = Slow()\nbreakpoint()\nprint('after', answer, flush=True)\n")
        root, proc, _ = self.start(code)

        def complete(req, line, task=None, epoch=5):
            root.send({"type": "complete_request", "task": task_id if task is None else task,
                       "epoch": epoch, "req": req, "line": line})
            reply = root.recv("complete_reply")
            self.assertEqual(reply["req"], req)
            return reply["matches"]

        task_id = root.recv("lock_request")["task"]
        # Waiting for the lock, there is no session yet: an empty reply, still sent.
        self.assertEqual(complete(1, "p ans"), [])
        root.send({"type": "lock_granted", "task": task_id, "epoch": 5})
        root.output_until_waiting(task_id, 5)

        self.assertIn("p answer", complete(2, "p ans"))
        self.assertEqual(complete(3, "whe"), ["where"])
        self.assertEqual(complete(4, "zzz"), [])
        self.assertEqual(complete(5, "p ans", task=task_id + 1000), [], "no such session")
        self.assertEqual(complete(6, "p ans", epoch=4), [], "a stale epoch")
        # A getter that reaches breakpoint() while completing: no pause, no hang.
        self.assertEqual(complete(7, "p slow.pause.real"), ["p slow.pause.real"])

        # The session goes on as if nothing happened.
        root.send({"type": "repl_input", "task": task_id, "epoch": 5, "data": "p answer\n"})
        text, _ = root.output_until_waiting(task_id, 5)
        self.assertEqual(text.split(), ["42"])
        root.send({"type": "repl_input", "task": task_id, "epoch": 5, "data": "c\n"})
        self.assertEqual(root.recv("lock_release")["how"], "continue")
        out, err = proc.communicate(timeout=20)
        self.assertEqual(proc.returncode, 0, err)
        self.assertIn("after 42", out)

    def test_quit_sends_exiting_then_release_and_exits_113(self):
        root, proc, _ = self.start("breakpoint()\nprint('not reached')")
        task = root.recv("lock_request")["task"]
        root.send({"type": "lock_granted", "task": task, "epoch": 1})
        root.output_until_waiting(task, 1)
        root.send({"type": "repl_input", "task": task, "epoch": 1, "data": "q\n"})
        exiting = root.recv("exiting")
        self.assertEqual((exiting["code"], exiting["reason"]), (113, "quit"))
        self.assertEqual(root.recv("lock_release")["how"], "quit")
        out, _ = proc.communicate(timeout=20)
        self.assertEqual(proc.returncode, 113)
        self.assertNotIn("not reached", out)

    def test_revoked_session_lets_the_program_continue(self):
        root, proc, _ = self.start("breakpoint()\nprint('went on', flush=True)")
        task = root.recv("lock_request")["task"]
        root.send({"type": "lock_granted", "task": task, "epoch": 4})
        root.output_until_waiting(task, 4)
        root.send({"type": "lock_revoked", "task": task, "epoch": 4})
        out, err = proc.communicate(timeout=20)
        self.assertEqual(proc.returncode, 0, err)
        self.assertIn("went on", out)
        # No lock_release after a revocation: the connection just ends (leases sent before
        # the revocation reached the client may still be on their way).
        rest = []
        while True:
            msg = _wire.read_frame(root.conn)
            if msg is None:
                break
            rest.append(msg["type"])
        self.assertEqual(set(rest) - {"lease"}, set(), rest)

    def test_cancel_exits_143_after_exiting(self):
        root, proc, _ = self.start("import time\nbreakpoint()\ntime.sleep(30)")
        task = root.recv("lock_request")["task"]
        # The root drops a queued request of an actor it cancels, then cancels it.
        root.send({"type": "lock_refused", "task": task, "error": "request dropped: the actor is being cancelled"})
        root.send({"type": "cancel", "force": False})
        exiting = root.recv("exiting")
        self.assertEqual((exiting["code"], exiting["reason"]), (143, "cancelled"))
        proc.communicate(timeout=20)
        self.assertEqual(proc.returncode, 143)


if __name__ == "__main__":
    unittest.main()


class RayRuntimeEnvTest(unittest.TestCase):
    """actor_tui.ray's pure parts: what goes into a job's runtime_env, and the link a worker
    picks. (Ray itself runs in tests/it/ray.rs.)"""

    def setUp(self):
        from actor_tui import ray as integration

        self.ray = integration
        self.saved = dict(os.environ)
        for name in list(os.environ):
            if name.startswith("ACTOR_TUI_"):
                del os.environ[name]

    def tearDown(self):
        os.environ.clear()
        os.environ.update(self.saved)

    def test_without_a_root_the_runtime_env_is_left_alone(self):
        base = {"env_vars": {"A": "1"}}
        self.assertEqual(self.ray.runtime_env(base), base)

    def test_the_hook_the_socket_and_the_package_are_added_and_the_users_are_kept(self):
        os.environ["ACTOR_TUI_SOCKET"] = "/run/x/root.sock"
        env = self.ray.runtime_env({"env_vars": {"A": "1"}, "py_modules": ["/mine"],
                                    "worker_process_setup_hook": "mine.setup"})
        self.assertEqual(env["worker_process_setup_hook"], self.ray.SETUP_HOOK)
        v = env["env_vars"]
        self.assertEqual((v["A"], v["ACTOR_TUI_RAY_USER_HOOK"]), ("1", "mine.setup"))
        self.assertEqual(v["ACTOR_TUI_RAY_SOCKET"], "/run/x/root.sock")
        self.assertTrue(v["ACTOR_TUI_RAY_DRIVER"].endswith(":%d" % os.getpid()))
        self.assertNotIn("ACTOR_TUI_RAY_TICKET", v)
        self.assertEqual(env["py_modules"][0], "/mine")
        self.assertTrue(env["py_modules"][1].endswith("actor_tui"))
        # Twice is once.
        self.assertEqual(self.ray.runtime_env(env), env)

    def test_a_callable_hook_runs_after_ours(self):
        os.environ["ACTOR_TUI_SOCKET"] = "/run/x/root.sock"
        calls = []
        env = self.ray.runtime_env({"worker_process_setup_hook": lambda: calls.append(1)})
        hook = env["worker_process_setup_hook"]
        self.assertTrue(callable(hook) and hook._actor_tui)
        self.assertEqual(self.ray.runtime_env(env)["worker_process_setup_hook"], hook)

    def test_the_ticket_comes_from_the_roots_file_never_through_a_symlink(self):
        os.environ["ACTOR_TUI_SOCKET"] = "/run/x/root.sock"
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "root-1.actor.ticket")
            with open(path, "w") as f:
                f.write("actor-tui:1:actor:%s:%s@127.0.0.1:7\n" % ("a" * 64, "b" * 64))
            link = os.path.join(d, "link")
            os.symlink(path, link)
            os.environ["ACTOR_TUI_JOIN_TICKET"] = path
            env = self.ray.runtime_env(None)
            self.assertTrue(env["env_vars"]["ACTOR_TUI_RAY_TICKET"].startswith("actor-tui:1:actor:"))
            os.environ["ACTOR_TUI_JOIN_TICKET"] = link
            env = self.ray.runtime_env(None)
            self.assertNotIn("ACTOR_TUI_RAY_TICKET", env["env_vars"])

    def test_a_worker_of_the_drivers_own_cluster_uses_the_socket_others_the_ticket(self):
        with tempfile.TemporaryDirectory() as d:
            sock = os.path.join(d, "root.sock")
            open(sock, "w").close()
            os.environ["ACTOR_TUI_RAY_SOCKET"] = sock
            os.environ["ACTOR_TUI_RAY_TICKET"] = "actor-tui:1:actor:x"
            # The driver is our parent: the socket.
            os.environ["ACTOR_TUI_RAY_DRIVER"] = "%s:%d" % (self.ray._boot_id(), os.getppid())
            self.assertTrue(self.ray._choose_link())
            self.assertEqual(os.environ.get("ACTOR_TUI_SOCKET"), sock)
            self.assertNotIn("ACTOR_TUI_TICKET", os.environ)
            # Another machine's driver (another boot): the ticket.
            os.environ["ACTOR_TUI_RAY_DRIVER"] = "another-boot:%d" % os.getppid()
            self.assertTrue(self.ray._choose_link())
            self.assertEqual(os.environ.get("ACTOR_TUI_TICKET"), "actor-tui:1:actor:x")
            self.assertNotIn("ACTOR_TUI_SOCKET", os.environ)
            # No ticket: the socket if it is here, else nothing reaches the root.
            del os.environ["ACTOR_TUI_RAY_TICKET"]
            self.assertTrue(self.ray._choose_link())
            os.remove(sock)
            del os.environ["ACTOR_TUI_SOCKET"]
            self.assertFalse(self.ray._choose_link())
