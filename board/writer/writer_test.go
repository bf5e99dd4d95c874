package writer_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/announcementd/announcementd/board"
	"github.com/announcementd/announcementd/board/boardtest"
	"github.com/announcementd/announcementd/board/reader"
	"github.com/announcementd/announcementd/board/writer"
)

func tempRegion(t *testing.T) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "notice_test")
}

func open(t *testing.T, path string, opts writer.Options) *writer.Writer {
	t.Helper()
	if opts.Size == 0 {
		opts.Size = 64 << 10
	}
	w, err := writer.Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	boardtest.CheckOnCleanup(t, path, w.Version) // runs first: the board as the test left it
	return w
}

func read(t *testing.T, path string) *board.Snapshot {
	t.Helper()
	b, err := reader.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	s, err := b.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestPublishRoundTrip(t *testing.T) {
	path := tempRegion(t)
	w := open(t, path, writer.Options{Generation: 7})
	recs := []board.Record{
		{ID: 9, EffectiveAt: 100, ExpiresAt: 200, Priority: -3, Content: "nine"},
		{ID: 2, Content: strings.Repeat("é", 128)},
	}
	v, err := w.Publish(recs)
	if err != nil {
		t.Fatal(err)
	}
	s := read(t, path)
	if s.Version != v || len(s.Records) != 2 || s.Records[0].ID != 2 || s.Records[1] != recs[0] {
		t.Fatalf("read %+v, published version %d %+v", s, v, recs)
	}
	if s.Generation != 7 || s.WriterPID != uint32(os.Getpid()) || s.State != board.StateLive {
		t.Fatalf("header: generation %d pid %d state %v", s.Generation, s.WriterPID, s.State)
	}
}

func TestVersionChangesExactlyWithContent(t *testing.T) {
	w := open(t, tempRegion(t), writer.Options{})
	e1, _ := w.Publish(nil)
	e2, _ := w.Publish(nil)
	if e1 != e2 {
		t.Fatalf("the empty set published twice moved the version %d -> %d", e1, e2)
	}
	set := []board.Record{{ID: 1, Content: "a"}}
	v1, _ := w.Publish(set)
	v2, _ := w.Publish(set)
	if v1 != v2 {
		t.Fatalf("same content published twice moved the version %d -> %d", v1, v2)
	}
	v3, _ := w.Publish([]board.Record{{ID: 1, Content: "b"}})
	if v1 != e2+1 || v3 != v2+1 {
		t.Fatalf("changed content: version %d after %d", v3, v2)
	}
	v4, _ := w.Publish(nil)
	if v4 != v3+1 || len(read(t, w.Path()).Records) != 0 {
		t.Fatalf("empty set: version %d after %d", v4, v3)
	}
}

func TestVersionContinuesAcrossWritersAndFloor(t *testing.T) {
	path := tempRegion(t)
	w := open(t, path, writer.Options{})
	for i := range 5 {
		if _, err := w.Publish([]board.Record{{ID: 1, Content: fmt.Sprint(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	before := w.Version()
	w.Close()

	w2 := open(t, path, writer.Options{})
	if w2.Version() != before {
		t.Fatalf("reopened writer starts at %d, board showed %d", w2.Version(), before)
	}
	v, _ := w2.Publish([]board.Record{{ID: 1, Content: "4"}}) // same content, but a new writer republishes
	if v <= before {
		t.Fatalf("first publish of a new writer got %d, not above %d", v, before)
	}
	w2.Close()

	cur := read(t, path).Version
	w3 := open(t, path, writer.Options{VersionFloor: 1000})
	v, _ = w3.Publish(nil)
	if v <= 1000 || (v-cur)%2 == 0 { // must land in the slot readers of cur are not on
		t.Fatalf("floor 1000: published %d", v)
	}
	if s := read(t, path); s.Version != v {
		t.Fatalf("reader sees %d, writer published %d", s.Version, v)
	}
}

func TestSecondWriterRefusedNamingHolder(t *testing.T) {
	path := tempRegion(t)
	w := open(t, path, writer.Options{Generation: 4})
	w.Publish(nil)
	_, err := writer.Open(path, writer.Options{Size: 64 << 10})
	if !errors.Is(err, writer.ErrLocked) || !strings.Contains(err.Error(), fmt.Sprintf("pid %d, generation 4", os.Getpid())) {
		t.Fatalf("second writer: %v", err)
	}
}

func TestRefusesBadInput(t *testing.T) {
	w := open(t, tempRegion(t), writer.Options{})
	v0, _ := w.Publish([]board.Record{{ID: 1, Content: "keep"}})
	cases := map[string][]board.Record{
		"id must be non-zero": {{ID: 0}},
		"257 bytes":           {{ID: 1, Content: strings.Repeat("x", 257)}},
		"not valid UTF-8":     {{ID: 1, Content: "\xff"}},
		"appears twice":       {{ID: 3}, {ID: 3}},
		"its capacity is 95":  make([]board.Record, 96),
	}
	for want, recs := range cases {
		if _, err := w.Publish(recs); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v", want, err)
		}
	}
	if s := read(t, w.Path()); s.Version != v0 || s.Records[0].Content != "keep" {
		t.Fatalf("refused input changed the board: %+v", s)
	}
}

func TestPublisherSurvivesAPanic(t *testing.T) {
	w := open(t, tempRegion(t), writer.Options{})
	boom := true
	p := writer.NewPublisher(w, func() []board.Record {
		if boom {
			panic("source broke")
		}
		return []board.Record{{ID: 1, Content: "fine"}}
	})
	if _, err := p.Sync(); err == nil || !strings.Contains(err.Error(), "source broke") {
		t.Fatalf("panicking source: %v", err)
	}
	boom = false
	if v, err := p.Sync(); err != nil || v == 0 {
		t.Fatalf("after a panic: %d, %v", v, err)
	}
}

func TestPublishAfterSupersedeRefused(t *testing.T) {
	w := open(t, tempRegion(t), writer.Options{})
	w.Publish(nil)
	w.Supersede()
	if _, err := w.Publish([]board.Record{{ID: 1}}); err == nil || !strings.Contains(err.Error(), "superseded") {
		t.Fatalf("publish after supersede: %v", err)
	}
}

func TestPublisherCoalesces(t *testing.T) {
	w := open(t, tempRegion(t), writer.Options{})
	var mu sync.Mutex
	n := 0
	p := writer.NewPublisher(w, func() []board.Record {
		mu.Lock()
		defer mu.Unlock()
		defer time.Sleep(time.Millisecond) // on purpose: a slow publish lets callers pile up
		return []board.Record{{ID: 1, Content: fmt.Sprint(n)}}
	})
	const callers = 64
	var wg sync.WaitGroup
	for range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mu.Lock()
			n++
			mine := n
			mu.Unlock()
			v, err := p.Sync()
			if err != nil {
				t.Error(err)
				return
			}
			// The version returned shows this caller's change or a later one.
			b, err := reader.Open(w.Path())
			if err != nil {
				t.Error(err)
				return
			}
			defer b.Close()
			s, err := b.Snapshot()
			if err != nil {
				t.Error(err)
				return
			}
			var got int
			fmt.Sscan(s.Records[0].Content, &got)
			if s.Version < v || got < mine {
				t.Errorf("caller %d: version %d shows %d", mine, v, got)
			}
		}()
	}
	wg.Wait()
	if v := w.Version(); v >= callers {
		t.Errorf("%d concurrent callers cost %d publishes: not coalesced", callers, v)
	}
	t.Logf("%d callers, %d publishes", callers, w.Version())
}

// TestSlotsStayExact publishes random sets (growing, shrinking, editing single records) and checks after each
// publish that the slot readers use holds exactly the set and zeros after it: the chunked diff against the slot's
// shadow must never leave stale bytes. The board is reopened halfway so a writer without shadows takes over.
func TestSlotsStayExact(t *testing.T) {
	path := tempRegion(t)
	w := open(t, path, writer.Options{})
	rng := rand.New(rand.NewPCG(7, 9))
	set := map[uint64]board.Record{}
	for step := range 400 {
		if step == 200 {
			w.Close()
			w = open(t, path, writer.Options{})
		}
		switch op := rng.IntN(10); {
		case op < 5 || len(set) == 0: // add or replace
			id := uint64(1 + rng.IntN(90))
			set[id] = board.Record{ID: id, Priority: int32(rng.IntN(9)), Content: strings.Repeat("ab", rng.IntN(128))}
		case op < 8: // remove one
			for id := range set {
				delete(set, id)
				break
			}
		default: // remove many
			for id := range set {
				if rng.IntN(2) == 0 {
					delete(set, id)
				}
			}
		}
		recs := make([]board.Record, 0, len(set))
		for _, r := range set {
			recs = append(recs, r)
		}
		if _, err := w.Publish(recs); err != nil {
			t.Fatal(err)
		}
		raw, _ := os.ReadFile(path)
		h := w.Header()
		v := binary.LittleEndian.Uint64(raw)
		slot := raw[h.SlotOffset(v) : h.SlotOffset(v)+uint64(h.SlotSize)]
		n := binary.LittleEndian.Uint32(slot[board.SlotOffCount:])
		if int(n) != len(set) {
			t.Fatalf("step %d: slot holds %d records, set has %d", step, n, len(set))
		}
		for i := range n {
			r, err := board.DecodeRecord(slot[board.SlotHeaderSize+i*h.Stride:board.SlotHeaderSize+(i+1)*h.Stride], &h)
			if err != nil || set[r.ID] != r {
				t.Fatalf("step %d record %d: %+v %v, want %+v", step, i, r, err, set[r.ID])
			}
		}
		if tail := slot[board.SlotHeaderSize+n*h.Stride:]; bytes.ContainsFunc(tail, func(r rune) bool { return r != 0 }) {
			t.Fatalf("step %d: stale bytes after the %d records", step, n)
		}
	}
}
