// Package sim is what bench/scale and its Go client programs (shmreader, httppoll) share: the report a client
// process prints, the latency histogram (the same bins as the C and Python readers'), the table of publish times,
// the clients' phases, the clock, and the command protocol on stdin.
//
// The protocol, the same for every client process in every language (bench/scale/creader/creader.c and
// bench/scale/pyreader/pyreader.py implement it too):
//
//	process → bench   "ready SEQ"                 its clients hold the board (or the server's set) of publish SEQ
//	bench → process   "start FIRST"               measure from now: publishes FIRST, FIRST+1, ... count
//	bench → process   "stop LAST MAXWAIT_MS"      no more publishes after LAST; report once every client holds LAST
//	                                              or MAXWAIT_MS have passed
//	process → bench   one JSON line (a Report), then it exits
//
// A process whose stdin closes exits at once (the bench is gone).
package sim

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Bin is the width of a histogram bin; Bins of them cover 60 s, the last one also holds everything longer.
const (
	Bin  = 100 * time.Microsecond
	Bins = 600_000
)

// Hist is a latency histogram: counts per Bin, and the exact maximum.
type Hist struct {
	Counts []uint32
	Max    int64 // ns
	N      uint64
}

// NewHist returns an empty histogram.
func NewHist() *Hist { return &Hist{Counts: make([]uint32, Bins)} }

// BinOf is the bin of d ns (negative counts as 0).
func BinOf(d int64) int {
	if d < 0 {
		return 0
	}
	return int(min(d/int64(Bin), Bins-1))
}

// Add counts one latency of d ns.
func (h *Hist) Add(d int64) {
	h.Counts[BinOf(d)]++
	h.N++
	h.Max = max(h.Max, d)
}

// AddAtomic is Add for a histogram shared by goroutines.
func (h *Hist) AddAtomic(d int64) {
	atomic.AddUint32(&h.Counts[BinOf(d)], 1)
	atomic.AddUint64(&h.N, 1)
	for {
		m := atomic.LoadInt64(&h.Max)
		if d <= m || atomic.CompareAndSwapInt64(&h.Max, m, d) {
			return
		}
	}
}

// Sparse is the histogram as [bin, count] pairs of its non-empty bins, as the reports carry it.
func (h *Hist) Sparse() [][2]uint64 {
	out := [][2]uint64{}
	for i := range h.Counts {
		if c := atomic.LoadUint32(&h.Counts[i]); c != 0 {
			out = append(out, [2]uint64{uint64(i), uint64(c)})
		}
	}
	return out
}

// Merged sums sparse histograms.
type Merged struct {
	counts map[uint64]uint64
	N      uint64
	Max    int64
}

// NewMerged returns an empty sum.
func NewMerged() *Merged { return &Merged{counts: map[uint64]uint64{}} }

// Add adds one process's sparse histogram and maximum.
func (m *Merged) Add(sparse [][2]uint64, maxNS int64) {
	for _, bc := range sparse {
		m.counts[bc[0]] += bc[1]
		m.N += bc[1]
	}
	m.Max = max(m.Max, maxNS)
}

// Quantile is the q-quantile (0 < q ≤ 1) over the counted values plus missing values that count as larger than
// any: the upper edge of its bin (the exact maximum for the last value). ok is false when it falls among the
// missing ones (it was never observed) or nothing was counted.
func (m *Merged) Quantile(q float64, missing uint64) (d time.Duration, ok bool) {
	total := m.N + missing
	if m.N == 0 || total == 0 {
		return 0, false
	}
	rank := uint64(q*float64(total) + 0.5)
	rank = max(1, min(rank, total))
	if rank > m.N {
		return 0, false
	}
	if rank == m.N && missing == 0 {
		return time.Duration(m.Max), true
	}
	var seen uint64
	for _, b := range m.sortedBins() {
		seen += m.counts[b]
		if seen >= rank {
			return min(time.Duration(b+1)*Bin, time.Duration(m.Max)), true
		}
	}
	return time.Duration(m.Max), true
}

// CDF is the cumulative distribution of the sum over the counted values plus missing ones (never observed, larger
// than any): at each non-empty bin's upper edge (the exact maximum for the last), the fraction of all values at
// or below it. It ends below 1 when values are missing.
func (m *Merged) CDF(missing uint64) (at []time.Duration, frac []float64) {
	total := float64(m.N + missing)
	if total == 0 {
		return nil, nil
	}
	var seen uint64
	for _, b := range m.sortedBins() {
		seen += m.counts[b]
		at = append(at, min(time.Duration(b+1)*Bin, time.Duration(m.Max)))
		frac = append(frac, float64(seen)/total)
	}
	return at, frac
}

// Report is what a client process prints when it stops.
type Report struct {
	Lang    string `json:"lang"` // c, go, python, http
	Mode    string `json:"mode"` // own, shared (http: own)
	Clients int    `json:"clients"`
	PID     int    `json:"pid"`
	CPUNS   int64  `json:"cpu_ns"`  // getrusage(RUSAGE_SELF) user+system over the measurement
	WallNS  int64  `json:"wall_ns"` // start → report
	// Polls made, polls skipped because the process was more than an interval late, and snapshots taken (own: one
	// per client per change it saw; shared: one per process per version).
	Polls       uint64 `json:"polls"`
	MissedPolls uint64 `json:"missed_polls"`
	Snapshots   uint64 `json:"snapshots"`
	// Latency pairs (client, publish): observed ones in Lat; Missing: publishes FIRST..LAST some client had not
	// seen when it reported.
	Pairs   uint64      `json:"pairs"`
	Missing uint64      `json:"missing"`
	Lat     [][2]uint64 `json:"lat"`
	LatMax  int64       `json:"lat_max_ns"`
	Lag     [][2]uint64 `json:"lag"` // how late each poll ran against its schedule
	LagMax  int64       `json:"lag_max_ns"`
	Errors  uint64      `json:"errors"`
	Error   string      `json:"error,omitempty"` // the first error
	// HTTP clients: answers 304 and 200, body bytes read.
	NotModified uint64 `json:"not_modified,omitempty"`
	Changed     uint64 `json:"changed,omitempty"`
	BodyBytes   uint64 `json:"body_bytes,omitempty"`
	// Futex waiters (lang "futex"): every latency pair exactly, in ns (they are few; Lat's 100 µs bins are too
	// coarse for a wake-up).
	Samples []int64 `json:"samples_ns,omitempty"`
}

