"""How late a 100 Hz loop wakes on this computer while other processes keep its CPUs busy.

A control loop that sleeps to drift-free deadlines (as the policy node's timer) records how late each wake-up is,
while 0, 1, ... busy loops at ``nice 10`` run beside it. The loop runs at real-time priority (``SCHED_FIFO``)
where permitted, so a late wake-up is not another process's doing: on a virtual machine it is the host taking
the guest's CPUs away (steal time), which is what a saturated guest pays. Prints, per load: median, 99th and
99.9th percentile and worst lateness, and the periods that would be skipped (late by a whole period).

    python benchmarks/wake_latency.py [--seconds 30] [--rate-hz 100] [--busy 0 1 2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

import numpy as np


def lateness(seconds: float, rate_hz: float) -> np.ndarray:
    """Wake-up lateness [s] of a loop sleeping to ``rate_hz`` deadlines for ``seconds``; shape (ticks,)."""
    period, late = 1.0 / rate_hz, []
    deadline = time.monotonic() + period
    for _ in range(int(seconds * rate_hz)):
        wait = deadline - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        late.append(time.monotonic() - deadline)
        deadline += period
    return np.asarray(late)


def _normal() -> None:
    """In a child: back to normal scheduling (a child inherits the real-time class, and a busy one would hog a CPU)."""
    if hasattr(os, "sched_setscheduler"):
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=30.0, help="length of each measurement (s)")
    p.add_argument("--rate-hz", type=float, default=100.0, help="rate of the loop (Hz)")
    p.add_argument("--busy", type=int, nargs="+", default=[0, 1, 2], help="numbers of busy loops to run beside it")
    args = p.parse_args()
    if args.seconds <= 0 or args.rate_hz <= 0 or min(args.busy) < 0:
        p.error("--seconds and --rate-hz must be > 0 and --busy >= 0")
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(50))
        priority = "SCHED_FIFO 50"
    except (PermissionError, AttributeError):
        priority = "normal priority (SCHED_FIFO not permitted)"
    print(f"{os.cpu_count()} CPUs, loop at {args.rate_hz:.0f} Hz, {priority}, {args.seconds:.0f} s per load")
    print(f"{'busy loops':>10} {'p50 ms':>8} {'p99 ms':>8} {'p99.9 ms':>9} {'max ms':>8} {'skipped':>8}")
    for n in args.busy:
        hogs = [subprocess.Popen(["nice", "-n", "10", sys.executable, "-c", "while True: pass"], preexec_fn=_normal)
                for _ in range(n)]  # fmt: skip
        try:
            time.sleep(0.5)
            late = lateness(args.seconds, args.rate_hz) * 1e3
        finally:
            for h in hogs:
                h.kill()
                h.wait()
        skipped = int((late >= 1e3 / args.rate_hz).sum())
        print(f"{n:>10} {np.median(late):8.2f} {np.percentile(late, 99):8.2f} {np.percentile(late, 99.9):9.2f} "
              f"{late.max():8.2f} {skipped:>8}")  # fmt: skip


if __name__ == "__main__":
    main()
