// Command workerbench measures the worker through its real HTTP API on a Unix socket, with a real bbolt store
// and a real board, and prints a markdown table; `make bench` runs it.
//
//   - durable publishes/s and latency p50/p99 with 1, 16 and 64 concurrent clients, against the same with the
//     store's fsync disabled (the ceiling);
//   - the cost of a publish against the size of the set (10, 1,000 and 6,000 announcements, one record changed
//     per publish): the board publish alone, the worker's whole Apply without fsync, and 64 clients durable and
//     without fsync, beside what FORMAT.md §4 makes every publish pay whatever changed (comparing the whole
//     snapshot with the slot it goes into) and what checksumming the whole snapshot would cost, in the same run;
//   - scheduling lateness p50/p99: how long after its due time a reader blocked on the board's futex sees an
//     announcement appear or disappear.
//
// -clients N (with -nosync, -set) runs one throughput case alone, for profiling with -cpuprofile.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/announcementd/announcementd/announcement"
	"github.com/announcementd/announcementd/board"
	"github.com/announcementd/announcementd/board/reader"
	"github.com/announcementd/announcementd/board/writer"
	"github.com/announcementd/announcementd/internal/benchfmt"
	"github.com/announcementd/announcementd/internal/procfs"
	"github.com/announcementd/announcementd/store"
	"github.com/announcementd/announcementd/worker"
)

var (
	duration   = flag.Duration("d", 3*time.Second, "how long each throughput run lasts")
	cpuProfile = flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	only       = flag.String("only", "throughput,curve,lateness", "which tables to measure, comma-separated")
	oneClients = flag.Int("clients", 0, "run one throughput case with this many clients (for profiling), not the tables")
	oneNoSync  = flag.Bool("nosync", false, "with -clients: the store without fsync")
	oneSet     = flag.Int("set", 0, "with -clients: preload this many announcements and replace them (0: each client its own 50)")
	mdPath     = flag.String("md", "", "also write the tables into this markdown file's \"worker\" section (docs/BENCHMARKS.md)")
	rawPath    = flag.String("raw", "", "also write every figure into this file, one benchstat line each (docs/bench/worker.txt)")
)

// out is where the tables go: stdout, and with -md a buffer for the section too.
var out io.Writer = os.Stdout

// raw collects the figures as benchstat lines (-raw).
var raw strings.Builder

func rawLine(format string, args ...any) { fmt.Fprintf(&raw, format+"\n", args...) }

func main() {
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "workerbench:", err)
			os.Exit(1)
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "workerbench:", err)
		os.Exit(1)
	}
}

// env is a worker serving on a Unix socket, with its store and board in temp places.
type env struct {
	w      *worker.Worker
	client *http.Client
	board  string
	close  func()
}

func newEnv(noSync bool) (*env, error) {
	dir, err := os.MkdirTemp("", "workerbench")
	if err != nil {
		return nil, err
	}
	shm := filepath.Join("/dev/shm", fmt.Sprintf("notice_workerbench_%d", os.Getpid()))
	st, err := store.Open(filepath.Join(dir, "a.db"), store.Options{NoSync: noSync})
	if err != nil {
		return nil, err
	}
	bw, err := writer.Open(shm, writer.Options{Size: 4 << 20})
	if err != nil {
		return nil, err
	}
	w, err := worker.New(worker.Config{Board: bw, Store: st})
	if err != nil {
		return nil, err
	}
	sock := filepath.Join(dir, "api.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); w.Serve(ctx, []worker.Listener{{Listener: l}}) }()
	go func() { defer wg.Done(); w.Run(ctx) }()
	client := &http.Client{Transport: &http.Transport{
		MaxIdleConnsPerHost: 128,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}}}
	return &env{w: w, client: client, board: shm, close: func() {
		cancel()
		wg.Wait()
		bw.Close()
		st.Close()
		os.Remove(shm)
		os.RemoveAll(dir)
	}}, nil
}

func (e *env) put(id int, body string) error {
	req, _ := http.NewRequest("PUT", fmt.Sprintf("http://w/v1/announcements/%d", id), strings.NewReader(body))
	resp, err := e.client.Do(req)
	if err != nil {
		return err
	}
	// Read to the end, so the connection is reused (a keep-alive client, as a real one is), not redialed.
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("PUT %d: %s", id, resp.Status)
	}
	return nil
}

