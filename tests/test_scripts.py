#!/usr/bin/env python3
"""scripts/report, scripts/plot and scripts/compare against bad input: one table
(and the usage errors of scripts/setup, run and fuzz; scripts/report's words and goals).

Each row is a command line, the files it reads (written into a fresh temporary directory,
the row's working directory), the exit status it must end with and the words its output
must contain (the file's name and the field, for a bad file). No row may print a Python
traceback, and none may create $SHMRIG_TEST_PWNED, the file the injection rows try to
create through gnuplot. The files are mutations of a small part of the newest committed
results JSON (results/<machine-class>/<date>-<rev>.json).

    tests/test_scripts.py            the scripts of this tree
    SCRIPTS_DIR=DIR tests/test_scripts.py   other copies, e.g. HEAD's, to see rows fail

scripts/compare's A/B mode needs builds: only its JSON mode and its argument checks are
here. Rows that need gnuplot (or scipy, for scripts/compare) are skipped without it.
Exit status: 0 every row passed; 1 a row failed; 77 every row was skipped.
"""

import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
SCRIPTS = os.environ.get("SCRIPTS_DIR") or os.path.join(ROOT, "scripts")
TIMEOUT = 60  # s a row; a script reading a huge or deeply nested file must not take longer
RESULT_NAME = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{12}(-dirty)?\.json$")

# The part of a results file the rows use: a figure and its twin for scripts/report, two
# codec sizes with their memcpy twins for scripts/plot, and an entry with an error.
KEEP = ("pool/alloc_free/64", "pool/alloc_free_twin_malloc/64", "codec/bytes/encode/1024",
        "codec/memcpy/1024", "codec/bytes/encode/65536", "codec/memcpy/65536",
        "codec/dataset/decode/64")
TWIN = "pool/alloc_free_twin_malloc/64"
CODEC = "codec/bytes/encode/1024"
# and for scripts/plot --latency (in PEERS, BASE with these: scripts/report's rows count the
# pairs of BASE): a session's echo and the copy twin, which every suite run has
LATENCY_KEEP = ("session/ring/echo/64/manual_time", "session/ring/echo/65536/manual_time",
                "session/copy_2proc_twin/64/manual_time",
                "session/copy_2proc_twin/65536/manual_time")

# gnuplot commands that create $SHMRIG_TEST_PWNED if a string reaches its script unescaped
SYSTEM = "AMD'; system \"touch $SHMRIG_TEST_PWNED\"; set title '"
BACKTICK = "AMD' `touch $SHMRIG_TEST_PWNED` '"
PATH_INJECTION = "out'; system \"touch $SHMRIG_TEST_PWNED\"; set output 'o.svg"


def base_document(keep):
    found = [os.path.join(d, f) for d, _, files in os.walk(os.path.join(ROOT, "results"))
             for f in files if RESULT_NAME.match(f)]
    if not found:
        sys.exit("test_scripts: no results/<machine-class>/<date>-<rev>.json to start from")
    path = max(found, key=os.path.basename)  # the newest date
    with open(path, encoding="utf-8") as f:
        doc = json.load(f)
    doc["benchmarks"] = [b for b in doc["benchmarks"] if b.get("run_name", b["name"]) in keep]
    return doc


BASE = base_document(KEEP)
PEERS = base_document(KEEP + LATENCY_KEEP)


def first(name):
    """Index in BASE["benchmarks"] of name's first iteration."""
    return next(i for i, b in enumerate(BASE["benchmarks"])
                if b["name"] == name and b.get("run_type") == "iteration")


def iteration_indices(name):
    return [i for i, b in enumerate(BASE["benchmarks"])
            if b["name"] == name and b.get("run_type") == "iteration"]


T, C = first(TWIN), first(CODEC)


def mutated(change, base=BASE):
    """base as JSON text after change(doc)."""
    doc = copy.deepcopy(base)
    change(doc)
    return json.dumps(doc, indent=1).encode()


def set_field(index, field, value):
    return lambda doc: doc["benchmarks"][index].__setitem__(field, value)


def del_field(index, field):
    return lambda doc: doc["benchmarks"][index].pop(field)


