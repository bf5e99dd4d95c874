"""Tests for notice.Follower. Run from the repository root:

    python3 -m unittest discover -s clients/python -p 'test_*.py'

Regions come from the minimal writer of test_notice.py. A file is replaced the way the daemon does it (a new file
renamed over the path, then state 2 written into the old one), or unlinked and recreated, or truncated under the
follower's mapping.
"""

import os
import struct
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import notice  # noqa: E402
from test_notice import Case, Region, encode_record  # noqa: E402


def now_ns():
    return time.clock_gettime_ns(time.CLOCK_MONOTONIC)


def region(version, text, heartbeat_ns=None):
    r = Region(heartbeat_ns=now_ns() if heartbeat_ns is None else heartbeat_ns)
    r.publish(version, [encode_record(1, content=text)])
    return r


def poke(path, offset, fmt, value):
    """Write one field of the live file (through the page cache, so the mapping sees it)."""
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(struct.pack(fmt, value))


class TestFollower(Case):
    def setUp(self):
        super().setUp()
        self.p = os.path.join(self.dir, "notice")
        region(7, "seven").save(self.p)
        self.f = notice.Follower(self.p, stale_after_s=60.0, interval=0.005)
        self.addCleanup(self.f.close)

    def replace(self, version, text, supersede=True):
        """A new file renamed over the path; with supersede, then the old one marked (state 2)."""
        old = os.open(self.p, os.O_RDWR)
        try:
            tmp = self.p + ".new"
            region(version, text).save(tmp)
            os.replace(tmp, self.p)
            if supersede:
                os.pwrite(old, struct.pack("<I", notice.STATE_SUPERSEDED), 20)
        finally:
            os.close(old)

    def wait_change(self, last):
        reopened = 0
        for _ in range(100):
            u = self.f.wait(last, timeout=10.0)
            self.assertIsNotNone(u, "nothing to report in 10 s")
            reopened += u.reopened
            if u.changed:
                return u, reopened
        self.fail(f"no change from version {last} in 100 updates")

    def test_first_wait_reports_the_current_snapshot(self):
        u = self.f.wait(0, timeout=10.0)
        self.assertEqual((u.changed, u.snapshot.version, u.snapshot.records[0].content), (True, 7, "seven"))
        self.assertEqual((u.stale, u.reopened, u.lost), (False, 0, None))

    def test_superseded(self):
        self.assertEqual(self.f.snapshot().version, 7)
        self.replace(9, "nine")
        u, reopened = self.wait_change(7)
        self.assertEqual((u.snapshot.version, u.snapshot.records[0].content, reopened), (9, "nine", 1))
        self.assertEqual(self.f.reopens, 1)

    def test_replaced_without_supersede(self):
        self.assertEqual(self.f.snapshot().version, 7)
        self.replace(9, "nine", supersede=False)  # only the inode check finds it
        snap = self.f.snapshot()
        self.assertEqual((snap.version, self.f.reopens), (9, 1))

    def test_unlinked_then_recreated(self):
        self.f.wait(0, timeout=10.0)
        old = os.open(self.p, os.O_RDWR)
        self.addCleanup(os.close, old)
        os.unlink(self.p)
        # Nothing at the path: the open file is still the board, its writer may still publish into it.
        r = region(7, "seven")
        r.publish(8, [encode_record(1, content="eight")])
        os.pwrite(old, bytes(r.buf), 0)
        u, reopened = self.wait_change(7)
        self.assertEqual((u.snapshot.version, reopened, u.lost), (8, 0, None))
        region(11, "eleven").save(self.p)  # recreated in place, the old file never marked
        u, reopened = self.wait_change(8)
        self.assertEqual((u.snapshot.version, u.snapshot.records[0].content, reopened), (11, "eleven", 1))

    def test_truncated(self):
        self.f.wait(0, timeout=10.0)
        os.truncate(self.p, 4096)  # the slots are gone: touching them would be SIGBUS
        with self.assertRaises(notice.BoardError) as cm:
            self.f.snapshot()
        self.assertEqual(cm.exception.name, "truncated")
        u = self.f.wait(7, timeout=10.0)
        self.assertEqual((u.changed, u.stale, u.lost.name, u.snapshot.version), (False, True, "truncated", 7))
        self.assertIsNone(self.f.wait(7, timeout=0.05))  # still lost: nothing new to report
        self.replace(9, "nine", supersede=False)
        u, reopened = self.wait_change(7)
        self.assertEqual((u.snapshot.version, reopened, u.lost), (9, 1, None))

    def restore_in_place(self, r):
        """Write region ``r`` (or raw bytes) into the file at the path: the same inode, its size and bytes back."""
        fd = os.open(self.p, os.O_WRONLY)
        try:
            os.pwrite(fd, bytes(r.buf if isinstance(r, Region) else r), 0)
        finally:
            os.close(fd)

    def test_truncated_and_restored_in_place(self):
        """Truncated to 0, to 8, inside the slot: lost, the last snapshot kept; restored in place (the same inode,
        as the writer does): followed again at the next version, without a reopen."""
        slot = region(7, "seven").slot(7)
        last = 7
        self.assertEqual(self.f.wait(0, timeout=10.0).snapshot.version, 7)
        for size in (0, 8, slot + 64 + 100):
            with self.subTest(size=size):
                os.truncate(self.p, size)
                with self.assertRaises(notice.BoardError) as cm:
                    self.f.snapshot()
                self.assertEqual(cm.exception.name, "truncated")
                u = self.f.wait(last, timeout=10.0)
                self.assertEqual((u.changed, u.stale, u.lost.name, u.snapshot.version), (False, True, "truncated",
                                                                                        last))
                r = region(last, "old")
                r.publish(last + 2, [encode_record(1, content=f"v{last + 2}")])
                self.restore_in_place(r)
                u, reopened = self.wait_change(last)
                last += 2
                self.assertEqual((u.snapshot.version, u.snapshot.records[0].content, u.lost, reopened),
                                 (last, f"v{last}", None, 0))
        self.assertEqual(self.f.reopens, 0)

    def test_short_read_retires_the_file(self):
        """A read that comes back short is a truncation found by fstat: the follower retires the file."""
        self.assertEqual(self.f.wait(0, timeout=10.0).snapshot.version, 7)
        board = self.f.board
        os.truncate(self.p, 0)
        board.file_size = 0  # so that the fstat before the read passes: the read itself finds the file short
        u = self.f.wait(7, timeout=10.0)
        self.assertEqual((u.changed, u.lost.name), (False, "truncated"))
        self.assertIn("shrank", u.lost.message)
        self.restore_in_place(region(9, "nine"))
        u, reopened = self.wait_change(7)
        self.assertEqual((u.snapshot.version, reopened), (9, 0))
        self.assertIsNot(self.f.board, board)  # opened afresh: the same file, validated again

    def test_corruption_is_still_reported(self):
        """A stable slot that fails its checks, the file whole and its version still: snapshot_checksum."""
        self.assertEqual(self.f.wait(0, timeout=10.0).snapshot.version, 7)
        r = region(7, "seven")
        r.publish(9, [encode_record(1, content="nine")])
        r.buf[r.slot(9) + 8] ^= 1  # the slot crc
        self.restore_in_place(r)
        with self.assertRaises(notice.BoardError) as cm:
            self.f.wait(7, timeout=10.0)
        self.assertEqual(cm.exception.name, "snapshot_checksum")
        with self.assertRaises(notice.BoardError) as cm:
            self.f.snapshot()
        self.assertEqual(cm.exception.name, "snapshot_checksum")

    def test_never_goes_back(self):
        self.f.wait(0, timeout=10.0)
        self.replace(3, "three")  # against the contract: the version must continue above 7
        with self.assertRaises(notice.BoardError) as cm:
            self.f.snapshot()
        self.assertEqual(cm.exception.name, "version_went_back")
        u = self.f.wait(7, timeout=10.0)
        self.assertEqual((u.reopened, u.changed, u.snapshot.version), (1, False, 7))
        self.assertIsNone(self.f.wait(7, timeout=0.05))
        r = region(3, "three")
        r.publish(8, [encode_record(1, content="eight")])
        with open(self.p, "r+b") as f:
            f.write(r.buf)
        u, _ = self.wait_change(7)
        self.assertEqual(u.snapshot.version, 8)

    def test_stale_is_not_no_change(self):
        self.f.wait(0, timeout=10.0)
        self.assertIsNone(self.f.wait(7, timeout=0.05))  # no change, and not stale
        self.assertFalse(self.f.is_stale())
        poke(self.p, 64, "<q", now_ns() - 3600 * 10**9)  # the heartbeat is an hour old
        u = self.f.wait(7, timeout=10.0)
        self.assertEqual((u.stale, u.changed), (True, False))
        self.assertTrue(self.f.is_stale())
        poke(self.p, 64, "<q", now_ns())
        u = self.f.wait(7, timeout=10.0)
        self.assertEqual((u.stale, u.changed), (False, False))

    def test_open_errors(self):
        with self.assertRaises(notice.BoardError) as cm:
            notice.Follower(os.path.join(self.dir, "none"))
        self.assertEqual(cm.exception.name, "io")


if __name__ == "__main__":
    unittest.main()
