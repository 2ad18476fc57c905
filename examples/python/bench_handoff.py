"""Handoff benchmark tree for Python actors: N subprocesses, each calling breakpoint() K
times in a loop, all queueing at once. Driven by `cargo bench --bench handoff -- python`.

    actor-tui --headless python3 examples/python/bench_handoff.py [N] [K]
"""
import subprocess
import sys


def child(k):
    for round_no in range(k):
        breakpoint()  # noqa: T100 - the point of the benchmark
    return 0


def top(n, k):
    procs = [
        subprocess.Popen([sys.executable, __file__, "child", str(k)])
        for _ in range(n)
    ]
    return 1 if any(p.wait() != 0 for p in procs) else 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "child":
        sys.exit(child(int(sys.argv[2])))
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 4
    k = int(sys.argv[2]) if len(sys.argv) > 2 else 50
    sys.exit(top(n, k))
