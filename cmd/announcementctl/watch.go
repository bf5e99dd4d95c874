package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/announcementd/announcementd/board"
	"github.com/announcementd/announcementd/board/reader"
)

// change is one line of watch output.
type change struct {
	Version uint64         `json:"version"`
	Added   []board.Record `json:"added,omitempty"`
	Changed []board.Record `json:"changed,omitempty"`
	Removed []uint64       `json:"removed,omitempty"`
	Event   string         `json:"event,omitempty"` // "reopened", "stale", "alive"
}

// watch prints every new version and what changed in it, blocking on the board's futex between versions. It
// follows a superseded board to the new file at the path and says when the writer's heartbeat goes stale.
func watch(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("watch", flag.ContinueOnError)
	shm := fs.String("shm", defaultShm, "the region file")
	asJSON := fs.Bool("json", false, "print one JSON object per change")
	staleAfter := fs.Duration("stale", 5*time.Second, "report the writer stale when its heartbeat is older than this")
	if err := parse(fs, args); err != nil {
		return err
	}
	emit := func(c change) {
		if *asJSON {
			json.NewEncoder(out).Encode(c)
			return
		}
		printChange(out, c)
	}

	var (
		b     *reader.Board
		last  uint64
		prev  = map[uint64]board.Record{}
		stale bool
	)
	defer func() {
		if b != nil {
			b.Close()
		}
	}()
	for ctx.Err() == nil {
		if b == nil {
			var err error
			if b, err = reader.Open(*shm); err != nil {
				if last == 0 {
					return fmt.Errorf("watch %s: %w", *shm, err)
				}
				sleep(ctx, 100*time.Millisecond) // the writer is replacing the file: try again
				continue
			}
			if b.State() == board.StateSuperseded { // the new file is not at the path yet
				b.Close()
				b = nil
				sleep(ctx, 100*time.Millisecond)
				continue
			}
			if last != 0 {
				emit(change{Version: b.Version(), Event: "reopened"})
			}
		}
		snap, err := b.Snapshot()
		switch {
		case errors.Is(err, board.ErrSuperseded):
			b.Close()
			b = nil
			continue
		case errors.Is(err, board.ErrNotPublished) || errors.Is(err, board.ErrBusy):
		case err != nil:
			return fmt.Errorf("watch %s: %w", *shm, err)
		case snap.Version != last:
			emit(diff(snap, prev))
			last = snap.Version
			prev = make(map[uint64]board.Record, len(snap.Records))
			for _, r := range snap.Records {
				prev[r.ID] = r
			}
		}
		if now := b.Stale(*staleAfter); now != stale {
			stale = now
			ev := change{Version: last, Event: "alive"}
			if stale {
				ev.Event = "stale"
			}
			emit(ev)
		}
		if _, err := b.Wait(ctx, last, time.Second); err != nil && !errors.Is(err, context.DeadlineExceeded) &&
			!errors.Is(err, board.ErrSuperseded) && ctx.Err() == nil {
			return fmt.Errorf("watch %s: %w", *shm, err)
		}
	}
	return nil
}

func diff(s *board.Snapshot, prev map[uint64]board.Record) change {
	c := change{Version: s.Version}
	seen := make(map[uint64]bool, len(s.Records))
	for _, r := range s.Records {
		seen[r.ID] = true
		old, ok := prev[r.ID]
		switch {
		case !ok:
			c.Added = append(c.Added, r)
		case old != r:
			c.Changed = append(c.Changed, r)
		}
	}
	for id := range prev {
		if !seen[id] {
			c.Removed = append(c.Removed, id)
		}
	}
	slices.Sort(c.Removed)
	return c
}

func printChange(out io.Writer, c change) {
	if c.Event != "" {
		fmt.Fprintf(out, "version %d: writer %s\n", c.Version, c.Event)
		return
	}
	fmt.Fprintf(out, "version %d: %d added, %d changed, %d removed\n", c.Version, len(c.Added), len(c.Changed), len(c.Removed))
	for _, r := range c.Added {
		fmt.Fprintf(out, "  + %d [%d] %q\n", r.ID, r.Priority, r.Content)
	}
	for _, r := range c.Changed {
		fmt.Fprintf(out, "  ~ %d [%d] %q\n", r.ID, r.Priority, r.Content)
	}
	for _, id := range c.Removed {
		fmt.Fprintf(out, "  - %d\n", id)
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
