// Command announcementd publishes announcements into a shared-memory board (docs/FORMAT.md).
//
// This version owns the board: it creates or reopens the region, holds the single-writer lock, keeps the version
// where readers last saw it (publishing an empty set on a new board, so readers have a snapshot at once), and
// stores a heartbeat every second until SIGINT or SIGTERM. The publishing API, the durable store and the
// supervisor/worker split arrive with their issues.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/dustin/go-humanize"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/sys/unix"

	"github.com/announcementd/announcementd/board/writer"
)

func main() {
	shm := flag.String("shm", "/dev/shm/notice_v1", "the region file")
	size := flag.String("shm-size", "4MiB", "region size for a new region (4MiB, 65536, ...)")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "announcementd: unexpected argument %q\n", flag.Arg(0))
		os.Exit(2)
	}
	n, err := humanize.ParseBytes(*size)
	if err != nil {
		fmt.Fprintf(os.Stderr, "announcementd: --shm-size %q: %v\n", *size, err)
		os.Exit(2)
	}
	log := newLogger()
	defer log.Sync()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, log, *shm, n); err != nil {
		log.Error("announcementd stopped", zap.Error(err))
		os.Exit(1)
	}
}

func serve(ctx context.Context, log *zap.Logger, path string, size uint64) error {
	w, err := writer.Open(path, writer.Options{Size: size})
	if err != nil {
		return err
	}
	defer w.Close()
	if w.Version() == 0 {
		if _, err := w.Publish(nil); err != nil {
			return fmt.Errorf("publish the first snapshot: %w", err)
		}
	}
	h := w.Header()
	log.Info("board ready", zap.String("path", path), zap.Uint64("version", w.Version()),
		zap.Uint64("region_size", h.RegionSize), zap.Uint32("capacity", h.Capacity))

	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			log.Info("stopping", zap.Uint64("version", w.Version()))
			return nil
		case <-tick.C:
			w.Heartbeat()
		}
	}
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
