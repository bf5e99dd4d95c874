"""Tests for notice.py. Run from the repository root:

    python3 -m unittest discover -s clients/python -p 'test_*.py'

Regions are built by a tiny writer written from docs/FORMAT.md (not shared with notice.py), in a temp dir.
"""

import copy
import json
import mmap
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import notice  # noqa: E402

REPO = os.path.dirname(os.path.dirname(HERE))
GOLDEN_DIR = os.path.join(REPO, "testdata", "regions")

# ---- a minimal writer, straight from FORMAT.md ----

U32, U64, I32, I64, BYTES = 1, 2, 3, 4, 5
FIELDS_1_0 = [  # name, type, offset, size
    ("crc", U32, 0, 4),
    ("content_len", U32, 4, 4),
    ("id", U64, 8, 8),
    ("effective_at", I64, 16, 8),
    ("expires_at", I64, 24, 8),
    ("priority", I32, 32, 4),
    ("content", BYTES, 36, 256),
]
HEADER_SIZE = 4096
STRIDE = 320
T0 = 1764000000000000000


def encode_record(rid, effective_at=T0, expires_at=0, priority=0, content="", stride=STRIDE, extra=()):
    """One record; ``content`` str or raw bytes; ``extra`` = [(offset, bytes)] for fields past 1.0."""
    data = content.encode() if isinstance(content, str) else content
    rec = bytearray(stride)
    struct.pack_into("<IQqqi", rec, 4, len(data), rid, effective_at, expires_at, priority)
    rec[36:36 + len(data)] = data
    for off, raw in extra:
        rec[off:off + len(raw)] = raw
    struct.pack_into("<I", rec, 0, zlib.crc32(rec[4:]))
    return bytes(rec)


class Region:
    """A region image in memory; ``save(path)`` writes it out."""

    def __init__(self, region_size=64 * 1024, major=1, minor=0, fields=FIELDS_1_0, stride=STRIDE, state=1,
                 heartbeat_ns=123456789, writer_pid=4242, generation=3):
        self.size, self.stride = region_size, stride
        self.slot_size = (region_size - HEADER_SIZE) // 2 // 64 * 64
        self.capacity = (self.slot_size - 64) // stride
        b = self.buf = bytearray(region_size)
        b[8:16] = b"NTCBOARD"
        struct.pack_into("<IIHHIQIII", b, 16, 0, state, major, minor, HEADER_SIZE, region_size, self.capacity,
                         stride, self.slot_size)
        struct.pack_into("<q", b, 64, heartbeat_ns)
        struct.pack_into("<IIQ", b, 128, writer_pid, 0, generation)
        self.set_fields(fields)

    def set_fields(self, fields, layout_crc=None):
        b = self.buf
        b[256:1344] = bytes(1344 - 256)
        for i, (name, ftype, off, size) in enumerate(fields):
            struct.pack_into("<20sIII", b, 272 + 32 * i, name.encode() if isinstance(name, str) else name,
                             ftype, off, size)
        table = bytes(b[272:272 + 32 * len(fields)])
        struct.pack_into("<II", b, 256, len(fields), zlib.crc32(table) if layout_crc is None else layout_crc)

    def slot(self, version):
        return HEADER_SIZE + (version % 2) * self.slot_size

    def publish(self, version, records, published_at=T0, seq=None):
        """Write ``records`` (encoded bytes, sorted) as ``version`` into slot version mod 2, then set version."""
        b, s = self.buf, self.slot(version)
        old_seq = struct.unpack_from("<Q", b, s)[0]
        b[s + 64:s + self.slot_size] = bytes(self.slot_size - 64)
        body = b"".join(records)
        b[s + 64:s + 64 + len(body)] = body
        struct.pack_into("<IQq", b, s + 12, len(records), version, published_at)
        self.reseal(version)
        struct.pack_into("<Q", b, s, old_seq + 2 if seq is None else seq)
        struct.pack_into("<Q", b, 0, version)

    def reseal(self, version):
        """Recompute the slot crc of slot version mod 2."""
        b, s = self.buf, self.slot(version)
        count = struct.unpack_from("<I", b, s + 12)[0]
        struct.pack_into("<I", b, s + 8, zlib.crc32(b[s + 12:s + 64 + count * self.stride]))

    def record_offset(self, version, i):
        return self.slot(version) + 64 + i * self.stride

    def save(self, path, size=None):
        with open(path, "wb") as f:
            f.write(self.buf if size is None else self.buf[:size])
        return path


