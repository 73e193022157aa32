#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The exported ABI of libshmrig is what the headers and lib/shmrig.map say.

Three lists must be one: the SHMRIG_API functions of the public headers, the global
symbols of the linker map, and the defined dynamic symbols of the built libshmrig.so.
Every exported symbol must carry the version node the map puts it under. The project
version must be the one in version.h and shmrig.pc. Exit 0, or 1 with every difference
listed.

usage: check_abi.py --so LIB.so --map shmrig.map --version X.Y.Z [--pc shmrig.pc]
                    --headers DIR_OR_FILE [DIR_OR_FILE ...]
"""
import argparse
import pathlib
import re
import subprocess
import sys

PREFIX = "shmrig_"


def strip_c(text):
    """C text without comments and preprocessor lines (continuations included)."""
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r"\\\n", " ", text)
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))


def header_functions(paths, problems):
    """{name: header} of every SHMRIG_API declaration."""
    found = {}
    files = []
    for p in map(pathlib.Path, paths):
        files += sorted(p.glob("*.h")) if p.is_dir() else [p]
    for f in files:
        text = strip_c(f.read_text())
        for m in re.finditer(r"\bSHMRIG_API\b([^;{]*)", text):
            name = re.search(r"\b(\w+)\s*\(", m.group(1))
            if not name:
                problems.append(f"{f.name}: a SHMRIG_API declaration without a function name: "
                                f"{' '.join(m.group(0).split())!r}")
                continue
            found[name.group(1)] = f.name
    if not found:
        problems.append(f"no SHMRIG_API declaration in {', '.join(map(str, files)) or paths}")
    return found


def map_symbols(path, problems):
    """({name: node}, [node names]) of a GNU ld version script."""
    text = re.sub(r"/\*.*?\*/", " ", pathlib.Path(path).read_text(), flags=re.S)
    text = re.sub(r"#[^\n]*", "", text)
    symbols, nodes, has_local_star = {}, [], False
    for node, body, parent in re.findall(r"([\w.]+)\s*\{(.*?)\}\s*([\w.]*)\s*;", text, flags=re.S):
        nodes.append(node)
        if parent and parent not in nodes:
            problems.append(f"map: node {node} inherits {parent}, which is not an earlier node")
        scope = None
        for item in re.split(r"[;\s]+", body.replace(":", ": ")):
            if item in ("global:", "local:"):
                scope = item
            elif not item:
                continue
            elif scope == "local:":
                has_local_star |= item == "*"
            elif scope != "global:":
                problems.append(f"map: {item!r} in node {node} is neither global: nor local:")
            elif item in symbols:
                problems.append(f"map: {item} is in node {symbols[item]} and again in {node}")
            else:
                symbols[item] = node
    if not nodes:
        problems.append(f"map: no version node in {path}")
    if not has_local_star:
        problems.append("map: no 'local: *;': symbols outside the map would be exported")
    return symbols, nodes


def exported_symbols(so, nodes):
    """{name: version or None} of the defined dynamic symbols; the version nodes' own
    absolute symbols (shown as NODE or NODE@@NODE) left out."""
    out = subprocess.run(["readelf", "--dyn-syms", "--wide", so], check=True,
                         capture_output=True, text=True).stdout
    symbols = {}
    for line in out.splitlines():
        cols = line.split()
        # Num: Value Size Type Bind Vis Ndx Name [(version index)]
        if len(cols) < 8 or not cols[0].endswith(":") or not cols[0][:-1].isdigit():
            continue
        ndx, full = cols[6], cols[7]
        if ndx == "UND" or not full:
            continue
        name, _, version = full.partition("@")
        version = version.lstrip("@") or None
        if ndx == "ABS" and name in nodes and version in (None, name):
            continue
        if cols[4] == "LOCAL":
            continue
        symbols[name] = version
    return symbols


def node_version(node):
    m = re.fullmatch(r"SHMRIG_(\d+)\.(\d+)", node)
    return (int(m.group(1)), int(m.group(2))) if m else None


def listing(names):
    return "".join(f"\n    {n}" for n in sorted(names))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--so", required=True)
    ap.add_argument("--map", required=True)
    ap.add_argument("--version", required=True)
    ap.add_argument("--pc")
    ap.add_argument("--headers", nargs="+", required=True)
    args = ap.parse_args()

    problems = []
    api = header_functions(args.headers, problems)
    mapped, nodes = map_symbols(args.map, problems)
    exported = exported_symbols(args.so, nodes)
    project = tuple(int(x) for x in args.version.split("."))

    def differ(what, names):
        if names:
            problems.append(f"{what} ({len(names)}):{listing(names)}")

    differ("declared SHMRIG_API in a header but not in lib/shmrig.map (add it to the map, "
           "in the node of the coming release)", api.keys() - mapped.keys())
    differ("in lib/shmrig.map but declared SHMRIG_API in no header",
           mapped.keys() - api.keys())
    differ("in lib/shmrig.map but not exported by libshmrig.so (no definition?)",
           mapped.keys() - exported.keys())
    differ("exported by libshmrig.so but not in lib/shmrig.map",
           exported.keys() - mapped.keys())
    differ(f"names without the {PREFIX} prefix, or internal {PREFIX}_ names, in the ABI",
           {n for n in api.keys() | mapped.keys() | exported.keys()
            if not n.startswith(PREFIX) or n.startswith(PREFIX + "_")})
    differ("exported without a symbol version",
           {n for n, v in exported.items() if v is None})
    differ("exported under another version than its map node",
           {f"{n}@{v}, map: {mapped[n]}" for n, v in exported.items()
            if v is not None and n in mapped and v != mapped[n]})
    for node in nodes:
        v = node_version(node)
        if v is None:
            problems.append(f"map: node {node} is not named SHMRIG_<major>.<minor>")
        elif v > project[:2]:
            problems.append(f"map: node {node} is newer than the project version {args.version}")

    candidates = [p / "version.h" if p.is_dir() else p for p in map(pathlib.Path, args.headers)]
    version_h = next((p for p in candidates if p.name == "version.h" and p.is_file()), None)
    if version_h is None:
        problems.append("no version.h among the headers")
    else:
        text = version_h.read_text()
        got = tuple(int(m.group(1)) if m else None for m in
                    (re.search(rf"#define SHMRIG_VERSION_{p}\s+(\d+)", text)
                     for p in ("MAJOR", "MINOR", "PATCH")))
        if got != project:
            problems.append(f"{version_h}: SHMRIG_VERSION_MAJOR/MINOR/PATCH are {got}, "
                            f"the project version is {args.version}")
    if args.pc:
        m = re.search(r"^Version:\s*(\S+)", pathlib.Path(args.pc).read_text(), flags=re.M)
        if not m or m.group(1) != args.version:
            problems.append(f"{args.pc}: Version is {m.group(1) if m else 'missing'}, "
                            f"the project version is {args.version}")
        # The public headers include no other library's: users need none at compile time.
        m = re.search(r"^Requires:\s*(.*)$", pathlib.Path(args.pc).read_text(), flags=re.M)
        if m and m.group(1).strip():
            problems.append(f"{args.pc}: Requires: {m.group(1).strip()} (the public headers "
                            f"need no other library; list it in Requires.private)")

    if problems:
        print(f"ABI check FAILED ({args.so}, {args.map}):")
        for p in problems:
            print(f"  - {p}")
        return 1
    print(f"ABI check ok: {len(exported)} functions, each in the headers, the map and "
          f"libshmrig.so, versioned under {', '.join(nodes)}; version {args.version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
