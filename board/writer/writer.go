// Package writer publishes announcement sets into a board region (docs/FORMAT.md §4).
//
// Invariants:
//   - One writer per file: New takes flock(LOCK_EX) on the open file description and fails, naming the holder,
//     when another description holds it. Descriptors dup'ed or passed with SCM_RIGHTS share the lock.
//   - The version never decreases: the first publish is above every version the file still shows and above
//     Options.VersionFloor (open.go); every repair publishes above the last version published.
//   - A publish writes the slot readers of the current version are not reading, makes it whole (what differs
//     from the image is written, whatever wrote it), and stores the version last.
//   - The version changes exactly when the content does: publishing the same set again is a no-op.
//   - The writer never follows a symlink at its path nor writes a file it does not own (internal/securefs); a new
//     file appears at the path only with a published version in it.
//   - Nothing in the file it is given makes New fail, but a live writer's lock: damage is repaired (open.go).
//   - Every access to the mapping runs under catching: a fault (the file shrank) is repaired, never a crash.
//   - Unless Options.NoLock, the mapping is locked in memory (mlock) before anything is written into it; when
//     the lock is refused, every page is brought in anyway, Locked says why, and the writer works the same.
//
// A Writer is safe for concurrent use; Publisher coalesces concurrent publishes into one.
package writer

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"math/bits"
	"os"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/announcementd/announcementd/board"
	"github.com/announcementd/announcementd/board/internal/shm"
)

// Options configure a Writer. The zero value is usable.
type Options struct {
	// Size of a new region; an existing board must have this size unless Size is 0. Default board.DefaultSize.
	Size uint64
	// Generation is the worker generation written into the header.
	Generation uint64
	// VersionFloor: the first publish gets a version above it (e.g. the highest version the store remembers).
	VersionFloor uint64
	// PID written into the header; default os.Getpid(). Golden tests set it for reproducible files.
	PID int
	// ExtraFields are appended to the 1.0 record layout, making the region a newer minor. Tests use it to prove
	// that readers ignore fields they do not know; the bytes stay zero unless FillExtra sets them.
	ExtraFields []board.Field
	// FillExtra, when set, fills the extra fields of each encoded record (rec is the whole record).
	FillExtra func(rec []byte, r *board.Record)
	// Now and Monotonic are the clocks for published_at and heartbeat_ns.
	Now       func() time.Time
	Monotonic func() int64
	// NoLock leaves the mapping as mmap made it: not locked in memory, its pages not brought in (guard.go). For
	// tools and tests; the daemon locks.
	NoLock bool
	// RecreateJump: when the file shows no version at or above VersionFloor (it is new, zeroed, unreadable, or
	// behind the floor), the first publish continues this far above VersionFloor, which may trail what readers
	// saw of a board that is gone (open.go). The daemon sets it; 0 continues just above the floor.
	RecreateJump uint64
}

// ErrLocked is matched by the error New returns when another writer holds the file.
var ErrLocked = errors.New("region is held by another writer")

// Writer publishes snapshots into one board file.
type Writer struct {
	opts Options
	path string
	f    *os.File
	mem  shm.Mem
	hdr  board.Header

	mu      sync.Mutex
	version uint64
	// shadow[s] is a copy of slot s as this writer last wrote it, from byte 8 on (the seq word is not shadowed);
	// shadowN[s] its record count. A publish writes only the 64-byte chunks that differ from the shadow. A slot
	// this writer has not written yet (a reopened board) has a nil shadow and is written whole.
	shadow  [2][]byte
	shadowN [2]uint32
	// image is the slot image of the set last handed to Publish: imageN records encoded, zero past them, and recs
	// those records as given (so a publish encodes only what differs from them: encodeLocked). shown: the image
	// is what the board shows at w.version.
	image  []byte
	imageN uint32
	recs   []board.Record
	shown  bool
	// written[s] is what this writer knows of slot s without reading it: the CRC of its bytes [12, 64 + n ×
	// stride) as the last commit into it wrote them, and dirty, the records of the image changed since (a bit
	// each). A commit checks the slot against that CRC and, when it matches, writes only the dirty records
	// (writeSlot).
	written [2]slotState
	diff    []byte // scratch for crcDelta
	// published: this writer has published; until then even an identical set is republished, which also
	// repairs a slot a crashed writer left mid-publish.
	published bool
	closed    bool

	// Opening (open.go): install, the file has no name yet and the next commit puts it at path; retire, the file
	// readers had at path before, marked superseded once the install is done; moved, a duplicate of a file the
	// writer moved to, for TakeMoved; magicHidden, the magic was cleared and the next commit writes it back; note,
	// what New made of the file.
	install     bool
	spent       bool // the new file could not be put at path and never can: renewLocked
	retire      *mapping
	moved       *os.File
	magicHidden bool
	note        string

	// The guard (guard.go): whether the mapping is locked in memory, why the last attempt to lock it failed, and
	// the mincore vector of the last residency check.
	locked  bool
	lockErr error
	vec     []byte
	// Healing (heal.go): faults caught and repaired, and repairs by damage kind.
	faults uint64
	healed map[string]uint64
}

