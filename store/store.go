// Package store is the daemon's durable announcement store: a single bbolt file that survives crashes.
//
// Invariants:
//   - Every announcement in the store passed Validate: Apply validates the whole batch before touching the file,
//     and a batch with one invalid announcement changes nothing.
//   - Apply is atomic (one transaction) and durable: when it returns nil, its puts and deletes have been fsynced
//     (unless Options.NoSync, which is for benchmarks only). Concurrent Apply, SetVersionFloor and Save calls share
//     commits (group commit: group.go), so one fsync acknowledges many callers, and a lone caller commits at once.
//   - The version floor never decreases.
//   - Only one process can have the file open: the second Open fails after Options.Timeout with an error naming
//     the path.
//   - Reads never panic on a damaged file: an undecodable value is reported as an error naming its id or key.
//   - Counters never decrease: Save raises each one to the value given, and keeps those it is not given.
//
// Layout: bucket "announcements" maps an 8-byte big-endian id (so the cursor order is the id order) to the value
// encoding below; bucket "meta" holds "version_floor" and "count" (the number of announcements, kept exact by
// every write transaction), each an 8-byte big-endian uint64; bucket "counters" maps a counter's name (its caller
// chooses it: 1 to 64 bytes, such as "publishes.ok" or "repairs.size") to its total, an 8-byte
// big-endian uint64. The store does not interpret the names; the worker keeps the service's counters there
// (worker/counters.go), so that they continue across worker generations and restarts.
package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/announcementd/announcementd/announcement"
	"github.com/announcementd/announcementd/board"
)

// Options configures Open. The zero value is what the daemon uses.
type Options struct {
	NoSync  bool          // benchmarks only: skip fsync, which gives the ceiling of what the store can do
	Timeout time.Duration // how long Open waits for the file lock; 0 means 1s
}

// DefaultTimeout is how long Open waits for another process to release the file when Options.Timeout is 0.
const DefaultTimeout = time.Second

var (
	bucketAnnouncements = []byte("announcements")
	bucketMeta          = []byte("meta")
	keyVersionFloor     = []byte("version_floor")
	// keyCount holds the number of announcements, kept exact by every transaction that adds or removes one (bbolt
	// has no key count it keeps up to date inside a write transaction).
	keyCount = []byte("count")
	// bucketCounters holds the counters Save keeps.
	bucketCounters = []byte("counters")
)

// MaxCounterName is the longest counter name Save accepts.
const MaxCounterName = 64

// Store is an open store. Its methods are safe for concurrent use.
type Store struct {
	db    *bbolt.DB
	group *committer // every write transaction goes through it
	path  string
}

// Open opens the store at path, creating the file (mode 0600) but not its directory.
func Open(path string, opts Options) (*Store, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{Timeout: opts.Timeout, NoSync: opts.NoSync})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("store %s: open: the file is locked, is another announcementd running? (waited %s): %w",
			path, opts.Timeout, err)
	}
	if err != nil {
		return nil, fmt.Errorf("store %s: open: %w", path, err)
	}
	err = db.Update(func(tx *bbolt.Tx) error {
		for _, name := range [][]byte{bucketAnnouncements, bucketMeta, bucketCounters} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("bucket %q: %w", name, err)
			}
		}
		// Count once at open: a store from before the count, or a count a bug left wrong, is set right here.
		n := 0
		c := tx.Bucket(bucketAnnouncements).Cursor()
		for k, _ := c.First(); k != nil; k, _ = c.Next() {
			n++
		}
		return putCount(tx, n)
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("store %s: open: %w", path, err)
	}
	return &Store{db: db, group: &committer{db: db}, path: path}, nil
}

// Close closes the file. Calls made after Close return an error.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("store %s: close: %w", s.path, err)
	}
	return nil
}

// Path returns the file's path.
func (s *Store) Path() string { return s.path }

// Apply puts and deletes atomically, in one transaction, and returns once that transaction is on disk. Puts are
// applied before deletes, so an id in both ends up deleted. Deleting an id that is not stored is not an error;
// deleted lists the ids that were stored, in the order given. If an announcement is invalid, Apply returns its
// *announcement.ValidationError unchanged and changes nothing. With limit > 0, a change whose result would hold more
// than limit announcements is refused with a *board.FullError (Capacity: limit) and changes nothing.
func (s *Store) Apply(puts []announcement.Announcement, deletes []uint64, limit int) (deleted []uint64, err error) {
	r := s.ApplyAll([]Change{{Puts: puts, Deletes: deletes}}, limit)
	return r[0].Deleted, r[0].Err
}

// Change is one atomic change for ApplyAll: its puts, then its deletes.
type Change struct {
	Puts    []announcement.Announcement
	Deletes []uint64
}

