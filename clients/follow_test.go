package clients_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/announcementd/announcementd/board"
	"github.com/announcementd/announcementd/board/reader"
	"github.com/announcementd/announcementd/board/writer"
	"github.com/announcementd/announcementd/internal/proctest"
	"github.com/announcementd/announcementd/internal/stress"
)

// The follow tests run a writer helper process that replaces its board file the way the daemon's region guard
// will (a new file renamed over the path, then the old one superseded), and in other ways it must survive (renamed
// over without superseding, unlinked and recreated in place, truncated under the readers), while followers in Go,
// C (plain and ASan/UBSan) and Python follow the path and print every version they see. The test drives the
// writer with commands on its stdin and waits for the followers' output: it asserts counts, never timings (the
// waits have a generous guard only).

const followRegionSize = 1 << 20

// followWriter is the writer helper's state.
type followWriter struct {
	path  string
	mu    sync.Mutex
	w     *writer.Writer // the current file's writer; nil after truncate
	last  uint64         // the last version published
	files []uint64       // the first version of every file created
	beat  bool           // heartbeat every 20 ms
}

// followWriterMain is the writer helper. Commands, one per line on stdin; each answers one JSON line
// {"version": last version, "files": [first version of each file]} or {"error": ...}:
//
//	burst N          publish N versions (stress.Snapshot(v), self-checking) into the current file
//	new MODE         put a new file at the path, its first version above the last: MODE rename (temp file, rename
//	                 over the path, supersede the old one: what the daemon does), rename-nosupersede, or unlink
//	                 (remove the path, create the new file in place; the old one is not marked)
//	truncate         close the writer and truncate its file at the path to 4096 bytes (no new file yet)
//	shrink N         truncate the current file to N bytes under its writer, which restores it in place (same
//	                 inode) at its next publish: the publish faults, and the writer repairs and republishes
//	churn N K P      N times: new (mostly rename, every 5th rename-nosupersede, every 7th unlink), then K
//	                 publishes P µs apart (so that the followers are reading while the files change)
//	heartbeat on|off
//	quit
func followWriterMain(path string) int {
	fw := &followWriter{path: path, beat: true}
	if err := fw.create(path, 0); err != nil {
		fmt.Println(err)
		return 1
	}
	go func() {
		for range time.Tick(20 * time.Millisecond) {
			fw.mu.Lock()
			if fw.beat && fw.w != nil {
				fw.w.Heartbeat()
			}
			fw.mu.Unlock()
		}
	}()
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		f := strings.Fields(in.Text())
		if len(f) == 0 {
			continue
		}
		if f[0] == "quit" {
			break
		}
		fw.mu.Lock()
		err := fw.do(f)
		reply := map[string]any{"version": fw.last, "files": fw.files}
		fw.mu.Unlock()
		if err != nil {
			reply = map[string]any{"error": err.Error()}
		}
		b, _ := json.Marshal(reply)
		fmt.Println(string(b))
	}
	fw.mu.Lock()
	defer fw.mu.Unlock()
	if fw.w != nil {
		fw.w.Close()
	}
	return 0
}

func (fw *followWriter) do(f []string) error {
	arg := func(i int) int {
		if i >= len(f) {
			return 0
		}
		n, _ := strconv.Atoi(f[i])
		return n
	}
	switch f[0] {
	case "burst":
		return fw.burst(arg(1))
	case "new":
		if len(f) != 2 {
			return errors.New("new MODE")
		}
		return fw.replace(f[1])
	case "truncate":
		if fw.w == nil {
			return errors.New("no writer")
		}
		fw.w.Close()
		fw.w = nil
		return os.Truncate(fw.path, 4096)
	case "shrink":
		if fw.w == nil {
			return errors.New("no writer")
		}
		return os.Truncate(fw.path, int64(arg(1)))
	case "churn":
		for i := 1; i <= arg(1); i++ {
			mode := "rename"
			switch {
			case i%7 == 0:
				mode = "unlink"
			case i%5 == 0:
				mode = "rename-nosupersede"
			}
			if err := fw.replace(mode); err != nil {
				return err
			}
			for range arg(2) {
				// Let the heartbeat in; the pause is the churn's pace (the command's third argument), on purpose.
				fw.mu.Unlock()
				time.Sleep(time.Duration(arg(3)) * time.Microsecond)
				fw.mu.Lock()
				if err := fw.burst(1); err != nil {
					return err
				}
			}
		}
		return nil
	case "heartbeat":
		fw.beat = len(f) == 2 && f[1] == "on"
		return nil
	}
	return fmt.Errorf("unknown command %q", f[0])
}

