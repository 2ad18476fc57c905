"""A crash two processes down: top runs mid with subprocess, mid starts leaf with
multiprocessing, leaf raises. Three post-mortems follow, leaf's first; after each `c` the
failure climbs one level, as in the Rust nested_crash example. Exits 1.

    actor-tui python3 examples/python/grandchild_crash.py
"""

import multiprocessing
import subprocess
import sys


def leaf():
    plan = []
    first_step = plan[0]  # IndexError: the crash
    print(first_step)


def mid():
    p = multiprocessing.Process(target=leaf, name="leaf")
    p.start()
    p.join()
    if p.exitcode != 0:
        raise RuntimeError("leaf failed with exit code %s" % p.exitcode)


def top():
    done = subprocess.run([sys.executable, __file__, "mid"])
    if done.returncode != 0:
        raise RuntimeError("mid failed with exit code %s" % done.returncode)


if __name__ == "__main__":
    {"top": top, "mid": mid}[sys.argv[1] if len(sys.argv) > 1 else "top"]()
