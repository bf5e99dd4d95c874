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

		// The answers of FORMAT.md that a reader's author had to guess, one vector each (§2 "Names and entries",
		// §5 "Rules every reader follows", §9).
		{Name: "superseded_unpublished", Sets: nil, Damage: supersede, Error: board.CodeSuperseded},
		{Name: "bad_count", Sets: [][]board.Record{basic}, Damage: func(b []byte) []byte {
			h := header(b)
			slot := currentSlot(b)
			binary.LittleEndian.PutUint32(b[slot+board.SlotOffCount:], h.Capacity+1) // the seq stays even
			return b
		}, Error: board.CodeSnapshotChecksum},
		{Name: "wrong_parity", Sets: [][]board.Record{basic}, Damage: func(b []byte) []byte {
			slot := currentSlot(b)
			v := binary.LittleEndian.Uint64(b[board.OffVersion:])
			binary.LittleEndian.PutUint64(b[slot+board.SlotOffVersion:], v+1) // above V, but not V's slot's
			sealSlot(b, slot)
			return b
		}, Error: board.CodeSnapshotChecksum},
		{Name: "newer_slot", Sets: [][]board.Record{basic}, Damage: func(b []byte) []byte {
			slot := currentSlot(b)
			v := binary.LittleEndian.Uint64(b[board.OffVersion:])
			binary.LittleEndian.PutUint64(b[slot+board.SlotOffVersion:], v+2) // V's parity, above V: a race
			sealSlot(b, slot)
			return b
		}, Error: board.CodeBusy},
		{Name: "unsorted_ids", Sets: [][]board.Record{basic}, Damage: func(b []byte) []byte {
			slot := currentSlot(b)
			r0 := b[slot+board.SlotHeaderSize : slot+board.SlotHeaderSize+board.Stride]
			r1 := b[slot+board.SlotHeaderSize+board.Stride : slot+board.SlotHeaderSize+2*board.Stride]
			t := append([]byte(nil), r0...)
			copy(r0, r1)
			copy(r1, t)
			sealSlot(b, slot)
			return b
		}, Error: board.CodeBadRecord},
		{Name: "layout_lenient", Sets: [][]board.Record{basic}, Opts: writer.Options{ExtraFields: []board.Field{
			{Name: "", Type: board.TypeBytes, Offset: 292, Size: 1},                   // an empty name: unknown
			{Name: "odd", Type: 9, Offset: 293, Size: 3},                              // an unknown type, unaligned, odd size
			{Name: "crc ", Type: board.TypeU32, Offset: 296, Size: 4},                 // not "crc": names are not trimmed
			{Name: "CONTENT", Type: board.TypeBytes, Offset: 300, Size: 4},            // nor folded
			{Name: "类别", Type: board.TypeU32, Offset: 304, Size: 4},                   // non-ASCII bytes: an unknown name
			{Name: "abcdefghijklmnopqrst", Type: board.TypeU32, Offset: 308, Size: 4}, // 20 bytes, no NUL
			{Name: "zz\x00junk", Type: board.TypeU64, Offset: 312, Size: 8},           // the name is "zz"
		}}},
		{Name: "bad_layout_name_after_nul", Sets: [][]board.Record{basic}, Opts: writer.Options{ExtraFields: []board.Field{
			{Name: "id\x00v2", Type: board.TypeU64, Offset: 296, Size: 8}, // the name is "id": twice in the table
		}}, Error: board.CodeBadLayout},
		{Name: "bad_layout_unknown_outside", Sets: [][]board.Record{basic}, Damage: withField(board.Field{
			Name: "later", Type: 9, Offset: 316, Size: 8, // an unknown type still lies inside the stride
		}), Error: board.CodeBadLayout},
		{Name: "bad_layout_int_size", Sets: [][]board.Record{basic}, Damage: withField(board.Field{
			Name: "flags", Type: board.TypeU32, Offset: 296, Size: 8, // an unknown name, but a u32 is 4 bytes
		}), Error: board.CodeBadLayout},
		{Name: "content_grown", Sets: [][]board.Record{utf8Max}, Damage: growContent(0)},
		{Name: "content_grown_long", Sets: [][]board.Record{utf8Max}, Damage: growContent(260), Error: board.CodeBadRecord},
		{Name: "padding_garbage", Sets: [][]board.Record{basic}, Damage: func(b []byte) []byte {
			slot := currentSlot(b)
			for i := range uint64(len(basic)) {
				rec := b[slot+board.SlotHeaderSize+i*board.Stride : slot+board.SlotHeaderSize+(i+1)*board.Stride]
				n := binary.LittleEndian.Uint32(rec[4:])
				for j := 36 + n; j < board.Stride; j++ { // past content_len, and the reserved bytes 292..319
					rec[j] = byte(j) | 0x80
				}
				board.SealRecord(rec)
			}
			for j := slot + 32; j < slot+board.SlotHeaderSize; j++ { // the slot header's reserved bytes
				b[j] = 0xA5
			}
			sealSlot(b, slot)
			return b
		}},
		{Name: "small_region", Sets: [][]board.Record{basic[:1], basic}, Damage: shrinkGeometry},
	}
}

