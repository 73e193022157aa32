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
  golden          Recommended.Golden.Frames: the built-in codecs' committed golden frames
                  pass (--golden, and found from the build tree); damaged and lying copies
                  of one (a flipped byte, truncated, a lying buffer count...) are a FAIL
                  naming the file and why; frames of tests/plugins/tp_golden_v1.so fail
                  under tp_golden_v2.so (the same format read differently); --write-golden
                  keeps what is there and adds after it; a plugin's golden_dir
  golden_fuzz     mutated golden files (bit flips, truncation, lying counts and lengths,
                  with and without the CRC made right): PASS or FAIL, never a crash or hang

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
NOT_YET = set()
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
            # tp_good names a golden_dir it does not ship: Golden.Frames skips, saying so
            want = "skip" if name in NOT_YET or name == GOLDEN else "pass"
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


# ---- golden frames (Recommended.Golden.Frames, --write-golden; tools/validate/golden.h) ----

GOLDEN = "Recommended.Golden.Frames"
GF_HEADER = 224  # golden.h: the header; then the value, the frame, the buffers (each padded to 8)
GF_CRC, GF_LEN, GF_VERSION = 12, 16, 8
GF_VALUE_LEN, GF_FRAME_LEN, GF_NBUFFERS = 208, 212, 216
FRAME_HEADER, REF_SIZE = 24, 96  # shmrig/frame.h, struct shmrig_ref
REF_SIZE_FIELD, REF_CONTENT_SIZE, REF_TEMPORARY = 72, 80, 92


def pad8(n):
    return (n + 7) & ~7


def gf_fix(data, fix_len=False):
    """The golden file with its CRC (and, if asked, its length field) made right again."""
    import zlib
    data = bytearray(data)
    if fix_len and len(data) >= 24:
        data[GF_LEN:GF_LEN + 8] = len(data).to_bytes(8, "little")
    if len(data) >= 16:
        data[GF_CRC:GF_CRC + 4] = (zlib.crc32(bytes(data[:GF_CRC]) + b"\0" * 4 +
                                              bytes(data[GF_CRC + 4:])) & 0xffffffff
                                   ).to_bytes(4, "little")
    return bytes(data)


def gf_u32(data, off):
    return int.from_bytes(data[off:off + 4], "little")


def gf_layout(data):
    """Offsets of the frame, of each ref and of each buffer of a well-formed golden file."""
    frame = GF_HEADER + pad8(gf_u32(data, GF_VALUE_LEN))
    nbuffers = gf_u32(data, GF_NBUFFERS)
    refs = [frame + FRAME_HEADER + i * REF_SIZE for i in range(nbuffers)]
    at, buffers = frame + pad8(gf_u32(data, GF_FRAME_LEN)), []
    for ref in refs:
        content = int.from_bytes(data[ref + REF_CONTENT_SIZE:ref + REF_CONTENT_SIZE + 8],
                                 "little")
        buffers.append((at, content))
        at += pad8(content)
    return frame, refs, buffers


def golden_run(args, what):
    """Run the kit on the Golden check; its result lines, never a crash, hang or lost verdict."""
    proc = run(args + ["--check", "Golden.Frames"])
    lines = result_lines(proc)
    check(proc.returncode in (0, 1) and lines, f"{what}: exit {proc.returncode}:\n{show(proc)}")
    for verdict, name, codec, rest in lines:
        check(name == GOLDEN, f"{what}: a line of {name}:\n{show(proc)}")
        check(not any(w in rest for w in ("killed by", "timed out", "exited with status",
                                          "gave no verdict", "without a verdict")),
              f"{what}: the check's process did not end with a verdict:\n{show(proc)}")
        check("leave blocks live" not in rest and "pool_close" not in rest,
              f"{what}: a golden file left blocks behind:\n{show(proc)}")
    return proc, lines


def builtin_golden_files(codec=None):
    src = os.path.join(ARGS.source_root, "tools", "validate", "golden", "builtin")
    names = sorted(n for n in os.listdir(src) if n.endswith(".golden") and
                   (codec is None or re.match(rf"^{re.escape(codec)}-\d+\.golden$", n)))
    return src, names


