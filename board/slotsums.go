package board

import (
	"encoding/binary"
	"hash/crc32"
	"math/bits"
	"sync"
	"unicode/utf8"
	"unsafe"
)

// A slot carries two checksums over the same bytes (FORMAT.md §3): the slot crc over [12, 64 + count × stride),
// and in each record a crc over its bytes [4, stride). Computed as written, every record byte goes through CRC-32
// twice, and each record's checksum is a call on 316 bytes whose 12-byte tail hash/crc32 takes a byte at a time.
//
// SlotSums computes both from one pass. CRC-32 is affine, so crc(A‖B) = shift_|B|(crc(A)) ⊕ crc(B), where
// shift_n is the linear map of n zero bytes through the CRC register (zlib's crc32_combine). With F = crc(rec),
// one call on the whole record (a multiple of 16 bytes in 1.0, all of it on hash/crc32's PCLMUL path):
//
//   - the record's own checksum is crc(rec[4:]) = F ⊕ shift_{stride−4}(crc(rec[:4])): the right side is an affine
//     map of the 4 crc bytes, tabulated;
//   - the slot's is folded record by record: S ← shift_stride(S) ⊕ F, starting from S = crc(slot[12:64]).
//
// Both are exact: the values are the ones the two separate passes compute, bit for bit, so every check stays.
type SlotSums struct {
	stride uint32
	slot   crcMap // shift_stride
	run    crcMap // shift_{MemoryRun × stride}: a run of records at once (Memory)
	rec    crcMap // c ↦ shift_{stride−4}(crc of the 4 bytes c) ⊕ recK
	recK   uint32 // shift_{stride−4}(crc of 4 zero bytes)
}

// crcMap is a linear map of 32-bit CRC values over GF(2), by bytes: four table lookups.
type crcMap [4][256]uint32

func (m *crcMap) apply(c uint32) uint32 {
	return m[0][byte(c)] ^ m[1][byte(c>>8)] ^ m[2][byte(c>>16)] ^ m[3][byte(c>>24)]
}

// newCRCMap tabulates the linear map f from its values on the 32 bits.
func newCRCMap(f func(uint32) uint32) *crcMap {
	var basis [32]uint32
	for i := range basis {
		basis[i] = f(1 << i)
	}
	m := new(crcMap)
	for j := range 4 {
		for b := 1; b < 256; b++ {
			low := b & -b
			m[j][b] = m[j][b^low] ^ basis[8*j+bits.TrailingZeros(uint(low))]
		}
	}
	return m
}

// shifter returns shift_n: n zero bytes through the CRC-32/IEEE register (ShiftCRC).
func shifter(n uint64) func(uint32) uint32 {
	xn := xPow8n(n)
	return func(c uint32) uint32 { return mulModP(xn, c) }
}

// ShiftCRC is what n zero bytes do to a CRC-32/IEEE register without the initial and final inversions: c times
// x^(8n) modulo the polynomial (zlib's crc32_combine). CRC-32 is linear, so the CRC of a message that changed in
// one block is the old one xor the block's change shifted by what follows it (the writer's crcDelta). x^(8n) is
// found from the squares of x, so a hostile stride of a gigabyte costs microseconds, not a gigabyte of steps.
func ShiftCRC(c uint32, n uint64) uint32 { return mulModP(xPow8n(n), c) }

// mulModP is a·b modulo the CRC-32/IEEE polynomial, both in reflected bit order (zlib's multmodp); a must not be 0.
func mulModP(a, b uint32) uint32 {
	var p uint32
	for m := uint32(1) << 31; ; m >>= 1 {
		if a&m != 0 {
			p ^= b
			if a&(m-1) == 0 {
				return p
			}
		}
		if b&1 != 0 {
			b = b>>1 ^ crc32.IEEE
		} else {
			b >>= 1
		}
	}
}

// x2n[k] is x^(2^k) modulo the polynomial (zlib's x2n_table).
var x2n = func() (t [32]uint32) {
	p := uint32(1) << 30 // x^1
	for k := range t {
		t[k] = p
		p = mulModP(p, p)
	}
	return t
}()

// xPow8n is x^(8n) modulo the polynomial: what n zero bytes multiply a CRC register by (zlib's x2nmodp).
func xPow8n(n uint64) uint32 {
	p := uint32(1) << 31 // x^0
	for k := 3; n != 0; k++ {
		if n&1 != 0 {
			p = mulModP(x2n[k&31], p)
		}
		n >>= 1
	}
	return p
}

var defaultSums = sync.OnceValue(func() *SlotSums { return newSlotSums(Stride) })

