#!/usr/bin/env python3
"""The storm's content-checking follower: python3 follow.py python|c LIBNOTICE_SO PATH

Follows the board at PATH with the project's own followers and prints every snapshot it accepts, so that the
storm (storm/storm_test.go) can check each record against what the clients sent:

    python  clients/python/notice.py's notice.Follower (the pure Python reader)
    c       libnotice.so's notice_follow_open / notice_follow_wait (the C reader), through ctypes, with the struct
            layouts of clients/c/test_ctypes.py

One JSON line per event, until SIGTERM or SIGINT:

    {"v": VERSION, "r": [[ID, CONTENT], ...]}   a snapshot the follower accepted (a version above the last one)
    {"e": NAME}                                 a call that failed, by error name (FORMAT.md §8)
    {"lost": NAME}                              the open file is retired and nothing usable is at the path yet

Exit 0 on SIGTERM; 2 on a usage error. A SIGBUS (the file truncated in the middle of a copy, docs/HEALTH.md) kills
the process: the storm counts that and starts it again.
"""

import ctypes
import json
import os
import signal
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "clients", "python"))
sys.path.insert(0, os.path.join(HERE, "..", "clients", "c"))

stop = False


def on_signal(signum, frame):
    global stop
    stop = True


def emit(obj):
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def follow_python(path):
    import notice

    follower = None
    while not stop and follower is None:
        try:
            follower = notice.Follower(path, stale_after_s=5.0)
        except notice.BoardError as e:
            emit({"e": "open:" + e.name})
            time.sleep(0.05)
    if follower is None:
        return 0
    last = 0
    with follower:
        while not stop:
            try:
                u = follower.wait(last, timeout=0.1)
            except notice.BoardError as e:
                emit({"e": e.name})
                time.sleep(0.005)
                continue
            if u is None:
                continue
            if u.lost is not None:
                emit({"lost": u.lost.name})
            if u.changed:
                snap = u.snapshot
                last = snap.version
                emit({"v": snap.version, "r": [[r.id, r.content] for r in snap.records]})
    return 0


class Status(ctypes.Structure):
    """notice_follow_status (notice.h)."""

    _fields_ = [("version", ctypes.c_uint64), ("reopens", ctypes.c_uint64), ("reopened", ctypes.c_uint32),
                ("changed", ctypes.c_int32), ("stale", ctypes.c_int32), ("lost", ctypes.c_int32)]


NOTICE_ETIMEDOUT = -12


def follow_c(lib_path, path):
    import test_ctypes as tc

    lib = tc.load(lib_path)
    snap_p = ctypes.POINTER(tc.Snapshot)
    lib.notice_follow_open.restype = ctypes.c_int
    lib.notice_follow_open.argtypes = [ctypes.c_char_p, ctypes.c_int64, ctypes.POINTER(ctypes.c_void_p)]
    lib.notice_follow_wait.restype = ctypes.c_int
    lib.notice_follow_wait.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int, ctypes.POINTER(snap_p),
                                       ctypes.POINTER(Status)]
    lib.notice_follow_close.restype = None
    lib.notice_follow_close.argtypes = [ctypes.c_void_p]

    def name(rc):
        return lib.notice_error_name(rc).decode()

    # The fault guard: a truncation during a read becomes "truncated" instead of killing this process.
    lib.notice_guard_faults.restype = ctypes.c_int
    if lib.notice_guard_faults() != 0:
        emit({"e": "guard:" + str(ctypes.get_errno())})
    f = ctypes.c_void_p()
    while not stop:
        rc = lib.notice_follow_open(path.encode(), 5 * 10**9, ctypes.byref(f))
        if rc == 0:
            break
        emit({"e": "open:" + name(rc)})
        time.sleep(0.05)
    if stop:
        return 0
    snap, st, last = snap_p(), Status(), 0
    while not stop:
        rc = lib.notice_follow_wait(f, last, 100, ctypes.byref(snap), ctypes.byref(st))
        if rc == NOTICE_ETIMEDOUT:
            continue
        if rc != 0:
            emit({"e": name(rc)})
            time.sleep(0.005)
            continue
        if st.lost != 0:
            emit({"lost": name(st.lost)})
        if st.changed:
            s = snap.contents
            recs = []
            for i in range(lib.notice_count(snap)):
                rec = lib.notice_record_at(snap, i).contents
                recs.append([rec.id, tc.content_of(rec)])
            last = s.version
            emit({"v": s.version, "r": recs})
            time.sleep(0.002)  # a follower may skip versions; this one leaves the CPU to the storm
    lib.notice_snapshot_free(snap)
    lib.notice_follow_close(f)
    return 0


def main(argv):
    if len(argv) != 3 or argv[0] not in ("python", "c"):
        sys.stderr.write("usage: follow.py python|c LIBNOTICE_SO PATH\n")
        return 2
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if argv[0] == "python":
        return follow_python(argv[2])
    return follow_c(argv[1], argv[2])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