type result struct {
	ops      float64
	p50, p99 time.Duration
	cpu      time.Duration // this process's CPU time per publish (user + system): the worker and its clients
	versions float64       // board versions per publish request: how well concurrent requests share a publish
}

// preload puts n announcements, ids 1..n, in one Apply.
func (e *env) preload(n int) error {
	if n == 0 {
		return nil
	}
	puts := make([]announcement.Announcement, n)
	now := time.Now().UnixNano()
	for i := range puts {
		puts[i] = announcement.Announcement{ID: uint64(i + 1), Content: content(i, 0), EffectiveAt: now}
	}
	_, err := e.w.Apply(puts, nil)
	return err
}

// content is a realistic announcement text of about 100 bytes.
func content(id, rev int) string {
	return fmt.Sprintf("Announcement %d, revision %d: the service will be briefly unavailable tonight; plan accordingly.", id, rev)
}

// throughput runs clients goroutines, each replacing announcements as fast as it can, for *duration. With set 0
// each client replaces 50 ids of its own (the set grows to 50 per client); with set > 0, set announcements are
// loaded first and the clients replace those, so the set stays at set.
func throughput(noSync bool, clients, set int) (result, error) {
	e, err := newEnv(noSync)
	if err != nil {
		return result{}, err
	}
	defer e.close()
	if err := e.preload(set); err != nil {
		return result{}, err
	}
	var mu sync.Mutex
	var lat []time.Duration
	var firstErr error
	deadline := time.Now().Add(*duration)
	var wg sync.WaitGroup
	start, cpu0, v0 := time.Now(), procfs.SelfCPU(), e.w.Version()
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for i := 0; time.Now().Before(deadline); i++ {
				t := time.Now()
				id := 1 + c*50 + i%50
				if set > 0 {
					id = 1 + (c*50+i)%set
				}
				if err := e.put(id, fmt.Sprintf(`{"content":"client %d update %d"}`, c, i)); err != nil {
					mu.Lock()
					firstErr = err
					mu.Unlock()
					return
				}
				mine = append(mine, time.Since(t))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return result{}, firstErr
	}
	elapsed, cpu := time.Since(start), procfs.SelfCPU()-cpu0
	slices.Sort(lat)
	return result{ops: float64(len(lat)) / elapsed.Seconds(), p50: benchfmt.Percentile(lat, 50), p99: benchfmt.Percentile(lat, 99),
		cpu: cpu / time.Duration(max(1, len(lat))), versions: float64(e.w.Version()-v0) / float64(max(1, len(lat)))}, nil
}

// raw writes r as a benchstat line named name.
func (r result) raw(name string) {
	rawLine("%s 1 %.0f publishes/s %d p50-ns %d p99-ns %d cpu-ns/publish %.3f versions/publish", name, r.ops,
		r.p50.Nanoseconds(), r.p99.Nanoseconds(), r.cpu.Nanoseconds(), r.versions)
}

// lateness schedules n announcements to appear and disappear at spread-out times and measures, from a reader
// blocked on the board's futex, how late each change becomes visible.
func lateness(n int) (appear, expire []time.Duration, err error) {
	e, err := newEnv(false)
	if err != nil {
		return nil, nil, err
	}
	defer e.close()
	b, err := reader.Open(e.board)
	if err != nil {
		return nil, nil, err
	}
	defer b.Close()

	base := time.Now().Add(500 * time.Millisecond)
	type sched struct{ at, until time.Time }
	want := map[uint64]sched{}
	var puts []announcement.Announcement
	for i := range n {
		at := base.Add(time.Duration(i) * 37 * time.Millisecond)
		until := at.Add(time.Duration(200+i*13%300) * time.Millisecond)
		id := uint64(i + 1)
		want[id] = sched{at, until}
		puts = append(puts, announcement.Announcement{ID: id, Content: "scheduled", EffectiveAt: at.UnixNano(), ExpiresAt: until.UnixNano()})
	}
	if _, err := e.w.Apply(puts, nil); err != nil {
		return nil, nil, err
	}
	seen := map[uint64]bool{}
	gone := map[uint64]bool{}
	last := b.Version()
	end := base.Add(time.Duration(n)*37*time.Millisecond + 2*time.Second)
	for time.Now().Before(end) && len(gone) < n {
		v, err := b.Wait(context.Background(), last, time.Until(end))
		if err != nil {
			break
		}
		now := time.Now()
		last = v
		s, err := b.Snapshot()
		if err != nil {
			return nil, nil, err
		}
		visible := map[uint64]bool{}
		for _, r := range s.Records {
			visible[r.ID] = true
			if !seen[r.ID] {
				seen[r.ID] = true
				appear = append(appear, now.Sub(want[r.ID].at))
			}
		}
		for id := range seen {
			if !visible[id] && !gone[id] {
				gone[id] = true
				expire = append(expire, now.Sub(want[id].until))
			}
		}
	}
	if len(appear) != n || len(expire) != n {
		return nil, nil, fmt.Errorf("saw %d appearances and %d expiries of %d", len(appear), len(expire), n)
	}
	slices.Sort(appear)
	slices.Sort(expire)
	return appear, expire, nil
}

