// Command boardbench measures the board against its physical limits and prints a markdown table; `make bench`
// runs it. Every figure is paired with a baseline measured in the same run (the machines are noisy):
//
//   - version poll: ns per Version() in Go and notice_version() in C, against a bare atomic load of a word in an
//     anonymous shared mapping;
//   - snapshot copy: bytes/s of a full consistent snapshot in Go, C and Python, against memcpy of the same bytes;
//   - publish→observe: latency from a publish to a reader in another process blocked on the futex, against a bare
//     futex waiter (the same Go runtime, no board: the limit) and a 50 ms poller (the source article's clients),
//     each in a process of its own;
//   - retries: attempts per snapshot of readers in Go, C and Python while a writer process publishes flat out.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/announcementd/announcementd/board"
	"github.com/announcementd/announcementd/board/reader"
	"github.com/announcementd/announcementd/board/writer"
	"github.com/announcementd/announcementd/internal/benchfmt"
	"github.com/announcementd/announcementd/internal/stress"
)

const roleEnv = "BOARDBENCH_ROLE"

var (
	cDir   = flag.String("c", "clients/c", "directory of the built C reader")
	pyDir  = flag.String("python", "clients/python", "directory of the Python reader")
	secs   = flag.Duration("stress", 3*time.Second, "how long the retry measurement runs")
	mdOut  = flag.String("md", "", "also write the table into this markdown file, between <!-- board:begin --> and <!-- board:end -->")
	rawOut = flag.String("raw", "", "also write every figure and its baseline into this file, one benchstat line each (BenchmarkBoard/NAME 1 VALUE UNIT)")
)

func main() {
	switch os.Getenv(roleEnv) {
	case "waiter", "poller", "bare-waiter":
		os.Exit(observe(os.Getenv(roleEnv), os.Args[1]))
	case "stress-writer":
		os.Exit(stress.WriterMain(os.Args[1]))
	case "stress-reader":
		os.Exit(stress.ReaderMain(os.Args[1], os.Args[2]))
	}
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "boardbench:", err)
		os.Exit(1)
	}
}

type row struct{ what, value, baseline, ratio string }

// rawLines are the figures as benchstat reads them: "BenchmarkBoard/NAME 1 VALUE UNIT", in ns, B/s or a count.
type rawLines []string

func (r *rawLines) add(name string, v float64, unit string) {
	*r = append(*r, fmt.Sprintf("BenchmarkBoard/%s 1 %g %s", name, v, unit))
}

