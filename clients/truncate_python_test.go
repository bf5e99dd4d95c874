package clients_test

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/announcementd/announcementd/board"
	"github.com/announcementd/announcementd/board/reader"
	"github.com/announcementd/announcementd/board/writer"
	"github.com/announcementd/announcementd/internal/proctest"
)

// truncateFollowerScript runs clients/python/notice_follow.py (its loop, its output) with two changes: the
// snapshot check is truncationSet's pattern, not the stress writer's, and the follower polls every millisecond, so
// that it reads the board nearly all the time. Arguments: the directory of notice.py, the board's path, the record
// count.
const truncateFollowerScript = `
import functools, sys
sys.path.insert(0, sys.argv[1])
import notice, notice_follow
n, high = int(sys.argv[3]), 0

def matches(snap):
    global high
    recs = snap.records
    tag = recs[0].effective_at if recs else -1
    ok = snap.count == n and tag >= high and recs == tuple(
        (i, tag, tag + i, i, f"{tag}:{i}:".ljust(200, ".")) for i in range(1, n + 1))
    high = max(high, tag)
    return ok

notice_follow.matches_pattern = matches
notice.Follower = functools.partial(notice.Follower, interval=0.001)
sys.exit(notice_follow.run(sys.argv[2], 60000, True))
`

// truncationSet is the set published with tag t: n records that all carry t, so that a snapshot mixing two sets
// is seen. A repair republishes the last set at a higher version, so the content is a function of the tag, not of
// the version; tags never decrease as versions increase.
func truncationSet(t uint64, n int) []board.Record {
	recs := make([]board.Record, n)
	for i := range recs {
		id := uint64(i + 1)
		prefix := fmt.Sprintf("%d:%d:", t, id)
		recs[i] = board.Record{ID: id, EffectiveAt: int64(t), ExpiresAt: int64(t + id), Priority: int32(id),
			Content: prefix + strings.Repeat(".", 200-len(prefix))}
	}
	return recs
}

// TestPythonSurvivesTruncation: a Go writer publishes sets of 1,000 records flat out while its board file is
// truncated 2,000 times (past both slots, inside either slot, to the header, inside it, to 8 bytes, to 0) and
// healed in place (Writer.Heal: the same inode, the size restored, the set republished above the last version). A
// Python follower reads it all along: it must not die (a reader on a mapping is killed by SIGBUS here; notice.py
// reads with pread), never accept a torn snapshot, never see the version go back, and end on the final version.
func TestPythonSurvivesTruncation(t *testing.T) {
	proctest.Slow(t, "truncations under the Python reader")
	const records, truncations = 1000, 2000
	path := followPath(t, "truncate")
	t.Cleanup(func() { os.Remove(path) })
	w, err := writer.Open(path, writer.Options{Size: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	tag := uint64(1)
	v, err := w.Publish(truncationSet(tag, records))
	if err != nil {
		t.Fatal(err)
	}
	b, err := reader.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	hdr := b.Header()
	b.Close()
	// The sizes a cycle truncates the file to, one after the other, from the largest.
	slot0, slot1, used := int64(hdr.SlotOffset(0)), int64(hdr.SlotOffset(1)), int64(board.SlotHeaderSize+records*board.Stride)
	sizes := []int64{int64(hdr.RegionSize) - 4096, slot1 + used, slot1 + 64 + used/2, slot1 + 40, slot0 + used,
		slot0 + 64 + used/2, slot0 + 8, int64(hdr.HeaderSize), 1343, 100, 20, 8, 0}

	p := &follower{name: "python", done: make(chan struct{})}
	p.cmd = exec.Command(need(t, "python3"), "-c", truncateFollowerScript, "python", path, strconv.Itoa(records))
	p.cmd.Stderr = &p.stderr
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} // not left behind if this process dies
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go p.read(out)
	t.Cleanup(func() { p.cmd.Process.Kill(); p.cmd.Wait() })
	ps := []*follower{p}
	waitFollowers(t, ps, fmt.Sprintf("version %d", v), reached(v))

	// Each cycle publishes the next set, truncates the file to the first 1, 2, ... 13 sizes in turn (each cycle
	// goes one size deeper, so that repairs start from every depth: with the version word kept or lost, either
	// slot kept or lost) and heals it; flat out, while the follower reads. One goroutine does it all, so that a
	// publish never runs into a truncation: under -race the writer's atomics run in the race runtime's C code, and
	// a store that faulted there killed this test binary ("unexpected return pc for runtime.sigpanic") instead of
	// becoming the panic the writer recovers from.
	done, cycles, healed := 0, 0, 0
	for ; done < truncations; cycles++ {
		tag++
		if _, err := w.Publish(truncationSet(tag, records)); err != nil {
			t.Fatalf("publish %d: %v", tag, err)
		}
		for _, size := range sizes[:1+cycles%len(sizes)] {
			if err := os.Truncate(path, size); err != nil {
				t.Fatal(err)
			}
			done++
		}
		f, d, err := w.Heal()
		if f != nil {
			f.Close()
			t.Fatalf("heal %d moved the board to a new file (%s): it should restore it in place", cycles, d)
		}
		if err != nil {
			t.Fatalf("heal %d: %v", cycles, err)
		}
		if !d.None() {
			healed++
		}
	}
	tag++
	final, err := w.Publish(truncationSet(tag, records))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d truncations in %d cycles, %d repaired by Heal; %d sets published, final version %d", done, cycles, healed, tag, final)
	if healed != cycles {
		t.Errorf("Heal found %d of %d truncated files", healed, cycles)
	}
	waitFollowers(t, ps, fmt.Sprintf("the final version %d", final), reached(final))
	stopFollowers(t, ps)

	e := p.end
	for i, v := range p.versions {
		if i > 0 && v <= p.versions[i-1] {
			t.Errorf("python follower: version %d after %d", v, p.versions[i-1])
		}
	}
	lost := map[string]int{}
	for _, reason := range p.lost {
		lost[reason]++
	}
	t.Logf("python follower saw %d versions (%d..%d), lost the board %d times %v, reopened %d times, errors %v",
		len(p.versions), p.versions[0], e.Last, len(p.lost), lost, e.Reopens, e.Errors)
	if len(p.invalid) > 0 || e.Torn != 0 || e.Validated != e.Versions || e.Versions != len(p.versions) {
		t.Errorf("python follower accepted %d torn snapshots (versions %v; summary %+v)", len(p.invalid), p.invalid, *e)
	}
	if e.Decreases != 0 {
		t.Errorf("python follower saw the version decrease %d times", e.Decreases)
	}
	if e.Last != final || !e.LastValid {
		t.Errorf("python follower ended on version %d (content valid: %v), want %d", e.Last, e.LastValid, final)
	}
	if e.Reopens != 0 {
		t.Errorf("python follower reopened %d times: the board was restored in place, never replaced", e.Reopens)
	}
	for name, n := range e.Errors {
		t.Errorf("python follower: %d %s errors", n, name)
	}
	for reason := range lost {
		if reason != "truncated" && reason != "bad_magic" { // found short, or whole without its magic (mid-repair)
			t.Errorf("python follower lost the board for %q, want truncated or bad_magic", reason)
		}
	}
	if len(p.lost) == 0 {
		t.Errorf("python follower never found the board truncated in %d truncations: the test proved nothing", truncations)
	}
}
