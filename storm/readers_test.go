package storm_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/announcementd/announcementd/board"
	"github.com/announcementd/announcementd/board/reader"
	"github.com/announcementd/announcementd/internal/stress"
)

// observer is one reader of the board: a follower (it takes whole snapshots, whose records it checks against the
// model) or a version watcher (it only sees versions). Every version it reports must be at least the highest it
// reported before, across restarts of its process.
type observer struct {
	name    string
	records bool // it reports records, which are checked

	mu          sync.Mutex
	high        uint64
	versions    int            // versions reported
	decreases   []string       // a version below one reported before
	torn        []string       // a snapshot with a record no client wrote
	regressions []string       // an id's n lower than in an earlier version (an older change came back)
	errors      map[string]int // failed reads, by error name
	exits       []string       // its process ended by itself (killed by a signal, or exited): why
	kicks       int            // restarts by the storm, because it did not follow the board
	lastN       map[uint64]uint64
	kick        func() // restarts it (set by whoever runs it)
}

func newObserver(name string, records bool) *observer {
	return &observer{name: name, records: records, errors: map[string]int{}, lastN: map[uint64]uint64{}}
}

func note(list *[]string, format string, args ...any) {
	if len(*list) < 1000 {
		*list = append(*list, fmt.Sprintf(format, args...))
	}
}

// version records a version the observer reported.
func (o *observer) version(v uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.versionLocked(v)
}

func (o *observer) versionLocked(v uint64) {
	o.versions++
	if v < o.high {
		note(&o.decreases, "%s: version %d after version %d (%s)", o.name, v, o.high, time.Now().Format("15:04:05.000"))
		return
	}
	o.high = v
}

type record struct {
	id      uint64
	content string
}

// snapshot records a snapshot the observer accepted and checks its records against the model.
func (o *observer) snapshot(m *model, v uint64, recs []record) {
	var bad []string
	for _, r := range recs {
		if why := m.checkRecord(r.id, r.content); why != "" {
			bad = append(bad, why)
		}
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.versionLocked(v)
	if len(bad) > 0 {
		note(&o.torn, "%s: version %d: %s", o.name, v, strings.Join(bad, "; "))
		return
	}
	for _, r := range recs {
		_, n, _ := stress.ParseSelfCheck(r.content)
		if prev := o.lastN[r.id]; n < prev {
			note(&o.regressions, "%s: version %d: announcement %d is change n=%d after n=%d", o.name, v, r.id, n, prev)
		} else {
			o.lastN[r.id] = n
		}
	}
}

func (o *observer) fail(name string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.errors[name]++
}

func (o *observer) last() uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.high
}

// --- the Go follower: board/reader's Follower, in this process ---

func runGoFollower(ctx context.Context, wg *sync.WaitGroup, o *observer, m *model, path string) {
	kicked := make(chan struct{}, 1)
	o.kick = func() {
		select {
		case kicked <- struct{}{}:
		default:
		}
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			fctx, cancel := context.WithCancel(ctx)
			done := make(chan struct{})
			go func() {
				select {
				case <-kicked:
					cancel()
				case <-done:
				}
			}()
			followOnce(fctx, o, m, path)
			close(done)
			cancel()
		}
	}()
}

// followOnce follows path with a new reader.Follower until ctx is done.
func followOnce(ctx context.Context, o *observer, m *model, path string) {
	var f *reader.Follower
	for f == nil {
		var err error
		if f, err = reader.NewFollower(path, reader.FollowOptions{}); err != nil {
			o.fail("open:" + string(board.CodeOf(err)))
			select {
			case <-ctx.Done():
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	defer f.Close()
	var last uint64
	lost := false
	for ctx.Err() == nil {
		u, err := f.Next(ctx, last)
		if (u.Lost != nil) != lost {
			if lost = u.Lost != nil; lost {
				o.fail("lost:" + string(board.CodeOf(u.Lost)))
			}
		}
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			o.fail(string(board.CodeOf(err)))
			time.Sleep(2 * time.Millisecond) // on purpose: a follower's pause after an error, not a tight loop
			continue
		}
		if u.Changed {
			recs := make([]record, len(u.Snapshot.Records))
			for i, r := range u.Snapshot.Records {
				recs[i] = record{r.ID, r.Content}
			}
			o.snapshot(m, u.Snapshot.Version, recs)
			last = u.Snapshot.Version
		}
	}
}

// --- the raw version watcher: the version word of the file at the path, read with pread every 2 ms ---

// runRawWatcher reads the first 16 bytes of the file at path (the version word and the magic, FORMAT.md §2) every
// 2 ms and reports the version of every file with a valid magic: what the simplest poller in the article does. It
// needs no mapping, so a truncated file cannot fault it.
func runRawWatcher(ctx context.Context, wg *sync.WaitGroup, o *observer, path string) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 16)
		last := uint64(0)
		for ctx.Err() == nil {
			time.Sleep(2 * time.Millisecond)
			f, err := os.Open(path)
			if err != nil {
				continue
			}
			n, _ := f.ReadAt(buf, 0)
			f.Close()
			if n < 16 || string(buf[8:16]) != "NTCBOARD" {
				continue
			}
			v := binary.LittleEndian.Uint64(buf[:8])
			if v != last {
				o.version(v)
				last = v
			}
		}
	}()
}

// --- reader processes: the C follower, the CLI's watch, storm/follow.py ---

