package sim

import (
	"testing"
	"time"
)

func TestMergedCDF(t *testing.T) {
	m := NewMerged()
	m.Add([][2]uint64{{0, 1}, {9, 2}}, int64(950*time.Microsecond))
	m.Add([][2]uint64{{4, 1}}, int64(450*time.Microsecond))
	at, frac := m.CDF(1) // one value never observed: the curve ends at 4/5
	wantAt := []time.Duration{100 * time.Microsecond, 500 * time.Microsecond, 950 * time.Microsecond}
	wantFrac := []float64{0.2, 0.4, 0.8}
	if len(at) != len(wantAt) {
		t.Fatalf("CDF = %v %v, want %v %v", at, frac, wantAt, wantFrac)
	}
	for i := range at {
		if at[i] != wantAt[i] || frac[i] != wantFrac[i] {
			t.Errorf("point %d = (%v, %g), want (%v, %g)", i, at[i], frac[i], wantAt[i], wantFrac[i])
		}
	}
	if at, frac := NewMerged().CDF(0); at != nil || frac != nil {
		t.Errorf("empty CDF = %v %v, want nothing", at, frac)
	}
}
