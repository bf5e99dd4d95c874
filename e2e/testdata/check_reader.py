#!/usr/bin/env python3
"""A checking board reader for e2e/reload_test.go: python3 check_reader.py PATH

Takes snapshots of the board at PATH with clients/python/notice.py until its standard input reaches end-of-file,
checks every one, and prints the counts as one JSON object (the same keys as the Go reader in reload_test.go).

Every record's content must be self-checking, "id=<id> n=<n> h=<h>" with h the first 8 hex digits of
sha256("<id>/<n>") and <id> the record's id (else the snapshot is inconsistent); two snapshots of one version must
hold the same records (else inconsistent); versions never decrease; and, as versions increase, no id's n goes back
(content_regressions). On `superseded` it reopens the path. Reader errors are counted by name.
"""

import hashlib
import json
import os
import re
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "clients", "python"))
import notice  # noqa: E402

CONTENT = re.compile(r"^id=(\d+) n=(\d+) h=([0-9a-f]{8})$")


def self_check(content):
    """(id, n) of a self-checking content, or None."""
    m = CONTENT.match(content)
    if not m:
        return None
    rid, n = int(m.group(1)), int(m.group(2))
    if hashlib.sha256(f"{rid}/{n}".encode()).hexdigest()[:8] != m.group(3):
        return None
    return rid, n


class Checker:
    def __init__(self):
        self.c = {"lang": "python", "snapshots": 0, "records": 0, "versions": 0, "inconsistent": 0,
                  "version_decreases": 0, "content_regressions": 0, "errors": {}, "reopens": 0,
                  "first_version": 0, "last_version": 0, "examples": []}
        self.last = None  # (version, records)
        self.last_n = {}

    def example(self, what):
        if len(self.c["examples"]) < 5:
            self.c["examples"].append(what)

    def error(self, name):
        self.c["errors"][name] = self.c["errors"].get(name, 0) + 1

    def snapshot(self, snap):
        """Checks one snapshot; True when its version differs from the previous one."""
        c = self.c
        c["snapshots"] += 1
        c["records"] += len(snap.records)
        v = snap.version
        recs = tuple((r.id, r.content) for r in snap.records)
        ns, bad = {}, None
        for rid, content in recs:
            got = self_check(content)
            if got is None or got[0] != rid:
                bad = f"version {v}: record {rid} has content {content!r}"
                break
            if rid in ns:
                bad = f"version {v}: id {rid} twice"
                break
            ns[rid] = got[1]
        if bad is None and self.last is not None and self.last[0] == v and self.last[1] != recs:
            bad = f"version {v}: two snapshots of it hold different records"
        if bad is not None:
            c["inconsistent"] += 1
            self.example(bad)
            return True
        changed = self.last is None or self.last[0] != v
        if self.last is not None and v < self.last[0]:
            c["version_decreases"] += 1
            self.example(f"version {v} after {self.last[0]}")
        elif changed:
            c["versions"] += 1
            for rid, n in ns.items():
                prev = self.last_n.get(rid)
                if prev is not None and n < prev:
                    c["content_regressions"] += 1
                    self.example(f"version {v}: id {rid} n={n} after n={prev}")
                else:
                    self.last_n[rid] = n
        if c["first_version"] == 0:
            c["first_version"] = v
        c["last_version"] = v
        self.last = (v, recs)
        return changed


def open_board(path, stop, checker):
    while not stop.is_set():
        try:
            return notice.Board.open(path)
        except notice.BoardError as e:
            checker.error(e.name)
        time.sleep(0.001)
    return None


def main():
    if len(sys.argv) != 2:
        print("usage: check_reader.py PATH", file=sys.stderr)
        return 2
    path = sys.argv[1]
    stop = threading.Event()

    def wait_stdin():
        sys.stdin.read()
        stop.set()

    threading.Thread(target=wait_stdin, daemon=True).start()
    checker = Checker()
    board = open_board(path, stop, checker)
    while board is not None and not stop.is_set():
        try:
            snap = board.snapshot()
        except notice.BoardError as e:
            checker.error(e.name)
            if e.name == "superseded":
                board.close()
                checker.c["reopens"] += 1
                board = open_board(path, stop, checker)
            continue
        if not checker.snapshot(snap):
            time.sleep(0.001)
    if board is not None:
        board.close()
    print(json.dumps(checker.c))
    return 0


if __name__ == "__main__":
    sys.exit(main())
