package board_test

import (
	"encoding/binary"
	"hash/crc32"
	"math/rand/v2"
	"slices"
	"testing"
	"unicode/utf8"
	"unsafe"

	"github.com/announcementd/announcementd/board"
	"github.com/announcementd/announcementd/internal/proctest"
)

// TestMain checks, after a passing run, that no goroutine is left (proctest.Main).
func TestMain(m *testing.M) { proctest.Main(m, nil) }

// layout is a header of the given stride with the 1.0 fields (the content field as large as the stride allows).
func layout(t testing.TB, stride uint32) board.Header {
	t.Helper()
	fields := slices.Clone(board.Fields10)
	fields[len(fields)-1].Size = stride - fields[len(fields)-1].Offset
	h := board.Header{Major: board.Major, HeaderSize: board.HeaderSize, Capacity: 8, Stride: stride,
		SlotSize: (board.SlotHeaderSize + 8*stride + 63) &^ 63, Fields: fields}
	h.RegionSize = uint64(h.HeaderSize) + 2*uint64(h.SlotSize)
	buf := make([]byte, board.HeaderSize)
	board.EncodeHeader(buf, &h)
	parsed, err := board.ParseHeader(buf, int64(h.RegionSize))
	if err != nil {
		t.Fatal(err)
	}
	return parsed
}

// contents mixes ASCII, multi-byte runes, runes cut between records and stray continuation bytes.
var contents = []string{"", "a", "hello", "é", "日本語", "€", "\xe2\x82", "\xac", "\x80abc", "ab\xff", "x\xc3", "\xa9y",
	string(make([]byte, 256)), "🙂🙂", "\xf0\x9f", "\x99\x82"}

// validContents are the contents a record may hold alone.
var validContents = []string{"", "a", "hello", "é", "日本語", "€", string(make([]byte, 256)), "🙂🙂"}

// slot builds a slot image of count random records, their contents drawn from contents; with mangle, it also
// damages some bytes the way a bad writer or a torn copy would (content_len, id order, a crc).
func slot(rng *rand.Rand, h *board.Header, count int, mangle bool) []byte {
	return slotOf(rng, h, count, mangle, contents)
}

func slotOf(rng *rand.Rand, h *board.Header, count int, mangle bool, contents []string) []byte {
	img := make([]byte, board.SlotHeaderSize+count*int(h.Stride))
	le := binary.LittleEndian
	le.PutUint32(img[board.SlotOffCount:], uint32(count))
	le.PutUint64(img[board.SlotOffVersion:], rng.Uint64())
	le.PutUint64(img[board.SlotOffPublishedAt:], rng.Uint64())
	id := uint64(0)
	for i := range count {
		id += 1 + rng.Uint64N(3)
		c := contents[rng.IntN(len(contents))]
		rec := img[board.SlotHeaderSize+i*int(h.Stride) : board.SlotHeaderSize+(i+1)*int(h.Stride)]
		board.EncodeRecord(rec, h, &board.Record{ID: id, EffectiveAt: rng.Int64(), ExpiresAt: rng.Int64(),
			Priority: rng.Int32(), Content: c})
		if mangle {
			switch rng.IntN(12) {
			case 0:
				le.PutUint32(rec[h.Layout.ContentLen:], uint32(board.MaxContent+1+rng.IntN(4)))
				board.SealRecord(rec)
			case 1:
				le.PutUint64(rec[h.Layout.ID:], rng.Uint64N(id+1))
				board.SealRecord(rec)
			case 2:
				rec[rng.IntN(len(rec))] ^= byte(1 + rng.IntN(255))
			}
		}
	}
	le.PutUint32(img[board.SlotOffCRC:], board.SlotChecksum(img, uint32(count), h.Stride))
	if mangle && rng.IntN(4) == 0 {
		img[board.SlotCRCStart+rng.IntN(len(img)-board.SlotCRCStart)] ^= byte(1 + rng.IntN(255))
	}
	return img
}

