package storm_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/announcementd/announcementd/internal/stress"
)

// --- what the clients wrote: the model every reader and the daemon's list are checked against ---

type opKind uint8

const (
	opPut opKind = iota + 1
	opDelete
)

// idModel is what is known of one announcement. Each id has one owner (a client goroutine, or the recovery
// probe) that sends its changes one after the other, each with the next n, so "the last acknowledged change" is
// well defined.
type idModel struct {
	issued  map[uint64]opKind // every n sent, and what it was
	next    uint64            // the next n to send
	acked   bool              // some change was acknowledged
	ackedN  uint64            // the last acknowledged change
	ackedOp opKind            //
	unknown []uint64          // changes sent after it that did not get a 200: they may or may not have been applied
	lost    uint64            // ackedN+1 once a check reported its last acknowledged change missing (reported once)
}

// state is what the id must look like if change n (or the acknowledged one, n == 0 && !acked: absent) is the last
// applied one: its content, or "" for absent.
func (m *idModel) stateOf(id, n uint64) string {
	if m.issued[n] == opPut {
		return stress.SelfCheck(id, n)
	}
	return ""
}

// allowed lists the states the id may be in: the last acknowledged change's, or that of any later change whose
// answer was not a 200.
func (m *idModel) allowed(id uint64) []string {
	var states []string
	if m.acked {
		states = append(states, m.stateOf(id, m.ackedN))
	} else {
		states = append(states, "")
	}
	for _, n := range m.unknown {
		states = append(states, m.stateOf(id, n))
	}
	return states
}

// model holds every id's history; readers check records against it while the clients write.
type model struct {
	mu  sync.Mutex
	ids map[uint64]*idModel
}

func newModel() *model { return &model{ids: map[uint64]*idModel{}} }

func (m *model) add(id uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ids[id] = &idModel{issued: map[uint64]opKind{}, next: 1}
}

// issue records that the owner of id is about to send a change and returns its n.
func (m *model) issue(id uint64, op opKind) uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.ids[id]
	n := s.next
	s.next++
	s.issued[n] = op
	return n
}

// result records the answer to change n of id: acknowledged (200) or not (anything else: it may have been applied).
func (m *model) result(id, n uint64, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.ids[id]
	if ok {
		s.acked, s.ackedN, s.ackedOp, s.unknown = true, n, s.issued[n], nil
		return
	}
	s.unknown = append(s.unknown, n)
}

// present reports whether id's last acknowledged change was a put with nothing unacknowledged after it: a DELETE
// then must find it (a 404 means the acknowledged content was lost).
func (m *model) present(id uint64) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.ids[id]
	return s.acked && s.ackedOp == opPut && len(s.unknown) == 0
}

// checkRecord says what is wrong with a record a reader accepted, or "": its content must be one the id's owner
// sent as a put (docs/STRESS.md: a torn snapshot).
func (m *model) checkRecord(id uint64, c string) string {
	cid, n, ok := stress.ParseSelfCheck(c)
	if !ok || cid != id {
		return fmt.Sprintf("record %d holds %q, which no client wrote for it", id, c)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.ids[id]
	if s == nil {
		return fmt.Sprintf("record %d: no client owns that id", id)
	}
	if s.issued[n] != opPut {
		return fmt.Sprintf("record %d holds change n=%d, which was never sent as a put", id, n)
	}
	return ""
}

// lostChange is an acknowledged change a check did not find.
type lostChange struct {
	where string
	id    uint64
	want  string   // the last acknowledged state ("" absent)
	got   string   // what the check found ("" absent)
	also  []string // other states allowed (unacknowledged changes after it)
}

func (l lostChange) String() string {
	return fmt.Sprintf("%s: announcement %d is %s; last acknowledged: %s (or one of %d later unacknowledged changes)",
		l.where, l.id, show(l.got), show(l.want), len(l.also))
}

func show(s string) string {
	if s == "" {
		return "absent"
	}
	return strconv.Quote(s)
}

// check compares got (id -> content) with the model and returns the acknowledged changes it does not hold, each
// reported once. The caller holds the load quiescent, so no change is in flight.
func (m *model) check(where string, got map[uint64]string) []lostChange {
	m.mu.Lock()
	defer m.mu.Unlock()
	var lost []lostChange
	for id, s := range m.ids {
		have := got[id]
		allowed := s.allowed(id)
		if slices.Contains(allowed, have) {
			continue
		}
		if s.lost == s.ackedN+1 && s.acked {
			continue // reported already
		}
		if s.acked {
			s.lost = s.ackedN + 1
		}
		lost = append(lost, lostChange{where: where, id: id, want: allowed[0], got: have, also: allowed[1:]})
	}
	for id, c := range got {
		if m.ids[id] == nil {
			lost = append(lost, lostChange{where: where, id: id, got: c})
		}
	}
	slices.SortFunc(lost, func(a, b lostChange) int { return int(a.id) - int(b.id) })
	return lost
}

// --- the load: clients publishing while the faults happen ---

// failedRequest is a request that did not get its 200.
type failedRequest struct {
	client     string
	what       string
	start, end time.Time
	err        string
}

// load runs the clients. Every request holds quiet.RLock, so that a check can stop the load between requests.
type load struct {
	m      *model
	socket string
	quiet  sync.RWMutex
	done   chan struct{}
	wg     sync.WaitGroup

	mu         sync.Mutex
	acked      map[string]int // acknowledged requests by client kind
	changes    int            // acknowledged changes (a batch acknowledges several)
	failed     []failedRequest
	lost404    []string // DELETEs of an acknowledged announcement answered 404
	decreases  []string // a client's acknowledged version lower than its previous one
	maxVersion uint64
}

// clientKinds are the three ways the load writes (docs/STRESS.md, "Storm").
var clientKinds = []string{"single", "keepalive", "batch"}

func newLoad(m *model, socket string) *load {
	return &load{m: m, socket: socket, done: make(chan struct{}), acked: map[string]int{}}
}

func (l *load) httpClient(keepAlive bool) *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DisableKeepAlives:   !keepAlive,
		MaxIdleConnsPerHost: 4,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", l.socket)
		}}}
}