// ChangeResult is what became of one Change: the ids it deleted, or why it changed nothing.
type ChangeResult struct {
	Deleted []uint64
	Err     error
}

// ApplyAll applies each change as Apply does (atomic, all or nothing, its own result), all of them committed
// together: one commit, one fsync, when none fails (a change that fails is rolled back alone: group.go). It
// returns once they are on disk.
func (s *Store) ApplyAll(changes []Change, limit int) []ChangeResult {
	res := make([]ChangeResult, len(changes))
	fns := make([]func(*bbolt.Tx) error, 0, len(changes))
	idx := make([]int, 0, len(changes))
	for i, c := range changes {
		if len(c.Puts) == 0 && len(c.Deletes) == 0 {
			continue
		}
		fn, err := s.applyFunc(c.Puts, c.Deletes, limit, &res[i].Deleted)
		if err != nil {
			res[i].Err = err
			continue
		}
		fns = append(fns, fn)
		idx = append(idx, i)
	}
	for k, err := range s.group.doAll(fns) {
		i := idx[k]
		switch {
		case errors.Is(err, board.ErrFull):
			res[i] = ChangeResult{Err: err}
		case err != nil:
			res[i] = ChangeResult{Err: fmt.Errorf("store %s: apply: %w", s.path, err)}
		}
	}
	return res
}

// applyFunc validates and encodes a change and returns the transaction function that applies it, which sets
// *deleted.
func (s *Store) applyFunc(puts []announcement.Announcement, deletes []uint64, limit int, deleted *[]uint64) (func(*bbolt.Tx) error, error) {
	for i := range puts {
		if err := puts[i].Validate(); err != nil {
			return nil, err
		}
	}
	vals := make([][]byte, len(puts)) // encoded once, outside the transaction
	for i := range puts {
		vals[i] = encode(&puts[i])
	}
	return func(tx *bbolt.Tx) error {
		// The group commit may run this more than once (when another call in the batch fails, the rest is retried), each
		// time in a fresh transaction: so it must start from scratch, and only the last run's result counts.
		*deleted = (*deleted)[:0]
		b := tx.Bucket(bucketAnnouncements)
		n, err := count(tx)
		if err != nil {
			return err
		}
		for i := range puts {
			k := idKey(puts[i].ID)
			if b.Get(k) == nil {
				n++
			}
			if err := b.Put(k, vals[i]); err != nil {
				return fmt.Errorf("put %d: %w", puts[i].ID, err)
			}
		}
		for _, id := range deletes {
			k := idKey(id)
			if b.Get(k) == nil {
				continue
			}
			if err := b.Delete(k); err != nil {
				return fmt.Errorf("delete %d: %w", id, err)
			}
			n--
			*deleted = append(*deleted, id)
		}
		// Checked on the result, inside the transaction: bbolt serialises writers, so concurrent changes cannot
		// overfill together, and a change that replaces or deletes as much as it adds always fits.
		if limit > 0 && n > limit {
			return &board.FullError{Count: n, Capacity: limit}
		}
		return putCount(tx, n)
	}, nil
}

// DeleteExpired deletes those of ids whose stored announcement has expired at now (unix ns), and returns them.
// The check is made on the stored value inside the transaction, so an announcement republished since the caller
// saw it expire is kept.
func (s *Store) DeleteExpired(ids []uint64, now int64) (deleted []uint64, err error) {
	if len(ids) == 0 {
		return nil, nil
	}
	err = s.group.do(func(tx *bbolt.Tx) error {
		deleted = deleted[:0] // see Apply: a rerun starts from scratch
		b := tx.Bucket(bucketAnnouncements)
		for _, id := range ids {
			a, ok, err := load(b, id)
			if err != nil {
				return err
			}
			if !ok || !a.ExpiredAt(now) {
				continue
			}
			if err := b.Delete(idKey(id)); err != nil {
				return fmt.Errorf("delete %d: %w", id, err)
			}
			deleted = append(deleted, id)
		}
		n, err := count(tx)
		if err != nil {
			return err
		}
		return putCount(tx, n-len(deleted))
	})
	if err != nil {
		return nil, fmt.Errorf("store %s: delete expired: %w", s.path, err)
	}
	return deleted, nil
}

// Get returns the announcement stored under id.
func (s *Store) Get(id uint64) (announcement.Announcement, bool, error) {
	got, err := s.GetMany([]uint64{id})
	a, ok := got[id]
	return a, ok, err
}

