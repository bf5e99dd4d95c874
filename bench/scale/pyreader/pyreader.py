"""pyreader - the Python reader process of bench/scale, with clients/python/notice.py.

    python3 pyreader.py NOTICE_DIR BOARD PUBTABLE CLIENTS own|shared INTERVAL_NS SEED

One process simulating CLIENTS clients of the board, each polling the version word every INTERVAL_NS at a phase of
its own: a timer wheel, as bench/scale/creader/creader.c (read it for the model). The poll is Board.version() (one
8-byte pread: the Python reader reads the file with pread, FORMAT.md §5); a changed version costs the client its own
verified Board.snapshot() (mode own), or one per process per version (mode shared). The protocol on stdin/stdout and
the report's JSON are bench/scale/internal/sim's.
"""

import ctypes
import json
import mmap
import os
import random
import resource
import select
import signal
import struct
import sys
import time

BIN_NS = 100_000  # sim.Bin
NBINS = 600_000  # sim.Bins
PUB_SLOTS = 65536  # sim.PubSlots
MIN_SLEEP_NS = 1_000_000


def die_with_parent():
    """PR_SET_PDEATHSIG SIGKILL: never outlive the bench."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
    if os.getppid() == 1:
        sys.exit(1)


def cpu_ns():
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return int((ru.ru_utime + ru.ru_stime) * 1e9)


class Hist:
    def __init__(self):
        self.counts = {}
        self.max = 0

    def add(self, d):
        b = 0 if d < 0 else min(d // BIN_NS, NBINS - 1)
        self.counts[b] = self.counts.get(b, 0) + 1
        if d > self.max:
            self.max = d

    def sparse(self):
        return [[b, self.counts[b]] for b in sorted(self.counts)]


def main(argv):
    if len(argv) != 8:
        print(__doc__, file=sys.stderr)
        return 2
    die_with_parent()
    sys.path.insert(0, argv[1])
    import notice  # noqa: E402 (the path is an argument)

    k, mode, period, seed = int(argv[4]), argv[5], int(argv[6]), int(argv[7])
    if k < 1 or mode not in ("own", "shared") or period <= 0:
        print("pyreader: bad arguments", file=sys.stderr)
        return 2
    own = mode == "own"
    board = notice.Board.open(argv[2])
    with open(argv[3], "rb") as f:
        pub = mmap.mmap(f.fileno(), PUB_SLOTS * 8, prot=mmap.PROT_READ)
    q64 = struct.Struct("<q")
    mono = time.monotonic_ns  # CLOCK_MONOTONIC
    version = board.version

    st = {"measuring": False, "stopping": False, "first": 0, "last": 0, "seen_all": 0, "missed": 0,
          "snapshots": 0, "pairs": 0, "errors": 0, "error": ""}
    lat = Hist()

    def fail(e):
        st["errors"] += 1
        if not st["error"]:
            st["error"] = str(e)

    def snapshot():
        s = board.snapshot()
        if st["measuring"]:
            st["snapshots"] += 1
        r = s.records[0] if s.records else None
        if r is None or r.id != 1 or not r.content.startswith("seq="):
            raise ValueError(f"version {s.version} has no announcement 1 with seq=")
        return s, int(r.content[4:].split(" ", 1)[0])

    snap, seq = snapshot()
    shared = [snap.version, seq]  # the process's last snapshot: its version and publish
    last_v = [snap.version] * k
    last_s = [seq] * k
    rnd = random.Random(seed)
    phase = sorted(rnd.randrange(period) for _ in range(k))
    print(f"ready {seq}", flush=True)

    def observe(i, seq, t):
        if st["measuring"]:
            first = st["first"]
            for j in range(max(last_s[i] + 1, first), seq + 1):
                sent = q64.unpack_from(pub, (j % PUB_SLOTS) * 8)[0]
                if sent == 0:
                    fail(f"publish {j} has no time in the table")
                    continue
                lat.add(t - sent)
                st["pairs"] += 1
            if st["stopping"] and last_s[i] < st["last"] <= seq:
                st["seen_all"] += 1
        last_s[i] = seq

    cpu0 = wall0 = stop_at = 0
    base = mono()
    cycle = 0
    cyc_base = base  # base + cycle * period
    idx = 0
    buf = b""
    measuring = False
    polls = 0
    lagc, lagmax = [0] * NBINS, 0  # the poll lag's histogram, inline: this loop runs for every poll
    while True:
        now = mono()
        n = 0
        while True:
            due = cyc_base + phase[idx]
            if due > now:
                break
            if measuring:
                polls += 1
                d = now - due
                b = d // BIN_NS
                lagc[b if b < NBINS else NBINS - 1] += 1
                if d > lagmax:
                    lagmax = d
            v = version()
            if v != last_v[idx]:
                took = own or shared[0] < v
                ok = True
                if took:
                    try:
                        s, sq = snapshot()
                        shared[0], shared[1] = s.version, sq
                    except (notice.BoardError, ValueError) as e:
                        fail(e)  # the client keeps its version: it tries again at its next poll
                        ok = False
                if ok:
                    last_v[idx] = shared[0]
                    if shared[1] > last_s[idx]:
                        observe(idx, shared[1], mono() if took else now)
                if took:
                    now = mono()
            idx += 1
            if idx == k:
                idx = 0
                cycle += 1
                late = now - (base + cycle * period)
                if late > period:  # a whole interval behind: skip the polls missed
                    cycle += late // period
                    if measuring:
                        st["missed"] += (late // period) * k
                cyc_base = base + cycle * period
            n += 1
            if n & 63 == 0:
                now = mono()
        if st["stopping"] and (st["seen_all"] == k or now >= stop_at):
            cpu = cpu_ns() - cpu0
            last, first = st["last"], st["first"]
            missing = sum(last - max(s, first - 1) for s in last_s if max(s, first - 1) < last)
            rep = {"lang": "python", "mode": mode, "clients": k, "pid": os.getpid(), "cpu_ns": cpu,
                   "wall_ns": mono() - wall0, "polls": polls, "missed_polls": st["missed"],
                   "snapshots": st["snapshots"], "pairs": st["pairs"], "missing": missing,
                   "lat": lat.sparse(), "lat_max_ns": lat.max, "lag": [[i, c] for i, c in enumerate(lagc) if c], "lag_max_ns": lagmax,
                   "errors": st["errors"]}
            if st["error"]:
                rep["error"] = st["error"]
            sys.stdout.write(json.dumps(rep, separators=(",", ":")) + "\n")
            sys.stdout.flush()
            return 0
        wait = max(base + cycle * period + phase[idx] - now, MIN_SLEEP_NS)
        r, _, _ = select.select([0], [], [], wait / 1e9)
        if not r:
            continue
        chunk = os.read(0, 4096)
        if not chunk:
            return 0  # the bench is gone
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            f = line.split()
            if len(f) == 2 and f[0] == b"start":
                st["measuring"], st["first"] = True, int(f[1])
                measuring = True
                cpu0, wall0 = cpu_ns(), mono()
            elif len(f) == 3 and f[0] == b"stop":
                st["stopping"], st["last"] = True, int(f[1])
                stop_at = mono() + int(f[2]) * 1_000_000
                st["seen_all"] = sum(1 for s in last_s if s >= st["last"])
            else:
                print(f"pyreader: bad command {line!r}", file=sys.stderr)
                return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
