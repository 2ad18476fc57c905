"""Side-by-side flood bench through a real terminal emulator: tmux stands in for the
user's terminal, and its parsed screen (capture-pane) is what "on screen" means.

Two setups, alternating rounds, the same flooder (`actor-tui __demo flooder MB`, coloured-free
log lines as fast as the terminal takes them) at the same window size (160x48):

- actor-tui: the console runs in a tmux window, the flooder is one actor whose output pane
  is shown, a REPL is open; keys are typed into the REPL input.
- tmux alone (the anchor): the window is split, the flooder runs in one pane and `cat` in
  the other; keys are typed into `cat`'s pane (the PTY's own echo).

For each round: flood throughput (the flooder's own timing), the terminal-side CPU (the
tmux server, plus the console for actor-tui) and key -> screen latency, p50/p90/max, then
the ratios. Each round also drains the same flooder's PTY with a plain loop (nothing parsed
or drawn): the ceiling both contestants share on this machine. Keys are sent and the screen read through one tmux control-mode client, so no
process is started per sample.

    cargo build --release && python3 benches/flood_vs_tmux.py [MEGABYTES] [ROUNDS]

Needs tmux (Debian: apt-get install tmux); without it the bench says so and exits 0.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "actor-tui")
COLS, ROWS = 160, 48


class Tmux:
    """A private tmux server and one control-mode client on it."""

    def __init__(self, workdir, command):
        self.sock = os.path.join(workdir, "tmux.sock")
        subprocess.run(["tmux", "-S", self.sock, "-f", "/dev/null", "new-session", "-d",
                        "-x", str(COLS), "-y", str(ROWS), "-s", "b", command], check=True)
        self.ctl = subprocess.Popen(["tmux", "-S", self.sock, "-C", "attach", "-t", "b"],
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        # The attach itself is answered with a %begin/%end block first.
        self._reply()
        # The control client must not receive every byte the panes print: that alone would
        # load tmux more than the user's terminal does.
        self.command("refresh-client -f no-output")

    def command(self, cmd):
        self.ctl.stdin.write((cmd + "\n").encode())
        self.ctl.stdin.flush()
        return self._reply()

    def _reply(self):
        out, inside = [], False
        while True:
            line = self.ctl.stdout.readline()
            if not line:
                raise SystemExit("tmux went away")
            line = line.decode("utf-8", "replace").rstrip("\n")
            if line.startswith("%begin"):
                inside = True
            elif line.startswith("%end") or line.startswith("%error"):
                if inside:
                    return out
            elif inside:
                out.append(line)

    def screen(self, pane="b"):
        return self.command("capture-pane -p -t %s" % pane)

    def keys(self, keys, pane="b"):
        self.command("send-keys -t %s %s" % (pane, keys))

    def server_pid(self):
        return int(self.command("display-message -p '#{pid}'")[0])

    def close(self):
        subprocess.run(["tmux", "-S", self.sock, "kill-server"], stderr=subprocess.DEVNULL)
        self.ctl.wait()


def cpu_seconds(pid):
    """User + system CPU of a process and its reaped children, from /proc."""
    try:
        fields = open("/proc/%d/stat" % pid).read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = sum(int(f) for f in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


def wait(what, pred, timeout=120):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.002)
    raise SystemExit("timed out: %s" % what)


def measure_echo(tmux, result, pane, shown, key):
    """Types `key` and erases it again until the flood is done; the time to each echo."""
    echo = []
    while not os.path.exists(result):
        t0 = time.perf_counter()
        tmux.keys(key, pane)
        while not shown(tmux.screen(pane)):
            if time.perf_counter() - t0 > 5:
                print("  no echo within 5 s")
                break
            time.sleep(0.0005)
        echo.append(time.perf_counter() - t0)
        tmux.keys("BSpace", pane)
        while shown(tmux.screen(pane)) and time.perf_counter() - t0 < 5:
            time.sleep(0.0005)
        time.sleep(0.01)
    return echo


def read_result(result):
    wait("flood result", lambda: os.path.exists(result) and open(result).read().strip())
    nbytes, secs = open(result).read().split()[:2]
    return float(nbytes), float(secs)


def round_actor_tui(workdir, mb):
    result = os.path.join(workdir, "result-a")
    cmd = "%s --socket %s --log-file %s %s __demo flood_top %d %s" % (
        BIN, os.path.join(workdir, "root.sock"), os.path.join(workdir, "log"), BIN, mb, result)
    tmux = Tmux(workdir, cmd)
    try:
        has = lambda text: lambda: any(text in line for line in tmux.screen())  # noqa: E731
        wait("REPL open", has("› "))
        wait("flooder in the tree", has("flooder"))
        # Show the flooder's output: leave the input, select it, back to the input.
        for k in ("Escape", "j", "i"):
            tmux.keys(k)
            time.sleep(0.1)
        wait("flood running", has("INFO flood"))
        console = int(subprocess.run(["tmux", "-S", tmux.sock, "display-message", "-p", "-t", "b",
                                      "#{pane_pid}"], capture_output=True, text=True).stdout)
        server = tmux.server_pid()
        cpu0 = cpu_seconds(server) + cpu_seconds(console)

        def input_line(screen):
            for line in screen:
                if "› " in line:
                    return line.split("› ", 1)[1].rstrip("│ ")
            return ""

        echo = measure_echo(tmux, result, "b", lambda s: input_line(s).endswith("x"), "x")
        cpu = cpu_seconds(server) + cpu_seconds(console) - cpu0
        nbytes, secs = read_result(result)
        tmux.keys("c")
        tmux.keys("Enter")
        return nbytes / 1e6 / secs, cpu, echo
    finally:
        tmux.close()


def round_tmux(workdir, mb):
    result = os.path.join(workdir, "result-t")
    tmux = Tmux(workdir, "cat")
    try:
        # `cat` on the right (pane b.1 after the split), the flooder on the left.
        tmux.command("split-window -h -b -l %d -t b '%s __demo flooder %d %s; sleep 600'"
                     % (COLS * 3 // 4, BIN, mb, result))
        # The new pane is first (-b): `cat` is the second one.
        cat_pane = "b.1"
        server = tmux.server_pid()
        wait("flood running", lambda: any("INFO flood" in line for line in tmux.screen("b.0")))
        cpu0 = cpu_seconds(server)
        echo = measure_echo(tmux, result, cat_pane, lambda s: any("@" in line for line in s), "@")
        cpu = cpu_seconds(server) - cpu0
        nbytes, secs = read_result(result)
        return nbytes / 1e6 / secs, cpu, echo
    finally:
        tmux.close()


def round_ceiling(workdir, mb):
    """The same flooder on a PTY that a plain loop drains (`os.read`, nothing parsed or
    drawn): what this machine's PTYs carry at all, the ceiling for both contestants."""
    result = os.path.join(workdir, "result-c")
    master, slave = os.openpty()
    p = subprocess.Popen([BIN, "__demo", "flooder", str(mb), result], stdin=slave, stdout=slave,
                         stderr=slave, close_fds=True)
    os.close(slave)
    try:
        while True:
            try:
                if not os.read(master, 1 << 16):
                    break
            except OSError:  # EIO: the flooder closed its side
                break
    finally:
        os.close(master)
        p.wait()
    nbytes, secs = read_result(result)
    return nbytes / 1e6 / secs


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round((len(xs) - 1) * p)))] * 1e3


