package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/announcementd/announcementd/internal/procfs"
	"github.com/announcementd/announcementd/internal/proctest"
)

// load is the publishing load: clients goroutines, each with its own keep-alive connection to the API socket,
// each replacing announcements of the set in turn (client c takes ids c+1, c+1+clients, ...), one PUT after the
// other as fast as the daemon acknowledges them. Every acknowledged PUT is a durable publish (store commit, then the
// board), the path the profile is for.
type load struct {
	ok, failed atomic.Int64
	firstErr   atomic.Pointer[string]
	cancel     context.CancelFunc
	wg         sync.WaitGroup
}

// startLoad starts the clients; stop ends them.
func startLoad(d *daemon, clients, set int) *load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{cancel: cancel}
	sock := filepath.Join(d.dir, "run", "api.sock")
	for c := range clients {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			hc := proctest.UnixClient(sock, 30*time.Second, true)
			defer hc.CloseIdleConnections()
			for n := 0; ctx.Err() == nil; n++ {
				id := 1 + (c+n*clients)%set
				if err := put(ctx, hc, id, content(id, n)); err != nil {
					if ctx.Err() != nil {
						return
					}
					l.failed.Add(1)
					msg := err.Error()
					l.firstErr.CompareAndSwap(nil, &msg)
					time.Sleep(10 * time.Millisecond)
					continue
				}
				l.ok.Add(1)
			}
		}()
	}
	return l
}

// stop ends the clients and waits for them.
func (l *load) stop() {
	l.cancel()
	l.wg.Wait()
}

// err says how many publishes failed and the first failure, or nil when none did.
func (l *load) err() error {
	n := l.failed.Load()
	if n == 0 {
		return nil
	}
	msg := "?"
	if p := l.firstErr.Load(); p != nil {
		msg = *p
	}
	return fmt.Errorf("%d publishes failed; the first: %s", n, msg)
}

func put(ctx context.Context, hc *http.Client, id int, text string) error {
	body := fmt.Sprintf(`{"content":%q}`, text)
	req, err := http.NewRequestWithContext(ctx, "PUT", fmt.Sprintf("http://announcementd/v1/announcements/%d", id), strings.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("PUT /v1/announcements/%d: %s %s", id, resp.Status, strings.TrimSpace(string(b)))
	}
	return nil
}

// window is what one stretch of the run measured: publishes acknowledged and the worker's CPU time.
type window struct {
	name      string
	wall, cpu time.Duration
	publishes int64
}

func (w window) perSecond() float64 { return float64(w.publishes) / w.wall.Seconds() }
func (w window) cores() float64     { return w.cpu.Seconds() / w.wall.Seconds() }

// measure runs fn (which takes the window's length) while counting l's publishes and pid's CPU time.
func measure(name string, l *load, pid int, fn func() error) (window, error) {
	c0, err := procfs.ReadCPU(pid)
	if err != nil {
		return window{}, err
	}
	n0, t0 := l.ok.Load(), time.Now()
	if err := fn(); err != nil {
		return window{}, fmt.Errorf("%s: %w", name, err)
	}
	n1, t1 := l.ok.Load(), time.Now()
	c1, err := procfs.ReadCPU(pid)
	if err != nil {
		return window{}, err
	}
	w := window{name: name, wall: t1.Sub(t0), cpu: c1.Stat - c0.Stat, publishes: n1 - n0}
	if w.publishes == 0 {
		return w, fmt.Errorf("%s: no publish was acknowledged in %v", name, w.wall.Round(time.Millisecond))
	}
	return w, nil
}
