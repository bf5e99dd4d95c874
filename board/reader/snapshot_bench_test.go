package reader_test

import (
	"hash/crc32"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/announcementd/announcementd/board"
	"github.com/announcementd/announcementd/board/reader"
	"github.com/announcementd/announcementd/board/writer"
)

// benchBoard publishes 1,000 records of 200 bytes of content on a 4 MiB board (a 320 KB snapshot, as
// bench/boardbench) and returns its reader.
func benchBoard(b *testing.B) *reader.Board {
	rb, _, _ := benchWriter(b)
	return rb
}

func benchWriter(b *testing.B) (*reader.Board, *writer.Writer, []board.Record) {
	b.Helper()
	w, _, rb := openBoard(b, 4<<20)
	set := make([]board.Record, 1000)
	for i := range set {
		set[i] = board.Record{ID: uint64(i + 1), Priority: int32(i), Content: strings.Repeat("x", 200)}
	}
	if _, err := w.Publish(set); err != nil {
		b.Fatal(err)
	}
	return rb, w, set
}

const snapBytes1000 = board.SlotHeaderSize + 1000*board.Stride

// BenchmarkSnapshot1000 is a verified snapshot of 1,000 records through a Reader (its copy buffer reused, and the
// contents of its last snapshot, all unchanged here, shared).
func BenchmarkSnapshot1000(b *testing.B) {
	r := benchBoard(b).NewReader()
	b.SetBytes(snapBytes1000)
	b.ReportAllocs()
	for b.Loop() {
		s, err := r.Snapshot()
		if err != nil || len(s.Records) != 1000 {
			b.Fatal(len(s.Records), err)
		}
	}
}

// BenchmarkSnapshot1000Cold is Board.Snapshot: no memory of earlier contents, every content a new string.
func BenchmarkSnapshot1000Cold(b *testing.B) {
	rb := benchBoard(b)
	b.SetBytes(snapBytes1000)
	b.ReportAllocs()
	for b.Loop() {
		s, err := rb.Snapshot()
		if err != nil || len(s.Records) != 1000 {
			b.Fatal(len(s.Records), err)
		}
	}
}

// BenchmarkSnapshot1000OneChanged is a Reader's snapshot of a new version that changed one content of 1,000, as a
// client takes one after its poll saw the version move. The publish is outside the timer.
func BenchmarkSnapshot1000OneChanged(b *testing.B) {
	rb, w, set := benchWriter(b)
	r := rb.NewReader()
	b.SetBytes(snapBytes1000)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		set[500].Content = strings.Repeat(string(rune('a'+i%26)), 200)
		if _, err := w.Publish(set); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		s, err := r.Snapshot()
		if err != nil || s.Records[500].Content != set[500].Content {
			b.Fatal(err)
		}
	}
}

var sink uint32

// BenchmarkSnapshot1000Limit is the snapshot's limit on the same bytes: one copy out of the mapping, one CRC-32
// pass and one UTF-8 validation.
func BenchmarkSnapshot1000Limit(b *testing.B) {
	rb := benchBoard(b)
	src := rb.SlotBytes(rb.Version())[:snapBytes1000]
	dst := make([]byte, len(src))
	b.SetBytes(snapBytes1000)
	for b.Loop() {
		copy(dst, src)
		c := crc32.ChecksumIEEE(dst)
		if utf8.Valid(dst) {
			c++
		}
		sink += c
	}
}
