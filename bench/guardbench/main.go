// Command guardbench measures the region guard (docs/HEALTH.md) on a 4 MiB and a 64 MiB board in /dev/shm and
// prints a markdown table; `make bench` runs it. Every figure is paired with a baseline measured in the same run
// on the same file:
//
//   - residency check: Writer.Residency (mincore over the mapping, count the resident pages, under the writer's
//     lock), against reading one byte of each page through a mapping of the same file;
//   - the worker's full region check: Worker.Health(true) — lock state, residency, heartbeat, the report — what
//     /readyz and `announcementctl health` cost, against the same baseline;
//   - repair: Writer.Repair of a quarter of the pages taken away (hole punched; MADV_POPULATE_READ brings them
//     back), against the page faults of reading one byte of each of those pages.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/announcementd/announcementd/board"
	"github.com/announcementd/announcementd/board/writer"
	"github.com/announcementd/announcementd/internal/benchfmt"
	"github.com/announcementd/announcementd/store"
	"github.com/announcementd/announcementd/worker"
)

var rounds = flag.Int("rounds", 31, "timed rounds per figure (the median is shown)")

func main() {
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "guardbench:", err)
		os.Exit(1)
	}
}

type row struct{ what, value, baseline, ratio string }

var pageSize = os.Getpagesize()

func run() error {
	dir, err := os.MkdirTemp("/dev/shm", "guardbench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	var rows []row
	for _, size := range []int{4 << 20, 64 << 20} {
		r, err := measure(dir, size)
		if err != nil {
			return err
		}
		rows = append(rows, r...)
	}
	fmt.Printf("machine: %s\n\n", benchfmt.Machine())
	fmt.Println("| measure | value | baseline (same run, same file) | ratio |")
	fmt.Println("|---|---|---|---|")
	for _, r := range rows {
		fmt.Printf("| %s | %s | %s | %s |\n", r.what, r.value, r.baseline, r.ratio)
	}
	return nil
}

func measure(dir string, size int) ([]row, error) {
	sub, err := os.MkdirTemp(dir, "region")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(sub)
	path := filepath.Join(sub, "notice")
	st, err := store.Open(filepath.Join(sub, "a.db"), store.Options{NoSync: true})
	if err != nil {
		return nil, err
	}
	defer st.Close()
	bw, err := writer.Open(path, writer.Options{Size: uint64(size)})
	if err != nil {
		return nil, err
	}
	defer bw.Close()
	locked, lockErr := bw.Locked()
	w, err := worker.New(worker.Config{Board: bw, Store: st})
	if err != nil {
		return nil, err
	}
	set := make([]board.Record, 1000)
	for i := range set {
		set[i] = board.Record{ID: uint64(i + 1), Content: strings.Repeat("x", 200)}
	}
	if _, err := bw.Publish(set); err != nil {
		return nil, err
	}

	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ, unix.MAP_SHARED)
	f.Close()
	if err != nil {
		return nil, err
	}
	defer unix.Munmap(mem)
	pages := size / pageSize
	label := fmt.Sprintf("%d MiB (%d pages", size>>20, pages)
	if locked {
		label += ", locked)"
	} else {
		label += fmt.Sprintf(", not locked: %v)", lockErr)
	}

	var sink byte
	touch := func(m []byte) {
		for off := 0; off < len(m); off += pageSize {
			sink += m[off]
		}
	}
	touchAll := median(func() { touch(mem) })
	var check error
	residency := median(func() {
		if r, err := bw.Residency(); err != nil || r.Missing() != 0 {
			check = fmt.Errorf("residency %+v, %v", r, err)
		}
	})
	full := median(func() {
		if h := w.Health(true); h.Health.String() != "ok" && locked {
			check = fmt.Errorf("health %s", h.Line())
		}
	})
	if check != nil {
		return nil, check
	}

	// Repair of a quarter of the pages: punched in slot 0 past its 1000 records, where the content is zero.
	h := bw.Header()
	quarter := pages / 4
	first := int(h.SlotOffset(0)+uint64(board.SlotHeaderSize)+uint64(len(set))*uint64(h.Stride))/pageSize + 1
	if first+quarter > int(h.SlotOffset(1))/pageSize {
		return nil, fmt.Errorf("%d MiB: no room for %d zero pages in slot 0", size>>20, quarter)
	}
	fd, err := unix.Open(path, unix.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	punch := func() {
		if err := unix.Fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, int64(first*pageSize), int64(quarter*pageSize)); err != nil {
			check = err
		}
	}
	repair := medianAfter(punch, func() {
		if r, err := bw.Repair(); err != nil || r.Missing() != 0 {
			check = fmt.Errorf("repair %+v, %v", r, err)
		}
	})
	faultIn := medianAfter(punch, func() { touch(mem[first*pageSize : (first+quarter)*pageSize]) })
	if _, err := bw.Repair(); err != nil || check != nil {
		return nil, cmpErr(check, err)
	}
	_ = sink
	base := us(touchAll) + " read 1 byte/page"
	return []row{
		{"residency check, " + label, us(residency), base, benchfmt.Ratio(residency, touchAll)},
		{"full region check `Health(true)`, " + fmt.Sprintf("%d MiB", size>>20), us(full), base, benchfmt.Ratio(full, touchAll)},
		{fmt.Sprintf("repair of %d punched pages, %d MiB", quarter, size>>20), us(repair), us(faultIn) + " read-fault the same pages", benchfmt.Ratio(repair, faultIn)},
	}, nil
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// median times f once per round (after a warm-up) and returns the median in ns.
func median(f func()) float64 { return medianAfter(func() {}, f) }

// medianAfter is median with prep run, untimed, before each round.
func medianAfter(prep, f func()) float64 {
	prep()
	f()
	ts := make([]float64, *rounds)
	for i := range ts {
		prep()
		t := time.Now()
		f()
		ts[i] = float64(time.Since(t).Nanoseconds())
	}
	slices.Sort(ts)
	return ts[len(ts)/2]
}

func us(ns float64) string {
	if ns >= 1e7 {
		return fmt.Sprintf("%.1f ms", ns/1e6)
	}
	return fmt.Sprintf("%.1f µs", ns/1e3)
}
