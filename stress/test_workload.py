#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The tests of shmrig-stress --workload (stress/meson.build), one case a run:

  test_workload.py run EXE WORKLOAD PREFIX [ARGS...]
      a short replay: exit 0, and the --json report has every field of the
      contract shmrig-plan --verify reads (stress/README.md), of the right type
  test_workload.py bad-file EXE PREFIX
      workload files with an error: exit 2, and the message names the field path

Exit 0 pass, 1 fail.
"""
import json
import os
import subprocess
import sys
import tempfile

NUMBER = (int, float)
CONTRACT = {
    "kind": str, "workload": str, "duration_s": NUMBER, "rate_scale": NUMBER, "seed": int,
    "offered_rate": NUMBER, "achieved_rate": NUMBER, "messages": int, "enomem": int,
    "checksum_failures": int, "lost_blocks": int, "latency_us": dict,
    "sample_interval_ms": NUMBER, "samples": int, "classes": list, "large": dict,
    "flows": list, "occupancy": list, "replay_own_us_per_message": NUMBER,
}
PERCENTILES = ("p50", "p99", "p999", "max")


def problems_of(report, workload):
    bad = []
    for key, kind in CONTRACT.items():
        if not isinstance(report.get(key), kind) or isinstance(report.get(key), bool):
            bad.append("%s: missing or not %s" % (key, kind))
    if bad:
        return bad
    if report["kind"] != "shmrig-stress-workload":
        bad.append("kind is %r" % report["kind"])
    for p in PERCENTILES:
        if not isinstance(report["latency_us"].get(p), NUMBER):
            bad.append("latency_us.%s missing" % p)
    for i, c in enumerate(report["classes"]):
        for key in ("class", "block_size", "live_mean", "live_p99", "live_p999", "live_max"):
            if not isinstance(c.get(key), NUMBER):
                bad.append("classes[%d].%s missing" % (i, key))
    for key in ("live_mean", "live_p99", "live_max"):
        if not isinstance(report["large"].get(key), NUMBER):
            bad.append("large.%s missing" % key)
    names = [f["name"] for f in workload["flows"]]
    if [f.get("name") for f in report["flows"]] != names:
        bad.append("flows are %r, the file's %r" % ([f.get("name") for f in report["flows"]], names))
    for f in report["flows"]:
        for key in ("offered_rate", "achieved_rate"):
            if not isinstance(f.get(key), NUMBER):
                bad.append("flows[%s].%s missing" % (f.get("name"), key))
        for p in PERCENTILES:
            if not isinstance(f.get("latency_us", {}).get(p), NUMBER):
                bad.append("flows[%s].latency_us.%s missing" % (f.get("name"), p))
    occupancy = report["occupancy"]
    if not 0 < len(occupancy) <= 1000 or any(len(point) != 3 for point in occupancy):
        bad.append("occupancy: %d points, or not [t_s, blocks, bytes]" % len(occupancy))
    # what a clean short run must show
    if report["messages"] <= 0 or report["achieved_rate"] <= 0:
        bad.append("no message went through")
    if report["checksum_failures"] or report["lost_blocks"]:
        bad.append("checksum failures or lost blocks")
    if report["samples"] <= 0 or not any(c["live_max"] > 0 for c in report["classes"]):
        bad.append("no sample saw a live block")
    if not report["latency_us"]["p50"] <= report["latency_us"]["p99"] <= report["latency_us"]["max"]:
        bad.append("latency percentiles out of order: %r" % report["latency_us"])
    return bad


def run_case(exe, workload_path, prefix, extra):
    with tempfile.TemporaryDirectory(prefix="hs_wl_") as tmp:
        out = os.path.join(tmp, "report.json")
        cmd = [exe, "--workload", workload_path, "--prefix", prefix, "--quiet", "--json", out] + extra
        print("$", " ".join(cmd), flush=True)
        status = subprocess.run(cmd).returncode
        if status != 0:
            print("FAIL: exit status %d, want 0" % status)
            return 1
        with open(out) as f:
            report = json.load(f)
    with open(workload_path) as f:
        workload = json.load(f)
    bad = problems_of(report, workload)
    for problem in bad:
        print("FAIL:", problem)
    return 1 if bad else 0


# (file contents, words the message must have: the field path)
BAD_FILES = [
    ('{"flows": [{"rate": 1000, "sizes": "1:64-128", "windw": 8}]}', "flows[0]"),
    ('{"flows": [{"rate": -5, "sizes": "1:64-128"}]}', "flows[0].rate"),
    ('{"flows": [{"rate": 100, "sizes": "1:64-"}]}', "flows[0].sizes"),
    ('{"flows": [{"rate": 100, "sizes": [[64, 1]], "codec": "protobuf"}]}', "flows[0].codec"),
    ('{"flows": [', ""),
]


def bad_file_case(exe, prefix):
    failures = 0
    with tempfile.TemporaryDirectory(prefix="hs_wl_") as tmp:
        path = os.path.join(tmp, "bad.json")
        cases = BAD_FILES + [(None, "")]
        for text, words in cases:
            if text is None:
                path = os.path.join(tmp, "missing.json")  # no such file
            else:
                with open(path, "w") as f:
                    f.write(text)
            r = subprocess.run([exe, "--workload", path, "--duration", "1", "--prefix", prefix,
                                "--quiet"], capture_output=True, text=True)
            said = r.stdout + r.stderr
            ok = r.returncode == 2 and "--workload" in said and words in said and path in said
            print("%s: %r -> exit %d: %s" % ("ok" if ok else "FAIL", text, r.returncode,
                                            said.strip()))
            failures += not ok
    # options the file decides are refused with it
    r = subprocess.run([exe, "--workload", "x.json", "--backend", "pipe", "--prefix", prefix],
                       capture_output=True, text=True)
    ok = r.returncode == 2 and "--backend does not go with --workload" in r.stderr
    print("%s: --backend with --workload -> exit %d: %s" % ("ok" if ok else "FAIL", r.returncode,
                                                          r.stderr.strip()))
    return 1 if failures or not ok else 0


def main(argv):
    if len(argv) >= 5 and argv[1] == "run":
        return run_case(argv[2], argv[3], argv[4], argv[5:])
    if len(argv) == 4 and argv[1] == "bad-file":
        return bad_file_case(argv[2], argv[3])
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
