// Package board defines the byte format of the announcement board: the shared-memory region that announcementd
// publishes and that readers in any language map read-only. docs/FORMAT.md is the normative description; this
// package is its Go form, shared by the writer (board/writer) and the reader (board/reader).
//
// Invariants every user of this package relies on:
//   - All integers are little-endian; every multi-byte field is aligned to its size.
//   - The word at offset 0 is the published version. It is written last in a publish, never decreases, and names a
//     snapshot that is complete: the snapshot with version V lives in slot V mod 2.
//   - Each slot carries a sequence (odd while written) and a CRC-32/IEEE over its header and records, so a reader
//     without memory barriers can still tell a torn copy from a consistent one.
//   - Readers find record fields by name in the layout table and ignore names they do not know, so fields can be
//     appended by later minors without breaking them.
package board

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"unicode/utf8"
)

// Format identification.
const (
	Magic        = "NTCBOARD"
	Major uint16 = 1
	Minor uint16 = 0
)

// Header offsets (FORMAT.md §2). Line 0 is the poll line, line 1 the heartbeat line, line 2 the writer line.
const (
	OffVersion    = 0
	OffMagic      = 8
	OffFutex      = 16
	OffState      = 20
	OffMajor      = 24
	OffMinor      = 26
	OffHeaderSize = 28
	OffRegionSize = 32
	OffCapacity   = 40
	OffStride     = 44
	OffSlotSize   = 48
	OffHeartbeat  = 64
	OffWriterPID  = 128
	OffGeneration = 136
	OffFieldCount = 256
	OffLayoutCRC  = 260
	OffFields     = 272

	FieldEntrySize = 32
	FieldNameSize  = 20
	MaxFields      = 32

	// MinHeaderSize is the smallest header that holds a full layout table.
	MinHeaderSize = OffFields + MaxFields*FieldEntrySize // 1296
	// HeaderSize is the header size this writer uses: one page, so slots start page-aligned.
	HeaderSize = 4096
	// MinFileSize is the smallest file a reader will look at (header lines and the layout table, rounded to 64).
	MinFileSize = 1344
)

// Slot header offsets (FORMAT.md §3).
const (
	SlotOffSeq         = 0
	SlotOffCRC         = 8
	SlotOffCount       = 12
	SlotOffVersion     = 16
	SlotOffPublishedAt = 24
	SlotHeaderSize     = 64
	// SlotCRCStart is where the slot checksum starts: everything after the crc word.
	SlotCRCStart = 12
)

// Record limits.
const (
	MaxContent = 256
	// Stride is the 1.0 record stride: 292 bytes of fields, 28 reserved for later minors.
	Stride = 320
	// MinStride is the smallest stride that holds the 1.0 fields.
	MinStride = 292
	// MaxAttempts bounds a reader's retries before it reports ErrBusy.
	MaxAttempts = 100
)

// Region size limits.
const (
	MinRegionSize = 64 << 10
	MaxRegionSize = 1 << 30
	DefaultSize   = 4 << 20
)

// State is the region's state word.
type State uint32

const (
	StateLive       State = 1
	StateSuperseded State = 2
)

func (s State) String() string {
	switch s {
	case StateLive:
		return "live"
	case StateSuperseded:
		return "superseded"
	default:
		return fmt.Sprintf("unknown(%d)", uint32(s))
	}
}

// FieldType is the type code of a layout table entry.
type FieldType uint32

const (
	TypeU32   FieldType = 1
	TypeU64   FieldType = 2
	TypeI32   FieldType = 3
	TypeI64   FieldType = 4
	TypeBytes FieldType = 5
)

// intSize is the size of each integer field type.
var intSize = map[FieldType]uint32{TypeU32: 4, TypeU64: 8, TypeI32: 4, TypeI64: 8}

// Field is one entry of the record layout table.
type Field struct {
	Name   string
	Type   FieldType
	Offset uint32
	Size   uint32
}

// Fields10 is the record layout of format 1.0, in table order.
var Fields10 = []Field{
	{"crc", TypeU32, 0, 4},
	{"content_len", TypeU32, 4, 4},
	{"id", TypeU64, 8, 8},
	{"effective_at", TypeI64, 16, 8},
	{"expires_at", TypeI64, 24, 8},
	{"priority", TypeI32, 32, 4},
	{"content", TypeBytes, 36, MaxContent},
}

