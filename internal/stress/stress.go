// Package stress is the Go side of the torn-read stress contract (docs/STRESS.md): a writer that publishes
// self-checking snapshots as fast as it can, and a reader that validates every snapshot it takes. The clients
// tests and the benchmark run both in separate processes beside the C and Python stress readers.
package stress

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/announcementd/announcementd/board"
	"github.com/announcementd/announcementd/board/reader"
	"github.com/announcementd/announcementd/board/writer"
)

// Snapshot is the self-checking set published as version v: every record carries v.
func Snapshot(v uint64) []board.Record {
	n := 1 + v%64
	recs := make([]board.Record, n)
	for i := range n {
		id := i + 1
		prefix := fmt.Sprintf("%d:%d:", v, id)
		l := 32 + int((v+id)%225)
		recs[i] = board.Record{ID: id, EffectiveAt: int64(v), ExpiresAt: int64(v + id), Priority: int32(id),
			Content: prefix + strings.Repeat(".", max(0, l-len(prefix)))}
	}
	return recs
}

// Write publishes Snapshot(v) for v = 1, 2, ... into the board at path until stop is closed, and returns how
// many publishes it made.
func Write(path string, stop <-chan struct{}) (int, error) {
	w, err := writer.Open(path, writer.Options{Size: 1 << 20})
	if err != nil {
		return 0, err
	}
	defer w.Close()
	for n := 0; ; n++ {
		select {
		case <-stop:
			return n, nil
		default:
		}
		next := w.Version() + 1
		v, err := w.Publish(Snapshot(next))
		if err != nil {
			return n, err
		}
		if v != next {
			return n, fmt.Errorf("published version %d, expected %d", v, next)
		}
		if n%1024 == 0 {
			w.Heartbeat()
		}
	}
}

// Result is the JSON line every stress reader prints.
type Result struct {
	Lang             string         `json:"lang"`
	PID              int            `json:"pid"`
	Snapshots        int64          `json:"snapshots"`
	Validated        int64          `json:"validated"`
	Attempts         int64          `json:"attempts"`
	TornAccepted     int64          `json:"torn_accepted"`
	VersionDecreases int64          `json:"version_decreases"`
	FirstVersion     uint64         `json:"first_version"`
	LastVersion      uint64         `json:"last_version"`
	Errors           map[string]int `json:"errors"`
}

// AttemptsPerSnapshot is the mean number of reads a snapshot took.
func (r *Result) AttemptsPerSnapshot() float64 {
	return float64(r.Attempts) / float64(max(r.Snapshots, 1))
}

// Read takes snapshots of the board at path for d and validates each against Snapshot(version).
func Read(path string, d time.Duration, pid int) (Result, error) {
	b, err := reader.Open(path)
	if err != nil {
		return Result{}, err
	}
	defer b.Close()
	r := b.NewReader()
	res := Result{Lang: "go", PID: pid, Errors: map[string]int{}}
	for deadline := time.Now().Add(d); time.Now().Before(deadline); {
		s, err := r.Snapshot()
		if err != nil {
			res.Errors[string(board.CodeOf(err))]++
			continue
		}
		res.Snapshots++
		res.Attempts += int64(s.Attempts)
		if res.FirstVersion == 0 {
			res.FirstVersion = s.Version
		}
		if s.Version < res.LastVersion {
			res.VersionDecreases++
		}
		res.LastVersion = s.Version
		if slices.Equal(s.Records, Snapshot(s.Version)) {
			res.Validated++
		}
	}
	res.TornAccepted = res.Snapshots - res.Validated
	return res, nil
}

// WriterMain is the body of a stress writer helper process: it publishes into the board at path until its stdin
// closes, then prints {"publishes": N} and returns the exit code.
func WriterMain(path string) int {
	stop := make(chan struct{})
	go func() {
		bufio.NewReader(os.Stdin).ReadByte() // EOF when the parent closes the pipe
		close(stop)
	}()
	n, err := Write(path, stop)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	json.NewEncoder(os.Stdout).Encode(map[string]int{"publishes": n})
	return 0
}

// ReaderMain is the body of a Go stress reader helper process, with the arguments the C and Python stress
// readers take: it reads for the given seconds and prints its Result as one JSON line.
func ReaderMain(seconds, path string) int {
	secs, err := strconv.ParseFloat(seconds, 64)
	if err != nil {
		fmt.Fprintf(os.Stderr, "seconds %q: %v\n", seconds, err)
		return 2
	}
	res, err := Read(path, time.Duration(secs*float64(time.Second)), os.Getpid())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	json.NewEncoder(os.Stdout).Encode(res)
	return 0
}
