package writer

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"os"
	"path/filepath"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/announcementd/announcementd/board"
	"github.com/announcementd/announcementd/board/internal/shm"
	"github.com/announcementd/announcementd/internal/fdutil"
	"github.com/announcementd/announcementd/internal/securefs"
)

// Opening a region: what the writer finds in the file it is given, and what it makes of it (docs/HEALTH.md,
// "Starting on a damaged board"). Nothing but a live writer holding the file's lock makes it refuse:
//
//   - a file without a name and empty (new, from securefs.OpenOrCreate): laid out here, and put at its path by the
//     first publish, so that readers never find a board that holds no version;
//   - a board of the asked geometry: adopted, its version kept;
//   - a damaged file (the wrong size, a bad magic or layout, zeros, garbage): repaired in place: the magic hidden
//     first, the size and header restored, the magic written back by the first publish, after the version;
//   - a valid board of another geometry, or one no longer at its path (removed or replaced there): moved to a new
//     file of the asked geometry, which the first publish puts at the path before it marks the old one superseded.
//
// In every case the first publish continues above each version the file still shows (the version word when the
// magic is the board's and the word below 2^63, each slot that passes its checksum) and above
// Options.VersionFloor. When the file
// shows none at or above the floor (it is new, zeroed or unreadable), versions that readers saw may be lost with
// it, so the first publish continues Options.RecreateJump above the floor.

// Open opens the board at path as the daemon's supervisor does (securefs.OpenOrCreate: an existing file of ours
// whatever its contents, else a new file without a name) and returns its writer. A new board is put at path at
// once, at version 0 (readers see "not published"): tools and tests expect the file to be there. The daemon hands
// its workers the file instead (New), and a new board appears at its path with its first version.
func Open(path string, opts Options) (*Writer, error) {
	f, _, err := securefs.OpenOrCreate(path, 0o644) // readers need read access only
	if err != nil {
		return nil, fmt.Errorf("region: %w", err)
	}
	w, err := New(f, opts)
	if err != nil {
		f.Close()
		return nil, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.install && w.retire == nil {
		if err := w.installLocked(); err != nil {
			w.closeLocked()
			return nil, err
		}
	}
	return w, nil
}

// New returns a writer for the open region file f, whose name is the region's path. On success the writer owns f
// (Close closes it); on error the caller still does. See "Opening a region" above for what it makes of f.
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
	if err := lock(f, w.path); err != nil {
		return nil, err
	}
	if err := w.openRegion(); err != nil {
		w.unmap()
		if w.f != f { // a new file of a move
			w.f.Close()
		}
		if w.retire != nil {
			w.retire.unmap()
		}
		return nil, fmt.Errorf("region %s: %w", w.path, err)
	}
	return w, nil
}

// lock takes the writer's lock on f, or names the writer that holds it.
func lock(f *os.File, path string) error {
	err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EWOULDBLOCK) {
		return fmt.Errorf("lock region %s: %w", path, err)
	}
	holder := "unknown process"
	var line [16]byte
	if n, _ := f.ReadAt(line[:], board.OffWriterPID); n == len(line) {
		holder = fmt.Sprintf("pid %d, generation %d", binary.LittleEndian.Uint32(line[0:]), binary.LittleEndian.Uint64(line[8:]))
	}
	return fmt.Errorf("%w: %s is locked by %s", ErrLocked, path, holder)
}

// found is what a region file shows, read with pread (a file that shrinks meanwhile makes a short read, not a
// fault).
type found struct {
	size   int64
	linked bool         // the file has a name
	atPath bool         // and it is what the path names
	magic  bool         // the magic is the board's: readers took the version word for one
	word   uint64       // the version word, when the magic is valid and the word plausible
	hdr    board.Header // the header, when err is nil
	err    error        // why the file is not a whole, valid board
}

// maxPlausible bounds the versions a writer continues from: a higher word is garbage, not a version anyone
// published (at a million publishes a second, 2^63 takes 292,000 years), and continuing above it could
// overflow.
const maxPlausible = 1 << 63

