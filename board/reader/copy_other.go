//go:build !amd64

package reader

import "github.com/announcementd/announcementd/board/internal/shm"

// copyOut copies len(dst) bytes of the mapping from off with one atomic load per word: on weakly ordered machines
// (arm64) a plain copy's loads could pass the later load of seq; Go's atomics are sequentially consistent.
func copyOut(dst []byte, mem shm.Mem, off uint64) { mem.CopyOut(dst, off) }

// equalOut reports whether the mapping holds dst's bytes at off, with one atomic load per word as copyOut.
func equalOut(dst []byte, mem shm.Mem, off uint64) bool { return mem.EqualOut(dst, off) }
