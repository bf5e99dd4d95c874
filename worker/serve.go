package worker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"
)

// Listener is one API listener. Token, when set, is required as a bearer token on every request it serves.
type Listener struct {
	net.Listener
	Token string
}

// Timeouts of the API servers: a slow or stalled client cannot hold a connection or a goroutine for long.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 30 * time.Second
	writeTimeout      = 30 * time.Second
	idleTimeout       = 2 * time.Minute
	shutdownTimeout   = 10 * time.Second
)

// Serve serves the API on every listener until ctx is done, then stops accepting, lets in-flight requests finish
// (for at most 10 s) and returns. The listeners are closed when it returns.
func (w *Worker) Serve(ctx context.Context, listeners []Listener) error {
	servers := make([]*http.Server, len(listeners))
	errc := make(chan error, len(listeners))
	for i, l := range listeners {
		srv := &http.Server{
			Handler:           w.Handler(l.Token),
			ReadHeaderTimeout: readHeaderTimeout,
			ReadTimeout:       readTimeout,
			WriteTimeout:      writeTimeout,
			IdleTimeout:       idleTimeout,
			MaxHeaderBytes:    16 << 10,
			ErrorLog:          zap.NewStdLog(w.log.Named("http")),
		}
		servers[i] = srv
		go func() {
			if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("serve %s: %w", l.Addr(), err)
				return
			}
			errc <- nil
		}()
		w.log.Info("api listening", zap.String("addr", l.Addr().Network()+":"+l.Addr().String()), zap.Bool("token", l.Token != ""))
	}
	var first error
	select {
	case <-ctx.Done():
	case first = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, srv := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Shutdown(sctx); err != nil {
				w.log.Warn("requests still running after the drain deadline; closing their connections", zap.Error(err))
				srv.Close()
			}
		}()
	}
	wg.Wait()
	return first
}