// publish publishes stress.Snapshot(want) and checks that the writer gave it version want: the content of every
// version is a function of the version, so the followers can tell a torn snapshot.
func (fw *followWriter) publish(w *writer.Writer, want uint64) error {
	v, err := w.Publish(stress.Snapshot(want))
	if err != nil {
		return err
	}
	if v != want {
		return fmt.Errorf("published version %d, expected %d", v, want)
	}
	fw.last = v
	return nil
}

func (fw *followWriter) burst(n int) error {
	if fw.w == nil {
		return errors.New("no writer")
	}
	for range n {
		if err := fw.publish(fw.w, fw.last+1); err != nil {
			return err
		}
	}
	return nil
}

// create opens a new board at path with its first version above floor: the smallest odd version above it (a new
// file is at version 0, and a jump lands an odd distance away, FORMAT.md §4).
func (fw *followWriter) create(path string, floor uint64) error {
	w, err := writer.Open(path, writer.Options{Size: followRegionSize, VersionFloor: floor})
	if err != nil {
		return err
	}
	want := floor + 1
	if want%2 == 0 {
		want++
	}
	if err := fw.publish(w, want); err != nil {
		w.Close()
		return err
	}
	fw.files = append(fw.files, want)
	fw.w = w
	return nil
}

func (fw *followWriter) replace(mode string) error {
	old := fw.w
	switch mode {
	case "rename", "rename-nosupersede":
		tmp := fw.path + ".new"
		if err := fw.create(tmp, fw.last); err != nil {
			return err
		}
		if err := os.Rename(tmp, fw.path); err != nil {
			return err
		}
		if old != nil && mode == "rename" {
			if err := old.Supersede(); err != nil {
				return err
			}
		}
	case "unlink":
		if err := os.Remove(fw.path); err != nil {
			return err
		}
		if err := fw.create(fw.path, fw.last); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown mode %q", mode)
	}
	if old != nil {
		old.Close()
	}
	return nil
}

// goFollowerMain is the Go follower, with the command line and output of clients/c/notice_follow.
func goFollowerMain(args []string) int {
	fs := flag.NewFlagSet("follower", flag.ContinueOnError)
	staleMS := fs.Int("s", 5000, "stale after this many ms")
	check := fs.Bool("c", false, "check the stress pattern")
	if fs.Parse(args) != nil || fs.NArg() != 1 {
		return 2
	}
	out := json.NewEncoder(os.Stdout)
	f, err := reader.NewFollower(fs.Arg(0), reader.FollowOptions{StaleAfter: time.Duration(*staleMS) * time.Millisecond})
	if err != nil {
		out.Encode(map[string]any{"error": board.CodeOf(err), "message": err.Error()})
		return 1
	}
	defer f.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	var last uint64
	var versions, valid, decreases int
	var lastValid, stale bool
	errs := map[string]int{}
	for {
		u, err := f.Next(ctx, last)
		if ctx.Err() != nil {
			break
		}
		if err != nil {
			errs[string(board.CodeOf(err))]++
			continue
		}
		if u.Reopened > 0 {
			out.Encode(map[string]any{"event": "reopened", "version": last, "reopens": f.Reopens()})
		}
		if u.Lost != nil {
			out.Encode(map[string]any{"event": "lost", "version": last, "reason": board.CodeOf(u.Lost)})
		}
		if u.Changed {
			s := u.Snapshot
			ok := !*check || slices.Equal(s.Records, stress.Snapshot(s.Version))
			if s.Version < last {
				decreases++
			}
			last = s.Version
			versions++
			if ok {
				valid++
			}
			lastValid = ok
			line := map[string]any{"event": "version", "version": last, "count": len(s.Records), "reopens": f.Reopens()}
			if *check {
				line["valid"] = ok
			}
			out.Encode(line)
		}
		if u.Stale != stale {
			stale = u.Stale
			ev := "alive"
			if stale {
				ev = "stale"
			}
			out.Encode(map[string]any{"event": ev, "version": last})
		}
	}
	torn := 0
	if *check {
		torn = versions - valid
	}
	out.Encode(map[string]any{"event": "end", "versions": versions, "validated": valid, "torn": torn,
		"decreases": decreases, "reopens": f.Reopens(), "last": last, "last_valid": lastValid, "errors": errs})
	return 0
}

