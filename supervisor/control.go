package supervisor

import (
	"context"
	"net/http"
	"os"

	"github.com/announcementd/announcementd/wire"
)

// ControlHandler serves the supervisor's control API (docs/SUPERVISOR.md, "Control API"):
//
//	GET  /v1/status            the supervisor's status: a wire.SupervisorStatus
//	POST /v1/reload            start a reload; 202 at once, with a wire.ReloadAccepted
//	POST /v1/reload?wait=1     wait for the reload's outcome: 200 with a wire.ReloadResult (ok says whether it served)
//	POST /v1/stop              stop the service as SIGTERM does; 202 at once, with a wire.StopAccepted naming the
//	                           supervisor's pid, which exits once the serving generation has finished its requests
//
// Every error is a wire.Error: 400 bad_request for another wait, 503 unavailable once the supervisor stops, 404
// not_found and 405 method_not_allowed for what the API does not have. Serve it on a wire.Listener, so that the
// errors net/http answers itself are JSON too.
func ControlHandler(s *Supervisor) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(rw http.ResponseWriter, r *http.Request) {
		wire.WriteJSON(rw, http.StatusOK, s.Status())
	})
	mux.HandleFunc("POST /v1/reload", func(rw http.ResponseWriter, r *http.Request) {
		switch r.URL.Query().Get("wait") {
		case "", "0", "false":
			go s.Reload(context.WithoutCancel(r.Context()))
			wire.WriteJSON(rw, http.StatusAccepted, wire.ReloadAccepted{Accepted: true})
		case "1", "true":
			res, err := s.Reload(r.Context())
			if err != nil {
				wire.WriteError(rw, http.StatusServiceUnavailable, wire.CodeUnavailable, err.Error())
				return
			}
			wire.WriteJSON(rw, http.StatusOK, res)
		default:
			wire.WriteError(rw, http.StatusBadRequest, wire.CodeBadRequest, "wait must be 1 or 0")
		}
	})
	mux.HandleFunc("POST /v1/stop", func(rw http.ResponseWriter, r *http.Request) {
		s.Stop()
		wire.WriteJSON(rw, http.StatusAccepted, wire.StopAccepted{Accepted: true, PID: os.Getpid()})
	})
	return wire.Handler(mux, "docs/SUPERVISOR.md")
}
