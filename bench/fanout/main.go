// Command fanout measures the board's futex fan-out (issue 12, item 3): N readers blocked on the board's futex,
// spread over several processes, and one writer (board/writer, in this process) publishing. Per publish it
// measures the time from the publish until the last reader holds the verified snapshot (and until the median
// reader does), and the writer's cost: the Publish call's total, beside the same Publish with no reader blocked.
//
// The baseline runs in the same processes and threads, interleaved with the board publish by publish: the
// kernel's futex wake of the same N waiters on a bare futex word in a shared mapping (a file in /dev/shm, no
// board, no snapshot), with the FUTEX_WAKE syscall's own duration and how many waiters it woke.
//
// The readers are C pthreads (waiters/waiters.c, compiled here with gcc against clients/c/notice.h): each waits as
// notice_wait does (FORMAT.md §6) and takes its snapshot with notice_snapshot_reuse (every check of FORMAT.md §5).
// 10,000 readers are 10 processes of 1,000 threads.
//
// Invariants of a measurement, each checked (the command fails loudly when one does not hold, never prints a
// figure it could not measure): every reader entered every round before its publish; every reader stamped every
// round, at or after the publish's stamp; the board's readers saw the published version; a reader that saw a
// change without having slept on the futex is counted and reported (the gap before each publish lets all sleep).
//
// Clocks: the publish is stamped with CLOCK_MONOTONIC just before the slot write that precedes the version store
// and the wake (the writer calls Options.Now there, for published_at; this command's Now stamps the clock too);
// the bare publish just before its word store. A reader stamps CLOCK_MONOTONIC when it holds the snapshot (the
// bare waiter: when it saw the word change).
//
// With -md it writes the section "fanout" of docs/BENCHMARKS.md, with -raw the benchstat-friendly results.
package main

import (
	"errors"
	"flag"
	"fmt"
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
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/announcementd/announcementd/board"
	"github.com/announcementd/announcementd/board/writer"
	"github.com/announcementd/announcementd/internal/benchfmt"
	"github.com/announcementd/announcementd/internal/procfs"
)

var (
	readersF     = flag.String("readers", "1,100,10000", "reader counts, comma-separated")
	procsF       = flag.String("procs", "1,4,10", "processes per reader count (threads are split evenly between them)")
	roundsF      = flag.String("rounds", "2000,400,200", "publishes per reader count, half of them the bare baseline (even); 1,000 of each for one reader, so that its p99 is the 10th worst, not the 2nd")
	idleF        = flag.Int("idle-rounds", 200, "publishes with no reader blocked, half of them the bare baseline (the writer's cost without waiters)")
	setF         = flag.Int("set", 20, "announcements on the board (each board publish changes one)")
	gapMinF      = flag.Duration("gap-min", 2*time.Millisecond, "least pause between all readers blocking and the publish")
	gapMaxF      = flag.Duration("gap-max", 10*time.Millisecond, "most pause (uniformly random in between, the same sequence for both modes)")
	awakeMinF    = flag.Duration("awake-gap-min", 100*time.Microsecond, "one reader again, with pauses this short and up to -awake-gap-max: its CPU has not gone idle yet (0: skip)")
	awakeMaxF    = flag.Duration("awake-gap-max", 300*time.Microsecond, "most pause of the awake runs")
	awakeRoundsF = flag.Int("awake-rounds", 2000, "publishes of the awake runs, half of them the bare baseline")
	awakeF       = flag.Float64("max-awake", 0.01, "the largest share of reader-publishes that may see the change without having slept on the futex (they measured no wake-up); above it the run fails")
	cDirF        = flag.String("c", "clients/c", "directory of notice.h")
	mdPath       = flag.String("md", "", "write the tables into this markdown file, between <!-- fanout:begin --> and <!-- fanout:end -->")
	rawPath      = flag.String("raw", "", "write the raw results, benchstat-friendly, to this file")
	langsF       = flag.String("langs", "c,go", "reader languages, each run at every reader count: c (pthreads, waiters.c), go (goroutines locked to OS threads)")
)

func main() {
	if os.Getenv(roleEnv) == "go-readers" {
		os.Exit(goReadersMain(os.Args[1:]))
	}
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "fanout:", err)
		os.Exit(1)
	}
}