// utf8Max is one record of 256 bytes of content.
var utf8Max = []board.Record{{ID: 9, Content: strings.Repeat("é", 128)}}

func header(b []byte) board.Header {
	h, err := board.ParseHeader(b, int64(len(b)))
	if err != nil {
		panic(err)
	}
	return h
}

// editLayout changes the layout table (entries of 32 bytes) and reseals its checksum.
func editLayout(b []byte, edit func(table []byte, n uint32) uint32) {
	le := binary.LittleEndian
	n := le.Uint32(b[board.OffFieldCount:])
	n = edit(b[board.OffFields:board.OffFields+board.MaxFields*board.FieldEntrySize], n)
	le.PutUint32(b[board.OffFieldCount:], n)
	le.PutUint32(b[board.OffLayoutCRC:], crc32.ChecksumIEEE(b[board.OffFields:board.OffFields+n*board.FieldEntrySize]))
}

// withField appends an entry that the writer itself would refuse to lay out.
func withField(f board.Field) func(b []byte) []byte {
	return func(b []byte) []byte {
		editLayout(b, func(table []byte, n uint32) uint32 {
			e := table[n*board.FieldEntrySize:]
			copy(e[:board.FieldNameSize], f.Name)
			binary.LittleEndian.PutUint32(e[20:], uint32(f.Type))
			binary.LittleEndian.PutUint32(e[24:], f.Offset)
			binary.LittleEndian.PutUint32(e[28:], f.Size)
			return n + 1
		})
		return b
	}
}

// growContent gives the content field 264 bytes, as a later minor might; with length > 0, the record's
// content_len becomes length (its content bytes valid ASCII, resealed).
func growContent(length uint32) func(b []byte) []byte {
	return func(b []byte) []byte {
		editLayout(b, func(table []byte, n uint32) uint32 {
			for i := range n {
				e := table[i*board.FieldEntrySize:]
				if string(e[:8]) == "content\x00" {
					binary.LittleEndian.PutUint32(e[28:], 264)
				}
			}
			return n
		})
		if length > 0 {
			slot := currentSlot(b)
			rec := b[slot+board.SlotHeaderSize : slot+board.SlotHeaderSize+board.Stride]
			binary.LittleEndian.PutUint32(rec[4:], length)
			for j := uint32(36); j < 36+length; j++ {
				rec[j] = 'a'
			}
			board.SealRecord(rec)
			sealSlot(b, slot)
		}
		return b
	}
}

// shrinkGeometry rewrites a 64 KiB board as a 6,144-byte one (capacity 3, slots of 1,024 bytes): a size below
// §9's 64 KiB and not a multiple of the page size, which readers do not enforce.
func shrinkGeometry(b []byte) []byte {
	h := header(b)
	const capacity, slotSize = 3, 1024
	out := make([]byte, board.HeaderSize+2*slotSize)
	copy(out, b[:board.HeaderSize])
	le := binary.LittleEndian
	le.PutUint64(out[board.OffRegionSize:], uint64(len(out)))
	le.PutUint32(out[board.OffCapacity:], capacity)
	le.PutUint32(out[board.OffSlotSize:], slotSize)
	for s := range uint64(2) {
		copy(out[board.HeaderSize+s*slotSize:board.HeaderSize+(s+1)*slotSize], b[h.SlotOffset(s):])
	}
	return out
}

func supersede(b []byte) []byte {
	binary.LittleEndian.PutUint32(b[board.OffState:], uint32(board.StateSuperseded))
	return b
}

func currentSlot(b []byte) uint64 {
	h := header(b)
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