func run() error {
	started, loadBefore := time.Now(), benchfmt.LoadAverage()
	dir, err := os.MkdirTemp("/dev/shm", "boardbench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "notice_bench")

	// A 4 MiB board holding 1000 announcements of 200 bytes: 320 KB per snapshot.
	w, err := writer.Open(path, writer.Options{Size: 4 << 20})
	if err != nil {
		return err
	}
	set := make([]board.Record, 1000)
	for i := range set {
		set[i] = board.Record{ID: uint64(i + 1), Priority: int32(i), Content: strings.Repeat("x", 200)}
	}
	if _, err := w.Publish(set); err != nil {
		return err
	}
	var rows []row

	// Version poll.
	var raw rawLines
	goPoll, limit := pollGo(path)
	raw.add("poll/go", goPoll, "ns/op")
	raw.add("poll/atomic-load", limit, "ns/op")
	rows = append(rows, row{"version poll, Go `Version()`", ns(goPoll), ns(limit) + " bare atomic load", benchfmt.Ratio(goPoll, limit)})
	c, err := runJSON(filepath.Join(*cDir, "notice_bench"), path, "50000000")
	if err != nil {
		return err
	}
	raw.add("poll/c", num(c, "version_ns"), "ns/op")
	raw.add("poll/c-atomic-load", num(c, "atomic_load_ns"), "ns/op")
	rows = append(rows, row{"version poll, C `notice_version()`", ns(num(c, "version_ns")), ns(num(c, "atomic_load_ns")) + " bare atomic load",
		benchfmt.Ratio(num(c, "version_ns"), num(c, "atomic_load_ns"))})

	// Snapshot copy.
	snapBytes := float64(board.SlotHeaderSize + len(set)*board.Stride)
	goSnap, goCold, goLimit, goCopy := snapshotGo(path, snapBytes)
	goNext, goNextLimit := snapshotNext(w, path, set, snapBytes)
	raw.add("snapshot/go-reader", goSnap, "B/s")
	raw.add("snapshot/go-reader-next", goNext, "B/s")
	raw.add("snapshot/go-limit-next", goNextLimit, "B/s")
	raw.add("snapshot/go-board", goCold, "B/s")
	raw.add("snapshot/go-limit", goLimit, "B/s")
	raw.add("copy/go", goCopy, "B/s")
	raw.add("snapshot/c", num(c, "snapshot_bytes_per_s"), "B/s")
	raw.add("snapshot/c-portable-crc", num(c, "snapshot_portable_bytes_per_s"), "B/s")
	raw.add("snapshot/c-limit", num(c, "limit_bytes_per_s"), "B/s")
	raw.add("crc/c", num(c, "crc_bytes_per_s"), "B/s")
	raw.add("crc/c-portable", num(c, "crc_portable_bytes_per_s"), "B/s")
	rows = append(rows, row{"verified snapshot, Go `Reader.Snapshot()` of the next version (1000 records, 320 KB; each right after a publish that changed one of them, as a client's after its poll saw the version move)", gbs(goNext),
		gbs(goNextLimit) + " limit: copy + CRC-32 + UTF-8 of the same bytes, each right after such a publish", benchfmt.Ratio(goNext, goNextLimit) + " of the limit"})
	rows = append(rows, row{"verified snapshot, Go `Reader.Snapshot()` (same, the version unchanged since its last snapshot)", gbs(goSnap),
		gbs(goLimit) + " limit: copy + CRC-32 + UTF-8 of the same bytes", benchfmt.Ratio(goSnap, goLimit) + " of the limit"})
	rows = append(rows, row{"verified snapshot, Go `Board.Snapshot()` (same; no memory of earlier snapshots: every record copied, checked and decoded, every content a new string)", gbs(goCold),
		gbs(goLimit) + " limit (same)", benchfmt.Ratio(goCold, goLimit) + " of the limit"})
	// C: notice_bench measures its snapshot, the same with the portable CRC (slicing-by-8, the CRC before the
	// hardware ones) and the limit (memcpy + one CRC-32 pass + UTF-8 of the contents) interleaved in one process.
	cImpl, _ := c["crc_impl"].(string)
	rows = append(rows, row{"verified snapshot, C `notice_snapshot_reuse()` (same), CRC-32 " + cImpl, gbs(num(c, "snapshot_bytes_per_s")),
		gbs(num(c, "limit_bytes_per_s")) + " limit: copy + CRC-32 + UTF-8 of the contents", fmt.Sprintf("%.2f× of the limit", num(c, "snapshot_vs_limit"))})
	rows = append(rows, row{"verified snapshot, C, portable CRC-32 (slicing-by-8: before)", gbs(num(c, "snapshot_portable_bytes_per_s")),
		gbs(num(c, "limit_bytes_per_s")) + " limit (same)", benchfmt.Ratio(num(c, "snapshot_portable_bytes_per_s"), num(c, "limit_bytes_per_s")) + " of the limit"})
	if z, ok := c["zlib_crc_bytes_per_s"].(float64); ok {
		rows = append(rows, row{"CRC-32 of the 320 KB, C: notice.h " + cImpl, gbs(num(c, "crc_bytes_per_s")),
			gbs(z) + " zlib " + fmt.Sprint(c["zlib_version"]) + " `crc32()`; slicing-by-8 " + gbs(num(c, "crc_portable_bytes_per_s")),
			benchfmt.Ratio(num(c, "crc_bytes_per_s"), z)})
	}
	if py, err := snapshotPython(path); err == nil {
		raw.add("snapshot/python", py*snapBytes, "B/s")
		rows = append(rows, row{"snapshot, Python (same)", gbs(py * snapBytes), gbs(goCopy) + " memcpy (Go)", benchfmt.Ratio(goCopy, py*snapBytes)})
	} else {
		return err
	}

	// A publish of one change: the writer compares the target slot with the new image and writes the chunks that
	// differ (every publish makes its snapshot whole); the baseline is writing the whole snapshot.
	pub, whole := publishOne(w, set, snapBytes)
	raw.add("publish-one-change", pub, "ns/op")
	raw.add("copy-whole-snapshot", whole, "ns/op")
	rows = append(rows, row{"publish one change among 1000 records (encode, CRC, compare with the slot, write what differs)", us(pub),
		us(whole) + " copying the whole 320 KB snapshot", benchfmt.Ratio(pub, whole)})

	// Publish→observe.
	wait, poll, bare, err := latency(w, dir)
	if err != nil {
		return err
	}
	w.Close()
	for _, q := range []float64{50, 99, 100} {
		name := fmt.Sprintf("p%g", q)
		if q == 100 {
			name = "max"
		}
		raw.add("observe/futex-waiter-"+name, pct(wait, q), "ns")
		raw.add("observe/bare-futex-waiter-"+name, pct(bare, q), "ns")
		raw.add("observe/50ms-poller-"+name, pct(poll, q), "ns")
	}
	rows = append(rows,
		row{"publish→observe p50, futex waiter (`Board.Wait`, other process)", us(pct(wait, 50)),
			us(pct(bare, 50)) + " bare futex waiter (same Go runtime, no board)", benchfmt.Ratio(pct(wait, 50), pct(bare, 50))},
		row{"publish→observe p99, futex waiter", us(pct(wait, 99)), us(pct(bare, 99)), benchfmt.Ratio(pct(wait, 99), pct(bare, 99))},
		row{"publish→observe max, futex waiter", us(pct(wait, 100)), us(pct(bare, 100)), benchfmt.Ratio(pct(wait, 100), pct(bare, 100))},
		row{"publish→observe p50, 50 ms poller (other process)", ms(pct(poll, 50)), us(pct(wait, 50)) + " futex waiter", benchfmt.Ratio(pct(poll, 50), pct(wait, 50))},
		row{"publish→observe p99, 50 ms poller", ms(pct(poll, 99)), us(pct(wait, 99)), benchfmt.Ratio(pct(poll, 99), pct(wait, 99))})

	// Retries under a writer publishing flat out.
	stressRows, err := retries(filepath.Join(dir, "notice_stress"))
	if err != nil {
		return err
	}
	rows = append(rows, stressRows...)

	var t strings.Builder
	t.WriteString("| measure | value | baseline (same run) | ratio |\n|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&t, "| %s | %s | %s | %s |\n", r.what, r.value, r.baseline, r.ratio)
	}
	fmt.Printf("machine: %s\n\n%s", benchfmt.Machine(), t.String())
	head := benchfmt.RawHeader("bench/boardbench", "go run ./bench/boardbench", started, "load average before "+loadBefore)
	if err := benchfmt.WriteRaw(*rawOut, head+strings.Join(raw, "\n")+"\n"); err != nil {
		return err
	}
	if *mdOut == "" {
		return nil
	}
	return benchfmt.WriteSection(*mdOut, "board", fmt.Sprintf("## The board: polls, verified snapshots, publish → observe, retries\n\n"+
		"%s. Reproduce with `go run ./bench/boardbench -md docs/BENCHMARKS.md` (`make bench` runs it); this run: %s UTC, "+
		"load average before %s. Every figure is beside its baseline or limit, measured in the same run.%s\n\n%s",
		benchfmt.Machine(), started.UTC().Format("2006-01-02 15:04"), loadBefore, benchfmt.RawNote(*mdOut, *rawOut), t.String()))
}

var sink uint64

func pollGo(path string) (goNS, limitNS float64) {
	b, err := reader.Open(path)
	if err != nil {
		panic(err)
	}
	defer b.Close()
	anon, err := unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_ANON)
	if err != nil {
		panic(err)
	}
	defer unix.Munmap(anon)
	word := (*uint64)(unsafe.Pointer(&anon[0]))
	const n = 50_000_000
	best := func(f func()) float64 { // best of 3 runs: the least disturbed by the machine
		m := 1e18
		for range 3 {
			t := time.Now()
			f()
			m = min(m, float64(time.Since(t).Nanoseconds())/n)
		}
		return m
	}
	goNS = best(func() {
		var s uint64
		for range n {
			s += b.Version()
		}
		sink += s
	})
	limitNS = best(func() {
		var s uint64
		for range n {
			s += atomic.LoadUint64(word)
		}
		sink += s
	})
	return goNS, limitNS
}