// Path is the file the writer publishes into.
func (w *Writer) Path() string { return w.path }

// Capacity is the number of records a snapshot can hold.
func (w *Writer) Capacity() int { return int(w.hdr.Capacity) }

// Header is the region's geometry.
func (w *Writer) Header() board.Header { return w.hdr }

// Version is the published version (0 before the first publish of a new board).
func (w *Writer) Version() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.version
}

// Publish makes recs the board's content and returns the version that shows it. The records are sorted by id;
// ids must be unique. Publishing the content already shown returns the current version without a new one.
//
// Only the records that differ from the previous call's are validated and encoded (encodeLocked), and the commit
// writes only what changed since the slot was last written, after checking that the slot still holds what was
// written there (writeSlot): what a publish costs grows with what changed, plus one CRC pass over the slot it
// writes and one over the snapshot it publishes.
func (w *Writer) Publish(recs []board.Record) (uint64, error) {
	if len(recs) > int(w.hdr.Capacity) {
		return 0, &board.FullError{Count: len(recs), Capacity: int(w.hdr.Capacity)}
	}
	byID := func(a, b board.Record) int { return cmp.Compare(a.ID, b.ID) }
	sorted := recs
	if !slices.IsSortedFunc(recs, byID) {
		sorted = slices.Clone(recs)
		slices.SortFunc(sorted, byID)
	}
	for i := 1; i < len(sorted); i++ {
		if sorted[i].ID == sorted[i-1].ID {
			return 0, fmt.Errorf("announcement %d appears twice", sorted[i].ID)
		}
	}

	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return 0, errClosed
	}
	changed, err := w.encodeLocked(sorted)
	if err != nil {
		return 0, err
	}
	if w.published && w.shown && !changed {
		return w.version, nil
	}
	return w.publishImageLocked()
}

// encodeLocked makes w.image the encoding of recs (sorted, ids unique), encoding only the records that differ from
// w.recs, the set it encodes now: the common head and tail are kept (the tail moved in the image when the count
// changed), and of the records between, only those that differ from the one at their place. It validates what it
// encodes before changing anything (the others passed when they were encoded) and marks what it changed dirty in
// both slots. changed: the image differs from before. w.mu is held.
func (w *Writer) encodeLocked(recs []board.Record) (changed bool, err error) {
	old := w.recs
	n, m := len(recs), len(old)
	p := 0
	for p < min(n, m) && recs[p] == old[p] {
		p++
	}
	q := 0
	for q < min(n, m)-p && recs[n-1-q] == old[m-1-q] {
		q++
	}
	if n == m && p == n {
		return false, nil
	}
	mid := recs[p : n-q] // replaces old[p : m-q]
	for i := range mid {
		if err := mid[i].Validate(); err != nil {
			return false, fmt.Errorf("announcement %d: %w", mid[i].ID, err)
		}
	}
	stride := int(w.hdr.Stride)
	at := func(i int) int { return board.SlotHeaderSize + i*stride }
	img := w.image
	if n != m && q > 0 { // the common tail moves from [m-q, m) to [n-q, n)
		copy(img[at(n-q):at(n)], img[at(m-q):at(m)])
		w.markDirty(n-q, n)
	}
	if n < m { // records past the new count are zero
		clear(img[at(n):at(m)])
		w.markDirty(n, m)
	}
	for i := p; i < n-q; i++ {
		if n == m && recs[i] == old[i] {
			continue
		}
		w.encodeAt(img[at(i):at(i+1)], i, &recs[i])
	}
	w.recs = slices.Replace(old, p, m-q, mid...)
	w.imageN = uint32(n)
	w.shown = false
	return true, nil
}