// SlotSumsFor returns the tables for slots of the given stride (8 KiB; the 1.0 stride's are built once).
func SlotSumsFor(stride uint32) *SlotSums {
	if stride == Stride {
		return defaultSums()
	}
	return newSlotSums(stride)
}

func newSlotSums(stride uint32) *SlotSums {
	shiftRec := shifter(uint64(stride) - 4)
	crc4 := func(c uint32) uint32 {
		var w [4]byte
		binary.LittleEndian.PutUint32(w[:], c)
		return shiftRec(crc32.ChecksumIEEE(w[:]))
	}
	k := crc4(0)
	return &SlotSums{
		stride: stride,
		slot:   *newCRCMap(shifter(uint64(stride))),
		run:    *newCRCMap(shifter(uint64(stride) * MemoryRun)),
		rec:    *newCRCMap(func(c uint32) uint32 { return crc4(c) ^ k }),
		recK:   k,
	}
}

// Check computes the slot checksum of a slot image (its 64-byte header, then count records of the stride) and
// checks every record's crc, in one CRC pass. It returns the slot checksum (SlotChecksum's value) and the index
// of the first record whose crc does not match its bytes, or -1.
//
// With a non-nil m, a record m knows (Memory) is not read again: its crc is the one remembered, since it is a
// function of the same bytes, and a run of MemoryRun known records is folded into the slot checksum at once (the
// fold of a run from 0, G, is remembered too: S ← shift_{run}(S) ⊕ G, shift being linear). m keeps the crcs of the
// others, to be trusted once DecodeRecords has accepted them.
func (s *SlotSums) Check(img []byte, count uint32, m *Memory) (slot uint32, badRecord int) {
	stride := int(s.stride)
	n := int(count)
	sum := crc32.ChecksumIEEE(img[SlotCRCStart:SlotHeaderSize])
	if m != nil {
		m.grow(n)
	}
	badRecord = -1
	for i := 0; i < n; {
		if m != nil && i%MemoryRun == 0 && i+MemoryRun <= n {
			if g, ok := m.runSum(i/MemoryRun, &s.slot); ok {
				sum = s.run.apply(sum) ^ g
				i += MemoryRun
				continue
			}
		}
		if m != nil && m.known[i] {
			sum = s.slot.apply(sum) ^ m.sums[i]
			i++
			continue
		}
		rec := img[SlotHeaderSize+i*stride : SlotHeaderSize+(i+1)*stride]
		f := crc32.ChecksumIEEE(rec)
		sum = s.slot.apply(sum) ^ f
		if m != nil {
			m.sums[i] = f
		}
		stored := binary.LittleEndian.Uint32(rec)
		if f^s.rec.apply(stored)^s.recK != stored && badRecord < 0 {
			badRecord = i
		}
		i++
	}
	return sum, badRecord
}

// MemoryRun is how many records a Memory folds into the slot checksum at once, and how many a reader compares at
// once against its buffer: a run that did not change (most of them, between two versions) costs one step.
const MemoryRun = 16

// Memory is a reader's memory of the last slot image it verified, so that its next snapshot reads again, checks
// and decodes only the records that changed. The reader keeps the image (its copy buffer, records at the same
// offsets from one snapshot to the next); Memory keeps, by record index, what those bytes gave: the crc of the
// whole record (what the slot checksum folds, SlotSums) and the decoded record.
//
// Invariant: when Knows(i), record i of the reader's buffer holds exactly the bytes of record i of the last
// snapshot DecodeRecords accepted, which passed every check of a record (crc, content_len, id, UTF-8), and
// sums[i] and recs[i] are what they gave. A reader that writes record i of its buffer calls Forget(i) first. The
// checks of the next snapshot stay exact: a record's crc and decoding depend on its bytes alone, so a known
// record's are the values computing them again would give; what depends on more than one record (the slot
// checksum, the count, ascending ids) is computed afresh every time.
//
// Between versions most records usually did not change. A record that did, or moved to another index, is read,
// checked and decoded as new; its content, when byte for byte the one remembered for its id, is shared with the
// last snapshot rather than allocated again (strings are immutable). Memory holds the last snapshot's records (a
// copy: a caller may change the ones it was given) and their contents alive, no more. The zero value knows
// nothing; not safe for concurrent use.
type Memory struct {
	known []bool   // by record index; len = the most records a checked image has had
	sums  []uint32 // crc of the whole record, where known, or as last computed by Check
	recs  []Record // the last accepted snapshot's, ids ascending

	// By run of MemoryRun records from index 0: runOK[r] says that every record of run r is known and runs[r]
	// is the fold of their sums from 0. Forget clears it.
	runs  []uint32
	runOK []bool

	// What Ready allocated for the next snapshot, each used once: its records, a chunk of new contents, and the
	// Snapshot itself.
	nextRecs  []Record
	nextChunk []byte
	nextSnap  *Snapshot
}

