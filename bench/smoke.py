#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Run every benchmark family of shmrig-bench once, at its first (smallest)
argument, and fail if any row stopped with an error.

A row may stop for two reasons: the machine lacks what it measures (its
message starts with "skipped: ", bench_unavailable(): no hugepages, one NUMA
node, one CPU; for a peer row, the peer library not built in, or a transport
the peer says cannot run here), or something failed
(bench_fail(): "failed: ..."; anything else is taken as a failure too). Only
the first is allowed: a suite whose decode rows all fail must not pass.

Usage: smoke.py SHMRIG_BENCH. Exit 0: every row ran or was skipped for the
machine; 1: rows failed (listed); 2: the binary could not be run.
"""
import json
import re
import subprocess
import sys
import tempfile


def main(binary):
    listed = subprocess.run([binary, "--benchmark_list_tests"], capture_output=True,
                            text=True, timeout=60)
    if listed.returncode != 0:
        print(f"smoke: {binary} --benchmark_list_tests failed: {listed.stderr.strip()}")
        return 2
    first = {}
    for name in listed.stdout.split():
        family = re.sub(r"/\d+(?=/|$)", "/N", name)
        first.setdefault(family, name)
    pattern = "^(" + "|".join(re.escape(n) for n in first.values()) + ")$"
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        run = subprocess.run([binary, f"--benchmark_filter={pattern}",
                              "--benchmark_min_time=0.001", f"--benchmark_out={out.name}",
                              "--benchmark_out_format=json"],
                             capture_output=True, text=True, timeout=600)
        if run.returncode != 0:
            print(f"smoke: shmrig-bench exited {run.returncode}: {run.stderr.strip()[-2000:]}")
            return 1
        rows = json.load(open(out.name)).get("benchmarks", [])
    failed, skipped = [], []
    for row in rows:
        if not row.get("error_occurred"):
            continue
        message = row.get("error_message", "")
        (skipped if message.startswith("skipped: ") else failed).append((row["name"], message))
    ran = {row["name"] for row in rows}
    missing = sorted(set(first.values()) - ran)
    for name, message in skipped:
        print(f"skip  {name}: {message}")
    for name, message in failed:
        print(f"FAIL  {name}: {message}")
    for name in missing:
        print(f"FAIL  {name}: listed but not run")
    print(f"smoke: {len(first)} families, {len(ran) - len(failed) - len(skipped)} ran, "
          f"{len(skipped)} skipped for this machine, {len(failed) + len(missing)} failed")
    return 1 if failed or missing else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: smoke.py SHMRIG_BENCH", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
