package writer_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/announcementd/announcementd/board"
	"github.com/announcementd/announcementd/board/writer"
)

// TestIncrementalPublishIsExact: a writer encodes only what changed and writes only what changed since it last
// wrote a slot; after each publish the slot readers are sent to must hold, byte for byte from its count on, what a
// fresh writer encodes from the whole set at once. Replacements, inserts and removals anywhere in the order,
// several at once, a set going back to an earlier one, and bytes of the slot the next publish writes overwritten
// from outside (in a record that publish does not change, in its header): each time the slot ends whole.
func TestIncrementalPublishIsExact(t *testing.T) {
	path := tempRegion(t)
	w := open(t, path, writer.Options{Size: 256 << 10})
	h := w.Header()
	rng := rand.New(rand.NewPCG(3, 5))
	set := map[uint64]board.Record{}
	var earlier []board.Record
	for step := range 600 {
		switch op := rng.IntN(20); {
		case op < 8 || len(set) == 0: // add or replace one
			id := uint64(1 + rng.IntN(300))
			set[id] = board.Record{ID: id, Priority: int32(rng.IntN(9)), Content: fmt.Sprintf("%d %s", step, strings.Repeat("x", rng.IntN(200)))}
		case op < 11: // remove one
			for id := range set {
				delete(set, id)
				break
			}
		case op < 13: // change several
			for range 1 + rng.IntN(5) {
				id := uint64(1 + rng.IntN(300))
				if rng.IntN(3) == 0 {
					delete(set, id)
				} else {
					set[id] = board.Record{ID: id, Content: fmt.Sprint("several ", step)}
				}
			}
		case op < 14 && earlier != nil: // back to an earlier set
			clear(set)
			for _, r := range earlier {
				set[r.ID] = r
			}
		case op < 17: // damage the slot the next publish writes, outside what it changes
			damageNextSlot(t, rng, path, h, w.Version())
		}
		recs := make([]board.Record, 0, len(set))
		for _, r := range set {
			recs = append(recs, r)
		}
		if step%50 == 0 {
			earlier = slices.Clone(recs)
		}
		if _, err := w.Publish(recs); err != nil {
			t.Fatal(err)
		}
		checkFresh(t, step, path, h, w.Version(), recs)
	}
}

// damageNextSlot writes a random byte into the slot the publish after version v writes, within its header and
// records (past its count, neither a reader nor the writer looks).
func damageNextSlot(t *testing.T, rng *rand.Rand, path string, h board.Header, v uint64) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	so := h.SlotOffset(v + 1)
	n := binary.LittleEndian.Uint32(raw[so+board.SlotOffCount:])
	off := int64(so) + 8 + int64(rng.IntN(board.SlotHeaderSize-8+int(n*h.Stride)))
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte{byte(1 + rng.IntN(255))}, off); err != nil {
		t.Fatal(err)
	}
}

// checkFresh checks that the slot of version v holds what a fresh writer writes for recs, and a crc that matches.
func checkFresh(t *testing.T, step int, path string, h board.Header, v uint64, recs []board.Record) {
	t.Helper()
	got := slotAt(t, path, h, v)
	want := freshSlot(t, recs)
	// The header words a fresh writer numbers differently (version, published_at, and the crc over them).
	if !bytes.Equal(got[board.SlotOffCount:board.SlotOffCount+4], want[board.SlotOffCount:board.SlotOffCount+4]) ||
		!bytes.Equal(got[board.SlotHeaderSize:], want[board.SlotHeaderSize:]) {
		t.Fatalf("step %d: the published slot differs from a fresh encoding of the same %d records", step, len(recs))
	}
	n := binary.LittleEndian.Uint32(got[board.SlotOffCount:])
	if c := binary.LittleEndian.Uint32(got[board.SlotOffCRC:]); c != board.SlotChecksum(got, n, h.Stride) {
		t.Fatalf("step %d: slot crc %08x does not match its bytes", step, c)
	}
}

func slotAt(t *testing.T, path string, h board.Header, v uint64) []byte {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := binary.LittleEndian.Uint64(raw); got != v {
		t.Fatalf("the file shows version %d, the writer %d", got, v)
	}
	return raw[h.SlotOffset(v) : h.SlotOffset(v)+uint64(h.SlotSize)]
}

// freshSlot is the slot a new writer publishes recs into, whole.
func freshSlot(t *testing.T, recs []board.Record) []byte {
	t.Helper()
	path := tempRegion(t)
	w, err := writer.Open(path, writer.Options{Size: 256 << 10, NoLock: true})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	v, err := w.Publish(recs)
	if err != nil {
		t.Fatal(err)
	}
	return slotAt(t, path, w.Header(), v)
}

