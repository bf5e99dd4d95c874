package clients_test

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/announcementd/announcementd/board"
	"github.com/announcementd/announcementd/board/reader"
	"github.com/announcementd/announcementd/internal/proctest"
)

// sanitizerEnv makes a sanitizer finding exit with a code no dump tool uses.
var sanitizerEnv = []string{"ASAN_OPTIONS=exitcode=99:detect_leaks=1", "UBSAN_OPTIONS=halt_on_error=1:exitcode=98:print_stacktrace=1"}

// knownErrors are the error names of FORMAT.md §8.
var knownErrors = map[string]bool{
	"io": true, "truncated": true, "bad_magic": true, "unsupported_major": true, "bad_layout": true,
	"not_published": true, "superseded": true, "snapshot_checksum": true, "record_checksum": true,
	"bad_record": true, "busy": true,
}

// badInputs returns the Go fuzzer's kept corpus, the golden regions, truncations of a valid region at many sizes
// and random garbage, as raw files in a temp dir.
func badInputs(t *testing.T) []string {
	dir := t.TempDir()
	var files []string
	add := func(name string, b []byte) {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, p)
	}
	corpus, _ := filepath.Glob("../board/reader/testdata/fuzz/FuzzReader/*")
	for _, p := range corpus {
		if b, ok := readGoFuzzFile(t, p); ok {
			add("corpus-"+filepath.Base(p), b)
		}
	}
	if len(corpus) == 0 {
		t.Fatal("the Go fuzz corpus (board/reader/testdata/fuzz/FuzzReader) is missing")
	}
	goldens, _ := filepath.Glob("../testdata/regions/*.region")
	for _, p := range goldens {
		b, _ := os.ReadFile(p)
		add("golden-"+filepath.Base(p), b)
	}
	basic, _ := os.ReadFile("../testdata/regions/basic.region")
	for _, n := range []int{1, 8, 63, 64, 255, 1343, 1344, 4095, 4096, 4160, 5000, 32767, 65535} {
		add("trunc-"+strconv.Itoa(n), basic[:n])
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 20 {
		b := make([]byte, 1+rng.IntN(70000))
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		if i%2 == 0 && len(b) > 16 { // a board's magic on garbage gets further into the checks
			copy(b[8:], "NTCBOARD")
		}
		add("garbage-"+strconv.Itoa(i), b)
	}
	// A board followed by a hole that takes the file past the 1 GiB limit (sparse: no disk used).
	big := filepath.Join(dir, "over-1GiB")
	if err := os.WriteFile(big, basic, 0o644); err != nil || os.Truncate(big, 1<<30+4096) != nil {
		t.Fatal("cannot make the sparse file")
	}
	files = append(files, big)
	// Flip single bytes of a valid region all over the header, layout table and slots.
	for off := 0; off < len(basic); off += 257 {
		b := bytes.Clone(basic)
		b[off] ^= 0xff
		add("flip-"+strconv.Itoa(off), b)
	}
	return files
}

// readGoFuzzFile decodes a "go test fuzz v1" file holding one []byte value.
func readGoFuzzFile(t *testing.T, path string) ([]byte, bool) {
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitN(string(raw), "\n", 2)
	if len(lines) < 2 || lines[0] != "go test fuzz v1" {
		t.Fatalf("%s is not a Go fuzz corpus file", path)
	}
	lit := strings.TrimSpace(lines[1])
	if !strings.HasPrefix(lit, "[]byte(") || !strings.HasSuffix(lit, ")") {
		t.Fatalf("%s: unexpected value %.40q", path, lit)
	}
	s, err := strconv.Unquote(lit[len("[]byte(") : len(lit)-1])
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return []byte(s), true
}

// TestBadBytesCUnderSanitizers runs the C reader built with -fsanitize=address,undefined, and the Python reader,
// on every bad input: each must print a snapshot or a known error, never crash or read out of bounds.
func TestBadBytesCUnderSanitizers(t *testing.T) {
	proctest.Slow(t, "the fuzz corpus through the C reader under ASan/UBSan")
	files := badInputs(t)
	asan, _ := filepath.Abs("c/notice_dump_asan")
	py := need(t, "python3")
	goResult := make(map[string]string, len(files)) // file -> "ok" or the Go reader's error name
	for _, f := range files {
		goResult[f] = goDump(f)
	}
	for _, tool := range []dumpTool{{"c-asan", []string{asan}}, {"python", []string{py, "python/notice.py"}}} {
		errs := map[string]int{}
		for _, f := range files {
			code, v, stderr := runDump(t, tool, f, sanitizerEnv...)
			if code != 0 && code != 1 || strings.Contains(stderr, "Sanitizer") || strings.Contains(stderr, "runtime error") ||
				strings.Contains(stderr, "Traceback") {
				t.Fatalf("%s on %s: exit %d\n%s", tool.name, filepath.Base(f), code, stderr)
			}
			result := "ok"
			if code == 1 {
				result, _ = v["error"].(string)
				if !knownErrors[result] {
					t.Fatalf("%s on %s: unknown error %q", tool.name, filepath.Base(f), result)
				}
			}
			errs[result]++
			if result != goResult[f] {
				t.Errorf("%s on %s: %s, the Go reader says %s (%v)", tool.name, filepath.Base(f), result, goResult[f], v["message"])
			}
		}
		t.Logf("%s: %d inputs: %v", tool.name, len(files), errs)
	}
}

// goDump is the Go reader's verdict on a file: "ok" or its error name.
func goDump(path string) string {
	b, err := reader.Open(path)
	if err != nil {
		return string(board.CodeOf(err))
	}
	defer b.Close()
	if _, err := b.Snapshot(); err != nil {
		return string(board.CodeOf(err))
	}
	return "ok"
}
