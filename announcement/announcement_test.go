package announcement

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	ok := Announcement{ID: 1, Content: strings.Repeat("é", 128), EffectiveAt: 10, ExpiresAt: 20}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := map[string]Announcement{
		"not 0":           {ID: 0},
		"257 bytes":       {ID: 1, Content: strings.Repeat("x", 257)},
		"not valid UTF-8": {ID: 1, Content: "\xc3"},
		"is not after":    {ID: 1, Content: "x", EffectiveAt: 20, ExpiresAt: 20},
		"content is empty; it must be 1 to 256 bytes": {ID: 1},
	}
	for want, a := range bad {
		if err := a.Validate(); err == nil || !strings.Contains(err.Error(), want) || !IsValidation(err) {
			t.Errorf("%+v: %v, want a validation error with %q", a, err, want)
		}
	}
}

func TestExpiresAfter(t *testing.T) {
	if e, err := ExpiresAfter(100, 0); e != 0 || err != nil {
		t.Fatalf("ttl 0: %d %v", e, err)
	}
	if e, err := ExpiresAfter(100, time.Second); e != 100+int64(time.Second) || err != nil {
		t.Fatalf("ttl 1s: %d %v", e, err)
	}
	for _, ttl := range []time.Duration{-time.Second, MaxTTL + 1} {
		if _, err := ExpiresAfter(0, ttl); !IsValidation(err) {
			t.Errorf("ttl %s: %v", ttl, err)
		}
	}
}

func TestVisibleAndNextChange(t *testing.T) {
	all := []Announcement{
		{ID: 3, EffectiveAt: 0},                  // always
		{ID: 1, EffectiveAt: 50, ExpiresAt: 100}, // from 50 to 100
		{ID: 2, EffectiveAt: 0, ExpiresAt: 30},   // until 30
	}
	cases := []struct {
		now  int64
		ids  []uint64
		next int64
	}{
		{10, []uint64{2, 3}, 30},
		{30, []uint64{3}, 50},
		{50, []uint64{1, 3}, 100},
		{100, []uint64{3}, 0},
	}
	for _, c := range cases {
		recs, next := Visible(slices.Values(all), c.now), NextChange(slices.Values(all), c.now)
		var ids []uint64
		for _, r := range recs {
			ids = append(ids, r.ID)
		}
		if !slices.Equal(ids, c.ids) || next != c.next {
			t.Errorf("at %d: %v next %d; want %v next %d", c.now, ids, next, c.ids, c.next)
		}
	}
}

// A store may hold an empty content from before content was required: it still reads, and nothing else is let
// through.
func TestValidateStored(t *testing.T) {
	if err := (&Announcement{ID: 1}).ValidateStored(); err != nil {
		t.Fatalf("empty content from an older store: %v", err)
	}
	for want, a := range map[string]Announcement{
		"not 0":           {ID: 0},
		"257 bytes":       {ID: 1, Content: strings.Repeat("x", 257)},
		"not valid UTF-8": {ID: 1, Content: "\xc3"},
		"is not after":    {ID: 1, EffectiveAt: 20, ExpiresAt: 20},
	} {
		if err := a.ValidateStored(); err == nil || !strings.Contains(err.Error(), want) || !IsValidation(err) {
			t.Errorf("%+v: %v, want a validation error with %q", a, err, want)
		}
	}
}