// followEvent is one line of a follower's output.
type followEvent struct {
	Event     string         `json:"event"`
	Version   uint64         `json:"version"`
	Reopens   int            `json:"reopens"`
	Valid     *bool          `json:"valid"`
	Reason    string         `json:"reason"`
	Error     string         `json:"error"`
	Versions  int            `json:"versions"`
	Validated int            `json:"validated"`
	Torn      int            `json:"torn"`
	Decreases int            `json:"decreases"`
	Last      uint64         `json:"last"`
	LastValid bool           `json:"last_valid"`
	Errors    map[string]int `json:"errors"`
}

// follower is a follower process and what it printed so far.
type follower struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when its output ended

	mu       sync.Mutex
	versions []uint64 // every version it reported, in order
	invalid  []uint64 // versions whose snapshot did not match the stress pattern
	last     uint64
	reopens  int
	stale    bool
	staleN   int // stale events
	aliveN   int // alive events
	lost     []string
	end      *followEvent
	bad      []string // lines that are not events
	stderr   strings.Builder
}

func (p *follower) read(r io.Reader) {
	defer close(p.done)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		var e followEvent
		p.mu.Lock()
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil || e.Event == "" {
			p.bad = append(p.bad, sc.Text())
			p.mu.Unlock()
			continue
		}
		switch e.Event {
		case "version":
			p.versions = append(p.versions, e.Version)
			p.last = e.Version
			p.reopens = e.Reopens
			if e.Valid == nil || !*e.Valid {
				p.invalid = append(p.invalid, e.Version)
			}
		case "reopened":
			p.reopens = e.Reopens
		case "lost":
			p.lost = append(p.lost, e.Reason)
		case "stale":
			p.stale = true
			p.staleN++
		case "alive":
			p.stale = false
			p.aliveN++
		case "end":
			p.end = &e
		}
		p.mu.Unlock()
	}
}

// followers starts one follower per language on path, checking the stress pattern, stale after staleMS.
func startFollowers(t *testing.T, path string, staleMS int) []*follower {
	s := strconv.Itoa(staleMS)
	cmds := map[string]*exec.Cmd{
		"go":     proctest.Command(t, "follower", "-s", s, "-c", path),
		"c":      exec.Command("c/notice_follow", "-s", s, "-c", path),
		"c-asan": exec.Command("c/notice_follow_asan", "-s", s, "-c", path),
		"python": exec.Command(need(t, "python3"), "python/notice_follow.py", "-s", s, "-c", path),
	}
	var ps []*follower
	for _, name := range []string{"go", "c", "c-asan", "python"} {
		p := &follower{name: name, done: make(chan struct{})}
		p.cmd = cmds[name]
		p.cmd.Stderr = &p.stderr
		out, err := p.cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := p.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go p.read(out)
		t.Cleanup(func() { p.cmd.Process.Kill(); p.cmd.Wait() })
		ps = append(ps, p)
	}
	return ps
}

