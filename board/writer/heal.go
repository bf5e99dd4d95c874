package writer

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"os"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/announcementd/announcementd/board"
)

// Healing: what happens to files in /dev/shm in real life, and how the writer puts it right (docs/HEALTH.md).
//
//   - A write faults (SIGBUS: the file shrank under the mapping). Every store into the mapping runs with
//     runtime/debug.SetPanicOnFault, so the fault is a panic the writer recovers from; it restores the file's
//     size, maps it again and republishes: the publish that faulted succeeds, with a higher version.
//   - Check finds, without changing anything, a file whose size changed (truncated or grown), a path that names
//     another file or none (unlinked, replaced), and bytes that differ from what this writer wrote (the header,
//     either slot). Heal repairs each, and always republishes the set with a higher version.
//   - A replaced or unlinked file is recreated at the path atomically: a new file is laid out and published next to
//     it, renamed over the path, and only then is the old mapping marked superseded and its futex waiters woken (a
//     futex is keyed by its file: waiters on the old one would sleep on). Readers reopen the path. Heal returns the
//     new file, for whoever keeps the region's fd for the next writer.
//
// The version never goes back: every repair publishes above the last version this writer published.

// Damage kinds, as Check reports them and repair counters are labelled.
const (
	DamageFault       = "fault"       // a write faulted: the file was truncated under the mapping
	DamageSize        = "size"        // the file is not the region's size (truncated or grown)
	DamageReplaced    = "replaced"    // the path names another file, or none
	DamageOverwritten = "overwritten" // bytes differ from what this writer wrote
)

// Damage is what Check found: the kinds, and a line for each.
type Damage struct {
	Kinds   []string
	Details []string
}

// None reports an intact region.
func (d Damage) None() bool { return len(d.Kinds) == 0 }

func (d *Damage) add(kind, format string, args ...any) {
	d.Kinds = append(d.Kinds, kind)
	d.Details = append(d.Details, kind+": "+fmt.Sprintf(format, args...))
}

func (d Damage) String() string { return strings.Join(d.Details, "; ") }

// Has reports whether d includes kind.
func (d Damage) Has(kind string) bool { return slices.Contains(d.Kinds, kind) }

// FaultError is a memory fault (SIGBUS, SIGSEGV) caught while the writer touched the mapping.
type FaultError struct {
	Addr uintptr
	Err  error
}

func (e *FaultError) Error() string {
	return fmt.Sprintf("fault at %#x in the region: %v", e.Addr, e.Err)
}

// catching runs fn, turning a memory fault inside it into a *FaultError. Other panics go on.
func catching(fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		if f, ok := r.(interface{ Addr() uintptr }); ok {
			rerr, _ := r.(error)
			err = &FaultError{Addr: f.Addr(), Err: rerr}
			return
		}
		panic(r)
	}()
	return fn()
}

// publishImageLocked publishes w.image as Publish does: refused into a superseded region, and a fault is
// recovered from (recoverLocked).
func (w *Writer) publishImageLocked() (v uint64, err error) {
	err = catching(func() error {
		if w.mem.Load32(board.OffState) == uint32(board.StateSuperseded) {
			return errors.New("the region is superseded: readers have moved to a new file")
		}
		if w.spent {
			if err := w.renewLocked(); err != nil {
				return err
			}
		}
		v, err = w.commitLocked()
		return err
	})
	if fe := (*FaultError)(nil); errors.As(err, &fe) {
		return w.recoverLocked(err)
	}
	return v, err
}

// republishLocked publishes w.image again as the next version, turning a fault into an error.
func (w *Writer) republishLocked() (v uint64, err error) {
	err = catching(func() error {
		v, err = w.commitLocked()
		return err
	})
	return v, err
}

// recoverLocked repairs the region after fault (size, mapping, header) and publishes w.image once more.
func (w *Writer) recoverLocked(fault error) (uint64, error) {
	w.faults++
	restored, v, err := w.restoreRepublishLocked()
	switch {
	case !restored:
		return 0, fmt.Errorf("%w; repairing the region: %w", fault, err)
	case err != nil:
		return 0, fmt.Errorf("publish after repairing a fault: %w", err)
	}
	w.healed[DamageFault]++
	return v, nil
}

