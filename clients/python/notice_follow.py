#!/usr/bin/env python3
"""Follow the board at a path across the writer's replacements of the file (notice.Follower).

usage: python3 notice_follow.py [-s STALE_MS] [-c] PATH

Prints one JSON line per event until SIGINT or SIGTERM, then a summary line; the same lines as the C tool
clients/c/notice_follow (see its header comment): "version", "reopened", "lost", "stale", "alive", then "end". With
-c every snapshot is checked against the stress writer's pattern (docs/STRESS.md) and one that does not match is
counted as torn. Exit 0 after the summary; 1 if PATH cannot be opened; 2 on a usage error.
"""

import json
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import notice  # noqa: E402
from notice_stress import matches_pattern  # noqa: E402

stop = False


def on_signal(signum, frame):
    global stop
    stop = True


def emit(obj):
    print(json.dumps(obj, separators=(",", ":")), flush=True)


def run(path, stale_ms, check):
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        follower = notice.Follower(path, stale_after_s=stale_ms / 1000.0)
    except notice.BoardError as e:
        emit({"error": e.name, "message": e.message})
        return 1
    last = versions = valid = decreases = 0
    last_valid = stale = False
    errors = {}
    with follower:
        while not stop:
            try:
                u = follower.wait(last, timeout=0.1)
            except notice.BoardError as e:
                errors[e.name] = errors.get(e.name, 0) + 1
                continue
            if u is None:
                continue
            if u.reopened:
                emit({"event": "reopened", "version": last, "reopens": follower.reopens})
            if u.lost is not None:
                emit({"event": "lost", "version": last, "reason": u.lost.name})
            if u.changed:
                snap = u.snapshot
                ok = matches_pattern(snap) if check else True
                if snap.version < last:
                    decreases += 1
                last = snap.version
                versions += 1
                valid += ok
                last_valid = ok
                line = {"event": "version", "version": last, "count": snap.count, "reopens": follower.reopens}
                if check:
                    line["valid"] = ok
                emit(line)
            if u.stale != stale:
                stale = u.stale
                emit({"event": "stale" if stale else "alive", "version": last})
        emit({"event": "end", "versions": versions, "validated": valid, "torn": versions - valid if check else 0,
              "decreases": decreases, "reopens": follower.reopens, "last": last, "last_valid": last_valid,
              "errors": errors})
    return 0


def main(argv):
    stale_ms, check, args = 5000, False, list(argv)
    try:
        while args and args[0].startswith("-"):
            opt = args.pop(0)
            if opt == "-c":
                check = True
            elif opt == "-s":
                stale_ms = int(args.pop(0))
                if stale_ms <= 0:
                    raise ValueError
            else:
                raise ValueError
        if len(args) != 1:
            raise ValueError
    except (ValueError, IndexError):
        print("usage: notice_follow.py [-s STALE_MS] [-c] PATH", file=sys.stderr)
        return 2
    return run(args[0], stale_ms, check)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