// Update changes the board's content by puts (added, or replacing the record with their id) and deletes (ids
// removed; an id not shown is ignored) and returns the version that shows the result, without being handed the
// whole set: its cost grows with the changes (and the records they move: an insertion or a removal moves the
// records after it), plus the check of the slot a commit writes. An id in both is deleted. A result over the
// capacity is refused with a *board.FullError and changes nothing; so is an invalid put. A change that leaves the
// content as shown returns the current version without a new one.
func (w *Writer) Update(puts []board.Record, deletes []uint64) (uint64, error) {
	for i := range puts {
		if err := puts[i].Validate(); err != nil {
			return 0, fmt.Errorf("announcement %d: %w", puts[i].ID, err)
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return 0, errClosed
	}
	changed, err := w.updateLocked(puts, deletes)
	if err != nil {
		return 0, err
	}
	if w.published && w.shown && !changed {
		return w.version, nil
	}
	return w.publishImageLocked()
}

// updateLocked applies puts and deletes to w.recs and w.image, encoding only the records put and moving those
// after an insertion or a removal, marking what it changed dirty (as encodeLocked). w.mu is held.
func (w *Writer) updateLocked(puts []board.Record, deletes []uint64) (changed bool, err error) {
	find := func(id uint64) (int, bool) {
		return slices.BinarySearchFunc(w.recs, id, func(r board.Record, id uint64) int { return cmp.Compare(r.ID, id) })
	}
	gone := make(map[uint64]bool, len(deletes))
	for _, id := range deletes {
		gone[id] = true
	}
	// The count after, checked before anything changes.
	n := len(w.recs)
	added := make(map[uint64]bool, len(puts))
	for i := range puts {
		id := puts[i].ID
		if _, found := find(id); !found && !gone[id] && !added[id] {
			added[id] = true
			n++
		}
	}
	for id := range gone {
		if _, found := find(id); found {
			n--
		}
	}
	if n > int(w.hdr.Capacity) {
		return false, &board.FullError{Count: n, Capacity: int(w.hdr.Capacity)}
	}
	stride := int(w.hdr.Stride)
	at := func(i int) int { return board.SlotHeaderSize + i*stride }
	img := w.image
	for _, id := range deletes {
		i, found := find(id)
		if !found {
			continue
		}
		m := len(w.recs)
		copy(img[at(i):at(m-1)], img[at(i+1):at(m)])
		clear(img[at(m-1):at(m)])
		w.markDirty(i, m)
		w.recs = slices.Delete(w.recs, i, i+1)
		changed = true
	}
	for k := range puts {
		r := &puts[k]
		if gone[r.ID] {
			continue
		}
		i, found := find(r.ID)
		if found && w.recs[i] == *r {
			continue
		}
		if !found {
			m := len(w.recs)
			copy(img[at(i+1):at(m+1)], img[at(i):at(m)])
			w.markDirty(i+1, m+1)
			w.recs = slices.Insert(w.recs, i, *r)
		} else {
			w.recs[i] = *r
		}
		w.encodeAt(img[at(i):at(i+1)], i, r)
		changed = true
	}
	if changed {
		w.imageN = uint32(len(w.recs))
		w.shown = false
	}
	return changed, nil
}

// encodeAt encodes r as record i of the image, into rec (its bytes), and marks it changed.
func (w *Writer) encodeAt(rec []byte, i int, r *board.Record) {
	clear(rec)
	board.EncodeRecord(rec, &w.hdr, r)
	if w.opts.FillExtra != nil {
		w.opts.FillExtra(rec, r)
		board.SealRecord(rec)
	}
	w.markDirty(i, i+1)
}

// slotState is what a writer knows of one slot: Writer.written.
type slotState struct {
	known bool // a commit wrote the slot, and crc and n describe what it wrote
	crc   uint32
	n     uint32
	dirty []uint64 // bit i: record i of the image changed since that commit
}

// markDirty marks records [lo, hi) of the image changed, for both slots.
func (w *Writer) markDirty(lo, hi int) {
	for s := range w.written {
		st := &w.written[s]
		if st.dirty == nil {
			st.dirty = make([]uint64, (w.hdr.Capacity+63)/64)
		}
		for i := lo; i < hi; i++ {
			st.dirty[i/64] |= 1 << (i % 64)
		}
	}
}

// commitLocked publishes w.image (w.imageN records, already encoded) as the next version. w.mu is held.
func (w *Writer) commitLocked() (uint64, error) {
	img, n := w.image, w.imageN
	stride := w.hdr.Stride
	if w.version == math.MaxUint64 || w.opts.VersionFloor >= math.MaxUint64-1 {
		return 0, errors.New("the version would overflow 64 bits")
	}
	next := w.version + 1
	if next <= w.opts.VersionFloor {
		next = w.opts.VersionFloor + 1
		if (next-w.version)%2 == 0 { // land in the slot readers are not on
			next++
		}
	}
	s := next & 1
	le := binary.LittleEndian
	le.PutUint32(img[board.SlotOffCount:], n)
	le.PutUint64(img[board.SlotOffVersion:], next)
	le.PutUint64(img[board.SlotOffPublishedAt:], uint64(w.opts.Now().UnixNano()))

	off := w.hdr.SlotOffset(s)
	seq := w.mem.Load64(off + board.SlotOffSeq)
	seq |= 1 // odd; a slot a crash left odd stays odd
	w.mem.Store64(off+board.SlotOffSeq, seq)
	crc := w.writeSlot(s, off, img[:board.SlotHeaderSize+max(n, w.shadowN[s])*stride], n)
	w.written[s].known, w.written[s].crc, w.written[s].n = true, crc, n
	w.mem.Store64(off+board.SlotOffSeq, seq+1)
	w.mem.Store64(board.OffVersion, next)
	w.showMagic()
	// The version is live: record it before anything else can fail.
	w.version = next
	w.shadowN[s] = n
	w.shown = true
	w.published = true
	w.mem.Add32(board.OffFutex, 1)
	if err := w.mem.FutexWake(board.OffFutex); err != nil {
		return next, fmt.Errorf("published version %d but could not wake blocked readers: %w", next, err)
	}
	if w.install {
		if err := w.installLocked(); err != nil {
			return next, fmt.Errorf("published version %d into a new file: %w", next, err)
		}
	}
	return next, nil
}

// writeSlot stores img (the slot image from byte 0; its first 8 bytes, the seq, are skipped; n records) into slot
// s at off, between the seq updates of a commit, and makes the whole slot what img says (FORMAT.md §4 step 3),
// whatever wrote into it since this writer did. It sets the slot crc (in img too) and returns it.
//
// When the slot still holds what this writer's last commit into it wrote (its bytes [12, 64 + n × stride) have
// the CRC that commit wrote: written[s]), the slot differs from img only in the header and in the records
// changed since (written[s].dirty): only those are written. The check reads the slot once at CRC speed, where
// comparing it with img reads both; it is the check readers accept a snapshot on. Then the new slot crc follows
// from the checked one and what the write changes (crcDelta), when the count is the same and few records
// changed, instead of a pass over the whole snapshot. Otherwise (a slot not written yet, a shadow forgotten by a
// repair, or bytes changed from outside) every 64-byte chunk that differs from the slot is stored: a publish that
// changes one announcement of thousands writes a few hundred bytes. Comparing with the slot itself, not with
// what this writer last wrote there, makes every published snapshot whole. The shadow, what was written, is kept
// for Check.
func (w *Writer) writeSlot(s, off uint64, img []byte, n uint32) (crc uint32) {
	st := &w.written[s]
	known := st.known
	st.known = false // until this write is done
	sh := w.shadow[s]
	stride := int(w.hdr.Stride)
	le := binary.LittleEndian
	if known && len(sh) >= len(img) {
		end := board.SlotHeaderSize + int(st.n)*stride
		if was := crc32.ChecksumIEEE(w.mem[off+board.SlotCRCStart : off+uint64(end)]); was == st.crc {
			dirty := 0
			for _, word := range st.dirty {
				dirty += bits.OnesCount64(word)
			}
			if st.n == n && dirty <= int(n)/8 {
				crc = was ^ w.crcDelta(off, img, end, st.dirty)
			} else {
				crc = board.SlotChecksum(img, n, uint32(stride))
			}
			le.PutUint32(img[board.SlotOffCRC:], crc)
			w.mem.CopyIn(off+8, img[8:board.SlotHeaderSize])
			copy(sh[8:board.SlotHeaderSize], img[8:board.SlotHeaderSize])
			for i := range dirtyRecords(st.dirty) {
				lo := board.SlotHeaderSize + i*stride
				if lo >= len(img) { // past both counts: zero in img and in the slot
					continue
				}
				w.mem.CopyIn(off+uint64(lo), img[lo:lo+stride])
				copy(sh[lo:lo+stride], img[lo:lo+stride])
			}
			clear(st.dirty)
			w.shadow[s] = sh[:len(img)]
			return crc
		}
	}
	crc = board.SlotChecksum(img, n, uint32(stride))
	le.PutUint32(img[board.SlotOffCRC:], crc)
	slot := w.mem[off : off+uint64(len(img))]
	known = len(sh) >= len(img) // else the shadow is rebuilt whole below
	const chunk = 64
	for lo := 8; lo < len(img); {
		hi := min(lo-lo%chunk+chunk, len(img))
		if !bytes.Equal(img[lo:hi], slot[lo:hi]) {
			w.mem.CopyIn(off+uint64(lo), img[lo:hi])
			if known {
				copy(sh[lo:hi], img[lo:hi])
			}
		}
		lo = hi
	}
	if !known {
		sh = append(sh[:0], img...)
	}
	clear(st.dirty)
	w.shadow[s] = sh[:len(img)]
	return crc
}

// dirtyRecords yields the records whose bit is set.
func dirtyRecords(dirty []uint64) func(func(int) bool) {
	return func(yield func(int) bool) {
		for wi, word := range dirty {
			for word != 0 {
				if !yield(wi*64 + bits.TrailingZeros64(word)) {
					return
				}
				word &= word - 1
			}
		}
	}
}

// crcDelta is what changes the slot crc when the bytes [12, end) of the slot at off (checked against the crc
// they have) become those of img, which differ from them only in the slot header and the dirty records (all
// before end). CRC-32 is affine: for two messages of one length, crc(a) ^ crc(b) is the CRC of a ^ b with a zero
// initial value and no final xor, and a block of a ^ b that is zero but for bytes [o, o+k) has the CRC of those
// k bytes multiplied by x^(8·(length − o − k)) modulo the polynomial (as zlib's crc32_combine shifts a CRC).
// So the change costs a CRC of each changed block, not of the whole snapshot.
func (w *Writer) crcDelta(off uint64, img []byte, end int, dirty []uint64) uint32 {
	stride := int(w.hdr.Stride)
	if cap(w.diff) < stride {
		w.diff = make([]byte, stride)
	}
	slot := w.mem[off : off+uint64(end)]
	block := func(lo, hi int) uint32 {
		d := w.diff[:hi-lo]
		for i := range d {
			d[i] = slot[lo+i] ^ img[lo+i]
		}
		c := ^crc32.Update(^uint32(0), crc32.IEEETable, d) // zero initial value, no final xor
		return board.ShiftCRC(c, uint64(end-hi))
	}
	delta := block(board.SlotCRCStart, board.SlotHeaderSize)
	for i := range dirtyRecords(dirty) {
		lo := board.SlotHeaderSize + i*stride
		if lo+stride <= end {
			delta ^= block(lo, lo+stride)
		}
	}
	return delta
}

// Heartbeat stores the writer's CLOCK_MONOTONIC time; call it about once a second.
func (w *Writer) Heartbeat() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	err := catching(func() error {
		w.mem.Store64(board.OffHeartbeat, uint64(w.opts.Monotonic()))
		return nil
	})
	if err != nil && w.published { // the file shrank: restore it now rather than at the next check
		_, _ = w.recoverLocked(err) // a failure stays for the integrity check to report
	}
}

// Supersede marks the board superseded and wakes blocked readers, telling them to reopen the path.
func (w *Writer) Supersede() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return errClosed
	}
	return catching(func() error {
		w.mem.Store32(board.OffState, uint32(board.StateSuperseded))
		w.mem.Add32(board.OffFutex, 1)
		return w.mem.FutexWake(board.OffFutex)
	})
}

// Close unmaps the region and closes the file (releasing the lock unless another descriptor shares it). The
// board stays readable at its last version.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.closeLocked()
}

func (w *Writer) closeLocked() error {
	if w.closed {
		return nil
	}
	w.closed = true
	w.unmap()
	if w.retire != nil {
		w.retire.unmap()
		w.retire.f.Close()
		w.retire = nil
	}
	if w.moved != nil {
		w.moved.Close()
		w.moved = nil
	}
	return w.f.Close()
}

func (w *Writer) unmap() {
	if w.mem != nil {
		_ = unix.Munmap(w.mem) // also unlocks it
		w.mem, w.locked = nil, false
	}
}