def sample_records():
    return [
        encode_record(1, T0, 0, 0, "hello"),
        encode_record(7, T0 + 5, T0 + 3600 * 10**9, -3, "zwei Wörter"),
        encode_record(2**63 + 5, -1, 2**62, 2**31 - 1, ""),
    ]


class Case(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="notice_test_")
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)
        self.n = 0

    def path(self):
        self.n += 1
        return os.path.join(self.dir, f"r{self.n}.region")

    def save(self, region, size=None):
        return region.save(self.path(), size)

    def raw(self, data):
        p = self.path()
        with open(p, "wb") as f:
            f.write(data)
        return p

    def assertBoardError(self, name, fn, *args):
        with self.assertRaises(notice.BoardError) as cm:
            fn(*args)
        self.assertEqual(cm.exception.name, name, str(cm.exception))
        self.assertIn(cm.exception.name, notice.ERROR_NAMES)
        return cm.exception

    def snapshot_error(self, name, region):
        with notice.Board.open(self.save(region)) as board:
            return self.assertBoardError(name, board.snapshot)

    def open_error(self, name, path):
        return self.assertBoardError(name, notice.Board.open, path)

    def published(self, **kw):
        r = Region(**kw)
        r.publish(7, sample_records())
        return r


class TestDecode(Case):
    def test_valid_region_decodes(self):
        p = self.save(self.published())
        with notice.Board.open(p) as board:
            self.assertEqual(board.version(), 7)
            self.assertEqual(board.state(), 1)
            self.assertEqual(board.heartbeat_ns(), 123456789)
            snap = board.snapshot()
        self.assertEqual(snap.attempts, 1)
        self.assertEqual(notice.snapshot_to_dict(snap), {
            "version": 7, "major": 1, "minor": 0, "state": "live", "region_size": 65536, "capacity": 95,
            "stride": 320, "writer_pid": 4242, "generation": 3, "heartbeat_ns": 123456789, "published_at": T0,
            "count": 3,
            "records": [
                {"id": 1, "effective_at": T0, "expires_at": 0, "priority": 0, "content": "hello"},
                {"id": 7, "effective_at": T0 + 5, "expires_at": T0 + 3600 * 10**9, "priority": -3,
                 "content": "zwei Wörter"},
                {"id": 2**63 + 5, "effective_at": -1, "expires_at": 2**62, "priority": 2**31 - 1, "content": ""},
            ],
        })
        self.assertIsInstance(snap.records, tuple)
        self.assertEqual(snap.records[1].content, "zwei Wörter")

    def test_both_slots_and_empty_snapshot(self):
        r = Region()
        r.publish(1, [encode_record(5, content="odd")])
        r.publish(2, [])
        with notice.Board.open(self.save(r)) as board:
            snap = board.snapshot()
        self.assertEqual((snap.version, snap.count, snap.records), (2, 0, ()))
        r.publish(3, [encode_record(5, content="three")])
        with notice.Board.open(self.save(r)) as board:
            self.assertEqual(board.snapshot().records[0].content, "three")

    def test_full_capacity(self):
        r = Region()
        r.publish(4, [encode_record(i + 1, content=f"#{i}") for i in range(r.capacity)])
        with notice.Board.open(self.save(r)) as board:
            snap = board.snapshot()
        self.assertEqual(snap.count, 95)
        self.assertEqual(snap.records[-1], notice.Record(95, T0, 0, 0, "#94"))

    def test_default_size_region(self):
        r = Region(region_size=4 * 1024 * 1024)
        self.assertEqual(r.capacity, 6547)
        r.publish(9, sample_records())
        with notice.Board.open(self.save(r)) as board:
            self.assertEqual(board.snapshot().capacity, 6547)

    def test_unknown_extra_field_ignored(self):
        fields = FIELDS_1_0 + [("category", U32, 292, 4)]
        r = Region(minor=1, fields=fields)
        r.publish(7, [encode_record(1, content="hi", extra=[(292, struct.pack("<I", 0xdeadbeef))])])
        with notice.Board.open(self.save(r)) as board:
            snap = board.snapshot()
        self.assertEqual(snap.minor, 1)
        self.assertEqual(snap.records, (notice.Record(1, T0, 0, 0, "hi"),))

    def test_fields_found_by_name_not_position(self):
        # A future layout: bigger stride, fields shuffled in the table and moved, plus unknown names and types.
        fields = [
            ("note", BYTES, 400, 64),
            ("content", BYTES, 64, 300),
            ("priority", I32, 8, 4),
            ("zzzzzzzzzzzzzzzzzzzz", 9, 12, 4),  # 20-byte name, unknown type
            ("id", U64, 16, 8),
            ("crc", U32, 0, 4),
            ("expires_at", I64, 24, 8),
            ("content_len", U32, 4, 4),
            ("effective_at", I64, 32, 8),
        ]
        stride = 464
        r = Region(minor=3, fields=fields, stride=stride)
        rec = bytearray(stride)
        text = "moved".encode()
        struct.pack_into("<IIi4xQqq", rec, 0, 0, len(text), 11, 99, 2, 1)
        rec[64:64 + len(text)] = text
        rec[400:404] = b"junk"
        struct.pack_into("<I", rec, 0, zlib.crc32(rec[4:]))
        r.publish(5, [bytes(rec)])
        with notice.Board.open(self.save(r)) as board:
            snap = board.snapshot()
        self.assertEqual(snap.records, (notice.Record(99, 1, 2, 11, "moved"),))

    def test_overlapping_unknown_field(self):
        # An unknown field may alias known bytes; the reader still decodes by offsets.
        r = Region(fields=FIELDS_1_0 + [("id_low", U32, 8, 4)])
        r.publish(3, [encode_record(42, content="x")])
        with notice.Board.open(self.save(r)) as board:
            self.assertEqual(board.snapshot().records[0].id, 42)

    def test_repeated_name_rejected(self):
        # FORMAT.md §2: no name may appear twice (which entry would a reader believe?).
        r = Region(fields=FIELDS_1_0 + [("id", U32, 292, 4)])
        r.publish(3, [encode_record(42, content="twice")])
        with self.assertRaises(notice.BoardError) as cm:
            notice.Board.open(self.save(r))
        self.assertEqual(cm.exception.name, "bad_layout")

    def test_integer_size_must_match_type(self):
        r = Region(fields=FIELDS_1_0 + [("wide", U32, 296, 8)])
        r.publish(3, [encode_record(42, content="x")])
        with self.assertRaises(notice.BoardError) as cm:
            notice.Board.open(self.save(r))
        self.assertEqual(cm.exception.name, "bad_layout")

    def test_newer_minor_accepted(self):
        r = self.published(minor=65535)
        with notice.Board.open(self.save(r)) as board:
            snap = board.snapshot()
        self.assertEqual((snap.minor, snap.count), (65535, 3))

    def test_content_256_bytes_multibyte_utf8(self):
        text = "€" * 84 + "😀"  # 84 x 3 + 4 = 256 bytes
        self.assertEqual(len(text.encode()), 256)
        r = Region()
        r.publish(2, [encode_record(1, content=text), encode_record(2, content="é" * 128)])
        with notice.Board.open(self.save(r)) as board:
            snap = board.snapshot()
        self.assertEqual([x.content for x in snap.records], [text, "é" * 128])

    def test_file_larger_than_region_size(self):
        r = self.published()
        p = self.save(r)
        with open(p, "ab") as f:
            f.write(bytes(8192))
        with notice.Board.open(p) as board:
            self.assertEqual(board.snapshot().count, 3)