// waitFollowers waits until every follower satisfies ok. A follower that exits first, or a guard of two minutes,
// fails the test: the counts matter, not how long it took.
func waitFollowers(t *testing.T, ps []*follower, what string, ok func(p *follower) bool) {
	t.Helper()
	guard := time.After(2 * time.Minute)
	for _, p := range ps {
		for {
			p.mu.Lock()
			good := ok(p)
			p.mu.Unlock()
			if good {
				break
			}
			select {
			case <-p.done:
				err := p.cmd.Wait() // how it ended (a signal?), and the whole of its stderr
				t.Fatalf("%s follower ended before %s (%v): bad lines %q, stderr:\n%s", p.name, what, err, p.bad, p.stderr.String())
			case <-guard:
				t.Fatalf("%s follower: no %s within the guard (last version %d, reopens %d, lost %v, stale %v)",
					p.name, what, p.last, p.reopens, p.lost, p.stale)
			case <-time.After(5 * time.Millisecond):
			}
		}
	}
}

func reached(v uint64) func(p *follower) bool {
	return func(p *follower) bool { return p.last >= v }
}

// stopFollowers ends the followers with SIGTERM and waits for their summaries.
func stopFollowers(t *testing.T, ps []*follower) {
	t.Helper()
	for _, p := range ps {
		p.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, p := range ps {
		select {
		case <-p.done:
		case <-time.After(time.Minute):
			t.Fatalf("%s follower did not end on SIGTERM", p.name)
		}
		if err := p.cmd.Wait(); err != nil {
			t.Errorf("%s follower: %v\n%s", p.name, err, p.stderr.String())
		}
		if p.end == nil {
			t.Fatalf("%s follower printed no summary; bad lines %q, stderr:\n%s", p.name, p.bad, p.stderr.String())
		}
	}
}

// followWriterProc is the writer helper, driven through its stdin.
type followWriterProc struct {
	t     *testing.T
	in    io.WriteCloser
	out   *bufio.Reader
	files []uint64 // first version of every file, from the last reply
}

func startFollowWriter(t *testing.T, path string) *followWriterProc {
	cmd := proctest.Command(t, "follow-writer", path)
	cmd.Stderr = os.Stderr
	in, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		in.Close()
		cmd.Wait()
		os.Remove(path)
		os.Remove(path + ".new")
	})
	return &followWriterProc{t: t, in: in, out: bufio.NewReader(out)}
}

// do sends one command and returns the last version published.
func (w *followWriterProc) do(cmd string) uint64 {
	w.t.Helper()
	if _, err := fmt.Fprintln(w.in, cmd); err != nil {
		w.t.Fatalf("writer %q: %v", cmd, err)
	}
	line, err := w.out.ReadString('\n')
	var r struct {
		Version uint64   `json:"version"`
		Files   []uint64 `json:"files"`
		Error   string   `json:"error"`
	}
	if err != nil || json.Unmarshal([]byte(line), &r) != nil || r.Error != "" {
		w.t.Fatalf("writer %q: %q, %v", cmd, line, err)
	}
	w.files = r.Files
	return r.Version
}

// fileOf is the index of the file that version v was published in.
func (w *followWriterProc) fileOf(v uint64) int {
	i, found := slices.BinarySearch(w.files, v)
	if !found {
		i--
	}
	return i
}

func followPath(t *testing.T, name string) string {
	return filepath.Join("/dev/shm", fmt.Sprintf("notice_%s_%d_%d", name, os.Getpid(), time.Now().UnixNano()))
}

