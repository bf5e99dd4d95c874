// Package golden builds the golden regions of testdata/regions: each vector is written by the real writer with
// fixed clocks and pid, then optionally damaged, so the files are reproducible byte for byte. The Go, C and Python
// readers must decode each one as its NAME.json says (a dump, or the error every reader must give).
package golden

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/announcementd/announcementd/board"
	"github.com/announcementd/announcementd/board/writer"
)

// Size of every golden region: the smallest board, 95 records.
const Size = 64 << 10

// Fixed clocks: published_at and heartbeat_ns of every vector.
var (
	epoch     = time.Unix(1764000000, 0)
	heartbeat = int64(123456789000)
)

// Vector is one golden region.
type Vector struct {
	Name string
	// Records are published in order, one publish each, so the version reflects the count.
	Sets [][]board.Record
	// Opts adjusts the writer (extra fields, version floor).
	Opts writer.Options
	// Damage, if set, corrupts the finished file; Error is then the code every reader must report.
	Damage func(b []byte) []byte
	Error  board.Code
}

var basic = []board.Record{
	{ID: 1, EffectiveAt: 1764000000000000000, ExpiresAt: 0, Priority: 0, Content: "Maintenance tonight 02:00-03:00 UTC"},
	{ID: 7, EffectiveAt: 1764003600000000000, ExpiresAt: 1764007200000000000, Priority: -5, Content: "low priority \"quoted\" \\ back\tslash\nnewline"},
	{ID: 1 << 40, EffectiveAt: -1, ExpiresAt: 1 << 62, Priority: 1<<31 - 1, Content: "公告: 服务器维护 🚧"},
}

func full() []board.Record {
	recs := make([]board.Record, 0, 95)
	for i := range 95 {
		recs = append(recs, board.Record{ID: uint64(i + 1), EffectiveAt: int64(i) * 1e9, Priority: int32(i % 7),
			Content: fmt.Sprintf("announcement %d of 95", i+1)})
	}
	return recs
}

// Vectors lists every golden region.
func Vectors() []Vector {
	return []Vector{
		{Name: "empty", Sets: [][]board.Record{nil}},
		{Name: "basic", Sets: [][]board.Record{basic[:1], basic}},
		{Name: "full", Sets: [][]board.Record{full()}},
		{Name: "utf8_256", Sets: [][]board.Record{{
			{ID: 1, Content: strings.Repeat("é", 128)},
			{ID: 2, Content: strings.Repeat("日", 85) + "x"},
			{ID: 3, Content: strings.Repeat("😀", 64)},
			{ID: 4, Content: ""},
		}}},
		{Name: "high_version", Sets: [][]board.Record{basic[:2]}, Opts: writer.Options{VersionFloor: 1<<53 - 10}},
		{Name: "extra_field", Sets: [][]board.Record{basic}, Opts: writer.Options{
			ExtraFields: []board.Field{{Name: "category", Type: board.TypeU32, Offset: 292, Size: 4}},
			FillExtra: func(rec []byte, r *board.Record) {
				binary.LittleEndian.PutUint32(rec[292:], uint32(r.ID%5)+1)
			},
		}},
		{Name: "superseded", Sets: [][]board.Record{basic}, Damage: supersede, Error: board.CodeSuperseded},
		{Name: "not_published", Sets: nil, Error: board.CodeNotPublished},
		{Name: "bad_magic", Sets: [][]board.Record{basic}, Damage: func(b []byte) []byte {
			copy(b[board.OffMagic:], "NOTABORD")
			return b
		}, Error: board.CodeBadMagic},
		{Name: "unknown_major", Sets: [][]board.Record{basic}, Damage: func(b []byte) []byte {
			binary.LittleEndian.PutUint16(b[board.OffMajor:], 2)
			return b
		}, Error: board.CodeUnsupportedMajor},
		{Name: "bad_layout_crc", Sets: [][]board.Record{basic}, Damage: func(b []byte) []byte {
			b[board.OffFields+3] ^= 0x20 // "crc" -> "crC": the table no longer matches its checksum
			return b
		}, Error: board.CodeBadLayout},
		{Name: "bad_record_checksum", Sets: [][]board.Record{basic}, Damage: func(b []byte) []byte {
			slot := currentSlot(b)
			b[slot+board.SlotHeaderSize+board.Stride+40] ^= 1 // record 1's content; the slot CRC is resealed
			sealSlot(b, slot)
			return b
		}, Error: board.CodeRecordChecksum},
		{Name: "bad_snapshot_checksum", Sets: [][]board.Record{basic}, Damage: func(b []byte) []byte {
			b[currentSlot(b)+board.SlotHeaderSize+40] ^= 1 // the slot CRC no longer matches, the seq is stable
			return b
		}, Error: board.CodeSnapshotChecksum},
		{Name: "bad_record_length", Sets: [][]board.Record{basic}, Damage: func(b []byte) []byte {
			slot := currentSlot(b)
			rec := b[slot+board.SlotHeaderSize : slot+board.SlotHeaderSize+board.Stride]
			binary.LittleEndian.PutUint32(rec[4:], 300)
			board.SealRecord(rec)
			sealSlot(b, slot)
			return b
		}, Error: board.CodeBadRecord},
		{Name: "truncated_header", Sets: [][]board.Record{basic}, Damage: func(b []byte) []byte {
			return b[:1000]
		}, Error: board.CodeTruncated},
		{Name: "truncated_slots", Sets: [][]board.Record{basic}, Damage: func(b []byte) []byte {
			return b[:Size/2]
		}, Error: board.CodeTruncated},
		{Name: "zero_file", Sets: [][]board.Record{basic}, Damage: func(b []byte) []byte {
			return b[:0]
		}, Error: board.CodeTruncated},
	}
}

func supersede(b []byte) []byte {
	binary.LittleEndian.PutUint32(b[board.OffState:], uint32(board.StateSuperseded))
	return b
}

func currentSlot(b []byte) uint64 {
	h, err := board.ParseHeader(b, int64(len(b)))
	if err != nil {
		panic(err)
	}
	return h.SlotOffset(binary.LittleEndian.Uint64(b[board.OffVersion:]))
}

func sealSlot(b []byte, slot uint64) {
	s := b[slot:]
	count := binary.LittleEndian.Uint32(s[board.SlotOffCount:])
	binary.LittleEndian.PutUint32(s[board.SlotOffCRC:], crc32.ChecksumIEEE(s[board.SlotCRCStart:board.SlotHeaderSize+count*board.Stride]))
}

// Build writes v's region through the real writer in dir and returns its bytes.
func Build(v Vector, dir string) ([]byte, error) {
	path := filepath.Join(dir, v.Name+".region")
	os.Remove(path)
	opts := v.Opts
	opts.Size, opts.PID, opts.Generation = Size, 4242, 3
	opts.Now = func() time.Time { return epoch }
	opts.Monotonic = func() int64 { return heartbeat }
	w, err := writer.Open(path, opts)
	if err != nil {
		return nil, err
	}
	for _, set := range v.Sets {
		if _, err := w.Publish(set); err != nil {
			w.Close()
			return nil, fmt.Errorf("vector %s: %w", v.Name, err)
		}
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if v.Damage != nil {
		b = v.Damage(b)
	}
	return b, os.Remove(path)
}
