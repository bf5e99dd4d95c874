// Package shm gives the board's writer and reader word-sized atomic access to a shared mapping, and the futex
// calls that wait on and wake a word of it.
//
// Every store to the mapping goes through Mem's atomic methods, and so does every load except the reader's slot
// copy on amd64: Go's atomics are sequentially consistent, so copies made with CopyOut cannot be reordered past a
// later Load, and stores made with CopyIn cannot be reordered before an earlier Add (FORMAT.md §5, "Memory
// ordering"). On amd64 the loads are plain MOVs; on arm64 they are LDAR. board/reader copies a slot with one
// memmove on amd64 instead (TSO keeps its loads before the later atomic load of seq; board/reader/copy_amd64.go).
package shm

import (
	"encoding/binary"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Mem is a mapped region. Offsets must be aligned to the access size; lengths of copies a multiple of 8.
type Mem []byte

func (m Mem) p64(off uint64) *uint64 { return (*uint64)(unsafe.Pointer(&m[off])) }
func (m Mem) p32(off uint64) *uint32 { return (*uint32)(unsafe.Pointer(&m[off])) }

// Load64 atomically loads the uint64 at off.
func (m Mem) Load64(off uint64) uint64 { return atomic.LoadUint64(m.p64(off)) }

// Store64 atomically stores v at off.
func (m Mem) Store64(off uint64, v uint64) { atomic.StoreUint64(m.p64(off), v) }

// Add64 atomically adds d to the uint64 at off.
func (m Mem) Add64(off uint64, d uint64) uint64 { return atomic.AddUint64(m.p64(off), d) }

// Load32 atomically loads the uint32 at off.
func (m Mem) Load32(off uint64) uint32 { return atomic.LoadUint32(m.p32(off)) }

// Store32 atomically stores v at off.
func (m Mem) Store32(off uint64, v uint32) { atomic.StoreUint32(m.p32(off), v) }

// Add32 atomically adds d to the uint32 at off.
func (m Mem) Add32(off uint64, d uint32) uint32 { return atomic.AddUint32(m.p32(off), d) }

// CopyOut copies len(dst) bytes from off with one atomic load per 8-byte word.
func (m Mem) CopyOut(dst []byte, off uint64) {
	for i := 0; i+8 <= len(dst); i += 8 {
		binary.NativeEndian.PutUint64(dst[i:], atomic.LoadUint64(m.p64(off+uint64(i))))
	}
}

// EqualOut reports whether the len(b) bytes at off equal b, with one atomic load per 8-byte word.
func (m Mem) EqualOut(b []byte, off uint64) bool {
	for i := 0; i+8 <= len(b); i += 8 {
		if atomic.LoadUint64(m.p64(off+uint64(i))) != binary.NativeEndian.Uint64(b[i:]) {
			return false
		}
	}
	return true
}

// CopyIn copies src to off with one atomic store per 8-byte word.
func (m Mem) CopyIn(off uint64, src []byte) {
	for i := 0; i+8 <= len(src); i += 8 {
		atomic.StoreUint64(m.p64(off+uint64(i)), binary.NativeEndian.Uint64(src[i:]))
	}
}

// futex(2) operations without FUTEX_PRIVATE_FLAG: the word is shared between processes.
const (
	futexWait = 0
	futexWake = 1
)

// FutexWake wakes every waiter on the shared (not process-private) futex word at off.
func (m Mem) FutexWake(off uint64) error {
	_, _, errno := unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(m.p32(off))), futexWake,
		uintptr(1<<31-1), 0, 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// FutexWait sleeps while the futex word at off holds val, for at most d (d <= 0 waits without a limit). It
// returns nil on a wake-up, a changed word, a timeout or a signal: callers re-check their condition.
func (m Mem) FutexWait(off uint64, val uint32, d time.Duration) error {
	var ts *unix.Timespec
	if d > 0 {
		t := unix.NsecToTimespec(d.Nanoseconds())
		ts = &t
	}
	_, _, errno := unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(m.p32(off))), futexWait,
		uintptr(val), uintptr(unsafe.Pointer(ts)), 0, 0)
	switch errno {
	case 0, unix.EAGAIN, unix.ETIMEDOUT, unix.EINTR:
		return nil
	default:
		return errno
	}
}

// Monotonic returns CLOCK_MONOTONIC in ns: comparable across processes on one host.
func Monotonic() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// Mincore fills vec, one byte per page of m (len(vec) ≥ pages), with mincore(2)'s answer: bit 0 set when the page
// is in memory. For a shared file mapping that is the file's page cache, whoever maps it. m must start on a page.
func (m Mem) Mincore(vec []byte) error {
	if len(m) == 0 {
		return nil
	}
	_, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(len(m)), uintptr(unsafe.Pointer(&vec[0])))
	if errno != 0 {
		return errno
	}
	return nil
}
