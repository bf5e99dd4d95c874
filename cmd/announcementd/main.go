// Command announcementd publishes announcements into a shared-memory board (docs/FORMAT.md) and serves the
// publishing API (docs/API.md).
//
// This version runs as one process: it opens the durable store and the board, serves the API on the --listen
// addresses until SIGINT or SIGTERM, then finishes in-flight requests and exits. The supervisor/worker split with
// SCM_RIGHTS hand-off arrives with its issue; the worker package already takes everything from its caller.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/announcementd/announcementd/board/writer"
	"github.com/announcementd/announcementd/store"
	"github.com/announcementd/announcementd/worker"
)

// recreateJump is how far above the stored floor a board created from nothing starts: far more publishes than
// can happen between a publish and the floor's save.
const recreateJump = 1 << 20

// config is the command line.
type config struct {
	shm        string
	shmSize    uint64
	stateDir   string
	runtimeDir string
	listen     []string
	metrics    string
	pprof      bool
	tokenFile  string
}

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

func parseFlags(args []string) (config, error) {
	fs := flag.NewFlagSet("announcementd", flag.ContinueOnError)
	var c config
	var size string
	var listen listFlag
	fs.StringVar(&c.shm, "shm", "/dev/shm/notice_v1", "the region file")
	fs.StringVar(&size, "shm-size", "4MiB", "region size for a new region (4MiB, 65536, ...)")
	fs.StringVar(&c.stateDir, "state-dir", envOr("STATE_DIRECTORY", "/var/lib/announcementd"), "durable store directory")
	fs.StringVar(&c.runtimeDir, "runtime-dir", envOr("RUNTIME_DIRECTORY", "/run/announcementd"), "directory of the API socket")
	fs.Var(&listen, "listen", "API listener, unix:PATH or tcp:HOST:PORT; repeatable (default unix:<runtime-dir>/api.sock)")
	fs.StringVar(&c.metrics, "metrics", "", "serve Prometheus /metrics on HOST:PORT (off by default)")
	fs.BoolVar(&c.pprof, "pprof", false, "also serve net/http/pprof under /debug/pprof/ on the --metrics address")
	fs.StringVar(&c.tokenFile, "token-file", "", "file holding the bearer token TCP listeners require")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if c.pprof && c.metrics == "" {
		return c, errors.New("--pprof needs --metrics HOST:PORT to serve on")
	}
	n, err := humanize.ParseBytes(size)
	if err != nil {
		return c, fmt.Errorf("--shm-size %q: %v", size, err)
	}
	c.shmSize = n
	c.listen = listen
	if len(c.listen) == 0 {
		c.listen = []string{"unix:" + filepath.Join(c.runtimeDir, "api.sock")}
	}
	return c, nil
}

// envOr is $key (systemd's StateDirectory= and RuntimeDirectory= set them) or def.
func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return strings.SplitN(v, ":", 2)[0]
	}
	return def
}

func main() {
	c, err := parseFlags(os.Args[1:])
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "announcementd: %v\n", err)
		os.Exit(2)
	}
	log := newLogger()
	defer log.Sync()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, log, c); err != nil {
		log.Error("announcementd stopped", zap.Error(err))
		os.Exit(1)
	}
}

func serve(ctx context.Context, log *zap.Logger, c config) error {
	token, err := readToken(c.tokenFile)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(c.stateDir, 0o700); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	st, err := store.Open(filepath.Join(c.stateDir, "announcements.db"), store.Options{})
	if err != nil {
		return err
	}
	defer st.Close()
	floor, err := st.VersionFloor()
	if err != nil {
		return err
	}
	if _, err := os.Stat(c.shm); errors.Is(err, fs.ErrNotExist) && floor > 0 {
		// The board is gone (a reboot, or it was removed) and is created from nothing. The store's floor trails
		// the last publish by the few milliseconds it takes to save; after a crash, versions published in that
		// window may still be in a reader's memory. Jumping well above the floor keeps the version from ever
		// going back.
		floor += recreateJump
		log.Info("board created from nothing: continuing above the stored version", zap.Uint64("floor", floor))
	}
	board, err := writer.Open(c.shm, writer.Options{Size: c.shmSize, VersionFloor: floor})
	if err != nil {
		return err
	}
	defer board.Close()
	w, err := worker.New(worker.Config{Board: board, Store: st, Log: log})
	if err != nil {
		return err
	}
	listeners, err := openListeners(c, token)
	if err != nil {
		return err
	}
	h := board.Header()
	log.Info("announcementd ready", zap.String("region", c.shm), zap.Uint64("version", board.Version()),
		zap.Uint64("region_size", h.RegionSize), zap.Uint32("capacity", h.Capacity), zap.String("state_dir", c.stateDir))

	// Run (schedule, heartbeat, housekeeping) outlives Serve's drain: requests answered during the drain still get
	// their floor saved and readers still see a heartbeat. It stops only after the last request is answered.
	runCtx, stopRun := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- w.Run(runCtx) }()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return w.Serve(gctx, listeners) })
	if c.metrics != "" {
		g.Go(func() error { return serveMetrics(gctx, log, c.metrics, c.pprof, w.Registry()) })
	}
	err = g.Wait()
	stopRun()
	if rerr := <-runDone; rerr != nil && err == nil { // Run's last act is saving the floor
		err = rerr
	}
	log.Info("stopping", zap.Uint64("version", board.Version()))
	return err
}

