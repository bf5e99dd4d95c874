package worker

import (
	"bytes"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"go.uber.org/zap"

	"github.com/announcementd/announcementd/board/writer"
)

// The region watch: file operations on the region (removed, renamed over or away, truncated, grown, written with
// write(2)) are seen through inotify the moment they happen, and repaired by the same check the periodic one runs
// (checkIntegrity), instead of waiting up to Integrity.Interval for it. Bytes overwritten through a mapping raise
// no file event: the periodic check still finds those.
//
// Why inotify, not fanotify: inotify needs no privilege (fanotify's inode marks need CAP_SYS_ADMIN before Linux
// 5.13 and FAN_REPORT_FID after), reports directory entry events with their names on every kernel this runs on
// (fanotify only with FAN_REPORT_DFID_NAME, 5.9+), and its events are a plain read. What fanotify would add — a
// mark placed through an fd instead of a path — /proc/self/fd gives inotify too (writer.WatchFile). Neither can
// filter a directory's events by name in the kernel.
//
// Two watches on one inotify instance:
//   - the file the writer maps (through /proc/self/fd, so it is that file even when the path names another):
//     IN_MODIFY (write(2), truncate, fallocate; not stores through a mapping), IN_ATTRIB (its link count: rm, and
//     a rename over it, which unlinks it; mode, owner), IN_MOVE_SELF (renamed away), IN_DELETE_SELF. Every
//     operation on the region's file is an event here, whatever name or fd it came through, and no other file's
//     is. When the writer moves to another file (a recreation), the watch moves with it and the old one is
//     removed: a watch holds its inode, and must not keep a file nobody else uses in memory.
//   - the directory of the path, for what happens at the path's name without the writer's file: IN_MOVED_TO (a
//     file renamed to the name, e.g. while the writer's own is not there yet), and the directory's own end
//     (removed, moved, unmounted). Events of other names are dropped in the read loop with a comparison of bytes,
//     no syscall. The directory is asked for nothing else on purpose: /dev/shm is world-writable, anyone may
//     create, rename and remove files in it at any rate, and every event delivered costs the worker a read of it
//     however fast it is dropped. Asking only IN_MOVED_TO, a storm of files created, renamed and removed gives
//     the worker a quarter of its events. rm and rename over, which IN_DELETE and IN_MOVED_TO would report for
//     the name, the file's watch reports already (IN_ATTRIB); a create at the name can only follow one of them.
//
// Coalescing: one goroutine reads the events in batches (a read returns all that are queued, up to the buffer)
// and runs one check per batch that holds any event of the region, whatever their number; the events that arrive
// during a check are the next batch. After a batch of other files' events only it pauses (stormPause, 1 ms)
// before the next read, so that a storm costs a read per millisecond, not a wake-up per event. A check that
// finds nothing changes nothing (checkIntegrity heals only damage): the events of the writer's own repair (a
// truncate back to size, its rename over the path) cost one such check, about 10 µs. A queue overflow
// (IN_Q_OVERFLOW: events were lost) counts as an event of the region.
//
// The watch belongs to the worker generation: Run starts it and closes it when it ends, and the instance is
// opened close-on-exec, so a generation leaves neither a watch nor an fd to the next. When the kernel refuses an
// instance or the directory's watch (fs.inotify.max_user_instances, max_user_watches), the worker says so in one
// log line and keeps the periodic check alone.

const (
	watchDirMask  = syscall.IN_MOVED_TO | syscall.IN_DELETE_SELF | syscall.IN_MOVE_SELF | syscall.IN_ONLYDIR
	watchFileMask = syscall.IN_MODIFY | syscall.IN_ATTRIB | syscall.IN_DELETE_SELF | syscall.IN_MOVE_SELF
	// watchDirFallback: what the directory is asked for too when the file cannot be watched (retarget).
	watchDirFallback = syscall.IN_CREATE | syscall.IN_DELETE | syscall.IN_MOVED_FROM
	// watchBuf holds a batch of events: 4,096 events of an empty name; a few hundred of names of /dev/shm's lengths.
	watchBuf = 64 << 10
	// stormPause is how long the loop waits after a batch of other files' events only, before it reads again: a
	// storm of them is then read in batches of up to this long, not one wake-up per event (a few µs each). An
	// event of the region that comes meanwhile waits at most this long; in a quiet directory none waits at all.
	stormPause = time.Millisecond
)