// publishOne times publishes that change one record of set, and a copy of a whole snapshot's bytes, in ns.
func publishOne(w *writer.Writer, set []board.Record, bytesPer float64) (pubNs, copyNs float64) {
	set = slices.Clone(set)
	d := time.Second
	n := 0
	for t := time.Now(); time.Since(t) < d; n++ {
		set[len(set)/2].Content = strconv.Itoa(n)
		if _, err := w.Publish(set); err != nil {
			panic(err)
		}
	}
	pubNs = float64(d.Nanoseconds()) / float64(n)
	src, dst := make([]byte, int(bytesPer)), make([]byte, int(bytesPer))
	n = 0
	for t := time.Now(); time.Since(t) < d; n++ {
		src[n%len(src)]++
		copy(dst, src)
	}
	sink += uint64(dst[0])
	copyNs = float64(d.Nanoseconds()) / float64(n)
	return pubNs, copyNs
}

func us(ns float64) string { return fmt.Sprintf("%.1f µs", ns/1e3) }

// openBoth opens the board at path twice: as a reader.Board, and as a bare read-only mapping of the file, for the
// limits measured on the same bytes. closeBoth unmaps both.
func openBoth(path string) (b *reader.Board, mem []byte, closeBoth func()) {
	b, err := reader.Open(path)
	if err != nil {
		panic(err)
	}
	f, err := os.Open(path)
	if err != nil {
		panic(err)
	}
	defer f.Close()
	if mem, err = unix.Mmap(int(f.Fd()), 0, 4<<20, unix.PROT_READ, unix.MAP_SHARED); err != nil {
		panic(err)
	}
	return b, mem, func() { unix.Munmap(mem); b.Close() }
}

