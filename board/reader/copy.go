package reader

import (
	"github.com/announcementd/announcementd/board"
	"github.com/announcementd/announcementd/board/internal/shm"
)

// copyRecords brings the count records of the slot at off into img, a Reader's buffer holding its last verified
// image, comparing a run of board.MemoryRun records at once, then record by record in a run that changed. A record
// that m knows and that the mapping holds unchanged is left as it is; any other is copied, and m forgets it before
// its bytes change (the invariant of board.Memory holds even when a fault or a racing publish stops the copy
// halfway). The comparisons read the mapping as copyOut does, so a copy that overlapped a publish is caught by the
// seq recheck after it, as any other.
func copyRecords(img []byte, mem shm.Mem, off uint64, count, stride int, m *board.Memory) {
	at := func(i int) int { return board.SlotHeaderSize + i*stride }
	for i := 0; i < count; i += board.MemoryRun {
		j := min(i+board.MemoryRun, count)
		if knowsAll(m, i, j) && equalOut(img[at(i):at(j)], mem, off+uint64(at(i))) {
			continue
		}
		for k := i; k < j; k++ {
			rec := img[at(k):at(k+1)]
			if m.Knows(k) && equalOut(rec, mem, off+uint64(at(k))) {
				continue
			}
			m.Forget(k)
			copyOut(rec, mem, off+uint64(at(k)))
		}
	}
}

func knowsAll(m *board.Memory, i, j int) bool {
	for ; i < j; i++ {
		if !m.Knows(i) {
			return false
		}
	}
	return true
}
