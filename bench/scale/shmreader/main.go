// Command shmreader is the Go reader process of bench/scale: one process that simulates -clients clients of the
// board, each polling the version word every -interval at a phase of its own, with board/reader.
//
// The model (the same in the C and Python readers): a timer wheel. The clients are sorted by phase; the process
// sleeps until the next client is due (at least 1 ms, so a process of many clients wakes about once a millisecond
// and serves every client due by then), and each due client loads the version word (Board.Version, one atomic
// load) and compares it with the last version it holds. When it changed:
//
//   - mode own: the client takes its own verified snapshot (a Reader's Snapshot: the whole of FORMAT.md §5, copy,
//     seq check, slot and record CRCs, decoding), as a process of its own would;
//   - mode shared: the first client of the process to see the new version takes the snapshot, the others take
//     that one (one verified copy per process per version).
//
// Then it stamps CLOCK_MONOTONIC and counts, for each publish it had not seen, the time since the bench sent that
// publish. A client's state is its phase, its last version and its last publish: the copies go to one buffer per
// process, so memory does not grow with the clients (their CPU does). Protocol: bench/scale/internal/sim.
//
// With -mode wait the process is one futex waiter instead (wait.go): no polls, it blocks in Board.Wait and takes a
// verified snapshot when woken; it reports every latency exactly (Report.Samples).
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/announcementd/announcementd/bench/scale/internal/sim"
	"github.com/announcementd/announcementd/board"
	"github.com/announcementd/announcementd/board/reader"
)

var (
	boardPath = flag.String("board", "", "the board")
	pubPath   = flag.String("pub", "", "the table of publish times")
	clients   = flag.Int("clients", 1000, "clients this process simulates")
	mode      = flag.String("mode", "own", "own: a verified snapshot per client; shared: one per process per version; wait: one client blocked on the board's futex (-clients ignored)")
	interval  = flag.Duration("interval", 50*time.Millisecond, "each client's poll interval")
	seed      = flag.Uint64("seed", 1, "seed of the clients' phases")
)

const minSleep = time.Millisecond

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "shmreader:", err)
		os.Exit(1)
	}
}

// proc is the process: the board, the clients' state, the measurement.
type proc struct {
	b     *reader.Board
	rd    *reader.Reader
	pub   *sim.PubTable
	clk   *sim.Clock
	own   bool
	k     int
	lastV []uint64
	lastS []uint64

	shared    *board.Snapshot
	sharedSeq uint64

	measuring bool
	first     uint64
	stopping  bool
	last      uint64
	seenAll   int // clients holding last, once stopping

	rep      sim.Report
	lat, lag *sim.Hist
}