// Ready allocates what the next snapshot of up to n records will need (its records, one chunk of new contents and
// the Snapshot), and writes to every page of it. A reader calls it before it sleeps until the next version: the
// first write to a page the process has never touched is a page fault, which costs tens of µs in a virtual machine
// (measured: bench/fanout), and the snapshot after a wake-up should not pay it. A Go heap that has not been through
// a garbage collection yet gets fresh pages for every new span.
func (m *Memory) Ready(n int) {
	if cap(m.nextRecs) < n {
		m.nextRecs = make([]Record, n)
		for i := 0; i < n; i += pageSize / int(unsafe.Sizeof(Record{})) {
			m.nextRecs[i].Priority = 0
		}
		m.nextRecs[n-1].Priority = 0
	}
	if m.nextChunk == nil {
		m.nextChunk = make([]byte, contentChunk)
		for i := 0; i < len(m.nextChunk); i += pageSize {
			m.nextChunk[i] = 0
		}
		m.nextChunk[len(m.nextChunk)-1] = 0
	}
	if m.nextSnap == nil {
		m.nextSnap = new(Snapshot)
		m.nextSnap.Version = 0 // its page, as the others'
	}
}

// pageSize is the smallest page Linux maps (4 KiB on x86-64 and arm64): touching one byte in each is enough.
const pageSize = 4 << 10

// NewSnapshot returns the Snapshot Ready allocated (once), or a new one (always, for a nil m).
func (m *Memory) NewSnapshot() *Snapshot {
	if m == nil {
		return new(Snapshot)
	}
	if s := m.nextSnap; s != nil {
		m.nextSnap = nil
		return s
	}
	return new(Snapshot)
}

// records returns storage for n records: what Ready allocated when it is large enough (once), or a new slice.
// Every element is written by DecodeRecords before it is returned.
func (m *Memory) records(n int) []Record {
	if m != nil && cap(m.nextRecs) >= n && n > 0 {
		r := m.nextRecs[:n:n]
		m.nextRecs = nil
		return r
	}
	return make([]Record, n)
}

// contents returns a buffer of capacity size for new contents, from Ready's chunk when it fits (once). The string
// made of it (unsafe.String) is its only user: the buffer is never written again, as strings.Builder's.
func (m *Memory) contents(size int) []byte {
	if m != nil && size <= len(m.nextChunk) {
		b := m.nextChunk[:0:size]
		m.nextChunk = nil
		return b
	}
	return make([]byte, 0, size)
}

// runSum returns the fold of run r's sums from 0 (slot: shift_stride), when all its records are known.
func (m *Memory) runSum(r int, slot *crcMap) (uint32, bool) {
	if m.runOK[r] {
		return m.runs[r], true
	}
	var g uint32
	for i := r * MemoryRun; i < (r+1)*MemoryRun; i++ {
		if !m.known[i] {
			return 0, false
		}
		g = slot.apply(g) ^ m.sums[i]
	}
	m.runs[r], m.runOK[r] = g, true
	return g, true
}

// Len is how many records the last snapshot m accepted holds.
func (m *Memory) Len() int { return len(m.recs) }

// Knows reports whether record i of the reader's buffer holds bytes m verified (the invariant above).
func (m *Memory) Knows(i int) bool { return i < len(m.known) && m.known[i] }

// Forget marks record i of the reader's buffer as overwritten.
func (m *Memory) Forget(i int) {
	if i < len(m.known) {
		m.known[i], m.runOK[i/MemoryRun] = false, false
	}
}

func (m *Memory) grow(n int) {
	if n > len(m.known) {
		m.known = append(m.known, make([]bool, n-len(m.known))...)
		m.sums = append(m.sums, make([]uint32, n-len(m.sums))...)
		runs := (n + MemoryRun - 1) / MemoryRun
		m.runs = append(m.runs, make([]uint32, runs-len(m.runs))...)
		m.runOK = append(m.runOK, make([]bool, runs-len(m.runOK))...)
	}
}

// remember makes recs, just accepted, what m knows: records [0, len(recs)) of the image hold their bytes. A
// record m knew already is the one DecodeRecords copied from m, so only the others are written.
func (m *Memory) remember(recs []Record) {
	n := len(recs)
	m.grow(n)
	if n < len(m.recs) {
		clear(m.recs[n:]) // their contents no longer held
	}
	m.recs = append(m.recs[:min(len(m.recs), n)], make([]Record, max(0, n-len(m.recs)))...)
	for i := range recs {
		if !m.known[i] {
			m.known[i], m.recs[i] = true, recs[i]
		}
	}
	clear(m.known[n:]) // older bytes, whose records m no longer holds
	clear(m.runOK[n/MemoryRun:])
}