// change is the next version of img: a copy with one or two records rewritten in place (same id, other fields and
// content), the others byte for byte the same; with mangle, as slot damages them.
func change(rng *rand.Rand, h *board.Header, img []byte, count int, mangle bool) []byte {
	next := slices.Clone(img)
	le := binary.LittleEndian
	for range min(count, 1+rng.IntN(2)) {
		rec := next[board.SlotHeaderSize+rng.IntN(count)*int(h.Stride):][:h.Stride]
		board.EncodeRecord(rec, h, &board.Record{ID: le.Uint64(rec[h.Layout.ID:]), Priority: rng.Int32(),
			Content: contents[rng.IntN(len(contents))]})
		if mangle && rng.IntN(4) == 0 {
			rec[rng.IntN(len(rec))] ^= byte(1 + rng.IntN(255))
		}
	}
	le.PutUint32(next[board.SlotOffCRC:], board.SlotChecksum(next, uint32(count), h.Stride))
	return next
}

// follow brings img into buf as a Reader's copy does (copyRecords): a record that differs from buf's at its index
// is forgotten, then copied; the others stay. It returns buf, grown to img when shorter, and never shortened: as a
// Reader's, it keeps records past the image's count.
func follow(m *board.Memory, buf, img []byte, stride int) []byte {
	if len(buf) < len(img) {
		buf = append(buf, make([]byte, len(img)-len(buf))...)
	}
	copy(buf, img[:board.SlotHeaderSize])
	for i := 0; board.SlotHeaderSize+(i+1)*stride <= len(img); i++ {
		at := board.SlotHeaderSize + i*stride
		if string(buf[at:at+stride]) != string(img[at:at+stride]) {
			m.Forget(i)
			copy(buf[at:at+stride], img[at:at+stride])
		}
	}
	return buf
}

// reference decodes the records as the format describes it, record by record: nil when any fails a check.
func reference(img []byte, count uint32, h *board.Header) ([]board.Record, bool) {
	recs := make([]board.Record, count)
	for i := range recs {
		r, err := board.DecodeRecord(img[board.SlotHeaderSize+i*int(h.Stride):board.SlotHeaderSize+(i+1)*int(h.Stride)], h)
		if err != nil || i > 0 && r.ID <= recs[i-1].ID {
			return nil, false
		}
		recs[i] = r
	}
	return recs, true
}

// TestSlotSumsAndDecodeRecords: the one-pass checksums equal the two separate passes bit for bit, and
// DecodeRecords accepts exactly what record-by-record decoding accepts, with the same records.
func TestSlotSumsAndDecodeRecords(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, stride := range []uint32{board.Stride, board.MinStride + 4, 296, 328, 512, 4104} {
		h := layout(t, stride)
		sums := board.SlotSumsFor(stride)
		accepted, rejected := 0, 0
		var mem board.Memory
		var buf []byte // the image mem describes, as a Reader's copy buffer
		var img []byte
		count := 0
		for range 3000 {
			mangle := rng.IntN(2) == 0
			if img != nil && rng.IntN(2) == 0 {
				img = change(rng, &h, img, count, mangle) // a next version: most records as they were
			} else {
				count = rng.IntN(9)
				img = slot(rng, &h, count, mangle)
				if rng.IntN(4) == 0 { // runs of records a Memory folds at once, a version it accepts
					count = board.MemoryRun + rng.IntN(2*board.MemoryRun)
					img = slotOf(rng, &h, count, false, validContents)
				}
			}
			buf = follow(&mem, buf, img, int(stride))
			slotSum, bad := sums.Check(img, uint32(count), nil)
			if want := board.SlotChecksum(img, uint32(count), stride); slotSum != want {
				t.Fatalf("stride %d: slot checksum %08x, want %08x", stride, slotSum, want)
			}
			if s, b := sums.Check(buf, uint32(count), &mem); s != slotSum || b != bad {
				t.Fatalf("stride %d: with a memory, slot checksum %08x and bad record %d; without, %08x and %d", stride, s, b, slotSum, bad)
			}
			wantBad := -1
			for i := range count {
				rec := img[board.SlotHeaderSize+i*int(stride) : board.SlotHeaderSize+(i+1)*int(stride)]
				if crc32.ChecksumIEEE(rec[4:]) != binary.LittleEndian.Uint32(rec) {
					wantBad = i
					break
				}
			}
			if bad != wantBad {
				t.Fatalf("stride %d: first bad record %d, want %d", stride, bad, wantBad)
			}
			if bad >= 0 {
				continue
			}
			got, ok := board.DecodeRecords(img, uint32(count), &h, nil)
			want, wantOK := reference(img, uint32(count), &h)
			if ok != wantOK || !slices.Equal(got, want) {
				t.Fatalf("stride %d: DecodeRecords %v %+v, record by record %v %+v", stride, ok, got, wantOK, want)
			}
			// The same with a memory of the last accepted version: the records are the same, whatever it remembers.
			got, ok = board.DecodeRecords(buf, uint32(count), &h, &mem)
			if ok != wantOK || !slices.Equal(got, want) {
				t.Fatalf("stride %d: DecodeRecords with a Memory %v %+v, record by record %v %+v", stride, ok, got, wantOK, want)
			}
			if ok {
				accepted++
				for _, r := range got {
					if !utf8.ValidString(r.Content) {
						t.Fatalf("accepted invalid UTF-8 %q", r.Content)
					}
				}
			} else {
				rejected++
			}
		}
		if accepted < 100 || rejected < 100 {
			t.Fatalf("stride %d: %d accepted, %d rejected: the cases do not cover both", stride, accepted, rejected)
		}
	}
}

