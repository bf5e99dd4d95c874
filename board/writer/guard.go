package writer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"os"
	"runtime/debug"
	"time"

	"golang.org/x/sys/unix"

	"github.com/announcementd/announcementd/board"
	"github.com/announcementd/announcementd/board/internal/shm"
)

// The guard keeps the writer's mapping in memory, so that neither a publish nor a reader waits for (or, on a full
// tmpfs, dies of) a page fault, and says when it cannot (docs/HEALTH.md).
//
//   - At map time: madvise(MADV_WILLNEED) over the whole mapping (on tmpfs this starts reading swapped-out pages
//     of an existing board back in; it does not fill holes), then mlock(2), which brings every page in — holes
//     become allocated pages — and keeps them there. If the lock is refused (RLIMIT_MEMLOCK, no CAP_IPC_LOCK),
//     the pages are brought in with MADV_POPULATE_READ instead, and Locked reports the error.
//   - Residency counts the pages in memory with mincore(2); Repair brings missing ones back (WILLNEED, then
//     POPULATE_READ over each run of missing pages); Lock retries the lock.
//
// No other advice: MADV_HUGEPAGE is decided per tmpfs mount (huge=) and would change how the file is allocated
// for every reader; MADV_DONTFORK protects nothing (Go starts processes with vfork-style clone and exec, so
// the mapping is never copied); MADV_DONTDUMP would hide the board, which is public, from a core dump that
// needs it; MADV_SEQUENTIAL and MADV_RANDOM steer readahead, which tmpfs does not do.

var pageSize = os.Getpagesize()

var errClosed = errors.New("writer is closed")

// Residency is what a residency check found.
type Residency struct {
	Pages    int // pages of the mapping
	Resident int // of which in memory
}

// Missing is the number of pages not in memory.
func (r Residency) Missing() int { return r.Pages - r.Resident }

// Ratio is the share of pages in memory, 1 for an empty mapping.
func (r Residency) Ratio() float64 {
	if r.Pages == 0 {
		return 1
	}
	return float64(r.Resident) / float64(r.Pages)
}

// guardMapping applies the map-time policy above. It never fails: a refused lock is recorded for Locked.
func (w *Writer) guardMapping() {
	w.vec = make([]byte, (len(w.mem)+pageSize-1)/pageSize)
	_ = unix.Madvise(w.mem, unix.MADV_WILLNEED) // advice: its failure changes nothing
	if w.opts.NoLock {
		return
	}
	if w.mlock() != nil {
		_ = populate(w.mem) // Residency will show what is missing
	}
}

// mlock locks the whole mapping. A failure unlocks what a partial attempt may have locked, so that the mapping
// is either locked whole or not at all.
func (w *Writer) mlock() error {
	if err := unix.Mlock(w.mem); err != nil {
		_ = unix.Munlock(w.mem)
		w.locked, w.lockErr = false, lockError(len(w.mem), err)
		return w.lockErr
	}
	w.locked, w.lockErr = true, nil
	return nil
}

func lockError(size int, err error) error {
	limit := "unknown"
	var lim unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_MEMLOCK, &lim) == nil {
		limit = iec(lim.Cur)
		if lim.Cur == unix.RLIM_INFINITY {
			limit = "unlimited"
		}
	}
	return fmt.Errorf("mlock of the %s region: %w (RLIMIT_MEMLOCK is %s: raise it, e.g. LimitMEMLOCK= in the unit, or grant CAP_IPC_LOCK)",
		iec(uint64(size)), err, limit)
}

// iec formats a size in bytes, KiB or MiB, whichever is exact.
func iec(n uint64) string {
	switch {
	case n != 0 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n != 0 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}

// Lock locks the mapping in memory, bringing every page in; a no-op when it is locked. The writer tries once when
// it maps the region (unless Options.NoLock); call Lock to try again, e.g. after RLIMIT_MEMLOCK was raised.
func (w *Writer) Lock() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return errClosed
	}
	if w.locked {
		return nil
	}
	return w.mlock()
}