// phase is one reader count: its configuration and what its rounds measured.
type phase struct {
	lang                   string // c or go
	readers, procs, rounds int
	gapMin, gapMax         time.Duration // the pause before each publish, uniformly random in between
	awake                  bool          // pauses too short for the readers' CPUs to go idle
	// per mode (0 bare, 1 board), one entry per publish
	last, median, publish [2][]float64 // ns
	wake                  []float64    // ns of the bare FUTEX_WAKE syscall
	woken                 []int        // what the bare FUTEX_WAKE returned
	notSlept              [2]int       // reader-rounds that saw the change without having slept
	busyCores             float64      // the host's busy cores during the phase (/proc/stat), this command's included
}

// self is this command's executable: it runs the Go readers' processes.
var self string

func run() error {
	started := time.Now()
	loadBefore := benchfmt.LoadAverage()
	counts, err := ints(*readersF)
	if err != nil {
		return err
	}
	procs, err := ints(*procsF)
	if err != nil {
		return err
	}
	rounds, err := ints(*roundsF)
	if err != nil {
		return err
	}
	if len(procs) != len(counts) || len(rounds) != len(counts) {
		return errors.New("-readers, -procs and -rounds need one entry each")
	}
	if *gapMinF <= 0 || *gapMaxF < *gapMinF || *awakeMinF < 0 || *awakeMaxF < *awakeMinF {
		return errors.New("need 0 < -gap-min <= -gap-max and 0 <= -awake-gap-min <= -awake-gap-max")
	}

	if self, err = os.Executable(); err != nil {
		return err
	}
	bin, err := os.MkdirTemp("", "fanout")
	if err != nil {
		return err
	}
	defer os.RemoveAll(bin)
	waiters := filepath.Join(bin, "waiters")
	gcc := exec.Command("gcc", "-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-pthread", "-I", *cDirF,
		"-o", waiters, "bench/fanout/waiters/waiters.c")
	if out, err := gcc.CombinedOutput(); err != nil {
		return fmt.Errorf("gcc waiters.c (run from the repository's root): %w\n%s", err, out)
	}
	dir, err := os.MkdirTemp("/dev/shm", "fanout")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	b, err := newBench(filepath.Join(dir, "board"), *setF)
	if err != nil {
		return err
	}
	defer b.w.Close()

	// The publisher owns one OS thread: its stamps and syscalls are not moved between threads mid-publish.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	var phases []*phase
	idle := &phase{readers: 0, rounds: *idleF, gapMin: *gapMinF, gapMax: *gapMaxF}
	if err := b.phase(idle, dir, waiters); err != nil {
		return fmt.Errorf("no readers: %w", err)
	}
	langs := strings.Split(*langsF, ",")
	for _, l := range langs {
		if l != "c" && l != "go" {
			return fmt.Errorf("-langs: %q is neither c nor go", l)
		}
	}
	var runs []*phase
	for i, n := range counts {
		for _, l := range langs {
			runs = append(runs, &phase{lang: l, readers: n, procs: procs[i], rounds: rounds[i], gapMin: *gapMinF, gapMax: *gapMaxF})
		}
	}
	if *awakeMinF > 0 {
		for _, l := range langs {
			runs = append(runs, &phase{lang: l, readers: 1, procs: 1, rounds: *awakeRoundsF, gapMin: *awakeMinF, gapMax: *awakeMaxF, awake: true})
		}
	}
	for _, ph := range runs {
		if err := b.phase(ph, dir, waiters); err != nil {
			return fmt.Errorf("%d %s readers: %w", ph.readers, ph.lang, err)
		}
		phases = append(phases, ph)
		fmt.Fprintf(os.Stderr, "fanout: %d %s readers, pauses %v-%v: last reader p50 %s (bare %s)\n", ph.readers, ph.lang,
			ph.gapMin, ph.gapMax, us(pct(ph.last[1], 50)), us(pct(ph.last[0], 50)))
	}
	rep := &report{started: started, elapsed: time.Since(started), loadBefore: loadBefore, loadAfter: benchfmt.LoadAverage(),
		idle: idle, phases: phases, set: *setF}
	if probs := rep.problems(); len(probs) > 0 {
		return fmt.Errorf("figures that could not be measured:\n  %s", strings.Join(probs, "\n  "))
	}
	md := rep.markdown()
	fmt.Print(md)
	if *mdPath != "" {
		if err := benchfmt.WriteSection(*mdPath, "fanout", md); err != nil {
			return err
		}
	}
	if err := benchfmt.WriteRaw(*rawPath, rep.raw()); err != nil {
		return err
	}
	return nil
}

