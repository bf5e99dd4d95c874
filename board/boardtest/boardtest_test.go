package boardtest_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/announcementd/announcementd/board"
	"github.com/announcementd/announcementd/board/boardtest"
	"github.com/announcementd/announcementd/board/writer"
)

// Check passes a board as the writer leaves it and finds each kind of damage it claims to.
func TestCheck(t *testing.T) {
	path := filepath.Join(t.TempDir(), "board")
	w, err := writer.Open(path, writer.Options{Size: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	if err := boardtest.Check(path, 0); err != nil {
		t.Fatalf("a new board: %v", err)
	}
	v, _ := w.Publish([]board.Record{{ID: 1, Content: "one"}, {ID: 2, Content: "two"}})
	w.Close()
	if err := boardtest.Check(path, v); err != nil {
		t.Fatalf("a published board: %v", err)
	}
	if err := boardtest.Check(path, v+1); err == nil || !strings.Contains(err.Error(), "lower than") {
		t.Fatalf("a board behind its writer: %v", err)
	}
	h := w.Header()
	damage := map[string]func(f *os.File){
		"fails its checksum": func(f *os.File) { f.WriteAt([]byte("x"), int64(h.SlotOffset(v)+board.SlotHeaderSize+50)) },
		"odd sequence word":  func(f *os.File) { f.WriteAt([]byte{1}, int64(h.SlotOffset(v))) },
		"not zero":           func(f *os.File) { f.WriteAt([]byte{9}, int64(h.SlotOffset(v)+board.SlotHeaderSize+5*uint64(h.Stride))) },
		"header":             func(f *os.File) { f.WriteAt([]byte("NOTBOARD"), board.OffMagic) },
	}
	clean, _ := os.ReadFile(path)
	for want, do := range damage {
		os.WriteFile(path, clean, 0o644)
		f, _ := os.OpenFile(path, os.O_RDWR, 0)
		do(f)
		f.Close()
		if err := boardtest.Check(path, v); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("damage %q: %v", want, err)
		}
	}
}
