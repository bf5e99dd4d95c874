package store

import (
	"fmt"
	"slices"
	"sync"
	"time"

	"go.etcd.io/bbolt"
)

// committer is the store's group commit: it runs the write functions of concurrent callers in one bbolt
// transaction, so one commit (one fsync) acknowledges them all. A caller that finds no commit running commits at
// once, alone or with whoever is already waiting; callers that arrive while a commit runs share the next one, which
// starts as soon as it ends. So a lone caller never waits for company (bbolt's DB.Batch waits MaxBatchDelay for it
// first, which bounded a sequential client to about one apply a millisecond with no fsync at all) and a busy store
// commits as many callers at a time as arrived during the previous commit. A lazy call (doLazy) no client waits for
// rides along with the next eager one, or commits alone after lazyDelay. (That lazy kind of caller, who starts no
// round of its own, is why this is not an internal/rounds.Runner, which the worker's apply groups and the board
// writer's publishes share.)
//
// As with DB.Batch, a function may run more than once: when one fails, the transaction is rolled back, the failed
// one runs alone (its error is its caller's) and the others run again together. So each must start from scratch
// and be idempotent; only its last run counts.
type committer struct {
	db *bbolt.DB

	mu      sync.Mutex
	pending *commitGroup // the group new callers join; nil when none is waiting
	running bool         // a group is being committed
	timer   bool         // a lazy group's timer is set (kick)
}

type commitGroup struct {
	fns   []func(*bbolt.Tx) error
	errs  []error
	done  chan struct{}
	eager bool // some caller waits for it; a group of lazy calls alone waits up to lazyDelay for company
}

// lazyDelay is how long a lazy call (doLazy: the worker's saving of its version floor and counters, which no
// client waits for) waits for an eager one to share its commit, before it commits alone.
const lazyDelay = 2 * time.Millisecond

// do runs fn in a write transaction shared with concurrent callers and returns once that transaction is
// committed (fn's error, or the commit's).
func (c *committer) do(fn func(*bbolt.Tx) error) error {
	return c.doAll([]func(*bbolt.Tx) error{fn})[0]
}

// doLazy is do for a call no client waits for: it joins the next commit of eager calls, or commits alone after
// lazyDelay, so that it does not cost a commit (an fsync) of its own while the store is busy.
func (c *committer) doLazy(fn func(*bbolt.Tx) error) error {
	return c.join([]func(*bbolt.Tx) error{fn}, false)[0]
}

// doAll is do for several functions at once, all in the same group: their errors, in order.
func (c *committer) doAll(fns []func(*bbolt.Tx) error) []error {
	return c.join(fns, true)
}

func (c *committer) join(fns []func(*bbolt.Tx) error, eager bool) []error {
	if len(fns) == 0 {
		return nil
	}
	c.mu.Lock()
	if c.pending == nil {
		c.pending = &commitGroup{done: make(chan struct{})}
	}
	g := c.pending
	i := len(g.fns)
	g.fns = append(g.fns, fns...)
	g.eager = g.eager || eager
	lead := !c.running && g.eager
	if lead {
		c.running, c.pending = true, nil
	} else if !c.running {
		c.kickLater()
	}
	c.mu.Unlock()
	if lead {
		c.run(g)
	}
	<-g.done
	return g.errs[i : i+len(fns)]
}

// run commits g, then hands the pending group, if any, to a new goroutine (so that no caller waits for commits
// other than its own), or marks the committer idle.
func (c *committer) run(g *commitGroup) {
	c.commit(g)
	close(g.done)
	c.mu.Lock()
	defer c.mu.Unlock()
	if next := c.pending; next != nil && next.eager {
		c.pending = nil
		go c.run(next)
		return
	}
	c.running = false
	if c.pending != nil {
		c.kickLater()
	}
}

// kickLater commits the pending group in lazyDelay if nothing has by then. c.mu is held.
func (c *committer) kickLater() {
	if c.timer {
		return
	}
	c.timer = true
	time.AfterFunc(lazyDelay, func() {
		c.mu.Lock()
		c.timer = false
		g := c.pending
		if c.running || g == nil {
			c.mu.Unlock()
			return
		}
		c.running, c.pending = true, nil
		c.mu.Unlock()
		c.run(g)
	})
}

// commit runs g's functions in one transaction; one that fails runs alone and the others again without it.
func (c *committer) commit(g *commitGroup) {
	g.errs = make([]error, len(g.fns))
	defer func() {
		if r := recover(); r != nil { // a panicking function fails its group, not every later caller
			for i := range g.errs {
				g.errs[i] = fmt.Errorf("store transaction panicked: %v", r)
			}
		}
	}()
	todo := make([]int, len(g.fns))
	for i := range todo {
		todo[i] = i
	}
	for len(todo) > 0 {
		failed := -1
		err := c.db.Update(func(tx *bbolt.Tx) error {
			for k, i := range todo {
				if err := g.fns[i](tx); err != nil {
					failed = k
					return err
				}
			}
			return nil
		})
		if failed < 0 || len(todo) == 1 {
			for _, i := range todo {
				g.errs[i] = err
			}
			return
		}
		i := todo[failed]
		g.errs[i] = c.db.Update(g.fns[i]) // alone: its own error, and its changes rolled back with it
		todo = slices.Delete(todo, failed, failed+1)
	}
}