// checkFollowers asserts what every follower must have done: seen only increasing versions, each snapshot exactly
// the one published as its version (never a torn one), ended on final with its content, and reopened once per
// file it saw a version of (beyond the first), at most once per file created.
func checkFollowers(t *testing.T, w *followWriterProc, ps []*follower, final uint64) {
	t.Helper()
	for _, p := range ps {
		e := p.end
		if len(p.versions) == 0 {
			t.Errorf("%s follower saw no version", p.name)
			continue
		}
		files := map[int]bool{}
		for i, v := range p.versions {
			if i > 0 && v <= p.versions[i-1] {
				t.Errorf("%s follower: version %d after %d", p.name, v, p.versions[i-1])
			}
			files[w.fileOf(v)] = true
		}
		t.Logf("%-6s saw %4d versions (%d..%d) in %2d of %2d files, reopened %2d times, lost %d times, %d stale and %d alive events, errors %v",
			p.name, len(p.versions), p.versions[0], e.Last, len(files), len(w.files), e.Reopens, len(p.lost), p.staleN, p.aliveN, e.Errors)
		if len(p.invalid) > 0 || e.Torn != 0 || e.Validated != e.Versions || e.Versions != len(p.versions) {
			t.Errorf("%s follower accepted %d torn snapshots (versions %v; summary %+v)", p.name, len(p.invalid), p.invalid, *e)
		}
		if e.Decreases != 0 {
			t.Errorf("%s follower saw the version decrease %d times", p.name, e.Decreases)
		}
		if e.Last != final || !e.LastValid {
			t.Errorf("%s follower ended on version %d (content valid: %v), want %d", p.name, e.Last, e.LastValid, final)
		}
		if e.Reopens < len(files)-1 || e.Reopens > len(w.files)-1 {
			t.Errorf("%s follower reopened %d times, saw versions of %d files, %d were created", p.name, e.Reopens, len(files), len(w.files))
		}
		for name, n := range e.Errors {
			t.Errorf("%s follower: %d %s errors", p.name, n, name)
		}
	}
}

// TestFollowRecreations: the writer replaces its file in every way, first in lockstep with the followers (each
// must see every file: a replacement while they wait), then flat out (replacements while they read).
func TestFollowRecreations(t *testing.T) {
	proctest.Slow(t, "followers in Go, C (twice) and Python across file replacements")
	path := followPath(t, "follow")
	w := startFollowWriter(t, path)
	v := w.do("burst 5")
	ps := startFollowers(t, path, 60000)
	waitFollowers(t, ps, fmt.Sprintf("version %d", v), reached(v))

	lockstep := []string{"rename", "rename-nosupersede", "unlink", "truncate", "rename", "unlink", "rename-nosupersede", "truncate"}
	truncations := 0
	for _, mode := range lockstep {
		if mode == "truncate" {
			w.do("truncate")
			truncations++
			waitFollowers(t, ps, "a truncated board reported lost", func(p *follower) bool { return len(p.lost) >= truncations })
			mode = "rename-nosupersede" // nothing left to supersede
		}
		v = w.do("new " + mode)
		waitFollowers(t, ps, fmt.Sprintf("the first version %d of a new file (%s)", v, mode), reached(v))
		v = w.do("burst 20")
		waitFollowers(t, ps, fmt.Sprintf("version %d", v), reached(v))
	}
	for _, p := range ps {
		p.mu.Lock()
		if p.reopens != len(lockstep) {
			t.Errorf("%s follower reopened %d times in %d lockstep replacements", p.name, p.reopens, len(lockstep))
		}
		if !slices.Equal(p.lost, []string{"truncated", "truncated"}) {
			t.Errorf("%s follower reported lost %v, want truncated twice", p.name, p.lost)
		}
		p.mu.Unlock()
	}

	w.do("churn 40 20 500")
	final := w.do("burst 1")
	waitFollowers(t, ps, fmt.Sprintf("the final version %d", final), reached(final))
	stopFollowers(t, ps)
	checkFollowers(t, w, ps, final)
}

