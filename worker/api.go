package worker

import (
	"crypto/sha256"
	"crypto/subtle"
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
	"github.com/announcementd/announcementd/wire"
)

// Body limits: one announcement is well under 2 KiB of JSON; a batch may replace a full 4 MiB board.
const (
	maxBody      = 16 << 10
	maxBatchBody = 8 << 20
)

// toJSON is a as the API shows it.
func (w *Worker) toJSON(a announcement.Announcement) wire.Announcement {
	j := wire.Announcement{ID: a.ID, Content: a.Content, Priority: a.Priority,
		EffectiveAt: time.Unix(0, a.EffectiveAt).UTC(), Visible: a.VisibleAt(w.cfg.Now().UnixNano())}
	if a.ExpiresAt != 0 {
		t := time.Unix(0, a.ExpiresAt).UTC()
		j.ExpiresAt = &t
	}
	return j
}

// toAnnouncement validates a request into an announcement.
func (w *Worker) toAnnouncement(id uint64, r wire.PutRequest) (announcement.Announcement, error) {
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
	// Every other path and method is a 404 (docs/API.md), so the API never answers 405.
	mux.Handle("/", wire.NotFound("docs/API.md"))
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
			wire.WriteError(rw, http.StatusUnauthorized, wire.CodeUnauthorized, "a valid bearer token is required (see --token-file)")
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
	var req wire.PutRequest
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
	wire.WriteJSON(rw, http.StatusOK, wire.AnnouncementResponse{Version: res.Version, Announcement: w.toJSON(a)})
}

func (w *Worker) handleGet(rw http.ResponseWriter, r *http.Request) {
	id, err := pathID(r)
	if err != nil {
		w.fail(rw, r, err)
		return
	}
	a, ok := w.Get(id)
	if !ok {
		wire.WriteError(rw, http.StatusNotFound, wire.CodeNotFound, fmt.Sprintf("no announcement with id %d", id))
		return
	}
	wire.WriteJSON(rw, http.StatusOK, wire.AnnouncementResponse{Version: w.Version(), Announcement: w.toJSON(a)})
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
		wire.WriteError(rw, http.StatusNotFound, wire.CodeNotFound, fmt.Sprintf("no announcement with id %d", id))
		return
	}
	wire.WriteJSON(rw, http.StatusOK, wire.DeleteResponse{Version: res.Version, Deleted: id})
}

func (w *Worker) handleList(rw http.ResponseWriter, r *http.Request) {
	all := w.List()
	out := make([]wire.Announcement, len(all))
	for i, a := range all {
		out[i] = w.toJSON(a)
	}
	wire.WriteJSON(rw, http.StatusOK, wire.ListResponse{Version: w.Version(), Announcements: out})
}

func (w *Worker) handleBatch(rw http.ResponseWriter, r *http.Request) {
	var req wire.BatchRequest
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
	wire.WriteJSON(rw, http.StatusOK, wire.BatchResponse{Version: res.Version, Put: len(puts), Deleted: deleted})
}

// Status reports the worker's state: the answer to GET /v1/status.
func (w *Worker) Status() wire.WorkerStatus {
	s := wire.WorkerStatus{
		Supervisor: wire.SupervisorBrief{PID: w.cfg.Supervisor.PID, Build: w.cfg.Supervisor.Build},
		Worker:     wire.WorkerInfo{PID: os.Getpid(), Generation: w.cfg.Generation, Build: w.cfg.Build, StartedAt: w.started.UTC()},
	}
	h := w.cfg.Board.Header()
	s.Region = wire.RegionInfo{Path: w.cfg.Board.Path(), Version: w.Version(), Capacity: int(h.Capacity), Size: h.RegionSize}
	s.Announcements = w.held()
	rep := w.Health(false)
	s.Health, s.HealthReasons, s.Checks = rep.Health, rep.Reasons, rep.Checks
	s.Guard = w.guardStatus()
	s.CountersSaved = w.counters.allSaved()
	return s
}

func (w *Worker) handleStatus(rw http.ResponseWriter, r *http.Request) {
	wire.WriteJSON(rw, http.StatusOK, w.Status())
}

// refuse answers a write refused before it reached Apply, counting it as an invalid publish.
func (w *Worker) refuse(rw http.ResponseWriter, r *http.Request, err error) {
	w.counters.inc(counterPublishes + "invalid")
	w.fail(rw, r, err)
}

// fail answers err as a wire.Error: its own status and code for a *wire.Error (a body refused by decode), 400
// invalid for bad input, 409 full for a full board (board.ErrFull), 500 internal otherwise (logged).
func (w *Worker) fail(rw http.ResponseWriter, r *http.Request, err error) {
	var we *wire.Error
	switch {
	case errors.As(err, &we):
		wire.WriteError(rw, we.Status, we.Code, we.Message)
	case announcement.IsValidation(err):
		wire.WriteError(rw, http.StatusBadRequest, wire.CodeInvalid, err.Error())
	case errors.Is(err, board.ErrFull):
		wire.WriteError(rw, http.StatusConflict, wire.CodeFull, err.Error())
	default:
		w.log.Error("request failed", zap.String("method", r.Method), zap.String("path", r.URL.Path), zap.Error(err))
		wire.WriteError(rw, http.StatusInternalServerError, wire.CodeInternal, err.Error())
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