// Record is one announcement as it appears on the board.
type Record struct {
	ID          uint64 `json:"id"`
	EffectiveAt int64  `json:"effective_at"` // unix ns
	ExpiresAt   int64  `json:"expires_at"`   // unix ns; 0 = never
	Priority    int32  `json:"priority"`
	Content     string `json:"content"`
}

// Validate reports why r cannot be published, or nil.
func (r Record) Validate() error {
	if r.ID == 0 {
		return errors.New("id must be non-zero")
	}
	if len(r.Content) > MaxContent {
		return fmt.Errorf("content is %d bytes, the limit is %d", len(r.Content), MaxContent)
	}
	if !utf8.ValidString(r.Content) {
		return errors.New("content is not valid UTF-8")
	}
	return nil
}

// Layout is the position of every field a 1.0 reader needs, found by name in a region's layout table.
type Layout struct {
	CRC, ContentLen, ID, EffectiveAt, ExpiresAt, Priority, Content uint32
}

// Header is the static description of a region, decoded and validated.
type Header struct {
	Major, Minor uint16
	HeaderSize   uint32
	RegionSize   uint64
	Capacity     uint32
	Stride       uint32
	SlotSize     uint32
	Fields       []Field
	Layout       Layout
}

// SlotOffset is the file offset of slot i (0 or 1).
func (h *Header) SlotOffset(i uint64) uint64 {
	return uint64(h.HeaderSize) + (i&1)*uint64(h.SlotSize)
}

// Geometry computes the header of a fresh 1.0 region of the given size, with extra fields appended to the layout
// (used to write newer-minor test regions; nil for the standard layout).
func Geometry(size uint64, extra ...Field) (Header, error) {
	if size < MinRegionSize || size > MaxRegionSize {
		return Header{}, fmt.Errorf("region size %d is out of range [%d, %d]", size, MinRegionSize, MaxRegionSize)
	}
	if size%4096 != 0 {
		return Header{}, fmt.Errorf("region size %d is not a multiple of the page size (4096)", size)
	}
	fields := append(append([]Field(nil), Fields10...), extra...)
	minor := Minor
	if len(extra) > 0 {
		minor++
	}
	half := (size - HeaderSize) / 2
	capacity := (half - SlotHeaderSize) / Stride
	h := Header{
		Major: Major, Minor: minor, HeaderSize: HeaderSize, RegionSize: size,
		Capacity: uint32(capacity), Stride: Stride, SlotSize: uint32(half &^ 63), Fields: fields,
	}
	if err := h.validate(); err != nil {
		return Header{}, err
	}
	return h, nil
}

// EncodeHeader writes the static header fields and the layout table of h into hdr (at least HeaderSize bytes).
// It does not touch the version, futex, state, heartbeat or writer words.
func EncodeHeader(hdr []byte, h *Header) {
	le := binary.LittleEndian
	copy(hdr[OffMagic:], Magic)
	le.PutUint16(hdr[OffMajor:], h.Major)
	le.PutUint16(hdr[OffMinor:], h.Minor)
	le.PutUint32(hdr[OffHeaderSize:], h.HeaderSize)
	le.PutUint64(hdr[OffRegionSize:], h.RegionSize)
	le.PutUint32(hdr[OffCapacity:], h.Capacity)
	le.PutUint32(hdr[OffStride:], h.Stride)
	le.PutUint32(hdr[OffSlotSize:], h.SlotSize)
	table := hdr[OffFields : OffFields+len(h.Fields)*FieldEntrySize]
	clear(hdr[OffFields : OffFields+MaxFields*FieldEntrySize])
	for i, f := range h.Fields {
		e := table[i*FieldEntrySize:]
		copy(e[:FieldNameSize], f.Name)
		le.PutUint32(e[20:], uint32(f.Type))
		le.PutUint32(e[24:], f.Offset)
		le.PutUint32(e[28:], f.Size)
	}
	le.PutUint32(hdr[OffFieldCount:], uint32(len(h.Fields)))
	le.PutUint32(hdr[OffLayoutCRC:], crc32.ChecksumIEEE(table))
}

