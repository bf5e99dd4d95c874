package worker

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/announcementd/announcementd/announcement"
	"github.com/announcementd/announcementd/board"
	"github.com/announcementd/announcementd/healthcheck"
)

// Body limits: one announcement is well under 2 KiB of JSON; a batch may replace a full 4 MiB board.
const (
	maxBody      = 16 << 10
	maxBatchBody = 8 << 20
)

// putRequest is the body of PUT /v1/announcements/{id} and of each put in a batch (docs/API.md).
type putRequest struct {
	ID       uint64 `json:"id"` // required in a batch; in PUT the id is in the path (and may be repeated here)
	Content  string `json:"content"`
	Priority int32  `json:"priority"`
	// EffectiveAt is RFC 3339; absent means now.
	EffectiveAt *time.Time `json:"effective_at,omitempty"`
	// TTL is a Go duration ("90s", "10m", "24h"); absent or "0s" means it never expires.
	TTL string `json:"ttl,omitempty"`
}

type batchRequest struct {
	Put    []putRequest `json:"put"`
	Delete []uint64     `json:"delete"`
}

// announcementJSON is how the API shows an announcement.
type announcementJSON struct {
	ID          uint64     `json:"id"`
	Content     string     `json:"content"`
	Priority    int32      `json:"priority"`
	EffectiveAt time.Time  `json:"effective_at"`
	ExpiresAt   *time.Time `json:"expires_at,omitempty"`
	Visible     bool       `json:"visible"`
}

func (w *Worker) toJSON(a announcement.Announcement) announcementJSON {
	j := announcementJSON{ID: a.ID, Content: a.Content, Priority: a.Priority,
		EffectiveAt: time.Unix(0, a.EffectiveAt).UTC(), Visible: a.VisibleAt(w.cfg.Now().UnixNano())}
	if a.ExpiresAt != 0 {
		t := time.Unix(0, a.ExpiresAt).UTC()
		j.ExpiresAt = &t
	}
	return j
}

// toAnnouncement validates a request into an announcement.
func (w *Worker) toAnnouncement(id uint64, r putRequest) (announcement.Announcement, error) {
	now := w.cfg.Now().UnixNano()
	a := announcement.Announcement{ID: id, Content: r.Content, Priority: r.Priority, EffectiveAt: now}
	if r.EffectiveAt != nil {
		var err error
		if a.EffectiveAt, err = announcement.UnixNano(*r.EffectiveAt); err != nil {
			return a, err
		}
	}
	if r.TTL != "" {
		ttl, err := time.ParseDuration(r.TTL)
		if err != nil {
			return a, &announcement.ValidationError{Msg: fmt.Sprintf("ttl %q is not a duration like 90s, 10m or 24h", r.TTL)}
		}
		if a.ExpiresAt, err = announcement.ExpiresAfter(a.EffectiveAt, ttl); err != nil {
			return a, err
		}
		if a.ExpiredAt(now) {
			return a, &announcement.ValidationError{Msg: fmt.Sprintf("it would already have expired (at %s)",
				time.Unix(0, a.ExpiresAt).UTC().Format(time.RFC3339))}
		}
	}
	return a, a.Validate()
}

// Handler serves the API. token, when not empty, is required as a bearer token on every request.
func (w *Worker) Handler(token string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("PUT /v1/announcements/{id}", w.handlePut)
	mux.HandleFunc("GET /v1/announcements/{id}", w.handleGet)
	mux.HandleFunc("DELETE /v1/announcements/{id}", w.handleDelete)
	mux.HandleFunc("GET /v1/announcements", w.handleList)
	mux.HandleFunc("POST /v1/batch", w.handleBatch)
	mux.HandleFunc("GET /v1/status", w.handleStatus)
	mux.HandleFunc("GET /healthz", w.handleLive)
	mux.HandleFunc("GET /readyz", w.handleReady)
	mux.HandleFunc("/", func(rw http.ResponseWriter, r *http.Request) {
		writeError(rw, http.StatusNotFound, "not_found", fmt.Sprintf("no such endpoint: %s %s (see docs/API.md)", r.Method, r.URL.Path))
	})
	var h http.Handler = mux
	if token != "" {
		h = requireToken(token, h)
	}
	return h
}

