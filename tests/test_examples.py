#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Tests of the example codec plugins (examples/codecs/), one case a run:

    test_examples.py CASE --exe PATH/shmrig-validate --examples BUILD/examples/codecs [...]

Cases:
  good           examples/codecs/good (example_delta.so) passes every check, golden frames
                 included; its JSON and JUnit reports say the same; the built-in codecs
                 pass every check too (a short run: validate_builtin is the full one)
  broken FLAW    the broken plugin example_FLAW.so (examples/codecs/broken/flawed.c,
                 -DFLAW_<FLAW>) fails the check named for its flaw (ROWS below), with the
                 words that say why; the run exits 1. The other checks it fails are printed.
                 A flaw in GAPS (no check catches it) is proven real, its check must still
                 pass (else: "the gap is closed"), and the row is skipped (77) with the
                 reason.
  install        `meson install --destdir` of the build, then examples/codecs/good copied
                 out of the tree, configured and built against the installed
                 shmrig-plugin.pc (pkg-config, PKG_CONFIG_SYSROOT_DIR), and the installed
                 shmrig-validate run on the .so: exit 0. Skipped (77) without meson, ninja
                 or pkg-config.

Exit 0 pass, 1 fail (each problem on its own line), 77 skipped (the reason printed).
Standard library only.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

sys.dont_write_bytecode = True

CODEC = "example.delta"

# flaw: (the check that must fail, words its message must hold: any of them)
ROWS = {
    "leak": ("Required.Lifetimes.Accounting", ("a pool it opened and never closed",)),
    "write_past": ("Required.Buffers.NoWritePastContent", ("past content_size",)),
    "meta_not_json": ("Required.Meta.JsonCompatible", ("above INT64_MAX",)),
    "crash_truncated": ("Required.Hostile.Mutations", ("killed by SIGABRT",)),
    "persistent_as_temporary": ("Required.Buffers.TemporaryFlags",
                                ("temporary in the frame, the codec reads it as persistent",)),
    "view_of_temporary": ("Required.Buffers.TemporaryFlags",
                          ("keeps a view of a temporary buffer",)),
    # a race: wrong bytes, or a crash (a use after free), or a sanitizer's exit
    "thread_unsafe": ("Required.RoundTrip.Threads",
                      ("thread 0:", "thread 1:", "killed by", "exited with status")),
    "format_change": ("Recommended.Golden.Frames", ("decodes to another value than it holds",)),
}

# Flaws no check catches yet: the row proves the flaw is real and that the check still passes
# (so the day it catches it, this fails: "caught now"), and is skipped (77) with the reason.
GAPS = {
    # none now: the leak of a pool of the codec's own is caught by the segments its
    # process leaves with the codec's prefix (shmrig-validate sets $SHMRIG_PREFIX for it)
}

problems = []


def check(ok, what):
    if not ok:
        problems.append(what)
    return ok


def skip(why):
    print(f"skipped: {why}")
    sys.exit(77)


def show(proc):
    return f"exit {proc.returncode}\n--- stdout\n{proc.stdout}--- stderr\n{proc.stderr}"


def validate(args, prefix, env=None, exe=None, timeout=900):
    full_env = dict(os.environ)
    full_env.pop("SHMRIG_VALIDATE_SELFTEST", None)
    full_env["SHMRIG_PREFIX"] = prefix
    full_env.update(env or {})
    return subprocess.run([exe or ARGS.exe] + args, capture_output=True, text=True,
                          env=full_env, timeout=timeout, errors="replace")


def results(json_path):
    """{check: result} of the codec under test, from the --json report."""
    with open(json_path, encoding="utf-8") as f:
        doc = json.load(f)
    check(doc.get("schema") == "shmrig-validate/1", f"JSON schema {doc.get('schema')!r}")
    return doc, {r["check"]: r for r in doc["results"]}


