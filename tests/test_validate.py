#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Tests of shmrig-validate, the codec conformance kit (tools/validate/), one case a run:

    test_validate.py CASE --exe PATH/shmrig-validate [--source-root DIR]

Cases:
  builtin         `--builtin` passes (exit 0) with every output asked for; the last line,
                  the JSON and the JUnit XML agree on the counts; scripts/report reads the
                  Throughput figures (Google Benchmark JSON) and pairs them with memcpy
  list            `--list` names every check of the catalogue with its level, exit 0
  usage           bad command lines and unusable files: exit 2, a message on stderr
  known_failures  a listed check that passes fails the run (exit 1, "remove it from the
                  known failures"); a listed check that fails is an expected failure, its
                  reason (markup and control characters in it) carried into valid XML
  crash           a check whose child crashes is a FAIL naming SIGSEGV and the check, and
                  the run goes on ($SHMRIG_VALIDATE_SELFTEST=crash)
  hang            a check whose child hangs is a FAIL "timed out after 2 s", the run goes on
                  ($SHMRIG_VALIDATE_SELFTEST=hang)
  plugin          a plugin (tests/plugins/tp_good.so, --plugins DIR) passes with its own
                  generator and equality; plugins that do not load (another ABI, no entry
                  symbol, not a shared object) fail the run, saying why
  overrun         tests/plugins/tp_overrun.so, whose codec writes a byte past content_size,
                  fails Required.Buffers.NoWritePastContent (the codec, the value and the
                  guard's words) and no other required check; the built-in codecs pass it

Exit 0 pass, 1 fail (each problem on its own line). Standard library only.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

sys.dont_write_bytecode = True

SUMMARY = re.compile(r"^(\d+) passed, (\d+) failed, (\d+) skipped, (\d+) expected failures$")
NOT_YET = {"Recommended.Golden.Frames"}
CATALOGUE = [
    ("Required.RoundTrip.InProcess", "required"),
    ("Required.RoundTrip.CrossProcess", "required"),
    ("Required.RoundTrip.Threads", "required"),
    ("Required.Meta.JsonCompatible", "required"),
    ("Recommended.Meta.SizeLimit", "recommended"),
    ("Required.Refs.InBounds", "required"),
    ("Required.Refs.Aligned", "required"),
    ("Required.Buffers.TemporaryFlags", "required"),
    ("Required.Buffers.NoWritePastContent", "required"),
    ("Required.Lifetimes.Accounting", "required"),
    ("Required.Lifetimes.Churn", "required"),
    ("Required.Lifetimes.DecodeTwiceRefused", "required"),
    ("Required.Hostile.Mutations", "required"),
    ("Recommended.Golden.Frames", "recommended"),
    ("Recommended.Throughput", "recommended"),
]
BUILTINS = ["ndarray", "table", "dataset", "bytes"]

problems = []


def check(ok, what):
    if not ok:
        problems.append(what)
    return ok


def run(args, env=None, timeout=900):
    full_env = dict(os.environ)
    full_env.pop("SHMRIG_VALIDATE_SELFTEST", None)
    full_env.update(env or {})
    proc = subprocess.run([ARGS.exe] + args, capture_output=True, text=True, env=full_env,
                          timeout=timeout, errors="replace")
    return proc


def show(proc):
    return f"exit {proc.returncode}\n--- stdout\n{proc.stdout}--- stderr\n{proc.stderr}"


def summary(proc):
    """The counts of the last line of stdout, or None."""
    lines = proc.stdout.strip().splitlines()
    m = SUMMARY.match(lines[-1]) if lines else None
    if not check(m is not None, f"the last line is not the summary:\n{show(proc)}"):
        return None
    return tuple(int(g) for g in m.groups())


def result_lines(proc):
    """(verdict, check, codec, rest) of every result line."""
    out = []
    for line in proc.stdout.splitlines():
        m = re.match(r"^(PASS|FAIL|SKIP|XFAIL) (\S+) \[([^\]]+)\](.*)$", line)
        if m:
            out.append(m.groups())
    return out


def check_reports(proc, json_path, junit_path):
    """The JSON and JUnit files agree with the last line and with each other."""
    counts = summary(proc)
    if counts is None:
        return None
    passed, failed, skipped, xfailed = counts
    with open(json_path, encoding="utf-8") as f:
        doc = json.load(f)
    check(doc.get("schema") == "shmrig-validate/1", f"JSON schema {doc.get('schema')!r}")
    s = doc["summary"]
    check((s["passed"], s["failed"], s["skipped"], s["expected_failures"]) == counts,
          f"JSON summary {s} vs last line {counts}")
    check(s["total"] == len(doc["results"]) == sum(counts),
          f"JSON: {len(doc['results'])} results, total {s['total']}, last line {sum(counts)}")
    by_status = {}
    for r in doc["results"]:
        by_status[r["status"]] = by_status.get(r["status"], 0) + 1
        check(set(r) >= {"check", "codec", "level", "status", "message", "values", "seconds"},
              f"JSON result without the fields: {r}")
    check((by_status.get("pass", 0), by_status.get("fail", 0), by_status.get("skip", 0),
           by_status.get("xfail", 0)) == counts, f"JSON statuses {by_status} vs {counts}")
    check(len(result_lines(proc)) == sum(counts),
          f"{len(result_lines(proc))} result lines, {sum(counts)} counted")

    tree = ET.parse(junit_path)  # raises on XML that is not well-formed
    root = tree.getroot()
    suite = root.find("testsuite")
    check(root.tag == "testsuites" and suite is not None, "JUnit: no testsuites/testsuite")
    cases = suite.findall("testcase")
    n_fail = sum(1 for c in cases if c.find("failure") is not None)
    n_skip = sum(1 for c in cases if c.find("skipped") is not None)
    n_xfail = sum(1 for c in cases if c.find("skipped") is not None and
                  c.find("skipped").get("message", "").startswith("expected failure"))
    for element in (root, suite):
        check(int(element.get("tests")) == len(cases) == sum(counts),
              f"JUnit {element.tag}: tests {element.get('tests')}, {len(cases)} cases, "
              f"{sum(counts)} counted")
        check(int(element.get("failures")) == n_fail == failed,
              f"JUnit {element.tag}: failures {element.get('failures')}, {n_fail} cases, "
              f"{failed} on the last line")
        check(int(element.get("skipped")) == n_skip == skipped + xfailed,
              f"JUnit {element.tag}: skipped {element.get('skipped')}, {n_skip} cases, "
              f"{skipped} + {xfailed} on the last line")
    check(n_xfail == xfailed, f"JUnit: {n_xfail} expected failures, {xfailed} on the last line")
    check(len(cases) - n_fail - n_skip == passed, "JUnit: passing cases differ")
    return doc, root


def case_builtin(tmp):
    json_path, junit_path, bench_path = (os.path.join(tmp, n) for n in
                                         ("v.json", "v.xml", "bench.json"))
    proc = run(["--builtin", "--json", json_path, "--junit", junit_path, "--bench-json",
                bench_path])
    check(proc.returncode == 0, f"--builtin does not pass:\n{show(proc)}")
    reports = check_reports(proc, json_path, junit_path)
    if reports:
        doc = reports[0]
        ran = {(r["check"], r["codec"]): r for r in doc["results"]}
        for name, _ in CATALOGUE:
            for codec in BUILTINS:
                r = ran.get((name, codec))
                if not check(r is not None, f"{name} [{codec}] was not reported"):
                    continue
                want = "skip" if name in NOT_YET else "pass"
                check(r["status"] == want, f"{name} [{codec}]: {r['status']}, want {want}: "
                      f"{r['message']}")
    # scripts/report reads the figures as Google Benchmark JSON and pairs each with memcpy
    report = os.path.join(ARGS.source_root, "scripts", "report")
    proc = subprocess.run([sys.executable, report, bench_path], capture_output=True, text=True)
    check(proc.returncode == 0, f"scripts/report refuses the --bench-json file:\n{show(proc)}")
    for codec in BUILTINS:
        check(re.search(rf"codec/{codec}/encode/1048576 .*memcpy", proc.stdout) is not None,
              f"scripts/report has no {codec} encode row against memcpy:\n{proc.stdout}")
    sys.path.insert(0, os.path.join(ARGS.source_root, "scripts", "lib"))
    import results  # scripts/lib/results.py: the loader scripts/compare uses
    bench = results.load(bench_path)
    runs = results.iterations(bench, bench_path)
    names = {r["name"] for r in runs}
    for size in (1024, 1048576, 67108864):
        for codec in BUILTINS:
            for op in ("encode", "decode"):
                check(f"codec/{codec}/{op}/{size}" in names, f"no codec/{codec}/{op}/{size}")
        check(f"codec/memcpy/{size}" in names, f"no codec/memcpy/{size}")
    check(all(r["error"] is None for r in runs), "a benchmark record says error")


def case_list(tmp):
    proc = run(["--list"])
    check(proc.returncode == 0, f"--list: {show(proc)}")
    lines = proc.stdout.splitlines()
    check(len(lines) == len(CATALOGUE), f"--list: {len(lines)} lines, want {len(CATALOGUE)}")
    for (name, level), line in zip(CATALOGUE, lines):
        check(re.match(rf"^{re.escape(name)}\s+{level}\s+\S", line) is not None,
              f"--list: {line!r}, want {name} {level} and a description")
    for name in NOT_YET:
        check(any(line.startswith(name) and "not yet" in line for line in lines),
              f"--list does not say {name} is not there yet")
    proc = run(["--list", "--level", "required"])
    check(proc.returncode == 0 and "Recommended" not in proc.stdout,
          f"--list --level required:\n{show(proc)}")
    proc = run(["--help"])
    check(proc.returncode == 0 and "--known-failures" in proc.stdout, f"--help:\n{show(proc)}")


def case_usage(tmp):
    missing_dir = os.path.join(tmp, "no", "such", "dir")
    unreadable = os.path.join(tmp, "nothing-here.so")
    cases = [
        (["--bogus"], "unknown option"),
        (["--builtin", "--values", "0"], "--values"),
        (["--builtin", "--values", "x"], "--values"),
        (["--builtin", "--timeout", "-1"], "--timeout"),
        (["--builtin", "--timeout", "nan"], "--timeout"),
        (["--builtin", "--seed", "-1"], "--seed"),
        (["--builtin", "--repetitions", "0"], "--repetitions"),
        (["--builtin", "--max-bytes", "12"], "--max-bytes"),
        (["--builtin", "--level", "optional"], "--level"),
        (["--builtin", "--check", "(unclosed"], "not a regular expression"),
        (["--builtin", "--check", "NoSuchCheck"], "matches no check"),
        (["--builtin", "--seed"], "needs a value"),
        (["--builtin", "no_such_codec"], "no codec 'no_such_codec'"),
        (["--builtin", "--json", os.path.join(missing_dir, "x.json")], "no such directory"),
        (["--builtin", "--junit", tmp], "a directory"),
        (["--builtin", "--prefix", "bad/prefix"], "--prefix"),
        (["--builtin", "--known-failures", unreadable], "cannot read"),
        ([unreadable], "cannot read"),
        ([], "--builtin, or a PLUGIN.so"),
        (["--list", "--builtin", "extra"], "--list"),
    ]
    for args, words in cases:
        proc = run(args)
        check(proc.returncode == 2, f"{args}: exit {proc.returncode}, want 2:\n{show(proc)}")
        check(words in proc.stderr, f"{args}: stderr does not say {words!r}:\n{show(proc)}")
    # bad known-failures lines name the file and the line
    bad_lines = [
        ("Required.No.Such.Check # why", "no check named"),
        ("Required.RoundTrip.InProcess bytes # why", "is not [CODEC]"),
        ("Required.RoundTrip.InProcess [bytes] [table]", "is not [CODEC]"),
        ("Required.RoundTrip.InProcess [nocodec] # why", "no codec 'nocodec'"),
        ("Required.RoundTrip.InProcess\nRequired.RoundTrip.InProcess", "listed already"),
    ]
    for text, words in bad_lines:
        path = os.path.join(tmp, "known.txt")
        with open(path, "w", encoding="utf-8") as f:
            f.write("# a comment\n\n" + text + "\n")
        proc = run(["--builtin", "--known-failures", path])
        line = 4 if "\n" in text else 3
        check(proc.returncode == 2, f"known-failures {text!r}: exit {proc.returncode}\n"
              f"{show(proc)}")
        check(f"{path}:{line}:" in proc.stderr and words in proc.stderr,
              f"known-failures {text!r}: stderr does not name {path}:{line} and say "
              f"{words!r}:\n{show(proc)}")


def case_known_failures(tmp):
    json_path, junit_path = os.path.join(tmp, "k.json"), os.path.join(tmp, "k.xml")
    known = os.path.join(tmp, "known.txt")
    reason = "crashes <on purpose> & \"quoted\" 'too' \x01 é"
    with open(known, "w", encoding="utf-8") as f:
        f.write("# expected failures of this run\n")
        f.write(f"Required.RoundTrip.InProcess [bytes]   # {reason}\n")
        f.write("Required.Refs.Aligned [bytes] # listed, but it passes\n")
    proc = run(["--builtin", "bytes", "--check", "InProcess|Refs.Aligned", "--values", "5",
                "--known-failures", known, "--json", json_path, "--junit", junit_path],
               env={"SHMRIG_VALIDATE_SELFTEST": "crash"})
    check(proc.returncode == 1, f"a known failure that passes must fail the run:\n{show(proc)}")
    check("Required.Refs.Aligned [bytes] passes now: remove it from the known failures"
          in proc.stdout, f"no 'passes now' message:\n{show(proc)}")
    check(re.search(r"^XFAIL Required.RoundTrip.InProcess \[bytes\]: crashes <on purpose>",
                    proc.stdout, re.M) is not None, f"no XFAIL line with the reason:\n"
          f"{show(proc)}")
    check(summary(proc) == (0, 1, 0, 1), f"counts {summary(proc)}, want (0, 1, 0, 1)")
    reports = check_reports(proc, json_path, junit_path)
    if reports:
        doc, root = reports
        xfail = [r for r in doc["results"] if r["status"] == "xfail"]
        check(len(xfail) == 1 and xfail[0]["known_failure"]["reason"] == reason.strip(),
              f"JSON: the expected failure's reason {xfail}")
        skipped = root.find("testsuite").find("testcase/skipped")
        check(skipped is not None and
              skipped.get("message") == "expected failure: " + reason.replace("\x01", "\\x01"),
              f"JUnit: the expected failure's message {skipped.get('message')!r}")
    # a passing check listed alone: exit 1, the message
    with open(known, "w", encoding="utf-8") as f:
        f.write("Required.Refs.Aligned # every codec: listed, but it passes\n")
    proc = run(["--builtin", "ndarray", "--check", "Refs.Aligned", "--values", "5",
                "--known-failures", known])
    check(proc.returncode == 1 and "Required.Refs.Aligned [ndarray] passes now: remove it "
          "from the known failures" in proc.stdout, f"listed and passing:\n{show(proc)}")


def case_crash(tmp):
    json_path, junit_path = os.path.join(tmp, "c.json"), os.path.join(tmp, "c.xml")
    proc = run(["--builtin", "--check", "RoundTrip.InProcess|Refs.Aligned", "--values", "5",
                "--json", json_path, "--junit", junit_path],
               env={"SHMRIG_VALIDATE_SELFTEST": "crash:Required.RoundTrip.InProcess"})
    check(proc.returncode == 1, f"a crashing check must fail the run:\n{show(proc)}")
    lines = result_lines(proc)
    for codec in BUILTINS:
        check(("FAIL", "Required.RoundTrip.InProcess", codec) in
              [(v, c, k) for v, c, k, rest in lines if "SIGSEGV" in rest and
               f"in Required.RoundTrip.InProcess [{codec}]" in rest],
              f"no FAIL naming SIGSEGV and the check for {codec}:\n{show(proc)}")
        # the run went on after the crashes
        check(("PASS", "Required.Refs.Aligned", codec) in [(v, c, k) for v, c, k, _ in lines],
              f"Required.Refs.Aligned [{codec}] did not run after the crash:\n{show(proc)}")
    check(summary(proc) == (4, 4, 0, 0), f"counts {summary(proc)}, want (4, 4, 0, 0)")
    check_reports(proc, json_path, junit_path)


def case_hang(tmp):
    proc = run(["--builtin", "ndarray", "--check", "RoundTrip.InProcess|Refs.Aligned",
                "--values", "5", "--timeout", "2"],
               env={"SHMRIG_VALIDATE_SELFTEST": "hang:Required.RoundTrip.InProcess"})
    check(proc.returncode == 1, f"a hanging check must fail the run:\n{show(proc)}")
    check(re.search(r"^FAIL Required.RoundTrip.InProcess \[ndarray\] .*timed out after 2 s",
                    proc.stdout, re.M) is not None, f"no 'timed out' FAIL:\n{show(proc)}")
    check(re.search(r"^PASS Required.Refs.Aligned \[ndarray\]", proc.stdout, re.M) is not None,
          f"the run did not go on after the hang:\n{show(proc)}")
    check(summary(proc) == (1, 1, 0, 0), f"counts {summary(proc)}, want (1, 1, 0, 0)")


def case_plugin(tmp):
    if not ARGS.plugins:
        print("no --plugins directory: skipped")
        sys.exit(77)
    good = os.path.join(ARGS.plugins, "tp_good.so")
    json_path, junit_path = os.path.join(tmp, "p.json"), os.path.join(tmp, "p.xml")
    proc = run([good, "--json", json_path, "--junit", junit_path])
    check(proc.returncode == 0, f"tp_good.so does not pass:\n{show(proc)}")
    check(proc.stdout.startswith("shmrig-validate: plugin 'tp_good' 1.2.3 ("),
          f"the header does not name the plugin:\n{show(proc)}")
    reports = check_reports(proc, json_path, junit_path)
    if reports:
        doc = reports[0]
        check(doc["plugin"] == good, f"JSON plugin {doc['plugin']!r}")
        for name, _ in CATALOGUE:
            r = [r for r in doc["results"] if r["check"] == name and r["codec"] == "tp.blob"]
            want = "skip" if name in NOT_YET else "pass"
            check(len(r) == 1 and r[0]["status"] == want,
                  f"{name} [tp.blob]: {r}, want {want}")
    proc = run([good, "tp.nothing"])
    check(proc.returncode == 2 and "no codec 'tp.nothing'" in proc.stderr,
          f"an unknown codec of the plugin:\n{show(proc)}")
    # plugins that do not load fail the run, with the loader's words
    for path, words in ((os.path.join(ARGS.plugins, "tp_abi2.so"), "ABI 2"),
                        (os.path.join(ARGS.plugins, "tp_noentry.so"), "cannot load"),
                        (ARGS.exe, "cannot load")):
        proc = run([path])
        check(proc.returncode == 1 and words in proc.stderr,
              f"{path}: exit {proc.returncode}, want 1 and {words!r}:\n{show(proc)}")


def case_overrun(tmp):
    if not ARGS.plugins:
        print("no --plugins directory: skipped")
        sys.exit(77)
    overrun = os.path.join(ARGS.plugins, "tp_overrun.so")
    check_name = "Required.Buffers.NoWritePastContent"
    # the check alone: FAIL, naming the codec, the value and where the guard changed
    proc = run([overrun, "--check", "NoWritePastContent"])
    check(proc.returncode == 1, f"tp_overrun.so must fail NoWritePastContent:\n{show(proc)}")
    lines = result_lines(proc)
    check([(v, c, k) for v, c, k, _ in lines] == [("FAIL", check_name, "tp.overrun")],
          f"want one FAIL of {check_name} [tp.overrun]:\n{show(proc)}")
    check(re.search(r"^FAIL Required\.Buffers\.NoWritePastContent \[tp\.overrun\] "
                    r"\(0 values, [0-9.]+ s\): value 0 \(bytes edge case 0\): "
                    r"codec 'tp\.overrun' wrote past content_size of buffer 0 "
                    r"\(1 bytes, first at offset \+0\)$", proc.stdout, re.M) is not None,
          f"the FAIL does not name the value, the codec and the guard's bytes:\n{show(proc)}")
    check(summary(proc) == (0, 1, 0, 0), f"counts {summary(proc)}, want (0, 1, 0, 0)")
    # every required check: that one fails, and only that one (the codec is right otherwise)
    proc = run([overrun, "--level", "required"])
    check(proc.returncode == 1, f"tp_overrun.so --level required:\n{show(proc)}")
    failed = [c for v, c, k, _ in result_lines(proc) if v == "FAIL"]
    check(failed == [check_name], f"failed {failed}, want [{check_name}] only:\n{show(proc)}")
    passed = [c for v, c, k, _ in result_lines(proc) if v == "PASS"]
    want = [name for name, level in CATALOGUE if level == "required" and name != check_name]
    check(passed == want, f"passed {passed}, want {want}:\n{show(proc)}")
    # the built-in codecs write nothing past their content
    proc = run(["--builtin", "--check", "NoWritePastContent"])
    check(proc.returncode == 0, f"--builtin fails NoWritePastContent:\n{show(proc)}")
    lines = result_lines(proc)
    check(sorted((v, c, k) for v, c, k, _ in lines) ==
          sorted(("PASS", check_name, codec) for codec in BUILTINS),
          f"want {check_name} to pass for every built-in codec:\n{show(proc)}")
    check(all("buffers guarded, none written past content_size" in rest
              for _, _, _, rest in lines), f"the PASS lines do not count the guards:\n"
          f"{show(proc)}")


CASES = {"builtin": case_builtin, "list": case_list, "usage": case_usage,
         "known_failures": case_known_failures, "crash": case_crash, "hang": case_hang,
         "plugin": case_plugin, "overrun": case_overrun}


def main():
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("case", choices=sorted(CASES))
    parser.add_argument("--exe", required=True)
    parser.add_argument("--source-root", default=os.path.join(os.path.dirname(__file__), ".."))
    parser.add_argument("--plugins", help="the directory of the test plugins (tp_*.so)")
    ARGS = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="test_validate.") as tmp:
        CASES[ARGS.case](tmp)
    for p in problems:
        print(f"FAIL: {p}")
    print(f"{ARGS.case}: {'ok' if not problems else f'{len(problems)} problems'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