def all_twin_times(value):
    def change(doc):
        for i in iteration_indices(TWIN):
            doc["benchmarks"][i]["real_time"] = value
    return change


def rename(name, new_name):
    def change(doc):
        for b in doc["benchmarks"]:
            if b.get("run_name", b["name"]) == name:
                b["name"] = b["run_name"] = new_name
    return change


def round_trips(index, p50, p99):
    """Round-trip counters on entry index (None: that counter left out)."""
    def change(doc):
        for field, value in (("p50_us", p50), ("p99_us", p99)):
            if value is not None:
                doc["benchmarks"][index][field] = value
    return change


def round_trips_all(name, p50, p99):
    """The same on every iteration of name."""
    def change(doc):
        for i in iteration_indices(name):
            round_trips(i, p50, p99)(doc)
    return change


def check_latency_json(tmp):
    """The "latency" list of the round-trip control row's --json: the two rows, no other."""
    with open(os.path.join(tmp, "lat.json"), encoding="utf-8") as f:
        got = json.load(f).get("latency")
    want = [{"benchmark": CODEC, "p50_us": None, "p99_us": 250,
             "repetitions": len(iteration_indices(CODEC))},
            {"benchmark": TWIN, "p50_us": 3.1, "p99_us": 9.8,
             "repetitions": len(iteration_indices(TWIN))}]
    return [] if got == want else [f"latency {got!r}, want {want!r}"]


def only_pool(doc):
    doc["benchmarks"] = [b for b in doc["benchmarks"] if b["name"].startswith("pool/")]


def all_errors(doc):
    for b in doc["benchmarks"]:
        b["error_occurred"], b["error_message"] = True, "skipped on purpose"


def deep_context(doc):
    doc["context"]["caches"] = json.loads("[" * 500 + "]" * 500)


def synthetic(times):
    """A results JSON with BASE's context and one iteration for each name -> real time (ns),
    or -> (real time, time unit), or -> None: an error (a skip)."""
    def entry(name, time):
        if time is None:
            return {"name": name, "run_name": name, "run_type": "iteration",
                    "repetitions": 1, "repetition_index": 0, "threads": 1, "iterations": 0,
                    "real_time": 0, "cpu_time": 0, "time_unit": "ns", "error_occurred": True,
                    "error_message": "skipped: not here"}
        time, unit = time if isinstance(time, tuple) else (time, "ns")
        return {"name": name, "run_name": name, "run_type": "iteration", "repetitions": 1,
                "repetition_index": 0, "threads": 1, "iterations": 1000, "real_time": time,
                "cpu_time": time, "time_unit": unit}
    return json.dumps({"context": BASE["context"], "benchmarks": [
        entry(name, time) for name, time in times.items()]}, indent=1).encode()


# scripts/report's words and goals: figure time / twin time of each pair, and its goal
WORDS = synthetic({
    "pool/alloc_free/64": 30,                           # 3x slower; goal <= 2.5x: misses
    "pool/alloc_free_twin_malloc/64/manual_time": 10,   # a twin with the suffix, a figure without
    "pool/seed_fresh_segment/64": 30000,                # 1,000x faster; no goal
    "pool/alloc_free_2proc/64": 50,                     # 5x slower; goal <= 6x: meets
    "pool/alloc_free_2proc_twin_ring/64": 10,
    "codec/bytes/encode/1024": 100,                     # 0.5 % apart: as fast as
    "codec/memcpy/1024": 100.5,
    "codec/bytes/decode/1048576": 1504,                 # 1.504x; goal <= 1.5x: misses
    "codec/memcpy/1048576": 1000,
    "session/ring/echo/64/manual_time": 4000,           # 2x the ring's round trip: meets <= 3x
    "channel/ring/rtt/manual_time": 2000,               # (the twin with the figure's suffix)
    "channel/ring/rtt": 1e6,                            # (not this one, without it)
    "peer/seed_python/echo/64": 800000,                 # 200x faster; goal >= 100x: meets
})
WORDS_JSON_KEYS = {"figure", "time_ns", "twin", "twin_is", "twin_time_ns", "ratio", "words",
                   "goal", "meets"}


