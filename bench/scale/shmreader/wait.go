package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/announcementd/announcementd/bench/scale/internal/sim"
	"github.com/announcementd/announcementd/board/reader"
)

// waitSlice bounds one Board.Wait, so that the process sees the bench's commands while no publish comes. It does
// not delay a wake-up: Wait returns as soon as the version changes.
const waitSlice = 20 * time.Millisecond

// runWait is one futex waiter: it blocks in Board.Wait until the version changes, takes a verified snapshot, and
// counts, for each publish it had not seen, the time since the bench sent it (exactly, in Report.Samples, and in
// the histogram as the pollers do). Polls counts its wake-ups with a new version.
//
// The bench sends "start FIRST" just before publish FIRST, and a wake-up can beat the command through the pipe:
// so every publish seen before "start" is kept (early) and counted when "start" comes, if it is FIRST or later.
func runWait(b *reader.Board, pub *sim.PubTable) error {
	clk := sim.NewClock()
	rd := b.NewReader()
	rep := sim.Report{Lang: "futex", Mode: "wait", Clients: 1, PID: os.Getpid(), Samples: []int64{}}
	lat := sim.NewHist()
	snap, err := rd.Snapshot()
	if err != nil {
		return err
	}
	if len(snap.Records) == 0 || snap.Records[0].ID != 1 {
		return fmt.Errorf("version %d has no announcement 1", snap.Version)
	}
	lastS, err := sim.ParseSeq(snap.Records[0].Content)
	if err != nil {
		return err
	}
	lastV := snap.Version
	cmds := sim.ReadCommands()
	fmt.Printf("ready %d\n", lastS)

	type seen struct {
		seq uint64
		t   int64
	}
	var early []seen // publishes seen before "start", at most a few: the bench publishes only once it sent it
	var measuring, stopping bool
	var first, last uint64
	var cpu0, wall0, stopAt int64
	fail := func(err error) {
		rep.Errors++
		if rep.Error == "" {
			rep.Error = err.Error()
		}
	}
	count := func(k uint64, t int64) {
		sent := pub.Get(k)
		if sent == 0 {
			fail(fmt.Errorf("publish %d has no time in the table", k))
			return
		}
		lat.Add(t - sent)
		rep.Samples = append(rep.Samples, t-sent)
		rep.Pairs++
	}
	for {
		select {
		case c, ok := <-cmds:
			if !ok {
				return nil // the bench is gone
			}
			if !c.Stop {
				measuring, first, cpu0, wall0 = true, c.Seq, sim.CPU(), clk.Now()
				for _, e := range early {
					if e.seq >= first {
						rep.Polls++
						rep.Snapshots++
						count(e.seq, e.t)
					}
				}
				early = nil
			} else {
				stopping, last, stopAt = true, c.Seq, clk.Now()+int64(c.MaxWait)
			}
		default:
		}
		if stopping && (lastS >= last || clk.Now() >= stopAt) {
			rep.CPUNS, rep.WallNS = sim.CPU()-cpu0, clk.Now()-wall0
			if held := max(lastS, first-1); held < last {
				rep.Missing = last - held
			}
			rep.Lat, rep.LatMax = lat.Sparse(), lat.Max
			return sim.PrintReport(&rep)
		}
		v, err := rd.Wait(context.Background(), lastV, waitSlice)
		if errors.Is(err, context.DeadlineExceeded) {
			continue
		}
		if err != nil {
			return err // a superseded board: the daemon replaced its file, not part of the bench
		}
		s, err := rd.Snapshot()
		if err != nil {
			fail(fmt.Errorf("snapshot after the wake-up to version %d: %w", v, err))
			lastV = v // wait for the next version rather than spin on this one
			continue
		}
		t := clk.Now()
		if len(s.Records) == 0 || s.Records[0].ID != 1 {
			fail(fmt.Errorf("version %d has no announcement 1", s.Version))
			lastV = s.Version
			continue
		}
		seq, err := sim.ParseSeq(s.Records[0].Content)
		if err != nil {
			fail(err)
		}
		lastV = s.Version
		switch {
		case measuring:
			rep.Polls++
			rep.Snapshots++
			for k := max(lastS+1, first); k <= seq; k++ {
				count(k, t)
			}
		case seq > lastS:
			for k := lastS + 1; k <= seq; k++ {
				early = append(early, seen{k, t})
			}
		}
		lastS = max(lastS, seq)
	}
}
