// Package announcement defines what the daemon holds: an announcement with its schedule, how it is validated,
// and which of them the board shows at a given time.
//
// Invariants: a valid announcement has a non-zero id, a content of 1 to board.MaxContent bytes of valid UTF-8,
// and, when it expires, expires after it takes effect. Visible(now) is exactly the set with EffectiveAt <= now < ExpiresAt
// (ExpiresAt 0 = never).
package announcement

import (
	"cmp"
	"errors"
	"fmt"
	"iter"
	"math"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/announcementd/announcementd/board"
)

// MaxTTL bounds a time to live: longer is almost certainly a unit mistake.
const MaxTTL = 10 * 365 * 24 * time.Hour

// Announcement is one announcement with its schedule. Times are unix ns.
type Announcement struct {
	ID          uint64 `json:"id"`
	Content     string `json:"content"`
	Priority    int32  `json:"priority"`
	EffectiveAt int64  `json:"effective_at"`         // unix ns; when it appears on the board
	ExpiresAt   int64  `json:"expires_at,omitempty"` // unix ns; 0 = never
}

// ValidationError is bad input from a client: the API answers it with 400, the CLI with exit 2.
type ValidationError struct{ Msg string }

func (e *ValidationError) Error() string { return e.Msg }

func invalid(format string, args ...any) error {
	return &ValidationError{Msg: fmt.Sprintf(format, args...)}
}

// IsValidation reports whether err is bad input rather than a server failure.
func IsValidation(err error) bool {
	var v *ValidationError
	return errors.As(err, &v)
}

// Validate reports what is wrong with a, as a *ValidationError, or nil.
func (a *Announcement) Validate() error {
	if a.Content == "" {
		if a.ID == 0 {
			return invalid("id must be a positive integer, not 0")
		}
		return invalid("content is empty; it must be 1 to %d bytes of UTF-8", board.MaxContent)
	}
	return a.ValidateStored()
}

// ValidateStored is Validate for an announcement read back from a store, which may hold an empty content: builds
// before content was required accepted one, and refusing it now would leave the store unreadable and the daemon
// unable to start. Everything else is checked as Validate does.
func (a *Announcement) ValidateStored() error {
	switch {
	case a.ID == 0:
		return invalid("id must be a positive integer, not 0")
	case len(a.Content) > board.MaxContent:
		return invalid("content is %d bytes, the limit is %d", len(a.Content), board.MaxContent)
	case !utf8.ValidString(a.Content):
		return invalid("content is not valid UTF-8")
	case a.ExpiresAt != 0 && a.ExpiresAt <= a.EffectiveAt:
		return invalid("expires_at (%s) is not after effective_at (%s)", fmtNS(a.ExpiresAt), fmtNS(a.EffectiveAt))
	}
	return nil
}

// ExpiresAfter returns the expiry for a time to live starting at effective, validating the ttl.
func ExpiresAfter(effective int64, ttl time.Duration) (int64, error) {
	switch {
	case ttl < 0:
		return 0, invalid("ttl %s is negative", ttl)
	case ttl > MaxTTL:
		return 0, invalid("ttl %s is longer than the limit of %s", ttl, MaxTTL)
	case ttl == 0:
		return 0, nil
	case effective > math.MaxInt64-int64(ttl):
		return 0, invalid("effective_at plus ttl %s is past the year 2262, the last time this daemon can represent", ttl)
	}
	return effective + int64(ttl), nil
}

// Earliest and Latest bound the times an announcement can carry: int64 unix ns (years 1678 to 2262).
var (
	Earliest = time.Unix(0, math.MinInt64)
	Latest   = time.Unix(0, math.MaxInt64)
)

// UnixNano converts t, refusing a time int64 unix ns cannot represent (time.Time.UnixNano would wrap it).
func UnixNano(t time.Time) (int64, error) {
	if t.Before(Earliest) || t.After(Latest) {
		return 0, invalid("time %s is outside the years 1678 to 2262 that the board can represent", t.Format(time.RFC3339))
	}
	return t.UnixNano(), nil
}

// VisibleAt reports whether a shows on the board at now (unix ns).
func (a *Announcement) VisibleAt(now int64) bool {
	return a.EffectiveAt <= now && (a.ExpiresAt == 0 || now < a.ExpiresAt)
}

// ExpiredAt reports whether a has run out at now: it will never show again.
func (a *Announcement) ExpiredAt(now int64) bool { return a.ExpiresAt != 0 && now >= a.ExpiresAt }

// Record is a's form on the board.
func (a *Announcement) Record() board.Record {
	return board.Record{ID: a.ID, EffectiveAt: a.EffectiveAt, ExpiresAt: a.ExpiresAt, Priority: a.Priority, Content: a.Content}
}

// Visible returns the board records of the announcements in all that are visible at now, sorted by id.
func Visible(all iter.Seq[Announcement], now int64) []board.Record {
	var recs []board.Record
	for a := range all {
		if a.VisibleAt(now) {
			recs = append(recs, a.Record())
		}
	}
	slices.SortFunc(recs, func(x, y board.Record) int { return cmp.Compare(x.ID, y.ID) })
	return recs
}

// NextChange is the earliest time after since at which the announcements in all appear or expire, or 0 if none
// does.
func NextChange(all iter.Seq[Announcement], since int64) int64 {
	var next int64
	for a := range all {
		for _, t := range [2]int64{a.EffectiveAt, a.ExpiresAt} {
			if t > since && (next == 0 || t < next) {
				next = t
			}
		}
	}
	return next
}

func fmtNS(ns int64) string { return time.Unix(0, ns).UTC().Format(time.RFC3339Nano) }