// readerProc runs a reader process, restarting it whenever it ends by itself (its end is recorded) until stopped.
type readerProc struct {
	o     *observer
	argv  []string
	parse func(line []byte)

	mu      sync.Mutex
	cmd     *exec.Cmd
	stopped bool
	killed  bool // the storm killed it, to start it again
	done    chan struct{}
}

// kill kills the running process; the loop starts it again.
func (p *readerProc) kill() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil {
		p.killed = true
		p.cmd.Process.Kill()
	}
}

func startReaderProc(o *observer, parse func([]byte), argv ...string) *readerProc {
	p := &readerProc{o: o, argv: argv, parse: parse, done: make(chan struct{})}
	o.kick = p.kill
	go p.loop()
	return p
}

func (p *readerProc) loop() {
	runtime.LockOSThread() // never unlocked: Pdeathsig fires when the thread that started the process exits
	defer close(p.done)
	for {
		p.mu.Lock()
		if p.stopped {
			p.mu.Unlock()
			return
		}
		cmd := exec.Command(p.argv[0], p.argv[1:]...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // if the test process dies first
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		stdout, err := cmd.StdoutPipe()
		if err == nil {
			err = cmd.Start()
		}
		if err != nil {
			p.mu.Unlock()
			p.o.mu.Lock()
			note(&p.o.exits, "%s: start: %v", p.o.name, err)
			p.o.mu.Unlock()
			time.Sleep(time.Second) // on purpose: a reader that could not start is tried again after a pause
			continue
		}
		p.cmd = cmd
		p.mu.Unlock()

		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			p.parse(sc.Bytes())
		}
		err = cmd.Wait()
		p.mu.Lock()
		stopped, killed := p.stopped, p.killed
		p.cmd, p.killed = nil, false
		p.mu.Unlock()
		if stopped {
			return
		}
		if killed {
			continue // the storm restarts it
		}
		why := "exit status 0"
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			why = ee.String()
		} else if err != nil {
			why = err.Error()
		}
		if tail := lastLine(stderr.String()); tail != "" {
			why += ": " + tail
		}
		p.o.mu.Lock()
		note(&p.o.exits, "%s (%s)", why, time.Now().Format("15:04:05.000"))
		p.o.mu.Unlock()
		time.Sleep(50 * time.Millisecond) // on purpose: a reader that exited is started again after a pause
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	l := lines[len(lines)-1]
	if len(l) > 300 {
		l = l[:300] + "..."
	}
	return l
}

// stop sends SIGTERM (the readers print their last lines and exit), and SIGKILL after 10 s.
func (p *readerProc) stop() {
	p.mu.Lock()
	p.stopped = true
	if p.cmd != nil {
		p.cmd.Process.Signal(syscall.SIGTERM)
	}
	cmd := p.cmd
	p.mu.Unlock()
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		if cmd != nil {
			cmd.Process.Kill()
		}
		<-p.done
	}
}

// parseNoticeFollow reads clients/c/notice_follow's lines (its header comment): versions, and the error counts of
// its summary.
func parseNoticeFollow(o *observer) func([]byte) {
	return func(line []byte) {
		var ev struct {
			Event   string         `json:"event"`
			Version uint64         `json:"version"`
			Errors  map[string]int `json:"errors"`
			Error   string         `json:"error"`
			Reason  string         `json:"reason"`
		}
		if json.Unmarshal(line, &ev) != nil {
			o.fail("bad output line")
			return
		}
		switch {
		case ev.Error != "":
			o.fail("open:" + ev.Error)
		case ev.Event == "version":
			o.version(ev.Version)
		case ev.Event == "lost":
			o.fail("lost:" + ev.Reason)
		case ev.Event == "end":
			for name, n := range ev.Errors {
				o.mu.Lock()
				o.errors[name] += n
				o.mu.Unlock()
			}
		}
	}
}

// parseWatch reads `announcementctl watch --json` (one change per line; lines with an event repeat the last version).
func parseWatch(o *observer) func([]byte) {
	return func(line []byte) {
		var c struct {
			Version uint64 `json:"version"`
			Event   string `json:"event"`
		}
		if json.Unmarshal(line, &c) != nil {
			o.fail("bad output line")
			return
		}
		switch c.Event {
		case "":
			o.version(c.Version)
		case "lost":
			o.fail("lost")
		}
	}
}

// parseFollowPy reads storm/follow.py's lines.
func parseFollowPy(o *observer, m *model) func([]byte) {
	return func(line []byte) {
		var ev struct {
			V    *uint64              `json:"v"`
			R    [][2]json.RawMessage `json:"r"`
			E    string               `json:"e"`
			Lost string               `json:"lost"`
		}
		if json.Unmarshal(line, &ev) != nil {
			o.fail("bad output line")
			return
		}
		switch {
		case ev.E != "":
			o.fail(ev.E)
		case ev.Lost != "":
			o.fail("lost:" + ev.Lost)
		case ev.V != nil:
			recs := make([]record, 0, len(ev.R))
			for _, r := range ev.R {
				var rec record
				if json.Unmarshal(r[0], &rec.id) != nil || json.Unmarshal(r[1], &rec.content) != nil {
					o.fail("bad output line")
					return
				}
				recs = append(recs, rec)
			}
			o.snapshot(m, *ev.V, recs)
		}
	}
}

// errorList is the observer's error counts, for a message.
func (o *observer) errorList() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	var errs []string
	for name, n := range o.errors {
		errs = append(errs, fmt.Sprintf("%s %d", name, n))
	}
	sort.Strings(errs)
	if len(errs) == 0 {
		return "none"
	}
	return strings.Join(errs, ", ")
}