// limit is the work a verified snapshot cannot do without, on src: one copy into dst, one CRC-32 pass and one
// UTF-8 validation of the copy (its result, for a sink).
func limit(dst, src []byte) uint32 {
	copy(dst, src)
	c := crc32.ChecksumIEEE(dst)
	if utf8.Valid(dst) {
		c++
	}
	return c
}

// mapWord maps the first page of the file at path shared, read-write, and returns its first word: the bare futex
// word of the latency part, as a waiter and as the publisher see it.
func mapWord(path string) (word *uint32, unmap func(), err error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	mem, err := unix.Mmap(int(f.Fd()), 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, nil, fmt.Errorf("mmap %s: %w", path, err)
	}
	return (*uint32)(unsafe.Pointer(&mem[0])), func() { unix.Munmap(mem) }, nil
}

// snapshotGo returns the bytes/s of verified snapshots through a reader.Reader and through Board.Snapshot, of
// their limit (copying the same bytes out of the mapping, one CRC-32 pass and one UTF-8 validation of them), and
// of the copy alone. They run in turns, 200 ms each, five times; each keeps its best turn (the least disturbed by
// the machine).
func snapshotGo(path string, bytesPer float64) (snapBps, coldBps, limitBps, copyBps float64) {
	b, mem, closeBoth := openBoth(path)
	defer closeBoth()
	r := b.NewReader()
	dst := make([]byte, int(bytesPer))
	h := b.Header()
	off := int(h.SlotOffset(b.Version()))
	src := mem[off : off+len(dst)]
	rate := func(f func()) float64 {
		const d = 200 * time.Millisecond
		n := 0
		t := time.Now()
		for ; time.Since(t) < d; n++ {
			f()
		}
		return float64(n) * bytesPer / time.Since(t).Seconds()
	}
	for range 5 {
		snapBps = max(snapBps, rate(func() {
			if _, err := r.Snapshot(); err != nil {
				panic(err)
			}
		}))
		coldBps = max(coldBps, rate(func() {
			if _, err := b.Snapshot(); err != nil {
				panic(err)
			}
		}))
		limitBps = max(limitBps, rate(func() { sink += uint64(limit(dst, src)) }))
		copyBps = max(copyBps, rate(func() {
			copy(dst, src)
			sink += uint64(dst[sink%uint64(len(dst))])
		}))
	}
	return snapBps, coldBps, limitBps, copyBps
}

