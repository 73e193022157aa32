#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Check libshmrig's rooms and the directions of its #include lines.

lib/ holds one folder a room, bottom up (README "Layout"):

    base < os < pool < codec < transport < session

A file of a room includes only headers of its own room and of the rooms
below it, internal ("room/file.h") and public (<shmrig/file.h>, each public
header belonging to one room) alike. Internal headers are always named with
their room, so a line says where it reaches. Nothing includes in a cycle.
README's layout section names every room and every file in it.

Usage: check_layout.py SOURCE_ROOT. Exit 0 clean, 1 with one line a problem.
"""
import os
import re
import sys

ROOMS = ["base", "os", "pool", "codec", "transport", "session"]
PUBLIC = {
    "common.h": "base", "options.h": "base", "version.h": "base",
    "topo.h": "os", "segment.h": "os",
    "pool.h": "pool",
    "value.h": "codec", "codec.h": "codec", "frame.h": "codec", "registry.h": "codec",
    "plugin.h": "codec",
    "channel.h": "transport",
    "session.h": "session",
    "shmrig.h": None,  # the umbrella: above every room
}
LIB_ROOT_FILES = {"meson.build", "shmrig.map", "include"}
INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]', re.M)


def rank(room):
    return len(ROOMS) if room is None else ROOMS.index(room)


def main(root):
    lib = os.path.join(root, "lib")
    problems = []
    files = {}  # key ("pool/pool.c" or "<shmrig/pool.h>") -> (room, path)
    for entry in sorted(os.listdir(lib)):
        path = os.path.join(lib, entry)
        if entry in LIB_ROOT_FILES:
            continue
        if not os.path.isdir(path) or entry not in ROOMS:
            problems.append(f"lib/{entry}: not a room (rooms: {', '.join(ROOMS)})")
            continue
        for name in sorted(os.listdir(path)):
            if name.endswith((".c", ".h")):
                files[f"{entry}/{name}"] = (entry, path)
    for room in ROOMS:
        if not os.path.isdir(os.path.join(lib, room)):
            problems.append(f"lib/{room}/: the room is missing")
    pub = os.path.join(lib, "include", "shmrig")
    for name in sorted(os.listdir(pub)):
        header = name[:-3] if name.endswith(".h.in") else name
        if not header.endswith(".h"):
            continue
        if header not in PUBLIC:
            problems.append(f"lib/include/shmrig/{name}: public header with no room "
                            f"(add it to PUBLIC in tests/check_layout.py)")
            continue
        files[f"<shmrig/{header}>"] = (PUBLIC[header], pub)

    edges = {}
    for key, (room, folder) in files.items():
        if key.startswith("<"):
            base = key[len("<shmrig/"):-1]
            fname = base if os.path.exists(os.path.join(folder, base)) else base + ".in"
        else:
            fname = key.split("/", 1)[1]
        where = os.path.relpath(os.path.join(folder, fname), root)
        with open(os.path.join(folder, fname), encoding="utf-8") as f:
            text = f.read()
        edges[key] = []
        for quote, target in INCLUDE.findall(text):
            if quote == "<":
                if not target.startswith("shmrig/"):
                    continue
                dep = f"<{target}>"
            else:
                if "/" not in target:
                    problems.append(f'{where}: #include "{target}": name the room '
                                    f'("room/{target}")')
                    continue
                dep = target
            if dep not in files:
                problems.append(f"{where}: #include {target}: no such file in lib/")
                continue
            dep_room = files[dep][0]
            if rank(dep_room) > rank(room):
                problems.append(f"{where}: room {room or 'umbrella'} includes {target} of "
                                f"room {dep_room}, which is above it")
            edges[key].append(dep)

    # cycles (a room may include its own headers; they must still form no loop)
    state = {}

    def visit(node, stack):
        state[node] = 1
        for nxt in edges.get(node, []):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                problems.append("include cycle: " + " -> ".join(cycle))
            elif not state.get(nxt):
                visit(nxt, stack + [nxt])
        state[node] = 2

    for node in sorted(edges):
        if not state.get(node):
            visit(node, [node])

    # README's layout section names every room folder and every file in it
    with open(os.path.join(root, "README.md"), encoding="utf-8") as f:
        readme = f.read()
    m = re.search(r"^## Layout\n(.*?)^## ", readme, re.M | re.S)
    if not m:
        problems.append("README.md: no '## Layout' section")
    else:
        section = m.group(1)
        for key, (room, _) in files.items():
            if key.startswith("<"):
                continue
            if f"lib/{room}/" not in section:
                problems.append(f"README.md Layout: room lib/{room}/ is not described")
            if key.split("/", 1)[1] not in section:
                problems.append(f"README.md Layout: lib/{key} is not named")

    for p in sorted(set(problems)):
        print(p)
    if problems:
        print(f"check_layout: {len(set(problems))} problem(s)")
        return 1
    print(f"check_layout: {len(files)} files in {len(ROOMS)} rooms, every include points down")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[-1], file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1]))