// restoreRepublishLocked restores the file (restoreLocked) and publishes w.image once more, then guards the new
// mapping (guardMapping: mlock, which allocates every page of the region the truncation dropped, a millisecond
// for 4 MiB): readers hold the set again before that, not after. restored: restoreLocked succeeded.
func (w *Writer) restoreRepublishLocked() (restored bool, v uint64, err error) {
	remapped, err := w.restoreLocked()
	if err == nil {
		restored = true
		v, err = w.republishLocked()
	}
	if remapped { // not the old mapping, over a file that may still be short: restoreLocked failed before it
		w.guardMapping()
	}
	return restored, v, err
}

// restoreLocked gives the file its size back, maps it again (the caller guards the mapping: guardMapping) and
// rewrites the header; remapped says that it mapped the file again, whether or not what followed succeeded. The
// slot of the published version is restored whole from its shadow before anything else, so that the version word, if the truncation
// left it, never names a slot of zeros: a reader on that version sees the slot being written (odd seq: retry)
// and then whole, never stable garbage it would report as corrupt. The other slot is written whole by the
// republish that follows. w.mu is held.
func (w *Writer) restoreLocked() (remapped bool, err error) {
	size := w.hdr.RegionSize
	// Hide the magic before the size comes back: what survived the truncation (the header, a version word) must
	// not make the file look whole to a reader that opens it before the republish.
	if _, err := w.f.WriteAt(make([]byte, 8), board.OffMagic); err != nil {
		return false, fmt.Errorf("hide the magic: %w", err)
	}
	w.magicHidden = true
	cur := w.version & 1
	keep := w.shadow[cur] // slot cur as this writer wrote it for w.version
	restore := w.published && len(keep) > board.SlotHeaderSize
	var seq uint64
	if restore {
		// Mark the slot as being written while the file is still short: pwrite extends the file up to the seq
		// word if need be, and cannot fault. Readers of w.version retry from now on.
		off := int64(w.hdr.SlotOffset(cur))
		var b [8]byte
		if n, _ := w.f.ReadAt(b[:], off+board.SlotOffSeq); n == 8 {
			seq = binary.LittleEndian.Uint64(b[:])
		}
		seq |= 1
		binary.LittleEndian.PutUint64(b[:], seq)
		if _, err := w.f.WriteAt(b[:], off+board.SlotOffSeq); err != nil {
			return false, fmt.Errorf("mark slot %d as being written: %w", cur, err)
		}
	}
	if err := w.f.Truncate(int64(size)); err != nil {
		return false, fmt.Errorf("size to %d bytes: %w", size, err)
	}
	w.unmap()
	if err := w.mmap(w.f, size); err != nil {
		return false, err
	}
	if restore {
		err := catching(func() error {
			off := w.hdr.SlotOffset(cur)
			// The header and the records of the count: what readers of w.version read (past them the slot is
			// zero again after a truncation, or as it was after a growth).
			w.mem.CopyIn(off+8, keep[8:min(len(keep), board.SlotHeaderSize+int(w.shadowN[cur])*int(w.hdr.Stride))])
			w.mem.Store64(off+board.SlotOffSeq, seq+1)
			if w.mem.Load64(board.OffVersion) != w.version { // lost with the first 8 bytes: the slot is whole now
				w.mem.Store64(board.OffVersion, w.version)
			}
			return nil
		})
		if err != nil {
			return true, fmt.Errorf("restore slot %d of version %d: %w", cur, w.version, err)
		}
	}
	return true, w.rewriteLocked(false)
}

// rewriteLocked rewrites the static header with its magic hidden and forgets the slots' shadows, so that the next
// commit compares its slot with the image chunk by chunk, then writes the version word, then the magic: readers
// see a file they refuse until the version is right again (a restored file reads as zeros, its version 0). whole:
// the commit covers the whole slot, up to the capacity (bytes were overwritten, anywhere); else up to the larger
// of the two counts, the slot's last and the new (a restored file: past the last count the slot is zero, as the
// truncation left it or as it was).
func (w *Writer) rewriteLocked(whole bool) error {
	w.shadow = [2][]byte{}
	if whole {
		w.shadowN = [2]uint32{w.hdr.Capacity, w.hdr.Capacity}
	}
	return catching(func() error {
		w.initHeader(true)
		return nil
	})
}

