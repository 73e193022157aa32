#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The seed's own way of moving a value between processes, in Python, as a
peer twin for shmrig-bench (bench/bench_peer_seed.c, rows
peer/seed_python/echo/<bytes>).

    seed_echo.py [--cpus SELF,PEER]

One echo round trip, as the seed does it for every message:
  - the caller creates a fresh multiprocessing.shared_memory.SharedMemory block
    of BYTES bytes, copies the value in, and sends a pickled dict (the block's
    name and size, and the metadata of a temporary bytes buffer: the seed's
    PayloadRef/ShmRef) over a multiprocessing.Pipe; it closes its mapping;
  - the peer attaches the block by name, takes a view (a memoryview of
    content_size bytes), copies it into a fresh block of its own, lets go of
    the request (close; unlink: a temporary block is freed by its receiver)
    and answers the same way, a pickled dict over the pipe;
  - the caller attaches the answer, takes a view, closes and unlinks it.
Nothing is reused: two shm_open + ftruncate + mmap, two unlinks, two pickles
and two pipe messages per round trip, and the pages of both blocks are faulted
in fresh.

Line protocol on stdin/stdout (one line each way):
  at start          prints `ready python=X.Y.Z context=spawn cpus=SELF,PEER`
                    (cpus=none: not pinned) once the peer answers
  `N BYTES`         N round trips of BYTES-byte values; prints the nanoseconds
                    each took, N numbers separated by spaces, in order
                    (time.perf_counter_ns read before the first and after
                    each: they add up to the elapsed time of the N trips).
                    The first time a size is asked for, one more round trip
                    runs before the timer starts and its answer is compared
                    with the value: a wrong echo is an error, not a figure
  `quit` or EOF     the peer is stopped and joined, every block unlinked,
                    the resource tracker stopped; exit 0
  anything wrong    prints `error: words` and exits 1 (after the same cleanup)

Process model. The peer is started with the 'spawn' context: a fresh
interpreter that receives only its end of the Pipe and the resource tracker's
descriptor (spawn closes every other one above 2). Under 'fork' it would also
hold our end of the Pipe, so if we died it would wait on a recv() that never
sees EOF, and it would inherit our stdout buffer, to be flushed a second time
at its exit. Its stdin is closed by multiprocessing and its stdout pointed at
/dev/null (it never prints): the benchmark's pipes are this process's alone;
stderr is shared, so a traceback is seen. Starting it costs ~50 ms once per
benchmark run, never inside a timed batch; the round trip itself is the same
under 'fork'. With 2+ CPUs the peer pins itself to PEER and this process to
SELF (os.sched_setaffinity); --cpus defaults to the first two CPUs this
process may use.

Blocks and the resource tracker (Python 3.11). SharedMemory registers every
block with the resource tracker, also when it only attaches one, and unlink()
unregisters it; the tracker keeps a set of names, so a second unregister of a
name is a KeyError traceback in the tracker, and a name never unregistered is
a "leaked shared_memory objects" warning (and an unlink) when it exits. Both
processes share one tracker (ensure_running() before the peer starts; spawn
hands the peer its descriptor), and every block is unlinked exactly once, by
its receiver, after the creator's REGISTER (the name crossed the pipe after
it): one REGISTER-REGISTER-UNREGISTER sequence per block, nothing left in the
tracker. At exit the tracker is stopped and waited for (its private _stop(), the
only way in 3.11) so that it is not left behind as an orphan. Blocks are named
shmrigbench-seedpy-<this pid>-<serial> (r<serial> for answers), so the
benchmark can check that none is left in /dev/shm; the seed's random psm_
names cost the same.

Standard library only; runs under Debian's /usr/bin/python3.
"""

import multiprocessing
import os
import sys
import time
from multiprocessing import resource_tracker
from multiprocessing.shared_memory import SharedMemory

sys.dont_write_bytecode = True  # no __pycache__ in the source tree

PEER_START_TIMEOUT_S = 10  # the benchmark waits 20 s for our `ready`
PEER_JOIN_TIMEOUT_S = 5
# BYTES is at most this (the largest row is 16 MiB): a typo is an error, not a
# 10 GB allocation.
MAX_BYTES = 1 << 30
MAX_ROUND_TRIPS = 1 << 20


class ProtocolError(Exception):
    """A bad input line or a wrong answer: `error: <message>`, exit 1."""


def pattern(size):
    """The value: byte i is (i * 131 + 7) mod 256, as the C benchmarks fill theirs."""
    period = bytes((i * 131 + 7) & 0xFF for i in range(256))
    return (period * (size // 256 + 1))[:size]


def describe(block, size):
    """The seed's PayloadRef for a temporary bytes buffer: what travels, pickled."""
    return {
        "codec": "bytes",
        "meta": {"length": size},
        "buffers": [{"name": block.name, "size": block.size, "content_size": size,
                     "temporary": True, "offset": 0}],
    }


def send_value(conn, name, source, size):
    """A fresh block named `name`, `source` (bytes or a view) copied in, its
    description sent; our mapping is closed, the receiver unlinks it."""
    block = SharedMemory(name=name, create=True, size=size)
    try:
        block.buf[:size] = source
        conn.send(describe(block, size))
    except BaseException:
        block.close()
        block.unlink()
        raise
    block.close()


def attach(payload):
    """Attach the block a description names: (block, view of its content)."""
    try:
        ref = payload["buffers"][0]
        name, offset, content_size = ref["name"], ref["offset"], ref["content_size"]
    except (TypeError, KeyError, IndexError) as e:
        raise ProtocolError(f"a malformed description: {payload!r:.200}") from e
    block = SharedMemory(name=name)
    if offset + content_size > block.size:
        block.close()
        block.unlink()
        raise ProtocolError(f"block {name}: {content_size} bytes at {offset} "
                            f"pass its {block.size}")
    return block, block.buf[offset:offset + content_size]


