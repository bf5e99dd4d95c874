#!/usr/bin/env python3
"""Torn-read stress reader (docs/STRESS.md): python3 notice_stress.py SECONDS PATH

Takes snapshots with notice.Board.snapshot() for SECONDS, checks each against the stress writer's pattern and
prints one JSON line. Before the loop it waits (up to SECONDS) for the file to open and be published; those
start-up waits are not counted. On `superseded` it counts the error and reopens the path. first_version and
last_version are 0 when no snapshot succeeded. Judging the result is the caller's job (STRESS.md): the exit
status is 0 whenever the JSON line is printed, 2 on a usage error.
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import notice  # noqa: E402


def open_published(path, deadline):
    """Open ``path`` once it is a valid, published board; (board, None), or (None, last error) at the deadline."""
    while True:
        try:
            board = notice.Board.open(path)
            if board.version() != 0 and board.state() != notice.STATE_SUPERSEDED:
                return board, None
            board.close()
            err = "not_published"
        except notice.BoardError as e:
            err = e.name
        if time.monotonic() >= deadline:
            return None, err
        time.sleep(0.001)


def matches_pattern(snap):
    """STRESS.md: count = 1 + V mod 64, ids 1..count, effective_at V, expires_at V + id, priority id,
    content "{V}:{id}:" padded with '.' to 32 + (V + id) mod 225 bytes."""
    v = snap.version
    n = 1 + v % 64
    return snap.count == n and snap.records == tuple(
        [(i, v, v + i, i, f"{v}:{i}:".ljust(32 + (v + i) % 225, ".")) for i in range(1, n + 1)])


def run(seconds, path):
    deadline = time.monotonic() + seconds
    errors = {"busy": 0}
    snapshots = validated = attempts = version_decreases = 0
    first_version = last_version = 0

    board, err = open_published(path, deadline)
    if board is None:
        errors[err] = errors.get(err, 0) + 1

    monotonic = time.monotonic
    BoardError = notice.BoardError
    while board is not None and monotonic() < deadline:
        try:
            snap = board.snapshot()
        except BoardError as e:
            errors[e.name] = errors.get(e.name, 0) + 1
            if e.name == "superseded":
                board.close()
                board, _ = open_published(path, deadline)  # the version continues in the new file
            continue
        snapshots += 1
        attempts += snap.attempts
        if matches_pattern(snap):
            validated += 1
        v = snap.version
        if first_version == 0:
            first_version = v
        elif v < last_version:
            version_decreases += 1
        last_version = v
    if board is not None:
        board.close()

    result = {
        "lang": "python",
        "pid": os.getpid(),
        "snapshots": snapshots,
        "validated": validated,
        "attempts": attempts,
        "torn_accepted": snapshots - validated,
        "version_decreases": version_decreases,
        "first_version": first_version,
        "last_version": last_version,
        "errors": errors,
    }
    print(json.dumps(result, separators=(",", ":")), flush=True)
    return 0


def main(argv):
    try:
        seconds, path = float(argv[0]), argv[1]
        if len(argv) != 2 or not seconds >= 0:
            raise ValueError
    except (ValueError, IndexError):
        print("usage: notice_stress.py SECONDS PATH", file=sys.stderr)
        return 2
    return run(seconds, path)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