// TestReplacementsKeepTheSlotCRC: with the count unchanged, the slot crc is derived from the one checked and the
// records changed, not computed over the snapshot; it must still be the CRC of the slot's bytes, every time.
func TestReplacementsKeepTheSlotCRC(t *testing.T) {
	path := tempRegion(t)
	w := open(t, path, writer.Options{Size: 256 << 10})
	h := w.Header()
	rng := rand.New(rand.NewPCG(11, 13))
	recs := make([]board.Record, 100)
	for i := range recs {
		recs[i] = board.Record{ID: uint64(10 * (i + 1)), Content: fmt.Sprint("first ", i)}
	}
	for step := range 300 {
		for range 1 + rng.IntN(3) {
			k := rng.IntN(len(recs))
			recs[k].Content = fmt.Sprintf("step %d %s", step, strings.Repeat("é", rng.IntN(100)))
			recs[k].ExpiresAt = int64(rng.Uint32())
		}
		if _, err := w.Publish(recs); err != nil {
			t.Fatal(err)
		}
		got := slotAt(t, path, h, w.Version())
		if c := binary.LittleEndian.Uint32(got[board.SlotOffCRC:]); c != board.SlotChecksum(got, uint32(len(recs)), h.Stride) {
			t.Fatalf("step %d: slot crc %08x does not match its bytes", step, c)
		}
		if want := freshSlot(t, recs); !bytes.Equal(got[board.SlotHeaderSize:], want[board.SlotHeaderSize:]) {
			t.Fatalf("step %d: the records differ from a fresh encoding", step)
		}
	}
}

// TestUpdateIsExact: Update, handed only what changed (puts, deletes, an id in both, ids not shown, puts that
// change nothing), interleaved with whole-set publishes and damage from outside to the slot the next commit
// writes, leaves the published slot byte for byte what a fresh writer encodes from the whole set; a result over
// the capacity is refused and changes nothing.
func TestUpdateIsExact(t *testing.T) {
	path := tempRegion(t)
	w := open(t, path, writer.Options{Size: 256 << 10})
	h := w.Header()
	rng := rand.New(rand.NewPCG(21, 34))
	set := map[uint64]board.Record{}
	sorted := func() []board.Record {
		recs := make([]board.Record, 0, len(set))
		for _, r := range set {
			recs = append(recs, r)
		}
		slices.SortFunc(recs, func(a, b board.Record) int { return int(a.ID) - int(b.ID) })
		return recs
	}
	for step := range 800 {
		var puts []board.Record
		var deletes []uint64
		for range 1 + rng.IntN(4) {
			id := uint64(1 + rng.IntN(400))
			switch rng.IntN(6) {
			case 0, 1, 2:
				r := board.Record{ID: id, Priority: int32(rng.IntN(3)), Content: fmt.Sprint("step ", step%7)}
				puts = append(puts, r)
			case 3:
				if old, ok := set[id]; ok {
					puts = append(puts, old) // changes nothing
				}
			default:
				deletes = append(deletes, id)
			}
		}
		for _, r := range puts {
			set[r.ID] = r
		}
		for _, id := range deletes {
			delete(set, id)
		}
		var err error
		switch {
		case step%97 == 0:
			_, err = w.Publish(sorted())
		default:
			_, err = w.Update(puts, deletes)
		}
		if err != nil {
			t.Fatal(err)
		}
		if rng.IntN(5) == 0 { // damage the slot the next commit writes
			damageNextSlot(t, rng, path, h, w.Version())
		}
		checkFresh(t, step, path, h, w.Version(), sorted())
	}
	// Over the capacity: refused, nothing changes.
	v := w.Version()
	var many []board.Record
	for i := range h.Capacity + 1 {
		many = append(many, board.Record{ID: uint64(1000 + i), Content: "x"})
	}
	if _, err := w.Update(many, nil); !errors.Is(err, board.ErrFull) {
		t.Fatalf("Update over the capacity: %v", err)
	}
	if _, err := w.Update([]board.Record{{ID: 0, Content: "bad"}}, nil); err == nil {
		t.Fatal("Update with id 0 accepted")
	}
	if got, err := w.Update(nil, []uint64{99999}); err != nil || got != v {
		t.Fatalf("Update that changes nothing: version %d, %v; want %d", got, err, v)
	}
	got := slotAt(t, path, h, w.Version())
	if want := freshSlot(t, sorted()); !bytes.Equal(got[board.SlotHeaderSize:], want[board.SlotHeaderSize:]) {
		t.Fatal("a refused Update changed the board")
	}
}

// TestDeltaPublisherAsksForTheWholeSet: the first round and the round after a failed one ask for the whole set;
// the others are handed the changes.
func TestDeltaPublisherAsksForTheWholeSet(t *testing.T) {
	path := tempRegion(t)
	w := open(t, path, writer.Options{})
	var asked []bool
	next := writer.Delta{}
	p := writer.NewDeltaPublisher(w, func(full bool) writer.Delta {
		asked = append(asked, full)
		if full {
			return writer.Delta{Full: true, Records: []board.Record{{ID: 1, Content: "one"}}}
		}
		return next
	})
	sync := func(wantErr bool) {
		t.Helper()
		if _, err := p.Sync(); (err != nil) != wantErr {
			t.Fatalf("Sync: %v, want an error: %v", err, wantErr)
		}
	}
	sync(false)
	next = writer.Delta{Records: []board.Record{{ID: 2, Content: "two"}}}
	sync(false)
	next = writer.Delta{Records: []board.Record{{ID: 0, Content: "bad"}}}
	sync(true)
	next = writer.Delta{Deletes: []uint64{2}}
	sync(false)
	sync(false)
	if want := []bool{true, false, false, true, false}; !slices.Equal(asked, want) {
		t.Fatalf("full asked %v, want %v", asked, want)
	}
	if s := read(t, path); len(s.Records) != 1 || s.Records[0].ID != 1 {
		t.Fatalf("the board shows %v, want id 1 alone", s.Records)
	}
}
