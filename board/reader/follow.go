package reader

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"time"

	"golang.org/x/sys/unix"

	"github.com/announcementd/announcementd/board"
)

// CodeVersionWentBack is the error of a Follower whose path now shows a lower version than one it returned
// before. The daemon never does that (the version continues above the old one in a new file); the follower
// refuses the snapshot and keeps waiting for a version at least as high.
const CodeVersionWentBack board.Code = "version_went_back"

// ErrVersionWentBack matches the error Follower.Snapshot returns for a snapshot below one it returned before.
var ErrVersionWentBack = &board.Error{Code: CodeVersionWentBack}

// FollowOptions configure a Follower. The zero value is usable.
type FollowOptions struct {
	// StaleAfter: the writer is stale when its heartbeat is older than this (FORMAT.md §7). Default 5 s.
	StaleAfter time.Duration
	// CheckEvery: how often Next, while it waits, checks the path for a new file that came without a wake-up (the
	// file unlinked and recreated, or replaced without being superseded) and re-reads the heartbeat. Default 100 ms.
	CheckEvery time.Duration
}

// Update is what Follower.Next reports.
type Update struct {
	// Snapshot is the newest snapshot the follower accepted (nil until it accepted one). Its version never
	// decreases from one Update to the next.
	Snapshot *board.Snapshot
	// Changed: Snapshot is new, its version is above the last version passed to Next.
	Changed bool
	// Stale: the writer's heartbeat is older than StaleAfter (or the open file can no longer be read). Not stale
	// and not Changed is "no change": the writer is alive and has nothing new.
	Stale bool
	// Reopened is how many times the follower moved to a new file at the path since the previous Update.
	Reopened int
	// Lost is non-nil while the open file is retired (superseded, or truncated under the mapping) and the path
	// does not name a usable replacement yet: why. Snapshot is then the last good one.
	Lost error
}

// Follower follows the board at a path across the writer's replacements of the file (FORMAT.md §5, "Following
// the path"). It reopens the path when the open board is superseded, when the path names another file than the
// open one (stat dev/ino: an unlink and recreate, or a rename over it, even before the old file is marked), and
// when the open file was truncated under the mapping: then the same file, once whole again (the writer restores
// it in place), is opened, validated and mapped afresh. It never returns a version lower than one it returned
// before. A Follower keeps the file open (one descriptor) to fstat it. It is not safe for concurrent use.
//
// Touching pages of a file that shrank raises SIGBUS; the follower turns that fault into a truncated file (and
// moves on), so a truncation cannot kill the process.
type Follower struct {
	path    string
	opts    FollowOptions
	cur     *followed
	high    uint64          // the highest version returned
	snap    *board.Snapshot // the last accepted snapshot
	reopens int
	lost    error
	// what the last Update reported, so that Next returns on each change of it
	reported struct {
		stale, lost bool
		reopens     int
	}
}

// followed is one open file of a Follower.
type followed struct {
	b        *Board
	r        *Reader
	f        *os.File
	dev, ino uint64
	bad      error // set once the file is known to have shrunk under the mapping: never touch it again
}

func (c *followed) close() {
	c.b.Close()
	c.f.Close()
}

// NewFollower opens the board at path (as Open; an error if it cannot) and returns a Follower of the path.
func NewFollower(path string, opts FollowOptions) (*Follower, error) {
	if opts.StaleAfter <= 0 {
		opts.StaleAfter = 5 * time.Second
	}
	if opts.CheckEvery <= 0 {
		opts.CheckEvery = 100 * time.Millisecond
	}
	c, err := follow(path)
	if err != nil {
		return nil, err
	}
	return &Follower{path: path, opts: opts, cur: c}, nil
}

func follow(path string) (*followed, error) {
	b, f, st, err := openFile(path)
	if err != nil {
		return nil, err
	}
	return &followed{b: b, r: b.NewReader(), f: f, dev: st.Dev, ino: st.Ino}, nil
}

// Close unmaps the open board and closes its file.
func (f *Follower) Close() error {
	if f.cur != nil {
		f.cur.close()
		f.cur = nil
	}
	return nil
}

// Path is the path the follower follows.
func (f *Follower) Path() string { return f.path }

// Reopens is how many times the follower moved to a new file at the path.
func (f *Follower) Reopens() int { return f.reopens }

// Stale reports whether the writer's heartbeat in the open file is older than StaleAfter; a file that shrank
// under the mapping counts as stale.
func (f *Follower) Stale() bool {
	c := f.cur
	stale := true
	if c.bad == nil {
		f.touch(func() { stale = c.b.Stale(f.opts.StaleAfter) })
	}
	return stale
}

// touch runs fn, which reads the current mapping. A fault (the file shrank under the mapping) marks the file bad
// and returns false.
func (f *Follower) touch(fn func()) (ok bool) {
	old := debug.SetPanicOnFault(true)
	defer func() {
		debug.SetPanicOnFault(old)
		if r := recover(); r != nil {
			re, isFault := r.(interface{ Addr() uintptr })
			if !isFault {
				panic(r)
			}
			f.cur.bad = board.Errorf(board.CodeTruncated, "%s shrank under the mapping (fault at %#x)", f.path, re.Addr())
			ok = false
		}
	}()
	fn()
	return true
}