class TestOpenErrors(Case):
    def test_major_2_rejected(self):
        self.open_error("unsupported_major", self.save(self.published(major=2)))
        self.open_error("unsupported_major", self.save(self.published(major=0)))

    def test_bad_magic(self):
        r = self.published()
        r.buf[8:16] = b"NTCBOARX"
        self.open_error("bad_magic", self.save(r))
        self.open_error("bad_magic", self.raw(bytes(65536)))

    def test_truncated(self):
        r = self.published()
        self.open_error("truncated", self.raw(b""))
        self.open_error("truncated", self.save(r, size=1343))
        self.open_error("truncated", self.save(r, size=4096))  # region_size says 64 KiB
        self.open_error("truncated", self.save(r, size=65535))

    def test_io(self):
        self.open_error("io", os.path.join(self.dir, "does-not-exist"))
        self.open_error("io", self.dir)  # a directory: open works, reading does not (or it is too short)

    def test_layout_crc_mismatch(self):
        r = self.published()
        r.set_fields(FIELDS_1_0, layout_crc=12345)
        self.open_error("bad_layout", self.save(r))
        r = self.published()
        r.buf[272 + 32 * 2 + 20] ^= 1  # flip a bit of an entry, keep the stored crc
        self.open_error("bad_layout", self.save(r))

    def test_bad_geometry(self):
        def with_header(offset, fmt, value):
            r = self.published()
            struct.pack_into(fmt, r.buf, offset, value)
            return self.save(r)

        for offset, fmt, value in [
            (28, "<I", 1280), (28, "<I", 4100),          # header_size
            (44, "<I", 284), (44, "<I", 324),            # stride
            (40, "<I", 0), (40, "<I", 96),               # capacity
            (48, "<I", 30720 + 32), (48, "<I", 30400),   # slot_size
            (48, "<I", 30784),                           # 2 slots no longer fit
            (32, "<Q", 40000),                           # region_size too small for the slots
        ]:
            with self.subTest(offset=offset, value=value):
                self.open_error("bad_layout", with_header(offset, fmt, value))

    def test_bad_field_table(self):
        def variant(fields):
            r = self.published()
            r.set_fields(fields)
            return self.save(r)

        cases = {
            "no fields": [],
            "missing id": [f for f in FIELDS_1_0 if f[0] != "id"],
            "id as u32": [f if f[0] != "id" else ("id", U32, 8, 4) for f in FIELDS_1_0],
            "priority as i64": [f if f[0] != "priority" else ("priority", I64, 32, 8) for f in FIELDS_1_0],
            "content too small": [f if f[0] != "content" else ("content", BYTES, 36, 255) for f in FIELDS_1_0],
            "content as u64": [f if f[0] != "content" else ("content", U64, 40, 8) for f in FIELDS_1_0],
            "content outside stride": [f if f[0] != "content" else ("content", BYTES, 80, 256)
                                       for f in FIELDS_1_0],
            "unknown outside stride": FIELDS_1_0 + [("later", U32, 320, 4)],
            "misaligned id": [f if f[0] != "id" else ("id", U64, 292, 8) for f in FIELDS_1_0],
            "misaligned unknown": FIELDS_1_0 + [("later", U64, 300, 8)],
            "crc not at 0": [f if f[0] != "crc" else ("crc", U32, 292, 4) for f in FIELDS_1_0],
            "integer of size 0": FIELDS_1_0 + [("later", U32, 292, 0)],
        }
        for what, fields in cases.items():
            with self.subTest(what):
                self.open_error("bad_layout", variant(fields))
        r = self.published()
        struct.pack_into("<I", r.buf, 256, 33)  # more entries than the table has room for
        self.open_error("bad_layout", self.save(r))