def main():
    if shutil.which("tmux") is None:
        print("flood_vs_tmux: tmux is not installed (apt-get install tmux); nothing measured")
        return 0
    if not os.path.exists(BIN):
        print("flood_vs_tmux: build first: cargo build --release")
        return 1
    mb = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    totals = {"actor-tui": [], "tmux": []}
    ceilings = []
    for n in range(rounds):
        with tempfile.TemporaryDirectory(prefix="actor-tui-vs-tmux-") as workdir:
            ceilings.append(round_ceiling(workdir, mb))
        print("round %d PTY drained, nothing drawn: %.1f MB/s" % (n + 1, ceilings[-1]), flush=True)
        for name, fn in (("actor-tui", round_actor_tui), ("tmux", round_tmux)):
            with tempfile.TemporaryDirectory(prefix="actor-tui-vs-tmux-") as workdir:
                rate, cpu, echo = fn(workdir, mb)
            totals[name].append((rate, cpu, echo))
            print("round %d %-9s %6.1f MB/s  terminal-side CPU %.2f s  key->screen p50 %5.1f  p90 %5.1f"
                  "  max %5.1f ms (%d keys)" % (n + 1, name, rate, cpu, pct(echo, .5), pct(echo, .9),
                                               max(echo) * 1e3, len(echo)))
    summary = {}
    for name, runs in totals.items():
        echo = [e for _, _, es in runs for e in es]
        summary[name] = (sum(r for r, _, _ in runs) / len(runs), sum(c for _, c, _ in runs) / len(runs),
                         pct(echo, .5), pct(echo, .9), max(echo) * 1e3)
    a, t = summary["actor-tui"], summary["tmux"]
    print("all rounds: actor-tui %.1f MB/s, CPU %.2f s, key p50/p90/max %.1f/%.1f/%.1f ms" % a)
    print("            tmux      %.1f MB/s, CPU %.2f s, key p50/p90/max %.1f/%.1f/%.1f ms" % t)
    print("ratios (actor-tui / tmux): throughput %.2fx, CPU %.2fx, key p50 %.2fx, p90 %.2fx, max %.2fx"
          % (a[0] / t[0], a[1] / t[1], a[2] / t[2], a[3] / t[3], a[4] / t[4]))
    ceiling = sum(ceilings) / len(ceilings)
    print("PTY ceiling %.1f MB/s: actor-tui at %.0f%% of it, tmux at %.0f%%; 2x tmux would be %.0f%%"
          % (ceiling, 100 * a[0] / ceiling, 100 * t[0] / ceiling, 200 * t[0] / ceiling))
    return 0


if __name__ == "__main__":
    sys.exit(main())
