"""Two threads pause at the same moment: each gets its own pdb session in the actor-tui
console, one after the other, never interleaved.

    actor-tui python3 examples/python/threads.py
"""

import threading

barrier = threading.Barrier(2)


def worker(n):
    answer = 40 + n
    barrier.wait()  # both threads reach breakpoint() together
    breakpoint()
    print("%s resumed with answer=%d" % (threading.current_thread().name, answer), flush=True)


threads = [threading.Thread(target=worker, args=(n,), name="pauser-%d" % n) for n in (1, 2)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("both threads done", flush=True)
