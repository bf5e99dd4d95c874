// Package benchfmt holds what the benchmark commands (bench/*) do the same way: their main (Main), the machine line
// and ratios against a baseline from the same run.
package benchfmt

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// Machine names the CPU, the CPU count, the OS and kernel, and the Go version.
func Machine() string {
	model := runtime.GOARCH
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				model = strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
				break
			}
		}
	}
	var u unix.Utsname
	unix.Uname(&u)
	return fmt.Sprintf("%s, %d CPUs, %s/%s, Linux %s, %s", model, runtime.NumCPU(), runtime.GOOS, runtime.GOARCH,
		unix.ByteSliceToString(u.Release[:]), runtime.Version())
}

// Ratio prints a/b as "1.23×", or "-" when b is 0.
func Ratio(a, b float64) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f×", a/b)
}

// LoadAverage is /proc/loadavg's three load averages ("0.52 0.58 0.59"), or "unknown": what the benches print
// beside their figures, before and after a run, so that a reader can tell a quiet machine from a busy one.
func LoadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "unknown"
}

// Main is a bench command's main after flag.Parse: it runs run with a context that SIGINT and SIGTERM cancel,
// and exits 1 with "name: error" when it fails; an interrupted run says so (cleaned says what run undid on its
// way out: "the daemon is stopped and its files removed").
func Main(name, cleaned string, run func(context.Context) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx)
	if ctx.Err() != nil {
		err = errors.New("interrupted; " + cleaned)
	}
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(1)
	}
}

// Percentile is the p-th percentile of sorted, p in [0, 100]: the element at rank p/100 × (n−1) rounded down (p =
// 100 is the largest); the zero value when there is none.
func Percentile[T cmp.Ordered](sorted []T, p float64) T {
	if len(sorted) == 0 {
		var zero T
		return zero
	}
	return sorted[int(p/100*float64(len(sorted)-1))]
}

// Count prints n with its thousands separated by commas (1,000,000).
func Count(n int) string {
	s := strconv.Itoa(n)
	digits := len(strings.TrimPrefix(s, "-"))
	for i := len(s) - 3; digits > 3; i, digits = i-3, digits-3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
