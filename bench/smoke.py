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

A round-trip row that ran (ROUND_TRIP below) must carry the counters p50_us and
p99_us (bench/common.c's histogram), each a finite number > 0, p50 <= p99.

Usage: smoke.py SHMRIG_BENCH [--reference]. With --reference the suite runs with
SHMRIG_BENCH_REFERENCE=1 (scripts/compare's reference, bench/gbench.h), and a row that ran
without a positive ref_ns and ref_n counter fails too: every body, the ones that pause their
timer included, runs with the reference slices between its batches. Exit 0: every row ran
or was skipped for the machine; 1: rows failed (listed); 2: the binary could not be run.
"""
import json
import math
import os
import re
import subprocess
import sys
import tempfile


# Rows that record each round trip (bench_lat_counters()), named without "/manual_time".
ROUND_TRIP = re.compile(r"^(channel/(pipe|uring|ring)/rtt|channel/pingpong_twin/rtt"
                        r"|channel/(ring|pipe)/rtt_hogs/\d+|session/\w+/echo/\d+"
                        r"|session/(pipe_bytes_twin|copy_2proc_twin)/\d+"
                        r"|peer/iceoryx/echo/\d+|peer/ucx/\w+/rtt/\d+"
                        r"|peer/seed_python/echo/\d+|channel/ucx/\w+/rtt/\d+)$")


def latency_problem(row):
    """Why a round-trip row's p50_us / p99_us are wrong, or None."""
    values = [row.get(name) for name in ("p50_us", "p99_us")]
    if not all(isinstance(v, (int, float)) and math.isfinite(v) and v > 0 for v in values):
        return f"p50_us {values[0]!r}, p99_us {values[1]!r}: want two numbers > 0"
    if values[0] > values[1]:
        return f"p50_us {values[0]} above p99_us {values[1]}"
    return None


def main(binary, reference):
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
                              "--benchmark_min_time=0.001", "--benchmark_repetitions=2",
                              f"--benchmark_out={out.name}",
                              "--benchmark_out_format=json"],
                             capture_output=True, text=True, timeout=600,
                             env=dict(os.environ, SHMRIG_BENCH_REFERENCE="1" if reference else "0"))
        if run.returncode != 0:
            print(f"smoke: shmrig-bench exited {run.returncode}: {run.stderr.strip()[-2000:]}")
            return 1
        # strict JSON, as shmrig-plan (jansson) reads it: no NaN or Infinity (a
        # counter 0 in every repetition has a cv of NaN); two repetitions, so
        # that the aggregates are there to be read
        def refuse(constant):
            raise ValueError(f"{constant} in shmrig-bench's JSON")
        try:
            rows = json.load(open(out.name), parse_constant=refuse).get("benchmarks", [])
        except ValueError as err:
            print(f"smoke: {err}")
            return 1
        rows = [row for row in rows if row.get("run_type") != "aggregate"]
    failed, skipped = [], []
    for row in rows:
        if not row.get("error_occurred"):
            name = re.sub(r"/manual_time$", "", row["name"])
            problem = latency_problem(row) if ROUND_TRIP.match(name) else None
            if problem:
                failed.append((row["name"], problem))
            if reference and not (row.get("ref_ns", 0) > 0 and row.get("ref_n", 0) >= 1):
                failed.append((row["name"], f"no reference counters: ref_ns {row.get('ref_ns')}, "
                                            f"ref_n {row.get('ref_n')}"))
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
    if len(sys.argv) not in (2, 3) or sys.argv[2:] not in ([], ["--reference"]):
        print("usage: smoke.py SHMRIG_BENCH [--reference]", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2:] == ["--reference"]))
