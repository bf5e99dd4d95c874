// Command httppoll is bench/scale's HTTP polling baseline, built as a user would build it:
//
//	httppoll server -records N              a net/http server holding the set in memory (no store, no fsync)
//	httppoll client -addr A -clients K ...  K polling clients in one process
//
// The server answers GET /version and GET /records with an ETag (the version), and 304 Not Modified when
// If-None-Match names the current one. It encodes the set once per version (the JSON of the daemon's API for each
// announcement) and serves those bytes; POST /publish?seq=N replaces announcement 1 with "seq=N ..." as a new
// version (what the bench's publisher calls). It prints "listening ADDR" and serves until stdin closes.
//
// The client is the shm readers' model over HTTP: each client has its own keep-alive TCP connection (no pool: 250,000
// independent clients would each hold one) and a phase; a timer wheel sends each due client's conditional GET
// /records (If-None-Match: its ETag) on its connection, and a goroutine per connection reads the answers: a 304
// costs nothing more, a 200 carries the whole set, which the client reads off its connection (its own copy) and
// from which it takes the publish number. A client whose previous request is still unanswered when it is due again
// skips that poll (counted as missed). Latency, the protocol and the report are the shm readers'
// (bench/scale/internal/sim). The HTTP handling is a minimal HTTP/1.1 client written for the purpose: cheaper than
// net/http's client, so the server gets as much of the machine as it can.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/announcementd/announcementd/bench/scale/internal/sim"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: httppoll server|client [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "server":
		err = server(os.Args[2:])
	case "client":
		err = client(os.Args[2:])
	default:
		err = fmt.Errorf("unknown role %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "httppoll:", err)
		os.Exit(1)
	}
}

type announcement struct {
	ID          uint64    `json:"id"`
	Content     string    `json:"content"`
	Priority    int32     `json:"priority"`
	EffectiveAt time.Time `json:"effective_at"`
	Visible     bool      `json:"visible"`
}

type answer struct {
	etag    string
	records []byte
	version []byte
}

func server(args []string) error {
	fs := flag.NewFlagSet("server", flag.ExitOnError)
	n := fs.Int("records", 20, "announcements in the set")
	listen := fs.String("listen", "127.0.0.1:0", "address")
	fs.Parse(args)
	if *n < 1 {
		return errors.New("-records must be ≥ 1")
	}
	now := time.Now().UTC().Truncate(time.Second)
	set := make([]announcement, *n)
	for i := range set {
		set[i] = announcement{ID: uint64(i + 1), Content: sim.Filler(fmt.Sprintf("announcement %d ", i+1)), EffectiveAt: now, Visible: true}
	}
	var mu sync.Mutex // publishes
	var cur atomic.Pointer[answer]
	var version uint64
	encode := func() error {
		version++
		body, err := json.Marshal(struct {
			Version uint64         `json:"version"`
			Records []announcement `json:"records"`
		}{version, set})
		if err != nil {
			return err
		}
		cur.Store(&answer{etag: fmt.Sprintf(`"v%d"`, version), records: body, version: fmt.Appendf(nil, "%d\n", version)})
		return nil
	}
	set[0].Content = sim.Filler(sim.SeqPrefix + "0 ")
	if err := encode(); err != nil {
		return err
	}
	serve := func(w http.ResponseWriter, r *http.Request, body func(*answer) []byte, ctype string) {
		a := cur.Load()
		h := w.Header()
		h["Etag"] = []string{a.etag}
		if r.Header.Get("If-None-Match") == a.etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		b := body(a)
		h["Content-Type"] = []string{ctype}
		h["Content-Length"] = []string{strconv.Itoa(len(b))}
		w.Write(b)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /records", func(w http.ResponseWriter, r *http.Request) {
		serve(w, r, func(a *answer) []byte { return a.records }, "application/json")
	})
	mux.HandleFunc("GET /version", func(w http.ResponseWriter, r *http.Request) {
		serve(w, r, func(a *answer) []byte { return a.version }, "text/plain")
	})
	mux.HandleFunc("POST /publish", func(w http.ResponseWriter, r *http.Request) {
		seq, err := strconv.ParseUint(r.URL.Query().Get("seq"), 10, 64)
		if err != nil {
			http.Error(w, "seq", http.StatusBadRequest)
			return
		}
		mu.Lock()
		set[0].Content = sim.Filler(fmt.Sprintf("%s%d ", sim.SeqPrefix, seq))
		err = encode()
		v := version
		mu.Unlock()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintf(w, "%d\n", v)
	})
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	fmt.Printf("listening %s\n", ln.Addr())
	go func() { // the bench is gone: stop
		io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	return (&http.Server{Handler: mux}).Serve(ln)
}

