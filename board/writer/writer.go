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
	"math"
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
	last    []byte // encoded records of the published snapshot
	image   []byte // scratch slot image; zero past imageN records
	imageN  uint32
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
	for i := range sorted {
		if err := sorted[i].Validate(); err != nil {
			return 0, fmt.Errorf("announcement %d: %w", sorted[i].ID, err)
		}
		if i > 0 && sorted[i].ID == sorted[i-1].ID {
			return 0, fmt.Errorf("announcement %d appears twice", sorted[i].ID)
		}
	}

	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return 0, errClosed
	}
	n := uint32(len(sorted))
	stride := w.hdr.Stride
	end := board.SlotHeaderSize + n*stride
	img := w.image
	clear(img[:board.SlotHeaderSize+w.imageN*stride])
	w.imageN = n
	for i := range sorted {
		rec := img[board.SlotHeaderSize+uint32(i)*stride : board.SlotHeaderSize+uint32(i+1)*stride]
		board.EncodeRecord(rec, &w.hdr, &sorted[i])
		if w.opts.FillExtra != nil {
			w.opts.FillExtra(rec, &sorted[i])
			board.SealRecord(rec)
		}
	}
	records := img[board.SlotHeaderSize:end]
	if w.published && bytes.Equal(records, w.last) {
		return w.version, nil
	}
	return w.publishImageLocked()
}

// commitLocked publishes w.image (w.imageN records, already encoded) as the next version. w.mu is held.
func (w *Writer) commitLocked() (uint64, error) {
	img, n := w.image, w.imageN
	stride := w.hdr.Stride
	records := img[board.SlotHeaderSize : board.SlotHeaderSize+n*stride]
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
	le.PutUint32(img[board.SlotOffCRC:], board.SlotChecksum(img, n, stride))

	off := w.hdr.SlotOffset(s)
	seq := w.mem.Load64(off + board.SlotOffSeq)
	seq |= 1 // odd; a slot a crash left odd stays odd
	w.mem.Store64(off+board.SlotOffSeq, seq)
	w.writeSlot(s, off, img[:board.SlotHeaderSize+max(n, w.shadowN[s])*stride])
	w.mem.Store64(off+board.SlotOffSeq, seq+1)
	w.mem.Store64(board.OffVersion, next)
	w.showMagic()
	// The version is live: record it before anything else can fail.
	w.version = next
	w.shadowN[s] = n
	w.last = append(w.last[:0], records...)
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

// writeSlot stores img (the slot image from byte 0; its first 8 bytes, the seq, are skipped) into slot s at off,
// between the seq updates of a commit. Only the 64-byte chunks that differ from what the slot holds are stored: a
// publish that changes one announcement of thousands writes a few hundred bytes. Comparing with the slot itself,
// not with what this writer last wrote there, makes every published snapshot whole, even when bytes of the slot
// were overwritten from outside since (FORMAT.md §4 step 3). The shadow, what was written, is kept for Check.
func (w *Writer) writeSlot(s, off uint64, img []byte) {
	slot := w.mem[off : off+uint64(len(img))]
	sh := w.shadow[s]
	known := len(sh) >= len(img) // else the shadow is rebuilt whole below
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
	w.shadow[s] = sh[:len(img)]
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