// contentChunk bounds the strings DecodeRecords allocates for new contents. A content shared with a later snapshot
// (Memory) keeps its whole chunk alive: 1 KiB bounds that to 1 KiB per live content, and still packs four or more
// contents of up to 256 bytes per allocation.
const contentChunk = 1 << 10

// DecodeRecords decodes the count records of a slot image (FORMAT.md §5 step 6) whose record crcs Check has
// verified. It checks what DecodeRecord checks (content_len, id, UTF-8) and that ids ascend, with one allocation
// per 1 KiB of new contents and one UTF-8 pass over them. With a non-nil m (Memory), a record m knows is copied
// from m without reading its bytes again, a content unchanged since the last snapshot is shared, not copied, and m
// then knows these records. It returns ok = false, and no records, when any record fails a check (m unchanged);
// DecodeRecord, record by record, then says which and why.
func DecodeRecords(img []byte, count uint32, h *Header, m *Memory) (recs []Record, ok bool) {
	le := binary.LittleEndian
	l := &h.Layout
	stride := int(h.Stride)
	body := img[SlotHeaderSize : SlotHeaderSize+int(count)*stride]
	content := func(i int) []byte {
		rec := body[i*stride : (i+1)*stride]
		return rec[l.Content : l.Content+le.Uint32(rec[l.ContentLen:])]
	}
	var prev []Record
	if m != nil {
		prev = m.recs
	}
	recs = m.records(int(count))
	firstNew, endNew := len(recs), 0 // the records that need a new content string are among [firstNew, endNew)
	p := 0                           // prev's records below p have ids below the record's
	for i := 0; i < len(recs); {
		if m != nil && m.Knows(i) {
			// A run of known records: the same bytes at the same index as in the last snapshot, so the same
			// records, in ascending order among themselves. Only the id before the run is compared.
			j := i + 1
			for j < len(recs) && m.Knows(j) {
				j++
			}
			copy(recs[i:j], prev[i:j])
			if i > 0 && recs[i].ID <= recs[i-1].ID {
				return nil, false
			}
			i = j
			continue
		}
		rec := body[i*stride : (i+1)*stride]
		id := le.Uint64(rec[l.ID:])
		n := le.Uint32(rec[l.ContentLen:])
		if n > MaxContent || id == 0 || (i > 0 && id <= recs[i-1].ID) {
			return nil, false
		}
		recs[i] = Record{
			ID:          id,
			EffectiveAt: int64(le.Uint64(rec[l.EffectiveAt:])),
			ExpiresAt:   int64(le.Uint64(rec[l.ExpiresAt:])),
			Priority:    int32(le.Uint32(rec[l.Priority:])),
		}
		for p < len(prev) && prev[p].ID < id {
			p++
		}
		if n > 0 && p < len(prev) && prev[p].ID == id && prev[p].Content == string(rec[l.Content:l.Content+n]) {
			recs[i].Content = prev[p].Content
		} else if n > 0 {
			firstNew, endNew = min(firstNew, i), i+1
		}
		i++
	}
	// A record still without its content, and with content_len > 0, needs a new string. The new contents go into
	// strings of at most contentChunk bytes, each a buffer no one writes again (Memory.contents).
	fresh := func(i int) int {
		if recs[i].Content != "" {
			return 0
		}
		return len(content(i))
	}
	for i := firstNew; i < endNew; {
		size, j := 0, i
		for ; j < endNew; j++ {
			n := fresh(j)
			if size+n > contentChunk && size > 0 {
				break
			}
			size += n
		}
		if size == 0 {
			i = j
			continue
		}
		buf := m.contents(size)
		for k := i; k < j; k++ {
			if fresh(k) > 0 {
				buf = append(buf, content(k)...)
			}
		}
		all := unsafe.String(unsafe.SliceData(buf), len(buf))
		// Each content is valid UTF-8 exactly when their concatenation is and none starts with a continuation
		// byte (10xxxxxx): in valid UTF-8 every other byte starts a rune, so each cut falls between runes.
		if !utf8.ValidString(all) {
			return nil, false
		}
		off := 0
		for k := i; k < j; k++ {
			n := fresh(k)
			if n == 0 {
				continue
			}
			c := all[off : off+n]
			if c[0]&0xc0 == 0x80 {
				return nil, false
			}
			recs[k].Content = c
			off += n
		}
		i = j
	}
	if m != nil {
		m.remember(recs)
	}
	return recs, true
}
