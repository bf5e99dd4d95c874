package board

import (
	"encoding/binary"
	"hash/crc32"
	"math/bits"
	"strings"
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

// shifter returns shift_n: n zero bytes through the CRC-32/IEEE register (without the initial and final
// inversions), which is a product by x^(8n) modulo the polynomial. x^(8n) is found by squaring, so a hostile
// stride of a gigabyte costs microseconds, not a gigabyte of steps (zlib's x2nmodp and multmodp).
func shifter(n uint64) func(uint32) uint32 {
	xn := uint32(1) << 31 // x^0, reflected
	sq := uint32(1) << 30 // x^1, squared at each bit of 8n
	for n *= 8; n != 0; n >>= 1 {
		if n&1 != 0 {
			xn = mulModP(sq, xn)
		}
		sq = mulModP(sq, sq)
	}
	return func(c uint32) uint32 { return mulModP(xn, c) }
}

// mulModP is a·b modulo the CRC-32/IEEE polynomial, both in reflected bit order.
func mulModP(a, b uint32) uint32 {
	var p uint32
	for m := uint32(1) << 31; m != 0; m >>= 1 {
		if a&m != 0 {
			p ^= b
		}
		if b&1 != 0 {
			b = b>>1 ^ crc32.IEEE
		} else {
			b >>= 1
		}
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
		rec:    *newCRCMap(func(c uint32) uint32 { return crc4(c) ^ k }),
		recK:   k,
	}
}

// Check computes the slot checksum of a slot image (its 64-byte header, then count records of the stride) and
// checks every record's crc, in one CRC pass. It returns the slot checksum (SlotChecksum's value) and the index
// of the first record whose crc does not match its bytes, or -1.
func (s *SlotSums) Check(img []byte, count uint32) (slot uint32, badRecord int) {
	stride := int(s.stride)
	end := SlotHeaderSize + int(count)*stride
	recs := img[SlotHeaderSize:end]
	sum := crc32.ChecksumIEEE(img[SlotCRCStart:SlotHeaderSize])
	badRecord = -1
	for off := 0; off+stride <= len(recs); off += stride {
		rec := recs[off : off+stride]
		f := crc32.ChecksumIEEE(rec)
		sum = s.slot.apply(sum) ^ f
		stored := binary.LittleEndian.Uint32(rec)
		if f^s.rec.apply(stored)^s.recK != stored && badRecord < 0 {
			badRecord = off / stride
		}
	}
	return sum, badRecord
}

// contentChunk bounds the strings DecodeRecords allocates for new contents. A content shared with a later snapshot
// (Contents) keeps its whole chunk alive: 1 KiB bounds that to 1 KiB per live content, and still packs four or more
// contents of up to 256 bytes per allocation.
const contentChunk = 1 << 10

// Contents is a reader's memory of the contents it decoded last, by id. DecodeRecords gives a record whose content
// is byte for byte the one remembered for its id the remembered string (strings are immutable, so snapshots may
// share them; bytes equal to a string that passed the UTF-8 check pass it too), and allocates and validates only
// the contents that changed: between two versions, most records usually did not. It holds the last snapshot's
// contents alive, no more. The zero value is empty; not safe for concurrent use.
type Contents struct {
	ids  []uint64 // ascending, as a slot's records
	strs []string
}

// DecodeRecords decodes the count records of a slot image (FORMAT.md §5 step 6) whose record crcs Check has
// verified. It checks what DecodeRecord checks (content_len, id, UTF-8) and that ids ascend, with one allocation
// per 1 KiB of new contents and one UTF-8 pass over them; with a non-nil prev, contents unchanged since the last
// call are shared, not copied (Contents), and prev then remembers these records. It returns ok = false, and no
// records, when any record fails a check; DecodeRecord, record by record, then says which and why.
func DecodeRecords(img []byte, count uint32, h *Header, prev *Contents) (recs []Record, ok bool) {
	le := binary.LittleEndian
	l := &h.Layout
	stride := int(h.Stride)
	body := img[SlotHeaderSize : SlotHeaderSize+int(count)*stride]
	content := func(i int) []byte {
		rec := body[i*stride : (i+1)*stride]
		return rec[l.Content : l.Content+le.Uint32(rec[l.ContentLen:])]
	}
	recs = make([]Record, count)
	var last uint64
	p := 0 // prev's entries below p have ids below the record's
	// aligned: prev holds these ids at the same positions, so only the entries of new contents need rewriting
	aligned := prev != nil && len(prev.ids) == len(recs)
	for i := range recs {
		rec := body[i*stride : (i+1)*stride]
		n := le.Uint32(rec[l.ContentLen:])
		id := le.Uint64(rec[l.ID:])
		if n > MaxContent || id == 0 || (i > 0 && id <= last) {
			return nil, false
		}
		last = id
		recs[i] = Record{
			ID:          id,
			EffectiveAt: int64(le.Uint64(rec[l.EffectiveAt:])),
			ExpiresAt:   int64(le.Uint64(rec[l.ExpiresAt:])),
			Priority:    int32(le.Uint32(rec[l.Priority:])),
		}
		if prev != nil {
			for p < len(prev.ids) && prev.ids[p] < id {
				p++
			}
			aligned = aligned && p == i && prev.ids[p] == id
		}
		if prev != nil && n > 0 {
			if p < len(prev.ids) && prev.ids[p] == id && prev.strs[p] == string(rec[l.Content:l.Content+n]) {
				recs[i].Content = prev.strs[p]
			}
		}
	}
	// A record still without its content, and with content_len > 0, needs a new string. The new contents go into
	// strings of at most contentChunk bytes, each built without zeroing: a Builder's String is its buffer.
	fresh := func(i int) int {
		if recs[i].Content != "" {
			return 0
		}
		return len(content(i))
	}
	for i := 0; i < len(recs); {
		size, j := 0, i
		for ; j < len(recs); j++ {
			n := fresh(j)
			if size+n > contentChunk && size > 0 {
				break
			}
			size += n
		}
		var sb strings.Builder
		sb.Grow(size)
		for k := i; k < j; k++ {
			if fresh(k) > 0 {
				sb.Write(content(k))
			}
		}
		all := sb.String()
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
	if aligned {
		for i, r := range recs {
			if unsafe.StringData(prev.strs[i]) != unsafe.StringData(r.Content) || len(prev.strs[i]) != len(r.Content) {
				prev.strs[i] = r.Content
			}
		}
	} else if prev != nil {
		prev.ids, prev.strs = prev.ids[:0], prev.strs[:0]
		for _, r := range recs {
			prev.ids = append(prev.ids, r.ID)
			prev.strs = append(prev.strs, r.Content)
		}
	}
	return recs, true
}
