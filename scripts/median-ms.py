#!/usr/bin/env python3
"""Median wall time in ms of a command over RUNS runs, after one warm-up run (output discarded).

Usage: scripts/median-ms.py RUNS COMMAND [ARG...]   (used by bench.sh and release-check.sh)
"""
import statistics
import subprocess
import sys
import time

runs = int(sys.argv[1])
cmd = sys.argv[2:]
quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "check": True}
subprocess.run(cmd, **quiet)
times = []
for _ in range(runs):
    started = time.perf_counter()
    subprocess.run(cmd, **quiet)
    times.append((time.perf_counter() - started) * 1000)
print(f"{statistics.median(times):.1f}")