// GetMany returns the stored announcements among ids, read in one transaction; absent ids are left out.
func (s *Store) GetMany(ids []uint64) (map[uint64]announcement.Announcement, error) {
	out := make(map[uint64]announcement.Announcement, len(ids))
	err := s.db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketAnnouncements)
		for _, id := range ids {
			a, ok, err := load(b, id)
			if err != nil {
				return err
			}
			if ok {
				out[id] = a
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store %s: get: %w", s.path, err)
	}
	return out, nil
}

// List returns every announcement, sorted by id.
func (s *Store) List() ([]announcement.Announcement, error) {
	var all []announcement.Announcement
	err := s.db.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketAnnouncements)
		n, err := count(tx) // exact, where Stats().KeyN walks the whole bucket
		if err != nil {
			return err
		}
		all = make([]announcement.Announcement, 0, n)
		return b.ForEach(func(k, v []byte) error {
			a, err := decode(k, v)
			if err != nil {
				return err
			}
			all = append(all, a)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("store %s: list: %w", s.path, err)
	}
	return all, nil
}

// Len returns how many announcements are stored.
func (s *Store) Len() (n int, err error) {
	err = s.db.View(func(tx *bbolt.Tx) (err error) {
		n, err = count(tx)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("store %s: len: %w", s.path, err)
	}
	return n, nil
}

// load reads and decodes the announcement stored under id, if any.
func load(b *bbolt.Bucket, id uint64) (announcement.Announcement, bool, error) {
	k := idKey(id)
	v := b.Get(k)
	if v == nil {
		return announcement.Announcement{}, false, nil
	}
	a, err := decode(k, v)
	return a, err == nil, err
}

// count is the number of announcements (see keyCount). Open always writes it; a value that is not 8 bytes is
// ErrCorrupt, as a damaged floor is (and Open, which counts again, repairs it).
func count(tx *bbolt.Tx) (int, error) {
	v := tx.Bucket(bucketMeta).Get(keyCount)
	if len(v) != 8 {
		return 0, fmt.Errorf("meta key %q: %d bytes, want 8: %w", keyCount, len(v), ErrCorrupt)
	}
	return int(binary.BigEndian.Uint64(v)), nil
}

func putCount(tx *bbolt.Tx, n int) error {
	return tx.Bucket(bucketMeta).Put(keyCount, binary.BigEndian.AppendUint64(nil, uint64(n)))
}

// VersionFloor returns the highest board version the daemon has acknowledged (0 if none): a board recreated from
// scratch must continue above it.
func (s *Store) VersionFloor() (v uint64, err error) {
	err = s.db.View(func(tx *bbolt.Tx) error {
		v, err = versionFloor(tx)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("store %s: version floor: %w", s.path, err)
	}
	return v, nil
}

// SetVersionFloor raises the version floor to v, durably; a v at or below the floor changes nothing.
func (s *Store) SetVersionFloor(v uint64) error {
	if err := s.Save(v, nil); err != nil {
		return fmt.Errorf("store %s: set version floor %d: %w", s.path, v, err)
	}
	return nil
}

// Save raises the version floor to floor and each counter named in counters to its value, in one durable
// transaction (group-committed with concurrent Apply and Save calls: no client waits for it, so it waits up to
// lazyDelay for an Apply to share its commit, group.go). A value at or below the stored one changes
// nothing, so a Save that arrives late cannot take a counter back; counters not named are kept as they are. A
// stored counter that does not decode is replaced. Nothing is written when nothing would change.
func (s *Store) Save(floor uint64, counters map[string]uint64) error {
	for name := range counters {
		if name == "" || len(name) > MaxCounterName {
			return fmt.Errorf("store %s: save: counter name %q: want 1 to %d bytes", s.path, name, MaxCounterName)
		}
	}
	if stale, err := s.unchanged(floor, counters); err == nil && stale {
		return nil // a read transaction: no commit, no fsync
	}
	// Lazy: no client waits for it, so it joins the next commit of Applies rather than costing one of its own
	// (within lazyDelay).
	err := s.group.doLazy(func(tx *bbolt.Tx) error { // idempotent: a rerun reads the stored values again
		cur, err := versionFloor(tx)
		if err != nil {
			return err
		}
		if floor > cur {
			if err := tx.Bucket(bucketMeta).Put(keyVersionFloor, binary.BigEndian.AppendUint64(nil, floor)); err != nil {
				return err
			}
		}
		b := tx.Bucket(bucketCounters)
		for name, v := range counters {
			if old := b.Get([]byte(name)); len(old) == 8 && binary.BigEndian.Uint64(old) >= v {
				continue
			}
			if err := b.Put([]byte(name), binary.BigEndian.AppendUint64(nil, v)); err != nil {
				return fmt.Errorf("counter %q: %w", name, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store %s: save: %w", s.path, err)
	}
	return nil
}

// unchanged reports whether the store already holds floor and every counter at or above the values given.
func (s *Store) unchanged(floor uint64, counters map[string]uint64) (stale bool, err error) {
	err = s.db.View(func(tx *bbolt.Tx) error {
		cur, err := versionFloor(tx)
		if err != nil || floor > cur {
			return err
		}
		b := tx.Bucket(bucketCounters)
		for name, v := range counters {
			if old := b.Get([]byte(name)); len(old) != 8 || binary.BigEndian.Uint64(old) < v {
				return nil
			}
		}
		stale = true
		return nil
	})
	return stale, err
}

// Counters returns the counters Save kept, by name (none in a store that never saved any). A stored value that
// does not decode is left out and reported in err (ErrCorrupt, naming it), with the others returned.
func (s *Store) Counters() (map[string]uint64, error) {
	out := map[string]uint64{}
	var bad []string
	err := s.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketCounters).ForEach(func(k, v []byte) error {
			if len(v) != 8 {
				bad = append(bad, fmt.Sprintf("%q (%d bytes, want 8)", k, len(v)))
				return nil
			}
			out[string(k)] = binary.BigEndian.Uint64(v)
			return nil
		})
	})
	if err != nil {
		return out, fmt.Errorf("store %s: counters: %w", s.path, err)
	}
	if len(bad) > 0 {
		return out, fmt.Errorf("store %s: counters %s: %w", s.path, strings.Join(bad, ", "), ErrCorrupt)
	}
	return out, nil
}

func versionFloor(tx *bbolt.Tx) (uint64, error) {
	v := tx.Bucket(bucketMeta).Get(keyVersionFloor)
	switch len(v) {
	case 0:
		return 0, nil
	case 8:
		return binary.BigEndian.Uint64(v), nil
	}
	return 0, fmt.Errorf("meta key %q: %d bytes, want 8: %w", keyVersionFloor, len(v), ErrCorrupt)
}

// ErrCorrupt is wrapped by the errors for values the store cannot decode.
var ErrCorrupt = errors.New("corrupt value")

func idKey(id uint64) []byte { return binary.BigEndian.AppendUint64(make([]byte, 0, 8), id) }

// Value encoding, version 1, all integers big-endian:
//
//	[0]     format version (1)
//	[1:5]   priority, int32
//	[5:13]  effective_at, int64 unix ns
//	[13:21] expires_at, int64 unix ns (0 = never)
//	[21:]   content, UTF-8, to the end of the value
//
// A fixed binary layout rather than JSON: the value cannot be read two ways, it is compact (21 bytes plus the
// content, no escaping), it decodes without reflection, and it is decoupled from the API's JSON field names, so
// renaming one cannot silently change what is on disk. The id is the key, so it is not repeated. A new field
// means a new version byte; decode keeps reading the old ones.
const (
	formatV1   = 1
	headerSize = 21
)

func encode(a *announcement.Announcement) []byte {
	v := make([]byte, headerSize, headerSize+len(a.Content))
	v[0] = formatV1
	binary.BigEndian.PutUint32(v[1:5], uint32(a.Priority))
	binary.BigEndian.PutUint64(v[5:13], uint64(a.EffectiveAt))
	binary.BigEndian.PutUint64(v[13:21], uint64(a.ExpiresAt))
	return append(v, a.Content...)
}

func decode(k, v []byte) (announcement.Announcement, error) {
	if len(k) != 8 {
		return announcement.Announcement{}, fmt.Errorf("key %x: %d bytes, want 8: %w", k, len(k), ErrCorrupt)
	}
	id := binary.BigEndian.Uint64(k)
	fail := func(format string, args ...any) (announcement.Announcement, error) {
		return announcement.Announcement{}, fmt.Errorf("id %d: %s: %w", id, fmt.Sprintf(format, args...), ErrCorrupt)
	}
	switch {
	case len(v) == 0:
		return fail("empty value")
	case v[0] != formatV1:
		return fail("unknown format version %d", v[0])
	case len(v) < headerSize:
		return fail("%d bytes, want at least %d", len(v), headerSize)
	}
	a := announcement.Announcement{
		ID:          id,
		Priority:    int32(binary.BigEndian.Uint32(v[1:5])),
		EffectiveAt: int64(binary.BigEndian.Uint64(v[5:13])),
		ExpiresAt:   int64(binary.BigEndian.Uint64(v[13:21])),
		Content:     string(v[headerSize:]), // copies: v is only valid inside the transaction
	}
	// %v, not %w: a damaged file is a server failure, which IsValidation must not mistake for bad input.
	// ValidateStored: an empty content, which older builds accepted, is read back as it was stored.
	if err := a.ValidateStored(); err != nil {
		return fail("decodes to an invalid announcement: %v", err)
	}
	return a, nil
}