// Locked reports whether the mapping is locked in memory and, when it is not, why the last attempt failed (nil
// when none was made: Options.NoLock).
func (w *Writer) Locked() (bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.locked, w.lockErr
}

// Residency counts the mapping's pages that are in memory (mincore(2): for a shared file mapping, the file's
// pages in the page cache, whoever maps them).
func (w *Writer) Residency() (Residency, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return Residency{}, errClosed
	}
	return w.residency()
}

func (w *Writer) residency() (Residency, error) {
	r := Residency{Pages: len(w.vec)}
	if err := w.mem.Mincore(w.vec); err != nil {
		return r, fmt.Errorf("mincore: %w", err)
	}
	const lows = 0x0101010101010101 // bit 0 of each byte: the page is in memory
	i := 0
	for ; i+8 <= len(w.vec); i += 8 {
		r.Resident += bits.OnesCount64(binary.NativeEndian.Uint64(w.vec[i:]) & lows)
	}
	for ; i < len(w.vec); i++ {
		r.Resident += int(w.vec[i] & 1)
	}
	return r, nil
}

// Repair brings the pages that are not in memory back: MADV_WILLNEED over the mapping (swap-in), then
// MADV_POPULATE_READ over each run of missing pages (allocates holes, waits for swap-in). It returns the residency
// afterwards; the error says why pages could not be brought in. Publishes wait while it runs.
func (w *Writer) Repair() (Residency, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return Residency{}, errClosed
	}
	r, err := w.residency()
	if err != nil || r.Missing() == 0 {
		return r, err
	}
	_ = unix.Madvise(w.mem, unix.MADV_WILLNEED)
	var errs []error
	for lo := 0; lo < len(w.vec); {
		if w.vec[lo]&1 != 0 {
			lo++
			continue
		}
		hi := lo + 1
		for hi < len(w.vec) && w.vec[hi]&1 == 0 {
			hi++
		}
		if err := populate(w.mem[lo*pageSize : min(hi*pageSize, len(w.mem))]); err != nil {
			errs = append(errs, fmt.Errorf("pages %d–%d: %w", lo, hi-1, err))
		}
		lo = hi
	}
	r, err = w.residency()
	return r, errors.Join(append(errs, err)...)
}

// populate brings the pages of m into memory without writing them, and fails rather than faulting when a page
// cannot be had (a full tmpfs).
func populate(m shm.Mem) error {
	err := unix.Madvise(m, unix.MADV_POPULATE_READ)
	if !errors.Is(err, unix.EINVAL) {
		if errors.Is(err, unix.EFAULT) { // what a read would have got SIGBUS for
			return fmt.Errorf("MADV_POPULATE_READ: %w (no page could be had: is the file system full?)", err)
		}
		if err != nil {
			return fmt.Errorf("MADV_POPULATE_READ: %w", err)
		}
		return nil
	}
	return touch(m) // a kernel before 5.14
}

// touch reads a word of each page of m; a fault (SIGBUS: no page could be had) becomes an error.
func touch(m shm.Mem) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("reading the pages faulted: %v", r)
		}
	}()
	for off := 0; off < len(m); off += pageSize {
		m.Load32(uint64(off))
	}
	return nil
}

// HeartbeatAge is how long ago the heartbeat readers see was stored, by Options.Monotonic.
func (w *Writer) HeartbeatAge() (time.Duration, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return 0, errClosed
	}
	var hb uint64
	err := catching(func() error {
		hb = w.mem.Load64(board.OffHeartbeat)
		return nil
	})
	if err != nil { // the file shrank under the mapping: restore it now
		if w.published {
			if _, rerr := w.recoverLocked(err); rerr == nil {
				hb = uint64(w.opts.Monotonic())
				err = nil
			}
		}
		if err != nil {
			return 0, err
		}
	}
	return time.Duration(w.opts.Monotonic() - int64(hb)), nil
}