func run() error {
	if *oneClients > 0 {
		r, err := throughput(*oneNoSync, *oneClients, *oneSet)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "%d clients, no fsync %v, set %d: %.0f publishes/s, p50 %s, p99 %s, CPU %s a publish, %.2f board versions a publish\n", *oneClients, *oneNoSync, *oneSet,
			r.ops, ms(r.p50), ms(r.p99), us(r.cpu), r.versions)
		return nil
	}
	var md bytes.Buffer
	if *mdPath != "" {
		out = io.MultiWriter(os.Stdout, &md)
	}
	started, load0 := time.Now(), benchfmt.LoadAverage()
	want := map[string]bool{}
	for _, s := range strings.Split(*only, ",") {
		want[strings.TrimSpace(s)] = true
	}
	if want["throughput"] {
		if err := throughputTable(); err != nil {
			return err
		}
	}
	if want["curve"] {
		if err := curveTable(); err != nil {
			return err
		}
	}
	if want["lateness"] {
		if err := latenessTable(); err != nil {
			return err
		}
	}
	if *mdPath != "" {
		head := fmt.Sprintf("## The worker: durable publishes and what a publish costs against the size of the set\n\n"+
			"%s. Reproduce with `go run ./bench/workerbench -md docs/BENCHMARKS.md -raw docs/bench/worker.txt` (tables: -only %s); this run: %s UTC, %.0f s. "+
			"Load average before %s, after %s: the throughput columns share the 2 cores with whatever else runs (its clients run in this "+
			"process too), so read them as ratios within a row; the medians per operation and the CPU per publish move much less.\n\n",
			benchfmt.Machine(), *only, started.UTC().Format("2006-01-02 15:04"), time.Since(started).Seconds(), load0, benchfmt.LoadAverage())
		if note := benchfmt.RawNote(*mdPath, *rawPath); note != "" {
			head += note[1:] + "\n\n"
		}
		if err := benchfmt.WriteSection(*mdPath, "worker", head+md.String()); err != nil {
			return err
		}
	}
	command := "go run ./bench/workerbench -only " + *only
	if err := benchfmt.WriteRaw(*rawPath, benchfmt.RawHeader("bench/workerbench", command, started,
		"load average before "+load0+", after "+benchfmt.LoadAverage())+raw.String()); err != nil {
		return err
	}
	return nil
}

func throughputTable() error {
	fsync, err := diskSync()
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "The disk under the store, same run: 4 KiB written and fdatasync'ed, median %s (a bbolt commit syncs twice: data, then meta).\n\n", ms(fsync))
	rawLine("BenchmarkDiskSync/4KiB 1 %d ns/op", fsync.Nanoseconds())
	fmt.Fprintln(out, "| durable publishes (HTTP on a Unix socket, bbolt, board) | publishes/s | p50 | p99 | no-fsync ceiling publishes/s | p50 | p99 | durable / ceiling | CPU per publish, durable / no fsync | board versions per publish, durable / no fsync |")
	fmt.Fprintln(out, "|---|---|---|---|---|---|---|---|---|---|")
	for _, clients := range []int{1, 16, 64} {
		sync, err := throughput(false, clients, 0)
		if err != nil {
			return err
		}
		nosync, err := throughput(true, clients, 0)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "| %d clients | %.0f | %s | %s | %.0f | %s | %s | %.2f | %s / %s | %.2f / %.2f |\n", clients, sync.ops, ms(sync.p50), ms(sync.p99),
			nosync.ops, ms(nosync.p50), ms(nosync.p99), sync.ops/nosync.ops, us(sync.cpu), us(nosync.cpu), sync.versions, nosync.versions)
		sync.raw("BenchmarkDurable/clients=" + strconv.Itoa(clients))
		nosync.raw("BenchmarkNoFsync/clients=" + strconv.Itoa(clients))
	}
	fmt.Fprintln(out)
	return nil
}

