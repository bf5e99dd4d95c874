// Package writer publishes announcement sets into a board region (docs/FORMAT.md §4).
//
// Invariants:
//   - One writer per file: New takes flock(LOCK_EX) on the open file description and fails, naming the holder,
//     when another description holds it. Descriptors dup'ed or passed with SCM_RIGHTS share the lock.
//   - The version never decreases: an existing board keeps its version, and the first publish is above both it and
//     Options.VersionFloor.
//   - A publish writes the slot readers of the current version are not reading, and stores the version last.
//   - The version changes exactly when the content does: publishing the same set again is a no-op.
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

	// The guard (guard.go): whether the mapping is locked in memory, why the last attempt to lock it failed, and
	// the mincore vector of the last residency check.
	locked  bool
	lockErr error
	vec     []byte
	// Healing (heal.go): faults caught and repaired, and repairs by damage kind.
	faults uint64
	healed map[string]uint64
}

// Open creates or opens the board at path (mode 0644: readers need read access only) and returns its writer.
func Open(path string, opts Options) (*Writer, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644) // Go opens with O_CLOEXEC
	if err != nil {
		return nil, fmt.Errorf("open region: %w", err)
	}
	w, err := New(f, opts)
	if err != nil {
		f.Close()
		return nil, err
	}
	return w, nil
}

