// Command workerbench measures the worker through its real HTTP API on a Unix socket, with a real bbolt store
// and a real board, and prints a markdown table; `make bench` runs it.
//
//   - durable publishes/s and latency p50/p99 with 1, 16 and 64 concurrent clients, against the same with the
//     store's fsync disabled (the ceiling);
//   - scheduling lateness p50/p99: how long after its due time a reader blocked on the board's futex sees an
//     announcement appear or disappear.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/announcementd/announcementd/announcement"
	"github.com/announcementd/announcementd/board/reader"
	"github.com/announcementd/announcementd/board/writer"
	"github.com/announcementd/announcementd/store"
	"github.com/announcementd/announcementd/worker"
)

var (
	duration   = flag.Duration("d", 3*time.Second, "how long each throughput run lasts")
	cpuProfile = flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
)

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
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("PUT %d: %s", id, resp.Status)
	}
	return nil
}

type result struct {
	ops      float64
	p50, p99 time.Duration
}

// throughput runs clients goroutines, each replacing its own announcements as fast as it can, for *duration.
func throughput(noSync bool, clients int) (result, error) {
	e, err := newEnv(noSync)
	if err != nil {
		return result{}, err
	}
	defer e.close()
	var mu sync.Mutex
	var lat []time.Duration
	var firstErr error
	deadline := time.Now().Add(*duration)
	var wg sync.WaitGroup
	start := time.Now()
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for i := 0; time.Now().Before(deadline); i++ {
				t := time.Now()
				if err := e.put(1+c*50+i%50, fmt.Sprintf(`{"content":"client %d update %d"}`, c, i)); err != nil {
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
	elapsed := time.Since(start)
	slices.Sort(lat)
	return result{ops: float64(len(lat)) / elapsed.Seconds(), p50: pct(lat, 50), p99: pct(lat, 99)}, nil
}

func pct(xs []time.Duration, p float64) time.Duration {
	if len(xs) == 0 {
		return 0
	}
	return xs[int(p/100*float64(len(xs)-1))]
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
	fmt.Println("| durable publishes (HTTP on a Unix socket, bbolt, board) | publishes/s | p50 | p99 | no-fsync ceiling publishes/s | p50 | p99 | durable / ceiling |")
	fmt.Println("|---|---|---|---|---|---|---|---|")
	for _, clients := range []int{1, 16, 64} {
		sync, err := throughput(false, clients)
		if err != nil {
			return err
		}
		nosync, err := throughput(true, clients)
		if err != nil {
			return err
		}
		fmt.Printf("| %d clients | %.0f | %s | %s | %.0f | %s | %s | %.2f |\n", clients, sync.ops, ms(sync.p50), ms(sync.p99),
			nosync.ops, ms(nosync.p50), ms(nosync.p99), sync.ops/nosync.ops)
	}
	appear, expire, err := lateness(60)
	if err != nil {
		return err
	}
	fmt.Println()
	fmt.Println("| scheduling lateness, seen by a futex reader (60 announcements) | p50 | p99 | max |")
	fmt.Println("|---|---|---|---|")
	fmt.Printf("| appearance | %s | %s | %s |\n", ms(pct(appear, 50)), ms(pct(appear, 99)), ms(appear[len(appear)-1]))
	fmt.Printf("| expiry | %s | %s | %s |\n", ms(pct(expire, 50)), ms(pct(expire, 99)), ms(expire[len(expire)-1]))
	return nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d)/1e6) }
