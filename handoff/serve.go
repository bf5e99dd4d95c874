package handoff

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"
)

// The worker's side of the protocol (HANDOFF.md §6), once, for every process that plays it: the real worker, the
// tests' fake workers, and a new supervisor talking to the one it replaces. Join opens the connection; Serve answers
// the supervisor until it closes the connection, driving a Worker through its states:
//
//	standby ──Start, healthy Ready──▶ serving
//	   ▲  ◀──Start, unhealthy Ready──┘  │
//	   └──────────────Yield─────────────┘
//
// A Yield in standby is answered at once (LastVersion 0); a Start while serving is a protocol error. When Serve
// returns while serving (the supervisor went away, ctx ended), it yields first, so the worker always lets go the
// same way.

// Join is a worker's first step on c: the handshake with local as its Hello, the check that the peer is the
// process parent (by the kernel's credentials, and this process's uid), and the files the supervisor hands over,
// which the caller owns. It returns the supervisor's Hello.
func Join(ctx context.Context, c *Conn, local Hello, parent int, uid int) (Hello, Files, error) {
	peer, err := c.Handshake(ctx, local)
	if err != nil {
		return peer, nil, err
	}
	if err := c.CheckPeer(parent, uid); err != nil {
		return peer, nil, err
	}
	files, err := c.RecvFiles(ctx)
	if err != nil {
		return peer, nil, err
	}
	return peer, files, nil
}

// Worker is what a worker generation does at each step Serve drives. Serve calls its methods from one goroutine,
// one at a time.
type Worker interface {
	// Prepare checks, without writing anything, that the generation can serve with what it was handed (Join's
	// files). nil is a healthy Standby. An error is an unhealthy Standby with its text as the reason, and Serve
	// returns it. Prepare may block until ctx ends (a worker that never reaches standby).
	Prepare(ctx context.Context) error
	// Start serves, continuing above m.VersionFloor, and returns the Ready to answer. A generation that is not
	// ready lets go of everything before it returns: the supervisor starts the previous one again.
	Start(ctx context.Context, m Start) Ready
	// Yield stops serving: no new work, what was accepted is finished, the region and the store are let go.
	Yield(ctx context.Context, m Yield) Yielded
}

// ServeOptions tune Serve. The zero value is usable.
type ServeOptions struct {
	// Timeout bounds each answer Serve sends; default 30 s.
	Timeout time.Duration
	// Once: return after answering the first Start, healthy or not (a new supervisor's link to the old one: the
	// old one needs nothing more).
	Once bool
	// Sent, when set, is called with each answer once it is sent.
	Sent func(Message)
}

// ErrStartWhileServing is matched by Serve's error when the supervisor sent Start to a serving worker.
var ErrStartWhileServing = errors.New("start while serving")

// Serve answers the supervisor on c (after Join) until it closes the connection (Serve returns nil) or ctx ends
// (Serve returns context.Cause(ctx)); see the diagram above. It closes c before it returns. Files the supervisor
// sends meanwhile are closed: a worker is handed its files once, by Join.
func Serve(ctx context.Context, c *Conn, w Worker, opts ServeOptions) (err error) {
	if opts.Timeout <= 0 {
		opts.Timeout = 30 * time.Second
	}
	in := startReceiving(c)
	defer in.stop()
	send := func(m Message) error {
		sctx, cancel := context.WithTimeout(ctx, opts.Timeout)
		defer cancel()
		if err := c.Send(sctx, m); err != nil {
			return err
		}
		if opts.Sent != nil {
			opts.Sent(m)
		}
		return nil
	}

	if err := w.Prepare(ctx); err != nil {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		send(Standby{Reason: err.Error()}) // the reason matters more than whether it arrived
		return err
	}
	if err := send(Standby{Healthy: true}); err != nil {
		return err
	}
	serving := false
	defer func() {
		if serving { // let go the same way whatever ended the connection
			w.Yield(context.WithoutCancel(ctx), Yield{Reason: fmt.Sprintf("the connection ended: %v", err)})
		}
	}()
	for {
		var m Message
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case r := <-in.msgs:
			if errors.Is(r.err, io.EOF) {
				return nil
			}
			if r.err != nil {
				return r.err
			}
			m = r.m
		}
		switch m := m.(type) {
		case Start:
			if serving {
				return fmt.Errorf("handoff: %w", ErrStartWhileServing)
			}
			r := w.Start(ctx, m)
			serving = r.Healthy && !opts.Once // with Once, what serves is the caller's from here on
			if err := send(r); err != nil {
				return err
			}
			if opts.Once {
				return nil
			}
		case Yield:
			var y Yielded
			if serving {
				y = w.Yield(ctx, m)
				serving = false
			}
			if err := send(y); err != nil {
				return err
			}
		case Files:
			m.Close()
		default:
			return fmt.Errorf("handoff: %w: unexpected %v from the supervisor", ErrProtocol, m.Type())
		}
	}
}

// receiver reads c in its own goroutine, which stop ends: Recv blocks in a read that only closing c interrupts.
type receiver struct {
	c    *Conn
	msgs chan received
	done chan struct{}
	wg   sync.WaitGroup
}

type received struct {
	m   Message
	err error
}

func startReceiving(c *Conn) *receiver {
	r := &receiver{c: c, msgs: make(chan received), done: make(chan struct{})}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for {
			m, err := c.Recv(context.Background())
			select {
			case r.msgs <- received{m, err}:
			case <-r.done:
				if m != nil {
					discard(m)
				}
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return r
}

// stop closes the connection and waits for the goroutine, closing the fds of anything it read that nobody took.
func (r *receiver) stop() {
	close(r.done)
	r.c.Close()
	r.wg.Wait()
}