// snapshotNext returns the bytes/s of a Reader's verified snapshots of the next version, each taken right after a
// publish that changed one record of set (the publish not timed), and of the limit on the same bytes taken the
// same way (after its own publish, on the new version's slot): what a client pays when its poll sees the version
// move, with the writer's stores fresh in the caches. Five turns of 200 of each; each keeps its best turn.
func snapshotNext(w *writer.Writer, path string, set []board.Record, bytesPer float64) (snapBps, limitBps float64) {
	b, mem, closeBoth := openBoth(path)
	defer closeBoth()
	r := b.NewReader()
	h := b.Header()
	set = slices.Clone(set)
	dst := make([]byte, int(bytesPer))
	n := 0
	publish := func() {
		n++
		set[len(set)/2].Content = "next " + strconv.Itoa(n)
		if _, err := w.Publish(set); err != nil {
			panic(err)
		}
	}
	if _, err := r.Snapshot(); err != nil { // the reader holds a version, as a client that polls
		panic(err)
	}
	for range 5 {
		var snapNs, limitNs time.Duration
		for range 200 {
			publish()
			t := time.Now()
			s, err := r.Snapshot()
			snapNs += time.Since(t)
			if err != nil || s.Records[len(set)/2].Content != set[len(set)/2].Content {
				panic(fmt.Sprintf("snapshot of the next version: %v", err))
			}
			publish()
			off := int(h.SlotOffset(b.Version()))
			t = time.Now()
			c := limit(dst, mem[off:off+len(dst)])
			limitNs += time.Since(t)
			sink += uint64(c)
		}
		snapBps = max(snapBps, 200*bytesPer/snapNs.Seconds())
		limitBps = max(limitBps, 200*bytesPer/limitNs.Seconds())
	}
	return snapBps, limitBps
}

// snapshotPython returns Python snapshots per second.
func snapshotPython(path string) (float64, error) {
	script := `
import sys, time
sys.path.insert(0, sys.argv[1])
import notice
b = notice.Board.open(sys.argv[2])
n, t = 0, time.perf_counter()
while time.perf_counter() - t < 1.0:
    b.snapshot(); n += 1
print(n / (time.perf_counter() - t))
`
	out, err := exec.Command("python3", "-c", script, *pyDir, path).Output()
	if err != nil {
		return 0, fmt.Errorf("python snapshot bench: %w", err)
	}
	return strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
}

// observe is a helper process: it prints, as JSON, [version, CLOCK_REALTIME ns] for each version it sees. A
// waiter blocks in Board.Wait, a poller reads the version every 50 ms, a bare waiter blocks in FUTEX_WAIT on the
// word at offset 0 of the file at path, mapped shared: no board code, what this Go runtime and the kernel cost.
func observe(mode, path string) int {
	var version func() uint64
	var wait func(last uint64) uint64
	if mode == "bare-waiter" {
		word, _, err := mapWord(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		version = func() uint64 { return uint64(atomic.LoadUint32(word)) }
		wait = func(last uint64) uint64 { // as Board.Wait: FUTEX_WAIT (shared) while the word holds last
			ts := unix.NsecToTimespec(int64(200 * time.Millisecond))
			unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(word)), 0, uintptr(uint32(last)), uintptr(unsafe.Pointer(&ts)), 0, 0)
			return version()
		}
	} else {
		b, err := reader.Open(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		version = b.Version
		wait = func(last uint64) uint64 {
			v, _ := b.Wait(context.Background(), last, 200*time.Millisecond)
			return v
		}
	}
	done := make(chan struct{})
	go func() { bufio.NewReader(os.Stdin).ReadByte(); close(done) }()
	fmt.Println("ready")
	var seen [][2]int64
	last := version()
	for {
		select {
		case <-done:
			json.NewEncoder(os.Stdout).Encode(seen)
			return 0
		default:
		}
		var v uint64
		if mode == "poller" {
			time.Sleep(50 * time.Millisecond)
			v = version()
		} else {
			v = wait(last)
		}
		if v != last {
			seen = append(seen, [2]int64{int64(v), time.Now().UnixNano()})
			last = v
		}
	}
}

