package main

import (
	"strings"
	"testing"
	"time"
)

// perf script -F comm,tid,ip,sym prints a sample as a header line, its frames leaf first, then an empty line.
func TestFold(t *testing.T) {
	in := "announcementd 42 \n" +
		"\t          4a1b2c runtime.memmove+0x1c\n" +
		"\t          4b0000 main.publish\n" +
		"\tffffffff81000130 entry_SYSCALL_64\n" +
		"\n" +
		"announcementd 43 \n" +
		"\t          4a1b2c runtime.memmove\n" +
		"\t          4b0000 main.publish\n" +
		"\tffffffff81000130 entry_SYSCALL_64\n" +
		"\n" +
		"announcementd 43 \n" +
		"\t          deadbeef [unknown]\n"
	counts, n := fold(strings.NewReader(in))
	if n != 3 || len(counts) != 2 || counts["entry_SYSCALL_64;main.publish;runtime.memmove"] != 2 || counts["[unknown]"] != 1 {
		t.Fatalf("fold: %d samples, %v", n, counts)
	}
}

func TestSampled(t *testing.T) {
	d, pct, err := sampled("Type: cpu\nDuration: 20.58s, Total samples = 3.96s (19.24%)\n")
	if err != nil || d != 3960*time.Millisecond || pct != 19.24 {
		t.Fatalf("sampled: %v %v %v", d, pct, err)
	}
	if d, _, err = sampled("Duration: 20s, Total samples = 880ms ( 4.40%)"); err != nil || d != 880*time.Millisecond {
		t.Fatalf("sampled ms: %v %v", d, err)
	}
	if _, _, err := sampled("Duration: 20s\nShowing nodes accounting for 0, 0% of 0 total"); err == nil {
		t.Fatal("a profile without samples was accepted")
	}
}

func TestSelfContained(t *testing.T) {
	ok := `<html><head><style>a{}</style></head><body><a href="./top">Top</a><script>stackViewer({}, [])</script></body></html>`
	if err := selfContained([]byte(ok)); err != nil {
		t.Fatalf("inline page refused: %v", err)
	}
	for _, bad := range []string{
		`<script src="https://cdn.example/d3.js"></script><script>stackViewer()</script>`,
		`<link rel="stylesheet" href="x.css"><script>stackViewer()</script>`,
		`<style>@import "x.css";</style><script>stackViewer()</script>`,
		`<html><body>no viewer</body></html>`,
	} {
		if selfContained([]byte(bad)) == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}