// Faults is the number of memory faults the writer caught and repaired.
func (w *Writer) Faults() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.faults
}

// Healed counts the repairs the writer made, by damage kind.
func (w *Writer) Healed() map[string]uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return maps.Clone(w.healed)
}

// Check looks for damage without repairing it: the file's size, whether the path still names the file, and the
// bytes of the header and both slots against what this writer wrote.
func (w *Writer) Check() (Damage, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return Damage{}, errClosed
	}
	return w.checkLocked()
}

func (w *Writer) checkLocked() (Damage, error) {
	var d Damage
	var st unix.Stat_t
	if err := unix.Fstat(int(w.f.Fd()), &st); err != nil {
		return d, fmt.Errorf("fstat region: %w", err)
	}
	if uint64(st.Size) != w.hdr.RegionSize {
		d.add(DamageSize, "the file is %d bytes, the region %d", st.Size, w.hdr.RegionSize)
	}
	var at unix.Stat_t
	switch err := unix.Lstat(w.path, &at); {
	case errors.Is(err, unix.ENOENT):
		d.add(DamageReplaced, "%s was removed", w.path)
	case err != nil:
		return d, fmt.Errorf("stat %s: %w", w.path, err)
	case at.Dev != st.Dev || at.Ino != st.Ino:
		d.add(DamageReplaced, "%s is another file now", w.path)
	}
	if d.Has(DamageSize) || !w.published {
		return d, nil // the bytes are not worth comparing; a size repair rewrites them all
	}
	err := catching(func() error {
		if what := w.headerDiff(); what != "" {
			d.add(DamageOverwritten, "header: %s", what)
		}
		for s := range uint64(2) {
			if what := w.slotDiff(s); what != "" {
				d.add(DamageOverwritten, "slot %d: %s", s, what)
			}
		}
		return nil
	})
	var fe *FaultError
	if errors.As(err, &fe) { // shrank between the fstat and the compare
		d.add(DamageFault, "%v", err)
		return d, nil
	}
	return d, err
}

// headerDiff names what in the header differs from what this writer wrote ("" when nothing does): the static
// fields and layout table, the version, the state. The futex and heartbeat words change on their own.
func (w *Writer) headerDiff() string {
	want := make([]byte, board.HeaderSize)
	board.EncodeHeader(want, &w.hdr)
	le := binary.LittleEndian
	le.PutUint32(want[board.OffState:], uint32(board.StateLive))
	le.PutUint32(want[board.OffWriterPID:], uint32(w.opts.PID))
	le.PutUint64(want[board.OffGeneration:], w.opts.Generation)
	got := make([]byte, board.HeaderSize)
	w.mem.CopyOut(got, 0)
	if v := le.Uint64(got[board.OffVersion:]); v != w.version {
		return fmt.Sprintf("version %d, published %d", v, w.version)
	}
	for _, skip := range [][2]int{{board.OffVersion, 8}, {board.OffFutex, 4}, {board.OffHeartbeat, 8}} {
		clear(got[skip[0] : skip[0]+skip[1]])
		clear(want[skip[0] : skip[0]+skip[1]])
	}
	if i := firstDiff(got, want); i >= 0 {
		return fmt.Sprintf("byte %d differs", i)
	}
	return ""
}

// slotDiff names what in slot s differs from its shadow ("" when nothing does, or the slot has no shadow yet):
// its header and the records of its count, what a reader of the slot reads. The shadow may be longer (a slot
// written whole, up to the capacity, after a repair): comparing that much would make every check cost the whole
// slot.
func (w *Writer) slotDiff(s uint64) string {
	sh := w.shadow[s]
	if sh == nil {
		return ""
	}
	sh = sh[:min(len(sh), board.SlotHeaderSize+int(w.shadowN[s])*int(w.hdr.Stride))]
	off := w.hdr.SlotOffset(s)
	if seq := w.mem.Load64(off + board.SlotOffSeq); seq%2 != 0 {
		return fmt.Sprintf("sequence word %d is odd outside a publish", seq)
	}
	got := make([]byte, len(sh))
	w.mem.CopyOut(got[8:], off+8)
	if i := firstDiff(got[8:], sh[8:]); i >= 0 {
		return fmt.Sprintf("byte %d differs", 8+i)
	}
	return ""
}