// benchSlot is a slot image of 1,000 records of 200 bytes of content, as bench/boardbench publishes.
func benchSlot(b *testing.B) ([]byte, board.Header) {
	h := layout(b, board.Stride)
	h.Fields, h.Capacity = board.Fields10, 1000
	img := make([]byte, board.SlotHeaderSize+1000*board.Stride)
	for i := range 1000 {
		rec := img[board.SlotHeaderSize+i*board.Stride : board.SlotHeaderSize+(i+1)*board.Stride]
		board.EncodeRecord(rec, &h, &board.Record{ID: uint64(i + 1), Priority: int32(i), Content: string(make([]byte, 200))})
	}
	binary.LittleEndian.PutUint32(img[board.SlotOffCount:], 1000)
	binary.LittleEndian.PutUint32(img[board.SlotOffCRC:], board.SlotChecksum(img, 1000, board.Stride))
	b.SetBytes(int64(len(img)))
	return img, h
}

// BenchmarkSlotSums1000: the slot checksum and the 1,000 record checksums in one pass.
func BenchmarkSlotSums1000(b *testing.B) {
	img, _ := benchSlot(b)
	sums := board.SlotSumsFor(board.Stride)
	for b.Loop() {
		if _, bad := sums.Check(img, 1000, nil); bad >= 0 {
			b.Fatal(bad)
		}
	}
}

// BenchmarkSlotSums1000TwoPasses: the same checksums as the format states them, slot and records apart.
func BenchmarkSlotSums1000TwoPasses(b *testing.B) {
	img, _ := benchSlot(b)
	for b.Loop() {
		board.SlotChecksum(img, 1000, board.Stride)
		for i := range 1000 {
			rec := img[board.SlotHeaderSize+i*board.Stride : board.SlotHeaderSize+(i+1)*board.Stride]
			if crc32.ChecksumIEEE(rec[4:]) != binary.LittleEndian.Uint32(rec) {
				b.Fatal(i)
			}
		}
	}
}

// BenchmarkDecodeRecords1000: decoding 1,000 verified records (fields, contents, UTF-8, id order).
func BenchmarkDecodeRecords1000(b *testing.B) {
	img, h := benchSlot(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := board.DecodeRecords(img, 1000, &h, nil); !ok {
			b.Fatal("refused")
		}
	}
}