// New returns a writer for the open region file f. On success the writer owns f (Close closes it); on error the
// caller still does. An empty file becomes a new board; a board keeps its version; anything else is refused.
func New(f *os.File, opts Options) (*Writer, error) {
	if opts.PID == 0 {
		opts.PID = os.Getpid()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Monotonic == nil {
		opts.Monotonic = shm.Monotonic
	}
	w := &Writer{opts: opts, path: f.Name(), f: f, healed: map[string]uint64{}}
	if err := w.lock(); err != nil {
		return nil, err
	}
	if err := w.mapRegion(); err != nil {
		return nil, fmt.Errorf("region %s: %w", w.path, err)
	}
	return w, nil
}

func (w *Writer) lock() error {
	err := unix.Flock(int(w.f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EWOULDBLOCK) {
		return fmt.Errorf("lock region %s: %w", w.path, err)
	}
	holder := "unknown process"
	var line [16]byte
	if n, _ := w.f.ReadAt(line[:], board.OffWriterPID); n == len(line) {
		holder = fmt.Sprintf("pid %d, generation %d", binary.LittleEndian.Uint32(line[0:]), binary.LittleEndian.Uint64(line[8:]))
	}
	return fmt.Errorf("%w: %s is locked by %s", ErrLocked, w.path, holder)
}

func (w *Writer) mapRegion() error {
	st, err := w.f.Stat()
	if err != nil {
		return err
	}
	if st.Size() == 0 {
		err = w.create()
	} else {
		err = w.adopt(st.Size())
	}
	if err != nil {
		w.unmap()
		return err
	}
	w.image = make([]byte, w.hdr.SlotSize)
	w.guardMapping()
	w.initHeader()
	return nil
}

// create lays a new board out in the empty file.
func (w *Writer) create() error {
	size := cmp.Or(w.opts.Size, board.DefaultSize)
	h, err := board.Geometry(size, w.opts.ExtraFields...)
	if err != nil {
		return err
	}
	if err := w.f.Truncate(int64(size)); err != nil {
		return fmt.Errorf("size to %d bytes: %w", size, err)
	}
	w.hdr = h
	return w.mmap(size)
}

// adopt takes over the existing board in the file, which must have the geometry this writer would give it, and
// keeps its version. Each slot is written whole on its first publish (its contents are not known).
func (w *Writer) adopt(fileSize int64) error {
	if fileSize > board.MaxRegionSize || fileSize < board.MinFileSize {
		return fmt.Errorf("existing file is %d bytes, not a board: remove it", fileSize)
	}
	if err := w.mmap(uint64(fileSize)); err != nil {
		return err
	}
	got, err := board.ParseHeader(w.mem, fileSize)
	if err != nil {
		return fmt.Errorf("existing file is not a usable board (%w): remove it", err)
	}
	size := cmp.Or(w.opts.Size, got.RegionSize)
	if got.RegionSize != size || uint64(fileSize) != size {
		return fmt.Errorf("existing board is %d bytes, want %d: remove it or use its size", fileSize, size)
	}
	want, err := board.Geometry(size, w.opts.ExtraFields...)
	if err != nil {
		return err
	}
	if !sameGeometry(&got, &want) {
		return fmt.Errorf("existing board has a different layout (minor %d, %d records of %d bytes; want minor %d, %d of %d): remove it",
			got.Minor, got.Capacity, got.Stride, want.Minor, want.Capacity, want.Stride)
	}
	w.hdr = want
	w.version = w.mem.Load64(board.OffVersion)
	w.shadowN = [2]uint32{want.Capacity, want.Capacity}
	return nil
}

func (w *Writer) mmap(size uint64) error {
	mem, err := unix.Mmap(int(w.f.Fd()), 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("mmap %d bytes: %w", size, err)
	}
	w.mem = mem
	return nil
}

func sameGeometry(a, b *board.Header) bool {
	return a.Minor == b.Minor && a.HeaderSize == b.HeaderSize && a.RegionSize == b.RegionSize &&
		a.Capacity == b.Capacity && a.Stride == b.Stride && a.SlotSize == b.SlotSize && slices.Equal(a.Fields, b.Fields)
}

// initHeader writes the static header (everything but the version word), marks the board live and names us.
func (w *Writer) initHeader() {
	hdr := make([]byte, board.HeaderSize)
	board.EncodeHeader(hdr, &w.hdr)
	binary.LittleEndian.PutUint32(hdr[board.OffState:], uint32(board.StateLive))
	binary.LittleEndian.PutUint64(hdr[board.OffHeartbeat:], uint64(w.opts.Monotonic()))
	binary.LittleEndian.PutUint32(hdr[board.OffWriterPID:], uint32(w.opts.PID))
	binary.LittleEndian.PutUint64(hdr[board.OffGeneration:], w.opts.Generation)
	binary.LittleEndian.PutUint32(hdr[board.OffFutex:], w.mem.Load32(board.OffFutex))
	w.mem.CopyIn(8, hdr[8:])
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

// FullError reports a set larger than the region holds.
type FullError struct{ Count, Capacity int }

func (e *FullError) Error() string {
	return fmt.Sprintf("the region is full: %d announcements, its capacity is %d", e.Count, e.Capacity)
}

// Publish makes recs the board's content and returns the version that shows it. The records are sorted by id;
// ids must be unique. Publishing the content already shown returns the current version without a new one.
func (w *Writer) Publish(recs []board.Record) (uint64, error) {
	if len(recs) > int(w.hdr.Capacity) {
		return 0, &FullError{len(recs), int(w.hdr.Capacity)}
	}
	byID := func(a, b board.Record) int { return cmpUint64(a.ID, b.ID) }
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
		return 0, errors.New("writer is closed")
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
	// The version is live: record it before anything else can fail.
	w.version = next
	w.shadowN[s] = n
	w.last = append(w.last[:0], records...)
	w.published = true
	w.mem.Add32(board.OffFutex, 1)
	if err := w.mem.FutexWake(board.OffFutex); err != nil {
		return next, fmt.Errorf("published version %d but could not wake blocked readers: %w", next, err)
	}
	return next, nil
}

// writeSlot stores img (the slot image from byte 0; its first 8 bytes, the seq, are skipped) into slot s at off,
// between the seq updates of Publish. With a shadow of the slot, only the 64-byte chunks that differ are stored:
// a publish that changes one announcement of thousands writes a few hundred bytes, not the whole slot.
func (w *Writer) writeSlot(s, off uint64, img []byte) {
	sh := w.shadow[s]
	if sh == nil {
		w.mem.CopyIn(off+8, img[8:])
		w.shadow[s] = append(make([]byte, 0, w.hdr.SlotSize), img...)
		return
	}
	if len(sh) < len(img) {
		sh = sh[:len(img)] // the bytes past the shadow's length are zero, as in the slot
	}
	const chunk = 64
	for i := 0; i < len(img); i += chunk {
		lo, hi := i, min(i+chunk, len(img))
		if lo == 0 {
			lo = 8
		}
		if !bytes.Equal(img[lo:hi], sh[lo:hi]) {
			w.mem.CopyIn(off+uint64(lo), img[lo:hi])
			copy(sh[lo:hi], img[lo:hi])
		}
	}
	w.shadow[s] = sh[:len(img)]
}

func cmpUint64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
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
		return errors.New("writer is closed")
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
	if w.closed {
		return nil
	}
	w.closed = true
	w.unmap()
	return w.f.Close()
}

func (w *Writer) unmap() {
	if w.mem != nil {
		_ = unix.Munmap(w.mem) // also unlocks it
		w.mem, w.locked = nil, false
	}
}