func inspect(f *os.File, path string) (found, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return found{}, fmt.Errorf("fstat: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return found{}, errors.New("not a regular file")
	}
	fd := found{size: st.Size, linked: st.Nlink > 0}
	if fd.linked {
		var at unix.Stat_t
		fd.atPath = unix.Lstat(path, &at) == nil && at.Dev == st.Dev && at.Ino == st.Ino
	}
	hdr := make([]byte, min(st.Size, board.HeaderSize))
	n, _ := f.ReadAt(hdr, 0)
	hdr = hdr[:n]
	if n >= board.OffMagic+8 && string(hdr[board.OffMagic:board.OffMagic+8]) == board.Magic {
		fd.magic = true
		if v := binary.LittleEndian.Uint64(hdr[board.OffVersion:]); v < maxPlausible {
			fd.word = v
		}
	}
	switch fd.hdr, fd.err = board.ParseHeader(hdr, st.Size); {
	case st.Size == 0:
		fd.err = errors.New("the file is empty")
	case fd.err == nil && uint64(st.Size) != fd.hdr.RegionSize:
		fd.err = fmt.Errorf("the file is %d bytes, its header says %d", st.Size, fd.hdr.RegionSize)
	}
	return fd, nil
}

// slotVersion is the version of slot s of a board with geometry h when the slot's bytes in f pass its checksum
// (a snapshot readers may have accepted), else 0.
func slotVersion(f *os.File, h *board.Header, s uint64) uint64 {
	slot := make([]byte, h.SlotSize)
	if n, _ := f.ReadAt(slot, int64(h.SlotOffset(s))); n != len(slot) {
		return 0
	}
	le := binary.LittleEndian
	count := le.Uint32(slot[board.SlotOffCount:])
	if le.Uint64(slot[board.SlotOffSeq:])%2 != 0 || count > h.Capacity {
		return 0
	}
	if crc32.ChecksumIEEE(slot[board.SlotCRCStart:board.SlotHeaderSize+count*h.Stride]) != le.Uint32(slot[board.SlotOffCRC:]) {
		return 0
	}
	if v := le.Uint64(slot[board.SlotOffVersion:]); v < maxPlausible {
		return v
	}
	return 0
}

func (w *Writer) openRegion() error {
	fd, err := inspect(w.f, w.path)
	if err != nil {
		return err
	}
	size := w.opts.Size
	if size == 0 && fd.err == nil {
		size = fd.hdr.RegionSize // keep the board's size
	}
	want, err := board.Geometry(cmp.Or(size, board.DefaultSize), w.opts.ExtraFields...)
	if err != nil {
		return err
	}
	w.hdr = want
	w.image = make([]byte, want.SlotSize)
	w.shadowN = [2]uint32{want.Capacity, want.Capacity}

	// The versions readers may have seen, and whether the file tells them all: its version word is above every
	// slot's and at or above the floor (a file behind the floor is not the one the last publishes went to).
	geo := &want
	if fd.err == nil {
		geo = &fd.hdr
	}
	var slots uint64
	if fd.size >= int64(geo.SlotOffset(1)+uint64(geo.SlotSize)) {
		slots = max(slotVersion(w.f, geo, 0), slotVersion(w.f, geo, 1))
	}
	seen := max(fd.word, slots)
	floor := w.opts.VersionFloor
	trusted := fd.magic && fd.word >= slots && seen >= floor
	if !trusted {
		if floor > 0 && w.opts.RecreateJump > 0 {
			if floor > math.MaxUint64/2 {
				return errors.New("the version floor is past 2^63: not a version anyone published")
			}
			floor += w.opts.RecreateJump
		}
	}
	w.version = fd.word
	w.opts.VersionFloor = max(floor, seen)

	switch {
	case !fd.linked && fd.size == 0: // new: laid out here, put at the path by the first publish
		w.note = "new"
		w.install = true
		return w.layOut(w.f, false)
	case !fd.atPath || (fd.err == nil && !sameGeometry(&fd.hdr, &want)):
		w.note = "moved to a new file: the board is no longer at its path"
		if fd.atPath {
			w.note = fmt.Sprintf("moved to a new file of %d bytes (%d records): the board has %d bytes (%d records)",
				want.RegionSize, want.Capacity, fd.hdr.RegionSize, fd.hdr.Capacity)
		}
		return w.moveLocked()
	case fd.err != nil:
		w.note = "repaired in place: " + fd.err.Error()
		return w.layOut(w.f, true)
	default: // the board as it should be
		if !trusted && fd.size > 0 {
			w.note = fmt.Sprintf("the version word (%d) does not show the last version: continuing above %d", fd.word, w.opts.VersionFloor)
		}
		if err := w.mmap(w.f, want.RegionSize); err != nil {
			return err
		}
		w.guardMapping()
		return catching(func() error {
			w.initHeader(false)
			return nil
		})
	}
}