// latency publishes 150 versions of the board and 150 of a bare futex word, alternately, at random 5-60 ms
// intervals, while three helpers, each in its own process, watch: a futex waiter on the board (Board.Wait), a
// 50 ms poller of the board (the source article's clients), and a bare futex waiter (the same Go runtime in
// FUTEX_WAIT on a word of a shared mapping of its own, no board code: the limit, in the same run). A publish's
// latency is from just before it (before Publish; before the bare word's store and FUTEX_WAKE) to the first
// observation of it or of a later one.
func latency(w *writer.Writer, dir string) (wait, poll, bare []float64, err error) {
	barePath := filepath.Join(dir, "bare_futex")
	if err := os.WriteFile(barePath, make([]byte, 4096), 0o600); err != nil {
		return nil, nil, nil, err
	}
	word, unmap, err := mapWord(barePath)
	if err != nil {
		return nil, nil, nil, err
	}
	defer unmap()

	self, _ := os.Executable()
	modes := []string{"waiter", "poller", "bare-waiter"}
	paths := []string{w.Path(), w.Path(), barePath}
	var outs [3]bytes.Buffer
	var cmds [3]*exec.Cmd
	var stdins [3]interface{ Close() error }
	var copied [3]chan struct{}
	for i, mode := range modes {
		cmd := exec.Command(self, paths[i])
		cmd.Env = append(os.Environ(), roleEnv+"="+mode)
		in, _ := cmd.StdinPipe()
		out, _ := cmd.StdoutPipe()
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			return nil, nil, nil, err
		}
		br := bufio.NewReader(out)
		if line, _ := br.ReadString('\n'); line != "ready\n" {
			return nil, nil, nil, fmt.Errorf("%s helper did not start: %q", mode, line)
		}
		copied[i] = make(chan struct{})
		go func() { br.WriteTo(&outs[i]); close(copied[i]) }()
		cmds[i], stdins[i] = cmd, in
	}
	rng := rand.New(rand.NewPCG(3, 4))
	published := [2]map[uint64]int64{{}, {}} // the board's versions, the bare word's values
	// Nothing of the earlier parts' garbage is collected during this one, and a publish's records are built
	// before its stamp: between the stamp and the wake runs only what a publish runs (as on the bare side).
	runtime.GC()
	for i := range 300 {
		recs := []board.Record{{ID: 1, Content: strconv.Itoa(i)}}
		time.Sleep(time.Duration(5+rng.IntN(56)) * time.Millisecond)
		t := time.Now().UnixNano()
		if i%2 == 0 {
			v, err := w.Publish(recs)
			if err != nil {
				return nil, nil, nil, err
			}
			published[0][v] = t
		} else {
			n := atomic.AddUint32(word, 1)
			if _, _, errno := unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(word)), 1, 1<<31-1, 0, 0, 0); errno != 0 {
				return nil, nil, nil, fmt.Errorf("futex wake: %w", errno)
			}
			published[1][uint64(n)] = t
		}
	}
	time.Sleep(250 * time.Millisecond)
	var res [3][]float64
	for i := range cmds {
		stdins[i].Close()
		<-copied[i]
		if err := cmds[i].Wait(); err != nil {
			return nil, nil, nil, err
		}
		var seen [][2]int64
		if err := json.Unmarshal(outs[i].Bytes(), &seen); err != nil {
			return nil, nil, nil, fmt.Errorf("latency helper output %q: %w", outs[i].String(), err)
		}
		pub := published[0]
		if modes[i] == "bare-waiter" {
			pub = published[1]
		}
		for v, t := range pub {
			for _, s := range seen { // in order of observation
				if uint64(s[0]) >= v {
					res[i] = append(res[i], float64(s[1]-t))
					break
				}
			}
		}
		if len(res[i]) != len(pub) {
			return nil, nil, nil, fmt.Errorf("%s helper saw %d of %d publishes", modes[i], len(res[i]), len(pub))
		}
	}
	return res[0], res[1], res[2], nil
}

