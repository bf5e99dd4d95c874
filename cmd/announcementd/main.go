// Command announcementd publishes announcements into a shared-memory board (docs/FORMAT.md) and serves the
// publishing API (docs/API.md).
//
// Without a subcommand it is the supervisor (supervise.go): it opens the region file and the listeners, keeps them
// for the life of the service, and hands them with SCM_RIGHTS to successive worker generations, which it starts as
// `announcementd worker` from the binary on disk. SIGHUP (or `announcementctl reload`) rolls to a new generation;
// SIGINT and SIGTERM stop the service after in-flight requests finish. The worker (work.go) opens the durable store
// and the board and serves the API when the supervisor says so.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
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
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/sys/unix"

	"github.com/announcementd/announcementd/board"
	"github.com/announcementd/announcementd/internal/buildinfo"
	"github.com/announcementd/announcementd/internal/securefs"
	"github.com/announcementd/announcementd/supervisor"
	"github.com/announcementd/announcementd/systemd"
)

// recreateJump is how far above the stored floor a board that shows no version to continue from starts (created
// from nothing, or unreadable): far more publishes than can happen between a publish and the floor's save.
const recreateJump = 1 << 20

// minDrainTimeout covers a worker's drain: its requests get 10 s (worker.Serve), then it stops its schedule, saves
// the version floor and closes the store.
const minDrainTimeout = 12 * time.Second

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
	// regionWatch: the worker watches the region's file with inotify and repairs it at once (worker/watch.go).
	regionWatch bool

	logFormat string // auto, console, json, journal
	logLevel  zapcore.Level
	version   bool

	readyTimeout   time.Duration
	drainTimeout   time.Duration
	restartLimit   int
	restartBackoff time.Duration
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
	fs.BoolVar(&c.regionWatch, "region-watch", true, "watch the region file with inotify and repair it the moment it is removed, renamed over, truncated, grown or written;\nfalse leaves the check every 250ms alone (it also finds bytes overwritten through a mapping, which no file event reports)")
	fs.StringVar(&c.logFormat, "log-format", "auto", "auto (journal when stderr is systemd's journal, console on a terminal, else json), console, json or journal")
	fs.TextVar(&c.logLevel, "log-level", zapcore.InfoLevel, "the lowest level logged: debug, info, warn or error")
	fs.BoolVar(&c.version, "version", false, "print the build and exit")
	fs.DurationVar(&c.readyTimeout, "ready-timeout", supervisor.DefaultReadyTimeout, "how long a new worker may take to get ready, and again to serve once started")
	fs.DurationVar(&c.drainTimeout, "drain-timeout", supervisor.DefaultDrainTimeout, "how long a worker may take to finish in-flight requests before it is killed")
	fs.IntVar(&c.restartLimit, "restart-limit", supervisor.DefaultRestartLimit, "exit after this many worker crashes in a row (-1: never)")
	fs.DurationVar(&c.restartBackoff, "restart-backoff", supervisor.DefaultRestartBackoff, "the longest wait before restarting a crashed worker (the wait starts at 50ms and doubles)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `usage: announcementd [flags]          the service: a supervisor that runs worker generations
       announcementd worker [flags]   one worker generation; the supervisor starts it, never by hand

Signals: SIGHUP reloads (a new worker generation from the binary on disk, and the supervisor itself when that
binary changed; rolled back if it fails); SIGTERM and SIGINT stop once in-flight requests are finished.

Environment: STATE_DIRECTORY and RUNTIME_DIRECTORY (systemd's StateDirectory=, RuntimeDirectory=) are the
defaults of --state-dir and --runtime-dir; NOTIFY_SOCKET, WATCHDOG_USEC, WATCHDOG_PID, LISTEN_FDS and
LISTEN_FDNAMES come from systemd (readiness, watchdog, fd store, socket activation); JOURNAL_STREAM tells
--log-format auto that stderr is the journal.

Flags:
`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if c.readyTimeout <= 0 || c.restartBackoff <= 0 || c.restartLimit == 0 {
		return c, errors.New("--ready-timeout and --restart-backoff must be positive, --restart-limit non-zero")
	}
	if c.drainTimeout < minDrainTimeout {
		return c, fmt.Errorf("--drain-timeout %v: at least %v (a worker gives in-flight requests 10 s, then saves its state)", c.drainTimeout, minDrainTimeout)
	}
	switch c.logFormat {
	case "auto", "console", "json", "journal":
	default:
		return c, fmt.Errorf("--log-format %q: want auto, console, json or journal", c.logFormat)
	}
	if c.pprof && c.metrics == "" {
		return c, errors.New("--pprof needs --metrics HOST:PORT to serve on")
	}
	n, err := humanize.ParseBytes(size)
	if err != nil {
		return c, fmt.Errorf("--shm-size %q: not a size: want bytes, with or without a unit: 4MiB, 64KiB, 65536", size)
	}
	if n < board.MinRegionSize || n > board.MaxRegionSize || n%4096 != 0 {
		return c, fmt.Errorf("--shm-size %s (%d bytes): a board is 64KiB to 1GiB, a multiple of 4KiB (MiB and KiB are powers of 2; MB are 10^6)", size, n)
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
	args := os.Args[1:]
	role := "supervisor"
	if len(args) > 0 && args[0] == "worker" {
		role, args = "worker", args[1:]
	}
	c, err := parseFlags(args)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "announcementd: %v\n", err)
		os.Exit(2)
	}
	if c.version {
		fmt.Println(buildinfo.Line("announcementd"))
		os.Exit(0)
	}
	log := newLogger(c.logFormat, c.logLevel, os.Stderr).With(zap.String("role", role))
	defer log.Sync()
	if role == "worker" {
		err = work(log, c)
	} else {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		err = supervise(ctx, log, c, args)
		stop()
	}
	if err != nil {
		log.Error("announcementd stopped", zap.Error(err))
		log.Sync()
		os.Exit(1)
	}
}

// readToken reads the bearer token for TCP listeners; surrounding white space is dropped.
func readToken(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	b, err := securefs.ReadTrusted(path, 4096)
	if err != nil {
		return "", fmt.Errorf("--token-file: %w", err)
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", fmt.Errorf("--token-file %s is empty", path)
	}
	return t, nil
}

func listenUnix(path string) (net.Listener, error) {
	dir, name := filepath.Split(path)
	d, err := securefs.MkdirAll(cmp.Or(dir, "."), 0o755)
	if err != nil {
		return nil, fmt.Errorf("socket dir: %w", err)
	}
	defer d.Close()
	// A socket left by a dead daemon is removed; a live one is not (it answers a connection).
	if conn, err := net.DialTimeout("unix", path, 200*time.Millisecond); err == nil {
		conn.Close()
		return nil, fmt.Errorf("%s is served by a running daemon", path)
	}
	// Remove only a stale socket of ours: a --listen typo must not delete a file that is something else, nor
	// another user's socket.
	if e, err := d.Lookup(name); err == nil && e.Exists {
		if st, err := os.Lstat(path); err == nil && st.Mode().Type() != os.ModeSocket {
			return nil, fmt.Errorf("listen unix:%s: the path exists and is not a socket", path)
		}
		if err := d.Remove(name); err != nil {
			return nil, fmt.Errorf("listen unix:%s: %w", path, err)
		}
	}
	old := unix.Umask(0o117) // the socket is created 0660 (startup: no other goroutine creates files yet)
	l, err := net.Listen("unix", path)
	unix.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listen unix:%s: %w", path, err)
	}
	return l, nil
}

// serveMetrics serves /metrics (and, opted in, /debug/pprof/) on l until ctx is done, then closes l. Profiling stays off the
// API listeners: it is for whoever can reach the metrics address.
func serveMetrics(ctx context.Context, l net.Listener, withPprof bool, reg *prometheus.Registry, runtimeDir string) error {
	reg.MustRegister(serviceCollectors(runtimeDir)...)
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	if withPprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// newLogger logs to stderr in format (see --log-format) from level up. The journal's format has no timestamp of its
// own and a syslog priority on each line; JSON is one event per line; the console's is for people.
func newLogger(format string, level zapcore.Level, stderr *os.File) *zap.Logger {
	if format == "auto" {
		switch {
		case systemd.JournalStream(stderr):
			format = "journal"
		case isTerminal(stderr):
			format = "console"
		default:
			format = "json"
		}
	}
	var enc zapcore.Encoder
	switch format {
	case "journal":
		enc = systemd.NewJournalEncoder()
	case "console":
		cfg := zap.NewDevelopmentEncoderConfig()
		if isTerminal(stderr) {
			cfg.EncodeLevel = zapcore.CapitalColorLevelEncoder
		}
		enc = zapcore.NewConsoleEncoder(cfg)
	default:
		enc = zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	}
	return zap.New(zapcore.NewCore(enc, zapcore.Lock(stderr), level), zap.ErrorOutput(zapcore.Lock(stderr)))
}

func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