func firstDiff(a, b []byte) int {
	if bytes.Equal(a, b) {
		return -1
	}
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// Heal checks the region and repairs what it finds, republishing the set with a higher version. When the file had
// to be recreated it returns the new file (the writer has moved to it; the caller owns the returned duplicate,
// as from TakeMoved); otherwise nil. d is what was found (none: nothing was done).
func (w *Writer) Heal() (newFile *os.File, d Damage, err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil, d, errClosed
	}
	if w.install && w.published { // a new file that could not be put at its path yet: try again
		if w.spent {
			err = w.renewLocked()
			if err == nil {
				_, err = w.republishLocked() // installs
			}
		} else {
			err = w.installLocked()
		}
		if err != nil {
			d.add(DamageReplaced, "the region's new file is not at %s yet", w.path)
			return nil, d, fmt.Errorf("repair %s: %w", d, err)
		}
		return w.takeMovedLocked(), d, nil
	}
	if d, err = w.checkLocked(); err != nil || d.None() {
		return w.takeMovedLocked(), d, err // a move a publish completed since
	}
	if !w.published {
		return nil, d, errors.New("nothing published yet: nothing to repair with")
	}
	switch {
	case d.Has(DamageReplaced): // publishes into the new file itself
		err = w.recreateLocked()
	case d.Has(DamageSize) || d.Has(DamageFault):
		_, _, err = w.restoreRepublishLocked()
	default: // overwritten: the header is rewritten, and the slots lose their shadows so they are written whole
		if err = w.rewriteLocked(true); err == nil {
			_, err = w.republishLocked()
		}
	}
	if err != nil {
		return w.takeMovedLocked(), d, fmt.Errorf("repair %s: %w", d, err)
	}
	for _, k := range d.Kinds {
		w.healed[k]++
	}
	return w.takeMovedLocked(), d, nil
}

func (w *Writer) takeMovedLocked() *os.File {
	f := w.moved
	w.moved = nil
	return f
}

// recreateLocked lays a new region out in a new file next to the path, publishes the set into it, and puts it at
// the path; then it marks the old file superseded and wakes its waiters, who reopen the path and find the set at a
// higher version (moveLocked, installLocked). When any step fails the writer stays on the old file.
func (w *Writer) recreateLocked() error {
	oldShadow, oldShadowN := w.shadow, w.shadowN
	if err := w.moveLocked(); err != nil {
		return fmt.Errorf("recreate %s: %w", w.path, err)
	}
	w.shadow, w.shadowN = [2][]byte{}, [2]uint32{} // the new file is zero past its header
	_, err := w.republishLocked()
	if err != nil && w.install { // not at the path: back to the old file
		old := w.retire
		w.unmap()
		w.f.Close()
		w.f, w.mem, w.locked, w.retire, w.install = old.f, old.mem, old.locked, nil, false
		w.shadow, w.shadowN = oldShadow, oldShadowN
		return fmt.Errorf("recreate %s: %w", w.path, err)
	}
	return err
}

// WatchFile adds an inotify watch for mask on the file the writer maps now, to the inotify instance inotifyFd, and
// returns its watch descriptor. The file is named through /proc/self/fd, so the watch is on that file whatever the
// path names (another file, or none). It runs under the writer's lock: the writer's fd cannot be closed, and its
// number reused, meanwhile. The kernel gives the same descriptor for the same file, so a caller that compares it
// with the one it had knows whether the writer moved to another file since (and should remove the old watch: a
// watch holds its file's inode).
func (w *Writer) WatchFile(inotifyFd int, mask uint32) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return -1, errClosed
	}
	wd, err := unix.InotifyAddWatch(inotifyFd, "/proc/self/fd/"+strconv.Itoa(int(w.f.Fd())), mask)
	if err != nil {
		return -1, fmt.Errorf("inotify watch on the region's file (through /proc/self/fd): %w", err)
	}
	return wd, nil
}