// refresh checks whether the open file is still the board to read, and moves to the file at the path when it is
// not and the path names a usable one. It sets f.lost.
func (f *Follower) refresh() {
	c := f.cur
	var reason error // why the open file is retired; nil if it is only the path that names another file
	var st unix.Stat_t
	switch {
	case c.bad != nil:
		reason = c.bad
	case unix.Fstat(int(c.f.Fd()), &st) != nil || st.Size < int64(len(c.b.mem)):
		c.bad = board.Errorf(board.CodeTruncated, "%s shrank to %d bytes under a mapping of %d", f.path, st.Size, len(c.b.mem))
		reason = c.bad
	default:
		var state board.State
		if !f.touch(func() { state = c.b.State() }) {
			reason = c.bad
		} else if state == board.StateSuperseded {
			reason = board.Errorf(board.CodeSuperseded, "%s was superseded", f.path)
		} else if unix.Stat(f.path, &st) != nil || (st.Dev == c.dev && st.Ino == c.ino) {
			// The path still names the open file, or nothing (unlinked: the writer may still publish into
			// it until it recreates the path).
			f.lost = nil
			return
		}
	}
	n, err := follow(f.path)
	// A new file at the path; or the same one, truncated under the old mapping and now whole again (the writer
	// restores a truncated file in place): follow validated it afresh and mapped it at its size now.
	if err == nil && (n.dev != c.dev || n.ino != c.ino || c.bad != nil) {
		if n.dev != c.dev || n.ino != c.ino {
			f.reopens++ // a move to a new file; a file restored in place is the same one
		}
		c.close()
		f.cur = n
		f.lost = nil
		return
	}
	if err == nil {
		n.close() // the path still names the retired file: the new one is not there yet
		err = errors.New("the path still names it")
	}
	if reason == nil {
		f.lost = nil // the new file at the path is not usable yet; the open one still is
		return
	}
	f.lost = fmt.Errorf("%w; reopening %s: %v", reason, f.path, err)
}

// Snapshot returns the current snapshot of the board at the path, reopening the path first if the open file is
// superseded, replaced or truncated. Errors: the reader's (busy and not_published are transient), the error of
// a lost file (superseded or truncated, with no usable replacement at the path yet: try again later), and
// ErrVersionWentBack for a snapshot lower than one returned before.
func (f *Follower) Snapshot() (*board.Snapshot, error) {
	for try := 0; ; try++ {
		f.refresh()
		if f.lost != nil {
			return nil, f.lost
		}
		var s *board.Snapshot
		var err error
		c := f.cur
		if !f.touch(func() { s, err = c.r.Snapshot() }) || errors.Is(err, board.ErrSuperseded) {
			if try < 2 {
				continue // refresh moves to the new file
			}
			if err == nil {
				err = c.bad
			}
		}
		if err != nil {
			return nil, err
		}
		if s.Version < f.high {
			return nil, board.Errorf(CodeVersionWentBack, "%s shows version %d, below version %d read before", f.path, s.Version, f.high)
		}
		f.high, f.snap = s.Version, s
		return s, nil
	}
}

// Next blocks until there is something to report, and reports it: a snapshot with a version above last (and not
// below any version returned before), a move to a new file, the writer going stale or alive again, or the open
// file being lost or found again. Call it in a loop with the last version you have seen (0 at first: the current
// snapshot is reported at once). It waits on the board's futex, waking every CheckEvery to check the path and the
// heartbeat. When ctx is done it returns the current state (Snapshot, Stale, Lost) with ctx.Err(). Other errors
// are corrupt snapshots (snapshot_checksum, record_checksum, bad_record); calling Next again retries.
func (f *Follower) Next(ctx context.Context, last uint64) (Update, error) {
	for {
		f.refresh()
		u := Update{Reopened: f.reopens - f.reported.reopens, Lost: f.lost}
		var v uint64
		c := f.cur
		usable := f.lost == nil && f.touch(func() { v = c.b.Version() })
		if usable && v > last && v >= f.high {
			var s *board.Snapshot
			var err error
			if !f.touch(func() { s, err = c.r.Snapshot() }) {
				continue // the next refresh finds the file truncated
			}
			switch {
			case err == nil && s.Version >= f.high: // s.Version >= v > last
				f.high, f.snap = s.Version, s
				u.Changed = true
			case err == nil, errors.Is(err, board.ErrBusy), errors.Is(err, board.ErrNotPublished):
				// busy: wait for the version to move on (the writer is publishing)
			case errors.Is(err, board.ErrSuperseded):
				continue // the next refresh moves to the new file
			default:
				u.Stale = f.Stale()
				return f.report(u), err
			}
		}
		u.Snapshot = f.snap
		u.Stale = f.Stale()
		if u.Changed || u.Reopened > 0 || u.Stale != f.reported.stale || (u.Lost != nil) != f.reported.lost {
			return f.report(u), nil
		}
		if err := ctx.Err(); err != nil {
			return u, err
		}
		var err error
		if usable && c.bad == nil {
			f.touch(func() { _, err = c.r.Wait(ctx, v, f.opts.CheckEvery) })
		}
		if be := (*board.Error)(nil); !usable || errors.As(err, &be) && be.Code == board.CodeIO {
			// No file to wait on, or futex(2) failed (EFAULT: the file shrank, which the next refresh sees).
			select {
			case <-ctx.Done():
			case <-time.After(f.opts.CheckEvery):
			}
		}
	}
}

func (f *Follower) report(u Update) Update {
	u.Snapshot = f.snap
	f.reported.stale, f.reported.lost, f.reported.reopens = u.Stale, u.Lost != nil, f.reopens
	return u
}
