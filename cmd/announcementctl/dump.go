package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/announcementd/announcementd/board"
	"github.com/announcementd/announcementd/board/reader"
)

const defaultShm = "/dev/shm/notice_v1"

// dump prints one snapshot. With --json it prints the dump JSON of FORMAT.md §8, or the error JSON; either way a
// board that cannot be read exits 1.
func dump(_ context.Context, c *call) error {
	fs := c.flags()
	shm := fs.String("shm", defaultShm, "the board: the region file the daemon writes")
	asJSON := fs.Bool("json", false, "print the dump JSON (docs/FORMAT.md), or the error as JSON")
	if _, err := c.parse(fs, 0, ""); err != nil {
		return err
	}
	out := c.stdout
	snap, err := readSnapshot(*shm)
	if *asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err != nil {
			enc.Encode(board.NewDumpError(err))
			return fmt.Errorf("dump %s: %w", *shm, err)
		}
		return enc.Encode(snap.Dump())
	}
	if err != nil {
		return fmt.Errorf("dump %s: %w", *shm, err)
	}
	printSnapshot(out, *shm, snap)
	return nil
}

func readSnapshot(path string) (*board.Snapshot, error) {
	b, err := reader.Open(path)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	return b.Snapshot()
}

func printSnapshot(out io.Writer, path string, s *board.Snapshot) {
	h := s.Header
	fmt.Fprintf(out, "%s: version %d, format %d.%d, %s, %d of %d records, writer pid %d generation %d, published %s\n",
		path, s.Version, h.Major, h.Minor, s.State, len(s.Records), h.Capacity, s.WriterPID, s.Generation,
		time.Unix(0, s.PublishedAt).Format(time.RFC3339Nano))
	if len(s.Records) == 0 {
		return
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tPRIORITY\tEFFECTIVE\tEXPIRES\tCONTENT")
	for _, r := range s.Records {
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%q\n", r.ID, r.Priority, fmtTime(r.EffectiveAt), fmtTime(r.ExpiresAt), r.Content)
	}
	tw.Flush()
}

func fmtTime(ns int64) string {
	if ns == 0 {
		return "-"
	}
	return time.Unix(0, ns).UTC().Format(time.RFC3339)
}