// curveSizes are the set sizes of the cost curve; 6,000 records nearly fill the 4 MiB board (capacity 6,546).
var curveSizes = []int{10, 1000, 6000}

func curveTable() error {
	fmt.Fprintln(out, "What a publish costs against the size of the set, one announcement changed per publish. Board publish: the "+
		"board writer alone (writer.Publisher), handed the whole sorted set or only the change (as the worker does); worker "+
		"Apply: one change through the worker without HTTP and without fsync, one at a time; 64 clients: HTTP, the set kept at "+
		"its size. The last two columns are what touching every byte of the snapshot costs (64 + n × 320 bytes): a publish "+
		"still checks the whole slot it writes, one CRC-32 pass (FORMAT.md §4: it writes or verifies the whole snapshot).")
	fmt.Fprintln(out)
	fmt.Fprintln(out, "| set size, one record changed per publish | board publish, whole set handed (Publish), median | board publish, the change handed (Update), median | worker Apply, no fsync, median | 64 clients durable publishes/s | p99 | CPU per publish | no-fsync publishes/s | p99 | CPU per publish | durable / no-fsync | compare the whole snapshot, median | CRC-32 of the whole snapshot, median |")
	fmt.Fprintln(out, "|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, n := range curveSizes {
		pub, err := boardCost(n, false)
		if err != nil {
			return err
		}
		delta, err := boardCost(n, true)
		if err != nil {
			return err
		}
		apply, err := applyCost(n)
		if err != nil {
			return err
		}
		sync, err := throughput(false, 64, n)
		if err != nil {
			return err
		}
		nosync, err := throughput(true, 64, n)
		if err != nil {
			return err
		}
		cmpCost, crcCost := snapshotCeilings(n)
		fmt.Fprintf(out, "| %d | %s | %s | %s | %.0f | %s | %s | %.0f | %s | %s | %.2f | %s | %s |\n", n, us(pub), us(delta), us(apply), sync.ops, ms(sync.p99),
			us(sync.cpu), nosync.ops, ms(nosync.p99), us(nosync.cpu), sync.ops/nosync.ops, us(cmpCost), us(crcCost))
		set := "/set=" + strconv.Itoa(n)
		rawLine("BenchmarkCurve%s 1 %d publish-ns %d update-ns %d apply-ns %d compare-snapshot-ns %d crc-snapshot-ns", set,
			pub.Nanoseconds(), delta.Nanoseconds(), apply.Nanoseconds(), cmpCost.Nanoseconds(), crcCost.Nanoseconds())
		sync.raw("BenchmarkDurable/clients=64" + set)
		nosync.raw("BenchmarkNoFsync/clients=64" + set)
	}
	fmt.Fprintln(out)
	return nil
}

// timeEach runs f repeatedly for about d (at least 20 times) and returns the median time of one call.
func timeEach(d time.Duration, f func(i int) error) (time.Duration, error) {
	var ts []time.Duration
	end := time.Now().Add(d)
	for i := 0; i < 20 || time.Now().Before(end); i++ {
		t := time.Now()
		if err := f(i); err != nil {
			return 0, err
		}
		ts = append(ts, time.Since(t))
	}
	slices.Sort(ts)
	return benchfmt.Percentile(ts, 50), nil
}

// boardCost is the board publish alone, one record of n changed before each publish: a writer.Publisher whose
// source hands over the whole visible set (sorted by id), or, with delta, one whose source hands over only the
// record that changed, as the worker does (writer.NewDeltaPublisher).
func boardCost(n int, delta bool) (time.Duration, error) {
	shm := filepath.Join("/dev/shm", fmt.Sprintf("notice_workerbench_cost_%d", os.Getpid()))
	defer os.Remove(shm)
	bw, err := writer.Open(shm, writer.Options{Size: 4 << 20})
	if err != nil {
		return 0, err
	}
	defer bw.Close()
	now := time.Now().UnixNano()
	recs := make([]board.Record, n)
	for i := range recs {
		recs[i] = board.Record{ID: uint64(i + 1), Content: content(i, 0), EffectiveAt: now}
	}
	var mu sync.Mutex
	whole := func() []board.Record {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(recs)
	}
	last := -1 // the record changed since the last publish
	changed := func() []board.Record {
		mu.Lock()
		defer mu.Unlock()
		if last < 0 {
			return nil
		}
		r := recs[last]
		last = -1
		return []board.Record{r}
	}
	pub := writer.NewPublisher(bw, whole)
	if delta {
		pub = writer.NewDeltaPublisher(bw, func(full bool) writer.Delta {
			if full {
				return writer.Delta{Full: true, Records: whole()}
			}
			return writer.Delta{Records: changed()}
		})
	}
	if _, err := pub.Sync(); err != nil {
		return 0, err
	}
	return timeEach(*duration/3, func(i int) error {
		mu.Lock()
		k := (i * 7919) % n
		recs[k].Content = content(k, i+1)
		last = k
		mu.Unlock()
		_, err := pub.Sync()
		return err
	})
}