// conn is one client: its connection, what it last saw, and whether a request is in flight.
type conn struct {
	c        net.Conn
	br       *bufio.Reader
	req      atomic.Pointer[[]byte] // the next request (with the client's ETag)
	inFlight atomic.Bool
	sentAt   int64 // when the request in flight was sent (owned by whoever holds inFlight)
	lastSeq  atomic.Uint64
	dead     atomic.Bool
}

type clientProc struct {
	clk       *sim.Clock
	pub       *sim.PubTable
	measuring atomic.Bool
	first     atomic.Uint64

	polls, missed, notModified, changed, bodyBytes, pairs, errors atomic.Uint64
	errMu                                                         sync.Mutex
	errText                                                       string
	lat, lag                                                      *sim.Hist
}

func (p *clientProc) fail(err error) {
	p.errors.Add(1)
	p.errMu.Lock()
	if p.errText == "" {
		p.errText = err.Error()
	}
	p.errMu.Unlock()
}

func request(etag string) *[]byte {
	b := []byte("GET /records HTTP/1.1\r\nHost: scale\r\n")
	if etag != "" {
		b = append(b, "If-None-Match: "+etag+"\r\n"...)
	}
	b = append(b, "\r\n"...)
	return &b
}

var seqKey = []byte(`"content":"` + sim.SeqPrefix)

// readAnswer reads one answer: its status, ETag and (for a 200) the publish it shows, and how many body bytes.
func readAnswer(br *bufio.Reader) (status int, etag string, seq uint64, n int, err error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return 0, "", 0, 0, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.1 ")) {
		return 0, "", 0, 0, fmt.Errorf("bad status line %q", line)
	}
	status, err = strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, "", 0, 0, fmt.Errorf("bad status line %q", line)
	}
	length := 0
	for {
		h, err := br.ReadSlice('\n')
		if err != nil {
			return 0, "", 0, 0, err
		}
		if len(h) <= 2 {
			break
		}
		k, v, ok := bytes.Cut(h, []byte(":"))
		if !ok {
			continue
		}
		v = bytes.TrimSpace(v)
		switch {
		case bytes.EqualFold(k, []byte("Content-Length")):
			if length, err = strconv.Atoi(string(v)); err != nil {
				return 0, "", 0, 0, fmt.Errorf("bad Content-Length %q", v)
			}
		case bytes.EqualFold(k, []byte("Etag")):
			etag = string(v)
		}
	}
	if status == http.StatusOK {
		head, _ := br.Peek(min(length, 256))
		i := bytes.Index(head, seqKey)
		if i < 0 {
			return 0, "", 0, 0, fmt.Errorf("no %s in the body's first bytes", seqKey)
		}
		rest := head[i+len(seqKey):]
		j := bytes.IndexByte(rest, ' ')
		if j < 0 {
			return 0, "", 0, 0, errors.New("no end to the seq")
		}
		if seq, err = strconv.ParseUint(string(rest[:j]), 10, 64); err != nil {
			return 0, "", 0, 0, err
		}
	}
	if _, err := br.Discard(length); err != nil {
		return 0, "", 0, 0, err
	}
	return status, etag, seq, length, nil
}