// TestFollowRestoredInPlace: the board is truncated under its writer, which restores it in place (same file,
// same inode) as the daemon's writer does. Every follower reports it lost while it is short, then follows it again
// at the next version. They used to stay lost for good: the path still named the file they had given up on.
func TestFollowRestoredInPlace(t *testing.T) {
	proctest.Slow(t, "followers in Go, C (twice) and Python")
	path := followPath(t, "restore")
	w := startFollowWriter(t, path)
	v := w.do("burst 3")
	ps := startFollowers(t, path, 60000)
	waitFollowers(t, ps, fmt.Sprintf("version %d", v), reached(v))
	const rounds = 3
	for i := range rounds {
		w.do("shrink 1000")
		waitFollowers(t, ps, "a truncated board reported lost", func(p *follower) bool { return len(p.lost) > i })
		v = w.do("burst 1") // faults, restores the file in place and publishes
		waitFollowers(t, ps, fmt.Sprintf("version %d of the restored file", v), reached(v))
		v = w.do("burst 5")
		waitFollowers(t, ps, fmt.Sprintf("version %d", v), reached(v))
	}
	stopFollowers(t, ps)
	checkFollowers(t, w, ps, v)
	for _, p := range ps {
		if p.end.Reopens != 0 || len(p.lost) != rounds {
			t.Errorf("%s follower: %d reopens (the file is the same one), lost %v (want %d times)", p.name, p.end.Reopens, p.lost, rounds)
		}
	}
}

// TestFollowUnlinkWithoutSupersede: the path is removed and a new board created in its place, the old one never
// marked: only the inode check can find it. The followers never call the board lost (the old file was readable
// all along).
func TestFollowUnlinkWithoutSupersede(t *testing.T) {
	proctest.Slow(t, "followers in Go, C (twice) and Python")
	path := followPath(t, "unlink")
	w := startFollowWriter(t, path)
	v := w.do("burst 3")
	ps := startFollowers(t, path, 60000)
	waitFollowers(t, ps, fmt.Sprintf("version %d", v), reached(v))
	const rounds = 6
	for range rounds {
		v = w.do("new unlink")
		waitFollowers(t, ps, fmt.Sprintf("version %d of a recreated file", v), reached(v))
		v = w.do("burst 5")
		waitFollowers(t, ps, fmt.Sprintf("version %d", v), reached(v))
	}
	stopFollowers(t, ps)
	checkFollowers(t, w, ps, v)
	for _, p := range ps {
		if p.end.Reopens != rounds || len(p.lost) != 0 {
			t.Errorf("%s follower: %d reopens (want %d), lost %v", p.name, p.end.Reopens, rounds, p.lost)
		}
	}
}

// TestFollowStale: the writer stops heart-beating, and every follower reports it stale without a new version;
// it resumes, and every follower reports it alive. Stale is not "no change".
func TestFollowStale(t *testing.T) {
	proctest.Slow(t, "followers in Go, C (twice) and Python")
	path := followPath(t, "stale")
	w := startFollowWriter(t, path)
	v := w.do("burst 3")
	ps := startFollowers(t, path, 1500)
	waitFollowers(t, ps, fmt.Sprintf("version %d", v), reached(v))
	seen := map[string]int{}
	for _, p := range ps {
		p.mu.Lock()
		seen[p.name] = len(p.versions)
		p.mu.Unlock()
	}

	w.do("heartbeat off")
	waitFollowers(t, ps, "the writer reported stale", func(p *follower) bool { return p.stale })
	w.do("heartbeat on")
	waitFollowers(t, ps, "the writer reported alive again", func(p *follower) bool { return !p.stale })
	for _, p := range ps {
		p.mu.Lock()
		if len(p.versions) != seen[p.name] {
			t.Errorf("%s follower reported %d versions while nothing was published", p.name, len(p.versions)-seen[p.name])
		}
		p.mu.Unlock()
	}
	final := w.do("burst 2")
	waitFollowers(t, ps, fmt.Sprintf("version %d", final), reached(final))
	stopFollowers(t, ps)
	checkFollowers(t, w, ps, final)
	for _, p := range ps {
		if p.staleN < 1 || p.aliveN < 1 || p.stale {
			t.Errorf("%s follower: %d stale and %d alive events, stale at the end: %v", p.name, p.staleN, p.aliveN, p.stale)
		}
	}
}