def check_words_json(tmp):
    """The -pairs.json of WORDS: the old keys and the new ones, per pair."""
    with open(os.path.join(tmp, "pairs.json"), encoding="utf-8") as f:
        doc = json.load(f)
    pairs = {(p["figure"], p["twin"]): p for p in doc["pairs"]}
    problems = [f"{p['figure']} / {p['twin']}: keys {sorted(p)}" for p in doc["pairs"]
                if set(p) != WORDS_JSON_KEYS]
    want = {
        ("pool/alloc_free/64", "pool/alloc_free_twin_malloc/64/manual_time"):
            {"ratio": 3.0, "words": "3x slower than malloc+free", "goal": {"max_ratio": 2.5},
             "meets": False},
        ("pool/alloc_free/64", "pool/seed_fresh_segment/64"):
            {"words": "1,000x faster than seed: fresh segment", "goal": None, "meets": None},
        ("pool/alloc_free_2proc/64", "pool/alloc_free_2proc_twin_ring/64"):
            {"ratio": 5.0, "goal": {"max_ratio": 6.0}, "meets": True},
        ("codec/bytes/encode/1024", "codec/memcpy/1024"): {"words": "as fast as memcpy"},
        ("codec/bytes/decode/1048576", "codec/memcpy/1048576"):
            {"words": "1.504x slower than memcpy", "meets": False},
        ("session/ring/echo/64/manual_time", "channel/ring/rtt/manual_time"):
            {"ratio": 2.0, "goal": {"max_ratio": 3.0}, "meets": True},
        ("session/ring/echo/64/manual_time", "peer/seed_python/echo/64"):
            {"words": "200x faster than the seed (Python)", "goal": {"min_speedup": 100},
             "meets": True},
    }
    for key, fields in want.items():
        if key not in pairs:
            problems.append(f"no pair {key[0]} / {key[1]}")
            continue
        problems += [f"{key[0]} / {key[1]}: {field} {pairs[key].get(field)!r}, want {value!r}"
                     for field, value in fields.items() if pairs[key].get(field) != value]
    if ("session/ring/echo/64/manual_time", "channel/ring/rtt") in pairs:
        problems.append("session/ring/echo/64/manual_time paired with channel/ring/rtt, not "
                        "the twin with its own suffix")
    met = sum(p["meets"] is True for p in doc["pairs"])
    missed = sum(p["meets"] is False for p in doc["pairs"])
    if doc.get("goals") != {"met": met, "missed": missed, "none": len(pairs) - met - missed}:
        problems.append(f"goals {doc.get('goals')!r} do not count the pairs' meets")
    return problems


# scripts/plot --latency: every path, names with and without /manual_time, times in three
# units (from 600 ns to 10 ms: the y ticks 100 ns to 10 ms say the units were read), UCX's cma
# skipped and its sysv only a bandwidth row (neither drawn), no codec rows
LATENCY = synthetic({
    "session/ring/echo/64/manual_time": 3000,
    "session/ring/echo/1048576/manual_time": (250, "us"),
    "session/pipe/echo/64": (40, "us"),
    "session/uring/echo/1024/manual_time": (41, "us"),
    "session/copy_2proc_twin/64/manual_time": 600,
    "session/copy_2proc_twin/1048576/manual_time": (184, "us"),
    "peer/iceoryx/echo/64/manual_time": 4200,
    "peer/iceoryx/echo/1048576/manual_time": (0.294, "ms"),
    "peer/ucx/posix/rtt/64/manual_time": 1360,
    "peer/ucx/posix/rtt/1024": 1500,
    "peer/ucx/sysv/bw/1048576/manual_time": (76, "us"),
    "peer/ucx/cma/rtt/64/manual_time": None,
    "peer/seed_python/echo/64/manual_time": (357, "us"),
    "peer/seed_python/echo/1048576/manual_time": (10, "ms"),
})
LATENCY_TITLES = ["shmrig session, ring", "shmrig session, pipe", "shmrig session, uring",
                  "two-process copy (twin)", "iceoryx (zero-copy pub/sub)", "UCX posix",
                  "the seed in Python"]