// BenchmarkDecodeRecords1000Unchanged: the same with a memory of the last call (Memory), every record unchanged,
// as a Reader decodes a version that changed none of them.
func BenchmarkDecodeRecords1000Unchanged(b *testing.B) {
	img, h := benchSlot(b)
	var mem board.Memory
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := board.DecodeRecords(img, 1000, &h, &mem); !ok {
			b.Fatal("refused")
		}
	}
}

// TestMemoryShared: a content unchanged since the last decode is the same string (no copy), whether its record
// stayed at its index or moved, a changed one is new, and a refused slot leaves the memory as it was.
func TestMemoryShared(t *testing.T) {
	h := layout(t, board.Stride)
	enc := func(recs ...board.Record) []byte {
		img := make([]byte, board.SlotHeaderSize+len(recs)*board.Stride)
		for i := range recs {
			board.EncodeRecord(img[board.SlotHeaderSize+i*board.Stride:board.SlotHeaderSize+(i+1)*board.Stride], &h, &recs[i])
		}
		return img
	}
	var mem board.Memory
	var buf []byte
	decode := func(img []byte, count uint32) ([]board.Record, bool) {
		buf = follow(&mem, buf, img, board.Stride)
		return board.DecodeRecords(buf, count, &h, &mem)
	}
	a, ok := decode(enc(board.Record{ID: 1, Content: "one"}, board.Record{ID: 2, Content: "two"},
		board.Record{ID: 3, Content: "three"}), 3)
	if !ok {
		t.Fatal("refused")
	}
	// Record 1 unchanged, 2 gone, 3 changed, 4 new; then a refused slot (ids not ascending).
	b, ok := decode(enc(board.Record{ID: 1, Content: "one"}, board.Record{ID: 3, Content: "thr3e"},
		board.Record{ID: 4, Content: "two"}), 3)
	if !ok || b[0].Content != "one" || b[1].Content != "thr3e" || b[2].Content != "two" {
		t.Fatalf("second decode %v %+v", ok, b)
	}
	same := func(x, y string) bool { return unsafe.StringData(x) == unsafe.StringData(y) }
	if !same(a[0].Content, b[0].Content) || same(a[1].Content, b[2].Content) {
		t.Fatal("an unchanged content is not shared, or a content was shared across ids")
	}
	if _, ok := decode(enc(board.Record{ID: 2, Content: "x"}, board.Record{ID: 1, Content: "one"}), 2); ok {
		t.Fatal("accepted ids out of order")
	}
	c, ok := decode(enc(board.Record{ID: 3, Content: "thr3e"}), 1)
	if !ok || !same(c[0].Content, b[1].Content) {
		t.Fatalf("after a refused slot, the memory is not the last accepted one: %v %+v", ok, c)
	}
	// Record 3 again at index 0, unchanged: known, its string the same.
	d, ok := decode(enc(board.Record{ID: 3, Content: "thr3e"}, board.Record{ID: 5, Content: "five"}), 2)
	if !ok || !same(d[0].Content, b[1].Content) || d[1].Content != "five" {
		t.Fatalf("a known record: %v %+v", ok, d)
	}
	// Record 5 dropped, then back with the same bytes: the buffer still holds them past the count, but the memory
	// no longer holds its content, so it is decoded as new.
	if e, ok := decode(enc(board.Record{ID: 3, Content: "thr3e"}), 1); !ok || len(e) != 1 {
		t.Fatalf("shrunk: %v %+v", ok, e)
	}
	f, ok := decode(enc(board.Record{ID: 3, Content: "thr3e"}, board.Record{ID: 5, Content: "five"}), 2)
	if !ok || f[1].Content != "five" || same(f[1].Content, d[1].Content) {
		t.Fatalf("a record back after it was dropped: %v %+v", ok, f)
	}
}

// BenchmarkSlotSumsHugeStride: the tables of any stride a header may declare are built by squaring, not by feeding
// the stride's bytes through the register (a hostile 512 MiB stride would otherwise take seconds at every open).
func BenchmarkSlotSumsHugeStride(b *testing.B) {
	for b.Loop() {
		board.SlotSumsFor(1<<30 - 8)
	}
}