def release(block, view):
    """Let go of a received (temporary) block: the view, the mapping, the name."""
    view.release()
    block.close()
    block.unlink()


def peer_main(conn, cpu, prefix):
    """The echo peer: answer every description with a fresh copy, until EOF or None."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    serial = 0
    conn.send("up")
    while True:
        try:
            payload = conn.recv()
        except EOFError:
            break
        if payload is None:
            break
        block, view = attach(payload)
        try:
            send_value(conn, f"{prefix}-r{serial}", view, len(view))
        finally:
            release(block, view)
        serial += 1
    conn.close()


class Caller:
    """This side: the peer, the pipe, the sizes already checked."""

    def __init__(self, cpus):
        self.prefix = f"shmrigbench-seedpy-{os.getpid()}"
        self.serial = 0
        self.checked = set()
        self.values = {}
        # One tracker for both processes, started before the peer (spawn passes
        # its descriptor on): see the header.
        resource_tracker.ensure_running()
        context = multiprocessing.get_context("spawn")
        self.conn, child_conn = context.Pipe()
        self.peer = context.Process(target=peer_main, name="seed_echo_peer",
                                    args=(child_conn, cpus[1] if cpus else None, self.prefix))
        self.peer.start()
        child_conn.close()
        if cpus:
            os.sched_setaffinity(0, {cpus[0]})
        if not self.conn.poll(PEER_START_TIMEOUT_S):
            raise ProtocolError(f"the peer did not start within {PEER_START_TIMEOUT_S} s")
        if self.conn.recv() != "up":
            raise ProtocolError("the peer said something else than it was up")

    def round_trip(self, value, size):
        """One echo; returns (block, view) of the answer, for the caller to release."""
        send_value(self.conn, f"{self.prefix}-{self.serial}", value, size)
        self.serial += 1
        try:
            payload = self.conn.recv()
        except EOFError:
            self.peer.join(PEER_JOIN_TIMEOUT_S)
            raise ProtocolError(f"the peer hung up (exit code {self.peer.exitcode})") from None
        return attach(payload)

    def batch(self, count, size):
        """count round trips of size bytes: the nanoseconds of each."""
        value = self.values.get(size)
        if value is None:
            value = self.values[size] = pattern(size)
        if size not in self.checked:
            block, view = self.round_trip(value, size)
            same = len(view) == size and view == value
            release(block, view)
            if not same:
                raise ProtocolError(f"the echo of {size} bytes differs from the value")
            self.checked.add(size)
        times = [0] * count  # allocated before the clock starts
        last = time.perf_counter_ns()
        for i in range(count):
            block, view = self.round_trip(value, size)
            release(block, view)
            now = time.perf_counter_ns()
            times[i] = now - last
            last = now
        return times

    def close(self):
        """Stop and join the peer, then the tracker. Every block is unlinked by then:
        each one's receiver unlinks it before answering or before the next trip."""
        try:
            self.conn.send(None)
        except OSError:
            pass  # the peer is gone; join tells how
        self.conn.close()
        self.peer.join(PEER_JOIN_TIMEOUT_S)
        if self.peer.exitcode is None:
            self.peer.kill()
            self.peer.join()
            raise ProtocolError(f"the peer did not end within {PEER_JOIN_TIMEOUT_S} s: killed")
        if self.peer.exitcode != 0:
            raise ProtocolError(f"the peer exited with {self.peer.exitcode}")


def parse_cpus(argv):
    """--cpus SELF,PEER, or the first two usable CPUs; None with one CPU."""
    if len(argv) == 2 and argv[0] == "--cpus":
        try:
            cpus = [int(c) for c in argv[1].split(",")]
        except ValueError:
            cpus = []
        if len(cpus) != 2 or min(cpus) < 0 or cpus[0] == cpus[1]:
            raise ProtocolError(f"--cpus {argv[1]!r}: want two different CPU numbers, SELF,PEER")
        return cpus
    if argv:
        raise ProtocolError("usage: seed_echo.py [--cpus SELF,PEER]")
    usable = sorted(os.sched_getaffinity(0))
    return usable[:2] if len(usable) >= 2 else None


def parse_batch(words):
    try:
        count, size = int(words[0]), int(words[1])
    except (ValueError, IndexError):
        count = size = -1
    if len(words) != 2 or not 1 <= count <= MAX_ROUND_TRIPS or not 1 <= size <= MAX_BYTES:
        raise ProtocolError(f"{' '.join(words)[:80]!r}: want `N BYTES` (1 <= N <= "
                            f"{MAX_ROUND_TRIPS}, 1 <= BYTES <= {MAX_BYTES}) or `quit`")
    return count, size


def say(line):
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def serve(caller):
    for line in sys.stdin:
        words = line.split()
        if words == ["quit"]:
            return
        count, size = parse_batch(words)
        say(" ".join(map(str, caller.batch(count, size))))


def main(argv):
    caller = None
    status = 0
    try:
        cpus = parse_cpus(argv)
        caller = Caller(cpus)
        say(f"ready python={'.'.join(map(str, sys.version_info[:3]))} context=spawn "
            f"cpus={','.join(map(str, cpus)) if cpus else 'none'}")
        serve(caller)
    except (ProtocolError, OSError, EOFError, ValueError) as e:
        say(f"error: {e}")
        status = 1
    finally:
        if caller is not None:
            try:
                caller.close()
            except (ProtocolError, OSError) as e:
                if status == 0:
                    say(f"error: {e}")
                status = 1
        # Wait for the tracker: it exits once the peer and we closed its pipe.
        resource_tracker._resource_tracker._stop()
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
