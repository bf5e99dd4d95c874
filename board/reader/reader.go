// Package reader reads a board region (docs/FORMAT.md §5-§6) without locks, writes or a connection to the daemon.
//
// A Board maps the file read-only. Version is one atomic load, cheap enough to poll; Snapshot returns a consistent
// copy or an error, never a torn one; Wait blocks on the region's futex until the version changes. A Board is safe
// for concurrent use; Close must not race with the other methods.
//
// A Follower follows the board at a path rather than one file: it reopens the path when the writer replaces its
// file (superseded, unlinked and recreated, renamed over, truncated), never goes back to a lower version, and tells
// a stale writer from no change (FORMAT.md §5, "Following the path").
package reader

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/announcementd/announcementd/board"
	"github.com/announcementd/announcementd/board/internal/shm"
)

// Board is an open, validated region.
type Board struct {
	path string
	mem  shm.Mem
	hdr  board.Header
	sums *board.SlotSums // the slot and record checksums of this stride in one pass
}

// Open maps the board at path read-only and validates its header.
func Open(path string) (*Board, error) {
	b, f, _, err := openFile(path)
	if err != nil {
		return nil, err
	}
	f.Close() // the mapping outlives the descriptor
	return b, nil
}

// openFile is Open that also returns the open file and its fstat, for a Follower to keep.
func openFile(path string) (*Board, *os.File, unix.Stat_t, error) {
	var st unix.Stat_t
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, st, board.Errorf(board.CodeIO, "%v", err)
	}
	b, err := mapFile(path, f, &st)
	if err != nil {
		f.Close()
		return nil, nil, st, err
	}
	return b, f, st, nil
}

