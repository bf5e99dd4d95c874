package main

import (
	"context"
	"encoding/json"
	"errors"
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
	Event   string         `json:"event,omitempty"`  // "reopened", "lost", "corrupt", "stale", "alive"
	Reason  string         `json:"reason,omitempty"` // why the board was lost or its snapshot refused
}

// watch prints every new version and what changed in it, blocking on the board's futex between versions. It
// follows the path (reader.Follower) to each new file the writer puts there, and says when the writer's
// heartbeat goes stale. A snapshot that fails its checks (the writer repairs what damaged it within moments) is
// reported once, refused, and watched for again.
func watch(ctx context.Context, c *call) error {
	fs := c.flags()
	shm := fs.String("shm", defaultShm, "the board: the region file the daemon writes (followed to each new file at the path)")
	asJSON := fs.Bool("json", false, "print one JSON object per change")
	staleAfter := fs.Duration("stale", 5*time.Second, "report the writer stale when its heartbeat is older than this")
	if _, err := c.parse(fs, 0, ""); err != nil {
		return err
	}
	out := c.stdout
	emit := func(c change) {
		if *asJSON {
			json.NewEncoder(out).Encode(c)
			return
		}
		printChange(out, c)
	}

	f, err := reader.NewFollower(*shm, reader.FollowOptions{StaleAfter: *staleAfter})
	if err != nil {
		return fmt.Errorf("watch %s: %w", *shm, err)
	}
	defer f.Close()
	var (
		last  uint64
		prev  = map[uint64]board.Record{}
		stale bool
		lost  bool
		bad   string // the corruption last reported, until a snapshot is accepted
	)
	for {
		u, err := f.Next(ctx, last)
		if ctx.Err() != nil {
			return nil
		}
		var be *board.Error
		if errors.As(err, &be) && corrupt(be.Code) {
			if be.Error() != bad {
				bad = be.Error()
				emit(change{Version: last, Event: "corrupt", Reason: bad})
			}
			select { // the writer's repair comes within its check interval (250 ms)
			case <-ctx.Done():
				return nil
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("watch %s: %w", *shm, err)
		}
		if u.Reopened > 0 && last != 0 {
			v := last
			if u.Changed {
				v = u.Snapshot.Version
			}
			emit(change{Version: v, Event: "reopened"})
		}
		if (u.Lost != nil) != lost {
			lost = u.Lost != nil
			if lost {
				emit(change{Version: last, Event: "lost", Reason: u.Lost.Error()})
			}
		}
		if u.Changed {
			bad = ""
			emit(diff(u.Snapshot, prev))
			last = u.Snapshot.Version
			prev = make(map[uint64]board.Record, len(u.Snapshot.Records))
			for _, r := range u.Snapshot.Records {
				prev[r.ID] = r
			}
		}
		if u.Stale != stale {
			stale = u.Stale
			ev := change{Version: last, Event: "alive"}
			if stale {
				ev.Event = "stale"
			}
			emit(ev)
		}
	}
}

// corrupt reports whether code is a snapshot refused for its bytes: damage the writer repairs, not the end.
func corrupt(code board.Code) bool {
	return code == board.CodeSnapshotChecksum || code == board.CodeRecordChecksum || code == board.CodeBadRecord
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
	switch c.Event {
	case "":
	case "lost":
		fmt.Fprintf(out, "version %d: board lost: %s\n", c.Version, c.Reason)
		return
	case "corrupt":
		fmt.Fprintf(out, "version %d: snapshot refused: %s\n", c.Version, c.Reason)
		return
	default:
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