// client is one load goroutine: it owns ids and changes them one request at a time.
type client struct {
	l    *load
	name string // "single-1", ...
	kind string // one of clientKinds
	http *http.Client
	ids  []uint64
	rng  *rand.Rand
	last uint64 // the version of its last acknowledged request
}

// start starts two clients of each kind; ids are taken from firstID on, idsEach per client.
func (l *load) start(seed uint64, firstID uint64, idsEach int) {
	id := firstID
	for i, kind := range []string{"single", "single", "keepalive", "keepalive", "batch", "batch"} {
		c := &client{l: l, name: fmt.Sprintf("%s-%d", kind, i), kind: kind, http: l.httpClient(kind != "single"),
			rng: rand.New(rand.NewPCG(seed, uint64(i)))}
		for range idsEach {
			l.m.add(id)
			c.ids = append(c.ids, id)
			id++
		}
		l.wg.Add(1)
		go c.run()
	}
}

func (c *client) run() {
	defer c.l.wg.Done()
	for {
		select {
		case <-c.l.done:
			return
		default:
		}
		c.l.quiet.RLock()
		var ok bool
		if c.kind == "batch" {
			ok = c.batch()
		} else {
			ok = c.single()
		}
		c.l.quiet.RUnlock()
		pause := time.Duration(1+c.rng.IntN(8)) * time.Millisecond
		if !ok {
			pause += 20 * time.Millisecond // the daemon is down: retry soon, not in a tight loop
		}
		time.Sleep(pause)
	}
}

// single sends one PUT, or (one time in eight, for an id known to be there) one DELETE; it reports whether the
// request got an answer.
func (c *client) single() bool {
	id := c.ids[c.rng.IntN(len(c.ids))]
	if c.rng.IntN(8) == 0 && c.l.m.present(id) {
		n := c.l.m.issue(id, opDelete)
		start := time.Now()
		status, v, err := c.do("DELETE", fmt.Sprintf("/v1/announcements/%d", id), nil)
		if status == http.StatusNotFound {
			c.l.m.result(id, n, true) // it is absent now, as asked; but it should have been there
			c.l.mu.Lock()
			c.l.lost404 = append(c.l.lost404, fmt.Sprintf("%s: DELETE %d (n=%d) found nothing: its acknowledged content was lost", c.name, id, n))
			c.l.mu.Unlock()
			return true
		}
		return c.finish(fmt.Sprintf("DELETE %d n=%d", id, n), start, v, err, func(ok bool) { c.l.m.result(id, n, ok) }, 1)
	}
	n := c.l.m.issue(id, opPut)
	body, _ := json.Marshal(map[string]string{"content": stress.SelfCheck(id, n)})
	start := time.Now()
	_, v, err := c.do("PUT", fmt.Sprintf("/v1/announcements/%d", id), body)
	return c.finish(fmt.Sprintf("PUT %d n=%d", id, n), start, v, err, func(ok bool) { c.l.m.result(id, n, ok) }, 1)
}

