"""Three multiprocessing workers pause at the same moment: three sessions, one at a time.
Each worker becomes its own actor (named after its Process) when it first pauses.

    actor-tui python3 examples/python/multiproc.py [fork|spawn|forkserver]
"""

import multiprocessing
import sys


def worker(n, barrier):
    share = n * 100
    barrier.wait()  # all three reach breakpoint() together
    breakpoint()
    print("worker-%d resumed with share=%d" % (n, share), flush=True)


if __name__ == "__main__":
    ctx = multiprocessing.get_context(sys.argv[1] if len(sys.argv) > 1 else "fork")
    barrier = ctx.Barrier(3)
    procs = [ctx.Process(target=worker, args=(n, barrier), name="worker-%d" % n) for n in (1, 2, 3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    codes = [p.exitcode for p in procs]
    print("worker exit codes: %s" % codes, flush=True)
    sys.exit(0 if all(c == 0 for c in codes) else 1)
