#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""scripts/compare's sequential judgement, checked against what it claims (issue 16).

- signed_rank_k() against the null distribution of the Wilcoxon signed-rank statistic
  counted by brute force (every sign pattern), n = 1..12.
- shift_bounds() is the inverse of the test: for random samples, the one-sided lower bound
  is above 0 exactly when scipy's exact one-sided Wilcoxon p is at most alpha.
- The false-alarm rate over all looks is held by construction: simulated A/A comparisons
  (normal and heavy-tailed noise, --min-effect 0, so only the bound decides) flag "slower"
  in at most alpha of them (plus binomial slack).
- The miss rate over all looks is held too: a slowdown of exactly --detect is cleared
  ("not slower") in at most beta of the simulated comparisons.
- The design has power where it should: a 10 % shift under 3 % noise is "slower" within
  14 pairs; A/A under the same noise is "not slower" within 10 pairs.
- --hog's process is stopped and reaped when the comparison ends early.
- launches(): A's and B's processes get the same variables and command lines and
  environments of the same size; fixed_layout() turns randomization off in a child (two
  children get the same stack address), where the kernel allows it.
- measure_of(): CPU time for a body on the CPU in one of A's processes, else wall time;
  "/ref" only when every process has the reference.

Exit 0 all hold, 1 one does not (listed), 77 no numpy/scipy here (skip).
"""
import argparse
import importlib.machinery
import importlib.util
import itertools
import math
import os
import random
import sys

sys.dont_write_bytecode = True
ROOT = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))

# meson runs this with its python3, under valgrind in CI's valgrind stage, where scipy's
# extension modules fail to initialise: the checks run in a child, Debian's
# /usr/bin/python3 (which has scipy), that valgrind does not trace.
if os.environ.get("SHMRIG_COMPARE_STATS_CHILD") != "1":
    import subprocess
    if not os.access("/usr/bin/python3", os.X_OK):
        print("test_compare_stats: skipped: no /usr/bin/python3")
        sys.exit(77)
    sys.exit(subprocess.run(["/usr/bin/python3", os.path.realpath(__file__)],
                            env=dict(os.environ, SHMRIG_COMPARE_STATS_CHILD="1")).returncode)

try:
    import numpy
    import scipy.stats
except ImportError as err:
    print(f"test_compare_stats: skipped: {err} (Debian: python3-scipy)")
    sys.exit(77)

loader = importlib.machinery.SourceFileLoader("compare", os.path.join(ROOT, "scripts", "compare"))
spec = importlib.util.spec_from_loader("compare", loader)
compare = importlib.util.module_from_spec(spec)
loader.exec_module(compare)

failures = []


def check(what, ok, detail=""):
    print(f"{'ok  ' if ok else 'FAIL'}  {what}{': ' + detail if detail and not ok else ''}")
    if not ok:
        failures.append(what)


def brute_k(n, alpha):
    sums = [sum(r for r, s in zip(range(1, n + 1), signs) if s)
            for signs in itertools.product((0, 1), repeat=n)]
    k = 0
    while sum(t <= k for t in sums) / 2 ** n <= alpha:  # P(T <= k) <= alpha: k + 1 works
        k += 1
    return k


bad = [(n, a) for n in range(1, 13) for a in (0.001, 0.002, 0.01, 0.05, 0.2)
       if compare.signed_rank_k(n, a) != brute_k(n, a)]
check("signed_rank_k matches the brute-force null distribution, n 1..12", not bad, str(bad))

rng = numpy.random.default_rng(16)
mismatch = []
for trial in range(300):
    n = int(rng.integers(6, 30))
    x = rng.normal(float(rng.normal(0, 0.5)), 1.0, n)
    alpha = float(rng.choice([0.002, 0.01, 0.05]))
    _, (lo, hi) = compare.shift_bounds(x, alpha)
    p_greater = scipy.stats.wilcoxon(x, alternative="greater", method="exact").pvalue
    p_less = scipy.stats.wilcoxon(x, alternative="less", method="exact").pvalue
    if (lo > 0) != (p_greater <= alpha) or (hi < 0) != (p_less <= alpha):
        mismatch.append((trial, n, alpha, lo, hi, p_greater, p_less))
check("shift_bounds inverts the exact one-sided Wilcoxon test (300 samples)", not mismatch,
      str(mismatch[:3]))


def simulate(shift, noise, max_pairs, alpha, min_effect, draw, beta=0.1):
    """One sequential comparison on synthetic pairs: (verdict, pairs used)."""
    decision = compare.rule(argparse.Namespace(pairs=max_pairs, alpha=alpha, beta=beta,
                                               min_effect=min_effect * 100, detect=10.0))
    a = [{"real_ns": 1.0, "cpu_ns": 1.0, "ref_ns": None} for _ in range(max_pairs)]
    b = [{"real_ns": math.exp(shift + noise * draw()), "cpu_ns": None, "ref_ns": None}
         for _ in range(max_pairs)]
    for look in decision["looks"]:
        entry = {"a": a[:look], "b": b[:look], "measure": "wall"}
        verdict = compare.analyse_look(entry, decision, look == decision["looks"][-1])
        if verdict:
            return verdict, look
    return "inconclusive", max_pairs


random.seed(16)
for label, draw in (("normal", lambda: random.gauss(0, 1)),
                    ("heavy-tailed (t, 3 df)", lambda: float(rng.standard_t(3)))):
    sims, alpha = 3000, 0.05
    slower = sum(simulate(0.0, 0.1, 40, alpha, 0.0, draw)[0] == "slower" for _ in range(sims))
    limit = alpha * sims + 3 * math.sqrt(alpha * (1 - alpha) * sims)
    check(f"A/A, {label} noise, min-effect 0: 'slower' in {slower} of {sims} "
          f"sequential comparisons, at most alpha {alpha} (+3 sd: {limit:.0f})",
          slower <= limit)

sims, beta = 2000, 0.1
cleared = sum(simulate(math.log(1.10), 0.1, 40, 0.01, 0.05, lambda: random.gauss(0, 1),
                       beta)[0] == "not slower" for _ in range(sims))
limit = beta * sims + 3 * math.sqrt(beta * (1 - beta) * sims)
check(f"a slowdown of exactly --detect (10 %) under 10 % noise: cleared ('not slower') in "
      f"{cleared} of {sims}, at most beta {beta} (+3 sd: {limit:.0f})", cleared <= limit)
verdicts = [simulate(math.log(1.10), 0.03, 40, 0.01, 0.05, lambda: random.gauss(0, 1))
            for _ in range(50)]
check("a 10 % slowdown under 3 % noise: 'slower' within 14 pairs in at least 45 of 50, "
      "never 'faster'", sum(v[0] == "slower" and v[1] <= 14 for v in verdicts) >= 45
      and all(v[0] != "faster" for v in verdicts), str(verdicts))
verdicts = [simulate(0.0, 0.03, 40, 0.01, 0.05, lambda: random.gauss(0, 1)) for _ in range(50)]
check("A/A under 3 % noise: 'not slower' within 10 pairs, 50 of 50",
      all(v[0] == "not slower" and v[1] <= 10 for v in verdicts), str(verdicts[:5]))
verdicts = [simulate(0.0, 1.0, 40, 0.01, 0.05, lambda: random.gauss(0, 1)) for _ in range(20)]
check("A/A under 100 % noise: never 'slower' or 'faster', and mostly 'inconclusive' at 40",
      all(v[0] in ("inconclusive", "not slower") for v in verdicts)
      and sum(v == ("inconclusive", 40) for v in verdicts) >= 15, str(verdicts))


def samples(cpu_share, ref):
    return [{"real_ns": 100.0, "cpu_ns": 100.0 * s, "ref_ns": 3.0 if ref else None}
            for s in cpu_share]


verdicts = [simulate(math.log(0.8), 0.03, 40, 0.001, 0.05, lambda: random.gauss(0, 1))
            for _ in range(20)]
check("a 20 % speed-up under 3 % noise: 'faster' (kept open past the clearing), 20 of 20",
      all(v[0] == "faster" for v in verdicts), str(verdicts[:5]))


check("measure: a body on the CPU in one of A's processes is judged on CPU time",
      compare.measure_of("pool/alloc_free/64", samples([0.5, 0.95, 0.6], False), False) == "cpu")
check("measure: a body off the CPU in all of A's processes is judged on wall time",
      compare.measure_of("pool/alloc_free/64", samples([0.5, 0.85, 0.6], True), True) == "wall/ref")
check("measure: no cpu_time in a process: wall time",
      compare.measure_of("x", [{"real_ns": 1.0, "cpu_ns": None, "ref_ns": None}], False)
      == "wall")
check("measure: a manual-time body is judged on the wall time it reports",
      compare.measure_of("channel/ring/rtt/manual_time", samples([1.0], True), True)
      == "wall/ref")
check("looks: 6, 10, 14, 20, 28, 40 up to 40; capped at 25; 8 alone",
      compare.looks(40) == [6, 10, 14, 20, 28, 40] and compare.looks(25) == [6, 10, 14, 20, 25]
      and compare.looks(8) == [6, 8])

# Same layout for A and B: the same variables, and the same bytes on the stack.
sides = {"A": {"bench": "/x/build-a/bench/shmrig-bench", "rev": None, "env": {"K": "0000000"}},
         "B": {"bench": "/x/b/bench/shmrig-bench", "rev": "f" * 40, "env": {"OTHER": "1"}}}
plans = compare.launches(sides, "^pool/.*$", 0.04, "/tmp/out.json")


def stack_bytes(cmd, env):
    return len(cmd[0]) + 1 + sum(len(a) + 1 for a in cmd) + \
        sum(len(k) + len(v) + 2 for k, v in env.items())


check("launches: A and B get the same variables",
      set(plans["A"][1]) == set(plans["B"][1]) and "SHMRIG_COMPARE_PAD" in plans["A"][1],
      str(set(plans["A"][1]) ^ set(plans["B"][1])))
check("launches: A's and B's command lines and environments have the same size",
      stack_bytes(*plans["A"]) == stack_bytes(*plans["B"]),
      f"{stack_bytes(*plans['A'])} != {stack_bytes(*plans['B'])}")
check("launches: each side keeps its own values",
      plans["A"][1]["K"] == "0000000" and plans["B"][1]["K"] == "" and
      plans["B"][1]["SHMRIG_GIT_REV"] == "f" * 40 and plans["A"][1]["SHMRIG_GIT_REV"] == "")
if compare.layout_allowed():
    import subprocess

    def fixed():
        if not compare.fixed_layout():
            os._exit(3)
    stacks = [subprocess.run(["grep", r"\[stack\]", "/proc/self/maps"], preexec_fn=fixed,
                             capture_output=True, text=True).stdout for _ in range(2)]
    persona = subprocess.run(["cat", "/proc/self/personality"], preexec_fn=fixed,
                             capture_output=True, text=True).stdout
    check("fixed_layout: the child has ADDR_NO_RANDOMIZE, and two children one stack",
          int(persona, 16) & compare.ADDR_NO_RANDOMIZE and stacks[0] == stacks[1] != "",
          f"{persona!r} {stacks}")
else:
    print("skip  fixed_layout: the kernel refuses personality(ADDR_NO_RANDOMIZE) here")

# --hog's process has a release path: a comparison that cannot judge (no such builds) after
# the hog started still stops it and reaps it.
if len(os.sched_getaffinity(0)) >= 2:
    import re
    import subprocess
    run = subprocess.run([os.path.join(ROOT, "scripts", "compare"), "--hog",
                          "/nonexistent/a", "/nonexistent/b"], capture_output=True, text=True,
                         timeout=60)
    pid = re.search(r"hog runs on CPU \d+ \(pid (\d+)\)", run.stdout)
    gone = False
    if pid:
        try:
            os.kill(int(pid.group(1)), 0)
        except ProcessLookupError:
            gone = True
    check("--hog: started, and stopped and reaped when the comparison cannot judge",
          run.returncode == 2 and pid is not None and gone, run.stdout[-400:])
else:
    print("skip  --hog needs 2 CPUs")

print(f"test_compare_stats: {len(failures)} failed")
sys.exit(1 if failures else 0)