// requireToken answers 401 unless the request carries "Authorization: Bearer <token>". The scheme is
// case-insensitive (RFC 9110 §11.1: "bearer" works too) and may be followed by more than one space. The token is
// compared in constant time, through SHA-256 so that not even its length shows; it is never logged.
func requireToken(token string, next http.Handler) http.Handler {
	want := sha256.Sum256([]byte(token))
	return http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		got, ok := bearer(r.Header.Values("Authorization"))
		sum := sha256.Sum256([]byte(got))
		if subtle.ConstantTimeCompare(sum[:], want[:]) != 1 || !ok {
			rw.Header().Set("WWW-Authenticate", `Bearer realm="announcementd"`)
			writeError(rw, http.StatusUnauthorized, "unauthorized", "a valid bearer token is required (see --token-file)")
			return
		}
		next.ServeHTTP(rw, r)
	})
}

// bearer returns the token of the one Authorization header, if its scheme is Bearer (in any case).
func bearer(values []string) (string, bool) {
	if len(values) != 1 {
		return "", false
	}
	scheme, token, ok := strings.Cut(values[0], " ")
	token = strings.TrimLeft(token, " ")
	return token, ok && strings.EqualFold(scheme, "Bearer") && token != ""
}

func pathID(r *http.Request) (uint64, error) {
	s := r.PathValue("id")
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil || id == 0 {
		return 0, &announcement.ValidationError{Msg: fmt.Sprintf("id %q is not a positive integer", s)}
	}
	return id, nil
}

func (w *Worker) handlePut(rw http.ResponseWriter, r *http.Request) {
	id, err := pathID(r)
	if err != nil {
		w.refuse(rw, r, err)
		return
	}
	var req putRequest
	if err := decode(rw, r, maxBody, putShape, &req); err != nil {
		w.refuse(rw, r, err)
		return
	}
	if req.ID != 0 && req.ID != id {
		w.refuse(rw, r, &announcement.ValidationError{Msg: fmt.Sprintf("the body's id %d differs from the path's %d", req.ID, id)})
		return
	}
	a, err := w.toAnnouncement(id, req)
	if err != nil {
		w.refuse(rw, r, err)
		return
	}
	res, err := w.Apply([]announcement.Announcement{a}, nil)
	if err != nil {
		w.fail(rw, r, err)
		return
	}
	writeJSON(rw, http.StatusOK, map[string]any{"version": res.Version, "announcement": w.toJSON(a)})
}

func (w *Worker) handleGet(rw http.ResponseWriter, r *http.Request) {
	id, err := pathID(r)
	if err != nil {
		w.fail(rw, r, err)
		return
	}
	a, ok := w.Get(id)
	if !ok {
		writeError(rw, http.StatusNotFound, "not_found", fmt.Sprintf("no announcement with id %d", id))
		return
	}
	writeJSON(rw, http.StatusOK, map[string]any{"version": w.Version(), "announcement": w.toJSON(a)})
}

func (w *Worker) handleDelete(rw http.ResponseWriter, r *http.Request) {
	id, err := pathID(r)
	if err != nil {
		w.refuse(rw, r, err)
		return
	}
	res, err := w.Apply(nil, []uint64{id})
	if err != nil {
		w.fail(rw, r, err)
		return
	}
	if len(res.Deleted) == 0 {
		writeError(rw, http.StatusNotFound, "not_found", fmt.Sprintf("no announcement with id %d", id))
		return
	}
	writeJSON(rw, http.StatusOK, map[string]any{"version": res.Version, "deleted": id})
}

func (w *Worker) handleList(rw http.ResponseWriter, r *http.Request) {
	all := w.List()
	out := make([]announcementJSON, len(all))
	for i, a := range all {
		out[i] = w.toJSON(a)
	}
	writeJSON(rw, http.StatusOK, map[string]any{"version": w.Version(), "announcements": out})
}

func (w *Worker) handleBatch(rw http.ResponseWriter, r *http.Request) {
	var req batchRequest
	if err := decode(rw, r, maxBatchBody, batchShape, &req); err != nil {
		w.refuse(rw, r, err)
		return
	}
	puts := make([]announcement.Announcement, 0, len(req.Put))
	seen := map[uint64]bool{}
	for i, p := range req.Put {
		a, err := w.toAnnouncement(p.ID, p)
		if err != nil {
			w.refuse(rw, r, fmt.Errorf("put[%d] (id %d): %w", i, p.ID, err))
			return
		}
		if seen[a.ID] {
			w.refuse(rw, r, &announcement.ValidationError{Msg: fmt.Sprintf("put[%d]: id %d appears twice in the batch", i, a.ID)})
			return
		}
		seen[a.ID] = true
		puts = append(puts, a)
	}
	for i, id := range req.Delete {
		if id == 0 {
			w.refuse(rw, r, &announcement.ValidationError{Msg: fmt.Sprintf("delete[%d]: id must be a positive integer, not 0", i)})
			return
		}
		if seen[id] {
			w.refuse(rw, r, &announcement.ValidationError{Msg: fmt.Sprintf("delete[%d]: id %d appears twice in the batch", i, id)})
			return
		}
		seen[id] = true
	}
	res, err := w.Apply(puts, req.Delete)
	if err != nil {
		w.fail(rw, r, err)
		return
	}
	deleted := res.Deleted
	if deleted == nil {
		deleted = []uint64{}
	}
	writeJSON(rw, http.StatusOK, map[string]any{"version": res.Version, "put": len(puts), "deleted": deleted})
}