// Clock reads CLOCK_MONOTONIC in ns, comparable across processes on the host, through Go's monotonic clock (the
// vDSO) with one system call at start for the offset.
type Clock struct {
	base  time.Time
	monNS int64
}

// NewClock calibrates a Clock.
func NewClock() *Clock {
	var ts unix.Timespec
	c := &Clock{base: time.Now()}
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	c.monNS = ts.Nano()
	return c
}

// Now is CLOCK_MONOTONIC in ns.
func (c *Clock) Now() int64 { return c.monNS + int64(time.Since(c.base)) }

// PubSlots is how many publish times the table holds (publish k is at k mod PubSlots).
const PubSlots = 1 << 16

// PubTable is the table of publish times: int64 CLOCK_MONOTONIC ns per publish sequence number, written by the
// bench just before it sends each publish, read by every client when it sees that publish.
type PubTable struct {
	mem []byte
}

// CreatePubTable creates the table file (which must not exist) and maps it for writing.
func CreatePubTable(path string) (*PubTable, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := f.Truncate(PubSlots * 8); err != nil {
		return nil, err
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, PubSlots*8, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, err
	}
	return &PubTable{mem: mem}, nil
}

// OpenPubTable maps the table read-only.
func OpenPubTable(path string) (*PubTable, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	mem, err := unix.Mmap(int(f.Fd()), 0, PubSlots*8, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, err
	}
	return &PubTable{mem: mem}, nil
}

func (p *PubTable) slot(seq uint64) *int64 {
	return (*int64)(unsafe.Pointer(&p.mem[(seq%PubSlots)*8]))
}

// Set records when publish seq was sent.
func (p *PubTable) Set(seq uint64, ns int64) { atomic.StoreInt64(p.slot(seq), ns) }

// Get is when publish seq was sent; 0 if not recorded.
func (p *PubTable) Get(seq uint64) int64 { return atomic.LoadInt64(p.slot(seq)) }

// Close unmaps the table.
func (p *PubTable) Close() error { return unix.Munmap(p.mem) }

// Phases returns k phases in [0, interval) ns, uniformly random (seeded), sorted: client i polls at
// start + n·interval + phases[i].
func Phases(k int, interval time.Duration, seed uint64) []int64 {
	r := rand.New(rand.NewPCG(seed, 0x5ca1e))
	ph := make([]int64, k)
	for i := range ph {
		ph[i] = r.Int64N(int64(interval))
	}
	slices.Sort(ph)
	return ph
}

// SeqPrefix starts the content of announcement 1: "seq=N " then filler; N is the publish's sequence number.
const SeqPrefix = "seq="

// Filler pads an announcement's content to 200 bytes, as every announcement of the bench has.
func Filler(prefix string) string {
	return prefix + strings.Repeat("x", max(0, 200-len(prefix)))
}

// ParseSeq reads N from content "seq=N ...".
func ParseSeq(content string) (uint64, error) {
	rest, ok := strings.CutPrefix(content, SeqPrefix)
	if !ok {
		return 0, fmt.Errorf("announcement 1 does not start with %q: %.40q", SeqPrefix, content)
	}
	if i := strings.IndexByte(rest, ' '); i >= 0 {
		rest = rest[:i]
	}
	return strconv.ParseUint(rest, 10, 64)
}

// Command is one line from the bench.
type Command struct {
	Stop    bool   // "stop LAST MAXWAIT_MS"; else "start FIRST"
	Seq     uint64 // FIRST or LAST
	MaxWait time.Duration
}

// ReadCommands reads commands from stdin into the channel; it closes the channel when stdin closes or on a line
// it cannot parse (then it also reports it on stderr).
func ReadCommands() <-chan Command {
	ch := make(chan Command, 4)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			c, err := ParseCommand(sc.Text())
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return
			}
			ch <- c
		}
	}()
	return ch
}

// ParseCommand parses one line of the protocol.
func ParseCommand(line string) (Command, error) {
	f := strings.Fields(line)
	bad := fmt.Errorf("bad command %q", line)
	switch {
	case len(f) == 2 && f[0] == "start":
		n, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			return Command{}, bad
		}
		return Command{Seq: n}, nil
	case len(f) == 3 && f[0] == "stop":
		n, err1 := strconv.ParseUint(f[1], 10, 64)
		ms, err2 := strconv.ParseInt(f[2], 10, 64)
		if err := errors.Join(err1, err2); err != nil {
			return Command{}, bad
		}
		return Command{Stop: true, Seq: n, MaxWait: time.Duration(ms) * time.Millisecond}, nil
	}
	return Command{}, bad
}

// CPU is this process's user+system CPU time in ns.
func CPU() int64 {
	var ru unix.Rusage
	_ = unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// PrintReport writes r as one JSON line on stdout.
func PrintReport(r *Report) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(append(b, '\n'))
	return err
}

// sortedBins are the non-empty bins, in ascending order.
func (m *Merged) sortedBins() []uint64 {
	return slices.Sorted(maps.Keys(m.counts))
}
