package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadMemSelf(t *testing.T) {
	m, err := readMem(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if m.VmRSS <= 0 || m.Pss <= 0 || m.RssAnon <= 0 {
		t.Fatalf("readMem(self) = %+v: a figure read as 0", m)
	}
	if sum := m.RssAnon + m.RssFile + m.RssShmem; sum != m.VmRSS {
		t.Errorf("VmRSS %d != RssAnon + RssFile + RssShmem = %d", m.VmRSS, sum)
	}
	if m.PssAnon+m.PssFile+m.PssShmem > m.Pss+4096 { // each part is rounded to kB apart
		t.Errorf("Pss parts %d+%d+%d exceed Pss %d", m.PssAnon, m.PssFile, m.PssShmem, m.Pss)
	}
}

func TestKbFieldsMissing(t *testing.T) {
	p := filepath.Join(t.TempDir(), "status")
	if err := os.WriteFile(p, []byte("VmRSS:\t  100 kB\nRssAnon:\t 40 kB\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var a, b, c int64
	err := kbFields(p, map[string]*int64{"VmRSS": &a, "RssAnon": &b, "RssFile": &c})
	if err == nil || !strings.Contains(err.Error(), "2 of the fields") {
		t.Fatalf("a missing field: err = %v, want one naming it", err)
	}
	if err := kbFields(p, map[string]*int64{"VmRSS": &a, "RssAnon": &b}); err != nil || a != 100*1024 || b != 40*1024 {
		t.Fatalf("kbFields = %d, %d, %v; want 102400, 40960, nil", a, b, err)
	}
}