class TestSnapshotErrors(Case):
    def test_not_published(self):
        self.snapshot_error("not_published", Region())

    def test_superseded(self):
        r = self.published(state=2)
        e = self.snapshot_error("superseded", r)
        self.assertIn("reopen", e.message)
        with notice.Board.open(self.save(r)) as board:
            self.assertBoardError("superseded", board.poll, 7, 0.01, 1.0)
            self.assertBoardError("superseded", board.poll, 3, 0.01, 1.0)

    def test_snapshot_crc_mismatch(self):
        r = self.published()
        r.buf[r.record_offset(7, 1) + 40] ^= 0x20  # a content byte, record crc left stale too
        self.snapshot_error("snapshot_checksum", r)
        r = self.published()
        struct.pack_into("<I", r.buf, r.slot(7) + 8, 0)
        self.snapshot_error("snapshot_checksum", r)

    def test_slot_version_older_than_header_version(self):
        r = self.published()
        struct.pack_into("<Q", r.buf, 0, 9)  # header says 9, slot 1 still holds 7
        self.snapshot_error("snapshot_checksum", r)

    def test_record_crc_mismatch(self):
        r = self.published()
        r.buf[r.record_offset(7, 1) + 40] ^= 0x20
        r.reseal(7)  # the slot crc is fine, the record crc is not
        self.snapshot_error("record_checksum", r)
        r = self.published()
        r.buf[r.record_offset(7, 2) + 300] = 1  # a reserved byte: the record crc covers the whole stride
        r.reseal(7)
        self.snapshot_error("record_checksum", r)

    def test_bad_records(self):
        cases = {
            "id 0": encode_record(0, content="x"),
            "content_len 257": encode_record(1, content="a" * 257),
            "invalid utf-8": encode_record(1, content=b"ok \xff"),
            "truncated utf-8": encode_record(1, content="€".encode()[:2]),
            "surrogate": encode_record(1, content=b"\xed\xa0\x80"),
            "overlong": encode_record(1, content=b"\xc0\xaf"),
        }
        for what, rec in cases.items():
            with self.subTest(what):
                r = Region()
                r.publish(3, [rec, encode_record(2, content="fine")] if what != "id 0" else [rec])
                self.snapshot_error("bad_record", r)

    def test_busy_on_odd_seq(self):
        r = self.published()
        struct.pack_into("<Q", r.buf, r.slot(7), 5)
        self.snapshot_error("busy", r)

    def test_count_over_capacity_on_a_stable_slot_is_corrupt(self):
        r = self.published()
        struct.pack_into("<I", r.buf, r.slot(7) + 12, r.capacity + 1)
        self.snapshot_error("snapshot_checksum", r)  # not busy: no writer is racing (FORMAT.md §5 rules)


