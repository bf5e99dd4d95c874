#!/usr/bin/env python3
"""Dump a board through libnotice.so, the way an FFI user would.

usage: test_ctypes.py LIBNOTICE_SO REGION_PATH

Prints the dump JSON of FORMAT.md §8 (the same object notice_dump prints) and exits 0, or prints
{"error": NAME, "message": TEXT} and exits 1; exit 2 on a usage error. Python 3 standard library only. The JSON
is produced from what the C library returns, through notice_open, notice_snapshot, notice_count, notice_iterate,
notice_record_at, notice_error_name and notice_strerror, so comparing it with the other dumps tests the C API
and its ABI (struct layouts below must match notice.h).
"""

import ctypes
import json
import os
import sys


class Record(ctypes.Structure):
    """struct notice_record."""

    _fields_ = [
        ("id", ctypes.c_uint64),
        ("effective_at", ctypes.c_int64),
        ("expires_at", ctypes.c_int64),
        ("priority", ctypes.c_int32),
        ("content_len", ctypes.c_uint32),
        ("content", ctypes.c_char * 257),
    ]


class Snapshot(ctypes.Structure):
    """The public members of struct notice_snapshot (the private tail is never touched from Python)."""

    _fields_ = [
        ("version", ctypes.c_uint64),
        ("published_at", ctypes.c_int64),
        ("count", ctypes.c_uint64),
        ("region_size", ctypes.c_uint64),
        ("generation", ctypes.c_uint64),
        ("heartbeat_ns", ctypes.c_int64),
        ("attempts", ctypes.c_uint32),
        ("state", ctypes.c_uint32),
        ("capacity", ctypes.c_uint32),
        ("stride", ctypes.c_uint32),
        ("writer_pid", ctypes.c_uint32),
        ("major", ctypes.c_uint16),
        ("minor", ctypes.c_uint16),
        ("records", ctypes.POINTER(Record)),
    ]


ITERATE_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(Record), ctypes.c_void_p)
NOTICE_EIO = -1


def load(path):
    lib = ctypes.CDLL(path, use_errno=True)
    board_pp = ctypes.POINTER(ctypes.c_void_p)
    snap_p = ctypes.POINTER(Snapshot)
    sigs = {
        "notice_open": (ctypes.c_int, [ctypes.c_char_p, board_pp]),
        "notice_close": (None, [ctypes.c_void_p]),
        "notice_version": (ctypes.c_uint64, [ctypes.c_void_p]),
        "notice_snapshot": (ctypes.c_int, [ctypes.c_void_p, ctypes.POINTER(snap_p)]),
        "notice_snapshot_free": (None, [snap_p]),
        "notice_count": (ctypes.c_size_t, [snap_p]),
        "notice_record_at": (ctypes.POINTER(Record), [snap_p, ctypes.c_size_t]),
        "notice_iterate": (ctypes.c_int, [snap_p, ITERATE_FN, ctypes.c_void_p]),
        "notice_strerror": (ctypes.c_char_p, [ctypes.c_int]),
        "notice_error_name": (ctypes.c_char_p, [ctypes.c_int]),
    }
    for name, (res, args) in sigs.items():
        fn = getattr(lib, name)
        fn.restype = res
        fn.argtypes = args
    return lib


def content_of(rec):
    """The content_len bytes of the record's content (it may contain NULs, so not the c_char array's .value)."""
    n = rec.content_len
    return ctypes.string_at(ctypes.addressof(rec) + Record.content.offset, n).decode("utf-8")


def state_name(state):
    return {1: "live", 2: "superseded"}.get(state, "unknown(%d)" % state)


def fail(lib, rc, path, err_no):
    name = lib.notice_error_name(rc).decode()
    text = lib.notice_strerror(rc).decode()
    if rc == NOTICE_EIO and err_no:
        msg = "%s: %s: %s" % (text, path, os.strerror(err_no))
    else:
        msg = "%s: %s" % (path, text)
    emit({"error": name, "message": msg})
    return 1


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")  # ensure_ascii: the output is ASCII whatever the locale
    sys.stdout.flush()


def main(argv):
    if len(argv) != 3:
        sys.stderr.write("usage: test_ctypes.py LIBNOTICE_SO REGION_PATH\n")
        return 2
    lib = load(argv[1])
    path = argv[2]

    board = ctypes.c_void_p()
    ctypes.set_errno(0)
    rc = lib.notice_open(path.encode(), ctypes.byref(board))
    if rc != 0:
        return fail(lib, rc, path, ctypes.get_errno())
    try:
        snap = ctypes.POINTER(Snapshot)()
        rc = lib.notice_snapshot(board, ctypes.byref(snap))
        if rc != 0:
            return fail(lib, rc, path, ctypes.get_errno())
        try:
            records = []

            def collect(rec_p, _arg):
                rec = rec_p.contents
                records.append({
                    "id": rec.id,
                    "effective_at": rec.effective_at,
                    "expires_at": rec.expires_at,
                    "priority": rec.priority,
                    "content": content_of(rec),
                })
                return 0

            cb = ITERATE_FN(collect)  # kept referenced for the duration of the call
            rc = lib.notice_iterate(snap, cb, None)
            if rc != 0:
                raise RuntimeError("notice_iterate returned %d" % rc)
            count = lib.notice_count(snap)
            # Cross-check the random-access API against the iteration.
            if count != len(records) or count != snap.contents.count:
                raise RuntimeError("notice_count %d, iterated %d" % (count, len(records)))
            for i in range(count):
                if lib.notice_record_at(snap, i).contents.id != records[i]["id"]:
                    raise RuntimeError("notice_record_at(%d) disagrees with notice_iterate" % i)
            if lib.notice_record_at(snap, count):
                raise RuntimeError("notice_record_at(count) is not NULL")

            s = snap.contents
            emit({
                "version": s.version,
                "major": s.major,
                "minor": s.minor,
                "state": state_name(s.state),
                "region_size": s.region_size,
                "capacity": s.capacity,
                "stride": s.stride,
                "writer_pid": s.writer_pid,
                "generation": s.generation,
                "heartbeat_ns": s.heartbeat_ns,
                "published_at": s.published_at,
                "count": count,
                "records": records,
            })
            return 0
        finally:
            lib.notice_snapshot_free(snap)
    finally:
        lib.notice_close(board)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
