package benchfmt

import "testing"

func TestCountAndPercentile(t *testing.T) {
	for n, want := range map[int]string{0: "0", 999: "999", 1000: "1,000", -999: "-999", -1234: "-1,234", 250000: "250,000", 1234567: "1,234,567"} {
		if got := Count(n); got != want {
			t.Errorf("Count(%d) = %q, want %q", n, got, want)
		}
	}
	if got := Percentile([]float64{1, 2, 3, 4}, 50); got != 2 {
		t.Errorf("p50 of 1..4: %v, want 2 (the rank rounded down)", got)
	}
	if got := Percentile([]int{1, 2, 3}, 100); got != 3 {
		t.Errorf("p100: %v", got)
	}
	if got := Percentile([]int(nil), 99); got != 0 {
		t.Errorf("no samples: %v", got)
	}
}

func TestLinks(t *testing.T) {
	if got := Link("docs/BENCHMARKS.md", "docs/bench/board.txt"); got != "[bench/board.txt](bench/board.txt)" {
		t.Errorf("Link: %q", got)
	}
	if got := RawNote("docs/BENCHMARKS.md", ""); got != "" {
		t.Errorf("no raw file: %q", got)
	}
	if got := RawNote("BENCHMARKS.md", "/tmp/x/raw.txt"); got == "" || got[0] != ' ' {
		t.Errorf("RawNote: %q", got)
	}
}