// layOut gives f the region's size and header (everything but the version word, which the first publish writes).
// With hide, f may be open in readers: its magic is cleared first, and the first publish writes it back last.
func (w *Writer) layOut(f *os.File, hide bool) error {
	size := w.hdr.RegionSize
	if hide {
		if _, err := f.WriteAt(make([]byte, 8), board.OffMagic); err != nil {
			return fmt.Errorf("hide the magic: %w", err)
		}
		// What follows the header is the writer's to fill: zero it (a hole; mlock brings the pages in again).
		if st, err := f.Stat(); err == nil && st.Size() > board.HeaderSize {
			_ = unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, board.HeaderSize, st.Size()-board.HeaderSize)
		}
	}
	if err := f.Truncate(int64(size)); err != nil {
		return fmt.Errorf("size to %d bytes: %w", size, err)
	}
	if err := w.mmap(f, size); err != nil {
		return err
	}
	w.guardMapping()
	return catching(func() error {
		w.initHeader(hide)
		return nil
	})
}

// moveLocked lays the region out in a new file next to the path (the writer's file from now on), keeping the one
// it has to be marked superseded once the new one is at the path (installLocked).
func (w *Writer) moveLocked() error {
	dir, name := filepath.Split(w.path)
	d, err := securefs.OpenDir(cmp.Or(dir, "."))
	if err != nil {
		return err
	}
	defer d.Close()
	nf, err := d.Create(name, 0o644)
	if err != nil {
		return err
	}
	if err := unix.Flock(int(nf.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		nf.Close()
		return fmt.Errorf("lock the new region: %w", err)
	}
	old := &mapping{f: w.f, mem: w.mem, locked: w.locked}
	if old.mem == nil { // New: the old file is not mapped; its header page is enough to mark it superseded
		old.mem, _ = unix.Mmap(int(old.f.Fd()), 0, board.HeaderSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	}
	w.f, w.mem, w.locked = nf, nil, false
	if err := w.layOut(nf, false); err != nil {
		w.unmap()
		nf.Close()
		w.f, w.mem, w.locked = old.f, old.mem, old.locked
		return err
	}
	w.retire, w.install = old, true
	return nil
}

// renewLocked replaces a new file that can no longer be put at the path (securefs.ErrSpent) by another new file,
// for the next commit to install; the file to retire stays the same.
func (w *Writer) renewLocked() error {
	retire := w.retire
	w.retire = nil
	if err := w.moveLocked(); err != nil {
		w.retire = retire
		return err
	}
	w.retire.unmap()
	w.retire.f.Close()
	w.retire, w.spent = retire, false
	w.shadow, w.shadowN = [2][]byte{}, [2]uint32{w.hdr.Capacity, w.hdr.Capacity}
	return nil
}

// mapping is a region file and its mapping, kept until it is retired.
type mapping struct {
	f      *os.File
	mem    shm.Mem
	locked bool
}

func (m *mapping) unmap() {
	if m.mem != nil {
		_ = unix.Munmap(m.mem)
		m.mem = nil
	}
}

// installLocked puts the writer's file at its path (it has no name yet), replacing what is there unless it is a
// board another writer holds; then it retires the file readers had open there, marking it superseded and waking
// its waiters, who reopen the path. A file the writer moved to goes to TakeMoved.
func (w *Writer) installLocked() error {
	dir, name := filepath.Split(w.path)
	d, err := securefs.OpenDir(cmp.Or(dir, "."))
	if err != nil {
		return fmt.Errorf("put the region at %s: %w", w.path, err)
	}
	defer d.Close()
	err = d.Install(w.f, name, func(e securefs.Entry) error {
		if e.Ours() != nil {
			return nil // another's file, a symlink, ...: replaced (OpenOrCreate checked that it may be)
		}
		if w.retire != nil && e.Is(w.retire.f) {
			return nil // the board this writer moves from
		}
		if inUse(d, name) {
			return fmt.Errorf("%w: %s is another writer's board", ErrLocked, w.path)
		}
		return nil
	})
	if err != nil {
		w.spent = errors.Is(err, securefs.ErrSpent)
		return fmt.Errorf("put the region at %s: %w", w.path, err)
	}
	w.install = false
	if old := w.retire; old != nil {
		w.retire = nil
		if old.mem != nil {
			_ = catching(func() error { // the old file may have been truncated too: the stores may fault
				old.mem.Store32(board.OffState, uint32(board.StateSuperseded))
				old.mem.Add32(board.OffFutex, 1)
				return old.mem.FutexWake(board.OffFutex)
			})
		}
		old.unmap()
		old.f.Close()
		moved, err := fdutil.Dup(w.f, w.path)
		if err != nil {
			return err
		}
		if w.moved != nil {
			w.moved.Close()
		}
		w.moved = moved
	}
	return nil
}

// inUse reports whether the board at name in d is locked by a writer.
func inUse(d *securefs.Dir, name string) bool {
	f, err := d.Open(name, os.O_RDONLY)
	if err != nil {
		return false
	}
	defer f.Close()
	return errors.Is(unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB), unix.EWOULDBLOCK)
}

// TakeMoved returns the file the writer moved to since the last call (a duplicate the caller owns), or nil: the
// process that keeps the region's fd for the next writer needs it. The writer moves when its board was removed or
// replaced at its path, or had another geometry.
func (w *Writer) TakeMoved() *os.File {
	w.mu.Lock()
	defer w.mu.Unlock()
	f := w.moved
	w.moved = nil
	return f
}

// Opened says what New made of the file: "" when it adopted an intact board, else what it did ("new", "repaired
// in place: ...", "moved to a new file ...").
func (w *Writer) Opened() string { return w.note }

func (w *Writer) mmap(f *os.File, size uint64) error {
	mem, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
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

// magicWord is the magic as the uint64 at OffMagic.
var magicWord = binary.NativeEndian.Uint64([]byte(board.Magic)) // Store64 stores in native order

// initHeader writes the static header (everything but the version word), marks the board live and names us. With
// hide, the magic is cleared (the first word stored), and the next commit writes it after the version: a reader
// sees a file it refuses, or the header with a published version, never a valid magic over a stale version word.
// It may fault: callers run it in catching.
func (w *Writer) initHeader(hide bool) {
	if hide {
		w.mem.Store64(board.OffMagic, 0)
		w.magicHidden = true
	}
	hdr := make([]byte, board.HeaderSize)
	board.EncodeHeader(hdr, &w.hdr)
	le := binary.LittleEndian
	le.PutUint32(hdr[board.OffState:], uint32(board.StateLive))
	le.PutUint64(hdr[board.OffHeartbeat:], uint64(w.opts.Monotonic()))
	le.PutUint32(hdr[board.OffWriterPID:], uint32(w.opts.PID))
	le.PutUint64(hdr[board.OffGeneration:], w.opts.Generation)
	le.PutUint32(hdr[board.OffFutex:], w.mem.Load32(board.OffFutex))
	if w.magicHidden {
		copy(hdr[board.OffMagic:board.OffMagic+8], make([]byte, 8))
	}
	w.mem.CopyIn(8, hdr[8:])
}

// showMagic writes the magic back after a commit stored the version (initHeader). w.mu is held; it may fault.
func (w *Writer) showMagic() {
	if w.magicHidden {
		w.mem.Store64(board.OffMagic, magicWord)
		w.magicHidden = false
	}
}