func retries(path string) ([]row, error) {
	self, _ := os.Executable()
	wcmd := exec.Command(self, path)
	wcmd.Env = append(os.Environ(), roleEnv+"=stress-writer")
	in, _ := wcmd.StdinPipe()
	var wout bytes.Buffer
	wcmd.Stdout, wcmd.Stderr = &wout, os.Stderr
	if err := wcmd.Start(); err != nil {
		return nil, err
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if b, err := reader.Open(path); err == nil {
			v := b.Version()
			b.Close()
			if v > 0 {
				break
			}
		}
		if time.Now().After(deadline) {
			wcmd.Process.Kill()
			wcmd.Wait()
			return nil, errors.New("the stress writer did not publish within 30 s")
		}
	}
	s := strconv.FormatFloat(secs.Seconds(), 'f', -1, 64)
	readers := map[string][]string{
		"Go":     {self, s, path},
		"C":      {filepath.Join(*cDir, "notice_stress"), s, path},
		"Python": {"python3", filepath.Join(*pyDir, "notice_stress.py"), s, path},
	}
	results := map[string]stress.Result{}
	errs := make(chan error, len(readers))
	type out struct {
		lang string
		res  stress.Result
	}
	outc := make(chan out, len(readers))
	for lang, argv := range readers {
		go func() {
			cmd := exec.Command(argv[0], argv[1:]...)
			cmd.Env = append(os.Environ(), roleEnv+"=stress-reader")
			b, err := cmd.Output()
			var r stress.Result
			if err == nil {
				err = json.Unmarshal(b, &r)
			}
			if err != nil {
				errs <- fmt.Errorf("%s stress reader: %w", lang, err)
				return
			}
			outc <- out{lang, r}
		}()
	}
	for range readers {
		select {
		case err := <-errs:
			return nil, err
		case o := <-outc:
			results[o.lang] = o.res
		}
	}
	in.Close()
	if err := wcmd.Wait(); err != nil {
		return nil, err
	}
	var w struct{ Publishes float64 }
	if err := json.Unmarshal(wout.Bytes(), &w); err != nil {
		return nil, fmt.Errorf("stress writer output %q: %w", wout.String(), err)
	}
	pubs := w.Publishes
	// The writer ran a little longer than the readers; its rate is an upper bound.
	var rows []row
	for _, lang := range []string{"Go", "C", "Python"} {
		r := results[lang]
		rows = append(rows, row{
			fmt.Sprintf("attempts per snapshot, %s reader, writer flat out", lang),
			fmt.Sprintf("%.3f", r.AttemptsPerSnapshot()),
			fmt.Sprintf("1 (no retry); %.0f snapshots/s validated, %d torn accepted", float64(r.Validated)/secs.Seconds(), r.TornAccepted),
			fmt.Sprintf("%.3f", r.AttemptsPerSnapshot()),
		})
	}
	rows = append(rows, row{"writer publishes/s during the retry run (1-64 records each)", fmt.Sprintf("%.0f", pubs/secs.Seconds()), "", ""})
	return rows, nil
}

func runJSON(argv ...string) (map[string]any, error) {
	out, err := exec.Command(argv[0], argv[1:]...).Output()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", argv[0], err)
	}
	var m map[string]any
	if err := json.Unmarshal(out, &m); err != nil {
		return nil, fmt.Errorf("%s output %q: %w", argv[0], out, err)
	}
	return m, nil
}

func num(m map[string]any, k string) float64 {
	v, ok := m[k].(float64)
	if !ok {
		panic(fmt.Sprintf("notice_bench output lacks %q: %v", k, m))
	}
	return v
}

func pct(xs []float64, p float64) float64 {
	return benchfmt.Percentile(slices.Sorted(slices.Values(xs)), p)
}

func ns(v float64) string  { return fmt.Sprintf("%.2f ns", v) }
func ms(v float64) string  { return fmt.Sprintf("%.3f ms", v/1e6) }
func gbs(v float64) string { return fmt.Sprintf("%.2f GB/s", v/1e9) }
