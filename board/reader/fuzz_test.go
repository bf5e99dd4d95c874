package reader

import (
	"encoding/binary"
	"hash/crc32"
	"slices"
	"testing"

	"github.com/announcementd/announcementd/board"
)

// FuzzReader feeds arbitrary bytes to the reader as a region: it must return a snapshot or a board error, never
// panic or read out of bounds. The seeds are small valid regions (the
// golden ones are 64 KiB, too big to mutate quickly); the corpus found so far is kept in
// testdata/fuzz/FuzzReader (and replayed by the C reader under ASan in the clients tests).
func FuzzReader(f *testing.F) {
	for n := range 3 {
		f.Add(tinyRegion(n))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		check(t, data)
		// Most mutations break the layout checksum; reseal it so the geometry and slot checks get fuzzed too.
		if len(data) >= board.MinFileSize {
			resealed := append([]byte(nil), data...)
			n := min(binary.LittleEndian.Uint32(resealed[board.OffFieldCount:]), board.MaxFields)
			table := resealed[board.OffFields : board.OffFields+int(n)*board.FieldEntrySize]
			binary.LittleEndian.PutUint32(resealed[board.OffLayoutCRC:], crc32.ChecksumIEEE(table))
			check(t, resealed)
		}
	})
}

func check(t *testing.T, data []byte) {
	mem := make([]uint64, (len(data)+7)/8) // 8-byte aligned, as a mapping is
	buf := unsafeBytes(mem)[:len(data)]
	copy(buf, data)
	b, err := newBoard("fuzz", buf)
	if err != nil {
		if _, ok := err.(*board.Error); !ok {
			t.Fatalf("header error is not a board error: %v", err)
		}
		return
	}
	// A Reader, which remembers what it verified, gives what Board.Snapshot gives: first, then after a byte of the
	// region changed under what it remembers (in the first record's content, where the header places it), then
	// with the byte back.
	r := b.NewReader()
	sameAsReader(t, b, r)
	at := b.hdr.SlotOffset(b.Version()) + board.SlotHeaderSize + 40
	if at >= uint64(len(buf)) {
		at = uint64(len(buf)) / 2
	}
	buf[at] ^= 0x5a
	sameAsReader(t, b, r)
	buf[at] ^= 0x5a
	sameAsReader(t, b, r)
	snap, err := b.Snapshot()
	if err != nil {
		if board.CodeOf(err) == board.CodeIO {
			t.Fatalf("snapshot error is not a board error: %v", err)
		}
		return
	}
	if len(snap.Records) > int(b.hdr.Capacity) {
		t.Fatalf("%d records in a board of %d", len(snap.Records), b.hdr.Capacity)
	}
	for _, r := range snap.Records {
		if r.Validate() != nil {
			t.Fatalf("accepted an invalid record %+v", r)
		}
	}
}

// sameAsReader checks that r's snapshot is Board.Snapshot's: the same records, or an error of the same code.
func sameAsReader(t *testing.T, b *Board, r *Reader) {
	t.Helper()
	want, wantErr := b.Snapshot()
	got, err := r.Snapshot()
	if board.CodeOf(err) != board.CodeOf(wantErr) || (err == nil) != (wantErr == nil) {
		t.Fatalf("Reader: %v; Board.Snapshot: %v", err, wantErr)
	}
	if err == nil && !slices.Equal(got.Records, want.Records) {
		t.Fatalf("Reader: %+v; Board.Snapshot: %+v", got.Records, want.Records)
	}
}

// tinyRegion is a valid region with the smallest header, a capacity of 3 and n records in slot 1 (version 1).
func tinyRegion(n int) []byte {
	h := board.Header{Major: board.Major, Minor: board.Minor, HeaderSize: 1344, Capacity: 3, Stride: board.Stride,
		SlotSize: 1024, Fields: board.Fields10}
	h.RegionSize = uint64(h.HeaderSize) + 2*uint64(h.SlotSize)
	buf := make([]byte, h.RegionSize)
	board.EncodeHeader(buf, &h)
	parsed, err := board.ParseHeader(buf, int64(len(buf)))
	if err != nil {
		panic(err)
	}
	le := binary.LittleEndian
	le.PutUint64(buf[board.OffVersion:], 1)
	le.PutUint32(buf[board.OffState:], uint32(board.StateLive))
	slot := buf[parsed.SlotOffset(1):]
	le.PutUint64(slot[board.SlotOffSeq:], 2)
	le.PutUint32(slot[board.SlotOffCount:], uint32(n))
	le.PutUint64(slot[board.SlotOffVersion:], 1)
	for i := range n {
		rec := slot[board.SlotHeaderSize+i*board.Stride : board.SlotHeaderSize+(i+1)*board.Stride]
		board.EncodeRecord(rec, &parsed, &board.Record{ID: uint64(i + 1), Priority: int32(i), Content: "seed é"})
	}
	le.PutUint32(slot[board.SlotOffCRC:], crc32.ChecksumIEEE(slot[board.SlotCRCStart:board.SlotHeaderSize+n*board.Stride]))
	return buf
}
