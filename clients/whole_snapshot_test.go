package clients_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/announcementd/announcementd/board"
	"github.com/announcementd/announcementd/board/writer"
)

// TestPublishAfterAnOutsideOverwriteReadsClean: bytes of a record that the next publish leaves unchanged are
// overwritten from outside in both slots; the version that publish makes reads clean, at once, in every reader
// (Go's announcementctl, C, Python, C through ctypes). The writer used to write only what differed from its own
// copy of the slot, and that version failed its checksum in every reader until the periodic check repaired it.
func TestPublishAfterAnOutsideOverwriteReadsClean(t *testing.T) {
	path := filepath.Join(t.TempDir(), "board")
	w, err := writer.Open(path, writer.Options{Size: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	set := []board.Record{{ID: 1, Content: "one"}, {ID: 2, Content: "two"}, {ID: 40, Content: "forty"}}
	w.Publish(set)
	w.Publish(append(set, board.Record{ID: 50, Content: "fifty"}))
	w.Publish(set) // both slots hold what this writer wrote
	h := w.Header()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	for s := range uint64(2) { // record 1 (id 2), which the next publish leaves as it is
		f.WriteAt([]byte("scribbled"), int64(h.SlotOffset(s)+board.SlotHeaderSize+uint64(h.Stride)+40))
	}
	f.Close()
	set[2].Content = "forty, changed"
	v, err := w.Publish(set)
	if err != nil {
		t.Fatal(err)
	}
	for _, tool := range dumpTools(t) {
		code, got, stderr := runDump(t, tool, path)
		if code != 0 {
			t.Errorf("%s: exit %d: %v %v\n%s", tool.name, code, got["error"], got["message"], stderr)
			continue
		}
		if n, _ := got["version"].(json.Number).Int64(); uint64(n) != v {
			t.Errorf("%s: version %v, want %d", tool.name, got["version"], v)
		}
		recs, _ := got["records"].([]any)
		if len(recs) != 3 || recs[1].(map[string]any)["content"] != "two" || recs[2].(map[string]any)["content"] != "forty, changed" {
			t.Errorf("%s: records %v", tool.name, recs)
		}
	}
}
