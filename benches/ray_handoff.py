"""Lock handoff with 32 Ray tasks pausing, next to 32 plain Python processes, alternating
rounds in one run, same interpreter, same root.

Each round runs one tree under `actor-tui --headless` and answers every prompt with `c`:

- ray: a driver whose `ray.init()` starts a local cluster with 32 CPUs, and 32 tasks that
  each call `breakpoint()` once (their workers reach the root through the start-up hook);
- plain: 32 Python subprocesses each pausing once and then staying alive for 5 s, as a Ray
  worker stays after its task (so no process exits during the handoffs);
- plain-exit: examples/python/bench_handoff.py, 32 subprocesses each pausing once and then
  exiting at once (each handoff then overlaps the previous process's teardown).

The first prompt is answered only once all 32 requests are queued (and 1 s later), so what
is measured is handing the lock on, not Ray starting 32 workers on this machine: the time
from writing `c` to the next session's `repl_ready`, for each of the 31 handoffs.

    cargo build --release && python3 benches/ray_handoff.py PYTHON [ROUNDS]

PYTHON must have Ray installed (tests/python/ray-requirements.txt; `.ci/run` makes such a
venv at $TMPDIR/actor-tui-ci-ray). Without it the script says so and exits 0.
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "actor-tui")
N = 32

RAY_JOB = """
import ray

ray.init(address="local", num_cpus=%d, include_dashboard=False)

@ray.remote
def pause(i):
    breakpoint()
    return i

print(sum(ray.get([pause.remote(i) for i in range(%d)])), flush=True)
""" % (N, N)


PLAIN_TREE = """
import subprocess, sys, time
if len(sys.argv) > 1:
    breakpoint()
    time.sleep(5)
    sys.exit(0)
procs = [subprocess.Popen([sys.executable, __file__, "child"]) for _ in range(%d)]
sys.exit(max(p.wait() for p in procs))
""" % N


def run_tree(args, env):
    """Runs one tree; the handoff times in ms (write `c` -> next prompt)."""
    p = subprocess.Popen([BIN, "--headless"] + args, stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                         bufsize=1, env=env)
    state = {"requested": 0, "prompted": False, "started": False, "sent_at": None}
    times = []

    def answer():
        state["sent_at"] = time.perf_counter()
        p.stdin.write(json.dumps({"cmd": "input", "data": "c\n"}) + "\n")
        p.stdin.flush()

    def maybe_start():
        # The first prompt is answered once every request is queued, and 1 s later.
        if not state["started"] and state["prompted"] and state["requested"] >= N:
            state["started"] = True
            time.sleep(1.0)
            answer()

    deadline = time.time() + 600
    for line in p.stdout:
        if time.time() > deadline:
            p.kill()
            raise SystemExit("a round took over 10 minutes")
        ev = json.loads(line)
        kind = ev.get("event")
        if kind == "lock_requested":
            state["requested"] += 1
            maybe_start()
        elif kind == "repl_ready":
            now = time.perf_counter()
            if state["sent_at"] is not None:
                times.append((now - state["sent_at"]) * 1000)
                state["sent_at"] = None
            if state["started"]:
                answer()
            else:
                state["prompted"] = True
                maybe_start()
        elif kind == "exit":
            break
    p.wait()
    if len(times) != N - 1:
        raise SystemExit("expected %d handoffs, measured %d" % (N - 1, len(times)))
    return times


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def main():
    python = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.environ.get("TMPDIR", "/tmp"), "actor-tui-ci-ray", "bin", "python")
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    if subprocess.call([python, "-c", "import ray"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL) != 0:
        print("ray_handoff: %s cannot import ray (pip install -r "
              "tests/python/ray-requirements.txt); nothing measured" % python)
        return 0
    if not os.path.exists(BIN):
        raise SystemExit("build first: cargo build --release")
    work = tempfile.mkdtemp(prefix="actor-tui-ray-bench-")
    job = os.path.join(work, "job.py")
    with open(job, "w") as f:
        f.write(RAY_JOB)
    plain = os.path.join(work, "plain.py")
    with open(plain, "w") as f:
        f.write(PLAIN_TREE)
    env = dict(os.environ, HOME=work, RAY_USAGE_STATS_ENABLED="0")
    plain_exit = os.path.join(ROOT, "examples", "python", "bench_handoff.py")
    trees = {
        "ray": [python, job],
        "plain": [python, plain],
        "plain-exit": [python, plain_exit, str(N), "1"],
    }
    kinds = list(trees)
    results = {k: [] for k in kinds}
    for r in range(rounds):
        # Rotating the order, so drift on this machine lands on every kind.
        for kind in kinds[r % 3:] + kinds[:r % 3]:
            t = run_tree(trees[kind], env)
            results[kind].extend(t)
            print("round %d %-10s p50 %.2f ms  p90 %.2f ms" % (r + 1, kind, pct(t, 0.5), pct(t, 0.9)),
                  flush=True)
    ray = results["ray"]
    print("all rounds, %d handoffs each:" % len(ray))
    for kind in kinds:
        xs = results[kind]
        print("  %-10s p50 %.2f / p90 %.2f ms (mean %.2f); ray / this: %.2fx / %.2fx" % (
            kind, pct(xs, 0.5), pct(xs, 0.9), statistics.mean(xs),
            pct(ray, 0.5) / pct(xs, 0.5), pct(ray, 0.9) / pct(xs, 0.9)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