def case_golden(tmp):
    src, names = builtin_golden_files()
    check(len(names) >= 4 * 4, f"{src}: {len(names)} golden files, want a few a codec")
    total = sum(os.path.getsize(os.path.join(src, n)) for n in names)
    check(total < 200 * 1024 and all(os.path.getsize(os.path.join(src, n)) <= 64 * 1024
                                     for n in names),
          f"{src}: {total} bytes in all, want small files under 200 KiB")

    # the committed golden frames of the built-in codecs pass, named with --golden and found
    # from the build directory without it
    for args, where in ((["--golden", src], "--golden"), ([], "the build tree")):
        proc, lines = golden_run(["--builtin"] + args, f"--builtin ({where})")
        check(proc.returncode == 0, f"--builtin Golden.Frames ({where}):\n{show(proc)}")
        for codec in BUILTINS:
            n = len(builtin_golden_files(codec)[1])
            mine = [(v, rest) for v, c, k, rest in lines if k == codec]
            m = re.search(rf": {n} golden files in (.*)$", mine[0][1]) if len(mine) == 1 else None
            check(m is not None and mine[0][0] == "PASS" and
                  os.path.realpath(m.group(1)) == os.path.realpath(src),
                  f"{codec} ({where}): want PASS of its {n} golden files in {src}:\n{show(proc)}")

    # a damaged or lying copy of one golden file: a FAIL naming the file and why
    with open(os.path.join(src, "table-003.golden"), "rb") as f:
        good = f.read()
    frame, refs, buffers = gf_layout(good)

    def flipped(data, off, bit=0x01):
        data = bytearray(data)
        data[off] ^= bit
        return bytes(data)

    def put32(data, off, value):
        data = bytearray(data)
        data[off:off + 4] = value.to_bytes(4, "little")
        return bytes(data)

    meta = frame + FRAME_HEADER + len(refs) * REF_SIZE
    corruptions = [
        ("a flipped byte in the frame", flipped(good, meta + 3), "damaged: its CRC-32"),
        ("a flipped byte in the frame's version, the CRC made right",
         gf_fix(flipped(good, frame + 4, 0x02)), "its frame does not parse"),
        ("a flipped byte in a column, the CRC made right",
         gf_fix(flipped(good, buffers[0][0] + buffers[0][1] - 1)), "decodes to another value"),
        ("a flipped temporary flag, the CRC made right",
         gf_fix(flipped(good, refs[0] + REF_TEMPORARY)), "decode"),
        ("a truncated file", good[:len(good) // 2], "truncated"),
        ("a truncated file whose header says so", gf_fix(good[:len(good) - 8], fix_len=True),
         "bytes left in the file"),
        ("a lying buffer count", gf_fix(put32(good, GF_NBUFFERS, gf_u32(good, GF_NBUFFERS) + 1)),
         "buffers, the frame"),
        ("a lying buffer count in the frame",
         gf_fix(put32(good, frame + 8, gf_u32(good, frame + 8) + 1000)),
         "its frame does not parse"),
        ("a lying frame length", gf_fix(put32(good, GF_FRAME_LEN, 0xfffffff0)),
         "does not fit"),
        ("a lying content size", gf_fix(put32(good, refs[-1] + REF_CONTENT_SIZE, 1 << 30)),
         "its frame does not parse"),
        ("another format version", gf_fix(put32(good, GF_VERSION, 2)), "format version 2"),
        ("not a golden file", b"hello, this is not a golden file\n", "not a golden file"),
        ("an empty file", b"", "not a golden file"),
    ]
    with open(os.path.join(src, "bytes-001.golden"), "rb") as f:
        corruptions.append(("a golden file of another codec", f.read(),
                            "written for codec 'bytes'"))
    for i, (what, data, words) in enumerate(corruptions):
        d = os.path.join(tmp, f"corrupt{i}")
        os.mkdir(d)
        path = os.path.join(d, "table-003.golden")
        with open(path, "wb") as f:
            f.write(data)
        proc, lines = golden_run(["--builtin", "table", "--golden", d], what)
        check(proc.returncode == 1 and len(lines) == 1 and lines[0][0] == "FAIL" and
              f"{path}: " in lines[0][3] and words in lines[0][3],
              f"{what}: want a FAIL naming {path} and saying {words!r}:\n{show(proc)}")

    # a change of format: golden frames of tp_golden 1.0 fail under 2.0, which reads the
    # same frames differently; both pass their own round trips
    if not ARGS.plugins:
        return
    v1, v2 = (os.path.join(ARGS.plugins, f"tp_golden_v{v}.so") for v in (1, 2))
    gdir = os.path.join(tmp, "tp_golden")
    proc = run(["--write-golden", gdir, v1])
    written = sorted(os.listdir(gdir)) if os.path.isdir(gdir) else []
    check(proc.returncode == 0 and "tp.series: 7 golden files written, 0 unchanged" in proc.stdout
          and written == [f"tp.series-{i:03d}.golden" for i in range(7)],
          f"--write-golden {v1}: {written}:\n{show(proc)}")
    proc, lines = golden_run([v1, "--golden", gdir], "tp_golden 1.0, its own golden frames")
    check(proc.returncode == 0 and [l[0] for l in lines] == ["PASS"],
          f"tp_golden 1.0 must pass its own golden frames:\n{show(proc)}")
    proc, lines = golden_run([v2, "--golden", gdir], "tp_golden 2.0, 1.0's golden frames")
    check(proc.returncode == 1 and [l[0] for l in lines] == ["FAIL"] and
          "decodes to another value than it holds" in lines[0][3] and
          "(written by tp_golden 1.0)" in lines[0][3] and gdir in lines[0][3],
          f"tp_golden 2.0 must fail 1.0's golden frames:\n{show(proc)}")
    proc = run([v2, "--check", "RoundTrip", "--values", "20", "--quiet"])
    check(proc.returncode == 0 and summary(proc) == (3, 0, 0, 0),
          f"tp_golden 2.0 passes its own round trips:\n{show(proc)}")
    # writing again keeps every file; 2.0 adds its own frames after 1.0's, which stay
    before = {n: open(os.path.join(gdir, n), "rb").read() for n in written}
    proc = run(["--write-golden", gdir, v1])
    check(proc.returncode == 0 and "0 golden files written, 7 unchanged" in proc.stdout and
          sorted(os.listdir(gdir)) == written, f"--write-golden again:\n{show(proc)}")
    proc = run(["--write-golden", gdir, v2, "tp.series"])
    added = sorted(set(os.listdir(gdir)) - set(written))
    check(proc.returncode == 0 and added and all(
        int(n.split("-")[1].split(".")[0]) >= 7 for n in added) and
        all(open(os.path.join(gdir, n), "rb").read() == b for n, b in before.items()),
        f"--write-golden {v2} must add files after 1.0's and keep them: {added}\n{show(proc)}")
    proc, lines = golden_run([v1, "--golden", gdir], "tp_golden 1.0, 2.0's frames added")
    check(proc.returncode == 1 and "(written by tp_golden 2.0)" in lines[0][3],
          f"tp_golden 1.0 must fail 2.0's golden frames:\n{show(proc)}")

    # a plugin's golden_dir is relative to its .so; none there: SKIP saying where it looked
    plug = os.path.join(tmp, "plug")
    os.makedirs(os.path.join(plug, "golden"))
    import shutil
    shutil.copy(v1, plug)
    copy = os.path.join(plug, "tp_golden_v1.so")
    proc, lines = golden_run([copy], "tp_golden 1.0, no golden_dir yet")
    check(proc.returncode == 0 and [l[0] for l in lines] == ["SKIP"] and
          os.path.join(plug, "golden", "tp_golden") in lines[0][3],
          f"a plugin whose golden_dir is missing: want SKIP naming it:\n{show(proc)}")
    proc = run(["--quiet", "--write-golden", os.path.join(plug, "golden", "tp_golden"), copy])
    check(proc.returncode == 0, f"--write-golden into the plugin's golden_dir:\n{show(proc)}")
    proc, lines = golden_run([copy], "tp_golden 1.0, its golden_dir")
    check(proc.returncode == 0 and [l[0] for l in lines] == ["PASS"] and
          "7 golden files in " + os.path.join(plug, "golden", "tp_golden") in lines[0][3],
          f"the plugin's own golden_dir: want PASS:\n{show(proc)}")
    empty = os.path.join(tmp, "empty")
    os.mkdir(empty)
    proc, lines = golden_run(["--builtin", "bytes", "--golden", empty], "no golden files")
    check(proc.returncode == 0 and [l[0] for l in lines] == ["SKIP"] and
          "no golden frames for codec 'bytes'" in lines[0][3],
          f"no golden files for the codec: want SKIP saying so:\n{show(proc)}")

    # command lines
    for args, words in ((["--builtin", "--golden", os.path.join(tmp, "nope")], "not a directory"),
                        (["--write-golden", gdir, "--builtin", "--json", os.path.join(tmp, "j")],
                         "--write-golden runs no check"),
                        (["--write-golden", gdir, "--builtin", "nocodec"], "no codec 'nocodec'"),
                        (["--write-golden", os.path.join(v1, "sub"), "--builtin"],
                         "cannot create")):
        proc = run(args)
        check(proc.returncode == 2 and words in proc.stderr,
              f"{args}: want exit 2 saying {words!r}:\n{show(proc)}")


def case_golden_fuzz(tmp):
    """Mutations of golden files (bit flips, truncations, lying counts and lengths, with and
    without the CRC made right): each file a PASS or a FAIL of its own, never a crash, hang or
    leak of the check's process."""
    import random
    rng = random.Random(13)
    subjects = []  # (the kit's subject arguments, codec, golden files to mutate)
    src, _ = builtin_golden_files()
    for codec, picks in (("ndarray", (5, 7, 12)), ("table", (3, 5)), ("dataset", (3, 4)),
                         ("bytes", (1, 4))):
        subjects.append((["--builtin", codec], codec,
                         [open(os.path.join(src, f"{codec}-{i:03d}.golden"), "rb").read()
                          for i in picks]))
    if ARGS.plugins:  # a user kind: the expected value made again by the plugin's generator
        v1 = os.path.join(ARGS.plugins, "tp_golden_v1.so")
        gdir = os.path.join(tmp, "tp_golden")
        proc = run(["--quiet", "--write-golden", gdir, v1])
        check(proc.returncode == 0, f"--write-golden {v1}:\n{show(proc)}")
        subjects.append(([v1], "tp.series",
                         [open(os.path.join(gdir, f"tp.series-{i:03d}.golden"), "rb").read()
                          for i in (1, 3)]))
    per_source = int(os.environ.get("GOLDEN_FUZZ_MUTATIONS", "60"))

    def mutate(data):
        """(mutated bytes, must it fail?)"""
        data = bytearray(data)
        frame, refs, buffers = gf_layout(bytes(data))
        kind = rng.randrange(6)
        if kind == 0:  # bit flips, the CRC left: always caught
            for _ in range(rng.randint(1, 4)):
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            return bytes(data), True
        if kind == 1:  # bit flips past the CRC check
            for _ in range(rng.randint(1, 3)):
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            return gf_fix(data), False
        if kind == 2:  # truncation, as is or with the header's length and CRC made right
            cut = bytes(data[:rng.randrange(len(data))])
            return (cut, True) if rng.randrange(2) else (gf_fix(cut, fix_len=True), True)
        if kind == 3:  # a count or length that lies, past the CRC check
            fields = [GF_VALUE_LEN, GF_FRAME_LEN, GF_NBUFFERS, frame + 8, frame + 12]
            fields += [r + f for r in refs for f in (REF_SIZE_FIELD, REF_CONTENT_SIZE)]
            off = rng.choice(fields)
            value = rng.choice([0, 1, 7, 0xffffffff, 0x7fffffff, 1 << 20,
                                rng.randrange(1 << 32)])
            data[off:off + 4] = value.to_bytes(4, "little")
            return gf_fix(data), False
        if kind == 4:  # random bytes in the frame's metadata or a buffer, past the CRC check
            lo, hi = (frame + FRAME_HEADER + len(refs) * REF_SIZE,
                      frame + gf_u32(data, GF_FRAME_LEN))
            if buffers and rng.randrange(2):
                lo, hi = buffers[0][0], buffers[0][0] + max(buffers[0][1], 1)
            for _ in range(rng.randint(1, 8)):
                data[rng.randrange(lo, hi)] = rng.randrange(256)
            return gf_fix(data), False
        # the expected value's bytes, past the CRC check
        value_len = gf_u32(data, GF_VALUE_LEN)
        for _ in range(rng.randint(1, 4)):
            data[GF_HEADER + rng.randrange(max(value_len, 1))] ^= 1 << rng.randrange(8)
        return gf_fix(data), False

    for subject, codec, originals in subjects:
        d = os.path.join(tmp, "mutated-" + codec)
        os.mkdir(d)
        must_fail = n = 0
        for original in originals:
            for _ in range(per_source):
                data, fails = mutate(original)
                with open(os.path.join(d, f"{codec}-{n:04d}.golden"), "wb") as f:
                    f.write(data)
                n += 1
                must_fail += fails and data != original  # two flips of one bit undo each other
        proc, lines = golden_run(subject + ["--golden", d, "--timeout", "300"],
                                 f"{n} mutations of {codec} golden files")
        if not check(len(lines) == 1, f"{codec}: want one result line:\n{show(proc)}"):
            continue
        verdict, _, _, rest = lines[0]
        m = re.search(r"(\d+) of (\d+) golden files fail", rest)
        failed = int(m.group(1)) if m else (1 if verdict == "FAIL" else 0)
        check(verdict == "FAIL" and (m is None or int(m.group(2)) == n) and failed >= must_fail,
              f"{codec}: {n} mutations, {must_fail} of them must fail; got {failed}:\n"
              f"{show(proc)}")
        print(f"{codec}: {n} mutated golden files, {failed} fail ({must_fail} had to), "
              f"the rest pass; no crash, hang or leak")


CASES = {"golden": case_golden, "golden_fuzz": case_golden_fuzz,
         "builtin": case_builtin, "list": case_list, "usage": case_usage,
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