func client(args []string) error {
	fs := flag.NewFlagSet("client", flag.ExitOnError)
	addr := fs.String("addr", "", "the server")
	k := fs.Int("clients", 1000, "clients (connections) in this process")
	interval := fs.Duration("interval", 50*time.Millisecond, "each client's poll interval")
	seed := fs.Uint64("seed", 1, "seed of the phases")
	pubPath := fs.String("pub", "", "the table of publish times")
	fs.Parse(args)
	if *k < 1 {
		return errors.New("-clients must be ≥ 1")
	}
	pub, err := sim.OpenPubTable(*pubPath)
	if err != nil {
		return err
	}
	p := &clientProc{clk: sim.NewClock(), pub: pub, lat: sim.NewHist(), lag: sim.NewHist()}

	// Connect every client and fetch the set once (not measured).
	conns := make([]*conn, *k)
	var wg sync.WaitGroup
	var connectErr atomic.Pointer[error]
	next := atomic.Int64{}
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= *k {
					return
				}
				c, err := net.Dial("tcp", *addr)
				if err == nil {
					cc := &conn{c: c, br: bufio.NewReaderSize(c, 4096)}
					if _, err = c.Write(*request("")); err == nil {
						var etag string
						var seq uint64
						if _, etag, seq, _, err = readAnswer(cc.br); err == nil {
							cc.req.Store(request(etag))
							cc.lastSeq.Store(seq)
							conns[i] = cc
						}
					}
				}
				if err != nil {
					connectErr.Store(&err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if e := connectErr.Load(); e != nil {
		return fmt.Errorf("connect: %w", *e)
	}
	for _, c := range conns {
		go p.readLoop(c)
	}
	cmds := sim.ReadCommands()
	fmt.Printf("ready %d\n", conns[0].lastSeq.Load())

	phases := sim.Phases(*k, *interval, *seed)
	P := int64(*interval)
	var cpu0, wall0, stopAt int64
	var stopping bool
	var last uint64
	base := p.clk.Now()
	var cycle int64
	idx := 0
	timer := time.NewTimer(time.Hour)
	for {
		now := p.clk.Now()
		for n := 1; ; n++ {
			due := base + cycle*P + phases[idx]
			if due > now {
				break
			}
			p.poll(conns[idx], now, due)
			if idx++; idx == *k {
				idx = 0
				cycle++
				if late := now - (base + cycle*P); late > P {
					skip := late / P
					cycle += skip
					if p.measuring.Load() {
						p.missed.Add(uint64(skip) * uint64(*k))
					}
				}
			}
			if n&15 == 0 {
				now = p.clk.Now()
			}
		}
		if stopping {
			all := true
			for _, c := range conns {
				if c.lastSeq.Load() < last && !c.dead.Load() {
					all = false
					break
				}
			}
			if all || now >= stopAt {
				return p.report(conns, *k, cpu0, wall0, last)
			}
		}
		timer.Reset(max(time.Duration(base+cycle*P+phases[idx]-now), time.Millisecond))
		select {
		case c, ok := <-cmds:
			if !ok {
				return nil
			}
			if !c.Stop {
				p.first.Store(c.Seq)
				cpu0 = sim.CPU()
				wall0 = p.clk.Now()
				p.measuring.Store(true)
				continue
			}
			stopping, last, stopAt = true, c.Seq, p.clk.Now()+int64(c.MaxWait)
		case <-timer.C:
		}
	}
}

// poll sends client c's request, unless its previous one is still unanswered (a missed poll).
func (p *clientProc) poll(c *conn, now, due int64) {
	measuring := p.measuring.Load()
	if c.dead.Load() || !c.inFlight.CompareAndSwap(false, true) {
		if measuring {
			p.missed.Add(1)
		}
		return
	}
	if measuring {
		p.polls.Add(1)
		p.lag.Add(now - due) // only the wheel's goroutine writes lag
	}
	c.sentAt = now
	if _, err := c.c.Write(*c.req.Load()); err != nil {
		p.fail(err)
		c.dead.Store(true)
	}
}

// readLoop reads client c's answers.
func (p *clientProc) readLoop(c *conn) {
	for {
		status, etag, seq, n, err := readAnswer(c.br)
		if err != nil {
			if !c.dead.Load() {
				p.fail(err)
				c.dead.Store(true)
			}
			return
		}
		t := p.clk.Now()
		switch status {
		case http.StatusNotModified:
			p.notModified.Add(1)
		case http.StatusOK:
			p.changed.Add(1)
			p.bodyBytes.Add(uint64(n))
			c.req.Store(request(etag))
			if last := c.lastSeq.Load(); seq > last {
				if p.measuring.Load() {
					for k := max(last+1, p.first.Load()); k <= seq; k++ {
						sent := p.pub.Get(k)
						if sent == 0 {
							p.fail(fmt.Errorf("publish %d has no time in the table", k))
							continue
						}
						p.lat.AddAtomic(t - sent)
						p.pairs.Add(1)
					}
				}
				c.lastSeq.Store(seq)
			}
		default:
			p.fail(fmt.Errorf("answer %d", status))
		}
		c.inFlight.Store(false)
	}
}

func (p *clientProc) report(conns []*conn, k int, cpu0, wall0 int64, last uint64) error {
	cpu := sim.CPU()
	r := sim.Report{Lang: "http", Mode: "own", Clients: k, PID: os.Getpid(), CPUNS: cpu - cpu0, WallNS: p.clk.Now() - wall0,
		Polls: p.polls.Load(), MissedPolls: p.missed.Load(), Snapshots: p.changed.Load(), Pairs: p.pairs.Load(),
		Errors: p.errors.Load(), NotModified: p.notModified.Load(), Changed: p.changed.Load(),
		BodyBytes: p.bodyBytes.Load()}
	first := p.first.Load()
	for _, c := range conns {
		if held := max(c.lastSeq.Load(), first-1); held < last {
			r.Missing += last - held
		}
	}
	p.errMu.Lock()
	r.Error = p.errText
	p.errMu.Unlock()
	r.Lat, r.LatMax = p.lat.Sparse(), atomic.LoadInt64(&p.lat.Max)
	r.Lag, r.LagMax = p.lag.Sparse(), p.lag.Max
	return sim.PrintReport(&r)
}