def catalogue():
    """The names of the checks (--list)."""
    proc = subprocess.run([ARGS.exe, "--list"], capture_output=True, text=True)
    if not check(proc.returncode == 0, f"--list: {show(proc)}"):
        return []
    return [line.split()[0] for line in proc.stdout.splitlines() if line.strip()]


def all_pass(proc, json_path, junit_path, codecs, what):
    """Every check of the catalogue passed for each codec: exit 0, the JSON and JUnit agree."""
    check(proc.returncode == 0, f"{what} does not pass:\n{show(proc)}")
    doc, _ = results(json_path)
    names = catalogue()
    ran = {(r["check"], r["codec"]): r for r in doc["results"]}
    for codec in codecs:
        for name in names:
            r = ran.get((name, codec))
            if check(r is not None, f"{what}: {name} [{codec}] was not reported"):
                check(r["status"] == "pass",
                      f"{what}: {name} [{codec}]: {r['status']}: {r['message']}")
    suite = ET.parse(junit_path).getroot().find("testsuite")
    check(suite is not None and int(suite.get("failures")) == 0 and
          int(suite.get("skipped")) == 0 and int(suite.get("tests")) == len(names) * len(codecs),
          f"{what}: JUnit tests/failures/skipped "
          f"{suite.get('tests')}/{suite.get('failures')}/{suite.get('skipped')}, want "
          f"{len(names) * len(codecs)}/0/0")
    print(f"{what}: {proc.stdout.strip().splitlines()[-1]}")


def case_good(tmp):
    good = os.path.join(ARGS.examples, "good", "example_delta.so")
    json_path, junit_path = os.path.join(tmp, "good.json"), os.path.join(tmp, "good.xml")
    proc = validate([good, "--json", json_path, "--junit", junit_path, "--repetitions", "1"],
                    "t_ex_good")
    check(proc.stdout.startswith("shmrig-validate: plugin 'example' 1.0.0 ("),
          f"the header does not name the plugin:\n{show(proc)}")
    all_pass(proc, json_path, junit_path, [CODEC], "example_delta.so")
    # the built-in codecs, every check, few and small values (validate_builtin is the full run)
    json_path, junit_path = os.path.join(tmp, "builtin.json"), os.path.join(tmp, "builtin.xml")
    proc = validate(["--builtin", "--values", "8", "--max-bytes", "64K", "--repetitions", "1",
                     "--json", json_path, "--junit", junit_path], "t_ex_builtin")
    all_pass(proc, json_path, junit_path, ["ndarray", "table", "dataset", "bytes"], "--builtin")


def case_broken(tmp, flaw):
    want, words = ROWS[flaw]
    plugin = os.path.join(ARGS.examples, "broken", f"example_{flaw}.so")
    json_path = os.path.join(tmp, f"{flaw}.json")
    # Throughput judges nothing a flaw breaks: left out. 50 values show every flaw but the
    # race, which gets the default 200: more chances for the two threads to meet.
    args = [plugin, "--check", "^Required|^Recommended.(Meta|Golden)", "--json", json_path,
            "--values", "200" if flaw == "thread_unsafe" else "50"]
    prefix, env = f"t_ex_{flaw[:12]}", None
    if flaw in GAPS:
        # the plugin's own pool takes $SHMRIG_PREFIX, the kit's --prefix: what the kit's sweep
        # leaves is what the plugin leaked; small arenas, as little left as can be
        env = {"SHMRIG_ARENA_SIZE": "2M"}
        args += ["--prefix", prefix + "_kit"]
    proc = validate(args, prefix, env=env)
    if flaw in GAPS:
        leaked = remove_segments(prefix)
        check(leaked > 0, f"example_{flaw}.so left no segment with the prefix {prefix}: "
              "the flaw is not there")
    if not check(os.path.exists(json_path), f"example_{flaw}.so: no JSON report:\n{show(proc)}"):
        return
    _, by_check = results(json_path)
    failed = sorted(name for name, r in by_check.items() if r["status"] == "fail")
    print(f"example_{flaw}.so: failed {', '.join(failed) or 'nothing'}")
    r = by_check.get(want)
    if not check(r is not None, f"example_{flaw}.so: {want} was not reported:\n{show(proc)}"):
        return
    print(f"{want}: {r['status']}: {r['message']}")
    if flaw in GAPS:
        print(f"example_{flaw}.so left {leaked} segments of its own pool")
        check(r["status"] == "pass", f"example_{flaw}.so: {want} {r['status']}s now: "
              f"{r['message']}: the gap is closed, drop {flaw} from GAPS")
        if not problems:
            skip(f"known gap: {want} does not catch example_{flaw}.so: {GAPS[flaw]}")
        return
    check(r["status"] == "fail", f"example_{flaw}.so: {want} {r['status']}, want fail: "
          f"{r['message']}")
    check(any(w in r["message"] for w in words),
          f"example_{flaw}.so: {want} does not say {' or '.join(map(repr, words))}: "
          f"{r['message']}")
    check(proc.returncode == 1, f"example_{flaw}.so: exit {proc.returncode}, want 1:\n"
          f"{show(proc)}")


