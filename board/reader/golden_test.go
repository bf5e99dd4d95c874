package reader_test

import (
	"bytes"
	"cmp"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/announcementd/announcementd/board"
	"github.com/announcementd/announcementd/board/golden"
	"github.com/announcementd/announcementd/board/reader"
)

var update = flag.Bool("update", false, "rewrite testdata/regions from the current writer")

const goldenDir = "../../testdata/regions"

// dumpJSON is what every dump tool prints for path: the snapshot, or the error.
func dumpJSON(t *testing.T, path string) []byte {
	t.Helper()
	var out any
	b, err := reader.Open(path)
	if err == nil {
		defer b.Close()
		var s *board.Snapshot
		if s, err = b.Snapshot(); err == nil {
			out = s.Dump()
		}
	}
	if err != nil {
		out = board.NewDumpError(err)
	}
	j, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(j, '\n')
}

// TestGolden proves the writer still writes every golden region byte for byte, and the Go reader decodes each as
// its .json says. Run with -update to regenerate after a deliberate format change.
func TestGolden(t *testing.T) {
	for _, v := range golden.Vectors() {
		t.Run(v.Name, func(t *testing.T) {
			img, err := golden.Build(v, t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			regionPath := filepath.Join(goldenDir, v.Name+".region")
			jsonPath := filepath.Join(goldenDir, v.Name+".json")
			if *update {
				tmp := filepath.Join(t.TempDir(), "r")
				os.WriteFile(tmp, img, 0o644)
				os.WriteFile(regionPath, img, 0o644)
				os.WriteFile(jsonPath, dumpJSON(t, tmp), 0o644)
			}
			want, err := os.ReadFile(regionPath)
			if err != nil {
				t.Fatalf("%v (run go test ./board/reader -run TestGolden -update)", err)
			}
			if !bytes.Equal(img, want) {
				t.Fatalf("the writer no longer writes %s byte for byte: the format changed", regionPath)
			}
			wantJSON, _ := os.ReadFile(jsonPath)
			if got := dumpJSON(t, regionPath); !bytes.Equal(got, wantJSON) {
				t.Fatalf("dump of %s:\n%s\nwant:\n%s", regionPath, got, wantJSON)
			}

			// Independent of the .json: the error is the one the vector names, the records the ones published.
			var d struct {
				board.Dump
				Error board.Code `json:"error"`
			}
			json.Unmarshal(wantJSON, &d)
			if d.Error != v.Error {
				t.Fatalf("error %q, vector expects %q", d.Error, v.Error)
			}
			if v.Error == "" {
				last := slices.Clone(v.Sets[len(v.Sets)-1])
				slices.SortFunc(last, func(a, b board.Record) int { return cmp.Compare(a.ID, b.ID) })
				if !slices.Equal(d.Records, last) && !(len(last) == 0 && len(d.Records) == 0) {
					t.Fatalf("records %+v, published %+v", d.Records, last)
				}
				if d.Version < uint64(len(v.Sets)) || d.Version <= v.Opts.VersionFloor {
					t.Fatalf("version %d after %d publishes above floor %d", d.Version, len(v.Sets), v.Opts.VersionFloor)
				}
			}
		})
	}
}