// inotifyInit opens an inotify instance, and watchFile watches the writer's file; tests replace them to see the
// watch degrade.
var (
	inotifyInit = func() (int, error) { return syscall.InotifyInit1(syscall.IN_CLOEXEC | syscall.IN_NONBLOCK) }
	watchFile   = func(b *writer.Writer, fd int, mask uint32) (int, error) { return b.WatchFile(fd, mask) }
)

// regionWatch is one generation's inotify watch of the region.
type regionWatch struct {
	w       *Worker
	fd      int    // the inotify instance; closed once the loop has ended (stop)
	ep      int    // an epoll instance: the loop waits on fd and wake[0]
	wake    [2]int // a pipe: stop writes it to end the loop's wait
	name    []byte // the base name of the region's path
	dirPath string // its directory
	dir     int    // the directory's watch descriptor
	done    chan struct{}

	mu     sync.Mutex
	file   int  // the watch descriptor of the writer's file, -1 when none
	warned bool // a failure to watch the file was logged (once)

	stats watchStats
}

// watchStats counts what the watch did (tests read them).
type watchStats struct {
	events  atomic.Uint64 // events read, of every name
	matched atomic.Uint64 // of which events of the region
	checks  atomic.Uint64 // checks the watch ran (one per batch with any matched event)
}

// startWatch starts the region watch unless Integrity.NoWatch; it returns the function that stops it and waits
// for its goroutine. A watch the kernel refuses is one log line, and the periodic check alone.
func (w *Worker) startWatch() (stop func()) {
	if w.cfg.Integrity.NoWatch {
		w.log.Info("region watch off: file operations on the region are found by the periodic check", zap.Duration("interval", w.cfg.Integrity.interval()))
		return func() {}
	}
	rw, err := w.newRegionWatch()
	if err != nil {
		w.log.Warn("no inotify watch of the region: damage is found by the periodic check alone", zap.Duration("interval", w.cfg.Integrity.interval()), zap.Error(err))
		return func() {}
	}
	g := &w.guard
	g.mu.Lock()
	g.watch = rw
	rw.retarget() // the file's watch
	g.mu.Unlock()
	w.checkIntegrityBy(triggerWatch) // what happened before the watches were in place
	go rw.loop()
	return func() {
		g.mu.Lock()
		g.watch = nil // no check retargets it from now on
		g.mu.Unlock()
		_, _ = syscall.Write(rw.wake[1], []byte{1}) // ends the loop's wait; a check in progress finishes first
		<-rw.done
		rw.close()
	}
}

func (rw *regionWatch) close() {
	for _, fd := range []int{rw.fd, rw.ep, rw.wake[0], rw.wake[1]} {
		if fd >= 0 {
			syscall.Close(fd)
		}
	}
}

