package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/announcementd/announcementd/board/reader"
)

// roleEnv makes this command a process of Go readers (goReadersMain) instead of the bench.
const roleEnv = "FANOUT_ROLE"

// goReadersMain is a process of Go readers, the counterpart of waiters.c with the same arguments (CTL BOARD
// ROUNDS TOTAL FIRST THREADS) and the same control file: each reader is a goroutine locked to an OS thread of its
// own, blocking in the bare futex word's FUTEX_WAIT on even rounds and in Reader.Wait on odd rounds, where it then
// takes a verified snapshot (Reader.Snapshot). Reader.Wait does not say whether it slept: a reader counts as asleep
// when the version it entered the round with was still the board's just before it called Wait.
func goReadersMain(args []string) int {
	if len(args) != 6 {
		fmt.Fprintln(os.Stderr, "go readers: want CTL BOARD ROUNDS TOTAL FIRST THREADS")
		return 2
	}
	var n [4]int
	for i := range n {
		v, err := strconv.Atoi(args[2+i])
		if err != nil {
			fmt.Fprintln(os.Stderr, "go readers:", err)
			return 2
		}
		n[i] = v
	}
	rounds, total, first, threads := n[0], n[1], n[2], n[3]
	c, err := openCtl(args[0], rounds, total)
	if err != nil {
		fmt.Fprintln(os.Stderr, "go readers:", err)
		return 1
	}
	b, err := reader.Open(args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "go readers:", err)
		return 1
	}
	var wg sync.WaitGroup
	errs := make(chan error, threads)
	for i := range threads {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread() // one blocked OS thread per reader, as a C reader's pthread
			if err := goReader(c, b, first+i); err != nil {
				errs <- fmt.Errorf("reader %d: %w", first+i, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err, ok := <-errs; ok {
		fmt.Fprintln(os.Stderr, "go readers:", err)
		return 1
	}
	return 0
}

func goReader(c *ctl, b *reader.Board, gid int) error {
	rd := b.NewReader()
	last := b.Version()
	word := c.word()
	for r := range c.rounds {
		slept := false
		atomic.AddUint64(c.entered(), 1)
		if r%2 == 0 {
			target := uint32(r/2 + 1)
			for {
				w := atomic.LoadUint32(word)
				if w >= target {
					break
				}
				_, _, errno := unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(word)), futexWait, uintptr(w), 0, 0, 0)
				switch errno {
				case 0:
					slept = true
				case unix.EAGAIN, unix.EINTR:
				default:
					return fmt.Errorf("futex wait: %w", errno)
				}
			}
		} else {
			slept = b.Version() == last
			if _, err := rd.Wait(context.Background(), last, 0); err != nil {
				return fmt.Errorf("wait: %w", err)
			}
			snap, err := rd.Snapshot()
			if err != nil {
				return fmt.Errorf("snapshot: %w", err)
			}
			if snap.Version <= last {
				return fmt.Errorf("snapshot: version %d did not advance past %d", snap.Version, last)
			}
			last = snap.Version
		}
		c.setStamp(r, gid, monotonic())
		if slept {
			*c.sleptAt(r, gid) = 1
		}
	}
	return nil
}

// futexWait is FUTEX_WAIT without FUTEX_PRIVATE_FLAG.
const futexWait = 0
