package reader

import "github.com/announcementd/announcementd/board/internal/shm"

// copyOut copies len(dst) bytes of the mapping from off: on amd64 one memmove, at memcpy speed (about four times
// the word-by-word atomic copy of shm.Mem.CopyOut).
//
// It is the seqlock read of FORMAT.md §5 as the C reader does it (memcpy, then an acquire fence, then seq): x86-64
// is TSO, so no load of the copy is reordered after the later atomic load of seq, and the Go compiler moves no
// memory operation across that atomic load or across the memmove call. The kernel's seqcount readers on x86 rely
// on exactly this (smp_rmb is a compiler barrier there). A copy that overlaps a publish may hold a mix of old and
// new bytes; it is never trusted before the seq recheck and both CRCs.
func copyOut(dst []byte, mem shm.Mem, off uint64) {
	copy(dst, mem[off:off+uint64(len(dst))])
}

// equalOut reports whether the mapping holds dst's bytes at off: one comparison, read as copyOut reads.
func equalOut(dst []byte, mem shm.Mem, off uint64) bool {
	return string(dst) == string(mem[off:off+uint64(len(dst))])
}