// bench is the writer side: the board, its set, and the stamp the writer's clock hook takes.
type bench struct {
	w     *writer.Writer
	set   []board.Record
	stamp int64 // CLOCK_MONOTONIC at the writer's last Options.Now call: just before the slot write
	n     int   // publishes so far
	rng   *rand.Rand
}

func newBench(path string, n int) (*bench, error) {
	b := &bench{rng: rand.New(rand.NewPCG(12, 3))}
	w, err := writer.Open(path, writer.Options{Size: 1 << 20, Now: func() time.Time {
		b.stamp = monotonic()
		return time.Now()
	}})
	if err != nil {
		return nil, err
	}
	b.w = w
	for i := range n {
		b.set = append(b.set, board.Record{ID: uint64(i + 1), Content: strings.Repeat("fan-out ", 25)})
	}
	if _, err := w.Publish(b.set); err != nil {
		w.Close()
		return nil, err
	}
	return b, nil
}

// ctl is the control file every reader maps (waiters.c has its layout).
type ctl struct {
	mem           []byte
	rounds, total int
}

const stampsOff = 4096

func (c *ctl) word() *uint32    { return (*uint32)(unsafe.Pointer(&c.mem[0])) }
func (c *ctl) entered() *uint64 { return (*uint64)(unsafe.Pointer(&c.mem[64])) }

// stampAt is reader i's stamp of round r (CLOCK_MONOTONIC ns), sleptAt the byte that says it slept in it.
func (c *ctl) stampAt(r, i int) *uint64 {
	return (*uint64)(unsafe.Pointer(&c.mem[stampsOff+8*(r*c.total+i)]))
}
func (c *ctl) sleptAt(r, i int) *byte { return &c.mem[stampsOff+8*c.rounds*c.total+r*c.total+i] }

func (c *ctl) stamp(r, i int) int64       { return int64(atomic.LoadUint64(c.stampAt(r, i))) }
func (c *ctl) slept(r, i int) bool        { return *c.sleptAt(r, i) != 0 }
func (c *ctl) setStamp(r, i int, t int64) { atomic.StoreUint64(c.stampAt(r, i), uint64(t)) }

// newCtl creates the control file at path for rounds rounds of total readers and maps it; openCtl maps one a
// reader process was given.
func newCtl(path string, rounds, total int) (*ctl, error) {
	return mapCtl(path, rounds, max(total, 1), true)
}

func openCtl(path string, rounds, total int) (*ctl, error) { return mapCtl(path, rounds, total, false) }

func mapCtl(path string, rounds, total int, create bool) (*ctl, error) {
	size := stampsOff + 9*rounds*total
	flags := os.O_RDWR
	if create {
		flags |= os.O_CREATE | os.O_EXCL
	}
	f, err := os.OpenFile(path, flags, 0o600)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if create {
		if err := f.Truncate(int64(size)); err != nil {
			return nil, err
		}
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("mmap %s: %w", path, err)
	}
	return &ctl{mem: mem, rounds: rounds, total: total}, nil
}