// ParseHeader decodes and validates the header of a region whose file is fileSize bytes long. mem must hold at
// least min(fileSize, HeaderSize) bytes of the file. It checks everything FORMAT.md §5 steps 1-3 list.
func ParseHeader(mem []byte, fileSize int64) (Header, error) {
	if fileSize < MinFileSize || len(mem) < MinFileSize {
		return Header{}, Errorf(CodeTruncated, "file is %d bytes, a board has at least %d", fileSize, MinFileSize)
	}
	le := binary.LittleEndian
	if !bytes.Equal(mem[OffMagic:OffMagic+8], []byte(Magic)) {
		return Header{}, Errorf(CodeBadMagic, "magic is %q, want %q: not an announcement board", mem[OffMagic:OffMagic+8], Magic)
	}
	h := Header{
		Major:      le.Uint16(mem[OffMajor:]),
		Minor:      le.Uint16(mem[OffMinor:]),
		HeaderSize: le.Uint32(mem[OffHeaderSize:]),
		RegionSize: le.Uint64(mem[OffRegionSize:]),
		Capacity:   le.Uint32(mem[OffCapacity:]),
		Stride:     le.Uint32(mem[OffStride:]),
		SlotSize:   le.Uint32(mem[OffSlotSize:]),
	}
	if h.Major != Major {
		return Header{}, Errorf(CodeUnsupportedMajor, "format major %d, this reader knows %d", h.Major, Major)
	}
	if h.RegionSize > uint64(fileSize) {
		return Header{}, Errorf(CodeTruncated, "file is %d bytes, its header says %d", fileSize, h.RegionSize)
	}
	n := le.Uint32(mem[OffFieldCount:])
	if n < 1 || n > MaxFields {
		return Header{}, Errorf(CodeBadLayout, "layout table has %d fields, want 1..%d", n, MaxFields)
	}
	table := mem[OffFields : OffFields+int(n)*FieldEntrySize]
	if got, want := crc32.ChecksumIEEE(table), le.Uint32(mem[OffLayoutCRC:]); got != want {
		return Header{}, Errorf(CodeBadLayout, "layout table checksum is %08x, header says %08x", got, want)
	}
	for i := range int(n) {
		e := table[i*FieldEntrySize:]
		name := e[:FieldNameSize]
		if j := bytes.IndexByte(name, 0); j >= 0 {
			name = name[:j]
		}
		h.Fields = append(h.Fields, Field{string(name), FieldType(le.Uint32(e[20:])), le.Uint32(e[24:]), le.Uint32(e[28:])})
	}
	if err := h.validate(); err != nil {
		return Header{}, err
	}
	return h, nil
}

// validate checks the geometry and resolves the required fields into h.Layout.
func (h *Header) validate() error {
	switch {
	case h.HeaderSize%64 != 0 || h.HeaderSize < MinHeaderSize:
		return Errorf(CodeBadLayout, "header size %d: want a multiple of 64, at least %d", h.HeaderSize, MinHeaderSize)
	case h.Stride%8 != 0 || h.Stride < MinStride:
		return Errorf(CodeBadLayout, "record stride %d: want a multiple of 8, at least %d", h.Stride, MinStride)
	case h.Capacity < 1:
		return Errorf(CodeBadLayout, "record capacity is 0")
	case h.SlotSize%64 != 0 || uint64(h.SlotSize) < SlotHeaderSize+uint64(h.Capacity)*uint64(h.Stride):
		return Errorf(CodeBadLayout, "slot size %d cannot hold %d records of %d bytes", h.SlotSize, h.Capacity, h.Stride)
	case uint64(h.HeaderSize)+2*uint64(h.SlotSize) > h.RegionSize:
		return Errorf(CodeBadLayout, "two slots of %d bytes after a %d-byte header exceed the region size %d",
			h.SlotSize, h.HeaderSize, h.RegionSize)
	}
	want := map[string]struct {
		typ  FieldType
		size uint32
		dst  *uint32
	}{
		"crc": {TypeU32, 4, &h.Layout.CRC}, "content_len": {TypeU32, 4, &h.Layout.ContentLen},
		"id": {TypeU64, 8, &h.Layout.ID}, "effective_at": {TypeI64, 8, &h.Layout.EffectiveAt},
		"expires_at": {TypeI64, 8, &h.Layout.ExpiresAt}, "priority": {TypeI32, 4, &h.Layout.Priority},
		"content": {TypeBytes, MaxContent, &h.Layout.Content},
	}
	seen := make(map[string]bool, len(h.Fields))
	for _, f := range h.Fields {
		if uint64(f.Offset)+uint64(f.Size) > uint64(h.Stride) {
			return Errorf(CodeBadLayout, "field %q (offset %d, size %d) lies outside the %d-byte record", f.Name, f.Offset, f.Size, h.Stride)
		}
		if seen[f.Name] {
			return Errorf(CodeBadLayout, "field %q appears twice in the layout table", f.Name)
		}
		seen[f.Name] = true
		if size, isInt := intSize[f.Type]; isInt && (f.Size != size || f.Offset%size != 0) {
			return Errorf(CodeBadLayout, "field %q: an integer of type %d must have size %d and an aligned offset, has size %d at %d",
				f.Name, f.Type, size, f.Size, f.Offset)
		}
		w, ok := want[f.Name]
		if !ok {
			continue // a field of a newer minor: ignored
		}
		if f.Type != w.typ || f.Size < w.size {
			return Errorf(CodeBadLayout, "field %q has type %d size %d, want type %d size %d", f.Name, f.Type, f.Size, w.typ, w.size)
		}
		*w.dst = f.Offset
		delete(want, f.Name)
	}
	for name := range want {
		return Errorf(CodeBadLayout, "layout table lacks the required field %q", name)
	}
	if h.Layout.CRC != 0 {
		return Errorf(CodeBadLayout, "field \"crc\" must be at offset 0, not %d", h.Layout.CRC)
	}
	return nil
}