class TestRules(Case):
    """The answers of FORMAT.md §5 "Rules every reader follows" (the golden regions pin them for all readers)."""

    def test_superseded_wins_over_not_published(self):
        self.snapshot_error("superseded", Region(state=2))

    def test_slot_version_of_the_other_parity(self):
        r = self.published()
        s = r.slot(7)
        struct.pack_into("<Q", r.buf, s + 16, 8)  # >= 7, but slot 1 never holds an even version
        r.reseal(7)
        self.snapshot_error("snapshot_checksum", r)
        struct.pack_into("<Q", r.buf, s + 16, 9)  # a newer version of the right parity: publishes overtook the copy
        r.reseal(7)
        self.snapshot_error("busy", r)  # retried, never accepted: the next snapshot could show a lower version
        struct.pack_into("<Q", r.buf, s + 16, 5)  # an older one is a failed check
        r.reseal(7)
        self.snapshot_error("snapshot_checksum", r)

    def test_ids_must_ascend(self):
        for ids in ((7, 1), (5, 5), (1, 2, 2)):
            with self.subTest(ids=ids):
                r = Region()
                r.publish(3, [encode_record(i, content=str(i)) for i in ids])
                e = self.snapshot_error("bad_record", r)
                self.assertIn("ascend", e.message)

    def test_padding_is_not_checked(self):
        r = Region()
        rec = bytearray(encode_record(1, content="short"))
        rec[36 + 5:] = bytes(0x80 | (j & 0x7f) for j in range(1, STRIDE - 41 + 1))  # past content_len, and the reserved bytes 292..319
        struct.pack_into("<I", rec, 0, zlib.crc32(rec[4:]))
        r.publish(3, [bytes(rec)])
        r.buf[r.slot(3) + 32:r.slot(3) + 64] = b"\xa5" * 32  # the slot header's reserved bytes
        r.reseal(3)
        with notice.Board.open(self.save(r)) as board:
            self.assertEqual(board.snapshot().records[0].content, "short")

    def test_content_limit_stays_256_when_the_field_grows(self):
        fields = [f if f[0] != "content" else ("content", BYTES, 36, 264) for f in FIELDS_1_0]
        r = Region(fields=fields)
        r.publish(3, [encode_record(1, content="b" * 256)])
        with notice.Board.open(self.save(r)) as board:
            self.assertEqual(board.snapshot().records[0].content, "b" * 256)
        r.publish(5, [encode_record(1, content="b" * 260)])
        self.snapshot_error("bad_record", r)

    def test_names_compare_as_bytes_up_to_the_first_nul(self):
        extra = [(b"crc ", U32, 296, 4), (b"CONTENT", BYTES, 300, 4), ("类别".encode(), U32, 304, 4),
                 (b"abcdefghijklmnopqrst", U32, 308, 4), (b"zz\0junk", U64, 312, 8), (b"", 9, 293, 3)]
        r = Region(fields=FIELDS_1_0 + extra, minor=1)
        r.publish(3, sample_records())
        with notice.Board.open(self.save(r)) as board:
            self.assertEqual(board.snapshot().count, 3)
        r = Region(fields=FIELDS_1_0 + [(b"id\0v2", U64, 296, 8)])  # "id" twice
        r.publish(3, sample_records())
        self.open_error("bad_layout", self.save(r))

    def test_unknown_type_must_lie_inside_the_stride(self):
        r = Region(fields=FIELDS_1_0 + [("later", 9, 316, 8)])
        r.publish(3, sample_records())
        self.open_error("bad_layout", self.save(r))

    def test_size_limits_of_section_9_are_not_enforced(self):
        r = Region(region_size=6144)  # below 64 KiB, not a multiple of the page size: capacity 3
        self.assertEqual(r.capacity, 3)
        r.publish(3, sample_records())
        with notice.Board.open(self.save(r)) as board:
            self.assertEqual(board.snapshot().count, 3)


