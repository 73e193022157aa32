"""Reading a Google Benchmark results JSON as untrusted input (scripts/report, plot, compare).

A results file may come from another machine, a half-written run or anyone: nothing in it is
trusted. load() returns a checked document or raises BadInput with a message that names
the file and the field ("r.json: benchmarks[3].real_time: not a finite number ('12')"); the
scripts turn that into exit status 2 (bad input). Its cost is bounded: a file above
MAX_BYTES is refused before it is read, and nesting deeper than MAX_DEPTH is refused, so
nothing that walks the document later can recurse without bound.

Standard library only; runs under Debian's /usr/bin/python3.
"""

import json
import math
import os

MAX_BYTES = 256 << 20  # shmrig-bench's results are about 1 MiB
MAX_DEPTH = 64         # Google Benchmark's JSON nests 4 levels deep
MAX_NAME = 1000        # characters of a benchmark name
TIME_UNITS = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}


class BadInput(Exception):
    """A file the scripts cannot use (a results JSON, an output path); the message says why
    and where."""


def kind(value):
    """The JSON type of a value, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    return "an object"


def shown(value, limit=80):
    """A value from a file as it may be printed to a terminal: control characters (escape
    sequences among them) escaped, at most `limit` characters."""
    text = value if isinstance(value, str) else json.dumps(value)
    if len(text) > limit:
        text = text[:limit] + "..."
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def literal(value):
    """A value from a file as JSON, for messages ("12" for a string, 12 for a number)."""
    return shown(json.dumps(value))


def finite(value):
    """value as a finite float, or None: not a number, a boolean, NaN, an infinity, or an
    integer too large for a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def positive(entry, field, where):
    """entry[field] as a finite number > 0 (a time, a rate; 0 would divide by zero)."""
    if field not in entry:
        raise BadInput(f"{where}.{field}: missing")
    number = finite(entry[field])
    if number is None:
        raise BadInput(f"{where}.{field}: not a finite number ({literal(entry[field])})")
    if number <= 0:
        raise BadInput(f"{where}.{field}: {literal(entry[field])} is not a positive number")
    return number


def _too_deep(doc):
    stack = [(doc, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True
        children = value.values() if isinstance(value, dict) else value
        stack.extend((child, depth + 1) for child in children
                     if isinstance(child, (dict, list)))
    return False


def _read(path):
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size <= MAX_BYTES:  # 0 for a pipe or /proc: the read below is capped too
                data = f.read(MAX_BYTES + 1)
    except OSError as err:
        raise BadInput(f"{path}: cannot read: {err.strerror}") from err
    if size > MAX_BYTES or len(data) > MAX_BYTES:
        raise BadInput(f"{path}: larger than {MAX_BYTES >> 20} MiB, not a results JSON")
    return data


def load(path):
    """The document of a results JSON: an object whose "benchmarks" is a list (its entries
    are checked by iterations()). Raises BadInput."""
    data = _read(path)
    if not data.strip():
        raise BadInput(f"{path}: empty file, not a results JSON")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise BadInput(f"{path}: not UTF-8 text (byte {err.start}): a binary file?") from err
    try:
        doc = json.loads(text)
    except RecursionError as err:
        raise BadInput(f"{path}: nested too deeply, not a results JSON") from err
    except ValueError as err:  # json.JSONDecodeError, or an integer of too many digits
        raise BadInput(f"{path}: not valid JSON (truncated?): {err}") from err
    if not isinstance(doc, dict):
        raise BadInput(f"{path}: {kind(doc)}, not a JSON object")
    if _too_deep(doc):
        raise BadInput(f"{path}: nested more than {MAX_DEPTH} levels deep, not a results "
                         "JSON")
    if "benchmarks" not in doc:
        raise BadInput(f"{path}: no \"benchmarks\", not a Google Benchmark result")
    if not isinstance(doc["benchmarks"], list):
        raise BadInput(f"{path}: benchmarks: {kind(doc['benchmarks'])}, not a list")
    context(doc, path)
    return doc


def context(doc, path):
    """doc's "context" object ({} without one)."""
    ctx = doc.get("context", {})
    if not isinstance(ctx, dict):
        raise BadInput(f"{path}: context: {kind(ctx)}, not an object")
    return ctx


def _name(entry, field, where):
    name = entry[field]
    if not isinstance(name, str) or not name:
        raise BadInput(f"{where}.{field}: {kind(name)}, not a benchmark name")
    if len(name) > MAX_NAME or not name.isprintable():
        raise BadInput(f"{where}.{field}: {literal(name)}: not a benchmark name (control "
                         f"characters, or more than {MAX_NAME} characters)")
    return name


def iterations(doc, path):
    """The checked iteration entries of doc["benchmarks"] (aggregates left out), in order.
    Each is a dict: name (run_name, else name), error (its message, or None), real_time_ns
    (> 0; None for an error), entry (the object itself) and where ("path: benchmarks[i]",
    for messages about further fields)."""
    runs = []
    for index, entry in enumerate(doc["benchmarks"]):
        where = f"{path}: benchmarks[{index}]"
        if not isinstance(entry, dict):
            raise BadInput(f"{where}: {kind(entry)}, not an object")
        run_type = entry.get("run_type", "iteration")
        if run_type not in ("iteration", "aggregate"):
            raise BadInput(f"{where}.run_type: {literal(run_type)}, not \"iteration\" or "
                             "\"aggregate\"")
        if "name" not in entry:
            raise BadInput(f"{where}.name: missing")
        name = _name(entry, "name", where)
        if "run_name" in entry:
            name = _name(entry, "run_name", where)
        if run_type == "aggregate":
            continue
        error = entry.get("error_occurred", False)
        if not isinstance(error, bool):
            raise BadInput(f"{where}.error_occurred: {kind(error)}, not true or false")
        if error:
            message = entry.get("error_message") or "error"
            runs.append({"name": name, "error": shown(message, 500), "real_time_ns": None,
                         "entry": entry, "where": where})
            continue
        unit = entry.get("time_unit", "ns")
        if unit not in TIME_UNITS:
            raise BadInput(f"{where}.time_unit: {literal(unit)}, not one of "
                             f"{', '.join(TIME_UNITS)}")
        real_time_ns = positive(entry, "real_time", where) * TIME_UNITS[unit]
        if not math.isfinite(real_time_ns):
            raise BadInput(f"{where}.real_time: {literal(entry['real_time'])} {unit} is too "
                             "large")
        runs.append({"name": name, "error": None, "real_time_ns": real_time_ns,
                     "entry": entry, "where": where})
    return runs


def check_output(path):
    """Refuse an output path that cannot be written before any work is done (its directory
    missing, or a directory itself). Raises BadInput."""
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        raise BadInput(f"{path}: no such directory {directory}")
    if os.path.isdir(path):
        raise BadInput(f"{path}: a directory, not a file name")