func (w *Worker) newRegionWatch() (*regionWatch, error) {
	fd, err := inotifyInit()
	if err != nil {
		return nil, os.NewSyscallError("inotify_init1", err)
	}
	path := w.cfg.Board.Path()
	dir := filepath.Dir(path)
	rw := &regionWatch{
		w: w, fd: fd, ep: -1, wake: [2]int{-1, -1}, name: []byte(filepath.Base(path)), dirPath: dir, file: -1,
		done: make(chan struct{}),
	}
	if rw.dir, err = syscall.InotifyAddWatch(fd, dir, watchDirMask); err != nil {
		rw.close()
		return nil, &os.PathError{Op: "inotify_add_watch", Path: dir, Err: err}
	}
	if rw.ep, err = syscall.EpollCreate1(syscall.EPOLL_CLOEXEC); err != nil {
		rw.close()
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	if err = syscall.Pipe2(rw.wake[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK); err != nil {
		rw.close()
		return nil, os.NewSyscallError("pipe2", err)
	}
	for _, fd := range []int{rw.fd, rw.wake[0]} {
		if err = syscall.EpollCtl(rw.ep, syscall.EPOLL_CTL_ADD, fd, &syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(fd)}); err != nil {
			rw.close()
			return nil, os.NewSyscallError("epoll_ctl", err)
		}
	}
	return rw, nil
}

// loop reads batches of events and runs a check for each batch that concerns the region, until stop wakes it.
//
// It waits in epoll_wait(2) and pauses in nanosleep(2), blocking system calls of its own thread, not on Go's network
// poller and timers: each wake-up of a goroutine through those costs the runtime's scheduler far more than the
// read. A storm of 200,000 renames in /dev/shm (2.2 s) cost the worker 470 ms of CPU through the poller and a
// timer, 40 ms this way (its pprof profile, this 2-core machine).
func (rw *regionWatch) loop() {
	defer close(rw.done)
	buf := make([]byte, watchBuf)
	var evs [2]syscall.EpollEvent
	pause := syscall.NsecToTimespec(int64(stormPause))
	for {
		n, err := syscall.EpollWait(rw.ep, evs[:], -1)
		if err != nil && err != syscall.EINTR {
			rw.w.log.Error("the region watch stopped: damage is found by the periodic check alone", zap.Error(os.NewSyscallError("epoll_wait", err)))
			return
		}
		for _, ev := range evs[:max(n, 0)] {
			if int(ev.Fd) == rw.wake[0] {
				return
			}
		}
		n, err = syscall.Read(rw.fd, buf)
		switch {
		case err == syscall.EAGAIN || err == syscall.EINTR || n <= 0 && err == nil:
			continue
		case err != nil:
			rw.w.log.Error("the region watch stopped: damage is found by the periodic check alone", zap.Error(os.NewSyscallError("read inotify", err)))
			return
		}
		if !rw.scan(buf[:n]) {
			_ = syscall.Nanosleep(&pause, nil)
			continue
		}
		rw.stats.checks.Add(1)
		rw.w.checkIntegrityBy(triggerWatch) // and retarget: the writer may have moved to a new file
	}
}

// scan reports whether a batch of events holds any event of the region.
func (rw *regionWatch) scan(b []byte) (region bool) {
	rw.mu.Lock()
	file := rw.file
	rw.mu.Unlock()
	for len(b) >= syscall.SizeofInotifyEvent {
		ev := (*syscall.InotifyEvent)(unsafe.Pointer(&b[0]))
		end := syscall.SizeofInotifyEvent + int(ev.Len)
		if end > len(b) {
			break // the kernel never splits an event
		}
		name := b[syscall.SizeofInotifyEvent:end]
		b = b[end:]
		rw.stats.events.Add(1)
		var match bool
		switch wd := int(ev.Wd); {
		case ev.Mask&syscall.IN_Q_OVERFLOW != 0:
			match = true // events were lost: any of them may have been the region's
		case wd == rw.dir && ev.Mask&(syscall.IN_IGNORED|syscall.IN_DELETE_SELF|syscall.IN_MOVE_SELF|syscall.IN_UNMOUNT) != 0:
			match = true
			if ev.Mask&syscall.IN_IGNORED != 0 {
				rw.w.log.Warn("the region's directory is no longer watched (removed, moved or unmounted): damage is found by the periodic check alone")
			}
		case wd == rw.dir:
			match = isName(name, rw.name)
		case wd == file:
			match = ev.Mask&syscall.IN_IGNORED == 0
			if !match { // the file is gone for good (unlinked, and closed by all): its watch with it
				rw.mu.Lock()
				if rw.file == wd {
					rw.file = -1
				}
				rw.mu.Unlock()
			}
		}
		if match {
			rw.stats.matched.Add(1)
			region = true
		}
	}
	return region
}

// isName reports whether an event's name field (NUL-padded) is want.
func isName(field, want []byte) bool {
	return len(field) >= len(want) && bytes.Equal(field[:len(want)], want) && (len(field) == len(want) || field[len(want)] == 0)
}

// retarget puts the file's watch on the file the writer maps now, and removes the watch of the file it mapped
// before; moved: the watch is on another file than before (the caller checks it once more: what happened to it
// before the watch was there raised no event). Called after each check (guard.mu held).
func (rw *regionWatch) retarget() (moved bool) {
	rw.mu.Lock()
	defer rw.mu.Unlock()
	// The instance is open: it is closed only after stop has taken the watch from the guard (guard.mu, held).
	wd, werr := watchFile(rw.w.cfg.Board, rw.fd, watchFileMask)
	if werr != nil {
		if !rw.warned {
			rw.warned = true
			// Without the file's watch, the directory's is asked for the entry events of the name too: rm is seen
			// there (at the cost of every other file's events in the directory).
			_, derr := syscall.InotifyAddWatch(rw.fd, rw.dirPath, watchDirMask|watchDirFallback)
			rw.w.log.Warn("no inotify watch on the region's file: truncation, growth and writes are found by the periodic check; the directory's watch sees removal and renames", zap.Error(werr), zap.NamedError("directory", derr))
		}
		return false
	}
	if wd == rw.file {
		return false
	}
	if rw.file >= 0 {
		_, _ = syscall.InotifyRmWatch(rw.fd, uint32(rw.file)) // EINVAL when the kernel dropped it already
	}
	rw.file = wd
	return true
}