// readToken reads the bearer token for TCP listeners; surrounding white space is dropped.
func readToken(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("--token-file: %w", err)
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", fmt.Errorf("--token-file %s is empty", path)
	}
	return t, nil
}

// openListeners opens the --listen addresses. A Unix socket is created mode 0660 (owner and group may write; see
// docs/API.md to grant a group); a TCP listener requires a token and refuses to start without one.
func openListeners(c config, token string) ([]worker.Listener, error) {
	var ls []worker.Listener
	fail := func(err error) ([]worker.Listener, error) {
		for _, l := range ls {
			l.Close()
		}
		return nil, err
	}
	for _, addr := range c.listen {
		network, rest, _ := strings.Cut(addr, ":")
		switch network {
		case "unix":
			l, err := listenUnix(rest)
			if err != nil {
				return fail(err)
			}
			ls = append(ls, worker.Listener{Listener: l})
		case "tcp":
			if token == "" {
				return fail(fmt.Errorf("--listen %s: a TCP listener needs --token-file (anyone who can reach it could publish)", addr))
			}
			l, err := net.Listen("tcp", rest)
			if err != nil {
				return fail(fmt.Errorf("--listen %s: %w", addr, err))
			}
			ls = append(ls, worker.Listener{Listener: l, Token: token})
		default:
			return fail(fmt.Errorf("--listen %q: want unix:PATH or tcp:HOST:PORT", addr))
		}
	}
	return ls, nil
}

func listenUnix(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("socket dir: %w", err)
	}
	// A socket left by a dead daemon is removed; a live one is not (it answers a connection).
	if conn, err := net.DialTimeout("unix", path, 200*time.Millisecond); err == nil {
		conn.Close()
		return nil, fmt.Errorf("%s is served by a running daemon", path)
	}
	// Remove only a stale socket: a --listen typo must not delete a file that is something else.
	if st, err := os.Lstat(path); err == nil {
		if st.Mode().Type() != os.ModeSocket {
			return nil, fmt.Errorf("listen unix:%s: the path exists and is not a socket", path)
		}
		os.Remove(path)
	}
	old := unix.Umask(0o117) // the socket is created 0660 (startup: no other goroutine creates files yet)
	l, err := net.Listen("unix", path)
	unix.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listen unix:%s: %w", path, err)
	}
	return l, nil
}

// serveMetrics serves /metrics (and, opted in, /debug/pprof/) on addr until ctx is done. Profiling stays off the
// API listeners: it is for whoever can reach the metrics address.
func serveMetrics(ctx context.Context, log *zap.Logger, addr string, withPprof bool, reg *prometheus.Registry) error {
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	if withPprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("--metrics %s: %w", addr, err)
	}
	log.Info("metrics listening", zap.String("addr", l.Addr().String()))
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// newLogger logs JSON, one event per line, unless stderr is a terminal.
func newLogger() *zap.Logger {
	cfg := zap.NewProductionConfig()
	if _, err := unix.IoctlGetTermios(int(os.Stderr.Fd()), unix.TCGETS); err == nil {
		cfg = zap.NewDevelopmentConfig()
		cfg.EncoderConfig.EncodeLevel = zapcore.CapitalColorLevelEncoder
	}
	cfg.DisableStacktrace = true
	log, err := cfg.Build()
	if err != nil {
		panic(err)
	}
	return log
}
