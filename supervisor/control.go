package supervisor

import (
	"context"
	"encoding/json"
	"net/http"
)

// ControlHandler serves the supervisor's control API (docs/API.md, "Control socket"):
//
//	GET  /v1/status            the supervisor's Status
//	POST /v1/reload            start a reload; 202 at once
//	POST /v1/reload?wait=1     wait for the reload's outcome: 200 with a ReloadResult (ok says whether it served)
func ControlHandler(s *Supervisor) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(rw http.ResponseWriter, r *http.Request) {
		writeJSON(rw, http.StatusOK, s.Status())
	})
	mux.HandleFunc("POST /v1/reload", func(rw http.ResponseWriter, r *http.Request) {
		switch r.URL.Query().Get("wait") {
		case "", "0", "false":
			go s.Reload(context.WithoutCancel(r.Context()))
			writeJSON(rw, http.StatusAccepted, map[string]any{"accepted": true})
		case "1", "true":
			res, err := s.Reload(r.Context())
			if err != nil {
				writeJSON(rw, http.StatusServiceUnavailable, map[string]any{"error": map[string]string{"code": "unavailable", "message": err.Error()}})
				return
			}
			writeJSON(rw, http.StatusOK, res)
		default:
			writeJSON(rw, http.StatusBadRequest, map[string]any{"error": map[string]string{"code": "bad_request", "message": "wait must be 1 or 0"}})
		}
	})
	return mux
}

func writeJSON(rw http.ResponseWriter, status int, v any) {
	rw.Header().Set("Content-Type", "application/json")
	rw.WriteHeader(status)
	enc := json.NewEncoder(rw)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