// Status is the worker's part of `status`.
type Status struct {
	Supervisor struct {
		PID   int    `json:"pid"`
		Build string `json:"build"`
	} `json:"supervisor"`
	Worker struct {
		PID        int       `json:"pid"`
		Generation uint64    `json:"generation"`
		Build      string    `json:"build"`
		StartedAt  time.Time `json:"started_at"`
	} `json:"worker"`
	Region struct {
		Path     string `json:"path"`
		Version  uint64 `json:"version"`
		Capacity int    `json:"capacity"`
		Size     uint64 `json:"size"`
	} `json:"region"`
	Announcements int `json:"announcements"`
	// Health is the state's name (a string, as before checks); HealthReasons and Checks say why.
	Health        string              `json:"health"`
	HealthReasons []string            `json:"health_reasons"`
	Checks        []healthcheck.Check `json:"checks"`
	Guard         guardStatus         `json:"guard"`
	// CountersSaved: the store holds every count this status and /metrics show (the service's totals), so a
	// kill -9 now would lose none. Normally true within milliseconds of a count.
	CountersSaved bool `json:"counters_saved"`
}

// Status reports the worker's state.
func (w *Worker) Status() Status {
	var s Status
	s.Supervisor.PID, s.Supervisor.Build = w.cfg.Supervisor.PID, w.cfg.Supervisor.Build
	s.Worker.PID, s.Worker.Generation, s.Worker.Build, s.Worker.StartedAt = os.Getpid(), w.cfg.Generation, w.cfg.Build, w.started.UTC()
	h := w.cfg.Board.Header()
	s.Region.Path, s.Region.Version, s.Region.Capacity, s.Region.Size = w.cfg.Board.Path(), w.Version(), int(h.Capacity), h.RegionSize
	s.Announcements = w.held()
	rep := w.Health(false)
	s.Health, s.HealthReasons, s.Checks = rep.Health.String(), rep.Reasons, rep.Checks
	s.Guard = w.guardStatus()
	s.CountersSaved = w.counters.allSaved()
	return s
}

func (w *Worker) handleStatus(rw http.ResponseWriter, r *http.Request) {
	writeJSON(rw, http.StatusOK, w.Status())
}

// httpError is an error with its HTTP status and code.
type httpError struct {
	status int
	code   string
	msg    string
}

func (e *httpError) Error() string { return e.msg }

// refuse answers a write refused before it reached Apply, counting it as an invalid publish.
func (w *Worker) refuse(rw http.ResponseWriter, r *http.Request, err error) {
	w.counters.inc(counterPublishes + "invalid")
	w.fail(rw, r, err)
}

// fail answers err as JSON: 400 for bad input, 409 for a full board, 500 otherwise (logged).
func (w *Worker) fail(rw http.ResponseWriter, r *http.Request, err error) {
	var he *httpError
	switch {
	case errors.As(err, &he):
		writeError(rw, he.status, he.code, he.msg)
	case announcement.IsValidation(err):
		writeError(rw, http.StatusBadRequest, "invalid", err.Error())
	case errors.Is(err, board.ErrFull):
		writeError(rw, http.StatusConflict, "full", err.Error())
	default:
		w.log.Error("request failed", zap.String("method", r.Method), zap.String("path", r.URL.Path), zap.Error(err))
		writeError(rw, http.StatusInternalServerError, "internal", err.Error())
	}
}

// resultOf names an Apply outcome for the publishes metric.
func resultOf(err error) string {
	switch {
	case err == nil:
		return "ok"
	case announcement.IsValidation(err):
		return "invalid"
	case errors.Is(err, board.ErrFull):
		return "full"
	}
	return "error"
}

func writeError(rw http.ResponseWriter, status int, code, msg string) {
	writeJSON(rw, status, map[string]string{"error": msg, "code": code})
}

func writeJSON(rw http.ResponseWriter, status int, v any) {
	rw.Header().Set("Content-Type", "application/json")
	rw.WriteHeader(status)
	enc := json.NewEncoder(rw)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