// phase runs ph.rounds publishes, alternating the bare baseline (even rounds) and the board (odd rounds), with
// ph.readers readers blocked on each.
func (b *bench) phase(ph *phase, dir, waiters string) error {
	if ph.rounds < 2 || ph.rounds%2 != 0 {
		return fmt.Errorf("rounds %d: need an even number, at least 2", ph.rounds)
	}
	ctlPath := filepath.Join(dir, fmt.Sprintf("ctl-%s-%d-%v", ph.lang, ph.readers, ph.gapMin))
	c, err := newCtl(ctlPath, ph.rounds, ph.readers)
	if err != nil {
		return err
	}
	defer unix.Munmap(c.mem)

	var cmds []*exec.Cmd
	exited := make(chan error, max(ph.procs, 1))
	stopAll := func() {
		for _, cmd := range cmds {
			cmd.Process.Kill()
		}
		for range cmds {
			<-exited
		}
		cmds = nil
	}
	defer stopAll()
	for p := range ph.procs {
		first, next := ph.readers*p/ph.procs, ph.readers*(p+1)/ph.procs
		if next == first {
			continue
		}
		args := []string{ctlPath, b.w.Path(), strconv.Itoa(ph.rounds), strconv.Itoa(ph.readers), strconv.Itoa(first), strconv.Itoa(next - first)}
		cmd := exec.Command(waiters, args...)
		if ph.lang == "go" {
			cmd = exec.Command(self, args...)
			cmd.Env = append(os.Environ(), roleEnv+"=go-readers")
		}
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			return err
		}
		cmds = append(cmds, cmd)
		go func() { exited <- cmd.Wait() }()
	}

	pubStamp := make([]int64, ph.rounds)
	cpu0, _ := procfs.ReadHost()
	for r := range ph.rounds {
		if err := waitEntered(c, uint64(ph.readers*(r+1)), exited); err != nil {
			return fmt.Errorf("round %d: %w", r, err)
		}
		gap := ph.gapMin + time.Duration(b.rng.Int64N(int64(ph.gapMax-ph.gapMin)+1))
		time.Sleep(gap)
		if r%2 == 0 {
			t := monotonic()
			atomic.StoreUint32(c.word(), uint32(r/2+1))
			w0 := monotonic()
			n, _, errno := unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(c.word())), futexWake,
				uintptr(1<<31-1), 0, 0, 0)
			w1 := monotonic()
			if errno != 0 {
				return fmt.Errorf("round %d: futex wake: %w", r, errno)
			}
			pubStamp[r] = t
			ph.wake = append(ph.wake, float64(w1-w0))
			ph.woken = append(ph.woken, int(n))
			ph.publish[0] = append(ph.publish[0], float64(w1-t))
		} else {
			i := (r / 2) % len(b.set)
			b.n++ // a content never published before: the publish is a new version
			b.set[i].Content = fmt.Sprintf("fan-out publish %d (round %d of %d %s readers)", b.n, r, ph.readers, ph.lang)
			p0 := monotonic()
			if _, err := b.w.Publish(b.set); err != nil {
				return fmt.Errorf("round %d: publish: %w", r, err)
			}
			p1 := monotonic()
			if b.stamp < p0 || b.stamp > p1 {
				return fmt.Errorf("round %d: the writer's clock hook was not called during the publish", r)
			}
			pubStamp[r] = b.stamp
			ph.publish[1] = append(ph.publish[1], float64(p1-p0))
		}
	}
	for range cmds {
		select {
		case err := <-exited:
			if err != nil {
				return fmt.Errorf("a reader process: %w", err)
			}
		case <-time.After(60 * time.Second):
			return errors.New("reader processes did not finish their last round in 60 s")
		}
	}
	cmds = nil
	cpu1, _ := procfs.ReadHost()
	ph.busyCores = cpu1.BusySince(cpu0)

	if ph.readers == 0 {
		return nil
	}
	st := make([]float64, ph.readers)
	for r := range ph.rounds {
		m := r % 2
		for i := range ph.readers {
			s := c.stamp(r, i)
			if s == 0 {
				return fmt.Errorf("round %d: reader %d did not stamp", r, i)
			}
			if s < pubStamp[r] {
				return fmt.Errorf("round %d: reader %d stamped %d ns before the publish", r, i, pubStamp[r]-s)
			}
			st[i] = float64(s - pubStamp[r])
			if !c.slept(r, i) {
				ph.notSlept[m]++
			}
		}
		slices.Sort(st)
		ph.last[m] = append(ph.last[m], st[len(st)-1])
		ph.median[m] = append(ph.median[m], st[(len(st)-1)/2])
	}
	return nil
}

// waitEntered waits until n readers entered their rounds (the count of the round about to be published).
func waitEntered(c *ctl, n uint64, exited <-chan error) error {
	deadline := time.Now().Add(60 * time.Second)
	for atomic.LoadUint64(c.entered()) < n {
		select {
		case err := <-exited:
			return fmt.Errorf("a reader process ended early: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d reader-rounds entered in 60 s", atomic.LoadUint64(c.entered()), n)
		}
		time.Sleep(100 * time.Microsecond)
	}
	return nil
}

func monotonic() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// futexWake is FUTEX_WAKE without FUTEX_PRIVATE_FLAG: the word is shared between processes, as the board's.
const futexWake = 1