// batch sends one POST /v1/batch of 1–4 of its ids: puts, and deletes of ids known to be there.
func (c *client) batch() bool {
	type put struct {
		ID      uint64 `json:"id"`
		Content string `json:"content"`
	}
	var req struct {
		Put    []put    `json:"put"`
		Delete []uint64 `json:"delete"`
	}
	type change struct{ id, n uint64 }
	var changes []change
	for _, i := range c.rng.Perm(len(c.ids))[:1+c.rng.IntN(min(4, len(c.ids)))] {
		id := c.ids[i]
		if c.rng.IntN(5) == 0 && c.l.m.present(id) {
			changes = append(changes, change{id, c.l.m.issue(id, opDelete)})
			req.Delete = append(req.Delete, id)
			continue
		}
		n := c.l.m.issue(id, opPut)
		changes = append(changes, change{id, n})
		req.Put = append(req.Put, put{id, stress.SelfCheck(id, n)})
	}
	body, _ := json.Marshal(req)
	start := time.Now()
	_, v, err := c.do("POST", "/v1/batch", body)
	return c.finish(fmt.Sprintf("batch of %d", len(changes)), start, v, err, func(ok bool) {
		for _, ch := range changes {
			c.l.m.result(ch.id, ch.n, ok)
		}
	}, len(changes))
}

// do sends a request and returns its status and the version of a 200 answer; err is set for anything but a 200.
func (c *client) do(method, path string, body []byte) (int, uint64, error) {
	req, _ := http.NewRequest(method, "http://announcementd"+path, bytes.NewReader(body))
	if method == "POST" {
		// A batch sets the same announcements to the same contents however many times it is applied: let the
		// transport resend it when a kept-alive connection turns out to be closed (as it does for PUT and DELETE).
		req.Header.Set("Idempotency-Key", fmt.Sprint(time.Now().UnixNano()))
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, 0, err
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var res struct{ Version uint64 }
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, 0, fmt.Errorf("status %d: %s", resp.StatusCode, bytes.TrimSpace(b))
	}
	if err := json.Unmarshal(b, &res); err != nil || res.Version == 0 {
		return resp.StatusCode, 0, fmt.Errorf("status 200 with %q", b)
	}
	return resp.StatusCode, res.Version, nil
}

// finish records a request's outcome and reports whether it was acknowledged.
func (c *client) finish(what string, start time.Time, version uint64, err error, record func(ok bool), changes int) bool {
	end := time.Now()
	record(err == nil)
	c.l.mu.Lock()
	defer c.l.mu.Unlock()
	if err != nil {
		c.l.failed = append(c.l.failed, failedRequest{client: c.name, what: what, start: start, end: end, err: err.Error()})
		return false
	}
	c.l.acked[c.kind]++
	c.l.changes += changes
	c.l.maxVersion = max(c.l.maxVersion, version)
	if version < c.last {
		c.l.decreases = append(c.l.decreases, fmt.Sprintf("%s: %s acknowledged at version %d after version %d", c.name, what, version, c.last))
	}
	c.last = version
	return true
}

// pause stops the load between requests (every request in flight finishes first) until the returned func is called.
func (l *load) pause() func() {
	l.quiet.Lock()
	return l.quiet.Unlock
}

// stop stops the clients and waits for them; it may be called more than once.
func (l *load) stop() {
	select {
	case <-l.done:
	default:
		close(l.done)
	}
	l.wg.Wait()
}

// probe is the recovery probe: one id of its own, one PUT at a time on a new connection.
type probe struct {
	l  *load
	id uint64
	c  *http.Client
}

func newProbe(l *load, id uint64) *probe {
	l.m.add(id)
	c := l.httpClient(false)
	c.Timeout = 2 * time.Second
	return &probe{l: l, id: id, c: c}
}

// publish sends the probe's next change; it returns the content and the version it was acknowledged at.
func (p *probe) publish() (string, uint64, error) {
	n := p.l.m.issue(p.id, opPut)
	text := stress.SelfCheck(p.id, n)
	body, _ := json.Marshal(map[string]string{"content": text})
	cl := &client{http: p.c}
	_, v, err := cl.do("PUT", fmt.Sprintf("/v1/announcements/%d", p.id), body)
	p.l.m.result(p.id, n, err == nil)
	if err == nil {
		p.l.mu.Lock()
		p.l.changes++
		p.l.acked["probe"]++
		p.l.maxVersion = max(p.l.maxVersion, v)
		p.l.mu.Unlock()
	}
	return text, v, err
}