# a tick label in a number's form (1.04858e+06), not in words
NUMBER_LABEL = re.compile(r">\s*[-+]?[0-9.]+(e[-+]?[0-9]+|x10\^?[-+]?[0-9]+)\s*<", re.I)


def svg_check(want=None, missing=(), unwanted=None):
    """A row's check: each file of want holds each of its words (as a text of the SVG) and
    no number-like tick label, each file of unwanted none of its words, no file of missing
    exists."""
    def check(tmp):
        problems = []
        for path, words in (want or {}).items():
            try:
                with open(os.path.join(tmp, path), encoding="utf-8", errors="replace") as f:
                    text = f.read()
            except OSError as err:
                problems.append(f"{path}: {err.strerror}")
                continue
            problems += [f"no {w!r} in {path}" for w in words if f">{w}<" not in text]
            problems += [f"{w!r} in {path}" for w in (unwanted or {}).get(path, ())
                         if f">{w}<" in text]
            label = NUMBER_LABEL.search(text)
            if label:
                problems.append(f"{path}: a tick label {label.group(0)!r}, not in words")
        problems += [f"{path} was written" for path in missing
                     if os.path.exists(os.path.join(tmp, path))]
        return problems
    return check


VALID = mutated(lambda doc: None)
HUGE = object()  # a sparse file of 257 MiB, made by the runner
BAD = "bad.json"