class TestLiveBoard(Case):
    def test_poll_and_version(self):
        r = self.published()
        p = self.save(r)
        with notice.Board.open(p) as board:
            start = time.monotonic()
            self.assertIsNone(board.poll(7, interval=0.01, timeout=0.05))
            self.assertGreaterEqual(time.monotonic() - start, 0.05)
            self.assertEqual(board.poll(6, timeout=0), 7)
            r.publish(8, [encode_record(1, content="new")])
            with open(p, "r+b") as f:  # a write through the file shows in the shared mapping
                f.write(r.buf)
            self.assertEqual(board.poll(7, interval=0.01, timeout=1.0), 8)
            self.assertEqual(board.snapshot().records[0].content, "new")

    def test_is_stale(self):
        r = self.published(heartbeat_ns=time.clock_gettime_ns(time.CLOCK_MONOTONIC))
        with notice.Board.open(self.save(r)) as board:
            self.assertFalse(board.is_stale())
            self.assertTrue(board.is_stale(-1.0))  # any age exceeds a negative threshold
        with notice.Board.open(self.save(self.published(heartbeat_ns=0))) as board:
            self.assertTrue(board.is_stale())

    def test_close_is_idempotent(self):
        board = notice.Board.open(self.save(self.published()))
        board.close()
        board.close()
        with self.assertRaises(ValueError):
            board.snapshot()

    def test_concurrent_writer_thread(self):
        """A writer thread republishes in place (STRESS.md pattern) while the reader takes snapshots."""
        def pattern(v):
            return [encode_record(i, v, v + i, i, f"{v}:{i}:".ljust(32 + (v + i) % 225, "."))
                    for i in range(1, 2 + v % 64)]

        r = Region()
        r.publish(1, pattern(1))
        p = self.save(r)
        stop = threading.Event()

        def writer():
            with open(p, "r+b") as f, mmap.mmap(f.fileno(), 0) as mm:
                v = 1
                while not stop.is_set():
                    v += 1
                    s = r.slot(v)
                    seq = struct.unpack_from("<Q", mm, s)[0]
                    struct.pack_into("<Q", mm, s, seq + 1)
                    recs = pattern(v)
                    for i, rec in enumerate(recs):  # record by record, so the reader can interleave
                        mm[s + 64 + i * STRIDE:s + 64 + (i + 1) * STRIDE] = rec
                    mm[s + 64 + len(recs) * STRIDE:s + 64 + 64 * STRIDE] = bytes((64 - len(recs)) * STRIDE)
                    struct.pack_into("<IQq", mm, s + 12, len(recs), v, v)
                    struct.pack_into("<I", mm, s + 8, zlib.crc32(mm[s + 12:s + 64 + len(recs) * STRIDE]))
                    struct.pack_into("<Q", mm, s, seq + 2)
                    struct.pack_into("<Q", mm, 0, v)

        self.addCleanup(sys.setswitchinterval, sys.getswitchinterval())
        sys.setswitchinterval(1e-6)  # switch threads often: many torn copies
        t = threading.Thread(target=writer)
        t.start()
        try:
            last, good, deadline = 0, 0, time.monotonic() + 0.5
            with notice.Board.open(p) as board:
                while time.monotonic() < deadline:
                    try:
                        snap = board.snapshot()
                    except notice.BoardError as e:
                        self.assertEqual(e.name, "busy")
                        continue
                    v = snap.version
                    self.assertGreaterEqual(v, last)
                    last = v
                    self.assertEqual(snap.count, 1 + v % 64)
                    for i, rec in enumerate(snap.records, 1):
                        self.assertEqual(rec, (i, v, v + i, i, f"{v}:{i}:".ljust(32 + (v + i) % 225, ".")))
                    good += 1
        finally:
            stop.set()
            t.join()
        self.assertGreater(good, 0)