func mapFile(path string, f *os.File, st *unix.Stat_t) (*Board, error) {
	if err := unix.Fstat(int(f.Fd()), st); err != nil {
		return nil, board.Errorf(board.CodeIO, "fstat %s: %v", path, err)
	}
	if st.Size < board.MinFileSize {
		return nil, board.Errorf(board.CodeTruncated, "file is %d bytes, a board has at least %d", st.Size, board.MinFileSize)
	}
	if st.Size > board.MaxRegionSize {
		return nil, board.Errorf(board.CodeBadLayout, "file is %d bytes, more than a board's %d", st.Size, board.MaxRegionSize)
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, int(st.Size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, board.Errorf(board.CodeIO, "mmap %s: %v", path, err)
	}
	b, err := newBoard(path, mem)
	if err != nil {
		_ = unix.Munmap(mem)
		return nil, err
	}
	return b, nil
}

// newBoard validates the header of a mapped (or, in tests, 8-byte aligned in-memory) region.
func newBoard(path string, mem []byte) (*Board, error) {
	hdr, err := board.ParseHeader(mem, int64(len(mem)))
	if err != nil {
		return nil, err
	}
	return &Board{path: path, mem: mem, hdr: hdr, sums: board.SlotSumsFor(hdr.Stride)}, nil
}

// Close unmaps the region.
func (b *Board) Close() error {
	if b.mem == nil {
		return nil
	}
	err := unix.Munmap(b.mem)
	b.mem = nil
	return err
}

// Path is the file the board was opened from.
func (b *Board) Path() string { return b.path }

// Header is the validated static header.
func (b *Board) Header() board.Header { return b.hdr }

// Version is the published version: one atomic load.
func (b *Board) Version() uint64 { return b.mem.Load64(board.OffVersion) }

// State is the region's state word.
func (b *Board) State() board.State { return board.State(b.mem.Load32(board.OffState)) }

// HeartbeatAge is how long ago, by CLOCK_MONOTONIC, the writer last stored its heartbeat.
func (b *Board) HeartbeatAge() time.Duration {
	return time.Duration(shm.Monotonic() - int64(b.mem.Load64(board.OffHeartbeat)))
}

// Stale reports whether the writer's heartbeat is older than threshold (FORMAT.md §7): the writer is gone or hung.
func (b *Board) Stale(threshold time.Duration) bool { return b.HeartbeatAge() > threshold }

// Snapshot returns a consistent copy of the board (FORMAT.md §5).
func (b *Board) Snapshot() (*board.Snapshot, error) {
	buf := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(buf)
	return b.snapshot(buf, nil)
}

// copyBufs are Board.Snapshot's copy buffers: a decoded snapshot keeps nothing of its copy (the contents are
// copied out of it), so the next call may reuse it. They carry no memory: each Board.Snapshot copies and checks
// every record.
var copyBufs = sync.Pool{New: func() any { return new([]byte) }}

// Reader takes snapshots repeatedly, and each one reads, checks and decodes again only the records that changed
// since its last: its copy buffer holds the last slot image it verified, and a record of the mapping that is byte
// for byte the buffer's at the same index is not copied, its crc and decoding are remembered (board.Memory), and its
// content string is shared with the last snapshot. Every check of FORMAT.md §5 is still made on every snapshot,
// exactly: what depends on the bytes of one record alone is remembered, what depends on more is computed afresh.
// Not safe for concurrent use.
type Reader struct {
	b   *Board
	buf []byte
	mem board.Memory
}

// NewReader returns a Reader of b.
func (b *Board) NewReader() *Reader { return &Reader{b: b} }

// Snapshot is Board.Snapshot, reusing the Reader's buffer.
func (r *Reader) Snapshot() (*board.Snapshot, error) { return r.b.snapshot(&r.buf, &r.mem) }

// Wait is Board.Wait for a reader that takes its next snapshot when Wait returns: before it sleeps, it allocates
// that snapshot's memory and writes to its pages (board.Memory.Ready), so that the snapshot after the wake-up does
// not pay for a page fault, which in a virtual machine costs tens of µs (bench/fanout measured a Go waiter's
// snapshot of 20 records after a wake-up at p50 11 µs, p90 70 µs, its slow ones all with a fault, when it allocated
// after the wake-up).
func (r *Reader) Wait(ctx context.Context, last uint64, timeout time.Duration) (uint64, error) {
	r.mem.Ready(max(1, r.mem.Len()))
	return r.b.Wait(ctx, last, timeout)
}

// errTorn is a failed step-5 check of a stable slot copy (FORMAT.md §5): a retry may cure it, the same failure on
// the same V and seq twice in a row is corruption.
var errTorn = errors.New("torn")

func (b *Board) snapshot(buf *[]byte, m *board.Memory) (*board.Snapshot, error) {
	var prevV, prevSeq uint64
	prevFailed := false // the previous attempt copied a stable slot that failed a step-5 check
	for attempt := 1; attempt <= board.MaxAttempts; attempt++ {
		// The state first: a superseded board says "reopen the path" whatever its version (FORMAT.md §5).
		if b.State() == board.StateSuperseded {
			return nil, board.Errorf(board.CodeSuperseded, "the region was replaced: reopen the path")
		}
		v := b.Version()
		if v == 0 {
			return nil, board.Errorf(board.CodeNotPublished, "nothing published yet")
		}
		img, seq, err := b.copySlot(v, buf, m)
		if err == nil {
			var snap *board.Snapshot
			snap, err = b.decode(img, v, attempt, m)
			if err == nil || !errors.Is(err, errTorn) && !errors.Is(err, errRaced) {
				return snap, err
			}
		}
		if errors.Is(err, errTorn) { // a stable slot (even seq, unchanged over the copy) failed a check
			if prevFailed && v == prevV && seq == prevSeq {
				return nil, board.Errorf(board.CodeSnapshotChecksum, "slot %d of version %d fails its checks on a stable sequence: %v", v&1, v, err)
			}
			prevV, prevSeq, prevFailed = v, seq, true
		} else {
			prevFailed = false // the copy raced a writer: the next attempt starts a new pair
		}
		if attempt%8 == 0 {
			time.Sleep(time.Microsecond) // yield to a writer that is mid-publish
		}
	}
	return nil, board.Errorf(board.CodeBusy, "no consistent snapshot in %d attempts", board.MaxAttempts)
}

// errRaced is a copy that overlapped a publish (odd or changed seq): retry, it says nothing about the bytes.
// errTorn is a copy of a stable slot that failed a check: retry, and twice in a row it is corruption.
var errRaced = errors.New("raced a publish")

// copySlot copies the slot of version v under its sequence (steps 2-4) and returns the copy and its even seq. With
// a non-nil m, the records m knows that are unchanged in the mapping are left as they are in buf (copyRecords).
func (b *Board) copySlot(v uint64, buf *[]byte, m *board.Memory) ([]byte, uint64, error) {
	off := b.hdr.SlotOffset(v)
	q1 := b.mem.Load64(off + board.SlotOffSeq)
	if q1&1 == 1 {
		return nil, 0, errRaced
	}
	if cap(*buf) < int(b.hdr.SlotSize) {
		*buf = make([]byte, b.hdr.SlotSize)
		if m != nil {
			*m = board.Memory{} // it described the records of another buffer
		}
	}
	img := (*buf)[:board.SlotHeaderSize]
	copyOut(img, b.mem, off)
	count := binary.LittleEndian.Uint32(img[board.SlotOffCount:])
	if count > b.hdr.Capacity {
		if b.mem.Load64(off+board.SlotOffSeq) != q1 {
			return nil, 0, errRaced
		}
		return nil, q1, fmt.Errorf("%w: count %d exceeds the capacity %d", errTorn, count, b.hdr.Capacity)
	}
	end := board.SlotHeaderSize + count*b.hdr.Stride
	img = (*buf)[:end]
	if m != nil {
		copyRecords(img, b.mem, off, int(count), int(b.hdr.Stride), m)
	} else {
		copyOut(img[board.SlotHeaderSize:], b.mem, off+board.SlotHeaderSize)
	}
	if q2 := b.mem.Load64(off + board.SlotOffSeq); q2 != q1 {
		return nil, 0, errRaced
	}
	return img, q1, nil
}

// decode checks and decodes a slot copy (steps 5-6). One CRC pass gives the slot checksum and every record's
// (board.SlotSums); the records are decoded with one allocation per 1 KiB of new contents (board.DecodeRecords).
// With a Reader's memory, the records it knows are neither read again nor decoded again.
// When a record fails a check, decodeRecords decodes them again one by one to name the failure.
func (b *Board) decode(img []byte, v uint64, attempt int, m *board.Memory) (*board.Snapshot, error) {
	le := binary.LittleEndian
	count := le.Uint32(img[board.SlotOffCount:])
	slotSum, badRecord := b.sums.Check(img, count, m)
	if slotSum != le.Uint32(img[board.SlotOffCRC:]) {
		return nil, fmt.Errorf("%w: slot checksum", errTorn)
	}
	version := le.Uint64(img[board.SlotOffVersion:])
	switch {
	case version > v && version&1 == v&1:
		// Publishes overtook the copy: the slot holds a later version whose number the version word may not show
		// yet. Returning it could make the next snapshot, of the version word, a lower version: retry instead.
		return nil, fmt.Errorf("%w: slot %d holds version %d, newer than %d", errRaced, v&1, version, v)
	case version != v:
		return nil, fmt.Errorf("%w: slot %d holds version %d, not %d", errTorn, v&1, version, v)
	}
	snap := m.NewSnapshot() // made ready by a Reader's Wait, or new
	*snap = board.Snapshot{
		Version:     version,
		PublishedAt: int64(le.Uint64(img[board.SlotOffPublishedAt:])),
		Attempts:    attempt,
		Header:      b.hdr,
		State:       b.State(),
		WriterPID:   b.mem.Load32(board.OffWriterPID),
		Generation:  b.mem.Load64(board.OffGeneration),
		HeartbeatNS: int64(b.mem.Load64(board.OffHeartbeat)),
	}
	if badRecord < 0 {
		if recs, ok := board.DecodeRecords(img, count, &b.hdr, m); ok {
			snap.Records = recs
			return snap, nil
		}
	}
	return nil, b.decodeRecords(img, count, version)
}

// decodeRecords decodes the records of a slot copy one by one, as FORMAT.md §5 step 6 lists the checks, and
// returns the first failure. decode calls it only when one failed: it names which record and why.
func (b *Board) decodeRecords(img []byte, count uint32, version uint64) error {
	stride := b.hdr.Stride
	var prev uint64
	for i := range count {
		rec := img[board.SlotHeaderSize+i*stride : board.SlotHeaderSize+(i+1)*stride]
		r, err := board.DecodeRecord(rec, &b.hdr)
		if err != nil {
			return fmt.Errorf("record %d of version %d: %w", i, version, err)
		}
		if i > 0 && r.ID <= prev {
			return board.Errorf(board.CodeBadRecord, "record %d of version %d: id %d after id %d: ids must ascend",
				i, version, r.ID, prev)
		}
		prev = r.ID
	}
	// The fast path refused what this one accepts: a bug in one of them. Never return the records unchecked.
	return board.Errorf(board.CodeBadRecord, "version %d: the records failed a check that decoding them one by one does not name", version)
}

// Wait blocks until the version differs from last, ctx is done, or timeout passes (timeout <= 0: no limit), and
// returns the version it saw. It sleeps on the region's futex (FORMAT.md §6). A superseded board returns
// board.ErrSuperseded; a timeout returns context.DeadlineExceeded.
func (b *Board) Wait(ctx context.Context, last uint64, timeout time.Duration) (uint64, error) {
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
	}
	if d, ok := ctx.Deadline(); ok && (deadline.IsZero() || d.Before(deadline)) {
		deadline = d
	}
	for {
		w := b.mem.Load32(board.OffFutex)
		if b.State() == board.StateSuperseded { // before the version, as Snapshot and the C and Python readers
			return last, board.Errorf(board.CodeSuperseded, "the region was replaced: reopen the path")
		}
		if v := b.Version(); v != last {
			return v, nil
		}
		if err := ctx.Err(); err != nil {
			return last, err
		}
		// A cancellable ctx is checked every 100 ms (futex(2) cannot wait on a channel); otherwise sleep until
		// the wake-up or the deadline.
		var slice time.Duration
		if ctx.Done() != nil {
			slice = 100 * time.Millisecond
		}
		if !deadline.IsZero() {
			left := time.Until(deadline)
			if left <= 0 {
				return last, context.DeadlineExceeded
			}
			if slice == 0 || left < slice {
				slice = left
			}
		}
		if err := b.mem.FutexWait(board.OffFutex, w, slice); err != nil {
			return last, board.Errorf(board.CodeIO, "futex wait: %v", err)
		}
	}
}