// EncodeRecord writes r into rec (Stride bytes of h's layout, zeroed by the caller) and seals it with its CRC.
func EncodeRecord(rec []byte, h *Header, r *Record) {
	le := binary.LittleEndian
	l := &h.Layout
	le.PutUint32(rec[l.ContentLen:], uint32(len(r.Content)))
	le.PutUint64(rec[l.ID:], r.ID)
	le.PutUint64(rec[l.EffectiveAt:], uint64(r.EffectiveAt))
	le.PutUint64(rec[l.ExpiresAt:], uint64(r.ExpiresAt))
	le.PutUint32(rec[l.Priority:], uint32(r.Priority))
	copy(rec[l.Content:l.Content+MaxContent], r.Content)
	SealRecord(rec)
}

// SealRecord sets the record's CRC over bytes [4, stride).
func SealRecord(rec []byte) {
	binary.LittleEndian.PutUint32(rec[0:], crc32.ChecksumIEEE(rec[4:]))
}

// DecodeRecord checks one record's CRC and contents and decodes it.
func DecodeRecord(rec []byte, h *Header) (Record, error) {
	le := binary.LittleEndian
	l := &h.Layout
	if got, want := crc32.ChecksumIEEE(rec[4:]), le.Uint32(rec[l.CRC:]); got != want {
		return Record{}, Errorf(CodeRecordChecksum, "record checksum is %08x, record says %08x", got, want)
	}
	n := le.Uint32(rec[l.ContentLen:])
	if n > MaxContent {
		return Record{}, Errorf(CodeBadRecord, "content length %d exceeds %d", n, MaxContent)
	}
	r := Record{
		ID:          le.Uint64(rec[l.ID:]),
		EffectiveAt: int64(le.Uint64(rec[l.EffectiveAt:])),
		ExpiresAt:   int64(le.Uint64(rec[l.ExpiresAt:])),
		Priority:    int32(le.Uint32(rec[l.Priority:])),
		Content:     string(rec[l.Content : l.Content+n]),
	}
	if r.ID == 0 {
		return Record{}, Errorf(CodeBadRecord, "record has id 0")
	}
	if !utf8.ValidString(r.Content) {
		return Record{}, Errorf(CodeBadRecord, "record %d: content is not valid UTF-8", r.ID)
	}
	return r, nil
}

// SlotChecksum computes the slot CRC of a slot image that starts with its 64-byte header.
func SlotChecksum(slot []byte, count uint32, stride uint32) uint32 {
	return crc32.ChecksumIEEE(slot[SlotCRCStart : SlotHeaderSize+uint64(count)*uint64(stride)])
}