class TestTruncation(Case):
    """A board file truncated under an open Board: every read is a pread, and one that comes back short is
    BoardError truncated; nothing faults (a reader on a mapping would die of SIGBUS here)."""

    def setUp(self):
        super().setUp()
        self.r = self.published()  # version 7 in slot 1, three records
        self.p = self.save(self.r)
        self.board = notice.Board.open(self.p)
        self.addCleanup(self.board.close)

    def truncated(self, fn, *args):
        return self.assertBoardError("truncated", fn, *args)

    def test_to_0(self):
        os.truncate(self.p, 0)
        b = self.board
        for fn in (b.version, b.state, b.heartbeat_ns, b.is_stale, b.snapshot):
            with self.subTest(fn.__name__):
                self.truncated(fn)
        self.truncated(b.poll, 0)

    def test_to_8(self):
        os.truncate(self.p, 8)
        b = self.board
        self.assertEqual(b.version(), 7)  # the version word is still there
        self.truncated(b.state)
        self.truncated(b.snapshot)
        self.truncated(b.poll, 0)

    def test_version_needs_8_bytes(self):
        for size in range(8):
            with self.subTest(size=size):
                os.truncate(self.p, size)
                e = self.truncated(self.board.version)
                self.assertIn("shrank", e.message)

    def test_inside_the_slot(self):
        s = self.r.slot(7)
        for size in (s, s + 8, s + 40, s + 64 + notice.MIN_STRIDE, s + 64 + 3 * STRIDE - 1):
            with self.subTest(size=size):
                self.r.save(self.p)
                os.truncate(self.p, size)
                self.assertEqual(self.board.version(), 7)
                self.truncated(self.board.snapshot)

    def test_past_the_snapshot_it_reads(self):
        # The bytes the snapshot needs are all there: it is read whole (a Follower sees the file is short).
        os.truncate(self.p, self.r.slot(7) + 64 + 3 * STRIDE)
        self.assertEqual(self.board.snapshot().count, 3)

    def test_every_size(self):
        """Any truncation point gives a snapshot or truncated, never another error or exception."""
        full = bytes(self.r.buf)
        s = self.r.slot(7)
        for size in list(range(0, 200, 4)) + list(range(s - 8, s + 64 + 3 * STRIDE + 8, 8)):
            with open(self.p, "r+b") as f:
                f.write(full)
            os.truncate(self.p, size)
            try:
                snap = self.board.snapshot()
            except notice.BoardError as e:
                self.assertEqual(e.name, "truncated", f"size {size}: {e}")
            else:
                self.assertEqual((size, snap.count), (size, 3))

    def test_restored_in_place(self):
        os.truncate(self.p, 0)
        self.truncated(self.board.snapshot)
        self.r.publish(9, [encode_record(1, content="nine")])
        fd = os.open(self.p, os.O_WRONLY)  # the same inode, its size and bytes back
        try:
            os.pwrite(fd, bytes(self.r.buf), 0)
        finally:
            os.close(fd)
        # The open board reads the file as it is now: no mapping to redo.
        self.assertEqual(self.board.version(), 9)
        self.assertEqual(self.board.snapshot().records[0].content, "nine")

    def test_closed_board_raises_value_error(self):
        self.board.close()
        for fn in (self.board.version, self.board.state, self.board.heartbeat_ns, self.board.snapshot):
            with self.subTest(fn.__name__), self.assertRaises(ValueError):
                fn()