def remove_segments(prefix):
    """Unlink the segments named PREFIX-... (/dev/shm, hugetlbfs mounts); how many there were."""
    dirs = ["/dev/shm"]
    try:
        with open("/proc/mounts", encoding="utf-8") as f:
            dirs += [line.split()[1] for line in f if line.split()[2:3] == ["hugetlbfs"]]
    except OSError:
        pass
    n = 0
    for d in dirs:
        try:
            names = os.listdir(d)
        except OSError:
            continue
        for name in names:
            if name.startswith(prefix + "-"):
                os.unlink(os.path.join(d, name))
                n += 1
    return n


def run(cmd, env, what, cwd=None, timeout=300):
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd,
                          timeout=timeout, errors="replace")
    check(proc.returncode == 0, f"{what}: {' '.join(cmd)}:\n{show(proc)}")
    return proc


def find(root, name):
    for dirpath, _, files in os.walk(root):
        if name in files:
            return os.path.join(dirpath, name)
    return None


def case_install(tmp):
    tools = {t: shutil.which(t) for t in ("meson", "ninja", "pkg-config")}
    missing = [t for t, path in tools.items() if not path]
    if missing:
        skip(f"no {', '.join(missing)} on PATH")
    if not ARGS.build_root:
        skip("no --build-root")
    dest = os.path.join(tmp, "dest")
    env = dict(os.environ)
    # the build is made already (meson test built it): install what is there, rebuild nothing
    proc = run([tools["meson"], "install", "-C", ARGS.build_root, "--destdir", dest,
                "--no-rebuild", "--quiet"], env, "meson install")
    if proc.returncode:
        return
    pc = find(dest, "shmrig-plugin.pc")
    validate_exe = find(dest, "shmrig-validate")
    libshmrig = find(dest, "libshmrig.so")
    plugin_h = find(dest, "plugin.h")
    for what, path in (("shmrig-plugin.pc", pc), ("shmrig-validate", validate_exe),
                       ("libshmrig.so", libshmrig), ("shmrig/plugin.h", plugin_h)):
        check(path is not None, f"meson install did not install {what} (under {dest})")
    if problems:
        return
    check(os.path.basename(os.path.dirname(plugin_h)) == "shmrig",
          f"plugin.h installed as {plugin_h}, not under include/shmrig/")
    # pkg-config sees the installed tree only, its paths under DESTDIR (the sysroot)
    env["PKG_CONFIG_LIBDIR"] = os.path.dirname(pc)
    env.pop("PKG_CONFIG_PATH", None)
    env["PKG_CONFIG_SYSROOT_DIR"] = dest
    cflags = run([tools["pkg-config"], "--cflags", "shmrig-plugin"], env, "pkg-config").stdout
    libs = run([tools["pkg-config"], "--libs", "shmrig-plugin"], env, "pkg-config").stdout
    include_dir = os.path.dirname(os.path.dirname(plugin_h))
    check(f"-I{include_dir}" in cflags.split(),
          f"pkg-config --cflags shmrig-plugin: {cflags!r}, want -I{include_dir}")
    check(libs.strip() == "", f"pkg-config --libs shmrig-plugin: {libs!r}, want nothing "
          "(a plugin does not link libshmrig)")
    # the good example, copied out of the tree, is a project of its own
    src, build = os.path.join(tmp, "example"), os.path.join(tmp, "example-build")
    shutil.copytree(os.path.join(ARGS.source_root, "examples", "codecs", "good"), src)
    env["PATH"] = os.path.dirname(validate_exe) + os.pathsep + env.get("PATH", "")
    env["LD_LIBRARY_PATH"] = os.path.dirname(libshmrig)
    if run([tools["meson"], "setup", build, src], env, "meson setup (out of tree)").returncode:
        return
    if run([tools["meson"], "compile", "-C", build], env, "meson compile").returncode:
        return
    plugin = os.path.join(build, "example_delta.so")
    # README's line without meson: the compiler and pkg-config alone
    cc = shutil.which(os.environ.get("CC", "cc"))
    if cc:
        by_hand = os.path.join(tmp, "by_hand.so")
        run([cc, "-std=c11", "-O2", "-fPIC", "-shared", "-fvisibility=hidden"] + cflags.split() +
            [os.path.join(src, "delta.c"), os.path.join(src, "series.c"), "-o", by_hand], env,
            "cc with pkg-config --cflags shmrig-plugin")
        proc = validate([by_hand, "--check", "RoundTrip.InProcess", "--values", "16"],
                        "t_ex_install", env={"LD_LIBRARY_PATH": env["LD_LIBRARY_PATH"]},
                        exe=validate_exe)
        check(proc.returncode == 0, f"the plugin built by cc:\n{show(proc)}")
    readelf = shutil.which("readelf")
    if readelf:
        needed = run([readelf, "-d", plugin], env, "readelf").stdout
        check("libshmrig" not in needed, f"example_delta.so links libshmrig:\n{needed}")
    # the installed kit, on the installed library, every check (golden frames from the
    # build's golden/), small values to keep it short
    names = catalogue()
    proc = validate([plugin, "--values", "16", "--max-bytes", "64K", "--repetitions", "1"],
                    "t_ex_install", env={"LD_LIBRARY_PATH": env["LD_LIBRARY_PATH"]},
                    exe=validate_exe)
    check(proc.returncode == 0, f"the installed shmrig-validate on the out-of-tree "
          f"example_delta.so:\n{show(proc)}")
    # every check passed, golden frames included (copied beside the .so by its meson.build)
    last = f"{len(names)} passed, 0 failed, 0 skipped, 0 expected failures"
    check(last in proc.stdout, f"not every check passed (want '{last}'):\n{show(proc)}")
    print(proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else "no output")


def main():
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("case", choices=["good", "broken", "install"])
    parser.add_argument("flaw", nargs="?", choices=sorted(ROWS))
    parser.add_argument("--exe", required=True, help="shmrig-validate")
    parser.add_argument("--examples", required=True, help="the build's examples/codecs")
    parser.add_argument("--source-root", default=os.path.join(os.path.dirname(__file__), ".."))
    parser.add_argument("--build-root")
    ARGS = parser.parse_args()
    if (ARGS.case == "broken") != (ARGS.flaw is not None):
        parser.error("a FLAW with the case broken, and only then")
    with tempfile.TemporaryDirectory(prefix="test_examples.") as tmp:
        if ARGS.case == "broken":
            case_broken(tmp, ARGS.flaw)
        else:
            {"good": case_good, "install": case_install}[ARGS.case](tmp)
    for p in problems:
        print(f"FAIL: {p}")
    name = ARGS.case + (f" {ARGS.flaw}" if ARGS.flaw else "")
    print(f"{name}: {'ok' if not problems else f'{len(problems)} problems'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
