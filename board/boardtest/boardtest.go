// Package boardtest checks a board file whole, for tests, as bbolt's tests check their database after each one
// (MustCheck in t.Cleanup of every writer and worker test). It reads the file with pread, never a mapping, so a
// damaged or truncated file is reported, not faulted on.
//
// What Check requires (docs/FORMAT.md): the header parses (magic, major, geometry, the layout table and its
// checksum); the version is at least the one the test's writer published; the slot the version names has an even
// sequence word, a count within capacity, the version itself and a slot checksum that matches; each of its records
// passes its checksum, decodes (content length, UTF-8, id not 0), and the ids ascend; and the record slots past the
// count are zero ("no padding garbage").
package boardtest

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"testing"

	"github.com/announcementd/announcementd/board"
)

// Check checks the board at path (see the package doc); minVersion is the lowest version it may show (the last
// one its writer published). A board at version 0 (nothing published) is checked up to its header.
func Check(path string, minVersion uint64) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	h, err := board.ParseHeader(b, int64(len(b)))
	if err != nil {
		return fmt.Errorf("%s: header: %w", path, err)
	}
	if uint64(len(b)) != h.RegionSize {
		return fmt.Errorf("%s: the file is %d bytes, the header says %d", path, len(b), h.RegionSize)
	}
	le := binary.LittleEndian
	v := le.Uint64(b[board.OffVersion:])
	if v < minVersion {
		return fmt.Errorf("%s: version %d, lower than the %d published", path, v, minVersion)
	}
	if v == 0 {
		return nil
	}
	slot := b[h.SlotOffset(v) : h.SlotOffset(v)+uint64(h.SlotSize)]
	seq, count := le.Uint64(slot[board.SlotOffSeq:]), le.Uint32(slot[board.SlotOffCount:])
	switch {
	case seq%2 != 0:
		return fmt.Errorf("%s: slot %d of version %d has an odd sequence word %d", path, v%2, v, seq)
	case count > h.Capacity:
		return fmt.Errorf("%s: slot %d holds %d records, the capacity is %d", path, v%2, count, h.Capacity)
	case le.Uint64(slot[board.SlotOffVersion:]) != v:
		return fmt.Errorf("%s: slot %d says version %d, the header %d", path, v%2, le.Uint64(slot[board.SlotOffVersion:]), v)
	case board.SlotChecksum(slot, count, h.Stride) != le.Uint32(slot[board.SlotOffCRC:]):
		return fmt.Errorf("%s: slot %d of version %d fails its checksum", path, v%2, v)
	}
	var last uint64
	for i := range count {
		rec := slot[board.SlotHeaderSize+i*h.Stride : board.SlotHeaderSize+(i+1)*h.Stride]
		r, err := board.DecodeRecord(rec, &h)
		if err != nil {
			return fmt.Errorf("%s: version %d record %d: %w", path, v, i, err)
		}
		if i > 0 && r.ID <= last {
			return fmt.Errorf("%s: version %d record %d: id %d after %d, not ascending", path, v, i, r.ID, last)
		}
		last = r.ID
	}
	if tail := slot[board.SlotHeaderSize+count*h.Stride:]; bytes.ContainsFunc(tail, func(r rune) bool { return r != 0 }) {
		return fmt.Errorf("%s: version %d: bytes after the %d records are not zero", path, v, count)
	}
	return nil
}

// MustCheck fails t when Check finds anything wrong.
func MustCheck(t testing.TB, path string, minVersion uint64) {
	t.Helper()
	if err := Check(path, minVersion); err != nil {
		t.Errorf("the board is not consistent: %v", err)
	}
}

// CheckOnCleanup checks the board at path when the test ends, against the last version version() returns then.
func CheckOnCleanup(t testing.TB, path string, version func() uint64) {
	t.Helper()
	t.Cleanup(func() { MustCheck(t, path, version()) })
}