class TestRobustness(Case):
    def check_only_board_errors(self, data):
        p = self.raw(data)
        try:
            with notice.Board.open(p) as board:
                snap = board.snapshot()
                json.dumps(notice.snapshot_to_dict(snap))
        except notice.BoardError as e:
            self.assertIn(e.name, notice.ERROR_NAMES)

    def test_garbage_files(self):
        rng = random.Random(1)
        for size in (0, 1, 100, 1343, 1344, 4096, 65536):
            self.check_only_board_errors(bytes(rng.getrandbits(8) for _ in range(size)))
            self.check_only_board_errors(b"NTCBOARD" * (size // 8))

    def test_mutated_regions(self):
        rng = random.Random(2)
        r = self.published()
        r.publish(8, [encode_record(i, content="x" * i) for i in range(1, 20)])
        hot = list(range(0, 1344)) + list(range(HEADER_SIZE, HEADER_SIZE + 64 + 3 * STRIDE))
        for n in range(300):
            m = copy.copy(r)
            m.buf = bytearray(r.buf)
            for _ in range(rng.randint(1, 4)):
                m.buf[rng.choice(hot)] = rng.getrandbits(8)
            if n % 2:  # keep the table's crc valid so validation goes further
                count = min(struct.unpack_from("<I", m.buf, 256)[0], 32)
                struct.pack_into("<I", m.buf, 260, zlib.crc32(m.buf[272:272 + 32 * count]))
            if n % 3 == 0 and struct.unpack_from("<I", m.buf, m.slot(8) + 12)[0] <= r.capacity:
                m.reseal(8)  # and the slot's, so records get decoded
            self.check_only_board_errors(bytes(m.buf))


class TestCommandLine(Case):
    def run_cli(self, *args):
        return subprocess.run([sys.executable, os.path.join(HERE, "notice.py"), *args],
                              capture_output=True, text=True, timeout=30)

    def test_dump(self):
        out = self.run_cli(self.save(self.published()))
        self.assertEqual(out.returncode, 0, out.stderr)
        dump = json.loads(out.stdout)
        self.assertEqual(set(dump), {"version", "major", "minor", "state", "region_size", "capacity", "stride",
                                     "writer_pid", "generation", "heartbeat_ns", "published_at", "count",
                                     "records"})
        self.assertEqual(set(dump["records"][0]), {"id", "effective_at", "expires_at", "priority", "content"})
        self.assertEqual(dump["records"][2]["id"], 2**63 + 5)

    def test_error(self):
        out = self.run_cli(self.save(Region()))
        self.assertEqual(out.returncode, 1)
        err = json.loads(out.stdout)
        self.assertEqual(set(err), {"error", "message"})
        self.assertEqual(err["error"], "not_published")

    def test_usage(self):
        self.assertEqual(self.run_cli().returncode, 2)
        self.assertEqual(self.run_cli("a", "b").returncode, 2)


@unittest.skipUnless(os.path.isdir(GOLDEN_DIR) and any(f.endswith(".region") for f in os.listdir(GOLDEN_DIR)),
                     "no golden regions in testdata/regions")
class TestGoldenRegions(unittest.TestCase):
    def test_golden(self):
        for name in sorted(os.listdir(GOLDEN_DIR)):
            if not name.endswith(".region"):
                continue
            expected_path = os.path.join(GOLDEN_DIR, name[:-len(".region")] + ".json")
            if not os.path.exists(expected_path):
                continue
            with self.subTest(name), open(expected_path) as f:
                expected = json.load(f)
                try:
                    with notice.Board.open(os.path.join(GOLDEN_DIR, name)) as board:
                        got = notice.snapshot_to_dict(board.snapshot())
                except notice.BoardError as e:
                    got = {"error": e.name}
                if "error" in expected:
                    self.assertEqual(got.get("error"), expected["error"])
                else:
                    self.assertEqual(got, expected)


if __name__ == "__main__":
    unittest.main()