func run() error {
	if *clients < 1 || (*mode != "own" && *mode != "shared" && *mode != "wait") {
		return fmt.Errorf("-clients must be ≥ 1 and -mode own, shared or wait")
	}
	b, err := reader.Open(*boardPath)
	if err != nil {
		return err
	}
	defer b.Close()
	pub, err := sim.OpenPubTable(*pubPath)
	if err != nil {
		return err
	}
	defer pub.Close()
	if *mode == "wait" {
		return runWait(b, pub)
	}
	s := &proc{b: b, rd: b.NewReader(), pub: pub, clk: sim.NewClock(), own: *mode == "own", k: *clients,
		lastV: make([]uint64, *clients), lastS: make([]uint64, *clients), lat: sim.NewHist(), lag: sim.NewHist()}
	s.rep = sim.Report{Lang: "go", Mode: *mode, Clients: *clients, PID: os.Getpid()}

	// Every client starts holding the board as it is (one snapshot for all: the start is not measured).
	snap, seq, err := s.snapshot()
	if err != nil {
		return err
	}
	for i := range s.k {
		s.lastV[i], s.lastS[i] = snap.Version, seq
	}
	s.shared, s.sharedSeq = snap, seq
	phases := sim.Phases(s.k, *interval, *seed)
	cmds := sim.ReadCommands()
	fmt.Printf("ready %d\n", seq)

	var cpu0, wall0, stopAt int64
	P := int64(*interval)
	base := s.clk.Now()
	var cycle int64
	idx := 0
	timer := time.NewTimer(time.Hour)
	for {
		now := s.clk.Now()
		for n := 1; ; n++ {
			due := base + cycle*P + phases[idx]
			if due > now {
				break
			}
			if s.poll(idx, now, due) {
				now = s.clk.Now()
			}
			if idx++; idx == s.k {
				idx = 0
				cycle++
				if late := now - (base + cycle*P); late > P { // a whole interval behind: skip the polls missed
					skip := late / P
					cycle += skip
					if s.measuring {
						s.rep.MissedPolls += uint64(skip) * uint64(s.k)
					}
				}
			}
			if n&63 == 0 {
				now = s.clk.Now()
			}
		}
		if s.stopping && (s.seenAll == s.k || now >= stopAt) {
			s.rep.CPUNS, s.rep.WallNS = sim.CPU()-cpu0, s.clk.Now()-wall0
			for i := range s.k {
				if held := max(s.lastS[i], s.first-1); held < s.last {
					s.rep.Missing += s.last - held
				}
			}
			s.rep.Lat, s.rep.LatMax, s.rep.Lag, s.rep.LagMax = s.lat.Sparse(), s.lat.Max, s.lag.Sparse(), s.lag.Max
			return sim.PrintReport(&s.rep)
		}
		wait := max(time.Duration(base+cycle*P+phases[idx]-now), minSleep)
		timer.Reset(wait)
		select {
		case c, ok := <-cmds:
			if !ok {
				return nil // the bench is gone
			}
			if !c.Stop {
				s.measuring, s.first = true, c.Seq
				cpu0 = sim.CPU()
				wall0 = s.clk.Now()
				continue
			}
			s.stopping, s.last = true, c.Seq
			stopAt = s.clk.Now() + int64(c.MaxWait)
			for i := range s.k {
				if s.lastS[i] >= s.last {
					s.seenAll++
				}
			}
		case <-timer.C:
		}
	}
}

// snapshot takes a verified snapshot and reads the publish it shows.
func (s *proc) snapshot() (*board.Snapshot, uint64, error) {
	snap, err := s.rd.Snapshot()
	if err != nil {
		return nil, 0, err
	}
	if s.measuring {
		s.rep.Snapshots++
	}
	if len(snap.Records) == 0 || snap.Records[0].ID != 1 {
		return nil, 0, fmt.Errorf("version %d has no announcement 1", snap.Version)
	}
	seq, err := sim.ParseSeq(snap.Records[0].Content)
	return snap, seq, err
}

// poll is client i's poll, due at due, run at now; it reports whether it took a snapshot (time passed).
func (s *proc) poll(i int, now, due int64) bool {
	if s.measuring {
		s.rep.Polls++
		s.lag.Add(now - due)
	}
	v := s.b.Version()
	if v == s.lastV[i] {
		return false
	}
	took := false
	var seq uint64
	if s.own || s.shared.Version < v {
		snap, sq, err := s.snapshot()
		took = true
		if err != nil {
			s.fail(err)
			return true
		}
		s.shared, s.sharedSeq = snap, sq
	}
	seq = s.sharedSeq
	s.lastV[i] = s.shared.Version
	if seq > s.lastS[i] {
		t := now
		if took {
			t = s.clk.Now()
		}
		s.observe(i, seq, t)
	}
	return took
}

// observe counts the latency of every publish client i had not seen, up to seq, seen at t.
func (s *proc) observe(i int, seq uint64, t int64) {
	if s.measuring {
		for k := max(s.lastS[i]+1, s.first); k <= seq; k++ {
			sent := s.pub.Get(k)
			if sent == 0 {
				s.fail(fmt.Errorf("publish %d has no time in the table", k))
				continue
			}
			s.lat.Add(t - sent)
			s.rep.Pairs++
		}
		if s.stopping && s.lastS[i] < s.last && seq >= s.last {
			s.seenAll++
		}
	}
	s.lastS[i] = seq
}

func (s *proc) fail(err error) {
	s.rep.Errors++
	if s.rep.Error == "" {
		s.rep.Error = err.Error()
	}
}