// applyCost is one Worker.Apply of one changed announcement of n, sequentially, with the store's fsync off: the
// store's transaction, the worker's bookkeeping and the board publish, without HTTP.
func applyCost(n int) (time.Duration, error) {
	e, err := newEnv(true)
	if err != nil {
		return 0, err
	}
	defer e.close()
	if err := e.preload(n); err != nil {
		return 0, err
	}
	now := time.Now().UnixNano()
	return timeEach(*duration/3, func(i int) error {
		k := (i * 7919) % n
		_, err := e.w.Apply([]announcement.Announcement{{ID: uint64(k + 1), Content: content(k, i+1), EffectiveAt: now}}, nil)
		return err
	})
}

// snapshotCeilings are what a publish of n records pays if it touches every byte of the snapshot (64 + n × 320
// bytes): comparing it with another copy (bytes.Equal, what the verify of FORMAT.md §4 costs at least), and
// checksumming it (crc32.ChecksumIEEE, what the slot CRC costs when computed over the whole snapshot).
func snapshotCeilings(n int) (cmpCost, crcCost time.Duration) {
	size := board.SlotHeaderSize + uint64(n)*320
	a, b := make([]byte, size), make([]byte, size)
	for i := range a {
		a[i] = byte(i)
	}
	copy(b, a)
	var sink uint32
	cmpCost, _ = timeEach(*duration/10, func(int) error {
		if !equalBytes(a, b) {
			sink++
		}
		return nil
	})
	crcCost, _ = timeEach(*duration/10, func(int) error {
		sink += crc32.ChecksumIEEE(a)
		return nil
	})
	_ = sink
	return cmpCost, crcCost
}

// diskSync is the median time to write 4 KiB into a file in the temp dir (where the store lives) and fdatasync it.
func diskSync() (time.Duration, error) {
	f, err := os.CreateTemp("", "workerbench-sync")
	if err != nil {
		return 0, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, 4096)
	return timeEach(*duration/6, func(i int) error {
		if _, err := f.WriteAt(buf, int64(i%64)*4096); err != nil {
			return err
		}
		return syscall.Fdatasync(int(f.Fd()))
	})
}

func latenessTable() error {
	appear, expire, err := lateness(60)
	if err != nil {
		return err
	}
	fmt.Fprintln(out, "| scheduling lateness, seen by a futex reader (60 announcements) | p50 | p99 | max |")
	fmt.Fprintln(out, "|---|---|---|---|")
	fmt.Fprintf(out, "| appearance | %s | %s | %s |\n", ms(benchfmt.Percentile(appear, 50)), ms(benchfmt.Percentile(appear, 99)), ms(appear[len(appear)-1]))
	fmt.Fprintf(out, "| expiry | %s | %s | %s |\n", ms(benchfmt.Percentile(expire, 50)), ms(benchfmt.Percentile(expire, 99)), ms(expire[len(expire)-1]))
	for _, l := range []struct {
		name string
		ds   []time.Duration
	}{{"appearance", appear}, {"expiry", expire}} {
		rawLine("BenchmarkLateness/%s 1 %d p50-ns %d p99-ns %d max-ns", l.name, benchfmt.Percentile(l.ds, 50).Nanoseconds(), benchfmt.Percentile(l.ds, 99).Nanoseconds(), l.ds[len(l.ds)-1].Nanoseconds())
	}
	return nil
}

func us(d time.Duration) string { return fmt.Sprintf("%.1f µs", float64(d)/1e3) }

func ms(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d)/1e6) }

// equalBytes is bytes.Equal, kept out of line so the comparison is not optimised away.
//
//go:noinline
func equalBytes(a, b []byte) bool { return bytes.Equal(a, b) }
