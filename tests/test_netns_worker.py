#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""shmrig-worker across a network (issue 17): two network namespaces joined by a
veth pair stand for two hosts. `shmrig-worker --listen 10.213.X.1:0` runs in
one, `shmrig-worker --call` from the other against the address it printed, for
echo and checksum at a few sizes (exit status and JSON checked); then the worker
is SIGKILLed while a caller is in the middle of its calls, and that caller must
fail with exit 4 and words naming the address, within a bound; a call to where
it was is refused (exit 3). Last, a second worker is ended by SIGTERM while a
caller is in the middle of its calls: it must exit 0 having closed its pool
(no segment of its prefix left), and the caller fail with exit 4. The
namespaces and the veth pair are always removed (also on failure), and no
segment of our prefixes is left behind (the killed worker's, which it could
not remove, are removed here: the prefix is this run's alone).

Needs root and `ip netns` with veth: otherwise exit 77 with the reason.
--loopback runs the same on 127.0.0.1 without namespaces (any user).
Usage: test_netns_worker.py --worker PATH/shmrig-worker [--loopback]
"""

import argparse
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import time

SKIP = 77
# Bounds, not speeds: a dead peer's TCP connection is reset at once (its host
# kernel lives); a call to a silent host would take UCX's keepalive instead.
LINE_TIMEOUT_S = 30
CALL_TIMEOUT_S = 120
DEATH_BOUND_S = 10
SIZES = [0, 64, 65536, 1 << 20, 4 << 20]


class Skip(Exception):
    pass


def run(cmd, check=True, **kw):
    """Run an argv list (no shell); on failure with check, raise with its stderr."""
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {proc.returncode}: {proc.stderr.strip()}")
    return proc


def segment_dirs():
    """/dev/shm and every hugetlbfs mount: where a pool's segments live."""
    dirs = ["/dev/shm"]
    try:
        with open("/proc/mounts") as f:
            for line in f:
                fields = line.split()
                if len(fields) > 2 and fields[2] == "hugetlbfs":
                    dirs.append(fields[1])
    except OSError:
        pass
    return dirs


def our_segments(prefixes):
    found = []
    for d in segment_dirs():
        try:
            names = os.listdir(d)
        except OSError:
            continue
        for name in names:
            if any(name.startswith(p + "-") for p in prefixes):
                found.append(os.path.join(d, name))
    return found


class Net:
    """Two namespaces and a veth pair; teardown() removes whatever was made."""

    def __init__(self, ip):
        pid = os.getpid()
        self.ip = ip
        self.ns = [f"shmrig_w{pid}a", f"shmrig_w{pid}b"]
        self.veth = [f"shv{pid}a", f"shv{pid}b"]  # at most 15 characters
        subnet = pid % 256
        self.addr = [f"10.213.{subnet}.1", f"10.213.{subnet}.2"]
        self.made_ns = []
        self.made_veth = False
        self.moved = False

    def setup(self):
        for ns in self.ns:
            proc = run([self.ip, "netns", "add", ns], check=False)
            if proc.returncode != 0:
                raise Skip(f"ip netns add is not allowed here: {proc.stderr.strip()}")
            self.made_ns.append(ns)
        proc = run([self.ip, "link", "add", self.veth[0], "type", "veth", "peer", "name",
                    self.veth[1]], check=False)
        if proc.returncode != 0:
            raise Skip(f"a veth pair is not allowed here: {proc.stderr.strip()}")
        self.made_veth = True
        for i in range(2):
            run([self.ip, "link", "set", self.veth[i], "netns", self.ns[i]])
        self.moved = True
        for i in range(2):
            run([self.ip, "-n", self.ns[i], "addr", "add", self.addr[i] + "/30", "dev",
                 self.veth[i]])
            run([self.ip, "-n", self.ns[i], "link", "set", self.veth[i], "up"])
            run([self.ip, "-n", self.ns[i], "link", "set", "lo", "up"])

    def exec_argv(self, i, argv):
        return [self.ip, "netns", "exec", self.ns[i]] + argv


    def teardown(self):
        errors = []
        # deleting a namespace deletes the veth end inside it, and its peer with it
        if self.made_veth and not self.moved:
            proc = run([self.ip, "link", "del", self.veth[0]], check=False)
            if proc.returncode != 0:
                errors.append(proc.stderr.strip())
        for ns in self.made_ns:
            proc = run([self.ip, "netns", "del", ns], check=False)
            if proc.returncode != 0:
                errors.append(proc.stderr.strip())
        for ns in self.made_ns:
            if os.path.exists(f"/run/netns/{ns}"):
                errors.append(f"namespace {ns} is still there")
        for veth in self.veth:
            if run([self.ip, "link", "show", veth], check=False).returncode == 0:
                errors.append(f"veth {veth} is still there")
        return errors


class Loopback:
    """The same steps on 127.0.0.1: no namespace, nothing to make or remove."""

    def __init__(self):
        self.addr = ["127.0.0.1", "127.0.0.1"]
        self.ns = ["this host", "this host"]

    def setup(self):
        pass

    def exec_argv(self, i, argv):
        return argv

    def teardown(self):
        return []


def read_line(proc, timeout_s):
    """The next line of proc's stdout within timeout_s, or None."""
    deadline = time.monotonic() + timeout_s
    buf = b""
    fd = proc.stdout.fileno()
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            return None
        chunk = os.read(fd, 1)
        if not chunk:
            return None
        buf += chunk
    return buf.decode().rstrip("\n")


def check(cond, what, failures):
    if not cond:
        failures.append(what)
        print(f"FAIL: {what}")
    return cond


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", required=True, help="the shmrig-worker executable")
    ap.add_argument("--loopback", action="store_true", help="127.0.0.1, no namespaces")
    args = ap.parse_args()

    if args.loopback:
        net = Loopback()
    else:
        if os.geteuid() != 0:
            print("SKIP: network namespaces need root")
            return SKIP
        ip = shutil.which("ip") or next((p for p in ("/usr/sbin/ip", "/sbin/ip")
                                          if os.access(p, os.X_OK)), None)
        if not ip:
            print("SKIP: no ip(8) here (iproute2)")
            return SKIP
        net = Net(ip)
    worker_bin = os.path.abspath(args.worker)

    base = os.environ.get("SHMRIG_PREFIX") or "t_netns"
    # each process its own prefix (at most 24 characters): the worker's, which a
    # SIGKILL leaves behind, is this run's alone and removed here
    tag = f"{os.getpid() % 100000}"
    prefix_worker = f"{base[:12]}w{tag}"
    prefix_caller = f"{base[:12]}c{tag}"
    prefix_victim = f"{base[:12]}v{tag}"
    prefix_worker2 = f"{base[:12]}x{tag}"
    env = dict(os.environ, UCX_TLS="tcp")
    env.pop("SHMRIG_PREFIX", None)

    failures = []
    worker = None
    try:
        try:
            net.setup()
        except Skip as e:
            print(f"SKIP: {e}")
            return SKIP

        def start_worker(prefix=prefix_worker):
            proc = subprocess.Popen(
                net.exec_argv(0, [worker_bin, "--listen", f"{net.addr[0]}:0", "--prefix",
                                  prefix]),
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
            line = read_line(proc, LINE_TIMEOUT_S)
            if not line or not line.startswith(f"listening on {net.addr[0]}:"):
                proc.kill()
                _, err = proc.communicate()
                raise RuntimeError(f"the worker did not say where it listens: {line!r}, "
                                   f"{err.decode().strip()}")
            return proc, line[len("listening on "):]

        def caller_argv(address, handler, size, count, prefix=prefix_caller):
            return net.exec_argv(1, [worker_bin, "--call", address, "--handler", handler,
                                     "--size", str(size), "--count", str(count), "--json",
                                     "--prefix", prefix])

        worker, address = start_worker()
        print(f"worker in {net.ns[0]} listens on {address}")

        # echo and checksum at a few sizes, from the other namespace
        for handler in ("echo", "checksum"):
            for size in SIZES:
                count = 20 if size >= (1 << 20) else 200
                proc = run(caller_argv(address, handler, size, count), check=False, env=env,
                           timeout=CALL_TIMEOUT_S)
                try:
                    result = json.loads(proc.stdout)
                except ValueError:
                    result = {}
                ok = check(proc.returncode == 0 and result.get("ok") is True and
                           result.get("checked") == count and result.get("size") == size,
                           f"{handler} {size} B x {count}: exit {proc.returncode}, "
                           f"{proc.stdout.strip()} {proc.stderr.strip()}", failures)
                if ok:
                    print(f"{handler:9} {size:>8} B x {count:3}: p50 {result['p50_us']:9.1f} us"
                          f"  p99 {result['p99_us']:9.1f} us  {result['mb_per_s']:8.1f} MB/s")

        # a wrong handler name is a usage error, caught before any connection
        proc = run(net.exec_argv(1, [worker_bin, "--call", address, "--handler", "nope"]),
                   check=False, env=env)
        check(proc.returncode == 2, f"--handler nope: exit {proc.returncode}, want 2", failures)

        def caller_under(address, end_worker, what):
            """A caller in the middle of its calls when end_worker() runs: it is
            connected and calling once its pool has a segment (its first request
            is encoded there, after the connection is made). It must fail with
            exit 4, in time, naming the address."""
            check(our_segments([prefix_victim]) == [],
                  "a caller before left its segments", failures)
            victim = subprocess.Popen(caller_argv(address, "echo", 1 << 20, 1000000,
                                                  prefix_victim),
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
            deadline = time.monotonic() + LINE_TIMEOUT_S
            while not our_segments([prefix_victim]) and time.monotonic() < deadline \
                    and victim.poll() is None:
                select.select([], [], [], 0.01)
            check(our_segments([prefix_victim]) != [], "the caller never made a call", failures)
            end_worker()
            t0 = time.monotonic()
            try:
                out, err = victim.communicate(timeout=DEATH_BOUND_S + CALL_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                victim.kill()
                out, err = victim.communicate()
            took = time.monotonic() - t0
            out, err = out.decode(), err.decode()
            try:
                result = json.loads(out)
            except ValueError:
                result = {}
            print(f"caller after the worker's {what}: exit {victim.returncode} in {took:.2f} s:"
                  f" {err.strip()}")
            check(victim.returncode == 4, f"the caller's exit is {victim.returncode}, want 4",
                  failures)
            check(took < DEATH_BOUND_S, f"the caller took {took:.1f} s to notice", failures)
            check(address in err and "connection lost" in err,
                  f"the caller's words name neither the address nor the loss: {err!r}",
                  failures)
            check(result.get("ok") is False and result.get("exit") == 4,
                  f"the caller's JSON: {out!r}", failures)

        # the worker SIGKILLed under a caller
        def kill_worker():
            worker.kill()
            worker.wait()

        caller_under(address, kill_worker, "SIGKILL")

        # nobody there now: a clear refusal (exit 3)
        proc = run(caller_argv(address, "echo", 64, 1), check=False, env=env,
                   timeout=CALL_TIMEOUT_S)
        check(proc.returncode == 3 and "cannot connect" in proc.stderr and
              address in proc.stderr,
              f"a call to the dead worker: exit {proc.returncode}, {proc.stderr.strip()!r}",
              failures)

        # a second worker ended by SIGTERM under a caller: it ends cleanly
        worker, address = start_worker(prefix_worker2)
        stopped = {}

        def stop_worker():
            worker.send_signal(signal.SIGTERM)
            try:
                _, err = worker.communicate(timeout=DEATH_BOUND_S)
                stopped["err"] = err.decode()
            except subprocess.TimeoutExpired:
                worker.kill()
                _, err = worker.communicate()
                stopped["err"] = "did not stop in time: " + err.decode()

        caller_under(address, stop_worker, "SIGTERM")
        print(f"worker after SIGTERM: exit {worker.returncode}: {stopped['err'].strip()}")
        check(worker.returncode == 0, f"the worker's exit after SIGTERM is {worker.returncode}",
              failures)
        check("stopping" in stopped["err"], "the worker did not say it stopped", failures)
        check(our_segments([prefix_worker2]) == [],
              f"the stopped worker left segments: {our_segments([prefix_worker2])}", failures)
    except Exception as e:  # noqa: BLE001 - any failure is reported, teardown still runs
        failures.append(f"{type(e).__name__}: {e}")
        print(f"FAIL: {type(e).__name__}: {e}")
    finally:
        if worker and worker.poll() is None:
            worker.kill()
            worker.wait()
        # the killed worker could not remove its segments; the callers closed theirs
        for path in our_segments([prefix_worker]):
            os.unlink(path)
        for error in net.teardown():
            failures.append(f"teardown: {error}")
            print(f"FAIL: teardown: {error}")
    left = our_segments([prefix_worker, prefix_caller, prefix_victim, prefix_worker2])
    check(left == [], f"segments left behind: {left}", failures)
    print("PASS" if not failures else f"{len(failures)} failure(s)")
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