# (what is wrong, content of bad.json, words its message must contain)
BAD_FILES = [
    ("empty file", b"", ["empty"]),
    ("truncated", VALID[:len(VALID) // 2], ["not valid JSON"]),
    ("binary", bytes(range(256)) * 4, ["UTF-8"]),
    ("not an object", b"[1, 2, 3]", ["not a JSON object"]),
    ("benchmarks not a list", mutated(lambda d: d.__setitem__("benchmarks", {"a": 1})),
     ["benchmarks", "not a list"]),
    ("entry not an object", mutated(lambda d: d["benchmarks"].__setitem__(T, 7)),
     [f"benchmarks[{T}]", "not an object"]),
    ("context not an object", mutated(lambda d: d.__setitem__("context", "x")),
     ["context", "not an object"]),
    ("missing real_time", mutated(del_field(T, "real_time")),
     [f"benchmarks[{T}].real_time", "missing"]),
    ("NaN real_time", mutated(set_field(T, "real_time", float("nan"))),
     [f"benchmarks[{T}].real_time", "not a finite number"]),
    ("string real_time", mutated(set_field(T, "real_time", "12")),
     [f"benchmarks[{T}].real_time", "not a finite number"]),
    ("real_time beyond a float", mutated(set_field(T, "real_time", 10 ** 400)),
     [f"benchmarks[{T}].real_time", "not a finite number"]),
    ("twin time 0", mutated(all_twin_times(0)),
     [f"benchmarks[{T}].real_time", "not a positive number"]),
    ("unknown time_unit", mutated(set_field(T, "time_unit", "xs")),
     [f"benchmarks[{T}].time_unit"]),
    ("run_name not a string", mutated(set_field(T, "run_name", 5)),
     [f"benchmarks[{T}].run_name"]),
    ("escape sequence in a name", mutated(set_field(T, "run_name", TWIN + "\x1b[2J")),
     [f"benchmarks[{T}].run_name", "control characters"]),
    ("nesting 100000 deep", b"[" * 100000, ["nested too deeply"]),
    ("nesting 500 deep", mutated(deep_context), ["nested more than 64 levels"]),
    ("257 MiB", HUGE, ["MiB"]),
]


def row(name, argv, status, words, files=None, absent=(), output=None, needs=(), check=None):
    """check: a function of the row's directory, after the run, returning problems."""
    return {"name": name, "argv": argv, "status": status, "words": words,
            "files": files or {}, "absent": absent, "output": output, "needs": needs,
            "check": check}


def rows():
    table = []
    for what, content, words in BAD_FILES:
        files = {BAD: content, "base.json": VALID}
        table += [
            row(f"report: {what}", ["report", BAD], 2, [BAD, *words], files),
            row(f"plot: {what}", ["plot", BAD, "out.svg"], 2, [BAD, *words], files),
            row(f"plot --latency: {what}", ["plot", BAD, "--codecs", "a.svg", "--latency",
                                            "b.svg"], 2, [BAD, *words], files),
            row(f"compare: {what}", ["compare", "base.json", BAD], 2, [BAD, *words], files,
                needs=["scipy"]),
        ]
    ok = {"base.json": VALID}
    peers = {"peers.json": mutated(lambda d: None, PEERS)}
    both = ["--codecs", "a.svg", "--latency", "b.svg"]
    escape = {"base.json": mutated(lambda d: d["context"].__setitem__("cpu_model",
                                                                      "AMD\x1b]0;owned\x07"))}
    table += [
        row("report: no such file", ["report", "nosuch.json"], 2, ["nosuch.json", "cannot read"]),
        row("report: --json into a missing directory",
            ["report", "base.json", "--json", "nodir/out.json"], 2,
            ["nodir/out.json", "no such directory"], ok),
        row("report: escape sequence in cpu_model", ["report", "base.json"], 0, ["3 pairs"],
            escape, absent=["\x1b", "\x07"]),
        row("report: a valid file (control)", ["report", "base.json", "--json", "it's.json"],
            0, ["3 pairs"], ok, output=("it's.json", "pool/alloc_free/64")),
        # round-trip counters (p50_us, p99_us): untrusted like the times
        row("report: p99_us a string", ["report", BAD], 2,
            [BAD, f"benchmarks[{T}].p99_us", "not a finite number"],
            {BAD: mutated(round_trips(T, 3.1, "9.8"))}),
        row("report: p99_us NaN", ["report", BAD], 2,
            [BAD, f"benchmarks[{T}].p99_us", "not a finite number"],
            {BAD: mutated(round_trips(T, 3.1, float("nan")))}),
        row("report: p99_us missing beside p50_us", ["report", BAD], 2,
            [BAD, f"benchmarks[{T}].p99_us", "missing"],
            {BAD: mutated(round_trips(T, 3.1, None))}),
        row("report: p99_us 0", ["report", BAD], 2,
            [BAD, f"benchmarks[{T}].p99_us", "not a positive number"],
            {BAD: mutated(round_trips(T, 3.1, 0))}),
        row("report: p99_us below p50_us", ["report", BAD], 2,
            [BAD, f"benchmarks[{T}].p99_us", "below p50_us"],
            {BAD: mutated(round_trips(T, 9.8, 3.1))}),
        row("report: p50_us an object", ["report", BAD], 2,
            [BAD, f"benchmarks[{T}].p50_us", "not a finite number"],
            {BAD: mutated(round_trips(T, {"us": 3.1}, 9.8))}),
        row("report: round trips shown (control; p99 alone as older records have it)",
            ["report", "lat.json.in", "--json", "lat.json"], 0,
            [f"{TWIN}  p50 3.1 us, p99 9.8 us", f"{CODEC}", "p99 250 us", "3 pairs"],
            {"lat.json.in": mutated(lambda d: (round_trips_all(TWIN, 3.1, 9.8)(d),
                                               round_trips_all(CODEC, None, 250)(d)))},
            check=check_latency_json),
        row("report: words both ways, as fast as, goals met and missed, suffixes",
            ["report", "words.json", "--json", "pairs.json"], 0,
            ["MISSES  3x slower than malloc+free (goal: at most 2.5x slower)",
             "1,000x faster than seed: fresh segment",
             "meets   5x slower than ring twin (goal: at most 6x slower)",
             "as fast as memcpy",
             "MISSES  1.504x slower than memcpy (goal: at most 1.5x slower)",
             "meets   2x slower than the ring channel's round trip (goal: at most 3x slower)",
             "meets   200x faster than the seed (Python) (goal: at least 100x faster)",
             "7 pairs", "goals: 3 met, 2 missed"],
            {"words.json": WORDS}, absent=["0.333x", "3.000x"], check=check_words_json),

        row("plot: cpu_model runs system()", ["plot", BAD, "out.svg"], 0, [],
            {BAD: mutated(lambda d: d["context"].__setitem__("cpu_model", SYSTEM))},
            output=("out.svg", "shmrig codecs"), needs=["gnuplot"]),
        row("plot: cpu_model runs a backquote", ["plot", BAD, "out.svg"], 0, [],
            {BAD: mutated(lambda d: d["context"].__setitem__("cpu_model", BACKTICK))},
            output=("out.svg", "shmrig codecs"), needs=["gnuplot"]),
        row("plot: shmrig_git_rev runs system()", ["plot", BAD, "out.svg"], 0, [],
            {BAD: mutated(lambda d: d["context"].__setitem__("shmrig_git_rev", SYSTEM))},
            output=("out.svg", "shmrig codecs"), needs=["gnuplot"]),
        row("plot --latency: cpu_model runs system()", ["plot", BAD, *both], 0, [],
            {BAD: mutated(lambda d: d["context"].__setitem__("cpu_model", SYSTEM), PEERS)},
            output=("b.svg", "shmrig and its peers"), needs=["gnuplot"]),
        row("plot --latency: shmrig_git_rev runs a backquote", ["plot", BAD, *both], 0, [],
            {BAD: mutated(lambda d: d["context"].__setitem__("shmrig_git_rev", BACKTICK),
                          PEERS)},
            output=("b.svg", "shmrig and its peers"), needs=["gnuplot"]),
        row("plot: a codec name runs system()", ["plot", BAD, *both], 0, [],
            {BAD: mutated(rename(CODEC, "codec/x" + SYSTEM + "/encode/1024"), PEERS)},
            output=("a.svg", "memcpy (twin)"), needs=["gnuplot"]),
        row("plot: the output path runs system()", ["plot", "base.json", PATH_INJECTION], 0,
            [], ok, output=(PATH_INJECTION, "shmrig codecs"), needs=["gnuplot"]),
        row("plot --latency: the output path runs system()",
            ["plot", "peers.json", "--latency", PATH_INJECTION], 0, [], peers,
            output=(PATH_INJECTION, "shmrig and its peers"), needs=["gnuplot"]),
        row("plot: a quote in the output path", ["plot", "base.json", "it's.svg"], 0, [], ok,
            output=("it's.svg", "shmrig codecs"), needs=["gnuplot"]),
        row("plot: output into a missing directory", ["plot", "base.json", "nodir/out.svg"], 2,
            ["nodir/out.svg", "no such directory"], ok),
        row("plot --latency: output into a missing directory",
            ["plot", "peers.json", "--codecs", "a.svg", "--latency", "nodir/b.svg"], 2,
            ["nodir/b.svg", "no such directory"], peers, check=svg_check(missing=["a.svg"])),
        row("plot: no such file", ["plot", "nosuch.json", "out.svg"], 2,
            ["nosuch.json", "cannot read"]),
        row("plot: no codec rows", ["plot", BAD, "out.svg"], 2,
            [BAD, "no codec rows"], {BAD: mutated(only_pool)}),
        row("plot: no codec nor latency rows", ["plot", BAD, *both], 2,
            [BAD, "no codec rows", "no latency rows"], {BAD: mutated(only_pool)},
            check=svg_check(missing=["a.svg", "b.svg"])),
        row("plot: only --latency, no latency rows", ["plot", "base.json", "--latency",
                                                       "b.svg"], 2,
            ["base.json", "no latency rows"], ok, check=svg_check(missing=["b.svg"])),
        row("plot: every latency row skipped", ["plot", BAD, "--latency", "b.svg"], 2,
            [BAD, "no latency rows"], {BAD: mutated(all_errors, PEERS)}),
        row("plot: a codec time too small to draw", ["plot", BAD, "out.svg"], 2,
            [BAD, f"benchmarks[{C}].real_time", "too small to draw"],
            {BAD: mutated(set_field(C, "real_time", 1e-320))}),
        row("plot: one argument", ["plot", "base.json"], 2, ["RESULT.json OUT.svg"], ok),
        row("plot: OUT.svg and --codecs", ["plot", "base.json", "a.svg", "--codecs", "b.svg"],
            2, ["both name the codec plot"], ok),
        row("plot: --codecs and --latency into one file",
            ["plot", "peers.json", "--codecs", "a.svg", "--latency", "a.svg"], 2,
            ["the same file"], peers),
        row("plot: an unknown option", ["plot", "base.json", "--bogus", "a.svg"], 2,
            ["unrecognized arguments: --bogus"], ok),
        row("plot: --help", ["plot", "--help"], 0, ["--codecs OUT.svg", "--latency OUT.svg",
                                                    "Exit status"]),
        row("plot: a valid file (control)", ["plot", "base.json", "out.svg"], 0, [], ok,
            output=("out.svg", "memcpy (twin)"), needs=["gnuplot"],
            check=svg_check({"out.svg": ["memcpy (twin)", "bytes encode", "64 B", "1 KiB",
                                         "64 KiB"]})),
        row("plot: both plots of a suite's rows (control)", ["plot", "peers.json", *both], 0,
            [], peers, needs=["gnuplot"],
            check=svg_check({"a.svg": ["memcpy (twin)", "1 KiB"],
                             "b.svg": ["shmrig session, ring", "two-process copy (twin)",
                                       "64 B", "1 KiB", "64 KiB"]})),
        row("plot: every latency path, units, skips, suffixes", ["plot", "lat.json", "--latency",
                                                                 "b.svg"], 0,
            [], {"lat.json": LATENCY}, needs=["gnuplot"],
            check=svg_check({"b.svg": [*LATENCY_TITLES, "64 B", "1 KiB", "64 KiB", "1 MiB",
                                       "100 ns", "1 us", "10 us", "100 us", "1 ms",
                                       "10 ms"]},
                             unwanted={"b.svg": ["UCX sysv", "UCX cma", "10 ns"]})),
        row("plot: codec rows, no latency rows", ["plot", "base.json", *both], 0,
            ["no latency rows", "b.svg not written"], ok, needs=["gnuplot"],
            check=svg_check({"a.svg": ["memcpy (twin)"]}, missing=["b.svg"])),
        row("plot: latency rows, no codec rows", ["plot", "lat.json", *both], 0,
            ["no codec rows", "a.svg not written"], {"lat.json": LATENCY}, needs=["gnuplot"],
            check=svg_check({"b.svg": ["iceoryx (zero-copy pub/sub)"]}, missing=["a.svg"])),

        row("compare: 3 against 3 cannot reach --alpha 0.01",
            ["compare", "base.json", "base.json"], 2, ["cannot judge", "too few samples"], ok,
            needs=["scipy"]),
        row("compare: every benchmark skipped", ["compare", BAD, BAD], 2,
            ["cannot judge", "skipped"], {BAD: mutated(all_errors)}, needs=["scipy"]),
        row("compare: --min-effect nan",
            ["compare", "--alpha", "0.1", "--min-effect", "nan", "base.json", "base.json"], 2,
            ["--min-effect"], ok, needs=["scipy"]),
        row("compare: --min-effect inf",
            ["compare", "--alpha", "0.1", "--min-effect", "inf", "base.json", "base.json"], 2,
            ["--min-effect"], ok, needs=["scipy"]),
        row("compare: --min-time nan", ["compare", "--min-time", "nan", "base.json",
                                        "base.json"], 2, ["--min-time"], ok, needs=["scipy"]),
        row("compare: --json into a missing directory",
            ["compare", "--alpha", "0.1", "--json", "nodir/out.json", "base.json", "base.json"],
            2, ["nodir/out.json", "no such directory"], ok, needs=["scipy"]),
        row("compare: no such file", ["compare", "base.json", "nosuch.json"], 2,
            ["nosuch.json", "no such file"], ok, needs=["scipy"]),
        row("compare: escape sequence in cpu_model",
            ["compare", "--alpha", "0.1", "base.json", "esc.json"], 0, ["nothing flagged"],
            {"base.json": VALID, "esc.json": escape["base.json"]}, absent=["\x1b", "\x07"],
            needs=["scipy"]),
        row("compare: a valid pair (control)",
            ["compare", "--alpha", "0.1", "--json", "it's.json", "base.json", "base.json"], 0,
            ["nothing flagged"], ok, output=("it's.json", "shmrig-compare/1"),
            needs=["scipy"]),
        row("compare: one input (control)", ["compare", "base.json"], 2, ["give two"], ok,
            needs=["scipy"]),
        row("compare: a JSON and a directory (control)", ["compare", "base.json", "."], 2,
            ["not one of each"], ok, needs=["scipy"]),

        # the shell scripts README names: bad usage is exit 2 and says so, before any work
        row("setup: an argument", ["setup", "--bogus"], 2, ["takes no arguments"]),
        row("run: an unknown argument", ["run", "--bogus"], 2, ["unknown argument"]),
        row("fuzz: SECONDS not a number", ["fuzz", "abc"], 2, ["usage"]),
    ]
    return table


def interpreter(script):
    """The interpreter of a script's #! line."""
    with open(script, encoding="utf-8") as f:
        line = f.readline()
    return line[2:].split() if line.startswith("#!") else [sys.executable]


def available():
    have = set()
    if shutil.which("gnuplot"):
        have.add("gnuplot")
    python = interpreter(os.path.join(SCRIPTS, "compare"))
    if subprocess.run([*python, "-c", "import scipy.stats"], capture_output=True).returncode == 0:
        have.add("scipy")
    return have


def run_row(r, tmp):
    for name, content in r["files"].items():
        with open(os.path.join(tmp, name), "wb") as f:
            if content is HUGE:
                f.truncate(257 << 20)  # sparse: costs no disk or memory
            else:
                f.write(content)
    pwned = os.path.join(tmp, "PWNED")
    script, *args = r["argv"]
    env = dict(os.environ, SHMRIG_TEST_PWNED=pwned)
    env.pop("MALLOC_PERTURB_", None)  # meson's, for C: makes each import of scipy take 2 s
    try:
        result = subprocess.run([os.path.join(SCRIPTS, script), *args], cwd=tmp, env=env,
                                capture_output=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        return [f"still running after {TIMEOUT} s"]
    output = (result.stdout + result.stderr).decode(errors="replace")
    problems = []
    if result.returncode != r["status"]:
        problems.append(f"exit {result.returncode}, expected {r['status']}")
    if "Traceback" in output:
        problems.append("a traceback")
    problems += [f"no {w!r} in the output" for w in r["words"] if w not in output]
    problems += [f"{a!r} in the output" for a in r["absent"] if a in output]
    if os.path.exists(pwned):
        problems.append("PWNED was created: a command from the file ran")
    if r["output"]:
        path, word = r["output"]
        try:
            with open(os.path.join(tmp, path), encoding="utf-8", errors="replace") as f:
                if word not in f.read():
                    problems.append(f"no {word!r} in {path}")
        except OSError as err:
            problems.append(f"{path}: {err.strerror}")
    if r["check"] and not problems:
        problems += r["check"](tmp)
    if problems:
        last = output.strip().splitlines()[-1:] or ["(no output)"]
        problems.append(f"output ends: {last[0][:200]!r}")
    return problems


def main():
    have = available()
    passed = failed = skipped = 0
    for number, r in enumerate(rows(), 1):
        missing = [n for n in r["needs"] if n not in have]
        if missing:
            print(f"skip {number} {r['name']}: no {', '.join(missing)}")
            skipped += 1
            continue
        with tempfile.TemporaryDirectory(prefix="shmrig-test-scripts-") as tmp:
            problems = run_row(r, tmp)
        if problems:
            print(f"FAIL {number} {r['name']}: {'; '.join(problems)}")
            failed += 1
        else:
            print(f"ok   {number} {r['name']}")
            passed += 1
    print(f"test_scripts: {passed + failed + skipped} rows over {SCRIPTS}: {passed} passed, "
          f"{failed} failed, {skipped} skipped")
    if failed:
        return 1
    return 77 if not passed else 0


if __name__ == "__main__":
    sys.exit(main())
